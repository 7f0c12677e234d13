"""Outbox handlers that send email."""

from __future__ import annotations

from sqlalchemy import select

from einlass.audit.service import Actor
from einlass.crypto import generate_password
from einlass.members.models import Member
from einlass.members.service import hashed, store_password
from einlass.notify.email import render_credentials_email, send_email
from einlass.outbox.models import Job
from einlass.outbox.worker import JobContext
from einlass.provisioning.hashing import precompute_push_hashes
from einlass.tenants.models import Merchant


async def send_credentials_email(context: JobContext, job: Job) -> None:
    """Mail the member's credentials; with ``new_password``, issue the password first.

    The new password's hash is committed before the mail goes out. A retry after
    a crash issues another password and mails that one: the member may get two
    emails, and the later one is the password that works.
    """
    password = generate_password() if job.payload.get("new_password") else None
    password_hash = await hashed(password, generated=True) if password else None
    # The htpasswd hashes for the merchant's push targets, also before the transaction.
    push_hashes = (
        await precompute_push_hashes(context.db, job.merchant_id, password)
        if password and job.merchant_id
        else None
    )
    async with context.db.transaction() as session:
        member = await session.scalar(
            select(Member)
            .where(Member.id == job.payload["member_id"], Member.merchant_id == job.merchant_id)
            .with_for_update()
        )
        merchant = await session.get(Merchant, job.merchant_id)
        if member is None or merchant is None or member.deleted_at is not None or not member.email:
            return  # erased or gone since: nobody to write to
        if job.payload.get("only_if_unset") and member.password_hash is not None:
            # A password was set after the payment queued this mail (by an admin): keep it.
            password = password_hash = None
        if password_hash is not None:
            await store_password(
                session,
                member,
                password_hash,
                Actor("job", job.id),
                "member.credentials_issued",
                password=password,
                push_hashes=push_hashes,
            )
    email = render_credentials_email(
        locale=member.locale,
        merchant_name=merchant.name,
        to=member.email,
        member_name=member.name,
        username=member.username or member.email,
        password=password,
        login_url=f"{context.settings.base_url.rstrip('/')}/m/{merchant.slug}/login",
    )
    # One Message-ID per job: a retried job rewrites the same message instead of a second one.
    await send_email(context.settings, email, message_id=f"<{job.id}@einlass.local>")
