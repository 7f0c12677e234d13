"""Access-check benchmark: ``GET /auth/{merchant}/{area}`` under load, against nginx, and staleness.

Everything runs on this machine and is started here: a SQLite database in a temporary
directory with a merchant, an area and M members (1000; ``--quick`` 500) holding a manual
grant and a known password; ``einlass serve --workers 1`` (granian, outbox worker
in-process, logs at WARNING); one nginx (Debian's, ``worker_processes 1``, no access log)
with the sites below; and wrk (``-t2 -c50``, ``-d10s``; ``--quick``: ``-d3s``) with a Lua
script that rotates over the members' Basic credentials, so the load is not one cache entry.

1. einlass alone: every member is checked once (a warm-up that loads each into the
   cache), a short wrk pass, then wrk against ``/auth/bench/premium``: ``einlass_rps``,
   p50/p99, and the server's CPU per decision. Every answer must be 200 (wrk counts 4xx/5xx).
2. End to end: deploy/nginx-auth-request.conf (placeholders filled in, as tests/nginx.py
   does) in front of einlass, protecting a static file served by a second nginx site (the
   merchant's "application"); against an unprotected server block on the same nginx that
   proxies the same way to the same file.
3. Baselines with the same wrk settings and script: nginx ``return 200`` (``nginx_rps``;
   ``ratio`` = einlass_rps / nginx_rps) and a bare ASGI callable answering 200 under granian
   with the settings of ``einlass serve`` (``granian_raw_rps``: the ceiling of any Python
   handler on this server).
4. Push: deploy/nginx-auth-basic.conf with an htpasswd file per scheme (bcrypt:10,
   bcrypt:5, sha512_crypt:5000, apr1), hashed with einlass's own
   ``provisioning.hashing.hash_password`` (libpass) and written with its htpasswd
   ``render``. The file lists every member; wrk rotates over K of them (64; ``--quick`` 20)
   spread through it, whose lines hold hashes of their real passwords (the other lines reuse
   one hash: nginx stops reading at the matching user, so they only cost the scan). nginx
   checks the hash inside its worker on every request; one results entry per scheme.
5. Cache reload wave: the members were all loaded by the warm-up, so they all pass the
   cache's 30 s lifetime together; the first requests after that reload them all from the
   database. wrk right then (no warm-up): ``reload_wave_rps``, p99, max. The steady-state
   figures of 1 and 2 are kept clear of this moment (``keep_cache_warm``).
6. Staleness: ``einlass serve --workers 2``. Per trial: connections to both processes (each
   connection is mapped through /proc to the worker process that accepted it) poll
   ``/auth`` as one member as fast as they can; the member is locked with
   ``POST /api/v1/members/{id}/lock``; ``staleness_ms`` runs from the API's answer to the
   first response of the final run of 403s (at least 20 in a row, and the latest answer of
   every process a 403). The maximum over the trials (5; ``--quick`` 3) is reported; the
   documented bound is EINLASS_ACCESS_POLL_INTERVAL_S (0.25 s) plus one query.

Members' passwords are stored as argon2id hashes with low cost parameters (t=1, m=8 KiB):
verification happens once per credential pair and process, in the warm-up, so the
parameters only shorten the set-up; cached decisions never hash.

Before each measurement the bench waits (bounded: 30 s per phase, 90 s before the einlass
phase, 180 s in all; ``--quick`` 2 s, 6 s and 4 s) until the machine is quiet: CPU busy
fraction below 25 % while our servers idle (the 1-minute load average lags and counts our
own previous phase). The busy fraction and the load average at measurement time are
reported. wrk, einlass and nginx share the machine's CPUs.

Usage::

    .venv/bin/python bench/access_check.py [--quick] [--members M] [--granian-options] [--keep]

``--granian-options`` adds a pass over granian settings (event loop, HTTP mode,
backpressure, runtime mode, task implementation) with ``granian`` started directly on
``einlass.app:create_app``, and the same checks through the whole FastAPI stack
(``einlass.access.asgi.AuthFastPath`` bypassed), to show what the fast path saves.
The last line of the output is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HTTPError,
    LeanClient,
    Server,
    cpu_seconds,
    free_port,
    machine_cpu_seconds,
    rotating_requests_lua,
    run_wrk,
    tables,
    wait_until_quiet,
)

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
EINLASS = BIN / "einlass"
GRANIAN = BIN / "granian"
HOST = "127.0.0.1"
MERCHANT = "bench"
MERCHANT_NAME = "Bench GmbH"
AREA = "premium"
AUTH_PATH = f"/auth/{MERCHANT}/{AREA}"
PROTECTED_FILE = "index.html"
CONTENT = "<h1>premium content</h1>\n" * 8
SCHEMES = ("bcrypt:10", "bcrypt:5", "sha512_crypt:5000", "apr1:0")
POLL_INTERVAL_S = 0.25
# einlass's app with the checks through the FastAPI stack, as before AuthFastPath (bench/_common.py).
STACK_ONLY_APP = "_common:create_einlass_without_fast_path"
# Every placeholder deploy/*.conf uses (deploy/README.md).
PLACEHOLDERS = (
    "EINLASS_ADDR",
    "MERCHANT",
    "AREA",
    "SERVER_NAME",
    "LISTEN_PORT",
    "APP_ADDR",
    "SITE_ROOT",
    "HTPASSWD_FILE",
)


@dataclass
class Config:
    quick: bool
    members: int
    duration_s: float
    warmup_s: float
    threads: int
    connections: int
    htpasswd_users: int
    staleness_trials: int
    staleness_connections: int
    streak: int
    settle_max_s: float
    settle_budget_s: float
    reload_wave: bool
    granian_options: bool
    keep: bool


@dataclass(frozen=True)
class Credential:
    member_id: str
    username: str
    password: str

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass
class Run:
    """What the phases share: paths, processes to stop, notes."""

    config: Config
    workdir: Path
    env: dict[str, str]
    api_key: str = ""
    credentials: list[Credential] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    conditions: dict[str, Any] = field(default_factory=dict)

    def stop_all(self) -> None:
        while self.stoppers:
            with contextlib.suppress(Exception):
                self.stoppers.pop()()

    settle_spent_s: float = 0.0
    # When the einlass process under test last loaded every member (time.monotonic()).
    warmed_at: float = 0.0

    def settle(self, phase: str, cap_s: float | None = None, max_s: float | None = None) -> dict[str, Any]:
        """Wait (bounded) for a quiet machine; remember the conditions of this phase."""
        longest = self.config.settle_max_s if max_s is None else max_s
        allowed = min(longest, max(0.0, self.config.settle_budget_s - self.settle_spent_s))
        if cap_s is not None:
            allowed = min(allowed, max(0.0, cap_s))
        found = wait_until_quiet(allowed)
        self.settle_spent_s += float(found["waited_s"])
        self.conditions[phase] = found
        if not found["quiet"]:
            self.notes.append(
                f"{phase}: machine busy ({found['busy']:.0%} CPU, load {found['loadavg_1m']}) "
                f"after waiting {found['waited_s']} s; measured anyway"
            )
        return found


# --- set-up ------------------------------------------------------------------------------------


def einlass_env(database_url: str, workdir: Path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env.update(
        EINLASS_DATABASE_URL=database_url,
        EINLASS_SECRET_KEY=secrets.token_urlsafe(32),
        EINLASS_MAIL_DIR=str(workdir / "mail"),
        EINLASS_RUN_WORKER_IN_PROCESS="true",
        EINLASS_LOG_LEVEL="WARNING",
        EINLASS_BASE_URL=f"http://{HOST}:{port}",
        EINLASS_ACCESS_POLL_INTERVAL_S=str(POLL_INTERVAL_S),
    )
    return env


async def populate(database_url: str, count: int) -> tuple[str, list[Credential]]:
    """Merchant, area and ``count`` members with a manual grant, through einlass's services."""
    from pwdlib.hashers.argon2 import Argon2Hasher

    from einlass.audit.service import CLI
    from einlass.billing import catalogue
    from einlass.crypto import generate_password
    from einlass.db.engine import Database
    from einlass.members import service as members
    from einlass.tenants import service as tenants

    cheap = Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1)
    db = Database(database_url)
    credentials: list[Credential] = []
    try:
        async with db.transaction() as session:
            merchant, issued = await tenants.create_merchant(session, MERCHANT, MERCHANT_NAME, CLI)
            area = await catalogue.create_area(session, merchant, AREA, "Premium", CLI)
            for index in range(count):
                password = generate_password()
                member, _ = await members.create_member(
                    session, merchant, email=f"member{index:05d}@bench.example", name=None, actor=CLI
                )
                member.password_hash = cheap.hash(password)
                await members.grant_manually(
                    session, merchant, member, area, starts_at=None, ends_at=None, note="bench", actor=CLI
                )
                credentials.append(Credential(member.id, member.username or "", password))
    finally:
        await db.dispose()
    return issued.secret, credentials


