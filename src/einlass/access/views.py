"""``GET /auth/{merchant}/{area}``: the forward-auth endpoint for nginx, Traefik and Caddy.

200 with ``X-Einlass-Member`` when the member may enter, 401 without usable
credentials, 403 for a known member without access, 404 for an unknown
merchant or area. A plain Starlette route on the per-process cache: no ORM, no
session, nothing written.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request
from starlette.responses import Response

from einlass import clock
from einlass.access.cache import AccessCache, MemberEntry, MerchantEntry
from einlass.members.access import MemberStanding, access_until, may_enter

SESSION_COOKIE = "einlass_session"
# Longer credentials are refused unread; a real password is far shorter.
MAX_AUTHORIZATION = 1024
MAX_COOKIE_TOKEN = 128

# A status and the response headers (lower-case names); the body is always empty.
Decision = tuple[int, dict[str, str]]


def _unauthorized(merchant: MerchantEntry | None, reason: str) -> Decision:
    realm = (merchant.name if merchant else "einlass").replace('"', "'")
    return 401, {
        "www-authenticate": f'Basic realm="{realm}", charset="UTF-8"',
        "x-einlass-reason": reason,
        "cache-control": "no-store",
    }


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded or len(header) > MAX_AUTHORIZATION:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, separator, password = decoded.partition(":")
    if not separator or not username or not password:
        return None
    return username, password


def _header_safe(value: str) -> str:
    """Header values are latin-1 on the wire; anything else is escaped, never an error."""
    return value.encode("ascii", "backslashreplace").decode("ascii")


# A proxy's subrequest may carry the method of the request it guards.
AUTH_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def auth_check(request: Request) -> Response:
    status, headers = await decide(
        request.app.state.access_cache,
        request.path_params["merchant"],
        request.path_params["area"],
        request.cookies.get(SESSION_COOKIE),
        request.headers.get("authorization"),
    )
    return Response(status_code=status, headers=headers)


async def decide(
    cache: AccessCache, merchant_slug: str, area_slug: str, token: str | None, header: str | None
) -> Decision:
    """The answer to one check; shared by this route and the ASGI fast path (access/asgi.py)."""
    merchant = await cache.merchant(merchant_slug, area_slug)
    if merchant is None or area_slug not in merchant.areas:
        return 404, {"x-einlass-reason": "unknown merchant or area"}

    member: MemberEntry | None = None
    if token and len(token) <= MAX_COOKIE_TOKEN:
        member = await cache.by_session(merchant, token)
    if member is None:
        if header:
            credentials = _basic_credentials(header)
            if credentials is None:
                return _unauthorized(merchant, "malformed credentials")
            member = await cache.by_basic(merchant, *credentials)
            if member is None:
                return _unauthorized(merchant, "bad credentials")
        else:
            return _unauthorized(merchant, "no credentials")

    now = clock.now()
    area_id = merchant.areas[area_slug]
    standing = MemberStanding(locked=member.locked, deleted=member.deleted)
    if not may_enter(standing, member.grants, area_id, now):
        return 403, {
            "x-einlass-member": member.id,
            "x-einlass-reason": "no access",
            "cache-control": "no-store",
        }
    until = access_until(member.grants, area_id, now)
    plans = sorted({grant.plan for grant in member.grants if grant.area_id == area_id and grant.covers(now)})
    return 200, {
        "x-einlass-member": member.id,
        "x-einlass-username": _header_safe(member.username or ""),
        "x-einlass-plan": ",".join(plans),
        "x-einlass-access-until": until.isoformat() if until else "lifetime",
        "cache-control": "no-store",
    }
