"""Member pages: ``/m/{merchant}/login``, ``/m/{merchant}/logout``, ``/m/{merchant}/account``.

Plain HTML in English and German, reached directly or through the merchant's
proxy under the merchant's host; docs/member-pages.md describes the behaviour
and the merchant settings. The rules (sessions, throttling, CSRF tokens) are
in ``einlass.access.sessions``; this module is the HTTP side.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import HTMLResponse, RedirectResponse, Response

from einlass import clock, web
from einlass.access import account_subscriptions, sessions
from einlass.access.i18n import (
    LANGUAGES,
    format_moment,
    from_accept_language,
    language,
    translator,
)
from einlass.access.models import MemberSession
from einlass.access.views import SESSION_COOKIE
from einlass.billing.models import Area
from einlass.db.engine import Database
from einlass.errors import EinlassError, InvalidInput
from einlass.members.models import Grant, Member
from einlass.members.service import access_of, check_password, get_member, grants_of, hashed, store_password
from einlass.provisioning.hashing import precompute_push_hashes
from einlass.tenants.models import Merchant
from einlass.tenants.service import SLUG_PATTERN

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "einlass_login_csrf"
MAX_NEXT = 2048
MAX_USERNAME = 320
MAX_PASSWORD = 256

TEMPLATE_DIR = Path(__file__).parent / "templates"
# Unlike the /report pages no form-action: the login form's redirect may lead to ``next`` on another host.
SECURITY_HEADERS = web.security_headers(referrer_policy="same-origin")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+/?$")


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return web.environment(TEMPLATE_DIR)


# --------------------------------------------------------------------------- request rules (pure)


def forwarded_prefix(header: str | None) -> str:
    """The path prefix the merchant's proxy serves einlass under, or "" when absent or unusable."""
    if not header or len(header) > 200 or not _PREFIX.fullmatch(header.strip()):
        return ""
    prefix = header.strip().rstrip("/")
    if any(segment in (".", "..") for segment in prefix.split("/")):
        return ""
    return prefix


