"""FTP, FTPS and SFTP transports against real servers started by the tests.

pyftpdlib serves FTP and FTPS (explicit TLS, certificate from a CA made here)
from a thread with its own IO loop; asyncssh serves SFTP in the test's event
loop, chrooted to tmp_path, with a host key made here. Every server listens
on a free port of 127.0.0.1 before the test talks to it, so nothing waits or
sleeps for readiness.
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import os
import socket
import threading
import time
import traceback
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

with warnings.catch_warnings():  # pyftpdlib on Python 3.11 imports the deprecated asyncore and asynchat
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

from einlass.provisioning.base import TargetUnreachable
from einlass.provisioning.transports.ftp import FtpTransport
from einlass.provisioning.transports.sftp import SftpTransport

pytestmark = pytest.mark.slow

USER = "shop"
PASSWORD = "s3cret-Pa55word-xyzzy"
NAME = ".htpasswd"
OLD = b"alice:$2y$10$oldoldoldoldoldoldoldoldoldoldoldoldoldoldoldoldoldol\n"
# Large enough to travel in many blocks, so a half-written file would be visible.
NEW = b"".join(b"member%06d:$2y$10$%s\n" % (i, b"n" * 53) for i in range(6000))
# asyncssh sends up to 4 MiB in one SFTP write request: more than that makes several.
BIG = NEW * 12
TIMEOUT = 5.0
QUICK = 0.5  # for the tests that expect a failure


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".einlass-" in p.name)


def assert_secret_kept(exc: BaseException, secret: str) -> None:
    """The secret is in none of message, repr, or formatted traceback, and nothing is chained."""
    text = "".join(traceback.format_exception(exc))
    assert secret not in str(exc)
    assert secret not in repr(exc)
    assert secret not in text
    assert exc.__cause__ is None
    assert exc.__context__ is None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and then never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


# --- certificates ------------------------------------------------------------------------


@dataclass
class Pki:
    ca_file: Path  # the CA that signed the server certificate
    other_ca_file: Path  # a CA that did not
    server_pem: Path  # server certificate and key, for pyftpdlib


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("einlass test CA")
    _, other_cert = _ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "other-ca.pem", directory / "server.pem")
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.other_ca_file.write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


# --- FTP server --------------------------------------------------------------------------


class _SnapshotFile:
    """A file being uploaded; before each block it looks at the final file."""

    def __init__(self, real: Any, final: Path, snapshots: list[bytes | None], fail_after: int | None):
        self._real = real
        self._final = final
        self._snapshots = snapshots
        self._fail_after = fail_after
        self._blocks = 0

    def write(self, data: bytes) -> int:
        self._snapshots.append(self._final.read_bytes() if self._final.exists() else None)
        if self._fail_after is not None and self._blocks >= self._fail_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._blocks += 1
        return int(self._real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class FtpServer:
    """pyftpdlib on 127.0.0.1 in a thread of its own; the user's home is root."""

    def __init__(
        self,
        root: Path,
        *,
        certfile: Path | None = None,
        refuse_overwrite: bool = False,
        refuse_rename: bool = False,
        fail_upload_after: int | None = None,
    ) -> None:
        self.root = root
        self.certfile = certfile
        self.port = 0
        self.commands: list[tuple[str, str]] = []
        self.snapshots: list[bytes | None] = []  # the final file, seen while uploads ran
        self.refuse_overwrite = refuse_overwrite
        self.refuse_rename = refuse_rename
        self.fail_upload_after = fail_upload_after
        self._server: FTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _handler(self) -> type[FTPHandler]:
        server = self
        final = self.root / NAME

        class FS(AbstractedFS):  # type: ignore[misc]
            def open(self, filename: str, mode: str) -> Any:
                real = super().open(filename, mode)
                if "w" not in mode:
                    return real
                return _SnapshotFile(real, final, server.snapshots, server.fail_upload_after)

            def rename(self, src: str, dst: str) -> None:
                if server.refuse_rename:
                    raise PermissionError(errno.EACCES, "Permission denied")
                if server.refuse_overwrite and os.path.exists(dst):
                    raise FileExistsError(errno.EEXIST, "File exists")
                super().rename(src, dst)

        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(self.root), perm="elradfmwMT")
        authorizer.add_user("reader-without-r", PASSWORD, str(self.root), perm="el")
        base: type[FTPHandler] = TLS_FTPHandler if self.certfile else FTPHandler

        class Handler(base):  # type: ignore[valid-type,misc]
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                server.commands.append((cmd, arg))
                super().pre_process_command(line, cmd, arg)

        Handler.authorizer = authorizer
        Handler.abstracted_fs = FS
        Handler.auth_failed_timeout = 0
        if self.certfile:
            Handler.certfile = str(self.certfile)
            Handler.tls_control_required = True
            Handler.tls_data_required = True
        return Handler

    def start(self) -> FtpServer:
        # Bound and listening when this returns: a client may connect at once.
        self._server = FTPServer(("127.0.0.1", self.port), self._handler(), ioloop=IOLoop())
        self.port = int(self._server.address[1])
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, args=(self._server,), daemon=True)
        self._thread.start()
        return self

    def _serve(self, server: FTPServer) -> None:
        try:
            while not self._stop.is_set():
                server.ioloop.loop(timeout=0.02, blocking=False)
        finally:
            server.close_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive()
        self._thread = None

    def transport(self, remote_path: str = NAME, **kwargs: Any) -> FtpTransport:
        options: dict[str, Any] = {"timeout": TIMEOUT}
        if self.certfile:
            options["tls"] = True
        options.update(kwargs)
        return FtpTransport(
            "127.0.0.1",
            self.port,
            options.pop("username", USER),
            options.pop("password", PASSWORD),
            remote_path,
            **options,
        )


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    root = tmp_path / "ftp"
    root.mkdir()
    return root


