"""Invariants 2 and 3 against real server processes: parallel redelivery, and kill -9 mid-stream.

Every test starts ``einlass serve`` (granian, worker in-process) as a subprocess in
its own process group, on a fresh database (a SQLite file, or a PostgreSQL database
created for the test and dropped afterwards), sets the merchant up through the CLI
and the REST API, and talks to it over HTTP only.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from conftest import POSTGRES_URL, SECRET_KEY, backend_params
from payloads import novalnet

pytestmark = pytest.mark.slow

EINLASS = Path(sys.executable).with_name("einlass")
NOVALNET_KEY = "durability-novalnet-access-key"
TARIFF = "10004"
CREDENTIALS_JOB = "email.credentials"
READY_TIMEOUT_S = 30.0


# --- databases ---------------------------------------------------------------------------------


@pytest.fixture(params=backend_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one server: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'einlass.db'}"
        return
    import psycopg

    admin = make_url(POSTGRES_URL).set(drivername="postgresql", database="postgres")
    name = f"einlass_durability_{secrets.token_hex(6)}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        # The servers are killed by then (fixture teardown runs in reverse order); FORCE
        # ends whatever connection a crashed process may have left behind.
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- server processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    env: dict[str, str]
    workdir: Path
    log: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.port = free_port()
        with self.log.open("ab") as log:
            log.write(f"\n--- einlass serve --port {self.port}\n".encode())
            self.process = subprocess.Popen(
                [str(EINLASS), "serve", "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: granian's worker dies with it
            )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    pytest.fail(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"server not ready after {READY_TIMEOUT_S} s:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group (granian's main process and its worker)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def cli(self, *args: str) -> Any:
        """Run ``einlass ARGS`` against the same database; returns its JSON output."""
        process = await asyncio.create_subprocess_exec(
            str(EINLASS),
            *args,
            env=self.env,
            cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # A guard against a hang, not a wait: slow on a loaded machine.
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        tail = "\n".join(err.decode(errors="replace").splitlines()[-30:])
        assert process.returncode == 0, f"einlass {' '.join(args)} failed:\n{tail}"
        return json.loads(out)


@pytest.fixture
def server_factory(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(**settings: str) -> Server:
        env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
        env.update(
            EINLASS_DATABASE_URL=database_url,
            EINLASS_SECRET_KEY=SECRET_KEY,
            EINLASS_MAIL_DIR=str(tmp_path / "mail"),
            EINLASS_RUN_WORKER_IN_PROCESS="true",
            EINLASS_WORKER_POLL_INTERVAL_S="0.1",
            EINLASS_BASE_URL="http://einlass.test",
            EINLASS_LOG_LEVEL="INFO",
        )
        env.update({f"EINLASS_{key.upper()}": value for key, value in settings.items()})
        server = Server(env=env, workdir=tmp_path, log=tmp_path / "server.log")
        started.append(server)
        return server

    yield make
    for server in started:
        server.kill()


@dataclass
class Shop:
    slug: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}


async def set_up_shop(server: Server, http: httpx.AsyncClient, slug: str = "shop") -> Shop:
    """The merchant through the CLI (the only way to its first API key), the rest through the API."""
    created = await server.cli("merchant", "create", slug, "--name", "Shop GmbH")
    shop = Shop(slug=slug, api_key=created["api_key"])
    for method, path, body in (
        ("POST", "/areas", {"slug": "premium", "name": "Premium"}),
        (
            "POST",
            "/plans",
            {
                "slug": "month",
                "name": "30 days",
                "amount": 990,
                "currency": "EUR",
                "access_period": "P30D",
                "areas": ["premium"],
                "gateway_refs": {"novalnet": [TARIFF]},
            },
        ),
        ("PUT", "/gateways/novalnet", {"secrets": {"payment_access_key": NOVALNET_KEY}}),
    ):
        response = await http.request(method, f"/api/v1{path}", json=body, headers=shop.auth)
        assert response.status_code < 300, response.text
    return shop


# --- talking to the server ---------------------------------------------------------------------

_tids = itertools.count(1)


def new_tid() -> str:
    """A 17-digit Novalnet TID, unique within the test run."""
    return f"14632{secrets.randbelow(10**5):05d}{next(_tids):07d}"


def payment_body(tid: str, email_address: str) -> bytes:
    payload = novalnet.payment(tid, amount=990, email=email_address, tariff=TARIFF, lang="EN")
    body, _headers = novalnet.signed(payload, NOVALNET_KEY)
    return body


async def post_webhook(http: httpx.AsyncClient, shop: Shop, body: bytes) -> httpx.Response:
    return await http.post(
        f"/webhooks/{shop.slug}/novalnet", content=body, headers={"content-type": "application/json"}
    )


async def api_get(http: httpx.AsyncClient, shop: Shop, path: str, **params: Any) -> Any:
    response = await http.get(f"/api/v1{path}", params=params, headers=shop.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def list_all(http: httpx.AsyncClient, shop: Shop, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await api_get(
            http, shop, path, limit=100, **params, **({"starting_after": cursor} if cursor else {})
        )
        items += page["data"]
        if not page["has_more"]:
            return items
        cursor = page["data"][-1]["id"]


async def gather_limited(calls: list[Awaitable[Any]], limit: int = 10) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(call: Awaitable[Any]) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(run(call) for call in calls))


async def wait_for(
    what: str,
    check: Callable[[], Awaitable[tuple[bool, Any]]],
    server: Server | None = None,
    timeout_s: float = 20.0,
) -> Any:
    """Poll ``check`` (returns done, state) until done or the deadline; returns the last state."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, state = await check()
        if done:
            return state
        if time.monotonic() > deadline:
            log = f"\nserver log:\n{server.log_tail()}" if server else ""
            pytest.fail(f"timed out after {timeout_s} s waiting until {what}; last state: {state!r}{log}")
        await asyncio.sleep(0.1)


