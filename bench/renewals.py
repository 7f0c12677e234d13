"""Renewals benchmark: the worker moving 100,000 subscriptions that fall due at one instant.

On a fresh PostgreSQL database the bench bulk-loads N members with one monthly
subscription each, all copies of one subscription folded by the real rules: paid
through an instant T just past, so at T its stored schedule turns ``active`` into
``past_due`` (access continues through the grace period). Then it times, on the
same rows (reset in between):

- ``workers: 0``, the baseline: the same writes as one set-based ``UPDATE`` plus one
  ``INSERT ... SELECT`` of the status changes, the database's floor;
- ``workers: 1`` and ``2``: ``einlass worker`` processes, from their start until no
  subscription is due any more (polled every 50 ms), start-up reported apart;
- optionally ``run_due_transitions`` in this process with other batch sizes
  (``--batch-sizes``) and under cProfile (``--profile``).

Each run is verified: every row ``past_due``, one status change per subscription.
Details in bench/README.md. The last line of the output is one JSON object.

Usage::

    .venv/bin/python bench/renewals.py [--quick] [--subscriptions N] [--workers 1,2]
        [--batch-sizes 1000,5000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Server,
    cpu_seconds,
    create_scratch_database,
    drop_scratch_database,
    tables,
    wait_until_quiet,
)

EINLASS = Path(sys.executable).parent / "einlass"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_PREFIX = "einlass_renewals_bench_"
MERCHANT = "bench"
TARGET_PER_S = 2000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POLL_S = 0.05
SUBSCRIPTION_COLUMNS = (
    "id", "merchant_id", "gateway", "external_id", "member_id", "initial_plan_id", "order_id",
    "customer_email", "customer_name", "customer_locale", "gateway_data", "status", "plan_id",
    "amount", "currency", "interval", "started_at", "paid_through", "cycles_paid", "paused_at",
    "resume_at", "cancel_at", "ended_at", "pending_plan_id", "access_until", "schedule",
    "next_change_at", "created_at", "updated_at",
)  # fmt: skip
MEMBER_COLUMNS = (
    "id", "merchant_id", "email", "email_normalized", "name", "username", "locale", "created_at", "updated_at"
)  # fmt: skip


@dataclass
class Config:
    subscriptions: int
    workers: list[int]
    batch_sizes: list[int]
    profile: bool
    quick: bool
    max_wait_s: float
    timeout_s: float
    keep: bool
    pg_admin_url: str


@dataclass
class Bench:
    """The bench database and the one representative subscription every row copies."""

    name: str
    dsn: str  # for psycopg
    url: str  # for SQLAlchemy and the worker
    merchant_id: str = ""
    plan_id: str = ""
    due: datetime = EPOCH  # T
    schedule: list[list[Any]] | None = None
    values: dict[str, Any] | None = None  # the row as refresh() stores it just before T
    after: Any = None  # service.Position just after T
    count: int = 0

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def pg_cpu_s(self) -> float:
        """CPU of the PostgreSQL backends serving the bench database (their title names it)."""
        return cpu_seconds(cmdline_part=f" {self.name} ")


def create_database(admin_url: str) -> Bench:
    name = create_scratch_database(admin_url, DB_PREFIX)
    base = admin_url.rsplit("/", 1)[0]
    return Bench(name, f"{base}/{name}", f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://"))


def drop_database(admin_url: str, name: str) -> None:
    drop_scratch_database(admin_url, name, DB_PREFIX)


# --- setup: schema, merchant, plan, the representative subscription, bulk rows -------------


async def set_up(bench: Bench) -> None:
    """Migrations, merchant, area, plan through einlass; the representative row from the fold."""
    from einlass import clock
    from einlass.audit.service import CLI
    from einlass.billing import catalogue
    from einlass.billing.gateways.base import SubscriptionFactKind as Kind
    from einlass.billing.subscriptions.plans import SubscriptionTerms
    from einlass.billing.subscriptions.rules import SubFact, fold
    from einlass.billing.subscriptions.service import position, schedule_json, terms_of
    from einlass.db.engine import Database
    from einlass.db.migrate import upgrade_async
    from einlass.tenants import service as tenants

    db = Database(bench.url)
    try:
        await upgrade_async(db)
        async with db.transaction() as session:
            merchant, _issued = await tenants.create_merchant(session, MERCHANT, "Bench GmbH", CLI)
            await catalogue.create_area(session, merchant, "premium", "Premium", CLI)
            terms = SubscriptionTerms(interval="P1M", grace_period="P3D")
            plan = await catalogue.create_plan(
                session, merchant, slug="monthly", name="Monthly", amount=990, currency="EUR",
                access_period=None, areas=["premium"], gateway_refs={"generic": ["sub-monthly"]},
                actor=CLI, subscription=terms,
            )  # fmt: skip
            bench.merchant_id, bench.plan_id = merchant.id, plan.id
    finally:
        await db.dispose()
    due = clock.now().replace(microsecond=0) - timedelta(seconds=5)
    started = due - timedelta(days=31)  # a month before T: a P1M period paid through T
    facts = [
        SubFact("created", Kind.CREATED, started, amount=990, currency="EUR", interval="P1M"),
        SubFact("period-1", Kind.PERIOD, started, payment_ref="pay-1", period_end=due, amount=990),
    ]
    state = fold(facts, plan_id=plan.id, terms_by_plan={plan.id: terms_of(plan)}, paid_payments={"pay-1"})
    schedule = schedule_json(state)
    before, after = position(schedule, due - timedelta(microseconds=1)), position(schedule, due)
    # The premise of the bench: T is the row's next change, status only (access continues).
    if (before.status, after.status, before.upcoming) != ("active", "past_due", due):
        raise RuntimeError(f"unexpected schedule for the representative subscription: {schedule}")
    if before.access_until != after.access_until:
        raise RuntimeError("the representative subscription's access would change at T")
    bench.due, bench.schedule, bench.after = due, schedule, after
    bench.values = {
        "status": before.status, "plan_id": plan.id, "initial_plan_id": plan.id, "amount": state.amount,
        "currency": state.currency, "interval": state.interval, "started_at": state.started_at,
        "paid_through": state.paid_through, "cycles_paid": state.cycles_paid, "ended_at": state.ended_at,
        "access_until": before.access_until, "next_change_at": before.upcoming,
    }  # fmt: skip


def check_columns() -> None:
    """The bulk rows must match the models; fail loudly when the schema moved."""
    from einlass.billing.subscriptions.models import Subscription

    actual = sorted(column.name for column in Subscription.__table__.columns)
    if actual != sorted(SUBSCRIPTION_COLUMNS):
        raise RuntimeError(f"subscriptions: the bench writes {SUBSCRIPTION_COLUMNS}, the model has {actual}")


def load(bench: Bench, count: int) -> float:
    """COPY ``count`` members and their subscriptions; the seconds it took.

    Foreign-key triggers are off for the load (``session_replication_role = replica``):
    the rows are consistent by construction; every index is maintained.
    """
    from einlass.ids import new_id

    assert bench.values is not None
    started = time.perf_counter()
    now = datetime.now(UTC)
    schedule = json.dumps(bench.schedule)
    member_ids = [new_id("mem") for _ in range(count)]
    common = {**bench.values, "merchant_id": bench.merchant_id, "gateway": "generic", "order_id": None}
    common |= {"customer_name": None, "customer_locale": "en", "gateway_data": "{}", "paused_at": None}
    common |= {"resume_at": None, "cancel_at": None, "pending_plan_id": None, "schedule": schedule}
    common |= {"created_at": now, "updated_at": now}
    with bench.connect() as connection:
        connection.execute("SET session_replication_role = replica")
        with connection.cursor().copy(f"COPY members ({', '.join(MEMBER_COLUMNS)}) FROM STDIN") as copy:
            for i, member_id in enumerate(member_ids):
                email = f"renewal.{i}@example.com"
                copy.write_row(
                    (member_id, bench.merchant_id, email, email, f"Member {i}", email, "en", now, now)
                )
        with connection.cursor().copy(
            f"COPY subscriptions ({', '.join(SUBSCRIPTION_COLUMNS)}) FROM STDIN"
        ) as copy:
            for i, member_id in enumerate(member_ids):
                row = common | {"id": new_id("sub"), "external_id": f"sub-{i}", "member_id": member_id}
                row["customer_email"] = f"renewal.{i}@example.com"
                copy.write_row(tuple(row[column] for column in SUBSCRIPTION_COLUMNS))
    bench.count = count
    return time.perf_counter() - started


def reset(bench: Bench) -> None:
    """Every subscription back to just before T; status changes gone; tables vacuumed."""
    assert bench.values is not None
    with bench.connect() as connection:
        connection.execute(
            "UPDATE subscriptions SET status = %s, next_change_at = %s, access_until = %s, updated_at = %s",
            (bench.values["status"], bench.due, bench.values["access_until"], datetime.now(UTC)),
        )
        for table in ("subscription_status_changes", "access_changes", "jobs"):
            connection.execute(f"DELETE FROM {table}")
        connection.execute("VACUUM ANALYZE members, subscriptions, subscription_status_changes")
        # The runs should not pay for the reset's dirty pages.
        connection.execute("CHECKPOINT")


def due_left(connection: psycopg.Connection[Any], due: datetime) -> int:
    row = connection.execute(
        "SELECT count(*) FROM subscriptions WHERE next_change_at <= %s", (due,)
    ).fetchone()
    return int(row[0]) if row else -1


def verify(bench: Bench) -> dict[str, Any]:
    """Every row moved once, to where the schedule says; nothing else written."""
    n, due, next_due = bench.count, bench.due, bench.after.upcoming
    checks: list[tuple[str, str, tuple[Any, ...], int]] = [
        ("past_due", "subscriptions WHERE status = 'past_due' AND next_change_at = %s", (next_due,), n),
        ("due_left", "subscriptions WHERE next_change_at <= %s", (due,), 0),
        ("status_changes", "subscription_status_changes", (), n),
        (
            "changed_subscriptions",
            "(SELECT DISTINCT subscription_id FROM subscription_status_changes) s",
            (),
            n,
        ),
        (
            "right_changes",
            "subscription_status_changes WHERE from_status = 'active' AND to_status = 'past_due'"
            " AND at = %s AND cause = 'time'",
            (due,),
            n,
        ),
        ("access_changes", "access_changes", (), 0),
        ("jobs", "jobs", (), 0),
    ]
    found: dict[str, int] = {}
    with bench.connect() as connection:
        for key, source, params, _expected in checks:
            row = connection.execute(f"SELECT count(*) FROM {source}", params).fetchone()
            found[key] = int(row[0]) if row else -1
    problems = [f"{key}: {found[key]}, expected {want}" for key, _s, _p, want in checks if found[key] != want]
    return {"ok": not problems, "problems": problems, **found}


# --- the runs ----------------------------------------------------------------------------------


def run_baseline(bench: Bench) -> dict[str, Any]:
    """The floor: the same writes as two set-based statements in one transaction."""
    with bench.connect() as connection:
        started = time.perf_counter()
        with connection.transaction():
            connection.execute(
                "UPDATE subscriptions SET status = 'past_due', next_change_at = %s, updated_at = now()"
                " WHERE next_change_at <= %s",
                (bench.after.upcoming, bench.due),
            )
            updated = time.perf_counter()
            connection.execute(
                "INSERT INTO subscription_status_changes"
                " (id, merchant_id, subscription_id, from_status, to_status, at, recorded_at, cause)"
                " SELECT 'ssc_' || substr(id, 5), merchant_id, id, 'active', 'past_due', %s, now(), 'time'"
                " FROM subscriptions",
                (bench.due,),
            )
        seconds = time.perf_counter() - started
    return {
        "workers": 0,
        "baseline": "one UPDATE ... SET status = 'past_due' + one INSERT ... SELECT of the status changes",
        "subscriptions": bench.count,
        "seconds": round(seconds, 3),
        "update_only_s": round(updated - started, 3),
        "transitions_per_s": round(bench.count / seconds, 1),
    }


def worker_env(bench: Bench, workdir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env.update(
        EINLASS_DATABASE_URL=bench.url,
        EINLASS_SECRET_KEY=secrets.token_urlsafe(32),
        EINLASS_MAIL_DIR=str(workdir / "mail"),
        EINLASS_LOG_LEVEL="WARNING",
    )
    return env


def run_workers(bench: Bench, workers: int, workdir: Path, timeout_s: float) -> dict[str, Any]:
    """Start ``workers`` ``einlass worker`` processes; time until no subscription is due."""
    env = worker_env(bench, workdir)
    with bench.connect() as poll:
        if due_left(poll, bench.due) != bench.count:
            raise RuntimeError("not every subscription is due before the run")
        pg_cpu_before = bench.pg_cpu_s()
        started = time.perf_counter()
        servers = [
            Server(
                f"worker-{i}", [str(EINLASS), "worker"], env, workdir / f"worker-{workers}-{i}.log", workdir
            )
            for i in range(workers)
        ]
        ready: list[float | None] = [None] * workers
        first_change: float | None = None
        try:
            while True:
                elapsed = time.perf_counter() - started
                for i, server in enumerate(servers):
                    if server.process.poll() is not None:
                        raise RuntimeError(f"{server.name} exited: {server.log_tail()}")
                    if ready[i] is None and b"worker running" in server.log_path.read_bytes():
                        ready[i] = elapsed
                left = due_left(poll, bench.due)
                elapsed = time.perf_counter() - started
                if first_change is None and left < bench.count:
                    first_change = elapsed
                if left == 0:
                    break
                if elapsed > timeout_s:
                    raise RuntimeError(f"{left} subscriptions still due after {timeout_s} s")
                time.sleep(POLL_S)
            # CPU of processes that ended is gone from /proc: read it before stopping them.
            worker_cpu = sum(cpu_seconds(process_group=server.pid) for server in servers)
            pg_cpu = bench.pg_cpu_s() - pg_cpu_before
        finally:
            for server in servers:
                server.stop()
    errors = [line for server in servers for line in server.log_errors().splitlines()]
    started_s = max(r for r in ready if r is not None) if all(r is not None for r in ready) else None
    return {
        "workers": workers,
        "subscriptions": bench.count,
        "seconds": round(elapsed, 3),
        "transitions_per_s": round(bench.count / elapsed, 1),
        "startup_s": None if started_s is None else round(started_s, 3),
        "first_change_s": None if first_change is None else round(first_change, 3),
        "transitions_per_s_after_startup": (
            None if started_s is None else round(bench.count / (elapsed - started_s), 1)
        ),
        "cpu_s": {"workers": round(worker_cpu, 2), "postgres": round(pg_cpu, 2)},
        "log_errors": errors[:5],
    }


async def in_process(bench: Bench, batch_size: int, profile: bool) -> dict[str, Any]:
    """``run_due_transitions`` in this process, timed (and optionally under cProfile)."""
    from einlass.billing.subscriptions.transitions import run_due_transitions
    from einlass.db.engine import Database

    db = Database(bench.url)
    profiler = cProfile.Profile() if profile else None
    try:
        async with db.transaction() as session:  # connect before the clock starts
            await session.connection()
        pg_cpu_before, cpu_before = bench.pg_cpu_s(), time.process_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        moved = await run_due_transitions(db, batch_size=batch_size)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - started
        cpu, pg_cpu = time.process_time() - cpu_before, bench.pg_cpu_s() - pg_cpu_before
    finally:
        await db.dispose()
    result: dict[str, Any] = {
        "mode": "in-process" + (" cProfile" if profile else ""),
        "workers": 1,
        "batch_size": batch_size,
        "subscriptions": moved,
        "seconds": round(seconds, 3),
        "transitions_per_s": round(moved / seconds, 1),
        "cpu_s": {"python": round(cpu, 2), "postgres": round(pg_cpu, 2)},
    }
    if profiler is not None:
        result["profile_tottime_s"] = profile_split(profiler)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        result["profile"] = out.getvalue()
    return result


# Where a function's own time is counted, by the file it is in; the first match wins.
PROFILE_BUCKETS = (
    ("waiting for PostgreSQL (epoll)", "<method 'poll' of 'select.epoll'"),
    ("einlass.ids (new_id)", "einlass/ids.py"),
    ("einlass transitions + position", "einlass/billing/subscriptions/"),
    ("einlass other", "einlass/"),
    ("psycopg", "psycopg/"),
    ("sqlalchemy", "sqlalchemy/"),
    ("json", "json/"),
    ("asyncio", "asyncio/"),
)


def profile_split(profiler: cProfile.Profile) -> dict[str, float]:
    """cProfile's own-time per bucket (coroutines make its cumulative times unreliable)."""
    split: dict[str, float] = {}
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, own, *_rest) in entries.items():
        where = f"{filename}:{function}" if filename != "~" else function
        bucket = next((name for name, part in PROFILE_BUCKETS if part in where), "other")
        split[bucket] = split.get(bucket, 0.0) + own
    return {name: round(seconds, 2) for name, seconds in sorted(split.items(), key=lambda kv: -kv[1])}


