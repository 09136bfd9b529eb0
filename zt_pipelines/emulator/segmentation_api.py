"""Emulator routes for segmentation: the Compute networking reads (REST, the Compute JSON wire
format), Vertex AI ``endpoints.list`` (REST, the aiplatform JSON wire format) and Cloud Asset
``ListAssets`` for ``ACCESS_POLICY`` perimeters (gRPC).

The world's ``segmentation`` section is what they serve; every route enforces IAM on its
caller (``compute.*.get/list`` and ``aiplatform.endpoints.list`` on the project,
``cloudasset.assets.listAccessPolicy`` on the organisation) and runs through the shared gate,
so scripted faults apply by method name (``compute.firewalls.list``,
``aiplatform.endpoints.list``, ``google.cloud.asset.v1.AssetService/ListAssets``).
"""

from __future__ import annotations

from typing import Any

from google.cloud import asset_v1
from google.identity.accesscontextmanager.v1 import service_perimeter_pb2
from google.protobuf import json_format

from zt_pipelines.emulator.routing import Body, GrpcMethod, Request, Route
from zt_pipelines.emulator.routing import route as _route
from zt_pipelines.emulator.world import EmulatorError, World, page
from zt_pipelines.resources import CRM
from zt_pipelines.segmentation.model import SegmentationState, format_range
from zt_pipelines.segmentation.snapshot import dump_section

_LINK = "https://www.googleapis.com/compute/v1/"
_C = r"^/compute/v1/projects/(?P<project>[^/]+)"


def _state(world: World) -> SegmentationState:
    return world.snapshot().segmentation or SegmentationState()


def _project(world: World, req: Request, permission: str) -> str:
    project = req.segments["project"]
    if world.node(f"{CRM}projects/{project}") is None:
        raise EmulatorError("NOT_FOUND", f"The resource 'projects/{project}' was not found")
    world.authorize(req.caller, permission, f"{CRM}projects/{project}")
    return project


def _not_found(what: str) -> EmulatorError:
    return EmulatorError("NOT_FOUND", f"The resource '{what}' was not found")


def network_get(world: World, req: Request) -> tuple[int, Body]:
    """compute.networks.get."""
    project = _project(world, req, "compute.networks.get")
    name = f"projects/{project}/global/networks/{req.segments['name']}"
    state = _state(world)
    net = (state.networks or {}).get(name)
    if net is None:
        raise _not_found(name)
    return 200, {
        "kind": "compute#network",
        "id": str(abs(hash(name)) % 10**18),
        "name": req.segments["name"],
        "selfLink": _LINK + name,
        "autoCreateSubnetworks": False,
        "subnetworks": [_LINK + s.name for s in state.subnetworks.values() if s.network == name],
        "peerings": [
            {"name": p.rsplit("/", 1)[-1], "network": _LINK + p, "state": "ACTIVE"}
            for p in net.peerings
        ],
    }


def subnetwork_get(world: World, req: Request) -> tuple[int, Body]:
    """compute.subnetworks.get."""
    project = _project(world, req, "compute.subnetworks.get")
    region = req.segments["region"]
    name = f"projects/{project}/regions/{region}/subnetworks/{req.segments['name']}"
    subnet = _state(world).subnetworks.get(name)
    if subnet is None or not subnet.ranges:
        raise _not_found(name)
    return 200, {
        "kind": "compute#subnetwork",
        "name": req.segments["name"],
        "selfLink": _LINK + name,
        "network": _LINK + subnet.network,
        "region": f"{_LINK}projects/{project}/regions/{region}",
        "ipCidrRange": format_range(subnet.ranges[0]),
        "secondaryIpRanges": [
            {"rangeName": f"range-{i}", "ipCidrRange": format_range(r)}
            for i, r in enumerate(subnet.ranges[1:])
        ],
        "privateIpGoogleAccess": subnet.private_google_access,
    }


def attachment_get(world: World, req: Request) -> tuple[int, Body]:
    """compute.networkAttachments.get."""
    project = _project(world, req, "compute.networkAttachments.get")
    region = req.segments["region"]
    name = f"projects/{project}/regions/{region}/networkAttachments/{req.segments['name']}"
    att = _state(world).attachments.get(name)
    if att is None:
        raise _not_found(name)
    return 200, {
        "kind": "compute#networkAttachment",
        "name": req.segments["name"],
        "selfLink": _LINK + name,
        "region": f"{_LINK}projects/{project}/regions/{region}",
        "network": _LINK + att.network,
        "subnetworks": [_LINK + s for s in att.subnetworks],
        "connectionPreference": att.connection_preference,
    }


