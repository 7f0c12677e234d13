"""``/report``: people whose data was misused report it, withdraw it or object to a listing.

HTML pages in English and German (``?lang=`` or Accept-Language) and the same
under ``/report/api/...`` as JSON. Every request ends in the same answer ("if
the address is valid, we sent you a link"), so these pages never tell whether
anything is listed; the emailed link does the rest. docs/report-page.md
describes the behaviour; the service is ``einlass.screening.public``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from jinja2 import Environment
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import HTMLResponse, Response

from einlass import web
from einlass.access.i18n import from_accept_language
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.errors import InvalidInput
from einlass.rest.common import error_body
from einlass.screening import public
from einlass.screening.identifiers import Identifier
from einlass.screening.public_links import (
    CSRF_LIFETIME,
    LANGUAGES,
    PURPOSE_APPEAL,
    PURPOSE_REPORT,
    PURPOSE_WITHDRAW,
    TEMPLATE_DIR,
    LinkInvalid,
    LinkToken,
    csrf_signed,
    csrf_valid,
    link_email,
    new_csrf,
    open_link,
    send_link_email,
    text,
)

router = APIRouter(include_in_schema=False)

CSRF_COOKIE = "einlass_report_csrf"
FORM_FIELDS = ("email", "phone", "iban", "name", "postcode", "statement")

# As on the member pages (einlass.web), and forms post only here; the confirm page's URL holds
# the link's token, so it is never sent on as a referrer.
SECURITY_HEADERS = web.security_headers(referrer_policy="no-referrer", form_action="'self'")


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return web.environment(TEMPLATE_DIR)


# --------------------------------------------------------------------------- the page


@dataclass
class Page:
    request: Request
    settings: Settings
    lang: str
    explicit_lang: str | None

    @property
    def db(self) -> Database:
        database: Database = self.request.app.state.db
        return database

    def link(self, path: str, **query: str) -> str:
        params = {"lang": self.explicit_lang} if self.explicit_lang else {}
        params.update(query)
        return path + (f"?{urlencode(params)}" if params else "")

    @property
    def address(self) -> str:
        # The socket peer: behind a proxy, see docs/report-page.md (a trusted-proxy setting is proposed).
        return self.request.client.host if self.request.client else "unknown"


def _page(request: Request) -> Page:
    explicit = request.query_params.get("lang")
    explicit = explicit if explicit in LANGUAGES else None
    lang = explicit or from_accept_language(request.headers.get("accept-language")) or "en"
    return Page(request, request.app.state.settings, lang, explicit)


def _render(
    page: Page,
    template: str,
    *,
    title: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    keep: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    def translate(key: str, **format_values: object) -> str:
        return text(page.lang, key, **format_values)

    languages = web.language_menu(page.request.url.path, page.lang, keep)
    links = {purpose: page.link(path) for purpose, path in _FORM_PATHS.items()}
    links["confirm"] = page.link("/report/confirm")
    context: dict[str, Any] = {
        "lang": page.lang,
        "t": translate,
        "title": translate(title),
        "css": web.STYLE,
        "languages": languages,
        "links": links,
        "notice": None,
        "error": None,
        "form": dict.fromkeys(FORM_FIELDS, ""),
        **values,
    }
    html = _environment().get_template(template).render(context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _with_csrf(page: Page, template: str, *, title: str, **values: Any) -> HTMLResponse:
    """A page with a form: the CSRF token of the cookie while it is valid, else a new one."""
    token = page.request.cookies.get(CSRF_COOKIE)
    if token is None or not csrf_signed(page.settings.secret_key, token):
        token = new_csrf(page.settings.secret_key)
    response = _render(page, template, title=title, csrf_token=token, **values)
    response.set_cookie(
        CSRF_COOKIE,
        token,
        max_age=int(CSRF_LIFETIME.total_seconds()),
        path="/report",
        secure=page.request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


# --------------------------------------------------------------------------- shared by pages and API


def _limiter(request: Request) -> public.RequestLimiter:
    state = request.app.state
    if not hasattr(state, "public_report_limiter"):
        state.public_report_limiter = public.RequestLimiter()
    limiter: public.RequestLimiter = state.public_report_limiter
    return limiter


def _retry_after(page: Page, email: Identifier) -> int | None:
    secret = page.settings.secret_key
    return _limiter(page.request).retry_after(
        public.limit_key(secret, "address", page.address),
        public.limit_key(secret, "email", email.value),
    )


async def _start(page: Page, purpose: str, values: dict[str, str | None]) -> LinkToken:
    """Parse, then file (a report) or just sign (withdrawal, appeal); raises InvalidInput."""
    if purpose == PURPOSE_REPORT:
        report = public.parse_report(**{name: values.get(name) for name in FORM_FIELDS})
        async with page.db.transaction() as session:
            return await public.request_report(session, page.settings, report, page.lang)
    email = public.parse_email(values.get("email"))
    if purpose == PURPOSE_WITHDRAW:
        return public.request_withdrawal(page.settings, email, page.lang)
    statement = public.clean_statement(values.get("statement"))
    if statement is None:
        raise InvalidInput("statement is required", param="statement", code="statement_missing")
    return public.request_appeal(page.settings, email, statement, page.lang)


def _check(purpose: str, values: dict[str, str | None], consent: bool) -> Identifier:
    """The email, once the input is valid and consent is given (InvalidInput otherwise)."""
    email = public.parse_email(values.get("email"))
    if purpose == PURPOSE_REPORT:
        public.parse_report(**{name: values.get(name) for name in FORM_FIELDS})
    if purpose in (PURPOSE_REPORT, PURPOSE_APPEAL) and not consent:
        raise InvalidInput("consent to the processing is required", param="consent")
    return email


async def _send(page: Page, values: dict[str, str | None], link: LinkToken) -> None:
    email = public.parse_email(values.get("email"))
    await send_link_email(page.settings, link_email(page.settings, email, link, values.get("email") or ""))


# --------------------------------------------------------------------------- pages

_FORM_PATHS = {
    PURPOSE_REPORT: "/report",
    PURPOSE_WITHDRAW: "/report/withdraw",
    PURPOSE_APPEAL: "/report/appeal",
}
_TEMPLATES = {PURPOSE_REPORT: "report.html", PURPOSE_WITHDRAW: "withdraw.html", PURPOSE_APPEAL: "appeal.html"}


def _error_key(error: InvalidInput) -> str:
    if error.code == "statement_missing":
        return "error_statement_missing"
    return f"error_{error.param}" if error.param in _FIELD_ERRORS else "error_email"


_FIELD_ERRORS = frozenset({*FORM_FIELDS, "name_postcode", "consent"})


def _error(page: Page, status: int, message: str) -> HTMLResponse:
    return _render(page, "message.html", title="title_error", status=status, error=text(page.lang, message))


async def _form_page(request: Request, purpose: str) -> Response:
    return _with_csrf(_page(request), _TEMPLATES[purpose], title=f"title_{purpose}")


async def _form_post(request: Request, purpose: str) -> Response:
    page = _page(request)
    form = await web.read_form(request)
    if form is None:
        return _error(page, 413, "error_too_large")
    values: dict[str, str | None] = {name: form.get(name, "")[:2100] for name in FORM_FIELDS}

    def again(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
        response = _with_csrf(page, _TEMPLATES[purpose], title=f"title_{purpose}", error=error, form=values)
        response.status_code = status
        response.headers.update(headers or {})
        return response

    secret = page.settings.secret_key
    if not csrf_valid(secret, request.cookies.get(CSRF_COOKIE), form.get("csrf_token")):
        return again(403, text(page.lang, "error_csrf"))
    try:
        email = _check(purpose, values, form.get("consent") == "yes")
        wait = _retry_after(page, email)
        if wait is not None:
            message = text(page.lang, "error_too_many", minutes=max(1, math.ceil(wait / 60)))
            return again(429, message, {"retry-after": str(wait)})
        link = await _start(page, purpose, values)
    except InvalidInput as error:
        return again(400, text(page.lang, _error_key(error)))
    await _send(page, values, link)
    return _render(page, "message.html", title="title_sent", notice=text(page.lang, "sent"))


def _form_routes(purpose: str) -> None:
    """``GET`` shows the purpose's form, ``POST`` takes it."""

    async def form_page(request: Request) -> Response:
        return await _form_page(request, purpose)

    async def form_post(request: Request) -> Response:
        return await _form_post(request, purpose)

    router.add_api_route(_FORM_PATHS[purpose], form_page, methods=["GET"], name=f"{purpose}_page")
    router.add_api_route(_FORM_PATHS[purpose], form_post, methods=["POST"], name=purpose)


