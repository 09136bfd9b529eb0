"""Drift: does what was approved still hold against today's IAM? (pure)

Two comparisons per still-relevant approval (``approving`` audit records):

1. **Re-evaluation.** The approval's identities and declared needs (the audit record's
   ``identities[].needs``) are evaluated again by the policy engine against today's snapshot;
   every *error* finding the approval did not have is drift (ZT620 a grant that is now excess
   privilege, ZT621 a user-managed key, ZT625 the approval would be refused today, ZT626 a part
   of IAM could not be read).
2. **Posture.** For every approved identity: its grants (role on node), user-managed keys,
   enabled/disabled, the deny policies that name it, and the service accounts it can become
   (``getAccessToken``/``actAs``/``signJwt``/``signBlob``/``implicitDelegation``). Compared with
   the posture recorded by the previous drift check of the same approval (in the audit log);
   every widening is drift (ZT620 grant added, ZT621 key added, ZT622 identity re-enabled, ZT623
   deny policy removed, ZT624 new impersonation path). The first check records the baseline.

Fail closed: a snapshot part that could not be read is ZT626, an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from zt_pipelines.model import Need, StepIdentity
from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.members import Match
from zt_pipelines.policy.report import Evidence, Finding, Report, Severity, sort_findings
from zt_pipelines.policy.wording import plural
from zt_pipelines.resources import ResourceRef

#: the note code that carries an identity's posture in a drift record (evidence kind "posture")
POSTURE_CODE = "ZT629"
IMPERSONATION_PERMISSIONS = (
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.actAs",
    "iam.serviceAccounts.signJwt",
    "iam.serviceAccounts.signBlob",
    "iam.serviceAccounts.implicitDelegation",
    "iam.serviceAccountKeys.create",
)
_EXCESS = {"ZT210", "ZT211", "ZT212", "ZT213"}
_E = Severity.ERROR
_N = Severity.NOTE


@dataclass(frozen=True)
class Posture:
    """What one identity can do and be, as far as drift tracks it.

    Attributes:
        identity: the service account email.
        exists / disabled: its IAM record.
        keys: user-managed key names.
        grants: ``ROLE on NODE`` (``if CONDITION``) for every binding covering it.
        deny: deny policies with a rule that names it (or a principal set).
        can_act_as: other service accounts it can become.
    """

    identity: str
    exists: bool = True
    disabled: bool = False
    keys: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    can_act_as: tuple[str, ...] = ()

    def evidence(self) -> tuple[Evidence, ...]:
        """The posture as evidence entries (how a drift record stores it)."""
        out = [Evidence("posture", detail=f"state {self._state()}")]
        out += [Evidence("posture", detail=f"key {k}") for k in self.keys]
        out += [Evidence("posture", detail=f"grant {g}") for g in self.grants]
        out += [Evidence("posture", detail=f"deny {d}") for d in self.deny]
        out += [Evidence("posture", detail=f"actAs {a}") for a in self.can_act_as]
        return tuple(out)

    def _state(self) -> str:
        return "missing" if not self.exists else ("disabled" if self.disabled else "enabled")

    @classmethod
    def from_evidence(cls, identity: str, evidence: Iterable[Mapping[str, Any]]) -> Posture:
        """Read a posture back from a drift record's evidence."""
        parts: dict[str, list[str]] = {"key": [], "grant": [], "deny": [], "actAs": []}
        state = "enabled"
        for item in evidence:
            kind, _, value = str(item.get("detail", "")).partition(" ")
            if kind == "state":
                state = value
            elif kind in parts:
                parts[kind].append(value)
        return cls(
            identity,
            exists=state != "missing",
            disabled=state == "disabled",
            keys=tuple(parts["key"]),
            grants=tuple(parts["grant"]),
            deny=tuple(parts["deny"]),
            can_act_as=tuple(parts["actAs"]),
        )


