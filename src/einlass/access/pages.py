"""Member pages: /m/{merchant}/login, /logout, /account (to be built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
