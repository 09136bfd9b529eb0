"""The snapshot's ``segmentation`` section: parse (strictly) and dump.

Perimeters use the Access Context Manager JSON wire format (what ``gcloud access-context-manager
perimeters describe --format=json`` and Cloud Asset's ``servicePerimeter`` print), so a live read
and a file share one parser. Networks use the Compute API's field names. An absent key is
*unknown* (``None`` in :class:`~zt_pipelines.segmentation.model.SegmentationState`), never empty.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from zt_pipelines.errors import DeclarationError, SnapshotError
from zt_pipelines.policy.wording import plural
from zt_pipelines.segmentation.firewall import compile_table
from zt_pipelines.segmentation.model import (
    ALL_TRAFFIC,
    PORTED,
    AllocatedRange,
    EgressPolicy,
    FirewallRule,
    IngressPolicy,
    Network,
    NetworkAttachment,
    Perimeter,
    PerimeterConfig,
    PortRule,
    Range,
    SegmentationState,
    SegUnreadable,
    Subnetwork,
    VertexEndpoint,
    format_range,
    network_key,
    parse_cidr,
    parse_ports,
    protocol_number,
    regional_key,
    vertex_key,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "segmentation.schema.json"


def load_section(data: Any, source: str) -> SegmentationState:
    """Validate and build the section (``data`` is the parsed ``segmentation`` mapping).

    Raises:
        SnapshotError: naming ``source`` and the JSON path under ``$.segmentation``.
    """
    _validate(data, source)
    numbers = {str(k): str(v) for k, v in (data.get("projectNumbers") or {}).items()}
    by_number = {v: k for k, v in numbers.items()}

    def cidrs(values: list[str], path: str) -> tuple[Range, ...]:
        out = []
        for i, v in enumerate(values):
            if ":" in v:  # IPv6: not modelled, never widens what we decide
                continue
            try:
                out.append(parse_cidr(v))
            except DeclarationError as exc:
                raise SnapshotError(
                    exc.what, where=f"{source}: $.segmentation.{path}[{i}]"
                ) from None
        return tuple(out)

    perimeters = None
    if "perimeters" in data:
        perimeters = tuple(
            perimeter_from_wire(p, f"{source}: $.segmentation.perimeters[{i}]")
            for i, p in enumerate(data["perimeters"])
        )
    networks = None
    if "networks" in data:
        networks = {}
        for n in data["networks"]:
            key = network_key(n["name"], by_number)
            networks[key] = Network(
                key, tuple(network_key(p, by_number) for p in n.get("peerings", []))
            )
    subnets = {}
    for i, s in enumerate(data.get("subnetworks", [])):
        key = regional_key(s["name"], by_number)
        ranges = cidrs([s["ipCidrRange"], *s.get("secondaryRanges", [])], f"subnetworks[{i}]")
        subnets[key] = Subnetwork(
            key,
            network_key(s["network"], by_number),
            key.split("/")[3] if key.count("/") >= 5 else "",
            ranges,
            bool(s.get("privateIpGoogleAccess", False)),
        )
    attachments = {}
    for a in data.get("networkAttachments", []):
        key = regional_key(a["name"], by_number)
        attachments[key] = NetworkAttachment(
            key,
            network_key(a["network"], by_number),
            tuple(regional_key(s, by_number) for s in a["subnetworks"]),
            a.get("connectionPreference", "ACCEPT_MANUAL"),
        )
    allocated = tuple(
        AllocatedRange(
            r["name"],
            network_key(r["network"], by_number),
            cidrs([r["range"]], f"allocatedRanges[{i}].range")[0],
        )
        for i, r in enumerate(data.get("allocatedRanges", []))
    )
    firewalls = tuple(
        firewall_from_wire(f, f"{source}: $.segmentation.firewalls[{i}]", by_number)
        for i, f in enumerate(data.get("firewalls", []))
    )
    endpoints = tuple(
        VertexEndpoint(
            vertex_key(e["name"], by_number),
            network_key(e["network"], by_number),
            cidrs(e.get("ranges", []), f"endpoints[{i}].ranges"),
            e.get("via", "peering"),
        )
        for i, e in enumerate(data.get("endpoints", []))
    )
    unreadable = tuple(
        SegUnreadable(u["target"], u["what"], u["reason"]) for u in data.get("unreadable", [])
    )
    state = SegmentationState(
        perimeters=perimeters,
        networks=networks,
        subnetworks=subnets,
        attachments=attachments,
        allocated_ranges=allocated,
        firewalls=firewalls,
        endpoints=endpoints,
        project_numbers=numbers,
        unreadable=unreadable,
    )
    compile_table(state.egress_table)  # once per snapshot, like its other indexes
    return state


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _validate(data: Any, source: str) -> None:
    """Validate against segmentation.schema.json; the error names ``$.segmentation...``."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        best = errors[0]
        path = "$.segmentation" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in best.absolute_path
        )
        more = f" (and {plural(len(errors) - 1, 'more problem')})" if len(errors) > 1 else ""
        raise SnapshotError(
            best.message + more, where=f"{source}: {path}", fix=f"see {SCHEMA_PATH.name}"
        )


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise SnapshotError("expected a list of strings", where=where)
    return tuple(raw)


