"""Privileged Access Manager eligibility of the pipeline's identities (ZT221, ZT222) — pure.

An entitlement lets its eligible principals request its roles on its organisation, folder or
project (and so on everything below); a requester needs no PAM permission, and without an
approval workflow the grant is immediate. So a step identity eligible for an entitlement holds
its roles whenever the code it runs asks: standing privilege that no allow policy shows until
a grant is active. Judged like a binding, against what the identity needs on that node:

- **ZT221** (error) — eligible, no approval needed, and the roles give permissions beyond the
  identity's needs there (or a role whose definition is unknown);
- **ZT222** (warning) — the same behind an approval workflow (someone must approve at run
  time; the eligibility itself is still beyond least privilege).

Eligibility through a group of unknown membership is "may be eligible": the same codes (fail
closed). A failed listing is an unreadable read (ZT400), never "no entitlements".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.catalogue import escalation_rank, escalation_reason
from zt_pipelines.policy.members import Match, MemberMatch
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import CheckContext, sa_member
from zt_pipelines.policy.snapshot import Entitlement
from zt_pipelines.policy.wording import noun, plural
from zt_pipelines.resources import display_uri

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator

_MAX_LISTED = 5


def _eligibility(
    ev: Evaluator, entitlement: Entitlement, principal: str
) -> tuple[MemberMatch, str] | None:
    """The strongest match of ``principal`` among the entitlement's eligible principals
    (YES before UNKNOWN), with the matching member; ``None`` when it is not eligible."""
    best: tuple[MemberMatch, str] | None = None
    for member in entitlement.eligible:
        found = ev.members.matches(member, principal)
        if found.match is Match.YES:
            return found, member
        if found.match is Match.UNKNOWN and best is None:
            best = (found, member)
    return best


def pam_findings(
    steps: tuple[StepIdentity, ...],
    ev: Evaluator,
    ctx: CheckContext,
    needs_at: Mapping[str, Mapping[str, set[str]]],
) -> list[Finding]:
    """ZT221/ZT222 for every entitlement a checked identity is (or may be) eligible for whose
    roles give more than the identity needs on the entitlement's node.

    Args:
        steps: the pipeline's steps and their identities.
        ev: the evaluator over the snapshot (entitlements, roles, group membership).
        ctx: the check context (the pipeline identity).
        needs_at: member → node → the permissions it needs on that node or below it.
    """
    entitlements = [e for e in ev.snapshot.entitlements if e.state != "DELETED"]
    if not entitlements:
        return []
    tasks: dict[str, set[str]] = {}
    for s in steps:
        if s.service_account:
            tasks.setdefault(sa_member(s.service_account), set()).add(s.task)
    tasks.setdefault(sa_member(ctx.pipeline_service_account), set())
    out: list[Finding] = []
    for principal in sorted(tasks):
        for e in entitlements:
            found = _eligibility(ev, e, principal)
            if found is None:
                continue
            finding = _finding(ev, e, principal, found, tasks[principal], needs_at)
            if finding is not None:
                out.append(finding)
    return out


def _finding(
    ev: Evaluator,
    e: Entitlement,
    principal: str,
    found: tuple[MemberMatch, str],
    tasks: set[str],
    needs_at: Mapping[str, Mapping[str, set[str]]],
) -> Finding | None:
    match, member = found
    perms: set[str] = set()
    unknown: list[str] = []
    for r in e.roles:
        got = ev.role_permissions(r.role)
        if got is None:
            unknown.append(r.role)
        else:
            perms |= got
    needed = needs_at.get(principal, {}).get(e.node, set())
    excess = perms - needed
    if not excess and not unknown:
        return None  # the entitlement gives nothing the identity does not already need there
    code = "ZT222" if e.approval_required else "ZT221"
    roles = ", ".join(r.role for r in e.roles)
    how = (
        "with an approval, it can be granted"
        if e.approval_required
        else "no approval needed: it can grant itself"
    )
    who = "is" if match.match is Match.YES else "may be"
    parts = []
    if excess:
        sample = ", ".join(sorted(excess)[:_MAX_LISTED]) + (
            " …" if len(excess) > _MAX_LISTED else ""
        )
        parts.append(f"{plural(len(excess), 'permission')} beyond its needs there: {sample}")
    risky = sorted((p for p in excess if escalation_reason(p)), key=escalation_rank)
    if risky:
        parts.append(f"escalation-capable: {', '.join(risky[:_MAX_LISTED])}")
    if unknown:
        parts.append(f"unknown {noun(len(unknown), 'role')}: {', '.join(unknown)}")
    conditions = [r.condition for r in e.roles if r.condition]
    message = (
        f"{principal} {who} eligible for the Privileged Access Manager entitlement {e.name} "
        f"({match.reason or member}); {how} {roles} on {display_uri(e.node)} at run time"
        + (f" for up to {e.max_duration}" if e.max_duration else "")
        + ": "
        + "; ".join(parts)
    )
    approval = "required" if e.approval_required else "not required"
    detail = f"PAM entitlement {e.name}: approval {approval}" + (
        f"; conditions: {' / '.join(conditions)}" if conditions else ""
    )
    return Finding(
        code,
        DEFAULT_SEVERITIES[code],
        message,
        step=",".join(sorted(tasks)) or None,
        principal=principal,
        resource=e.node,
        permission=risky[0] if len(risky) == 1 else None,
        evidence=tuple(
            Evidence("policy", node=e.node, role=r.role, member=member, detail=detail)
            for r in e.roles
        ),
    )
