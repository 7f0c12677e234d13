"""Admin login (password and TOTP code), logout, the start page and the operator's merchant list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from einlass import web
from einlass.access import sessions
from einlass.admin.page import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Page,
    admin_url,
    bare_page,
    operator_page,
    set_cookie,
    staff_page,
)
from einlass.tenants.models import Merchant
from einlass.tenants.staff import (
    SESSION_LIFETIME,
    check_login,
    current_staff_session,
    end_staff_session,
    start_staff_session,
)

router = APIRouter()
MAX_EMAIL = 320
MAX_PASSWORD = 256


def _safe_next(value: str | None) -> str:
    """Only a path inside the admin UI; anything else goes to the start page."""
    plain = bool(value) and len(value or "") <= 2048 and all(0x20 < ord(char) < 0x7F for char in value or "")
    if value and plain and value.startswith("/admin/") and "\\" not in value:
        return value
    return admin_url()


def _login_form(
    page: Page, *, status: int = 200, error: str | None = None, email: str = "", next_url: str = ""
) -> Response:
    secret_key = page.settings.secret_key
    token = page.request.cookies.get(LOGIN_CSRF_COOKIE)
    if token is None or not sessions.login_csrf_valid(secret_key, token):
        token = sessions.new_login_csrf(secret_key)
    response = page.render(
        "login.html",
        title=page.t("title_login"),
        status=status,
        login_csrf=token,
        email=email[:MAX_EMAIL],
        next=next_url,
        error=error,
    )
    set_cookie(page.request, response, LOGIN_CSRF_COOKIE, token, int(sessions.CSRF_LIFETIME.total_seconds()))
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    page = bare_page(request)
    return _login_form(page, next_url=_safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    page = bare_page(request)
    form = await web.read_form(request)
    if form is None:
        return page.message("title_error", "error_too_large", status=413)
    email = form.get("email", "").strip()
    next_url = _safe_next(form.get("next"))
    secret_key = page.settings.secret_key
    if not sessions.double_submit_valid(
        secret_key, request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf_token")
    ):
        return _login_form(page, status=403, error=page.t("error_csrf"), email=email, next_url=next_url)
    password, code = form.get("password", ""), form.get("code", "")
    if not email or not password or not code:
        return _login_form(
            page, status=400, error=page.t("error_login_missing"), email=email, next_url=next_url
        )
    if len(email) > MAX_EMAIL or len(password) > MAX_PASSWORD:
        return _login_form(page, status=401, error=page.t("error_login"), email=email, next_url=next_url)
    async with page.db.transaction() as session:
        result = await check_login(session, secret_key, email, password, code)
        if result.account is not None:
            previous = await current_staff_session(session, request.cookies.get(SESSION_COOKIE))
            if previous is not None:
                await end_staff_session(session, *previous)
            issued = await start_staff_session(session, result.account, request.headers.get("user-agent"))
    if result.account is None:
        if result.locked_until_minutes is not None:
            error = page.t("error_locked_out", minutes=result.locked_until_minutes)
            return _login_form(page, status=429, error=error, email=email, next_url=next_url)
        return _login_form(page, status=401, error=page.t("error_login"), email=email, next_url=next_url)
    response = RedirectResponse(next_url, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, issued.token, int(SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    page = await staff_page(request)
    await page.form(write=False)
    async with page.db.transaction() as session:
        found = await current_staff_session(session, request.cookies.get(SESSION_COOKIE))
        if found is not None:
            await end_staff_session(session, *found)
    response = page.redirect(admin_url("login"), notice=page.t("logged_out"))
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@router.get("/")
async def start(request: Request) -> Response:
    page = await staff_page(request)
    if page.is_operator:
        return RedirectResponse(admin_url("merchants"), status_code=303)
    assert page.staff is not None
    async with page.db.transaction() as session:
        slug = await session.scalar(select(Merchant.slug).where(Merchant.id == page.staff.merchant_id))
    return RedirectResponse(admin_url(f"m/{slug}/"), status_code=303)


@router.get("/merchants")
async def merchants(request: Request) -> Response:
    page = await operator_page(request)
    async with page.db.transaction() as session:
        rows = list(await session.scalars(select(Merchant).order_by(Merchant.name)))
    return page.render("merchants.html", title=page.t("title_merchants"), merchants=rows)
