"""Reconcile benchmark: push provisioning (htpasswd file targets) at 10k, 100k and 1M members.

Three measurements per backend (PostgreSQL by default, SQLite on request), all
in this process against a real database, with einlass's own code:

1. **Full reconciliation.** A merchant with one area, one plan and one local
   htpasswd target; N members with one covering grant and one push hash each
   (``sha512_crypt:5000``; one precomputed hash reused for every member, since
   hashing a million passwords is not what is measured), loaded with COPY
   (PostgreSQL) or executemany (SQLite), then ``VACUUM ANALYZE``. The database
   grows 10k -> 100k -> 1M. At each size ``reconciler.reconcile_target`` is
   timed from an empty file (it writes all N lines: ``full_reconcile_s``),
   again when the file is in sync (nothing written: ``in_sync_s``), and once
   more with the file's last line removed, as after one payment
   (``one_missing_s``: the whole file is parsed, compared and written).
   Median of 3 runs up to 100k members, one run at 1M. Phases: the desired
   state from the database (``db_read``: the query plus the access rule),
   reading the file, the plan (parse, render, drift), writing, and recording
   the result (target row, audit entry); CPU seconds of this process and of
   the PostgreSQL backends serving the database.
2. **One payment's change at 1k vs 1M members.** A signed generic
   ``payment.confirmed`` for a new customer, through
   ``einlass.billing.inbox.receive`` (merchant lookup, secret, signature, the
   store transaction, then the apply transaction: payment, ledger, member,
   grant, the ``access_changed`` enqueue of the provisioning job, credentials
   job, audit), on a database holding 1k members and on the one holding 1M,
   interleaved, median of 50 each. Before each run the waiting provisioning job
   is marked done (as a worker would), so every run inserts its own job rather
   than being absorbed by a waiting one.
3. **File writes caused by a burst of 1,000 payments.** A fresh database and
   merchant, the app in-process (``httpx.ASGITransport``) and its outbox worker
   running (default settings: batch of 20, 0.5 s poll, real argon2id and
   sha512_crypt for the credentials jobs). 1,000 signed ``payment.confirmed``
   for new customers are posted from 20 concurrent clients; writes of the
   target file are counted by wrapping ``LocalFileTransport.write_atomic``
   until the worker is idle and the file lists all 1,000 members.

Before each timing the bench waits (up to 2 minutes, ``--max-wait``) for the
machine to settle: 1-minute load average at most 0.75 per CPU, or the CPUs
less than 35 % busy for two consecutive seconds. The load at the start of each
timing is reported with it.

PostgreSQL databases are ``einlass_reconcile_bench_<random>`` on
``postgresql://postgres@127.0.0.1:5432/postgres`` (``--pg-admin-url``), created
here and dropped at the end; SQLite files live in a temporary directory.

Usage::

    .venv/bin/python bench/reconcile.py [--quick] [--backends postgresql,sqlite]

``--quick``: 10k and 100k members only (one run at 100k), the change at 1k
vs 100k (20 runs each; key ``change_ratio_100k_vs_1k``), a burst of 100
payments (its writes scaled to 1,000, with ``extrapolated_from``), at most 2 s
of waiting for the machine per timing: about a minute on an idle 2-core box.
The last line of the output is one JSON object with the results; every entry
carries ``backend`` and the 1-minute load average at its measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, tables

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_PREFIX = "einlass_reconcile_bench_"
MERCHANT = "bench"
AREA = "premium"
PRODUCT = "prod-30"
SCHEME = "sha512_crypt:5000"
CHUNK = 50_000
CPUS = os.cpu_count() or 1


@dataclass
class Config:
    quick: bool
    backends: list[str]
    sizes: list[int]
    small: int
    change_runs: int
    burst: int
    burst_concurrency: int
    max_wait_s: float
    burst_timeout_s: float
    keep: bool
    pg_admin_url: str


# --- the machine -----------------------------------------------------------------------------


def _cpu_ticks() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_pct(interval: float = 1.0) -> float:
    """How busy all CPUs were over the next ``interval`` seconds, in percent."""
    busy0, total0 = _cpu_ticks()
    time.sleep(interval)
    busy1, total1 = _cpu_ticks()
    return round(100.0 * (busy1 - busy0) / max(1, total1 - total0), 1)


def wait_for_quiet(max_wait_s: float, label: str) -> dict[str, Any]:
    """Wait (bounded) until other work has settled; returns the load seen at the end."""
    started = time.monotonic()
    quiet_samples = 0
    busy = busy_pct(0.5)
    while True:
        load1 = os.getloadavg()[0]
        quiet_samples = quiet_samples + 1 if busy < 35.0 else 0
        if load1 <= 0.75 * CPUS or quiet_samples >= 2:
            break
        if time.monotonic() - started >= max_wait_s:
            print(
                f"  [{label}] still busy after {max_wait_s:.0f} s (load {load1:.2f}, {busy}% CPU); measuring"
            )
            break
        busy = busy_pct(1.0)
    load = os.getloadavg()
    return {
        "load1": round(load[0], 2),
        "load5": round(load[1], 2),
        "busy_pct": busy,
        "waited_s": round(time.monotonic() - started, 1),
    }


# --- databases ---------------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    kind: str
    url: str  # SQLAlchemy URL
    name: str | None = None  # PostgreSQL database name
    path: Path | None = None  # SQLite file

    def pg_cpu_s(self) -> float:
        """CPU of the PostgreSQL backends serving this database (0 for SQLite: it runs in this process)."""
        return cpu_seconds(cmdline_part=f" {self.name} ") if self.name else 0.0


class Databases:
    """Creates databases and drops the ones it created, and only those."""

    def __init__(self, pg_admin_url: str, workdir: Path) -> None:
        self.pg_admin_url = pg_admin_url
        self.workdir = workdir
        self.created: list[str] = []

    def create(self, kind: str, label: str) -> BenchDatabase:
        if kind == "sqlite":
            path = self.workdir / f"{kind}-{label}.db"
            return BenchDatabase(kind, f"sqlite+aiosqlite:///{path}", path=path)
        import psycopg

        name = f"{DB_PREFIX}{secrets.token_hex(4)}"
        with psycopg.connect(self.pg_admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        base = self.pg_admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        return BenchDatabase(kind, f"{base}/{name}", name=name)

    def drop_all(self) -> None:
        if not self.created:
            return
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True) as connection:
            for name in list(self.created):
                assert name.startswith(DB_PREFIX)
                try:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    self.created.remove(name)
                except Exception:
                    traceback.print_exc()


def pg_dsn(database: BenchDatabase) -> str:
    return database.url.replace("postgresql+psycopg://", "postgresql://")


# --- the merchant, through einlass's services ---------------------------------------------------


@dataclass
class Shop:
    database: BenchDatabase
    db: Any  # einlass.db.engine.Database
    settings: Any  # einlass.config.Settings
    merchant_id: str
    area_id: str
    target_id: str
    path: Path
    generic_secret: str
    members: int = 0  # bulk-loaded so far


def make_settings(database: BenchDatabase, workdir: Path, secret_key: str) -> Any:
    from einlass.config import Settings

    return Settings(
        database_url=database.url,
        secret_key=secret_key,
        mail_dir=workdir / "mail",
        run_worker_in_process=False,
        base_url="http://einlass.bench",
        log_level="WARNING",
    )


async def set_up_shop(database: BenchDatabase, workdir: Path, label: str) -> Shop:
    """Schema, merchant, area, plan (generic product), generic secret and an htpasswd target."""
    from einlass import standard_webhooks
    from einlass.audit.service import CLI
    from einlass.billing import catalogue
    from einlass.db.engine import Database
    from einlass.db.migrate import upgrade_async
    from einlass.provisioning.service import create_target
    from einlass.tenants import service as tenants

    secret_key = secrets.token_urlsafe(32)
    settings = make_settings(database, workdir, secret_key)
    db = Database(database.url)
    await upgrade_async(db)
    path = workdir / f"{label}.htpasswd"
    generic_secret = standard_webhooks.generate_secret()
    async with db.transaction() as session:
        merchant, _issued = await tenants.create_merchant(session, MERCHANT, "Bench GmbH", CLI)
        area = await catalogue.create_area(session, merchant, AREA, "Premium", CLI)
        await catalogue.create_plan(
            session,
            merchant,
            slug="month",
            name="30 days",
            amount=990,
            currency="EUR",
            access_period="P30D",
            areas=[AREA],
            gateway_refs={"generic": [PRODUCT]},
            actor=CLI,
        )
        await tenants.set_gateway_secrets(
            session, secret_key, merchant, "generic", {"signing_secret": generic_secret}, CLI
        )
        target = await create_target(
            session,
            secret_key,
            merchant.id,
            name="www",
            kind="htpasswd_file",
            config={"path": str(path)},
            secrets=None,
            areas=[AREA],
            actor=CLI,
        )
        ids = (merchant.id, area.id, target.id)
    return Shop(database, db, settings, ids[0], ids[1], ids[2], path, generic_secret)


# --- bulk data ---------------------------------------------------------------------------------


def _member_email(i: int) -> str:
    # Usernames in an order unrelated to member ids (Knuth's multiplicative hash, a bijection
    # mod 2**32), as real sign-ups are: the reconciler's sort by username has real work to do.
    return f"m{(i * 2654435761) % 2**32:08x}.{i}@example.com"


@dataclass
class BulkRows:
    """Rows for members, grants and member_push_hashes, matching the models (checked at load)."""

    merchant_id: str
    area_id: str
    push_hash: str
    password_hash: str
    now: datetime

    MEMBER_COLUMNS = (
        "id",
        "merchant_id",
        "email",
        "email_normalized",
        "name",
        "username",
        "password_hash",
        "locale",
        "locked_at",
        "lock_reason",
        "deleted_at",
        "created_at",
        "updated_at",
    )
    GRANT_COLUMNS = (
        "id",
        "merchant_id",
        "member_id",
        "area_id",
        "source_kind",
        "source_id",
        "starts_at",
        "ends_at",
        "revoked_at",
        "revoked_reason",
        "note",
        "created_at",
        "updated_at",
    )
    HASH_COLUMNS = ("member_id", "scheme", "merchant_id", "hash", "created_at")

    def rows(self, start: int, stop: int, stamp: Callable[[datetime], str]) -> Iterator[tuple[Any, ...]]:
        """(member, grant, push hash) per member index. Every member may enter now: one grant that
        started in the past and ends in 1 to 365 days (every tenth: no end)."""
        now = stamp(self.now)
        starts = [stamp(self.now - timedelta(days=d)) for d in range(1, 301)]
        ends = [stamp(self.now + timedelta(days=d)) for d in range(1, 366)]
        for i in range(start, stop):
            member_id = f"mem_{i:026d}"
            email = _member_email(i)
            member = (
                member_id,
                self.merchant_id,
                email,
                email,
                f"Member {i}",
                email,
                self.password_hash,
                "en",
                None,
                None,
                None,
                now,
                now,
            )
            grant = (
                f"grt_{i:026d}",
                self.merchant_id,
                member_id,
                self.area_id,
                "payment",
                f"pay_{i:026d}",
                starts[i % 300],
                None if i % 10 == 0 else ends[i % 365],
                None,
                None,
                None,
                now,
                now,
            )
            push = (member_id, SCHEME, self.merchant_id, self.push_hash, now)
            yield member, grant, push


def check_columns() -> None:
    """The bulk rows must match the models; fail loudly when the schema moved."""
    from einlass.members.models import Grant, Member
    from einlass.provisioning.models import MemberPushHash

    for model, columns in (
        (Member, BulkRows.MEMBER_COLUMNS),
        (Grant, BulkRows.GRANT_COLUMNS),
        (MemberPushHash, BulkRows.HASH_COLUMNS),
    ):
        actual = [column.name for column in model.__table__.columns]  # type: ignore[attr-defined]
        if sorted(actual) != sorted(columns):
            raise RuntimeError(f"{model.__tablename__}: the bench writes {columns}, the model has {actual}")


def _pg_stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _sqlite_stamp(value: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format, naive UTC (einlass.db.base.UTCDateTime).
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _copy_text(rows: Sequence[tuple[Any, ...]]) -> str:
    # No value contains a tab, newline or backslash; None is COPY's \N.
    return "".join("\t".join("\\N" if v is None else str(v) for v in row) + "\n" for row in rows)


def load_postgresql(database: BenchDatabase, bulk: BulkRows, start: int, stop: int) -> None:
    """COPY members, then grants and push hashes in parallel (two connections).

    Foreign-key triggers are skipped for the load (``session_replication_role =
    replica``): the rows are consistent by construction, and every index is
    maintained as in production.
    """
    import psycopg

    def copy(table: str, columns: Sequence[str], which: int) -> None:
        with psycopg.connect(pg_dsn(database)) as connection:
            connection.execute("SET session_replication_role = replica")
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with connection.cursor() as cursor, cursor.copy(statement) as writer:
                for low in range(start, stop, CHUNK):
                    chunk = [row[which] for row in bulk.rows(low, min(stop, low + CHUNK), _pg_stamp)]
                    writer.write(_copy_text(chunk))

    copy("members", BulkRows.MEMBER_COLUMNS, 0)
    errors: list[BaseException] = []

    def run(table: str, columns: Sequence[str], which: int) -> None:
        try:
            copy(table, columns, which)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=("grants", BulkRows.GRANT_COLUMNS, 1)),
        threading.Thread(target=run, args=("member_push_hashes", BulkRows.HASH_COLUMNS, 2)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    with psycopg.connect(pg_dsn(database), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE members, grants, member_push_hashes")


def load_sqlite(database: BenchDatabase, bulk: BulkRows, start: int, stop: int) -> None:
    assert database.path is not None
    connection = sqlite3.connect(database.path, timeout=60)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        statements = [
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            for table, columns in (
                ("members", BulkRows.MEMBER_COLUMNS),
                ("grants", BulkRows.GRANT_COLUMNS),
                ("member_push_hashes", BulkRows.HASH_COLUMNS),
            )
        ]
        for low in range(start, stop, CHUNK):
            rows = list(bulk.rows(low, min(stop, low + CHUNK), _sqlite_stamp))
            with connection:
                for which, statement in enumerate(statements):
                    connection.executemany(statement, [row[which] for row in rows])
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


async def grow(shop: Shop, bulk: BulkRows, members: int) -> float:
    """Load members [shop.members, members); the seconds it took."""
    started = time.perf_counter()
    loader = load_postgresql if shop.database.kind == "postgresql" else load_sqlite
    await asyncio.to_thread(loader, shop.database, bulk, shop.members, members)
    shop.members = members
    return time.perf_counter() - started


def precomputed_hashes() -> tuple[str, str]:
    from einlass.crypto import hash_password as argon2id
    from einlass.provisioning.hashing import hash_password

    return hash_password(SCHEME, "bench-password-1234"), argon2id("bench-password-1234")


# --- phase timing of one reconciliation ---------------------------------------------------------


class Phases:
    """Wraps the reconciler's steps (module attributes, looked up at call time) to time them,
    and counts writes per file path."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.writes: dict[str, int] = {}

    def install(self) -> None:
        from einlass.provisioning import reconciler
        from einlass.provisioning.transports.local import LocalFileTransport

        def timed_async(name: str, function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            @functools.wraps(function)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - started

            return wrapper

        def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - started

            return wrapper

        for attribute, name in (("_htpasswd_desired", "db_read"), ("_record", "record")):
            if hasattr(reconciler, attribute):
                setattr(reconciler, attribute, timed_async(name, getattr(reconciler, attribute)))
        if hasattr(reconciler, "plan_htpasswd"):
            reconciler.plan_htpasswd = timed("plan", reconciler.plan_htpasswd)  # type: ignore[assignment]
        LocalFileTransport.read = timed_async("file_read", LocalFileTransport.read)  # type: ignore[method-assign]
        original_write = LocalFileTransport.write_atomic

        async def write_atomic(transport: LocalFileTransport, content: bytes) -> None:
            key = str(transport.path)
            self.writes[key] = self.writes.get(key, 0) + 1
            await original_write(transport, content)

        LocalFileTransport.write_atomic = timed_async("file_write", write_atomic)  # type: ignore[method-assign]

    def start(self) -> None:
        self.current = {}

    def snapshot(self, total: float) -> dict[str, float]:
        phases = {name: round(value, 3) for name, value in self.current.items()}
        phases["other"] = round(max(0.0, total - sum(self.current.values())), 3)
        return phases


PHASES = Phases()


# --- 1. full reconciliation --------------------------------------------------------------------


async def time_reconcile(shop: Shop, *, expect_written: bool, expect_missing: int = 0) -> dict[str, Any]:
    from einlass.audit.service import CLI
    from einlass.provisioning import reconciler

    PHASES.start()
    cpu0, pg0 = time.process_time(), shop.database.pg_cpu_s()
    started = time.perf_counter()
    result = await reconciler.reconcile_target(shop.db, shop.settings, shop.merchant_id, shop.target_id, CLI)
    elapsed = time.perf_counter() - started
    cpu, pg = time.process_time() - cpu0, shop.database.pg_cpu_s() - pg0
    if result is None or result.status != "ok":
        raise RuntimeError(f"reconciliation failed: {result and result.as_dict()}")
    found = (result.members, result.written, len(result.drift.missing))
    if found != (shop.members, expect_written, expect_missing):
        raise RuntimeError(
            f"expected (members, written, missing) = {(shop.members, expect_written, expect_missing)}, "
            f"got {found}"
        )
    return {
        "s": elapsed,
        "phases": PHASES.snapshot(elapsed),
        "app_cpu_s": round(cpu, 2),
        "pg_cpu_s": round(pg, 2),
    }


def file_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def drop_last_line(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: content.rstrip(b"\n").rfind(b"\n") + 1])


