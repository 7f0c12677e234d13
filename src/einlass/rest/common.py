"""What every REST view shares: auth, transactions, errors, pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from einlass import clock
from einlass.audit.service import Actor
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.errors import AuthenticationFailed, EinlassError
from einlass.tenants.models import Merchant
from einlass.tenants.service import authenticate

MAX_PAGE = 100


def error_body(error_type: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "code": code, "message": message}
    if param:
        error["param"] = param
    return {"error": error}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EinlassError)
    async def on_einlass_error(_request: Request, error: EinlassError) -> JSONResponse:
        return JSONResponse(
            error_body(error.error_type, error.code, error.message, error.param),
            status_code=error.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        first_param = None
        for item in error.errors():
            location = ".".join(
                str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")
            )
            first_param = first_param or location or None
            problems.append(f"{location or 'body'}: {item.get('msg')}")
        return JSONResponse(
            error_body("invalid_request_error", "parameter_invalid", "; ".join(problems), first_param),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            error.status_code, "http_error"
        )
        return JSONResponse(
            error_body("invalid_request_error", code, str(error.detail)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@dataclass(frozen=True)
class ApiContext:
    merchant: Merchant
    api_key_id: str
    db: Database
    settings: Settings

    @property
    def merchant_id(self) -> str:
        return self.merchant.id

    @property
    def actor(self) -> Actor:
        return Actor("api_key", self.api_key_id)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.db.transaction() as session:
            yield session


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" and secret.strip() else None


LAST_USED_PRECISION = timedelta(minutes=1)


async def api_context(request: Request) -> ApiContext:
    """Authenticate ``Authorization: Bearer <api key>``; the key decides the merchant (invariant 6)."""
    cached: ApiContext | None = getattr(request.state, "api_context", None)
    if cached is not None:
        return cached
    secret = bearer_secret(request)
    if secret is None:
        raise AuthenticationFailed(
            "send your API key as 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    db = database(request)
    async with db.transaction() as session:
        found = await authenticate(session, secret)
        if found is not None:
            now = clock.now()
            last_used = found[1].last_used_at
            # A minute's precision is enough, and 50 concurrent requests on one key
            # must not queue on that key's row.
            if last_used is None or now - last_used >= LAST_USED_PRECISION:
                found[1].last_used_at = now
    if found is None:
        raise AuthenticationFailed("the API key is unknown or revoked")
    context = ApiContext(merchant=found[0], api_key_id=found[1].id, db=db, settings=settings_of(request))
    request.state.api_context = context
    return context


def page_limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def list_response(url: str, rows: Sequence[Any], limit: int, render: Any) -> dict[str, Any]:
    """Stripe-style list: the views fetch ``limit + 1`` rows to know whether more follow."""
    has_more = len(rows) > limit
    data = [render(row) for row in rows[:limit]]
    return {
        "object": "list",
        "url": url,
        "data": data,
        "has_more": has_more,
        "next_cursor": data[-1]["id"] if has_more and data else None,
    }


def iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
