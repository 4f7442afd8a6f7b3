"""Connecting to Temporal: flags over Temporal's own environment variables and config profile.

Temporal's environment configuration (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``, ``TEMPORAL_TLS_CLIENT_CERT_PATH``,
``TEMPORAL_TLS_CLIENT_KEY_PATH``, ``TEMPORAL_TLS_SERVER_CA_CERT_PATH``,
``TEMPORAL_TLS_SERVER_NAME``, ``TEMPORAL_PROFILE`` and the ``temporal.toml`` profile file) is read
by the SDK, as the ``temporal`` CLI reads it; a flag wins over it. With an API key TLS is on
(Temporal Cloud); a self-hosted cluster takes the address and, if it uses mTLS, the cert flags.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from temporalio.client import Client
from temporalio.service import TLSConfig

from engine.errors import RunbookError
from engine.temporal import DEFAULT_TASK_QUEUE

__all__ = ["Connection", "connect"]

DEFAULT_ADDRESS = "localhost:7233"


class Connection(NamedTuple):
    """The connection flags of ``worker``, ``submit``, ``status`` and ``results`` (None: not given)."""

    address: str | None = None
    namespace: str | None = None
    task_queue: str | None = None
    api_key: str | None = None
    tls: bool | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_server_name: str | None = None

    @property
    def queue(self) -> str:
        return self.task_queue or os.environ.get("RUNBOOK_TASK_QUEUE") or DEFAULT_TASK_QUEUE


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise RunbookError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None


def connect_args(options: Connection) -> dict[str, Any]:
    """The keyword arguments of ``Client.connect``: the profile and environment, then the flags."""
    from temporalio.envconfig import ClientConfig

    try:
        args: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    except Exception as exc:  # a malformed temporal.toml or TEMPORAL_* value
        raise RunbookError(f"the Temporal configuration (TEMPORAL_* variables, temporal.toml): {exc}") from None
    if options.address:
        args["target_host"] = options.address
    args.setdefault("target_host", DEFAULT_ADDRESS)
    if options.namespace:
        args["namespace"] = options.namespace
    if options.api_key:
        args["api_key"] = options.api_key
        args.setdefault("tls", True)
    if any((options.tls_cert, options.tls_key, options.tls_ca, options.tls_server_name)):
        args["tls"] = TLSConfig(
            client_cert=_read(options.tls_cert, "--tls-cert") if options.tls_cert else None,
            client_private_key=_read(options.tls_key, "--tls-key") if options.tls_key else None,
            server_root_ca_cert=_read(options.tls_ca, "--tls-ca") if options.tls_ca else None,
            domain=options.tls_server_name,
        )
    elif options.tls is not None:
        args["tls"] = options.tls
    return args


async def connect(options: Connection) -> Client:
    """A client of the cluster the options (and Temporal's environment) name; exit 2 if unreachable."""
    args = connect_args(options)
    try:
        return await Client.connect(**args)
    except Exception as exc:  # unreachable, refused, bad credentials: not a bug
        raise RunbookError(f"cannot connect to Temporal at {args['target_host']} "
                           f"(namespace {args.get('namespace', 'default')}): {exc}") from None
