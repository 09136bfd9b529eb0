"""Segmentation checks: perimeters and networks, decided offline from the snapshot (pure).

:func:`segmentation_findings` turns the pipeline's steps and requirements plus the snapshot's
segmentation section into findings ZT510–ZT530 (see docs/findings.md and
docs/segmentation.md). Nothing here reads anything: an absent section is *unknown* and,
where a policy requires segmentation or a step declares reach, unverifiable (ZT530).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.orgpolicy import policy_fullmatch
from zt_pipelines.policy.report import Evidence, Finding, Severity
from zt_pipelines.policy.requirements import CheckContext, Requirement
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.wording import noun, plural
from zt_pipelines.segmentation.firewall import Box, FirewallIndex, Source
from zt_pipelines.segmentation.model import (
    PORTED,
    Perimeter,
    PerimeterConfig,
    PortRule,
    Range,
    ReachEntry,
    SegmentationState,
    VertexEndpoint,
    format_range,
    network_key,
    parse_reach,
    regional_key,
    vertex_key,
)

#: services a pipeline's permissions map to that VPC Service Controls can restrict
PERMISSION_SERVICES: dict[str, str] = {
    "aiplatform": "aiplatform.googleapis.com",
    "storage": "storage.googleapis.com",
    "bigquery": "bigquery.googleapis.com",
    "artifactregistry": "artifactregistry.googleapis.com",
    "secretmanager": "secretmanager.googleapis.com",
    "cloudkms": "cloudkms.googleapis.com",
    "pubsub": "pubsub.googleapis.com",
    "dataflow": "dataflow.googleapis.com",
    "dataproc": "dataproc.googleapis.com",
    "notebooks": "notebooks.googleapis.com",
    "spanner": "spanner.googleapis.com",
    "bigtable": "bigtableadmin.googleapis.com",
    "logging": "logging.googleapis.com",
}
_WARNING_CODES = frozenset({"ZT512", "ZT525"})
_ANY_IDENTITY = {"ANY_IDENTITY", "ANY_USER_ACCOUNT", "ANY_SERVICE_ACCOUNT"}


@dataclass(frozen=True)
class SegmentationPolicy:
    """The segmentation keys of ``zt-policy.yaml`` (``segmentation:``)."""

    require_perimeter: bool = False
    require_isolation: bool = False
    allowed_reach: tuple[ReachEntry, ...] | None = None


def _severity(code: str) -> Severity:
    return Severity.WARNING if code in _WARNING_CODES else Severity.ERROR


@dataclass
class _Out:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    index: FirewallIndex = field(default_factory=lambda: FirewallIndex(()))
    egress: dict[tuple[object, ...], Any] = field(default_factory=dict)

    def add(self, code: str, message: str, **kw: object) -> None:
        self.findings.append(Finding(code, _severity(code), message, **kw))  # type: ignore[arg-type]


@dataclass
class _StepOut:
    """One step's outcome without its task name: steps with the same network intent and the
    same firewall-targeted identity share it (the checks depend on nothing else)."""

    index: FirewallIndex
    egress: dict[tuple[object, ...], Any]
    pending: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, code: str, message: str, **kw: Any) -> None:
        self.pending.append((code, message, kw))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def emit(self, out: _Out, task: str) -> None:
        """The findings and notes for the step ``task``."""
        for code, message, kw in self.pending:
            out.findings.append(Finding(code, _severity(code), message, step=task, **kw))
        out.notes.extend(f"{task}: {text}" for text in self.notes)


def _step_key(
    step: StepIdentity,
    index: FirewallIndex,
    state: SegmentationState | None,
    by_number: dict[str, str],
    networks: dict[tuple[str | None, str | None], str | None],
) -> tuple[object, ...]:
    """What :func:`_step_checks` reads of a step besides its task name: its network intent and
    the rules of its network that target its identity (``networks`` memoises where a network
    or attachment name leads)."""
    job = step.job
    attachment = _attachment_name(job.psc_interface_config)
    where = (job.network, attachment)
    if where in networks:
        net = networks[where]
    else:
        net = None
        if attachment is not None:
            att = state.attachments.get(regional_key(attachment, by_number)) if state else None
            net = att.network if att else None
        elif job.network:
            net = network_key(job.network, by_number)
        networks[where] = net
    return (
        where,
        None if job.reserved_ip_ranges is None else tuple(job.reserved_ip_ranges),
        None if job.reach is None else tuple(job.reach),
        index.targeting(net, step.service_account) if net else (),
    )


def segmentation_findings(
    requirements: Iterable[Requirement],
    steps: Iterable[StepIdentity],
    snapshot: Snapshot,
    policy: SegmentationPolicy,
    context: CheckContext,
    *,
    required_network: str | None = None,
) -> tuple[list[Finding], list[str]]:
    """Every segmentation finding (default severities) and coverage note.

    ``required_network`` is the organisation policy's ``network.required`` pattern, checked
    here against the network of a PSC step's attachment (such a step has no ``network``).
    """
    steps = tuple(steps)
    requirements = tuple(requirements)
    state: SegmentationState | None = getattr(snapshot, "segmentation", None)
    live = bool(getattr(snapshot, "live", False))
    # the same condition as the live reads (gcp.segmentation.reads_needed): a snapshot file
    # and a live check decide alike
    networked = any(
        s.job.network or s.job.psc_interface_config or s.job.reach is not None for s in steps
    )
    active = (
        policy.require_perimeter
        or policy.require_isolation
        or policy.allowed_reach is not None
        or networked
    )
    out = _Out()
    if not active:
        return out.findings, out.notes
    for u in state.unreadable if state else ():
        out.add(
            "ZT530",
            f"segmentation state could not be read ({u.what}): what it holds is unverifiable",
            resource=u.target,
            evidence=(Evidence("unreadable", node=u.target, detail=f"{u.what}: {u.reason}"),),
        )
    numbers = _numbers(snapshot, state)
    if state is not None:
        out.index = FirewallIndex(state.egress_table)
    _perimeter_checks(out, requirements, steps, snapshot, state, policy, context, numbers)
    by_number = {n: p for p, n in numbers.items()}
    outcomes: dict[tuple[object, ...], _StepOut] = {}
    networks: dict[tuple[str | None, str | None], str | None] = {}
    for step in steps:
        key = _step_key(step, out.index, state, by_number, networks)
        outcome = outcomes.get(key)
        if outcome is None:
            outcome = _StepOut(out.index, out.egress)
            _step_checks(outcome, step, state, policy, context, by_number, required_network, live)
            outcomes[key] = outcome
        outcome.emit(out, step.task)
    if policy.require_isolation or networked:
        # what the static evaluation does not read must be said, not assumed empty
        out.notes.append(
            "egress was judged on the networks' VPC firewall rules only: hierarchical "
            "(organization/folder) and network firewall policies — evaluated before them, "
            "where an allow is final — routes, NAT and IPv6 rules were not read"
        )
    return out.findings, out.notes


# -- perimeters -------------------------------------------------------------------------------


def _numbers(snapshot: Snapshot, state: SegmentationState | None) -> dict[str, str]:
    """Project id -> number, from the IAM snapshot's project nodes and the section's table."""
    out = dict(state.project_numbers) if state else {}
    for node in snapshot.nodes.values():
        if node.kind == "project" and node.project_number:
            out.setdefault(node.name.rsplit("/", 1)[1], node.project_number)
    return out


_PROJECT_IN_NAME = re.compile(r"/projects/([a-z][a-z0-9-]{4,28}[a-z0-9])(?:/|$)")


def _project_of(snapshot: Snapshot, resource: str) -> str | None:
    for node in snapshot.ancestors(resource):
        if node.kind == "project":
            return node.name.rsplit("/", 1)[1]
    m = _PROJECT_IN_NAME.search(resource)
    return m.group(1) if m else None


def needed_services(
    requirements: Iterable[Requirement], steps: Iterable[StepIdentity]
) -> list[str]:
    """The restrictable services the pipeline uses: Vertex AI always, the services of every
    required permission, and every Google API a step declares in its reach."""
    out = {"aiplatform.googleapis.com"}
    for prefix in {r.permission.partition(".")[0] for r in requirements}:
        service = PERMISSION_SERVICES.get(prefix)
        if service:
            out.add(service)
    for step in {tuple(s.job.reach): s for s in steps if s.job.reach}.values():  # one per reach
        for entry in _reach(step):
            if entry.kind == "google-api":
                out.add(entry.service)
    return sorted(out)


def _reach(step: StepIdentity) -> tuple[ReachEntry, ...]:
    if step.job.reach is None:
        return ()
    return parse_reach(list(step.job.reach), where=f"task {step.task!r}")


def _restricts(config: PerimeterConfig, service: str) -> bool:
    return service in config.restricted_services or "*" in config.restricted_services


def _acm(name: str) -> str:
    """The Cloud Asset full resource name of a perimeter (what suppressions name)."""
    return f"//accesscontextmanager.googleapis.com/{name}"


def _gce(name: str) -> str:
    """The full resource name of a Compute network, subnet, attachment or firewall rule."""
    return f"//compute.googleapis.com/{name}"


def _vertex(name: str) -> str:
    """The full resource name of a Vertex AI resource."""
    return f"//aiplatform.googleapis.com/{name}"


def _pev(p: Perimeter, detail: str) -> Evidence:
    return Evidence("perimeter", node=p.name, detail=detail)


def _perimeter_checks(
    out: _Out,
    requirements: tuple[Requirement, ...],
    steps: tuple[StepIdentity, ...],
    snapshot: Snapshot,
    state: SegmentationState | None,
    policy: SegmentationPolicy,
    ctx: CheckContext,
    numbers: dict[str, str],
) -> None:
    if not policy.require_perimeter:
        return  # perimeters are verified under segmentation.requirePerimeter
    perimeters = state.perimeters if state else None
    if perimeters is None:
        out.add(
            "ZT530",
            "the policy requires a VPC Service Controls perimeter but the snapshot holds no "
            "perimeters (not read): unverifiable",
            resource=f"//cloudresourcemanager.googleapis.com/projects/{ctx.project}",
            evidence=(Evidence("missing", detail="segmentation.perimeters absent"),),
        )
        return
    pipeline_number = numbers.get(ctx.project)
    if pipeline_number is None:
        out.add(
            "ZT530",
            f"the number of project {ctx.project} is unknown, so its perimeter cannot be found",
            resource=f"//cloudresourcemanager.googleapis.com/projects/{ctx.project}",
            evidence=(Evidence("missing", detail="project number"),),
        )
        return
    member = f"projects/{pipeline_number}"
    regular = [p for p in perimeters if not p.bridge]
    enforced = [p for p in regular if p.status and member in p.status.resources]
    if not enforced:
        dry = [p for p in regular if p.dry_run and member in p.dry_run.resources]
        for p in dry:
            out.add(
                "ZT512",
                f"project {ctx.project} is only in the dry-run configuration of perimeter "
                f"{p.name}: violations are logged, not blocked",
                resource=f"//cloudresourcemanager.googleapis.com/projects/{ctx.project}",
                evidence=(_pev(p, "dry-run only (spec, not status)"),),
            )
        out.add(
            "ZT510",
            f"project {ctx.project} ({member}) is in no enforced service perimeter",
            resource=f"//cloudresourcemanager.googleapis.com/projects/{ctx.project}",
            evidence=tuple(_pev(p, "dry-run only") for p in dry)
            or (Evidence("perimeter", detail=f"{plural(len(perimeters), 'perimeter')} read"),),
        )
        return
    # every project holding a declared resource must share the perimeter (or a bridge)
    seen: set[str] = set()
    needed_numbers = {pipeline_number}
    bridges = [p for p in perimeters if p.bridge and p.status]
    for r in requirements:
        resource = r.resource.name
        if resource in seen:
            continue
        seen.add(resource)
        project = _project_of(snapshot, resource)
        number = numbers.get(project) if project else None
        if number is None:
            out.add(
                "ZT530",
                f"the project holding {resource} is unknown: its perimeter is unverifiable",
                step=r.step,
                resource=resource,
                evidence=(Evidence("missing", node=resource, detail="project or project number"),),
            )
            continue
        needed_numbers.add(number)
        if number == pipeline_number:
            continue
        other = f"projects/{number}"
        if any(p.status and other in p.status.resources for p in enforced):
            continue
        bridged = [
            b
            for b in bridges
            if b.status and other in b.status.resources and member in b.status.resources
        ]
        if bridged:
            continue
        out.add(
            "ZT511",
            f"{resource} is in project {project} ({other}), outside the pipeline's perimeter "
            f"{enforced[0].name} and joined by no bridge",
            step=r.step,
            resource=resource,
            evidence=(_pev(enforced[0], f"does not hold {other}"),),
        )
    services = needed_services(requirements, steps)
    identities = {f"serviceAccount:{s.service_account}" for s in steps if s.service_account} | {
        f"serviceAccount:{ctx.pipeline_service_account}"
    }
    if ctx.submitter:
        identities.add(ctx.submitter)
    for p in enforced:
        assert p.status is not None
        _config_checks(out, p, p.status, services, needed_numbers, identities)


def _config_checks(
    out: _Out,
    p: Perimeter,
    config: PerimeterConfig,
    services: list[str],
    projects: set[str],
    identities: set[str],
) -> None:
    for service in services:
        if not _restricts(config, service):
            out.add(
                "ZT513",
                f"perimeter {p.name} does not restrict {service}, which the pipeline uses",
                resource=_acm(p.name),
                evidence=(_pev(p, f"restrictedServices lacks {service}"),),
            )
    allowed = set(config.vpc_allowed_services)
    if not config.vpc_restriction or "ALL-SERVICES" in allowed or "*" in allowed:
        out.add(
            "ZT514",
            f"perimeter {p.name} does not limit the services reachable from its VPC networks",
            resource=_acm(p.name),
            evidence=(_pev(p, "vpcAccessibleServices.enableRestriction is off or allows all"),),
        )
    members = {f"projects/{n}" for n in projects}
    for i, e in enumerate(config.egress):
        if "*" in e.resources:
            out.add(
                "ZT515",
                f"perimeter {p.name} egress rule {i} lets data leave to any project",
                resource=_acm(p.name),
                evidence=(_pev(p, f"egressPolicies[{i}].egressTo.resources = *"),),
            )
            continue
        outside = sorted(set(e.resources) - members)
        if outside:
            out.add(
                "ZT515",
                f"perimeter {p.name} egress rule {i} opens {', '.join(outside)}, which no step "
                "needs",
                resource=_acm(p.name),
                evidence=(_pev(p, f"egressPolicies[{i}].egressTo.resources"),),
            )
    for i, ing in enumerate(config.ingress):
        opened = set(ing.services) & ({*services, "*"})
        if not opened:
            continue
        if ing.identity_type in _ANY_IDENTITY or "*" in ing.sources:
            who = ing.identity_type or "any source"
            out.add(
                "ZT516",
                f"perimeter {p.name} ingress rule {i} opens {', '.join(sorted(opened))} to {who}",
                resource=_acm(p.name),
                evidence=(_pev(p, f"ingressPolicies[{i}]"),),
            )
            continue
        strangers = sorted(set(ing.identities) - identities)
        if strangers:
            out.add(
                "ZT516",
                f"perimeter {p.name} ingress rule {i} opens {', '.join(sorted(opened))} to "
                f"{', '.join(strangers)}, outside the pipeline's identities",
                resource=_acm(p.name),
                evidence=(_pev(p, f"ingressPolicies[{i}].ingressFrom.identities"),),
            )


# -- networks -------------------------------------------------------------------------------


def _attachment_name(config: dict[str, object] | None) -> str | None:
    if not config:
        return None
    value = config.get("network_attachment") or config.get("networkAttachment")
    return value if isinstance(value, str) and value else None


def _reach_allowed(entry: ReachEntry, allowed: tuple[ReachEntry, ...]) -> bool:
    """Whether the policy's ``allowedReach`` covers the whole declared entry: every address
    range AND every protocol and port of it (an all-ports entry is not inside one port)."""
    if entry.kind == "google-api":
        return any(a.kind == "google-api" and a.service == entry.service for a in allowed)
    if entry.kind == "vertex":
        resource = entry.text.split()[0]
        return any(
            a.kind == "vertex"
            and fnmatch.fnmatchcase(resource, a.text.split()[0])
            and all(_rule_admits(a.ports, rule) for rule in entry.ports)
            for a in allowed
        )
    if not entry.ranges:
        return False
    return all(
        any(
            a.kind in ("cidr", "host")
            and any(x <= lo and hi <= y for x, y in a.ranges)
            and _rule_admits(a.ports, rule)
            for a in allowed
        )
        for lo, hi in entry.ranges
        for rule in entry.ports
    )


def _rule_admits(allowed: tuple[PortRule, ...], rule: PortRule) -> bool:
    """Whether the allowed port rules admit all the traffic of ``rule``."""
    for a in allowed:
        if a.protocol is None:
            return True
        if rule.protocol is None or a.protocol != rule.protocol:
            continue
        if not a.ports:
            return True
        if rule.ports and all(
            any(x <= lo and hi <= y for x, y in a.ports) for lo, hi in rule.ports
        ):
            return True
    return False


def _step_checks(
    out: _StepOut,
    step: StepIdentity,
    state: SegmentationState | None,
    policy: SegmentationPolicy,
    ctx: CheckContext,
    by_number: dict[str, str],
    required_network: str | None,
    live: bool = False,
) -> None:
    reach = _reach(step)
    if policy.allowed_reach is not None:
        for entry in reach:
            if not _reach_allowed(entry, policy.allowed_reach):
                out.add(
                    "ZT524",
                    f"the step declares reach {entry.text!r}, which the policy does not allow",
                    evidence=(Evidence("policy", detail="segmentation.allowedReach"),),
                )
    attachment = _attachment_name(step.job.psc_interface_config)
    if not step.job.network and attachment is None:
        if policy.require_isolation:
            out.add(
                "ZT520",
                "the step has no VPC network or PSC interface: it runs on Google's network "
                "with internet egress",
                evidence=(Evidence("policy", detail="segmentation.requireIsolation"),),
            )
        elif reach:
            out.note("reach declared but not enforced (no network)")
        return
    # what is verified here is what gcp.segmentation.reads_needed reads live: a snapshot file
    # and a live check decide alike
    if not (
        policy.require_isolation
        or step.job.reach is not None
        or (attachment is not None and required_network)
    ):
        out.note("no reach declared, egress not checked")
        return
    networks = state.networks if state else None
    if networks is None:
        out.add(
            "ZT530",
            "the snapshot holds no networks or firewall rules (not read): the step's "
            "egress is unverifiable",
            evidence=(Evidence("missing", detail="segmentation.networks absent"),),
        )
        return
    assert state is not None
    source = _source(out, step, state, ctx, by_number, required_network, attachment)
    if source is None:
        return
    if step.job.reach is None and not policy.require_isolation:
        out.note("no reach declared, egress not checked")
        return
    _egress(out, step, state, source, reach, by_number, live)


def _source(
    out: _StepOut,
    step: StepIdentity,
    state: SegmentationState,
    ctx: CheckContext,
    by_number: dict[str, str],
    required_network: str | None,
    attachment: str | None,
) -> Source | None:
    networks = state.networks or {}
    sa = step.service_account
    if attachment is not None:
        key = regional_key(attachment, by_number)
        att = state.attachments.get(key)
        if att is None:
            out.add(
                "ZT521",
                f"network attachment {attachment} does not exist",
                resource=_gce(key),
                evidence=(Evidence("missing", node=key),),
            )
            return None
        region = key.split("/")[3]
        if region != ctx.location:
            out.add(
                "ZT521",
                f"network attachment {key} is in {region}, not the pipeline's region "
                f"{ctx.location}",
                resource=_gce(key),
                evidence=(Evidence("missing", node=key, detail="region"),),
            )
        if (
            required_network
            and not policy_fullmatch(required_network, att.network)  # RE2: linear time
            and not any(
                policy_fullmatch(required_network, f)
                for f in _network_forms(att.network, by_number)
            )
        ):
            out.add(
                "ZT500",
                f"the step's PSC attachment is on {att.network}, which does not match the "
                f"required {required_network}",
                evidence=(Evidence("policy", detail="network.required"),),
            )
        ranges: list[Range] = []
        for sub in att.subnetworks:
            subnet = state.subnetworks.get(regional_key(sub, by_number))
            if subnet is None:
                out.add(
                    "ZT521",
                    f"subnetwork {sub} of attachment {key} does not exist",
                    resource=_gce(sub),
                    evidence=(Evidence("missing", node=sub),),
                )
                return None
            ranges.extend(subnet.ranges)
        if not ranges:
            out.add(
                "ZT521",
                f"network attachment {key} has no subnetwork",
                resource=_gce(key),
                evidence=(Evidence("missing", node=key, detail="subnetworks"),),
            )
            return None
        if att.network not in networks:
            out.add(
                "ZT521",
                f"network {att.network} of attachment {key} does not exist",
                resource=_gce(att.network),
                evidence=(Evidence("missing", node=att.network),),
            )
            return None
        return Source(att.network, tuple(ranges), (), sa)
    assert step.job.network is not None
    net = network_key(step.job.network, by_number)
    if net not in networks:
        out.add(
            "ZT521",
            f"network {step.job.network} does not exist",
            resource=_gce(net),
            evidence=(Evidence("missing", node=net),),
        )
        return None
    allocated = [a for a in state.allocated_ranges if a.network == net]
    wanted = step.job.reserved_ip_ranges
    if wanted:
        names = {a.name.rsplit("/", 1)[-1]: a for a in allocated}
        missing = [w for w in wanted if w not in names]
        if missing:
            out.add(
                "ZT521",
                f"reserved {noun(len(missing), 'range')} {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not private services access "
                f"ranges of {net}",
                resource=_gce(net),
                evidence=(Evidence("missing", node=net, detail="allocated ranges"),),
            )
            return None
        allocated = [names[w] for w in wanted]
    if not allocated:
        out.add(
            "ZT521",
            f"network {net} has no private services access range: Vertex cannot peer with it",
            resource=_gce(net),
            evidence=(Evidence("missing", node=net, detail="purpose VPC_PEERING addresses"),),
        )
        return None
    return Source(net, tuple(a.range for a in allocated), (), sa)


def _network_forms(name: str, by_number: dict[str, str]) -> list[str]:
    """The network in its project-id and project-number forms (Vertex uses the number)."""
    forms = [name]
    project = name.split("/")[1]
    for number, pid in by_number.items():
        if pid == project:
            forms.append(name.replace(f"projects/{pid}/", f"projects/{number}/", 1))
    return forms


def _box_text(b: Box) -> str:
    proto = "other protocols" if b.other else _proto_name(b.protocol)
    if b.port_lo is not None and b.port_hi is not None and b.protocol in PORTED:
        ports = str(b.port_lo) if b.port_lo == b.port_hi else f"{b.port_lo}-{b.port_hi}"
        if (b.port_lo, b.port_hi) == (0, 65535):
            ports = "all ports"
        proto = f"{proto}:{ports}"
    return f"{format_range((b.lo, b.hi))} {proto}"


def _proto_name(number: int) -> str:
    from zt_pipelines.segmentation.model import PROTOCOLS

    for name, n in PROTOCOLS.items():
        if n == number:
            return name
    return str(number)


def _merge_boxes(boxes: list[Box]) -> list[Box]:
    """Adjacent address ranges of one protocol/port span as one box (for messages)."""
    out: list[Box] = []
    for b in sorted(boxes, key=lambda b: (b.protocol, b.other, b.port_lo or 0, b.lo)):
        last = out[-1] if out else None
        if (
            last is not None
            and (last.protocol, last.other, last.port_lo, last.port_hi)
            == (b.protocol, b.other, b.port_lo, b.port_hi)
            and last.hi + 1 == b.lo
        ):
            out[-1] = Box(
                last.lo, b.hi, b.protocol, b.other, b.port_lo, b.port_hi, b.allowed, last.rule
            )  # (dataclasses.replace is several times slower)
        else:
            out.append(b)
    return out


def _rule_scope(b: Box) -> str:
    """`` (it opens tcp:443 to 0.0.0.0/0)`` for a rule; nothing for the implied rule."""
    rule = b.rule
    if rule is None:
        return " (no deny rule covers it)"
    dests = ", ".join(format_range(r) for r in rule.destination_ranges) or "0.0.0.0/0"
    traffic = " ".join(
        "all"
        if t.protocol is None
        else _proto_name(t.protocol)
        + (":" + ",".join(str(a) if a == z else f"{a}-{z}" for a, z in t.ports) if t.ports else "")
        for t in rule.traffic
    )
    return f" (it opens {traffic} to {dests})"


def _rule_text(b: Box) -> tuple[str, str]:
    if b.rule is None:
        return "", "the implied allow-egress rule (priority 65535)"
    return b.rule.name, f"firewall rule {b.rule.name} (priority {b.rule.priority})"


def _ports_cover(rules: tuple[PortRule, ...], b: Box) -> bool:
    """Whether the box's protocol and whole port interval are in ``rules`` (a reach entry's)."""
    for rule in rules:
        if rule.protocol is not None and rule.protocol != b.protocol:
            continue
        if rule.protocol is None or not rule.ports or b.port_lo is None or b.port_hi is None:
            return True
        if any(a <= b.port_lo and b.port_hi <= z for a, z in rule.ports):
            return True
    return False


def _classify(
    boxes: list[Box], resolved: list[ReachEntry], endpoints: list[VertexEndpoint]
) -> tuple[dict[tuple[str, str], list[Box]], dict[str, list[Box]], list[ReachEntry]]:
    """Allowed boxes sorted into: reaching an undeclared endpoint, beyond the reach (by the
    rule that allows them), and the declared entries nothing is allowed to."""
    beyond: dict[str, list[Box]] = {}
    hits: dict[tuple[str, str], list[Box]] = {}
    # the reach and the endpoints as flat interval lists: one pass over the boxes
    covering = [(a, z, e.ports) for e in resolved for a, z in e.ranges]
    places = [(a, z, e) for e in endpoints for a, z in e.ranges]
    reached = [False] * len(resolved)
    entry_ranges = [(i, a, z) for i, e in enumerate(resolved) for a, z in e.ranges]
    for b in boxes:
        if not b.allowed:
            continue
        lo, hi = b.lo, b.hi
        for i, a, z in entry_ranges:
            if not reached[i] and a <= lo and hi <= z:
                reached[i] = True
        if any(a <= lo and hi <= z and _ports_cover(ports, b) for a, z, ports in covering):
            continue
        ep = next((e for a, z, e in places if a <= lo and hi <= z), None)
        name = b.rule.name if b.rule is not None else ""
        if ep is not None:
            hits.setdefault((ep.name, name), []).append(b)
        else:
            beyond.setdefault(name, []).append(b)
    blocked = [e for i, e in enumerate(resolved) if e.ranges and not reached[i]]
    return hits, beyond, blocked


def _egress(
    out: _StepOut,
    step: StepIdentity,
    state: SegmentationState,
    source: Source,
    reach: tuple[ReachEntry, ...],
    by_number: dict[str, str],
    live: bool = False,
) -> None:
    networks = state.networks or {}
    own = networks.get(source.network)
    linked = {source.network, *(own.peerings if own else ())}
    resolved: list[ReachEntry] = []
    declared: set[str] = set()
    for entry in reach:
        if entry.kind == "vertex":
            name = vertex_key(entry.text.split()[0], by_number)
            declared.add(name)
            # one endpoint may be on several networks (PSC endpoints): every address counts
            ranges = tuple(r for e in state.endpoints if e.name == name for r in e.ranges)
            if not any(e.name == name for e in state.endpoints):
                where = "among the Vertex endpoints read" if live else "in the snapshot's endpoints"
                out.note(f"{entry.text} is not {where}")
                continue
            resolved.append(ReachEntry(entry.text, "vertex", ranges, entry.ports))
        else:
            resolved.append(entry)
    endpoints = [e for e in state.endpoints if e.network in linked and e.name not in declared]
    extra_ranges = [r for e in resolved for r in e.ranges] + [
        r for e in endpoints for r in e.ranges
    ]
    extra_ports: dict[int, list[Range]] = {}
    for e in resolved:
        for t in e.ports:
            if t.protocol is not None:
                extra_ports.setdefault(t.protocol, []).extend(t.ports)
    key = (
        out.index.key(source, extra_ranges, extra_ports),
        tuple(e.text for e in resolved),
        tuple(e.name for e in endpoints),
    )
    cached = out.egress.get(key)
    if cached is None:
        cached = _classify(
            out.index.allowed_boxes(source, extra_ranges, extra_ports), resolved, endpoints
        )
        out.egress[key] = cached
    hits, beyond, blocked = cached
    for (endpoint, _), bs in sorted(hits.items()):
        node, text = _rule_text(bs[0])
        ep_net = next(e.network for e in endpoints if e.name == endpoint)
        out.add(
            "ZT523",
            f"the step can reach {endpoint} on network {ep_net}, which it does not declare: "
            f"{text} allows {_box_text(bs[0])}",
            resource=_vertex(endpoint),
            evidence=(
                Evidence("firewall", node=node, detail=f"{text} allows {_box_text(bs[0])}"),
                Evidence("endpoint", node=endpoint, detail=f"on {ep_net}"),
            ),
        )
    for _, bs in sorted(beyond.items()):
        node, text = _rule_text(bs[0])
        bs = _merge_boxes(bs)
        widest = max(bs, key=lambda b: b.hi - b.lo)
        shown = ", ".join(_box_text(b) for b in sorted(bs, key=lambda b: b.lo - b.hi)[:3])
        more = f" (+{len(bs) - 3} more)" if len(bs) > 3 else ""
        opens = _rule_scope(bs[0])
        out.add(
            "ZT522",
            f"{text} allows egress beyond the step's reach from {source.network}"
            f"{opens}: e.g. {_box_text(widest)}",
            resource=_gce(node or source.network),
            evidence=(Evidence("firewall", node=node or source.network, detail=shown + more),),
        )
    for entry in blocked:
        out.add(
            "ZT525",
            f"the firewall blocks the step's declared reach {entry.text!r}: the step will "
            "fail to connect",
            resource=_gce(source.network),
            evidence=(Evidence("firewall", node=source.network, detail="no allowed path"),),
        )