def posture_of(email: str, evaluator: Evaluator, *, now: datetime) -> Posture:
    """The posture of service account ``email`` in the evaluator's snapshot."""
    snapshot = evaluator.snapshot
    email = email.lower()
    member = f"serviceAccount:{email}"
    account = snapshot.service_accounts.get(email)
    grants = sorted(
        {
            f"{binding.role} on {node.name}"
            + (f" if {binding.condition.expression}" if binding.condition else "")
            for node, binding, match in evaluator.bindings_for(member)
            if match.match is not Match.NO
        }
    )
    deny = sorted(
        {
            policy.name
            for policy in snapshot.deny_policies
            for rule in policy.rules
            if any(_names(p, email) for p in rule.denied_principals)
        }
    )
    targets = []
    # only a role that holds an impersonation permission (or one not known) can open a path:
    # without one, the per-account decisions below cannot find any (and cost O(accounts))
    roles = {binding.role for _node, binding, _match in evaluator.bindings_for(member)}
    known = [snapshot.roles.get(r) for r in roles]
    may_impersonate = any(
        role is None or not role.permissions.isdisjoint(IMPERSONATION_PERMISSIONS) for role in known
    )
    for other, sa in sorted(snapshot.service_accounts.items()) if may_impersonate else ():
        if other == email:
            continue
        resource = f"//iam.googleapis.com/projects/{sa.project_id}/serviceAccounts/{sa.email}"
        for permission in IMPERSONATION_PERMISSIONS:
            if evaluator.decide(member, resource, permission, now=now).state == "granted":
                targets.append(other)
                break
    return Posture(
        email,
        exists=account is not None,
        disabled=bool(account and account.disabled),
        keys=tuple(sorted(account.user_managed_keys)) if account else (),
        grants=tuple(grants),
        deny=tuple(deny),
        can_act_as=tuple(targets),
    )


def _names(principal: str, email: str) -> bool:
    """Whether a deny rule's principal names the account (a principal set may include it)."""
    return principal.startswith("principalSet://") or principal.lower().endswith(
        f"/serviceaccounts/{email}"
    )


def approved_identities(record: Mapping[str, Any]) -> tuple[str, tuple[StepIdentity, ...], bool]:
    """(pipeline SA, step identities with their needs, whether the record holds needs)."""
    pipeline = ""
    steps: list[StepIdentity] = []
    has_needs = False
    for ident in record.get("identities") or ():
        if not isinstance(ident, Mapping):
            continue
        email = str(ident.get("service_account") or "").lower()
        if ident.get("role") == "pipeline":
            pipeline = email
            continue
        if ident.get("role") in ("launched", "serving"):
            continue  # not a step's own: see other_identities()
        if "needs" in ident:
            has_needs = True
        needs = tuple(_need(line) for line in ident.get("needs") or ())
        raw_job = ident.get("job")
        job: Mapping[str, Any] = raw_job if isinstance(raw_job, Mapping) else {}
        steps.append(
            StepIdentity(
                task=str(ident.get("task", "")),
                component="",
                executor="",
                service_account=email or None,
                source="declared",
                needs=tuple(n for n in needs if n is not None),
                job_kind=str(job.get("kind") or ""),
                wrapped_launcher=job.get("wrapped") is True,
                job_project=str(job.get("project") or "") or None,
                job_location=str(job.get("location") or "") or None,
                code_project=str(job.get("code_project") or "") or None,
                code_location=str(job.get("code_location") or "") or None,
            )
        )
    return pipeline, tuple(steps), has_needs


