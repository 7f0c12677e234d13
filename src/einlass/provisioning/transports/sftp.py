"""An htpasswd file on a server reached over SFTP (asyncssh).

One short SSH connection per call. The server's host key is pinned: the target
stores the server's public host key (``known_host_key``, one or more lines in
OpenSSH public-key or known_hosts format) and a connection to a server that
presents another key is refused. Without a pinned key the transport refuses to
connect at all unless ``insecure_accept_any_host_key=True``. Nothing is read
from the local ``~/.ssh`` (no config file, no agent, no default keys).

``write_atomic`` uploads to a hidden temporary name in the file's directory
(``.{name}.einlass-{random}.tmp``, one dot only for a name that has one;
created exclusively), gives it the old file's permission bits where the server
allows, flushes it to disk where the server offers ``fsync@openssh.com``, and
renames it over the final name with
``posix-rename@openssh.com`` (an atomic replace). A server without that
extension gets the plain SFTP rename, which does not replace an existing file:
then the old file is renamed aside, the new one takes its name and the old one
is removed; between those two renames the final name is missing for one round
trip, and if the second rename fails the old file is put back. On any failure
the temporary file is removed (best effort).

Every failure is raised as ``TargetUnreachable`` with a message that names the
server and the step, never the password or key, and carries no chained
exception (asyncssh's frames hold the credentials).
"""

from __future__ import annotations

import asyncio
import posixpath
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar, cast

import asyncssh
from asyncssh.known_hosts import KnownHostsArg

from einlass.provisioning.base import TargetUnreachable

T = TypeVar("T")

_CLEANUP_TIMEOUT = 2.0
_NETWORK_ERRORS = (asyncssh.Error, OSError, TimeoutError, EOFError)


class _Failure(Exception):
    """A step failed; the message is safe to show (no password, no key)."""


