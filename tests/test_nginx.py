"""End to end: a real ``einlass serve`` behind a real nginx running the configs in deploy/.

One einlass process (SQLite in a temporary directory, the outbox worker
in-process) and one nginx with three server blocks:

- deploy/nginx-auth-request.conf (pull): auth_request to /auth/shop/premium in
  front of a stand-in application;
- deploy/nginx-auth-basic.conf (push): auth_basic with the htpasswd file that
  einlass's htpasswd target writes;
- the stand-in application: static files, and response headers that show the
  X-Einlass-* request headers that reached it.

Members are made the way production makes them: a signed payment webhook, then
a password set through the REST API. Every wait is a poll with a deadline; the
observed revocation delays are printed when the module ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx
import pytest

from helpers import api, has_access, member_by_email, post_generic
from live_server import einlass_bin, show, start_serve
from nginx import NginxServer, Site, free_port, require_nginx
from payloads import generic

pytestmark = pytest.mark.slow

T = TypeVar("T")
SLUG = "shop"
SHOP_NAME = "Shop GmbH"
AREA = "premium"
PRODUCT = "prod-30"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PASSWORD = "correct horse battery staple"
CONTENT = "<h1>premium content</h1>\n"
# The bound on how long a revoked member still passes nginx's auth_request.
STALENESS_DEADLINE_S = 2.0
# Waiting for what only prepares a test (the worker mailing credentials): generous,
# for a loaded machine.
SETUP_DEADLINE_S = 15.0
# Push goes through the outbox worker (polling every 0.2 s here) and a file rewrite.
PUSH_DEADLINE_S = 5.0
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def basic(username: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class LiveShop:
    """What helpers.api and helpers.post_generic need to talk to the merchant."""

    slug: str
    api_key: str
    generic_secret: str = SIGNING_SECRET

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}


@dataclass
class Einlass:
    url: str
    shop: LiveShop
    mail_dir: Path
    log: Path

    @property
    def addr(self) -> str:
        return self.url.removeprefix("http://")


@dataclass
class Proxy:
    pull: Site  # deploy/nginx-auth-request.conf
    push: Site  # deploy/nginx-auth-basic.conf
    app: Site  # the merchant's application


# Processes -----------------------------------------------------------------------------------------


def _cli(env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = subprocess.run(
        [einlass_bin(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"einlass {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout) if done.stdout.lstrip().startswith(("{", "[")) else done.stdout


@pytest.fixture(scope="module")
def einlass(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Einlass]:
    require_nginx()  # skip before spending seconds on the server when nginx is missing
    home = tmp_path_factory.mktemp("einlass")
    # `serve` brings the schema up to date first; the CLI below then works on the same file.
    serve = start_serve(home, secret_key="nginx-e2e-secret-key", EINLASS_ACCESS_POLL_INTERVAL_S="0.25")
    try:
        serve.wait_ready()
        env = serve.env
        merchant = _cli(env, home, "merchant", "create", SLUG, "--name", SHOP_NAME)
        _cli(env, home, "catalogue", "area", SLUG, AREA, "--name", "Premium")
        _cli(env, home, "catalogue", "plan", SLUG, "month", "--name", "30 days", "--amount", "990",
             "--area", AREA, "--period", "P30D", "--ref", f"generic={PRODUCT}")  # fmt: skip
        _cli(env, home, "gateway", "set", SLUG, "generic", "--secret", f"signing_secret={SIGNING_SECRET}")
        server = Einlass(serve.url, LiveShop(SLUG, merchant["api_key"]), home / "mail", serve.log)
        failed_before = request.session.testsfailed
        yield server
        if request.session.testsfailed > failed_before:
            show(request, f"einlass serve log ({serve.log}), last lines", serve.log_tail())
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def site_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / AREA).mkdir()
    (root / AREA / "index.html").write_text(CONTENT)
    (root / "index.html").write_text("public\n")
    return root


@pytest.fixture(scope="module")
def htpasswd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("htpasswd") / "einlass.htpasswd"


@pytest.fixture(scope="module")
def proxy(
    einlass: Einlass, site_root: Path, htpasswd_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    server = NginxServer(tmp_path_factory.mktemp("nginx"))
    app = server.add_app(site_root)
    common = {"MERCHANT": SLUG, "AREA": AREA, "SERVER_NAME": "shop.test"}
    pull = server.add_site(
        "nginx-auth-request.conf", EINLASS_ADDR=einlass.addr, APP_ADDR=lambda: app.addr, **common
    )
    push = server.add_site(
        "nginx-auth-basic.conf", SITE_ROOT=str(site_root), HTPASSWD_FILE=str(htpasswd_file), **common
    )
    with server:
        yield Proxy(pull, push, app)


@pytest.fixture(scope="module")
def delays(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    """Observed delays from a revoking request's answer to nginx's refusal; printed at the end."""
    observed: dict[str, float] = {}
    yield observed
    if observed:
        lines = [f"{name}: {seconds * 1000:.0f} ms" for name, seconds in observed.items()]
        show(request, "nginx e2e, observed delays", "\n".join(lines))


@pytest.fixture
async def http(einlass: Einlass) -> AsyncIterator[httpx.AsyncClient]:
    """A client for einlass itself (webhooks, REST API)."""
    async with httpx.AsyncClient(base_url=einlass.url, timeout=10) as client:
        yield client


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    """A client for the merchant's site behind nginx; full URLs."""
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        yield client


