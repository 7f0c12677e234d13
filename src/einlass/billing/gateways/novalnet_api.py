"""Subscription actions sent to Novalnet's subscription API (v2, JSON over HTTPS).

One POST per action, to ``settings.novalnet_api_url`` (https://payport.novalnet.de/v2)::

    pause        subscription/suspend
    resume       subscription/reactivate
    cancel       subscription/cancel
    change_plan  subscription/update   (the new plan's tariff id and amount)

    X-NN-Access-Key: base64(payment_access_key)
    {"subscription": {"tid": 14632500000000001, "reason": "..."},
     "custom": {"lang": "EN", "input1": "einlass_action", "inputval1": "sac_..."}}

``subscription.tid`` is the subscription's id at Novalnet, the TID of its first payment.
The custom fields come back in the notification Novalnet sends about the change, which
lets the webhook adapter count the change once (see ``novalnet_subscriptions``).

Novalnet answers ``{"result": {"status": "SUCCESS" | "FAILURE", "status_code": ...,
"status_text": "..."}, "subscription": {...}}``: SUCCESS is done, anything else a refusal
with ``status_text`` as the reason, and so is a 4xx. No answer, a timeout, a 5xx, 408 or
429 is retried by the outbox. The access key goes into the header only, never into a
message or log.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx

from einlass.billing.gateways.novalnet import SECRET_FIELD
from einlass.billing.gateways.novalnet_subscriptions import ACTION_MARK
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

ENDPOINTS: Mapping[str, str] = {
    ACTION_PAUSE: "subscription/suspend",
    ACTION_RESUME: "subscription/reactivate",
    ACTION_CANCEL: "subscription/cancel",
    ACTION_CHANGE_PLAN: "subscription/update",
}
SUCCESS = "SUCCESS"
# The language of Novalnet's status_text, which the merchant reads on a refused action.
LANGUAGE = "EN"
# Novalnet asks for a reason with every cancellation.
DEFAULT_CANCEL_REASON = "Cancelled in einlass"
MAX_REASON = 255
RETRYABLE_STATUS = frozenset({408, 429})


class NovalnetApi:
    async def perform(
        self, request: ActionRequest, secrets: Mapping[str, str], settings: Settings
    ) -> ActionResult:
        access_key = (secrets.get(SECRET_FIELD) or "").strip()
        if not access_key:
            raise ActionRefused(f"no {SECRET_FIELD} is configured for the Novalnet gateway")
        endpoint = ENDPOINTS.get(request.kind)
        if endpoint is None:
            raise ActionRefused(f"Novalnet has no subscription API for the action {request.kind!r}")
        url = f"{settings.novalnet_api_url.rstrip('/')}/{endpoint}"
        response = await _post(url, request_body(request), access_key, settings.gateway_api_timeout_s)
        return _outcome(endpoint, response)


def request_body(request: ActionRequest) -> dict[str, Any]:
    subscription: dict[str, Any] = {"tid": _number(request.subscription_ref)}
    reason = (request.reason or "").strip()[:MAX_REASON]
    if request.kind == ACTION_CANCEL:
        # Novalnet stops charging either way; at_period_end only matters for access here.
        subscription["reason"] = reason or DEFAULT_CANCEL_REASON
    elif request.kind == ACTION_PAUSE and reason:
        subscription["reason"] = reason
    elif request.kind == ACTION_CHANGE_PLAN:
        # The tariff fixes the cycle; subscription/update's "interval" would move the
        # next charging date instead, so it is not sent.
        if request.product_ref:
            subscription["tariff"] = _number(request.product_ref)
        if request.amount is not None:
            subscription["amount"] = request.amount
    return {
        "subscription": subscription,
        "custom": {"lang": LANGUAGE, "input1": ACTION_MARK, "inputval1": request.action_id},
    }


def _number(value: str) -> int | str:
    """TIDs and tariff ids go out as JSON numbers, as Novalnet sends them."""
    return int(value) if value.isascii() and value.isdigit() and not value.startswith("0") else value


async def _post(url: str, body: dict[str, Any], access_key: str, timeout_s: float) -> httpx.Response:
    headers = {
        "X-NN-Access-Key": base64.b64encode(access_key.encode()).decode("ascii"),
        "Accept": "application/json",
        "Charset": "utf-8",
    }
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            return await http.post(url, json=body, headers=headers)
    except httpx.TimeoutException:
        raise GatewayUnavailable(f"Novalnet did not answer within {timeout_s:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        # httpx's messages name the host and the OS error, never the request headers.
        raise GatewayUnavailable(f"Novalnet could not be reached: {type(error).__name__}: {error}") from None


def _outcome(endpoint: str, response: httpx.Response) -> ActionResult:
    status = response.status_code
    if status >= 500 or status in RETRYABLE_STATUS or 300 <= status < 400:
        raise GatewayUnavailable(f"Novalnet answered HTTP {status} to {endpoint}")
    document = _json_object(response)
    if status >= 400:
        answer = document if document is not None else {"http_status": status}
        raise ActionRefused(_status_text(document) or f"Novalnet refused {endpoint} (HTTP {status})", answer)
    if document is None:
        raise GatewayUnavailable(f"Novalnet's answer to {endpoint} is not a JSON object")
    result = document.get("result")
    result_status = result.get("status") if isinstance(result, dict) else None
    if result_status == SUCCESS:
        return ActionResult(response=document)
    message = (
        _status_text(document) or f"Novalnet did not confirm {endpoint} (result.status {result_status!r})"
    )
    raise ActionRefused(message, document)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _status_text(document: dict[str, Any] | None) -> str | None:
    result = document.get("result") if document is not None else None
    text = result.get("status_text") if isinstance(result, dict) else None
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip()[:500]
