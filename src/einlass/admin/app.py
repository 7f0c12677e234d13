"""The admin UI as its own ASGI app, mounted at ``/admin``: HTML errors, static files, the page routers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, Response

from einlass import web
from einlass.admin import (
    auth_views,
    billing,
    catalogue,
    dashboard,
    member_detail,
    members,
    operations,
    screening,
    targets,
)
from einlass.admin.page import STATIC_DIR, AdminResponse, bare_page
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.errors import EinlassError

STATIC_FILES = {
    "admin.css": (STATIC_DIR / "admin.css", "text/css"),
    "page.css": (web.TEMPLATE_DIR / "page.css", "text/css"),
    "htmx.min.js": (STATIC_DIR / "htmx.min.js", "text/javascript"),
}


def create_admin(db: Database, settings: Settings) -> FastAPI:
    admin = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    admin.state.db, admin.state.settings = db, settings

    @admin.exception_handler(AdminResponse)
    async def on_admin_response(_request: Request, answer: AdminResponse) -> Response:
        return answer.response

    @admin.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> Response:
        page = bare_page(request)
        if error.status_code == 404:
            return page.message("title_not_found", "error_not_found", status=404)
        return page.render(
            "message.html", title=page.t("title_error"), status=error.status_code, text=str(error.detail)
        )

    @admin.exception_handler(EinlassError)
    async def on_einlass_error(request: Request, error: EinlassError) -> Response:
        page = bare_page(request)
        return page.render(
            "message.html",
            title=page.t("title_error"),
            status=error.status_code,
            text=page.failed(error.message),
        )

    @admin.get("/static/{name}")
    async def static(name: str) -> Response:
        found = STATIC_FILES.get(name)
        if found is None:
            return Response(status_code=404)
        path, media_type = found
        return FileResponse(path, media_type=media_type, headers={"cache-control": "public, max-age=3600"})

    for module in (
        auth_views,
        dashboard,
        members,
        member_detail,
        billing,
        catalogue,
        targets,
        screening,
        operations,
    ):
        admin.include_router(module.router)
    return admin
