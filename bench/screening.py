"""Screening benchmark: ``POST /api/v1/screenings`` against a blacklist of 10 million entries.

On a fresh PostgreSQL database the bench ``COPY``s N blacklist entries (mixed kinds,
categories and statuses, mostly active), creates one merchant with an API key
through einlass's services, starts ``einlass serve`` (granian, outbox worker off)
and posts screening requests ``{"identifiers": {"email", "phone", "ip"}}`` from C
concurrent keep-alive connections; about one request in ten carries an identifier
that is on the list. Every answer's outcome is checked against what
``screening.rules.decide`` says for the entries the bench wrote.

Where the time goes: the one blacklist lookup (``SELECT ... WHERE digest IN (...)``
on the N rows) timed alone from a single psycopg connection, one request at a time
through HTTP, and the load. Baselines with the same client and bodies: a raw ASGI
app on granian and nginx ``return 200``. Details in bench/README.md.

Usage::

    .venv/bin/python bench/screening.py [--quick] [--entries N] [--requests N]
        [--concurrency 50] [--workers 1,2]

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
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HTTPError,
    LeanClient,
    ScratchDatabase,
    Server,
    cpu_used,
    drop_scratch_database,
    einlass_server,
    free_port,
    ms,
    percentile,
    raw_server,
    tables,
    wait_until_quiet,
)
from ingest import NGINX_CONF, BenchDatabase, PgActivitySampler, run_async

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_PREFIX = "einlass_screening_bench_"
HOST = "127.0.0.1"
PATH = "/api/v1/screenings"
HIT_RATE = 0.1  # share of requests with one listed identifier
# The blacklist half of the decision's one statement (screening.decisions._lookup).
LOOKUP_SQL = (
    "SELECT kind, digest, category, status FROM blacklist_entries WHERE digest IN (%s, %s, %s)"
    " AND kind IN ('email', 'ip', 'phone') AND status IN ('active', 'pending') AND expires_at > now()"
)
ENTRY_COLUMNS = (
    "id",
    "kind",
    "digest",
    "category",
    "source",
    "status",
    "expires_at",
    "created_at",
    "updated_at",
)
# The bulk of the list: how often each kind, category, status and source occurs.
KIND_WEIGHTS = {
    "email": 40,
    "phone": 15,
    "ip": 20,
    "iban": 10,
    "card_fingerprint": 8,
    "device_id": 5,
    "name_postcode": 2,
}
CATEGORY_WEIGHTS = {
    "chargeback": 40,
    "fraud_attempt": 25,
    "payment_default": 20,
    "identity_misuse": 10,
    "abuse": 5,
}
STATUS_WEIGHTS = {"active": 88, "pending": 6, "withdrawn": 2, "rejected": 2, "expired": 2}
SOURCE_WEIGHTS = {"merchant_report": 70, "operator": 20, "end_customer_report": 10}
# Listed identifiers the requests carry: mostly active (reject), some pending (review),
# some no longer in force (accept).
HIT_STATUS_WEIGHTS = {"active": 70, "pending": 20, "withdrawn": 5, "expired": 5}
DOMAINS = ("gmail.com", "web.de", "gmx.de", "outlook.com", "example.org", "posteo.de", "firma-muster.de")


@dataclass
class Config:
    entries: int
    requests: int
    bodies: int
    concurrency: int
    workers: list[int]
    lookups: int
    sequential: int
    max_load_s: float
    max_wait_s: float
    quick: bool
    keep: bool
    pg_admin_url: str


@dataclass
class Bench(ScratchDatabase):
    api_key: str = ""
    listed: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, digest, category, status
    bodies: list[bytes] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # outcome per body
    digests: list[tuple[str, str, str]] = field(default_factory=list)  # per body: email, phone, ip


# --- set-up: schema, merchant, request bodies, the list ----------------------------------------


async def set_up(bench: Bench) -> None:
    """Migrations, and one merchant with an API key, through einlass's own services."""
    from einlass.audit.service import CLI
    from einlass.tenants import service as tenants

    async with bench.migrated() as session:
        _merchant, issued = await tenants.create_merchant(session, "bench", "Bench GmbH", CLI)
        bench.api_key = issued.secret


