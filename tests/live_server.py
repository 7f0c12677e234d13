"""A real ``einlass serve`` as a child process, for the end-to-end tests.

Used by tests/test_nginx.py (behind nginx) and tests/browser.py (the admin UI in
Chromium): SQLite in a temporary directory, the outbox worker in-process, the
server in a session of its own (granian's workers with it)::

    serve = start_serve(home, secret_key="...", EINLASS_ACCESS_POLL_INTERVAL_S="0.25")
    try:
        serve.wait_ready()          # polls /readyz; fails with the log's tail
        httpx.get(f"{serve.url}/readyz")
    finally:
        serve.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nginx import free_port

SERVER_READY_S = 60.0


def einlass_bin() -> str:
    """The ``einlass`` command of this virtual environment (or the one on PATH)."""
    beside = Path(sys.executable).parent / "einlass"
    return str(beside) if beside.exists() else "einlass"


def sqlite_url(home: Path) -> str:
    """The database of a server started in ``home``."""
    return f"sqlite+aiosqlite:///{home / 'einlass.db'}"


def log_tail(log: Path, chars: int = 6000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@dataclass
class ServeProcess:
    """A started ``einlass serve``; ``env`` and ``home`` also run the CLI on the same database."""

    url: str
    home: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self) -> str:
        return log_tail(self.log)

    def wait_ready(self, timeout: float = SERVER_READY_S) -> None:
        """Poll ``/readyz`` until it answers 200; fail with the log when the server exits or is late."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url) as http:
            while True:
                assert self.process.poll() is None, f"einlass serve exited:\n{self.log_tail()}"
                try:
                    if http.get("/readyz", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (
                    f"einlass not ready within {timeout} s:\n{self.log_tail()}"
                )
                time.sleep(0.05)

    def stop(self) -> None:
        process = self.process
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # granian's workers are children in the session started for this server.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def start_serve(home: Path, *, secret_key: str, migrate: bool = True, **settings: str) -> ServeProcess:
    """``einlass serve`` on a free port with the database ``sqlite_url(home)``, not yet waited for.

    ``migrate=False`` when the schema is already up to date; ``settings``: more (or other)
    ``EINLASS_*`` variables.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env.update(
        EINLASS_DATABASE_URL=sqlite_url(home),
        EINLASS_SECRET_KEY=secret_key,
        EINLASS_MAIL_DIR=str(home / "mail"),
        EINLASS_BASE_URL=url,
        EINLASS_RUN_WORKER_IN_PROCESS="true",
        EINLASS_WORKER_POLL_INTERVAL_S="0.2",
        EINLASS_LOG_LEVEL="WARNING",
    )
    env.update(settings)
    log = home / "serve.log"
    argv = [einlass_bin(), "serve", "--port", str(port), *([] if migrate else ["--no-migrate"])]
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=home,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ServeProcess(url=url, home=home, env=env, log=log, process=process)


def show(request: pytest.FixtureRequest, title: str, text: str) -> None:
    """Write to the terminal from a fixture's teardown, past output capturing."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(f"--- {title}")
        for line in text.splitlines():
            reporter.write_line(line)
