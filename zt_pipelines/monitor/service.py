"""Post-run verification at the IO edge: read the run, read the audit log, decide, record.

The reads go through :mod:`zt_pipelines.gcp.vertex_jobs` (official clients, one retry policy,
failures kept as findings); the decision is the pure
:func:`zt_pipelines.monitor.runs.evaluate_run`; the result is appended to the audit log as a
post-run record (action ``verify-run``: ``allowed`` when verified, ``refused`` otherwise).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from zt_pipelines.audit import AuditIdentity, AuditLog, Decision, default_audit_log, utc_now
from zt_pipelines.audit.shape import record_problem
from zt_pipelines.errors import ZtError
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.monitor.runs import RunVerdict, approving, evaluate_run
from zt_pipelines.policy.conditions import parse_rfc3339
from zt_pipelines.policy.wording import plural

POST_RUN_ACTION = "verify-run"


_V = TypeVar("_V")


def _spec_hash(spec: dict[str, Any]) -> str:
    from zt_pipelines.fingerprint import spec_sha256

    return spec_sha256(spec)


def _labels() -> tuple[tuple[str, str], str]:
    from zt_pipelines.fingerprint import SPEC_LABELS, VERIFIED_LABEL

    return (SPEC_LABELS[0], SPEC_LABELS[1]), VERIFIED_LABEL


def _decision_labels() -> tuple[str, str]:
    from zt_pipelines.fingerprint import DECISION_LABELS

    return DECISION_LABELS[0], DECISION_LABELS[1]


def open_audit_log(audit_log: str | os.PathLike[str] | AuditLog | None, clock: Any) -> AuditLog:
    """The audit log to read approvals from and append results to."""
    if isinstance(audit_log, AuditLog):
        return audit_log
    return AuditLog(audit_log or default_audit_log(), clock=clock)


def read_approvals(log: AuditLog) -> tuple[list[dict[str, Any]], str]:
    """The audit records and, if the chain does not verify, why (approvals then untrusted)."""
    try:
        chain = log.verify()
        records = log.records()
    except (ZtError, ValueError) as exc:
        return [], f"cannot read {log.path}: {exc}"
    if not getattr(chain, "ok", True):
        problems = getattr(chain, "problems", ())
        first = problems[0] if problems else None
        return records, str(getattr(first, "message", first) or "the chain is broken")
    for record in records:
        problem = malformed(record)
        if problem:  # chained but not what a writer writes: no approval in it is trusted
            return [], f"record seq {record.get('seq', '?')} is malformed ({problem})"
    return _without_void(records), ""


def _without_void(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the approvals a later ``send-failed`` record voids (same job id, project and
    location): Vertex never confirmed that create, so a job that shows up with that id is not
    the approved run — it is judged as a shadow."""
    out: list[dict[str, Any]] = []
    for record in records:
        action = str(record.get("action", ""))
        if action.removeprefix("cli-") == "send-failed":
            key = (record.get("job_id"), record.get("project"), record.get("location"))
            out = [
                r
                for r in out
                if not (
                    approving(r)
                    and r.get("job_id")
                    and (r.get("job_id"), r.get("project"), r.get("location")) == key
                )
            ]
        out.append(record)
    return out


def malformed(record: Any) -> str:
    """Why an audit record is not of the shape the writer writes (empty when it is)."""
    return record_problem(record)


def verify_run(
    job: str,
    *,
    project: str,
    location: str,
    audit_log: str | os.PathLike[str] | AuditLog | None = None,
    credentials: Any = None,
    factory: ClientFactory | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], datetime] = utc_now,
    record: bool = True,
    expect_policy: Sequence[str] | None = None,
) -> RunVerdict:
    """Verify a pipeline run against its approval and (by default) record the result.

    Args:
        job: the pipeline job id or full name.
        project: the project (id) the job was submitted to.
        location: its region.
        audit_log: where the approvals are (and the post-run record goes).
        credentials: google-auth credentials (default: ADC, or the emulator caller).
        factory: an existing client factory (takes precedence over ``credentials``).
        retry: the retry policy for every read.
        clock: the current time (the report and the audit record).
        record: append the post-run record.
        expect_policy: the policy digests the approval must name (ZT642/ZT643;
            :func:`expected_policy`): ``None`` is the organisation's binding file, if any.

    Raises:
        ApiError: the post-run record could not be appended.
        PolicyFileError: the expected policy cannot be read.
    """
    from zt_pipelines.gcp.vertex_jobs import VertexJobsAdapter

    expected = expected_policy(expect_policy)

    factory = factory or ClientFactory(credentials, project=project)
    adapter = VertexJobsAdapter(factory, retry)
    run = adapter.read_run(job, project=project, location=location, spec_hash=_spec_hash)
    log = open_audit_log(audit_log, clock)
    records, chain_problem = read_approvals(log)
    spec_labels, verified_label = _labels()
    now, what_if = judged_now(clock)
    verdict = evaluate_run(
        run,
        records,
        now=now,
        spec_labels=spec_labels,
        verified_label=verified_label,
        chain_problem=chain_problem,
        decision_labels=_decision_labels(),
    )
    verdict = _with_policy(verdict, expected, resource=run.name)
    verdict = _with_findings(verdict, [what_if] if what_if else [])
    if record:
        log.append(post_run_decision(verdict, submitter=_who(factory)))
    return verdict


def judged_now(clock: Callable[[], datetime]) -> tuple[datetime, Any]:
    """The time a monitoring verb judges at, and ZT405 when ``clock`` is far from the machine's
    (outside a test suite, :mod:`zt_pipelines.clock`): which approvals, runs and log entries
    fall in a window was then decided as of another time — a past clock hides recent misuse, a
    future one pushes approvals out of ``--since`` — so the result never passes."""
    from zt_pipelines.clock import decision_time, what_if_message
    from zt_pipelines.policy.report import Finding, Severity

    judged = decision_time(clock())
    if not judged.what_if:
        return judged.judged_at, None
    return judged.judged_at, Finding(
        "ZT405",
        Severity.ERROR,
        what_if_message(
            judged,
            what="which approvals, runs and log entries fall in the window was decided at "
            "a time that is not now",
        ),
    )


