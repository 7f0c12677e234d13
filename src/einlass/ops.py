"""Health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from einlass.db.migrate import migrations_current
from einlass.rest.common import database

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    try:
        current, detail = await migrations_current(database(request))
    except Exception as error:
        return JSONResponse(
            {"status": "unavailable", "database": f"unreachable: {type(error).__name__}"}, status_code=503
        )
    if not current:
        return JSONResponse(
            {"status": "unavailable", "database": "reachable", "migrations": detail}, status_code=503
        )
    return JSONResponse({"status": "ok", "database": "reachable", "migrations": detail})


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
