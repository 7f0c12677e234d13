"""htpasswd files, hash schemes, the local transport and the diff (no database); one real nginx."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from passlib.hash import apr_md5_crypt, bcrypt, sha512_crypt

from einlass.provisioning import hashing, htpasswd
from einlass.provisioning.base import TargetUnreachable
from einlass.provisioning.reconciler import plan_htpasswd
from einlass.provisioning.transports.local import LocalFileTransport
from nginx import NginxServer

# --- parse ------------------------------------------------------------------------------------


def test_parse_skips_comments_and_blank_lines_and_reads_windows_newlines():
    content = b"# a comment\r\n\r\nalice:$apr1$x$y\r\n   \n  # indented comment\nbob:$6$salt$hash\n"
    parsed = htpasswd.parse(content)
    assert parsed.entries == {"alice": "$apr1$x$y", "bob": "$6$salt$hash"}
    assert parsed.problems == [] and parsed.duplicates == []


def test_parse_reports_garbage_without_crashing():
    content = b"good:$6$a$b\nno colon here\n:nouser\n\xff\xfe:binary\nempty:\nsecond:$6$c$d:apache comment\n"
    parsed = htpasswd.parse(content)
    assert parsed.entries == {"good": "$6$a$b", "empty": "", "second": "$6$c$d"}
    assert parsed.problems == [
        "line 2: no ':' between username and hash",
        "line 3: empty username",
        "line 4: not UTF-8",
        "line 5: empty hash for 'empty'",
    ]


def test_parse_reports_duplicates_and_keeps_the_first_line():
    parsed = htpasswd.parse(b"a:1\nb:2\na:3\na:4\n")
    assert parsed.entries == {"a": "1", "b": "2"}
    assert parsed.duplicates == ["a"]


@pytest.mark.parametrize("content", [None, b"", b"\n\n", b"# only a comment"])
def test_parse_of_nothing(content):
    assert htpasswd.parse(content).entries == {}


# --- render -----------------------------------------------------------------------------------


def test_render_is_sorted_and_deterministic():
    one = htpasswd.render({"zoe@example.com": "$6$z", "anna@example.com": "$6$a"})
    two = htpasswd.render({"anna@example.com": "$6$a", "zoe@example.com": "$6$z"})
    assert one.content == two.content
    assert one.content.decode().splitlines()[1:] == ["anna@example.com:$6$a", "zoe@example.com:$6$z"]
    assert one.content.startswith(b"# ") and one.written == 2


@pytest.mark.parametrize(
    "username",
    ["with:colon", "new\nline", "carriage\rreturn", "#hash", "", " padded", "tab\there", "del\x7f"],
)
def test_render_never_writes_a_username_that_breaks_the_file(username):
    rendered = htpasswd.render({username: "$6$x", "ok@example.com": "$6$y"})
    assert rendered.rejected == [username]
    assert rendered.written == 1
    assert htpasswd.parse(rendered.content).entries == {"ok@example.com": "$6$y"}
    assert htpasswd.username_problem(username)


def test_render_rejects_a_hash_with_a_newline():
    rendered = htpasswd.render({"a": "$6$x\nevil:$6$y"})
    assert rendered.rejected == ["a"] and b"evil" not in rendered.content


usernames = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda name: htpasswd.username_problem(name) is None)
hashes = st.from_regex(r"\$6\$[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{1,86}", fullmatch=True)


@given(st.dictionaries(usernames, hashes, max_size=20))
def test_render_then_parse_round_trips(entries):
    rendered = htpasswd.render(entries)
    parsed = htpasswd.parse(rendered.content)
    assert parsed.entries == entries
    assert parsed.problems == [] and parsed.duplicates == []
    assert htpasswd.render(parsed.entries).content == rendered.content


@given(st.binary(max_size=300))
def test_parse_never_crashes(content):
    htpasswd.parse(content)


# --- hash schemes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "prefix", "verify"),
    [
        ("bcrypt:4", "$2y$04$", bcrypt.verify),
        ("bcrypt:5", "$2y$05$", bcrypt.verify),
        ("sha512_crypt:5000", "$6$", sha512_crypt.verify),
        ("sha512_crypt:1000", "$6$rounds=1000$", sha512_crypt.verify),
        ("apr1:0", "$apr1$", apr_md5_crypt.verify),
    ],
)
def test_each_scheme_verifies_with_passlib(key, prefix, verify):
    password = "Zq7nRt4kLp9sWx2M"
    hashed = hashing.hash_password(key, password)
    assert hashed.startswith(prefix)
    assert verify(password, hashed)
    assert not verify("wrong-password", hashed)
    assert hashing.verify_password(password, hashed)
    assert not hashing.verify_password("wrong-password", hashed)
    assert htpasswd.render({"user": hashed}).rejected == []


def test_sha512_crypt_default_rounds_hash_has_no_rounds_field():
    # What glibc writes for 5000 rounds, and what every crypt() reads.
    assert hashing.hash_password(hashing.DEFAULT_SCHEME_KEY, "x").count("$") == 3


def test_bcrypt_reads_72_bytes_like_the_web_server_does():
    long_password = "ä" * 50  # 100 bytes
    hashed = hashing.hash_password("bcrypt:4", long_password)
    assert hashing.verify_password(long_password, hashed)
    assert hashing.verify_password("ä" * 36, hashed)  # the first 72 bytes


def test_unicode_passwords():
    for key in ("sha512_crypt:1000", "apr1:0", "bcrypt:4"):
        assert hashing.verify_password("Grüße, 世界!", hashing.hash_password(key, "Grüße, 世界!"))


@pytest.mark.parametrize(
    ("scheme", "cost", "expected"),
    [
        ("sha512_crypt", None, "sha512_crypt:5000"),
        ("bcrypt", None, "bcrypt:5"),
        ("bcrypt", 10, "bcrypt:10"),
        ("apr1", None, "apr1:0"),
        ("apr1", 0, "apr1:0"),
    ],
)
def test_scheme_keys(scheme, cost, expected):
    assert hashing.scheme_key(scheme, cost) == expected
    assert hashing.parse_scheme_key(expected) == (scheme, int(expected.split(":")[1]))


@pytest.mark.parametrize(
    ("scheme", "cost", "message"),
    [
        ("md5", None, "unknown hash_scheme 'md5'"),
        ("bcrypt", 3, "between 4 and 12, not 3"),
        ("bcrypt", 13, "between 4 and 12, not 13"),
        ("sha512_crypt", 999, "between 1000 and 50000"),
        ("sha512_crypt", 10**9, "between 1000 and 50000"),
        ("apr1", 5, "apr1 has no cost setting"),
        ("bcrypt", "10", "must be an integer"),
        ("bcrypt", True, "must be an integer"),
    ],
)
def test_scheme_keys_out_of_bounds(scheme, cost, message):
    with pytest.raises(ValueError, match=message):
        hashing.scheme_key(scheme, cost)


async def test_hash_for_schemes_makes_one_hash_per_distinct_key():
    hashes = await hashing.hash_for_schemes("pw-1234567890", ["apr1:0", "sha512_crypt:1000", "apr1:0"])
    assert sorted(hashes) == ["apr1:0", "sha512_crypt:1000"]
    assert all(hashing.verify_password("pw-1234567890", value) for value in hashes.values())
    assert await hashing.hash_for_schemes("x", []) == {}


# --- the diff ---------------------------------------------------------------------------------


def test_plan_reports_each_kind_of_drift():
    actual = b"intruder:$6$i\nalice:$6$old\nbob:$6$b\ncarol:$6$c\ngarbage\n"
    plan = plan_htpasswd(
        {"alice": "$6$new", "bob": "$6$b", "dave": "$6$d"}, without_hash=["carol"], actual=actual
    )
    assert plan.drift.as_dict() == {
        "unexpected": ["intruder"],
        "missing": ["dave"],
        "changed": ["alice"],
        "without_hash": ["carol"],
    }
    assert plan.problems == ["line 5: no ':' between username and hash"]
    assert htpasswd.parse(plan.content).entries == {"alice": "$6$new", "bob": "$6$b", "dave": "$6$d"}
    assert plan.members == 3


def test_plan_in_sync_has_no_drift_and_the_same_bytes():
    desired = {"alice": "$6$a"}
    plan = plan_htpasswd(desired, [], htpasswd.render(desired).content)
    assert not plan.drift.any and plan.content == htpasswd.render(desired).content


def test_plan_reports_unwritable_usernames():
    plan = plan_htpasswd({"a:b": "$6$x"}, [], None)
    assert plan.members == 0
    assert plan.problems == ["username 'a:b' cannot be written: username contains ':'"]
    assert plan.drift.missing == []


# --- the local transport ----------------------------------------------------------------------


async def test_local_transport_reads_nothing_then_writes_with_mode_0640(tmp_path: Path):
    transport = LocalFileTransport(tmp_path / "site.htpasswd")
    assert await transport.read() is None
    await transport.write_atomic(b"a:b\n")
    assert await transport.read() == b"a:b\n"
    assert stat.S_IMODE((tmp_path / "site.htpasswd").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["site.htpasswd"]  # no temporary file left


async def test_local_transport_keeps_the_existing_mode_and_replaces_the_inode(tmp_path: Path):
    path = tmp_path / "site.htpasswd"
    path.write_bytes(b"old:x\n")
    path.chmod(0o604)
    before = path.stat().st_ino
    await LocalFileTransport(path).write_atomic(b"new:y\n")
    assert path.read_bytes() == b"new:y\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert path.stat().st_ino != before  # renamed over, never written in place


async def test_local_transport_unreachable_when_the_directory_is_missing(tmp_path: Path):
    transport = LocalFileTransport(tmp_path / "missing" / "site.htpasswd")
    with pytest.raises(TargetUnreachable, match="does not exist"):
        await transport.read()
    with pytest.raises(TargetUnreachable, match="cannot write"):
        await transport.write_atomic(b"x")


async def test_local_transport_unreachable_when_the_parent_is_a_file(tmp_path: Path):
    (tmp_path / "file").write_bytes(b"")
    transport = LocalFileTransport(tmp_path / "file" / "site.htpasswd")
    with pytest.raises(TargetUnreachable):
        await transport.read()
    with pytest.raises(TargetUnreachable):
        await transport.write_atomic(b"x")


# --- a real nginx reads every scheme ------------------------------------------------------------


@pytest.mark.slow
def test_nginx_auth_basic_accepts_each_scheme(tmp_path: Path):
    root = tmp_path / "site"
    (root / "premium").mkdir(parents=True)
    (root / "premium" / "index.html").write_text("members only")
    password = "Zq7nRt4kLp9sWx2M"
    keys = {
        "bcrypt@example.com": "bcrypt:5",
        "sha@example.com": "sha512_crypt:5000",
        "apr@example.com": "apr1:0",
    }
    path = tmp_path / "einlass.htpasswd"
    path.write_bytes(
        htpasswd.render({user: hashing.hash_password(key, password) for user, key in keys.items()}).content
    )
    server = NginxServer(tmp_path / "nginx")
    site = server.add_site(
        "nginx-auth-basic.conf",
        SITE_ROOT=str(root),
        HTPASSWD_FILE=str(path),
        AREA="premium",
        SERVER_NAME="shop.test",
    )
    with server:
        for user in keys:
            assert httpx.get(site.url("/premium/"), auth=(user, password)).status_code == 200, user
            assert httpx.get(site.url("/premium/"), auth=(user, password + "x")).status_code == 401, user
        assert httpx.get(site.url("/premium/")).status_code == 401