async def all_events_applied(
    server: Server, http: httpx.AsyncClient, shop: Shop, expected: int
) -> list[dict[str, Any]]:
    async def check() -> tuple[bool, Any]:
        events = await list_all(http, shop, "/webhook_events")
        statuses = Counter(e["status"] for e in events)
        return len(events) == expected and statuses == {"applied": expected}, events

    events: list[dict[str, Any]] = await wait_for(f"{expected} webhook events are applied", check, server)
    return events


async def credentials_jobs_done(
    server: Server, http: httpx.AsyncClient, shop: Shop, expected: int
) -> list[dict[str, Any]]:
    async def check() -> tuple[bool, Any]:
        jobs = [j for j in await list_all(http, shop, "/jobs") if j["kind"] == CREDENTIALS_JOB]
        return len(jobs) >= expected and all(j["status"] == "done" for j in jobs), jobs

    jobs: list[dict[str, Any]] = await wait_for(f"{expected} credentials emails are sent", check, server)
    return jobs


def mails(folder: Path) -> list[email.message.Message]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=policy.default) for path in folder.glob("*.eml")
    ]


@pytest.fixture
async def started(server_factory: Callable[..., Server]) -> AsyncIterator[tuple[Server, Shop]]:
    server = server_factory(inbox_recovery_after_s="1")
    server.start()
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        shop = await set_up_shop(server, http)
    yield server, shop


# --- 1. parallel deliveries --------------------------------------------------------------------


