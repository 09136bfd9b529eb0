"""What each step can reach, for people: the static firewall evaluation laid out per step
(pure). Used by ``zt-pipelines reach``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.requirements import CheckContext
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.segmentation.evaluate import (
    _attachment_name,
    _box_text,
    _numbers,
    _reach,
    _rule_text,
    _source,
    _StepOut,
)
from zt_pipelines.segmentation.firewall import Box, FirewallIndex
from zt_pipelines.segmentation.model import format_range


@dataclass(frozen=True)
class StepReach:
    """One step's network position and what its firewall allows out.

    Attributes:
        task: the task path.
        network: the VPC its traffic leaves from (empty: Google's network, or unknown).
        source: its source address ranges.
        declared: its ``reach`` entries (``None``: not declared).
        allowed: ``(rule, what)`` for every allowed egress region, by the deciding rule
            (``rule`` empty for the implied allow-egress rule).
        problem: why nothing could be evaluated (no network, missing pieces, not read).
    """

    task: str
    network: str
    source: tuple[str, ...]
    declared: tuple[str, ...] | None
    allowed: tuple[tuple[str, str], ...] = ()
    problem: str = ""


def explain_reach(
    steps: Iterable[StepIdentity], snapshot: Snapshot, context: CheckContext
) -> list[StepReach]:
    """Every step's :class:`StepReach` from the snapshot's ``segmentation`` section."""
    state = snapshot.segmentation
    numbers = _numbers(snapshot, state)
    by_number = {n: p for p, n in numbers.items()}
    index = FirewallIndex(state.egress_table if state else ())
    out: list[StepReach] = []
    for step in steps:
        declared = step.job.reach
        attachment = _attachment_name(step.job.psc_interface_config)
        if not step.job.network and attachment is None:
            out.append(StepReach(step.task, "", (), declared, problem="no VPC: internet egress"))
            continue
        if state is None or state.networks is None:
            out.append(StepReach(step.task, "", (), declared, problem="networks not read"))
            continue
        scratch = _StepOut(index, {})
        source = _source(scratch, step, state, context, by_number, None, attachment)
        if source is None:
            why = "; ".join(message for _, message, _ in scratch.pending) or "no source"
            out.append(StepReach(step.task, "", (), declared, problem=why))
            continue
        extra = [r for e in _reach(step) for r in e.ranges]
        boxes = _merged(index.allowed_boxes(source, extra))
        allowed = tuple((_rule_text(b)[0], _box_text(b)) for b in boxes)
        out.append(
            StepReach(
                step.task,
                source.network,
                tuple(format_range(r) for r in source.ranges),
                declared,
                allowed,
            )
        )
    return out


def _merged(boxes: list[Box]) -> list[Box]:
    """Adjacent address ranges with the same rule, protocol and ports as one box."""
    out: list[Box] = []

    def key(b: Box) -> tuple[str, int, bool, int, int, int]:
        return (_rule_text(b)[0], b.protocol, b.other, b.port_lo or 0, b.port_hi or 0, b.lo)

    for b in sorted(boxes, key=key):
        last = out[-1] if out else None
        if last is not None and key(last)[:5] == key(b)[:5] and last.hi + 1 == b.lo:
            out[-1] = replace(last, hi=b.hi)
        else:
            out.append(b)
    return out


def render_reach(rows: list[StepReach]) -> str:
    """A readable listing of :func:`explain_reach`."""
    lines: list[str] = []
    for r in rows:
        declared = "not declared" if r.declared is None else ", ".join(r.declared) or "nothing"
        lines.append(f"{r.task}")
        lines.append(f"  declared reach: {declared}")
        if r.problem:
            lines.append(f"  egress: {r.problem}")
            continue
        lines.append(f"  network {r.network} from {', '.join(r.source)}")
        if not r.allowed:
            lines.append("  allowed egress: none")
        for rule, what in r.allowed:
            lines.append(f"  allows {what}  ({rule or 'implied allow-egress rule'})")
    return "\n".join(lines)
