"""Post-run verification: compare what a run did with what was approved (pure).

Inputs are data: the :class:`~zt_pipelines.monitor.model.ObservedRun` the adapters read, the
audit records (already chain-verified by the caller, which passes any problem), and ``now``.
The output is a :class:`~zt_pipelines.policy.report.Report` with ZT6xx findings; it is allowed
("verified") only when every read succeeded, an approval matches, and every task that ran did
so exactly as approved. See docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zt_pipelines.monitor.baseline import (
    comparable,
    runtime_differences,
    runtime_parts,
    runtime_sha256,
)
from zt_pipelines.monitor.expect import (
    PIPELINE_LOCATION,
    PIPELINE_PROJECT,
    ExpectedTask,
    expected_tasks,
)
from zt_pipelines.monitor.model import ObservedJob, ObservedRun, ObservedTask
from zt_pipelines.policy.report import Finding, Report, Severity, sort_findings
from zt_pipelines.policy.wording import noun, plural

#: the last part of an audit action that approves a run (``submit``, ``cli-submit`` ...);
#: ``verify`` decisions approve nothing, post-run records are results, not approvals.
APPROVING_ACTIONS = frozenset({"submit", "run", "schedule", "export"})

_E = Severity.ERROR
_W = Severity.WARNING
_N = Severity.NOTE


@dataclass(frozen=True)
class RunVerdict:
    """The result of verifying one run: the report and the approval it was compared with."""

    report: Report
    approval: Mapping[str, Any] | None
    run: ObservedRun

    @property
    def verified(self) -> bool:
        """True only when the report holds no error (fail closed)."""
        return self.report.allowed


#: the prefixes a front end adds to the action it drove (``cli-submit``)
ACTION_ORIGINS = ("cli-",)


def approving(record: Mapping[str, Any]) -> bool:
    """Whether an audit record approves a submission: allowed, and exactly one of the actions
    that submit (``submit``, ``run``, ``schedule``, ``export``, as the Python API or a front
    end wrote it). Results (``verify-run``, ``drift``, ``usage``, ``monitor``) never approve."""
    action = record.get("action")
    if not isinstance(action, str) or record.get("outcome") != "allowed":
        return False
    for origin in ACTION_ORIGINS:
        action = action.removeprefix(origin)
    return action in APPROVING_ACTIONS


def approvals_for(
    records: Sequence[Mapping[str, Any]],
    *,
    sha256: str,
    project: str,
    location: str,
    job_id: str,
) -> tuple[Mapping[str, Any] | None, str]:
    """The approval matching a run, and why none did (empty when one did).

    A record matches on spec hash, project and location, and on the job id — or it approved a
    schedule, whose runs get ids Vertex chooses. The latest matching record wins.
    """
    if not sha256:
        return None, "the run carries no spec hash"
    same_spec = [
        r
        for r in records
        if approving(r)
        and r.get("spec_sha256") == sha256
        and r.get("project") == project
        and r.get("location") == location
    ]
    exact = [r for r in same_spec if r.get("job_id") == job_id]
    scheduled = [r for r in same_spec if str(r.get("action", "")).endswith("schedule")]
    if exact or scheduled:
        return (exact or scheduled)[-1], ""
    if same_spec:
        ids = sorted({str(r.get("job_id", "")) for r in same_spec})
        jobs = f"{noun(len(ids), 'job')} {', '.join(ids)}"
        return None, f"the spec was approved for {jobs}, not for {job_id}"
    refused = [r for r in records if r.get("spec_sha256") == sha256 and not approving(r)]
    if refused:
        return None, "the only audit records for this spec are not approvals (refused or verify)"
    return None, "no audit record holds this spec hash"


def label_sha256(labels: Mapping[str, str], spec_labels: tuple[str, str]) -> str:
    """The spec sha256 the job's two labels carry (empty when either is missing)."""
    first, second = (labels.get(k, "") for k in spec_labels)
    return f"{first}{second}" if first and second else ""