@pytest.fixture
def ftp_servers(ftp_root: Path) -> Iterator[list[FtpServer]]:
    servers: list[FtpServer] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def ftp(ftp_root: Path, ftp_servers: list[FtpServer]) -> FtpServer:
    server = FtpServer(ftp_root).start()
    ftp_servers.append(server)
    return server


@pytest.fixture
def ftps(ftp_root: Path, ftp_servers: list[FtpServer], pki: Pki) -> FtpServer:
    server = FtpServer(ftp_root, certfile=pki.server_pem).start()
    ftp_servers.append(server)
    return server


# --- FTP ---------------------------------------------------------------------------------


async def test_ftp_read_missing_file_is_none(ftp: FtpServer) -> None:
    assert await ftp.transport().read() is None
    assert await ftp.transport("no/such/dir/htpasswd").read() is None


async def test_ftp_write_replaces_through_a_temporary_name(ftp: FtpServer, ftp_root: Path) -> None:
    (ftp_root / NAME).write_bytes(OLD)
    transport = ftp.transport()
    assert await transport.read() == OLD

    await transport.write_atomic(NEW)

    assert (ftp_root / NAME).read_bytes() == NEW
    assert await transport.read() == NEW
    # The upload went to a hidden name in the same directory, then was renamed over the final name.
    stored = [arg for cmd, arg in ftp.commands if cmd == "STOR"]
    assert len(stored) == 1 and stored[0].startswith(f"{NAME}.einlass-") and stored[0].endswith(".tmp")
    renames = [(cmd, arg) for cmd, arg in ftp.commands if cmd in ("RNFR", "RNTO")]
    assert renames == [("RNFR", stored[0]), ("RNTO", NAME)]
    # While the blocks arrived, the final name still held the old file, whole.
    assert len(ftp.snapshots) > 1
    assert set(ftp.snapshots) == {OLD}
    assert temporaries(ftp_root) == []
    assert sorted(p.name for p in ftp_root.iterdir()) == [NAME]


