"""Cloud Logging ``entries.list`` (gRPC ``google.logging.v2.LoggingServiceV2/ListLogEntries``)
over the emulator's audit log store (:mod:`zt_pipelines.emulator.audit_logs`).

IAM on the caller as on Google: ``logging.logEntries.list`` on each project named, and
``logging.privateLogEntries.list`` too when the filter can return Data Access entries. Pages of
at most 1000 entries; the page token is an offset this emulator issued.
"""

from __future__ import annotations

from typing import Any

from google.cloud.logging_v2.types import logging as logging_types

from zt_pipelines.emulator.audit_logs import DATA_ACCESS, FilterError, parse_filter
from zt_pipelines.emulator.routing import GrpcMethod
from zt_pipelines.emulator.world import EmulatorError, World, page
from zt_pipelines.resources import CRM

_Request = logging_types.ListLogEntriesRequest.pb()
_Response = logging_types.ListLogEntriesResponse.pb()


def list_log_entries(world: World, request: Any, caller: str | None) -> Any:
    """entries.list: one page of the matching entries, oldest first."""
    if not request.resource_names:
        raise EmulatorError("INVALID_ARGUMENT", "resource_names is required")
    if request.order_by and request.order_by.replace(" ", "") not in ("timestampasc", "timestamp"):
        raise EmulatorError("INVALID_ARGUMENT", f"order_by {request.order_by!r} is not supported")
    try:
        keep = parse_filter(request.filter) if request.filter.strip() else (lambda _s: True)
    except FilterError as exc:
        raise EmulatorError("INVALID_ARGUMENT", str(exc)) from exc
    found: list[Any] = []
    for name in request.resource_names:
        kind, _, ref = name.partition("/")
        if kind != "projects" or not ref:
            raise EmulatorError("INVALID_ARGUMENT", f"unsupported resource name {name!r}")
        project = world.project_id(ref) or ref
        full = f"{CRM}projects/{project}"
        world.authorize(caller, "logging.logEntries.list", full)
        if DATA_ACCESS in request.filter or "logName" not in request.filter:
            world.authorize(caller, "logging.privateLogEntries.list", full)
        found.extend(world.log_store.select(project, keep, key=request.filter))
    size = min(request.page_size or 1000, 1000)
    items, token = page(found, size, request.page_token, 1000)
    response = _Response(next_page_token=token)
    response.entries.extend(items)
    return response


METHODS = (
    GrpcMethod(
        "google.logging.v2.LoggingServiceV2",
        "ListLogEntries",
        _Request,
        _Response,
        lambda r: ",".join(r.resource_names),
        False,
        list_log_entries,
        "logging",
    ),
)
