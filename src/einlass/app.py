"""The ASGI application: webhooks, REST API, operations; the worker in-process by default."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from einlass import __version__
from einlass.access.asgi import AuthFastPath
from einlass.access.cache import AccessCache
from einlass.access.pages import router as member_pages_router
from einlass.access.views import AUTH_METHODS, auth_check
from einlass.admin.app import create_admin
from einlass.audit.views import router as audit_router
from einlass.billing.subscriptions.views import router as subscriptions_router
from einlass.billing.views import router as billing_router
from einlass.billing.views import webhooks as webhooks_router
from einlass.config import Settings, get_settings
from einlass.db.engine import Database
from einlass.members.views import router as members_router
from einlass.ops import router as ops_router
from einlass.outbox.registry import build_worker
from einlass.outbox.views import router as jobs_router
from einlass.provisioning.views import router as provisioning_router
from einlass.rest.common import install_error_handlers
from einlass.rest.idempotency import IdempotencyMiddleware
from einlass.screening.decision_views import router as screening_router
from einlass.screening.public_views import router as public_report_router
from einlass.screening.views import router as blacklist_router
from einlass.tenants.views import router as tenants_router

log = structlog.get_logger(__name__)


def create_api(db: Database, settings: Settings) -> FastAPI:
    api = FastAPI(
        title="einlass API",
        version=__version__,
        description="Merchant REST API. Authenticate with `Authorization: Bearer <api key>`. "
        "POST requests accept an `Idempotency-Key`. Lists are paginated with `limit` and `starting_after`.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.db, api.state.settings = db, settings
    install_error_handlers(api)
    for router in (
        tenants_router,
        billing_router,
        subscriptions_router,
        members_router,
        provisioning_router,
        jobs_router,
        audit_router,
        screening_router,
        blacklist_router,
    ):
        api.include_router(router)
    api.add_middleware(IdempotencyMiddleware, database=lambda: db)
    return api


def create_app(
    settings: Settings | None = None, db: Database | None = None, *, run_worker: bool | None = None
) -> FastAPI:
    settings = settings or get_settings()
    db = db or Database(settings.database_url)
    in_process = settings.run_worker_in_process if run_worker is None else run_worker

    access_cache = AccessCache(db, settings.secret_key, poll_interval_s=settings.access_poll_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(access_cache.run_poller(stop))]
        if in_process:
            tasks.append(asyncio.create_task(build_worker(db, settings).run_forever(stop)))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
            await db.dispose()

    app = AuthFastPath(
        title="einlass",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.db, app.state.settings, app.state.access_cache = db, settings, access_cache
    install_error_handlers(app)
    app.add_route("/auth/{merchant}/{area}", auth_check, methods=AUTH_METHODS, include_in_schema=False)
    app.include_router(ops_router)
    app.include_router(member_pages_router)
    app.include_router(public_report_router)
    app.include_router(webhooks_router)
    app.mount("/api/v1", create_api(db, settings))
    app.mount("/admin", create_admin(db, settings))
    return app