async def test_ftp_write_creates_the_file_in_a_subdirectory(ftp: FtpServer, ftp_root: Path) -> None:
    (ftp_root / "site").mkdir()
    await ftp.transport("/site/htpasswd").write_atomic(OLD)
    assert (ftp_root / "site" / "htpasswd").read_bytes() == OLD
    assert await ftp.transport("site/htpasswd").read() == OLD
    stored = [arg for cmd, arg in ftp.commands if cmd == "STOR"]
    assert stored[0].startswith("/site/.htpasswd.einlass-")
    assert temporaries(ftp_root / "site") == []


async def test_ftp_server_that_will_not_rename_over_a_file(
    ftp_root: Path, ftp_servers: list[FtpServer]
) -> None:
    server = FtpServer(ftp_root, refuse_overwrite=True).start()
    ftp_servers.append(server)
    (ftp_root / NAME).write_bytes(OLD)

    await server.transport().write_atomic(NEW)

    assert (ftp_root / NAME).read_bytes() == NEW
    assert sorted(p.name for p in ftp_root.iterdir()) == [NAME]
    renamed_to = [arg for cmd, arg in server.commands if cmd == "RNTO"]
    # refused, old file aside, new file in
    assert renamed_to[0] == NAME and renamed_to[1].endswith(".old") and renamed_to[2] == NAME


async def test_ftp_failed_rename_keeps_the_old_file(ftp_root: Path, ftp_servers: list[FtpServer]) -> None:
    server = FtpServer(ftp_root, refuse_rename=True).start()
    ftp_servers.append(server)
    (ftp_root / NAME).write_bytes(OLD)

    with pytest.raises(TargetUnreachable, match="renaming"):
        await server.transport().write_atomic(NEW)

    assert (ftp_root / NAME).read_bytes() == OLD
    assert temporaries(ftp_root) == []


async def test_ftp_failed_upload_keeps_the_old_file(ftp_root: Path, ftp_servers: list[FtpServer]) -> None:
    server = FtpServer(ftp_root, fail_upload_after=2).start()
    ftp_servers.append(server)
    (ftp_root / NAME).write_bytes(OLD)

    with pytest.raises(TargetUnreachable, match="uploading"):
        await server.transport().write_atomic(NEW)

    assert (ftp_root / NAME).read_bytes() == OLD
    assert temporaries(ftp_root) == []  # the partial upload was removed
    # and the transport works again on the next call
    server.fail_upload_after = None
    await server.transport().write_atomic(NEW)
    assert (ftp_root / NAME).read_bytes() == NEW


async def test_ftp_unreadable_file_is_an_error_not_missing(ftp: FtpServer, ftp_root: Path) -> None:
    (ftp_root / NAME).write_bytes(OLD)
    with pytest.raises(TargetUnreachable, match="exists but the server refused"):
        await ftp.transport(username="reader-without-r").read()


async def test_ftp_wrong_password(ftp: FtpServer) -> None:
    wrong = "Wrong-Pa55word-plugh"
    with pytest.raises(TargetUnreachable, match="authentication failed") as caught:
        await ftp.transport(password=wrong).read()
    assert_secret_kept(caught.value, wrong)
    assert "Wrong-Pa55word" not in repr(ftp.transport(password=wrong))


async def test_ftp_server_down_then_up(ftp: FtpServer, ftp_root: Path) -> None:
    transport = ftp.transport(timeout=QUICK)
    ftp.stop()

    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="connection refused"):
        await transport.write_atomic(NEW)
    assert time.monotonic() - started < 2

    ftp.start()  # same port
    await transport.write_atomic(NEW)
    assert await transport.read() == NEW


