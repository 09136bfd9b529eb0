"""Vertex AI adapter: persistent resources (``aiplatform_v1.PersistentResourceServiceClient``).

A step may run its CustomJob on a persistent resource; whether that resource runs jobs as the
job's own service account is a property of the resource
(``resourceRuntimeSpec.serviceAccountSpec.enableCustomServiceAccount``), read here and judged
by :mod:`zt_pipelines.policy.gcpc_checks`. Vertex is regional: against Google the client talks
to ``LOCATION-aiplatform.googleapis.com``; against the emulator, REST to its HTTP endpoint.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from zt_pipelines.errors import ApiError
from zt_pipelines.gcp._base import Adapter
from zt_pipelines.policy.snapshot import PersistentResource, Unreadable

_NAME = re.compile(
    r"^projects/(?P<project>[^/\s]+)/locations/(?P<location>[a-z0-9-]+)/persistentResources/"
    r"(?P<id>[a-z]([a-z0-9-]{0,61}[a-z0-9])?)$"
)
WHAT = "persistentResources.get"


class VertexAdapter(Adapter):
    """Reads Vertex AI persistent resources through the official client (one per region)."""

    _lock = threading.Lock()

    def _client(self, location: str) -> Any:
        from google.cloud import aiplatform_v1

        with self._lock:
            clients: dict[str, Any] = self.__dict__.setdefault("_clients", {})
            if location not in clients:
                cls = aiplatform_v1.PersistentResourceServiceClient
                creds = self.factory.credentials
                if self.factory.emulator_host:
                    clients[location] = cls(
                        credentials=creds,
                        transport="rest",
                        client_options={"api_endpoint": self.factory.http_endpoint},
                    )
                else:
                    clients[location] = cls(
                        credentials=creds,
                        client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"},
                    )
            return clients[location]

    def get_persistent_resource(self, name: str) -> PersistentResource:
        """The persistent resource ``projects/P/locations/L/persistentResources/ID``.

        Raises:
            ApiError: the read failed after retries (``code`` ``NOT_FOUND`` when it does not
                exist), or ``name`` is not a persistent resource name.
        """
        match = _NAME.match(name)
        if match is None:
            raise ApiError(
                f"{name!r} is not a persistent resource name",
                where=WHAT,
                code="INVALID_ARGUMENT",
            )
        client = self._client(match["location"])

        def run() -> PersistentResource:
            found: Any = client.get_persistent_resource(name=name, **self.gapic_kwargs())
            runtime = found.resource_runtime_spec
            spec = runtime.service_account_spec if runtime else None
            return PersistentResource(
                name=name,  # the name asked for: Vertex answers with the project number
                enable_custom_service_account=bool(spec and spec.enable_custom_service_account),
                state=found.state.name if found.state else "",
            )

        return self.call(run, what=WHAT, target=name)


def read_persistent_resources(
    adapter: VertexAdapter, names: Iterable[str]
) -> tuple[dict[str, PersistentResource], list[Unreadable]]:
    """Read each named persistent resource once.

    A resource that does not exist is simply absent (the check reports it as unknown,
    ZT121); any other failure is an :class:`Unreadable` (ZT400). Fail closed either way.
    """
    found: dict[str, PersistentResource] = {}
    failed: list[Unreadable] = []
    for name in sorted(set(names)):
        try:
            found[name] = adapter.get_persistent_resource(name)
        except ApiError as exc:
            if exc.code != "NOT_FOUND":
                failed.append(Unreadable(name, WHAT, f"{exc.code or 'ERROR'}: {exc.message}"))
    return found, failed