async def measure_size(shop: Shop, config: Config) -> dict[str, Any]:
    """Three reconciliations, median of 3 at up to 100k members (``--quick``: 10k), one run above:

    - ``full``: from an empty file, every member is written;
    - ``in_sync``: the file holds what it should, nothing is written;
    - ``one_missing``: the file lacks one member (the last line), as after one
      payment: the whole file is read, parsed, compared and written again.
    """
    repeats = 3 if shop.members <= (10_000 if config.quick else 100_000) else 1
    label = f"{shop.database.kind} {shop.members:,}"
    runs: dict[str, list[dict[str, Any]]] = {"full": [], "in_sync": [], "one_missing": []}
    load = await asyncio.to_thread(wait_for_quiet, config.max_wait_s, label)
    for repeat in range(repeats):
        if repeat:
            await asyncio.to_thread(wait_for_quiet, min(config.max_wait_s, 20.0), label)
        shop.path.write_bytes(b"")
        runs["full"].append(await time_reconcile(shop, expect_written=True, expect_missing=shop.members))
        lines = file_lines(shop.path)
        if lines != shop.members + 1:  # the header comment, then one line per member
            raise RuntimeError(f"{shop.path} has {lines} lines, expected {shop.members + 1}")
        runs["in_sync"].append(await time_reconcile(shop, expect_written=False))
        drop_last_line(shop.path)
        runs["one_missing"].append(await time_reconcile(shop, expect_written=True, expect_missing=1))
    median = {kind: sorted(found, key=lambda r: r["s"])[len(found) // 2] for kind, found in runs.items()}
    return {
        "members": shop.members,
        "full_reconcile_s": round(median["full"]["s"], 3),
        "in_sync_s": round(median["in_sync"]["s"], 3),
        "one_missing_s": round(median["one_missing"]["s"], 3),
        "runs": repeats,
        "file_mb": round(shop.path.stat().st_size / 1e6, 1),
        "phases_s": {kind: run["phases"] for kind, run in median.items()},
        "cpu_s": {kind: {"app": run["app_cpu_s"], "db": run["pg_cpu_s"]} for kind, run in median.items()},
        "load": load,
    }


# --- 2. one payment's change ---------------------------------------------------------------------


class ApplyTimer:
    """Times einlass.billing.inbox.apply_with_retries (the apply transaction) inside receive."""

    _instance: ApplyTimer | None = None

    @classmethod
    def get(cls) -> ApplyTimer:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self) -> None:
        from einlass.billing import inbox

        self.last = 0.0
        original = inbox.apply_with_retries

        async def timed(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                await original(*args, **kwargs)
            finally:
                self.last = time.perf_counter() - started

        inbox.apply_with_retries = timed  # type: ignore[assignment]


def signed_payment(shop: Shop, payment_id: str, email: str) -> tuple[bytes, dict[str, str]]:
    from einlass import standard_webhooks

    payload = {
        "type": "payment.confirmed",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "payment_id": payment_id,
            "amount": 990,
            "currency": "EUR",
            "product_id": PRODUCT,
            "customer": {"email": email, "name": "Erika Mustermann", "locale": "de"},
        },
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    msg_id = f"msg_{secrets.token_hex(12)}"
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_webhooks.sign(shop.generic_secret, msg_id, timestamp, body),
    }
    return body, headers


async def settle_provisioning_job(shop: Shop) -> None:
    """Mark the waiting provisioning job done, as a worker would: the next change inserts one."""
    from sqlalchemy import update

    from einlass.members.service import JOB_PROVISION
    from einlass.outbox.models import JOB_DONE, JOB_PENDING, Job

    async with shop.db.transaction() as session:
        await session.execute(
            update(Job)
            .where(Job.kind == JOB_PROVISION, Job.status == JOB_PENDING)
            .values(status=JOB_DONE, dedup_key=None)
        )


async def one_change(shop: Shop, timer: ApplyTimer, tag: str) -> tuple[float, float]:
    from einlass.billing.inbox import receive

    await settle_provisioning_job(shop)
    body, headers = signed_payment(shop, f"pay_{tag}", f"buyer.{tag}@example.com")
    started = time.perf_counter()
    receipt = await receive(shop.db, shop.settings, MERCHANT, "generic", body, headers)
    elapsed = time.perf_counter() - started
    if receipt.status_code != 200 or receipt.outcome != "stored":
        raise RuntimeError(f"payment not stored: {receipt}")
    return elapsed, timer.last


async def check_changes(shop: Shop, tags: list[str]) -> None:
    """Every measured payment opened a grant and enqueued a provisioning job."""
    from sqlalchemy import func, select

    from einlass.members.models import Grant, Member
    from einlass.members.service import JOB_PROVISION
    from einlass.outbox.models import Job

    async with shop.db.transaction() as session:
        grants = await session.scalar(
            select(func.count())
            .select_from(Grant)
            .join(Member, Member.id == Grant.member_id)
            .where(Member.email_normalized.in_([f"buyer.{tag}@example.com" for tag in tags]))
        )
        jobs = await session.scalar(select(func.count()).select_from(Job).where(Job.kind == JOB_PROVISION))
    if grants != len(tags):
        raise RuntimeError(f"{grants} grants for {len(tags)} payments")
    if (jobs or 0) < len(tags):
        raise RuntimeError(f"only {jobs} provisioning jobs for {len(tags)} payments")


async def measure_change(small: Shop, big: Shop, config: Config) -> dict[str, Any]:
    timer = ApplyTimer.get()
    run = secrets.token_hex(3)
    for shop in (small, big):  # warm-up: connections, statement caches
        for i in range(5):
            await one_change(shop, timer, f"warm{run}{shop.members}x{i}")
    load = await asyncio.to_thread(wait_for_quiet, config.max_wait_s, "change")
    samples: dict[int, list[tuple[float, float]]] = {small.members: [], big.members: []}
    tags: dict[int, list[str]] = {small.members: [], big.members: []}
    for i in range(config.change_runs):
        order = (small, big) if i % 2 == 0 else (big, small)
        for shop in order:
            tag = f"{run}{shop.members}n{i}"
            samples[shop.members].append(await one_change(shop, timer, tag))
            tags[shop.members].append(tag)
    for shop in (small, big):
        await check_changes(shop, tags[shop.members])

    def median_ms(values: list[tuple[float, float]], which: int) -> float:
        return round(1000 * statistics.median(v[which] for v in values), 2)

    small_ms, big_ms = median_ms(samples[small.members], 0), median_ms(samples[big.members], 0)
    big_name = "1m" if big.members == 1_000_000 else f"{big.members // 1000}k"
    small_name = f"{small.members // 1000}k"
    return {
        f"change_ratio_{big_name}_vs_{small_name}": round(big_ms / small_ms, 2),
        f"change_{small_name}_ms": small_ms,
        f"change_{big_name}_ms": big_ms,
        f"apply_{small_name}_ms": median_ms(samples[small.members], 1),
        f"apply_{big_name}_ms": median_ms(samples[big.members], 1),
        "runs": config.change_runs,
        "members": [small.members, big.members],
        "load": load,
    }


# --- 3. file writes caused by a burst of payments ------------------------------------------------


async def measure_burst(shop: Shop, config: Config) -> dict[str, Any]:
    import httpx
    from sqlalchemy import func, select

    from einlass.app import create_app
    from einlass.members.service import JOB_CREDENTIALS_EMAIL, JOB_PROVISION
    from einlass.outbox.models import JOB_DONE, JOB_FAILED, JOB_PENDING, JOB_RUNNING, Job
    from einlass.outbox.registry import build_worker
    from einlass.provisioning import htpasswd

    async def job_counts() -> dict[tuple[str, str], int]:
        async with shop.db.transaction() as session:
            rows = await session.execute(
                select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
            )
            return {(kind, status): count for kind, status, count in rows}

    def listed() -> int:
        try:
            return len(htpasswd.parse(shop.path.read_bytes()).entries)
        except FileNotFoundError:
            return 0

    stop = asyncio.Event()
    worker = build_worker(shop.db, shop.settings)
    task = asyncio.create_task(worker.run_forever(stop))
    key = str(shop.path)
    try:
        # The target's first reconciliation (an empty file) before the burst.
        deadline = time.monotonic() + 60
        while not shop.path.exists() or any(
            status in (JOB_PENDING, JOB_RUNNING) for (_kind, status) in await job_counts()
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the target's first reconciliation did not happen")
            await asyncio.sleep(0.1)
        before = await job_counts()
        writes_before = PHASES.writes.get(key, 0)
        load = await asyncio.to_thread(wait_for_quiet, config.max_wait_s, "burst")

        app = create_app(shop.settings, shop.db, run_worker=False)
        gate = asyncio.Semaphore(config.burst_concurrency)
        run = secrets.token_hex(3)
        statuses: list[int] = []
        write_times: list[float] = []

        async def one(http: httpx.AsyncClient, i: int) -> None:
            body, headers = signed_payment(shop, f"pay_burst{run}{i}", f"burst.{run}.{i}@example.com")
            async with gate:
                response = await http.post(f"/webhooks/{MERCHANT}/generic", content=body, headers=headers)
            statuses.append(response.status_code)

        started = time.perf_counter()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://einlass.bench", timeout=120
        ) as http:
            await asyncio.gather(*(one(http, i) for i in range(config.burst)))
        posted_s = time.perf_counter() - started
        if statuses.count(200) != config.burst:
            raise RuntimeError(f"non-200 answers: {sorted(set(statuses))}")

        deadline = time.monotonic() + config.burst_timeout_s
        seen_writes = PHASES.writes.get(key, 0)
        while True:
            writes_now = PHASES.writes.get(key, 0)
            if writes_now != seen_writes:
                seen_writes = writes_now
                write_times.append(time.perf_counter() - started)
            counts = await job_counts()
            busy = sum(n for (_kind, status), n in counts.items() if status in (JOB_PENDING, JOB_RUNNING))
            members = await asyncio.to_thread(listed)
            if busy == 0 and members >= config.burst:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not converged after {config.burst_timeout_s} s: {members} members listed, "
                    f"{busy} jobs waiting or running"
                )
            await asyncio.sleep(0.25)
        converged_s = time.perf_counter() - started
    finally:
        stop.set()
        worker.wake.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
    after = await job_counts()

    def ran(kind: str) -> int:
        return sum(after.get((kind, s), 0) - before.get((kind, s), 0) for s in (JOB_DONE, JOB_FAILED))

    writes = PHASES.writes.get(key, 0) - writes_before
    entry: dict[str, Any] = {
        "payments": config.burst,
        "writes": writes,
        "sync_jobs_run": ran(JOB_PROVISION),
        "credentials_jobs_run": ran(JOB_CREDENTIALS_EMAIL),
        "failed_jobs": sum(n for (_kind, status), n in after.items() if status == JOB_FAILED),
        "posted_s": round(posted_s, 2),
        "converged_s": round(converged_s, 2),
        "members_listed": listed(),
        "concurrency": config.burst_concurrency,
        "load": load,
    }
    if config.burst == 1000:
        entry["writes_per_1000_payments"] = writes
    else:
        entry["writes_per_1000_payments"] = round(writes * 1000 / config.burst, 1)
        entry["extrapolated_from"] = config.burst
    return entry


