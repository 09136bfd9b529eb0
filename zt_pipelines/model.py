"""Frozen data shared across the package: what a step needs and who runs it.

These are the contracts between the parts (declarations → ``spec`` → ``policy`` → ``job`` /
``provision``). They hold data only; parsing lives in :mod:`zt_pipelines.declare` and
:mod:`zt_pipelines.resources`, decisions in :mod:`zt_pipelines.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from zt_pipelines.resources import ResourceRef

IdentitySource = Literal[
    "declared",  # @zt.step(service_account=...) on the component or the task
    "manifest",  # a manifest file entry
    "derived",  # no declaration: derived from the naming template
    "parameter",  # a pipeline parameter resolved from parameter_values and pinned
    "gcpc",  # an existing GCPC custom job whose service_account input was read
    "pipeline",  # the step runs as the pipeline service account
]


@dataclass(frozen=True, order=True)
class Need:
    """One resource a step needs, with the permissions it needs there.

    Attributes:
        resource: the normalised resource (full resource name + optional object prefix).
        permissions: sorted, de-duplicated IAM permissions.
    """

    resource: ResourceRef
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class JobFields:
    """CustomJob fields for a step. ``None`` means "not set here" (fall back to a default).

    Names follow GCPC's ``create_custom_training_job_from_component`` keyword arguments,
    except ``reach``: the step's network intent (what it may reach, see
    :func:`zt_pipelines.segmentation.model.parse_reach`), verified, never sent to Vertex.
    """

    network: str | None = None
    psc_interface_config: dict[str, Any] | None = None
    reserved_ip_ranges: tuple[str, ...] | None = None
    encryption_spec_key_name: str | None = None
    enable_web_access: bool | None = None
    machine_type: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int | None = None
    replica_count: int | None = None
    boot_disk_type: str | None = None
    boot_disk_size_gb: int | None = None
    labels: dict[str, str] | None = None
    reach: tuple[str, ...] | None = None
    # a Vertex persistent resource (same project and location as the job) to run on: jobs
    # start in seconds instead of minutes of provisioning; it must allow custom SAs
    persistent_resource_id: str | None = None

    def merged_over(self, base: JobFields) -> JobFields:
        """Return these fields with every ``None`` filled from ``base``."""
        mine = {k: v for k, v in vars(self).items() if v is not None}
        if len(mine) == len(self.__dataclass_fields__):
            return self  # nothing to fill (frozen: sharing is safe)
        theirs = {k: v for k, v in vars(base).items() if v is not None and k not in mine}
        if not theirs:
            return self
        return JobFields(**mine, **theirs)

    def under_defaults(self, defaults: JobFields) -> JobFields:
        """These fields over pipeline-wide ``defaults``: like :meth:`merged_over`, except that
        a step with its own network or PSC interface keeps its whole network placement (a
        default network, PSC interface or reserved range never mixes into it)."""
        if self.network or self.psc_interface_config:
            defaults = replace(
                defaults, network=None, psc_interface_config=None, reserved_ip_ranges=None
            )
        return self.merged_over(defaults)


@dataclass(frozen=True)
class StepDeclaration:
    """What a user declared for a component or a task (decorator, task form or manifest).

    Attributes:
        service_account: the step's identity, or ``None`` to derive one.
        needs: the resources and permissions the step needs.
        job: CustomJob fields for the step.
        source: where the declaration came from (for error messages).
        serving_service_account: for a deploy step, the identity its deployed model serves as
            (from a manifest's ``serving_service_account``); ``None`` to derive one.
        launcher: ``"caller"`` (from a manifest's ``launcher``): an unknown GCPC launcher's job
            runs as the caller, so the step is wrapped like any container.
        service_account_parameter: the name of the pipeline parameter (as seen by the task's
            parent DAG) that holds the identity, when declared with ``zt.step.on(task,
            service_account=<pipeline parameter>)``; resolved and pinned by the rewrite.
    """

    service_account: str | None = None
    needs: tuple[Need, ...] = ()
    job: JobFields = field(default_factory=JobFields)
    source: str = "decorator"
    service_account_parameter: str | None = None
    serving_service_account: str | None = None
    launcher: str | None = None


@dataclass(frozen=True)
class StepIdentity:
    """A container step after the rewrite: who runs it and what it needs.

    Attributes:
        task: the task's path through the DAG, ``/``-joined (``"train"``,
            ``"for-loop-2/train"``, ``"my-sub-pipeline/ingest"``).
        component: the component name in the IR (``comp-train``).
        executor: the executor label in the deployment spec (``exec-train``).
        service_account: the validated, lower-cased email that will run the step; ``None``
            only when the step runs as the pipeline SA (source ``"pipeline"``).
        source: where the identity came from.
        needs: declared needs (implicit needs are derived by the policy engine).
        image: the step's container image (for image-registry policy rules).
        job: the CustomJob fields that were written into the payload.
        already_custom_job: the step was a GCPC custom job before the rewrite.
        unescaped_payload_inputs: inputs the step's command/args (or an existing custom
            job's worker pools and unquoted launcher inputs) paste verbatim into the CustomJob
            payload (``{{$.inputs.parameters['x']}}``, an input artifact's
            ``{{$.inputs.artifacts['x'].path}}``/``.uri``, whose URI the producing step sets)
            and whose values are not proven safe there: known only at run time, or constants
            holding quotes or backslashes. GCPC's
            payload is a JSON string; if Vertex substitutes such a value unescaped, a quote
            corrupts the payload or rewrites it (down to its service account). For the policy
            engine to report; the rewrite cannot decide it offline.
        payload_input_origins: for each of ``unescaped_payload_inputs``, ``(input, origin)``:
            where its value comes from, traced through sub-pipelines, loops and
            ``dsl.OneOf`` to the producing task's output, a pipeline parameter or a constant.
        upstream_digest: a short digest of what a reviewer of those values reviewed: the
            step's component, each pasted input's origin, and every producer upstream of it
            (component and bindings, recursively), pinned identities masked. A ZT102 waiver
            names it; ``""`` when nothing is pasted (or the step was not traced).
        job_kind: the GCPC launcher kind of the step (:attr:`zt_pipelines.spec.gcpc.
            LauncherKind.name`, e.g. ``"BigqueryQueryJob"``); ``"CustomJob"`` for a container
            step (it runs as a CustomJob) and for GCPC's own custom jobs; ``""`` only for a step
            not produced by the rewrite.
        launched_service_account: the identity the job the step launches runs as (a
            CustomJob, BatchPredictionJob, Dataflow or Dataproc job, or a job started by a
            component through an input such as ``dataflow_service_account``); ``None`` when
            the step launches no job with an identity of its own (its calls run as the step).
        launched_identity_field: where that identity was pinned
            (``"payload job_spec.service_account"``, ``"input dataflow_service_account"``).
        serving_service_account: a deploy step's serving identity (the deployed model's
            service account).
        wrapped_launcher: a GCPC launcher was wrapped in a CustomJob, so its API calls are
            made by ``service_account``; ``False`` for a launcher left as GCPC built it (its
            calls are made by the pipeline SA, which needs actAs on the launched identity).
        job_project / job_location: the project / location the launched job (or the API
            call) is made in, resolved before submission; ``None`` = the pipeline's own. A
            container step's CustomJob always runs in the pipeline's (``None``).
        job_network: the VPC network the launched job is peered with, if any.
        job_kms_key: the CMEK key the launched job's resources are encrypted with, if any.
        job_runtime_fields: which of ``project``, ``location``, ``network``, ``CMEK key`` an
            input sets from a value known only at run time (an upstream output): not pinned,
            for the policy to judge (a launcher's own project or network never is: refused).
        job_images: every container image the job the step launches runs, known before
            submission (each worker pool's ``container_spec.image_uri`` and
            ``python_package_spec.executor_image_uri``, a tuning job's trial pools), besides
            ``image``; judged by the policy file's ``images`` rules like ``image``.
        job_images_unknown: where the launched job takes an image only known at run time (a
            pool list or image from an upstream output, a model's serving container, a
            Dataflow template file): unverifiable, a finding under an ``images`` policy.
        job_opens_to_callers: payload fields of a launched job that open it to HTTP callers
            (``job_spec.enable_dashboard_access``, a trial spec's ``enable_web_access``), set
            or known only at run time; judged by the policy's ``jobs.allowWebAccess``.
        code_project / code_location: for a container step, the value of its own
            ``project`` / ``location`` input: where its code is pointed (its CustomJob runs
            in the pipeline's project and location all the same); ``None`` when it takes none.
        job_defaults_unreached: pipeline-wide step defaults (``network``,
            ``persistent_resource_id`` ...) the launched job takes no field for from its
            component (a batch prediction's network; an AutoML CustomJob whose payload has no
            network input): not applied to it, and said in the report.
    """

    task: str
    component: str
    executor: str
    service_account: str | None
    source: IdentitySource
    needs: tuple[Need, ...] = ()
    image: str = ""
    job: JobFields = field(default_factory=JobFields)
    already_custom_job: bool = False
    unescaped_payload_inputs: tuple[str, ...] = ()
    payload_input_origins: tuple[tuple[str, str], ...] = ()
    upstream_digest: str = ""
    job_kind: str = ""
    launched_service_account: str | None = None
    launched_identity_field: str = ""
    serving_service_account: str | None = None
    wrapped_launcher: bool = False
    job_project: str | None = None
    job_location: str | None = None
    job_network: str | None = None
    job_kms_key: str | None = None
    job_runtime_fields: tuple[str, ...] = ()
    job_images: tuple[str, ...] = ()
    job_images_unknown: tuple[str, ...] = ()
    job_opens_to_callers: tuple[str, ...] = ()
    code_project: str | None = None
    code_location: str | None = None
    job_defaults_unreached: tuple[str, ...] = ()


@dataclass(frozen=True)
class RewriteResult:
    """The rewritten IR plus what the rewrite learned about every container step.

    Attributes:
        spec: the rewritten pipeline IR (a new dict; our metadata stripped). When the input
            was a multi-document YAML, ``platform_docs`` holds the other documents.
        pipeline_name: ``pipelineInfo.name``.
        steps: one entry per container task, in DAG order.
        platform_docs: any PlatformSpec documents (other platforms kept intact; ours stripped).
    """

    spec: dict[str, Any]
    pipeline_name: str
    steps: tuple[StepIdentity, ...]
    platform_docs: tuple[dict[str, Any], ...] = ()
