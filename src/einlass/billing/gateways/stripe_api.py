"""Subscription actions sent to Stripe's REST API.

Stripe's API takes form-encoded bodies (``application/x-www-form-urlencoded``,
nested parameters as ``pause_collection[behavior]=void``), authenticates with
``Authorization: Bearer <secret key>`` (the merchant's ``api_key``: a secret or
restricted key with write access to subscriptions) and makes a POST safe to
repeat under an ``Idempotency-Key``: einlass sends the action id, so a retry
after a lost answer does not act twice.

| action | request |
| --- | --- |
| pause | ``POST /v1/subscriptions/{id}`` ``pause_collection[behavior]=void`` (+ ``[resumes_at]``) |
| resume | ``POST /v1/subscriptions/{id}`` ``pause_collection=`` (an empty value unsets it) |
| cancel at period end | ``POST /v1/subscriptions/{id}`` ``cancel_at_period_end=true`` |
| cancel now | ``DELETE /v1/subscriptions/{id}`` |
| change plan | ``GET /v1/subscriptions/{id}`` for the item, then ``POST`` ``items[0][id]``, ``items[0][price]``, ``proration_behavior`` |

A change of plan replaces the price of the subscription's first item. An upgrade
(``at_period_end`` false) is billed at once for the rest of the period
(``proration_behavior=always_invoice``); a downgrade uses ``none``: no credit, and
the new price is billed from the next renewal. Stripe shows the new price on the
subscription at once; holding the old price until the period ends would need a
subscription schedule, which einlass does not create.

Errors: Stripe answers ``{"error": {"type", "code", "message"}}``. A 4xx is a
refusal (``ActionRefused`` with Stripe's message, shown on the action); 409
(an idempotent request still in progress), 429, 5xx and network errors are
``GatewayUnavailable`` and retried, as is any answer Stripe marks
``Stripe-Should-Retry: true``. The key is never logged nor put in a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from einlass.billing.subscriptions.actions import (
    ActionRefused,
    ActionRequest,
    ActionResult,
    GatewayUnavailable,
)
from einlass.billing.subscriptions.models import (
    ACTION_CANCEL,
    ACTION_CHANGE_PLAN,
    ACTION_PAUSE,
    ACTION_RESUME,
)
from einlass.config import Settings

# What einlass keeps of Stripe's answer (the whole Subscription object is long).
KEPT_FIELDS = (
    "id",
    "object",
    "status",
    "cancel_at_period_end",
    "cancel_at",
    "canceled_at",
    "ended_at",
    "pause_collection",
    "current_period_end",
)
RETRYABLE_STATUSES = frozenset({409, 429})
MAX_COMMENT = 500

Form = Sequence[tuple[str, str]]


class StripeApi:
    async def perform(
        self, request: ActionRequest, secrets: Mapping[str, str], settings: Settings
    ) -> ActionResult:
        api_key = secrets.get("api_key")
        if not api_key:
            raise ActionRefused(
                "no Stripe api_key is configured for this merchant: add a secret or restricted key "
                "with write access to subscriptions to the Stripe gateway's secrets"
            )
        async with httpx.AsyncClient(
            base_url=settings.stripe_api_url.rstrip("/"),
            timeout=httpx.Timeout(settings.gateway_api_timeout_s),
            follow_redirects=False,
            headers={"authorization": f"Bearer {api_key}", "accept": "application/json"},
        ) as client:
            call = _Call(client, request)
            if request.kind == ACTION_PAUSE:
                answer = await call.update(_pause_form(request))
            elif request.kind == ACTION_RESUME:
                answer = await call.update([("pause_collection", "")])
            elif request.kind == ACTION_CANCEL and request.at_period_end:
                answer = await call.update([("cancel_at_period_end", "true"), *_comment(request)])
            elif request.kind == ACTION_CANCEL:
                answer = await call.cancel_now()
            elif request.kind == ACTION_CHANGE_PLAN:
                answer = await call.change_price()
            else:
                raise ActionRefused(f"Stripe has no action {request.kind!r}")
        return ActionResult(response=_kept(answer))


class _Call:
    """The requests of one action against one subscription."""

    def __init__(self, client: httpx.AsyncClient, request: ActionRequest) -> None:
        self.client = client
        self.request = request
        self.path = f"/v1/subscriptions/{quote(request.subscription_ref, safe='')}"

    async def update(self, form: Form) -> dict[str, Any]:
        return await self._send("POST", form)

    async def cancel_now(self) -> dict[str, Any]:
        try:
            return await self._send("DELETE", _comment(self.request))
        except ActionRefused as refused:
            # A retry after a lost answer finds the subscription cancelled already: done.
            try:
                current = await self._send("GET", ())
            except ActionRefused:
                raise refused from None
            if current.get("status") == "canceled":
                return current
            raise

    async def change_price(self) -> dict[str, Any]:
        if not self.request.product_ref:
            raise ActionRefused("the new plan has no Stripe price to switch to")
        current = await self._send("GET", ())
        item_id = _first_item_id(current)
        upgrade = not self.request.at_period_end
        return await self.update(
            [
                ("items[0][id]", item_id),
                ("items[0][price]", self.request.product_ref),
                ("proration_behavior", "always_invoice" if upgrade else "none"),
            ]
        )

    async def _send(self, method: str, form: Form) -> dict[str, Any]:
        headers: dict[str, str] = {}
        content = None
        url = self.path
        if method == "POST":
            headers["idempotency-key"] = self.request.action_id
            headers["content-type"] = "application/x-www-form-urlencoded"
            content = urlencode(list(form)).encode()
        elif form:
            # Stripe reads the parameters of GET and DELETE from the query string.
            url = f"{url}?{urlencode(list(form))}"
        try:
            response = await self.client.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException as error:
            raise GatewayUnavailable(f"Stripe did not answer in time ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise GatewayUnavailable(
                f"Stripe could not be reached ({type(error).__name__}: {error})"
            ) from None
        return _answer(response)


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    should_retry = response.headers.get("stripe-should-retry")
    if 200 <= status < 300 and isinstance(body, dict):
        return body
    if 200 <= status < 300:
        raise GatewayUnavailable(f"Stripe answered HTTP {status} without a JSON object")
    message = _error_message(status, body)
    if should_retry == "true" or (
        should_retry != "false" and (status in RETRYABLE_STATUSES or status >= 500)
    ):
        raise GatewayUnavailable(message)
    if 400 <= status < 500:
        raise ActionRefused(message, body if isinstance(body, dict) else {"status": status})
    raise GatewayUnavailable(message)  # 1xx or 3xx: no usable answer


def _error_message(status: int, body: object) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"Stripe answered HTTP {status}"
    message = str(error.get("message") or "no message")
    labels = [str(error[name]) for name in ("type", "code") if error.get(name)]
    return f"Stripe: {message}" + (
        f" ({', '.join(labels)}, HTTP {status})" if labels else f" (HTTP {status})"
    )


def _pause_form(request: ActionRequest) -> Form:
    # void: invoices falling due in the pause are voided, nothing is charged for it.
    form = [("pause_collection[behavior]", "void")]
    if request.resume_at is not None:
        form.append(("pause_collection[resumes_at]", str(int(request.resume_at.timestamp()))))
    return form


def _comment(request: ActionRequest) -> Form:
    if not request.reason:
        return []
    return [("cancellation_details[comment]", request.reason[:MAX_COMMENT])]


def _first_item_id(subscription: dict[str, Any]) -> str:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    item_id = first.get("id") if isinstance(first, dict) else None
    if not isinstance(item_id, str) or not item_id:
        raise ActionRefused("the Stripe subscription has no item whose price could be changed")
    return item_id


def _kept(answer: dict[str, Any]) -> dict[str, Any]:
    kept = {name: answer[name] for name in KEPT_FIELDS if name in answer}
    items = answer.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    if isinstance(data, list):
        kept["prices"] = [
            item["price"].get("id")
            for item in data
            if isinstance(item, dict) and isinstance(item.get("price"), dict)
        ]
    return kept