async def test_twenty_parallel_deliveries_of_one_event_give_one_member_grant_and_email(
    started: tuple[Server, Shop], tmp_path: Path
) -> None:
    server, shop = started
    tid, address = new_tid(), "erika@example.com"
    body = payment_body(tid, address)
    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=40)
    ) as http:
        responses = await asyncio.gather(*(post_webhook(http, shop, body) for _ in range(20)))

        assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
        assert Counter(r.json()["status"] for r in responses) == {"stored": 1, "duplicate": 19}

        events = await all_events_applied(server, http, shop, expected=1)
        assert events[0]["type"] == "PAYMENT"
        members = await list_all(http, shop, "/members")
        assert [m["email"] for m in members] == [address]
        member = await api_get(http, shop, f"/members/{members[0]['id']}")
        assert [(a["area"], a["active"]) for a in member["access"]] == [("premium", True)]
        payments = await list_all(http, shop, "/payments")
        assert [(p["external_id"], p["member"], p["status"]) for p in payments] == [
            (tid, member["id"], "confirmed")
        ]
        grants = (await api_get(http, shop, f"/members/{member['id']}/grants"))["data"]
        assert [g["source"] for g in grants] == [{"kind": "payment", "id": payments[0]["id"]}]
        history = (await api_get(http, shop, f"/payments/{payments[0]['id']}"))["status_history"]
        assert [(h["from"], h["to"]) for h in history] == [(None, "confirmed")]

        jobs = await credentials_jobs_done(server, http, shop, expected=1)
        assert [j["payload"]["member_id"] for j in jobs] == [member["id"]]
    sent = mails(tmp_path / "mail")
    assert [(m["To"], m["Subject"]) for m in sent] == [(address, "Your credentials for Shop GmbH")]


async def test_twenty_parallel_payments_of_one_customer_give_one_member_and_twenty_grants(
    started: tuple[Server, Shop], tmp_path: Path
) -> None:
    server, shop = started
    address = "max@example.com"
    tids = [new_tid() for _ in range(20)]
    bodies = [payment_body(tid, address) for tid in tids]
    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=40)
    ) as http:
        responses = await asyncio.gather(*(post_webhook(http, shop, body) for body in bodies))

        assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
        assert Counter(r.json()["status"] for r in responses) == {"stored": 20}

        await all_events_applied(server, http, shop, expected=20)
        members = await list_all(http, shop, "/members")
        assert [m["email"] for m in members] == [address]
        member_id = members[0]["id"]
        payments = await list_all(http, shop, "/payments")
        assert sorted(p["external_id"] for p in payments) == sorted(tids)
        assert {(p["member"], p["status"]) for p in payments} == {(member_id, "confirmed")}
        grants = (await api_get(http, shop, f"/members/{member_id}/grants"))["data"]
        assert sorted(g["source"]["id"] for g in grants) == sorted(p["id"] for p in payments)
        assert {g["source"]["kind"] for g in grants} == {"payment"}

        # Every payment tells the member so; only the first one carries a password.
        jobs = await credentials_jobs_done(server, http, shop, expected=20)
        assert len(jobs) == 20 and {j["payload"]["member_id"] for j in jobs} == {member_id}
    sent = mails(tmp_path / "mail")
    assert len(sent) == 20 and {m["To"] for m in sent} == {address}
    assert Counter(m["Subject"] for m in sent) == {
        "Your credentials for Shop GmbH": 1,
        "Your access to Shop GmbH is active": 19,
    }


# --- 2. kill -9 while events are posted --------------------------------------------------------


@dataclass
class Delivery:
    tid: str
    email: str
    body: bytes
    outcomes: list[str] = field(default_factory=list)  # "200 stored", "200 duplicate", "ReadError", ...

    @property
    def acknowledged(self) -> bool:
        return any(outcome.startswith("2") for outcome in self.outcomes)


def new_delivery(tid: str) -> Delivery:
    address = f"customer-{tid}@example.com"
    return Delivery(tid, address, payment_body(tid, address))


async def post_recording(http: httpx.AsyncClient, shop: Shop, delivery: Delivery) -> bool:
    try:
        response = await post_webhook(http, shop, delivery.body)
    except httpx.TransportError as error:
        delivery.outcomes.append(type(error).__name__)
        return False
    status = response.json().get("status") if response.status_code < 300 else response.text
    delivery.outcomes.append(f"{response.status_code} {status}")
    return response.status_code < 300


KILL_AFTER = 40
CLIENTS = 8