def evaluate_run(
    run: ObservedRun,
    records: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    spec_labels: tuple[str, str],
    verified_label: str,
    chain_problem: str = "",
    decision_labels: tuple[str, str] | None = None,
) -> RunVerdict:
    """Compare ``run`` with its approval among ``records``; never "verified" on doubt."""
    findings: list[Finding] = []
    notes: list[str] = []
    add = findings.append
    for failed in run.unreadable:
        add(
            Finding(
                "ZT600",
                _E,
                f"cannot read {failed.what} ({failed.error}): the run is not verified",
                resource=failed.target,
            )
        )
    if chain_problem:
        add(Finding("ZT614", _E, f"the audit log does not verify ({chain_problem})"))
    approval: Mapping[str, Any] | None = None
    labelled = label_sha256(run.labels, spec_labels)
    pipeline = str((run.pipeline_spec.get("pipelineInfo") or {}).get("name", ""))
    if not labelled:
        add(
            Finding(
                "ZT601",
                _E,
                f"pipeline job {run.job_id} carries no zt-pipelines spec labels "
                f"({', '.join(spec_labels)}): it was not submitted through zt-pipelines",
                resource=run.name,
            )
        )
    elif run.name:  # a job that could not be read has no spec to compare
        if run.labels.get(verified_label) != "true":
            add(Finding("ZT601", _E, f"label {verified_label}=true is missing", resource=run.name))
        if run.spec_sha256 != labelled:
            add(
                Finding(
                    "ZT603",
                    _E,
                    f"the run's pipeline spec hashes to {run.spec_sha256[:16]}…, its labels "
                    f"say {labelled[:16]}…: the spec that ran is not the one approved",
                    resource=run.name,
                )
            )
        approval, why = approvals_for(
            records,
            sha256=labelled,
            project=run.project,
            location=run.location,
            job_id=run.job_id,
        )
        if approval is None:
            add(Finding("ZT602", _E, f"no approval for this run: {why}", resource=run.name))
    if approval is not None:
        decided = str(approval.get("decision_sha256") or "")
        carried = label_sha256(run.labels, decision_labels) if decision_labels else ""
        if decided and decision_labels and carried != decided:
            add(
                Finding(
                    "ZT603",
                    _E,
                    f"the job's decision labels ({carried[:16] or 'none'}…) are not the "
                    f"approval's decision ({decided[:16]}…): the request that ran is not the "
                    "one approved",
                    resource=run.name,
                )
            )
        findings.extend(_compare(run, approval, notes, spec_ok=run.spec_sha256 == labelled))
    if run.name and not run.finished:
        add(
            Finding(
                "ZT613",
                _W,
                f"the run is {run.state or 'in an unknown state'}: only the tasks that ran so far "
                "were verified",
                resource=run.name,
            )
        )
    report = Report(
        findings=sort_findings(findings),
        pipeline=pipeline,
        project=run.project,
        location=run.location,
        checked_at=now.isoformat(),
        notes=tuple(notes),
    )
    return RunVerdict(report, approval, run)


#: audit identities that are not a step's own: a launched job's and a serving identity
LAUNCHED_ROLES = ("launched", "serving")


