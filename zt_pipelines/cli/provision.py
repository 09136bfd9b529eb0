"""``zt-pipelines plan`` and ``zt-pipelines apply``: provision one minimal SA per step.

``plan`` prints what would change (table, JSON, Terraform or a gcloud script) and exits 0;
``apply`` carries the plan out through the official clients (``ZT_EMULATOR_HOST`` points them
at the emulator) after a confirmation (``--yes`` skips it). Without ``--snapshot`` both read
the current state live, so the plan is a real diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zt_pipelines.cli.options import (
    LIVE_ENVIRONMENT,
    live_progress,
    location_option,
    output_option,
    pipeline_sa_option,
    policy_option,
    project_option,
    say,
    snapshot_option,
    step_defaults_options,
)
from zt_pipelines.errors import InputError
from zt_pipelines.policy.wording import shown
from zt_pipelines.provision.model import REVIEW_EXIT_CODE


def _options(fn: Any) -> Any:
    """The options ``plan`` and ``apply`` share."""
    decorators = [
        click.argument("template"),
        project_option(),
        pipeline_sa_option(
            required=False,
            help="The pipeline service account (it launches the steps); default: one derived "
            "from the pipeline's name, created by apply.",
        ),
        location_option(),
        click.option("--pipeline-root", help="gs:// root for artifacts (default: template's)."),
        click.option("--manifest", type=click.Path(path_type=Path), help="Per-task declarations."),
        click.option(
            "--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter."
        ),
        click.option(
            "--roles",
            type=click.Choice(["custom", "predefined"]),
            default="custom",
            show_default=True,
            help="Hash-named custom roles, or the least-excess cover of predefined roles.",
        ),
        click.option(
            "--catalogue",
            type=click.Path(path_type=Path),
            help="Predefined role catalogue (.json/.json.gz) for --roles predefined.",
        ),
        snapshot_option(help="Current state from a snapshot file instead of reading it live."),
        click.option("--empty", is_flag=True, help="Plan against an empty project (no reads)."),
        click.option("--prune", is_flag=True, help="Remove unneeded bindings on step SAs."),
        click.option("--organization", help="Organisation number to hold the custom roles."),
        click.option("--submitter", help="Also grant this principal what submitting needs."),
        click.option(
            "--allow-identity-project",
            "identity_projects",
            multiple=True,
            metavar="PROJECT",
            envvar="ZT_ALLOW_IDENTITY_PROJECT",
            show_envvar=True,
            help="Also provision pipeline identities living in PROJECT (repeatable; the "
            "variable takes a comma- or space-separated list). Identities of any other "
            "project than --project are held back (exit 3).",
        ),
        policy_option(),
        step_defaults_options(),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def _count_identities(count: int) -> str:
    return f"{count} identit{'y' if count == 1 else 'ies'}"


def _make_plan(opts: dict[str, Any]) -> Any:
    from zt_pipelines.cli import parse_parameters
    from zt_pipelines.provision import plan

    if opts["snapshot"] is not None and opts["empty"]:
        raise InputError("--snapshot and --empty exclude each other", where="plan")
    if opts["snapshot"] is not None:
        snapshot: Any = opts["snapshot"]
    elif opts["empty"]:
        snapshot = None
    else:
        snapshot = "live"  # read after the rewrite, with the same parameters and manifest
    from zt_pipelines.cli.templates import template_source

    with live_progress():
        planned = plan(
            template_source(opts["template"], project=opts["project"]),
            project=opts["project"],
            pipeline_service_account=opts["pipeline_sa"],
            location=opts["location"],
            pipeline_root=opts["pipeline_root"],
            parameter_values=parse_parameters(opts["params"]),
            manifest=opts["manifest"],
            roles=opts["roles"],
            snapshot=snapshot,
            prune=opts["prune"],
            organization=opts["organization"],
            catalogue=opts["catalogue"],
            submitter=opts["submitter"],
            step_defaults=opts["step_defaults"],
            identity_projects=[p for v in opts["identity_projects"] for p in v.split(",") if p],
            policy=opts["policy"],
        )
    if planned.foreign_identities:
        named = "; ".join(
            f"{f.email} (project {f.project}; {', '.join(f.steps)})"
            for f in planned.foreign_identities
        )
        projects = " ".join(
            f"--allow-identity-project {p}"
            for p in sorted({f.project for f in planned.foreign_identities})
        )
        say(
            f"zt-pipelines: held back: {_count_identities(len(planned.foreign_identities))} "
            f"of another project than {opts['project']} (whoever administers that project "
            f"can become them): {named}. Nothing is provisioned for them (no account, grant "
            f"or actAs). After review, allow with {projects} (or ZT_ALLOW_IDENTITY_PROJECT, or "
            "identities.allowedProjects in the policy file).",
            err=True,
        )
    if not opts["pipeline_root"] and not any(
        not w.declared and w.resource.name.startswith("//storage.googleapis.com/")
        for w in planned.wants
    ):
        # no --pipeline-root and no defaultPipelineRoot: the steps' artifact grants are not in
        # this plan, and `check --pipeline-root` would then refuse every step (ZT200)
        say(
            "zt-pipelines: note: no pipeline root (no --pipeline-root, and the template has no "
            "defaultPipelineRoot): the steps' artifact grants are not planned; pass the "
            "--pipeline-root you will submit with",
            err=True,
        )
    if not opts["pipeline_sa"]:
        say(
            f"zt-pipelines: note: the pipeline service account is "
            f"{planned.pipeline_service_account} (derived from the pipeline's name); pass "
            f"--pipeline-sa {planned.pipeline_service_account} to check and submit",
            err=True,
        )
    return planned


@click.command("plan", epilog=LIVE_ENVIRONMENT)
@_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "terraform", "gcloud"]),
    default="table",
    show_default=True,
)
@output_option(help="Write the plan here instead of printing it.")
def plan_command(fmt: str, output: Path | None, **opts: Any) -> int:
    """Show the service accounts, roles and bindings TEMPLATE needs, as a diff."""
    from zt_pipelines.provision import render

    result = _make_plan(opts)
    renderer = {
        "json": render.render_json,
        "terraform": render.render_terraform,
        "gcloud": render.render_gcloud,
    }.get(fmt, render.render_table)
    text = renderer(result)
    if renderer is render.render_table:  # text for people; json/terraform/gcloud are data
        text = shown(text)
    if output is not None:
        from zt_pipelines.cli import write_output

        write_output(output, text.rstrip("\n") + "\n")
    else:
        click.echo(text.rstrip("\n"))
    return REVIEW_EXIT_CODE if result.needs_review else 0


@click.command("apply", epilog=LIVE_ENVIRONMENT)
@_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--audit-log",
    type=click.Path(path_type=Path),
    help="Append the audit record to this file (default: $ZT_AUDIT_LOG or "
    "~/.local/state/zt-pipelines/audit.jsonl).",
)
def apply_command(yes: bool, audit_log: Path | None, **opts: Any) -> int:
    """Create the service accounts and roles TEMPLATE needs and write its bindings."""
    from zt_pipelines.provision.apply import apply_plan
    from zt_pipelines.provision.render import render_table

    result = _make_plan(opts)
    say(render_table(result))
    review = REVIEW_EXIT_CODE if result.needs_review else 0
    if result.is_noop:
        return review
    if not yes:
        click.confirm("Apply these changes?", abort=True)
    with live_progress("applying changes"):
        outcome = apply_plan(result, audit_log=audit_log, location=opts["location"])
    say(str(outcome))
    return review


commands = {"plan": plan_command, "apply": apply_command}
