"""Admin lists benchmark: the members list, its search and filters, and a member page at 1,000,000 members.

On a fresh PostgreSQL database the bench loads N members of one merchant (plus a
second merchant with some members of its own) with ``INSERT ... SELECT
generate_series``: realistic German and English names and email addresses, about a
third with a current grant for "premium" and a payment for the "month" plan, some
with "archive", some expired grants, 1 % locked, 0.5 % deleted. It creates a staff
account through ``einlass.tenants.staff.create_staff``, starts ``einlass serve``
(granian, one process, outbox worker off), logs in with the TOTP code of the real
clock, and times page after page from a single client (one request at a time, on
loopback): the full response, from writing the request to reading the last byte.

Pages: the list's first page, a later page (keyset ``starting_after``), search by
email prefix, by name (a last name, a first and last name start), by id, the
filters area, plan and status=locked, a search as typed (htmx fragment), and the
member page ``/admin/m/{slug}/members/{id}``. Each request varies its query (other
prefixes, other cursors, other members). Baseline in the same run: a raw ASGI app
on granian answering an HTML page of the size of the members page.

The list's queries are also timed without HTTP (``search_members`` in this process)
and, written as one statement, under ``EXPLAIN ANALYZE``: ``queries`` in the JSON.
Details in bench/README.md.

Usage::

    .venv/bin/python bench/admin_lists.py [--quick] [--members N] [--samples N] [--keep]

The last line of the output is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HTTPError,
    LeanClient,
    ScratchDatabase,
    Server,
    cpu_used,
    drop_scratch_database,
    einlass_server,
    ms,
    percentile,
    raw_server,
    tables,
    wait_until_quiet,
)

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_PREFIX = "einlass_admin_lists_bench_"
HOST = "127.0.0.1"
SLUG = "bench"
STAFF_EMAIL = "admin@bench.example"
STAFF_PASSWORD = "bench staff password 1"
TARGET_P95_MS = 300.0
WARM_UP = 3
FIRST = (
    "Anna", "Max", "Lea", "Tim", "Eva", "Lukas", "Marie", "Paul", "Sophie", "Felix", "Emma", "Jonas",
    "Mia", "Leon", "Hannah", "Finn", "Lena", "Noah", "Laura", "Elias", "Julia", "Ben", "Sarah", "Luis",
    "Clara", "Moritz", "Johanna", "Jan", "Katharina", "Tobias", "Anna-Lena", "Karl-Heinz", "Jürgen",
    "Günther", "Björn", "Sören", "Chloé", "Zoë", "James", "Oliver", "Emily", "Jack", "Olivia", "Harry",
    "Amelia", "George", "Isla", "Charlie", "Ava", "Thomas", "Grace", "William", "Lily", "Daniel",
    "Fatma", "Mehmet", "Ayşe", "Mustafa", "Piotr", "Agnieszka",
)  # fmt: skip
LAST = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner",
    "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler", "Herrmann",
    "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang", "Scholz", "Möller",
    "Weiß", "Jung", "Hahn", "Vogel", "Friedrich", "Keller", "Günther", "Frank", "Berger", "Winkler",
    "Roth", "Beck", "Lorenz", "Baumann", "Franke", "Albrecht", "Schuster", "Simon", "Ludwig", "Böhm",
    "Winter", "Kraus", "Martin", "Schumacher", "Krämer", "Vogt", "Stein", "Jäger", "Otto", "Sommer",
    "Groß", "Seidel", "Heinrich", "Brandt", "Haas", "Schreiber", "Graf", "Smith", "Jones", "Taylor",
    "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright", "Thompson", "Evans",
    "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke", "O'Brien", "Y\u0131lmaz",
    "Kaya", "Demir", "Nowak", "Kowalski", "van der Berg", "de Vries",
)  # fmt: skip
DOMAINS = (
    "gmail.com", "web.de", "gmx.de", "t-online.de", "outlook.com", "yahoo.de", "posteo.de",
    "mailbox.org", "icloud.com", "firma-muster.de",
)  # fmt: skip
# Email prefixes and names to search for; each request takes the next one.
EMAIL_QUERIES = (
    "anna.mueller", "max.schmidt", "lea.", "tim.we", "sophie.k", "jonas.sch", "m.bauer", "eva.koch",
    "felix.r", "emma.w", "luis.", "clara.h", "ben.fis", "olivia.g", "jack.t", "h.wagner",
)  # fmt: skip
NAME_QUERIES = (
    "Müller", "schmidt", "Anna Müll", "Becker", "o'brien", "jäger", "Max Sch", "y\u0131lmaz", "Lehmann",
    "sophie", "van der berg", "Krüger", "Jonas W", "kowalski", "Hannah K", "Groß",
)  # fmt: skip


@dataclass
class Config:
    members: int
    other_members: int
    samples: int
    quick: bool
    keep: bool
    max_wait_s: float
    pg_admin_url: str


@dataclass
class Bench(ScratchDatabase):
    merchant_id: str = ""
    other_id: str = ""
    areas: dict[str, str] = field(default_factory=dict)  # slug -> id
    plans: dict[str, str] = field(default_factory=dict)
    totp_secret: str = ""


# --- set-up: schema, merchants, staff, members --------------------------------------------------


async def set_up(bench: Bench) -> None:
    """Migrations, two merchants with areas and plans, and a staff admin, through einlass's services."""
    from einlass.audit.service import CLI
    from einlass.billing import catalogue
    from einlass.tenants import service as tenants
    from einlass.tenants.staff import create_staff

    async with bench.migrated() as session:
        for slug in (SLUG, "other"):
            merchant, _key = await tenants.create_merchant(session, slug, f"{slug.title()} GmbH", CLI)
            for area in ("premium", "archive"):
                created = await catalogue.create_area(session, merchant, area, area.title(), CLI)
                if slug == SLUG:
                    bench.areas[area] = created.id
            for plan, period, areas in (("month", "P30D", ["premium"]), ("lifetime", None, ["archive"])):
                made = await catalogue.create_plan(
                    session,
                    merchant,
                    slug=plan,
                    name=plan.title(),
                    amount=990,
                    currency="EUR",
                    access_period=period,
                    areas=areas,
                    gateway_refs={},
                    actor=CLI,
                )
                if slug == SLUG:
                    bench.plans[plan] = made.id
            if slug == SLUG:
                bench.merchant_id = merchant.id
                staff = await create_staff(
                    session,
                    bench.secret_key,
                    email=STAFF_EMAIL,
                    role="admin",
                    merchant=merchant,
                    actor=CLI,
                    password=STAFF_PASSWORD,
                )
                bench.totp_secret = staff.totp_secret
            else:
                bench.other_id = merchant.id