def _max_results(req: Request) -> int:
    try:
        return int(req.query.get("maxResults") or 0)
    except ValueError as exc:
        raise EmulatorError("INVALID_ARGUMENT", "maxResults is not a number") from exc


def firewall_list(world: World, req: Request) -> tuple[int, Body]:
    """compute.firewalls.list (paged)."""
    project = _project(world, req, "compute.firewalls.list")
    prefix = f"projects/{project}/"
    section = dump_section(_state(world))
    items = []
    for raw in section["firewalls"]:
        if not raw["network"].startswith(prefix):
            continue
        item = {k: v for k, v in raw.items()}
        item.update(
            kind="compute#firewall",
            name=raw["name"].rsplit("/", 1)[-1],
            selfLink=_LINK + raw["name"],
            network=_LINK + raw["network"],
        )
        for key in ("allowed", "denied"):
            for entry in item.get(key, []):
                proto = entry["IPProtocol"]
                names = {"6": "tcp", "17": "udp", "1": "icmp", "132": "sctp"}
                entry["IPProtocol"] = names.get(proto, proto)
        items.append(item)
    shown, token = page(items, _max_results(req), req.query.get("pageToken", ""), 500)
    body: dict[str, Any] = {"kind": "compute#firewallList", "items": shown}
    if token:
        body["nextPageToken"] = token
    return 200, body


def address_list(world: World, req: Request) -> tuple[int, Body]:
    """compute.globalAddresses.list (paged): the private services access ranges."""
    project = _project(world, req, "compute.globalAddresses.list")
    items = []
    for a in _state(world).allocated_ranges:
        if not a.network.startswith(f"projects/{project}/"):
            continue
        first, _, length = format_range(a.range).partition("/")
        items.append(
            {
                "kind": "compute#address",
                "name": a.name.rsplit("/", 1)[-1],
                "address": first,
                "prefixLength": int(length or 32),
                "addressType": "INTERNAL",
                "purpose": "VPC_PEERING",
                "network": _LINK + a.network,
                "status": "RESERVED",
            }
        )
    shown, token = page(items, _max_results(req), req.query.get("pageToken", ""), 500)
    body: dict[str, Any] = {"kind": "compute#addressList", "items": shown}
    if token:
        body["nextPageToken"] = token
    return 200, body


def _number_form(world: World, name: str) -> str:
    """``projects/NUMBER/...`` (how Vertex writes names) from an id-based name."""
    parts = name.split("/")
    if len(parts) > 1 and parts[0] == "projects" and not parts[1].isdigit():
        parts[1] = world.project_number(parts[1])
    return "/".join(parts)