def _config(raw: Any, where: str) -> PerimeterConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SnapshotError("a perimeter configuration must be a mapping", where=where)
    vpc = raw.get("vpcAccessibleServices") or {}
    ingress = []
    for i, p in enumerate(raw.get("ingressPolicies") or []):
        at = f"{where}.ingressPolicies[{i}]"
        src = p.get("ingressFrom") or {}
        dst = p.get("ingressTo") or {}
        sources = []
        for s in src.get("sources") or []:
            if not isinstance(s, dict):
                raise SnapshotError("a source must be a mapping", where=at)
            sources.append(str(s.get("resource") or s.get("accessLevel") or ""))
        ingress.append(
            IngressPolicy(
                identity_type=str(src.get("identityType", "") or "").replace(
                    "IDENTITY_TYPE_UNSPECIFIED", ""
                ),
                identities=_strings(src.get("identities"), at),
                sources=tuple(sources),
                resources=_strings(dst.get("resources"), at),
                services=tuple(str(o.get("serviceName", "")) for o in dst.get("operations") or []),
            )
        )
    egress = []
    for i, p in enumerate(raw.get("egressPolicies") or []):
        at = f"{where}.egressPolicies[{i}]"
        src = p.get("egressFrom") or {}
        dst = p.get("egressTo") or {}
        egress.append(
            EgressPolicy(
                identity_type=str(src.get("identityType", "") or "").replace(
                    "IDENTITY_TYPE_UNSPECIFIED", ""
                ),
                identities=_strings(src.get("identities"), at),
                resources=_strings(dst.get("resources"), at),
                services=tuple(str(o.get("serviceName", "")) for o in dst.get("operations") or []),
                external_resources=_strings(dst.get("externalResources"), at),
            )
        )
    return PerimeterConfig(
        resources=_strings(raw.get("resources"), where + ".resources"),
        restricted_services=_strings(raw.get("restrictedServices"), where),
        vpc_restriction=bool(vpc.get("enableRestriction", False)),
        vpc_allowed_services=_strings(vpc.get("allowedServices"), where),
        access_levels=_strings(raw.get("accessLevels"), where),
        ingress=tuple(ingress),
        egress=tuple(egress),
    )