for _purpose in _FORM_PATHS:
    _form_routes(_purpose)


@router.get("/report/confirm")
async def confirm_page(request: Request) -> Response:
    """Shows a button only: mail clients fetch links on their own, and that must change nothing."""
    page = _page(request)
    token = request.query_params.get("token", "")
    try:
        link = open_link(page.settings.secret_key, token)
    except LinkInvalid:
        return _error(page, 400, "error_link")
    if page.explicit_lang is None:
        page.lang = link.lang
    return _with_csrf(
        page, "confirm.html", title="title_confirm", purpose=link.purpose, token=token, keep={"token": token}
    )


@router.post("/report/confirm")
async def confirm(request: Request) -> Response:
    page = _page(request)
    form = await web.read_form(request)
    if form is None:
        return _error(page, 413, "error_too_large")
    if not csrf_valid(page.settings.secret_key, request.cookies.get(CSRF_COOKIE), form.get("csrf_token")):
        return _error(page, 403, "error_csrf")
    try:
        async with page.db.transaction() as session:
            outcome = await public.follow_link(session, page.settings, form.get("token"))
    except LinkInvalid:
        return _error(page, 400, "error_link")
    if page.explicit_lang is None:
        page.lang = outcome.lang
    return _render(
        page, "message.html", title="title_done", notice=text(page.lang, f"done_{outcome.purpose}")
    )


