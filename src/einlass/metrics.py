"""Prometheus metrics; served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter(
    "einlass_webhooks_total",
    "Inbound gateway webhooks by gateway and outcome",
    ["gateway", "outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "einlass_webhook_seconds",
    "Time to store and apply one inbound webhook",
    ["gateway"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
JOBS_QUEUED = Gauge("einlass_jobs", "Jobs in the outbox by status", ["status"])
JOBS_RUN = Counter("einlass_jobs_run_total", "Jobs run by kind and outcome", ["kind", "outcome"])
JOBS_FAILED = Counter("einlass_jobs_failed_total", "Jobs that gave up after their last attempt", ["kind"])