def raw_identifiers(rng: random.Random, n: int) -> dict[str, str]:
    """What a checkout form sends: spellings vary, so normalisation has work to do."""
    local = (
        f"{rng.choice(('anna', 'max', 'lea', 'tim', 'eva'))}.{rng.choice(('muster', 'meier', 'schulz'))}{n}"
    )
    domain = rng.choice(DOMAINS)
    if domain == "gmail.com" and rng.random() < 0.3:
        local, domain = f"{local.title()}+shop", "googlemail.com"
    phone = f"0{rng.choice((151, 160, 170, 176))} {rng.randrange(10**7, 10**8)}"
    if rng.random() < 0.2:
        ip = f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
    else:
        ip = f"{rng.randrange(11, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return {"email": f"{local}@{domain}", "phone": phone, "ip": ip}


def make_bodies(bench: Bench, count: int, rng: random.Random) -> None:
    """Request bodies, the entries their listed identifiers need, and each body's expected outcome."""
    from einlass.screening.identifiers import blacklist_key, digest, normalize
    from einlass.screening.rules import Hit, decide

    key = blacklist_key(bench.secret_key)
    statuses, status_weights = list(HIT_STATUS_WEIGHTS), list(HIT_STATUS_WEIGHTS.values())
    categories, category_weights = list(CATEGORY_WEIGHTS), list(CATEGORY_WEIGHTS.values())
    listed: dict[tuple[str, str, str], str] = {}
    for n in range(count):
        raw = raw_identifiers(rng, n)
        digests = {kind: digest(key, normalize(kind, value)) for kind, value in raw.items()}
        if rng.random() < HIT_RATE:
            kind = rng.choice(("email", "email", "phone", "ip"))
            # Now and then one identifier is listed under two categories.
            for category in set(rng.choices(categories, category_weights, k=2 if rng.random() < 0.1 else 1)):
                listed[kind, digests[kind], category] = rng.choices(statuses, status_weights)[0]
        bench.bodies.append(json.dumps({"identifiers": raw}).encode())
        bench.digests.append((digests["email"], digests["phone"], digests["ip"]))
    bench.listed = [(kind, dig, category, status) for (kind, dig, category), status in listed.items()]
    by_digest: dict[tuple[str, str], list[Hit]] = collections.defaultdict(list)
    for (kind, dig, category), status in listed.items():
        by_digest[kind, dig].append(Hit(kind, category, status))
    for email, phone, ip in bench.digests:
        hits = [*by_digest.get(("email", email), ()), *by_digest.get(("phone", phone), ())]
        hits += by_digest.get(("ip", ip), ())
        bench.expected.append(decide(whitelisted_by=(), hits=hits).outcome)


def entry_lines(bench: Bench, count: int, rng: random.Random, now: datetime) -> Any:
    """COPY text for ``count`` entries: the listed ones first, the rest with random digests.

    The rest need no real HMAC: a random 64-hex value is what a digest looks like to the
    index, and nothing queries them by value.
    """
    from einlass.screening.blacklist import RETENTION

    def stamp(at: datetime) -> str:
        return at.isoformat()

    # Entry dates: one of 100 days over the last two years; expired entries ran out before now.
    created = [now - timedelta(days=7 * i + 1) for i in range(100)]
    until = {c: [stamp(max(d + RETENTION[c], now + timedelta(days=30))) for d in created] for c in RETENTION}
    gone = [stamp(now - timedelta(days=1 + i)) for i in range(30)]
    created_s = [stamp(d) for d in created]

    def line(i: int, kind: str, digest_hex: str, category: str, status: str, source: str) -> str:
        day = i % 100
        expires = gone[i % 30] if status == "expired" else until[category][day]
        return f"ble_{i:026d}\t{kind}\t{digest_hex}\t{category}\t{source}\t{status}\t{expires}\t{created_s[day]}\t{created_s[day]}\n"

    listed = bench.listed
    yield "".join(line(i, k, d, c, s, "merchant_report") for i, (k, d, c, s) in enumerate(listed))
    written, chunk = len(listed), 100_000
    kinds, categories = list(KIND_WEIGHTS), list(CATEGORY_WEIGHTS)
    statuses, sources = list(STATUS_WEIGHTS), list(SOURCE_WEIGHTS)
    while written < count:
        n = min(chunk, count - written)
        hexes = os.urandom(32 * n).hex()
        columns = zip(
            rng.choices(kinds, list(KIND_WEIGHTS.values()), k=n),
            rng.choices(categories, list(CATEGORY_WEIGHTS.values()), k=n),
            rng.choices(statuses, list(STATUS_WEIGHTS.values()), k=n),
            rng.choices(sources, list(SOURCE_WEIGHTS.values()), k=n),
            strict=True,
        )
        yield "".join(
            line(written + j, kind, hexes[64 * j : 64 * j + 64], category, status, source)
            for j, (kind, category, status, source) in enumerate(columns)
        )
        written += n