def approved_identities(approval: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The pipeline identity an approval record names, and each step task's (by task path,
    lower-cased; launched and serving identities left out)."""
    pipeline_sa = ""
    steps: dict[str, str] = {}
    for ident in approval.get("identities") or ():
        if not isinstance(ident, Mapping):
            continue
        email = str(ident.get("service_account") or "").lower()
        if ident.get("role") == "pipeline":
            pipeline_sa = email
        elif ident.get("role") not in LAUNCHED_ROLES:
            steps[str(ident.get("task", ""))] = email
    return pipeline_sa, steps


def _compare(
    run: ObservedRun, approval: Mapping[str, Any], notes: list[str], *, spec_ok: bool
) -> list[Finding]:
    out: list[Finding] = []
    pipeline_sa, approved_steps = approved_identities(approval)
    if run.service_account.lower() != pipeline_sa:
        actual = run.service_account or "(none: the Compute Engine default)"
        out.append(
            Finding(
                "ZT604",
                _E,
                f"the run's pipeline service account is {actual}, the approval's is "
                f"{pipeline_sa or '(none)'}",
                principal=f"serviceAccount:{run.service_account}" if run.service_account else None,
                resource=run.name,
            )
        )
    # only a spec whose hash matched the approval may say what the tasks must look like
    expected = expected_tasks(run.pipeline_spec, run.parameter_values) if spec_ok else {}
    for path, email in approved_steps.items():
        exp = expected.get(path)
        if (
            exp is not None
            and exp.kind == "custom_job"
            and exp.service_account is not None
            and exp.service_account != email
        ):
            out.append(
                Finding(
                    "ZT603",
                    _E,
                    f"the spec runs task {path!r} as {exp.service_account}, the approval "
                    f"record as {email}",
                    step=path,
                )
            )
    by_leaf: dict[str, list[str]] = {}
    for path in expected:
        by_leaf.setdefault(path.rsplit("/", 1)[-1], []).append(path)
    pinned_warned: set[str] = set()
    checked = 0
    for task in run.tasks:
        if not task.path:  # the root task: the run itself
            continue
        exp = expected.get(task.path)
        if exp is None and len(by_leaf.get(task.path.rsplit("/", 1)[-1], ())) == 1:
            exp = expected[by_leaf[task.path.rsplit("/", 1)[-1]][0]]
        if exp is None:
            if spec_ok:
                out.append(
                    Finding(
                        "ZT610",
                        _E,
                        f"task {task.path!r} ran ({task.state}) but the approved spec has no "
                        "such task",
                        step=task.path,
                        resource=run.name,
                    )
                )
            else:
                out.extend(_unapproved_spec_task(run, task, approved_steps))
            continue
        if exp.kind in ("dag", "importer", "other") or not task.ran:
            continue
        checked += 1
        out.extend(_check_task(run, task, exp, pinned_warned))
    if spec_ok and run.state == "PIPELINE_STATE_SUCCEEDED":
        # a run that succeeded ran every job task outside a condition: one missing from the
        # task details is a job nobody can say anything about (fail closed)
        seen = {t.path for t in run.tasks} | {t.path.rsplit("/", 1)[-1] for t in run.tasks}
        for path, exp in sorted(expected.items()):
            conditional = any(p.startswith("condition") for p in path.split("/")[:-1])
            if exp.kind in ("custom_job", "container") and not conditional and path not in seen:
                out.append(
                    Finding(
                        "ZT611",
                        _E,
                        f"the run succeeded but its task details do not show task {path!r}: "
                        "what it ran as is unknown",
                        step=path,
                        resource=run.name,
                    )
                )
    if spec_ok:
        notes.append(
            f"{plural(checked, 'task')} that ran {'was' if checked == 1 else 'were'} compared with "
            "the approved spec "
            f"(approval seq {approval.get('seq', '?')}, {approval.get('time', '?')})"
        )
    out.extend(_runtime(run, approval, notes))
    return out


def _runtime(run: ObservedRun, approval: Mapping[str, Any], notes: list[str]) -> list[Finding]:
    """The run's runtime config (parameter values, pipeline root, labels, network, key)
    re-hashed part by part against the approval's (ZT615)."""
    recorded = approval.get("baseline")
    if (
        not isinstance(recorded, Mapping)
        or not isinstance(recorded.get("runtime"), Mapping)
        or "runtime_sha256" not in recorded
    ):
        notes.append(
            "the approval record holds no runtime-config hashes (recorded before they were "
            "kept): the run's parameter values and pipeline root were not compared"
        )
        return []
    approved: Mapping[str, Any] = recorded["runtime"]
    if not run.name:
        return []  # nothing was read: ZT600 already says so
    observed = runtime_parts(
        run.runtime_config,
        labels=run.labels,
        network=run.network,
        reserved_ip_ranges=run.reserved_ip_ranges,
        kms_key=run.kms_key,
        request=run.request,
    )
    observed = comparable(recorded, observed)
    differences = runtime_differences(approved, observed)
    if not differences and runtime_sha256(observed) == str(recorded["runtime_sha256"]):
        notes.append(
            "the run's runtime config (parameter values, pipeline root, labels) is the approved one"
        )
        return []
    return [
        Finding(
            "ZT615",
            _E,
            "the run was started with another runtime config than the approved one: "
            + ("; ".join(differences) or "its hash differs"),
            resource=run.name,
        )
    ]


def _unapproved_spec_task(
    run: ObservedRun, task: ObservedTask, approved_steps: Mapping[str, str]
) -> list[Finding]:
    """Without an approved spec, still check each task's identity against the audit record."""
    out: list[Finding] = []
    email = approved_steps.get(task.path)
    for name in task.job_names:
        job = run.jobs.get(name)
        if job is not None and email is not None and job.service_account.lower() != email:
            out.append(_identity_finding(task, job, email))
    return out


def _identity_finding(task: ObservedTask, job: ObservedJob, expected: str) -> Finding:
    actual = job.service_account or "(none: Vertex's default custom code service agent)"
    return Finding(
        "ZT605",
        _E,
        f"task {task.path!r} ran its job as {actual}, approved: {expected or '(none)'}",
        step=task.path,
        principal=f"serviceAccount:{job.service_account}" if job.service_account else None,
        resource=job.name,
    )


