"""Cloud Logging ``entries.list`` (gRPC ``google.logging.v2.LoggingServiceV2/ListLogEntries``)
over the emulator's audit log store (:mod:`zt_pipelines.emulator.audit_logs`).

IAM on the caller as on Google: ``logging.logEntries.list`` on each project named, and
``logging.privateLogEntries.list`` too when the filter can return Data Access entries. Pages of
at most 1000 entries; the page token is an offset this emulator issued.

Organisation scale: a resource name may be a log view
(``projects/P/locations/L/buckets/B/views/V``, ``logging.views.access``) over the entries the
Log Router sinks route into its bucket; ``ConfigServiceV2`` serves ``ListSinks`` and
``GetView`` so a reader can prove which projects a view holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from google.cloud.logging_v2.types import logging as logging_types
from google.cloud.logging_v2.types import logging_config

from zt_pipelines.emulator.audit_logs import DATA_ACCESS, FilterError, parse_filter
from zt_pipelines.emulator.routing import GrpcMethod
from zt_pipelines.emulator.world import EmulatorError, World, page
from zt_pipelines.resources import CRM

_Request = logging_types.ListLogEntriesRequest.pb()
_Response = logging_types.ListLogEntriesResponse.pb()
_SinksResponse = logging_config.ListSinksResponse.pb()


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
        if _VIEW.match(name):
            found.extend(_view_entries(world, name, keep, caller))
            continue
        kind, _, ref = name.partition("/")
        if kind != "projects" or not ref or "/" in ref:
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


_VIEW = re.compile(r"^projects/([^/]+)/locations/([^/]+)/buckets/([^/]+)/views/([^/]+)$")


def _ancestry(world: World, project: str) -> list[str]:
    """``folders/F`` ... ``organizations/O`` above a project, nearest first."""
    out: list[str] = []
    node = world.node(f"{CRM}projects/{project}")
    while node is not None and node.parent and len(out) < 64:
        out.append(node.parent.removeprefix(CRM))
        node = world.node(node.parent)
    return out


def _projects(world: World) -> list[str]:
    snapshot = world.snapshot()
    return sorted(
        n.rsplit("/", 1)[-1] for n, node in snapshot.nodes.items() if node.kind == "project"
    )


def _view_entries(
    world: World, name: str, keep: Callable[[Any], bool], caller: str | None
) -> list[Any]:
    """The entries of a log view: what the enabled sinks routing into its bucket (on a project
    or, with ``includeChildren``, an ancestor) carry, minus their exclusions, through the
    view's filter. Routing is applied when read (Google applies it when an entry is written:
    an entry older than its sink is not in the bucket there)."""
    view = world.log_store.views.get(name)
    project = name.split("/", 2)[1]
    world.authorize(caller, "logging.views.access", f"{CRM}projects/{project}")
    if view is None:
        raise EmulatorError("NOT_FOUND", f"log view {name} not found")
    bucket = name.rsplit("/views/", 1)[0]
    shown = parse_filter(view.filter) if view.filter.strip() else None
    found: list[Any] = []
    routed = world.log_store.routed(bucket, _projects(world), lambda p: _ancestry(world, p))
    for source, sinks in routed:
        for stored in world.log_store.select_stored(source, keep):
            if shown is not None and not shown(stored):
                continue
            for sink in sinks:
                if sink.filter.strip() and not parse_filter(sink.filter)(stored):
                    continue
                if any(not e.disabled and parse_filter(e.filter)(stored) for e in sink.exclusions):
                    continue
                found.append(stored)
                break
    found.sort()
    return [s.entry for s in found]


def list_sinks(world: World, request: Any, caller: str | None) -> Any:
    """sinks.list: the Log Router sinks of an organisation, folder or project (one page)."""
    parent = request.parent
    if not re.match(r"^(organizations|folders|projects)/[^/]+$", parent):
        raise EmulatorError("INVALID_ARGUMENT", f"unsupported parent {parent!r}")
    world.authorize(caller, "logging.sinks.list", f"{CRM}{parent}")
    response = _SinksResponse()
    response.sinks.extend(world.log_store.sinks.get(parent, ()))
    return response


def get_view(world: World, request: Any, caller: str | None) -> Any:
    """views.get: a log view's configuration (its filter)."""
    match = _VIEW.match(request.name)
    if match is None:
        raise EmulatorError("INVALID_ARGUMENT", f"unsupported view name {request.name!r}")
    world.authorize(caller, "logging.views.get", f"{CRM}projects/{match.group(1)}")
    view = world.log_store.views.get(request.name)
    if view is None:
        raise EmulatorError("NOT_FOUND", f"log view {request.name} not found")
    return view


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
    GrpcMethod(
        "google.logging.v2.ConfigServiceV2",
        "ListSinks",
        logging_config.ListSinksRequest.pb(),
        _SinksResponse,
        lambda r: r.parent,
        False,
        list_sinks,
        "logging",
    ),
    GrpcMethod(
        "google.logging.v2.ConfigServiceV2",
        "GetView",
        logging_config.GetViewRequest.pb(),
        logging_config.LogView.pb(),
        lambda r: r.name,
        False,
        get_view,
        "logging",
    ),
)
