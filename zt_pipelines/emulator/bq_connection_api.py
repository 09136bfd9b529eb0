"""The emulator's BigQuery Connection API: ``ListConnections`` with the real request/response
types (``bigquery_connection_v1``).

A world's connections are the ones its owner added (:func:`add_connection`) plus one per
connection service account the IAM state names (``bqcx-NUMBER-XXXX@gcp-sa-bigquery-condel``:
Google creates that account with its connection and for nothing else), a Cloud resource
connection ``XXXX`` in location ``us`` of project NUMBER.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.cloud import bigquery_connection_v1 as bqc

from zt_pipelines.emulator.routing import GrpcMethod
from zt_pipelines.emulator.world import EmulatorError, World, page
from zt_pipelines.resources import CRM

_CONDEL = re.compile(
    r"^bqcx-([0-9]+)-([a-z0-9]+)@gcp-sa-bigquery-condel\.iam\.gserviceaccount\.com$"
)
_PARENT = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
_KINDS = ("cloud_resource", "cloud_sql", "spark")


@dataclass(frozen=True)
class Connection:
    """One BigQuery connection: ``projects/P/locations/L/connections/ID`` acting as
    ``account`` (``kind``: ``cloud_resource``, ``cloud_sql`` or ``spark``)."""

    project: str
    location: str
    connection_id: str
    account: str
    kind: str = "cloud_resource"

    @property
    def name(self) -> str:
        """Its resource name (``projects/P/locations/L/connections/ID``)."""
        return f"projects/{self.project}/locations/{self.location}/connections/{self.connection_id}"


def connections_of(world: World) -> list[Connection]:
    """The world's connections (derived from its IAM state on first use, then kept)."""
    with world.lock:
        found: list[Connection] | None = getattr(world, "bq_connections", None)
        if found is None:
            found = _derived(world)
            world.bq_connections = found  # type: ignore[attr-defined]
        return found


def add_connection(world: World, connection: Connection) -> None:
    """Add a connection to the world."""
    if connection.kind not in _KINDS:
        raise ValueError(f"connection kind must be one of {_KINDS}, not {connection.kind!r}")
    with world.lock:
        connections_of(world).append(connection)


def _derived(world: World) -> list[Connection]:
    named = {
        m.partition(":")[2].lower()
        for n in world.nodes.values()
        if n.policy
        for b in n.policy.bindings
        for m in b.members
    }
    named |= set(world.service_accounts)
    out = []
    for email in sorted(named):
        match = _CONDEL.match(email)
        if match is None:
            continue
        project = world.project_id(match.group(1))
        if project is not None:
            out.append(Connection(project, "us", match.group(2), email))
    return out


def _message(c: Connection) -> Any:
    message = bqc.Connection(name=c.name, friendly_name=c.connection_id)
    if c.kind == "cloud_sql":
        message.cloud_sql = bqc.CloudSqlProperties(service_account_id=c.account)
    elif c.kind == "spark":
        message.spark = bqc.SparkProperties(service_account_id=c.account)
    else:
        message.cloud_resource = bqc.CloudResourceProperties(service_account_id=c.account)
    return message


def list_connections(world: World, request: Any, caller: str | None) -> Any:
    """ListConnections: the connections of the parent's project in its location, paginated;
    needs ``bigquery.connections.list`` on the project."""
    match = _PARENT.match(str(request.parent))
    if match is None:
        raise EmulatorError(
            "INVALID_ARGUMENT", f"parent {request.parent!r} is not projects/P/locations/L"
        )
    if request.page_size <= 0:
        raise EmulatorError("INVALID_ARGUMENT", "page_size is required")
    project = world.project_id(match.group(1)) or match.group(1)
    location = match.group(2).lower()
    world.authorize(caller, "bigquery.connections.list", f"{CRM}projects/{project}")
    found = [c for c in connections_of(world) if c.project == project and c.location == location]
    items, token = page(found, request.page_size, request.page_token, 100)
    return bqc.ListConnectionsResponse(
        connections=[_message(c) for c in items], next_page_token=token
    )


METHODS: tuple[GrpcMethod, ...] = (
    GrpcMethod(
        "google.cloud.bigquery.connection.v1.ConnectionService",
        "ListConnections",
        bqc.ListConnectionsRequest,
        bqc.ListConnectionsResponse,
        lambda r: str(r.parent),
        False,
        list_connections,
        "bigqueryconnection",
    ),
)
