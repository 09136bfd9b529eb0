"""What every identity of a pipeline must hold: declared needs plus the implicit ones.

Implicit needs (Google's "configure a service account with granular permissions" for Vertex
AI Pipelines, plus how the GCPC custom-job launcher works):

* every step identity reads and writes its artifacts under ``pipeline_root``
  (``storage.objects.get`` / ``storage.objects.create`` on the root prefix);
* the pipeline identity reads the pipeline-root bucket and writes under it
  (``storage.buckets.get``, ``storage.objects.get``, ``storage.objects.create``), reads the
  metadata store (``aiplatform.metadataStores.get``), launches each step as a custom job
  (``aiplatform.customJobs.create/get/cancel``) and may act as every step identity
  (``iam.serviceAccounts.actAs``);
* the submitter may act as the pipeline identity and create pipeline jobs
  (``iam.serviceAccounts.actAs``, ``aiplatform.pipelineJobs.create``);
* a GCPC step (``StepIdentity.job_kind``, see :mod:`zt_pipelines.spec.gcpc`): whoever runs its
  launcher — the step identity when the rewrite wrapped it in a CustomJob, else the pipeline
  identity — needs the kind's ``caller_permissions`` in the job's project (e.g.
  ``bigquery.jobs.create``, ``aiplatform.models.upload``, ``aiplatform.endpoints.deploy``,
  ``dataflow.jobs.create``) and, when the kind says so, ``iam.serviceAccounts.actAs`` on the
  launched job's identity (Dataflow/Dataproc worker, CustomJob, HPT trials, batch prediction)
  or on a deploy step's serving identity; the launched identity needs the kind's
  ``job_permissions`` (a Dataflow or Dataproc worker's) in the job's project. Data the job
  reads or writes is declared by the user.

Pure: no IO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from zt_pipelines.errors import TemplateError
from zt_pipelines.identity import classify_identity
from zt_pipelines.model import RewriteResult, StepIdentity
from zt_pipelines.resources import (
    ResourceRef,
    normalize_resource,
    project_resource,
    service_account_resource,
)

RequirementKind = Literal["declared", "artifacts", "orchestration", "launch", "job", "submit"]

STEP_ARTIFACT_PERMISSIONS = ("storage.objects.create", "storage.objects.get")
PIPELINE_ROOT_PERMISSIONS = ("storage.objects.create", "storage.objects.get")
PIPELINE_BUCKET_PERMISSIONS = ("storage.buckets.get",)
PIPELINE_PROJECT_PERMISSIONS = ("aiplatform.metadataStores.get",)
LAUNCH_PERMISSIONS = (
    "aiplatform.customJobs.cancel",
    "aiplatform.customJobs.create",
    "aiplatform.customJobs.get",
)
SUBMIT_PERMISSIONS = ("aiplatform.pipelineJobs.create",)
ACT_AS = "iam.serviceAccounts.actAs"

# the finding code a missing requirement of each kind produces
MISSING_CODE: dict[str, str] = {
    "declared": "ZT200",
    "artifacts": "ZT200",
    "orchestration": "ZT200",
    "launch": "ZT301",
    "job": "ZT200",
    "submit": "ZT300",
}


@dataclass(frozen=True, order=True)
class Requirement:
    """One permission one principal must hold on one resource.

    Attributes:
        principal: the member (``serviceAccount:EMAIL``, ``user:EMAIL``).
        resource: the resource (and object prefix).
        permission: the IAM permission.
        step: the task that needs it; ``None`` for pipeline-level needs.
        kind: declared / artifacts / orchestration / launch (the pipeline identity launching
            a step or a GCPC job) / job (a GCPC step's implicit needs) / submit.
    """

    principal: str
    resource: ResourceRef
    permission: str
    step: str | None = None
    kind: RequirementKind = "declared"

    @property
    def code(self) -> str:
        """The finding code when this requirement is not granted."""
        return MISSING_CODE[self.kind]


@dataclass(frozen=True)
class RunWindow:
    """Until when the grants a check proves must keep holding (see
    :mod:`zt_pipelines.policy.timewindow`).

    Attributes:
        until: the end of the window; ``None`` for ever (an open-ended schedule).
        why: what the window is, for messages.
    """

    until: datetime | None
    why: str


#: the kinds of submitter credential a caller may name (``--submitter-credentials``)
SUBMITTER_CREDENTIAL_KINDS = (
    "user",
    "service_account_key",
    "impersonated",
    "metadata",
    "external_account",
)


def submitter_credential_kind(value: str | None) -> str | None:
    """A caller-given credential kind, normalised (``Service-Account-Key``,
    ``serviceAccountKey`` -> ``service_account_key``); anything else is refused, so a typo can
    never switch a submitter rule off.

    Raises:
        InputError: a kind that is not one of :data:`SUBMITTER_CREDENTIAL_KINDS`.
    """
    if value is None:
        return None
    from zt_pipelines.errors import InputError

    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(value).strip())
    kind = re.sub(r"[\s-]+", "_", text).lower()
    if kind not in SUBMITTER_CREDENTIAL_KINDS:
        raise InputError(
            f"submitter credentials {value!r} is not a kind zt-pipelines knows",
            where="submitter_credentials",
            fix="one of " + ", ".join(SUBMITTER_CREDENTIAL_KINDS),
        )
    return kind


@dataclass(frozen=True)
class CheckContext:
    """Everything about the submission that is not the pipeline or the IAM world.

    Attributes:
        project: the project the pipeline runs in.
        location: the region.
        pipeline_service_account: the pipeline identity (validated email).
        pipeline_root: ``gs://...`` or ``None``.
        submitter: the submitting principal (``user:...`` / ``serviceAccount:...``), if known.
        submitter_credentials: what kind of credentials the submitter uses
            (``user``, ``service_account_key``, ``impersonated``, ``metadata``, ...), if known.
        network: the pipeline job's network, if set.
        template: the template path (for SARIF).
        run_window: until when the grants must hold (a run's timeout, a schedule's end);
            ``None``: a run of unknown timeout (the default window).
    """

    project: str
    location: str
    pipeline_service_account: str
    pipeline_root: str | None = None
    submitter: str | None = None
    submitter_credentials: str | None = None
    network: str | None = None
    template: str = ""
    run_window: RunWindow | None = None


def sa_member(email: str) -> str:
    """``serviceAccount:EMAIL`` (lower-cased)."""
    return f"serviceAccount:{email.lower()}"


def submitter_member(submitter: str) -> str:
    """The member of a submitter: :func:`zt_pipelines.identity.submitter_member` (one rule).

    Raises:
        IdentityError: not one user or user-managed service account.
    """
    from zt_pipelines.identity import submitter_member as validated

    return validated(submitter)


def step_principal(step: StepIdentity, pipeline_service_account: str) -> str:
    """The member a step runs as (the pipeline SA when it has no identity of its own)."""
    return sa_member(step.service_account or pipeline_service_account)


def persistent_resource_name(step: StepIdentity, project: str, location: str) -> str | None:
    """``projects/P/locations/L/persistentResources/ID`` a step's CustomJob runs on, or ``None``.

    A persistent resource is always in the job's own project and location: the pipeline's,
    or the ones an existing custom-job step pins (a wrapped launcher's CustomJob runs in the
    pipeline's; its ``job_project`` is where its inner API call goes).
    """
    resource_id = step.job.persistent_resource_id
    if not resource_id:
        return None
    if not step.wrapped_launcher:  # an existing CustomJob launcher may pin its own place
        project = step.job_project or project
        location = step.job_location or location
    return f"projects/{project}/locations/{location}/persistentResources/{resource_id}"


def pipeline_root_of(result: RewriteResult | Any, pipeline_root: str | None) -> str | None:
    """The pipeline root a run would use: the argument, else the template's
    ``defaultPipelineRoot`` (a ``gs://`` URI), else ``None`` (no artifact needs)."""
    if pipeline_root:
        return pipeline_root
    spec = getattr(result, "spec", None)
    default = spec.get("defaultPipelineRoot") if isinstance(spec, dict) else None
    return default if isinstance(default, str) and default.startswith("gs://") else None


def pipeline_root_ref(pipeline_root: str, *, where: str = "pipeline_root") -> ResourceRef:
    """The resource a pipeline root's artifacts live under: its bucket and the root as a
    FOLDER (``gs://B/runs`` → prefix ``runs/``). Vertex writes ``ROOT/PROJECT_NUMBER/JOB_ID/
    ...``, so a bare ``runs`` prefix would also cover ``gs://B/runs-prod/`` — another
    pipeline's root in a shared bucket. One rule for plan, check and usage.

    Raises:
        ResourceError: not a valid ``gs://`` URI.
    """
    ref = normalize_resource(pipeline_root, where=where)
    if ref.prefix and not ref.prefix.endswith("/"):
        return ResourceRef(ref.name, ref.prefix + "/")
    return ref


def derive_requirements(
    result: RewriteResult | Any,
    *,
    project: str,
    location: str,
    pipeline_service_account: str,
    pipeline_root: str | None,
    submitter: str | None,
) -> tuple[Requirement, ...]:
    """Declared and implicit requirements of a rewritten pipeline, sorted and de-duplicated.

    ``result`` is a :class:`RewriteResult` (anything with ``.steps`` of
    :class:`StepIdentity`). ``location`` is accepted for symmetry (Vertex permissions are
    checked on the project).
    """
    del location  # permissions are project-level; kept in the signature for callers
    pipeline_service_account = pipeline_service_account.lower()
    steps: tuple[StepIdentity, ...] = tuple(result.steps)
    pipeline = sa_member(pipeline_service_account)
    project_ref = ResourceRef(project_resource(project))
    root = pipeline_root_ref(pipeline_root) if pipeline_root else None
    out: set[Requirement] = set()
    for step in steps:
        who = step_principal(step, pipeline_service_account)
        for need in step.needs:
            for perm in need.permissions:
                out.add(Requirement(who, need.resource, perm, step.task, "declared"))
        if root is not None:
            for perm in STEP_ARTIFACT_PERMISSIONS:
                out.add(Requirement(who, root, perm, step.task, "artifacts"))
        if step.service_account and step.service_account.lower() != pipeline_service_account:
            sa_ref = ResourceRef(service_account_resource(step.service_account.lower()))
            out.add(Requirement(pipeline, sa_ref, ACT_AS, step.task, "launch"))
        out.update(gcpc_requirements(step, project=project, pipeline_service_account=pipeline))
    if steps:
        for perm in LAUNCH_PERMISSIONS:
            out.add(Requirement(pipeline, project_ref, perm, None, "launch"))
    for perm in PIPELINE_PROJECT_PERMISSIONS:
        out.add(Requirement(pipeline, project_ref, perm, None, "orchestration"))
    if root is not None:
        bucket = ResourceRef(root.name)
        for perm in PIPELINE_BUCKET_PERMISSIONS:
            out.add(Requirement(pipeline, bucket, perm, None, "orchestration"))
        for perm in PIPELINE_ROOT_PERMISSIONS:
            out.add(Requirement(pipeline, root, perm, None, "orchestration"))
    if submitter:
        who = submitter_member(submitter)
        sa_ref = ResourceRef(service_account_resource(pipeline_service_account))
        out.add(Requirement(who, sa_ref, ACT_AS, None, "submit"))
        for perm in SUBMIT_PERMISSIONS:
            out.add(Requirement(who, project_ref, perm, None, "submit"))
    return tuple(sorted(out, key=_order))


def gcpc_requirements(
    step: StepIdentity, *, project: str, pipeline_service_account: str
) -> set[Requirement]:
    """The implicit needs of a GCPC step's launcher and of the job it launches (see module doc).

    ``pipeline_service_account`` is the pipeline's email or member. An empty or default
    launched/serving identity adds no actAs requirement: it is refused on its own (ZT100).

    Raises:
        TemplateError: ``step.job_kind`` names no catalogued GCPC launcher.
    """
    if not step.job_kind:
        return set()
    from zt_pipelines.spec.gcpc import by_name

    try:
        kind = by_name(step.job_kind)
    except KeyError:
        raise TemplateError(
            f"GCPC launcher kind {step.job_kind!r} is not in the catalogue",
            where=f"task {step.task!r}",
        ) from None
    pipeline = sa_member(pipeline_service_account.removeprefix("serviceAccount:"))
    where = ResourceRef(project_resource(step.job_project or project))
    how: RequirementKind
    if step.wrapped_launcher:  # the launcher runs in a CustomJob as the step's identity
        caller, how = step_principal(step, pipeline_service_account), "job"
    else:  # GCPC's launcher container runs as the pipeline identity
        caller, how = pipeline, "launch"
    out = {Requirement(caller, where, p, step.task, how) for p in kind.caller_permissions}
    if kind.caller_acts_as:
        target = (
            step.serving_service_account
            if kind.serving_identity is not None
            else step.launched_service_account
        )
        if target and not classify_identity(target).is_default:
            member = sa_member(target)
            if member != caller or step.wrapped_launcher:  # e.g. Dataflow: actAs its own worker
                node = ResourceRef(service_account_resource(target.lower()))
                out.add(Requirement(caller, node, ACT_AS, step.task, how))
    launched = step.launched_service_account
    if launched and not classify_identity(launched).is_default:
        out.update(
            Requirement(sa_member(launched), where, p, step.task, "job")
            for p in kind.job_permissions
        )
    return out


def _order(r: Requirement) -> tuple[str, str, str, str, str, str]:
    return (
        r.step or "",
        r.principal,
        r.resource.name,
        r.resource.prefix or "",
        r.permission,
        r.kind,
    )


@dataclass(frozen=True)
class NeededNodes:
    """What a snapshot must contain to check given requirements (the live fetch plan's input).

    Attributes:
        resources: full resource names whose allow policies and ancestry are needed
            (declared resources, the pipeline-root bucket, step service accounts, the project).
        service_accounts: emails whose IAM record (exists, disabled, keys) is needed.
        principals: members whose every binding should be searched for (excess privilege;
            e.g. Cloud Asset ``SearchAllIamPolicies`` ``policy:EMAIL``) — list them in
            ``Snapshot.complete_bindings_for`` when the search succeeded.
        projects: project ids (deny policies, custom roles, the project hierarchy).
        persistent_resources: Vertex persistent resources steps run on
            (``projects/P/locations/L/persistentResources/ID``).
    """

    resources: tuple[str, ...]
    service_accounts: tuple[str, ...]
    principals: tuple[str, ...]
    projects: tuple[str, ...]
    persistent_resources: tuple[str, ...] = ()


def needed_nodes(
    requirements: tuple[Requirement, ...] | list[Requirement],
    *,
    steps: tuple[StepIdentity, ...] = (),
    pipeline_service_account: str | None = None,
    project: str | None = None,
    location: str | None = None,
) -> NeededNodes:
    """List what a snapshot must hold to decide ``requirements`` (and check identities).

    ``project`` and ``location`` (where the pipeline runs) name the persistent resources its
    steps run on; without them none are listed.
    """
    resources = {r.resource.name for r in requirements}
    emails = {s.service_account.lower() for s in steps if s.service_account}
    # a GCPC step's launched and serving identities are checked too (existence, keys)
    for step in steps:
        for other in (step.launched_service_account, step.serving_service_account):
            if other and not classify_identity(other).is_default:
                emails.add(other.lower())
    if pipeline_service_account:
        emails.add(pipeline_service_account.lower())
    for r in requirements:
        if r.principal.startswith("serviceAccount:"):
            emails.add(r.principal.split(":", 1)[1])
    projects = set()
    for name in resources:
        if name.startswith("//cloudresourcemanager.googleapis.com/projects/"):
            projects.add(name.rsplit("/", 1)[1])
        elif name.startswith(
            ("//bigquery.googleapis.com/projects/", "//iam.googleapis.com/projects/")
        ):
            projects.add(name.split("/")[4])
    projects.discard("-")
    principals = {r.principal for r in requirements if r.kind != "submit"}
    principals.update(sa_member(e) for e in emails)
    persistent: set[str] = set()
    if project and location:
        for step in steps:
            runs_on = persistent_resource_name(step, project, location)
            if runs_on:
                persistent.add(runs_on)
    return NeededNodes(
        resources=tuple(sorted(resources)),
        service_accounts=tuple(sorted(emails)),
        principals=tuple(sorted(principals)),
        projects=tuple(sorted(projects)),
        persistent_resources=tuple(sorted(persistent)),
    )
