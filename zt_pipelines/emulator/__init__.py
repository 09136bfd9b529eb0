"""A wire-level emulator of the Google APIs zt-pipelines reads and writes.

One loopback ``host:port`` serves gRPC (IAM admin, Resource Manager, IAM v2 deny policies,
Cloud Asset, Policy Troubleshooter) and HTTP/1.1 (Storage JSON API, Vertex AI REST, BigQuery
IAM), with state from a :class:`~zt_pipelines.policy.snapshot.Snapshot`. It checks its own
callers' permissions with our engine, and offers latency, scripted faults and a request log to
tests and benchmarks. See ``docs/emulator.md``.

    with Emulator(snapshot) as emu:
        os.environ["ZT_EMULATOR_HOST"] = emu.address
        ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zt_pipelines.emulator.auth import (
        EmulatorCredentials,
        emulator_channel,
        emulator_credentials,
        token_for,
    )
    from zt_pipelines.emulator.faults import Fault, FaultSpecError
    from zt_pipelines.emulator.records import RequestRecord
    from zt_pipelines.emulator.server import Emulator

ENV_VAR = "ZT_EMULATOR_HOST"

# name -> submodule; imported on first use so that `emulator.auth` (tests and tools) does not
# pull in the servers and every gRPC service definition
_LAZY = {
    "EmulatorCredentials": "auth",
    "emulator_channel": "auth",
    "emulator_credentials": "auth",
    "token_for": "auth",
    "Fault": "faults",
    "FaultSpecError": "faults",
    "RequestRecord": "records",
    "Emulator": "server",
}

__all__ = [
    "ENV_VAR",
    "Emulator",
    "EmulatorCredentials",
    "Fault",
    "FaultSpecError",
    "RequestRecord",
    "emulator_channel",
    "emulator_credentials",
    "token_for",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zt_pipelines.emulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"zt_pipelines.emulator.{module}"), name)
    globals()[name] = value
    return value