# Polling and members -------------------------------------------------------------------------------


async def until(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float, what: str
) -> tuple[T, float]:
    """Poll ``probe`` until ``accept`` holds; the value and the seconds it took."""
    start = time.monotonic()
    while True:
        value = await probe()
        if accept(value):
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s; last: {value!r}")
        await asyncio.sleep(0.01)


def _status(client: httpx.AsyncClient, url: str, **kwargs: Any) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return (await client.get(url, **kwargs)).status_code

    return probe


async def pay(http: httpx.AsyncClient, shop: LiveShop, email: str, payment_id: str) -> None:
    payload = generic.payment_confirmed(payment_id, amount=990, email=email, product_id=PRODUCT)
    payload["timestamp"] = _now()
    response = await post_generic(http, shop, payload)
    assert response.status_code < 300, response.text


async def charge_back(http: httpx.AsyncClient, shop: LiveShop, payment_id: str) -> None:
    payload = generic.payment_chargeback(payment_id, chargeback_id=f"cb-{payment_id}", amount=990)
    payload["timestamp"] = _now()
    response = await post_generic(http, shop, payload)
    assert response.status_code < 300, response.text


def _mail_to(mail_dir: Path, address: str) -> list[Path]:
    if not mail_dir.exists():
        return []
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        with path.open("rb") as file:
            message = BytesParser(policy=policy.default).parse(file, headersonly=True)
        if address in str(message.get("to", "")):
            found.append(path)
    return found


async def paid_member(
    http: httpx.AsyncClient, einlass: Einlass, email: str, payment_id: str
) -> dict[str, Any]:
    """A member made by a payment webhook, with the known password PASSWORD."""
    await pay(http, einlass.shop, email, payment_id)
    member, _ = await until(
        lambda: member_by_email(http, einlass.shop, email), has_access, SETUP_DEADLINE_S, f"{email} paid"
    )
    # The payment queued the credentials email, whose job issues a generated
    # password: wait for the mail, or that job could replace PASSWORD below.
    await until(
        lambda: asyncio.to_thread(_mail_to, einlass.mail_dir, email),
        bool,
        SETUP_DEADLINE_S,
        f"credentials mailed to {email}",
    )
    await api(http, einlass.shop, "POST", f"/members/{member['id']}/password", json={"password": PASSWORD})
    return member


# Pull: auth_request -------------------------------------------------------------------------------


