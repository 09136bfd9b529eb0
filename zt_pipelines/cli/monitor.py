"""``verify-run``, ``drift``, ``usage`` and ``monitor``: continuous verification after submit.

Exit codes as everywhere: 0 verified / no drift, 1 a finding of error severity (or a read that
failed: fail closed), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path

import click

from zt_pipelines.cli import require_writable, write_output
from zt_pipelines.cli.check import format_option, render_report
from zt_pipelines.cli.options import location_option, project_option


def _emit(text: str, output: Path | None) -> None:
    if output is not None:
        write_output(output, text + "\n")
    else:
        click.echo(text)


@click.command("verify-run")
@click.argument("job")
@project_option(help="Project the job was submitted to.")
@location_option()
@click.option(
    "--audit-log",
    type=click.Path(path_type=Path),
    help="Audit log holding the approvals (default: $ZT_AUDIT_LOG or the state directory).",
)
@click.option("--no-record", is_flag=True, help="Do not append the post-run record.")
@format_option()
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def verify_run_command(
    job: str,
    project: str,
    location: str,
    audit_log: Path | None,
    no_record: bool,
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
        job, project=project, location=location, audit_log=audit_log, record=not no_record
    )
    _emit(render_report(verdict.report, fmt), output)
    return 0 if verdict.verified else 1


commands: dict[str, click.Command] = {"verify-run": verify_run_command}
