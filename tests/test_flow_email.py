"""A payment's credentials email through a real SMTP server process (aiosmtpd, its own process)."""

from __future__ import annotations

import json
import mailbox
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from einlass.crypto import verify_password
from einlass.members.models import Member
from einlass.outbox.models import Job
from einlass.outbox.registry import build_worker
from helpers import api, post_generic
from payloads import generic


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SmtpProcess:
    port: int
    maildir: Path

    def messages(self) -> list[mailbox.MaildirMessage]:
        return list(mailbox.Maildir(self.maildir, create=False))


@pytest.fixture
def smtp_process(tmp_path: Path) -> Iterator[SmtpProcess]:
    port, maildir = free_port(), tmp_path / "maildir"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(maildir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Wait until the server accepts connections (bounded, no fixed sleep).
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.05) as probe:
                    probe.recv(100)
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(
                        process.stderr.read().decode() if process.stderr else "smtp died"
                    ) from None
                subprocess.run(["true"], check=False)
        yield SmtpProcess(port=port, maildir=maildir)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_payment_sends_credentials_through_smtp(client, shop, db, settings, smtp_process):
    settings.smtp_url = f"smtp://127.0.0.1:{smtp_process.port}"
    worker = build_worker(db, settings)
    payload = generic.payment_confirmed(
        "pay-mail",
        amount=990,
        email="anna@example.de",
        product_id="prod-30",
        name="Anna Schmidt",
        locale="de",
    )
    assert (await post_generic(client, shop, payload)).status_code == 200

    assert await worker.drain() >= 1
    messages = smtp_process.messages()
    assert len(messages) == 1
    message = messages[0]
    assert message["To"] == "anna@example.de"
    assert "Zugangsdaten" in message["Subject"]
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    body = text.get_payload(decode=True).decode()
    assert "anna@example.de" in body
    assert "/m/shop/login" in body

    jobs = await api(client, shop, "GET", "/jobs", params={"status": "done"})
    assert [job["kind"] for job in jobs["data"]].count("email.credentials") == 1

    password = re.search(r"Passwort: (\S+)", body).group(1)
    async with db.transaction() as session:
        member = await session.scalar(select(Member).where(Member.email_normalized == "anna@example.de"))
        stored_jobs = json.dumps([job.payload for job in await session.scalars(select(Job))])
    assert verify_password(password, member.password_hash), "the mailed password is the member's password"
    assert password not in stored_jobs, "the plain password is stored nowhere"


async def test_smtp_down_job_retries_then_shows_failed_and_can_be_retried(client, shop, db, settings, clock):
    from datetime import timedelta

    settings.smtp_url = f"smtp://127.0.0.1:{free_port()}?timeout=2"
    worker = build_worker(db, settings)
    await post_generic(
        client,
        shop,
        generic.payment_confirmed("pay-x", amount=990, email="b@example.de", product_id="prod-30"),
    )
    for _ in range(8):
        await worker.drain()
        clock.advance(timedelta(hours=2))
    failed = await api(client, shop, "GET", "/jobs", params={"status": "failed"})
    assert [job["kind"] for job in failed["data"]] == ["email.credentials"]
    assert "127.0.0.1" in failed["data"][0]["last_error"]
    retried = await api(client, shop, "POST", f"/jobs/{failed['data'][0]['id']}/retry")
    assert retried["status"] == "pending"
