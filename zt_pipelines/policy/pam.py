"""Privileged Access Manager eligibility of the pipeline's identities (ZT221, ZT222) — pure.

An entitlement lets its eligible principals request its roles on its organisation, folder or
project (and so on everything below); a requester needs no PAM permission, and without an
approval workflow the grant is immediate. So a step identity eligible for an entitlement holds
its roles whenever the code it runs asks: standing privilege that no allow policy shows until
a grant is active. Judged like a binding, against what the identity needs on that node:

- **ZT221** (error) — eligible, no approval needed, and the roles give permissions beyond the
  identity's needs there (or a role whose definition is unknown);
- **ZT222** (warning) — the same behind an approval workflow (someone must approve at run
  time; the eligibility itself is still beyond least privilege); also another principal's
  approval-gated eligibility to become an identity (below).

Eligibility through a group of unknown membership is "may be eligible": the same codes (fail
closed). A failed listing is an unreadable read (ZT400), never "no entitlements".

Inward: another principal eligible for an entitlement, on an identity's service account, its
project, folder or organisation, whose roles can impersonate or rewrite the policy of the
accounts there, can become the identity whenever it asks — **ZT220** without approval (as a
standing binding would be), ZT222 (warning) with one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.catalogue import escalation_rank, escalation_reason
from zt_pipelines.policy.members import Match, MemberMatch, normalize_principal
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import CheckContext, sa_member
from zt_pipelines.policy.snapshot import Entitlement
from zt_pipelines.policy.wording import noun, plural
from zt_pipelines.resources import display_uri, service_account_resource

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


def pam_inbound_findings(
    steps: tuple[StepIdentity, ...], ev: Evaluator, ctx: CheckContext
) -> tuple[list[Finding], list[str]]:
    """ZT220 (no approval) or ZT222 (approval) for every principal other than the
    pipeline's identities eligible for an entitlement on an identity's account or an ancestor
    whose roles carry an impersonation or policy-rewrite permission; one per (entitlement,
    principal), naming every identity it reaches."""
    from zt_pipelines.policy.inbound import IMPERSONATION_PERMISSIONS
    from zt_pipelines.policy.reach import EDGE_PERMISSIONS

    entitlements = [e for e in ev.snapshot.entitlements if e.state != "DELETED"]
    if not entitlements:
        return [], []
    tasks: dict[str, set[str]] = {}
    for s in steps:
        if s.service_account:
            tasks.setdefault(sa_member(s.service_account), set()).add(s.task)
    pipeline = sa_member(ctx.pipeline_service_account)
    tasks.setdefault(pipeline, set())
    edges = frozenset(EDGE_PERMISSIONS)
    # (entitlement, member) -> (permission, the identities reached)
    reached: dict[tuple[str, str], tuple[str, list[str]]] = {}
    by_name = {e.name: e for e in entitlements}
    for identity in sorted(tasks):
        email = identity.partition(":")[2]
        chain = {n.name for n in ev.chain(service_account_resource(email))[0]}
        for e in entitlements:
            if e.node not in chain:
                continue
            perms: set[str] = set()
            for r in e.roles:
                perms |= ev.role_permissions(r.role) or set()
            carried = sorted(perms & edges)
            unknown_role = any(ev.role_permissions(r.role) is None for r in e.roles)
            if not carried and not unknown_role:
                continue
            for member in e.eligible:
                if normalize_principal(member) in tasks:
                    continue  # a pipeline identity: judged as its own eligibility (ZT221/222)
                expected = (
                    identity == pipeline
                    and ctx.submitter is not None
                    and normalize_principal(member) == normalize_principal(ctx.submitter)
                    and set(carried) <= {"iam.serviceAccounts.actAs"}
                    and not unknown_role
                )
                if expected:
                    continue  # the submitter acting as the pipeline identity
                key = (e.name, member)
                impersonate = [p for p in carried if p in IMPERSONATION_PERMISSIONS]
                why = (impersonate or carried or ["a role whose definition is unknown"])[0]
                found = reached.setdefault(key, (why, []))
                found[1].append(identity)
    out: list[Finding] = []
    notes: list[str] = []
    for (name, member), (permission, identities) in sorted(reached.items()):
        e = by_name[name]
        roles = ", ".join(r.role for r in e.roles)
        who = ", ".join(i.partition(":")[2] for i in identities)
        code = "ZT222" if e.approval_required else "ZT220"
        how = "with an approval" if e.approval_required else "without approval"
        step_names = sorted({t for i in identities for t in tasks.get(i, set())})
        out.append(
            Finding(
                code,
                DEFAULT_SEVERITIES[code],
                f"{member} can become {who}: it is eligible, {how}, for the "
                f"Privileged Access Manager entitlement {name} ({roles} on "
                f"{display_uri(e.node)}), which carries {permission}",
                step=",".join(step_names) or None,
                principal=member,
                resource=e.node,
                permission=permission if permission.count(".") >= 2 else None,
                evidence=tuple(
                    Evidence(
                        "policy",
                        node=e.node,
                        role=r.role,
                        member=member,
                        detail=f"PAM entitlement {name}: approval "
                        + ("required" if e.approval_required else "not required"),
                    )
                    for r in e.roles
                ),
            )
        )
    return out, notes
