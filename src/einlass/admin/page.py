"""What every admin page shares: who is logged in, which merchant, language, CSRF, rendering.

A page handler starts with ``await merchant_page(request, slug)`` (a
merchant's pages) or ``await operator_page(request)`` (the operator's own),
which answer for the login, the tenant and the role: a merchant's staff
reach only their own merchant, and another merchant's slug or any id of
another merchant is the same 404 as one that does not exist. Forms are read
with ``await page.form()``, which refuses a post without the session's CSRF
token and, for viewers, any post at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from einlass import web
from einlass.access.i18n import LANGUAGES, from_accept_language
from einlass.admin.i18n import (
    format_day,
    format_money,
    format_number,
    format_when,
    translator,
)
from einlass.audit.service import Actor
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.errors import EinlassError, NotFound
from einlass.tenants.models import (
    STAFF_ROLE_OPERATOR,
    STAFF_ROLE_VIEWER,
    Merchant,
    StaffAccount,
    StaffSession,
)
from einlass.tenants.service import SLUG_PATTERN
from einlass.tenants.staff import current_staff_session, staff_actor

SESSION_COOKIE = "einlass_admin"
LANG_COOKIE = "einlass_admin_lang"
FLASH_COOKIE = "einlass_admin_flash"
LOGIN_CSRF_COOKIE = "einlass_admin_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PREFIX = "/admin"
# The admin's forms are larger than the member pages' (a subscription plan has 20 fields).
MAX_FORM_FIELDS = 60
TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = web.environment(TEMPLATE_DIR)
    env.filters["when"] = lambda value, lang: format_when(value, lang)
    env.filters["day"] = lambda value, lang: format_day(value, lang)
    env.filters["money"] = lambda amount, currency, lang: format_money(amount, currency, lang)
    env.filters["number"] = lambda value, lang: format_number(value, lang)
    return env


class AdminResponse(Exception):
    """Raised by the page helpers to answer at once (login redirect, 403, 404)."""

    def __init__(self, response: Response) -> None:
        super().__init__("admin response")
        self.response = response


def _requested_language(request: Request) -> tuple[str, bool]:
    """The page language and whether ``?lang`` chose it (then it is remembered in a cookie)."""
    explicit = request.query_params.get("lang")
    if explicit in LANGUAGES:
        return explicit, True
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LANGUAGES:
        return remembered, False
    return from_accept_language(request.headers.get("accept-language")) or "en", False


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", "").split(",", 1)[0].strip().lower()
    return request.url.scheme == "https" or proto == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def _flash_mac(secret_key: str, payload: str) -> str:
    key = hmac.new(secret_key.encode(), b"einlass/admin-flash", hashlib.sha256).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def encode_flash(secret_key: str, kind: str, text: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"k": kind, "t": text[:500]}).encode()).decode()
    return f"{payload}.{_flash_mac(secret_key, payload)}"


def decode_flash(secret_key: str, value: str | None) -> tuple[str, str] | None:
    if not value or "." not in value or len(value) > 2000:
        return None
    payload, mac = value.rsplit(".", 1)
    if not hmac.compare_digest(mac, _flash_mac(secret_key, payload)):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
        return str(data["k"]), str(data["t"])
    except (ValueError, KeyError, TypeError):
        return None


# What an action does inside its transaction; it returns the notice to show.
Work = Callable[[AsyncSession], Awaitable[str]]


@dataclass
class Page:
    """One request to the admin UI."""

    request: Request
    lang: str
    remember_lang: bool
    staff: StaffAccount | None = None
    staff_session: StaffSession | None = None
    merchant: Merchant | None = None
    _flash: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def db(self) -> Database:
        db: Database = self.request.app.state.db
        return db

    @property
    def settings(self) -> Settings:
        settings: Settings = self.request.app.state.settings
        return settings

    @property
    def actor(self) -> Actor:
        assert self.staff is not None
        return staff_actor(self.staff)

    @property
    def merchant_id(self) -> str:
        assert self.merchant is not None
        return self.merchant.id

    @property
    def is_operator(self) -> bool:
        return self.staff is not None and self.staff.role == STAFF_ROLE_OPERATOR

    @property
    def can_write(self) -> bool:
        return self.staff is not None and self.staff.role != STAFF_ROLE_VIEWER

    @property
    def csrf_token(self) -> str:
        return self.staff_session.csrf_token if self.staff_session else ""

    def t(self, key: str, **values: object) -> str:
        return translator(self.lang)(key, **values)

    def url(self, path: str = "", **query: object) -> str:
        """A link to one of this merchant's pages: ``page.url("members/mem_1")``."""
        assert self.merchant is not None
        return admin_url(f"m/{self.merchant.slug}/{path}", **query)

    # ------------------------------------------------------------------ forms

    async def form(
        self, *, write: bool = True, max_fields: int = MAX_FORM_FIELDS, max_bytes: int = web.MAX_FORM_BYTES
    ) -> web.Form:
        """The posted form; refuses (403) without the session's CSRF token, or for a viewer when ``write``."""
        form = await web.read_form(self.request, max_fields=max_fields, max_bytes=max_bytes)
        if form is None:
            raise AdminResponse(self.message("title_error", "error_too_large", status=413))
        given = form.get(CSRF_FIELD) or self.request.headers.get(CSRF_HEADER)
        if not given or not self.csrf_token or not hmac.compare_digest(given, self.csrf_token):
            raise AdminResponse(self.message("title_forbidden", "error_csrf", status=403))
        if write and not self.can_write:
            raise AdminResponse(self.message("title_forbidden", "error_read_only", status=403))
        return form

    # ------------------------------------------------------------------ responses

    def render(self, template: str, *, title: str, status: int = 200, **values: Any) -> HTMLResponse:
        flash = self._flash
        context: dict[str, Any] = {
            "page": self,
            "lang": self.lang,
            "t": self.t,
            "title": title,
            "css": "",
            "languages": web.language_menu(self.request.url.path, self.lang, _kept_query(self.request)),
            "notice": flash[1] if flash and flash[0] == "notice" else None,
            "error": flash[1] if flash and flash[0] == "error" else None,
            "nav": navigation(self),
            "status": status,
            **values,
        }
        html = environment().get_template(template).render(context)
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=PREFIX)
        if self.remember_lang:
            set_cookie(self.request, response, LANG_COOKIE, self.lang, 365 * 86400)
        return response

    def message(self, title_key: str, text_key: str, *, status: int, **values: object) -> HTMLResponse:
        return self.render(
            "message.html", title=self.t(title_key), status=status, text=self.t(text_key, **values)
        )

    def redirect(self, location: str, *, notice: str | None = None, error: str | None = None) -> Response:
        """303 to ``location``, carrying a one-time message to show there."""
        response = RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)
        if notice or error:
            kind, text = ("error", error) if error else ("notice", notice or "")
            value = encode_flash(self.settings.secret_key, kind, text)
            set_cookie(self.request, response, FLASH_COOKIE, value, 300)
        return response

    async def act(self, back: str, work: Work, *, missing: bool = False) -> Response:
        """Run ``work`` in one transaction, then redirect to ``back`` with the notice it returns.

        A refusal (any EinlassError) rolls everything back and goes to ``back`` as
        "Nothing was changed: …". With ``missing``, a NotFound means the id in the
        URL does not exist (or is another merchant's): the 404 page instead.
        """
        try:
            async with self.db.transaction() as session:
                notice = await work(session)
        except EinlassError as error:
            if missing and isinstance(error, NotFound):
                raise self.not_found() from None
            return self.redirect(back, error=self.failed(error.message))
        return self.redirect(back, notice=notice)

    def not_found(self) -> AdminResponse:
        return AdminResponse(self.message("title_not_found", "error_not_found", status=404))

    def failed(self, message: str) -> str:
        """A service's refusal for a flash message: "Nothing was changed: …"."""
        return self.t("error_nothing_changed", message=message)


