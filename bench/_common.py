"""Shared pieces of the benchmarks: payloads, a lean HTTP/1.1 client, processes, statistics.

Run as a script, this module serves a baseline under granian with the settings
`einlass serve` uses (ASGI interface, one worker, no access log): ``raw-asgi``, a raw
ASGI app that answers 200 to every request after reading its body; ``raw-html``, one
that answers an HTML page of ``BENCH_HTML_BYTES`` bytes::

    PYTHONPATH=bench python bench/_common.py raw-asgi PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.ext.asyncio import AsyncSession

BENCH_DIR = Path(__file__).resolve().parent

# --- Novalnet payloads ---------------------------------------------------------------
# The checksum scheme of tests/payloads/novalnet.py, copied so the bench does not import
# the test suite: sha256_hex(event.tid + event.type + result.status + transaction.amount
# + transaction.currency + reverse(payment_access_key)).


def novalnet_checksum(payload: dict[str, Any], access_key: str) -> str:
    event, transaction = payload["event"], payload.get("transaction") or {}
    token = f"{event['tid']}{event['type']}{payload['result']['status']}"
    for key in ("amount", "currency"):
        if transaction.get(key) is not None:
            token += str(transaction[key])
    return hashlib.sha256((token + access_key[::-1]).encode()).hexdigest()


def novalnet_payment(
    tid: int, *, email: str, tariff: int, access_key: str, amount: int = 990, bad_checksum: bool = False
) -> bytes:
    """A signed Novalnet PAYMENT notification (CONFIRMED, result SUCCESS), serialised."""
    payload: dict[str, Any] = {
        "event": {"type": "PAYMENT", "tid": tid, "checksum": ""},
        "merchant": {"vendor": 4, "project": 4711, "tariff": tariff},
        "result": {"status": "SUCCESS", "status_code": 100, "status_text": "Successful"},
        "transaction": {
            "tid": tid,
            "amount": amount,
            "currency": "EUR",
            "date": "2026-01-01 12:00:00",
            "payment_type": "CREDITCARD",
            "status": "CONFIRMED",
            "test_mode": 1,
        },
        "customer": {
            "first_name": "Max",
            "last_name": "Mustermann",
            "email": email,
            "billing": {
                "street": "Hauptstr.",
                "house_no": "9",
                "city": "Kaiserslautern",
                "zip": "66862",
                "country_code": "DE",
            },
        },
        "custom": {"lang": "DE"},
    }
    checksum = novalnet_checksum(payload, access_key)
    payload["event"]["checksum"] = ("0" * 64) if bad_checksum else checksum
    return json.dumps(payload).encode()


# --- statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# --- a lean HTTP/1.1 keep-alive client -------------------------------------------------
# httpx costs the client about 0.3-0.5 ms of CPU per request; on a small machine that
# shares its cores with the server, that is a large part of the baseline. This client
# writes pre-built request bytes and parses Content-Length or chunked responses.


class HTTPError(Exception):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None  # asyncio.Transport, or uvloop's (not a subclass)
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HTTPError(f"connection closed before the response: {exc}"))

    def _complete(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            waiter.set_exception(HTTPError(f"bad status line {head[0]!r}"))
            return
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close"
        start = end + 4
        if "content-length" in headers:
            stop = start + int(headers["content-length"])
            if len(self.buffer) < stop:
                return
            body = bytes(self.buffer[start:stop])
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parsed = _dechunk(self.buffer, start)
            if parsed is None:
                return
            body, stop = parsed
        elif status in (204, 304) or 100 <= status < 200:
            body, stop = b"", start
        else:
            waiter.set_exception(HTTPError("response without length framing is not supported"))
            return
        del self.buffer[:stop]
        waiter.set_result((status, body, keep_alive))

    async def request(self, data: bytes, timeout: float) -> tuple[int, bytes, bool]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, self._time_out, waiter, timeout)
        self.transport.write(data)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _time_out(self, waiter: asyncio.Future[tuple[int, bytes, bool]], timeout: float) -> None:
        if not waiter.done():
            waiter.set_exception(HTTPError(f"no response within {timeout}s"))
            if self.transport is not None:
                self.transport.close()
            self.closed = True


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", position)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 2
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2


class LeanClient:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, timeout: float = 300.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.connection: _Connection | None = None

    async def _connect(self) -> _Connection:
        if self.connection is None or self.connection.closed:
            loop = asyncio.get_running_loop()
            _transport, protocol = await loop.create_connection(_Connection, self.host, self.port)
            self.connection = protocol
        return self.connection

    def build_post(self, path: str, body: bytes, content_type: str = "application/json") -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        connection = await self._connect()
        try:
            status, body, keep_alive = await connection.request(request, self.timeout)
        except HTTPError:
            self.close()
            raise
        if not keep_alive and connection.transport is not None:
            connection.transport.close()
            self.connection = None
        return status, body

    def close(self) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()
        self.connection = None


# --- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process in its own process group, stopped as a group."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path
    ) -> None:
        self.name, self.log_path = name, log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url} after {timeout}s; see {self.log_path}")

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        # The group may outlive its leader (granian's worker): make sure it is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.log.close()

    def log_errors(self, lines: int = 12) -> str:
        """The last distinct error lines of the log (exception types and messages)."""
        words = ("error", "exception", "traceback", "locked", "failed")
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        found: dict[str, None] = {}
        for line in text:
            if any(word in line.lower() for word in words):
                found[line.strip()[:300]] = None
        return "\n".join(list(found)[-lines:])

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(process_group: int | None = None, cmdline_part: str | None = None) -> float:
    """User + system CPU of live processes in a process group, or whose command line has a part.

    From /proc; CPU of processes that ended is not counted.
    """
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            if cmdline_part is not None:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
                if cmdline_part.encode() not in cmdline:
                    continue
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if process_group is not None and int(fields[2]) != process_group:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def tables(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain text table."""
    body = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(out)


