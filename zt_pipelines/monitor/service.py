"""Post-run verification at the IO edge: read the run, read the audit log, decide, record.

The reads go through :mod:`zt_pipelines.gcp.vertex_jobs` (official clients, one retry policy,
failures kept as findings); the decision is the pure
:func:`zt_pipelines.monitor.runs.evaluate_run`; the result is appended to the audit log as a
post-run record (action ``verify-run``: ``allowed`` when verified, ``refused`` otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from zt_pipelines.audit import AuditIdentity, AuditLog, Decision, default_audit_log, utc_now
from zt_pipelines.errors import ZtError
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.monitor.runs import RunVerdict, evaluate_run

POST_RUN_ACTION = "verify-run"


def _spec_hash(spec: dict[str, Any]) -> str:
    from zt_pipelines.job import spec_sha256

    return spec_sha256(spec)


def _labels() -> tuple[tuple[str, str], str]:
    from zt_pipelines.job import SPEC_LABELS, VERIFIED_LABEL

    return (SPEC_LABELS[0], SPEC_LABELS[1]), VERIFIED_LABEL


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
    return records, ""


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

    Raises:
        ApiError: the post-run record could not be appended.
    """
    from zt_pipelines.gcp.vertex_jobs import VertexJobsAdapter

    factory = factory or ClientFactory(credentials, project=project)
    adapter = VertexJobsAdapter(factory, retry)
    run = adapter.read_run(job, project=project, location=location, spec_hash=_spec_hash)
    log = open_audit_log(audit_log, clock)
    records, chain_problem = read_approvals(log)
    spec_labels, verified_label = _labels()
    verdict = evaluate_run(
        run,
        records,
        now=clock(),
        spec_labels=spec_labels,
        verified_label=verified_label,
        chain_problem=chain_problem,
    )
    if record:
        log.append(post_run_decision(verdict, submitter=_who(factory)))
    return verdict


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
    reason = (
        f"verified: the run matches approval seq {verdict.approval.get('seq')}"
        if verdict.verified and verdict.approval is not None
        else f"{len(errors)} error(s): {', '.join(sorted({f.code for f in errors}))}"
    )
    return Decision(
        action=POST_RUN_ACTION,
        outcome="allowed" if verdict.verified else "refused",
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
