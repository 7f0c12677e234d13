"""Ingest benchmark: signed Novalnet PAYMENT webhooks into members with access, end to end.

For each backend (SQLite, PostgreSQL) the bench makes a fresh database, runs the
migrations and creates a merchant, an area, a plan (gateway reference = Novalnet
tariff) and the Novalnet secret with the ``einlass`` CLI, starts ``einlass serve``
(granian, one process, outbox worker in-process, logs at WARNING) and posts N
distinct signed PAYMENT events (each a new customer, CONFIRMED) from C concurrent
keep-alive connections. Latency is from the request written to the response read;
einlass commits the grant before it answers 200. Then it checks that every event
made an active member: pages through ``GET /api/v1/members``, reads a sample of 50
members' access, and counts grants and inbox rows in the database.

A baseline runs in the same process against the same granian settings: a raw ASGI
app that reads the body and answers 200, posted the same bodies with the same
client (and nginx ``return 200`` when nginx is installed).

Where the time goes: sequential single requests of three kinds give the split of
one request's server time (p50 each):

- ``verify_only_ms``: bad checksum, rejected 401 (HTTP, merchant lookup, secret
  decryption, checksum);
- ``duplicate_ms``: a redelivery (the above, plus parse and the store transaction,
  whose INSERT ... ON CONFLICT DO NOTHING finds the row);
- ``new_event_ms``: a new payment (the above, plus the apply transaction:
  payment, ledger, member, grant, outbox jobs, audit).

``--profile`` also samples the server under py-spy during the load (``--py-spy PATH``
or ``BENCH_PY_SPY`` or ``py-spy`` on PATH) and prints where its CPU went.

Usage::

    .venv/bin/python bench/ingest.py [--quick] [--events N] [--concurrency C]
        [--backends sqlite,postgresql] [--profile]

The last line of the output is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HTTPError,
    LeanClient,
    Server,
    cpu_seconds,
    free_port,
    ms,
    novalnet_payment,
    percentile,
    tables,
)

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
EINLASS = Path(sys.executable).parent / "einlass"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HOST = "127.0.0.1"
MERCHANT = "bench"
AREA = "premium"
TARIFF = 30
WEBHOOK_PATH = f"/webhooks/{MERCHANT}/novalnet"
# 17-digit TIDs as Novalnet sends them; one range per purpose.
LOAD_TIDS = 14_000_000_000_000_000
WARMUP_TIDS = 15_000_000_000_000_000
SPLIT_TIDS = 16_000_000_000_000_000
REJECTED_TID = 17_000_000_000_000_000
WARMUP_EVENTS = 3


@dataclass
class Config:
    events: int
    concurrency: int
    backends: list[str]
    quick: bool
    profile: bool
    py_spy: str | None
    max_load_s: float | None
    split_samples: int
    split_max_s: float
    new_samples: int
    new_max_s: float
    drain_max_s: float
    split_drain_s: float
    verify_sample: int
    keep: bool
    pg_admin_url: str


@dataclass
class LoadResult:
    elapsed_s: float
    latencies: list[float]
    statuses: collections.Counter[int]
    outcomes: collections.Counter[str]
    ok_indices: list[int]
    errors: list[str] = field(default_factory=list)
    attempted: int = 0

    @property
    def ok(self) -> int:
        return len(self.ok_indices)

    def summary(self) -> dict[str, Any]:
        return {
            "events_per_s": round(self.ok / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": ms(percentile(self.latencies, 0.50)),
            "p99_ms": ms(percentile(self.latencies, 0.99)),
            "max_ms": ms(max(self.latencies)) if self.latencies else None,
            "elapsed_s": round(self.elapsed_s, 2),
        }


# --- the client side ---------------------------------------------------------------------


def run_async(coroutine: Any) -> Any:
    """Run on uvloop when it is installed: less client overhead on a shared machine."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def load(
    port: int,
    bodies: Sequence[bytes],
    concurrency: int,
    max_seconds: float | None,
    stored_marker: bytes | None,
) -> LoadResult:
    """Post every body once from ``concurrency`` keep-alive connections."""
    builder = LeanClient(HOST, port)
    requests = [builder.build_post(WEBHOOK_PATH, body) for body in bodies]
    indices = iter(range(len(requests)))
    result = LoadResult(0.0, [], collections.Counter(), collections.Counter(), [])
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds

    async def worker() -> None:
        client = LeanClient(HOST, port)
        try:
            for index in indices:
                if deadline is not None and time.perf_counter() > deadline:
                    break
                result.attempted += 1
                started = time.perf_counter()
                try:
                    status, body = await client.send(requests[index])
                except (HTTPError, OSError) as error:
                    result.statuses[0] += 1
                    if len(result.errors) < 5:
                        result.errors.append(f"{type(error).__name__}: {error}")
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] += 1
                if status == 200:
                    result.ok_indices.append(index)
                    if stored_marker is not None:
                        result.outcomes["stored" if stored_marker in body else "other"] += 1
                elif len(result.errors) < 5:
                    result.errors.append(f"HTTP {status}: {body[:200]!r}")
        finally:
            client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


