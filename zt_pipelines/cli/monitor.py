"""``verify-run``, ``drift``, ``usage`` and ``monitor``: continuous verification after submit.

Exit codes as everywhere: 0 verified / no drift, 1 a finding of error severity (or a read that
failed: fail closed), 2 bad input.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from zt_pipelines.cli import require_writable, write_output
from zt_pipelines.cli.check import format_option, render_report
from zt_pipelines.cli.options import (
    EMULATOR_ENVIRONMENT,
    LIVE_ENVIRONMENT,
    expect_policy_option,
    live_progress,
    location_option,
    project_option,
    snapshot_option,
)
from zt_pipelines.errors import InputError
from zt_pipelines.policy.wording import shown


def _emit(text: str, output: Path | None) -> None:
    if output is not None:
        write_output(output, text + "\n")
    else:
        click.echo(text)


@click.command("verify-run", epilog=EMULATOR_ENVIRONMENT)
@click.argument("job")
@project_option(help="Project the job was submitted to.")
@location_option()
@click.option(
    "--audit-log",
    type=click.Path(path_type=Path),
    help="Audit log holding the approvals (default: $ZT_AUDIT_LOG or the state directory).",
)
@click.option("--no-record", is_flag=True, help="Do not append the post-run record.")
@expect_policy_option()
@format_option()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def verify_run_command(
    job: str,
    project: str,
    location: str,
    audit_log: Path | None,
    no_record: bool,
    expect_policy: tuple[str, ...],
    fmt: str,
    output: Path | None,
) -> int:
    """Verify that pipeline run JOB (an id or full name) ran exactly as approved: each task as
    its approved identity and image, in the approved network, key, project and location.
    Exit 0 when verified, 1 otherwise."""
    from zt_pipelines.monitor.service import verify_run

    if output is not None:
        require_writable(output)
    verdict = verify_run(
        job,
        project=project,
        location=location,
        audit_log=audit_log,
        record=not no_record,
        expect_policy=expect_policy or None,
    )
    _emit(render_report(verdict.report, fmt), output)
    return 0 if verdict.verified else 1


def parse_duration(text: str, *, option: str) -> timedelta:
    """``30d``, ``12h``, ``45m`` or ``90s`` as a timedelta.

    Raises:
        InputError: anything else (exit 2).
    """
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isascii() or not number.isdigit() or int(number) <= 0:
        raise InputError(
            f"{text!r} is not a duration", where=option, fix="write e.g. 30d, 12h, 45m or 90s"
        )
    if len(number) > 7 or timedelta(**{units[unit]: int(number)}) > MAX_DURATION:
        raise InputError(
            f"{text!r} is longer than {MAX_DURATION.days} days",
            where=option,
            fix="audit logs are kept 400 days at most: write e.g. 400d",
        )
    return timedelta(**{units[unit]: int(number)})


#: the longest ``--since`` / ``--watch`` accepted (ten years: past any log retention)
MAX_DURATION = timedelta(days=3650)


def _combined(reports: list[Any], what: str) -> Any:
    """Several reports as one (for JSON/SARIF output and the exit code)."""
    from zt_pipelines.policy.report import Report, sort_findings

    findings = [f for r in reports for f in r.findings]
    notes = [n for r in reports for n in r.notes]
    checked = reports[0].checked_at if reports else ""
    return Report(
        findings=sort_findings(findings), pipeline=what, checked_at=checked, notes=tuple(notes)
    )


@click.command("drift", epilog=LIVE_ENVIRONMENT)
@click.argument("audit_log", required=False, type=click.Path(path_type=Path))
@snapshot_option()
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="Re-evaluate approvals of runs from this long ago (schedules: always).",
)
@click.option("--no-record", is_flag=True, help="Do not append drift records (nor baselines).")
@expect_policy_option()
@format_option()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def drift_command(
    audit_log: Path | None,
    snapshot: Path | None,
    since: str,
    no_record: bool,
    expect_policy: tuple[str, ...],
    fmt: str,
    output: Path | None,
) -> int:
    """Re-evaluate every still-relevant approval in AUDIT_LOG (default: $ZT_AUDIT_LOG or
    ~/.local/state/zt-pipelines/audit.jsonl) against today's IAM (live, or --snapshot FILE):
    grants added, keys, identities re-enabled, deny policies removed, new impersonation paths.
    Exit 1 on drift (or when IAM could not be read), 0 otherwise."""
    from zt_pipelines.monitor.service import drift

    if output is not None:
        require_writable(output)
    window = parse_duration(since, option="--since")
    with live_progress():  # live IAM reads, on a terminal only
        verdicts = drift(
            audit_log,
            snapshot=snapshot,
            since=window,
            record=not no_record,
            expect_policy=expect_policy or None,
        )
    reports = [v.report for v in verdicts]
    if fmt == "text":
        parts = [
            f"approval seq {v.approval.get('seq', '?')} (job {v.approval.get('job_id') or '-'}): "
            + str(v.report)
            for v in verdicts
        ]
        text = "\n\n".join(parts) or "no approvals to re-evaluate"
    else:
        text = render_report(_combined(reports, "drift"), fmt)
    _emit(text, output)
    return 1 if any(v.drifted for v in verdicts) else 0


@click.command("usage", epilog=EMULATOR_ENVIRONMENT)
@project_option(help="Project whose approved runs' step identities are audited.")
@click.option(
    "--audit-log",
    type=click.Path(path_type=Path),
    help="Audit log holding the approvals (default: $ZT_AUDIT_LOG or the state directory).",
)
@click.option("--since", default="30d", show_default=True, help="How far back to read logs.")
@click.option(
    "--proposal",
    type=click.Path(path_type=Path),
    help="Write the tighter needs (a manifest: steps → service_account, needs) here.",
)
@click.option(
    "--logs-from",
    metavar="VIEW",
    help="Read the audit logs from this log view "
    "(projects/P/locations/L/buckets/B/views/V, fed by an organisation-level aggregated "
    "sink) instead of project by project.",
)
@click.option("--no-record", is_flag=True, help="Do not append the usage record.")
@format_option()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def usage_command(
    project: str,
    audit_log: Path | None,
    since: str,
    proposal: Path | None,
    logs_from: str | None,
    no_record: bool,
    fmt: str,
    output: Path | None,
) -> int:
    """Compare what step identities did (Cloud Audit Logs: Admin Activity and Data Access,
    filtered server-side) with what they declared, run by run: unused declared permissions,
    undeclared accesses, uses outside any approved run, logs that are off. Exit 1 on an error
    finding (or logs that could not be read), 0 otherwise."""
    import yaml

    from zt_pipelines.monitor.service import usage

    for path, option in ((output, "--output"), (proposal, "--proposal")):
        if path is not None:
            require_writable(path, option=option)
    window = parse_duration(since, option="--since")
    verdict = usage(
        project, audit_log=audit_log, since=window, record=not no_record, logs_from=logs_from
    )
    if proposal is not None:
        manifest = {"steps": {task: dict(entry) for task, entry in verdict.proposal.items()}}
        write_output(proposal, yaml.safe_dump(manifest, sort_keys=True), option="--proposal")
    _emit(render_report(verdict.report, fmt), output)
    return 0 if verdict.clean else 1


@click.command("monitor", epilog=LIVE_ENVIRONMENT)
@project_option(help="Project whose pipeline jobs and schedules are monitored.")
@location_option()
@click.option(
    "--audit-log",
    type=click.Path(path_type=Path),
    help="Audit log holding the approvals (default: $ZT_AUDIT_LOG or the state directory).",
)
@snapshot_option(help="IAM snapshot for the drift of active schedules (default: live).")
@click.option("--watch", "watch", help="Repeat every INTERVAL (e.g. 5m) until interrupted.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl", "json", "sarif"]),
    default="text",
    show_default=True,
    help="jsonl: one finding per line.",
)
@expect_policy_option()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def monitor_command(
    project: str,
    location: str,
    audit_log: Path | None,
    snapshot: Path | None,
    watch: str | None,
    expect_policy: tuple[str, ...],
    fmt: str,
    output: Path | None,
) -> int:
    """List every pipeline job and schedule, flag those not submitted through zt-pipelines
    (ZT640/ZT641), verify finished runs not yet verified (verify-run) and check active
    schedules for drift. Exit 1 when anything is flagged (or a read failed), 0 otherwise;
    with --watch, repeat every INTERVAL until interrupted."""
    import json
    import sys
    import time

    from zt_pipelines.monitor.service import monitor_once

    if output is not None:
        require_writable(output)
    interval = parse_duration(watch, option="--watch").total_seconds() if watch else None
    on_terminal = sys.stderr.isatty()

    def progress(text: str) -> None:
        if on_terminal:
            click.echo(f"\r\033[K{shown(text)}", err=True, nl=False)

    while True:
        report, _results = monitor_once(
            project,
            location,
            audit_log=audit_log,
            snapshot=snapshot,
            progress=progress,
            expect_policy=expect_policy or None,
        )
        if on_terminal:
            click.echo("\r\033[K", err=True, nl=False)
        if fmt == "jsonl":
            text = "\n".join(json.dumps(f.to_dict(), sort_keys=True) for f in report.findings)
        else:
            text = render_report(report, fmt)
        if text:
            _emit(text, output)
        code = 0 if report.allowed else 1
        if interval is None:
            return code
        time.sleep(interval)


commands: dict[str, click.Command] = {
    "verify-run": verify_run_command,
    "drift": drift_command,
    "usage": usage_command,
    "monitor": monitor_command,
}