def _with_findings(verdict: _V, found: Sequence[Any]) -> _V:
    """``verdict`` (a run, drift or usage verdict) with ``found`` added to its report."""
    import dataclasses

    from zt_pipelines.policy.report import sort_findings

    if not found:
        return verdict
    report: Any = getattr(verdict, "report")  # noqa: B009 - every verdict kind alike
    report = dataclasses.replace(report, findings=sort_findings([*report.findings, *found]))
    return dataclasses.replace(verdict, report=report)  # type: ignore[type-var]


def expected_policy(expect_policy: Sequence[str] | None) -> tuple[str, ...]:
    """The policy digests approvals must name: each of ``expect_policy`` (a sha256, or a
    policy file: its two digests), or — ``None`` — the organisation's file when
    ``ZT_POLICY_BINDING`` / ``ZT_POLICY_SHA256`` make it binding (else none: not checked).

    Raises:
        PolicyFileError: a file that cannot be read, or a misconfigured binding.
    """
    from zt_pipelines.authority import expected_policies, policy_digests

    if expect_policy is None:
        return expected_policies()
    return tuple(dict.fromkeys(d for spec in expect_policy for d in policy_digests(spec)))


def _with_policy(verdict: _V, expected: Sequence[str], *, resource: str = "") -> _V:
    """``verdict`` (a run or drift verdict) with ZT642/ZT643 for its approval."""
    from zt_pipelines.monitor.authority import policy_findings

    approval: Any = getattr(verdict, "approval", None)
    return _with_findings(verdict, policy_findings(approval or None, expected, resource=resource))


def _who(factory: ClientFactory) -> str:
    from zt_pipelines.gcp.submitter import submitter_of

    try:
        return submitter_of(factory.credentials)
    except ZtError:
        return "unknown"


def post_run_decision(verdict: RunVerdict, *, submitter: str) -> Decision:
    """The audit record of a post-run verification."""
    run = verdict.run
    report = verdict.report
    identities = [AuditIdentity("pipeline", run.service_account, source="observed")]
    for task in run.tasks:
        for name in task.job_names:
            job = run.jobs.get(name)
            if job is not None:
                identities.append(
                    AuditIdentity("step", job.service_account, task=task.path, source="observed")
                )
    errors = report.errors
    # a run that has not ended matched so far only: never recorded as verified (monitor would
    # then skip it for good while its remaining tasks run unverified)
    complete = verdict.verified and run.finished
    if complete and verdict.approval is not None:
        reason = f"verified: the run matches approval seq {verdict.approval.get('seq')}"
    elif verdict.verified:
        reason = f"not complete: the run is {run.state or 'in an unknown state'}; it matches so far"
    else:
        reason = f"{plural(len(errors), 'error')}: {', '.join(sorted({f.code for f in errors}))}"
    return Decision(
        action=POST_RUN_ACTION,
        outcome="allowed" if complete else "refused",
        submitter=submitter,
        project=run.project,
        location=run.location,
        pipeline=report.pipeline,
        spec_sha256=run.spec_sha256,
        identities=tuple(identities),
        findings=tuple(f.to_dict() for f in report.findings),
        job_id=run.job_id,
        reason=reason,
    )


DRIFT_ACTION = "drift"


def relevant_approvals(
    records: list[dict[str, Any]], *, now: datetime, since: timedelta
) -> list[dict[str, Any]]:
    """The approvals drift re-evaluates: the latest per job (or schedule) approved within
    ``since``, and every schedule approval (its runs keep starting)."""
    from zt_pipelines.monitor.runs import approving

    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        if not approving(record):
            continue
        try:
            when = parse_rfc3339(str(record.get("time", "")))
        except ValueError:
            when = now  # a record without a readable time is kept: fail towards checking
        scheduled = str(record.get("action", "")).endswith("schedule")
        if not scheduled and now - when > since:
            continue
        key = (
            str(record.get("project")),
            str(record.get("location")),
            str(record.get("job_id") or record.get("spec_sha256")),
        )
        latest[key] = record
    return list(latest.values())


def drift(
    audit_log: str | os.PathLike[str] | AuditLog | None = None,
    *,
    snapshot: Any = None,
    since: timedelta = timedelta(days=30),
    credentials: Any = None,
    emulator_host: str | None = None,
    clock: Callable[[], datetime] = utc_now,
    record: bool = True,
    approvals: list[dict[str, Any]] | None = None,
    expect_policy: Sequence[str] | None = None,
) -> list[Any]:
    """Re-evaluate every still-relevant approval (or just ``approvals``) against today's IAM
    (``snapshot`` — a file or
    :class:`~zt_pipelines.policy.snapshot.Snapshot` — or live) and return one
    :class:`~zt_pipelines.monitor.drift.DriftVerdict` per approval; each result is appended to
    the audit log (action ``drift``) and is the next check's posture baseline.
    ``expect_policy``: as :func:`verify_run` (an approval under another policy is ZT642, one
    naming none ZT643).

    Raises:
        PolicyFileError: the expected policy cannot be read.
    """
    from zt_pipelines.monitor.drift import DriftVerdict, baseline_from
    from zt_pipelines.policy.report import Finding, Report, Severity

    expected = expected_policy(expect_policy)
    log = open_audit_log(audit_log, clock)
    records, chain_problem = read_approvals(log)
    now, what_if = judged_now(clock)
    if chain_problem:
        report = Report(
            findings=(
                Finding(
                    "ZT614", Severity.ERROR, f"the audit log does not verify ({chain_problem})"
                ),
            ),
            checked_at=now.isoformat(),
        )
        return [DriftVerdict({}, report)]
    verdicts = []
    loaded = _load_snapshot(snapshot)
    chosen = (
        approvals if approvals is not None else relevant_approvals(records, now=now, since=since)
    )
    for approval in chosen:
        verdict = _drift_one(
            approval,
            loaded,
            credentials=credentials,
            emulator_host=emulator_host,
            now=now,
            baseline=baseline_from(records, approval),
        )
        verdict = _with_findings(_with_policy(verdict, expected), [what_if] if what_if else [])
        verdicts.append(verdict)
        if record:
            log.append(_drift_decision(verdict, submitter=_who(ClientFactory(credentials))))
    if what_if and not verdicts:  # nothing in the window as of that time: still no pass
        verdicts.append(DriftVerdict({}, Report(findings=(what_if,), checked_at=now.isoformat())))
    return verdicts


