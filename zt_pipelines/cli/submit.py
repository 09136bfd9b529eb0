"""``zt-pipelines submit TEMPLATE ...``: verify, audit, then submit the verified spec; exit 0/1/2.

The same path as the Python API (:class:`zt_pipelines.PipelineJob`): a refusal makes no
mutating API call, an allowed submission sends exactly the bytes that were verified.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from zt_pipelines.cli import parse_parameters
from zt_pipelines.cli.check import format_option, render_report
from zt_pipelines.cli.options import (
    LIVE_ENVIRONMENT,
    live_progress,
    location_option,
    pipeline_sa_option,
    policy_option,
    project_option,
    say,
    snapshot_option,
    step_defaults_options,
)
from zt_pipelines.errors import InputError, ZeroTrustViolation


def _aiplatform_logs_to_stderr() -> None:
    """aiplatform's loggers print to stdout ("Creating PipelineJob", the console link); here
    stdout is the report (JSON, SARIF), so their lines go to stderr with ours."""
    import logging
    import sys

    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not name.startswith("google.cloud.aiplatform") or not isinstance(logger, logging.Logger):
            continue
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and handler.stream is not sys.stderr:
                handler.setStream(sys.stderr)


def _labels(pairs: tuple[str, ...]) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--label {pair!r} is not KEY=VALUE", where="--label")
        labels[key] = value
    return labels or None


def _build_job(**kwargs: Any) -> Any:
    from zt_pipelines.job import PipelineJob

    return PipelineJob(**kwargs)


@click.command("submit", epilog=LIVE_ENVIRONMENT)
@click.argument("template")
@project_option()
@location_option()
@pipeline_sa_option(
    required=False,
    help="The pipeline service account (else aiplatform's default: refused as ZT100).",
)
@click.option("--display-name", default=None, help="Job display name (default: pipeline name).")
@click.option("--job-id", default=None, help="Job id (default: pipeline name + timestamp).")
@snapshot_option(help="Verify against this IAM snapshot instead of live IAM state.")
@click.option("--pipeline-root", help="gs://bucket/prefix for pipeline artifacts.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter.")
@click.option("--label", "label_pairs", multiple=True, metavar="KEY=VALUE", help="Job label.")
@click.option("--manifest", type=click.Path(path_type=Path), help="Per-task declarations.")
@policy_option()
@click.option("--network", help="The pipeline job's VPC network.")
@step_defaults_options()
@click.option(
    "--audit-log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Audit log file (default: $ZT_AUDIT_LOG or ~/.local/state/zt-pipelines/audit.jsonl).",
)
@click.option(
    "--emulator-principal",
    metavar="MEMBER",
    help="With ZT_EMULATOR_HOST: call the emulator as this member (user:..., serviceAccount:...).",
)
@format_option(help="How the verification report is printed.")
def command(
    template: str,
    project: str,
    location: str,
    pipeline_sa: str | None,
    display_name: str | None,
    job_id: str | None,
    snapshot: Path | None,
    pipeline_root: str | None,
    params: tuple[str, ...],
    label_pairs: tuple[str, ...],
    manifest: Path | None,
    policy: Path | None,
    network: str | None,
    step_defaults: Any,
    audit_log: Path | None,
    emulator_principal: str | None,
    fmt: str,
) -> int:
    """Verify TEMPLATE, record the decision, and submit it to Vertex AI Pipelines.

    Exit 0 submitted, 1 refused (nothing was created), 2 bad input.
    """
    from google.cloud import aiplatform

    credentials = None
    if emulator_principal:
        if not os.environ.get("ZT_EMULATOR_HOST"):
            raise InputError(
                "--emulator-principal needs ZT_EMULATOR_HOST",
                where="--emulator-principal",
                fix="start `zt-pipelines emulator` and export ZT_EMULATOR_HOST=HOST:PORT",
            )
        from zt_pipelines.emulator import emulator_credentials

        try:
            credentials = emulator_credentials(emulator_principal)
        except ValueError as exc:
            raise InputError(str(exc), where="--emulator-principal") from exc
    try:  # aiplatform validates region, labels and job id with ValueError
        aiplatform.init(project=project, location=location)
        job = _build_job(
            display_name=display_name or "",
            template_path=template,
            job_id=job_id,
            pipeline_root=pipeline_root,
            parameter_values=parse_parameters(params),
            labels=_labels(label_pairs),
            credentials=credentials,
            project=project,
            location=location,
            manifest=manifest,
            policy=policy,
            snapshot=snapshot,
            audit_log=audit_log,
            step_defaults=step_defaults,
        )
    except ValueError as exc:
        raise InputError(str(exc).split("\n")[0][:300], where="submit arguments") from exc
    job._zt_origin = "cli"
    _aiplatform_logs_to_stderr()
    try:
        with live_progress():  # live IAM reads, on a terminal only
            job.submit(service_account=pipeline_sa, network=network)
    except ZeroTrustViolation as exc:
        click.echo(render_report(exc.report, fmt))
        say(f"zt-pipelines: refused; nothing was submitted ({exc.what})", err=True)
        return 1
    click.echo(render_report(job.last_report, fmt))
    say(f"submitted {job.resource_name} (spec sha256 {job.verified_sha256})", err=True)
    return 0