def endpoint_list(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.endpoints.list (paged): the world's endpoints on VPC networks, as Vertex
    returns them — a private endpoint with ``network`` and its deployed models' private URIs
    (one per single-address range), a PSC endpoint with its automation configs."""
    ref, location = req.segments["project"], req.segments["location"]
    project = world.project_id(ref) or ref
    world.authorize(req.caller, "aiplatform.endpoints.list", f"{CRM}projects/{project}")
    number = world.project_number(project)
    grouped: dict[str, dict[str, Any]] = {}
    for e in _state(world).endpoints:
        parts = e.name.split("/")
        if len(parts) != 6 or parts[1] not in (project, number) or parts[3] != location:
            continue
        name = f"projects/{number}/locations/{location}/endpoints/{parts[5]}"
        body = grouped.setdefault(name, {"name": name, "displayName": parts[5]})
        addresses = [
            format_range(r).split("/")[0] for r in e.ranges if r[0] == r[1]
        ]  # a wider range has no one address: no deployed model shows where it answers
        if e.via == "psc":
            config = body.setdefault(
                "privateServiceConnectConfig",
                {"enablePrivateServiceConnect": True, "pscAutomationConfigs": []},
            )
            for address in addresses:
                config["pscAutomationConfigs"].append(
                    {
                        "projectId": e.network.split("/")[1],
                        "network": e.network,
                        "ipAddress": address,
                        "state": "PSC_AUTOMATION_STATE_SUCCESSFUL",
                    }
                )
            continue
        body["network"] = _number_form(world, e.network)
        models = body.setdefault("deployedModels", [])
        for address in addresses:
            model = str(len(models) + 1)
            uri = f"http://{address}:8080/v1/models/{model}"
            models.append(
                {
                    "id": model,
                    "model": f"projects/{number}/locations/{location}/models/m{model}",
                    "privateEndpoints": {
                        "predictHttpUri": uri + ":predict",
                        "healthHttpUri": uri,
                    },
                }
            )
    items = [grouped[n] for n in sorted(grouped)]
    try:
        size = int(req.query.get("pageSize", "0") or 0)
    except ValueError as exc:
        raise EmulatorError("INVALID_ARGUMENT", "pageSize is not a number") from exc
    shown, token = page(items, size, req.query.get("pageToken", ""), 100)
    out: dict[str, Any] = {"endpoints": shown}
    if token:
        out["nextPageToken"] = token
    return 200, out


ROUTES: tuple[Route, ...] = (
    _route(
        "GET",
        r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints",
        "aiplatform",
        "aiplatform.endpoints.list",
        False,
        endpoint_list,
    ),
    _route(
        "GET",
        _C + r"/global/networks/(?P<name>[^/]+)",
        "compute",
        "compute.networks.get",
        False,
        network_get,
    ),
    _route(
        "GET",
        _C + r"/regions/(?P<region>[^/]+)/subnetworks/(?P<name>[^/]+)",
        "compute",
        "compute.subnetworks.get",
        False,
        subnetwork_get,
    ),
    _route(
        "GET",
        _C + r"/regions/(?P<region>[^/]+)/networkAttachments/(?P<name>[^/]+)",
        "compute",
        "compute.networkAttachments.get",
        False,
        attachment_get,
    ),
    _route(
        "GET", _C + r"/global/firewalls", "compute", "compute.firewalls.list", False, firewall_list
    ),
    _route(
        "GET",
        _C + r"/global/addresses",
        "compute",
        "compute.globalAddresses.list",
        False,
        address_list,
    ),
)


# -- Cloud Asset: ListAssets(ACCESS_POLICY) ---------------------------------------------------

_PERIMETER = "accesscontextmanager.googleapis.com/ServicePerimeter"


def list_assets(world: World, request: Any, caller: str | None) -> Any:
    """AssetService.ListAssets for service perimeters (content type ACCESS_POLICY)."""
    kind, _, ident = request.parent.partition("/")
    if kind != "organizations" or not ident:
        raise EmulatorError(
            "INVALID_ARGUMENT", "ACCESS_POLICY content is listed under an organization"
        )
    if request.content_type != asset_v1.ContentType.ACCESS_POLICY:
        raise EmulatorError("UNIMPLEMENTED", "the emulator lists ACCESS_POLICY content only")
    types = list(request.asset_types)
    if types and types != [_PERIMETER]:
        raise EmulatorError("UNIMPLEMENTED", f"the emulator lists asset_types=[{_PERIMETER!r}]")
    org = f"{CRM}organizations/{ident}"
    if world.node(org) is None:
        raise EmulatorError("NOT_FOUND", f"organization {ident} not found")
    world.authorize(caller, "cloudasset.assets.listAccessPolicy", org)
    state = _state(world)
    assets = []
    for raw in dump_section(state).get("perimeters", []):
        message = service_perimeter_pb2.ServicePerimeter()
        json_format.ParseDict(raw, message)
        policy = raw["name"].split("/servicePerimeters/")[0]
        assets.append(
            asset_v1.Asset(
                name=f"//accesscontextmanager.googleapis.com/{raw['name']}",
                asset_type=_PERIMETER,
                service_perimeter=message,
                ancestors=[policy, f"organizations/{ident}"],
            )
        )
    items, token = page(assets, request.page_size, request.page_token, 100)
    return asset_v1.ListAssetsResponse(assets=items, next_page_token=token)


METHODS: tuple[GrpcMethod, ...] = (
    GrpcMethod(
        "google.cloud.asset.v1.AssetService",
        "ListAssets",
        asset_v1.ListAssetsRequest,
        asset_v1.ListAssetsResponse,
        lambda r: str(r.parent),
        False,
        list_assets,
        "cloudasset",
    ),
)