# --- per backend -------------------------------------------------------------------------------


async def run_backend(kind: str, config: Config, databases: Databases, workdir: Path) -> list[dict[str, Any]]:
    from einlass import clock

    results: list[dict[str, Any]] = []
    shops: list[Shop] = []
    push_hash, password_hash = precomputed_hashes()
    try:
        print(f"\n{kind}: setting up the databases (schema, merchant, area, plan, target) ...", flush=True)
        big = await set_up_shop(databases.create(kind, "big"), workdir, f"{kind}-big")
        shops.append(big)
        bulk_big = BulkRows(big.merchant_id, big.area_id, push_hash, password_hash, clock.now())
        for size in config.sizes:
            loaded = await grow(big, bulk_big, size)
            print(f"{kind}: {size:,} members loaded ({loaded:.1f} s); reconciling ...", flush=True)
            entry = await measure_size(big, config)
            entry["load_data_s"] = round(loaded, 1)
            results.append({"backend": kind, **entry})
            for run, key in (
                ("full", "full_reconcile_s"),
                ("in_sync", "in_sync_s"),
                ("one_missing", "one_missing_s"),
            ):
                print(f"  {run} {entry[key]} s {entry['phases_s'][run]} cpu {entry['cpu_s'][run]}")
            print(f"  load {entry['load']}", flush=True)

        print(f"{kind}: one payment's change at {config.small:,} vs {big.members:,} members ...", flush=True)
        small = await set_up_shop(databases.create(kind, "small"), workdir, f"{kind}-small")
        shops.append(small)
        await grow(
            small,
            BulkRows(small.merchant_id, small.area_id, push_hash, password_hash, clock.now()),
            config.small,
        )
        change = await measure_change(small, big, config)
        results.append({"backend": kind, **change})
        print(f"  {change}", flush=True)

        print(f"{kind}: a burst of {config.burst} payments with the worker running ...", flush=True)
        burst = await set_up_shop(databases.create(kind, "burst"), workdir, f"{kind}-burst")
        shops.append(burst)
        entry = await measure_burst(burst, config)
        results.append({"backend": kind, **entry})
        print(f"  {entry}", flush=True)
    finally:
        for shop in shops:
            with contextlib.suppress(Exception):
                await shop.db.dispose()
    return results


