"""Standard Webhooks signing and verification (pure, no database)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from einlass import standard_webhooks
from einlass.billing.gateways.base import InvalidSignature

# The test vector of the Standard Webhooks reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SPEC_NOW = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)


def spec_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    headers.update({key.replace("_", "-"): value for key, value in overrides.items()})
    return headers


def test_sign_matches_the_spec_test_vector() -> None:
    assert standard_webhooks.sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_secret_without_prefix_signs_the_same() -> None:
    unprefixed = SPEC_SECRET.removeprefix("whsec_")
    assert standard_webhooks.sign(unprefixed, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_verify_accepts_the_spec_test_vector() -> None:
    standard_webhooks.verify(SPEC_SECRET, spec_headers(), SPEC_BODY, SPEC_NOW)
    standard_webhooks.verify(SPEC_SECRET.removeprefix("whsec_"), spec_headers(), SPEC_BODY, SPEC_NOW)


def test_header_names_are_case_insensitive() -> None:
    headers = {
        "Webhook-Id": SPEC_MSG_ID,
        "WEBHOOK-TIMESTAMP": str(SPEC_TIMESTAMP),
        "Webhook-Signature": SPEC_SIGNATURE,
    }
    standard_webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, SPEC_NOW)
    starlette_headers = Headers(raw=[(key.encode(), value.encode()) for key, value in headers.items()])
    standard_webhooks.verify(SPEC_SECRET, starlette_headers, SPEC_BODY, SPEC_NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_named(header: str) -> None:
    headers = spec_headers()
    del headers[header]
    with pytest.raises(InvalidSignature, match=f"^missing {header} header$"):
        standard_webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, SPEC_NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_empty_header_counts_as_missing(header: str) -> None:
    with pytest.raises(InvalidSignature, match=f"^missing {header} header$"):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(**{header: ""}), SPEC_BODY, SPEC_NOW)


@pytest.mark.parametrize(
    "value", ["hello", "1614265330.0", "-1614265330", "+1614265330", "1e9", "\uff11\uff12\uff13"]
)
def test_non_integer_timestamp(value: str) -> None:
    with pytest.raises(InvalidSignature, match="must be an integer Unix timestamp in seconds"):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(webhook_timestamp=value), SPEC_BODY, SPEC_NOW)


def test_timestamp_at_the_edge_of_the_tolerance_is_accepted() -> None:
    for offset in (-300, 300):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(), SPEC_BODY, SPEC_NOW + timedelta(seconds=offset))


def test_stale_timestamp() -> None:
    later = SPEC_NOW + timedelta(seconds=301)
    with pytest.raises(InvalidSignature, match=r"too old: 301 s before .*tolerance is 300 s"):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(), SPEC_BODY, later)


def test_future_timestamp() -> None:
    earlier = SPEC_NOW - timedelta(seconds=301)
    with pytest.raises(InvalidSignature, match=r"too far in the future: 301 s after"):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(), SPEC_BODY, earlier)


def test_absurd_timestamp_is_in_the_future() -> None:
    with pytest.raises(InvalidSignature, match="too far in the future"):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(webhook_timestamp="9" * 5000), SPEC_BODY, SPEC_NOW)


def test_custom_tolerance() -> None:
    later = SPEC_NOW + timedelta(seconds=61)
    with pytest.raises(InvalidSignature, match="too old"):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(), SPEC_BODY, later, tolerance_s=60)
    standard_webhooks.verify(SPEC_SECRET, spec_headers(), SPEC_BODY, later, tolerance_s=61)


def test_naive_now_is_taken_as_utc() -> None:
    standard_webhooks.verify(SPEC_SECRET, spec_headers(), SPEC_BODY, SPEC_NOW.replace(tzinfo=None))


NO_MATCH = "no v1 signature in webhook-signature matches"


def test_tampered_body() -> None:
    with pytest.raises(InvalidSignature, match=NO_MATCH):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(), b'{"test": 2432232315}', SPEC_NOW)


def test_wrong_secret() -> None:
    with pytest.raises(InvalidSignature, match=NO_MATCH):
        standard_webhooks.verify(standard_webhooks.generate_secret(), spec_headers(), SPEC_BODY, SPEC_NOW)


def test_id_and_timestamp_are_signed() -> None:
    with pytest.raises(InvalidSignature, match=NO_MATCH):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(webhook_id="msg_other"), SPEC_BODY, SPEC_NOW)
    moved = str(SPEC_TIMESTAMP + 1)
    with pytest.raises(InvalidSignature, match=NO_MATCH):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(webhook_timestamp=moved), SPEC_BODY, SPEC_NOW)


def test_any_of_several_signatures_may_match() -> None:
    signatures = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            SPEC_SIGNATURE,
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
        ]
    )
    standard_webhooks.verify(SPEC_SECRET, spec_headers(webhook_signature=signatures), SPEC_BODY, SPEC_NOW)


def test_secret_rotation_old_and_new_secret() -> None:
    old, new = standard_webhooks.generate_secret(), standard_webhooks.generate_secret()
    header = " ".join(standard_webhooks.sign(s, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY) for s in (new, old))
    for secret in (old, new):
        standard_webhooks.verify(secret, spec_headers(webhook_signature=header), SPEC_BODY, SPEC_NOW)


def test_only_other_versions() -> None:
    body_sig = SPEC_SIGNATURE.removeprefix("v1,")
    header = f"v1a,{body_sig} v2,{body_sig} v1,"
    with pytest.raises(InvalidSignature, match='contains no "v1,<base64>" signature'):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(webhook_signature=header), SPEC_BODY, SPEC_NOW)


def test_signature_without_version_prefix_is_not_accepted() -> None:
    bare = SPEC_SIGNATURE.removeprefix("v1,")
    with pytest.raises(InvalidSignature, match="contains no"):
        standard_webhooks.verify(SPEC_SECRET, spec_headers(webhook_signature=bare), SPEC_BODY, SPEC_NOW)


def test_non_ascii_signature_does_not_match() -> None:
    with pytest.raises(InvalidSignature, match=NO_MATCH):
        standard_webhooks.verify(
            SPEC_SECRET, spec_headers(webhook_signature="v1,ü\udcff"), SPEC_BODY, SPEC_NOW
        )


def test_unusable_secret_is_reported_as_such() -> None:
    with pytest.raises(InvalidSignature, match="cannot check the signature: the signing secret must be"):
        standard_webhooks.verify("whsec_not base64!", spec_headers(), SPEC_BODY, SPEC_NOW)


@pytest.mark.parametrize("secret", ["", "whsec_", "   ", "whsec_***", "whsec_abc"])
def test_decode_secret_rejects(secret: str) -> None:
    with pytest.raises(ValueError, match="signing secret"):
        standard_webhooks.decode_secret(secret)


def test_generate_secret() -> None:
    secret = standard_webhooks.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert standard_webhooks.decode_secret(secret) == base64.b64decode(secret.removeprefix("whsec_"))
    assert secret != standard_webhooks.generate_secret()


def test_sign_then_verify_round_trip() -> None:
    secret = standard_webhooks.generate_secret()
    body = '{"name": "Jürgen"}'.encode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": standard_webhooks.sign(secret, "msg_1", SPEC_TIMESTAMP, body),
    }
    standard_webhooks.verify(secret, headers, body, SPEC_NOW)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg_ü"])
def test_sign_refuses_unsafe_message_ids(msg_id: str) -> None:
    with pytest.raises(ValueError, match="msg_id"):
        standard_webhooks.sign(SPEC_SECRET, msg_id, SPEC_TIMESTAMP, SPEC_BODY)


def test_sign_refuses_negative_timestamp() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        standard_webhooks.sign(SPEC_SECRET, SPEC_MSG_ID, -1, SPEC_BODY)


header_values = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"v1,[A-Za-z0-9+/=]{0,50}( v1a?,[A-Za-z0-9+/=]{0,50})*", fullmatch=True),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
)


@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "Webhook-Timestamp", "webhook-timestamp", "WEBHOOK-SIGNATURE", "x"]),
        header_values,
    ),
    secret=st.one_of(st.just(SPEC_SECRET), st.text(max_size=40)),
    offset=st.integers(min_value=-(10**6), max_value=10**6),
)
def test_random_input_only_raises_invalid_signature(
    body: bytes, headers: dict[str, str], secret: str, offset: int
) -> None:
    now = SPEC_NOW + timedelta(seconds=offset)
    try:
        standard_webhooks.verify(secret, headers, body, now)
    except InvalidSignature as error:
        assert str(error)
