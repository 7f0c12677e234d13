"""The ``einlass`` command line: serve, worker, migrate, and what an admin does by hand."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from einlass.audit.service import CLI
from einlass.billing import catalogue
from einlass.billing.subscriptions.cli import subscription_app
from einlass.billing.subscriptions.plans import SubscriptionTerms
from einlass.billing.views import render_area, render_order, render_plan
from einlass.config import Settings, get_settings
from einlass.db.engine import Database
from einlass.db.migrate import upgrade
from einlass.errors import EinlassError
from einlass.logging import configure_logging
from einlass.members import service as members
from einlass.members.views import render_grant, render_member
from einlass.outbox.models import Job
from einlass.outbox.service import retry_job
from einlass.outbox.views import render_job
from einlass.screening.blacklist_cli import blacklist_app
from einlass.screening.decision_cli import decision_app
from einlass.tenants import service as tenants
from einlass.tenants.models import Merchant
from einlass.tenants.staff_cli import staff_app
from einlass.tenants.views import render_merchant

app = typer.Typer(
    help="einlass: membership management for merchants who sell digital goods.", no_args_is_help=True
)
merchant_app = typer.Typer(help="Merchants and their API keys.", no_args_is_help=True)
gateway_app = typer.Typer(help="Gateway secrets of a merchant.", no_args_is_help=True)
catalogue_app = typer.Typer(help="Areas, plans and orders.", no_args_is_help=True)
member_app = typer.Typer(
    help="Members: create, lock, unlock, delete, passwords, manual grants.", no_args_is_help=True
)
jobs_app = typer.Typer(help="Outbox jobs: list failed ones, retry.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
app.add_typer(gateway_app, name="gateway")
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(member_app, name="member")
app.add_typer(jobs_app, name="jobs")
app.add_typer(subscription_app, name="subscription")
app.add_typer(decision_app)  # einlass screen, einlass whitelist ...
app.add_typer(blacklist_app, name="blacklist")
app.add_typer(staff_app, name="staff")

T = TypeVar("T")
MerchantSlug = Annotated[str, typer.Argument(help="The merchant's slug")]


def _print(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def _run(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            return await work(db, settings)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except EinlassError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(1) from None


def _in_transaction(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    async def run(db: Database, settings: Settings) -> T:
        async with db.transaction() as session:
            return await work(session, settings)

    return _run(run)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    upgrade(get_settings().database_url)
    typer.echo("database is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int, typer.Option(help="Server processes")] = 1,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Run migrations first")
    ] = True,
) -> None:
    """Serve the web app (granian); the outbox worker runs in-process unless EINLASS_RUN_WORKER_IN_PROCESS=false."""
    from granian import Granian
    from granian.constants import Interfaces

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if settings.secret_key == Settings.model_fields["secret_key"].default:
        typer.echo("warning: EINLASS_SECRET_KEY is the demo default; set your own before real use", err=True)
    if migrate_first:
        upgrade(settings.database_url)
    Granian(
        "einlass.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_access=False,
    ).serve()


@app.command()
def worker() -> None:
    """Run the outbox worker as its own process (run as many as you like)."""
    from einlass.outbox.registry import build_worker

    async def run(db: Database, settings: Settings) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        typer.echo("worker running; Ctrl-C stops it", err=True)
        await build_worker(db, settings).run_forever(stop)

    _run(run)


async def _merchant(session: AsyncSession, slug: str) -> Merchant:
    return await tenants.get_merchant_by_slug(session, slug)


@merchant_app.command("create")
def merchant_create(slug: MerchantSlug, name: Annotated[str, typer.Option(help="Display name")]) -> None:
    """Create a merchant; prints JSON with a one-time api_key."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        merchant, issued = await tenants.create_merchant(session, slug, name, CLI)
        return {**render_merchant(merchant), "api_key": issued.secret}

    _print(_in_transaction(work))


@merchant_app.command("list")
def merchant_list() -> None:
    async def work(session: AsyncSession, _settings: Settings) -> list[dict[str, Any]]:
        return [render_merchant(m) for m in await tenants.list_merchants(session)]

    _print(_in_transaction(work))


