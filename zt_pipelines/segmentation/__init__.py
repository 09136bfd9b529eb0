"""Micro-segmentation: VPC Service Controls perimeters and VPC networks, verified per step.

The house pattern: a pure model (:mod:`.model`), a static firewall evaluator
(:mod:`.firewall`), the checks (:mod:`.evaluate`), the snapshot section (:mod:`.snapshot`) and
plan emission (:mod:`.plan`); the live reads are in :mod:`zt_pipelines.gcp.compute` and
:mod:`zt_pipelines.gcp.access_policy`. See docs/segmentation.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.findings import apply_policy
from zt_pipelines.policy.orgpolicy import OrgPolicy
from zt_pipelines.policy.report import Report, sort_findings
from zt_pipelines.policy.requirements import CheckContext, Requirement
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.segmentation.evaluate import SegmentationPolicy, segmentation_findings
from zt_pipelines.segmentation.model import SegmentationState, parse_reach

__all__ = [
    "SegmentationPolicy",
    "SegmentationState",
    "check_segmentation",
    "segmentation_findings",
    "segmentation_policy",
]


def segmentation_policy(policy: OrgPolicy) -> SegmentationPolicy:
    """The segmentation part of an organisation policy."""
    allowed = None
    if policy.allowed_reach is not None:
        allowed = parse_reach(list(policy.allowed_reach), where=f"{policy.source}: allowedReach")
    return SegmentationPolicy(policy.require_perimeter, policy.require_isolation, allowed)


def check_segmentation(
    report: Report,
    requirements: Iterable[Requirement],
    steps: Iterable[StepIdentity],
    snapshot: Snapshot,
    policy: OrgPolicy,
    *,
    now: datetime,
    context: CheckContext,
) -> Report:
    """``report`` with the segmentation findings and notes added (pure).

    The organisation policy's severities and suppressions apply to them as to every finding.
    """
    raw, notes = segmentation_findings(
        requirements,
        steps,
        snapshot,
        segmentation_policy(policy),
        context,
        required_network=policy.required_network,
    )
    if not raw and not notes:
        return report
    active, suppressed = apply_policy(raw, policy, now=now)
    return replace(
        report,
        findings=sort_findings([*report.findings, *active]),
        suppressed=(*report.suppressed, *suppressed),
        notes=(*report.notes, *notes),
    )