def _load_snapshot(snapshot: Any) -> Any:
    from zt_pipelines.policy.snapshot import Snapshot
    from zt_pipelines.policy.snapshot_file import load_snapshot

    if snapshot is None or isinstance(snapshot, Snapshot):
        return snapshot
    return load_snapshot(snapshot)


def _drift_one(
    approval: dict[str, Any],
    snapshot: Any,
    *,
    credentials: Any,
    emulator_host: str | None,
    now: datetime,
    baseline: Any,
) -> Any:
    import dataclasses
    from types import SimpleNamespace

    from zt_pipelines.monitor.baseline import (
        completely_searched,
        recorded_baseline,
        restricted,
        scope,
    )
    from zt_pipelines.monitor.drift import (
        approved_identities,
        evaluate_drift,
        other_identities,
        posture_of,
    )
    from zt_pipelines.policy.engine import Evaluator, evaluate
    from zt_pipelines.policy.requirements import CheckContext, derive_requirements, needed_nodes

    project = str(approval.get("project", ""))
    location = str(approval.get("location", ""))
    pipeline_sa, steps, has_needs = approved_identities(approval)
    # launched-job and serving identities: their records and grants are read and their
    # posture followed; each step is re-evaluated with them, so the needs they imply (actAs
    # on them) are derived as at the approval
    others = [email for _role, _task, email in other_identities(approval)]
    attached: dict[str, dict[str, str]] = {}
    for role, task, email in other_identities(approval):
        attached.setdefault(task, {})[f"{role}_service_account"] = email
    steps = tuple(
        dataclasses.replace(
            s,
            launched_service_account=attached[s.task].get("launched_service_account"),
            serving_service_account=attached[s.task].get("serving_service_account"),
        )
        if s.task in attached
        else s
        for s in steps
    )
    at_approval, no_baseline = recorded_baseline(approval)
    recorded = approval.get("baseline")
    seen_then = recorded.get("nodes") if isinstance(recorded, dict) else None
    root = recorded.get("pipeline_root") if isinstance(recorded, dict) else None
    root = root if isinstance(root, str) and root.startswith("gs://") else ""
    result = SimpleNamespace(steps=steps)
    try:
        requirements = derive_requirements(
            result,
            project=project,
            location=location,
            pipeline_service_account=pipeline_sa,
            pipeline_root=root or None,  # its implicit needs too, when the approval recorded it
            submitter=None,
        )
    except ZtError as exc:  # e.g. a launcher kind this version does not know
        return evaluate_drift(
            approval,
            None,
            (),
            None,
            now=now,
            unreadable=(f"the approval's steps ({exc})",),
            no_approval_baseline="the approval's steps could not be re-derived",
        )
    needs = needed_nodes(
        requirements,
        steps=steps,
        pipeline_service_account=pipeline_sa,
        project=project,
        location=location,
    )
    unreadable: list[str] = []
    world = snapshot
    if world is None:
        from zt_pipelines.gcp import fetch_snapshot

        try:
            world = fetch_snapshot(
                resources=needs.resources,
                service_accounts=needs.service_accounts,
                principals=needs.principals,
                projects=needs.projects,
                credentials=credentials,
                emulator_host=emulator_host,
                use_cache=False,  # drift is about now: never a cached answer
            )
        except ZtError as exc:
            return evaluate_drift(
                approval,
                None,
                (),
                baseline,
                now=now,
                unreadable=(f"IAM state ({exc})",),
                at_approval=at_approval,
                no_approval_baseline=no_baseline,
            )
    unreadable.extend(f"{u.what} of {u.target} ({u.reason})" for u in world.unreadable)
    evaluator = Evaluator(world)
    # the approved run had its root (judged then, ZT419): posture is what drifts; "" when the
    # approval did not record it
    context = CheckContext(
        project=project, location=location, pipeline_service_account=pipeline_sa, pipeline_root=root
    )
    report = evaluate(requirements, steps, evaluator, None, now=now, context=context)
    identities = [
        e
        for e in dict.fromkeys([pipeline_sa, *(s.service_account or "" for s in steps), *others])
        if e
    ]
    postures = [posture_of(email, evaluator, now=now) for email in identities]
    scoped = []
    if at_approval is not None:
        # today's posture over what the approval saw (plus nodes today's needs newly reach):
        # a snapshot or read wider than the approval's is not a wider grant
        account_nodes = [
            name
            for name in world.nodes
            if any(name.endswith(f"/serviceAccounts/{email}") for email in identities)
        ]
        nodes = set(seen_then if isinstance(seen_then, list) else ())
        nodes |= scope(world, [*needs.resources, *account_nodes])
        narrowed = Evaluator(restricted(world, nodes))
        scoped = [posture_of(email, narrowed, now=now) for email in identities]
        # an identity whose every grant the approval held, and today's read holds too: its
        # grants are compared on every node read today — one outside what the approval read
        # was not there then (a complete search would have found it)
        complete = completely_searched(approval)
        full = {p.identity: p for p in postures}
        scoped = [
            dataclasses.replace(p, grants=full[p.identity].grants)
            if p.identity in complete
            and f"serviceAccount:{p.identity}" in world.complete_bindings_for
            and p.identity in full
            else p
            for p in scoped
        ]
    return evaluate_drift(
        approval,
        report,
        postures,
        baseline,
        now=now,
        unreadable=unreadable,
        has_needs=has_needs,
        at_approval=at_approval,
        scoped=scoped,
        no_approval_baseline=no_baseline,
    )


