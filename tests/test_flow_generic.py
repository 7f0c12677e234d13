"""A payment opens the door, a refund or chargeback closes it: generic gateway, end to end."""

from __future__ import annotations

from datetime import timedelta

from helpers import api, has_access, member_by_email, post_generic
from payloads import generic


async def test_confirmed_payment_creates_member_with_access_and_credentials_email(
    client, shop, worker, settings, clock
):
    response = await post_generic(
        client,
        shop,
        generic.payment_confirmed(
            "pay-1", amount=990, email="Erika@Example.com", product_id="prod-30", name="Erika Mustermann"
        ),
    )
    assert response.status_code == 200, response.text

    member = await member_by_email(client, shop, "erika@example.com")
    assert member is not None and member["name"] == "Erika Mustermann"
    assert has_access(member)
    assert [a["until"] for a in member["access"]] == [(clock.now() + timedelta(days=30)).isoformat()]

    await worker.drain()
    mails = list(settings.mail_dir.glob("*.eml"))
    assert len(mails) == 1
    assert "Erika@Example.com" in mails[0].read_text()

    clock.advance(timedelta(days=30, seconds=1))
    assert not has_access(await member_by_email(client, shop, "erika@example.com"))


async def test_full_refund_closes_and_chargeback_reversal_reopens(client, shop):
    await post_generic(
        client,
        shop,
        generic.payment_confirmed("pay-2", amount=990, email="a@example.com", product_id="prod-30"),
    )
    await post_generic(client, shop, generic.payment_chargeback("pay-2", chargeback_id="cb-1", amount=990))
    assert not has_access(await member_by_email(client, shop, "a@example.com"))
    await post_generic(
        client, shop, generic.payment_chargeback_reversed("pay-2", chargeback_id="cb-1", amount=990)
    )
    assert has_access(await member_by_email(client, shop, "a@example.com"))
    await post_generic(client, shop, generic.payment_refunded("pay-2", refund_id="rf-1", amount=990))
    member = await member_by_email(client, shop, "a@example.com")
    assert not has_access(member)
    payments = await api(client, shop, "GET", "/payments", params={"member": member["id"]})
    assert payments["data"][0]["status"] == "refunded"


async def test_refund_before_payment_is_parked_then_applied(client, shop):
    response = await post_generic(
        client, shop, generic.payment_refunded("pay-3", refund_id="rf-9", amount=990)
    )
    assert response.status_code == 200
    events = await api(client, shop, "GET", "/webhook_events", params={"status": "parked"})
    assert len(events["data"]) == 1
    await post_generic(
        client,
        shop,
        generic.payment_confirmed("pay-3", amount=990, email="b@example.com", product_id="prod-30"),
    )
    assert not has_access(await member_by_email(client, shop, "b@example.com"))
    events = await api(client, shop, "GET", "/webhook_events", params={"status": "parked"})
    assert events["data"] == []


async def test_redelivery_is_a_no_op(client, shop, worker, settings):
    payload = generic.payment_confirmed("pay-4", amount=990, email="c@example.com", product_id="prod-30")
    first = await post_generic(client, shop, payload, msg_id="msg_same")
    second = await post_generic(client, shop, payload, msg_id="msg_same")
    assert first.json()["status"] == "stored" and second.json()["status"] == "duplicate"
    member = await member_by_email(client, shop, "c@example.com")
    grants = await api(client, shop, "GET", f"/members/{member['id']}/grants")
    assert len(grants["data"]) == 1
    await worker.drain()
    assert len(list(settings.mail_dir.glob("*.eml"))) == 1
