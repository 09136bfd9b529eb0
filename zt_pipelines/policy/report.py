"""Findings and reports: what verification found, rendered for people, machines and CI.

Pure data and rendering: no IO. A :class:`Report` is *allowed* only when it holds no
error-severity finding (fail closed: a check that could not complete is an error finding).

Renderings: ``str(report)`` (a readable table), :meth:`Report.to_json`, :meth:`Report.to_sarif`
(SARIF 2.1.0, one rule per finding code) and :meth:`Report._repr_html_` for notebooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from enum import Enum
from operator import attrgetter
from typing import Any, ParamSpec, TypeVar

_T = TypeVar("_T")
_P = ParamSpec("_P")


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass an ``__init__`` that stores each field through its slot
    descriptor: the same signature and defaults as the generated one, without its
    ``object.__setattr__`` call per field (reports hold 100,000s of these at organisation
    scale). The class stays frozen: assigning an attribute afterwards still raises."""
    names: list[str] = []
    namespace: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"fast_init: {cls.__name__}.{f.name} needs the generated __init__")
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            names.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            names.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"    _set_{f.name}(self, {f.name})\n" for f in fields(cls))  # type: ignore[arg-type]
    exec(f"def __init__(self, {', '.join(names)}):\n{body}", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(cls.__init__.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning a method)
    return cls


def record_maker(cls: Callable[_P, _T]) -> Callable[_P, _T]:
    """A constructor of ``cls`` (a frozen, slotted dataclass) with its ``__init__``'s signature
    and defaults, about 3x cheaper than calling the class: the fields are stored on a
    mutable twin with the same slots, then the object becomes a ``cls`` (a compatible layout:
    ``__class__`` assignment is allowed). The result is an ordinary ``cls`` in every way
    (frozen, equal and hashing as one built by ``cls(...)``). For the hot paths that build
    100,000s of report records; everything else calls the class."""
    names: list[str] = []
    namespace: dict[str, Any] = {
        "_twin": type(f"_{cls.__name__}Twin", (), {"__slots__": cls.__slots__}),  # type: ignore[attr-defined]
        "_cls": cls,
        "__name__": cls.__module__,  # the function's __module__
    }
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"record_maker: {cls.__name__}.{f.name} needs the generated __init__")
        if f.default is MISSING:
            names.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            names.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"    o.{f.name} = {f.name}\n" for f in fields(cls))  # type: ignore[arg-type]
    exec(
        # _twin(): no __init__ of its own, cheaper than object.__new__(_twin) (no arg parsing)
        f"def {cls.__name__.lower()}({', '.join(names)}):\n    o = _twin()\n{body}"
        "    o.__class__ = _cls\n    return o\n",
        namespace,
    )
    make: Callable[_P, _T] = namespace[cls.__name__.lower()]
    make.__qualname__ = make.__name__ = f"new_{cls.__name__.lower()}"
    make.__doc__ = f"``{cls.__name__}(...)``, faster (see :func:`record_maker`)."
    return make


class Severity(str, Enum):
    """How a finding counts: only ``error`` refuses."""

    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


