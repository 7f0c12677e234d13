"""Admin pages: the merchant's dashboard (being written)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from einlass.admin.page import merchant_page

router = APIRouter()


@router.get("/m/{slug}/")
async def dashboard(request: Request, slug: str) -> Response:
    page = await merchant_page(request, slug)
    return page.render("message.html", title=page.t("nav_dashboard"), text="")
