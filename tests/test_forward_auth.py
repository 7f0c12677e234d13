"""GET /auth/{merchant}/{area}: decisions, revocation through the change log, hostile input."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import api, post_generic
from payloads import generic

PASSWORD = "correct horse battery"


def basic(username: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def member_with_grant(client, shop, email="m@example.com", ends_at=None):
    member = await api(
        client,
        shop,
        "POST",
        "/members",
        json={"email": email, "password": PASSWORD, "send_credentials": False},
    )
    grant = {"area": "premium"} if ends_at is None else {"area": "premium", "ends_at": ends_at}
    await api(client, shop, "POST", f"/members/{member['id']}/grants", json=grant)
    return member


async def check(client, shop, email="m@example.com", password=PASSWORD, area="premium"):
    return await client.get(f"/auth/{shop.slug}/{area}", headers=basic(email, password))


async def poll(client):
    await client._transport.app.state.access_cache.poll_changes()


async def test_member_with_grant_gets_200_with_member_header(client, shop):
    member = await member_with_grant(client, shop)
    response = await check(client, shop)
    assert response.status_code == 200
    assert response.headers["x-einlass-member"] == member["id"]
    assert response.headers["x-einlass-plan"] == "manual"
    assert response.headers["x-einlass-access-until"] == "lifetime"


async def test_no_credentials_401_bad_password_401_no_grant_403_unknown_area_404(client, shop):
    await member_with_grant(client, shop)
    assert (await client.get(f"/auth/{shop.slug}/premium")).status_code == 401
    assert "Basic" in (await client.get(f"/auth/{shop.slug}/premium")).headers["www-authenticate"]
    assert (await check(client, shop, password="wrong password")).status_code == 401
    assert (await check(client, shop, email="nobody@example.com")).status_code == 401
    assert (await check(client, shop, area="archive")).status_code == 403
    assert (await check(client, shop, area="nope")).status_code == 404
    assert (
        await client.get("/auth/nobody/premium", headers=basic("m@example.com", PASSWORD))
    ).status_code == 404


async def test_lock_revokes_after_the_change_log_is_polled(client, shop):
    member = await member_with_grant(client, shop)
    assert (await check(client, shop)).status_code == 200
    await api(client, shop, "POST", f"/members/{member['id']}/lock")
    await poll(client)
    assert (await check(client, shop)).status_code == 403
    await api(client, shop, "POST", f"/members/{member['id']}/unlock")
    await poll(client)
    assert (await check(client, shop)).status_code == 200


async def test_password_change_revokes_the_cached_credentials(client, shop):
    member = await member_with_grant(client, shop)
    assert (await check(client, shop)).status_code == 200
    await api(
        client, shop, "POST", f"/members/{member['id']}/password", json={"password": "another password 2"}
    )
    await poll(client)
    assert (await check(client, shop)).status_code == 401
    assert (await check(client, shop, password="another password 2")).status_code == 200


async def test_chargeback_closes_the_door(client, shop, worker):
    await post_generic(
        client,
        shop,
        generic.payment_confirmed("p-1", amount=990, email="buyer@example.com", product_id="prod-30"),
    )
    member = (await api(client, shop, "GET", "/members"))["data"][0]
    await api(client, shop, "POST", f"/members/{member['id']}/password", json={"password": PASSWORD})
    await poll(client)
    response = await check(client, shop, email="buyer@example.com")
    assert response.status_code == 200 and response.headers["x-einlass-plan"] == "month"
    await post_generic(client, shop, generic.payment_chargeback("p-1", chargeback_id="cb", amount=990))
    await poll(client)
    assert (await check(client, shop, email="buyer@example.com")).status_code == 403


async def test_grant_ending_by_time_needs_no_event(client, shop, clock):
    ends = (clock.now() + timedelta(days=1)).isoformat()
    await member_with_grant(client, shop, ends_at=ends)
    assert (await check(client, shop)).status_code == 200
    clock.advance(timedelta(days=1))
    assert (await check(client, shop)).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Basic !!!notbase64"},
        {"authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        {"authorization": "Bearer abc"},
        {"authorization": "Basic " + "A" * 5000},
        {"cookie": "einlass_session=" + "x" * 4000},
        {"cookie": "einlass_session=\x7f\x01garbage"},
    ],
)
async def test_hostile_credentials_get_a_4xx(client, shop, headers):
    await member_with_grant(client, shop)
    response = await client.get(f"/auth/{shop.slug}/premium", headers=headers)
    assert response.status_code == 401


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=300),
    cookie=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=";"), max_size=200
    ),
)
async def test_random_headers_never_get_a_5xx(client, shop, value, cookie):
    response = await client.get(
        f"/auth/{shop.slug}/premium",
        headers={"authorization": value.encode("latin-1"), "cookie": f"einlass_session={cookie}"},
    )
    assert 400 <= response.status_code < 500