# The stable finding codes: code -> (short name, one-line meaning). Documented in docs/findings.md
# and used as SARIF rule ids; never renumber.
CODES: dict[str, tuple[str, str]] = {
    "ZT100": ("DefaultIdentity", "a default identity would run the pipeline or a step"),
    "ZT101": ("NoStepIdentity", "a step has no identity of its own (runs as the pipeline SA)"),
    "ZT102": ("UnpinnedIdentity", "a step's identity comes from a runtime value"),
    "ZT103": ("SharedIdentity", "one identity is shared by several steps or with the pipeline"),
    "ZT110": ("MissingIdentity", "identity does not exist or is disabled"),
    "ZT111": ("UserManagedKeys", "identity has user-managed keys"),
    "ZT120": (
        "PersistentResourceNoCustomSA",
        "a step's persistent resource does not allow custom service accounts",
    ),
    "ZT121": (
        "PersistentResourceUnknown",
        "a step's persistent resource cannot be verified (unknown or not found)",
    ),
    "ZT122": (
        "JobOutsidePipeline",
        "a GCPC job runs outside the pipeline's project or region, undeclared",
    ),
    "ZT123": (
        "SharedServingIdentity",
        "a deployed model's serving identity also runs a step or the pipeline",
    ),
    "ZT124": (
        "LaunchedImageUnknown",
        "an image a launched job runs is known only at run time (images policy unverifiable)",
    ),
    "ZT200": ("NotGranted", "a required permission is not granted"),
    "ZT201": ("Unverifiable", "a required permission cannot be verified"),
    "ZT202": ("Denied", "a required permission is denied by a deny policy"),
    "ZT210": ("ExcessPermissions", "permissions beyond the step's needs"),
    "ZT211": ("BasicRole", "a basic role (owner, editor, viewer)"),
    "ZT212": ("EscalationPermission", "an escalation-capable permission"),
    "ZT213": ("PublicResource", "a resource the pipeline uses is public"),
    "ZT214": ("BroaderScope", "a grant covers a need from a broader scope (project/folder/org)"),
    "ZT215": ("BucketWideForPrefix", "a bucket-wide grant where only an object prefix is needed"),
    "ZT216": ("CanBecomeIdentity", "an identity can become another one holding more"),
    "ZT217": ("ReachUnverifiable", "who an identity can become cannot be verified"),
    "ZT218": ("SubmitterCanBecome", "the submitter can become identities beyond the pipeline's"),
    "ZT219": (
        "MayHoldThroughUnknownMember",
        "may hold a basic role or escalation permission through a group of unknown membership",
    ),
    "ZT220": ("OthersCanBecomeIdentity", "another principal can become a pipeline identity"),
    "ZT221": (
        "PamSelfElevation",
        "an identity can grant itself roles beyond its needs through a PAM entitlement "
        "without approval",
    ),
    "ZT222": (
        "PamEligibleWithApproval",
        "eligibility for a PAM entitlement behind an approval: beyond an identity's needs, "
        "or to become it",
    ),
    "ZT223": (
        "GrantLapsesInWindow",
        "a needed grant stops holding while the run or schedule still needs it",
    ),
    "ZT224": (
        "LentAccessBeyondNeeds",
        "a Google service reads or calls for an identity, as its own identity, beyond the "
        "identity's needs",
    ),
    "ZT225": (
        "DormantGrant",
        "a dormant grant (a disabled or deleted role, a deleted principal) would let another "
        "principal become a pipeline identity, or give one permissions, if woken",
    ),
    "ZT300": (
        "SubmitterCannotSubmit",
        "the submitter cannot act as the pipeline SA or create the job",
    ),
    "ZT301": ("PipelineCannotLaunch", "the pipeline identity cannot launch a step"),
    "ZT400": ("VerificationIncomplete", "verification could not complete: refused"),
    "ZT401": ("SnapshotUnsealed", "the snapshot file carries no integrity digest"),
    "ZT402": (
        "BucketAclsNotExcluded",
        "a bucket the pipeline uses has no uniform bucket-level access: ACLs grant beside IAM",
    ),
    "ZT403": (
        "BucketAclGrantsIdentity",
        "a bucket ACL grants a pipeline identity access outside IAM",
    ),
    "ZT404": (
        "PipelineRootForeign",
        "the pipeline root is in a bucket of another project, or its project cannot be verified",
    ),
    "ZT405": (
        "JudgedAtAnotherTime",
        "the decision was judged at a time other than the machine's: a what-if, never an approval",
    ),
    "ZT410": (
        "CredentialInSpec",
        "the pipeline spec holds a key or a token: the step would act as whoever it belongs to",
    ),
    "ZT419": (
        "PipelineRootUnknown",
        "no pipeline root: the run would write its artifacts to a bucket created and named at "
        "submit time, which cannot be verified",
    ),
    "ZT500": ("OrgPolicyViolation", "an organisation policy rule is violated"),
    "ZT510": ("NotInPerimeter", "the pipeline's project is in no enforced service perimeter"),
    "ZT511": ("OutsidePerimeter", "a declared resource's project is outside the perimeter"),
    "ZT512": ("DryRunPerimeter", "the project is protected by a dry-run perimeter only"),
    "ZT513": ("ServiceNotRestricted", "the perimeter does not restrict a service the steps use"),
    "ZT514": ("VpcServicesOpen", "the perimeter does not limit VPC-accessible services"),
    "ZT515": ("PerimeterEgressOpen", "a perimeter egress rule reaches beyond the needs"),
    "ZT516": ("PerimeterIngressOpen", "a perimeter ingress rule admits beyond the needs"),
    "ZT520": ("NoNetwork", "a step has no VPC network under an isolation policy"),
    "ZT521": ("NetworkMissing", "a step's network, subnet, attachment or range does not exist"),
    "ZT522": ("EgressBeyondReach", "the firewall allows egress beyond the step's reach"),
    "ZT523": ("UndeclaredEndpoint", "a step can reach a Vertex endpoint it does not declare"),
    "ZT524": ("ReachNotAllowed", "a step declares reach the policy does not allow"),
    "ZT525": ("ReachBlocked", "the firewall blocks a step's declared reach"),
    "ZT530": ("SegmentationUnverifiable", "perimeters or networks could not be verified"),
    # post-run verification (zt_pipelines.monitor)
    "ZT600": ("RunUnreadable", "a read post-run verification needs failed: not verified"),
    "ZT601": ("NotSubmittedThroughZt", "a job carries no zt-pipelines labels"),
    "ZT602": ("NoApproval", "no allowed audit record matches the run"),
    "ZT603": ("SpecChanged", "the run's pipeline spec is not the approved spec"),
    "ZT604": ("PipelineIdentityChanged", "the run's pipeline SA is not the approved one"),
    "ZT605": ("TaskIdentityChanged", "a task's job ran as another identity"),
    "ZT606": ("ImageChanged", "a task's job ran another container image"),
    "ZT607": ("NetworkChanged", "a task's job used another network, PSC or IP ranges"),
    "ZT608": ("EncryptionChanged", "a task's job used another CMEK key"),
    "ZT609": ("PlaceChanged", "a task's job ran in another project or location"),
    "ZT610": ("UnapprovedTask", "a task ran that the approved spec does not contain"),
    "ZT611": ("TaskJobUnknown", "a task's job cannot be identified or compared"),
    "ZT612": ("ImageNotPinned", "an approved image is a tag, not a digest"),
    "ZT613": ("RunNotFinished", "the run has not ended: only the tasks so far were verified"),
    "ZT614": ("AuditChainBroken", "the audit log fails verification: approvals untrusted"),
    "ZT615": ("RuntimeConfigChanged", "the run's parameters, root or labels are not approved"),
    # drift (zt_pipelines.monitor.drift)
    "ZT620": ("GrantAdded", "an approved identity was granted more since its approval"),
    "ZT621": ("KeyAdded", "an approved identity has a new user-managed key"),
    "ZT622": ("IdentityReenabled", "a disabled or missing approved identity is usable again"),
    "ZT623": ("DenyRemoved", "a deny policy that named an approved identity no longer does"),
    "ZT624": ("NewImpersonationPath", "an approved identity can now become another identity"),
    "ZT625": ("ApprovalNoLongerHolds", "the approval would be refused today"),
    "ZT626": ("DriftUnverifiable", "IAM state drift needs could not be read"),
    "ZT629": ("PostureRecorded", "an approved identity's posture (the next drift baseline)"),
    # usage from Cloud Audit Logs (zt_pipelines.monitor.usage)
    "ZT630": ("UnusedPermission", "a declared permission was never used in the runs read"),
    "ZT631": ("UndeclaredAccess", "a step used a permission it did not declare"),
    "ZT632": ("OutOfRunUse", "a step identity was used outside every approved run"),
    "ZT633": ("DataAccessLogsOff", "Data Access logs are off: usage cannot be verified there"),
    "ZT634": ("UsageUnreadable", "logs or runs could not be read: usage not verified"),
    "ZT635": ("RefusedAccess", "a step tried an access that IAM refused"),
    # shadow pipelines (zt_pipelines.monitor.shadow)
    "ZT640": ("ShadowJob", "a pipeline job was not submitted through zt-pipelines"),
    "ZT641": ("ShadowSchedule", "a schedule was not created through zt-pipelines"),
    # decision authority (zt_pipelines.monitor.authority)
    "ZT642": (
        "ApprovalUnderOtherPolicy",
        "an approval was judged under another policy than the organisation's",
    ),
    "ZT643": (
        "ApprovalNamesNoPolicy",
        "an approval does not name the policy it was judged under",
    ),
}

