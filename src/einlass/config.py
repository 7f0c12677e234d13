"""Settings from the environment (``EINLASS_*``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EINLASS_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./einlass.db"
    # Signs sessions, encrypts secrets at rest and keys the blacklist digests.
    # The default is for the demo only; `einlass serve` warns when it is used.
    secret_key: str = "insecure-demo-secret-change-me"
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    # smtp://user:pass@host:port or smtps://...; empty: mails go to ``mail_dir``.
    smtp_url: str = ""
    mail_from: str = "einlass <noreply@localhost>"
    mail_dir: Path = Path("var/mail")
    run_worker_in_process: bool = True
    worker_poll_interval_s: float = 0.5
    # An inbox event still unapplied after this long (a crash between storing
    # and applying) is picked up by the worker.
    inbox_recovery_after_s: float = 5.0
    # How often each process reads the access change log: the bound on how
    # long a revoked member can still pass the forward-auth check.
    access_poll_interval_s: float = 0.25
    # A full reconcile of every merchant's push targets runs this often.
    provisioning_reconcile_minutes: float = 15.0
    # How often the worker moves subscriptions along their schedules.
    subscription_transition_interval_s: float = 1.0
    # Where subscription actions go; tests point these at local stand-in servers.
    novalnet_api_url: str = "https://payport.novalnet.de/v2"
    stripe_api_url: str = "https://api.stripe.com"
    # Timeout for one call to a gateway's API or a merchant's endpoint.
    gateway_api_timeout_s: float = 10.0
    # A merchant report turns active when this many different merchants reported the identifier.
    blacklist_independent_reports: int = 3
    # Bearer token for the operator's API (/api/v1/operator/...); empty disables it.
    operator_api_key: str = ""
    log_json: bool = False
    log_level: str = "INFO"
    redis_url: str = Field(default="")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
