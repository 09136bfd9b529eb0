"""``zt-pipelines rewrite TEMPLATE -o OUT``: rewrite every step into a CustomJob with its own SA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zt_pipelines.errors import InputError


def _parameters(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON (number, bool, list...) is typed."""
    import json

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(
                f"--param {pair!r} is not KEY=VALUE", where="--param", fix="e.g. --param sa=x"
            )
        if key in values:
            raise InputError(f"--param {key!r} is given twice", where="--param")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


@click.command("rewrite")
@click.argument("template", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to write the rewritten YAML.",
)
@click.option(
    "--manifest", type=click.Path(path_type=Path), help="Manifest of per-task declarations."
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A pipeline parameter value (repeatable).",
)
@click.option("--project", help="Project of derived per-step service accounts.")
@click.option("--pipeline-service-account", help="The pipeline's SA (a step may not run as it).")
@click.option(
    "--naming-template", default=None, help="Derived account ids, e.g. 'zt-{pipeline}-{task}'."
)
def command(
    template: Path,
    output: Path,
    manifest: Path | None,
    params: tuple[str, ...],
    project: str | None,
    pipeline_service_account: str | None,
    naming_template: str | None,
) -> None:
    """Rewrite TEMPLATE so every container step runs as its own service account."""
    from zt_pipelines.spec import DEFAULT_NAME_TEMPLATE, dump_template, rewrite_pipeline

    result = rewrite_pipeline(
        template,
        parameter_values=_parameters(params),
        manifest=manifest,
        project=project,
        pipeline_service_account=pipeline_service_account,
        naming_template=naming_template or DEFAULT_NAME_TEMPLATE,
    )
    text = dump_template(result)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the output ({exc})", where=str(output)) from exc
    for step in result.steps:
        click.echo(f"{step.task}\t{step.service_account}\t{step.source}")
    click.echo(f"wrote {output} ({len(result.steps)} steps)", err=True)