async def sequential(
    port: int,
    bodies: Sequence[bytes],
    expect: int,
    max_seconds: float,
    marker: bytes | None = None,
    between: Callable[[], object] | None = None,
) -> tuple[list[float], int, list[bytes]]:
    """One connection, one request at a time, until done or ``max_seconds``.

    Returns the latencies of answers with status ``expect`` (and ``marker`` in the
    body), the number of other answers, and the bodies answered as expected.
    ``between`` runs (in a thread) after each request, outside the timing.
    """
    client = LeanClient(HOST, port)
    latencies: list[float] = []
    accepted: list[bytes] = []
    unexpected = 0
    deadline = time.perf_counter() + max_seconds
    try:
        for body in bodies:
            if time.perf_counter() > deadline:
                break
            request = client.build_post(WEBHOOK_PATH, body)
            started = time.perf_counter()
            status, answer = await client.send(request)
            elapsed = time.perf_counter() - started
            if status == expect and (marker is None or marker in answer):
                latencies.append(elapsed)
                accepted.append(body)
            else:
                unexpected += 1
            if between is not None:
                await asyncio.to_thread(between)
    finally:
        client.close()
    return latencies, unexpected, accepted


# --- databases -------------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    kind: str
    url: str
    drop: Callable[[], None]
    name: str | None = None  # PostgreSQL: its backends carry it in their process title

    def cpu_seconds(self) -> float:
        """CPU of the PostgreSQL backends serving this database (0 for SQLite: it runs in the server)."""
        return cpu_seconds(cmdline_part=f" {self.name} ") if self.name else 0.0

    def counts(self) -> dict[str, Any]:
        queries = {
            "members": "SELECT count(*) FROM members WHERE deleted_at IS NULL",
            "grants_open": "SELECT count(*) FROM grants WHERE revoked_at IS NULL",
            "grants": "SELECT count(*) FROM grants",
        }
        status_query = "SELECT status, count(*) FROM inbox_events GROUP BY status"
        jobs_query = "SELECT status, count(*) FROM jobs GROUP BY status"
        if self.kind == "sqlite":
            path = self.url.split("///", 1)[1]
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
                found: dict[str, Any] = {k: connection.execute(q).fetchone()[0] for k, q in queries.items()}
                found["inbox"] = dict(connection.execute(status_query).fetchall())
                found["jobs"] = dict(connection.execute(jobs_query).fetchall())
            return found
        import psycopg

        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://")) as connection:
            found = {k: connection.execute(q).fetchone()[0] for k, q in queries.items()}
            found["inbox"] = dict(connection.execute(status_query).fetchall())
            found["jobs"] = dict(connection.execute(jobs_query).fetchall())
        return found


def create_database(kind: str, workdir: Path, pg_admin_url: str) -> BenchDatabase:
    if kind == "sqlite":
        path = workdir / "einlass.db"
        return BenchDatabase(kind, f"sqlite+aiosqlite:///{path}", lambda: None)
    if kind != "postgresql":
        raise ValueError(f"unknown backend {kind!r}")
    import psycopg

    name = f"einlass_bench_{secrets.token_hex(4)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(pg_admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = pg_admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return BenchDatabase(kind, f"{base}/{name}", drop, name)


# --- einlass: setup, server, verification ------------------------------------------------------


def einlass_env(database_url: str, workdir: Path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env.update(
        EINLASS_DATABASE_URL=database_url,
        EINLASS_SECRET_KEY=secrets.token_urlsafe(32),
        EINLASS_MAIL_DIR=str(workdir / "mail"),
        EINLASS_RUN_WORKER_IN_PROCESS="true",
        EINLASS_LOG_LEVEL="WARNING",
        EINLASS_BASE_URL=f"http://{HOST}:{port}",
    )
    return env


def cli(env: dict[str, str], workdir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(EINLASS), *args], env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, process.args))} failed ({process.returncode}): {err or out}")
    return out


def set_up_merchant(env: dict[str, str], workdir: Path, access_key: str) -> str:
    """Migrations, merchant, area, plan and Novalnet secret through the CLI; returns the API key."""
    finish(cli(env, workdir, "migrate"))
    merchant = json.loads(finish(cli(env, workdir, "merchant", "create", MERCHANT, "--name", "Bench GmbH")))
    area = cli(env, workdir, "catalogue", "area", MERCHANT, AREA, "--name", "Premium")
    gateway = cli(
        env, workdir, "gateway", "set", MERCHANT, "novalnet", "--secret", f"payment_access_key={access_key}"
    )
    finish(area)
    finish(gateway)
    plan = ["catalogue", "plan", MERCHANT, "month", "--name", "30 days", "--amount", "990", "--area", AREA]
    finish(cli(env, workdir, *plan, "--period", "P30D", "--ref", f"novalnet={TARIFF}"))
    return str(merchant["api_key"])


