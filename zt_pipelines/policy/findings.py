"""From requirements, steps and a snapshot to findings: the rules behind every ZT code.

Called through :func:`zt_pipelines.policy.engine.evaluate`, with the engine's
:class:`~zt_pipelines.policy.engine.Evaluator` passed in: this module never imports the engine
at run time (no import circle). Pure: no IO, no clock.
"""

from __future__ import annotations

import fnmatch
import heapq
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime
from operator import attrgetter
from typing import TYPE_CHECKING

from zt_pipelines.errors import IdentityError
from zt_pipelines.identity import DEFAULT_KINDS, IdentityKinds, classify_identity
from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.acl import acl_findings, acl_summary
from zt_pipelines.policy.catalogue import escalation_rank, escalation_reason, is_basic_role
from zt_pipelines.policy.dormant import dormant_findings
from zt_pipelines.policy.gcpc_checks import (
    accounts_absent,
    gcpc_findings,
    key_summary,
    launched_identity_uses,
)
from zt_pipelines.policy.inbound import inbound_findings
from zt_pipelines.policy.lending import lent_permissions, lent_reads_only
from zt_pipelines.policy.members import PUBLIC_MEMBERS, Match
from zt_pipelines.policy.orgpolicy import (
    DEFAULT_SEVERITIES,
    STEP_WAIVER_ONLY,
    STRICT,
    UNRELAXABLE,
    OrgPolicy,
    Suppression,
    policy_fullmatch,
)
from zt_pipelines.policy.pam import pam_findings, pam_inbound_findings
from zt_pipelines.policy.reach import (
    Holding,
    Holdings,
    path_evidence,
    reach_graph,
    render_path,
    short,
)
from zt_pipelines.policy.reach import (
    accounts_without_policy as graph_accounts_without_policy,
)
from zt_pipelines.policy.report import (
    Evidence,
    Finding,
    Grant,
    Report,
    Severity,
    SuppressedFinding,
    new_evidence,
    new_finding,
    new_grant,
    sort_findings,
)
from zt_pipelines.policy.requirements import CheckContext, Requirement, sa_member, submitter_member
from zt_pipelines.policy.rootowner import root_owner_findings
from zt_pipelines.policy.scope import URIS as _URIS
from zt_pipelines.policy.scope import broad_grant_parts, object_grant, object_permission
from zt_pipelines.policy.scope import uri as _uri
from zt_pipelines.policy.timewindow import lapse_findings
from zt_pipelines.policy.wording import noun, plural
from zt_pipelines.resources import STORAGE, service_account_resource

if TYPE_CHECKING:  # types only: the engine calls this module, never the other way round
    from zt_pipelines.policy.engine import Decision, Evaluator
    from zt_pipelines.policy.snapshot import Binding, Node

_MAX_LISTED = 8
_NO, _UNKNOWN = Match.NO, Match.UNKNOWN  # plain globals: Enum attributes are slow in loops
UPSTREAM = "upstream"  # the evidence kind carrying a ZT102 finding's upstream digest


def build_report(
    requirements: tuple[Requirement, ...],
    steps: tuple[StepIdentity, ...],
    evaluator: Evaluator,
    policy: OrgPolicy | None,
    *,
    now: datetime,
    context: CheckContext,
    pipeline: str = "",
) -> Report:
    """Evaluate everything and return the report (see :func:`engine.evaluate`)."""
    policy = policy or STRICT
    _URIS.clear()  # every check renders its own names (and pays for them: no warm start)
    raw: list[Finding] = []
    notes: list[str] = []
    raw += _identity_findings(steps, evaluator, policy, context)
    if context.submitter is None:
        notes.append("submitter unknown: its actAs/pipelineJobs.create (ZT300) were not checked")
    if context.pipeline_root is None:  # nothing proven about where the artifacts go
        raw.append(
            Finding(
                "ZT419",
                policy.severity("ZT419"),
                "no pipeline root (no --pipeline-root / pipeline_root=, no defaultPipelineRoot, "
                "no runtimeConfig.gcsOutputDirectory, no staging bucket): aiplatform would "
                f"create a bucket named gs://{context.project}-vertex-pipelines-"
                f"{context.location}-<random> at submit time, so its owner and the steps' "
                "artifact access cannot be verified",
                evidence=(Evidence("policy", detail="pipeline_root"),),
            )
        )
    raw += root_owner_findings(evaluator.snapshot, context)  # ZT404, as submit() refuses
    grouped = _Needs(requirements, evaluator)
    for principal in grouped.of:
        evaluator.member_bindings(principal)  # indexed once: decide() then visits only these
    decisions = _decide_all(requirements, evaluator, now)
    permission_findings, granted = _permission_findings(requirements, decisions)
    raw += permission_findings
    raw += lapse_findings(requirements, decisions, evaluator, now=now, window=context.run_window)
    identities = _checked_identities(steps, context)  # the excess, scope and reach checks'
    checked = _checked_steps(identities)
    excess, excess_notes, scoped = _excess_and_scope_findings(
        requirements, steps, evaluator, policy, context, grouped, checked, now
    )
    raw += excess
    notes += excess_notes
    raw += scoped
    reach, reach_notes = _reach_findings(
        requirements, steps, evaluator, context, grouped, identities, now=now
    )
    raw += reach
    notes += reach_notes
    inbound, inbound_notes = inbound_findings(steps, evaluator, context, now=now)
    raw += inbound
    notes += inbound_notes
    raw += dormant_findings(steps, evaluator, context)
    raw += pam_findings(steps, evaluator, context, grouped.at)
    pam_in, pam_notes = pam_inbound_findings(steps, evaluator, context)
    raw += pam_in
    notes += pam_notes
    raw += _public_findings(requirements, evaluator)
    acls, acl_notes = _bucket_acl_findings(requirements, evaluator)
    raw += acls
    notes += acl_notes
    raw += _unreadable_findings(evaluator)
    raw += [_f(code, message) for code, message in evaluator.snapshot.notes]  # e.g. ZT401
    raw += _org_policy_findings(steps, policy, context)
    raw += gcpc_findings(steps, evaluator.snapshot, policy, context)
    if evaluator.catalogue_used:
        from zt_pipelines.policy.role_catalogue import catalogue_info

        used = sorted(evaluator.catalogue_used)
        notes.append(
            "the snapshot lacks the definition of "
            f"{plural(len(used), 'predefined role')}; the shipped "
            f"catalogue's ({catalogue_info().date}) was used: "
            + ", ".join(used[:_MAX_LISTED])
            + (" …" if len(used) > _MAX_LISTED else "")
        )
    suppressed: list[SuppressedFinding] = []
    if policy.suppressions:
        active, suppressed, expired = _apply_suppressions(_levelled(raw, policy), policy, now)
        ordered = sort_findings(active + expired)
    else:
        ordered = _levelled_sorted(raw, policy)  # the same, in one pass
    return Report(
        granted=tuple(granted),
        findings=ordered,
        suppressed=tuple(suppressed),
        pipeline=pipeline,
        project=context.project,
        location=context.location,
        checked_at=now.isoformat(),
        notes=tuple(notes),
        template=context.template,
        step_identities=tuple(
            [(s.task, sa_member(s.service_account)) for s in steps if s.service_account]
        ),
    )


