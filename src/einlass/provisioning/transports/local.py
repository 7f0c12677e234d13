"""An htpasswd file on this machine's disk (or a mounted one)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
from pathlib import Path

from einlass.provisioning.base import TargetUnreachable

DEFAULT_MODE = 0o640


class LocalFileTransport:
    """Reads the file, and replaces it atomically: a reader (nginx) sees the old file or the new one.

    The new content goes to a temporary file in the same directory, is flushed
    to disk (fsync), gets the old file's mode (0640 for a new file) and, when
    allowed, its owner and group, and is renamed over the old file; then the
    directory is fsynced so that the rename survives a crash.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = DEFAULT_MODE) -> None:
        self.path = Path(path)
        self.mode = mode

    def __repr__(self) -> str:
        return f"LocalFileTransport({str(self.path)!r})"

    async def read(self) -> bytes | None:
        return await asyncio.to_thread(self._read)

    async def write_atomic(self, content: bytes) -> None:
        await asyncio.to_thread(self._write, content)

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            if not self.path.parent.is_dir():
                raise TargetUnreachable(f"directory {self.path.parent} does not exist") from None
            return None
        except OSError as error:
            raise TargetUnreachable(f"cannot read {self.path}: {error.strerror or error}") from error

    def _write(self, content: bytes) -> None:
        directory = self.path.parent
        try:
            existing: os.stat_result | None = self.path.stat()
        except FileNotFoundError:
            existing = None
        except OSError as error:
            raise TargetUnreachable(f"cannot stat {self.path}: {error.strerror or error}") from error
        mode = stat.S_IMODE(existing.st_mode) if existing else self.mode
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        except OSError as error:
            raise TargetUnreachable(f"cannot write in {directory}: {error.strerror or error}") from error
        try:
            try:
                os.fchmod(handle, mode)
                if existing is not None:
                    # Keep the group nginx reads the file as; only possible as root or the owner.
                    with contextlib.suppress(PermissionError):
                        os.fchown(handle, existing.st_uid, existing.st_gid)
                view = memoryview(content)
                while view:
                    view = view[os.write(handle, view) :]
                os.fsync(handle)
            finally:
                os.close(handle)
            os.replace(temporary, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise TargetUnreachable(f"cannot write {self.path}: {error.strerror or error}") from error
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