def load_entries(bench: Bench, count: int, rng: random.Random) -> dict[str, float]:
    """COPY the entries with the secondary indexes dropped, then build them again as migrated."""
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    with bench.connect() as connection:
        connection.execute("SET synchronous_commit = off")
        connection.execute("SET maintenance_work_mem = '1GB'")
        # The primary key stays (foreign keys point at it; the ids arrive in order).
        unique = connection.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'blacklist_entries'::regclass AND contype = 'u'"
        ).fetchall()
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'blacklist_entries'"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint"
            "  WHERE conrelid = 'blacklist_entries'::regclass)"
        ).fetchall()
        for name, _definition in unique:
            connection.execute(f'ALTER TABLE blacklist_entries DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        started = time.perf_counter()
        with connection.cursor().copy(
            f"COPY blacklist_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN"
        ) as copy:
            for text in entry_lines(bench, count, rng, now):
                copy.write(text.encode())
        timings["copy_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for name, definition in unique:
            connection.execute(f'ALTER TABLE blacklist_entries ADD CONSTRAINT "{name}" {definition}')
        for _name, definition in indexes:
            connection.execute(definition)
        timings["index_s"] = time.perf_counter() - started
        started = time.perf_counter()
        connection.execute("VACUUM ANALYZE blacklist_entries")
        connection.execute("CHECKPOINT")
        timings["vacuum_s"] = time.perf_counter() - started
        row = connection.execute("SELECT count(*) FROM blacklist_entries").fetchone()
        timings["entries"] = int(row[0]) if row else 0
        size = connection.execute("SELECT pg_total_relation_size('blacklist_entries')").fetchone()
        timings["table_and_indexes_mb"] = round(int(size[0]) / 2**20) if size else 0
    return timings


# --- the database lookup alone --------------------------------------------------------------


def lookup_latency(bench: Bench, samples: int) -> dict[str, Any]:
    """The decision's one query, from one client, one at a time (prepared), plus its round-trip floor."""
    floor: list[float] = []
    latencies: list[float] = []
    found = 0
    with bench.connect() as connection:
        plan = connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {LOOKUP_SQL}", bench.digests[0]).fetchall()
        for i in range(min(samples, 500)):  # warm the plan cache and the pages we will touch
            connection.execute(LOOKUP_SQL, bench.digests[i % len(bench.digests)], prepare=True).fetchall()
            connection.execute("SELECT 1", prepare=True).fetchall()
        for i in range(samples):
            params = bench.digests[(i * 7919) % len(bench.digests)]
            started = time.perf_counter()
            found += len(connection.execute(LOOKUP_SQL, params, prepare=True).fetchall())
            latencies.append(time.perf_counter() - started)
            started = time.perf_counter()
            connection.execute("SELECT 1", prepare=True).fetchall()
            floor.append(time.perf_counter() - started)
    return {
        "backend": "db-lookup",
        "query": LOOKUP_SQL,
        "lookup_p50_ms": ms(percentile(latencies, 0.5)),
        "lookup_p99_ms": ms(percentile(latencies, 0.99)),
        "select_1_p50_ms": ms(percentile(floor, 0.5)),
        "lookups": samples,
        "rows_found": found,
        "plan": [line for (line,) in plan if "Scan" in line or "Execution" in line],
    }


async def in_process(bench: Bench, samples: int) -> dict[str, Any]:
    """``screening.decisions.screen`` called directly, one transaction each: the decision without HTTP."""
    from einlass.config import Settings
    from einlass.db.engine import Database
    from einlass.screening.decisions import screen
    from einlass.tenants.models import Merchant

    settings = Settings(database_url=bench.url, secret_key=bench.secret_key)
    db = Database(bench.url)
    bodies = [json.loads(body)["identifiers"] for body in bench.bodies]
    latencies: list[float] = []
    mismatches = 0
    try:
        async with db.transaction() as session:
            merchant = await session.scalar(select(Merchant).where(Merchant.slug == "bench"))
        assert merchant is not None
        for i in range(samples + 50):
            if i == 50:
                cpu_before, pg_before = time.process_time(), bench.pg_cpu_s()
            index = (i * 7919) % len(bodies)
            started = time.perf_counter()
            async with db.transaction() as session:
                decision = await screen(session, settings, merchant, bodies[index])
            if i >= 50:  # the first calls warm the connection pool and the statement cache
                latencies.append(time.perf_counter() - started)
                mismatches += decision.outcome != bench.expected[index]
        cpu, pg_cpu = time.process_time() - cpu_before, bench.pg_cpu_s() - pg_before
    finally:
        await db.dispose()
    per_call = 1000 / len(latencies) if latencies else 0.0
    return {
        "backend": "in-process screen()",
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "calls": len(latencies),
        "mismatches": mismatches,
        "cpu_ms_per_request": {"python": round(cpu * per_call, 3), "postgres": round(pg_cpu * per_call, 3)},
    }


# --- HTTP: the client, einlass, the baselines ---------------------------------------------------


def http_requests(bench: Bench, port: int) -> list[bytes]:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {bench.api_key}\r\n"
        "Content-Type: application/json\r\n"
    )
    return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bench.bodies]