# --- report ------------------------------------------------------------------------------------


def _phase_text(phases: dict[str, float]) -> str:
    return " ".join(f"{name} {value:g}" for name, value in phases.items())


def report(results: list[dict[str, Any]], notes: list[str]) -> None:
    sizes = [r for r in results if "full_reconcile_s" in r]
    if sizes:
        print("\nReconciliation of one htpasswd target, seconds (CPU seconds: this process / PostgreSQL)")
        print(
            tables(
                [
                    (
                        r["backend"],
                        f"{r['members']:,}",
                        r["full_reconcile_s"],
                        r["in_sync_s"],
                        r["one_missing_s"],
                        r["file_mb"],
                        " ".join(f"{c['app']}/{c['db']}" for c in r["cpu_s"].values()),
                        f"{r['load']['load1']}/{r['load']['busy_pct']}%",
                    )
                    for r in sizes
                ],
                ("backend", "members", "full", "in sync", "1 missing", "file MB", "cpu s", "load1/busy"),
            )
        )
        print("phases, seconds: db_read = the query and the access rule, plan = parse, render, diff")
        for r in sizes:
            for kind, phases in r["phases_s"].items():
                print(f"  {r['backend']} {r['members']:>9,} {kind:<11} {_phase_text(phases)}")
    for r in results:
        ratio = next((k for k in r if k.startswith("change_ratio_")), None)
        if ratio:
            small, big = r["members"]
            names = [k for k in r if k.startswith("change_") and k.endswith("_ms")]
            applies = [k for k in r if k.startswith("apply_")]
            print(
                f"\n{r['backend']}: one payment's change (receive: store + apply), median of {r['runs']}: "
                f"{small:,} members {r[names[0]]} ms, {big:,} members {r[names[1]]} ms, ratio {r[ratio]} "
                f"(apply transaction alone: {r[applies[0]]} / {r[applies[1]]} ms); load {r['load']}"
            )
        if "writes" in r:
            extra = f" (measured with {r['payments']}, scaled)" if "extrapolated_from" in r else ""
            print(
                f"\n{r['backend']}: burst of {r['payments']} payments: {r['writes']} writes of the file, "
                f"writes per 1000 payments {r['writes_per_1000_payments']}{extra}; "
                f"{r['sync_jobs_run']} sync jobs, {r['credentials_jobs_run']} credentials jobs; "
                f"posted in {r['posted_s']} s, file complete and worker idle after {r['converged_s']} s; "
                f"load {r['load']}"
            )
    for note in notes:
        print(f"note: {note}")
    compact: list[dict[str, Any]] = []
    for r in results:
        if "error" in r:
            continue
        keys: tuple[str, ...]
        if "full_reconcile_s" in r:
            keys = ("backend", "members", "full_reconcile_s", "in_sync_s", "one_missing_s")
        elif "writes" in r:
            keys = ("backend", "writes_per_1000_payments", "extrapolated_from")
        else:
            keys = ("backend", *[k for k in r if k.startswith(("change_ratio_", "change_"))])
        entry = {k: r[k] for k in keys if k in r}
        entry["load1"] = r["load"]["load1"]
        compact.append(entry)
    for r in results:
        if "error" in r:
            compact.append(r)
    print(json.dumps({"bench": "reconcile", "results": compact}))


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10k and 100k members, a small burst: under a minute"
    )
    parser.add_argument("--backends", default="postgresql", help="comma-separated: postgresql,sqlite")
    parser.add_argument("--max-wait", type=float, help="seconds to wait for a quiet machine (120, --quick 2)")
    parser.add_argument("--burst", type=int, help="payments in the burst (1000, --quick 100)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (files, mail)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}")
    quick = args.quick
    return Config(
        quick=quick,
        backends=backends,
        sizes=[10_000, 100_000] if quick else [10_000, 100_000, 1_000_000],
        small=1_000,
        change_runs=20 if quick else 50,
        burst=args.burst or (100 if quick else 1000),
        burst_concurrency=20,
        max_wait_s=args.max_wait if args.max_wait is not None else (2.0 if quick else 120.0),
        burst_timeout_s=600.0,
        keep=args.keep,
        pg_admin_url=args.pg_admin_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)

    def terminate(_signum: int, _frame: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminate)
    from einlass.logging import configure_logging

    configure_logging("WARNING")
    check_columns()
    PHASES.install()
    workdir = Path(tempfile.mkdtemp(prefix="einlass-reconcile-bench-"))
    databases = Databases(config.pg_admin_url, workdir)
    load = os.getloadavg()
    notes = [f"machine: {CPUS} CPUs; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"]
    results: list[dict[str, Any]] = []
    failed = False
    started = time.perf_counter()
    print(
        f"reconcile bench: sizes {config.sizes}, backends {config.backends}, work dir {workdir}", flush=True
    )
    try:
        for kind in config.backends:
            try:
                results += asyncio.run(run_backend(kind, config, databases, workdir))
            except Exception as error:
                failed = True
                traceback.print_exc()
                results.append({"backend": kind, "error": f"{type(error).__name__}: {error}", "load": {}})
            finally:
                databases.drop_all()
                for stale in workdir.glob(f"{kind}-*"):
                    with contextlib.suppress(OSError):
                        stale.unlink()
        notes.append(f"total runtime {time.perf_counter() - started:.1f} s")
        if config.keep:
            notes.append(f"work directory kept: {workdir}")
        report([r for r in results if "error" not in r] + [r for r in results if "error" in r], notes)
    finally:
        databases.drop_all()
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