def came_over_https(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    proto = request.headers.get("x-forwarded-proto", "")
    return proto.split(",", 1)[0].strip().lower() == "https"


def client_address(
    peer: str | None,
    forwarded_for: list[str],
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
) -> str:
    """Who is asking: the socket peer, or behind trusted proxies the hop that reached the first of them.

    X-Forwarded-For is read from the right, skipping the trusted proxies, so
    that addresses a client wrote into the header itself are never believed.
    """

    def parsed(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(value.strip())
        except ValueError:
            return None

    def is_trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in network for network in trusted)

    peer_ip = parsed(peer or "")
    if peer_ip is None:
        return peer or "unknown"
    if not is_trusted(peer_ip):
        return str(peer_ip)
    hops = [hop for header in forwarded_for for hop in header.split(",")][-20:]
    for hop in reversed(hops):
        hop_ip = parsed(hop)
        if hop_ip is None:
            break
        if not is_trusted(hop_ip):
            return str(hop_ip)
    return str(peer_ip)


def safe_next(value: str | None, allowed_hosts: frozenset[str]) -> str | None:
    """Where to go after login: a path on this host, or a URL on an allowed host; else None."""
    if not value or len(value) > MAX_NEXT or "\\" in value:
        return None
    if any(ord(char) <= 0x20 or 0x7F <= ord(char) <= 0x9F for char in value):
        return None
    if value.startswith("/"):
        return None if value.startswith("//") else value
    if not allowed_hosts:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    names = {host} if port is None else {f"{host}:{port}"}
    if port == {"http": 80, "https": 443}[scheme]:
        names.add(host)
    return value if names & allowed_hosts else None


def choose_language(explicit: str | None, member_locale: str | None, accept: str | None, default: str) -> str:
    return explicit or language(member_locale) or from_accept_language(accept) or default


# --------------------------------------------------------------------------- the page context


@dataclass
class Page:
    request: Request
    db: Database
    secret_key: str
    merchant: Merchant
    settings: sessions.PageSettings
    explicit_lang: str | None
    lang: str
    secure: bool
    base: str  # "" for links relative to the page, or "{prefix}/m/{slug}/"

    def link(self, name: str, **query: str) -> str:
        params = {"lang": self.explicit_lang} if self.explicit_lang else {}
        params.update({key: value for key, value in query.items() if value})
        return self.base + name + (f"?{urlencode(params)}" if params else "")

    @property
    def links(self) -> dict[str, str]:
        return {name: self.link(name) for name in ("login", "logout", "account")}

    @property
    def address(self) -> str:
        peer = self.request.client.host if self.request.client else None
        return client_address(
            peer, self.request.headers.getlist("x-forwarded-for"), self.settings.trusted_proxies
        )

    def for_member(self, member: Member | None) -> None:
        """Once the member is known, their language wins over the browser's (but not over ?lang)."""
        self.lang = choose_language(
            self.explicit_lang,
            member.locale if member else None,
            self.request.headers.get("accept-language"),
            self.settings.locale,
        )


def _explicit_lang(request: Request) -> str | None:
    value = request.query_params.get("lang")
    return value if value in LANGUAGES else None


async def _merchant(session: AsyncSession, slug: str) -> Merchant | None:
    if not SLUG_PATTERN.fullmatch(slug):
        return None
    return await session.scalar(select(Merchant).where(Merchant.slug == slug))


def _page(request: Request, merchant: Merchant, member: Member | None = None) -> Page:
    settings = sessions.page_settings(merchant)
    prefix = forwarded_prefix(request.headers.get("x-forwarded-prefix"))
    page = Page(
        request=request,
        db=request.app.state.db,
        secret_key=request.app.state.settings.secret_key,
        merchant=merchant,
        settings=settings,
        explicit_lang=_explicit_lang(request),
        lang=settings.locale,
        secure=came_over_https(request),
        base=f"{prefix}/m/{merchant.slug}/" if prefix else "",
    )
    page.for_member(member)
    return page


def _session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token if sessions.plausible_token(token) else None


# --------------------------------------------------------------------------- responses


def _render(
    page: Page | None,
    template: str,
    *,
    title: str,
    status: int = 200,
    lang: str | None = None,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    lang = lang or (page.lang if page else "en")
    translate = translator(lang)
    languages = []
    if page is not None:
        current = page.request.url.path.rstrip("/").rsplit("/", 1)[-1]
        keep = {"next": values["next"]} if values.get("next") else {}
        languages = web.language_menu(f"{page.base}{current}", lang, keep)
    context: dict[str, Any] = {
        "lang": lang,
        "t": translate,
        "title": translate(title),
        "merchant_name": page.merchant.name if page else "",
        "css": web.STYLE,
        "languages": languages,
        "links": page.links if page else {},
        "notice": None,
        "error": None,
        **values,
    }
    html = _environment().get_template(template).render(context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _not_found(request: Request) -> HTMLResponse:
    lang = _explicit_lang(request) or from_accept_language(request.headers.get("accept-language")) or "en"
    return _render(
        None,
        "message.html",
        title="title_not_found",
        status=404,
        lang=lang,
        error=translator(lang)("error_not_found"),
        link_href=None,
    )


def _too_large(page: Page) -> HTMLResponse:
    return _render(
        page,
        "message.html",
        title="title_error",
        status=413,
        error=_t(page, "error_too_large"),
        link_href=None,
    )


def _t(page: Page, key: str, **values: object) -> str:
    return translator(page.lang)(key, **values)


def _redirect(page: Page, location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def _set_cookie(page: Page, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=page.settings.cookie_path,
        domain=page.settings.cookie_domain,
        secure=page.secure,
        httponly=True,
        samesite="lax",
    )


def _clear_cookie(page: Page, response: Response, name: str) -> None:
    response.delete_cookie(
        name,
        path=page.settings.cookie_path,
        domain=page.settings.cookie_domain,
        secure=page.secure,
        httponly=True,
        samesite="lax",
    )


# --------------------------------------------------------------------------- login


def _login_form(
    page: Page,
    *,
    status: int = 200,
    error: str | None = None,
    username: str = "",
    next_url: str | None = None,
    logged_in_as: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The login form with a login CSRF token: the one in the cookie while it is valid, else a new one."""
    token = page.request.cookies.get(LOGIN_CSRF_COOKIE)
    if not sessions.login_csrf_valid(page.secret_key, token) or token is None:
        token = sessions.new_login_csrf(page.secret_key)
    response = _render(
        page,
        "login.html",
        title="title_login",
        status=status,
        headers=headers,
        error=error,
        username=username[:MAX_USERNAME],
        next=next_url or "",
        csrf_token=token,
        logged_in_as=logged_in_as,
    )
    _set_cookie(page, response, LOGIN_CSRF_COOKIE, token, int(sessions.CSRF_LIFETIME.total_seconds()))
    return response


@router.get("/m/{merchant}/login")
async def login_page(request: Request, merchant: str) -> Response:
    db: Database = request.app.state.db
    async with db.transaction() as session:
        found = await _merchant(session, merchant)
        if found is None:
            return _not_found(request)
        current = await sessions.current_session(session, found.id, _session_token(request))
    member = current[1] if current else None
    page = _page(request, found, member)
    next_url = safe_next(request.query_params.get("next"), page.settings.allowed_hosts)
    return _login_form(page, next_url=next_url, logged_in_as=member.username if member else None)


@router.post("/m/{merchant}/login")
async def login(request: Request, merchant: str) -> Response:
    db: Database = request.app.state.db
    async with db.transaction() as session:
        found = await _merchant(session, merchant)
    if found is None:
        return _not_found(request)
    page = _page(request, found)
    form = await web.read_form(request)
    if form is None:
        return _too_large(page)
    next_url = safe_next(form.get("next"), page.settings.allowed_hosts)
    username = form.get("username", "").strip()
    if not sessions.double_submit_valid(
        page.secret_key, request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf_token")
    ):
        # The form comes again with a valid token (the cookie's, or a new one), so trying again works.
        return _login_form(
            page, status=403, error=_t(page, "error_csrf"), username=username, next_url=next_url
        )
    password = form.get("password", "")
    if not username or not password:
        return _login_form(
            page, status=400, error=_t(page, "error_missing"), username=username, next_url=next_url
        )

    limits = page.settings
    attempt = await sessions.begin_attempt(
        db,
        found.id,
        sessions.username_key(page.secret_key, username),
        sessions.address_key(page.secret_key, page.address),
    )
    wait = await sessions.retry_after(db, attempt, limits)
    if wait is not None:
        await sessions.forget_attempt(db, attempt)
        return _rate_limited(page, wait, username=username, next_url=next_url)

    member: Member | None = None
    if len(username) <= MAX_USERNAME and len(password) <= MAX_PASSWORD:
        async with db.transaction() as session:
            member = await sessions.member_by_username(session, found.id, username)
    if not await sessions.password_matches(member, password[:MAX_PASSWORD]) or member is None:
        await sessions.prune_failures(db, found.id, limits.failure_window)
        return _login_form(
            page, status=401, error=_t(page, "error_credentials"), username=username, next_url=next_url
        )

    async with db.transaction() as session:
        await sessions.forget_in(session, attempt, username_failures=True)
        previous = await sessions.current_session(session, found.id, _session_token(request))
        if previous is not None:
            await sessions.end_session(session, previous[0], sessions.member_actor(previous[1].id))
        issued = await sessions.start_session(
            session,
            found,
            member,
            lifetime=limits.session_lifetime,
            user_agent=request.headers.get("user-agent"),
        )
    response = _redirect(page, next_url or page.link("account"))
    _set_cookie(page, response, SESSION_COOKIE, issued.token, int(limits.session_lifetime.total_seconds()))
    _clear_cookie(page, response, LOGIN_CSRF_COOKIE)
    return response


def _wait_message(page: Page, wait: int) -> str:
    minutes = max(1, math.ceil(wait / 60))
    if minutes == 1:
        return _t(page, "error_rate_limited_one")
    return _t(page, "error_rate_limited", minutes=minutes)


def _rate_limited(page: Page, wait: int, *, username: str, next_url: str | None) -> HTMLResponse:
    return _login_form(
        page,
        status=429,
        error=_wait_message(page, wait),
        username=username,
        next_url=next_url,
        headers={"retry-after": str(wait)},
    )


# --------------------------------------------------------------------------- logout


@router.get("/m/{merchant}/logout")
async def logout_page(request: Request, merchant: str) -> Response:
    db: Database = request.app.state.db
    async with db.transaction() as session:
        found = await _merchant(session, merchant)
        if found is None:
            return _not_found(request)
        current = await sessions.current_session(session, found.id, _session_token(request))
    page = _page(request, found, current[1] if current else None)
    if current is None:
        return _render(page, "logout.html", title="title_logout", csrf_token=None, logged_out=False)
    member_session, member = current
    return _render(
        page,
        "logout.html",
        title="title_logout",
        csrf_token=member_session.csrf_token,
        logged_in_as=member.username,
    )


@router.post("/m/{merchant}/logout")
async def logout(request: Request, merchant: str) -> Response:
    db: Database = request.app.state.db
    async with db.transaction() as session:
        found = await _merchant(session, merchant)
    if found is None:
        return _not_found(request)
    page = _page(request, found)
    form = await web.read_form(request)
    if form is None:
        return _too_large(page)
    async with db.transaction() as session:
        current = await sessions.current_session(session, found.id, _session_token(request))
        if current is not None:
            member_session, member = current
            page.for_member(member)
            if not sessions.same_token(member_session.csrf_token, form.get("csrf_token")):
                return _refused(page, "account")
            await sessions.end_session(session, member_session, sessions.member_actor(member.id))
    # Without a live session there is nothing to end; the cookie goes either way.
    response = _render(page, "logout.html", title="title_logged_out", csrf_token=None, logged_out=True)
    _clear_cookie(page, response, SESSION_COOKIE)
    return response


def _refused(page: Page, back: str, message: str = "error_csrf") -> HTMLResponse:
    return _render(
        page,
        "message.html",
        title="title_forbidden",
        status=403,
        error=_t(page, message),
        link_href=page.link(back),
        link_text=_t(page, "to_account" if back == "account" else "to_login"),
    )


# --------------------------------------------------------------------------- account


@dataclass(frozen=True)
class AccessRow:
    name: str
    status: str
    until: str


def _ended_at(grants: list[Grant], area_id: str, now: datetime) -> datetime | None:
    ends = []
    for grant in grants:
        if grant.area_id != area_id:
            continue
        moments = [moment for moment in (grant.ends_at, grant.revoked_at) if moment is not None]
        if moments and min(moments) <= now:
            ends.append(min(moments))
    return max(ends, default=None)


async def _access_rows(session: AsyncSession, page: Page, member: Member) -> list[AccessRow]:
    now = clock.now()
    names = dict(
        (
            await session.execute(select(Area.id, Area.name).where(Area.merchant_id == member.merchant_id))
        ).all()
    )
    grants = await grants_of(session, member)
    rows = []
    for access in await access_of(session, member, now):
        if access.active:
            until = format_moment(access.until, page.lang) if access.until else _t(page, "no_end")
        else:
            ended = _ended_at(grants, access.area_id, now)
            until = format_moment(ended, page.lang) if ended else "\u2013"
        rows.append(
            AccessRow(
                name=names.get(access.area_id, access.area_slug),
                status=_t(page, "active" if access.active else "ended"),
                until=until,
            )
        )
    return rows


async def _account(
    session: AsyncSession,
    page: Page,
    member_session: MemberSession,
    member: Member,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    return _render(
        page,
        "account.html",
        title="title_account",
        status=status,
        headers=headers,
        error=error,
        notice=notice,
        member_name=member.name,
        member_email=member.email or member.username or "",
        username=member.username or "",
        access=await _access_rows(session, page, member),
        subscriptions=await account_subscriptions.subscription_rows(session, member, page.lang),
        # The earliest resume date a pause form offers.
        tomorrow=(clock.now() + timedelta(days=1)).date().isoformat(),
        csrf_token=member_session.csrf_token,
    )


@router.get("/m/{merchant}/account")
async def account_page(request: Request, merchant: str) -> Response:
    db: Database = request.app.state.db
    async with db.transaction() as session:
        found = await _merchant(session, merchant)
        if found is None:
            return _not_found(request)
        current = await sessions.current_session(session, found.id, _session_token(request))
        page = _page(request, found, current[1] if current else None)
        if current is None:
            return _redirect(page, page.link("login"))
        member_session, member = current
        sessions.touch(member_session)
        return await _account(session, page, member_session, member)


def _new_password_problem(new: str, repeat: str) -> str | None:
    """The message key for what is wrong with the new password, or None (members.service decides)."""
    if new != repeat:
        return "error_password_mismatch"
    try:
        check_password(new)
    except InvalidInput:
        return "error_password_long" if len(new) > MAX_PASSWORD else "error_password_short"
    return None


async def _subscription_action(
    db: Database, page: Page, member_session: MemberSession, member: Member, form: dict[str, str]
) -> HTMLResponse:
    """Pause, resume or cancel from the account page; the page comes back with the outcome."""
    try:
        async with db.transaction() as session:
            notice = await account_subscriptions.act(
                session, page.merchant, member, form, clock.now(), page.lang
            )
    except EinlassError as error:
        # The transaction rolled back: nothing was changed.
        status, message = account_subscriptions.problem_of(error)
        async with db.transaction() as session:
            return await _account(
                session, page, member_session, member, status=status, error=_t(page, message)
            )
    async with db.transaction() as session:
        return await _account(session, page, member_session, member, notice=notice)


@router.post("/m/{merchant}/account")
async def account_post(request: Request, merchant: str) -> Response:
    """The password form, or with ``subscription_action`` a subscription's pause, resume or cancel form."""
    db: Database = request.app.state.db
    async with db.transaction() as session:
        found = await _merchant(session, merchant)
        if found is None:
            return _not_found(request)
        current = await sessions.current_session(session, found.id, _session_token(request))
    page = _page(request, found, current[1] if current else None)
    form = await web.read_form(request)
    if form is None:
        return _too_large(page)
    if current is None:
        return _refused(page, "login", "error_session")
    member_session, member = current
    if not sessions.same_token(member_session.csrf_token, form.get("csrf_token")):
        return _refused(page, "account")
    if "subscription_action" in form:
        return await _subscription_action(db, page, member_session, member, form)

    async def again(status: int, error: str, headers: dict[str, str] | None = None) -> HTMLResponse:
        async with db.transaction() as session:
            return await _account(
                session, page, member_session, member, status=status, error=error, headers=headers
            )

    current_password = form.get("current_password", "")
    new_password = form.get("new_password", "")
    problem = _new_password_problem(new_password, form.get("new_password_repeat", ""))
    if problem is not None:
        return await again(400, _t(page, problem))

    limits = page.settings
    attempt = await sessions.begin_attempt(
        db,
        found.id,
        sessions.username_key(page.secret_key, member.username or member.id),
        sessions.address_key(page.secret_key, page.address),
    )
    wait = await sessions.retry_after(db, attempt, limits)
    if wait is not None:
        await sessions.forget_attempt(db, attempt)
        return await again(429, _wait_message(page, wait), {"retry-after": str(wait)})
    if len(current_password) > MAX_PASSWORD or not await sessions.password_matches(member, current_password):
        await sessions.prune_failures(db, found.id, limits.failure_window)
        return await again(400, _t(page, "error_current_password"))

    password_hash = await hashed(new_password)
    push_hashes = await precompute_push_hashes(db, found.id, new_password)
    async with db.transaction() as session:
        await sessions.forget_in(session, attempt, username_failures=True)
        fresh = await get_member(session, found.id, member.id, for_update=True)
        if fresh.deleted_at is not None or fresh.locked_at is not None:
            return _refused(page, "login", "error_session")
        actor = sessions.member_actor(member.id)
        await store_password(
            session,
            fresh,
            password_hash,
            actor,
            "member.password_changed",
            password=new_password,
            push_hashes=push_hashes,
        )
        await sessions.end_other_sessions(session, found.id, member.id, member_session.id, actor)
        return await _account(session, page, member_session, fresh, notice=_t(page, "password_changed"))