def _check_task(
    run: ObservedRun, task: ObservedTask, exp: ExpectedTask, pinned_warned: set[str]
) -> list[Finding]:
    out: list[Finding] = []
    where = f"task {task.path!r}"
    if task.job_reference_error:
        return [
            Finding(
                "ZT611",
                _E,
                f"{where}: its job references cannot be read ({task.job_reference_error})",
                step=task.path,
            )
        ]
    if not task.job_names:
        severity = _N if task.state == "FAILED" else _E
        return [
            Finding(
                "ZT611",
                severity,
                f"{where} is {task.state} but names no job it ran: what it ran as is unknown",
                step=task.path,
            )
        ]
    expected_sa = exp.service_account if exp.kind == "custom_job" else run.service_account.lower()
    for image in exp.images:
        if "@sha256:" not in image and image not in pinned_warned:
            pinned_warned.add(image)
            out.append(
                Finding(
                    "ZT612",
                    _W,
                    f"{where}: approved image {image} is a tag, not a digest; the run was "
                    "compared by tag (a re-pushed tag would not show)",
                    step=task.path,
                )
            )
    for name in task.job_names:
        job = run.jobs.get(name)
        if job is None:
            if not any(u.target == name for u in run.unreadable):
                out.append(
                    Finding("ZT611", _E, f"{where}: job {name} was not read", step=task.path)
                )
            continue
        if job.kind != "CustomJob":
            out.append(
                Finding(
                    "ZT611",
                    _E,
                    f"{where}: created a {job.kind}, which post-run verification cannot compare",
                    step=task.path,
                    resource=job.name,
                )
            )
            continue
        if expected_sa is None or exp.runtime:
            out.append(
                Finding(
                    "ZT611",
                    _E,
                    f"{where}: {', '.join(exp.runtime) or 'service_account'} known only at run "
                    "time in the approved spec: cannot compare",
                    step=task.path,
                    resource=job.name,
                )
            )
        if expected_sa is not None and job.service_account.lower() != expected_sa:
            out.append(_identity_finding(task, job, expected_sa))
        if sorted(job.images) != sorted(exp.images):
            out.append(
                Finding(
                    "ZT606",
                    _E,
                    f"{where} ran {noun(len(job.images), 'image')} "
                    f"{', '.join(job.images) or '(none)'}, "
                    f"approved: {', '.join(exp.images) or '(none)'}",
                    step=task.path,
                    resource=job.name,
                )
            )
        if exp.kind == "custom_job":
            out.extend(_job_fields(run, task, exp, job))
    return out


def _job_fields(
    run: ObservedRun, task: ObservedTask, exp: ExpectedTask, job: ObservedJob
) -> list[Finding]:
    out: list[Finding] = []
    where = f"task {task.path!r}"

    def differs(code: str, what: str, actual: Any, approved: Any) -> None:
        out.append(
            Finding(
                code,
                _E,
                f"{where} ran with {what} {actual or '(none)'}, approved: {approved or '(none)'}",
                step=task.path,
                resource=job.name,
            )
        )

    if job.network != exp.network:
        differs("ZT607", "network", job.network, exp.network)
    if tuple(job.reserved_ip_ranges) != tuple(exp.reserved_ip_ranges):
        differs("ZT607", "reserved IP ranges", job.reserved_ip_ranges, exp.reserved_ip_ranges)
    if _psc(job.psc_interface_config) != _psc(exp.psc_interface_config):
        differs("ZT607", "PSC interface", job.psc_interface_config, exp.psc_interface_config)
    if job.kms_key != exp.kms_key:
        differs("ZT608", "CMEK key", job.kms_key, exp.kms_key)
    location = run.location if exp.location == PIPELINE_LOCATION else exp.location
    if job.location != location:
        differs("ZT609", "location", job.location, location)
    projects = {run.project, run.project_number} - {""}
    if exp.project not in (PIPELINE_PROJECT, run.project):
        differs("ZT609", "project", job.project, exp.project)
    elif job.project not in projects:
        differs("ZT609", "project", job.project, run.project)
    return out


def _psc(value: Any) -> Any:
    """PSC configs compared by content with snake/camel keys made equal."""
    if isinstance(value, Mapping):
        return {
            "".join(p.title() if i else p for i, p in enumerate(str(k).split("_"))): _psc(v)
            for k, v in value.items()
            if v not in (None, "", [], {})
        } or None
    if isinstance(value, list):
        return [_psc(v) for v in value]
    return value
