"""Shadow pipelines: pipeline jobs and schedules not submitted through zt-pipelines (pure).

A job or schedule is a *shadow* when it carries no zt-pipelines spec labels, or carries them
but no approval in the audit log matches (labels copied from another job prove nothing). The
inputs are plain summaries the adapters read; the output is ZT640 (job) / ZT641 (schedule)
findings, and the list of jobs whose finished runs should be verified.

An approval is a line anyone who can write the audit log could have written, so it is checked
against what the job itself holds: its spec must hash to its labels, its run-as account,
decision labels and runtime config must be the approval's, and its spec must be one the rewrite
could have produced — every step's code in a job of its own identity
(:func:`unwrapped_executors`) — and runs each step as the identity the approval names for it
(:func:`pinned_step_accounts`). A job whose steps run their code as the job's own account, or as
identities the approval does not name, was never approved by zt-pipelines, whatever the log
says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zt_pipelines.errors import TemplateError
from zt_pipelines.fingerprint import DECISION_LABELS
from zt_pipelines.monitor.baseline import comparable, runtime_differences
from zt_pipelines.monitor.expect import expected_tasks
from zt_pipelines.monitor.runs import approvals_for, approved_identities, approving, label_sha256
from zt_pipelines.policy.report import Finding, Severity
from zt_pipelines.policy.wording import noun
from zt_pipelines.spec.gcpc import identify_launcher
from zt_pipelines.spec.jobs import check_launcher_container, trusted_launcher_image

_DONE = {"PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}


@dataclass(frozen=True)
class JobSummary:
    """A pipeline job as listed: name, state, labels."""

    name: str
    state: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    schedule: str = ""  # the schedule that created it, when Vertex says
    #: what the job holds, as read: the sha256 of its spec (``None``: not read), its run-as
    #: account and runtime-config parts (``None``: not read)
    spec_sha256: str | None = None
    service_account: str = ""
    runtime: Mapping[str, str] | None = None
    #: executors of its spec that run their code as the job's own account (not read: ``()``)
    unwrapped: tuple[str, ...] = ()
    #: the identity each custom-job step of its spec runs as, by task path (``None`` for one
    #: known only at run time); ``None``: the spec was not read
    step_accounts: Mapping[str, str | None] | None = None

    @property
    def job_id(self) -> str:
        """The last segment of the name."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def finished(self) -> bool:
        """True once the run has ended."""
        return self.state in _DONE


@dataclass(frozen=True)
class ScheduleSummary:
    """A schedule as listed: name, state and the labels of the job it creates."""

    name: str
    state: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    display_name: str = ""
    #: what the schedule's job holds, as read (``spec_sha256`` ``None``: its spec was not read)
    spec_sha256: str | None = None
    service_account: str = ""
    runtime: Mapping[str, str] | None = None
    #: executors of its job's spec that run their code as the job's own account
    unwrapped: tuple[str, ...] = ()
    #: its end time as listed (RFC 3339; ``""``: none, it runs for ever; ``None``: not read)
    end_time: str | None = None
    #: the identity each custom-job step of its spec runs as, by task path (``None`` for one
    #: known only at run time); ``None``: the spec was not read
    step_accounts: Mapping[str, str | None] | None = None

    @property
    def active(self) -> bool:
        """True while the schedule starts runs."""
        return self.state == "ACTIVE"


@dataclass(frozen=True)
class ShadowResult:
    """Findings about shadows, the zt jobs to verify and the schedule approvals still live."""

    findings: tuple[Finding, ...]
    to_verify: tuple[JobSummary, ...]
    live_schedule_approvals: tuple[Mapping[str, object], ...]


