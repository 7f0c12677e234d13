"""Genuine Novalnet and Stripe payloads through the webhook endpoint into members and grants."""

from __future__ import annotations

from helpers import api, has_access, member_by_email, post_novalnet, post_stripe
from payloads import novalnet, stripe

TID = "14000000000000001"


async def payment_of(client, shop, email):
    member = await member_by_email(client, shop, email)
    payments = await api(client, shop, "GET", "/payments", params={"member": member["id"]})
    return payments["data"][0]


async def test_novalnet_confirmed_payment_opens_refund_closes(client, shop):
    email = "max@example.de"
    response = await post_novalnet(
        client, shop, novalnet.payment(TID, amount=990, email=email, tariff="tariff-30")
    )
    assert response.status_code == 200, response.text
    assert has_access(await member_by_email(client, shop, email))

    await post_novalnet(client, shop, novalnet.refund("14000000000000002", parent_tid=TID, amount=300))
    assert has_access(await member_by_email(client, shop, email)), "a partial refund keeps access by default"
    assert (await payment_of(client, shop, email))["status"] == "partially_refunded"

    await post_novalnet(client, shop, novalnet.refund("14000000000000003", parent_tid=TID, amount=690))
    assert not has_access(await member_by_email(client, shop, email))
    assert (await payment_of(client, shop, email))["status"] == "refunded"


async def test_novalnet_on_hold_opens_only_after_capture_and_cancel_keeps_closed(client, shop):
    await post_novalnet(
        client,
        shop,
        novalnet.payment(TID, amount=990, email="hold@example.de", status="ON_HOLD", tariff="tariff-30"),
    )
    assert await member_by_email(client, shop, "hold@example.de") is None
    await post_novalnet(client, shop, novalnet.capture(TID, amount=990))
    assert has_access(await member_by_email(client, shop, "hold@example.de"))

    other = "14000000000000009"
    await post_novalnet(
        client,
        shop,
        novalnet.payment(other, amount=990, email="void@example.de", status="ON_HOLD", tariff="tariff-30"),
    )
    await post_novalnet(client, shop, novalnet.cancel(other, amount=990))
    assert await member_by_email(client, shop, "void@example.de") is None
    payments = await api(client, shop, "GET", "/payments")
    assert {p["external_id"]: p["status"] for p in payments["data"]}[other] == "cancelled"


async def test_novalnet_invoice_paid_in_two_credits(client, shop):
    email = "invoice@example.de"
    await post_novalnet(
        client,
        shop,
        novalnet.payment(
            TID, amount=990, email=email, status="PENDING", payment_type="INVOICE", tariff="tariff-30"
        ),
    )
    assert await member_by_email(client, shop, email) is None
    await post_novalnet(client, shop, novalnet.credit("14000000000000011", parent_tid=TID, amount=500))
    assert await member_by_email(client, shop, email) is None
    await post_novalnet(client, shop, novalnet.credit("14000000000000012", parent_tid=TID, amount=490))
    assert has_access(await member_by_email(client, shop, email))


async def test_novalnet_pending_then_update_to_confirmed(client, shop):
    email = "update@example.de"
    await post_novalnet(
        client,
        shop,
        novalnet.payment(
            TID, amount=990, email=email, status="PENDING", payment_type="PREPAYMENT", tariff="tariff-30"
        ),
    )
    await post_novalnet(client, shop, novalnet.update(TID, status="CONFIRMED", amount=990))
    assert has_access(await member_by_email(client, shop, email))


async def test_novalnet_chargeback_closes_and_reversal_restores(client, shop):
    email = "cb@example.de"
    await post_novalnet(client, shop, novalnet.payment(TID, amount=990, email=email, tariff="tariff-30"))
    await post_novalnet(client, shop, novalnet.chargeback("14000000000000021", parent_tid=TID, amount=990))
    assert not has_access(await member_by_email(client, shop, email))
    await post_novalnet(
        client, shop, novalnet.chargeback_reversal("14000000000000022", parent_tid=TID, amount=990)
    )
    assert has_access(await member_by_email(client, shop, email))