async def drive(
    port: int,
    requests: Sequence[bytes],
    expected: Sequence[str] | None,
    total: int,
    concurrency: int,
    max_s: float,
) -> dict[str, Any]:
    """Send ``total`` requests (cycling through ``requests``) from ``concurrency`` connections."""
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    mismatches = 0
    counter = iter(range(total))
    deadline = time.perf_counter() + max_s

    async def connection() -> None:
        nonlocal mismatches
        client = LeanClient(HOST, port)
        try:
            for index in counter:
                if time.perf_counter() > deadline:
                    break
                started = time.perf_counter()
                try:
                    status, body = await client.send(requests[index % len(requests)])
                except (HTTPError, OSError) as error:
                    statuses[0] += 1
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[status] += 1
                if status not in (200, 201):
                    errors.append(f"HTTP {status}: {body[:200]!r}")
                elif expected is not None:
                    outcome = json.loads(body).get("outcome", "?")
                    outcomes[outcome] += 1
                    mismatches += outcome != expected[index % len(expected)]
        finally:
            client.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ok = statuses[200] + statuses[201]
    return {
        "per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(max(latencies)) if latencies else None,
        "ok": ok,
        "sent": len(latencies) + statuses[0],
        "elapsed_s": round(elapsed, 2),
        "non_2xx": {str(k): v for k, v in statuses.items() if k not in (200, 201)},
        "outcomes": dict(outcomes),
        "mismatches": mismatches,
        "errors": errors[:5],
    }