async def test_ftp_silent_server_times_out(silent_port: int) -> None:
    transport = FtpTransport("127.0.0.1", silent_port, USER, PASSWORD, NAME, timeout=QUICK)
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="timed out"):
        await transport.read()
    assert time.monotonic() - started < 3


async def test_ftp_transport_rejects_bad_paths() -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        FtpTransport("127.0.0.1", 21, USER, PASSWORD, "x\r\nDELE y")
    with pytest.raises(ValueError, match="name a file"):
        FtpTransport("127.0.0.1", 21, USER, PASSWORD, "dir/")


# --- FTPS --------------------------------------------------------------------------------


async def test_ftps_write_and_read(ftps: FtpServer, ftp_root: Path, pki: Pki) -> None:
    transport = ftps.transport(ca_file=str(pki.ca_file))
    assert await transport.read() is None
    await transport.write_atomic(OLD)
    await transport.write_atomic(NEW)
    assert await transport.read() == NEW
    assert (ftp_root / NAME).read_bytes() == NEW
    assert temporaries(ftp_root) == []
    commands = [cmd for cmd, _ in ftps.commands]
    assert commands[:2] == ["AUTH", "USER"]
    assert "PROT" in commands


async def test_ftps_by_host_name(ftps: FtpServer, pki: Pki) -> None:
    transport = FtpTransport(
        "localhost", ftps.port, USER, PASSWORD, NAME, tls=True, ca_file=str(pki.ca_file), timeout=TIMEOUT
    )
    try:
        await transport.write_atomic(OLD)
    except TargetUnreachable as exc:  # localhost may resolve to ::1 first, where nothing listens
        pytest.skip(str(exc))
    assert await transport.read() == OLD


async def test_ftps_untrusted_certificate(ftps: FtpServer, pki: Pki) -> None:
    with pytest.raises(TargetUnreachable, match="certificate verification failed") as caught:
        await ftps.transport(ca_file=str(pki.other_ca_file)).read()
    assert_secret_kept(caught.value, PASSWORD)
    # without a ca_file the system CAs do not know the test CA either
    with pytest.raises(TargetUnreachable, match="certificate verification failed"):
        await ftps.transport().read()
    # verification off: the connection goes through (for a merchant who insists)
    assert await ftps.transport(verify_tls=False).read() is None


async def test_ftps_wrong_password(ftps: FtpServer, pki: Pki) -> None:
    wrong = "Wrong-Pa55word-plugh"
    with pytest.raises(TargetUnreachable, match="authentication failed") as caught:
        await ftps.transport(password=wrong, ca_file=str(pki.ca_file)).read()
    assert_secret_kept(caught.value, wrong)


async def test_ftps_against_a_server_without_tls(ftp: FtpServer, pki: Pki) -> None:
    with pytest.raises(TargetUnreachable, match="does not offer explicit TLS"):
        await ftp.transport(tls=True, ca_file=str(pki.ca_file)).read()


async def test_ftps_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ca_file"):
        FtpTransport("127.0.0.1", 21, USER, PASSWORD, NAME, tls=True, ca_file=str(tmp_path / "nope.pem"))


# --- SFTP server -------------------------------------------------------------------------


@dataclass
class SshKeys:
    host: asyncssh.SSHKey
    other_host: asyncssh.SSHKey
    client: asyncssh.SSHKey

    @property
    def host_line(self) -> str:
        return self.host.export_public_key("openssh").decode()

    @property
    def client_private(self) -> str:
        return self.client.export_private_key("openssh").decode()


@pytest.fixture(scope="module")
def ssh_keys() -> SshKeys:
    return SshKeys(
        asyncssh.generate_private_key("ssh-ed25519"),
        asyncssh.generate_private_key("ssh-ed25519"),
        asyncssh.generate_private_key("ssh-ed25519"),
    )