async def test_paid_member_enters_through_auth_request(
    http: httpx.AsyncClient, browser: httpx.AsyncClient, einlass: Einlass, proxy: Proxy
) -> None:
    member = await paid_member(http, einlass, "pull@example.com", "pay-pull")
    page = proxy.pull.url(f"/{AREA}/")
    credentials = basic("pull@example.com", PASSWORD)
    await until(_status(browser, page, headers=credentials), lambda s: s == 200, 2, "new password accepted")

    # A visitor's own X-Einlass-* headers never reach the application.
    response = await browser.get(page, headers={**credentials, "x-einlass-member": "mem_forged"})
    assert response.status_code == 200
    assert response.text == CONTENT
    assert response.headers["x-seen-einlass-member"] == member["id"]
    assert response.headers["x-seen-einlass-plan"] == "month"
    assert "x-seen-authorization" not in response.headers  # the password stays with einlass

    anonymous = await browser.get(page)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith(f'Basic realm="{SHOP_NAME}"')
    wrong = await browser.get(page, headers=basic("pull@example.com", "wrong password"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic ")
    stranger = await browser.get(page, headers=basic("nobody@example.com", PASSWORD))
    assert stranger.status_code == 401

    # A browser without credentials goes to the login page on the merchant's host; a
    # browser whose Basic credentials were wrong gets the prompt again.
    navigation = await browser.get(page, headers=BROWSER)
    assert navigation.status_code == 302
    assert navigation.headers["location"].endswith(f"/m/{SLUG}/login?next=/{AREA}/")
    wrong_in_browser = await browser.get(page, headers={**BROWSER, **basic("pull@example.com", "nope")})
    assert wrong_in_browser.status_code == 401 and "www-authenticate" in wrong_in_browser.headers

    # The check is internal to nginx; einlass's /auth is not exposed on the merchant's host.
    assert (
        await browser.get(proxy.pull.url(f"/_einlass_auth/{AREA}"), headers=credentials)
    ).status_code == 404
    assert (await browser.get(proxy.pull.url(f"/auth/{SLUG}/{AREA}"), headers=credentials)).status_code == 404


async def test_chargeback_closes_the_door_within_the_staleness_bound(
    http: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    einlass: Einlass,
    proxy: Proxy,
    delays: dict[str, float],
    record_property: Callable[[str, object], None],
) -> None:
    member = await paid_member(http, einlass, "chargeback@example.com", "pay-cb")
    page, credentials = proxy.pull.url(f"/{AREA}/"), basic("chargeback@example.com", PASSWORD)
    await until(_status(browser, page, headers=credentials), lambda s: s == 200, 2, "member enters")

    sent = time.monotonic()
    await charge_back(http, einlass.shop, "pay-cb")
    answered = time.monotonic()
    _, delay = await until(
        _status(browser, page, headers=credentials),
        lambda s: s == 403,
        STALENESS_DEADLINE_S,
        "chargeback -> 403",
    )
    # From the gateway's answer (the change is committed by then) to nginx's refusal,
    # and, for scale, from the moment the webhook was sent.
    delays["chargeback answered -> nginx auth_request 403"] = delay
    delays["chargeback sent -> nginx auth_request 403"] = answered - sent + delay
    record_property("chargeback_revocation_delay_s", round(delay, 3))

    direct = await http.get(f"/auth/{SLUG}/{AREA}", headers=credentials)
    assert direct.status_code == 403 and direct.headers["x-einlass-member"] == member["id"]


async def test_lock_closes_the_door_and_unlock_opens_it(
    http: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    einlass: Einlass,
    proxy: Proxy,
    delays: dict[str, float],
) -> None:
    member = await paid_member(http, einlass, "locked@example.com", "pay-lock")
    page, credentials = proxy.pull.url(f"/{AREA}/"), basic("locked@example.com", PASSWORD)
    await until(_status(browser, page, headers=credentials), lambda s: s == 200, 2, "member enters")

    await api(http, einlass.shop, "POST", f"/members/{member['id']}/lock")
    _, delay = await until(
        _status(browser, page, headers=credentials), lambda s: s == 403, STALENESS_DEADLINE_S, "lock -> 403"
    )
    delays["lock -> nginx auth_request 403"] = delay

    await api(http, einlass.shop, "POST", f"/members/{member['id']}/unlock")
    await until(
        _status(browser, page, headers=credentials), lambda s: s == 200, STALENESS_DEADLINE_S, "unlock"
    )


async def test_auth_request_fails_closed_when_einlass_is_unreachable(
    browser: httpx.AsyncClient, site_root: Path, tmp_path: Path
) -> None:
    server = NginxServer(tmp_path / "nginx")
    app = server.add_app(site_root)
    site = server.add_site(
        "nginx-auth-request.conf",
        EINLASS_ADDR=f"127.0.0.1:{free_port()}",  # nobody listens here
        APP_ADDR=lambda: app.addr,
        MERCHANT=SLUG,
        AREA=AREA,
        SERVER_NAME="shop.test",
    )
    with server:
        response = await browser.get(site.url(f"/{AREA}/"), headers=basic("pull@example.com", PASSWORD))
        assert response.status_code == 500
        assert CONTENT not in response.text
        assert (await browser.get(site.url(f"/{AREA}/"))).status_code == 500


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(
                {"action": found.get("action", ""), "method": found.get("method", "get"), "inputs": []}
            )
        elif tag in ("input", "button") and self.forms:
            self.forms[-1]["inputs"].append(found)


def _post_form(html: str, email: str = "", password: str = "") -> tuple[str, dict[str, str]]:
    """The first POST form's action and fields, filled in as a member would."""
    parser = _Forms()
    parser.feed(html)
    form = next((f for f in parser.forms if f["method"].lower() == "post"), None)
    assert form is not None, f"no POST form in:\n{html[:2000]}"
    data: dict[str, str] = {}
    for field in form["inputs"]:
        name, kind = field.get("name"), field.get("type", "text").lower()
        if not name:
            continue
        if kind == "password":
            data[name] = password
        elif kind in ("text", "email") or name in ("email", "username", "login"):
            data[name] = email
        elif kind in ("hidden", "submit"):
            data[name] = field.get("value", "")
    return form["action"], data


async def test_member_pages_and_session_cookie_on_the_merchant_host(
    http: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    einlass: Einlass,
    proxy: Proxy,
    delays: dict[str, float],
) -> None:
    """A browser's whole visit: redirected to log in, back to the page, logged out, cookie dead."""
    member = await paid_member(http, einlass, "cookie@example.com", "pay-cookie")
    page = proxy.pull.url(f"/{AREA}/")

    to_login = await browser.get(page, headers=BROWSER)
    assert to_login.status_code == 302
    login = urljoin(page, to_login.headers["location"])
    form_page = await browser.get(login, headers=BROWSER)
    if form_page.status_code == 404:
        pytest.skip(f"member pages not built yet: GET /m/{SLUG}/login through nginx answered 404")
    assert form_page.status_code == 200, form_page.text
    action, data = _post_form(form_page.text, "cookie@example.com", PASSWORD)
    logged_in = await browser.post(urljoin(login, action), data=data, headers=BROWSER)
    assert logged_in.status_code in (302, 303), logged_in.text
    assert urljoin(login, logged_in.headers["location"]) == page, "back where the member wanted to go"
    cookie = next(c for c in logged_in.headers.get_list("set-cookie") if c.startswith("einlass_session="))
    assert "domain=" not in cookie.lower(), "a host-only cookie: the merchant's host"
    assert "httponly" in cookie.lower()
    token = cookie.split(";", 1)[0]

    # The browser's cookie jar now carries the session to the protected area.
    protected = await browser.get(page, headers=BROWSER)
    assert protected.status_code == 200 and protected.text == CONTENT
    assert protected.headers["x-seen-einlass-member"] == member["id"]
    account = await browser.get(proxy.pull.url(f"/m/{SLUG}/account"), headers=BROWSER)
    assert account.status_code == 200 and "cookie@example.com" in account.text

    logout = proxy.pull.url(f"/m/{SLUG}/logout")
    action, data = _post_form((await browser.get(logout, headers=BROWSER)).text)
    logged_out = await browser.post(urljoin(logout, action), data=data, headers=BROWSER)
    assert logged_out.status_code == 200, logged_out.text

    # The old cookie, replayed, no longer opens the door.
    async with httpx.AsyncClient(timeout=10) as replay:
        _, delay = await until(
            _status(replay, page, headers={"cookie": token}),
            lambda s: s == 401,
            STALENESS_DEADLINE_S,
            "logout",
        )
    delays["logout -> replayed cookie refused by nginx auth_request"] = delay


# Push: the htpasswd file, read by nginx auth_basic -------------------------------------------------


@pytest.fixture(scope="module")
def htpasswd_target(einlass: Einlass, htpasswd_file: Path) -> str:
    answer = httpx.post(
        f"{einlass.url}/api/v1/provisioning_targets",
        headers=einlass.shop.auth,
        json={
            "name": "nginx",
            "kind": "htpasswd_file",
            "config": {"path": str(htpasswd_file), "hash_scheme": "sha512_crypt"},
            "areas": [AREA],
        },
        timeout=10,
    )
    if answer.status_code == 404:
        pytest.skip(
            "htpasswd provisioning targets not built yet: POST /api/v1/provisioning_targets answered 404"
        )
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["id"])


async def reconcile(http: httpx.AsyncClient, shop: LiveShop, target_id: str) -> None:
    await api(http, shop, "POST", f"/provisioning_targets/{target_id}/reconcile")


def _users(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.split(":", 1)[0] for line in path.read_text().splitlines() if ":" in line}


async def test_htpasswd_admits_a_paid_member_and_a_chargeback_removes_them(
    http: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    einlass: Einlass,
    proxy: Proxy,
    htpasswd_target: str,
    htpasswd_file: Path,
    delays: dict[str, float],
) -> None:
    await paid_member(http, einlass, "push@example.com", "pay-push")
    await reconcile(http, einlass.shop, htpasswd_target)
    page, credentials = proxy.push.url(f"/{AREA}/"), basic("push@example.com", PASSWORD)
    await until(
        _status(browser, page, headers=credentials), lambda s: s == 200, PUSH_DEADLINE_S, "nginx admits"
    )
    assert (await browser.get(page, headers=credentials)).text == CONTENT
    line = next(x for x in htpasswd_file.read_text().splitlines() if x.startswith("push@example.com:"))
    assert line.split(":", 1)[1].startswith("$6$"), "sha512_crypt, as the target asks"

    anonymous = await browser.get(page)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == f'Basic realm="{AREA}"'
    assert (await browser.get(page, headers=basic("push@example.com", "wrong password"))).status_code == 401

    # The worker reconciles after the transaction; nobody asks it to.
    await charge_back(http, einlass.shop, "pay-push")
    _, delay = await until(
        _status(browser, page, headers=credentials), lambda s: s == 401, PUSH_DEADLINE_S, "chargeback -> 401"
    )
    delays["chargeback -> htpasswd rewritten, nginx auth_basic 401"] = delay
    assert "push@example.com" not in _users(htpasswd_file)


async def test_a_line_added_by_hand_is_gone_after_the_next_transaction(
    http: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    einlass: Einlass,
    proxy: Proxy,
    htpasswd_target: str,
    htpasswd_file: Path,
) -> None:
    await reconcile(http, einlass.shop, htpasswd_target)
    await until(
        lambda: asyncio.sleep(0, htpasswd_file.exists()), bool, PUSH_DEADLINE_S, "the file is written"
    )
    with htpasswd_file.open("a") as file:
        file.write("intruder:{PLAIN}let me in\n")
    page, intruder = proxy.push.url(f"/{AREA}/"), basic("intruder", "let me in")
    before = (await browser.get(page, headers=intruder)).status_code
    if "intruder" in _users(htpasswd_file):  # still there after the request: nginx read it
        assert before == 200, "the hand-made line works in nginx until einlass removes it"

    await pay(http, einlass.shop, "next@example.com", "pay-next")  # any transaction of the merchant
    await until(
        _status(browser, page, headers=intruder), lambda s: s == 401, PUSH_DEADLINE_S, "intruder removed"
    )
    assert "intruder" not in _users(htpasswd_file)

    async def drift_reports() -> list[dict[str, Any]]:
        entries = await api(http, einlass.shop, "GET", "/audit_entries", params={"limit": 100})
        return [
            entry
            for entry in entries["data"]
            if entry["action"] == "target.drift"
            and "intruder" in (entry["after"] or {}).get("unexpected", [])
        ]

    await until(drift_reports, bool, PUSH_DEADLINE_S, "the removal is reported as drift")