def measure(
    name: str, server: Server, port: int, requests: list[bytes], config: Config, bench: Bench | None
) -> dict[str, Any]:
    """Warm-up, single requests one at a time, then the load; CPU per request of server and database."""
    expected = bench.expected if bench else None
    warm = run_async(drive(port, requests, expected, 200, 10, 60))
    if warm["ok"] < 200:
        raise RuntimeError(
            f"{name}: warm-up failed {warm['non_2xx']} {warm['errors'][:1]}\n{server.log_errors()}"
        )
    single = run_async(drive(port, requests, expected, config.sequential, 1, 30))
    # The baselines answer in microseconds: more requests, or their run is over before it settles.
    total = config.requests if bench else max(config.requests, 20_000)
    with cpu_used(server, bench) as used:
        # What einlass's connections wait for during the load (a lock, the app, the disk).
        sampler = (
            PgActivitySampler(BenchDatabase("postgresql", bench.url, lambda: None, bench.name))
            if bench
            else None
        )
        result = run_async(drive(port, requests, expected, total, config.concurrency, config.max_load_s))
    pg_activity = sampler.stop() if sampler else None
    per_request = 1000 / result["ok"] if result["ok"] else 0.0
    return {
        "backend": name,
        "decisions_per_s": result.pop("per_s"),
        **result,
        "truncated": result["sent"] < total,
        "concurrency": config.concurrency,
        "single_p50_ms": single["p50_ms"],
        "single_p99_ms": single["p99_ms"],
        "pg_connections_during_load": pg_activity,
        "cpu_ms_per_request": {name: round(seconds * per_request, 3) for name, seconds in used.items()},
    }


def run_einlass(bench: Bench, config: Config, workers: int, workdir: Path, entries: int) -> dict[str, Any]:
    with einlass_server(bench, workdir, workers) as (server, port):
        with bench.connect() as connection:
            before = connection.execute("SELECT count(*) FROM screening_decisions").fetchone()
        result = measure("einlass", server, port, http_requests(bench, port), config, bench)
        with bench.connect() as connection:
            after = connection.execute("SELECT count(*) FROM screening_decisions").fetchone()
    outcomes = result["outcomes"]
    result.update(
        workers=workers,
        entries=entries,
        hits=outcomes.get("reject", 0) + outcomes.get("review", 0),
        # Every answered screening is a stored decision (the load's and the warm-ups').
        decisions_stored=int(after[0]) - int(before[0]) if after and before else None,
    )
    if result["mismatches"] or result["non_2xx"]:
        result["server_log_errors"] = server.log_errors()
    return result


def run_raw_asgi(bench: Bench, config: Config, workdir: Path) -> dict[str, Any]:
    with raw_server("raw-asgi", workdir) as (server, port):
        return measure("baseline-raw-asgi", server, port, http_requests(bench, port), config, None)


def run_nginx(bench: Bench, config: Config, workdir: Path) -> dict[str, Any] | None:
    nginx = next((c for c in (shutil.which("nginx"), "/usr/sbin/nginx") if c and os.access(c, os.X_OK)), None)
    if nginx is None:
        return None
    port = free_port()
    prefix = workdir / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, host=HOST, port=port))
    argv = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    server = Server("nginx", argv, dict(os.environ), prefix / "stdout.log", workdir)
    try:
        server.wait_ready(f"http://{HOST}:{port}/")
        return measure("baseline-nginx", server, port, http_requests(bench, port), config, None)
    finally:
        server.stop()


# --- report and main -------------------------------------------------------------------------