# --- report and main ---------------------------------------------------------------------------


def report(results: list[dict[str, Any]], notes: list[str], quick: bool) -> None:
    rows = [
        (
            r.get("mode", "baseline" if r["workers"] == 0 else "processes"),
            r["workers"],
            r.get("batch_size", ""),
            r["subscriptions"],
            r["seconds"],
            r["transitions_per_s"],
            r.get("startup_s", ""),
            r.get("first_change_s", ""),
            r.get("transitions_per_s_after_startup", ""),
            " ".join(f"{k} {v}" for k, v in r.get("cpu_s", {}).items()),
            "ok" if r.get("verified", {}).get("ok") else r.get("verified", {}).get("problems", ""),
        )
        for r in results
        if "error" not in r
    ]
    header = ("mode", "workers", "batch", "subs", "s", "per s", "startup s", "1st change s", "per s ex start")
    print("\n" + tables(rows, (*header, "cpu s", "verified")))
    for r in results:
        if "profile" in r:
            print(f"\ncProfile, batch size {r['batch_size']}, own time by part: {r['profile_tottime_s']}")
            print(r.pop("profile"))
    for note in notes:
        print(f"note: {note}")
    print(json.dumps({"bench": "renewals", "quick": quick, "results": results, "notes": notes}, default=str))


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 subscriptions: under a minute")
    parser.add_argument("--subscriptions", type=int, help="how many fall due at T (100,000; --quick 10,000)")
    parser.add_argument("--workers", default="1,2", help="worker process counts to run, comma-separated")
    parser.add_argument("--batch-sizes", default="", help="in-process runs with these batch sizes")
    parser.add_argument("--profile", action="store_true", help="one in-process run under cProfile")
    parser.add_argument("--max-wait", type=float, help="seconds to wait for a quiet machine (30, --quick 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a run may take")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (worker logs)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    return Config(
        subscriptions=args.subscriptions or (10_000 if args.quick else 100_000),
        workers=[int(n) for n in args.workers.split(",") if n.strip()],
        batch_sizes=[int(n) for n in args.batch_sizes.split(",") if n.strip()],
        profile=args.profile,
        quick=args.quick,
        max_wait_s=args.max_wait if args.max_wait is not None else (2.0 if args.quick else 30.0),
        timeout_s=args.timeout,
        keep=args.keep,
        pg_admin_url=args.pg_admin_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    from einlass.billing.subscriptions.transitions import BATCH_SIZE
    from einlass.logging import configure_logging

    configure_logging("WARNING")
    check_columns()
    workdir = Path(tempfile.mkdtemp(prefix="einlass-renewals-bench-"))
    load_avg = os.getloadavg()
    notes = [f"machine: {os.cpu_count()} CPUs; load average at start {load_avg[0]:.2f} {load_avg[1]:.2f}"]
    results: list[dict[str, Any]] = []
    bench = create_database(config.pg_admin_url)
    started = time.perf_counter()
    try:
        asyncio.run(set_up(bench))
        loaded = load(bench, config.subscriptions)
        notes.append(f"{bench.count:,} members + subscriptions loaded in {loaded:.1f} s; T = {bench.due}")
        runs: list[tuple[str, Any]] = [("baseline", None), *(("workers", n) for n in config.workers)]
        runs += [("batch", size) for size in config.batch_sizes]
        if config.profile:
            runs.append(("profile", BATCH_SIZE))
        for kind, arg in runs:
            reset(bench)
            quiet = wait_until_quiet(config.max_wait_s)
            print(f"run {kind}{'' if arg is None else f' {arg}'} (machine {quiet}) ...", flush=True)
            try:
                if kind == "baseline":
                    result = run_baseline(bench)
                elif kind == "workers":
                    result = run_workers(bench, arg, workdir, config.timeout_s)
                else:
                    result = asyncio.run(in_process(bench, arg, profile=kind == "profile"))
            except Exception as error:
                results.append({"run": f"{kind} {arg}", "error": f"{type(error).__name__}: {error}"})
                continue
            result["verified"] = verify(bench)
            result["status_changes_written"] = result["verified"]["status_changes"]
            result["machine_busy_before"] = quiet["busy"]
            results.append(result)
            print(f"  { {k: v for k, v in result.items() if k != 'profile'} }", flush=True)
        notes.append(
            f"target {TARGET_PER_S} transitions/s; total runtime {time.perf_counter() - started:.1f} s"
        )
        if config.keep:
            notes.append(f"work directory kept: {workdir}")
        report(results, notes, config.quick)
    finally:
        with contextlib.suppress(Exception):
            drop_database(config.pg_admin_url, bench.name)
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = any("error" in r or not r["verified"]["ok"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
