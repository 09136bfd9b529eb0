"""What segmentation is missing, as data, and its Terraform / gcloud renderings (pure).

:func:`plan_segmentation` compares the steps' network intent and the pipeline's projects and
services with the snapshot's ``segmentation`` section and lists the pieces to add: perimeter
membership and restricted services, the VPC-accessible-services restriction, a deny-all egress
rule per step network plus one allow rule per step and declared reach that the firewall does
not yet allow, and missing PSC network attachments. ``zt-pipelines plan`` prints them with the
IAM plan; nothing here (or in ``apply``) changes a perimeter or a network: a perimeter change can
cut off a whole organisation's access, so it is reviewed and applied by its owners.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.requirements import Requirement
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.segmentation.evaluate import _project_of, _reach, needed_services
from zt_pipelines.segmentation.firewall import Box, Source, egress_boxes
from zt_pipelines.segmentation.model import (
    PortRule,
    ReachEntry,
    SegmentationState,
    format_range,
    network_key,
    regional_key,
)

DENY_ALL_PRIORITY = 65000
ALLOW_PRIORITY = 1000


@dataclass(frozen=True)
class PerimeterChange:
    """Additions to one perimeter's enforced configuration (``perimeter`` empty: none exists
    yet; the rendering then names a placeholder to fill in)."""

    perimeter: str
    add_resources: tuple[str, ...] = ()
    add_restricted_services: tuple[str, ...] = ()
    enable_vpc_restriction: bool = False


@dataclass(frozen=True)
class FirewallSpec:
    """A firewall rule to create."""

    name: str
    network: str
    priority: int
    allow: bool
    destination_ranges: tuple[str, ...]
    traffic: tuple[PortRule, ...]
    source_ranges: tuple[str, ...] = ()
    target_service_accounts: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class AttachmentSpec:
    """A PSC network attachment to create (its subnetwork is the user's to choose)."""

    name: str
    step: str


@dataclass(frozen=True)
class SegmentationPlan:
    """The missing segmentation pieces of one pipeline."""

    project: str
    perimeter: PerimeterChange | None = None
    firewalls: tuple[FirewallSpec, ...] = ()
    attachments: tuple[AttachmentSpec, ...] = ()
    notes: tuple[str, ...] = ()
    offending: tuple[str, ...] = ()

    @property
    def is_noop(self) -> bool:
        """True when nothing is missing."""
        return (
            self.perimeter is None
            and not self.firewalls
            and not self.attachments
            and not self.offending
        )


def plan_segmentation(
    requirements: Iterable[Requirement],
    steps: Iterable[StepIdentity],
    snapshot: Snapshot,
    *,
    project: str,
) -> SegmentationPlan:
    """The pieces to add so the segmentation checks pass (see the module docstring)."""
    steps = tuple(steps)
    requirements = tuple(requirements)
    state = snapshot.segmentation or SegmentationState()
    notes: list[str] = [
        f"{u.what} on {u.target} failed ({u.reason}): not planned" for u in state.unreadable
    ]
    if state.perimeters is None:
        notes.append("perimeters not read: perimeter membership not planned")
    numbers = dict(state.project_numbers)
    for node in snapshot.nodes.values():
        if node.kind == "project" and node.project_number:
            numbers.setdefault(node.name.rsplit("/", 1)[1], node.project_number)
    perimeter = _perimeter(requirements, steps, snapshot, state, project, numbers, notes)
    firewalls: list[FirewallSpec] = []
    attachments: list[AttachmentSpec] = []
    by_number = {v: k for k, v in numbers.items()}
    denied: set[str] = set()
    offending: list[str] = []
    for step in steps:
        reach = _reach(step)
        config = step.job.psc_interface_config or {}
        attachment = config.get("network_attachment") or config.get("networkAttachment")
        if isinstance(attachment, str) and attachment:
            key = regional_key(attachment, by_number)
            att = state.attachments.get(key)
            if att is None:
                attachments.append(AttachmentSpec(key, step.task))
                continue
            ranges = [
                r for s in att.subnetworks if (sub := state.subnetworks.get(s)) for r in sub.ranges
            ]
            source = Source(att.network, tuple(ranges), (), step.service_account)
        elif step.job.network:
            net = network_key(step.job.network, by_number)
            allocated = [a.range for a in state.allocated_ranges if a.network == net]
            source = Source(net, tuple(allocated), (), step.service_account)
        else:
            continue
        if step.job.reach is None or not source.ranges:
            continue
        boxes = egress_boxes(state.firewalls, source, allowed_only=True)
        beyond = [
            b
            for b in boxes
            if b.allowed
            and not any(e.covers(b.lo, b.hi, b.protocol, b.port_lo, b.port_hi) for e in reach)
        ]
        for b in beyond:
            if b.rule is not None and b.rule.name not in offending:
                offending.append(b.rule.name)
        if any(b.rule is None for b in beyond) and source.network not in denied:
            denied.add(source.network)
            firewalls.append(
                FirewallSpec(
                    name=_name("zt-deny-all-egress", source.network),
                    network=source.network,
                    priority=DENY_ALL_PRIORITY,
                    allow=False,
                    destination_ranges=("0.0.0.0/0",),
                    traffic=(PortRule(None),),
                    reason="egress beyond the steps' reach is allowed (ZT522)",
                )
            )
        for entry in reach:
            if not entry.ranges:
                if entry.kind == "vertex":
                    notes.append(f"{step.task}: allow {entry.text} by its address (not known)")
                continue
            if beyond or not _allowed(entry, boxes):
                firewalls.append(_allow_rule(step, entry, source))
    return SegmentationPlan(
        project=project,
        perimeter=perimeter,
        firewalls=tuple(firewalls),
        attachments=tuple(attachments),
        notes=tuple(notes),
        offending=tuple(offending),
    )


def firewall_wire(spec: FirewallSpec) -> dict[str, object]:
    """The rule in the Compute JSON form (what a snapshot or the Compute API holds)."""
    entries = []
    for rule in spec.traffic:
        proto, ports = _proto(rule)
        entries.append({"IPProtocol": proto, **({"ports": ports} if ports else {})})
    raw: dict[str, object] = {
        "name": spec.name,
        "network": spec.network,
        "direction": "EGRESS",
        "priority": spec.priority,
        ("allowed" if spec.allow else "denied"): entries,
        "destinationRanges": list(spec.destination_ranges),
    }
    if spec.source_ranges:
        raw["sourceRanges"] = list(spec.source_ranges)
    if spec.target_service_accounts:
        raw["targetServiceAccounts"] = list(spec.target_service_accounts)
    return raw


def _allowed(entry: ReachEntry, boxes: list[Box]) -> bool:
    return any(
        b.allowed and any(lo <= b.lo and b.hi <= hi for lo, hi in entry.ranges) for b in boxes
    )


def _name(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"[:63]


def _allow_rule(step: StepIdentity, entry: ReachEntry, source: Source) -> FirewallSpec:
    task = "".join(c if c.isalnum() else "-" for c in step.task.lower())[:30].strip("-")
    return FirewallSpec(
        name=_name(f"zt-allow-{task}", source.network, step.task, entry.text),
        network=source.network,
        priority=ALLOW_PRIORITY,
        allow=True,
        destination_ranges=tuple(format_range(r) for r in entry.ranges),
        traffic=entry.ports,
        source_ranges=tuple(format_range(r) for r in source.ranges),
        target_service_accounts=(step.service_account,) if step.service_account else (),
        reason=f"{step.task} declares reach {entry.text!r}",
    )


def _perimeter(
    requirements: tuple[Requirement, ...],
    steps: tuple[StepIdentity, ...],
    snapshot: Snapshot,
    state: SegmentationState,
    project: str,
    numbers: dict[str, str],
    notes: list[str],
) -> PerimeterChange | None:
    if state.perimeters is None:
        return None
    number = numbers.get(project)
    if number is None:
        notes.append(f"project {project}'s number is unknown: perimeter membership not planned")
        return None
    member = f"projects/{number}"
    regular = [p for p in state.perimeters if not p.bridge]
    target = next((p for p in regular if p.status and member in p.status.resources), None)
    add: list[str] = []
    if target is None:
        target = next((p for p in regular if p.dry_run and member in p.dry_run.resources), None)
        add.append(member)
    current = target.status if target and target.status else None
    have = set(current.resources) if current else set()
    for r in requirements:
        other = _project_of(snapshot, r.resource.name)
        n = numbers.get(other) if other else None
        if n is not None and f"projects/{n}" not in have and f"projects/{n}" not in add:
            add.append(f"projects/{n}")
    services = needed_services(requirements, steps)
    restricted = set(current.restricted_services) if current else set()
    missing = () if "*" in restricted else tuple(s for s in services if s not in restricted)
    vpc = not (current and current.vpc_restriction)
    if not add and not missing and not vpc:
        return None
    return PerimeterChange(target.name if target else "", tuple(add), missing, vpc)


# -- renderings ------------------------------------------------------------------------------

_POLICY_PLACEHOLDER = "accessPolicies/ACCESS_POLICY_NUMBER/servicePerimeters/PERIMETER"


def _proto(rule: PortRule) -> tuple[str, list[str]]:
    names = {6: "tcp", 17: "udp", 1: "icmp", 132: "sctp", 50: "esp", 51: "ah", 4: "ipip"}
    proto = "all" if rule.protocol is None else names.get(rule.protocol, str(rule.protocol))
    return proto, [str(a) if a == b else f"{a}-{b}" for a, b in rule.ports]


def _hcl(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${") + '"'


def _hcl_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_hcl(v) for v in values) + "]"


def render_terraform(plan: SegmentationPlan) -> str:
    """The missing pieces as Terraform (``hashicorp/google``); perimeter blocks are for the
    perimeter's owners to review and apply."""
    blocks = ["# Segmentation (zt-pipelines): missing perimeter membership, firewall rules, PSC"]
    p = plan.perimeter
    if p is not None:
        name = p.perimeter or _POLICY_PLACEHOLDER
        lines = [
            "# REVIEW: perimeter changes are never applied by zt-pipelines; its owners apply them.",
        ]
        for i, resource in enumerate(p.add_resources):
            lines.append(
                f'resource "google_access_context_manager_service_perimeter_resource" '
                f'"zt_member_{i}" {{\n  perimeter_name = {_hcl(name)}\n'
                f"  resource       = {_hcl(resource)}\n}}"
            )
        if p.add_restricted_services or p.enable_vpc_restriction:
            lines.append(f"# in the status block of {name}:")
            if p.add_restricted_services:
                lines.append(f"#   restricted_services += {_hcl_list(p.add_restricted_services)}")
            if p.enable_vpc_restriction:
                lines.append(
                    "#   vpc_accessible_services { enable_restriction = true  "
                    'allowed_services = ["RESTRICTED-SERVICES"] }'
                )
        blocks.append("\n".join(lines))
    for f in plan.firewalls:
        project = f.network.split("/")[1]
        body = [
            f"  project   = {_hcl(project)}",
            f"  name      = {_hcl(f.name)}",
            f"  network   = {_hcl(f.network)}",
            '  direction = "EGRESS"',
            f"  priority  = {f.priority}",
            f"  destination_ranges = {_hcl_list(f.destination_ranges)}",
        ]
        if f.source_ranges:
            body.append(f"  source_ranges = {_hcl_list(f.source_ranges)}")
        if f.target_service_accounts:
            body.append(f"  target_service_accounts = {_hcl_list(f.target_service_accounts)}")
        kind = "allow" if f.allow else "deny"
        for rule in f.traffic:
            proto, ports = _proto(rule)
            inner = f"    protocol = {_hcl(proto)}"
            if ports:
                inner += f"\n    ports    = {_hcl_list(ports)}"
            body.append(f"  {kind} {{\n{inner}\n  }}")
        label = f.name.replace("-", "_")
        blocks.append(
            f'# {f.reason}\nresource "google_compute_firewall" "{label}" {{\n'
            + "\n".join(body)
            + "\n}"
        )
    for name in plan.offending:
        blocks.append(
            f"# REVIEW: firewall rule {name} allows egress beyond the steps' reach: narrow its "
            "destination ranges / targets, or delete it (zt-pipelines does not change it)"
        )
    for a in plan.attachments:
        parts = a.name.split("/")
        blocks.append(
            f"# {a.step} names {a.name}, which does not exist; choose its subnetwork\n"
            f'resource "google_compute_network_attachment" "{parts[-1].replace("-", "_")}" {{\n'
            f"  project               = {_hcl(parts[1])}\n"
            f"  region                = {_hcl(parts[3])}\n"
            f"  name                  = {_hcl(parts[-1])}\n"
            '  connection_preference = "ACCEPT_MANUAL"\n'
            '  subnetworks           = ["SUBNETWORK_SELF_LINK"]\n}'
        )
    blocks.extend(f"# note: {n}" for n in plan.notes)
    if plan.is_noop:
        blocks.append("# segmentation: nothing missing")
    return "\n\n".join(blocks) + "\n"


def render_gcloud(plan: SegmentationPlan) -> str:
    """The missing pieces as gcloud commands; perimeter commands are commented out."""
    q = shlex.quote
    lines = ["# Segmentation (zt-pipelines)"]
    p = plan.perimeter
    if p is not None:
        lines.append(
            "# REVIEW: perimeter changes are never applied by zt-pipelines; its owners run these."
        )
        name = p.perimeter or _POLICY_PLACEHOLDER
        policy, _, perimeter = name.partition("/servicePerimeters/")
        cmd = (
            f"# gcloud access-context-manager perimeters update {q(perimeter)} "
            f"--policy={q(policy.split('/')[-1])}"
        )
        if p.add_resources:
            cmd += f" --add-resources={q(','.join(p.add_resources))}"
        if p.add_restricted_services:
            cmd += f" --add-restricted-services={q(','.join(p.add_restricted_services))}"
        if p.enable_vpc_restriction:
            cmd += (
                " --enable-vpc-accessible-services --add-vpc-allowed-services=RESTRICTED-SERVICES"
            )
        lines.append(cmd)
    for f in plan.firewalls:
        project, _, _, _, network = f.network.split("/")
        rules = ",".join(
            ",".join(f"{proto}:{port}" for port in ports) if ports else proto
            for proto, ports in (_proto(r) for r in f.traffic)
        )
        cmd = (
            f"gcloud compute firewall-rules create {q(f.name)} --project={q(project)} "
            f"--network={q(network)} --direction=EGRESS --priority={f.priority} "
            f"--action={'ALLOW' if f.allow else 'DENY'} --rules={q(rules)} "
            f"--destination-ranges={q(','.join(f.destination_ranges))}"
        )
        if f.source_ranges:
            cmd += f" --source-ranges={q(','.join(f.source_ranges))}"
        if f.target_service_accounts:
            cmd += f" --target-service-accounts={q(','.join(f.target_service_accounts))}"
        lines.append(f"# {f.reason}")
        lines.append(cmd)
    for name in plan.offending:
        parts = name.split("/")
        lines.append(f"# REVIEW: {name} allows egress beyond the steps' reach; narrow it, or:")
        lines.append(
            f"# gcloud compute firewall-rules update {q(parts[-1])} --project={q(parts[1])} "
            "--disabled"
        )
    for a in plan.attachments:
        parts = a.name.split("/")
        lines.append(f"# {a.step} names {a.name}, which does not exist; choose its subnetwork")
        lines.append(
            f"gcloud compute network-attachments create {q(parts[-1])} --project={q(parts[1])} "
            f"--region={q(parts[3])} --connection-preference=ACCEPT_MANUAL --subnets=SUBNETWORK"
        )
    lines.extend(f"# note: {n}" for n in plan.notes)
    if plan.is_noop:
        lines.append("# segmentation: nothing missing")
    return "\n".join(lines) + "\n"