# --- the machine: is other work running? --------------------------------------------------


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (all processes, all CPUs)."""
    return _cpu_jiffies()[0] / _CLOCK_TICKS


def machine_busy(interval: float = 0.5) -> float:
    """How busy all CPUs were over ``interval`` seconds, 0.0 to 1.0 (everyone's work, ours too)."""
    busy_before, total_before = _cpu_jiffies()
    time.sleep(interval)
    busy_after, total_after = _cpu_jiffies()
    total = total_after - total_before
    return (busy_after - busy_before) / total if total else 0.0


def wait_until_quiet(
    max_wait_s: float, busy_below: float = 0.25, interval: float = 0.5
) -> dict[str, float | bool]:
    """Wait (at most ``max_wait_s``) until the CPUs are mostly idle while our servers idle.

    The 1-minute load average lags by a minute and counts our own previous phase,
    so the test is the CPU busy fraction over ``interval``; both are returned.
    """
    started = time.monotonic()
    while True:
        busy = machine_busy(interval)
        waited = time.monotonic() - started
        if busy < busy_below or waited >= max_wait_s:
            return {
                "busy": round(busy, 2),
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "waited_s": round(waited, 1),
                "quiet": busy < busy_below,
            }


# --- wrk ---------------------------------------------------------------------------------

# Appended to every wrk script: one machine-readable line with the figures wrk kept.
WRK_DONE_LUA = """
function done(summary, latency, requests)
  io.write(string.format(
    "WRK_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, " ..
    "\\"connect_errors\\": %d, \\"read_errors\\": %d, \\"write_errors\\": %d, " ..
    "\\"non_2xx_3xx\\": %d, \\"timeouts\\": %d, \\"p50_us\\": %d, \\"p90_us\\": %d, " ..
    "\\"p99_us\\": %d, \\"max_us\\": %d, \\"mean_us\\": %.1f}\\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def rotating_requests_lua(path: str, header_values: Sequence[str], header: str = "Authorization") -> str:
    """A wrk script that cycles through requests to ``path``, one per header value.

    Each wrk thread starts at a different offset, so the threads do not ask in lockstep.
    """
    values = ",\n".join(json.dumps(value) for value in header_values) or '""'
    return f"""
local values = {{
{values}
}}
local path = {json.dumps(path)}
local header = {json.dumps(header)}
local threads = 0
local requests, position

function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

function init(args)
  requests = {{}}
  local start = offset or 0
  for i = 1, #values do
    local value = values[((i - 1 + start) % #values) + 1]
    local headers = {{}}
    if value ~= "" then headers[header] = value end
    requests[i] = wrk.format("GET", path, headers)
  end
  position = 0
end

function request()
  position = position % #requests + 1
  return requests[position]
end
{WRK_DONE_LUA}"""


def run_wrk(
    url: str,
    script: Path,
    *,
    threads: int,
    connections: int,
    duration_s: float,
    timeout_s: float = 10.0,
    wrk: str = "wrk",
    log: Path | None = None,
) -> dict[str, Any]:
    """Run wrk with --latency and a script ending in WRK_DONE_LUA; the figures as a dict.

    ``rps`` counts every completed response; ``non_2xx_3xx`` says how many were 4xx/5xx.
    """
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    if log is not None:
        log.write_text(f"$ {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    figures: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    seconds = figures["duration_us"] / 1e6
    errors = sum(figures[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "rps": round(figures["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(figures["p50_us"] / 1000, 3),
        "p90_ms": round(figures["p90_us"] / 1000, 3),
        "p99_ms": round(figures["p99_us"] / 1000, 3),
        "max_ms": round(figures["max_us"] / 1000, 3),
        "requests": figures["requests"],
        "non_2xx_3xx": figures["non_2xx_3xx"],
        "socket_errors": errors,
        "seconds": round(seconds, 2),
    }


# --- the baseline app ------------------------------------------------------------------


async def _lifespan(receive: Any, send: Any) -> None:
    """Answer the server's lifespan messages until shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Any, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def raw_asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, answers 200 with ``{}``."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await _respond(send, b"application/json", b"{}")


def create_raw_app() -> Any:
    return raw_asgi_app


def create_raw_html_app() -> Any:
    """Answers every request with an HTML page of ``BENCH_HTML_BYTES`` bytes (without reading a body)."""
    body = ("<!doctype html><title>members</title>" + "<p>" + "x" * 70 + "</p>\n" * 1).encode()
    size = int(os.environ.get("BENCH_HTML_BYTES", "40000"))
    body = (body * (size // len(body) + 1))[:size]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        if scope["type"] != "http":
            return
        await _respond(send, b"text/html; charset=utf-8", body)

    return app


def create_einlass_without_fast_path() -> Any:
    """einlass's app with ``/auth/...`` checks going through the whole FastAPI stack again.

    For bench/access_check.py: what the checks cost before ``einlass.access.asgi.AuthFastPath``.
    """
    from fastapi import FastAPI

    from einlass.app import create_app

    app = create_app()

    async def through_the_stack(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return through_the_stack


def environ_without_einlass() -> dict[str, str]:
    """This process's environment without any EINLASS_* setting, for a server started by a bench."""
    return {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}


# The baselines `_common.py KIND PORT` serves: (factory, server name).
RAW_APPS = {
    "raw-asgi": ("_common:create_raw_app", "raw ASGI on granian"),
    "raw-html": ("_common:create_raw_html_app", "raw ASGI HTML on granian"),
}


def _serve_raw(kind: str, port: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    # The settings of `einlass serve` (src/einlass/cli.py), with this app as the target.
    Granian(
        RAW_APPS[kind][0],
        factory=True,
        interface=Interfaces.ASGI,
        address="127.0.0.1",
        port=port,
        workers=1,
        log_access=False,
    ).serve()


@contextlib.contextmanager
def raw_server(kind: str, workdir: Path, **env: str) -> Iterator[tuple[Server, int]]:
    """A baseline of RAW_APPS (``env``: more variables for it), ready; (server, port). Stopped after."""
    port = free_port()
    environ = environ_without_einlass()
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), environ.get("PYTHONPATH")]))
    environ.update(env)
    argv = [sys.executable, str(BENCH_DIR / "_common.py"), kind, str(port)]
    server = Server(RAW_APPS[kind][1], argv, environ, workdir / f"{kind}.log", workdir)
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/")
        yield server, port
    finally:
        server.stop()


def create_scratch_database(admin_url: str, prefix: str) -> str:
    """A fresh PostgreSQL database for one bench run; its name starts with ``prefix``."""
    import psycopg

    name = f"{prefix}{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_scratch_database(admin_url: str, name: str, prefix: str) -> None:
    import psycopg

    assert name.startswith(prefix), "only a bench's own database is dropped"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ScratchDatabase:
    """A bench's own PostgreSQL database (``dsn`` for psycopg, ``url`` for einlass) and secret key."""

    name: str
    dsn: str
    url: str
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def create(cls, admin_url: str, prefix: str) -> Self:
        """A fresh database next to ``admin_url``'s, its name starting with ``prefix``."""
        name = create_scratch_database(admin_url, prefix)
        dsn = f"{admin_url.rsplit('/', 1)[0]}/{name}"
        return cls(name, dsn, dsn.replace("postgresql://", "postgresql+psycopg://"))

    def connect(self) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    @contextlib.asynccontextmanager
    async def migrated(self) -> AsyncIterator[AsyncSession]:
        """The schema brought up to date, then one transaction on it, for setting data up."""
        from einlass.db.engine import Database
        from einlass.db.migrate import upgrade_async

        db = Database(self.url)
        try:
            await upgrade_async(db)
            async with db.transaction() as session:
                yield session
        finally:
            await db.dispose()

    def pg_cpu_s(self) -> float:
        """CPU seconds of this database's live PostgreSQL backends."""
        return cpu_seconds(cmdline_part=f" {self.name} ")


@contextlib.contextmanager
def einlass_server(
    database: ScratchDatabase, workdir: Path, workers: int = 1
) -> Iterator[tuple[Server, int]]:
    """``einlass serve`` (granian, outbox worker off, no migrations) on ``database``, ready; (server, port).

    Stopped after the block; when the block fails, the tail of the server's log goes to stderr.
    """
    port = free_port()
    env = environ_without_einlass()
    env.update(
        EINLASS_DATABASE_URL=database.url,
        EINLASS_SECRET_KEY=database.secret_key,
        EINLASS_RUN_WORKER_IN_PROCESS="false",
        EINLASS_MAIL_DIR=str(workdir / "mail"),
        EINLASS_LOG_LEVEL="WARNING",
    )
    argv = [str(Path(sys.executable).parent / "einlass"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--no-migrate"]
    name = f"einlass serve --workers {workers}"
    server = Server(name, argv, env, workdir / f"einlass-{workers}.log", workdir)
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/readyz")
        yield server, port
    except BaseException:
        print(f"--- {server.name} log tail ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop(grace=3.0)


@contextlib.contextmanager
def cpu_used(server: Server, database: ScratchDatabase | None) -> Iterator[dict[str, float]]:
    """CPU seconds the server's process group and the database's backends spent in the block.

    The dict is filled in when the block ends: ``server`` and ``postgres`` (0.0 without a database).
    """
    used: dict[str, float] = {}
    pg_before = database.pg_cpu_s() if database else 0.0
    server_before = cpu_seconds(process_group=server.pid)
    yield used
    used["server"] = cpu_seconds(process_group=server.pid) - server_before
    # Backends that ended during the run take their CPU with them: never below zero.
    used["postgres"] = max(0.0, database.pg_cpu_s() - pg_before) if database else 0.0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in RAW_APPS:
        _serve_raw(sys.argv[1], int(sys.argv[2]))
    else:
        sys.exit(f"usage: _common.py {{{','.join(RAW_APPS)}}} PORT")
