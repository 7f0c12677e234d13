"""An htpasswd file on a server reached over FTP or FTPS (explicit TLS).

The client is the standard library's ``ftplib``, run in a worker thread through
``asyncio.to_thread``: one short connection per call, nothing kept open.

``write_atomic`` uploads to a hidden temporary name in the file's directory
(``.{name}.einlass-{random}.tmp``, one dot only for a name that has one),
checks its size where the server answers SIZE, then renames it over the final
name (RNFR/RNTO). A reader of the final
name sees the old file or the new one, never a partial upload. Some servers
refuse to rename onto an existing file; then the old file is first renamed aside
(``.{name}.einlass-{random}.old``), the temporary file takes its name, and the
old one is deleted. Between those two renames the final name is missing for
the time of one FTP round trip; if the second rename fails the old file is put
back. On any failure the temporary file is removed (best effort: a connection
that is already gone cannot remove it, and a hidden ``*.einlass-*.tmp`` file can
stay behind).

Every failure is raised as ``TargetUnreachable`` with a message that names the
server and the step, never the password, and carries no chained exception
(the frames of a failed login hold the password as a local variable).
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import io
import posixpath
import secrets
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from einlass.provisioning.base import TargetUnreachable

T = TypeVar("T")

# How long a best-effort cleanup command may wait for the server.
_CLEANUP_TIMEOUT = 2.0
_FORBIDDEN_IN_PATH = ("\r", "\n", "\0")


class _Failure(Exception):
    """A step failed; the message is safe to show (no password)."""


class _DataSSLSocket(ssl.SSLSocket):
    """A TLS data connection whose closing handshake may fail without failing the transfer.

    ftplib unwraps a data connection after each transfer; some servers (pyftpdlib
    among them, for an empty listing under TLS 1.2) close it without a clean TLS
    shutdown, and unwrap raises. Whether the transfer worked is the server's
    reply on the control connection, which ftplib reads next and checks.
    """

    def unwrap(self) -> socket.socket:
        try:
            return super().unwrap()
        except (ssl.SSLError, OSError):
            return self


class _FtpTls(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session.

    Many servers (vsftpd's require_ssl_reuse, ProFTPD, FileZilla Server) refuse a
    data connection that does not; ftplib on its own never offers it. The data
    connection is always protected: the transport sends PROT P right after login.
    """

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 (wrapped in TLS below)
        session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
        try:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        except BaseException:
            conn.close()
            raise
        return conn, size