class SftpTransport:
    """Reads and atomically replaces one file over SFTP.

    Authenticates with ``password``, ``private_key`` (PEM or OpenSSH private key
    text, unencrypted) or both (key first). ``remote_path`` is absolute, or
    relative to the directory the server starts the session in. ``timeout``
    bounds connecting (TCP, SSH handshake and authentication) and each SFTP step
    (open, transfer, rename, ...).
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str | None,
        private_key: str | None,
        known_host_key: str | None,
        remote_path: str,
        timeout: float = 15.0,
        insecure_accept_any_host_key: bool = False,
    ) -> None:
        directory, name = posixpath.split(remote_path)
        if not name or name in (".", ".."):
            raise ValueError(f"SFTP remote_path must name a file, got {remote_path!r}")
        if password is None and private_key is None:
            raise ValueError("SFTP needs a password, a private key or both")
        if timeout <= 0:
            raise ValueError("SFTP timeout must be positive")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.remote_path = remote_path
        self.timeout = timeout
        self.insecure_accept_any_host_key = insecure_accept_any_host_key
        self._directory = directory
        self._name = name
        self._client_key = _import_private_key(private_key) if private_key is not None else None
        self._host_keys = _import_host_keys(known_host_key) if known_host_key is not None else None

    def __repr__(self) -> str:
        return f"SftpTransport(sftp://{self.username}@{self.host}:{self.port}/{self.remote_path.lstrip('/')})"

    # --- the FileTransport protocol -------------------------------------------------------

    async def read(self) -> bytes | None:
        return await self._guarded(self._read)

    async def write_atomic(self, content: bytes) -> None:
        data = bytes(content)

        async def write() -> None:
            await self._write(data)

        await self._guarded(write)

    # --- the work -------------------------------------------------------------------------

    async def _read(self) -> bytes | None:
        async with self._session() as sftp:
            try:
                handle = await self._step(f"opening {self.remote_path}", sftp.open(self.remote_path, "rb"))
            except _Failure as failure:
                if isinstance(failure.__cause__, asyncssh.SFTPNoSuchFile):
                    return None
                raise
            try:
                data = await self._step(f"downloading {self.remote_path}", handle.read())
            finally:
                await _quietly(handle.close())
            return cast(bytes, data)  # opened in binary mode

    async def _write(self, content: bytes) -> None:
        async with self._session() as sftp:
            tag = secrets.token_hex(8)
            hidden = self._name if self._name.startswith(".") else f".{self._name}"
            temporary = posixpath.join(self._directory, f"{hidden}.einlass-{tag}.tmp")
            aside = posixpath.join(self._directory, f"{hidden}.einlass-{tag}.old")
            mode = await self._existing_mode(sftp)
            try:
                handle = await self._step(f"creating {temporary}", sftp.open(temporary, "xb"))
                try:
                    await self._step(f"uploading {temporary}", handle.write(content))
                    if mode is not None:
                        try:
                            await self._step(f"setting the mode of {temporary}", handle.chmod(mode))
                        except _Failure as failure:
                            if not _is_sftp_refusal(failure.__cause__):
                                raise  # some hosts forbid chmod: the server's default mode then
                    try:
                        await self._step(f"flushing {temporary}", handle.fsync())
                    except _Failure as failure:
                        if not isinstance(failure.__cause__, asyncssh.SFTPOpUnsupported):
                            raise
                except BaseException:
                    await _quietly(handle.close())
                    raise
                await self._step(f"closing {temporary}", handle.close())
                await self._replace(sftp, temporary, aside)
            except BaseException:
                await _quietly(sftp.remove(temporary))
                raise

    async def _replace(self, sftp: asyncssh.SFTPClient, temporary: str, aside: str) -> None:
        final = self.remote_path
        try:
            await self._step(f"renaming {temporary} to {final}", sftp.posix_rename(temporary, final))
            return
        except _Failure as failure:
            if not isinstance(failure.__cause__, asyncssh.SFTPOpUnsupported):
                raise
        # No posix-rename: the plain SFTP rename, which fails when the target exists.
        try:
            await self._step(f"renaming {temporary} to {final}", sftp.rename(temporary, final))
            return
        except _Failure as failure:
            if not _is_sftp_refusal(failure.__cause__):
                raise
            refused = failure
        try:
            await self._step(f"moving the old {final} aside", sftp.rename(final, aside))
        except _Failure as failure:
            if _is_sftp_refusal(failure.__cause__):
                raise refused from None  # no old file in the way (or it cannot move): first refusal stands
            raise
        try:
            await self._step(
                f"renaming {temporary} to {final} (after moving the old file aside)",
                sftp.rename(temporary, final),
            )
        except _Failure:
            await _quietly(sftp.rename(aside, final))
            raise
        await _quietly(sftp.remove(aside))

    async def _existing_mode(self, sftp: asyncssh.SFTPClient) -> int | None:
        try:
            attrs = await self._step(
                f"reading the attributes of {self.remote_path}", sftp.stat(self.remote_path)
            )
        except _Failure as failure:
            if isinstance(failure.__cause__, asyncssh.SFTPError) and not isinstance(
                failure.__cause__, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection
            ):
                return None  # missing, or not ours to look at: the server's default mode
            raise
        return None if attrs.permissions is None else attrs.permissions & 0o7777

    # --- connection -----------------------------------------------------------------------

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[asyncssh.SFTPClient]:
        known_hosts: KnownHostsArg
        if self._host_keys is not None:
            known_hosts = (self._host_keys, [], [], [], [], [], [])
        elif self.insecure_accept_any_host_key:
            known_hosts = None
        else:
            raise _Failure(
                self._where("connecting") + ": no known host key is configured; refusing to connect"
                " (set the server's public host key, or insecure_accept_any_host_key)"
            )
        conn = await self._step(
            "connecting",
            asyncssh.connect(
                self.host,
                self.port,
                username=self.username,
                password=self.password,
                client_keys=[self._client_key] if self._client_key is not None else None,
                known_hosts=known_hosts,
                agent_path=None,
                config=None,
                gss_auth=False,
                gss_kex=False,
                connect_timeout=self.timeout,
            ),
        )
        try:
            sftp = await self._step("starting the SFTP session", conn.start_sftp_client())
            try:
                yield sftp
            finally:
                sftp.exit()
        finally:
            conn.close()
            await _quietly(conn.wait_closed())

    async def _step(self, step: str, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except _NETWORK_ERRORS as exc:
            raise _Failure(self._describe(step, exc)) from exc

    # --- errors ---------------------------------------------------------------------------

    async def _guarded(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run work; turn every failure into TargetUnreachable raised outside any except block."""
        message: str
        try:
            return await work()
        except _Failure as failure:
            message = str(failure)
        except _NETWORK_ERRORS as exc:  # outside any named step
            message = self._describe("talking to the server", exc)
        raise TargetUnreachable(message)

    def _where(self, step: str) -> str:
        return f"SFTP {self.host}:{self.port}: {step}"

    def _describe(self, step: str, exc: BaseException) -> str:
        reason: str
        if isinstance(exc, asyncssh.PermissionDenied):
            reason = f"authentication failed for user {self.username!r}"
        elif isinstance(exc, asyncssh.HostKeyNotVerifiable):
            reason = (
                "host key verification failed: the server's host key does not match the configured one"
                if self._host_keys is not None
                else f"host key verification failed ({exc.reason})"
            )
        elif isinstance(exc, asyncssh.ConnectionLost | asyncssh.SFTPConnectionLost):
            reason = "the connection was lost"
        elif isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
            reason = f"no such file or directory ({exc.reason})"
        elif isinstance(exc, asyncssh.SFTPPermissionDenied):
            reason = f"permission denied ({exc.reason})"
        elif isinstance(exc, asyncssh.SFTPError):
            reason = f"SFTP error {exc.code}: {exc.reason}"
        elif isinstance(exc, asyncssh.ChannelOpenError):
            reason = f"the server refused the SFTP channel ({exc.reason})"
        elif isinstance(exc, asyncssh.Error):
            reason = f"SSH error: {exc.reason}"
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
        text = f"{self._where(step)}: {reason}"
        return text.replace(self.password, "***") if self.password else text


async def _quietly(awaitable: Awaitable[object]) -> None:
    """Best-effort cleanup: bounded in time, errors ignored."""
    try:
        async with asyncio.timeout(_CLEANUP_TIMEOUT):
            await awaitable
    except (*_NETWORK_ERRORS, ValueError):
        pass


def _is_sftp_refusal(exc: BaseException | None) -> bool:
    """The server answered the request with an error status (the session itself is fine)."""
    return isinstance(exc, asyncssh.SFTPError) and not isinstance(
        exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection
    )


def _import_private_key(text: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(text)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise ValueError(
            "SFTP private_key is not an unencrypted private key in PEM or OpenSSH format"
        ) from None


def _import_host_keys(text: str) -> list[asyncssh.SSHKey]:
    """Public host keys from lines in OpenSSH public-key format or known_hosts format."""
    keys: list[asyncssh.SSHKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        candidates = [line]
        first, _, rest = line.partition(" ")
        if rest and not first.startswith("@"):
            candidates.append(rest.strip())  # known_hosts: a host pattern comes first
        for candidate in candidates:
            try:
                keys.append(asyncssh.import_public_key(candidate))
                break
            except (asyncssh.KeyImportError, ValueError, TypeError):
                continue
        else:
            raise ValueError(f"SFTP known_host_key line {number} is not an SSH public key")
    if not keys:
        raise ValueError("SFTP known_host_key holds no public key")
    return keys