@merchant_app.command("api-key")
def merchant_api_key(slug: MerchantSlug, name: Annotated[str, typer.Option()] = "cli") -> None:
    """Issue another API key (printed once)."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        issued = await tenants.create_api_key(session, await _merchant(session, slug), name, CLI)
        return {"id": issued.api_key.id, "api_key": issued.secret}

    _print(_in_transaction(work))


@merchant_app.command("revoke-key")
def merchant_revoke_key(slug: MerchantSlug, key_id: str) -> None:
    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        api_key = await tenants.revoke_api_key(session, merchant.id, key_id, CLI)
        return {"id": api_key.id, "revoked_at": api_key.revoked_at}

    _print(_in_transaction(work))


@gateway_app.command("set")
def gateway_set(
    slug: MerchantSlug,
    gateway: Annotated[str, typer.Argument(help="novalnet, stripe or generic")],
    secret: Annotated[list[str], typer.Option("--secret", help="NAME=VALUE, e.g. payment_access_key=...")],
) -> None:
    """Store a merchant's gateway secrets (encrypted; never shown again)."""
    pairs = dict(item.split("=", 1) for item in secret if "=" in item)
    if len(pairs) != len(secret):
        typer.echo("error: each --secret is NAME=VALUE", err=True)
        raise typer.Exit(2)

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        await tenants.set_gateway_secrets(session, settings.secret_key, merchant, gateway, pairs, CLI)
        return {
            "gateway": gateway,
            "configured_secrets": sorted(pairs),
            "webhook_url": f"{settings.base_url.rstrip('/')}/webhooks/{slug}/{gateway}",
        }

    _print(_in_transaction(work))


@catalogue_app.command("area")
def area_create(slug: MerchantSlug, area: str, name: Annotated[str, typer.Option()]) -> None:
    """Create a protected area."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        return render_area(
            await catalogue.create_area(session, await _merchant(session, slug), area, name, CLI)
        )

    _print(_in_transaction(work))


@catalogue_app.command("plan")
def plan_create(
    slug: MerchantSlug,
    plan: str,
    name: Annotated[str, typer.Option()],
    amount: Annotated[int, typer.Option(help="Minor units (cents)")],
    area: Annotated[list[str], typer.Option(help="Area slug; repeat for more")],
    currency: Annotated[str, typer.Option()] = "EUR",
    period: Annotated[
        str | None, typer.Option(help="ISO 8601 duration such as P30D; omit for lifetime")
    ] = None,
    ref: Annotated[list[str] | None, typer.Option(help="GATEWAY=EXTERNAL_ID; repeat for more")] = None,
    kind: Annotated[str, typer.Option(help="one_time or subscription")] = "one_time",
    interval: Annotated[str | None, typer.Option(help="Subscription: billing interval, e.g. P1M")] = None,
    trial: Annotated[str | None, typer.Option(help="Subscription: free trial, e.g. P14D")] = None,
    first_amount: Annotated[int | None, typer.Option(help="Subscription: first period's price")] = None,
    grace: Annotated[str | None, typer.Option(help="Subscription: access after a missed renewal")] = None,
    min_term: Annotated[str | None, typer.Option(help="Subscription: minimum term, e.g. P6M")] = None,
    cycles: Annotated[int | None, typer.Option(help="Subscription: paid periods, then it expires")] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Amount and interval per purchase")] = False,
    min_amount: Annotated[int | None, typer.Option(help="Dynamic: lowest amount")] = None,
    max_amount: Annotated[int | None, typer.Option(help="Dynamic: highest amount")] = None,
    min_interval: Annotated[str | None, typer.Option(help="Dynamic: shortest interval")] = None,
    max_interval: Annotated[str | None, typer.Option(help="Dynamic: longest interval")] = None,
    member_can_pause: Annotated[bool, typer.Option(help="Members may pause")] = False,
    member_can_cancel: Annotated[bool, typer.Option(help="Members may cancel")] = True,
) -> None:
    """Create a plan for one-time payments, or with --kind subscription a subscription plan."""
    refs: dict[str, list[str]] = {}
    for item in ref or []:
        gateway, _, external_id = item.partition("=")
        refs.setdefault(gateway, []).append(external_id)
    terms = SubscriptionTerms(
        interval=interval,
        trial_period=trial,
        first_amount=first_amount,
        grace_period=grace,
        min_term=min_term,
        max_cycles=cycles,
        dynamic=dynamic,
        min_amount=min_amount,
        max_amount=max_amount,
        min_interval=min_interval,
        max_interval=max_interval,
        member_can_pause=member_can_pause,
        member_can_cancel=member_can_cancel,
    )
    if kind == "subscription" and period is not None:
        raise typer.BadParameter("a subscription plan takes --interval", param_hint="--period")
    if kind == "one_time" and terms != SubscriptionTerms():
        raise typer.BadParameter("subscription options need --kind subscription", param_hint="--kind")
    if kind not in ("one_time", "subscription"):
        raise typer.BadParameter("one_time or subscription", param_hint="--kind")

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        created = await catalogue.create_plan(
            session,
            merchant,
            slug=plan,
            name=name,
            amount=amount,
            currency=currency,
            access_period=period,
            areas=area,
            gateway_refs=refs,
            actor=CLI,
            subscription=terms if kind == "subscription" else None,
        )
        await session.flush()
        return render_plan(created, await catalogue.plan_details(session, created))

    _print(_in_transaction(work))


@catalogue_app.command("order")
def order_create(slug: MerchantSlug, plan: str, email: Annotated[str | None, typer.Option()] = None) -> None:
    """Create a pending order; pass its order_no to the gateway."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        order = await catalogue.create_order(
            session,
            await _merchant(session, slug),
            plan_ref=plan,
            email=email,
            name=None,
            order_no=None,
            metadata=None,
            actor=CLI,
        )
        return render_order(order)

    _print(_in_transaction(work))


