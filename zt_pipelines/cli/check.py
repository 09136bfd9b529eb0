"""``zt-pipelines check TEMPLATE ...``: verify every identity of a pipeline; exit 0/1/2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from zt_pipelines.cli import (
    parse_input_artifacts,
    parse_parameters,
    require_writable,
    write_output,
)
from zt_pipelines.cli.options import (
    LIVE_ENVIRONMENT,
    live_progress,
    location_option,
    output_option,
    pipeline_sa_option,
    policy_option,
    project_option,
    snapshot_option,
    step_defaults_options,
)
from zt_pipelines.errors import InputError
from zt_pipelines.policy.wording import shown

_F = TypeVar("_F", bound=Callable[..., Any])


def format_option(help: str | None = None) -> Callable[[_F], _F]:
    """The ``--format text|json|sarif`` option every report-printing command takes."""
    option: Callable[[_F], _F] = click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json", "sarif"]),
        default="text",
        show_default=True,
        help=help,
    )
    return option


def render_report(report: Any, fmt: str, *, to_file: bool = False) -> str:
    """One report as ``check``, ``submit`` (and friends) print it in ``fmt``.

    Text on a terminal is coloured and fitted to its width; anywhere else (a pipe, a file,
    CI logs) it is plain text, 100 columns wide.
    """
    if fmt == "json":
        return str(report.to_json())
    if fmt == "sarif":
        return json.dumps(report.to_sarif(), indent=2)
    if not to_file and sys.stdout.isatty():
        import shutil

        from zt_pipelines.policy.render import render_text

        return render_text(report, width=shutil.get_terminal_size().columns, color=True)
    return str(report)


@click.command("check", epilog=LIVE_ENVIRONMENT)
@click.argument("template")
@project_option()
@location_option()
@pipeline_sa_option()
@snapshot_option()
@click.option("--pipeline-root", help="gs://bucket/prefix for pipeline artifacts.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter.")
@click.option(
    "--input-artifact",
    "artifacts",
    multiple=True,
    metavar="NAME=ID",
    help="A pipeline input artifact the run is given (its Vertex ML Metadata artifact id), as "
    "PipelineJob(input_artifacts=...) passes it; a step pasting it is waived for that artifact.",
)
@click.option("--manifest", type=click.Path(path_type=Path), help="Per-task declarations.")
@policy_option()
@click.option("--roles", type=click.Path(path_type=Path), help="Predefined-role catalogue file.")
@click.option("--submitter", help="Submitting principal, e.g. user:alice@example.com.")
@click.option(
    "--submitter-credentials",
    help="the kind of credentials the submitter uses: user, service_account_key, "
    "impersonated, metadata or external_account (for the policy's submitter rules)",
)
@click.option("--network", help="The pipeline job's network.")
@step_defaults_options()
@click.option(
    "--now",
    "now_text",
    help="Evaluate at this ISO 8601 time instead of the clock: a what-if — more than five "
    "minutes from the machine's clock the report refuses (ZT405), unless ZT_TEST_CLOCK=1 "
    "(test suites only).",
)
@click.option(
    "--holds-until",
    "holds_until",
    metavar="WHEN",
    help="Until when the grants must hold: a run's timeout (12h, 3d), a run's or schedule's "
    "end (ISO 8601), or 'forever' (an open-ended schedule). Default: 7 days from the check. "
    "A grant that expires before is ZT223.",
)
@format_option()
@output_option(help="Write the report here.")
@click.option(
    "--explain",
    is_flag=True,
    help="Text format: also list every grant and its binding, and every reach path hop by hop.",
)
@click.option(
    "--print-waivers",
    is_flag=True,
    help="Print, instead of the report, the ZT102 suppressions (step + upstream digest) a "
    "reviewer would paste into the policy file; they load only once the justification and "
    "expiry are filled in. The exit code is the check's.",
)
def command(
    template: str,
    project: str,
    location: str,
    pipeline_sa: str,
    snapshot: Path | None,
    pipeline_root: str | None,
    params: tuple[str, ...],
    artifacts: tuple[str, ...],
    manifest: Path | None,
    policy: Path | None,
    roles: Path | None,
    submitter: str | None,
    submitter_credentials: str | None,
    network: str | None,
    step_defaults: Any,
    now_text: str | None,
    holds_until: str | None,
    fmt: str,
    output: Path | None,
    explain: bool,
    print_waivers: bool,
) -> int:
    """Verify TEMPLATE: exit 0 when allowed, 1 when refused, 2 on bad input."""
    from datetime import datetime, timezone

    from zt_pipelines.cli.templates import template_location
    from zt_pipelines.policy.conditions import parse_rfc3339
    from zt_pipelines.verification import check

    if output is not None:
        require_writable(output)
    now = None
    if now_text:
        try:
            now = parse_rfc3339(now_text)
        except ValueError:
            raise InputError(f"--now {now_text!r} is not an ISO 8601 time", where="--now") from None
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
    window = None
    if holds_until:
        from zt_pipelines.policy.timewindow import parse_window

        try:
            window = parse_window(holds_until, now or datetime.now(timezone.utc))
        except ValueError as exc:
            raise InputError(str(exc), where="--holds-until") from None
    with live_progress():
        report = check(
            template_location(template),
            project=project,
            location=location,
            pipeline_service_account=pipeline_sa,
            pipeline_root=pipeline_root,
            parameter_values=parse_parameters(params),
            manifest=manifest,
            policy=policy,
            snapshot=snapshot,
            submitter=submitter,
            submitter_credentials=submitter_credentials,
            network=network,
            roles=roles,
            now=now,
            step_defaults=step_defaults,
            run_window=window,
            input_artifacts=parse_input_artifacts(artifacts),
        )
    if print_waivers:
        from zt_pipelines.policy.waivers import waivers_yaml

        text = waivers_yaml(report).rstrip("\n")
    else:
        text = render_report(report, fmt, to_file=output is not None)
    if fmt == "text" and explain and report.granted and not print_waivers:
        text += "\n\ngranted:\n" + shown(report.explain())
    if fmt == "text" and explain and not print_waivers:
        from zt_pipelines.policy.reach import explain_reach

        paths = explain_reach(report.findings)
        if paths:
            text += "\n\nwho can become whom (path per hop):\n" + shown(paths)
    if output is not None:
        write_output(output, text + "\n")
    else:
        click.echo(text)
    return 0 if report.allowed else 1