#: codes whose default severity is a warning (every other code is an error by default)
WARNING_CODES: frozenset[str] = frozenset(
    {
        "ZT210",
        "ZT215",
        "ZT218",
        "ZT222",
        "ZT224",
        "ZT225",
        "ZT512",
        "ZT525",
        "ZT612",
        "ZT613",
        "ZT630",
        "ZT633",
        "ZT635",
    }
)

# codes whose findings are warnings by default (SARIF defaultConfiguration)
_DEFAULT_LEVEL = {
    "ZT210": "warning",
    "ZT215": "warning",
    "ZT218": "warning",
    "ZT222": "warning",
    "ZT224": "warning",
    "ZT225": "warning",
    "ZT612": "warning",
    "ZT613": "warning",
    "ZT629": "note",
    "ZT401": "note",
    "ZT630": "warning",
    "ZT633": "warning",
    "ZT635": "warning",
    "ZT512": "warning",
    "ZT525": "warning",
}

DOCS_URL = "https://zt-pipelines.readthedocs.io/en/latest/findings/"


@fast_init
@dataclass(frozen=True, slots=True)
class Evidence:
    """One link in the chain that explains a decision or a finding.

    Attributes:
        kind: ``binding`` (an allow binding), ``deny`` (a deny rule), ``condition``,
            ``group``, ``unreadable``, ``missing`` (something absent from the snapshot),
            ``identity`` or ``policy``.
        node: the full resource name of the node the binding/deny policy is attached to.
        role: the role of the binding.
        member: the binding member (or deny principal) that matched.
        condition: the CEL expression involved.
        deny_policy: the deny policy name.
        detail: a human sentence.
    """

    kind: str
    node: str = ""
    role: str = ""
    member: str = ""
    condition: str = ""
    deny_policy: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        """The non-empty fields, for JSON and SARIF."""
        return {k: v for k, v in zip(_EVIDENCE_FIELDS, _EVIDENCE_VALUES(self), strict=True) if v}

    def __str__(self) -> str:
        parts = [self.kind]
        if self.role:
            parts.append(self.role)
        if self.node:
            parts.append(f"on {self.node}")
        if self.member:
            parts.append(f"to {self.member}")
        if self.deny_policy:
            parts.append(f"deny policy {self.deny_policy}")
        if self.condition:
            parts.append(f"if {self.condition}")
        if self.detail:
            parts.append(f"({self.detail})")
        return " ".join(parts)


