"""Staff accounts and a logged-in admin client for the admin UI tests (httpx against the ASGI app).

    staff = await make_staff(db, role="admin", merchant_id=shop.merchant_id)
    admin = await login(client, staff)            # an AdminClient: .get(path), .post(path, data)
    page = await admin.get(f"/admin/m/{shop.slug}/members")
    await admin.post(f"/admin/m/{shop.slug}/members/{member_id}/lock", {"reason": "fraud"})

``post`` adds the session's CSRF token (read from the last page) unless ``csrf=False``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
from sqlalchemy import select, update

from conftest import SECRET_KEY
from einlass import clock
from einlass.audit.service import CLI
from einlass.db.engine import Database
from einlass.tenants.models import Merchant, StaffAccount
from einlass.tenants.staff import create_staff

PASSWORD = "staff password 123"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Staff:
    id: str
    email: str
    password: str
    totp_secret: str
    role: str

    def code(self) -> str:
        """The TOTP code for the injected clock's now."""
        return pyotp.TOTP(self.totp_secret).at(clock.now())


async def make_staff(
    db: Database, *, role: str = "admin", merchant_id: str | None = None, email: str | None = None
) -> Staff:
    async with db.transaction() as session:
        merchant = (
            await session.scalar(select(Merchant).where(Merchant.id == merchant_id)) if merchant_id else None
        )
        address = email or f"{role}-{merchant.slug if merchant else 'op'}@example.com"
        new = await create_staff(
            session, SECRET_KEY, email=address, role=role, merchant=merchant, actor=CLI, password=PASSWORD
        )
    return Staff(new.account.id, address, PASSWORD, new.totp_secret, role)


async def forget_last_code(db: Database, staff: Staff) -> None:
    """Let the same TOTP code be used again (a test logs in twice within 30 seconds)."""
    async with db.transaction() as session:
        await session.execute(
            update(StaffAccount).where(StaffAccount.id == staff.id).values(last_totp_step=0)
        )


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


@dataclass
class AdminClient:
    http: httpx.AsyncClient
    staff: Staff
    csrf: str = ""
    last: httpx.Response | None = field(default=None)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(path, **kwargs)
        if response.status_code == 200 and 'name="csrf_token"' in response.text:
            self.csrf = csrf_token(response.text)
        self.last = response
        return response

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, follow: bool = False
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        response = await self.http.post(path, data=form, follow_redirects=follow)
        self.last = response
        return response


async def login(http: httpx.AsyncClient, staff: Staff) -> AdminClient:
    page = await http.get("/admin/login")
    assert page.status_code == 200, page.text
    response = await http.post(
        "/admin/login",
        data={
            "csrf_token": csrf_token(page.text),
            "email": staff.email,
            "password": staff.password,
            "code": staff.code(),
            "next": "/admin/",
        },
    )
    assert response.status_code == 303, response.text
    admin = AdminClient(http, staff)
    await admin.get("/admin/", follow_redirects=True)
    return admin
