"""Provisioning: give every step its own minimal service account — plan, apply, Terraform.

::

    import zt_pipelines as zt

    plan = zt.plan("pipeline.yaml", project="proj",
                   pipeline_service_account="pipeline@proj.iam.gserviceaccount.com",
                   snapshot="snapshot.yaml")
    print(zt.provision.render_table(plan))  # accounts, roles and bindings (+ add, - remove)
    zt.provision.render_terraform(plan)     # HCL for the google provider
    zt.provision.render_gcloud(plan)        # a bash script
    zt.provision.apply_plan(plan)           # official clients (or ZT_EMULATOR_HOST)

A plan is data (:mod:`.model`) that :mod:`.render` and :mod:`.apply` consume; none of them
depends back on its consumers. Modules: :mod:`.plan` (the pure diff), :mod:`.requirements`
(who needs what), :mod:`.cover` (predefined-role set cover), :mod:`.custom_roles` (hash-named
roles), :mod:`.render` (outputs), :mod:`.apply` (IO). See docs/provisioning.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from zt_pipelines.errors import ApiError, InputError
from zt_pipelines.identity import classify_identity
from zt_pipelines.model import JobFields, RewriteResult
from zt_pipelines.policy.orgpolicy import OrgPolicy
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.provision.cover import Cover, CoverError, find_cover
from zt_pipelines.provision.custom_roles import CustomRole, custom_role_for, role_id_for
from zt_pipelines.provision.plan import (
    AccountSpec,
    Grant,
    Plan,
    ProvisioningRefused,
    RoleMode,
    RoleSpec,
    UnsupportedResourceError,
    Want,
    build_plan,
    check_plan,
    check_submitter,
)
from zt_pipelines.provision.render import (
    render_gcloud,
    render_json,
    render_table,
    render_terraform,
)
from zt_pipelines.provision.requirements import wants_for

_log = logging.getLogger("zt_pipelines.provision")

__all__ = [
    "AccountSpec",
    "Cover",
    "CoverError",
    "CustomRole",
    "Grant",
    "Plan",
    "ProvisioningRefused",
    "RoleSpec",
    "UnsupportedResourceError",
    "Want",
    "allowed_identity_projects",
    "apply_plan",
    "build_plan",
    "check_plan",
    "check_submitter",
    "custom_role_for",
    "find_cover",
    "load_catalogue",
    "plan",
    "render_gcloud",
    "render_json",
    "render_table",
    "render_terraform",
    "role_id_for",
    "wants_for",
]


def plan(
    template: str | PathLike[str] | dict[str, Any] | RewriteResult,
    *,
    project: str,
    pipeline_service_account: str | None = None,
    location: str = "us-central1",
    pipeline_root: str | None = None,
    parameter_values: Mapping[str, Any] | None = None,
    manifest: str | PathLike[str] | Mapping[str, Any] | None = None,
    roles: RoleMode = "custom",
    snapshot: str | PathLike[str] | Snapshot | None = None,
    prune: bool = False,
    organization: str | None = None,
    catalogue: str | PathLike[str] | Mapping[str, Any] | None = None,
    submitter: str | None = None,
    step_defaults: JobFields | Mapping[str, Any] | None = None,
    identity_projects: Sequence[str] | None = None,
    policy: str | PathLike[str] | Mapping[str, Any] | OrgPolicy | None = None,
) -> Plan:
    """Plan the service accounts, roles and bindings a pipeline needs.

    Args:
        template: a compiled pipeline (path or IR dict), or an already rewritten
            :class:`~zt_pipelines.model.RewriteResult`.
        project: the project the pipeline runs in (custom roles are created here).
        pipeline_service_account: the pipeline identity (it launches the steps). ``None``:
            a dedicated one is derived from the pipeline's name (``zt-NAME-pipeline-HASH``,
            created by ``apply``), so two pipelines never share a pipeline identity.
        location: the Vertex region.
        pipeline_root: ``gs://`` root for artifacts (default: the template's).
        parameter_values: pipeline parameters (identities bound to parameters).
        manifest: a manifest file for templates compiled elsewhere.
        roles: ``custom`` (default; one hash-named custom role per permission set) or
            ``predefined`` (smallest-excess cover from the predefined catalogue).
        snapshot: the current state (path or loaded); ``"live"`` reads it through the
            official clients (or ``$ZT_EMULATOR_HOST``); ``None`` plans against an empty
            project.
        prune: also remove bindings on the step identities that the plan does not need.
        organization: organisation number to hold the custom roles instead of the project.
        catalogue: predefined role catalogue (path to ``.json``/``.json.gz`` or a mapping)
            for ``predefined`` mode when the snapshot has no role definitions.
        submitter: also grant this principal what submitting needs (actAs on the pipeline SA,
            ``aiplatform.pipelineJobs.create``).
        step_defaults: CustomJob fields for every step that does not set its own (a
            :class:`~zt_pipelines.model.JobFields` or a mapping of its fields).
        identity_projects: projects besides ``project`` whose service accounts may be
            pipeline identities (``None``: ``$ZT_ALLOW_IDENTITY_PROJECT``, comma- or
            space-separated). Identities of any other project are held back whole
            (``Plan.foreign_identities``, exit code 3 in the CLI): whoever administers
            their project can become them.
        policy: the organisation policy file (``None``: ``$ZT_POLICY``, else the strict
            defaults); its ``identities.allowedProjects`` extends ``identity_projects``.

    Raises:
        InputError: bad template, manifest, snapshot or arguments.
        ProvisioningRefused: a need would require a forbidden grant.
    """
    if submitter is not None:
        submitter = check_submitter(submitter)
    result = _rewrite(
        template,
        project=project,
        location=location,
        pipeline_service_account=pipeline_service_account,
        parameter_values=parameter_values,
        manifest=manifest,
        step_defaults=step_defaults,
    )
    if pipeline_service_account is None:
        # one pipeline SA per pipeline: derived from its name, never shared with another
        from zt_pipelines.identity import derive_account_id, service_account_email
        from zt_pipelines.provision.model import PIPELINE_STEP

        pipeline_service_account = service_account_email(
            derive_account_id(result.pipeline_name or "pipeline", PIPELINE_STEP), project
        )
    support: dict[str, str] | None = None
    support_source = ""
    if snapshot == "live":
        from zt_pipelines.provision.live import read_state, read_support

        state: Snapshot | None = read_state(
            result,
            project=project,
            pipeline_service_account=pipeline_service_account,
            location=location,
            pipeline_root=pipeline_root,
            submitter=submitter,
        )
        if roles == "custom":
            parent = f"organizations/{organization}" if organization else f"projects/{project}"
            try:  # what IAM itself says a custom role there may hold
                support = read_support(parent)
                support_source = f"live: {parent}"
            except ApiError as exc:  # the catalogue's levels, and apply re-reads before writing
                _log.warning("custom-role support levels of %s not read live: %s", parent, exc)
    else:
        state = _snapshot(snapshot)
    wants = wants_for(
        result,
        project=project,
        location=location,
        pipeline_service_account=pipeline_service_account,
        pipeline_root=pipeline_root,
        submitter=submitter,
    )
    step_accounts: dict[str, list[str]] = {}
    for step in result.steps:
        if step.service_account is not None:
            step_accounts.setdefault(step.service_account, []).append(step.task)
        # identities a GCPC step's job runs or serves as are the pipeline's to create too
        for email, role in (
            (step.launched_service_account, "job"),
            (step.serving_service_account, "serving"),
        ):
            if email and email != step.service_account and not classify_identity(email).is_default:
                step_accounts.setdefault(email, []).append(f"{step.task} ({role})")
    planned = build_plan(
        wants,
        project=project,
        pipeline_service_account=pipeline_service_account,
        pipeline_name=result.pipeline_name,
        step_accounts=step_accounts,
        roles=roles,
        snapshot=state,
        prune=prune,
        organization=organization,
        catalogue=load_catalogue(catalogue) if catalogue is not None else None,
        support_levels=support,
        support_source=support_source,
        identity_projects=allowed_identity_projects(identity_projects, policy),
    )
    return _with_segmentation(
        planned, result, state, project=project, location=location, pipeline_root=pipeline_root
    )


def allowed_identity_projects(
    projects: Sequence[str] | None,
    policy: str | PathLike[str] | Mapping[str, Any] | OrgPolicy | None = None,
) -> tuple[str, ...]:
    """The projects besides the pipeline's whose identities may be provisioned: ``projects``
    (``None``: ``$ZT_ALLOW_IDENTITY_PROJECT``, comma- or space-separated) plus the policy
    file's ``identities.allowedProjects`` (``policy``, else ``$ZT_POLICY``; the organisation's
    file when ``ZT_POLICY_BINDING`` makes it binding).

    Raises:
        PolicyFileError: the policy file is unreadable or invalid, or not the organisation's
            binding one.
    """
    from zt_pipelines.authority import resolve_policy

    if projects is None:
        projects = os.environ.get("ZT_ALLOW_IDENTITY_PROJECT", "").replace(",", " ").split()
    elif isinstance(projects, str):
        projects = projects.replace(",", " ").split()
    if isinstance(policy, Mapping):
        policy = dict(policy)
    elif isinstance(policy, PathLike):
        policy = Path(policy)
    loaded = resolve_policy(policy)  # the organisation's file when it is binding
    return tuple(dict.fromkeys((*projects, *loaded.allowed_identity_projects)))


def _with_segmentation(
    planned: Plan,
    result: RewriteResult,
    state: Snapshot | None,
    *,
    project: str,
    location: str,
    pipeline_root: str | None,
) -> Plan:
    """The plan with the missing segmentation pieces, when the state holds segmentation."""
    if state is None or state.segmentation is None:
        return planned
    from dataclasses import replace

    from zt_pipelines.policy.requirements import derive_requirements, pipeline_root_of
    from zt_pipelines.segmentation.plan import plan_segmentation

    requirements = derive_requirements(
        result,
        project=project,
        location=location,
        pipeline_service_account=planned.pipeline_service_account,
        pipeline_root=pipeline_root_of(result, pipeline_root),
        submitter=None,
    )
    seg = plan_segmentation(requirements, result.steps, state, project=project)
    return replace(planned, segmentation=seg)


def _rewrite(
    template: str | PathLike[str] | dict[str, Any] | RewriteResult,
    *,
    project: str,
    location: str,
    pipeline_service_account: str | None,
    parameter_values: Mapping[str, Any] | None,
    manifest: str | PathLike[str] | Mapping[str, Any] | None,
    step_defaults: JobFields | Mapping[str, Any] | None,
) -> RewriteResult:
    from zt_pipelines.declare import resolve_step_defaults

    defaults = resolve_step_defaults(step_defaults)
    if isinstance(template, RewriteResult):
        if parameter_values or manifest is not None or defaults is not None:
            raise InputError(
                "parameter_values, manifest and step_defaults apply to the rewrite, and this "
                "pipeline is already rewritten: they would be ignored",
                where="plan",
                fix="pass them to rewrite_pipeline, or pass the template instead",
            )
        return template
    from zt_pipelines.spec import rewrite_pipeline

    return rewrite_pipeline(
        template,
        project=project,
        location=location,
        pipeline_service_account=pipeline_service_account,
        parameter_values=parameter_values,
        manifest=manifest,
        defaults=defaults,
    )


def _snapshot(snapshot: str | PathLike[str] | Snapshot | None) -> Snapshot | None:
    if snapshot is None or isinstance(snapshot, Snapshot):
        return snapshot
    from zt_pipelines.policy.snapshot_file import load_snapshot

    loaded: Snapshot = load_snapshot(Path(snapshot))
    return loaded


def load_catalogue(source: str | PathLike[str] | Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Predefined role → permissions, from a mapping (``{NAME: permissions}`` or the catalogue
    shape) or a ``.json``/``.json.gz`` file in the shape of ``gcp-predefined-roles.json.gz``
    (``{"roles": {NAME: {"includedPermissions"}}}``).

    Deleted, deprecated and alpha roles are left out: they are not offered for new grants.
    """
    from zt_pipelines.policy.catalogue import roles_from_catalogue

    if isinstance(source, Mapping):
        if all(isinstance(v, (set, frozenset, list, tuple)) for v in source.values()):
            return {str(k): frozenset(v) for k, v in source.items()}  # name -> permissions
        data: Any = dict(source)
    else:
        from zt_pipelines.loaders import load_file

        path = Path(source)  # strict and bounded (a gzip bomb stops at the catalogue limit)
        documents = load_file(path, kind="catalogue", error=InputError)
        data = documents[0] if len(documents) == 1 else None
    roles = roles_from_catalogue(data)
    return {
        name: role.permissions
        for name, role in roles.items()
        if not role.deleted and role.stage not in ("DEPRECATED", "DISABLED", "ALPHA")
    }


def __getattr__(name: str) -> Any:
    # apply_plan does IO through the Google clients: imported on first use only
    if name == "apply_plan":
        from zt_pipelines.provision.apply import apply_plan

        return apply_plan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