class FtpTransport:
    """Reads and atomically replaces one file over FTP, or FTPS with ``tls=True``.

    ``remote_path`` is absolute, or relative to the directory the server puts
    the user in after login. ``timeout`` bounds every socket operation
    (connect, each reply, each block of a transfer). With ``tls=True`` the
    connection is upgraded with AUTH TLS before login and the data connections
    are protected (PROT P); the server certificate is verified against the
    system's CAs, or only against ``ca_file`` when given (a self-signed or
    private CA), unless ``verify_tls=False``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        remote_path: str,
        tls: bool = False,
        timeout: float = 15.0,
        verify_tls: bool = True,
        ca_file: str | None = None,
    ) -> None:
        for label, value in (("host", host), ("username", username), ("remote_path", remote_path)):
            if any(ch in value for ch in _FORBIDDEN_IN_PATH):
                raise ValueError(f"FTP {label} must not contain CR, LF or NUL")
        if any(ch in password for ch in _FORBIDDEN_IN_PATH):
            raise ValueError("FTP password must not contain CR, LF or NUL")
        directory, name = posixpath.split(remote_path)
        if not name or name in (".", ".."):
            raise ValueError(f"FTP remote_path must name a file, got {remote_path!r}")
        if timeout <= 0:
            raise ValueError("FTP timeout must be positive")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.remote_path = remote_path
        self.tls = tls
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self._directory = directory
        self._name = name
        self._ssl_context = self._make_ssl_context() if tls else None

    def __repr__(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        return (
            f"FtpTransport({scheme}://{self.username}@{self.host}:{self.port}/{self.remote_path.lstrip('/')})"
        )

    # --- the FileTransport protocol -------------------------------------------------------

    async def read(self) -> bytes | None:
        return await asyncio.to_thread(self._guarded, self._read_sync)

    async def write_atomic(self, content: bytes) -> None:
        data = bytes(content)

        def write() -> None:
            self._write_sync(data)

        await asyncio.to_thread(self._guarded, write)

    # --- synchronous work, run in a worker thread ----------------------------------------

    def _read_sync(self) -> bytes | None:
        with self._session() as ftp:
            buffer = io.BytesIO()
            try:
                with self._doing(f"downloading {self.remote_path}"):
                    ftp.retrbinary(f"RETR {self.remote_path}", buffer.write)
            except _Failure as failure:
                if not _is_reply(failure.__cause__, "550"):
                    raise
                # 550 means "not found" or "not allowed": tell them apart by listing the directory.
                if self._listed(ftp):
                    raise _Failure(
                        self._where(f"downloading {self.remote_path}")
                        + f": the file exists but the server refused it ({self._reply(failure.__cause__)})"
                    ) from None
                return None
            return buffer.getvalue()

    def _write_sync(self, content: bytes) -> None:
        with self._session() as ftp:
            tag = secrets.token_hex(8)
            hidden = self._name if self._name.startswith(".") else f".{self._name}"
            temporary = posixpath.join(self._directory, f"{hidden}.einlass-{tag}.tmp")
            aside = posixpath.join(self._directory, f"{hidden}.einlass-{tag}.old")
            try:
                with self._doing(f"uploading {temporary}"):
                    ftp.storbinary(f"STOR {temporary}", io.BytesIO(content))
                with self._doing(f"checking the size of {temporary}"):
                    self._check_size(ftp, temporary, len(content))
                self._replace(ftp, temporary, aside)
            except BaseException:
                self._remove_quietly(ftp, temporary)
                raise

    def _replace(self, ftp: ftplib.FTP, temporary: str, aside: str) -> None:
        final = self.remote_path
        try:
            with self._doing(f"renaming {temporary} to {final}"):
                ftp.rename(temporary, final)
            return
        except _Failure as failure:
            if not isinstance(failure.__cause__, ftplib.error_perm):
                raise
            refused = failure
        # The server refused the rename. Perhaps it does not rename onto an existing file:
        # move the old file aside (if there is none, or that fails too, give up with the
        # first refusal), move the new one in, then drop the old one.
        try:
            with self._doing(f"moving the old {final} aside"):
                ftp.rename(final, aside)
        except _Failure as failure:
            if isinstance(failure.__cause__, ftplib.error_perm):
                raise refused from None
            raise
        try:
            with self._doing(f"renaming {temporary} to {final} (after moving the old file aside)"):
                ftp.rename(temporary, final)
        except _Failure:
            with contextlib.suppress(*ftplib.all_errors):
                ftp.rename(aside, final)  # if even this fails, the next write puts a file there
            raise
        self._remove_quietly(ftp, aside)

    def _check_size(self, ftp: ftplib.FTP, path: str, expected: int) -> None:
        try:
            size = _size(ftp, path)
        except ftplib.error_perm as exc:
            if _reply_code(exc) in ("500", "501", "502", "504"):
                return  # SIZE not implemented; the 226 after STOR has to do
            raise
        if size is not None and size != expected:
            raise _Failure(
                self._where(f"uploading {path}") + f": the server stored {size} of {expected} bytes"
            )

    def _listed(self, ftp: ftplib.FTP) -> bool:
        """Whether the final name exists: SIZE answers, or the name shows up in its directory."""
        try:
            with self._doing(f"asking the size of {self.remote_path}"):
                if _size(ftp, self.remote_path) is not None:
                    return True
        except _Failure as failure:
            if not isinstance(failure.__cause__, ftplib.Error):
                raise
            # no such file, not allowed, or SIZE not implemented: ask the listing
        try:
            with self._doing(f"listing {self._directory or '.'}"):
                names = ftp.nlst(self._directory or ".")
        except _Failure as failure:
            if isinstance(failure.__cause__, ftplib.error_perm):
                return False  # the directory is missing, or empty on servers that say 550 then
            raise
        return any(posixpath.basename(n.rstrip("/")) == self._name for n in names)

    def _remove_quietly(self, ftp: ftplib.FTP, path: str) -> None:
        if ftp.sock is None:
            return
        try:
            ftp.sock.settimeout(min(self.timeout, _CLEANUP_TIMEOUT))
            ftp.delete(path)
        except ftplib.error_perm:
            pass  # the DELE's own answer: gone already, or not ours to remove
        except ftplib.Error:
            # Perhaps the late reply of an aborted transfer (426, 451): the DELE's answer follows.
            with contextlib.suppress(*ftplib.all_errors):
                ftp.getresp()
        except (OSError, EOFError):
            pass

    # --- connection -----------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[ftplib.FTP]:
        ftp = self._connect()
        ok = False
        try:
            yield ftp
            ok = True
        finally:
            if ok:
                try:
                    ftp.quit()
                except ftplib.all_errors:
                    ftp.close()
            else:
                ftp.close()

    def _connect(self) -> ftplib.FTP:
        ftp: ftplib.FTP
        if self._ssl_context is not None:
            ftp = _FtpTls(context=self._ssl_context, timeout=self.timeout)
        else:
            ftp = ftplib.FTP(timeout=self.timeout)  # noqa: S321 (plain FTP is the merchant's choice)
        try:
            with self._doing("connecting"):
                ftp.connect(self.host, self.port)
            if isinstance(ftp, ftplib.FTP_TLS):
                with self._doing("starting TLS (AUTH TLS)"):
                    ftp.auth()
            with self._doing(f"logging in as {self.username!r}"):
                ftp.login(self.username, self.password)
            if isinstance(ftp, ftplib.FTP_TLS):
                with self._doing("protecting the data connection (PROT P)"):
                    ftp.prot_p()
        except BaseException:
            ftp.close()
            raise
        return ftp

    def _make_ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"FTPS ca_file {self.ca_file!r} cannot be loaded: {exc}") from None
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.sslsocket_class = _DataSSLSocket
        return context

    # --- errors ---------------------------------------------------------------------------

    def _guarded(self, work: Callable[[], T]) -> T:
        """Run work; turn every failure into TargetUnreachable raised outside any except block."""
        message: str
        try:
            return work()
        except _Failure as failure:
            message = str(failure)
        except ftplib.all_errors as exc:  # outside any named step
            message = self._describe("talking to the server", exc)
        raise TargetUnreachable(message)

    @contextmanager
    def _doing(self, step: str) -> Iterator[None]:
        try:
            yield
        except _Failure:
            raise
        except ftplib.all_errors as exc:
            raise _Failure(self._describe(step, exc)) from exc

    def _where(self, step: str) -> str:
        scheme = "FTPS" if self.tls else "FTP"
        return f"{scheme} {self.host}:{self.port}: {step}"

    def _describe(self, step: str, exc: BaseException) -> str:
        reason: str
        if isinstance(exc, ftplib.Error):
            reply = self._reply(exc)
            if _is_reply(exc, "530") or (step.startswith("logging in") and _is_reply(exc, "5")):
                reason = f"authentication failed ({reply})"
            elif _is_reply(exc, "550") or _is_reply(exc, "553"):
                reason = f"refused: permission denied or no such file or directory ({reply})"
            elif step.startswith("starting TLS") and isinstance(exc, ftplib.error_perm):
                reason = f"the server does not offer explicit TLS ({reply})"
            elif isinstance(exc, ftplib.error_temp):
                reason = f"temporary server error ({reply})"
            else:
                reason = f"unexpected reply ({reply})"
        elif isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
        elif isinstance(exc, ssl.SSLError):
            reason = f"TLS error: {exc.reason or exc}"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, TimeoutError):
            reason = f"timed out after {self.timeout:g} s"
        elif isinstance(exc, socket.gaierror):
            reason = f"cannot resolve the host name ({exc.strerror})"
        elif isinstance(exc, EOFError):
            reason = "the server closed the connection"
        elif isinstance(exc, OSError):
            reason = f"network error: {exc.strerror or exc.__class__.__name__}"
        else:
            reason = exc.__class__.__name__
        return self._scrub(f"{self._where(step)}: {reason}")

    def _reply(self, exc: BaseException | None) -> str:
        return self._scrub(str(exc).strip()[:200])

    def _scrub(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text


def _size(ftp: ftplib.FTP, path: str) -> int | None:
    """SIZE, or None when the server answers something other than a number of bytes."""
    try:
        return ftp.size(path)
    except ValueError:
        return None


def _reply_code(exc: BaseException | None) -> str:
    return str(exc)[:3] if isinstance(exc, ftplib.Error) else ""


def _is_reply(exc: BaseException | None, prefix: str) -> bool:
    return isinstance(exc, ftplib.Error) and str(exc).startswith(prefix)