async def test_kill_9_while_posting_loses_nothing_and_applies_nothing_twice(
    started: tuple[Server, Shop],
) -> None:
    """Post new customers' payments from CLIENTS clients; SIGKILL the server after KILL_AFTER
    2xx answers, with requests in flight; restart on the same database, retry what got no 2xx,
    redeliver some that did, and let the recovery sweep finish what was stored but not applied."""
    server, shop = started
    deliveries = [new_delivery(new_tid()) for _ in range(200)]
    queue = iter(deliveries)
    acknowledged = 0
    in_flight = 0
    in_flight_at_kill = -1
    killed = asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal acknowledged, in_flight, in_flight_at_kill
        for delivery in queue:
            in_flight += 1
            ok = await post_recording(http, shop, delivery)
            in_flight -= 1
            if ok and not killed.is_set():
                acknowledged += 1
                if acknowledged >= KILL_AFTER:
                    in_flight_at_kill = in_flight
                    server.kill()
                    killed.set()
            if killed.is_set():
                return

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
    assert killed.is_set(), "the server was never killed: too few events were acknowledged"
    assert in_flight_at_kill > 0, "no request was in flight at the kill"
    attempted = [d for d in deliveries if d.outcomes]
    acked = [d for d in attempted if d.acknowledged]
    unacked = [d for d in attempted if not d.acknowledged]
    # Before the kill, every answer was a 2xx: a transport error is the only way to miss one.
    assert all(d.outcomes[0] == "200 stored" for d in acked), [d.outcomes for d in acked]
    assert unacked, "the kill interrupted no request"
    assert all(not d.outcomes[0][0].isdigit() for d in unacked), [d.outcomes for d in unacked]

    server.start()  # the same database, a new port
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        # The gateway retries what it got no 2xx for, and redelivers some it did.
        redelivered = acked[:: max(1, len(acked) // 20)] + acked[-CLIENTS:]
        retried = await gather_limited([post_recording(http, shop, d) for d in unacked], CLIENTS)
        assert all(retried), [d.outcomes for d in unacked]
        again = await gather_limited([post_recording(http, shop, d) for d in redelivered], CLIENTS)
        assert all(again) and {d.outcomes[-1] for d in redelivered} == {"200 duplicate"}

        # The recovery sweep applies what was stored but not applied before the kill.
        expected = attempted
        events = await all_events_applied(server, http, shop, expected=len(expected))
        assert {e["type"] for e in events} == {"PAYMENT"}

        payments = await list_all(http, shop, "/payments")
        per_tid = Counter(p["external_id"] for p in payments)
        assert per_tid == Counter(d.tid for d in expected), "not exactly one payment per event"
        assert {p["status"] for p in payments} == {"confirmed"}

        members = await list_all(http, shop, "/members")
        per_email = Counter(m["email"] for m in members)
        assert per_email == Counter(d.email for d in expected), "not exactly one member per customer"
        member_of_email = {m["email"]: m["id"] for m in members}
        payment_of_member = {p["member"]: p["id"] for p in payments}
        assert {p["member"] for p in payments} == set(member_of_email.values())
        assert len(payment_of_member) == len(payments)

        grant_lists = await gather_limited(
            [api_get(http, shop, f"/members/{m['id']}/grants") for m in members], 10
        )
        for member, grants in zip(members, grant_lists, strict=True):
            assert [g["source"] for g in grants["data"]] == [
                {"kind": "payment", "id": payment_of_member[member["id"]]}
            ], member
        # The audit log tells of each effect once, caused by one of the stored events.
        audit = await list_all(http, shop, "/audit_entries")
        by_action = {
            action: Counter(e["entity"]["id"] for e in audit if e["action"] == action)
            for action in ("member.created", "payment.status_changed", "grant.created")
        }
        assert by_action["member.created"] == Counter(member_of_email.values())
        assert by_action["payment.status_changed"] == Counter(p["id"] for p in payments)
        assert sum(by_action["grant.created"].values()) == len(payments)
        assert set(by_action["grant.created"].values()) == {1}
        event_ids = {e["id"] for e in events}
        assert {e["actor"]["id"] for e in audit if e["actor"]["kind"] == "gateway_event"} == event_ids

        jobs = [j for j in await list_all(http, shop, "/jobs") if j["kind"] == CREDENTIALS_JOB]
        per_member = Counter(j["payload"]["member_id"] for j in jobs)
        assert per_member == Counter(member_of_email.values()), "not exactly one credentials email per member"
