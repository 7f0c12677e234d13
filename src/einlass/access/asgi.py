"""The front door of the hot path: ``/auth/{merchant}/{area}`` answered straight from the ASGI scope.

A forward-auth check is a few dictionary lookups (access/cache.py) and the pure
access rule, yet through FastAPI it also passed the whole application stack:
ServerErrorMiddleware, the exception and body-limit middlewares, the router,
a ``Request`` and a ``Response``. That stack cost more CPU than the decision
(bench/access_check.py measures both). ``AuthFastPath`` is the FastAPI app with
its ``__call__`` looking at the request first: a check is parsed from the scope
(path, ``Authorization``, ``Cookie``) and answered with
:func:`einlass.access.views.decide`, the same function the route uses, so the
status codes and headers are the route's. Everything else, and a check whose
decision raises (a database error while loading, say), goes through the full
application unchanged, which answers it as before. The check is not traced by
FastAPI's telemetry.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.requests import cookie_parser
from starlette.routing import compile_path
from starlette.types import Message, Receive, Scope, Send

from einlass.access.cache import AccessCache
from einlass.access.views import AUTH_METHODS, SESSION_COOKIE, decide

AUTH_ROUTE = "/auth/{merchant}/{area}"
# The route's own pattern, so both match exactly the same paths.
_AUTH_PATH = compile_path(AUTH_ROUTE)[0]
# Starlette adds HEAD to a route that allows GET.
_METHODS = frozenset({*AUTH_METHODS, "HEAD"} if "GET" in AUTH_METHODS else AUTH_METHODS)
_BODY: Message = {"type": "http.response.body", "body": b""}
_CONTENT_LENGTH = (b"content-length", b"0")


def _route_path(scope: Scope, root_path: str) -> str:
    """The path the router matches (starlette's ``get_route_path``)."""
    path: str = scope["path"]
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


class AuthFastPath(FastAPI):
    """The einlass application; forward-auth checks are answered before its middleware stack."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _METHODS:
            root_path = self.root_path or scope.get("root_path", "")
            match = _AUTH_PATH.match(_route_path(scope, root_path))
            if match is not None:
                start = await self._check(scope, match.group("merchant"), match.group("area"))
                if start is not None:
                    await send(start)
                    await send(_BODY)
                    return
        await super().__call__(scope, receive, send)

    async def _check(self, scope: Scope, merchant: str, area: str) -> Message | None:
        """The response start of a check, or None to leave the request to the application."""
        cache: AccessCache = self.state.access_cache
        authorization: str | None = None
        cookies: dict[str, str] = {}
        try:
            for name, value in scope["headers"]:
                # As starlette's Request: the first Authorization, every Cookie header.
                if name == b"authorization":
                    if authorization is None:
                        authorization = value.decode("latin-1")
                elif name == b"cookie":
                    cookies.update(cookie_parser(value.decode("latin-1")))
            status, headers = await decide(cache, merchant, area, cookies.get(SESSION_COOKIE), authorization)
            raw: list[Any] = [
                (key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()
            ]
        except Exception:
            # The application will answer, as it would have without this door (errors included).
            return None
        raw.append(_CONTENT_LENGTH)
        return {"type": "http.response.start", "status": status, "headers": raw}