@member_app.command("create")
def member_create(
    slug: MerchantSlug,
    email: str,
    name: Annotated[str | None, typer.Option()] = None,
    send: Annotated[bool, typer.Option("--send/--no-send", help="Email the credentials")] = True,
) -> None:
    """Create a member with a generated password (emailed, or printed with --no-send)."""

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        member, password = await members.create_member(
            session, merchant, email=email, name=name, generate=not send, actor=CLI
        )
        if send:
            await members.send_credentials(session, merchant, member, new_password=True)
            return render_member(member)
        return {**render_member(member), "password": password}

    _print(_in_transaction(work))


@member_app.command("list")
def member_list(slug: MerchantSlug, limit: int = 50) -> None:
    async def work(session: AsyncSession, _settings: Settings) -> list[dict[str, Any]]:
        merchant = await _merchant(session, slug)
        return [render_member(m) for m in await members.list_members(session, merchant.id, limit=limit)]

    _print(_in_transaction(work))


def _member_action(
    slug: str, member_id: str, action: Callable[[AsyncSession, Settings, Merchant, Any], Awaitable[Any]]
) -> None:
    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        member = await members.get_member(session, merchant.id, member_id, for_update=True)
        await action(session, settings, merchant, member)
        return render_member(member, await members.access_of(session, member))

    _print(_in_transaction(work))


@member_app.command("show")
def member_show(slug: MerchantSlug, member_id: str) -> None:
    async def noop(*_args: Any) -> None:
        return None

    _member_action(slug, member_id, noop)


@member_app.command("lock")
def member_lock(
    slug: MerchantSlug, member_id: str, reason: Annotated[str | None, typer.Option()] = None
) -> None:
    _member_action(slug, member_id, lambda s, _st, _m, member: members.lock_member(s, member, reason, CLI))


@member_app.command("unlock")
def member_unlock(slug: MerchantSlug, member_id: str) -> None:
    _member_action(slug, member_id, lambda s, _st, _m, member: members.unlock_member(s, member, CLI))


@member_app.command("delete")
def member_delete(slug: MerchantSlug, member_id: str) -> None:
    """Erase a member's personal data; the ledger keeps a pseudonym."""
    _member_action(
        slug, member_id, lambda s, st, _m, member: members.erase_member(s, st.secret_key, member, CLI)
    )


@member_app.command("password")
def member_password(
    slug: MerchantSlug,
    member_id: str,
    password: Annotated[str | None, typer.Option(help="Omit to generate and email one")] = None,
) -> None:
    """Set a password, or reset it (a new one is emailed)."""
    _member_action(
        slug,
        member_id,
        lambda s, _st, m, member: members.set_password(s, m, member, password, CLI),
    )


