"""``zt-pipelines precommit-check FILE...``: the pre-commit hook (``.pre-commit-hooks.yaml``).

Runs ``check`` on every compiled KFP template among FILES against a snapshot, and skips any
other YAML/JSON file (pre-commit hands the hook every file its ``files:`` pattern matches).
Exit 0 when every template is allowed, 1 when any is refused, 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from zt_pipelines.cli.check import _parameters


def _is_template(path: Path) -> bool:
    """A compiled KFP pipeline (PipelineSpec or PipelineJob) in its first document."""
    try:
        with path.open(encoding="utf-8") as fh:
            first = next(yaml.safe_load_all(fh), None)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if isinstance(first, dict) and isinstance(first.get("pipelineSpec"), dict):
        first = first["pipelineSpec"]
    return isinstance(first, dict) and "pipelineInfo" in first and "root" in first


@click.command("precommit-check")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--project", required=True, help="Project the pipelines run in.")
@click.option("--location", required=True, help="Region, e.g. us-central1.")
@click.option("--pipeline-sa", "pipeline_sa", required=True, help="The pipeline service account.")
@click.option(
    "--snapshot",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="IAM snapshot file the templates are checked against (offline, no credentials).",
)
@click.option("--pipeline-root", help="gs://bucket/prefix for pipeline artifacts.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter.")
@click.option("--policy", type=click.Path(path_type=Path), help="zt-policy.yaml or pyproject.toml.")
@click.option("--submitter", help="Submitting principal, e.g. serviceAccount:ci@...")
def command(
    files: tuple[Path, ...],
    project: str,
    location: str,
    pipeline_sa: str,
    snapshot: Path,
    pipeline_root: str | None,
    params: tuple[str, ...],
    policy: Path | None,
    submitter: str | None,
) -> int:
    """Check every compiled template among FILES against --snapshot (other files are skipped)."""
    from zt_pipelines.check import check
    from zt_pipelines.policy.snapshot_file import load_snapshot

    world = load_snapshot(snapshot)  # once for all files
    worst = 0
    for path in files:
        if not _is_template(path):
            continue
        report = check(
            path,
            project=project,
            location=location,
            pipeline_service_account=pipeline_sa,
            pipeline_root=pipeline_root,
            parameter_values=_parameters(params),
            policy=policy,
            snapshot=world,
            submitter=submitter,
        )
        if report.allowed:
            click.echo(f"{path}: allowed ({len(report.findings)} warning(s)/note(s))")
        else:
            click.echo(f"{path}:\n{report}\n")
            worst = max(worst, 1)
    return worst