def _drift_decision(verdict: Any, *, submitter: str) -> Decision:
    approval = verdict.approval
    report = verdict.report
    errors = report.errors
    summary = (
        "no drift"
        if not errors
        else f"{plural(len(errors), 'error')}: {', '.join(sorted({f.code for f in errors}))}"
    )
    return Decision(
        action=DRIFT_ACTION,
        outcome="refused" if verdict.drifted else "allowed",
        submitter=submitter,
        project=str(approval.get("project", "")),
        location=str(approval.get("location", "")),
        pipeline=str(approval.get("pipeline", "")),
        spec_sha256=str(approval.get("spec_sha256", "")),
        identities=tuple(
            AuditIdentity(
                str(i.get("role", "step")),  # type: ignore[arg-type]
                str(i.get("service_account", "")),
                task=str(i.get("task", "")),
                source="approved",
            )
            for i in approval.get("identities") or ()
            if isinstance(i, dict)
        ),
        findings=tuple(f.to_dict() for f in report.findings),
        job_id=str(approval.get("job_id", "")),
        reason=f"approval seq {approval.get('seq')}: {summary}",
    )


USAGE_ACTION = "usage"


def usage(
    project: str,
    *,
    audit_log: str | os.PathLike[str] | AuditLog | None = None,
    since: timedelta = timedelta(days=30),
    credentials: Any = None,
    factory: ClientFactory | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], datetime] = utc_now,
    record: bool = True,
    logs_from: str | None = None,
) -> Any:
    """Compare what the step identities of ``project``'s approved runs did (Cloud Audit Logs,
    over ``since``) with what they declared; return a
    :class:`~zt_pipelines.monitor.usage.UsageVerdict` and (by default) record it.

    With ``logs_from`` (a log view, ``projects/P/locations/L/buckets/B/views/V``, fed by an
    aggregated Log Router sink) the entries of every project the view holds are read in one
    stream; each project the approvals name that is not proven routed into it (its sinks
    read) is read directly.

    Raises:
        InputError: ``logs_from`` is not a log view name.
    """
    from zt_pipelines.errors import ApiError
    from zt_pipelines.gcp.audit_logs import AuditLogsAdapter
    from zt_pipelines.gcp.vertex_jobs import VertexJobsAdapter
    from zt_pipelines.monitor.coverage import owner_of, usage_scope
    from zt_pipelines.monitor.drift import approved_identities, other_identities
    from zt_pipelines.monitor.runs import approving
    from zt_pipelines.monitor.usage import Accesses, StepWindow, evaluate_usage

    if logs_from is not None and not LOG_VIEW.match(logs_from):
        from zt_pipelines.errors import InputError

        raise InputError(
            f"--logs-from {logs_from!r} is not a log view "
            "(projects/PROJECT/locations/LOCATION/buckets/BUCKET/views/VIEW)"
        )
    factory = factory or ClientFactory(credentials, project=project)
    now, what_if = judged_now(clock)
    start = now - since
    log = open_audit_log(audit_log, clock)
    records, chain_problem = read_approvals(log)
    unreadable: list[str] = []
    if chain_problem:
        unreadable.append(f"the audit log ({chain_problem})")
    jobs = VertexJobsAdapter(factory, retry)
    windows: list[StepWindow] = []
    identities: set[str] = set()
    approvals = [r for r in records if approving(r) and r.get("project") == project]
    # (approval, run): single runs by their job id; a schedule's runs as Vertex lists them
    runs: dict[str, tuple[dict[str, Any], str]] = {}
    # a launched job's identity (not a step's own): its uses inside its step's windows are
    # the job's, not compared with needs the record does not hold; outside them, misuse
    launched: dict[str, list[tuple[float, float]]] = {}
    serving: set[str] = set()
    for approval in approvals:
        _pipeline_sa, steps, _has_needs = approved_identities(approval)
        identities.update(s.service_account for s in steps if s.service_account)
        for role, _task, email in other_identities(approval):
            if role == "launched":
                identities.add(email)
                launched.setdefault(email, [])
            else:
                serving.add(email)
        if _is_schedule(approval) or not approval.get("job_id"):
            continue
        if _parse_time(str(approval.get("time", ""))) < start - timedelta(days=1):
            continue  # its runs ended before the window (runs are at most a day... or read)
        runs[str(approval["job_id"])] = (approval, str(approval["job_id"]))
    for name, approval in _scheduled_runs(
        jobs, project, [a for a in approvals if _is_schedule(a)], start, unreadable
    ).items():
        runs[name] = (approval, name)
    for approval, job in runs.values():
        _pipeline_sa, steps, _has_needs = approved_identities(approval)
        run = jobs.read_run(
            job,
            project=project,
            location=str(approval.get("location", "")),
            spec_hash=_spec_hash,
            read_jobs=False,
        )
        unreadable.extend(f"{u.what} of {u.target} ({u.error})" for u in run.unreadable)
        by_task = {t.path: t for t in run.tasks}
        for step in steps:
            task = by_task.get(step.task)
            if task is None or not step.service_account or not task.start_time:
                continue
            windows.append(
                StepWindow(
                    run=run.job_id,
                    task=step.task,
                    service_account=step.service_account,
                    start=_parse_time(task.start_time),
                    end=_parse_time(task.end_time) if task.end_time else now,
                    needs=step.needs,
                    pipeline_root=run.pipeline_root or None,
                )
            )
        for role, task_path, email in other_identities(approval):
            task = by_task.get(task_path)
            if role == "launched" and task is not None and task.start_time:
                launched.setdefault(email, []).append(
                    (
                        _parse_time(task.start_time).timestamp(),
                        (_parse_time(task.end_time) if task.end_time else now).timestamp(),
                    )
                )
    scope = usage_scope(project, approvals, pipeline_roots=[w.pipeline_root or "" for w in windows])
    owners, projects = _resolve_scope(factory, retry, scope, unreadable)
    logs = AuditLogsAdapter(factory, retry)
    accesses = Accesses()  # keeps the pages read column-wise (see evaluate_usage)
    configs: dict[str, dict[str, set[str]] | None] = {}
    direct = sorted(projects)
    notes: list[str] = []
    if logs_from is not None:
        in_view, why_not = _view_coverage(factory, retry, logs_from, direct)
        viewed = Accesses()
        if identities:
            try:
                viewed = logs.accesses(project, identities, start, now, view=logs_from)
            except ApiError as exc:
                unreadable.append(f"the log view {logs_from} ({exc.message})")
                in_view, viewed = set(), Accesses()
                why_not = dict.fromkeys(direct, "the view could not be read")
        direct = [p for p in direct if p not in in_view]
        # a project read directly too: its entries come from there (never counted twice)
        skip = tuple(f"projects/{p}/" for p in direct)
        accesses.extend(viewed.where(lambda name: not name.startswith(skip), "log_name"))
        notes.append(
            f"Cloud Audit Logs read from the log view {logs_from}: every project it holds, "
            f"{len(in_view)} of the {len(projects)} the approvals name proven routed into it"
            + (f" ({', '.join(sorted(in_view))})" if in_view else "")
        )
        if direct:
            notes.append(
                "read directly instead, not proven to be in the view: "
                + "; ".join(f"{p} ({why_not.get(p, 'not routed')})" for p in direct)
            )
    for where in sorted(projects):
        named = "; ".join(projects[where])
        try:
            configs[where] = logs.audit_configs(where)
        except ApiError as exc:
            configs[where] = None
            unreadable.append(
                f"the audit configuration of project {where} ({named}) ({exc.message})"
            )
        if identities and where in direct:
            try:
                accesses.extend(logs.accesses(where, identities, start, now))
            except ApiError as exc:
                configs[where] = None  # nothing there is seen: nothing is called unused
                unreadable.append(f"project {where}'s Cloud Audit Logs ({named}) ({exc.message})")
    _inherited_configs(factory, retry, configs, notes)
    own = {w.service_account.lower() for w in windows}
    spans = {e: w for e, w in launched.items() if e not in own}
    if spans:

        def not_the_jobs_own(principal: str, ts: float, via: str) -> bool:
            return (
                bool(via)
                or principal.lower() not in spans
                or not any(start <= ts <= end for start, end in spans[principal.lower()])
            )

        accesses = accesses.where(not_the_jobs_own, "principal", "ts", "via")
        notes.append(
            "launched-job identities ("
            + ", ".join(sorted(spans))
            + "): uses inside their steps' runs are the jobs' own (not compared with needs); "
            "uses outside every run are reported"
        )
    if serving:
        notes.append(
            "serving identities ("
            + ", ".join(sorted(serving))
            + ") serve after their runs end: their uses are not compared (drift follows them)"
        )
    verdict = evaluate_usage(
        windows,
        accesses,
        audit_configs=configs.get(project),
        now=now,
        project=project,
        unreadable=unreadable,
        since=start,
        project_configs={k: v for k, v in configs.items() if k != project},
        owners={
            n.resource.name: owner_of(n.resource.name, owners, project)
            for w in windows
            for n in w.needs
        }
        | {f"//storage.googleapis.com/{b}": owners.get(b) for b in scope.buckets},
    )
    # Cloud Audit Logs are kept by the project that owns the resource: say what was read
    notes.insert(
        0,
        f"Cloud Audit Logs of {plural(len(projects), 'project')} compared: "
        + "; ".join(f"{p} ({', '.join(projects[p])})" for p in sorted(projects)),
    )
    if logs_from is None:
        notes.append(
            "uses logged in other projects (ones no approval's project, identities, needs, "
            "pipeline root or grants name) are not seen: read an organisation-level log view "
            "(--logs-from) to see them"
        )
        if scope.wide:
            notes.append(
                "grants on "
                + ", ".join(scope.wide)
                + " reach projects no approval names, whose logs were not read: read an "
                "organisation-level log view (--logs-from) to see uses there"
            )
    from dataclasses import replace

    verdict = replace(
        verdict, report=replace(verdict.report, notes=(*verdict.report.notes, *notes))
    )
    verdict = _with_findings(verdict, [what_if] if what_if else [])
    if record:
        log.append(_usage_decision(verdict, project, submitter=_who(factory)))
    return verdict


