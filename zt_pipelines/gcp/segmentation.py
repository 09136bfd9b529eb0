"""Live reads for segmentation: perimeters (Cloud Asset ``ACCESS_POLICY``) and the networks of
the pipeline's steps (Compute) into the snapshot's ``segmentation`` section — fetch only.

What to read follows from the policy and the steps (:func:`reads_needed`); how it is judged is
:mod:`zt_pipelines.segmentation`. Fail closed: a read that fails leaves its part of the section
absent (*unknown*) and records an ``unreadable`` entry, never an empty answer; a NOT_FOUND on a
named network piece is an answer (it does not exist: ZT521).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from zt_pipelines.errors import ApiError, SnapshotError
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.orgpolicy import OrgPolicy
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.resources import CRM
from zt_pipelines.segmentation.model import network_key, regional_key
from zt_pipelines.segmentation.snapshot import load_section


def reads_needed(policy: OrgPolicy, steps: Iterable[StepIdentity]) -> tuple[bool, bool]:
    """``(perimeters, networks)``: which segmentation state a live check must read."""
    steps = tuple(steps)
    # a step on a network that declares no reach is not verified (a note), so reading its
    # network would only add permissions a check needs; a PSC step under network.required is
    # matched through its attachment's network, so that one is read
    declared = any(s.job.reach is not None for s in steps)
    psc_required = bool(policy.required_network) and any(_attachment(s) for s in steps)
    perimeters = policy.require_perimeter
    networks = (
        policy.require_isolation or declared or psc_required or policy.allowed_reach is not None
    )
    return perimeters, networks


def _attachment(step: StepIdentity) -> str | None:
    config = step.job.psc_interface_config or {}
    value = config.get("network_attachment") or config.get("networkAttachment")
    return value if isinstance(value, str) and value else None


def fetch_segmentation(
    snapshot: Snapshot,
    steps: Iterable[StepIdentity],
    *,
    project: str,
    perimeters: bool,
    networks: bool,
    location: str | None = None,
    endpoint_projects: Iterable[str] = (),
    credentials: Any = None,
    emulator_host: str | None = None,
    retry: RetryPolicy | None = None,
    factory: ClientFactory | None = None,
) -> Snapshot:
    """``snapshot`` with its ``segmentation`` section read live (what was asked for).

    With ``networks``, the Vertex endpoints of the pipeline's project and of
    ``endpoint_projects`` (the policy's ``segmentation.endpointProjects``) in ``location``, and
    each endpoint a step declares in its reach, are listed too.
    """
    from zt_pipelines.gcp.access_policy import AccessPolicyAdapter
    from zt_pipelines.gcp.compute import ComputeAdapter
    from zt_pipelines.gcp.vertex_endpoints import VertexEndpointsAdapter

    if not perimeters and not networks:
        return snapshot
    factory = factory or ClientFactory(credentials, emulator_host=emulator_host)
    numbers = {
        n.name.rsplit("/", 1)[1]: n.project_number
        for n in snapshot.nodes.values()
        if n.kind == "project" and n.project_number
    }
    section: dict[str, Any] = {"projectNumbers": numbers, "unreadable": []}
    unreadable: list[dict[str, str]] = section["unreadable"]

    def failed(target: str, what: str, exc: ApiError) -> None:
        unreadable.append({"target": target, "what": what, "reason": f"{exc.code}: {exc.what}"})

    if perimeters:
        chain = snapshot.ancestors(f"{CRM}projects/{project}")
        org = next((n.name for n in chain if n.kind == "organization"), None)
        if org is None:
            unreadable.append(
                {
                    "target": f"projects/{project}",
                    "what": "listAssets(ACCESS_POLICY)",
                    "reason": "the project's organisation is unknown: perimeters not read",
                }
            )
        else:
            scope = org.removeprefix(CRM)
            try:
                section["perimeters"] = AccessPolicyAdapter(factory, retry).perimeters(scope)
            except ApiError as exc:
                failed(scope, "listAssets(ACCESS_POLICY)", exc)
    if networks:
        steps = tuple(steps)
        read = _read_networks(ComputeAdapter(factory, retry), steps, numbers, section, failed)
        if read is not None:
            wanted = _endpoint_places(steps, project, location, endpoint_projects)
            _read_endpoints(VertexEndpointsAdapter(factory, retry), wanted, section, failed)
    try:
        state = load_section(section, "live segmentation read")
    except SnapshotError as exc:  # a response our parser refuses: nothing of it is trusted
        state = load_section(
            {
                "projectNumbers": numbers,
                "unreadable": [
                    *unreadable,
                    {"target": project, "what": "segmentation", "reason": str(exc)},
                ],
            },
            "live segmentation read",
        )
    return replace(snapshot, segmentation=state)


def _read_networks(
    compute: Any,
    steps: tuple[StepIdentity, ...],
    numbers: dict[str, str],
    section: dict[str, Any],
    failed: Any,
) -> set[str] | None:
    """Read the networks into ``section``; the projects whose networks were read (``None``
    when a read failed: the networks stay absent)."""
    by_number = {v: k for k, v in numbers.items()}
    nets: set[str] = set()
    attachments: set[str] = set()
    for s in steps:
        if s.job.network:
            nets.add(network_key(s.job.network, by_number))
        name = _attachment(s)
        if name:
            attachments.add(regional_key(name, by_number))
    out_nets: list[dict[str, Any]] = []
    out_subnets: list[dict[str, Any]] = []
    out_atts: list[dict[str, Any]] = []
    projects: set[str] = set()
    ok = True
    try:
        for name in sorted(attachments):
            parts = name.split("/")
            if len(parts) != 6:
                continue  # not a regional name: the evaluator reports it missing
            att = compute.network_attachment(parts[1], parts[3], parts[5])
            if att is None:
                continue
            out_atts.append(att)
            nets.add(network_key(att["network"], by_number))
            for sub in att["subnetworks"]:
                sp = regional_key(sub, by_number).split("/")
                if len(sp) == 6:
                    found = compute.subnetwork(sp[1], sp[3], sp[5])
                    if found is not None:
                        out_subnets.append(found)
        seen: set[str] = set()
        queue = sorted(nets)
        while queue:  # the step networks and the networks peered with them (endpoints)
            key = queue.pop()
            if key in seen:
                continue
            seen.add(key)
            parts = key.split("/")
            if len(parts) != 5:
                continue
            net = compute.network(parts[1], parts[4])
            if net is None:
                continue
            out_nets.append(net)
            projects.add(parts[1])
            if key in nets:
                queue.extend(network_key(p, by_number) for p in net["peerings"])
        firewalls: list[dict[str, Any]] = []
        ranges: list[dict[str, Any]] = []
        for project in sorted(projects):
            firewalls.extend(compute.firewalls(project))
            ranges.extend(compute.allocated_ranges(project))
    except ApiError as exc:
        ok = False
        failed(exc.where or "compute", "compute", exc)
    if not ok:
        return None  # networks stay absent: unknown, so unverifiable
    section["networks"] = out_nets
    section["subnetworks"] = out_subnets
    section["networkAttachments"] = out_atts
    section["firewalls"] = firewalls
    section["allocatedRanges"] = ranges
    return projects


def _endpoint_places(
    steps: tuple[StepIdentity, ...],
    project: str,
    location: str | None,
    endpoint_projects: Iterable[str],
) -> set[tuple[str, str]]:
    """The (project, location) pairs whose Vertex endpoints a check lists: the pipeline's
    project and the policy's ``endpointProjects`` in the pipeline's location, and each endpoint
    a step declares. (A network's host project is not listed unless named: it often has the
    Vertex AI API disabled, which Google answers with PERMISSION_DENIED.)"""
    from zt_pipelines.segmentation.model import parse_reach

    places: set[tuple[str, str]] = set()
    if location:
        for p in {project, *endpoint_projects}:
            places.add((p, location))
    for s in steps:
        if not s.job.reach:
            continue
        for entry in parse_reach(list(s.job.reach), where=f"task {s.task!r}"):
            if entry.kind == "vertex":
                parts = entry.text.split()[0].split("/")
                places.add((parts[1], parts[3]))
    return places


def _read_endpoints(
    vertex: Any,
    places: set[tuple[str, str]],
    section: dict[str, Any],
    failed: Any,
) -> None:
    """List the endpoints of ``places`` into ``section["endpoints"]``; a failure leaves the
    networks absent (what a step can reach is then unknown: ZT530)."""
    numbers: dict[str, str] = section["projectNumbers"]
    found: list[dict[str, Any]] = []
    try:
        for project, location in sorted(places):
            for entry in vertex.endpoints(project, location):
                number = entry["name"].split("/")[1]
                if number.isdigit() and not project.isdigit():
                    numbers.setdefault(project, number)  # learned: the list names by number
                found.append(entry)
    except ApiError as exc:
        failed(exc.where or "aiplatform", "aiplatform.endpoints.list", exc)
        for key in ("networks", "subnetworks", "networkAttachments", "firewalls"):
            section.pop(key, None)
        return
    by_number = {v: k for k, v in numbers.items()}
    psa: dict[str, list[str]] = {}
    for r in section.get("allocatedRanges", []):
        psa.setdefault(network_key(r["network"], by_number), []).append(r["range"])
    out = []
    for entry in found:
        network = network_key(entry["network"], by_number)
        ranges = entry["ranges"]
        if ranges is None:  # no address yet: anywhere in the network's PSA ranges
            ranges = psa.get(network, [])
        out.append({**entry, "network": network, "ranges": ranges})
    section["endpoints"] = out