_EVIDENCE_FIELDS = tuple(f.name for f in fields(Evidence))
_EVIDENCE_VALUES = attrgetter(*_EVIDENCE_FIELDS)  # all values in one call, in field order


@fast_init
@dataclass(frozen=True, slots=True)
class Finding:
    """One thing verification found.

    Attributes:
        code: a stable code from :data:`CODES` (``ZT200`` ...).
        severity: error (refuses), warning or note.
        message: one human sentence.
        step: the task path, or ``None`` for pipeline-level findings.
        principal: the member concerned (``serviceAccount:EMAIL``, ``user:...``).
        resource: the full resource name concerned.
        permission: the IAM permission concerned.
        evidence: the chain that explains it (binding, role, node, condition, deny rule).
    """

    code: str
    severity: Severity
    message: str
    step: str | None = None
    principal: str | None = None
    resource: str | None = None
    permission: str | None = None
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "step": self.step,
            "principal": self.principal,
            "resource": self.resource,
            "permission": self.permission,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@fast_init
@dataclass(frozen=True, slots=True)
class SuppressedFinding:
    """A finding an organisation policy suppression matched, with its justification."""

    finding: Finding
    justification: str
    expires: str


@fast_init
@dataclass(frozen=True, slots=True)
class Grant:
    """A required permission that was proven granted, with the binding(s) that grant it."""

    principal: str
    resource: str
    permission: str
    step: str | None = None
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "step": self.step,
            "principal": self.principal,
            "resource": self.resource,
            "permission": self.permission,
            "evidence": [e.to_dict() for e in self.evidence],
        }


new_evidence = record_maker(Evidence)
new_finding = record_maker(Finding)
new_grant = record_maker(Grant)