def other_identities(record: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """(role, task, email) of every launched-job and serving identity an approval records:
    identities a step makes run (a Dataflow worker, a launched CustomJob, a deployed model),
    whose posture drift follows and whose uses ``usage`` reads."""
    out: list[tuple[str, str, str]] = []
    for ident in record.get("identities") or ():
        if isinstance(ident, Mapping) and ident.get("role") in ("launched", "serving"):
            email = str(ident.get("service_account") or "").lower()
            if email:
                out.append((str(ident["role"]), str(ident.get("task", "")), email))
    return tuple(out)


def _need(line: Any) -> Need | None:
    """A need from its audit form ``RESOURCE[ (objects PREFIX*)] PERM,PERM``."""
    where, _, perms = str(line).rpartition(" ")
    if not where or not perms:
        return None
    prefix = None
    if where.endswith("*)") and " (objects " in where:
        where, _, rest = where.partition(" (objects ")
        prefix = rest[: -len("*)")]
    return Need(ResourceRef(where, prefix), tuple(sorted(perms.split(","))))


@dataclass(frozen=True)
class DriftVerdict:
    """The drift of one approval: the report and the postures now (for the next baseline)."""

    approval: Mapping[str, Any]
    report: Report
    postures: tuple[Posture, ...] = field(default=())

    @property
    def drifted(self) -> bool:
        """True when any error was found (a read that failed counts: fail closed)."""
        return not self.report.allowed


def _key(f: Mapping[str, Any] | Finding) -> tuple[str, ...]:
    """What identifies a finding across evaluations (its message carries counts: not it)."""
    names = ("code", "step", "principal", "resource", "permission")
    if isinstance(f, Mapping):
        return tuple(str(f.get(k) or "") for k in names)
    return tuple(str(getattr(f, k) or "") for k in names)


def evaluate_drift(
    approval: Mapping[str, Any],
    now_report: Report | None,
    postures: Sequence[Posture],
    baseline: Mapping[str, Posture] | None,
    *,
    now: datetime,
    unreadable: Sequence[str] = (),
    has_needs: bool = True,
    at_approval: Mapping[str, Posture] | None = None,
    scoped: Sequence[Posture] = (),
    no_approval_baseline: str = "",
) -> DriftVerdict:
    """Compare an approval with today's evaluation and postures.

    ``at_approval`` is the posture the approval record holds (compared with ``scoped``, today's
    posture over the resources the approval saw); ``baseline`` the one the last drift check of
    the approval recorded (compared with ``postures``, today's over everything read). A change
    either comparison shows is drift; one both show is reported once, as since the approval.
    Without ``at_approval``, ``no_approval_baseline`` says why (a ZT629 note)."""
    findings: list[Finding] = []
    notes: list[str] = []
    for what in unreadable:
        findings.append(Finding("ZT626", _E, f"cannot read {what}: drift not evaluated"))
    if now_report is not None:
        before = {_key(f) for f in approval.get("findings") or () if isinstance(f, Mapping)}
        for f in now_report.findings:
            if f.severity is not Severity.ERROR or _key(f) in before:
                continue
            if f.code in ("ZT210", "ZT212") and not has_needs:
                continue  # without the approved needs, excess cannot be told from need
            code = {"ZT111": "ZT621", "ZT400": "ZT626"}.get(
                f.code, "ZT620" if f.code in _EXCESS else "ZT625"
            )
            findings.append(
                Finding(
                    code,
                    _E,
                    f"since the approval ({f.code}): {f.message}",
                    step=f.step,
                    principal=f.principal,
                    resource=f.resource,
                    permission=f.permission,
                    evidence=f.evidence,
                )
            )
    if not has_needs:
        notes.append(
            "the approval record holds no declared needs: excess privilege is tracked through "
            "the posture baseline only"
        )
    seen: set[tuple[str, ...]] = set()
    for posture in scoped:
        then = at_approval.get(posture.identity) if at_approval is not None else None
        for f in _posture_drift(posture, then, "the approval"):
            seen.add(_same(f))
            findings.append(f)
    for posture in postures:
        old = (baseline or {}).get(posture.identity)
        for f in _posture_drift(posture, old, "the last drift check"):
            if _same(f) not in seen:
                findings.append(f)
        findings.append(
            Finding(
                POSTURE_CODE,
                _N,
                f"posture of {posture.identity}: {plural(len(posture.grants), 'grant')}, "
                f"{plural(len(posture.keys), 'key')}, "
                f"{plural(len(posture.deny), 'deny policy', 'deny policies')}, "
                f"{plural(len(posture.can_act_as), 'impersonation target')}",
                principal=f"serviceAccount:{posture.identity}",
                evidence=posture.evidence(),
            )
        )
    if at_approval is None:
        findings.append(
            Finding(
                POSTURE_CODE,
                _N,
                f"{no_approval_baseline or 'the approval record holds no posture baseline'}: "
                "changes made between the approval and the first drift check show only where "
                "they make the approval fail",
            )
        )
        if baseline is None:
            notes.append(
                "first drift check of this approval: its posture is recorded as the baseline; "
                "only the re-evaluation compares with the approval itself"
            )
    report = Report(
        findings=sort_findings(findings),
        pipeline=str(approval.get("pipeline", "")),
        project=str(approval.get("project", "")),
        location=str(approval.get("location", "")),
        checked_at=now.isoformat(),
        notes=tuple(notes),
    )
    return DriftVerdict(approval, report, tuple(postures))


def _same(f: Finding) -> tuple[str, ...]:
    """What makes two posture changes the same change (whatever baseline showed it)."""
    return (f.code, f.principal or "", f.resource or "", repr(f.evidence))


def _posture_drift(now: Posture, old: Posture | None, since: str) -> list[Finding]:
    if old is None:
        return []
    who = f"serviceAccount:{now.identity}"
    out: list[Finding] = []
    for grant in sorted(set(now.grants) - set(old.grants)):
        role, _, node = grant.partition(" on ")
        out.append(
            Finding(
                "ZT620",
                _E,
                f"{now.identity} was granted {grant} since {since}",
                principal=who,
                resource=node.split(" if ")[0],
                evidence=(
                    Evidence(
                        "binding", node=node.split(" if ")[0], role=role, member=who, detail=grant
                    ),
                ),
            )
        )
    for key in sorted(set(now.keys) - set(old.keys)):
        out.append(
            Finding(
                "ZT621",
                _E,
                f"{now.identity} has a new user-managed key {key} since {since}",
                principal=who,
                resource=key,
            )
        )
    if now.exists and not now.disabled and (not old.exists or old.disabled):
        was = "missing" if not old.exists else "disabled"
        out.append(
            Finding(
                "ZT622",
                _E,
                f"{now.identity} was {was} at {since} and is usable again",
                principal=who,
            )
        )
    for policy in sorted(set(old.deny) - set(now.deny)):
        out.append(
            Finding(
                "ZT623",
                _E,
                f"deny policy {policy} no longer applies to {now.identity} (removed or "
                f"changed since {since})",
                principal=who,
                resource=policy,
                evidence=(Evidence("deny", deny_policy=policy, member=who),),
            )
        )
    for target in sorted(set(now.can_act_as) - set(old.can_act_as)):
        out.append(
            Finding(
                "ZT624",
                _E,
                f"{now.identity} can act as {target}, which it could not at {since}",
                principal=who,
                resource=f"serviceAccount:{target}",
            )
        )
    return out


def baseline_from(
    records: Sequence[Mapping[str, Any]], approval: Mapping[str, Any]
) -> dict[str, Posture] | None:
    """The postures the latest drift record of ``approval`` stored (``None``: no drift record)."""
    seq = approval.get("seq")
    for record in reversed(records):
        if record.get("action") != "drift" or record.get("reason", "").find(f"seq {seq}:") < 0:
            continue
        out: dict[str, Posture] = {}
        for f in record.get("findings") or ():
            if isinstance(f, Mapping) and f.get("code") == POSTURE_CODE:
                identity = str(f.get("principal", "")).removeprefix("serviceAccount:")
                out[identity] = Posture.from_evidence(identity, f.get("evidence") or ())
        return out
    return None
