"""Webhook targets end to end: payments, locks and edits reach a real receiver as signed events."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from einlass import clock as clock_module
from einlass.app import create_app
from einlass.billing.gateways.base import InvalidSignature
from einlass.outbox.models import JOB_PENDING, Job
from einlass.provisioning.delivery_views import router as delivery_router
from einlass.provisioning.webhooks import (
    EVENT_ACTIVATED,
    EVENT_DEACTIVATED,
    EVENT_UPDATED,
    Outstanding,
    Told,
    Wanted,
    next_event,
)
from einlass.standard_webhooks import generate_secret, verify
from helpers import api, post_generic
from payloads import generic

DELIVERIES_PATH = "/provisioning_targets/{target_id}/deliveries"


# --- a merchant's app that receives the webhooks ----------------------------------------------


@dataclass
class Received:
    webhook_id: str
    headers: dict[str, str]
    event: dict[str, Any]


@dataclass
class Receiver:
    """A real HTTP server (uvicorn in a thread) that checks signatures like a merchant's app."""

    secret: str = field(default_factory=generate_secret)
    fail_with: int | None = None  # answer this status instead of accepting
    delay_s: float = 0.0  # answer this late (after recording the event)
    events: list[Received] = field(default_factory=list)  # verified and accepted
    attempts: list[tuple[str, int]] = field(default_factory=list)  # every request: (webhook-id, answer)
    rejected: list[str] = field(default_factory=list)  # signature problems
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.events if r.event["type"] == event_type]

    @property
    def types(self) -> list[str]:
        return [r.event["type"] for r in self.events]

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        webhook_id = request.headers.get("webhook-id", "")
        if self.fail_with is not None:
            self.attempts.append((webhook_id, self.fail_with))
            return Response("receiver is having a bad day", status_code=self.fail_with)
        try:
            verify(self.secret, request.headers, body, clock_module.now())
        except InvalidSignature as error:
            self.rejected.append(str(error))
            self.attempts.append((webhook_id, 400))
            return Response(str(error), status_code=400)
        self.events.append(Received(webhook_id, dict(request.headers), json.loads(body)))
        self.attempts.append((webhook_id, 204))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return Response(status_code=204)

    def start(self) -> Receiver:
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            assert self._thread.is_alive(), "the receiver died while starting"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
async def client(db, settings, clock) -> AsyncIterator[httpx.AsyncClient]:
    """The app, with the delivery log mounted even before app.py includes it."""
    app = create_app(settings, db, run_worker=False)
    [rest] = [r.app for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1"]
    if not any(getattr(route, "path", None) == DELIVERIES_PATH for route in rest.routes):
        rest.include_router(delivery_router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://einlass.test") as http:
        yield http


# --- helpers ----------------------------------------------------------------------------------


async def add_target(http, shop, receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "app",
        "kind": "webhook",
        "config": {"url": receiver.url},
        "secrets": {"signing_secret": receiver.secret},
        "areas": ["premium"],
    }
    body.update(overrides)
    return await api(http, shop, "POST", "/provisioning_targets", json=body)  # type: ignore[no-any-return]


async def pay(http, shop, payment_id: str, email: str, product: str = "prod-30", **extra: Any) -> None:
    payload = generic.payment_confirmed(payment_id, amount=990, email=email, product_id=product, **extra)
    response = await post_generic(http, shop, payload)
    assert response.status_code == 200, response.text


async def member_id(http, shop, email: str) -> str:
    listing = await api(http, shop, "GET", "/members", params={"email": email})
    return listing["data"][0]["id"]  # type: ignore[no-any-return]


async def deliveries(http, shop, target_id: str, **params: Any) -> list[dict[str, Any]]:
    listing = await api(http, shop, "GET", f"/provisioning_targets/{target_id}/deliveries", params=params)
    return listing["data"]  # type: ignore[no-any-return]


async def shown(http, shop, target_id: str) -> dict[str, Any]:
    return await api(http, shop, "GET", f"/provisioning_targets/{target_id}")  # type: ignore[no-any-return]


async def pending_sync_job(db) -> Job | None:
    async with db.transaction() as session:
        return await session.scalar(
            select(Job).where(Job.kind == "provisioning.sync", Job.status == JOB_PENDING)
        )


# --- the loop ---------------------------------------------------------------------------------


async def test_a_payment_sends_a_signed_member_activated(client, shop, worker, receiver, clock):
    target = await add_target(client, shop, receiver)
    await worker.drain()
    assert receiver.attempts == []  # nobody to tell yet
    assert (await shown(client, shop, target["id"]))["status"] == "ok"

    await pay(client, shop, "pay-1", "erika@example.com", name="Erika Mustermann")
    await worker.drain()

    assert receiver.rejected == []
    [received] = receiver.events
    member = await member_id(client, shop, "erika@example.com")
    assert received.event == {
        "type": "member.activated",
        "timestamp": clock.now().isoformat(),
        "data": {
            "member_id": member,
            "username": "erika@example.com",
            "email": "erika@example.com",
            "name": "Erika Mustermann",
            "areas": ["premium"],
            "access_until": (clock.now() + timedelta(days=30)).isoformat(),
        },
    }
    assert received.headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"].startswith("einlass/")

    [delivery] = await deliveries(client, shop, target["id"])
    assert delivery["id"] == received.webhook_id and delivery["id"].startswith("whd_")
    assert delivery == {
        "id": received.webhook_id,
        "object": "webhook_delivery",
        "target": target["id"],
        "type": "member.activated",
        "member": member,
        "status": "delivered",
        "attempts": 1,
        "response_status": 204,
        "error": None,
        "created_at": clock.now().isoformat(),
        "delivered_at": clock.now().isoformat(),
    }
    state = await shown(client, shop, target["id"])
    assert state["status"] == "ok" and state["last_drift"]["missing"] == ["erika@example.com"]


async def test_lock_unlock_and_edits_send_one_event_each(client, shop, worker, receiver, clock):
    target = await add_target(client, shop, receiver)
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()
    member = await member_id(client, shop, "a@example.com")
    assert receiver.types == [EVENT_ACTIVATED]

    clock.advance(timedelta(seconds=1))  # ids sort by the millisecond they were made in
    await api(client, shop, "POST", f"/members/{member}/lock", json={"reason": "abuse"})
    await worker.drain()
    assert receiver.types == [EVENT_ACTIVATED, EVENT_DEACTIVATED]
    assert receiver.events[-1].event["data"] == {
        "member_id": member,
        "username": "a@example.com",
        "email": "a@example.com",
        "name": None,
        "areas": [],
        "access_until": None,
    }
    assert (await shown(client, shop, target["id"]))["last_drift"]["unexpected"] == ["a@example.com"]

    clock.advance(timedelta(seconds=1))  # ids sort by the millisecond they were made in
    await api(client, shop, "POST", f"/members/{member}/unlock")
    await worker.drain()
    assert receiver.types == [EVENT_ACTIVATED, EVENT_DEACTIVATED, EVENT_ACTIVATED]

    clock.advance(timedelta(seconds=1))  # ids sort by the millisecond they were made in
    await api(client, shop, "POST", f"/members/{member}", json={"name": "Anna"})
    await worker.drain()
    assert receiver.types == [EVENT_ACTIVATED, EVENT_DEACTIVATED, EVENT_ACTIVATED, EVENT_UPDATED]
    assert receiver.events[-1].event["data"]["name"] == "Anna"
    assert (await shown(client, shop, target["id"]))["last_drift"]["changed"] == ["a@example.com"]

    # Changes the receiver does not see, and reconciling again, send nothing.
    await api(client, shop, "POST", f"/members/{member}/password", json={"password": "a-new-password-1"})
    await api(client, shop, "POST", f"/members/{member}", json={"name": "Anna"})
    await worker.drain()
    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["status"] == "ok" and result["written"] is False and result["members"] == 1
    assert result["drift"]["missing"] == result["drift"]["changed"] == result["drift"]["unexpected"] == []
    await api(client, shop, "POST", "/reconcile")
    await worker.drain()

    assert len(receiver.events) == 4 and len(receiver.attempts) == 4
    assert len({r.webhook_id for r in receiver.events}) == 4
    assert receiver.rejected == []
    log = await deliveries(client, shop, target["id"])
    assert [d["type"] for d in log] == list(reversed(receiver.types))  # newest first
    assert {d["status"] for d in log} == {"delivered"}


async def test_areas_follow_the_grants_and_the_target(client, shop, worker, receiver):
    target = await add_target(client, shop, receiver, areas=["premium", "archive"])
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()
    assert receiver.events[-1].event["data"]["areas"] == ["premium"]

    await pay(client, shop, "pay-2", "a@example.com", product="prod-life")
    await worker.drain()
    assert receiver.types == [EVENT_ACTIVATED, EVENT_UPDATED]
    assert receiver.events[-1].event["data"]["areas"] == ["archive", "premium"]
    assert receiver.events[-1].event["data"]["access_until"] is None

    await pay(client, shop, "pay-3", "b@example.com")  # premium only
    await api(client, shop, "POST", f"/provisioning_targets/{target['id']}", json={"areas": ["archive"]})
    await worker.drain()
    # b never had an area the target lists now: the receiver hears nothing of b.
    assert receiver.types == [EVENT_ACTIVATED, EVENT_UPDATED, EVENT_UPDATED]
    assert receiver.events[-1].event["data"]["username"] == "a@example.com"
    assert receiver.events[-1].event["data"]["areas"] == ["archive"]

    await api(client, shop, "POST", f"/provisioning_targets/{target['id']}", json={"areas": ["premium"]})
    await worker.drain()
    latest = {r.event["data"]["username"]: r.event for r in receiver.events[3:]}
    assert latest["a@example.com"]["type"] == EVENT_UPDATED
    assert latest["a@example.com"]["data"]["areas"] == ["premium"]
    assert latest["b@example.com"]["type"] == EVENT_ACTIVATED
    assert len(receiver.events) == 5 and receiver.rejected == []


# --- failures and retries ---------------------------------------------------------------------


async def test_a_receiver_that_fails_gets_the_event_once_after_the_retry(
    client, shop, worker, receiver, clock, db
):
    target = await add_target(client, shop, receiver)
    await worker.drain()
    receiver.fail_with = 500
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()

    # Two jobs ran: the payment's, and the one after the credentials job stored the password.
    [failed] = await deliveries(client, shop, target["id"])
    assert receiver.events == [] and {webhook_id for webhook_id, _ in receiver.attempts} == {failed["id"]}
    tried = len(receiver.attempts)
    assert failed["status"] == "failed" and failed["attempts"] == tried and failed["response_status"] == 500
    assert failed["error"] == "HTTP 500: receiver is having a bad day"
    assert failed["delivered_at"] is None
    state = await shown(client, shop, target["id"])
    assert state["status"] == "unreachable" and state["consecutive_failures"] == tried
    assert "1 of 1 deliveries failed" in state["last_error"] and failed["id"] in state["last_error"]
    assert receiver.secret not in str(state) and receiver.secret not in str(failed)
    job = await pending_sync_job(db)
    assert job is not None and job.run_after > clock.now() and "unreachable" in (job.last_error or "")

    await worker.drain()  # not due yet: nothing is sent
    assert len(receiver.attempts) == tried

    receiver.fail_with = None
    clock.advance(timedelta(seconds=10))  # past the first backoff (about 2 s)
    await worker.drain()
    [received] = receiver.events
    assert received.event["type"] == EVENT_ACTIVATED
    assert [webhook_id for webhook_id, _ in receiver.attempts] == [failed["id"]] * (tried + 1)
    # The body is the one of the first attempt; the signature is fresh.
    assert received.event["timestamp"] == failed["created_at"]
    assert received.headers["webhook-timestamp"] == str(int(clock.now().timestamp()))

    [delivered] = await deliveries(client, shop, target["id"])
    assert delivered["id"] == failed["id"] and delivered["status"] == "delivered"
    assert (
        delivered["attempts"] == tried + 1
        and delivered["response_status"] == 204
        and delivered["error"] is None
    )
    state = await shown(client, shop, target["id"])
    assert state["status"] == "ok" and state["consecutive_failures"] == 0 and state["last_error"] is None

    clock.advance(timedelta(hours=1))
    await api(client, shop, "POST", "/reconcile")
    await worker.drain()
    assert len(receiver.events) == 1 and len(receiver.attempts) == tried + 1


async def test_a_change_before_the_retry_sends_the_current_state(client, shop, worker, receiver, clock):
    """The failed activation may have reached the receiver: the lock is sent, not skipped."""
    target = await add_target(client, shop, receiver)
    receiver.fail_with = 503
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()
    member = await member_id(client, shop, "a@example.com")
    clock.advance(timedelta(seconds=1))  # ids sort by the millisecond they were made in
    await api(client, shop, "POST", f"/members/{member}/lock")
    await worker.drain()  # the lock's own job runs at once and fails too
    assert receiver.attempts and {code for _, code in receiver.attempts} == {503}

    receiver.fail_with = None
    clock.advance(timedelta(minutes=5))
    await worker.drain()
    assert receiver.types == [EVENT_DEACTIVATED]
    log = await deliveries(client, shop, target["id"])
    assert [(d["type"], d["status"]) for d in log] == [
        (EVENT_DEACTIVATED, "delivered"),
        (EVENT_ACTIVATED, "superseded"),
    ]

    # Unlocked while the receiver is down (the activation fails), locked again before the retry.
    receiver.fail_with = 500
    await api(client, shop, "POST", f"/members/{member}/unlock")
    await worker.drain()
    await api(client, shop, "POST", f"/members/{member}/lock")
    receiver.fail_with = None
    clock.advance(timedelta(minutes=5))
    await worker.drain()
    # The activation was attempted (500), so the receiver is told the member is off again.
    assert receiver.types == [EVENT_DEACTIVATED, EVENT_DEACTIVATED]
    assert (await shown(client, shop, target["id"]))["status"] == "ok"


async def test_a_receiver_that_cannot_be_reached_and_a_timeout(client, shop, worker, receiver, clock):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    secret = receiver.secret
    target = await add_target(
        client, shop, receiver, config={"url": f"http://127.0.0.1:{port}/hook", "timeout": 1}
    )
    await pay(client, shop, "pay-1", "a@example.com")
    await worker.drain()
    [failed] = await deliveries(client, shop, target["id"])
    assert failed["status"] == "failed" and failed["response_status"] is None
    assert failed["error"].startswith("ConnectError") and secret not in failed["error"]
    state = await shown(client, shop, target["id"])
    assert state["status"] == "unreachable" and secret not in state["last_error"]

    # The merchant fixes the URL; the receiver is slow: it acts, but answers after the timeout.
    receiver.delay_s = 1.5
    await api(
        client, shop, "POST", f"/provisioning_targets/{target['id']}", json={"config": {"url": receiver.url}}
    )
    await worker.drain()
    [slow] = await deliveries(client, shop, target["id"])
    assert slow["id"] == failed["id"] and slow["status"] == "failed"
    assert slow["attempts"] == failed["attempts"] + 1
    assert slow["error"].startswith("timed out")

    receiver.delay_s = 0
    clock.advance(timedelta(minutes=5))
    await worker.drain()
    # It saw the same message twice; webhook-id lets it drop the second.
    assert [r.webhook_id for r in receiver.events] == [failed["id"], failed["id"]]
    [done] = await deliveries(client, shop, target["id"])
    assert done["status"] == "delivered" and done["attempts"] == slow["attempts"] + 1


async def test_a_target_without_signing_secret_sends_nothing(client, shop, worker, receiver, db):
    """The API requires the secret; a row without one (older data, a hand edit) still sends nothing."""
    from sqlalchemy import update

    from einlass.provisioning.models import ProvisioningTarget

    target = await add_target(client, shop, receiver)
    async with db.transaction() as session:
        await session.execute(
            update(ProvisioningTarget)
            .where(ProvisioningTarget.id == target["id"])
            .values(encrypted_secrets=None)
        )
    await pay(client, shop, "pay-1", "a@example.com")
    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["status"] == "error" and "signing_secret" in result["error"]
    assert receiver.attempts == []


async def test_a_slow_run_stops_starting_requests_and_the_retry_sends_the_rest(
    client, shop, worker, receiver, monkeypatch
):
    target = await add_target(client, shop, receiver)
    await pay(client, shop, "pay-1", "a@example.com")
    await pay(client, shop, "pay-2", "b@example.com")
    monkeypatch.setattr("einlass.provisioning.webhooks.RUN_BUDGET_S", -1.0)  # spent before it starts
    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["status"] == "unreachable" and "2 of 2 deliveries left for the retry" in result["error"]
    log = await deliveries(client, shop, target["id"])
    assert [(d["status"], d["attempts"]) for d in log] == [("pending", 0), ("pending", 0)]
    assert receiver.attempts == []

    monkeypatch.undo()
    await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    await worker.drain()
    assert sorted(r.webhook_id for r in receiver.events) == sorted(d["id"] for d in log)
    assert receiver.types == [EVENT_ACTIVATED, EVENT_ACTIVATED]


async def test_a_database_failure_while_sending_is_reported_as_itself(client, shop, receiver, monkeypatch):
    target = await add_target(client, shop, receiver)
    await pay(client, shop, "pay-1", "a@example.com")

    async def broken(*args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("einlass.provisioning.webhooks._record_outcome", broken)
    result = await api(client, shop, "POST", f"/provisioning_targets/{target['id']}/reconcile")
    assert result["status"] == "error" and result["error"] == "RuntimeError: the database went away"


# --- the delivery log -------------------------------------------------------------------------


async def test_the_delivery_log_pages_filters_and_keeps_tenants_apart(client, shop, worker, receiver, db):
    from conftest import make_shop

    target = await add_target(client, shop, receiver)
    for number in range(3):
        await pay(client, shop, f"pay-{number}", f"m{number}@example.com")
    await worker.drain()
    everything = await deliveries(client, shop, target["id"])
    assert len(everything) == 3 and len({d["id"] for d in everything}) == 3
    assert [d["id"] for d in everything] == sorted((d["id"] for d in everything), reverse=True)

    first = await api(
        client, shop, "GET", f"/provisioning_targets/{target['id']}/deliveries", params={"limit": 2}
    )
    assert first["has_more"] is True and len(first["data"]) == 2
    assert first["url"] == f"/api/v1/provisioning_targets/{target['id']}/deliveries"
    rest = await api(
        client,
        shop,
        "GET",
        f"/provisioning_targets/{target['id']}/deliveries",
        params={"limit": 2, "starting_after": first["next_cursor"]},
    )
    assert rest["has_more"] is False
    assert [d["id"] for d in first["data"] + rest["data"]] == [d["id"] for d in everything]
    assert len(await deliveries(client, shop, target["id"], status="delivered")) == 3
    assert await deliveries(client, shop, target["id"], status="failed") == []
    bad = await client.get(
        f"/api/v1/provisioning_targets/{target['id']}/deliveries", headers=shop.auth, params={"status": "x"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    by_name = await deliveries(client, shop, "app")
    assert len(by_name) == 3

    other = await make_shop(db, "other")
    response = await client.get(f"/api/v1/provisioning_targets/{target['id']}/deliveries", headers=other.auth)
    assert response.status_code == 404


# --- the rule ---------------------------------------------------------------------------------


def _want(fingerprint: str = "f1") -> Wanted:
    return Wanted(data={"member_id": "m", "name": fingerprint}, fingerprint=fingerprint, label="m")


def _outstanding(event_type: str, attempts: int) -> Outstanding:
    return Outstanding("whd_x", event_type, {"member_id": "m"}, attempts, {})


@pytest.mark.parametrize(
    ("want", "told", "outstanding", "expected"),
    [
        (_want(), None, None, EVENT_ACTIVATED),
        (_want(), Told(False, "f1"), None, EVENT_ACTIVATED),
        (_want(), Told(True, "f1"), None, None),
        (_want("f2"), Told(True, "f1"), None, EVENT_UPDATED),
        (None, Told(True, "f1"), None, EVENT_DEACTIVATED),
        (None, Told(False, "f1"), None, None),
        (None, None, None, None),
        # Never attempted: the record is what the receiver holds.
        (None, None, _outstanding(EVENT_ACTIVATED, 0), None),
        (_want(), Told(True, "f1"), _outstanding(EVENT_UPDATED, 0), None),
        # Attempted without a 2xx: the receiver may hold either state; send the current one.
        (None, None, _outstanding(EVENT_ACTIVATED, 1), EVENT_DEACTIVATED),
        (None, Told(False, "f1"), _outstanding(EVENT_DEACTIVATED, 2), EVENT_DEACTIVATED),
        (_want(), Told(True, "f1"), _outstanding(EVENT_DEACTIVATED, 1), EVENT_ACTIVATED),
        (_want(), Told(True, "f1"), _outstanding(EVENT_UPDATED, 1), EVENT_UPDATED),
        (_want(), Told(True, "f1"), _outstanding(EVENT_ACTIVATED, 1), EVENT_ACTIVATED),
        (_want(), None, _outstanding(EVENT_ACTIVATED, 1), EVENT_ACTIVATED),
    ],
)
def test_next_event(want, told, outstanding, expected):
    assert next_event(want, told, outstanding) == expected