def _f(code: str, message: str, **kw: object) -> Finding:
    # the strict default here; the organisation policy's severity is applied once at the end
    return new_finding(code, DEFAULT_SEVERITIES[code], message, **kw)  # type: ignore[arg-type]


_SAME = attrgetter("code", "step", "principal", "resource", "permission", "message")


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[object, ...]] = set()
    out = []
    for f in findings:
        key = _SAME(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _levelled(raw: list[Finding], policy: OrgPolicy) -> list[Finding]:
    """:func:`_dedupe`, with the organisation policy's severity applied (one pass)."""
    severity: dict[str, Severity] = {}
    seen: set[tuple[object, ...]] = set()
    out = []
    for f in raw:
        key = _SAME(f)
        if key in seen:
            continue
        seen.add(key)
        level = severity.get(f.code)
        if level is None:
            level = severity[f.code] = policy.severity(f.code)
        if level is not f.severity:
            f = new_finding(
                f.code, level, f.message, f.step, f.principal, f.resource, f.permission, f.evidence
            )
        out.append(f)
    return out


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
_IN_STEP = attrgetter("principal", "resource", "permission", "message")


def _in_step_key(f: Finding) -> tuple[str, str, str, str]:
    return (f.principal or "", f.resource or "", f.permission or "", f.message)


def _levelled_sorted(raw: list[Finding], policy: OrgPolicy) -> tuple[Finding, ...]:
    """``sort_findings(_levelled(raw, policy))`` without a suppression in between, in one
    pass: the findings are grouped by code, then by step (in ``raw``'s order); the codes are
    ordered by severity, the steps by name, and only each group — a few findings — is sorted
    (stable), by principal, resource, permission and message. A duplicate sorts right after
    the first of its kind, which it follows in ``raw``: that one is kept, as :func:`_dedupe`
    keeps it."""
    by_code: dict[str, dict[str, list[Finding]]] = {}
    code: str | None = None
    last: object = by_code  # the step of the previous finding (nothing is this object)
    steps: dict[str, list[Finding]] = {}
    group: list[Finding] = []
    for f in raw:
        step = f.step
        # findings come in runs of one code and step: the same group (same objects) as before
        if step is not last or f.code is not code:
            if f.code is not code:
                code = f.code
                got_steps = by_code.get(code)
                if got_steps is None:
                    got_steps = by_code[code] = {}
                steps = got_steps
            last = step
            key = step or ""
            got = steps.get(key)
            if got is None:
                got = steps[key] = []
            group = got
        group.append(f)
    levels = {c: policy.severity(c) for c in by_code}
    out: list[Finding] = []
    for c in sorted(by_code, key=lambda c: (_ORDER[levels[c]], c)):
        level = levels[c]
        steps = by_code[c]
        for step in sorted(steps):
            group = steps[step]
            if len(group) > 1:
                _add_sorted(group, level, out)
                continue
            f = group[0]
            if level is not f.severity:
                f = _levelled_one(f, level)
            out.append(f)
    return tuple(out)


def _levelled_one(f: Finding, level: Severity) -> Finding:
    return new_finding(
        f.code, level, f.message, f.step, f.principal, f.resource, f.permission, f.evidence
    )


def _add_sorted(group: list[Finding], level: Severity, out: list[Finding]) -> None:
    """Add one (code, step) group to ``out`` at ``level``: sorted by principal, resource,
    permission and message (``None`` as ``""``; stable), its duplicates dropped."""
    try:  # the fields as they are: the same order unless a None meets a str (then it raises)
        ordered = sorted(group, key=_IN_STEP)
    except TypeError:
        ordered = sorted(group, key=_in_step_key)
    first = ordered[0]  # the first finding of the current run of equal sort keys
    run: set[tuple[object, ...]] | None = None  # its run's raw keys, once the run has two
    out.append(first if level is first.severity else _levelled_one(first, level))
    for f in ordered[1:]:
        # the same sort key? The message first (it differs most), then the rest
        if (
            f.message == first.message
            and (f.resource or "") == (first.resource or "")
            and (f.principal or "") == (first.principal or "")
            and (f.permission or "") == (first.permission or "")
        ):
            # a duplicate, unless None and "" differ (the sort saw both as "")
            if run is None:
                run = {_SAME(first)}
            same = _SAME(f)
            if same in run:
                continue
            run.add(same)
        else:
            first, run = f, None
        out.append(f if level is f.severity else _levelled_one(f, level))


# -- identities ------------------------------------------------------------------------------


def _identity_findings(
    steps: tuple[StepIdentity, ...], ev: Evaluator, policy: OrgPolicy, ctx: CheckContext
) -> list[Finding]:
    out: list[Finding] = []
    pipeline_sa = ctx.pipeline_service_account.lower()
    found = classify_identity(pipeline_sa, where="pipeline service account")
    if found.is_default:
        out.append(
            _f(
                "ZT100",
                f"the pipeline would run as {found.description} ({pipeline_sa})",
                principal=sa_member(pipeline_sa) if pipeline_sa else None,
                evidence=(Evidence("identity", detail=found.default_kind or ""),),
            )
        )
    users: dict[str, list[str]] = defaultdict(list)
    # each email classified once (thousands of steps): its default kind, "" for a user-managed
    # account (no record built per step)
    kinds = {pipeline_sa: found.default_kind or ""}
    identity_kind = IdentityKinds()
    for step in steps:
        sa = (step.service_account or "").lower()
        if not sa:
            if step.source == "pipeline":
                out.append(
                    _f(
                        "ZT101",
                        "the step has no identity of its own and runs as the "
                        f"pipeline service account {pipeline_sa}",
                        step=step.task,
                        principal=sa_member(pipeline_sa),
                    )
                )
            else:
                out.append(
                    _f(
                        "ZT102",
                        "the step's identity is not pinned before submission "
                        f"(source: {step.source})",
                        step=step.task,
                    )
                )
            continue
        if getattr(step, "unescaped_payload_inputs", ()):
            out.append(_pasted_inputs(step, sa))
        kind = kinds.get(sa)
        if kind is None:
            try:  # where it is only named in the error (thousands of steps)
                kind = kinds[sa] = identity_kind(sa) or ""
            except IdentityError:
                identity_kind(sa, where=f"task {step.task!r}")  # raises, naming it
                raise
        if kind:
            out.append(
                _f(
                    "ZT100",
                    f"the step would run as {DEFAULT_KINDS[kind]} ({sa})",
                    step=step.task,
                    principal=sa_member(sa),
                    evidence=(Evidence("identity", detail=kind),),
                )
            )
        if sa == pipeline_sa:
            out.append(
                _f(
                    "ZT103",
                    "the step runs as the pipeline service account",
                    step=step.task,
                    principal=sa_member(sa),
                )
            )
        users[sa].append(step.task)
    if not policy.allow_shared_identities:
        jobs = launched_identity_uses(steps)  # GCPC jobs run as their own identity too
        for sa in sorted(set(users) | set(jobs)):
            tasks = users.get(sa, [])
            if len(tasks) + len(jobs.get(sa, ())) > 1:
                out.append(_shared_identity(sa, sorted(tasks), sorted(jobs.get(sa, ()))))
    unreadable = {u.target for u in ev.snapshot.unreadable}
    for sa in sorted({pipeline_sa, *users}):
        if not sa or kinds[sa]:
            continue
        record = ev.snapshot.service_accounts.get(sa)
        keys = record is not None and bool(
            record.user_managed_keys or record.hmac_keys or record.api_keys
        )
        if record is not None and not record.disabled and not keys:
            continue  # nothing below applies (the common case: no name worked out for it)
        tasks = users.get(sa, [])
        step_names = ",".join(sorted(tasks)) if tasks else None
        node = service_account_resource(sa)
        if record is None:
            if sa in unreadable or node in unreadable or sa_member(sa) in unreadable:
                continue  # reported as ZT400: we could not look
            out.append(
                _f(
                    "ZT110",
                    f"service account {sa} does not exist",
                    step=step_names,
                    principal=sa_member(sa),
                    resource=node,
                    evidence=(Evidence("missing", node=node, detail=accounts_absent(ev.snapshot)),),
                )
            )
        elif record.disabled:
            out.append(
                _f(
                    "ZT110",
                    f"service account {sa} is disabled",
                    step=step_names,
                    principal=sa_member(sa),
                    resource=node,
                    evidence=(Evidence("identity", node=node, detail="disabled"),),
                )
            )
        if record is not None and keys:
            out.append(
                _f(
                    "ZT111",
                    f"service account {sa} has {key_summary(record)}",
                    step=step_names,
                    principal=sa_member(sa),
                    resource=node,
                    evidence=tuple(
                        Evidence("identity", node=node, detail=f"key {k}")
                        for k in record.user_managed_keys
                    )
                    + tuple(
                        Evidence("identity", node=node, detail=f"HMAC key {k}")
                        for k in record.hmac_keys
                    )
                    + tuple(
                        Evidence("identity", node=node, detail=f"API key {k}")
                        for k in record.api_keys
                    ),
                )
            )
    return out


# -- requirements ----------------------------------------------------------------------------


def _image_findings(s: StepIdentity, policy: OrgPolicy, src: Evidence) -> list[Finding]:
    """The policy's ``images`` rules on EVERY image the step runs: its own and each one its
    launched job runs (all worker pools, tuning trials); an image known only at run time
    cannot be judged (ZT124)."""
    if policy.allowed_image_registries is None and not policy.require_image_digest:
        return []
    out: list[Finding] = []
    unknown = list(s.job_images_unknown)
    if "{{" in s.image and not unknown:  # a placeholder is not an image: never judged as one
        unknown.append(f"the step's image {s.image} (known only at run time)")
    for image in dict.fromkeys(i for i in (s.image, *s.job_images) if "{{" not in i):
        if policy.allowed_image_registries is not None and not any(
            image.startswith(p) for p in policy.allowed_image_registries
        ):
            out.append(
                _f(
                    "ZT500",
                    f"image {image or '(none)'} is not from an allowed registry "
                    f"({', '.join(policy.allowed_image_registries)})",
                    step=s.task,
                    evidence=(src,),
                )
            )
        if policy.require_image_digest and "@sha256:" not in image:
            out.append(
                _f(
                    "ZT500",
                    f"image {image or '(none)'} is not pinned by digest",
                    step=s.task,
                    evidence=(src,),
                )
            )
    for where in unknown:
        out.append(
            _f(
                "ZT124",
                f"the job the step launches runs an image zt-pipelines cannot read before "
                f"submission: {where}; the policy's images rules cannot be verified for it",
                step=s.task,
                evidence=(src, Evidence("policy", detail=where)),
            )
        )
    return out


def _shared_identity(sa: str, tasks: list[str], jobs: list[tuple[str, str]]) -> Finding:
    """ZT103 for one identity used by several steps and/or by the jobs steps launch (a GCPC
    ``service_account`` / ``dataflow_service_account`` value fed to many components)."""
    evidence = [Evidence("identity", detail=f"used by {t}") for t in tasks]
    evidence += [
        Evidence("identity", detail=f"used by the job {t} launches" + (f" ({f})" if f else ""))
        for t, f in jobs
    ]
    users = [*tasks, *(f"the job {t} launches" for t, _ in jobs)]
    shown = ", ".join(users[:_SHOWN]) + (
        f" and {len(users) - _SHOWN} more" if len(users) > _SHOWN else ""
    )
    if not jobs:
        message = f"{sa} is shared by {len(tasks)} steps: {shown}"
    else:
        fields = ", ".join(sorted({f for _, f in jobs if f})) or "a component input"
        message = (
            f"{sa} is shared by "
            + (
                f"{len(users)} steps and launched jobs"
                if tasks
                else f"the jobs of {len(jobs)} steps"
            )
            + f": {shown}; it is set "
            f"through {fields}: give each job an identity of its own, or leave it empty and "
            "each job runs as its step's"
        )
    # filed under the first user (one place in the report); a waiver must name every user,
    # which the evidence lists (_steps_of)
    first = sorted([*tasks, *(t for t, _ in jobs)])[0]
    return _f("ZT103", message, step=first, principal=sa_member(sa), evidence=tuple(evidence))


_SHOWN = 4  # users named in a ZT103 message; the evidence lists all of them


def _decide_all(
    requirements: tuple[Requirement, ...], ev: Evaluator, now: datetime
) -> list[tuple[Evidence, ...] | Decision]:
    """One answer per requirement, in order: a granted one as its evidence tuple, any other as
    its Decision (:meth:`Evaluator.decide_many`)."""
    # one question at a time: 100,000s of tuples never held at once
    return ev.decide_many(map(_QUESTION, requirements), now=now)


_QUESTION = attrgetter("principal", "resource", "permission")


_KIND_TEXT = {
    "declared": "declared need",
    "artifacts": "pipeline-root artifacts",
    "orchestration": "pipeline orchestration",
    "launch": "launching the step as a custom job",
    "job": "the step's GCPC job",
    "submit": "submitting the pipeline",
}


def _permission_findings(
    requirements: tuple[Requirement, ...], decisions: list[tuple[Evidence, ...] | Decision]
) -> tuple[list[Finding], list[Grant]]:
    """One pass over the decisions: a finding for each requirement not granted, a
    :class:`Grant` (with its evidence) for each one granted, in order."""
    out: list[Finding] = []
    granted: list[Grant] = []
    # resource name -> its display name, and "gs://bucket/" for a bucket (a prefix follows)
    shown: dict[str, tuple[str, str | None]] = {}
    for r, d in zip(requirements, decisions, strict=True):
        if isinstance(d, tuple):  # granted: its evidence
            res = r.resource
            name = res.name
            got = shown.get(name)
            if got is None:
                where = _uri(name)
                got = shown[name] = (where, where + "/" if name.startswith(STORAGE) else None)
            prefix = res.prefix
            # display_uri(name, prefix): a prefix shows only under a bucket
            where = got[0] if not prefix or got[1] is None else got[1] + prefix
            granted.append(new_grant(r.principal, where, r.permission, r.step, d))
            continue
        where = _uri(r.resource.name, r.resource.prefix)
        why = f" ({_KIND_TEXT[r.kind]})"
        if d.state == "denied":
            code, text = "ZT202", f"{r.permission} on {where} is denied to {r.principal}"
        elif d.state == "unverifiable":
            code = "ZT201"
            text = f"{r.permission} on {where} for {r.principal} cannot be verified: " + "; ".join(
                d.reasons[:3]
            )
        else:
            code, text = r.code, f"{r.principal} lacks {r.permission} on {where}"
        out.append(
            _f(
                code,
                text + why,
                step=r.step,
                principal=r.principal,
                resource=r.resource.name,
                permission=r.permission,
                evidence=d.evidence,
            )
        )
    return out, granted


# -- what each principal needs where (shared by the excess, scope and reach checks) ---------


class _Needs:
    """Requirements grouped once per principal: the list, node → the permissions needed on
    that node or below it (the resource and each of its ancestors), and bucket → the
    requirements of an object permission in it (the scope check's prefix shape)."""

    def __init__(self, requirements: tuple[Requirement, ...], ev: Evaluator) -> None:
        self.of: dict[str, list[Requirement]] = {}
        self.at: dict[str, dict[str, set[str]]] = {}
        self.objects: dict[str, dict[str, list[Requirement]]] = {}
        # name -> (its chain's names, a Cloud Storage name); permission -> an object one
        chains: dict[str, tuple[tuple[str, ...], bool]] = {}
        on_object: dict[str, bool] = {}
        last = None
        mine: list[Requirement] = []
        at: dict[str, set[str]] = {}
        objects: dict[str, list[Requirement]] | None = None
        for r in requirements:
            principal = r.principal
            if principal != last:  # a principal's requirements mostly come in a row
                last = principal
                got = self.of.get(principal)
                if got is None:
                    mine = self.of[principal] = []
                    at = self.at[principal] = {}
                else:
                    mine, at = got, self.at[principal]
                objects = self.objects.get(principal)
            mine.append(r)
            res = r.resource
            name = res.name
            known = chains.get(name)
            if known is None:
                known = chains[name] = (
                    tuple(n.name for n in ev.chain(name)[0]),
                    name.startswith(STORAGE),
                )
            names, in_storage = known
            permission = r.permission
            for n in names:
                perms = at.get(n)
                if perms is None:
                    at[n] = {permission}
                else:
                    perms.add(permission)
            if in_storage:
                objectwise = on_object.get(permission)
                if objectwise is None:
                    objectwise = on_object[permission] = object_permission(permission)
                if objectwise:
                    if objects is None:
                        objects = self.objects[principal] = {name: [r]}
                        continue
                    on_bucket = objects.get(name)
                    if on_bucket is None:
                        objects[name] = [r]
                    else:
                        on_bucket.append(r)


# -- excess privilege ------------------------------------------------------------------------

#: what a role gives beyond the needs, as message parts (each ``""`` when that finding is not
#: raised): the ZT211 tail, the ZT212 tail, ZT212's one permission, ZT212's evidence, the ZT210
#: tail
_Beyond = tuple[str, str, str | None, tuple[Evidence, ...], str]


def _beyond(
    role: str, perms: frozenset[str], here: set[str] | frozenset[str], threshold: int
) -> _Beyond:
    """What ``role`` (with ``perms``) gives beyond the permissions needed ``here``."""
    excess = perms - here
    n_excess = len(excess)
    basic = is_basic_role(role)
    risky = sorted((p for p in excess if escalation_reason(p)), key=escalation_rank)
    risky_tail = ""
    risky_ev: tuple[Evidence, ...] = ()
    if risky:
        listed = ", ".join(risky[:_MAX_LISTED]) + (" …" if len(risky) > _MAX_LISTED else "")
        risky_tail = (
            f"{plural(len(risky), 'escalation-capable permission')} it does not need: {listed}"
        )
        risky_ev = tuple(
            Evidence("permission", detail=f"{p}: {escalation_reason(p)}") for p in risky[:20]
        )
    excess_tail = ""
    if not basic and n_excess > threshold:
        sample = ", ".join(sorted(excess)[:_MAX_LISTED]) + (" …" if n_excess > _MAX_LISTED else "")
        scope = (
            "on a resource no step need covers"
            if not here
            else f"{n_excess} of {len(perms)} beyond what is needed there"
        )
        excess_tail = f"{plural(n_excess, 'permission')} beyond its needs ({scope}): {sample}"
    return (
        f" ({len(perms):,} permissions)" if basic else "",
        risky_tail,
        risky[0] if len(risky) == 1 else None,
        risky_ev,
        excess_tail,
    )


def _excess_and_scope_findings(
    requirements: tuple[Requirement, ...],
    steps: tuple[StepIdentity, ...],
    ev: Evaluator,
    policy: OrgPolicy,
    ctx: CheckContext,
    grouped: _Needs,
    checked: list[tuple[str, str | None]],
    now: datetime,
) -> tuple[list[Finding], list[str], list[Finding]]:
    """(excess findings ZT210-ZT212/ZT219, the excess check's notes, scope findings ZT214/ZT215)
    in one walk over each checked principal's bindings: a binding on a bucket is judged for
    both at once. A principal holding something on a node that is some node's parent (a
    project, a folder, ...) gets the whole scope check (:func:`broad_grant_parts`)."""
    out: list[Finding] = []
    scoped: list[Finding] = []
    notes: list[str] = []
    beyond: dict[str, dict[frozenset[str] | str, _Beyond]] = {}  # role -> here -> its parts
    unsettled_by: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    threshold = policy.excess_threshold
    # strict defaults here (the policy's severities are applied once at the end); findings
    # built positionally: 100,000s of them at organisation scale
    zt210, zt211, zt212, zt215 = (
        DEFAULT_SEVERITIES[c] for c in ("ZT210", "ZT211", "ZT212", "ZT215")
    )
    nothing: frozenset[str] = frozenset()
    complete = ev.snapshot.complete_bindings_for
    parents = ev.parent_names()
    needed_of, needed_at, objects_of = grouped.of, grouped.at, grouped.objects
    window = ctx.run_window
    scope_text = _ScopeText()
    for principal, step in checked:
        if principal not in complete:
            notes.append(
                f"excess-privilege check for {principal} covers only the bindings "
                f"{ev.snapshot.held} (no complete binding search for this principal)"
            )
        required_at = needed_at.get(principal, {})
        objects = objects_of.get(principal)
        mark = len(scoped)
        hierarchy = False  # a held node is some node's parent: the whole scope check
        for node, held in ev.held_candidates(principal):
            mm = held.match
            if mm.match is _NO:
                continue
            binding, perms = held.binding, held.perms
            name = node.name
            if perms is None:  # it may carry anything, an escalation-capable permission too
                out.append(
                    Finding(
                        "ZT212",
                        zt212,
                        f"{binding.role} on {_uri(name)} gives {principal} permissions "
                        "that cannot be known: the role's definition is not in the IAM state "
                        "(it may carry an escalation-capable one)",
                        step,
                        principal,
                        name,
                        None,
                        (held.evidence(name, False),),
                    )
                )
                if mm.match is not _UNKNOWN and not hierarchy and name in parents:
                    hierarchy = True
                continue
            # requirements this binding can serve: on this node or below it
            here: set[str] | frozenset[str] = required_at.get(name, nothing)
            if mm.match is _UNKNOWN:
                # a group/principal set whose membership is unknown: the principal MAY hold it
                unsettled = perms - here
                member = held.member
                found = _may_hold(principal, step, node, binding, member, mm.reason, unsettled)
                if found is not None:
                    out.append(found)
                elif unsettled:  # not an escalation: said (once per binding), never skipped
                    unsettled_by[(binding.role, name, member)].append(principal)
                continue
            if not hierarchy and name in parents:
                hierarchy = True
            # what the role gives beyond `here` depends on (role, here) only: worked out once
            # per pair (thousands of steps hold the same role for the same needs); one needed
            # permission is its own key (no frozenset per binding)
            role = binding.role
            of_role = beyond.get(role)
            if of_role is None:
                of_role = beyond[role] = {}
            if len(here) == 1:
                for only in here:
                    key: frozenset[str] | str = only
            else:
                key = frozenset(here)
            known = of_role.get(key)
            if known is None:
                known = of_role[key] = _beyond(role, perms, here, threshold)
            basic_tail, risky_tail, risky_one, risky_ev, excess_tail = known
            where = _URIS.get(name) or _uri(name)
            if basic_tail or risky_tail or excess_tail:
                ev_binding = held._direct or held.evidence(name, False)  # decide()'s: shared
                if basic_tail:
                    out.append(
                        new_finding(
                            "ZT211",
                            zt211,
                            f"{principal} holds the basic role {role} on {where}{basic_tail}",
                            step,
                            principal,
                            name,
                            None,
                            (ev_binding,),
                        )
                    )
                if risky_tail:
                    out.append(
                        new_finding(
                            "ZT212",
                            zt212,
                            f"{role} on {where} gives {principal} {risky_tail}",
                            step,
                            principal,
                            name,
                            risky_one,
                            (ev_binding, *risky_ev),
                        )
                    )
                if excess_tail:
                    out.append(
                        new_finding(
                            "ZT210",
                            zt210,
                            f"{role} on {where} gives {principal} {excess_tail}",
                            step,
                            principal,
                            name,
                            None,
                            (ev_binding,),
                        )
                    )
            # excess by scope, prefix shape: object needs under prefixes of this bucket
            if objects is not None and not hierarchy:
                needed = objects.get(name)
                if needed is None or not perms:
                    continue
                if len(needed) == 1 and binding.condition is None:
                    # object_grant()'s usual case inline (one need in the bucket, no condition:
                    # broad when it is under a prefix); 10,000s of steps at scale
                    r = needed[0]
                    prefix = r.resource.prefix
                    permission = r.permission
                    if prefix and permission in perms:
                        there = f"{where}/{prefix}"  # display_uri(name, prefix)
                        scoped.append(
                            new_finding(
                                "ZT215",
                                zt215,
                                f"{role} on {where} gives {principal} {permission} on every "
                                f"object of the bucket; its needs are only under {there}: "
                                "grant it with a resource.name.startsWith condition on that "
                                "prefix",
                                step,
                                principal,
                                name,
                                permission,
                                (
                                    new_evidence("binding", name, role, held.member, ""),
                                    new_evidence("scope", detail=f"narrower scope: {there}"),
                                ),
                            )
                        )
                    continue
                part = object_grant(ev, name, held, needed, now, window)
                if part is not None:
                    scoped.append(scope_text.finding(principal, step, part, where, zt215))
        if hierarchy:  # served from above too: the whole check, in its own order
            del scoped[mark:]
            needs = needed_of.get(principal)
            if needs:
                for part in broad_grant_parts(ev, principal, needs, now, window):
                    scoped.append(scope_text.finding(principal, step, part, None, None))
    for (role, node_name, member), who in unsettled_by.items():
        notes.append(
            f"{', '.join(who[:_MAX_LISTED])}{' …' if len(who) > _MAX_LISTED else ''} may hold "
            f"{role} on {_uri(node_name)} through {member}, whose membership cannot be "
            "verified: the permissions it gives beyond the needs there are not counted as excess"
        )
    return out, notes, scoped


def _may_hold(
    principal: str,
    step: str | None,
    node: Node,
    binding: Binding,
    member: str,
    reason: str,
    excess: frozenset[str] | set[str],
) -> Finding | None:
    """ZT219: a basic role or unneeded escalation-capable permissions granted to a member
    whose membership cannot be settled (a group of unknown membership, a principal set): the
    principal may hold them. Unverifiable, so never skipped; other excess through such a
    member stays a coverage note."""
    basic = is_basic_role(binding.role)
    risky = sorted((p for p in excess if escalation_reason(p)), key=escalation_rank)
    if not basic and not risky:
        return None
    what = (
        f"the basic role {binding.role}"
        if basic
        else f"{binding.role} with {plural(len(risky), 'escalation-capable permission')} "
        f"it does not need: {', '.join(risky[:_MAX_LISTED])}"
        + (" …" if len(risky) > _MAX_LISTED else "")
    )
    return _f(
        "ZT219",
        f"{principal} may hold {what} on {_uri(node.name)} through {member}, whose membership "
        "cannot be verified",
        step=step,
        principal=principal,
        resource=node.name,
        permission=risky[0] if len(risky) == 1 and not basic else None,
        evidence=(
            Evidence(
                "binding",
                node=node.name,
                role=binding.role,
                member=member,
                condition=binding.condition.expression if binding.condition else "",
                detail=reason or "membership unknown",
            ),
            *(Evidence("permission", detail=f"{p}: {escalation_reason(p)}") for p in risky[:20]),
        ),
    )


# -- excess by scope (ZT214, ZT215) ----------------------------------------------------------


def _checked_identities(steps: tuple[StepIdentity, ...], ctx: CheckContext) -> dict[str, set[str]]:
    """member -> the tasks it runs (empty for the pipeline SA)."""
    principals: dict[str, set[str]] = defaultdict(set)
    for s in steps:
        if s.service_account:
            principals[sa_member(s.service_account)].add(s.task)
    principals.setdefault(sa_member(ctx.pipeline_service_account), set())
    return principals


def _checked_steps(identities: dict[str, set[str]]) -> list[tuple[str, str | None]]:
    """(member, its tasks comma-joined or ``None``), sorted by member: the excess and scope
    checks' order."""
    return [
        (principal, ",".join(sorted(tasks)) if tasks else None)
        for principal, tasks in sorted(identities.items())
    ]


class _ScopeText:
    """ZT214/ZT215 findings from :func:`broad_grant_parts`' tuples, with the texts and the
    evidence they share made once per check (a few permission lists, one evidence per
    narrower scope)."""

    def __init__(self) -> None:
        self.narrower: dict[str, Evidence] = {}  # shared, read-only
        self.listed: dict[tuple[str, ...], str] = {}  # permissions -> their text

    def finding(
        self,
        principal: str,
        step: str | None,
        part: tuple[str, str, str, str, tuple[str, ...], tuple[str, ...], str, str],
        shown: str | None,
        severity: Severity | None,
    ) -> Finding:
        """The finding of one broad grant (``shown``: its node's display name, if known)."""
        node, role, member, kind, permissions, where, gives, condition = part
        if len(permissions) == 1:
            perms = permissions[0]
        else:
            perms_text = self.listed.get(permissions)
            if perms_text is None:
                perms_text = self.listed[permissions] = ", ".join(permissions[:_MAX_LISTED]) + (
                    " …" if len(permissions) > _MAX_LISTED else ""
                )
            perms = perms_text
        narrower = self.narrower
        if len(where) == 1:
            there = where[0]
            scope = narrower.get(there)
            if scope is None:
                scope = narrower[there] = new_evidence("scope", detail=f"narrower scope: {there}")
            evidence: tuple[Evidence, ...] = (
                new_evidence("binding", node, role, member, condition),
                scope,
            )
        else:
            there = ", ".join(where[:_MAX_LISTED]) + (
                f" and {len(where) - _MAX_LISTED} more" if len(where) > _MAX_LISTED else ""
            )
            found = [new_evidence("binding", node, role, member, condition)]
            for n in where:
                e = narrower.get(n)
                if e is None:
                    e = narrower[n] = new_evidence("scope", detail=f"narrower scope: {n}")
                found.append(e)
            evidence = tuple(found)
        if shown is None:
            shown = _URIS.get(node) or _uri(node)
        if kind == "hierarchy":
            code = "ZT214"
            text = (
                f"{role} on {shown} {gives} {principal} {perms} on everything "
                f"below it; its needs are only on {there}: grant it there instead"
            )
        else:
            code = "ZT215"
            text = (
                f"{role} on {shown} {gives} {principal} {perms} on every object "
                f"of the bucket; its needs are only under {there}: grant it with a "
                "resource.name.startsWith condition on that prefix"
            )
        return new_finding(
            code,
            DEFAULT_SEVERITIES[code] if severity is None else severity,
            text,
            step,
            principal,
            node,
            permissions[0] if len(permissions) == 1 else None,
            evidence,
        )


# -- who can become whom (ZT216, ZT217, ZT218) -------------------------------------------------


def _reach_findings(
    requirements: tuple[Requirement, ...],
    steps: tuple[StepIdentity, ...],
    ev: Evaluator,
    ctx: CheckContext,
    grouped: _Needs | None = None,
    identities: dict[str, set[str]] | None = None,
    *,
    now: datetime | None = None,
) -> tuple[list[Finding], list[str]]:
    identities = identities if identities is not None else _checked_identities(steps, ctx)
    pipeline = sa_member(ctx.pipeline_service_account)
    step_emails = {
        m.partition(":")[2] for m, tasks in identities.items() if tasks and m != pipeline
    }
    starts = sorted(identities)
    expected: dict[str, set[str]] = {pipeline: step_emails}
    submitter = None
    if ctx.submitter:
        submitter = submitter_member(ctx.submitter)
        if submitter not in identities:
            starts.append(submitter)
        expected[submitter] = {pipeline.partition(":")[2]}
    graph = reach_graph(ev, starts, expected=expected, now=now, window=ctx.run_window)
    needed_at = (grouped or _Needs(requirements, ev)).at
    out: list[Finding] = []
    index = Holdings(ev)
    # what a target holds beyond a start's needs depends on (target, start) only: many paths
    # from one start end at the same targets (every account below one project, ...)
    dangers: dict[tuple[str, str], list[Holding]] = {}
    for hit in graph.reaches:
        start, path, targets = hit.start, hit.path, hit.targets or (hit.target,)
        tasks = identities.get(start, set())
        needs = needed_at.get(start)
        ranked = heapq.nsmallest(_MAX_LISTED, targets, key=lambda t: (not index.severe(t), t))
        danger: list[Holding] = []
        target = ranked[0]
        for candidate in ranked:
            known = dangers.get((candidate, start))
            if known is None:
                known = dangers[(candidate, start)] = index.dangerous(
                    candidate, needs, short(start)
                )
            danger = known
            if danger:
                target = candidate
                break
        if not danger:
            continue
        worst = danger[0]
        hops = (*path[:-1], replace(path[-1], target=target))
        route = render_path(start, hops) + f" → {worst.role}"
        many = (
            f" — one of the {len(targets)} service accounts below {_uri(path[-1].node)} it can "
            "become"
            if len(targets) > 1
            else ""
        )
        code = "ZT218" if start == submitter and start not in identities else "ZT216"
        verb = "can become"
        if code == "ZT216" and lent_permissions(target) is not None:
            verb = "has a Google service act for it as"  # a part of it: reads, or writes
            code = "ZT224" if lent_reads_only(target) else code
        out.append(
            _f(
                code,
                f"{start} {verb} {target} ({route}), which holds {worst.why} "
                f"({worst.role} on {_uri(worst.node)})"
                + (f" and {plural(len(danger) - 1, 'more grant')}" if len(danger) > 1 else "")
                + many,
                step=",".join(sorted(tasks)) or None,
                principal=start,
                resource=path[0].node,
                evidence=(
                    *path_evidence(start, hops),
                    *(
                        Evidence(
                            "binding",
                            node=h.node,
                            role=h.role,
                            member=f"serviceAccount:{target}",
                            detail=f"{short(target)} holds {h.why}",
                        )
                        for h in danger[:_MAX_LISTED]
                    ),
                ),
            )
        )
    seen: set[tuple[str, str, str, str]] = set()
    settled: set[tuple[str, str]] | None = None  # (start, identity) reached by a settled path
    for u in graph.unknown:
        once = (u.start, u.node, u.role, u.reason)
        if once in seen:
            continue
        seen.add(once)
        tasks = identities.get(u.start, set())
        prefix = render_path(u.start, u.path) if u.path else short(u.start)
        what = f"{u.role} on {_uri(u.node)}" if u.role else _uri(u.node)
        code = "ZT218" if u.start == submitter and u.start not in identities else "ZT217"
        holds = ""
        if u.target:  # a lent identity: unsure only matters if reaching it would
            if settled is None:
                settled = {(r.start, t) for r in graph.reaches for t in r.targets or (r.target,)}
            if (u.start, u.target) in settled:
                continue
            risk = dangers.get((u.target, u.start))
            if risk is None:
                risk = dangers[(u.target, u.start)] = index.dangerous(
                    u.target, needed_at.get(u.start), short(u.start)
                )
            if not risk:
                continue
            if code == "ZT217" and lent_reads_only(u.target):
                code = "ZT224"  # reads only: no worse than the settled edge would be
            holds = f", which holds {risk[0].why} ({risk[0].role} on {_uri(risk[0].node)})"
        out.append(
            _f(
                code,
                f"who {u.start} can become cannot be verified: {prefix} →? ({what}: {u.reason})"
                + holds,
                step=",".join(sorted(tasks)) or None,
                principal=u.start,
                resource=u.node or None,
                evidence=(
                    *path_evidence(u.start, u.path),
                    Evidence(
                        "unreadable" if not u.role else "binding",
                        node=u.node,
                        role=u.role,
                        member=u.via,
                        detail=u.reason,
                    ),
                ),
            )
        )
    notes = []
    searched = ev.snapshot.complete_bindings_for
    for start in starts:
        if start not in searched:  # its grants on accounts outside the snapshot are not seen
            notes.append(
                f"who {start} can become covers only the service-account policies "
                f"{ev.snapshot.held} (no complete binding search for this principal)"
            )
    missing = graph_accounts_without_policy(ev)
    if missing:  # the starts' own policies are asked for anyway
        started = {m.partition(":")[2] for m in starts}
        missing = [e for e in missing if e not in started]
    if missing:
        notes.append(
            "who can become whom: the own allow policies of "
            f"{plural(len(missing), 'service account')} "
            + ("were not read" if ev.snapshot.live else "are not in the snapshot")
            + ", so only project/folder/organisation grants reach them: "
            + ", ".join(sorted(missing)[:_MAX_LISTED])
            + (" …" if len(missing) > _MAX_LISTED else "")
        )
    return out, notes


def _public_findings(requirements: tuple[Requirement, ...], ev: Evaluator) -> list[Finding]:
    """ZT213 for a public binding on any resource a step or the pipeline uses, or above it:
    declared needs, the pipeline root (artifacts: anyone could replace what a later step
    loads), GCPC jobs' resources, orchestration and launch. A declared resource is reported
    on its own; elsewhere one finding per public binding (not one per artifact prefix)."""
    out: list[Finding] = []
    seen: set[str] = set()
    reported: set[tuple[str, str, str]] = set()  # (node, role, condition) of non-declared ones
    public_of: dict[str, list[tuple[Binding, list[str]]]] = {}  # node -> its public bindings
    chain = ev.chain
    for r in requirements:
        name = r.resource.name
        if name in seen:
            continue
        seen.add(name)
        for node in chain(name)[0]:
            found = public_of.get(node.name)
            if found is None:
                found = public_of[node.name] = [
                    (b, [m for m in b.members if m in PUBLIC_MEMBERS])
                    for b in (node.policy.bindings if node.policy else ())
                    if not PUBLIC_MEMBERS.isdisjoint(b.members)  # one C-level scan of the members
                ]
            for b, public in found:
                if r.kind != "declared":
                    key = (node.name, b.role, b.condition.expression if b.condition else "")
                    if key in reported:
                        continue
                    reported.add(key)
                if public:
                    out.append(
                        _f(
                            "ZT213",
                            f"{_uri(r.resource.name)} is public: {b.role} is granted to "
                            f"{', '.join(public)} on {_uri(node.name)}",
                            step=r.step,
                            resource=r.resource.name,
                            evidence=(
                                Evidence(
                                    "binding",
                                    node=node.name,
                                    role=b.role,
                                    member=", ".join(public),
                                    condition=b.condition.expression if b.condition else "",
                                ),
                            ),
                        )
                    )
    return out


def _bucket_acl_findings(
    requirements: tuple[Requirement, ...], ev: Evaluator
) -> tuple[list[Finding], list[str]]:
    """ZT402 for every bucket a requirement names (declared, pipeline root, GCPC jobs') whose
    uniform bucket-level access is off: its ACLs grant in parallel with IAM and are not read.
    Unknown (a snapshot file that does not say) is a note, not a verdict."""
    out: list[Finding] = []
    notes: list[str] = []
    names: set[str] = set()  # every name asked about, storage or not: tested once each
    buckets: set[str] = set()
    identities: set[str] | None = None
    for r in requirements:
        name = r.resource.name
        if name in names:
            continue
        names.add(name)
        if not name.startswith(STORAGE):
            continue
        bucket = next((n for n in ev.chain(name)[0] if n.kind == "bucket"), None)
        if bucket is None or bucket.name in buckets:
            continue  # not in the snapshot: its reads' own findings say so
        buckets.add(bucket.name)
        if bucket.uniform_bucket_level_access is False:
            summary = acl_summary(bucket)
            read = (
                f"were read ({summary}), but access is not governed by IAM alone"
                if summary
                else "were not read"
            )
            out.append(
                _f(
                    "ZT402",
                    f"{_uri(bucket.name)} has fine-grained access control (uniform bucket-level "
                    f"access is off): its ACLs grant in parallel with IAM and {read}, so "
                    "who can read or replace its objects is not verified",
                    step=r.step,
                    resource=bucket.name,
                    evidence=(
                        Evidence("policy", node=bucket.name, detail="uniformBucketLevelAccess off"),
                    ),
                )
            )
            if identities is None:  # the requirements' service accounts, once
                identities = {
                    q.principal for q in requirements if q.principal.startswith("serviceAccount:")
                }
            out += acl_findings(bucket, r.step, identities, ev)
        elif bucket.uniform_bucket_level_access is None:
            notes.append(
                f"uniform bucket-level access of {_uri(bucket.name)} is unknown (not in the "
                "snapshot): its ACLs, which grant in parallel with IAM, are not excluded"
            )
    return out, notes


def _unreadable_findings(ev: Evaluator) -> list[Finding]:
    return [
        _f(
            "ZT400",
            (
                f"{u.target} was not found ({u.what}: {u.reason}); verification is incomplete"
                if u.reason.startswith("NOT_FOUND")
                else f"{u.what} on {u.target} could not be read ({u.reason}); "
                "verification is incomplete"
            ),
            resource=u.target,
            evidence=(Evidence("unreadable", node=u.target, detail=f"{u.what}: {u.reason}"),),
        )
        for u in ev.snapshot.unreadable
    ]


# -- organisation policy ---------------------------------------------------------------------


def _org_policy_findings(
    steps: tuple[StepIdentity, ...], policy: OrgPolicy, ctx: CheckContext
) -> list[Finding]:
    out: list[Finding] = []
    src = Evidence("policy", detail=f"organisation policy {policy.source}")
    if policy.allowed_regions is not None and ctx.location not in policy.allowed_regions:
        out.append(
            _f(
                "ZT500",
                f"region {ctx.location} is not allowed (allowed: "
                f"{', '.join(policy.allowed_regions)})",
                evidence=(src,),
            )
        )
    if (
        policy.required_network
        and ctx.network is not None
        and not policy_fullmatch(policy.required_network, ctx.network)
    ):
        out.append(
            _f(
                "ZT500",
                f"the pipeline job's network {ctx.network} does not match "
                f"{policy.required_network}",
                evidence=(src,),
            )
        )
    for s in steps:
        job = s.job
        # a PSC step has no network (GCPC refuses both): segmentation checks its attachment's
        if (
            policy.required_network
            and not job.psc_interface_config
            and (not job.network or not policy_fullmatch(policy.required_network, job.network))
        ):
            out.append(
                _f(
                    "ZT500",
                    f"the step's network {job.network or '(none)'} does not "
                    f"match the required {policy.required_network}",
                    step=s.task,
                    evidence=(src,),
                )
            )
        if policy.require_psc and not job.psc_interface_config:
            out.append(
                _f(
                    "ZT500",
                    "the step has no Private Service Connect interface",
                    step=s.task,
                    evidence=(src,),
                )
            )
        if policy.cmek_key_pattern:
            key = job.encryption_spec_key_name
            if not key or not policy_fullmatch(policy.cmek_key_pattern, key):
                out.append(
                    _f(
                        "ZT500",
                        f"the step's CMEK key {key or '(none)'} does not match "
                        f"{policy.cmek_key_pattern}",
                        step=s.task,
                        evidence=(src,),
                    )
                )
        if job.enable_web_access and not policy.allow_web_access:
            out.append(
                _f("ZT500", "the step enables interactive web access", step=s.task, evidence=(src,))
            )
        opened = [  # the launched job's own fields (a dashboard, a tuning trial's shell)
            f
            for f in s.job_opens_to_callers
            if not (job.enable_web_access and f == "job_spec.enable_web_access")
        ]
        if opened and not policy.allow_web_access:
            out.append(
                _f(
                    "ZT500",
                    f"the job the step launches is opened to HTTP callers: {', '.join(opened)}",
                    step=s.task,
                    evidence=(src,),
                )
            )
        out += _image_findings(s, policy, src)
    if policy.refuse_key_file_credentials and ctx.submitter_credentials == "service_account_key":
        out.append(
            _f(
                "ZT500",
                "the submitter authenticates with a service-account key file",
                principal=submitter_member(ctx.submitter) if ctx.submitter else None,
                evidence=(src,),
            )
        )
    if policy.allowed_submitters is not None:
        who = submitter_member(ctx.submitter) if ctx.submitter else None
        if who is None:
            out.append(
                _f(
                    "ZT500",
                    "the submitter is unknown but the policy restricts submitters",
                    evidence=(src,),
                )
            )
        elif not any(fnmatch.fnmatchcase(who, p) for p in policy.allowed_submitters):
            out.append(
                _f("ZT500", f"{who} is not an allowed submitter", principal=who, evidence=(src,))
            )
    return out


# -- suppressions ----------------------------------------------------------------------------


def apply_policy(
    findings: list[Finding], policy: OrgPolicy, *, now: datetime
) -> tuple[list[Finding], list[SuppressedFinding]]:
    """Findings raised outside this module (e.g. by :mod:`zt_pipelines.segmentation`) as the
    report carries them: duplicates dropped, the organisation policy's severities applied, then
    its suppressions (an unrelaxable code is never suppressed).

    Expired suppressions are not reported here: :func:`build_report` reports each one once.

    Args:
        findings: the findings at their default severities.
        policy: the organisation policy.
        now: the time suppressions' expiry dates are compared with.

    Returns:
        ``(active, suppressed)``.
    """
    levelled = [
        f if policy.severity(f.code) is f.severity else replace(f, severity=policy.severity(f.code))
        for f in _dedupe(findings)
    ]
    active, suppressed, _expired = _apply_suppressions(levelled, policy, now)
    return active, suppressed


def _pasted_inputs(step: StepIdentity, sa: str) -> Finding:
    """ZT102 for run-time values pasted into a payload: each input with its origin, and the
    upstream digest a waiver must name (``""``: untraced, no waiver matches)."""
    origins = dict(getattr(step, "payload_input_origins", ()))
    shown = ", ".join(
        f"{i!r} ({origins[i]})" if i in origins else repr(i) for i in step.unescaped_payload_inputs
    )
    digest = getattr(step, "upstream_digest", "")
    return _f(
        "ZT102",
        f"the step pastes {noun(len(step.unescaped_payload_inputs), 'input')} {shown} unescaped "
        "into its CustomJob payload; a run-time or "
        "quoted value could rewrite the payload, down to its service account"
        + (f" (upstream {digest})" if digest else " (upstream not traced: cannot be waived)"),
        step=step.task,
        principal=sa_member(sa),
        evidence=(
            *(
                Evidence(
                    "identity",
                    detail=f"input {i!r} not proven safe"
                    + (f", from {origins[i]}" if i in origins else ""),
                )
                for i in step.unescaped_payload_inputs
            ),
            *((Evidence(UPSTREAM, detail=digest),) if digest else ()),
        ),
    )


def upstream_of(finding: Finding) -> str | None:
    """The upstream digest a ZT102 finding carries (what a waiver of it must name)."""
    return next((e.detail for e in finding.evidence if e.kind == UPSTREAM), None)


def _steps_of(f: Finding) -> set[str]:
    """Every step a finding is about: its (comma-joined) ``step``; a ZT103, filed under the
    first of the steps sharing an identity, names all of them in its evidence
    (``used by T`` / ``used by the job T launches``; a task path holds no space)."""
    steps = set((f.step or "").split(","))
    if f.code == "ZT103":
        for e in f.evidence:
            if e.kind == "identity" and e.detail.startswith("used by "):
                rest = e.detail.removeprefix("used by ")
                if rest.startswith("the job "):
                    rest = rest.removeprefix("the job ").split(" launches", 1)[0]
                steps.add(rest.split(" ", 1)[0])
    return steps


def _matches(s: Suppression, f: Finding) -> bool:
    if s.code != f.code or f.code in UNRELAXABLE:
        return False
    if s.code in STEP_WAIVER_ONLY and (
        not s.step or s.step != f.step or not s.upstream or s.upstream != upstream_of(f)
    ):
        return False  # one step, exactly, fed exactly as reviewed: never everywhere
    if s.step is not None and not _steps_of(f) <= set(s.step.split(",")):
        return False  # every step the finding is about was reviewed: none added since
    if s.resource is not None and s.resource != f.resource:
        return False
    if s.principal is not None and s.principal != f.principal:
        return False
    return s.permission is None or s.permission == f.permission


def _stale_waiver(f: Finding, policy: OrgPolicy, today: date) -> Finding:
    """A ZT102 its step's waiver no longer covers says so: the waiver was for another
    upstream (a swapped or changed producer, another input pasted)."""
    was = sorted(
        {
            s.upstream or "(none)"
            for s in policy.suppressions
            if s.code == f.code and s.step == f.step and not s.expired(today)
        }
    )
    if not was:
        return f
    now = upstream_of(f) or "not traced"
    return replace(
        f,
        message=f"{f.message}; the waiver for step {f.step} was for upstream "
        f"{', '.join(was)}, it is now {now}: what feeds the step changed since it was "
        "reviewed — review it again and renew the waiver (check --print-waivers)",
    )


def _apply_suppressions(
    findings: list[Finding], policy: OrgPolicy, now: datetime
) -> tuple[list[Finding], list[SuppressedFinding], list[Finding]]:
    if not policy.suppressions:
        return list(findings), [], []
    today = now.date()
    active: list[Finding] = []
    suppressed: list[SuppressedFinding] = []
    for f in findings:
        hit = next(
            (s for s in policy.suppressions if not s.expired(today) and _matches(s, f)), None
        )
        if hit is None:
            active.append(_stale_waiver(f, policy, today) if f.code in STEP_WAIVER_ONLY else f)
        else:
            suppressed.append(SuppressedFinding(f, hit.justification, hit.expires.isoformat()))
    expired = [
        Finding(
            "ZT500",
            policy.severity("ZT500"),
            f"suppression of {s.describe()} expired on {s.expires.isoformat()}; it no longer "
            "applies — renew it with a new justification or fix the finding",
            step=s.step,
            principal=s.principal,
            resource=s.resource,
            permission=s.permission,
            evidence=(Evidence("policy", detail=f"{policy.source}: {s.justification}"),),
        )
        for s in policy.suppressions
        if s.expired(today)
    ]
    return active, suppressed, expired
