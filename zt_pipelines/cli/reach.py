"""``zt-pipelines reach TEMPLATE ...``: what each step's network lets it reach."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from zt_pipelines.cli import parse_parameters
from zt_pipelines.cli.options import (
    EMULATOR_ENVIRONMENT,
    location_option,
    pipeline_sa_option,
    project_option,
    say,
    snapshot_option,
    step_defaults_options,
)


@click.command("reach", epilog=EMULATOR_ENVIRONMENT)
@click.argument("template")
@project_option()
@location_option()
@pipeline_sa_option(required=False)
@snapshot_option(
    required=True, help="Snapshot file with a segmentation section (docs/segmentation.md)."
)
@click.option("--manifest", type=click.Path(path_type=Path), help="Per-task declarations.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@step_defaults_options()
def command(
    template: str,
    project: str,
    location: str,
    pipeline_sa: str | None,
    snapshot: Path,
    manifest: Path | None,
    params: tuple[str, ...],
    fmt: str,
    step_defaults: Any,
) -> None:
    """Show, per step, its network, declared reach and every egress its firewall allows
    (the static evaluation behind ZT520-ZT525). Offline: needs --snapshot."""
    from zt_pipelines.cli.templates import template_source
    from zt_pipelines.policy.requirements import CheckContext
    from zt_pipelines.policy.snapshot_file import load_snapshot
    from zt_pipelines.segmentation.explain import explain_reach, render_reach
    from zt_pipelines.spec import rewrite_pipeline

    world = load_snapshot(snapshot)
    result = rewrite_pipeline(
        template_source(template, project=project),
        parameter_values=parse_parameters(params),
        manifest=manifest,
        project=project,
        location=location,
        pipeline_service_account=pipeline_sa,
        defaults=step_defaults,
    )
    ctx = CheckContext(
        project=project, location=location, pipeline_service_account=pipeline_sa or ""
    )
    rows = explain_reach(result.steps, world, ctx)
    if fmt == "json":
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        say(render_reach(rows))
