"""Every feature's models, imported so that the metadata knows all tables."""

from __future__ import annotations

import einlass.access.models
import einlass.audit.models
import einlass.billing.models
import einlass.billing.subscriptions.models
import einlass.members.models
import einlass.outbox.models
import einlass.provisioning.models
import einlass.rest.models
import einlass.screening.models
import einlass.tenants.models  # noqa: F401
from einlass.db.base import Base

metadata = Base.metadata
