"""A real nginx for tests, running the configurations shipped in deploy/.

Debian's ``/usr/sbin/nginx`` runs as a child process in the foreground with a
prefix, a generated main configuration, logs, pid and temporary files all in a
temporary directory. The sites are the files in deploy/, with their
placeholders (EINLASS_ADDR, MERCHANT, AREA, ...) filled in, so the tests
exercise what merchants copy.

    server = NginxServer(tmp_path / "nginx")
    app = server.add_app(site_root)                       # the merchant's app
    site = server.add_site("nginx-auth-request.conf", EINLASS_ADDR=..., APP_ADDR=lambda: app.addr, ...)
    server.start()                                        # polls until ready
    httpx.get(site.url("/premium/"))
    server.stop()

Without nginx the tests that need it are skipped, visibly; with
``EINLASS_REQUIRE_NGINX=1`` they fail instead (CI installs nginx: ``make test``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NGINX_BINARY = os.environ.get("EINLASS_NGINX_BINARY", "/usr/sbin/nginx")
REQUIRE_NGINX = os.environ.get("EINLASS_REQUIRE_NGINX") == "1"
# Every placeholder used in deploy/*.conf; see deploy/README.md.
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
_PLACEHOLDER = re.compile(r"\b(" + "|".join(PLACEHOLDERS) + r")\b")


def _unavailable(reason: str) -> None:
    if REQUIRE_NGINX:
        pytest.fail(f"{reason}, and EINLASS_REQUIRE_NGINX=1", pytrace=False)
    pytest.skip(f"{reason} (install it: apt-get install nginx, or `make install`)")


def require_nginx() -> str:
    """The nginx binary, checked for auth_request; otherwise skip (or fail when required)."""
    if not os.access(NGINX_BINARY, os.X_OK):
        _unavailable(f"nginx not found at {NGINX_BINARY}")
    version = subprocess.run([NGINX_BINARY, "-V"], capture_output=True, text=True, timeout=10, check=False)
    if "--with-http_auth_request_module" not in version.stderr + version.stdout:
        _unavailable(f"{NGINX_BINARY} lacks the auth_request module")
    return NGINX_BINARY


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def render(template: str | Path, values: dict[str, str]) -> str:
    """A deploy/ file with its placeholders replaced; every placeholder it uses must be given."""
    path = Path(template)
    text = (path if path.is_absolute() else DEPLOY / path).read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ValueError(f"{template}: no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


# A placeholder's value: a string, or a function called when the ports are
# known (``APP_ADDR=lambda: app.addr``).
Value = str | Callable[[], str]


@dataclass
class Site:
    """One server block; its port is chosen when nginx starts."""

    name: str
    template: str | None
    values: dict[str, Value]
    port: int = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.addr}{path}"


# The merchant's application behind the proxy: serves files and shows, in
# response headers, the X-Einlass-* request headers that reached it.
_APP_SERVER = """
server {{
    listen 127.0.0.1:{port};
    root {root};
    add_header X-Seen-Einlass-Member "$http_x_einlass_member" always;
    add_header X-Seen-Einlass-Plan "$http_x_einlass_plan" always;
    add_header X-Seen-Authorization "$http_authorization" always;
}}
"""

_MAIN = """
{user}
worker_processes 2;
pid {prefix}/nginx.pid;
lock_file {prefix}/nginx.lock;
error_log {prefix}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    types {{
        text/html html;
        text/plain txt;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/temp/client_body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;

    include {prefix}/sites/*.conf;

    # The harness's own readiness probe.
    server {{
        listen 127.0.0.1:{control_port};
        location = /__ready {{ return 204; }}
    }}
}}
"""


@dataclass
class NginxServer:
    prefix: Path
    sites: list[Site] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    control_port: int = 0

    def add_site(self, template: str, **values: Value) -> Site:
        """A deploy/ config; LISTEN_PORT is filled in with a free port at start."""
        site = Site(name=Path(template).stem, template=template, values=values)
        self.sites.append(site)
        return site

    def add_app(self, root: Path) -> Site:
        """A stand-in for the merchant's application, serving ``root``."""
        site = Site(name="app", template=None, values={"root": str(root)})
        self.sites.append(site)
        return site

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _command(self, binary: str, *extra: str) -> list[str]:
        return [
            binary,
            "-p",
            f"{self.prefix}/",
            "-c",
            str(self.conf),
            "-e",
            f"{self.prefix}/error.log",
            *extra,
        ]

    def _write(self) -> None:
        (self.prefix / "sites").mkdir(parents=True, exist_ok=True)
        (self.prefix / "temp").mkdir(exist_ok=True)
        for old in (self.prefix / "sites").glob("*.conf"):
            old.unlink()
        self.control_port = free_port()
        for site in self.sites:
            site.port = free_port()
        for index, site in enumerate(self.sites):
            values = {key: value if isinstance(value, str) else value() for key, value in site.values.items()}
            if site.template is None:
                text = _APP_SERVER.format(port=site.port, **values)
            else:
                text = render(site.template, {**values, "LISTEN_PORT": site.addr})
            (self.prefix / "sites" / f"{index:02d}-{site.name}.conf").write_text(text)
        # As root, workers would run as nobody and could not read the test's
        # private temporary directories.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf.write_text(_MAIN.format(user=user, prefix=self.prefix, control_port=self.control_port))

    def start(self, timeout: float = 10.0) -> NginxServer:
        binary = require_nginx()
        self.prefix.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self._write()
            test = subprocess.run(self._command(binary, "-t"), capture_output=True, text=True, timeout=30)
            if test.returncode != 0:
                raise RuntimeError(f"nginx -t rejected the configuration:\n{test.stderr}")
            output = (self.prefix / "nginx.stderr").open("ab")
            self.process = subprocess.Popen(
                self._command(binary, "-g", "daemon off; master_process on;"),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            output.close()
            if self._wait_ready(timeout):
                return self
            # A port taken between choosing and binding: try again with others.
            log = self.error_log()
            self.stop()
            if "Address already in use" not in log or attempt == 2:
                raise RuntimeError(f"nginx did not become ready within {timeout} s:\n{log[-4000:]}")
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        probe = f"http://127.0.0.1:{self.control_port}/__ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(probe, timeout=1) as answer:
                    if answer.status == 204 and all(_accepts(site.port) for site in self.sites):
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: nginx's fast shutdown; the master ends its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