def find_shadows(
    jobs: Sequence[JobSummary],
    schedules: Sequence[ScheduleSummary],
    records: Sequence[Mapping[str, object]],
    *,
    project: str,
    location: str,
    spec_labels: tuple[str, str],
    verified: set[str] | frozenset[str] = frozenset(),
    expect_policy: Sequence[str] = (),
) -> ShadowResult:
    """Classify every job and schedule; ``verified``: job ids already verified clean;
    ``expect_policy``: the policy digests every approval must name (ZT642/ZT643, none when
    empty)."""
    from zt_pipelines.monitor.authority import policy_findings

    findings: list[Finding] = []
    to_verify: list[JobSummary] = []
    plain = [dict(r) for r in records]
    passed = {
        s.name: schedule_approval(
            s, plain, spec_labels=spec_labels, project=project, location=location
        )
        for s in schedules
    }
    approved_schedules = {name for name, (a, _why) in passed.items() if a is not None}
    for job in jobs:
        digest = label_sha256(job.labels, spec_labels)
        if not digest:
            findings.append(
                Finding(
                    "ZT640",
                    Severity.ERROR,
                    f"pipeline job {job.job_id} ({job.state or 'state unknown'}) was not "
                    "submitted through zt-pipelines: it carries no spec labels",
                    resource=job.name,
                )
            )
            continue
        approval, why = approvals_for(
            plain, sha256=digest, project=project, location=location, job_id=job.job_id
        )
        if approval is None:
            findings.append(
                Finding(
                    "ZT640",
                    Severity.ERROR,
                    f"pipeline job {job.job_id} carries zt-pipelines labels but no approval "
                    f"matches: {why}",
                    resource=job.name,
                )
            )
            continue
        # labels are not evidence: the job must hold what the approval approved, and a job
        # matched through a schedule approval must come from a schedule that carries it out
        why = _job_mismatch(job, digest, approval, approved_schedules)
        if why:
            findings.append(
                Finding(
                    "ZT640",
                    Severity.ERROR,
                    f"pipeline job {job.job_id} carries zt-pipelines labels but is not what "
                    f"was approved: {why}",
                    resource=job.name,
                )
            )
            continue
        findings.extend(policy_findings(approval, expect_policy, resource=job.name))
        if job.finished and job.job_id not in verified:
            to_verify.append(job)
    live: list[Mapping[str, object]] = []
    for schedule in schedules:
        approval, why = passed.get(schedule.name, (None, ""))
        if approval is None:
            findings.append(
                Finding(
                    "ZT641",
                    Severity.ERROR,
                    f"schedule {schedule.display_name or schedule.name} ({schedule.state}) was "
                    f"not created through zt-pipelines: {why or 'no approval matches'}",
                    resource=schedule.name,
                )
            )
            continue
        findings.extend(policy_findings(approval, expect_policy, resource=schedule.name))
        if schedule.active:
            live.append(approval)
    return ShadowResult(tuple(findings), tuple(to_verify), tuple(live))


def schedule_approval(
    schedule: ScheduleSummary,
    records: Sequence[Mapping[str, object]],
    *,
    spec_labels: tuple[str, str],
    project: str,
    location: str,
    decision_labels: tuple[str, str] = DECISION_LABELS,
) -> tuple[Mapping[str, object] | None, str]:
    """The ``schedule`` approval that ``schedule`` carries out, or ``None`` and why not.

    Labels are not evidence (anyone can copy them): the spec the schedule's job holds must hash
    to its spec label, and its run-as service account, decision labels and runtime config
    (parameter values, pipeline root, labels, network, key — part by part, when the approval
    recorded them) must be the approval's. The latest approval that passes wins."""
    digest = label_sha256(schedule.labels, spec_labels)
    if not digest:
        return None, "its job carries no spec labels"
    if schedule.spec_sha256 != digest:
        return None, (
            "its job's spec was not read"
            if schedule.spec_sha256 is None
            else "its job's spec does not hash to its spec labels (copied labels?)"
        )
    candidates = [
        r
        for r in records
        if approving(r)
        and str(r.get("action", "")).endswith("schedule")
        and r.get("spec_sha256") == digest
        and r.get("project") == project
        and r.get("location") == location
    ]
    if not candidates:
        return None, "no schedule approval holds its spec"
    why = ""
    for approval in reversed(candidates):
        why = _mismatch(schedule, approval, decision_labels) or _beyond_window(schedule, approval)
        if not why:
            return approval, ""
    return None, why


def _beyond_window(schedule: ScheduleSummary, approval: Mapping[str, object]) -> str:
    """Why ``schedule`` runs beyond the window its approval judged (empty when it does not):
    its grants were judged until the approved end time, and an end time moved later (or
    removed) by ``schedules.patch`` runs into grants nobody judged. Approvals that recorded no
    window (older ones) are not compared; a schedule whose end time was not read is."""
    window = approval.get("window")
    until = window.get("until") if isinstance(window, Mapping) else None
    if not isinstance(until, str) or not until:
        return ""  # judged for ever (or before windows were recorded)
    if schedule.end_time is None:
        return f"its end time was not read (the approval judged it until {until})"
    if not schedule.end_time:
        return f"it has no end time: it runs for ever, the approval judged it until {until}"
    from zt_pipelines.policy.conditions import parse_rfc3339

    try:
        later = parse_rfc3339(schedule.end_time) > parse_rfc3339(until)
    except ValueError:
        later = True  # fail closed
    if later:
        return (
            f"its end time {schedule.end_time} is after {until}, the end the approval judged "
            "its grants until"
        )
    return ""


def _job_mismatch(
    job: JobSummary,
    digest: str,
    approval: Mapping[str, object],
    approved_schedules: set[str],
) -> str:
    """Why ``job`` is not what ``approval`` approved (empty: it is)."""
    if str(approval.get("action", "")).endswith("schedule") and approval.get("job_id") != (
        job.job_id
    ):
        if not job.schedule:
            return "it matches only a schedule approval and no schedule started it"
        if job.schedule not in approved_schedules:
            return f"it matches a schedule approval but its schedule {job.schedule} does not"
    if job.spec_sha256 != digest:
        return (
            "its spec was not read"
            if job.spec_sha256 is None
            else "its spec does not hash to its spec labels (copied labels?)"
        )
    return _mismatch(job, approval, DECISION_LABELS)