def report(results: list[dict[str, Any]], notes: list[str], quick: bool) -> None:
    rows = [
        (
            r["backend"],
            r.get("workers", ""),
            r.get("ok", ""),
            r.get("decisions_per_s", ""),
            r.get("p50_ms", r.get("lookup_p50_ms", "")),
            r.get("p99_ms", r.get("lookup_p99_ms", "")),
            r.get("single_p50_ms", ""),
            " ".join(f"{k} {v}" for k, v in r.get("cpu_ms_per_request", {}).items()),
            " ".join(f"{k} {v}" for k, v in sorted(r.get("outcomes", {}).items())),
            r.get("mismatches", ""),
        )
        for r in results
        if "error" not in r
    ]
    header = ("run", "workers", "answered", "per s", "p50 ms", "p99 ms", "1-at-a-time p50", "cpu ms/req")
    print("\n" + tables(rows, (*header, "outcomes", "wrong")))
    for r in results:
        if "error" in r:
            print(f"{r['backend']}: {r['error']}")
    for note in notes:
        print(f"note: {note}")
    print(json.dumps({"bench": "screening", "quick": quick, "results": results, "notes": notes}, default=str))


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 entries, short load: under a minute")
    parser.add_argument("--entries", type=int, help="blacklist entries (10,000,000; --quick 200,000)")
    parser.add_argument(
        "--requests",
        type=int,
        help="screenings per load (20,000; --quick 3,000), time-boxed to 60 s (--quick 8 s)",
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", help="einlass serve --workers, comma-separated (1,2; --quick 1)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    quick = args.quick
    return Config(
        entries=args.entries or (200_000 if quick else 10_000_000),
        requests=args.requests or (3_000 if quick else 20_000),
        bodies=2_000 if quick else 10_000,
        concurrency=args.concurrency,
        workers=[int(n) for n in (args.workers or ("1" if quick else "1,2")).split(",") if n.strip()],
        lookups=1_000 if quick else 5_000,
        sequential=200 if quick else 1_000,
        max_load_s=8.0 if quick else 60.0,
        max_wait_s=2.0 if quick else 30.0,
        quick=quick,
        keep=args.keep,
        pg_admin_url=args.pg_admin_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    from einlass.logging import configure_logging

    configure_logging("WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="einlass-screening-bench-"))
    load_avg = os.getloadavg()
    notes = [f"machine: {os.cpu_count()} CPUs; load average at start {load_avg[0]:.2f} {load_avg[1]:.2f}"]
    results: list[dict[str, Any]] = []
    rng = random.Random(20261204)
    started = time.perf_counter()
    bench = Bench.create(config.pg_admin_url, DB_PREFIX)
    try:
        asyncio.run(set_up(bench))
        make_bodies(bench, config.bodies, rng)
        print(
            f"{len(bench.bodies)} request bodies, {len(bench.listed)} of their identifiers listed", flush=True
        )
        loaded = load_entries(bench, config.entries, rng)
        notes.append(
            f"{loaded['entries']:,} entries: COPY {loaded['copy_s']:.1f} s, indexes {loaded['index_s']:.1f} s, "
            f"VACUUM ANALYZE {loaded['vacuum_s']:.1f} s; table and indexes {loaded['table_and_indexes_mb']} MB"
        )
        print(notes[-1], flush=True)
        results.append({**lookup_latency(bench, config.lookups), "entries": loaded["entries"]})
        print(f"  {results[-1]}", flush=True)
        try:
            results.append(asyncio.run(in_process(bench, config.sequential)))
        except Exception as error:
            results.append({"backend": "in-process screen()", "error": f"{type(error).__name__}: {error}"})
        print(f"  {results[-1]}", flush=True)
        runs: list[tuple[str, Any]] = [("einlass", n) for n in config.workers]
        runs += [("baseline-raw-asgi", None), ("baseline-nginx", None)]
        for name, workers in runs:
            quiet = wait_until_quiet(config.max_wait_s)
            print(
                f"run {name}{'' if workers is None else f' --workers {workers}'} (machine {quiet}) ...",
                flush=True,
            )
            try:
                if name == "einlass":
                    result = run_einlass(bench, config, workers, workdir, loaded["entries"])
                elif name == "baseline-raw-asgi":
                    result = run_raw_asgi(bench, config, workdir)
                else:
                    found = run_nginx(bench, config, workdir)
                    if found is None:
                        notes.append("nginx not installed: no nginx baseline")
                        continue
                    result = found
            except Exception as error:
                result = {"backend": name, "workers": workers, "error": f"{type(error).__name__}: {error}"}
            result["machine_busy_before"] = quiet["busy"]
            results.append(result)
            print(f"  {result}", flush=True)
        notes.append(f"total runtime {time.perf_counter() - started:.1f} s")
        if config.keep:
            notes.append(f"work directory kept: {workdir}")
        report(results, notes, config.quick)
    finally:
        with contextlib.suppress(Exception):
            drop_scratch_database(config.pg_admin_url, bench.name, DB_PREFIX)
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = any("error" in r or r.get("mismatches") or r.get("non_2xx") for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
