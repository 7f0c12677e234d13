"""Subscription actions for the generic gateway: a signed webhook to the merchant's billing system.

einlass has no API to call behind the generic gateway, so it tells the billing
system what the merchant or member asked for, and the billing system answers.
The request is a Standard Webhook (the same signing as inbound, with the
gateway's ``signing_secret``) POSTed to the gateway's ``action_url``::

    {"type": "subscription.pause_requested", "timestamp": "...",
     "data": {"subscription_id": "sub_1", "action_id": "sac_...", "resume_at": "...",
              "at_period_end": null, "product_id": null, "amount": null, "currency": null,
              "interval": null, "reason": null}}

``webhook-id`` is the action id, the same on every retry, so the receiver can
recognise a repeat. The answer decides the action (docs/gateways/generic.md):

* 2xx: accepted; status and the start of the body are kept on the action.
* 3xx, or 4xx other than 408 and 429: refused, with the receiver's message
  (``{"error": {"message": ...}}``, or the text); einlass takes the action back.
* 408, 429, 5xx, a timeout or a network error: no answer; retried with backoff.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from einlass import clock, standard_webhooks
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
from einlass.provisioning.webhooks import body_of, signed_headers

REQUEST_TYPES: Mapping[str, str] = {
    ACTION_PAUSE: "subscription.pause_requested",
    ACTION_RESUME: "subscription.resume_requested",
    ACTION_CANCEL: "subscription.cancel_requested",
    ACTION_CHANGE_PLAN: "subscription.plan_change_requested",
}
# Read of an answer: enough for an error document, not a whole page.
READ_LIMIT_BYTES = 4096
# Kept on the action (the body of an answer) and shown (the receiver's message).
BODY_CHARS = 500
MESSAGE_CHARS = 300
# Statuses that say "try again later" rather than "no".
_RETRYABLE = frozenset({408, 429})


def action_payload(request: ActionRequest, now: datetime) -> dict[str, Any]:
    """The body of the outgoing webhook: every field present, null where the kind has none."""
    kind = request.kind
    if kind not in REQUEST_TYPES:
        raise ActionRefused(f"the generic gateway cannot send a {kind!r} action")
    change = kind == ACTION_CHANGE_PLAN
    return {
        "type": REQUEST_TYPES[kind],
        "timestamp": now.isoformat(),
        "data": {
            "subscription_id": request.subscription_ref,
            "action_id": request.action_id,
            "resume_at": request.resume_at.isoformat()
            if kind == ACTION_PAUSE and request.resume_at
            else None,
            "at_period_end": request.at_period_end if kind in (ACTION_CANCEL, ACTION_CHANGE_PLAN) else None,
            "product_id": request.product_ref if change else None,
            "amount": request.amount if change else None,
            "currency": request.currency if change else None,
            "interval": request.interval if change else None,
            "reason": request.reason,
        },
    }


class GenericApi:
    async def perform(
        self, request: ActionRequest, secrets: Mapping[str, str], settings: Settings
    ) -> ActionResult:
        url = (secrets.get("action_url") or "").strip()
        if not url:
            raise ActionRefused("no action_url configured for the generic gateway")
        secret = secrets.get("signing_secret") or ""
        try:
            standard_webhooks.decode_secret(secret)
        except ValueError as error:
            raise ActionRefused(f"the generic gateway's signing_secret cannot sign: {error}") from None
        now = clock.now()
        # The body names when the action was asked for, the same on every retry.
        body = body_of(action_payload(request, request.requested_at or now))
        headers = signed_headers(secret, request.action_id, int(now.timestamp()), body)
        hidden = [secret, *([password] if (password := urlsplit(url).password) else [])]
        status, text = await _post(url, body, headers, settings.gateway_api_timeout_s, hidden)
        response = {"status": status, "body": text[:BODY_CHARS]}
        if 200 <= status < 300:
            return ActionResult(response=response)
        if 300 <= status < 400:
            raise ActionRefused(
                f"HTTP {status} from action_url: redirects are not followed; configure the final URL",
                response,
            )
        message = f"HTTP {status}" + (f": {detail}" if (detail := receiver_message(text)) else "")
        if 400 <= status < 500 and status not in _RETRYABLE:
            raise ActionRefused(message, response)
        raise GatewayUnavailable(message)


def receiver_message(text: str) -> str:
    """The receiver's reason: ``error.message`` (or ``error``, ``message``) of a JSON answer, else the text."""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    message: object = text
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(document.get("message"), str):
            message = document["message"]
    return _printable(str(message))[:MESSAGE_CHARS]


async def _post(
    url: str, body: bytes, headers: dict[str, str], timeout_s: float, hidden: Sequence[str]
) -> tuple[int, str]:
    """Status and the start of the body of one POST; what cannot be sent raises."""
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            start = b""
            async for chunk in response.aiter_bytes():
                start += chunk
                if len(start) >= READ_LIMIT_BYTES:
                    break
            return response.status_code, start[:READ_LIMIT_BYTES].decode("utf-8", "replace")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        # A retry cannot fix the address: the merchant has to.
        raise ActionRefused(f"action_url is not a usable http(s) URL: {_scrub(str(error), hidden)}") from None
    except httpx.TimeoutException:
        raise GatewayUnavailable(f"action_url did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as error:
        raise GatewayUnavailable(
            f"action_url: {type(error).__name__}: {_scrub(str(error), hidden)}"
        ) from None


def _scrub(text: str, hidden: Sequence[str]) -> str:
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    return _printable(text)[:MESSAGE_CHARS]


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() else " " for char in text).strip()