def _mismatch(
    schedule: ScheduleSummary | JobSummary,
    approval: Mapping[str, object],
    decision_labels: tuple[str, str],
) -> str:
    if schedule.unwrapped:
        return (
            f"its spec runs the code of {noun(len(schedule.unwrapped), 'executor')} "
            f"{', '.join(schedule.unwrapped[:5])} as the job's own account "
            f"({schedule.service_account or 'the default identity'}): zt-pipelines never "
            "approves a step whose code does not run as an identity of its own, so the "
            "approval in the audit log was not written by a zt-pipelines check"
        )
    identities = approval.get("identities")
    why = _step_mismatch(schedule.step_accounts, approval)
    if why:
        return why
    pipeline_sa = next(
        (
            str(i.get("service_account") or "").lower()
            for i in (identities if isinstance(identities, list) else [])
            if isinstance(i, Mapping) and i.get("role") == "pipeline"
        ),
        "",
    )
    if schedule.service_account.lower() != pipeline_sa:
        return (
            f"its job runs as {schedule.service_account or '(the default identity)'}, the "
            f"approval as {pipeline_sa or '(none)'}"
        )
    decided = approval.get("decision_sha256")
    if decided and label_sha256(schedule.labels, decision_labels) != decided:
        return "its job's decision labels are not the approval's"
    baseline = approval.get("baseline")
    approved = baseline.get("runtime") if isinstance(baseline, Mapping) else None
    if isinstance(approved, Mapping):
        if schedule.runtime is None:
            return "its job's runtime config was not read"
        assert isinstance(baseline, Mapping)
        differences = runtime_differences(approved, comparable(baseline, dict(schedule.runtime)))
        if differences:
            return "its job's runtime config is not the approved one: " + "; ".join(differences)
    return ""


def _step_mismatch(pinned: Mapping[str, str | None] | None, approval: Mapping[str, object]) -> str:
    """Why the steps of a spec do not run as the identities ``approval`` names for them (empty:
    they do, or the spec was not read — flagged on its own). The comparison verify-run makes
    after a run (ZT603), made while the job runs: an approval of a rewrite-shaped spec that
    pins another identity on a step is not the record of a check of that spec."""
    if pinned is None:
        return ""
    _pipeline, approved = approved_identities(approval)
    wrong = []
    for path, email in sorted(pinned.items()):
        want = approved.get(path)
        if email is None:
            wrong.append(f"task {path!r} runs as an identity known only at run time")
        elif want is None:
            wrong.append(f"task {path!r} runs as {email}, for which the approval names no identity")
        elif email.lower() != want:
            wrong.append(f"its spec runs task {path!r} as {email}, the approval as {want}")
    if not wrong:
        return ""
    return (
        "; ".join(wrong[:3])
        + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else "")
        + ": the approval in the audit log is not the record of a check of this spec"
    )


def pinned_step_accounts(
    spec: Mapping[str, object], parameter_values: Mapping[str, object] | None = None
) -> dict[str, str | None]:
    """The identity each custom-job step of a pipeline spec runs as, by task path, resolved
    with the run's parameter values (``None``: known only at run time)."""
    return {
        path: task.service_account
        for path, task in expected_tasks(spec, parameter_values).items()
        if task.kind == "custom_job"
    }


def unwrapped_executors(spec: Mapping[str, object]) -> tuple[str, ...]:
    """The executors of a pipeline spec that may run code as the job's own account: a container
    that is not exactly a Google launcher known to zt-pipelines — one of Google's images, the
    command ``python3 -u -m MODULE`` and GCPC's flags once each, nothing else, the test the
    rewrite applies (:func:`~zt_pipelines.spec.jobs.check_launcher_container`) — and every
    executor of another kind but an importer (a ``customJob`` body, which the rewrite refuses,
    or a kind unknown here). Launchers only launch jobs, each of its own identity; any other
    container (a Google training image, or a launcher module named after ``sh -c`` code)
    runs whatever code it is given. The rewrite leaves none; an importer runs no code."""
    deployment = spec.get("deploymentSpec")
    executors = deployment.get("executors") if isinstance(deployment, Mapping) else None
    if not isinstance(executors, Mapping):
        return ()
    out = []
    for label, executor in executors.items():
        if not (isinstance(executor, Mapping) and _launches_only(executor, str(label))):
            out.append(str(label))
    return tuple(sorted(out))


def _launches_only(executor: Mapping[str, object], label: str) -> bool:
    """True for an importer, or a container that is exactly a known GCPC launcher."""
    if set(executor) == {"importer"}:
        return True
    container = executor.get("container")
    if set(executor) != {"container"} or not isinstance(container, Mapping):
        return False
    kind = identify_launcher(container) if trusted_launcher_image(container.get("image")) else None
    if kind is None:
        return False
    try:
        check_launcher_container(container, kind, f"executor {label!r}")
    except TemplateError:
        return False
    return True
