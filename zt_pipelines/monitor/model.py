"""What post-run verification observed (data only; the adapters build it, the evaluator reads it).

Names follow the Vertex AI API: a PipelineJob's ``jobDetail.taskDetails`` and the CustomJobs
its tasks created. Every read that failed is carried as :class:`Unreadable` so the evaluator can
refuse (fail closed) instead of silently verifying less.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Unreadable:
    """A read that failed: what, of which resource, and the error (code and message)."""

    what: str
    target: str
    error: str


@dataclass(frozen=True)
class ObservedJob:
    """A job a task created, as Vertex reports it.

    Attributes:
        name: ``projects/NUMBER/locations/L/customJobs/ID``.
        kind: ``CustomJob`` (the only kind compared field by field today).
        service_account: ``jobSpec.serviceAccount`` (empty: Vertex's default service agent).
        images: every worker pool's container image.
        network: ``jobSpec.network``.
        reserved_ip_ranges: ``jobSpec.reservedIpRanges``.
        psc_interface_config: ``jobSpec.pscInterfaceConfig`` (``None`` when unset).
        kms_key: ``encryptionSpec.kmsKeyName``.
        state: ``JOB_STATE_...``.
        create_time / end_time: RFC 3339 strings (empty when unknown).
    """

    name: str
    kind: str = "CustomJob"
    service_account: str = ""
    images: tuple[str, ...] = ()
    network: str = ""
    reserved_ip_ranges: tuple[str, ...] = ()
    psc_interface_config: Any = None
    kms_key: str = ""
    state: str = ""
    create_time: str = ""
    end_time: str = ""

    @property
    def project(self) -> str:
        """The project (number) segment of the job's name."""
        parts = self.name.split("/")
        return parts[1] if len(parts) > 1 and parts[0] == "projects" else ""

    @property
    def location(self) -> str:
        """The location segment of the job's name."""
        parts = self.name.split("/")
        return parts[3] if len(parts) > 3 and parts[2] == "locations" else ""


@dataclass(frozen=True)
class ObservedTask:
    """One entry of ``jobDetail.taskDetails``.

    Attributes:
        task_id: Vertex's task id.
        path: the task's path through the DAG (``"train"``, ``"sub-pipeline/ingest"``), built
            from the parent chain without the root task.
        state: ``SUCCEEDED``, ``FAILED``, ``SKIPPED``, ``RUNNING`` ...
        job_names: the jobs the task created (GCPC ``gcp_resources``, the executor detail).
        job_reference_error: why the task's job references could not be read (malformed
            ``gcp_resources``); empty when they could.
        start_time / end_time: RFC 3339 strings (empty when unknown).
    """

    task_id: str
    path: str
    state: str
    job_names: tuple[str, ...] = ()
    job_reference_error: str = ""
    start_time: str = ""
    end_time: str = ""

    @property
    def ran(self) -> bool:
        """True when the task did run (its job must be accounted for)."""
        return self.state not in ("", "PENDING", "SKIPPED", "NOT_TRIGGERED", "CANCEL_PENDING")


@dataclass(frozen=True)
class ObservedRun:
    """A PipelineJob and everything its tasks created.

    Attributes:
        name: ``projects/NUMBER/locations/L/pipelineJobs/ID``.
        job_id: the last segment of ``name``.
        project: the project the job was read from (as asked: an id).
        location: the location.
        state: ``PIPELINE_STATE_...``.
        labels: the job's labels.
        spec_sha256: the sha256 of the pipeline spec as Vertex holds it (computed at the edge
            with the same canonical form the approval hashed).
        service_account: the run-as (pipeline) service account.
        network: the pipeline's network.
        kms_key: the pipeline's CMEK key.
        parameter_values: ``runtimeConfig.parameterValues``.
        pipeline_root: ``runtimeConfig.gcsOutputDirectory``.
        runtime_config: the whole ``runtimeConfig`` as JSON with proto field names.
        reserved_ip_ranges: the job's reserved IP ranges.
        request: the job's other request fields (``psc_interface_config``, ``template_uri``
            ...), as :func:`zt_pipelines.monitor.baseline.request_fields` reads them.
        pipeline_spec: the spec as Vertex holds it (a plain dict).
        tasks: the task details.
        jobs: every job read, by name.
        unreadable: the reads that failed.
        start_time / end_time / create_time: RFC 3339 strings.
    """

    name: str
    job_id: str
    project: str
    location: str
    state: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    spec_sha256: str = ""
    service_account: str = ""
    network: str = ""
    kms_key: str = ""
    parameter_values: dict[str, Any] = field(default_factory=dict)
    pipeline_root: str = ""
    runtime_config: dict[str, Any] = field(default_factory=dict)
    reserved_ip_ranges: tuple[str, ...] = ()
    request: dict[str, Any] = field(default_factory=dict)
    pipeline_spec: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[ObservedTask, ...] = ()
    jobs: dict[str, ObservedJob] = field(default_factory=dict)
    unreadable: tuple[Unreadable, ...] = ()
    create_time: str = ""
    start_time: str = ""
    end_time: str = ""

    @property
    def finished(self) -> bool:
        """True once the run has ended (succeeded, failed or cancelled)."""
        return self.state in (
            "PIPELINE_STATE_SUCCEEDED",
            "PIPELINE_STATE_FAILED",
            "PIPELINE_STATE_CANCELLED",
        )

    @property
    def project_number(self) -> str:
        """The project (number) segment of the job's name."""
        parts = self.name.split("/")
        return parts[1] if len(parts) > 1 and parts[0] == "projects" else ""