@dataclass(frozen=True)
class Report:
    """The result of a check.

    Attributes:
        findings: every active finding, errors first.
        suppressed: findings silenced by an unexpired suppression (kept for the audit trail).
        pipeline: the pipeline name.
        project: the project checked against.
        location: the region.
        checked_at: the ``now`` used, ISO 8601.
        notes: coverage notes (e.g. excess-privilege check limited to visible bindings).
        template: the template path, when known (used as the SARIF artifact).
        granted: every required permission proven granted, with its evidence (the "why").
        step_identities: each step's own identity, ``(task, member)``: what a rendered report
            shows beside the step (a finding's principal may be another identity: the
            pipeline SA launching it, a job it launches, a serving identity).
    """

    findings: tuple[Finding, ...]
    suppressed: tuple[SuppressedFinding, ...] = ()
    pipeline: str = ""
    project: str = ""
    location: str = ""
    checked_at: str = ""
    notes: tuple[str, ...] = ()
    template: str = ""
    granted: tuple[Grant, ...] = ()
    step_identities: tuple[tuple[str, str], ...] = ()

    @property
    def allowed(self) -> bool:
        """True when no finding has error severity."""
        return not any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The error-severity findings."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    def codes(self) -> set[str]:
        """The set of active finding codes (handy in tests and scripts)."""
        return {f.code for f in self.findings}

    def by_code(self, code: str) -> tuple[Finding, ...]:
        """The active findings with this code."""
        return tuple(f for f in self.findings if f.code == code)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        return {
            "allowed": self.allowed,
            "pipeline": self.pipeline,
            "project": self.project,
            "location": self.location,
            "checkedAt": self.checked_at,
            "findings": [f.to_dict() for f in self.findings],
            "suppressed": [
                {**s.finding.to_dict(), "justification": s.justification, "expires": s.expires}
                for s in self.suppressed
            ],
            "notes": list(self.notes),
            "granted": [g.to_dict() for g in self.granted],
        }

    def explain(self) -> str:
        """Why each required permission holds: one line per grant, naming role and node."""
        lines = []
        for g in self.granted:
            how = "; ".join(
                f"{e.role} on {e.node}" + (f" if {e.condition}" if e.condition else "")
                for e in g.evidence
            )
            lines.append(
                f"{g.step or '(pipeline)'}: {g.principal} has {g.permission} on "
                f"{g.resource} — granted by {how}"
            )
        return "\n".join(lines)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as a JSON document (stable key order)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_sarif(self) -> dict[str, Any]:
        """The report as a SARIF 2.1.0 log (one run, one rule per code, suppressions kept)."""
        rules = [
            {
                "id": code,
                "name": name,
                "shortDescription": {"text": meaning},
                "fullDescription": {"text": f"{code}: {meaning}."},
                "helpUri": DOCS_URL + "#" + code.lower(),
                "defaultConfiguration": {"level": _DEFAULT_LEVEL.get(code, "error")},
            }
            for code, (name, meaning) in CODES.items()
        ]
        index = {code: i for i, code in enumerate(CODES)}
        results = [self._sarif_result(f, index) for f in self.findings]
        for s in self.suppressed:
            result = self._sarif_result(s.finding, index)
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{s.justification} (expires {s.expires})",
                }
            ]
            results.append(result)
        run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": "zt-pipelines",
                    "informationUri": DOCS_URL,
                    "semanticVersion": "0.1.0",
                    "rules": rules,
                }
            },
            "results": results,
            "invocations": [
                {
                    "executionSuccessful": True,
                    "toolExecutionNotifications": [
                        {"level": "note", "message": {"text": n}} for n in self.notes
                    ],
                    "properties": {"allowed": self.allowed, "checkedAt": self.checked_at},
                }
            ],
            "properties": {
                "pipeline": self.pipeline,
                "project": self.project,
                "location": self.location,
            },
        }
        return {
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [run],
        }

    def _sarif_result(self, f: Finding, index: dict[str, int]) -> dict[str, Any]:
        logical = []
        if f.step:
            logical.append({"name": f.step, "kind": "function", "fullyQualifiedName": f.step})
        if f.resource:
            logical.append({"name": f.resource, "kind": "resource"})
        location: dict[str, Any] = {}
        if self.template:
            location["physicalLocation"] = {"artifactLocation": {"uri": self.template}}
        if logical:
            location["logicalLocations"] = logical
        result: dict[str, Any] = {
            "ruleId": f.code,
            "level": f.severity.value,
            "message": {"text": f.message},
            "properties": {
                "principal": f.principal or "",
                "permission": f.permission or "",
                "evidence": [e.to_dict() for e in f.evidence],
            },
        }
        if f.code in index:
            result["ruleIndex"] = index[f.code]
        if location:
            result["locations"] = [location]
        return result

    def __str__(self) -> str:
        """Plain text, 100 columns: verdict line, findings grouped by step, coverage notes."""
        from zt_pipelines.policy.render import render_text

        return render_text(self)

    def __repr__(self) -> str:
        verdict = "ALLOWED" if self.allowed else "REFUSED"
        warnings = sum(1 for f in self.findings if f.severity is Severity.WARNING)
        return (
            f"<Report {verdict} pipeline={self.pipeline!r} errors={len(self.errors)} "
            f"warnings={warnings} findings={len(self.findings)} "
            f"suppressed={len(self.suppressed)} granted={len(self.granted)}>"
        )

    def _repr_html_(self) -> str:
        from zt_pipelines.policy.render import render_html

        return render_html(self)


def sort_findings(findings: list[Finding] | tuple[Finding, ...]) -> tuple[Finding, ...]:
    """Errors first, then by code, step, principal, resource, permission (deterministic)."""
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
    # keys built in one comprehension (no call per finding); the index keeps the sort stable
    keyed = [
        (
            order[f.severity],
            f.code,
            f.step or "",
            f.principal or "",
            f.resource or "",
            f.permission or "",
            f.message,
            i,
        )
        for i, f in enumerate(findings)
    ]
    keyed.sort()
    return tuple(findings[k[-1]] for k in keyed)
