"""``Idempotency-Key`` on POST: a retried request gets the first response, not a second effect."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from einlass import clock
from einlass.db.engine import Database
from einlass.db.util import insert_ignoring_conflict
from einlass.ids import new_id
from einlass.rest.common import error_body
from einlass.rest.models import IdempotencyRecord
from einlass.tenants.service import authenticate

IN_PROGRESS = 0
KEY_LIFETIME = timedelta(hours=24)
# Values that are shown once (a new API key, a generated password) are not kept for replays.
SHOWN_ONCE = frozenset({"secret", "password", "api_key"})


def _without_secrets(document: dict[str, Any]) -> dict[str, Any]:
    return {
        key: "[shown once; not replayed]" if key in SHOWN_ONCE else value for key, value in document.items()
    }


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, database: Callable[[], Database]) -> None:
        self.app = app
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        key = headers.get("idempotency-key")
        scheme, _, secret = headers.get("authorization", "").partition(" ")
        if not key or scheme.lower() != "bearer":
            await self.app(scope, receive, send)
            return
        if len(key) > 255:
            await _send_json(
                send,
                400,
                error_body(
                    "idempotency_error",
                    "idempotency_key_too_long",
                    "Idempotency-Key must have at most 255 characters",
                ),
            )
            return
        db = self.database()
        async with db.transaction() as session:
            found = await authenticate(session, secret.strip())
        if found is None:
            await self.app(scope, receive, send)
            return
        merchant_id = found[0].id
        body = await _read_body(receive)
        fingerprint = hashlib.sha256(
            b"\0".join([scope["path"].encode(), scope.get("query_string", b""), body])
        ).hexdigest()

        async with db.transaction() as session:
            # Keys are kept for a day, as Stripe does; an older one counts as new.
            await session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.merchant_id == merchant_id,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.created_at < clock.now() - KEY_LIFETIME,
                )
            )
            claimed = await insert_ignoring_conflict(
                session,
                IdempotencyRecord,
                {
                    "id": new_id("idem"),
                    "merchant_id": merchant_id,
                    "key": key,
                    "request_fingerprint": fingerprint,
                    "status_code": IN_PROGRESS,
                    "response_body": {},
                    "created_at": clock.now(),
                },
            )
            existing = (
                None
                if claimed
                else await session.scalar(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.merchant_id == merchant_id, IdempotencyRecord.key == key
                    )
                )
            )
        if existing is not None:
            await self._replay(send, existing, fingerprint)
            return

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def replay_body() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"], captured["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")

        try:
            await self.app(scope, replay_body, capture)
        finally:
            await self._store(db, merchant_id, key, captured)
        await send(
            {"type": "http.response.start", "status": captured["status"], "headers": captured["headers"]}
        )
        await send({"type": "http.response.body", "body": captured["body"]})

    async def _store(self, db: Database, merchant_id: str, key: str, captured: dict[str, Any]) -> None:
        where = (IdempotencyRecord.merchant_id == merchant_id, IdempotencyRecord.key == key)
        async with db.transaction() as session:
            try:
                document = json.loads(captured["body"] or b"null")
            except ValueError:
                document = None
            if captured["status"] >= 500 or not isinstance(document, dict):
                # A failure on our side may be retried for real.
                await session.execute(delete(IdempotencyRecord).where(*where))
            else:
                await session.execute(
                    update(IdempotencyRecord)
                    .where(*where)
                    .values(status_code=captured["status"], response_body=_without_secrets(document))
                )

    async def _replay(self, send: Send, record: IdempotencyRecord, fingerprint: str) -> None:
        if record.request_fingerprint != fingerprint:
            await _send_json(
                send,
                400,
                error_body(
                    "idempotency_error",
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with different parameters; use a new key for a new request",
                ),
            )
        elif record.status_code == IN_PROGRESS:
            await _send_json(
                send,
                409,
                error_body(
                    "idempotency_error",
                    "idempotency_request_in_progress",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                ),
            )
        else:
            await _send_json(send, record.status_code, record.response_body, replayed=True)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, document: Any, *, replayed: bool = False) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
