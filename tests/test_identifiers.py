"""Normalisation: spellings of the same identifier meet; different identifiers stay apart."""

from __future__ import annotations

import pytest

from einlass.errors import InvalidInput
from einlass.screening.identifiers import IdentifierKind, blacklist_key, digest, normalize

SAME = [
    (
        "email",
        [
            "anna.muster@gmail.com",
            "AnnaMuster@gmail.com",
            "a.n.n.a.m.u.s.t.e.r+shop@GMAIL.com",
            "annamuster@googlemail.com",
        ],
    ),
    ("email", ["max@example.com", "Max@Example.COM", " max@example.com "]),
    ("email", ["max+news@outlook.com", "max@outlook.com"]),
    (
        "phone",
        ["+49 151 23456789", "0151 23456789", "+49 (0)151 2345-6789", "0049 151 23456789", "+4915123456789"],
    ),
    ("phone", ["+43 664 1234567", "0043 664 1234567"]),
    ("iban", ["DE89 3704 0044 0532 0130 00", "de89370400440532013000", " DE89370400440532013000 "]),
    ("ip", ["2001:db8::1", "2001:0DB8:0000:0000:0000:0000:0000:0001", "[2001:db8::1]", "2001:db8:0:0::1"]),
    ("ip", ["192.0.2.1", "::ffff:192.0.2.1", "::ffff:c000:201"]),
    ("name_postcode", ["Jürgen Groß|10115", "JURGEN GROSS | 10115", "jürgen  groß|10 115"]),
]

DIFFERENT = [
    ("email", "anna.muster@example.com", "annamuster@example.com"),  # dots count outside Gmail
    ("email", "max+news@example.com", "max@example.com"),  # plus tags count for unknown providers
    ("phone", "+49 151 23456789", "+43 151 23456789"),
    ("ip", "2001:db8::1", "2001:db8::2"),
    ("name_postcode", "Anna Muster|10115", "Anna Muster|10117"),
]


@pytest.mark.parametrize(("kind", "spellings"), SAME, ids=[f"{k}-{s[0]}" for k, s in SAME])
def test_spellings_of_one_identifier_meet(kind: str, spellings: list[str]) -> None:
    key = blacklist_key("instance secret")
    forms = {normalize(kind, spelling).value for spelling in spellings}
    assert len(forms) == 1, forms
    assert len({digest(key, normalize(kind, spelling)) for spelling in spellings}) == 1


@pytest.mark.parametrize(("kind", "first", "second"), DIFFERENT)
def test_different_identifiers_stay_apart(kind: str, first: str, second: str) -> None:
    assert normalize(kind, first) != normalize(kind, second)


def test_canonical_forms() -> None:
    assert normalize("email", "A.N.N.A+x@GoogleMail.com").value == "anna@gmail.com"
    assert normalize("phone", "0151 23456789").value == "+4915123456789"
    assert normalize("phone", "0664 1234567", default_region="AT").value == "+436641234567"
    assert normalize("iban", "de89 3704 0044 0532 0130 00").value == "DE89370400440532013000"
    assert normalize("ip", "2001:0db8:0000::0001").value == "2001:db8::1"
    assert (
        normalize("name_postcode", "Zoë  Müller-Lüdenscheidt|w1a 1aa").value
        == "zoe muller ludenscheidt|W1A1AA"
    )


def test_digests_depend_on_the_instance_secret_and_the_kind() -> None:
    email = normalize("email", "max@example.com")
    assert digest(blacklist_key("one"), email) != digest(blacklist_key("two"), email)
    device = normalize(IdentifierKind.DEVICE_ID, "max@example.com")
    assert digest(blacklist_key("one"), email) != digest(blacklist_key("one"), device)
    assert "max" not in digest(blacklist_key("one"), email)


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("email", "not-an-email", "email is not valid"),
        ("phone", "12", "phone"),
        ("iban", "DE00 3704 0044 0532 0130 00", "iban is not valid"),
        ("ip", "300.1.1.1", "ip is not an IPv4 or IPv6 address"),
        ("name_postcode", "Anna Muster", 'name_postcode must be "name|postcode"'),
        ("email", "  ", "email is empty"),
        ("device_id", "x" * 501, "longer than 500"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(kind: str, value: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        normalize(kind, value)
    assert raised.value.param == kind