def admin_url(path: str = "", **query: object) -> str:
    params = {key: str(value) for key, value in query.items() if value not in (None, "")}
    return f"{PREFIX}/{path}" + (f"?{urlencode(params)}" if params else "")


def _kept_query(request: Request) -> dict[str, str]:
    return {key: value for key, value in request.query_params.items() if key != "lang"}


def bare_page(request: Request) -> Page:
    """A page without login (the login page, errors)."""
    lang, remember = _requested_language(request)
    page = Page(request=request, lang=lang, remember_lang=remember)
    page._flash = decode_flash(page.settings.secret_key, request.cookies.get(FLASH_COOKIE))
    return page


async def staff_page(request: Request, merchant_slug: str | None = None) -> Page:
    """A page for any logged-in staff member; otherwise a redirect to the login page.

    With ``merchant_slug`` the merchant is read in the same transaction (``merchant_page`` checks it).
    """
    page = bare_page(request)
    async with page.db.transaction() as session:
        found = await current_staff_session(session, request.cookies.get(SESSION_COOKIE))
        if found is not None and merchant_slug is not None and SLUG_PATTERN.fullmatch(merchant_slug):
            page.merchant = await session.scalar(select(Merchant).where(Merchant.slug == merchant_slug))
    if found is None:
        raise AdminResponse(RedirectResponse(admin_url("login", next=_here(request)), status_code=303))
    page.staff_session, page.staff = found
    if not page.remember_lang and request.cookies.get(LANG_COOKIE) not in LANGUAGES:
        page.lang = page.staff.locale if page.staff.locale in LANGUAGES else page.lang
    return page


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query and request.method == "GET" else "")


async def merchant_page(request: Request, slug: str) -> Page:
    """A page of one merchant: its own staff, or the operator."""
    page = await staff_page(request, slug)
    assert page.staff is not None
    if page.merchant is None or (not page.is_operator and page.merchant.id != page.staff.merchant_id):
        page.merchant = None  # the menu of a page that does not exist names no merchant
        raise page.not_found()
    return page


async def operator_page(request: Request) -> Page:
    """A page only the operator may see; to anyone else it does not exist."""
    page = await staff_page(request)
    if not page.is_operator:
        raise page.not_found()
    return page


def navigation(page: Page) -> list[dict[str, Any]]:
    """The main menu: the merchant's sections, and the operator's own."""
    current = page.request.url.path
    items: list[tuple[str, str]] = []
    if page.merchant is not None:
        sections = [
            ("", "nav_dashboard"),
            ("members", "nav_members"),
            ("payments", "nav_payments"),
            ("subscriptions", "nav_subscriptions"),
            ("catalogue", "nav_catalogue"),
            ("gateways", "nav_gateways"),
            ("targets", "nav_targets"),
            ("blacklist", "nav_blacklist"),
            ("whitelist", "nav_whitelist"),
            ("audit", "nav_audit"),
            ("api-keys", "nav_api_keys"),
            ("jobs", "nav_jobs"),
        ]
        items += [(page.url(path), key) for path, key in sections]
    if page.is_operator:
        items += [(admin_url("merchants"), "nav_merchants"), (admin_url("operator/blacklist"), "nav_review")]
    result = []
    for href, key in items:
        path = href.split("?", 1)[0]
        is_current = current == path or (not path.endswith("/") and current.startswith(path + "/"))
        result.append({"href": href, "label": page.t(key), "current": is_current})
    return result