def perimeter_from_wire(raw: Any, where: str) -> Perimeter:
    """A :class:`Perimeter` from its Access Context Manager JSON form.

    Raises:
        SnapshotError: a malformed perimeter, naming ``where``.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise SnapshotError("a perimeter must be a mapping with a name", where=where)
    kind = raw.get("perimeterType", "PERIMETER_TYPE_REGULAR")
    if kind not in ("PERIMETER_TYPE_REGULAR", "PERIMETER_TYPE_BRIDGE"):
        raise SnapshotError(f"unknown perimeterType {kind!r}", where=where)
    return Perimeter(
        name=raw["name"],
        title=str(raw.get("title", "")),
        bridge=kind == "PERIMETER_TYPE_BRIDGE",
        status=_config(raw.get("status"), where + ".status"),
        spec=_config(raw.get("spec"), where + ".spec"),
        use_explicit_dry_run_spec=bool(raw.get("useExplicitDryRunSpec", False)),
    )


def _traffic(entries: list[dict[str, Any]], where: str) -> tuple[PortRule, ...]:
    out = []
    for i, e in enumerate(entries):
        try:
            number = protocol_number(str(e["IPProtocol"]))
            ports = parse_ports(e.get("ports", []))
        except DeclarationError as exc:
            raise SnapshotError(exc.what, where=f"{where}[{i}]") from None
        # ports only qualify tcp/udp/sctp (the API refuses them elsewhere): never narrow others
        out.append(PortRule(number, ports if number in PORTED else ()))
    return tuple(out)


def firewall_from_wire(raw: dict[str, Any], where: str, by_number: dict[str, str]) -> FirewallRule:
    """A :class:`FirewallRule` from the Compute API's JSON field names.

    Raises:
        SnapshotError: a rule that is both allow and deny (or neither), a bad range or port.
    """
    allowed, denied = raw.get("allowed"), raw.get("denied")
    if (allowed is None) == (denied is None):
        raise SnapshotError("a firewall rule has exactly one of allowed / denied", where=where)
    traffic = _traffic(allowed if allowed is not None else denied, where)  # type: ignore[arg-type]

    def ranges(key: str) -> tuple[tuple[Range, ...], bool]:
        out = []
        v6 = False
        for i, v in enumerate(raw.get(key, [])):
            if ":" in v:
                v6 = True
                continue
            try:
                out.append(parse_cidr(v))
            except DeclarationError as exc:
                raise SnapshotError(exc.what, where=f"{where}.{key}[{i}]") from None
        return tuple(out), v6

    src, v6a = ranges("sourceRanges")
    dst, v6b = ranges("destinationRanges")
    # a range list holding IPv6 ranges only matches no IPv4 packet: the rule decides nothing
    # here (read as "no ranges" it would cover 0.0.0.0/0 — a deny that protects nothing)
    ipv6_only = (v6a and not src) or (v6b and not dst)
    name = raw["name"]
    network = network_key(raw["network"], by_number)
    if "/" not in name:
        name = f"{network.split('/global/')[0]}/global/firewalls/{name}"
    return FirewallRule(
        name=name,
        network=network,
        direction=raw["direction"],
        priority=int(raw.get("priority", 1000)),
        allow=allowed is not None,
        traffic=traffic or ALL_TRAFFIC,
        source_ranges=src,
        destination_ranges=dst,
        source_tags=tuple(raw.get("sourceTags", [])),
        target_tags=tuple(raw.get("targetTags", [])),
        source_service_accounts=tuple(raw.get("sourceServiceAccounts", [])),
        target_service_accounts=tuple(raw.get("targetServiceAccounts", [])),
        disabled=bool(raw.get("disabled", False)) or ipv6_only,
        has_ipv6=v6a or v6b,
    )


def _traffic_dump(rule: FirewallRule) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in rule.traffic:
        entry: dict[str, Any] = {"IPProtocol": "all" if t.protocol is None else str(t.protocol)}
        if t.ports:
            entry["ports"] = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in t.ports]
        out.append(entry)
    return out


def _config_dump(c: PerimeterConfig) -> dict[str, Any]:
    return {
        "resources": list(c.resources),
        "restrictedServices": list(c.restricted_services),
        "accessLevels": list(c.access_levels),
        "vpcAccessibleServices": {
            "enableRestriction": c.vpc_restriction,
            "allowedServices": list(c.vpc_allowed_services),
        },
        "ingressPolicies": [
            {
                "ingressFrom": {
                    **({"identityType": p.identity_type} if p.identity_type else {}),
                    "identities": list(p.identities),
                    "sources": [
                        {"accessLevel": s} if s.startswith("accessPolicies/") else {"resource": s}
                        for s in p.sources
                    ],
                },
                "ingressTo": {
                    "resources": list(p.resources),
                    "operations": [{"serviceName": s} for s in p.services],
                },
            }
            for p in c.ingress
        ],
        "egressPolicies": [
            {
                "egressFrom": {
                    **({"identityType": p.identity_type} if p.identity_type else {}),
                    "identities": list(p.identities),
                },
                "egressTo": {
                    "resources": list(p.resources),
                    "operations": [{"serviceName": s} for s in p.services],
                    "externalResources": list(p.external_resources),
                },
            }
            for p in c.egress
        ],
    }


def dump_section(state: SegmentationState) -> dict[str, Any]:
    """The section in the file format (``load_section`` of it gives ``state`` back)."""
    out: dict[str, Any] = {"projectNumbers": dict(state.project_numbers)}
    if state.perimeters is not None:
        perims = []
        for p in state.perimeters:
            raw: dict[str, Any] = {
                "name": p.name,
                "title": p.title,
                "perimeterType": "PERIMETER_TYPE_BRIDGE" if p.bridge else "PERIMETER_TYPE_REGULAR",
                "useExplicitDryRunSpec": p.use_explicit_dry_run_spec,
            }
            if p.status is not None:
                raw["status"] = _config_dump(p.status)
            if p.spec is not None:
                raw["spec"] = _config_dump(p.spec)
            perims.append(raw)
        out["perimeters"] = perims
    if state.networks is not None:
        out["networks"] = [
            {"name": n.name, "peerings": list(n.peerings)} for n in state.networks.values()
        ]
    out["subnetworks"] = [
        {
            "name": s.name,
            "network": s.network,
            "ipCidrRange": format_range(s.ranges[0]),
            "secondaryRanges": [format_range(r) for r in s.ranges[1:]],
            "privateIpGoogleAccess": s.private_google_access,
        }
        for s in state.subnetworks.values()
        if s.ranges
    ]
    out["networkAttachments"] = [
        {
            "name": a.name,
            "network": a.network,
            "subnetworks": list(a.subnetworks),
            "connectionPreference": a.connection_preference,
        }
        for a in state.attachments.values()
    ]
    out["allocatedRanges"] = [
        {"name": a.name, "network": a.network, "range": format_range(a.range)}
        for a in state.allocated_ranges
    ]
    fws = []
    for f in state.firewalls:
        raw_fw: dict[str, Any] = {
            "name": f.name,
            "network": f.network,
            "direction": f.direction,
            "priority": f.priority,
            ("allowed" if f.allow else "denied"): _traffic_dump(f),
        }
        for key, values in (
            ("sourceRanges", [format_range(r) for r in f.source_ranges]),
            ("destinationRanges", [format_range(r) for r in f.destination_ranges]),
            ("sourceTags", list(f.source_tags)),
            ("targetTags", list(f.target_tags)),
            ("sourceServiceAccounts", list(f.source_service_accounts)),
            ("targetServiceAccounts", list(f.target_service_accounts)),
        ):
            if values:
                raw_fw[key] = values
        if f.disabled:
            raw_fw["disabled"] = True
        fws.append(raw_fw)
    out["firewalls"] = fws
    out["endpoints"] = [
        {
            "name": e.name,
            "network": e.network,
            "ranges": [format_range(r) for r in e.ranges],
            **({"via": e.via} if e.via != "peering" else {}),
        }
        for e in state.endpoints
    ]
    out["unreadable"] = [
        {"target": u.target, "what": u.what, "reason": u.reason} for u in state.unreadable
    ]
    return out
