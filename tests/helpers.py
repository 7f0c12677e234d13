"""Shared test helpers: posting signed webhooks and reading state through the API."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from einlass import clock

_message_ids = itertools.count(1)


async def post_generic(
    http: httpx.AsyncClient, shop: Any, payload: dict[str, Any], msg_id: str | None = None
) -> httpx.Response:
    from payloads import generic

    msg_id = msg_id or f"msg_{next(_message_ids)}"
    body, headers = generic.signed(payload, shop.generic_secret, msg_id, int(clock.now().timestamp()))
    return await http.post(f"/webhooks/{shop.slug}/generic", content=body, headers=headers)


async def post_novalnet(http: httpx.AsyncClient, shop: Any, payload: dict[str, Any]) -> httpx.Response:
    from payloads import novalnet

    body, headers = novalnet.signed(payload, shop.novalnet_key)
    return await http.post(f"/webhooks/{shop.slug}/novalnet", content=body, headers=headers)


async def post_stripe(http: httpx.AsyncClient, shop: Any, event: dict[str, Any]) -> httpx.Response:
    from payloads import stripe

    body, headers = stripe.signed(event, shop.stripe_secret, int(clock.now().timestamp()))
    return await http.post(f"/webhooks/{shop.slug}/stripe", content=body, headers=headers)


async def api(http: httpx.AsyncClient, shop: Any, method: str, path: str, **kwargs: Any) -> Any:
    response = await http.request(method, f"/api/v1{path}", headers=shop.auth, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


async def member_by_email(http: httpx.AsyncClient, shop: Any, email: str) -> dict[str, Any] | None:
    listing = await api(http, shop, "GET", "/members", params={"email": email})
    if not listing["data"]:
        return None
    return await api(http, shop, "GET", f"/members/{listing['data'][0]['id']}")  # type: ignore[no-any-return]


def has_access(member: dict[str, Any] | None, area: str = "premium") -> bool:
    return bool(member) and any(a["area"] == area and a["active"] for a in member["access"])
