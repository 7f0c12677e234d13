"""Fixtures: every database test runs on SQLite and, when reachable, on PostgreSQL."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from einlass import clock as clock_module
from einlass.app import create_app
from einlass.audit.service import CLI
from einlass.billing import catalogue
from einlass.clock import FrozenClock
from einlass.config import Settings
from einlass.db.engine import Database
from einlass.db.metadata import metadata
from einlass.db.migrate import upgrade_async
from einlass.outbox.registry import build_worker
from einlass.outbox.worker import Worker
from einlass.tenants import service as tenants

POSTGRES_URL = os.environ.get(
    "EINLASS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("EINLASS_REQUIRE_POSTGRES") == "1"
SECRET_KEY = "test-secret-key-for-einlass"


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def backend_params() -> list[object]:
    params: list[object] = [pytest.param("sqlite", id="sqlite")]
    if postgres_reachable():
        params.append(pytest.param("postgresql", id="postgresql"))
    elif REQUIRE_POSTGRES:
        params.append(pytest.param("postgresql", id="postgresql"))  # fails loudly in the fixture
    else:
        params.append(
            pytest.param(
                "postgresql",
                id="postgresql",
                marks=pytest.mark.skip(reason="PostgreSQL not reachable on 127.0.0.1:5432"),
            )
        )
    return params


@pytest.fixture(scope="session", params=backend_params())
async def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "einlass.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
    else:
        if not postgres_reachable():
            pytest.fail("PostgreSQL is required (EINLASS_REQUIRE_POSTGRES=1) but not reachable")
        # A database of its own per test run, so that parallel runs never meet.
        name = f"einlass_test_{secrets.token_hex(4)}"
        await _admin_sql(f'CREATE DATABASE "{name}"')
        db = Database(POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
    await upgrade_async(db)
    yield db
    await db.dispose()
    if request.param == "postgresql":
        await _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin_sql(statement: str) -> None:
    admin = Database(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture
async def db(database: Database) -> Database:
    """The backend's database, emptied before each test."""
    tables = [table.name for table in reversed(metadata.sorted_tables)]
    async with database.engine.begin() as connection:
        if database.is_sqlite:
            for name in tables:
                await connection.execute(text(f"DELETE FROM {name}"))
        else:
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    return database


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    previous = clock_module.get_clock()
    clock_module.set_clock(frozen)
    yield frozen
    clock_module.set_clock(previous)


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    return Settings(
        database_url=db.url,
        secret_key=SECRET_KEY,
        mail_dir=tmp_path / "mail",
        run_worker_in_process=False,
        base_url="http://einlass.test",
    )


@pytest.fixture
async def client(db: Database, settings: Settings, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, db, run_worker=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://einlass.test") as http:
        yield http


@pytest.fixture
def worker(db: Database, settings: Settings) -> Worker:
    return build_worker(db, settings)


@dataclass
class Shop:
    slug: str
    merchant_id: str
    api_key: str
    novalnet_key: str = "novalnet-access-key-123"
    stripe_secret: str = "whsec_test_stripe_secret"
    generic_secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}


async def make_shop(db: Database, slug: str = "shop") -> Shop:
    async with db.transaction() as session:
        merchant, issued = await tenants.create_merchant(session, slug, f"{slug.title()} GmbH", CLI)
        shop = Shop(slug=slug, merchant_id=merchant.id, api_key=issued.secret)
        await catalogue.create_area(session, merchant, "premium", "Premium", CLI)
        await catalogue.create_area(session, merchant, "archive", "Archive", CLI)
        await catalogue.create_plan(
            session,
            merchant,
            slug="month",
            name="30 days",
            amount=990,
            currency="EUR",
            access_period="P30D",
            areas=["premium"],
            gateway_refs={"novalnet": ["tariff-30"], "generic": ["prod-30"], "stripe": ["price_30"]},
            actor=CLI,
        )
        await catalogue.create_plan(
            session,
            merchant,
            slug="lifetime",
            name="Forever",
            amount=4900,
            currency="EUR",
            access_period=None,
            areas=["premium", "archive"],
            gateway_refs={"generic": ["prod-life"]},
            actor=CLI,
        )
        await tenants.set_gateway_secrets(
            session, SECRET_KEY, merchant, "novalnet", {"payment_access_key": shop.novalnet_key}, CLI
        )
        await tenants.set_gateway_secrets(
            session, SECRET_KEY, merchant, "stripe", {"webhook_secret": shop.stripe_secret}, CLI
        )
        await tenants.set_gateway_secrets(
            session, SECRET_KEY, merchant, "generic", {"signing_secret": shop.generic_secret}, CLI
        )
    return shop


@pytest.fixture
async def shop(db: Database, clock: FrozenClock) -> Shop:
    return await make_shop(db)


async def add_subscription_plans(db: Database, shop: Shop) -> None:
    """Three subscription plans every subscription test shares.

    * ``monthly``: 9.90 EUR every P1M, grace P3D, members may pause and cancel;
      refs novalnet ``tariff-sub-m``, stripe ``price_monthly``, generic ``sub-monthly``.
    * ``yearly``: 99.00 EUR every P1Y, opens premium and archive (an upgrade from monthly);
      refs ``tariff-sub-y``, ``price_yearly``, ``sub-yearly``.
    * ``flex``: dynamic, 1.00 to 100.00 EUR every P1W to P1Y; refs ``tariff-dyn``, ``price_flex``, ``sub-flex``.
    """
    from einlass.billing.subscriptions.plans import SubscriptionTerms

    async with db.transaction() as session:
        merchant = await tenants.get_merchant_by_slug(session, shop.slug)
        plans: list[tuple[str, int, list[str], dict[str, list[str]], SubscriptionTerms]] = [
            (
                "monthly",
                990,
                ["premium"],
                {"novalnet": ["tariff-sub-m"], "stripe": ["price_monthly"], "generic": ["sub-monthly"]},
                SubscriptionTerms(interval="P1M", grace_period="P3D", member_can_pause=True),
            ),
            (
                "yearly",
                9900,
                ["premium", "archive"],
                {"novalnet": ["tariff-sub-y"], "stripe": ["price_yearly"], "generic": ["sub-yearly"]},
                SubscriptionTerms(interval="P1Y", grace_period="P3D"),
            ),
            (
                "flex",
                500,
                ["premium"],
                {"novalnet": ["tariff-dyn"], "stripe": ["price_flex"], "generic": ["sub-flex"]},
                SubscriptionTerms(
                    dynamic=True,
                    interval="P1M",
                    min_amount=100,
                    max_amount=10000,
                    min_interval="P1W",
                    max_interval="P1Y",
                ),
            ),
        ]
        for slug, amount, areas, refs, terms in plans:
            await catalogue.create_plan(
                session,
                merchant,
                slug=slug,
                name=slug.title(),
                amount=amount,
                currency="EUR",
                access_period=None,
                areas=areas,
                gateway_refs=refs,
                actor=CLI,
                subscription=terms,
            )


@pytest.fixture
async def sub_shop(shop: Shop, db: Database) -> Shop:
    """The ``shop`` with the subscription plans of ``add_subscription_plans``."""
    await add_subscription_plans(db, shop)
    return shop