class SftpServer:
    """asyncssh on 127.0.0.1 in the test's event loop, SFTP chrooted to root."""

    def __init__(
        self,
        root: Path,
        keys: SshKeys,
        *,
        posix_rename: bool = True,
        refuse_rename: bool = False,
        refuse_chmod: bool = False,
        fail_upload_after: int | None = None,
    ) -> None:
        self.root = root
        self.keys = keys
        self.refuse_chmod = refuse_chmod
        self.port = 0
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self.snapshots: list[bytes | None] = []
        self.posix_rename = posix_rename
        self.refuse_rename = refuse_rename
        self.fail_upload_after = fail_upload_after
        self._acceptor: asyncssh.SSHAcceptor | None = None

    def _sftp(self, chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        server = self
        final = self.root / NAME

        class Recording(asyncssh.SFTPServer):
            blocks = 0

            def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
                server.requests.append(("open", path.decode()))
                return super().open(path, pflags, attrs)

            def write(self, file_obj: object, offset: int, data: bytes) -> int:
                server.snapshots.append(final.read_bytes() if final.exists() else None)
                if server.fail_upload_after is not None and self.blocks >= server.fail_upload_after:
                    raise asyncssh.SFTPFailure("No space left on device")
                self.blocks += 1
                return super().write(file_obj, offset, data)  # type: ignore[return-value]

            def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
                server.requests.append(("fsetstat", oct(attrs.permissions or 0)))
                if server.refuse_chmod:
                    raise asyncssh.SFTPPermissionDenied("Operation not permitted")
                super().fsetstat(file_obj, attrs)

            def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
                server.requests.append(("posix_rename", f"{oldpath.decode()} {newpath.decode()}"))
                if not server.posix_rename:
                    raise asyncssh.SFTPOpUnsupported("posix-rename not supported")
                if server.refuse_rename:
                    raise asyncssh.SFTPPermissionDenied("Permission denied")
                super().posix_rename(oldpath, newpath)

            def rename(self, oldpath: bytes, newpath: bytes) -> None:
                server.requests.append(("rename", f"{oldpath.decode()} {newpath.decode()}"))
                if server.refuse_rename:
                    raise asyncssh.SFTPPermissionDenied("Permission denied")
                super().rename(oldpath, newpath)

        return Recording(chan, chroot=str(self.root).encode())

    def _auth(self) -> asyncssh.SSHServer:
        server = self

        class Auth(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                server.connections += 1

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == USER and password == PASSWORD

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                return username == USER and key.public_data == server.keys.client.public_data

        return Auth()

    async def start(self) -> SftpServer:
        self._acceptor = await asyncssh.listen(
            "127.0.0.1",
            self.port,
            server_host_keys=[self.keys.host],
            server_factory=self._auth,
            sftp_factory=self._sftp,
            reuse_address=True,
        )
        self.port = self._acceptor.get_port()
        return self

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    def transport(self, remote_path: str = f"/{NAME}", **kwargs: Any) -> SftpTransport:
        options: dict[str, Any] = {
            "password": PASSWORD,
            "private_key": None,
            "known_host_key": self.keys.host_line,
            "timeout": TIMEOUT,
        }
        options.update(kwargs)
        return SftpTransport(
            "127.0.0.1",
            self.port,
            options.pop("username", USER),
            options.pop("password"),
            options.pop("private_key"),
            options.pop("known_host_key"),
            remote_path,
            **options,
        )


@pytest.fixture
def sftp_root(tmp_path: Path) -> Path:
    root = tmp_path / "sftp"
    root.mkdir()
    return root


@pytest.fixture
async def sftp_servers() -> AsyncIterator[list[SftpServer]]:
    servers: list[SftpServer] = []
    yield servers
    for server in servers:
        await server.stop()


@pytest.fixture
async def sftp(sftp_root: Path, ssh_keys: SshKeys, sftp_servers: list[SftpServer]) -> SftpServer:
    server = await SftpServer(sftp_root, ssh_keys).start()
    sftp_servers.append(server)
    return server


# --- SFTP --------------------------------------------------------------------------------


async def test_sftp_read_missing_file_is_none(sftp: SftpServer) -> None:
    assert await sftp.transport().read() is None
    assert await sftp.transport("/no/such/dir/htpasswd").read() is None


async def test_sftp_write_replaces_through_a_temporary_name(sftp: SftpServer, sftp_root: Path) -> None:
    (sftp_root / NAME).write_bytes(OLD)
    (sftp_root / NAME).chmod(0o640)
    transport = sftp.transport()
    assert await transport.read() == OLD

    await transport.write_atomic(BIG)

    assert (sftp_root / NAME).read_bytes() == BIG
    assert await transport.read() == BIG
    opened = [arg for op, arg in sftp.requests if op == "open"]
    temporary = opened[1]
    assert temporary.startswith(f"/{NAME}.einlass-") and temporary.endswith(".tmp")
    assert ("posix_rename", f"{temporary} /{NAME}") in sftp.requests
    assert len(sftp.snapshots) > 1
    assert set(sftp.snapshots) == {OLD}
    assert sorted(p.name for p in sftp_root.iterdir()) == [NAME]
    assert (sftp_root / NAME).stat().st_mode & 0o777 == 0o640  # the old file's mode carried over


async def test_sftp_public_key_auth_and_relative_path(
    sftp: SftpServer, sftp_root: Path, ssh_keys: SshKeys
) -> None:
    (sftp_root / "site").mkdir()
    transport = sftp.transport("site/htpasswd", password=None, private_key=ssh_keys.client_private)
    await transport.write_atomic(OLD)
    assert await transport.read() == OLD
    assert (sftp_root / "site" / "htpasswd").read_bytes() == OLD
    assert temporaries(sftp_root / "site") == []


async def test_sftp_known_hosts_line_is_accepted(sftp: SftpServer) -> None:
    line = f"[127.0.0.1]:{sftp.port} {sftp.keys.host_line}"
    assert await sftp.transport(known_host_key=line).read() is None


async def test_sftp_server_without_posix_rename(
    sftp_root: Path, ssh_keys: SshKeys, sftp_servers: list[SftpServer]
) -> None:
    server = await SftpServer(sftp_root, ssh_keys, posix_rename=False).start()
    sftp_servers.append(server)
    (sftp_root / NAME).write_bytes(OLD)

    await server.transport().write_atomic(NEW)

    assert (sftp_root / NAME).read_bytes() == NEW
    assert sorted(p.name for p in sftp_root.iterdir()) == [NAME]
    renames = [arg.split() for op, arg in server.requests if op == "rename"]
    # plain rename refused (target exists), old file aside, new file in
    assert renames[0][1] == f"/{NAME}"
    assert renames[1] == [f"/{NAME}", renames[1][1]] and renames[1][1].endswith(".old")
    assert renames[2][1] == f"/{NAME}"


async def test_sftp_host_that_forbids_chmod(
    sftp_root: Path, ssh_keys: SshKeys, sftp_servers: list[SftpServer]
) -> None:
    server = await SftpServer(sftp_root, ssh_keys, refuse_chmod=True).start()
    sftp_servers.append(server)
    (sftp_root / NAME).write_bytes(OLD)
    (sftp_root / NAME).chmod(0o600)

    await server.transport().write_atomic(NEW)

    assert ("fsetstat", "0o600") in server.requests  # tried, was refused, went on
    assert (sftp_root / NAME).read_bytes() == NEW
    assert temporaries(sftp_root) == []


async def test_sftp_failed_rename_keeps_the_old_file(
    sftp_root: Path, ssh_keys: SshKeys, sftp_servers: list[SftpServer]
) -> None:
    server = await SftpServer(sftp_root, ssh_keys, refuse_rename=True).start()
    sftp_servers.append(server)
    (sftp_root / NAME).write_bytes(OLD)

    with pytest.raises(TargetUnreachable, match="permission denied"):
        await server.transport().write_atomic(NEW)

    assert (sftp_root / NAME).read_bytes() == OLD
    assert temporaries(sftp_root) == []


async def test_sftp_failed_upload_keeps_the_old_file(
    sftp_root: Path, ssh_keys: SshKeys, sftp_servers: list[SftpServer]
) -> None:
    server = await SftpServer(sftp_root, ssh_keys, fail_upload_after=1).start()
    sftp_servers.append(server)
    (sftp_root / NAME).write_bytes(OLD)

    with pytest.raises(TargetUnreachable, match="uploading"):
        await server.transport().write_atomic(BIG)

    assert (sftp_root / NAME).read_bytes() == OLD
    assert temporaries(sftp_root) == []


async def test_sftp_wrong_password(sftp: SftpServer) -> None:
    wrong = "Wrong-Pa55word-plugh"
    with pytest.raises(TargetUnreachable, match="authentication failed") as caught:
        await sftp.transport(password=wrong).read()
    assert_secret_kept(caught.value, wrong)
    assert wrong not in repr(sftp.transport(password=wrong))


async def test_sftp_wrong_key(sftp: SftpServer, ssh_keys: SshKeys) -> None:
    stranger = ssh_keys.other_host.export_private_key("openssh").decode()
    with pytest.raises(TargetUnreachable, match="authentication failed") as caught:
        await sftp.transport(password=None, private_key=stranger).read()
    assert_secret_kept(caught.value, stranger.splitlines()[1])


async def test_sftp_wrong_host_key(sftp: SftpServer, ssh_keys: SshKeys) -> None:
    other = ssh_keys.other_host.export_public_key("openssh").decode()
    with pytest.raises(TargetUnreachable, match="host key verification failed") as caught:
        await sftp.transport(known_host_key=other).read()
    assert_secret_kept(caught.value, PASSWORD)


async def test_sftp_without_host_key_refuses_unless_told(sftp: SftpServer, sftp_root: Path) -> None:
    with pytest.raises(TargetUnreachable, match="no known host key"):
        await sftp.transport(known_host_key=None).read()
    assert sftp.connections == 0  # refused before any connection

    transport = sftp.transport(known_host_key=None, insecure_accept_any_host_key=True)
    await transport.write_atomic(OLD)
    assert (sftp_root / NAME).read_bytes() == OLD


async def test_sftp_server_down_then_up(sftp: SftpServer, sftp_root: Path) -> None:
    transport = sftp.transport(timeout=QUICK)
    await sftp.stop()

    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="connection refused"):
        await transport.write_atomic(NEW)
    assert time.monotonic() - started < 2

    await sftp.start()  # same port
    await transport.write_atomic(NEW)
    assert await transport.read() == NEW


async def test_sftp_silent_server_times_out(silent_port: int, ssh_keys: SshKeys) -> None:
    transport = SftpTransport(
        "127.0.0.1", silent_port, USER, PASSWORD, None, ssh_keys.host_line, NAME, timeout=QUICK
    )
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="timed out"):
        await transport.read()
    assert time.monotonic() - started < 3


async def test_sftp_configuration_errors(ssh_keys: SshKeys) -> None:
    with pytest.raises(ValueError, match="password, a private key"):
        SftpTransport("h", 22, USER, None, None, ssh_keys.host_line, NAME)
    with pytest.raises(ValueError, match="private_key"):
        SftpTransport("h", 22, USER, None, "not a key", ssh_keys.host_line, NAME)
    with pytest.raises(ValueError, match="known_host_key line 1"):
        SftpTransport("h", 22, USER, PASSWORD, None, "ssh-ed25519 bm90IGEga2V5", NAME)
    with pytest.raises(ValueError, match="name a file"):
        SftpTransport("h", 22, USER, PASSWORD, None, ssh_keys.host_line, "/srv/")
