"""Bearer tokens for the emulator (the format lives in :mod:`zt_pipelines.gcp.emulator_tokens`,
shared with the clients) and a token-carrying gRPC channel for tests."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp.emulator_tokens import (
    TOKEN_PREFIX,
    EmulatorCredentials,
    caller_from_authorization,
    emulator_credentials,
    token_for,
)

__all__ = [
    "TOKEN_PREFIX",
    "EmulatorCredentials",
    "caller_from_authorization",
    "emulator_channel",
    "emulator_credentials",
    "token_for",
]


def emulator_channel(address: str, credentials: Any = None) -> Any:
    """A gRPC channel to the emulator that carries ``credentials``' bearer token.

    gRPC sends call credentials only over a secure channel; local channel credentials count as
    secure for loopback connections, so the token travels without TLS. Without
    ``credentials`` the channel is plain insecure (no caller).
    """
    import grpc
    from google.auth.transport import grpc as ga_grpc
    from google.auth.transport import requests as ga_requests

    if credentials is None:
        return grpc.insecure_channel(address)
    plugin = ga_grpc.AuthMetadataPlugin(credentials, ga_requests.Request())  # type: ignore[no-untyped-call]
    return grpc.secure_channel(
        address,
        grpc.composite_channel_credentials(
            grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
            grpc.metadata_call_credentials(plugin),
        ),
    )
