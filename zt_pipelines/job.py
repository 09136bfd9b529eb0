"""Drop-in ``zt_pipelines.PipelineJob``: rewrite → verify → audit → submit the exact verified spec.

Change one import (``from zt_pipelines import PipelineJob``) and nothing reaches Vertex unless it
is verified. Every path that can start a pipeline run — :meth:`PipelineJob.submit`,
:meth:`~PipelineJob.run` (sync and async), :meth:`~PipelineJob.create_schedule`, and an
``aiplatform.PipelineJobSchedule`` built from the job — goes through one decision
(:meth:`PipelineJob._decide`) that

1. resolves the pipeline service account exactly as aiplatform does (argument, else
   ``aiplatform.init(service_account=...)``, else none → Vertex would use the Compute Engine
   default SA → ZT100);
2. rewrites the template so every step runs as its own service account (:mod:`zt_pipelines.spec`);
3. serialises the rewritten spec to canonical bytes and verifies *those bytes*
   (:func:`zt_pipelines.verification.check_rewritten`, against ``snapshot=`` or live);
4. appends the decision to the audit log;
5. refuses with :class:`~zt_pipelines.errors.ZeroTrustViolation` — before aiplatform's
   ``submit()`` reaches ``create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist``, so no
   bucket, no IAM grant, no job — or installs the verified bytes as the job's spec, labels the job
   with their sha256, and lets aiplatform submit them.

This module does IO (files, the clock, Google APIs through aiplatform and :mod:`zt_pipelines.gcp`);
the decisions themselves are made by the pure :mod:`zt_pipelines.spec` and
:mod:`zt_pipelines.policy`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from google.auth import credentials as auth_credentials
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from google.cloud.aiplatform import pipeline_jobs as _pipeline_jobs
from google.cloud.aiplatform_v1.types import pipeline_job as _gca_pipeline_job

from zt_pipelines.audit import AuditLog, Decision, default_audit_log, identities_from, utc_now
from zt_pipelines.errors import InputError, ZeroTrustViolation, ZtError
from zt_pipelines.gcp.submitter import submitter_of
from zt_pipelines.identity import DEFAULT_NAME_TEMPLATE, classify_identity

EMULATOR_ENV = "ZT_EMULATOR_HOST"
SPEC_LABELS = ("zt-spec-sha256-a", "zt-spec-sha256-b")
"""Job labels holding the two halves of the verified spec's sha256 (label values max 63 chars)."""
VERIFIED_LABEL = "zt-verified"