def set_up(run: Run) -> None:
    migrate = subprocess.run(
        [str(EINLASS), "migrate"], env=run.env, cwd=run.workdir, capture_output=True, text=True, timeout=300
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"einlass migrate failed: {migrate.stderr or migrate.stdout}")
    run.api_key, run.credentials = asyncio.run(populate(run.env["EINLASS_DATABASE_URL"], run.config.members))


def start_einlass(run: Run, name: str, workers: int, port: int | None = None) -> tuple[Server, int]:
    port = port or free_port()
    env = {**run.env, "EINLASS_BASE_URL": f"http://{HOST}:{port}"}
    argv = [str(EINLASS), "serve", "--port", str(port), "--workers", str(workers), "--no-migrate"]
    server = Server(name, argv, env, run.workdir / f"{name}.log", run.workdir)
    run.stoppers.append(server.stop)
    server.wait_ready(f"http://{HOST}:{port}/readyz")
    return server, port


def start_granian(
    run: Run, name: str, port: int, extra: Sequence[str], target: str = "einlass.app:create_app"
) -> Server:
    """``granian`` on einlass's app factory with the settings of ``einlass serve`` plus ``extra``."""
    argv = [
        str(GRANIAN),
        "--interface",
        "asgi",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        *extra,
        target,
    ]
    env = {**run.env, "EINLASS_BASE_URL": f"http://{HOST}:{port}"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    server = Server(name, argv, env, run.workdir / f"{name}.log", run.workdir)
    run.stoppers.append(server.stop)
    server.wait_ready(f"http://{HOST}:{port}/readyz")
    return server


# --- HTTP from the bench itself -----------------------------------------------------------------


def get_request(port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_async(coroutine: Any) -> Any:
    """On uvloop when installed: less client CPU on a machine the servers share."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def check_everyone(
    port: int, credentials: Sequence[Credential], concurrency: int = 8
) -> dict[int, int]:
    """One check per member (fills the cache: one password verification each); statuses counted."""
    statuses: dict[int, int] = {}
    queue = iter(credentials)

    async def worker() -> None:
        client = LeanClient(HOST, port, timeout=30)
        try:
            for credential in queue:
                status, _ = await client.send(
                    get_request(port, AUTH_PATH, {"Authorization": credential.basic})
                )
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def check_answer(port: int, credential: Credential) -> dict[str, str]:
    """One check with urllib: the status and the X-Einlass-* headers, as a proxy sees them."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}{AUTH_PATH}", headers={"Authorization": credential.basic}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return {"status": str(response.status), **{k.lower(): v for k, v in response.headers.items()}}


def warm_up(run: Run, port: int, label: str) -> None:
    """Every member checked once: each is loaded into the cache now (see ``Run.warmed_at``)."""
    run.warmed_at = time.monotonic()
    statuses = run_async(check_everyone(port, run.credentials))
    if statuses != {200: len(run.credentials)}:
        raise RuntimeError(f"{label}: warm-up checks answered {statuses}, expected 200 for every member")
    answer = check_answer(port, run.credentials[0])
    if answer.get("x-einlass-member") != run.credentials[0].member_id:
        raise RuntimeError(f"{label}: 200 without the member's X-Einlass-Member header: {answer}")


# --- wrk ----------------------------------------------------------------------------------------


def wrk_script(run: Run, name: str, path: str, values: Sequence[str]) -> Path:
    script = run.workdir / f"{name}.lua"
    script.write_text(rotating_requests_lua(path, values))
    return script


def _children_cpu_seconds() -> float:
    """CPU of this process's finished children (wrk runs as one)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    run: Run,
    phase: str,
    url: str,
    script: Path,
    *,
    warmup: bool | None = None,
    settle: bool = True,
    timeout_s: float = 10.0,
    cpu_group: int | None = None,
    other_groups: Sequence[int] = (),
    duration_s: float | None = None,
) -> dict[str, Any]:
    """Settle (unless done by the caller), a wrk warm-up pass, then the measured wrk run.

    ``cpu_group``: the server whose CPU per request is reported; ``other_groups``: further
    servers of ours in the run. CPU used by anything else meanwhile is ``others_cpu_share``.
    """
    config = run.config
    conditions = run.settle(phase) if settle else run.conditions.get(phase, {})
    if warmup is None:
        warmup = not config.quick
    if warmup and config.warmup_s > 0:
        run_wrk(
            url,
            script,
            threads=config.threads,
            connections=config.connections,
            duration_s=config.warmup_s,
            timeout_s=timeout_s,
        )
    groups = [group for group in (cpu_group, *other_groups) if group]
    servers_before = [cpu_seconds(process_group=group) for group in groups]
    machine_before, wrk_before = machine_cpu_seconds(), _children_cpu_seconds()
    figures = run_wrk(
        url,
        script,
        threads=config.threads,
        connections=config.connections,
        duration_s=duration_s or config.duration_s,
        timeout_s=timeout_s,
        log=run.workdir / f"wrk-{phase}.txt",
    )
    machine = machine_cpu_seconds() - machine_before
    wrk_cpu = _children_cpu_seconds() - wrk_before
    servers = [
        cpu_seconds(process_group=group) - before
        for group, before in zip(groups, servers_before, strict=True)
    ]
    if cpu_group:
        figures["server_cpu_us_per_request"] = (
            round(servers[0] / figures["requests"] * 1e6, 1) if figures["requests"] else None
        )
    # What the rest of the machine used meanwhile, as a share of all its CPUs: other work.
    others = max(0.0, machine - wrk_cpu - sum(servers))
    figures["others_cpu_share"] = round(others / (figures["seconds"] * (os.cpu_count() or 1)), 2)
    figures["busy_before"] = conditions.get("busy")
    figures["loadavg_1m"] = conditions.get("loadavg_1m")
    busy = "-" if conditions.get("busy") is None else f"{conditions['busy']:.0%}"
    print(
        f"  {phase}: {figures['rps']:,.0f} req/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
        f"4xx/5xx {figures['non_2xx_3xx']}, socket errors {figures['socket_errors']} "
        f"(machine busy {busy} before, other work {figures['others_cpu_share']:.0%} of the CPUs "
        f"during, load {conditions.get('loadavg_1m', '-')})",
        flush=True,
    )
    return figures


# --- nginx --------------------------------------------------------------------------------------

NGINX_MAIN = """
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ text/html html; text/plain txt; }}
    default_type application/octet-stream;
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {prefix}/sites/*.conf;
}}
"""

RETURN_200 = """
server {{
    listen {addr};
    location / {{ return 200; }}
}}
"""

# The merchant's application behind the proxy: static files (as in tests/nginx.py).
APP = """
server {{
    listen {addr};
    root {root};
}}
"""

# The same proxying as the protected location of nginx-auth-request.conf, without the check.
UNPROTECTED = """
server {{
    listen {addr};
    location /{area}/ {{
        proxy_pass http://{app};
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header Authorization "";
    }}
}}
"""


def render(template: str, values: dict[str, str]) -> str:
    """A deploy/ file with its placeholders replaced; every placeholder it uses must be given."""
    import re

    text = (DEPLOY / template).read_text()
    pattern = re.compile(r"\b(" + "|".join(PLACEHOLDERS) + r")\b")
    missing = sorted(set(pattern.findall(text)) - set(values))
    if missing:
        raise ValueError(f"{template}: no value for placeholder(s) {', '.join(missing)}")
    return pattern.sub(lambda match: values[match.group(1)], text)


@dataclass
class Nginx:
    binary: str
    prefix: Path
    sites: dict[str, str] = field(default_factory=dict)  # name -> server block text
    ports: dict[str, int] = field(default_factory=dict)
    server: Server | None = None

    def port(self, name: str) -> int:
        return self.ports.setdefault(name, free_port())

    def add(self, name: str, text: str) -> None:
        self.sites[name] = text

    def start(self, run: Run) -> None:
        (self.prefix / "sites").mkdir(parents=True, exist_ok=True)
        (self.prefix / "temp").mkdir(exist_ok=True)
        for index, (name, text) in enumerate(self.sites.items()):
            (self.prefix / "sites" / f"{index:02d}-{name}.conf").write_text(text)
        # As root, workers would run as nobody and could not read the temporary directory.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_MAIN.format(user=user, prefix=self.prefix))
        command = [
            self.binary,
            "-p",
            f"{self.prefix}/",
            "-c",
            str(conf),
            "-e",
            str(self.prefix / "error.log"),
        ]
        test = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the configuration:\n{test.stderr}")
        self.server = Server(
            "nginx",
            [*command, "-g", "daemon off;"],
            dict(os.environ),
            self.prefix / "stdout.log",
            run.workdir,
        )
        run.stoppers.append(self.server.stop)
        self.server.wait_ready(f"http://{HOST}:{self.port('return200')}/", timeout=15)

    def url(self, name: str, path: str) -> str:
        return f"http://{HOST}:{self.ports[name]}{path}"


def find_nginx() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def write_htpasswd_files(run: Run, users: Sequence[Credential]) -> dict[str, Path]:
    """One file per scheme listing every member; ``users`` hold hashes of their own passwords."""
    from einlass.provisioning.hashing import hash_password
    from einlass.provisioning.htpasswd import render as render_htpasswd

    paths = {}
    for scheme in SCHEMES:
        started = time.perf_counter()
        filler = hash_password(scheme, secrets.token_urlsafe(12))
        entries = {credential.username: filler for credential in run.credentials}
        for credential in users:
            entries[credential.username] = hash_password(scheme, credential.password)
        rendered = render_htpasswd(entries)
        if rendered.rejected:
            raise RuntimeError(f"{scheme}: htpasswd render rejected {rendered.rejected[:3]}")
        path = run.workdir / f"htpasswd-{scheme.replace(':', '-')}"
        path.write_bytes(rendered.content)
        paths[scheme] = path
        print(f"  {scheme}: {len(users)} hashes in {time.perf_counter() - started:.1f} s", flush=True)
    return paths


# --- staleness ----------------------------------------------------------------------------------


def process_group_pids(group: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                pids.append(int(entry.name))
    return pids


def connection_owner(server_port: int, client_port: int, pids: Sequence[int]) -> int | None:
    """The process holding the server side of a local TCP connection (from /proc/net/tcp)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, remote = parts[1], parts[2]
                if (
                    int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port
                ):
                    inode = parts[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) == target:
                        return pid
    return None


async def staleness_trial(
    port: int, group: int, api_key: str, credential: Credential, connections: int, streak: int
) -> dict[str, Any]:
    """Poll as one member through both processes, lock it, time until every answer is 403."""
    check = get_request(port, AUTH_PATH, {"Authorization": credential.basic})
    pids = [pid for pid in process_group_pids(group) if pid != group] or [group]
    clients: list[tuple[LeanClient, int | None]] = []
    owners: set[int] = set()
    # Connections until both processes hold some (the kernel spreads accepts between them).
    while len(clients) < connections or (len(owners) < min(2, len(pids)) and len(clients) < 4 * connections):
        client = LeanClient(HOST, port, timeout=10)
        status, _ = await client.send(check)
        if status != 200:
            raise RuntimeError(f"member {credential.member_id} answered {status} before the lock")
        assert client.connection is not None and client.connection.transport is not None
        owner = connection_owner(port, client.connection.transport.get_extra_info("sockname")[1], pids)
        if owner is not None:
            owners.add(owner)
        clients.append((client, owner))

    records: list[tuple[float, int, int | None]] = []  # (answered at, status, process)
    stop = asyncio.Event()

    async def poll(client: LeanClient, owner: int | None) -> None:
        while not stop.is_set():
            try:
                status, _ = await client.send(check)
            except (HTTPError, OSError):
                status = 0
            records.append((time.perf_counter(), status, owner))

    pollers = [asyncio.create_task(poll(client, owner)) for client, owner in clients]
    # A random phase against the servers' 0.25 s poll timers.
    await asyncio.sleep(0.15 + random.random() * POLL_INTERVAL_S)
    locker = LeanClient(HOST, port, timeout=30)
    body = json.dumps({"reason": "bench staleness"}).encode()
    lock = post_request(
        port, f"/api/v1/members/{credential.member_id}/lock", body, {"Authorization": f"Bearer {api_key}"}
    )
    sent_at = time.perf_counter()
    status, answer = await locker.send(lock)
    answered_at = time.perf_counter()
    locker.close()
    if status != 200:
        stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        raise RuntimeError(f"lock answered {status}: {answer[:200]!r}")

    def settled() -> bool:
        after = [record for record in records if record[0] > answered_at]
        if len(after) < streak or any(status != 403 for _, status, _ in after[-streak:]):
            return False
        # Every process's latest answer is a 403 too.
        latest: dict[int | None, int] = {}
        for _, status, owner in after:
            latest[owner] = status
        return all(latest.get(owner) == 403 for owner in owners) and all(v == 403 for v in latest.values())

    deadline = answered_at + 10.0
    while not settled() and time.perf_counter() < deadline:
        await asyncio.sleep(0.002)
    stop.set()
    await asyncio.gather(*pollers, return_exceptions=True)
    for client, _ in clients:
        client.close()
    if not settled():
        raise RuntimeError("no run of 403s within 10 s of the lock")

    ordered = sorted(records)
    last_other = max((i for i, r in enumerate(ordered) if r[1] != 403), default=-1)
    streak_start = ordered[last_other + 1][0]
    per_process: dict[str, float] = {}
    for owner in sorted(owners):
        mine = [r for r in ordered if r[2] == owner]
        last = max((i for i, r in enumerate(mine) if r[1] != 403), default=-1)
        per_process[str(owner)] = round((mine[last + 1][0] - answered_at) * 1000, 1)
    last_200 = max((r[0] for r in ordered if r[1] == 200), default=None)
    return {
        "staleness_ms": round((streak_start - answered_at) * 1000, 1),
        "lock_api_ms": round((answered_at - sent_at) * 1000, 1),
        "last_200_after_answer_ms": None if last_200 is None else round((last_200 - answered_at) * 1000, 1),
        "per_process_ms": per_process,
        "connections": len(clients),
        "processes": len(owners),
        "requests": len(records),
        "other_statuses": sorted({r[1] for r in ordered} - {200, 403}),
    }


def measure_staleness(run: Run) -> dict[str, Any]:
    config = run.config
    server, port = start_einlass(run, "einlass-2-workers", workers=2)
    try:
        trials = []
        # Members from the end of the list: not the ones the htpasswd files or earlier phases single out.
        for index in range(config.staleness_trials):
            credential = run.credentials[-1 - index]
            run.settle(f"staleness-{index + 1}")
            trial = run_async(
                staleness_trial(
                    port, server.pid, run.api_key, credential, config.staleness_connections, config.streak
                )
            )
            trials.append(trial)
            print(
                f"  trial {index + 1}: {trial['staleness_ms']} ms (per process {trial['per_process_ms']}; "
                f"lock API {trial['lock_api_ms']} ms; {trial['connections']} connections, "
                f"{trial['requests']} checks)",
                flush=True,
            )
            if trial["processes"] < 2:
                run.notes.append(f"staleness trial {index + 1}: only one process held connections")
    finally:
        server.stop()
    return {
        "staleness_ms": max(t["staleness_ms"] for t in trials),
        "staleness_trials_ms": [t["staleness_ms"] for t in trials],
        "staleness_processes": min(t["processes"] for t in trials),
        "trials": trials,
    }


# --- phases -------------------------------------------------------------------------------------

# AccessCache.ttl_s: a cached member is reloaded from the database when it is older than this.
CACHE_TTL_S = 30.0


def cache_window_left(run: Run) -> float:
    """Seconds until the members loaded by the last warm-up start to expire."""
    return run.warmed_at + CACHE_TTL_S - 1.0 - time.monotonic()


@dataclass
class Einlass:
    """The ``einlass serve --workers 1`` under test, on a port fixed for nginx's upstream."""

    run: Run
    port: int
    server: Server | None = None

    def start(self) -> None:
        self.server, _ = start_einlass(self.run, "einlass", workers=1, port=self.port)

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.pid

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def keep_cache_warm(self, needed_s: float) -> None:
        """Make sure no cached member expires in the next ``needed_s`` seconds.

        Members loaded together expire together, and reloading them all at once is slow
        (the reload-wave phase measures that); the steady-state figures must not straddle
        it. When the window is too short: a fresh process, warmed up.
        """
        if cache_window_left(self.run) >= needed_s:
            return
        self.stop()
        self.start()
        warm_up(self.run, self.port, "einlass (restarted)")


def phase_raw_asgi(run: Run, values: Sequence[str]) -> dict[str, Any]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    server = Server(
        "raw-asgi",
        [sys.executable, str(BENCH_DIR / "_common.py"), "raw-asgi", str(port)],
        env,
        run.workdir / "raw-asgi.log",
        run.workdir,
    )
    run.stoppers.append(server.stop)
    try:
        server.wait_ready(f"http://{HOST}:{port}/")
        script = wrk_script(run, "raw-asgi", AUTH_PATH, values)
        return measure(run, "granian-raw", f"http://{HOST}:{port}{AUTH_PATH}", script, cpu_group=server.pid)
    finally:
        server.stop()


def phase_granian_options(run: Run, values: Sequence[str]) -> list[dict[str, Any]]:
    """The einlass-alone measurement under granian started directly with other settings."""
    app = "einlass.app:create_app"
    variants: list[tuple[str, list[str], str]] = [
        ("defaults, as einlass serve (loop auto = uvloop, http auto)", [], app),
        ("same, checks through the FastAPI stack (no AuthFastPath)", [], STACK_ONLY_APP),
        ("--loop asyncio", ["--loop", "asyncio"], app),
        ("--http 1", ["--http", "1"], app),
        ("--http 1 --no-ws", ["--http", "1", "--no-ws"], app),
        ("--backpressure 16", ["--backpressure", "16"], app),
        ("--backpressure 32", ["--backpressure", "32"], app),
        ("--runtime-mode st", ["--runtime-mode", "st"], app),
        ("--task-impl rust", ["--task-impl", "rust"], app),
    ]
    script = wrk_script(run, "granian-options", AUTH_PATH, values)
    found = []
    for label, extra, target in variants:
        port = free_port()
        name = "granian-" + ("default" if not extra else "-".join(x.strip("-") for x in extra))
        if target != app:
            name += "-stack"
        try:
            server = start_granian(run, name, port, extra, target)
        except RuntimeError as error:
            found.append({"granian": label, "error": str(error).splitlines()[0]})
            print(f"  {label}: did not start ({error})", flush=True)
            continue
        try:
            run.settle(name)
            warm_up(run, port, label)
            url = f"http://{HOST}:{port}{AUTH_PATH}"
            figures = measure(run, name, url, script, settle=False, warmup=True, cpu_group=server.pid)
            found.append({"granian": label, **figures})
        except Exception as error:
            found.append({"granian": label, "error": f"{type(error).__name__}: {error}"})
        finally:
            server.stop()
    return found


# --- report -------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def report(main: dict[str, Any], schemes: list[dict[str, Any]], extra: dict[str, Any], run: Run) -> None:
    rows = [
        ("einlass /auth, 1 process", extra.get("einlass", {})),
        ("einlass /auth, cache reload wave", extra.get("reload_wave", {})),
        ("granian, bare ASGI 200", extra.get("granian_raw", {})),
        ("nginx return 200", extra.get("nginx", {})),
        ("nginx auth_request -> einlass", extra.get("auth_request", {})),
        ("nginx unprotected, same proxying", extra.get("unprotected", {})),
        *((f"nginx auth_basic {s['scheme']}", s) for s in schemes),
    ]
    header = (
        "what",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "4xx/5xx",
        "errors",
        "cpu us/req",
        "busy",
        "others",
    )
    body = [
        (
            name,
            _cell(r.get("rps")),
            _cell(r.get("p50_ms")),
            _cell(r.get("p99_ms")),
            _cell(r.get("max_ms")),
            _cell(r.get("non_2xx_3xx")),
            _cell(r.get("socket_errors")),
            _cell(r.get("server_cpu_us_per_request")),
            "-" if r.get("busy_before") is None else f"{r['busy_before']:.0%}",
            "-" if r.get("others_cpu_share") is None else f"{r['others_cpu_share']:.0%}",
        )
        for name, r in rows
        if r
    ]
    print()
    print(tables(body, header))
    print(
        "cpu us/req: CPU of the server's processes per request (auth_request: einlass's part); "
        "busy: the machine's CPU\nbusy fraction just before the run, while our servers idled; "
        "others: CPU used during the run by anything but\nwrk and our servers, as a share of all CPUs"
    )
    print()
    if main.get("ratio") is not None:
        print(f"ratio einlass / nginx return 200: {main['ratio']:.3f}")
    if main.get("staleness_ms") is not None:
        print(
            f"staleness (lock answered -> every process answers 403): max {main['staleness_ms']} ms over "
            f"trials {main['staleness_trials_ms']} (poll interval {POLL_INTERVAL_S * 1000:.0f} ms)"
        )
    if main.get("einlass_rps") is not None and main.get("einlass_p99_ms") is not None:
        met = main["einlass_rps"] >= 20_000 and main["einlass_p99_ms"] < 5
        print(
            f"target (>= 20,000 decisions/s from one process, p99 < 5 ms): {'met' if met else 'NOT met'} "
            f"(load average {main.get('loadavg_at_einlass')}; other work took "
            f"{main.get('others_cpu_share_einlass') or 0:.0%} of the CPUs during the run)"
        )
    if extra.get("granian_options"):
        print("\ngranian settings (einlass alone, granian started directly):")
        option_rows = [
            (
                o["granian"],
                _cell(o.get("rps")),
                _cell(o.get("p50_ms")),
                _cell(o.get("p99_ms")),
                _cell(o.get("server_cpu_us_per_request")),
                "-" if o.get("others_cpu_share") is None else f"{o['others_cpu_share']:.0%}",
                o.get("error", "")[:60],
            )
            for o in extra["granian_options"]
        ]
        print(tables(option_rows, ("granian", "req/s", "p50 ms", "p99 ms", "cpu us/req", "others", "error")))
    for note in run.notes:
        print(f"note: {note}")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="wrk -d3s, fewer hashes and trials (< 1 min)")
    parser.add_argument("--members", type=int, help="members with a grant and a password (1000; --quick 500)")
    parser.add_argument("--duration", type=float, help="seconds per wrk measurement (10; --quick 3)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--htpasswd-users", type=int, help="members with real hashes in the htpasswd files")
    parser.add_argument("--trials", type=int, help="staleness trials (5; --quick 3)")
    parser.add_argument("--settle-max", type=float, help="max seconds to wait for a quiet machine per phase")
    parser.add_argument("--no-reload-wave", action="store_true", help="skip the cache reload-wave phase")
    parser.add_argument("--granian-options", action="store_true", help="also try granian settings")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    quick = args.quick
    return Config(
        quick=quick,
        members=args.members or (500 if quick else 1000),
        duration_s=args.duration or (3.0 if quick else 10.0),
        warmup_s=1.0 if quick else 2.0,
        threads=args.threads,
        connections=args.connections,
        htpasswd_users=args.htpasswd_users or (20 if quick else 64),
        staleness_trials=args.trials or (3 if quick else 5),
        staleness_connections=6,
        streak=20,
        settle_max_s=args.settle_max if args.settle_max is not None else (2.0 if quick else 30.0),
        settle_budget_s=4.0 if quick else 180.0,
        reload_wave=not args.no_reload_wave,
        granian_options=args.granian_options,
        keep=args.keep,
    )


def build_nginx(run: Run, binary: str, einlass_port: int) -> tuple[Nginx, list[Credential]]:
    """One nginx: return 200, the merchant's app, auth_request, unprotected, auth_basic per scheme."""
    config = run.config
    nginx = Nginx(binary, run.workdir / "nginx")
    site_root = run.workdir / "site"
    (site_root / AREA).mkdir(parents=True)
    (site_root / AREA / PROTECTED_FILE).write_text(CONTENT)
    nginx.add("return200", RETURN_200.format(addr=f"{HOST}:{nginx.port('return200')}"))
    app_addr = f"{HOST}:{nginx.port('app')}"
    nginx.add("app", APP.format(addr=app_addr, root=site_root))
    values = {
        "EINLASS_ADDR": f"{HOST}:{einlass_port}",
        "MERCHANT": MERCHANT,
        "AREA": AREA,
        "SERVER_NAME": "localhost",
        "LISTEN_PORT": f"{HOST}:{nginx.port('auth-request')}",
        "APP_ADDR": app_addr,
    }
    nginx.add("auth-request", render("nginx-auth-request.conf", values))
    unprotected = UNPROTECTED.format(addr=f"{HOST}:{nginx.port('unprotected')}", area=AREA, app=app_addr)
    nginx.add("unprotected", unprotected)
    # Members spread through the file (nginx reads it from the top, line by line).
    step = max(1, len(run.credentials) // config.htpasswd_users)
    basic_users = run.credentials[::step][: config.htpasswd_users]
    print(f"htpasswd files ({len(basic_users)} real hashes each; einlass's hashing and render):", flush=True)
    for scheme, path in write_htpasswd_files(run, basic_users).items():
        name = "basic-" + scheme.replace(":", "-")
        site = {
            "AREA": AREA,
            "HTPASSWD_FILE": str(path),
            "SITE_ROOT": str(site_root),
            "SERVER_NAME": "localhost",
            "LISTEN_PORT": f"{HOST}:{nginx.port(name)}",
        }
        nginx.add(name, render("nginx-auth-basic.conf", site))
    nginx.start(run)
    return nginx, basic_users


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)

    def terminate(_signum: int, _frame: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminate)
    nginx_binary, wrk_binary = find_nginx(), shutil.which("wrk")
    if not nginx_binary or not wrk_binary:
        missing = [name for name, found in (("nginx", nginx_binary), ("wrk", wrk_binary)) if not found]
        message = f"{' and '.join(missing)} not installed: run `make system-packages` (Debian packages)"
        print(f"access_check: {message}", file=sys.stderr)
        print(json.dumps({"bench": "access_check", "error": message, "results": []}))
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="einlass-access-bench-"))
    database_url = f"sqlite+aiosqlite:///{workdir / 'einlass.db'}"
    run = Run(config, workdir, einlass_env(database_url, workdir, 0))
    load_start = os.getloadavg()
    run.notes.append(
        f"machine: {os.cpu_count()} CPUs shared by wrk, nginx and einlass; "
        f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}"
    )
    schemes: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    failed = False
    started = time.perf_counter()

    def phase(title: str) -> None:
        print(f"[{time.perf_counter() - started:4.0f} s] {title}", flush=True)

    try:
        print(
            f"access_check bench: {config.members} members, wrk -t{config.threads} -c{config.connections} "
            f"-d{config.duration_s:g}s, work dir {workdir}",
            flush=True,
        )
        phase("set-up: migrate, merchant, area, members with manual grants ...")
        set_up(run)
        values = [credential.basic for credential in run.credentials]
        print(f"  {len(run.credentials)} members in {time.perf_counter() - started:.1f} s", flush=True)

        einlass_port = free_port()
        nginx, basic_users = build_nginx(run, nginx_binary, einlass_port)
        assert nginx.server is not None
        einlass = Einlass(run, einlass_port)
        einlass.start()

        # The einlass phases first, within one cache lifetime of the warm-up (see keep_cache_warm).
        phase("einlass alone (einlass serve --workers 1):")
        run.settle("einlass", max_s=3 * config.settle_max_s)
        warm_up(run, einlass_port, "einlass")
        url = f"http://{HOST}:{einlass_port}{AUTH_PATH}"
        script = wrk_script(run, "einlass", AUTH_PATH, values)
        extra["einlass"] = measure(
            run,
            "einlass",
            url,
            script,
            settle=False,
            warmup=True,
            cpu_group=einlass.pid,
            other_groups=[nginx.server.pid],
        )

        phase("end to end (deploy/nginx-auth-request.conf in front of einlass):")
        protected = f"/{AREA}/{PROTECTED_FILE}"
        probe = urllib.request.Request(
            nginx.url("auth-request", protected), headers={"Authorization": run.credentials[0].basic}
        )
        with urllib.request.urlopen(probe, timeout=10) as response:
            if response.read().decode() != CONTENT:
                raise RuntimeError("auth_request: the protected file did not come through")
        run.settle("auth_request")
        einlass.keep_cache_warm(config.warmup_s + config.duration_s + 2)
        script = wrk_script(run, "auth-request", protected, values)
        # CPU per request: einlass's share of each protected request; nginx's counted as ours.
        extra["auth_request"] = measure(
            run,
            "auth_request",
            nginx.url("auth-request", protected),
            script,
            settle=False,
            cpu_group=einlass.pid,
            other_groups=[nginx.server.pid],
        )
        extra["unprotected"] = measure(
            run, "unprotected", nginx.url("unprotected", protected), script, cpu_group=nginx.server.pid
        )

        phase("baselines:")
        nginx_script = wrk_script(run, "nginx", "/", values)
        extra["nginx"] = measure(
            run, "nginx", nginx.url("return200", "/"), nginx_script, cpu_group=nginx.server.pid
        )
        extra["granian_raw"] = phase_raw_asgi(run, values)

        phase(f"push (deploy/nginx-auth-basic.conf), {len(basic_users)} members rotating:")
        basic_values = [credential.basic for credential in basic_users]
        for scheme in SCHEMES:
            name = "basic-" + scheme.replace(":", "-")
            script = wrk_script(run, name, protected, basic_values)
            figures = measure(
                run,
                name,
                nginx.url(name, protected),
                script,
                warmup=False,
                timeout_s=60,
                cpu_group=nginx.server.pid,
            )
            schemes.append({"scheme": scheme, **figures})
        nginx.server.stop()

        if config.reload_wave:
            # Every cached member expired at once: the first requests after that reload them all.
            pause = run.warmed_at + CACHE_TTL_S + 0.5 - time.monotonic()
            phase(
                f"cache reload wave (every member older than {CACHE_TTL_S:g} s; waiting {max(0, pause):.0f} s):"
            )
            if pause > 0:
                time.sleep(pause)
            run.settle("reload_wave")
            script = wrk_script(run, "reload-wave", AUTH_PATH, values)
            extra["reload_wave"] = measure(
                run, "reload_wave", url, script, settle=False, warmup=False, cpu_group=einlass.pid
            )
        einlass.stop()

        if config.granian_options:
            phase("granian settings (einlass alone):")
            extra["granian_options"] = phase_granian_options(run, values)

        phase("staleness (einlass serve --workers 2, lock through the REST API):")
        extra["staleness"] = measure_staleness(run)
    except Exception as error:
        failed = True
        traceback.print_exc()
        run.notes.append(f"failed: {type(error).__name__}: {error}")
    finally:
        run.stop_all()

    e, n = extra.get("einlass", {}), extra.get("nginx", {})
    ar, up, raw = extra.get("auth_request", {}), extra.get("unprotected", {}), extra.get("granian_raw", {})
    wave, staleness = extra.get("reload_wave", {}), extra.get("staleness", {})
    main_entry = {
        "einlass_rps": e.get("rps"),
        "einlass_p50_ms": e.get("p50_ms"),
        "einlass_p99_ms": e.get("p99_ms"),
        "einlass_non_2xx": e.get("non_2xx_3xx"),
        "einlass_cpu_us_per_request": e.get("server_cpu_us_per_request"),
        "nginx_rps": n.get("rps"),
        "nginx_p99_ms": n.get("p99_ms"),
        "ratio": round(e["rps"] / n["rps"], 3) if e.get("rps") and n.get("rps") else None,
        "staleness_ms": staleness.get("staleness_ms"),
        "staleness_trials_ms": staleness.get("staleness_trials_ms"),
        "auth_request_rps": ar.get("rps"),
        "auth_request_p99_ms": ar.get("p99_ms"),
        "auth_request_non_2xx": ar.get("non_2xx_3xx"),
        "unprotected_rps": up.get("rps"),
        "unprotected_p99_ms": up.get("p99_ms"),
        "granian_raw_rps": raw.get("rps"),
        "granian_raw_p99_ms": raw.get("p99_ms"),
        "reload_wave_rps": wave.get("rps"),
        "reload_wave_p99_ms": wave.get("p99_ms"),
        "reload_wave_max_ms": wave.get("max_ms"),
        "members": len(run.credentials),
        "loadavg_at_einlass": e.get("loadavg_1m"),
        "busy_before_einlass": e.get("busy_before"),
        "others_cpu_share_einlass": e.get("others_cpu_share"),
    }
    for name, figures in (("einlass", e), ("auth_request", ar), ("reload_wave", wave)):
        if figures and (figures.get("non_2xx_3xx") or figures.get("socket_errors")):
            failed = True
            run.notes.append(
                f"{name}: {figures['non_2xx_3xx']} answers were 4xx/5xx, {figures['socket_errors']} socket errors"
            )
    for entry in schemes:
        if entry.get("non_2xx_3xx") or entry.get("socket_errors"):
            run.notes.append(
                f"auth_basic {entry['scheme']}: {entry['non_2xx_3xx']} answers 4xx/5xx, "
                f"{entry['socket_errors']} socket errors (wrk --timeout 60s)"
            )
    report(main_entry, schemes, extra, run)
    print(f"total {time.perf_counter() - started:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    if config.keep or failed:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    document = {
        "bench": "access_check",
        "quick": config.quick,
        "results": [
            main_entry,
            *(
                {
                    "scheme": s["scheme"],
                    "rps": s["rps"],
                    "p99_ms": s["p99_ms"],
                    "p50_ms": s["p50_ms"],
                    "non_2xx": s["non_2xx_3xx"],
                }
                for s in schemes
            ),
        ],
        "staleness_trials": staleness.get("trials"),
        "granian_options": extra.get("granian_options"),
        "conditions": run.conditions,
        "notes": run.notes,
    }
    print(json.dumps(document))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