LOG_VIEW = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/buckets/[^/\s]+/views/[^/\s]+$")


def _ancestry(crm: Any, project: str) -> list[str] | None:
    """``folders/F`` ... ``organizations/O`` above ``project``, nearest first (``None``: a read
    failed)."""
    from zt_pipelines.errors import ApiError

    chain: list[str] = []
    try:
        parent = crm.get_project(project).parent
        while parent and len(chain) < 32:
            short = parent.removeprefix("//cloudresourcemanager.googleapis.com/")
            chain.append(short)
            if not short.startswith("folders/"):
                break
            parent = crm.get_folder(short.removeprefix("folders/")).parent
    except ApiError:
        return None
    return chain


def _inherited_configs(
    factory: ClientFactory,
    retry: RetryPolicy | None,
    configs: dict[str, dict[str, set[str]] | None],
    notes: list[str],
) -> None:
    """Add to each project's ``auditConfigs`` those of its folders and organisation (they are
    inherited). A read that fails only hides logs turned on there (ZT633 may then warn about
    logs that are on: said in a note), so it is not a failed verification."""
    from concurrent.futures import ThreadPoolExecutor

    from zt_pipelines.errors import ApiError
    from zt_pipelines.gcp.audit_logs import AuditLogsAdapter
    from zt_pipelines.gcp.resourcemanager import ResourceManagerAdapter

    crm = ResourceManagerAdapter(factory, retry)
    logs = AuditLogsAdapter(factory, retry)
    read = sorted(p for p, c in configs.items() if c is not None)

    def of(name: str) -> dict[str, set[str]] | None:
        try:
            return logs.audit_configs_of(name)
        except ApiError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        chains = dict(zip(read, pool.map(lambda p: _ancestry(crm, p), read), strict=True))
        above = sorted({a for chain in chains.values() for a in chain or ()})
        found = dict(zip(above, pool.map(of, above), strict=True))
    unread = sorted(
        {p for p, c in chains.items() if c is None} | {a for a, c in found.items() if c is None}
    )
    for project, chain in chains.items():
        mine = configs[project]
        assert mine is not None
        for ancestor in chain or ():
            for service, types in (found.get(ancestor) or {}).items():
                mine.setdefault(service, set()).update(types)
    if unread:
        notes.append(
            "the audit configuration inherited by "
            + ", ".join(unread)
            + " could not be read: Data Access logs turned on above a project are not seen "
            "there (ZT633 may warn about logs that are on)"
        )


