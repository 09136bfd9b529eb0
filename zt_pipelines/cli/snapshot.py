"""``zt-pipelines snapshot``: write the live IAM state a check needs to a snapshot file.

The file is exactly what a later ``zt-pipelines check --snapshot FILE`` reads, so a check can
run offline (CI without cloud credentials) on the state captured here.
"""

from __future__ import annotations

import json
from typing import Any

import click

from zt_pipelines.cli import parse_parameters, require_writable, write_output
from zt_pipelines.cli.options import (
    LIVE_ENVIRONMENT,
    live_progress,
    location_option,
    pipeline_sa_option,
    project_option,
    say,
    step_defaults_options,
)
from zt_pipelines.errors import InputError
from zt_pipelines.resources import normalize_resource


def _needs(
    templates: tuple[str, ...],
    manifest: str | None,
    project: str,
    location: str,
    pipeline_sa: str | None,
    pipeline_root: str | None,
    parameter_values: dict[str, Any] | None = None,
    step_defaults: Any = None,
) -> tuple[set[str], set[str], set[str], set[str], set[str]]:
    """(resources, service accounts, principals, projects, persistent resources) the
    templates' check needs."""
    persistent: set[str] = set()
    resources: set[str] = set()
    accounts: set[str] = set()
    principals: set[str] = set()
    projects: set[str] = {project}
    if not templates:
        if pipeline_sa:
            accounts.add(pipeline_sa.lower())
        return resources, accounts, principals, projects, persistent
    if not pipeline_sa:
        raise InputError(
            "--pipeline-sa is required with --template",
            where="snapshot",
            fix="name the pipeline service account the job will run as",
        )
    from zt_pipelines.cli.templates import template_source
    from zt_pipelines.policy.requirements import (
        derive_requirements,
        needed_nodes,
        pipeline_root_of,
    )
    from zt_pipelines.spec import rewrite_pipeline

    for template in templates:
        result = rewrite_pipeline(
            template_source(template, project=project),
            parameter_values=parameter_values,
            manifest=manifest,
            project=project,
            location=location,
            pipeline_service_account=pipeline_sa,
            defaults=step_defaults,
        )
        requirements = derive_requirements(
            result,
            project=project,
            location=location,
            pipeline_service_account=pipeline_sa,
            pipeline_root=pipeline_root_of(result, pipeline_root),  # as check() will
            submitter=None,
        )
        needs = needed_nodes(
            requirements,
            steps=result.steps,
            pipeline_service_account=pipeline_sa,
            project=project,
            location=location,
        )
        persistent |= set(needs.persistent_resources)
        resources |= set(needs.resources)
        accounts |= set(needs.service_accounts)
        principals |= set(needs.principals)
        projects |= set(needs.projects)
    return resources, accounts, principals, projects, persistent


@click.command("snapshot", epilog=LIVE_ENVIRONMENT)
@project_option()
@location_option()
@click.option("--template", "templates", multiple=True, help="Compiled pipeline (repeatable).")
@click.option("--resource", "resources", multiple=True, help="Extra resource URI (repeatable).")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Per-task declarations.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter.")
@pipeline_sa_option(required=False, help="Pipeline service account email.")
@click.option("--pipeline-root", help="gs:// pipeline root (adds its bucket).")
@click.option("--service-account", "accounts", multiple=True, help="Extra SA email.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Role cache directory.")
@click.option("--no-cache", is_flag=True, help="Read everything fresh; write no cache.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="File.")
@step_defaults_options()
def command(
    project: str,
    location: str,
    templates: tuple[str, ...],
    resources: tuple[str, ...],
    manifest: str | None,
    params: tuple[str, ...],
    pipeline_sa: str | None,
    pipeline_root: str | None,
    accounts: tuple[str, ...],
    cache_dir: str | None,
    no_cache: bool,
    output: str,
    step_defaults: Any,
) -> int:
    """Read live IAM state (or the emulator's, with ZT_EMULATOR_HOST) into a snapshot file."""
    from zt_pipelines.gcp import fetch_snapshot
    from zt_pipelines.policy.snapshot_file import dump_snapshot, seal
    from zt_pipelines.policy.wording import plural

    require_writable(output)
    normalize_resource(f"projects/{project}", where="--project")  # a valid project id
    names, emails, principals, projects, persistent = _needs(
        templates,
        manifest,
        project,
        location,
        pipeline_sa,
        pipeline_root,
        parse_parameters(params) or None,
        step_defaults,
    )
    for uri in resources:
        names.add(normalize_resource(uri, where="--resource").name)
    if pipeline_root:
        names.add(normalize_resource(pipeline_root, where="--pipeline-root").name)
    emails |= {a.lower() for a in accounts}
    with live_progress():
        snap = fetch_snapshot(
            resources=sorted(names),
            service_accounts=sorted(emails),
            principals=sorted(principals),
            projects=sorted(projects),
            cache_dir=cache_dir,
            use_cache=not no_cache,
            persistent_resources=sorted(persistent),
        )
    data = seal(dump_snapshot(snap))  # every section present; the digest `check` verifies
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if output.endswith((".yaml", ".yml")):
        from zt_pipelines.loaders import dump_yaml

        text = dump_yaml([data])
    write_output(output, text)
    say(
        f"wrote {output}: {plural(len(snap.nodes), 'node')}, {plural(len(snap.roles), 'role')}, "
        f"{plural(len(snap.service_accounts), 'service account')}, "
        f"{len(snap.unreadable)} unreadable",
        err=True,
    )
    return 0