def canonical_spec_bytes(spec: Mapping[str, Any]) -> bytes:
    """The bytes that are verified, hashed and submitted: canonical JSON of ``spec``.

    Sorted keys, compact separators, UTF-8, and integral floats written as integers — the
    Vertex API carries the spec as a ``google.protobuf.Struct`` whose numbers are doubles, so
    ``3`` and ``3.0`` are the same value there and must hash the same here.
    """
    return json.dumps(
        _normalise_numbers(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def spec_sha256(spec: Mapping[str, Any]) -> str:
    """Hex sha256 of :func:`canonical_spec_bytes`."""
    return hashlib.sha256(canonical_spec_bytes(spec)).hexdigest()


def _normalise_numbers(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): _normalise_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise_numbers(v) for v in value]
    raise InputError(f"pipeline spec holds a {type(value).__name__}, which JSON cannot carry")


@dataclass(frozen=True)
class Approval:
    """An allowed decision: the exact bytes that were verified and may now be submitted.

    Attributes:
        service_account: the pipeline service account that was verified.
        network: the network that was verified (``None`` when none).
        spec_bytes: :func:`canonical_spec_bytes` of the rewritten spec.
        sha256: their hex sha256 (also in the job labels and the audit record).
        report: the verification report (allowed; may hold warnings).
    """

    service_account: str
    network: str | None
    spec_bytes: bytes
    sha256: str
    report: Any
    runtime_config: bytes = b""
    """The serialised ``RuntimeConfig`` verified with the spec (parameters, pipeline root)."""

    def spec(self) -> dict[str, Any]:
        """A fresh dict parsed from :attr:`spec_bytes` (what is handed to aiplatform)."""
        value: dict[str, Any] = json.loads(self.spec_bytes)
        return value


def use_emulator_if_configured() -> str | None:
    """Point aiplatform (and google-cloud-storage) at ``$ZT_EMULATOR_HOST`` when it is set.

    Returns the ``host:port`` in use, or ``None``. Nothing else changes: the same code runs
    against Vertex when the variable is unset.

    Raises:
        InputError: the variable is set but is not ``HOST:PORT``.
    """
    from zt_pipelines.gcp.clients import emulator_host_from_env

    host = emulator_host_from_env()
    if not host:
        return None
    endpoint = f"http://{host}"
    if initializer.global_config.api_endpoint != endpoint:
        aiplatform.init(api_endpoint=endpoint, api_transport="rest")
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    return host


class PipelineJob(  # type: ignore[misc]
    aiplatform.PipelineJob,
    experiment_loggable_schemas=(),  # type: ignore[arg-type]  # leave aiplatform's experiment registry pointing at its class
):
    """``google.cloud.aiplatform.PipelineJob`` that refuses anything it cannot verify.

    The constructor takes exactly aiplatform's arguments, plus keyword-only extras:

    Args:
        manifest: a manifest file (or loaded mapping) declaring identities/needs per task for
            templates compiled elsewhere.
        policy: an organisation policy file (``zt-policy.yaml``) or loaded policy.
        snapshot: verify against this snapshot file (or loaded
            :class:`~zt_pipelines.policy.snapshot.Snapshot`) instead of live IAM state.
        audit_log: where decisions are appended (a path or an
            :class:`~zt_pipelines.audit.AuditLog`); default :func:`default_audit_log`.
        naming_template: the naming template for derived step identities.
        clock: returns the current time (audit records and condition evaluation).
    """

    def __init__(
        self,
        display_name: str,
        template_path: str,
        job_id: str | None = None,
        pipeline_root: str | None = None,
        parameter_values: dict[str, Any] | None = None,
        input_artifacts: dict[str, str] | None = None,
        enable_caching: bool | None = None,
        encryption_spec_key_name: str | None = None,
        labels: dict[str, str] | None = None,
        credentials: auth_credentials.Credentials | None = None,
        project: str | None = None,
        location: str | None = None,
        failure_policy: str | None = None,
        *,
        manifest: str | Path | Mapping[str, Any] | None = None,
        policy: Any = None,
        snapshot: Any = None,
        audit_log: str | os.PathLike[str] | AuditLog | None = None,
        naming_template: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        credentials = credentials or _emulator_default_credentials()
        use_emulator_if_configured()
        from zt_pipelines.gcp.templates import fetch_template_text

        text = fetch_template_text(template_path, project=project, credentials=credentials)
        first, platform_docs = _split_documents(text, where=template_path)
        # aiplatform reads one YAML document only: hand it the first (the PipelineSpec or
        # PipelineJob) and keep the PlatformSpec documents (our declarations) for the rewrite.
        with tempfile.TemporaryDirectory(prefix="zt-template-") as tmp:
            first_path = os.path.join(tmp, "template.json")
            Path(first_path).write_text(json.dumps(first))
            super().__init__(
                display_name=display_name,
                template_path=first_path,
                job_id=job_id,
                pipeline_root=pipeline_root,
                parameter_values=parameter_values,
                input_artifacts=input_artifacts,
                enable_caching=enable_caching,
                encryption_spec_key_name=encryption_spec_key_name,
                labels=labels,
                credentials=credentials,
                project=project,
                location=location,
                failure_policy=failure_policy,
            )
        if _pipeline_jobs._VALID_AR_URL.match(
            template_path
        ) or _pipeline_jobs._VALID_HTTPS_URL.match(template_path):
            self._gca_resource.template_uri = template_path
        # The template as aiplatform loaded it (enable_caching applied), before any rewrite.
        self._zt_source: dict[str, Any] = json.loads(
            canonical_spec_bytes(_struct_to_dict(self._gca_resource.pipeline_spec))
        )
        self._zt_platform_docs = platform_docs
        self._zt_parameter_values = dict(parameter_values or {})
        self._zt_runtime = _runtime_bytes(self._gca_resource.runtime_config)
        self._zt_manifest = manifest
        self._zt_policy = policy
        self._zt_snapshot = snapshot
        self._zt_audit = audit_log
        self._zt_naming_template = naming_template
        self._zt_clock = clock or utc_now
        self._zt_template_path = template_path
        self._zt_approval: Approval | None = None
        self._zt_pending: Approval | None = None
        self._zt_scheduling: Approval | None = None
        self._zt_origin = ""  # "cli" when the zt-pipelines CLI drives the job (audit action)
        self.last_report: Any = None

    # ------------------------------------------------------------------ public API

    @classmethod
    def from_pipeline_func(  # type: ignore[override]
        cls,
        pipeline_func: Callable[..., Any],
        parameter_values: dict[str, Any] | None = None,
        input_artifacts: dict[str, str] | None = None,
        output_artifacts_gcs_dir: str | None = None,
        enable_caching: bool | None = None,
        context_name: str | None = "pipeline",
        display_name: str | None = None,
        labels: dict[str, str] | None = None,
        job_id: str | None = None,
        project: str | None = None,
        location: str | None = None,
        credentials: auth_credentials.Credentials | None = None,
        encryption_spec_key_name: str | None = None,
        **zt_options: Any,
    ) -> PipelineJob:
        """Compile ``pipeline_func`` with kfp and build a verified job from it.

        Same arguments as aiplatform's; ``zt_options`` are this class's keyword-only extras.
        """
        from kfp import compiler

        auto = " ".join(
            [
                getattr(pipeline_func, "name", None) or pipeline_func.__name__.replace("_", " "),
                datetime.now().isoformat(sep=" "),
            ]
        )
        display_name = display_name or auto
        job_id = job_id or re.sub(r"[^-a-z0-9]", "-", auto.lower()).strip("-")
        with tempfile.TemporaryDirectory(prefix="zt-") as tmp:
            path = os.path.join(tmp, "pipeline.yaml")
            compiler.Compiler().compile(
                pipeline_func=pipeline_func, package_path=path, pipeline_name=context_name
            )
            return cls(
                display_name=display_name,
                template_path=path,
                job_id=job_id,
                pipeline_root=output_artifacts_gcs_dir,
                parameter_values=parameter_values,
                input_artifacts=input_artifacts,
                enable_caching=enable_caching,
                encryption_spec_key_name=encryption_spec_key_name,
                labels=labels,
                credentials=credentials,
                project=project,
                location=location,
                **zt_options,
            )

    def verify(self, service_account: str | None = None, network: str | None = None) -> Any:
        """Rewrite and verify without submitting; return the :class:`Report` (never raises
        :class:`ZeroTrustViolation`; bad input still raises its :class:`InputError`)."""
        sa, net = _resolve(service_account, network)
        try:
            self._decide("verify", sa, net)
        except ZeroTrustViolation as exc:
            return exc.report
        return self.last_report

    def submit(
        self,
        service_account: str | None = None,
        network: str | None = None,
        reserved_ip_ranges: list[str] | None = None,
        create_request_timeout: float | None = None,
        *,
        experiment: Any = None,
        enable_preflight_validations: bool | None = False,
        verify_after: bool = False,
    ) -> None:
        """Verify, then submit the verified spec (aiplatform's ``submit``).

        With ``verify_after=True``, wait for the run to end and verify it against its approval
        (:meth:`verify_run`).

        Raises:
            ZeroTrustViolation: verification found an error; nothing was created — or, with
                ``verify_after``, the run did not verify.
        """
        sa, net = _resolve(service_account, network)
        approval = self._take_pending(sa, net) or self._decide("submit", sa, net)
        self._install(approval)
        super().submit(
            service_account=sa,
            network=net,
            reserved_ip_ranges=reserved_ip_ranges,
            create_request_timeout=create_request_timeout,
            experiment=experiment,
            enable_preflight_validations=enable_preflight_validations,
        )
        if verify_after:
            self._zt_verify_after()

    def run(
        self,
        service_account: str | None = None,
        network: str | None = None,
        reserved_ip_ranges: list[str] | None = None,
        sync: bool | None = True,
        create_request_timeout: float | None = None,
        enable_preflight_validations: bool | None = False,
        *,
        verify_after: bool = False,
    ) -> None:
        """Verify in the caller's thread (so a refusal raises here even with ``sync=False``),
        then run as aiplatform does; ``verify_after=True`` (with ``sync=True``) verifies the
        run once it ended (:meth:`verify_run`) and raises ZeroTrustViolation if it does not."""
        if verify_after and not sync:
            raise InputError(
                "verify_after needs sync=True",
                where="PipelineJob.run",
                fix="or call job.wait() and then job.verify_run()",
            )
        sa, net = _resolve(service_account, network)
        self._zt_pending = self._decide("run", sa, net)
        super().run(
            service_account=sa,
            network=net,
            reserved_ip_ranges=reserved_ip_ranges,
            sync=sync,
            create_request_timeout=create_request_timeout,
            enable_preflight_validations=enable_preflight_validations,
        )
        if verify_after:
            self._zt_verify_after()

    def create_schedule(
        self,
        cron: str,
        display_name: str,
        start_time: str | None = None,
        end_time: str | None = None,
        allow_queueing: bool = False,
        max_run_count: int | None = None,
        max_concurrent_run_count: int = 1,
        max_concurrent_active_run_count: int | None = None,
        service_account: str | None = None,
        network: str | None = None,
        create_request_timeout: float | None = None,
    ) -> Any:
        """Verify, then create a schedule whose runs use the verified spec and pipeline SA.

        Raises:
            ZeroTrustViolation: verification found an error; no schedule was created.
        """
        sa, net = _resolve(service_account, network)
        approval = self._decide("schedule", sa, net)
        self._install(approval)
        self._zt_scheduling = approval  # the schedule built below reads pipeline_spec
        try:
            return super().create_schedule(
                cron=cron,
                display_name=display_name,
                start_time=start_time,
                end_time=end_time,
                allow_queueing=allow_queueing,
                max_run_count=max_run_count,
                max_concurrent_run_count=max_concurrent_run_count,
                max_concurrent_active_run_count=max_concurrent_active_run_count,
                service_account=sa,
                network=net,
                create_request_timeout=create_request_timeout,
            )
        finally:
            self._zt_scheduling = None

    @property
    def pipeline_spec(self) -> Any:
        """The spec, verified first when it leaves this object.

        ``aiplatform.PipelineJobSchedule(pipeline_job=job, ...)`` reads this property: an
        unverified job is verified here against the pipeline SA from ``aiplatform.init`` (the
        one the schedule will use when ``create()`` gets none), and a refusal raises
        :class:`ZeroTrustViolation` before any schedule exists.
        """
        approval = self._exported_approval()
        return self._gca_resource.pipeline_spec if approval is None else approval.spec()

    @property
    def runtime_config(self) -> Any:
        """The runtime config that verification uses: the constructor's parameters (an edit on
        the resource is discarded) and today's pipeline root. The schedule reads it before
        :attr:`pipeline_spec`, so it must not carry an unverified edit."""
        if not hasattr(self, "_zt_source"):  # fetched with get()/list(): already on Vertex
            return self._gca_resource.runtime_config
        if self._zt_scheduling is not None:
            return _RuntimeConfig.deserialize(self._zt_scheduling.runtime_config)
        return self._zt_verified_runtime()

    def _exported_approval(self) -> Approval | None:
        """The approval an exported spec must come from: decided afresh on every export (an
        earlier submit's approval is not reused for a schedule); ``None`` for a job fetched
        with get()/list(), already on Vertex."""
        if not hasattr(self, "_zt_source"):
            return None
        if self._zt_scheduling is not None:  # inside create_schedule(), verified for its SA
            return self._zt_scheduling
        sa, net = _resolve(None, None)
        approval = self._decide("export", sa, net)
        self._install(approval)
        return approval

    def _zt_verified_runtime(self) -> Any:
        """The constructor's runtime config with the resource's current pipeline root."""
        runtime = _RuntimeConfig.deserialize(self._zt_runtime)
        runtime.gcs_output_directory = self._gca_resource.runtime_config.gcs_output_directory
        return runtime

    @property
    def verified_sha256(self) -> str | None:
        """The sha256 of the spec last verified and installed, if any."""
        return self._zt_approval.sha256 if self._zt_approval else None

    def _repr_html_(self) -> str:
        report = self.last_report
        head = (
            f"<p><b>zt_pipelines.PipelineJob</b> {self._gca_resource.display_name} "
            f"({self.project}/{self.location})</p>"
        )
        if report is None:
            return head + "<p>not verified yet: call <code>verify()</code></p>"
        return head + str(report._repr_html_())

    # ------------------------------------------------------------------ the decision

    def clone(self, *args: Any, **kwargs: Any) -> PipelineJob:
        """aiplatform's ``clone``; the copy keeps this job's options and is verified on submit
        like any other job (aiplatform builds it without calling ``__init__``)."""
        cloned: PipelineJob = super().clone(*args, **kwargs)  # type: ignore[assignment]
        cloned._zt_adopt(self, kwargs.get("parameter_values"))
        return cloned

    def _zt_adopt(self, parent: PipelineJob | None, parameter_values: Any = None) -> None:
        """State for an instance aiplatform built without ``__init__`` (clone, get, list)."""
        self._zt_source = json.loads(
            canonical_spec_bytes(_struct_to_dict(self._gca_resource.pipeline_spec))
        )
        self._zt_platform_docs = parent._zt_platform_docs if parent else ()
        merged = dict(parent._zt_parameter_values) if parent else {}
        merged.update(parameter_values or {})
        self._zt_parameter_values = merged
        self._zt_runtime = _runtime_bytes(self._gca_resource.runtime_config)
        for name in ("manifest", "policy", "snapshot", "audit", "naming_template"):
            setattr(self, f"_zt_{name}", getattr(parent, f"_zt_{name}", None))
        self._zt_clock = parent._zt_clock if parent else utc_now
        self._zt_template_path = parent._zt_template_path if parent else ""
        self._zt_approval = self._zt_pending = self._zt_scheduling = None
        self._zt_origin = parent._zt_origin if parent else ""
        self.last_report = None

    def _take_pending(self, sa: str | None, net: str | None) -> Approval | None:
        pending, self._zt_pending = self._zt_pending, None
        if pending is not None and (pending.service_account, pending.network) == (sa, net):
            return pending
        return None

    def _install(self, approval: Approval) -> None:
        """Make the verified bytes, runtime config, SA and network the job's, and label the job
        with the spec's hash (aiplatform keeps a resource field it is not given a value for)."""
        self._gca_resource.pipeline_spec = approval.spec()
        self._gca_resource.runtime_config = _RuntimeConfig.deserialize(approval.runtime_config)
        self._gca_resource.service_account = approval.service_account
        self._gca_resource.network = approval.network or ""
        labels = dict(self._gca_resource.labels)
        labels[SPEC_LABELS[0]] = approval.sha256[:32]
        labels[SPEC_LABELS[1]] = approval.sha256[32:]
        labels[VERIFIED_LABEL] = "true"
        self._gca_resource.labels = labels
        self._zt_approval = approval

    def _decide(self, action: str, sa: str | None, net: str | None) -> Approval:
        """Rewrite, verify, audit; return the approval or raise (after auditing the refusal)."""
        if not hasattr(self, "_zt_source"):  # fetched with get()/list(): verify it all the same
            self._zt_adopt(None)
        self._zt_approval = None
        origin = getattr(self, "_zt_origin", "")
        base = _DecisionContext(self, f"{origin}-{action}" if origin else action, sa, net)
        try:
            report, spec_bytes, result, runtime = self._verify_bytes(sa, net)
        except ZeroTrustViolation as exc:
            self.last_report = exc.report
            base.record("refused", report=exc.report, reason=exc.what)
            raise
        except ZtError as exc:
            base.record("refused", reason=exc.message)
            raise
        except Exception as exc:  # any other failure is a refusal too, and is audited as one
            base.record("refused", reason=f"{type(exc).__name__}: {exc}")
            raise
        digest = hashlib.sha256(spec_bytes).hexdigest()
        self.last_report = report
        if not report.allowed:
            base.record("refused", report=report, sha256=digest, steps=result.steps)
            raise ZeroTrustViolation(report, what=f"refused: {_summary(report)}")
        base.record("allowed", report=report, sha256=digest, steps=result.steps)
        assert sa is not None  # an allowed report always has a pipeline SA
        return Approval(sa, net, spec_bytes, digest, report, runtime)

    def _verify_bytes(self, sa: str | None, net: str | None) -> tuple[Any, bytes, Any, bytes]:
        from zt_pipelines.errors import DefaultIdentityError, UnpinnedIdentityError
        from zt_pipelines.spec import rewrite_pipeline
        from zt_pipelines.verification import check_rewritten

        pipeline_name = str(self._zt_source.get("pipelineInfo", {}).get("name", ""))
        identity = classify_identity(sa, where="pipeline service account")
        if identity.is_default:
            raise ZeroTrustViolation(
                _default_identity_report(self, pipeline_name, sa, identity.description),
                what="refused: the pipeline would run as a default identity (ZT100)",
            )
        try:
            result = rewrite_pipeline(
                self._zt_source,
                platform_docs=self._zt_platform_docs,
                parameter_values=self._zt_parameter_values,
                manifest=self._zt_manifest,
                project=self.project,
                pipeline_service_account=identity.email,
                naming_template=self._zt_naming_template or DEFAULT_NAME_TEMPLATE,
            )
        except DefaultIdentityError as exc:  # a step declared a default identity
            raise ZeroTrustViolation(
                _error_report(self, pipeline_name, "ZT100", exc),
                what=f"refused: {exc.message}",
            ) from exc
        except UnpinnedIdentityError as exc:  # an identity only known at run time
            raise ZeroTrustViolation(
                _error_report(self, pipeline_name, "ZT102", exc),
                what=f"refused: {exc.message}",
            ) from exc
        spec_bytes = canonical_spec_bytes(result.spec)
        # Verify exactly what will be submitted: the rewrite result re-read from those bytes.
        verified = replace(result, spec=json.loads(spec_bytes))
        # The parameters verified are the constructor's (edits on the resource are discarded);
        # the pipeline root is today's value, and both are submitted as verified.
        runtime = self._zt_verified_runtime()
        submitter = self._submitter()
        report = check_rewritten(
            verified,
            project=self.project,
            location=self.location,
            pipeline_service_account=identity.email,
            pipeline_root=runtime.gcs_output_directory or None,
            network=net,
            policy=self._zt_policy,
            snapshot=self._zt_snapshot,
            submitter=submitter.member if submitter else None,
            submitter_credentials=(
                ("service_account_key" if submitter.key_file else submitter.kind)
                if submitter
                else None
            ),
            credentials=self.credentials,
            now=self._zt_clock(),
            template=self._zt_template_path,
        )
        return report, spec_bytes, verified, _runtime_bytes(runtime)

    def _submitter(self) -> Any:
        """Who is submitting (``None`` when the credentials do not say); resolved once per job
        and credentials, since end-user credentials cost a tokeninfo call."""
        from zt_pipelines.gcp import describe_submitter

        cached = getattr(self, "_zt_submitter", None)
        if cached is not None and cached[0] is self.credentials:
            return cached[1]
        try:
            found = describe_submitter(self.credentials)
        except ZtError:
            found = None
        self._zt_submitter = (self.credentials, found)
        return found

    def _audit_log(self) -> AuditLog:
        target = self._zt_audit
        if isinstance(target, AuditLog):
            return target
        return AuditLog(target or default_audit_log(), clock=self._zt_clock)

    # ------------------------------------------------------------------ after the run

    def verify_run(self, *, record: bool = True) -> Any:
        """Verify this run after the fact against its approval in the audit log: every task
        ran as the approved identity, image, network, key, project and location
        (:mod:`zt_pipelines.monitor`; docs/monitoring.md). Returns the
        :class:`~zt_pipelines.policy.report.Report` (``allowed`` means verified; a read that
        failed is an error, never "verified") and appends a ``verify-run`` audit record unless
        ``record=False``."""
        from zt_pipelines.monitor.service import verify_run

        if not hasattr(self, "_zt_source"):  # fetched with get()/list()
            self._zt_adopt(None)
        verdict = verify_run(
            self.resource_name,
            project=str(self.project),
            location=str(self.location),
            audit_log=self._audit_log(),
            credentials=self.credentials,
            clock=self._zt_clock,
            record=record,
        )
        self.last_run_report = verdict.report
        return verdict.report

    def _zt_verify_after(self) -> None:
        """``verify_after=True``: wait for the run to end, verify it, raise if it does not."""
        self.wait()  # type: ignore[no-untyped-call]
        report = self.verify_run()
        if not report.allowed:
            raise ZeroTrustViolation(report, what="the run does not verify against its approval")


class _DecisionContext:
    """Collects what the audit record of one decision needs."""

    def __init__(self, job: PipelineJob, action: str, sa: str | None, net: str | None) -> None:
        self.job = job
        self.action = action
        self.sa = sa
        self.net = net

    def record(
        self,
        outcome: str,
        *,
        report: Any = None,
        reason: str = "",
        sha256: str = "",
        steps: Any = (),
    ) -> None:
        job = self.job
        findings = tuple(f.to_dict() for f in getattr(report, "findings", ()))
        decision = Decision(
            action=self.action,
            outcome="allowed" if outcome == "allowed" else "refused",
            submitter=_member_or_unknown(job),
            project=str(job.project),
            location=str(job.location),
            pipeline=str(job._zt_source.get("pipelineInfo", {}).get("name", "")),
            spec_sha256=sha256,
            identities=identities_from(
                self.sa,
                steps,
                pipeline_source="argument-or-aiplatform.init" if self.sa else "none",
            ),
            findings=findings,
            job_id=str(job.job_id),
            reason=reason or (_summary(report) if report is not None else ""),
        )
        job._audit_log().append(decision)


def _member_or_unknown(job: PipelineJob) -> str:
    submitter = job._submitter()
    return str(submitter.member) if submitter else submitter_of(job.credentials)


def _resolve(service_account: str | None, network: str | None) -> tuple[str | None, str | None]:
    """Exactly aiplatform's fallbacks: the argument, else ``aiplatform.init``'s value."""
    sa = service_account or initializer.global_config.service_account
    net = network or initializer.global_config.network
    return (sa or None), (net or None)


def _summary(report: Any) -> str:
    errors = getattr(report, "errors", ())
    if not errors:
        return "allowed" if getattr(report, "allowed", False) else "refused"
    codes = sorted({f.code for f in errors})
    return f"{len(errors)} error(s): {', '.join(codes)}"


def _default_identity_report(job: PipelineJob, pipeline: str, sa: str | None, what: str) -> Any:
    from zt_pipelines.policy.report import Finding, Report, Severity

    if sa:
        message = f"the pipeline service account {sa} is {what}"
        principal: str | None = f"serviceAccount:{sa}"
    else:
        number = _project_number(job) or "PROJECT_NUMBER"
        message = (
            "no pipeline service account: neither the service_account argument nor "
            "aiplatform.init(service_account=...) is set, so Vertex would run the pipeline as the "
            f"Compute Engine default service account ({number}-compute@developer."
            "gserviceaccount.com) — pass service_account= a dedicated account"
        )
        principal = None
    finding = Finding(
        code="ZT100", severity=Severity.ERROR, message=message, step=None, principal=principal
    )
    return Report(
        findings=(finding,),
        pipeline=pipeline,
        project=str(job.project),
        location=str(job.location),
        checked_at=job._zt_clock().isoformat(),
    )


def _emulator_default_credentials() -> Any:
    """With ``$ZT_EMULATOR_HOST`` set and no credentials anywhere, the emulator's anonymous
    caller (aiplatform would otherwise look for Application Default Credentials)."""
    if not os.environ.get(EMULATOR_ENV) or initializer.global_config._credentials is not None:
        return None
    from zt_pipelines.gcp.clients import ClientFactory

    return ClientFactory().credentials


def _split_documents(text: str, *, where: str) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """The first YAML/JSON document and the PlatformSpec documents after it."""
    from zt_pipelines.spec.template import parse_template_text

    parse_template_text(text, where=where)  # validates shape and raises TemplateError
    import yaml

    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    return docs[0], tuple(docs[1:])


def _project_number(job: PipelineJob) -> str | None:
    """The project's number when the job's snapshot knows it (for naming the default SA)."""
    snapshot = job._zt_snapshot
    if snapshot is None:
        return None
    try:
        from zt_pipelines.policy.snapshot import Snapshot
        from zt_pipelines.policy.snapshot_file import load_snapshot

        world = snapshot if isinstance(snapshot, Snapshot) else load_snapshot(snapshot)
    except ZtError:
        return None  # the check itself will report the bad snapshot
    node = world.nodes.get(f"//cloudresourcemanager.googleapis.com/projects/{job.project}")
    return node.project_number if node is not None else None


def _error_report(job: PipelineJob, pipeline: str, code: str, exc: ZtError) -> Any:
    """A one-finding report for an identity error that stopped the rewrite itself."""
    from zt_pipelines.policy.report import Finding, Report, Severity

    step = None
    if exc.where and exc.where.startswith("task "):
        step = exc.where[len("task ") :].split(":")[0].strip("'\"")
    finding = Finding(code=code, severity=Severity.ERROR, message=exc.message, step=step)
    return Report(
        findings=(finding,),
        pipeline=pipeline,
        project=str(job.project),
        location=str(job.location),
        checked_at=job._zt_clock().isoformat(),
    )


_RuntimeConfig = _gca_pipeline_job.PipelineJob.RuntimeConfig


def _runtime_bytes(runtime: Any) -> bytes:
    """A private copy of a job's ``RuntimeConfig`` (later edits of the resource do not reach it)."""
    data: bytes = _RuntimeConfig.serialize(runtime)
    return data


def _struct_to_dict(value: Any) -> Any:
    """A proto-plus Struct view (``MapComposite`` / ``RepeatedComposite``) as plain Python."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if hasattr(value, "items"):
        return {str(k): _struct_to_dict(v) for k, v in value.items()}
    return [_struct_to_dict(v) for v in value]


def _install_notebook_display() -> None:
    """In IPython, show a refused job's report as an HTML table instead of a traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return

    def show(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> Any:
        from IPython.display import HTML, display

        display(HTML(value._repr_html_()))  # type: ignore[no-untyped-call]
        print(f"ZeroTrustViolation: {value.what}")
        return None

    shell.set_custom_exc((ZeroTrustViolation,), show)


_install_notebook_display()