def _view_coverage(
    factory: ClientFactory, retry: RetryPolicy | None, view: str, projects: list[str]
) -> tuple[set[str], dict[str, str]]:
    """(the projects proven routed into ``view``'s bucket, why each other one is not): the
    view's filter (``views.get``), each project's ancestry (``projects.get`` /
    ``folders.get``) and the sinks on each (``sinks.list``), read concurrently. A read that
    fails proves nothing (the project is then read directly)."""
    from concurrent.futures import ThreadPoolExecutor

    from zt_pipelines.errors import ApiError
    from zt_pipelines.gcp.log_router import LogRouterAdapter
    from zt_pipelines.gcp.resourcemanager import ResourceManagerAdapter
    from zt_pipelines.monitor.coverage import routing_sink

    router = LogRouterAdapter(factory, retry)
    crm = ResourceManagerAdapter(factory, retry)
    bucket = view.rsplit("/views/", 1)[0]
    try:
        shown = router.view_filter(view)
    except ApiError as exc:
        return set(), dict.fromkeys(projects, f"the view's filter could not be read: {exc.message}")
    if shown.strip():
        return set(), dict.fromkeys(projects, f"the view has a filter ({shown.strip()})")

    def ancestry(project: str) -> list[str] | None:
        return _ancestry(crm, project)

    def sinks_of(parent: str) -> Any:
        try:
            return router.list_sinks(parent)
        except ApiError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        chains = dict(zip(projects, pool.map(ancestry, projects), strict=True))
        parents = sorted(
            {f"projects/{p}" for p in projects}
            | {a for chain in chains.values() for a in chain or ()}
        )
        read = dict(zip(parents, pool.map(sinks_of, parents), strict=True))
    sinks = {k: v for k, v in read.items() if v is not None}
    covered: set[str] = set()
    why: dict[str, str] = {}
    for project in projects:
        chain = chains[project]
        if chain is None:
            why[project] = "its ancestry could not be read"
            continue
        sink, reason = routing_sink(project, chain, sinks, bucket)
        if sink is None:
            why[project] = reason
        else:
            covered.add(project)
    return covered, why


