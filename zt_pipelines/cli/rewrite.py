"""``zt-pipelines rewrite TEMPLATE -o OUT``: rewrite every step into a CustomJob with its own SA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zt_pipelines.cli.options import (
    EMULATOR_ENVIRONMENT,
    pipeline_sa_option,
    project_option,
    say,
    step_defaults_options,
)


@click.command("rewrite", epilog=EMULATOR_ENVIRONMENT)
@click.argument("template")
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
@click.option(
    "--input-artifact",
    "artifacts",
    multiple=True,
    metavar="NAME=ID",
    help="A pipeline input artifact the run is given (its Vertex ML Metadata artifact id): the "
    "upstream digest printed for a step pasting it names that artifact, as check's does.",
)
@project_option(required=False, help="Project of derived per-step service accounts.")
@pipeline_sa_option(required=False, help="The pipeline's SA (a step may not run as it).")
@click.option(
    "--naming-template", default=None, help="Derived account ids, e.g. 'zt-{pipeline}-{task}'."
)
@click.option(
    "--pipeline-root",
    default=None,
    help="The gs:// pipeline root Vertex substitutes for {{$.pipeline_root}} (checked).",
)
@step_defaults_options()
def command(
    template: str,
    output: Path,
    manifest: Path | None,
    params: tuple[str, ...],
    artifacts: tuple[str, ...],
    project: str | None,
    pipeline_sa: str | None,
    naming_template: str | None,
    pipeline_root: str | None,
    step_defaults: Any,
) -> None:
    """Rewrite TEMPLATE so every container step runs as its own service account."""
    from zt_pipelines import loaders
    from zt_pipelines.cli import (
        parse_input_artifacts,
        parse_parameters,
        require_writable,
        write_output,
    )
    from zt_pipelines.cli.templates import template_source
    from zt_pipelines.errors import TemplateError
    from zt_pipelines.policy.wording import plural
    from zt_pipelines.spec import DEFAULT_NAME_TEMPLATE, dump_template, rewrite_pipeline
    from zt_pipelines.spec.template import parse_template_documents

    require_writable(output)  # before the rewrite: a typo in -o should not cost the work
    source = template_source(template, project=project)
    if isinstance(source, Path):  # read once: the document written out is the one rewritten
        text = loaders.read_text(source, kind="template", error=TemplateError)
        first, rest = parse_template_documents(text, where=str(source))
        source = (first, tuple(rest))
    values = parse_parameters(params)
    result = rewrite_pipeline(
        source,
        parameter_values=values,
        manifest=manifest,
        project=project,
        pipeline_service_account=pipeline_sa,
        naming_template=naming_template or DEFAULT_NAME_TEMPLATE,
        pipeline_root=pipeline_root,
        defaults=step_defaults,
        input_artifacts=parse_input_artifacts(artifacts),
    )
    # a PipelineJob template keeps its runtimeConfig: the values check judged are the ones run
    job = _job_as_judged(source[0], values, pipeline_root)
    if not (isinstance(job, dict) and "pipelineSpec" in job):  # a spec: its defaults carry them
        result = _spec_as_judged(result, values, pipeline_root)
    elif pipeline_root:  # aiplatform takes the spec's defaultPipelineRoot before gcsOutputDirectory
        result = _spec_as_judged(result, None, pipeline_root)
    text = dump_template(result, job=job)
    _refuse_credentials(text, result.spec)
    write_output(output, text)
    for step in result.steps:
        say(f"{step.task}\t{step.service_account}\t{step.source}{_jobs(step)}")
        if step.unescaped_payload_inputs:
            # not refused here (a rewrite decides nothing); `check` and submit refuse it (ZT102)
            origins = dict(step.payload_input_origins)
            names = ", ".join(
                f"{n!r} ({origins[n]})" if n in origins else repr(n)
                for n in step.unescaped_payload_inputs
            )
            say(
                f"warning: task {step.task!r} pastes {names} unescaped into its CustomJob "
                "payload; check and submit refuse this (ZT102"
                + (f", upstream {step.upstream_digest})" if step.upstream_digest else ")"),
                err=True,
            )
        if step.job_defaults_unreached:
            say(
                f"note: the step defaults {', '.join(step.job_defaults_unreached)} do not reach "
                f"task {step.task!r}: its {step.job_kind} job takes no such field from its "
                "component",
                err=True,
            )
    say(f"wrote {output} ({plural(len(result.steps), 'step')})", err=True)


def _jobs(step: Any) -> str:
    """Extra tab-separated columns: the GCPC job kind and the identities of launched jobs."""
    out = ""
    if (step.job_kind and step.job_kind != "CustomJob") or step.wrapped_launcher:
        how = "wrapped in a CustomJob" if step.wrapped_launcher else "launched"
        out += f"\t{step.job_kind} ({how})"
    if step.launched_service_account and (
        step.launched_identity_field.startswith("input") or step.job_kind != "CustomJob"
    ):
        out += f"\tjob runs as {step.launched_service_account} [{step.launched_identity_field}]"
    if step.serving_service_account:
        out += f"\tserves as {step.serving_service_account}"
    return out


def _refuse_credentials(text: str, spec: Any) -> None:
    """A key or a token in the spec is not written out (ZT410: it would act as whoever it
    belongs to, and leak to every reader of the job)."""
    import json

    from zt_pipelines.credentials import credential_kinds, credential_paths, may_hold_credentials
    from zt_pipelines.errors import TemplateError

    in_text = credential_kinds(text)
    if not in_text and not may_hold_credentials(json.dumps(spec, ensure_ascii=False)):
        return
    found = credential_paths(spec) or [("the template", k) for k in in_text]
    if not found:
        return
    path, kind = found[0]
    raise TemplateError(
        f"the pipeline holds {kind} at {path} (not shown); not written (ZT410)",
        where="template",
        fix="remove the credential from the component; give the step an identity that holds "
        "the access, and read secrets from Secret Manager at run time",
    )


def _job_as_judged(job: Any, values: dict[str, Any] | None, pipeline_root: str | None) -> Any:
    """A PipelineJob document with the --param values and --pipeline-root the rewrite judged
    written into its runtimeConfig: the file carries exactly what was checked (plain
    aiplatform would otherwise run the file's own values)."""
    from zt_pipelines.errors import TemplateError

    if not isinstance(job, dict) or "pipelineSpec" not in job or not (values or pipeline_root):
        return job
    runtime = dict(job.get("runtimeConfig") or {})
    if values:
        if "parameters" in runtime and "parameterValues" not in runtime:
            raise TemplateError(
                "--param cannot be merged into this PipelineJob file's typed runtimeConfig "
                "(schema 2.0 'parameters')",
                where="runtimeConfig.parameters",
                fix="write the values into the file, or rewrite the pipeline spec itself",
            )
        runtime["parameterValues"] = {**(runtime.get("parameterValues") or {}), **values}
    if pipeline_root:
        runtime["gcsOutputDirectory"] = pipeline_root
    return {**job, "runtimeConfig": runtime}


def _spec_as_judged(result: Any, values: dict[str, Any] | None, pipeline_root: str | None) -> Any:
    """A pipeline spec whose parameter defaults and default root are the --param values and
    --pipeline-root the rewrite judged: submitted without values (plain aiplatform), it runs
    exactly what was checked, never a default nobody judged."""
    import copy
    import dataclasses

    if not (values or pipeline_root):
        return result
    spec = copy.deepcopy(result.spec)
    declared = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    for name, value in (values or {}).items():
        if isinstance(declared.get(name), dict):
            declared[name]["defaultValue"] = value
    if pipeline_root:
        spec["defaultPipelineRoot"] = pipeline_root
    return dataclasses.replace(result, spec=spec)