async def test_novalnet_failed_payment_creates_nobody(client, shop):
    await post_novalnet(
        client,
        shop,
        novalnet.payment(
            TID, amount=990, email="fail@example.de", result_status="FAILURE", tariff="tariff-30"
        ),
    )
    assert await member_by_email(client, shop, "fail@example.de") is None


async def test_novalnet_order_no_from_api_order_finds_the_plan(client, shop):
    order = await api(
        client, shop, "POST", "/orders", json={"plan": "lifetime", "customer_email": "o@example.de"}
    )
    await post_novalnet(
        client, shop, novalnet.payment(TID, amount=4900, email="o@example.de", order_no=order["order_no"])
    )
    member = await member_by_email(client, shop, "o@example.de")
    assert has_access(member, "premium") and has_access(member, "archive")
    assert (await api(client, shop, "GET", f"/orders/{order['id']}"))["status"] == "paid"


async def test_stripe_checkout_then_refund_and_dispute(client, shop):
    email = "erika@example.com"
    await post_stripe(
        client,
        shop,
        stripe.checkout_session_completed(
            "evt_1", payment_intent="pi_1", amount=990, email=email, metadata={"price_id": "price_30"}
        ),
    )
    await post_stripe(
        client, shop, stripe.payment_intent_succeeded("evt_2", payment_intent="pi_1", amount=990)
    )
    member = await member_by_email(client, shop, email)
    assert has_access(member)
    grants = await api(client, shop, "GET", f"/members/{member['id']}/grants")
    assert len(grants["data"]) == 1

    await post_stripe(
        client,
        shop,
        stripe.dispute_created(
            "evt_3", dispute_id="dp_1", payment_intent="pi_1", charge_id="ch_1", amount=990
        ),
    )
    assert not has_access(await member_by_email(client, shop, email))
    await post_stripe(
        client,
        shop,
        stripe.dispute_closed(
            "evt_4", dispute_id="dp_1", payment_intent="pi_1", charge_id="ch_1", amount=990, status="won"
        ),
    )
    assert has_access(await member_by_email(client, shop, email))
    await post_stripe(
        client,
        shop,
        stripe.charge_refunded(
            "evt_5", payment_intent="pi_1", charge_id="ch_1", amount=990, amount_refunded=990
        ),
    )
    assert not has_access(await member_by_email(client, shop, email))


async def test_stripe_dispute_lost_keeps_access_closed(client, shop):
    email = "lost@example.com"
    await post_stripe(
        client,
        shop,
        stripe.checkout_session_completed(
            "evt_1", payment_intent="pi_2", amount=990, email=email, metadata={"price_id": "price_30"}
        ),
    )
    await post_stripe(
        client,
        shop,
        stripe.dispute_created(
            "evt_2", dispute_id="dp_2", payment_intent="pi_2", charge_id="ch_2", amount=990
        ),
    )
    await post_stripe(
        client,
        shop,
        stripe.dispute_closed(
            "evt_3", dispute_id="dp_2", payment_intent="pi_2", charge_id="ch_2", amount=990, status="lost"
        ),
    )
    assert not has_access(await member_by_email(client, shop, email))
    assert (await payment_of(client, shop, email))["status"] == "charged_back"


async def test_stripe_payment_intent_first_then_checkout_with_email(client, shop):
    """Stripe does not promise order: the intent without customer data comes first."""
    email = "late@example.com"
    await post_stripe(
        client, shop, stripe.payment_intent_succeeded("evt_1", payment_intent="pi_3", amount=990)
    )
    await post_stripe(
        client,
        shop,
        stripe.checkout_session_completed(
            "evt_2", payment_intent="pi_3", amount=990, email=email, metadata={"price_id": "price_30"}
        ),
    )
    assert has_access(await member_by_email(client, shop, email))