def _resolve_scope(
    factory: ClientFactory,
    retry: RetryPolicy | None,
    scope: Any,
    unreadable: list[str],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(bucket → owning project id, project id → what names it): buckets resolved through
    ``storage.buckets.get`` and project numbers through ``projects.get``, concurrently. A
    read that fails is recorded in ``unreadable`` naming the bucket or project (its usage is
    then not verified) and that owner is left unknown."""
    from concurrent.futures import ThreadPoolExecutor

    from zt_pipelines.errors import ApiError
    from zt_pipelines.gcp.resourcemanager import ResourceManagerAdapter
    from zt_pipelines.gcp.storage import StorageAdapter

    storage = StorageAdapter(factory, retry)
    crm = ResourceManagerAdapter(factory, retry)

    def bucket_number(bucket: str) -> str | ApiError:
        try:
            return storage.get_bucket_project_number(bucket)
        except ApiError as exc:
            return exc

    def project_id(number: str) -> str | ApiError:
        try:
            return crm.get_project(number).name.rsplit("/", 1)[-1]
        except ApiError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = dict(zip(scope.buckets, pool.map(bucket_number, scope.buckets), strict=True))
        wanted = sorted(
            {n for n in numbers.values() if isinstance(n, str)}
            | {p for p in scope.projects if p.isdigit()}
        )
        ids = dict(zip(wanted, pool.map(project_id, wanted), strict=True))
    projects: dict[str, list[str]] = {}
    for name, why in scope.projects.items():
        resolved = ids.get(name, name) if name.isdigit() else name
        if isinstance(resolved, ApiError):
            unreadable.append(f"the id of project {name} ({'; '.join(why)}) ({resolved.message})")
            continue
        projects.setdefault(resolved, []).extend(why)
    owners: dict[str, str] = {}
    for bucket, number in numbers.items():
        why = "; ".join(scope.buckets[bucket])
        resolved = ids.get(number) if isinstance(number, str) else number
        if isinstance(resolved, ApiError) or resolved is None:
            message = resolved.message if isinstance(resolved, ApiError) else "unknown"
            unreadable.append(
                f"the project that owns bucket {bucket} ({why}): its audit logs ({message})"
            )
            continue
        owners[bucket] = resolved
        projects.setdefault(resolved, []).append(f"bucket {bucket}: {why}")
    return owners, {k: list(dict.fromkeys(v)) for k, v in projects.items()}


def _is_schedule(approval: dict[str, Any]) -> bool:
    return str(approval.get("action", "")).endswith("schedule")


def _scheduled_runs(
    jobs: Any,
    project: str,
    approvals: list[dict[str, Any]],
    start: datetime,
    unreadable: list[str],
) -> dict[str, dict[str, Any]]:
    """The runs the approved schedules started since ``start`` (a day earlier: a run that
    began before the window may still act in it), by job name → its schedule's approval.

    A schedule is the approval's when the job it creates carries the approval's spec (and
    decision) hash labels; the latest approval wins. A list that fails is recorded in
    ``unreadable`` (usage is then not verified)."""
    from zt_pipelines.errors import ApiError
    from zt_pipelines.monitor.shadow import schedule_approval

    spec_labels, _verified = _labels()
    out: dict[str, dict[str, Any]] = {}
    since = (start - timedelta(days=1)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for location in sorted({str(a.get("location", "")) for a in approvals}):
        try:
            schedules = jobs.list_schedules(project, location)
        except ApiError as exc:
            unreadable.append(f"the schedules of {project}/{location} ({exc.message})")
            continue
        for schedule in schedules:
            # labels are not evidence: only a schedule that carries out an approval (its
            # spec, identity and runtime config re-read) lends its runs as usage windows
            approval, _why = schedule_approval(
                schedule_summary(schedule),
                approvals,
                spec_labels=spec_labels,
                project=project,
                location=location,
            )
            if approval is None:
                continue  # not an approved schedule: `monitor` flags it (ZT641)
            try:
                listed = jobs.list_pipeline_jobs(
                    project,
                    location,
                    filter=f'schedule_name={schedule.name} AND create_time>="{since}"',
                )
            except ApiError as exc:
                unreadable.append(f"the runs of schedule {schedule.name} ({exc.message})")
                continue
            for job in listed:
                out[str(job.name)] = dict(approval)
    return out


def _parse_time(text: str) -> datetime:
    try:
        value = parse_rfc3339(text)
    except ValueError:
        from datetime import timezone

        return datetime.now(timezone.utc)  # unknown: treat as recent (read, never skip)
    if value.tzinfo is None:
        from datetime import timezone

        value = value.replace(tzinfo=timezone.utc)
    return value


def _usage_decision(verdict: Any, project: str, *, submitter: str) -> Decision:
    report = verdict.report
    errors = report.errors
    return Decision(
        action=USAGE_ACTION,
        outcome="allowed" if verdict.clean else "refused",
        submitter=submitter,
        project=project,
        location="",
        pipeline="",
        findings=tuple(f.to_dict() for f in report.findings),
        reason=(
            "usage within declared needs"
            if not errors
            else f"{plural(len(errors), 'error')}: {', '.join(sorted({f.code for f in errors}))}"
        ),
    )


MONITOR_ACTION = "monitor"


def monitor_once(
    project: str,
    location: str,
    *,
    audit_log: str | os.PathLike[str] | AuditLog | None = None,
    credentials: Any = None,
    factory: ClientFactory | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], datetime] = utc_now,
    snapshot: Any = None,
    progress: Callable[[str], None] | None = None,
    expect_policy: Sequence[str] | None = None,
) -> tuple[Any, list[Any]]:
    """One monitoring pass over a location: every pipeline job and schedule listed; shadows
    flagged (ZT640/ZT641); finished zt runs not yet verified go through :func:`verify_run`;
    active zt schedules through :func:`drift`. Returns the combined report and the per-item
    results (verify-run and drift verdicts). A list that fails is ZT600 (fail closed).
    ``expect_policy``: as :func:`verify_run`, for every approval a job or schedule matches.

    Raises:
        PolicyFileError: the expected policy cannot be read.
    """
    from zt_pipelines.errors import ApiError
    from zt_pipelines.gcp.vertex_jobs import VertexJobsAdapter
    from zt_pipelines.monitor.shadow import JobSummary, ScheduleSummary, find_shadows
    from zt_pipelines.policy.report import Finding, Report, Severity, sort_findings

    say = progress or (lambda _text: None)
    expected = expected_policy(expect_policy)
    now, what_if = judged_now(clock)
    factory = factory or ClientFactory(credentials, project=project)
    adapter = VertexJobsAdapter(factory, retry)
    log = open_audit_log(audit_log, clock)
    records, chain_problem = read_approvals(log)
    findings: list[Finding] = []
    if chain_problem:
        findings.append(
            Finding("ZT614", Severity.ERROR, f"the audit log does not verify ({chain_problem})")
        )
    jobs: list[JobSummary] = []
    schedules: list[ScheduleSummary] = []
    say(f"listing pipeline jobs and schedules in {project}/{location}")
    try:
        jobs = [job_summary(j) for j in adapter.list_pipeline_jobs(project, location)]
        schedules = [schedule_summary(s) for s in adapter.list_schedules(project, location)]
    except ApiError as exc:
        findings.append(
            Finding("ZT600", Severity.ERROR, f"cannot list jobs or schedules: {exc.message}")
        )
    verified = {  # runs a clean record saw ended (older logs: an allowed record without ZT613)
        str(r.get("job_id"))
        for r in records
        if r.get("action") == POST_RUN_ACTION
        and r.get("outcome") == "allowed"
        and not any(
            isinstance(f, dict) and f.get("code") == "ZT613" for f in _list(r.get("findings"))
        )
    }
    spec_labels, _verified_label = _labels()
    shadows = find_shadows(
        jobs,
        schedules,
        records,
        project=project,
        location=location,
        spec_labels=spec_labels,
        verified=verified,
        expect_policy=expected,
    )
    findings.extend(shadows.findings)
    if what_if:  # said once for the pass (the runs and schedules below repeat it)
        findings.append(what_if)
    results: list[Any] = []
    for index, job in enumerate(shadows.to_verify, start=1):
        say(f"verify-run {index}/{len(shadows.to_verify)}: {job.job_id}")
        verdict = verify_run(
            job.name,
            project=project,
            location=location,
            audit_log=log,
            factory=factory,
            retry=retry,
            clock=clock,
            expect_policy=(),  # the listing above judged every approval's policy
        )
        results.append(verdict)
        findings.extend(
            _tagged([f for f in verdict.report.findings if f.code != "ZT405"], f"job {job.job_id}")
        )
    if shadows.live_schedule_approvals:
        say(f"drift of {plural(len(shadows.live_schedule_approvals), 'active schedule')}")
        drifted = drift(
            log,
            snapshot=snapshot,
            credentials=factory.credentials,
            emulator_host=factory.emulator_host,
            clock=clock,
            approvals=[dict(a) for a in shadows.live_schedule_approvals],
            expect_policy=(),  # judged with the schedules above
        )
        results.extend(drifted)
        for d in drifted:
            findings.extend(
                _tagged(
                    [f for f in d.report.findings if f.code not in ("ZT629", "ZT405")],
                    f"schedule approval seq {d.approval.get('seq')}",
                )
            )
    report = Report(
        findings=sort_findings(findings),
        pipeline="monitor",
        project=project,
        location=location,
        checked_at=now.isoformat(),
        notes=(
            f"{plural(len(jobs), 'pipeline job')}, {plural(len(schedules), 'schedule')} listed; "
            f"{plural(len(shadows.to_verify), 'run')} verified, "
            f"{plural(len(shadows.live_schedule_approvals), 'active schedule')} checked for drift",
        ),
    )
    return report, results


def _spec_and_runtime(
    job: Any,
) -> tuple[str | None, dict[str, str] | None, tuple[str, ...], dict[str, str | None] | None]:
    """The sha256 of the spec a listed job (or a schedule's job) holds, its runtime-config
    parts, the executors running code as the job's own account and the identity each
    custom-job step runs as; ``(None, None, (), None)`` when the spec was not listed or cannot
    be hashed (it then matches no approval: flagged, never passed)."""
    from google.protobuf import json_format

    from zt_pipelines.monitor.baseline import request_fields, runtime_parts
    from zt_pipelines.monitor.shadow import pinned_step_accounts, unwrapped_executors

    raw = type(job).pb(job)
    if not raw.HasField("pipeline_spec"):
        return None, None, (), None
    try:
        spec = json_format.MessageToDict(raw.pipeline_spec)
        runtime = json_format.MessageToDict(raw.runtime_config, preserving_proto_field_name=True)
        values = runtime.get("parameter_values")
        return (
            _spec_hash(spec),
            runtime_parts(
                runtime,
                labels=dict(job.labels),
                network=str(job.network),
                reserved_ip_ranges=[str(r) for r in job.reserved_ip_ranges],
                kms_key=str(job.encryption_spec.kms_key_name),
                request=request_fields(raw),
            ),
            unwrapped_executors(spec),
            pinned_step_accounts(spec, values if isinstance(values, dict) else None),
        )
    except Exception:  # a spec that cannot be hashed matches no approval (ZT640/ZT641)
        return None, None, (), None


def job_summary(job: Any) -> Any:
    """A listed pipeline job (``aiplatform_v1.PipelineJob``) as the shadow check reads it: its
    labels, schedule, the sha256 of the spec it holds, its run-as account and runtime-config
    parts (a spec the list did not carry is "not read": the job is flagged, never passed)."""
    from zt_pipelines.monitor.shadow import JobSummary

    digest, runtime, unwrapped, accounts = _spec_and_runtime(job)
    return JobSummary(
        str(job.name),
        str(getattr(job.state, "name", job.state)),
        dict(job.labels),
        schedule=str(job.schedule_name),
        spec_sha256=digest,
        service_account=str(job.service_account),
        runtime=runtime,
        unwrapped=unwrapped,
        step_accounts=accounts,
    )


def schedule_summary(schedule: Any) -> Any:
    """A listed schedule (``aiplatform_v1.Schedule``) as the shadow check reads it: its job's
    labels, the sha256 of the spec it holds, its run-as account and runtime-config parts."""
    from zt_pipelines.monitor.shadow import ScheduleSummary

    job = schedule.create_pipeline_job_request.pipeline_job
    labels = dict(job.labels)
    digest, runtime, unwrapped, accounts = _spec_and_runtime(job)
    return ScheduleSummary(
        str(schedule.name),
        str(getattr(schedule.state, "name", schedule.state)),
        labels,
        str(schedule.display_name),
        spec_sha256=digest,
        service_account=str(job.service_account),
        runtime=runtime,
        unwrapped=unwrapped,
        step_accounts=accounts,
        end_time=_end_time(schedule),
    )


def _end_time(schedule: Any) -> str | None:
    """A listed schedule's end time as RFC 3339 (``""``: none; ``None``: not readable)."""
    try:
        if not type(schedule).pb(schedule).HasField("end_time"):
            return ""
        end = schedule.end_time
        return str(end.isoformat()) if end is not None else ""
    except (AttributeError, TypeError, ValueError):
        return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _tagged(findings: Any, where: str) -> list[Any]:
    """Findings of a sub-check, their message prefixed with what they are about."""
    from dataclasses import replace

    return [replace(f, message=f"{where}: {f.message}") for f in findings]
