"""Bad input at the webhook endpoint: precise errors, nothing applied, never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import api, post_generic, post_novalnet
from payloads import generic, novalnet, stripe

TID = "14000000000000001"


async def nothing_applied(client, shop):
    assert (await api(client, shop, "GET", "/members"))["data"] == []
    assert (await api(client, shop, "GET", "/payments"))["data"] == []


async def test_novalnet_tampered_body_is_rejected(client, shop):
    body, headers = novalnet.signed(
        novalnet.payment(TID, amount=990, email="x@example.de", tariff="tariff-30"), shop.novalnet_key
    )
    tampered = body.replace(b"990", b"1")
    response = await client.post(f"/webhooks/{shop.slug}/novalnet", content=tampered, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "rejected"
    await nothing_applied(client, shop)
    assert (await api(client, shop, "GET", "/webhook_events"))["data"] == []


async def test_novalnet_wrong_key_is_rejected(client, shop):
    body, headers = novalnet.signed(novalnet.payment(TID, amount=990, email="x@example.de"), "not-the-key")
    response = await client.post(f"/webhooks/{shop.slug}/novalnet", content=body, headers=headers)
    assert response.status_code == 401
    await nothing_applied(client, shop)


async def test_stripe_wrong_secret_and_stale_timestamp_are_rejected(client, shop, clock):
    event = stripe.checkout_session_completed(
        "evt_1", payment_intent="pi_1", amount=990, email="s@example.com", metadata={"price_id": "price_30"}
    )
    now = int(clock.now().timestamp())
    body, headers = stripe.signed(event, "whsec_wrong", now)
    assert (
        await client.post(f"/webhooks/{shop.slug}/stripe", content=body, headers=headers)
    ).status_code == 401
    body, headers = stripe.signed(event, shop.stripe_secret, now - 301)
    response = await client.post(f"/webhooks/{shop.slug}/stripe", content=body, headers=headers)
    assert response.status_code == 401
    assert "tolerance" in response.json()["error"]["message"] or "old" in response.json()["error"]["message"]
    await nothing_applied(client, shop)


async def test_generic_tampered_body_is_rejected(client, shop, clock):
    body, headers = generic.signed(
        generic.payment_confirmed("p", amount=990, email="g@example.com"),
        shop.generic_secret,
        "msg_1",
        int(clock.now().timestamp()),
    )
    response = await client.post(f"/webhooks/{shop.slug}/generic", content=body + b" ", headers=headers)
    assert response.status_code == 401
    await nothing_applied(client, shop)


async def test_malformed_but_signed_body_gets_400_with_a_precise_message(client, shop):
    payload = generic.event("payment.confirmed", payment_id="p-1", amount="ten", currency="EUR")
    response = await post_generic(client, shop, payload)
    assert response.status_code == 400
    assert "amount" in response.json()["error"]["message"]
    await nothing_applied(client, shop)


async def test_unknown_merchant_and_gateway_get_404(client, shop):
    body, headers = novalnet.signed(
        novalnet.payment(TID, amount=990, email="x@example.de"), shop.novalnet_key
    )
    assert (await client.post("/webhooks/nobody/novalnet", content=body, headers=headers)).status_code == 404
    assert (
        await client.post(f"/webhooks/{shop.slug}/paypal", content=body, headers=headers)
    ).status_code == 404


async def test_unknown_event_type_is_stored_acknowledged_and_has_no_effect(client, shop):
    payload = novalnet.notification(
        "PAYMENT_REMINDER_1",
        TID,
        transaction={"tid": int(TID), "amount": 990, "currency": "EUR", "status": "PENDING"},
    )
    response = await post_novalnet(client, shop, payload)
    assert response.status_code == 200
    events = await api(client, shop, "GET", "/webhook_events")
    assert [e["status"] for e in events["data"]] == ["ignored"]
    await nothing_applied(client, shop)


@pytest.mark.parametrize("gateway", ["novalnet", "stripe", "generic"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
    headers=st.dictionaries(
        st.sampled_from(
            ["stripe-signature", "webhook-id", "webhook-timestamp", "webhook-signature", "content-type"]
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    ),
)
async def test_garbage_never_gets_a_5xx(client, shop, gateway, body, headers):
    response = await client.post(f"/webhooks/{shop.slug}/{gateway}", content=body, headers=headers)
    assert 400 <= response.status_code < 500