def verify_members(
    port: int, api_key: str, database: BenchDatabase, expected: int, sample_size: int
) -> dict[str, Any]:
    """All members active: the REST API (every page, a sample in detail) and the database."""
    started = time.perf_counter()
    ids: list[str] = []
    with httpx.Client(
        base_url=f"http://{HOST}:{port}", headers={"authorization": f"Bearer {api_key}"}, timeout=120
    ) as http:
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["starting_after"] = cursor
            response = http.get("/api/v1/members", params=params)
            response.raise_for_status()
            page = response.json()
            ids += [member["id"] for member in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        sample = random.sample(ids, min(sample_size, len(ids)))
        inactive = []
        for member_id in sample:
            document = http.get(f"/api/v1/members/{member_id}").raise_for_status().json()
            if not any(a["area"] == AREA and a["active"] for a in document.get("access", [])):
                inactive.append(member_id)
    counts = database.counts()
    problems = []
    if len(ids) != expected:
        problems.append(f"API lists {len(ids)} members, expected {expected}")
    if inactive:
        problems.append(f"{len(inactive)} of {len(sample)} sampled members without active access")
    if counts["grants_open"] != expected:
        problems.append(f"database has {counts['grants_open']} open grants, expected {expected}")
    unapplied = {k: v for k, v in counts["inbox"].items() if k != "applied"}
    if unapplied:
        problems.append(f"inbox events not applied: {unapplied}")
    return {
        "expected": expected,
        "members_api": len(ids),
        "sampled": len(sample),
        "sample_inactive": len(inactive),
        **counts,
        "ok": not problems,
        "problems": problems,
        "seconds": round(time.perf_counter() - started, 2),
    }


def wait_for_outbox(database: BenchDatabase, max_seconds: float) -> tuple[bool, int]:
    """Wait until no job is pending or running; (drained, jobs left)."""
    deadline = time.perf_counter() + max_seconds
    while True:
        jobs = database.counts()["jobs"]
        left = jobs.get("pending", 0) + jobs.get("running", 0)
        if left == 0:
            return True, 0
        if time.perf_counter() > deadline:
            return False, left
        time.sleep(0.25)


def password_hash_cost(samples: int = 5) -> tuple[float | None, float | None]:
    """p50 wall and CPU ms of einlass.crypto.hash_password (argon2id) in this process."""
    try:
        from einlass.crypto import hash_password
    except ImportError:
        return None, None
    hash_password("warm-up-password")
    walls, cpus = [], []
    for _ in range(samples):
        wall, cpu = time.perf_counter(), time.process_time()
        hash_password(secrets.token_urlsafe(12))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return ms(percentile(walls, 0.5)), ms(percentile(cpus, 0.5))


class PgActivitySampler:
    """Samples pg_stat_activity of the bench database during the load: what its connections wait for.

    ``idle in transaction`` is a connection whose transaction waits for the
    application (the event loop); ``active Lock:transactionid`` waits for another
    transaction's row or unique-key lock.
    """

    QUERY = (
        "SELECT state || coalesce(' ' || wait_event_type || ':' || wait_event, ''), count(*) "
        "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() AND state IS NOT NULL GROUP BY 1"
    )

    def __init__(self, database: BenchDatabase, interval: float = 0.2) -> None:
        self.database, self.interval = database, interval
        self.totals: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psycopg

        url = self.database.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as connection:
            while not self.stop_event.wait(self.interval):
                for state, count in connection.execute(self.QUERY, (self.database.name,)).fetchall():
                    self.totals[state] += count
                self.samples += 1

    def stop(self) -> dict[str, float]:
        """Average number of connections in each state and wait."""
        self.stop_event.set()
        self.thread.join(10)
        if not self.samples:
            return {}
        return {state: round(count / self.samples, 2) for state, count in self.totals.most_common()}


# --- profiling -------------------------------------------------------------------------------------


class Profiler:
    """py-spy attached to the server's process tree during the load, raw (collapsed) stacks."""

    def __init__(self, py_spy: str, pid: int, output: Path) -> None:
        self.output = output
        self.log = output.with_suffix(".log").open("wb")
        self.process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        time.sleep(1.0)  # attach before the load starts
        if self.process.poll() is not None:
            self.log.close()
            raise RuntimeError(f"py-spy exited at once: {output.with_suffix('.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()


# Samples of the granian worker's event-loop thread with Python frames above the
# serve call, split by what they were doing (first match wins): (label, needles).
LOOP_BUCKETS = [
    ("inbox recovery sweep (worker)", ("recover_inbox (",)),
    ("apply transaction", ("apply_with_retries (",)),
    ("receive: lookup+verify+parse+store", ("receive (einlass/billing/inbox.py",)),
    ("outbox worker: jobs, claims", ("einlass/outbox/",)),
    ("access-decision cache poller", ("einlass/access/cache.py",)),
    ("other einlass code (REST API, readyz, ...)", ("einlass/",)),
]
# Cross-cutting shares of the busy event-loop samples; they overlap.
LOOP_INCLUSIVE = [
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("driver adapters (aiosqlite/psycopg)", ("aiosqlite/", "psycopg/")),
    ("pydantic", ("pydantic",)),
    ("email_validator", ("email_validator/",)),
    ("structlog", ("structlog/",)),
    ("cryptography (Fernet)", ("cryptography/",)),
    ("json", ("json/",)),
]
LOOP_MARKER = "_spawn_asgi_lifespan_worker ("  # granian's worker: the loop runs under this frame


def summarise_profile(path: Path) -> dict[str, Any]:
    """Where the server's samples went: threads first, then the event loop's busy samples.

    py-spy leaves out idle threads, but on a loaded machine a thread that waits for
    a CPU counts as active, so the thread shares are upper bounds; the split of the
    event loop's Python work is the reliable part.
    """
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([f for f in stack.split(";") if not f.startswith("process ")], int(count)))
    total = sum(count for _, count in stacks)
    if not total:
        return {"samples": 0}
    threads: collections.Counter[str] = collections.Counter()
    loop: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if frames:
            leaves[frames[-1]] += count
        marker = next((i for i, f in enumerate(frames) if LOOP_MARKER in f), None)
        if not frames:
            threads["native threads, no Python frames (granian runtime)"] += count
        elif any("hash_password (" in f for f in frames):
            threads["argon2id hash_password (thread pool)"] += count
        elif any("_connection_worker_thread (" in f for f in frames):
            threads["aiosqlite connection threads (SQLite calls, lock waits, queue waits)"] += count
        elif marker is None:
            threads["other threads"] += count
        elif marker == len(frames) - 1:
            threads["event loop thread: in granian/Rust (I/O or idle)"] += count
        else:
            threads["event loop thread: running Python"] += count
            above = frames[marker + 1 :]
            label = next(
                (name for name, needles in LOOP_BUCKETS if any(n in f for f in above for n in needles)),
                "event loop, framework, no einlass frame",
            )
            loop[label] += count
            for name, needles in LOOP_INCLUSIVE:
                if any(n in f for f in above for n in needles):
                    inclusive[name] += count
    busy = sum(loop.values())
    on_loop = busy + threads["event loop thread: in granian/Rust (I/O or idle)"]

    def share(counter: collections.Counter[str], whole: int) -> dict[str, float]:
        return {k: round(100 * v / whole, 1) for k, v in counter.most_common()} if whole else {}

    return {
        "samples": total,
        "threads_pct": share(threads, total),
        "event_loop_busy_pct": round(100 * busy / on_loop, 1) if on_loop else None,
        "event_loop_work_pct": share(loop, busy),
        "event_loop_inclusive_pct": share(inclusive, busy),
        "top_leaf_pct": dict(list(share(leaves, total).items())[:12]),
        "raw": str(path),
    }


# --- one backend -----------------------------------------------------------------------------------


@dataclass
class Prepared:
    kind: str
    directory: Path
    database: BenchDatabase
    env: dict[str, str]
    port: int
    api_key: str
    setup_s: float


def prepare_backend(kind: str, config: Config, access_key: str, workdir: Path) -> Prepared:
    """A fresh database with the schema, merchant, area, plan and Novalnet secret (via the CLI)."""
    started = time.perf_counter()
    directory = workdir / kind
    directory.mkdir()
    database = create_database(kind, directory, config.pg_admin_url)
    try:
        port = free_port()
        env = einlass_env(database.url, directory, port)
        api_key = set_up_merchant(env, directory, access_key)
    except BaseException:
        database.drop()
        raise
    return Prepared(kind, directory, database, env, port, api_key, time.perf_counter() - started)


class CpuMeter:
    """CPU seconds of the server's process group, the database backends and this client."""

    def __init__(self, server: Server, database: BenchDatabase | None = None) -> None:
        self.server, self.database = server, database

    def read(self) -> tuple[float, float, float]:
        db = self.database.cpu_seconds() if self.database else 0.0
        return cpu_seconds(process_group=self.server.pid), db, time.process_time()

    @staticmethod
    def per_request(
        before: tuple[float, float, float], after: tuple[float, float, float], n: int
    ) -> dict[str, Any]:
        if not n:
            return {"server": None, "db": None, "client": None}
        server, db, client = (round(1000 * (a - b) / n, 2) for a, b in zip(after, before, strict=True))
        return {"server": server, "db": db, "client": client}


def serve_and_measure(
    prepared: Prepared, config: Config, bodies: list[bytes], access_key: str
) -> dict[str, Any]:
    started = time.perf_counter()
    server = Server(
        f"einlass serve ({prepared.kind})",
        [str(EINLASS), "serve", "--host", HOST, "--port", str(prepared.port)],
        prepared.env,
        prepared.directory / "server.log",
        prepared.directory,
    )
    try:
        server.wait_ready(f"http://{HOST}:{prepared.port}/readyz")
        timings = {"setup_s": prepared.setup_s, "start_s": time.perf_counter() - started}
        return measure(prepared, config, bodies, access_key, server, timings)
    except BaseException:
        print(f"--- {server.name} log tail ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        # The database is thrown away: no need to wait long for the worker's batch.
        server.stop(grace=3.0)


def measure(
    prepared: Prepared,
    config: Config,
    bodies: list[bytes],
    access_key: str,
    server: Server,
    timings: dict[str, float],
) -> dict[str, Any]:
    port, database, kind = prepared.port, prepared.database, prepared.kind
    meter = CpuMeter(server, database)
    rejected = novalnet_payment(
        REJECTED_TID, email="nobody@example.de", tariff=TARIFF, access_key=access_key, bad_checksum=True
    )
    warmup = [
        novalnet_payment(WARMUP_TIDS + i, email=f"warmup{i}@example.de", tariff=TARIFF, access_key=access_key)
        for i in range(WARMUP_EVENTS)
    ]
    fresh = [
        novalnet_payment(SPLIT_TIDS + i, email=f"split{i}@example.de", tariff=TARIFF, access_key=access_key)
        for i in range(config.new_samples)
    ]

    async def warm_up() -> int:
        await sequential(port, [rejected] * 20, 401, 30)
        latencies, _, _ = await sequential(port, warmup, 200, 120, b'"stored"')
        return len(latencies)

    expected = run_async(warm_up())
    counts = database.counts()
    if not expected or counts["grants_open"] != expected:
        raise RuntimeError(
            f"warm-up: {expected} of {WARMUP_EVENTS} events stored, {counts['grants_open']} grants, "
            f"inbox {counts['inbox']}: events are not applied. Server errors:\n{server.log_errors()}"
        )
    wait_for_outbox(database, config.split_drain_s)

    # The split of one request's time, on the fresh server before the load:
    # sequential requests of three kinds, each phase with an empty outbox at its
    # start; CPU per request is counted until the phase's own jobs are done.
    split_started = time.perf_counter()
    splits: dict[str, list[float]] = {}
    cpu: dict[str, dict[str, Any]] = {}
    unexpected = 0
    before = meter.read()
    splits["verify_only"], bad, _ = run_async(
        sequential(port, [rejected] * config.split_samples, 401, config.split_max_s)
    )
    unexpected += bad
    cpu["verify_only"] = CpuMeter.per_request(before, meter.read(), len(splits["verify_only"]))
    before = meter.read()
    # One at a time with an empty outbox: the in-process worker's credentials job
    # (argon2id) of one event must not run during the next event's request.
    splits["new_event"], bad, stored = run_async(
        sequential(
            port,
            fresh,
            200,
            config.new_max_s,
            b'"stored"',
            lambda: wait_for_outbox(database, config.split_drain_s),
        )
    )
    unexpected += bad
    expected += len(stored)
    wait_for_outbox(database, config.split_drain_s)  # the credentials jobs belong to the cost of a new event
    cpu["new_event"] = CpuMeter.per_request(before, meter.read(), len(splits["new_event"]))
    stored = stored or warmup
    repeats = [stored[i % len(stored)] for i in range(config.split_samples)]
    before = meter.read()
    splits["duplicate"], bad, _ = run_async(
        sequential(port, repeats, 200, config.split_max_s, b'"duplicate"')
    )
    unexpected += bad
    cpu["duplicate"] = CpuMeter.per_request(before, meter.read(), len(splits["duplicate"]))
    timings["split_s"] = time.perf_counter() - split_started

    profiler = None
    if config.profile and config.py_spy:
        profiler = Profiler(config.py_spy, server.pid, prepared.directory / f"profile-{kind}.txt")
    sampler = PgActivitySampler(database) if database.name else None
    before = meter.read()
    try:
        result: LoadResult = run_async(load(port, bodies, config.concurrency, config.max_load_s, b'"stored"'))
    finally:
        pg_activity = sampler.stop() if sampler is not None else None
        if profiler is not None:
            profiler.stop()
    cpu["load"] = CpuMeter.per_request(before, meter.read(), result.ok)
    timings["load_s"] = result.elapsed_s
    load_done = time.perf_counter()
    jobs_at_load_end = database.counts()["jobs"]
    expected += result.outcomes["stored"]
    verification = verify_members(port, prepared.api_key, database, expected, config.verify_sample)
    timings["verify_s"] = time.perf_counter() - load_done

    # Credentials emails (with the password hash) run in the in-process outbox
    # worker after the 200: how long until that backlog is gone, or how fast it goes.
    drain_started = time.perf_counter()
    drained, backlog = wait_for_outbox(database, config.drain_max_s)
    drain_wait = time.perf_counter() - drain_started
    timings["outbox_drain_s"] = time.perf_counter() - load_done
    final = database.counts()
    jobs_done = final["jobs"].get("done", 0) - jobs_at_load_end.get("done", 0)
    final_ok = final["grants_open"] == expected and set(final["inbox"]) <= {"applied"}

    summary = result.summary()
    p50 = {name: ms(percentile(values, 0.5)) for name, values in splits.items()}
    entry: dict[str, Any] = {
        "backend": kind,
        "events_per_s": summary["events_per_s"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "events": result.ok,
        "concurrency": config.concurrency,
        "events_requested": len(bodies),
        "truncated": result.attempted < len(bodies),
        "max_ms": summary["max_ms"],
        "elapsed_s": summary["elapsed_s"],
        "non_200": {str(k): v for k, v in result.statuses.items() if k != 200},
        "errors": result.errors,
        "verify_only_ms": p50["verify_only"],
        "duplicate_ms": p50["duplicate"],
        "new_event_ms": p50["new_event"],
        "store_txn_ms": round(p50["duplicate"] - p50["verify_only"], 2),
        "apply_txn_ms": round(p50["new_event"] - p50["duplicate"], 2),
        "split_samples": {name: len(values) for name, values in splits.items()},
        "split_unexpected": unexpected,
        "cpu_ms_per_request": cpu,
        "verified": verification["ok"] and final_ok,
        "verification": verification,
        "final_counts": final,
        "outbox_backlog_at_load_end": jobs_at_load_end.get("pending", 0) + jobs_at_load_end.get("running", 0),
        "outbox_drained": drained,
        "outbox_backlog_left": backlog,
        "outbox_drain_s": round(timings["outbox_drain_s"], 2),
        "outbox_jobs_per_s_after_load": (
            round(jobs_done / timings["outbox_drain_s"], 1) if config.drain_max_s and drain_wait else None
        ),
        "pg_connections_during_load": pg_activity,
        "phases_s": {k: round(v, 2) for k, v in timings.items()},
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    if result.statuses.keys() - {200} or unexpected or not entry["verified"]:
        entry["server_log_errors"] = server.log_errors()
    if profiler is not None:
        entry["profile"] = summarise_profile(profiler.output)
    return entry


# --- baselines -------------------------------------------------------------------------------------


def run_raw_asgi(config: Config, bodies: list[bytes], workdir: Path) -> dict[str, Any]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    server = Server(
        "raw ASGI on granian",
        [sys.executable, str(BENCH_DIR / "_common.py"), "raw-asgi", str(port)],
        env,
        workdir / "raw-asgi.log",
        workdir,
    )
    try:
        server.wait_ready(f"http://{HOST}:{port}/")
        return measure_baseline("baseline-raw-asgi", config, bodies, port, server)
    finally:
        server.stop()


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {host}:{port};
        location / {{ return 200 '{{}}'; }}
    }}
}}
"""


def run_nginx(nginx: str, config: Config, bodies: list[bytes], workdir: Path) -> dict[str, Any]:
    port = free_port()
    prefix = workdir / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, host=HOST, port=port))
    server = Server(
        "nginx",
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        dict(os.environ),
        prefix / "stdout.log",
        workdir,
    )
    try:
        server.wait_ready(f"http://{HOST}:{port}/")
        return measure_baseline("baseline-nginx", config, bodies, port, server)
    finally:
        server.stop()


def measure_baseline(
    name: str, config: Config, bodies: list[bytes], port: int, server: Server
) -> dict[str, Any]:
    meter = CpuMeter(server)

    async def warm_up() -> None:
        await load(port, bodies[:200], config.concurrency, None, None)

    async def single() -> list[float]:
        latencies, _, _ = await sequential(port, bodies[: config.split_samples], 200, config.split_max_s)
        return latencies

    run_async(warm_up())
    before = meter.read()
    result: LoadResult = run_async(load(port, bodies, config.concurrency, config.max_load_s, None))
    cpu = CpuMeter.per_request(before, meter.read(), result.ok)
    sequential_latencies = run_async(single())
    summary = result.summary()
    return {
        "backend": name,
        "events_per_s": summary["events_per_s"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "events": result.ok,
        "concurrency": config.concurrency,
        "max_ms": summary["max_ms"],
        "elapsed_s": summary["elapsed_s"],
        "non_200": {str(k): v for k, v in result.statuses.items() if k != 200},
        "sequential_ms": ms(percentile(sequential_latencies, 0.5)),
        "cpu_ms_per_request": {"load": cpu},
    }


# --- the report --------------------------------------------------------------------------------------


def report(results: list[dict[str, Any]], notes: list[str], config: Config) -> None:
    baseline = next((r for r in results if r["backend"] == "baseline-raw-asgi" and "error" not in r), None)
    for entry in results:
        if baseline and "error" not in entry and entry is not baseline and entry.get("events_per_s"):
            entry["vs_baseline_throughput"] = round(entry["events_per_s"] / baseline["events_per_s"], 5)
            entry["vs_baseline_p50"] = round(entry["p50_ms"] / baseline["p50_ms"], 1)
    header = ["backend", "events", "conc", "events/s", "p50 ms", "p99 ms", "x baseline", "srv cpu/ev"]
    header += ["pg cpu/ev", "verify ms", "dup ms", "new ms", "all active"]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["backend"], *["-"] * (len(header) - 2), f"ERROR: {r['error'][:200]}"])
            continue
        cpu = r["cpu_ms_per_request"]["load"]
        rows.append(
            [
                r["backend"],
                r["events"],
                r["concurrency"],
                r["events_per_s"],
                r["p50_ms"],
                r["p99_ms"],
                r.get("vs_baseline_throughput", "-"),
                cpu["server"],
                cpu["db"] if r["backend"] == "postgresql" else "-",
                r.get("verify_only_ms", r.get("sequential_ms", "-")),
                r.get("duplicate_ms", "-"),
                r.get("new_event_ms", "-"),
                {True: "yes", False: "NO"}.get(r.get("verified"), "-"),
            ]
        )
    print()
    print(tables(rows, header))
    print(
        "(cpu/ev: CPU ms per event during the load, server process group and PostgreSQL backends; "
        "verify/dup/new: p50 of sequential single requests; for baselines 'verify ms' is a plain POST)"
    )
    for r in results:
        if "error" in r or "new_event_ms" not in r:
            continue
        cpu = r["cpu_ms_per_request"]
        print(f"\n{r['backend']}: single sequential requests, p50 wall ms [server + db CPU ms per request]")
        lines = [
            ("verify_only", "401 bad checksum: HTTP, merchant lookup, secret decrypt, checksum"),
            ("duplicate", "200 redelivery: + parse + store transaction (ON CONFLICT no-op)"),
            (
                "new_event",
                "200 new payment: + apply transaction (outbox empty before each; CPU incl. its jobs)",
            ),
        ]
        for key, label in lines:
            spent = cpu[key]
            print(f"  {r[key + '_ms']:>9} ms  [{spent['server']} + {spent['db']}]  {label}")
        print(
            f"  => store transaction ~{r['store_txn_ms']} ms, apply transaction ~{r['apply_txn_ms']} ms "
            f"(differences of medians); argon2id hash_password, in this process: "
            f"{r.get('password_hash_ms')} ms wall, {r.get('password_hash_cpu_ms')} ms CPU"
        )
        drain = "drained" if r["outbox_drained"] else f"NOT drained, {r['outbox_backlog_left']} jobs left"
        rate = r["outbox_jobs_per_s_after_load"]
        print(
            f"  outbox: {r['outbox_backlog_at_load_end']} jobs waiting at the last 200; {drain} "
            f"{r['outbox_drain_s']} s later" + (f" ({rate} jobs/s)" if rate is not None else "")
        )
        if r.get("pg_connections_during_load"):
            states = ", ".join(f"{k} {v}" for k, v in r["pg_connections_during_load"].items())
            print(f"  PostgreSQL connections during the load, average count by state: {states}")
        print(f"  phases (s): {r['phases_s']}; load average after: {r['loadavg_after']}")
        if r.get("truncated"):
            print(
                f"  load stopped at the time budget: {r['events']} of {r['events_requested']} events "
                f"in {r['elapsed_s']} s"
            )
        if not r.get("verified"):
            print(f"  VERIFICATION FAILED: {r['verification']['problems']} final={r['final_counts']}")
        if r.get("non_200") or r.get("split_unexpected"):
            print(
                f"  non-200 answers: {r['non_200']} {r['errors'][:2]}; in the splits: {r['split_unexpected']}"
            )
        if r.get("server_log_errors"):
            print(
                "  server log, error lines:\n"
                + "\n".join(f"    {x}" for x in r["server_log_errors"].splitlines())
            )
        profile = r.get("profile")
        if profile and profile.get("samples"):
            print(f"  py-spy, {profile['samples']} samples of the server during the load, by thread:")
            for label, pct in profile["threads_pct"].items():
                print(f"    {pct:5.1f}%  {label}")
            print(
                f"   event loop busy with Python: {profile['event_loop_busy_pct']}% of its samples; of that:"
            )
            for label, pct in profile["event_loop_work_pct"].items():
                print(f"    {pct:5.1f}%  {label}")
            print(
                "   inclusive: "
                + ", ".join(f"{k} {v}%" for k, v in profile["event_loop_inclusive_pct"].items())
            )
            print("   top leaf frames (all threads):")
            for frame, pct in list(profile["top_leaf_pct"].items())[:8]:
                print(f"    {pct:5.1f}%  {frame}")
            print(f"   raw stacks: {profile['raw']}")
    for note in notes:
        print(f"note: {note}")
    compact = []
    keep = ("backend", "events_per_s", "p50_ms", "p99_ms", "events", "concurrency", "error")
    keep += ("events_requested", "truncated", "verified", "verify_only_ms", "duplicate_ms", "new_event_ms")
    keep += ("store_txn_ms", "apply_txn_ms", "password_hash_ms", "password_hash_cpu_ms")
    keep += ("vs_baseline_throughput", "sequential_ms")
    keep += ("outbox_backlog_at_load_end", "outbox_jobs_per_s_after_load")
    for r in results:
        entry = {k: r[k] for k in keep if k in r}
        if "cpu_ms_per_request" in r:
            entry["cpu_ms_per_event"] = r["cpu_ms_per_request"]["load"]
            entry["cpu_ms_per_request_sequential"] = {
                k: v for k, v in r["cpu_ms_per_request"].items() if k != "load"
            } or None
            if entry["cpu_ms_per_request_sequential"] is None:
                del entry["cpu_ms_per_request_sequential"]
        compact.append(entry)
    print(json.dumps({"bench": "ingest", "quick": config.quick, "results": compact, "notes": notes}))


# --- main --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1000 events, time-boxed: under about a minute")
    parser.add_argument("--events", type=int, help="events per backend (default 5000, --quick 1000)")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent connections (default 50)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy during load")
    parser.add_argument("--py-spy", default=os.environ.get("BENCH_PY_SPY") or shutil.which("py-spy"))
    parser.add_argument(
        "--max-load-seconds",
        type=float,
        help="stop sending new events after this long (default: none, --quick 4)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, profiles)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}")
    quick = args.quick
    return Config(
        events=args.events or (1000 if quick else 5000),
        concurrency=args.concurrency,
        backends=backends,
        quick=quick,
        profile=args.profile,
        py_spy=args.py_spy,
        max_load_s=args.max_load_seconds if args.max_load_seconds is not None else (4.0 if quick else None),
        split_samples=100 if quick else 300,
        split_max_s=1.0 if quick else 20.0,
        new_samples=8 if quick else 300,
        new_max_s=3.0 if quick else 40.0,
        drain_max_s=0.0 if quick else 60.0,
        split_drain_s=4.0 if quick else 60.0,
        verify_sample=5 if quick else 50,
        keep=args.keep or args.profile,
        pg_admin_url=args.pg_admin_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)

    def terminate(_signum: int, _frame: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminate)
    workdir = Path(tempfile.mkdtemp(prefix="einlass-bench-"))
    load_before = os.getloadavg()[0]
    notes: list[str] = [
        f"machine: {os.cpu_count()} CPUs shared by client and server; load average at start {load_before:.2f}"
    ]
    if load_before > (os.cpu_count() or 1):
        notes.append("the machine was busy with other work: wall-clock figures are noisy, CPU ms less so")
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    access_key = secrets.token_hex(16)
    tag = secrets.token_hex(3)
    bodies = [
        novalnet_payment(
            LOAD_TIDS + i, email=f"buyer{i:06d}-{tag}@example.de", tariff=TARIFF, access_key=access_key
        )
        for i in range(config.events)
    ]
    failed = False
    prepared: dict[str, Prepared] = {}
    try:
        print(f"ingest bench: {config.events} events, concurrency {config.concurrency}, work dir {workdir}")
        print("baseline: raw ASGI app on granian ...", flush=True)
        try:
            results.insert(0, run_raw_asgi(config, bodies, workdir))
        except Exception as error:
            failed = True
            traceback.print_exc()
            results.insert(0, {"backend": "baseline-raw-asgi", "error": f"{type(error).__name__}: {error}"})
        nginx = shutil.which("nginx")
        if nginx:
            print("baseline: nginx return 200 ...", flush=True)
            try:
                results.insert(1, run_nginx(nginx, config, bodies, workdir))
            except Exception as error:
                traceback.print_exc()
                notes.append(f"nginx baseline failed: {error}")
        else:
            notes.append("nginx is not installed: nginx 'return 200' baseline skipped")
        if config.profile and not config.py_spy:
            notes.append("--profile: py-spy not found (PATH, BENCH_PY_SPY, --py-spy); timing split only")
        hash_ms, hash_cpu_ms = password_hash_cost()
        for kind in config.backends:
            # Prepared just before it is served: the schema is the one of the code that serves it.
            print(f"{kind}: migrate, merchant, area, plan, gateway (CLI) ...", flush=True)
            try:
                ready = prepared[kind] = prepare_backend(kind, config, access_key, workdir)
                print(
                    f"{kind}: serving, splitting one request's time, posting {config.events} events",
                    flush=True,
                )
                entry = serve_and_measure(ready, config, bodies, access_key)
                entry["password_hash_ms"], entry["password_hash_cpu_ms"] = hash_ms, hash_cpu_ms
                results.append(entry)
            except Exception as error:
                failed = True
                traceback.print_exc()
                results.append({"backend": kind, "error": f"{type(error).__name__}: {error}"})
        failed = failed or any(r.get("verified") is False for r in results)
        notes.append(f"total runtime {time.perf_counter() - started:.1f} s")
        if config.keep:
            notes.append(f"work directory kept: {workdir}")
        report(results, notes, config)
    finally:
        for ready in prepared.values():
            try:
                ready.database.drop()
            except Exception:
                traceback.print_exc()
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
