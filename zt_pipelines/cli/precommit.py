"""``zt-pipelines precommit-check FILE...``: the pre-commit hook (``.pre-commit-hooks.yaml``).

Runs ``check`` on every compiled KFP template among FILES against a snapshot, and skips any
other YAML/JSON file (pre-commit hands the hook every file its ``files:`` pattern matches).
Exit 0 when every template is allowed, 1 when any is refused, 2 on bad input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from zt_pipelines.cli import parse_parameters
from zt_pipelines.cli.check import format_option
from zt_pipelines.cli.options import (
    location_option,
    pipeline_sa_option,
    policy_option,
    project_option,
    say,
    snapshot_option,
)


def _is_template(path: Path) -> bool:
    """A compiled KFP pipeline (PipelineSpec or PipelineJob) in its first document.

    A file that names ``pipelineInfo`` but cannot be loaded (too large, malformed, refused
    YAML) counts as a template, so ``check`` reports it instead of skipping it silently.
    """
    from zt_pipelines import loaders
    from zt_pipelines.errors import InputError, TemplateError

    try:
        raw = loaders.read_bytes(path, kind="template", error=TemplateError)
    except InputError as exc:
        return "larger than" in exc.what or "decompresses" in exc.what
    try:
        documents = loaders.parse_text(
            loaders.decode(raw, where=str(path), error=TemplateError),
            where=str(path),
            kind="template",
            error=TemplateError,
        )
    except InputError:
        # the strict loader refuses it; aiplatform's lax reader (PyYAML) may still read a
        # pipeline (an escaped key, a duplicate key, an alias...): then `check` must refuse it
        return _laxly_a_pipeline(raw) or any(key in raw for key in _PIPELINE_KEYS)
    first = next((d for d in documents if d is not None), None)
    if isinstance(first, dict) and isinstance(first.get("pipelineSpec"), dict):
        first = first["pipelineSpec"]
    return isinstance(first, dict) and "pipelineInfo" in first and "root" in first


_PIPELINE_KEYS = (b"pipelineInfo", b"pipelineSpec", b"deploymentSpec")


def _laxly_a_pipeline(raw: bytes) -> bool:
    """Whether a lax reader — PyYAML's ``safe_load`` as aiplatform uses it, or ``json`` —
    reads ``raw`` as something with a pipeline's keys (only to classify: never to check)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def first_yaml() -> Any:
        return next(iter(yaml.load_all(raw, Loader=loader)), None)  # bytes: BOMs honoured

    def first_json() -> Any:
        return json.loads(raw)  # bytes: UTF-8/16/32 detected, as json does

    readers: tuple[Callable[[], Any], ...] = (first_yaml, first_json)
    for read in readers:
        try:
            first = read()
        except Exception:
            continue
        if isinstance(first, dict) and isinstance(first.get("pipelineSpec"), dict):
            first = first["pipelineSpec"]
        if isinstance(first, dict) and ({"pipelineInfo", "root", "deploymentSpec"} & set(first)):
            return True
    return False


@click.command("precommit-check")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@project_option(help="Project the pipelines run in.")
@location_option()
@pipeline_sa_option()
@snapshot_option(
    required=True,
    exists=True,
    help="IAM snapshot file the templates are checked against (offline, no credentials).",
)
@click.option("--pipeline-root", help="gs://bucket/prefix for pipeline artifacts.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter.")
@policy_option()
@click.option("--submitter", help="Submitting principal, e.g. serviceAccount:ci@...")
@format_option(help="json: {file: report}; sarif: one SARIF log with a run per template.")
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
    fmt: str,
) -> int:
    """Check every compiled template among FILES against --snapshot (other files are skipped)."""
    from zt_pipelines.policy.snapshot_file import load_snapshot
    from zt_pipelines.verification import check

    world = load_snapshot(snapshot)  # once for all files
    worst = 0
    reports: dict[str, Any] = {}
    for path in files:
        if not _is_template(path):
            continue
        report = check(
            path,
            project=project,
            location=location,
            pipeline_service_account=pipeline_sa,
            pipeline_root=pipeline_root,
            parameter_values=parse_parameters(params),
            policy=policy,
            snapshot=world,
            submitter=submitter,
        )
        reports[str(path)] = report
        worst = max(worst, 0 if report.allowed else 1)
        if fmt != "text":
            continue
        if report.allowed:
            n = len(report.findings)
            say(f"{path}: allowed ({n} finding{'' if n == 1 else 's'}, none an error)")
        else:
            say(f"{path}:\n{report}\n")
    if fmt == "json":
        click.echo(json.dumps({p: r.to_dict() for p, r in reports.items()}, indent=2))
    elif fmt == "sarif":
        logs = [r.to_sarif() for r in reports.values()]
        runs = [run for log in logs for run in log["runs"]]
        sarif = {**logs[0], "runs": runs} if logs else {"version": "2.1.0", "runs": []}
        click.echo(json.dumps(sarif, indent=2))
    return worst