@member_app.command("grant")
def member_grant(
    slug: MerchantSlug,
    member_id: str,
    area: str,
    until: Annotated[datetime | None, typer.Option(help="End (UTC); omit for no end")] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Grant access to an area by hand (complimentary)."""
    from datetime import UTC

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        member = await members.get_member(session, merchant.id, member_id, for_update=True)
        found = await catalogue.get_area(session, merchant.id, area)
        ends = until.replace(tzinfo=UTC) if until and until.tzinfo is None else until
        grant = await members.grant_manually(
            session, merchant, member, found, starts_at=None, ends_at=ends, note=note, actor=CLI
        )
        return render_grant(grant)

    _print(_in_transaction(work))


@jobs_app.command("list")
def jobs_list(slug: MerchantSlug, status: Annotated[str, typer.Option()] = "failed") -> None:
    async def work(session: AsyncSession, _settings: Settings) -> list[dict[str, Any]]:
        merchant = await _merchant(session, slug)
        rows = await session.scalars(
            select(Job)
            .where(Job.merchant_id == merchant.id, Job.status == status)
            .order_by(Job.id.desc())
            .limit(100)
        )
        return [render_job(job) for job in rows]

    _print(_in_transaction(work))


@jobs_app.command("retry")
def jobs_retry(slug: MerchantSlug, job_id: str) -> None:
    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        job = await retry_job(session, merchant.id, job_id, CLI)
        if job is None:
            raise EinlassError(f"no job {job_id!r}")
        return render_job(job)

    _print(_in_transaction(work))


@app.command()
def demo() -> None:
    """Create the demo merchant (area, plan, gateway secrets) unless it exists; print how to try it."""
    from einlass.demo import ensure_demo

    _print(_run(ensure_demo))


@app.command("simulate-payment")
def simulate_payment(
    slug: MerchantSlug,
    email: Annotated[str, typer.Option(help="The buyer's email")],
    product: Annotated[str, typer.Option(help="The gateway product id mapped to a plan")],
    amount: Annotated[int, typer.Option(help="Minor units")] = 990,
    currency: Annotated[str, typer.Option()] = "EUR",
    kind: Annotated[str, typer.Option(help="payment.confirmed, payment.refunded, payment.chargeback")] = (
        "payment.confirmed"
    ),
    payment_id: Annotated[
        str | None, typer.Option(help="Reuse to refund an earlier simulated payment")
    ] = None,
) -> None:
    """Post a signed generic-gateway event to the running server, as a billing system would."""
    import secrets as random_ids
    import urllib.error
    import urllib.request

    from einlass import clock
    from einlass.standard_webhooks import sign

    async def signing_secret(session: AsyncSession, settings: Settings) -> str:
        merchant = await _merchant(session, slug)
        found = await tenants.gateway_secrets(session, settings.secret_key, merchant.id, "generic")
        if not found:
            raise EinlassError(
                f"merchant {slug!r} has no generic gateway secret; set one with 'einlass gateway set'"
            )
        return found["signing_secret"]

    secret = _in_transaction(signing_secret)
    settings = get_settings()
    payment = payment_id or f"sim-{random_ids.token_hex(4)}"
    data: dict[str, Any] = {"payment_id": payment, "amount": amount, "currency": currency}
    if kind == "payment.confirmed":
        data.update(product_id=product, customer={"email": email})
    elif kind == "payment.refunded":
        data["refund_id"] = f"rf-{random_ids.token_hex(4)}"
    elif kind == "payment.chargeback":
        data["chargeback_id"] = f"cb-{random_ids.token_hex(4)}"
    body = json.dumps({"type": kind, "timestamp": clock.now().isoformat(), "data": data}).encode()
    message_id, timestamp = f"msg_{random_ids.token_hex(8)}", int(clock.now().timestamp())
    if not settings.base_url.startswith(("http://", "https://")):
        raise typer.BadParameter("EINLASS_BASE_URL must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{settings.base_url.rstrip('/')}/webhooks/{slug}/generic",
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        typer.echo(
            f"error: the server answered {error.code}: {error.read().decode(errors='replace')}", err=True
        )
        raise typer.Exit(1) from None
    except OSError as error:
        typer.echo(f"error: cannot reach {settings.base_url}: {error}", err=True)
        raise typer.Exit(1) from None
    _print({"payment_id": payment, "type": kind, "server": answer})


# --- push targets (provisioning) -------------------------------------------------------------

target_app = typer.Typer(
    help="Push targets: htpasswd files (local, FTP, FTPS, SFTP) and webhooks.", no_args_is_help=True
)
app.add_typer(target_app, name="target")


async def _target_document(session: AsyncSession, settings: Settings, target: Any) -> dict[str, Any]:
    from einlass.provisioning import service as targets
    from einlass.provisioning.views import render_target

    areas = await targets.area_slugs(session, target.merchant_id, [target.id])
    return render_target(target, areas[target.id], targets.secret_names(settings.secret_key, target))


@app.command()
def reconcile(
    slug: Annotated[
        str | None, typer.Argument(help="The merchant's slug; every merchant when omitted")
    ] = None,
) -> None:
    """Reconcile push targets now, printing one line per target; exit code 1 if any failed."""
    from einlass.provisioning.reconciler import ReconcileResult, reconcile_merchant

    def line(merchant_slug: str, result: ReconcileResult) -> str:
        drift = result.drift
        text = (
            f"{merchant_slug}/{result.name} ({result.kind}): {result.status}, "
            f"{result.members} members, {'written' if result.written else 'unchanged'}, "
            f"+{len(drift.missing)} -{len(drift.unexpected)} ~{len(drift.changed)} "
            f"without hash {len(drift.without_hash)}, {result.duration_s * 1000:.0f} ms"
        )
        return f"{text}: {result.error}" if result.error else text

    async def work(db: Database, settings: Settings) -> int:
        async with db.transaction() as session:
            merchants = [await _merchant(session, slug)] if slug else await tenants.list_merchants(session)
        failed = 0
        for merchant in merchants:

            def show(result: ReconcileResult, merchant_slug: str = merchant.slug) -> None:
                typer.echo(line(merchant_slug, result))

            results = await reconcile_merchant(db, settings, merchant.id, CLI, on_result=show)
            failed += sum(result.failed for result in results)
        return failed

    failed = _run(work)
    if failed:
        typer.echo(f"{failed} target(s) failed", err=True)
        raise typer.Exit(1)


@target_app.command("add")
def target_add(
    slug: MerchantSlug,
    name: Annotated[str, typer.Argument(help="A name for the target, unique per merchant")],
    area: Annotated[
        list[str], typer.Option(help="Area slug whose members the target lists; repeat for more")
    ],
    kind: Annotated[str, typer.Option(help="htpasswd_file, ftp, ftps, sftp or webhook")] = "htpasswd_file",
    path: Annotated[str | None, typer.Option(help="htpasswd_file: absolute path of the file")] = None,
    scheme: Annotated[str | None, typer.Option(help="Hash scheme: sha512_crypt, bcrypt or apr1")] = None,
    cost: Annotated[int | None, typer.Option(help="sha512_crypt rounds or bcrypt cost")] = None,
    host: Annotated[str | None, typer.Option(help="ftp/ftps/sftp: server")] = None,
    port: Annotated[int | None, typer.Option(help="ftp/ftps/sftp: port")] = None,
    username: Annotated[str | None, typer.Option(help="ftp/ftps/sftp: login")] = None,
    remote_path: Annotated[str | None, typer.Option(help="ftp/ftps/sftp: path of the file")] = None,
    known_host_key: Annotated[str | None, typer.Option(help="sftp: the server's public host key")] = None,
    url: Annotated[str | None, typer.Option(help="webhook: receiver URL")] = None,
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="NAME=VALUE, e.g. password=...; repeat for more")
    ] = None,
    private_key_file: Annotated[
        typer.FileText | None, typer.Option(help="sftp: file with the private key")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off")] = False,
) -> None:
    """Add a push target; its first reconciliation is queued for the worker."""
    from einlass.provisioning import service as targets

    pairs = dict(item.split("=", 1) for item in secret or [] if "=" in item)
    if len(pairs) != len(secret or []):
        typer.echo("error: each --secret is NAME=VALUE", err=True)
        raise typer.Exit(2)
    if private_key_file is not None:
        pairs["private_key"] = private_key_file.read()
    given = {
        "path": path,
        "hash_scheme": scheme,
        "hash_cost": cost,
        "host": host,
        "port": port,
        "username": username,
        "remote_path": remote_path,
        "known_host_key": known_host_key,
        "url": url,
    }
    config = {key: value for key, value in given.items() if value is not None}

    async def work(session: AsyncSession, settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        target = await targets.create_target(
            session,
            settings.secret_key,
            merchant.id,
            name=name,
            kind=kind,
            config=config,
            secrets=pairs,
            areas=area,
            enabled=not disabled,
            actor=CLI,
        )
        return await _target_document(session, settings, target)

    _print(_in_transaction(work))


@target_app.command("list")
def target_list(slug: MerchantSlug) -> None:
    """The merchant's targets with their status and last drift (never secrets)."""
    from einlass.provisioning import service as targets

    async def work(session: AsyncSession, settings: Settings) -> list[dict[str, Any]]:
        merchant = await _merchant(session, slug)
        return [
            await _target_document(session, settings, target)
            for target in await targets.list_targets(session, merchant.id)
        ]

    _print(_in_transaction(work))


@target_app.command("reissue-credentials")
def target_reissue_credentials(
    slug: MerchantSlug,
    target: Annotated[str, typer.Argument(help="Target name or id")],
    everyone: Annotated[
        bool, typer.Option("--everyone", help="Every member it lists, not only those without a hash")
    ] = False,
) -> None:
    """Mail new passwords so that members get a hash in the target's scheme."""
    from einlass.provisioning import service as targets

    async def work(session: AsyncSession, _settings: Settings) -> dict[str, Any]:
        merchant = await _merchant(session, slug)
        found = await targets.get_target(session, merchant.id, target)
        queued = await targets.reissue_credentials(session, found, CLI, everyone=everyone)
        return {"target": found.id, "members_queued": queued}

    _print(_in_transaction(work))
