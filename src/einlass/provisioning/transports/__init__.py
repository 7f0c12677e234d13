"""File transports for htpasswd targets, chosen by the target's kind.

The FTP and SFTP transports load only when a target of that kind is reconciled,
so their client libraries cost nothing to a deployment that writes local files.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, cast

from einlass.provisioning.base import FileTransport
from einlass.provisioning.models import (
    TARGET_FTP,
    TARGET_FTPS,
    TARGET_HTPASSWD_FILE,
    TARGET_SFTP,
    ProvisioningTarget,
)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_PORTS = {TARGET_FTP: 21, TARGET_FTPS: 21, TARGET_SFTP: 22}


class TransportUnavailable(RuntimeError):
    """The transport for a kind is not installed in this build."""


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(f"einlass.provisioning.transports.{module}"), name)
    except (ImportError, AttributeError) as error:
        raise TransportUnavailable(f"the {module} transport is not available: {error}") from error


def transport_for(target: ProvisioningTarget, secrets: Mapping[str, Any]) -> FileTransport:
    """The transport that reads and writes the target's htpasswd file."""
    config = target.config or {}
    timeout = float(config.get("timeout") or DEFAULT_TIMEOUT_S)
    if target.kind == TARGET_HTPASSWD_FILE:
        from einlass.provisioning.transports.local import LocalFileTransport

        return LocalFileTransport(config["path"])
    if target.kind in (TARGET_FTP, TARGET_FTPS):
        ftp = _load("ftp", "FtpTransport")
        return cast(
            FileTransport,
            ftp(
                host=config["host"],
                port=int(config.get("port") or DEFAULT_PORTS[target.kind]),
                username=config["username"],
                password=str(secrets.get("password") or ""),
                remote_path=config["remote_path"],
                tls=target.kind == TARGET_FTPS,
                timeout=timeout,
                verify_tls=bool(config.get("verify_tls", True)),
                ca_file=config.get("ca_file") or None,
            ),
        )
    if target.kind == TARGET_SFTP:
        sftp = _load("sftp", "SftpTransport")
        return cast(
            FileTransport,
            sftp(
                host=config["host"],
                port=int(config.get("port") or DEFAULT_PORTS[TARGET_SFTP]),
                username=config["username"],
                password=secrets.get("password") or None,
                private_key=secrets.get("private_key") or None,
                known_host_key=config.get("known_host_key") or None,
                remote_path=config["remote_path"],
                timeout=timeout,
                insecure_accept_any_host_key=bool(config.get("insecure_accept_any_host_key")),
            ),
        )
    raise ValueError(f"targets of kind {target.kind!r} hold no htpasswd file")