def _sql_array(values: Sequence[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


def _ascii(expression: str) -> str:
    """An email-safe spelling of a name in SQL: umlauts spelt out, no spaces or apostrophes."""
    pairs = (("ü", "ue"), ("ö", "oe"), ("ä", "ae"), ("ß", "ss"), ("\u0131", "i"), ("ş", "s"), ("é", "e"))
    pairs += (("ë", "e"), (" ", ""), ("'", ""))
    for old, new in pairs:
        quoted = old.replace("'", "''")
        expression = f"replace({expression}, '{quoted}', '{new}')"
    return expression


def members_sql(merchant_id: str, count: int, id_step: int, id_offset: int) -> str:
    """INSERT ... SELECT of ``count`` members: ids in creation order, every 20 s over the last months."""
    first, last = _sql_array(FIRST), _sql_array(LAST)
    domains = _sql_array(DOMAINS)
    local = (
        "CASE n % 4 WHEN 0 THEN lower(f) || '.' || lower(l) || n"
        " WHEN 1 THEN lower(f) || lower(l) || n"
        " WHEN 2 THEN left(lower(f), 1) || '.' || lower(l) || n"
        " ELSE lower(f) || '.' || lower(l) || '.' || n END"
    )
    return f"""
INSERT INTO members (id, merchant_id, email, email_normalized, name, username, locale, locked_at,
                     lock_reason, deleted_at, created_at, updated_at)
SELECT id, '{merchant_id}',
       CASE WHEN deleted THEN NULL ELSE initcap(left(address, 1)) || substr(address, 2) END,
       CASE WHEN deleted THEN NULL ELSE address END,
       CASE WHEN deleted THEN NULL ELSE f || ' ' || l END,
       CASE WHEN deleted THEN NULL ELSE address END,
       CASE WHEN n % 3 = 0 THEN 'en' ELSE 'de' END,
       CASE WHEN n % 97 = 3 THEN created + interval '3 days' END,
       CASE WHEN n % 97 = 3 THEN 'bench' END,
       CASE WHEN deleted THEN created + interval '5 days' END,
       created, created
FROM (
  WITH words AS MATERIALIZED (SELECT {first} AS firsts, {last} AS lasts, {domains} AS domains)
  SELECT n, f, l, deleted, created, 'mem_0' || lpad((n * {id_step} + {id_offset})::text, 25, '0') AS id,
         {_ascii(local)} || '@' || d AS address
  FROM (
    SELECT n, n % 200 = 7 AS deleted,
           now() - ({count} - n) * interval '20 seconds' AS created,
           firsts[1 + (hashint4(n) & 2147483647) % {len(FIRST)}] AS f,
           lasts[1 + (hashint4(n * 31 + 7) & 2147483647) % {len(LAST)}] AS l,
           domains[1 + (hashint4(n * 17 + 3) & 2147483647) % {len(DOMAINS)}] AS d
    FROM generate_series(1, {count}) AS n, words
  ) AS base
) AS named
"""


def grants_sql(bench: Bench) -> list[str]:
    """Payments for "month" (a third, a current premium grant each; a tenth of those ran out),
    "lifetime" for one in thirteen (archive, no end)."""
    merchant, premium, archive = bench.merchant_id, bench.areas["premium"], bench.areas["archive"]
    month, lifetime = bench.plans["month"], bench.plans["lifetime"]
    members = f"SELECT id, created_at, row_number() OVER (ORDER BY id) AS n FROM members WHERE merchant_id = '{merchant}' AND deleted_at IS NULL"
    statements = []
    for kind, plan, area, every, ends in (
        ("m", month, premium, 3, "CASE WHEN n % 30 = 0 THEN now() - interval '2 days' ELSE now() + interval '20 days' END"),
        ("l", lifetime, archive, 13, "NULL"),
    ):  # fmt: skip
        statements.append(f"""
INSERT INTO payments (id, merchant_id, gateway, external_id, plan_id, member_id, amount, currency, status,
                      amount_paid, amount_refunded, charged_back, confirmed_at, created_at, updated_at)
SELECT 'pay_{kind}' || substr(id, 5), '{merchant}', 'generic', 'ext-{kind}-' || id, '{plan}', id, 990, 'EUR',
       'confirmed', 990, 0, false, created_at, created_at, created_at
FROM ({members}) AS m WHERE n % {every} = 0""")
        statements.append(f"""
INSERT INTO grants (id, merchant_id, member_id, area_id, source_kind, source_id, starts_at, ends_at,
                    revoked_at, created_at, updated_at)
SELECT 'grt_{kind}' || substr(id, 5), '{merchant}', id, '{area}', 'payment', 'pay_{kind}' || substr(id, 5),
       created_at, {ends}, NULL, created_at, created_at
FROM ({members}) AS m WHERE n % {every} = 0""")
    return statements


def load(bench: Bench, config: Config) -> dict[str, Any]:
    """The members, their payments and grants, with the secondary indexes built after the load."""
    timings: dict[str, Any] = {}
    with bench.connect() as connection:
        connection.execute("SET synchronous_commit = off")
        connection.execute("SET maintenance_work_mem = '1GB'")
        # A scratch database of our own: no foreign key triggers while loading (rows are consistent).
        connection.execute("SET session_replication_role = replica")
        tables_sql = "('members', 'grants', 'payments')"
        # The primary keys stay; unique constraints and indexes are built again after the load.
        unique = connection.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            f" WHERE conrelid::regclass::text IN {tables_sql} AND contype = 'u'"
        ).fetchall()
        indexes = connection.execute(
            f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN {tables_sql}"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for table, name, _definition in unique:
            connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        started = time.perf_counter()
        connection.execute(members_sql(bench.merchant_id, config.members, 10, 0))
        other_step = max(1, config.members * 10 // max(1, config.other_members))
        connection.execute(members_sql(bench.other_id, config.other_members, other_step, 5))
        for statement in grants_sql(bench):
            connection.execute(statement)
        timings["insert_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        for table, name, definition in unique:
            connection.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for _name, definition in indexes:
            connection.execute(definition)
        timings["index_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        for table in ("members", "grants", "payments"):
            connection.execute(f"VACUUM ANALYZE {table}")
        connection.execute("CHECKPOINT")
        timings["vacuum_s"] = round(time.perf_counter() - started, 1)
        counts = connection.execute(
            "SELECT (SELECT count(*) FROM members WHERE merchant_id = %s),"
            " (SELECT count(*) FROM members WHERE merchant_id = %s),"
            " (SELECT count(*) FROM grants), (SELECT count(*) FROM payments),"
            " pg_total_relation_size('members')",
            (bench.merchant_id, bench.other_id),
        ).fetchone()
        assert counts is not None
        timings.update(
            members=int(counts[0]),
            other_members=int(counts[1]),
            grants=int(counts[2]),
            payments=int(counts[3]),
            members_table_mb=round(int(counts[4]) / 2**20),
        )
    return timings


# --- the requests -----------------------------------------------------------------------------


@dataclass
class Samples:
    """What the requests of each page ask for: ids deep in the list, members to open."""

    cursors: list[str]
    member_ids: list[str]


def samples(bench: Bench, count: int, members: int, rng: random.Random) -> Samples:
    """Cursors from the deeper nine tenths of the list (ids follow members_sql's scheme), members to open."""
    cursors = [
        f"mem_0{n * 10:025d}" for n in sorted(rng.randrange(1, members * 9 // 10) for _ in range(count))
    ]
    with bench.connect() as connection:
        ids = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM members WHERE merchant_id = %s AND deleted_at IS NULL"
                " ORDER BY hashtext(id) LIMIT %s",
                (bench.merchant_id, count),
            ).fetchall()
        ]
    return Samples(cursors, ids)


def pages(bench: Bench, picks: Samples) -> list[tuple[str, Callable[[int], str], dict[str, str]]]:
    """(page, path for request i, extra headers)."""
    base = f"/admin/m/{SLUG}/members"

    def url(**query: str) -> str:
        return f"{base}?{urllib.parse.urlencode(query)}"

    premium, month = bench.areas["premium"], bench.plans["month"]
    htmx = {"HX-Request": "true", "HX-Current-URL": f"http://{HOST}{base}"}
    return [
        ("members_first", lambda i: base, {}),
        ("members_later", lambda i: url(starting_after=picks.cursors[i % len(picks.cursors)]), {}),
        ("search_email", lambda i: url(q=EMAIL_QUERIES[i % len(EMAIL_QUERIES)]), {}),
        ("search_name", lambda i: url(q=NAME_QUERIES[i % len(NAME_QUERIES)]), {}),
        ("search_id", lambda i: url(q=picks.member_ids[i % len(picks.member_ids)]), {}),
        ("search_typed_htmx", lambda i: url(q=NAME_QUERIES[i % len(NAME_QUERIES)][:4]), htmx),
        ("filter_area", lambda i: url(area=premium), {}),
        ("filter_area_later", lambda i: url(area=premium, starting_after=picks.cursors[i % len(picks.cursors)]), {}),
        ("filter_plan", lambda i: url(plan=month), {}),
        ("filter_locked", lambda i: url(status="locked"), {}),
        ("member_detail", lambda i: f"{base}/{picks.member_ids[i % len(picks.member_ids)]}", {}),
    ]  # fmt: skip


def login(port: int, bench: Bench) -> str:
    """The admin session cookie: password and the TOTP code of the real clock."""
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30) as client:
        form = client.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, f"no login form: HTTP {form.status_code}"
        answer = client.post(
            "/admin/login",
            data={
                "csrf_token": token.group(1),
                "email": STAFF_EMAIL,
                "password": STAFF_PASSWORD,
                "code": pyotp.TOTP(bench.totp_secret).now(),
                "next": "/admin/",
            },
        )
        if answer.status_code != 303:
            raise RuntimeError(f"login failed: HTTP {answer.status_code} {answer.text[:300]}")
        return f"einlass_admin={client.cookies['einlass_admin']}"


async def time_page(
    port: int, path: Callable[[int], str], headers: dict[str, str], count: int, cookie: str
) -> dict[str, Any]:
    """``count`` requests one after the other (after two to warm up); full response time each."""
    client = LeanClient(HOST, port, timeout=60)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    sizes: list[int] = []
    shown: list[int] = []
    try:
        for i in range(count + WARM_UP):
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            request = (
                f"GET {path(i)} HTTP/1.1\r\nHost: {HOST}:{port}\r\nCookie: {cookie}\r\n"
                f"Accept-Language: en\r\n{extra}\r\n"
            ).encode()
            started = time.perf_counter()
            try:
                status, body = await client.send(request)
            except (HTTPError, OSError) as error:
                statuses[type(error).__name__] = statuses.get(type(error).__name__, 0) + 1
                continue
            elapsed = time.perf_counter() - started
            if i < WARM_UP:
                continue
            latencies.append(elapsed)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            sizes.append(len(body))
            found = re.search(rb"(\d[\d,]*) shown", body)
            if found:
                shown.append(int(found.group(1).replace(b",", b"")))
    finally:
        client.close()
    return {
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p95_ms": ms(percentile(latencies, 0.95)),
        "max_ms": ms(max(latencies)) if latencies else None,
        "requests": len(latencies),
        "status": statuses,
        "bytes": round(sum(sizes) / len(sizes)) if sizes else 0,
        "rows_shown_mean": round(sum(shown) / len(shown), 1) if shown else None,
    }


def measure(
    server: Server, port: int, path: Callable[[int], str], headers: dict[str, str], count: int, cookie: str,
    bench: Bench | None,
) -> dict[str, Any]:  # fmt: skip
    """``time_page`` plus the CPU each request cost the server (process group) and PostgreSQL."""
    with cpu_used(server, bench) as used:
        figures = asyncio.run(time_page(port, path, headers, count, cookie))
    per_request = 1000 / (count + WARM_UP)
    figures["cpu_ms_per_request"] = {name: round(seconds * per_request, 2) for name, seconds in used.items()}
    return figures


def run_einlass(
    bench: Bench, config: Config, picks: Samples, workdir: Path, members: int
) -> list[dict[str, Any]]:
    results = []
    with einlass_server(bench, workdir) as (server, port):
        cookie = login(port, bench)
        for page, path, headers in pages(bench, picks):
            figures = measure(server, port, path, headers, config.samples, cookie, bench)
            results.append({"page": page, "members": members, **figures})
            print(f"  {results[-1]}", flush=True)
    return results


# --- the baseline: a raw ASGI app answering an HTML page of the same size -------------------------


def run_baseline(config: Config, workdir: Path, size: int) -> dict[str, Any]:
    with raw_server("raw-html", workdir, BENCH_HTML_BYTES=str(size)) as (server, port):
        figures = measure(server, port, lambda i: "/", {}, config.samples, "x=1", None)
    return {"page": "baseline_raw_asgi_html", "members": 0, **figures}


# --- the queries alone ------------------------------------------------------------------------


def query_cases(bench: Bench, picks: Samples) -> dict[str, tuple[Any, str | None]]:
    """The list's queries, by name: (MemberFilter, starting_after)."""
    from einlass.members.search import MemberFilter

    premium, archive = bench.areas["premium"], bench.areas["archive"]
    return {
        "members_first": (MemberFilter(), None),
        "members_later": (MemberFilter(), picks.cursors[len(picks.cursors) // 2]),
        "search_email": (MemberFilter(q=EMAIL_QUERIES[0]), None),
        "search_email_short": (MemberFilter(q="lea."), None),
        "search_name": (MemberFilter(q=NAME_QUERIES[0]), None),
        "search_name_two_words": (MemberFilter(q=NAME_QUERIES[2]), None),
        "search_name_word_and_letter": (MemberFilter(q="Jonas W"), None),
        "search_one_letter": (MemberFilter(q="a"), None),
        "search_nobody": (MemberFilter(q="Zzyzx"), None),
        "filter_area": (MemberFilter(area_id=premium), None),
        "filter_area_archive": (MemberFilter(area_id=archive), None),
        "filter_archive_and_name": (MemberFilter(area_id=archive, q="Schmidt"), None),
        "filter_plan": (MemberFilter(plan_id=bench.plans["month"]), None),
        "filter_plan_lifetime": (MemberFilter(plan_id=bench.plans["lifetime"]), None),
        "filter_locked": (MemberFilter(status="locked"), None),
        "filter_deleted": (MemberFilter(status="deleted"), None),
    }


async def query_timings(bench: Bench, picks: Samples, runs: int) -> dict[str, Any]:
    """``search_members`` called in this process (the page's queries without HTTP and HTML)."""
    from einlass.db.engine import Database
    from einlass.members.search import search_members

    db = Database(bench.url)
    found: dict[str, Any] = {}
    try:
        for name, (filters, after) in query_cases(bench, picks).items():
            latencies = []
            for _ in range(runs + 1):  # the first run warms the connection and the pages
                started = time.perf_counter()
                async with db.read_sessionmaker() as session, session.begin():
                    page = await search_members(session, bench.merchant_id, filters, starting_after=after)
                latencies.append(time.perf_counter() - started)
            found[name] = {
                "p50_ms": ms(percentile(latencies[1:], 0.5)),
                "max_ms": ms(max(latencies[1:])),
                "rows": len(page.rows),
            }
    finally:
        await db.dispose()
    return found


def explain(bench: Bench, picks: Samples) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the one-statement form of each query: plan shape and execution time.

    A search in names runs as two bounded statements instead (search._text_page); its
    one-statement form shows what the planner would do with it.
    """
    from sqlalchemy.dialects import postgresql

    from einlass.members.models import Member
    from einlass.members.search import member_query

    now = datetime.now(UTC)
    found: dict[str, Any] = {}
    with bench.connect() as connection:
        for name, (filters, after) in query_cases(bench, picks).items():
            query = member_query(bench.merchant_id, filters, postgresql=True, at=now)
            if after:
                query = query.where(Member.id < after)
            # The values in place, as the server's statement has its search patterns.
            statement = query.order_by(Member.id.desc()).limit(51)
            sql = str(
                statement.compile(
                    dialect=postgresql.dialect(paramstyle="named"), compile_kwargs={"literal_binds": True}
                )
            )
            plan = [row[0] for row in connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").fetchall()]
            timing = next((line for line in plan if line.startswith("Execution Time")), "")
            nodes = [line.strip() for line in plan if "Scan" in line or "Join" in line or "Sort" in line]
            found[name] = {"execution_ms": float(timing.split(":")[1].split()[0]) if timing else None}
            found[name]["plan"] = [re.sub(r"\s+", " ", node)[:140] for node in nodes[:6]]
    return found


# --- report and main ----------------------------------------------------------------------------


def report(results: list[dict[str, Any]], queries: dict[str, Any], notes: list[str], quick: bool) -> None:
    rows = [
        (r["page"], r["members"], r["requests"], r["p50_ms"], r["p95_ms"], r["max_ms"], r["bytes"],
         " ".join(f"{k} {v}" for k, v in r["cpu_ms_per_request"].items()),
         " ".join(f"{k}:{v}" for k, v in r["status"].items()))
        for r in results
        if "error" not in r
    ]  # fmt: skip
    print(
        "\n"
        + tables(
            rows,
            ("page", "members", "requests", "p50 ms", "p95 ms", "max ms", "bytes", "cpu ms/req", "status"),
        )
    )
    for r in results:
        if "error" in r:
            print(f"{r['page']}: {r['error']}")
    print("\n" + tables(
        [(name, f["rows"], f["p50_ms"], f["max_ms"], f["one_statement_ms"]) for name, f in queries.items()],
        ("query (search_members in-process)", "rows", "p50 ms", "max ms", "one-statement EXPLAIN ms"),
    ))  # fmt: skip
    for note in notes:
        print(f"note: {note}")
    document = {
        "bench": "admin_lists",
        "quick": quick,
        "results": results,
        "queries": queries,
        "notes": notes,
    }
    print(json.dumps(document, default=str))


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="100,000 members, fewer requests: under a minute"
    )
    parser.add_argument("--members", type=int, help="members of the merchant (1,000,000; --quick 100,000)")
    parser.add_argument("--samples", type=int, help="timed requests per page (100; --quick 20)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server log)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    members = args.members or (100_000 if args.quick else 1_000_000)
    return Config(
        members=members,
        other_members=max(1, members // 20),
        samples=args.samples or (20 if args.quick else 100),
        quick=args.quick,
        keep=args.keep,
        max_wait_s=2.0 if args.quick else 20.0,
        pg_admin_url=args.pg_admin_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    from einlass.logging import configure_logging

    configure_logging("WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="einlass-admin-lists-bench-"))
    load_avg = os.getloadavg()
    notes = [f"machine: {os.cpu_count()} CPUs; load average at start {load_avg[0]:.2f} {load_avg[1]:.2f}"]
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    bench = Bench.create(config.pg_admin_url, DB_PREFIX)
    try:
        asyncio.run(set_up(bench))
        loaded = load(bench, config)
        notes.append(
            f"{loaded['members']:,} members (+{loaded['other_members']:,} of another merchant), "
            f"{loaded['grants']:,} grants, {loaded['payments']:,} payments: insert {loaded['insert_s']} s, "
            f"indexes {loaded['index_s']} s, VACUUM ANALYZE {loaded['vacuum_s']} s; "
            f"members table and indexes {loaded['members_table_mb']} MB"
        )
        print(notes[-1], flush=True)
        picks = samples(bench, config.samples, config.members, random.Random(20261205))
        queries = asyncio.run(query_timings(bench, picks, 5 if config.quick else 20))
        plans = explain(bench, picks)
        for name, figures in queries.items():
            figures["one_statement_ms"] = plans[name]["execution_ms"]
            figures["one_statement_plan"] = plans[name]["plan"][:3]
            print(
                f"  query {name}: {figures['p50_ms']} ms (max {figures['max_ms']}), {figures['rows']} rows",
                flush=True,
            )
        quiet = wait_until_quiet(config.max_wait_s)
        print(f"einlass (machine {quiet}) ...", flush=True)
        try:
            results += run_einlass(bench, config, picks, workdir, loaded["members"])
        except Exception as error:
            results.append(
                {"page": "einlass", "members": loaded["members"], "error": f"{type(error).__name__}: {error}"}
            )
        size = next(
            (r["bytes"] for r in results if r.get("page") == "members_first" and r.get("bytes")), 40_000
        )
        print("baseline ...", flush=True)
        try:
            results.append(run_baseline(config, workdir, size))
        except Exception as error:
            results.append(
                {"page": "baseline_raw_asgi_html", "members": 0, "error": f"{type(error).__name__}: {error}"}
            )
        slow = [r["page"] for r in results if r.get("p95_ms", 0) >= TARGET_P95_MS]
        notes.append(
            f"p95 target {TARGET_P95_MS:.0f} ms: "
            + (f"missed by {', '.join(slow)}" if slow else "met by every page")
        )
        notes.append(f"total runtime {time.perf_counter() - started:.1f} s")
        if config.keep:
            notes.append(f"work directory kept: {workdir}")
        report(results, queries, notes, config.quick)
    finally:
        with contextlib.suppress(Exception):
            drop_scratch_database(config.pg_admin_url, bench.name, DB_PREFIX)
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = any("error" in r or set(r.get("status", {})) - {"200"} for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
