"""Screening when a payment is paid: a blacklisted customer gets no access, the merchant is told to refund."""

from __future__ import annotations

from sqlalchemy import select

from einlass import clock
from einlass.billing.models import Payment
from einlass.outbox.models import Job
from einlass.screening.blacklist import file_report
from einlass.screening.identifiers import normalize
from einlass.screening.models import REPORT_CONFIRMED, SOURCE_OPERATOR
from einlass.standard_webhooks import generate_secret, verify
from helpers import api, has_access, member_by_email, post_generic
from payloads import generic
from standin import Reply, serve

REJECTED_JOB = "screening.payment_rejected"


async def blacklist_email(db, settings, email):
    async with db.transaction() as session:
        await file_report(
            session,
            settings,
            normalize("email", email),
            category="chargeback",
            source=SOURCE_OPERATOR,
            merchant_id=None,
            status=REPORT_CONFIRMED,
        )


async def pay(client, shop, payment_ref, email):
    response = await post_generic(
        client, shop, generic.payment_confirmed(payment_ref, amount=990, email=email, product_id="prod-30")
    )
    assert response.status_code == 200, response.text


async def payment_row(db, shop, payment_ref):
    async with db.transaction() as session:
        payment = await session.scalar(
            select(Payment).where(Payment.merchant_id == shop.merchant_id, Payment.external_id == payment_ref)
        )
    assert payment is not None
    return payment


async def jobs_of_kind(db, kind):
    async with db.transaction() as session:
        return list(await session.scalars(select(Job).where(Job.kind == kind)))


async def test_a_blacklisted_customer_pays_and_gets_no_member(client, shop, db, settings):
    await blacklist_email(db, settings, "fraud.ster@gmail.com")
    await pay(client, shop, "pay-bad", "Fraudster+shop@gmail.com")

    assert await member_by_email(client, shop, "fraudster+shop@gmail.com") is None
    payment = await payment_row(db, shop, "pay-bad")
    assert payment.screening_outcome == "reject" and payment.member_id is None
    shown = await api(client, shop, "GET", f"/payments/{payment.id}")
    assert shown["status"] == "confirmed" and shown["member"] is None

    decisions = await api(client, shop, "GET", "/screenings", params={"payment": payment.id})
    [decision] = decisions["data"]
    assert (decision["outcome"], decision["context"]) == ("reject", "payment")
    assert decision["reasons"] == [
        {"source": "blacklist", "kind": "email", "category": "chargeback", "status": "active"}
    ]
    [job] = await jobs_of_kind(db, REJECTED_JOB)
    assert job.payload == {"payment_id": payment.id, "decision_id": decision["id"]}
    assert job.merchant_id == shop.merchant_id


async def test_an_existing_member_gets_no_access_from_a_rejected_payment(client, shop, db, settings):
    member = await api(
        client, shop, "POST", "/members", json={"email": "old@example.com", "send_credentials": False}
    )
    await blacklist_email(db, settings, "old@example.com")
    await pay(client, shop, "pay-old", "old@example.com")

    detail = await api(client, shop, "GET", f"/members/{member['id']}")
    assert not has_access(detail)
    assert [(d["context"], d["outcome"]) for d in detail["screening_decisions"]] == [("payment", "reject")]
    assert (await payment_row(db, shop, "pay-old")).screening_outcome == "reject"
    assert len(await jobs_of_kind(db, REJECTED_JOB)) == 1


async def test_the_merchants_whitelist_lets_the_customer_in(client, shop, db, settings):
    await blacklist_email(db, settings, "vip@example.com")
    await api(client, shop, "POST", "/whitelist", json={"kind": "email", "value": "VIP@example.com"})
    await pay(client, shop, "pay-vip", "vip@example.com")

    member = await member_by_email(client, shop, "vip@example.com")
    assert has_access(member)
    assert member["whitelisted"] is True
    [decision] = member["screening_decisions"]
    assert (decision["outcome"], decision["reasons"]) == (
        "accept",
        [{"source": "whitelist", "kind": "email"}],
    )
    assert await jobs_of_kind(db, REJECTED_JOB) == []


async def test_a_whitelisted_member_is_let_in_by_its_member_entry(client, shop, db, settings):
    member = await api(
        client, shop, "POST", "/members", json={"email": "friend@example.com", "send_credentials": False}
    )
    await api(client, shop, "POST", "/whitelist", json={"member": member["id"]})
    await blacklist_email(db, settings, "friend@example.com")
    await pay(client, shop, "pay-friend", "Friend@Example.com")

    detail = await api(client, shop, "GET", f"/members/{member['id']}")
    assert has_access(detail)
    assert detail["screening_decisions"][0]["reasons"] == [{"source": "whitelist", "kind": "member"}]


async def test_a_clean_payment_works_as_before(client, shop, db, worker):
    await pay(client, shop, "pay-ok", "clean@example.com")
    member = await member_by_email(client, shop, "clean@example.com")
    assert has_access(member)
    assert [(d["outcome"], d["reasons"]) for d in member["screening_decisions"]] == [("accept", [])]
    assert (await payment_row(db, shop, "pay-ok")).screening_outcome == "accept"
    await worker.drain()
    assert await jobs_of_kind(db, REJECTED_JOB) == []


async def test_the_merchants_webhook_is_told_to_refund(client, shop, db, settings, worker):
    secret = generate_secret()
    with serve(lambda request: Reply(204)) as receiver:
        await api(
            client,
            shop,
            "POST",
            "/provisioning_targets",
            json={
                "name": "app",
                "kind": "webhook",
                "config": {"url": f"{receiver.url}/hook"},
                "secrets": {"signing_secret": secret},
                "areas": ["premium"],
            },
        )
        await blacklist_email(db, settings, "refund-me@example.com")
        await pay(client, shop, "pay-refund", "refund-me@example.com")
        await worker.drain()

    told = [r for r in receiver.requests if r.json()["type"] == REJECTED_JOB]
    assert len(told) == 1
    verify(secret, told[0].headers, told[0].body, clock.now())  # raises on a bad signature
    event = told[0].json()
    assert event["data"]["payment"]["external_id"] == "pay-refund"
    assert event["data"]["payment"]["amount_paid"] == 990
    assert event["data"]["screening"]["outcome"] == "reject"
    assert told[0].headers["webhook-id"] == event["data"]["screening"]["id"]
    audit = await api(client, shop, "GET", "/audit_entries")
    [notice] = [e for e in audit["data"] if e["action"] == "payment.screening_rejected"]
    assert len(notice["after"]["notified"]) == 1


async def test_without_a_webhook_target_the_rejection_is_audited(client, shop, db, settings, worker):
    await blacklist_email(db, settings, "nobody-to-tell@example.com")
    await pay(client, shop, "pay-quiet", "nobody-to-tell@example.com")
    await worker.drain()

    payment = await payment_row(db, shop, "pay-quiet")
    audit = await api(client, shop, "GET", "/audit_entries")
    screened = [e for e in audit["data"] if e["action"] == "payment.screened"]
    assert [e["entity"]["id"] for e in screened] == [payment.id]
    assert screened[0]["after"]["outcome"] == "reject"
    [notice] = [e for e in audit["data"] if e["action"] == "payment.screening_rejected"]
    assert notice["entity"]["id"] == payment.id and notice["after"]["notified"] == []
    [job] = await jobs_of_kind(db, REJECTED_JOB)
    assert job.status == "done"