# --------------------------------------------------------------------------- JSON API


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    lang: Literal["en", "de"] = "en"


class ReportBody(_Body):
    phone: str | None = Field(default=None, max_length=40)
    iban: str | None = Field(default=None, max_length=50)
    name: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, max_length=20)
    statement: str | None = Field(default=None, max_length=public.MAX_STATEMENT)
    consent: bool = False


class WithdrawalBody(_Body):
    pass


class AppealBody(_Body):
    statement: str = Field(max_length=public.MAX_STATEMENT)
    consent: bool = False


class ConfirmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=8000)


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


async def _api_request(request: Request, purpose: str, body: _Body) -> JSONResponse:
    page = _page(request)
    page.lang = body.lang
    values: dict[str, str | None] = {name: getattr(body, name, None) for name in FORM_FIELDS}
    email = _check(purpose, values, bool(getattr(body, "consent", True)))
    wait = _retry_after(page, email)
    if wait is not None:
        message = f"too many requests; try again in {wait} seconds"
        return _json(error_body("rate_limit_error", "rate_limited", message), 429, {"retry-after": str(wait)})
    await _send(page, values, await _start(page, purpose, values))
    return _json({"status": "sent", "message": text("en", "sent")}, 202)


@router.post("/report/api/reports")
async def api_report(request: Request, body: ReportBody) -> JSONResponse:
    return await _api_request(request, PURPOSE_REPORT, body)


@router.post("/report/api/withdrawals")
async def api_withdrawal(request: Request, body: WithdrawalBody) -> JSONResponse:
    return await _api_request(request, PURPOSE_WITHDRAW, body)


@router.post("/report/api/appeals")
async def api_appeal(request: Request, body: AppealBody) -> JSONResponse:
    return await _api_request(request, PURPOSE_APPEAL, body)


@router.post("/report/api/confirm")
async def api_confirm(request: Request, body: ConfirmBody) -> JSONResponse:
    """Raises LinkInvalid (400, code ``link_invalid``) for an expired or altered token."""
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    async with db.transaction() as session:
        outcome = await public.follow_link(session, settings, body.token)
    return _json({"status": "done", "purpose": outcome.purpose})
