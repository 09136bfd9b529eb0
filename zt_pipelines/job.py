"""Drop-in ``zt_pipelines.PipelineJob``: rewrite → verify → audit → submit the verified request.

Change one import (``from zt_pipelines import PipelineJob``) and nothing reaches Vertex unless it
is verified. Every path that can start a pipeline run — :meth:`PipelineJob.submit`,
:meth:`~PipelineJob.run` (sync and async), :meth:`~PipelineJob.create_schedule`, an
``aiplatform.PipelineJobSchedule`` built from the job, a :meth:`~PipelineJob.clone` and a job
fetched with ``PipelineJob.get``/``list`` — goes through one decision
(:meth:`PipelineJob._decide`) that

1. resolves the pipeline service account exactly as aiplatform does (argument, else
   ``aiplatform.init(service_account=...)``, else none → Vertex would use the Compute Engine
   default SA → ZT100);
2. takes every parameter value from every source, merged as aiplatform merges them (the
   template's own ``runtimeConfig.parameterValues`` when it is a PipelineJob JSON, then the
   constructor's), and the pipeline root that will be sent;
3. rewrites the template so every step runs as its own service account (:mod:`zt_pipelines.spec`)
   with those values and that root;
4. builds the whole ``CreatePipelineJob`` request (spec, runtime config, service account,
   network, reserved ranges, labels, encryption, template URI) and verifies it
   (:func:`zt_pipelines.verification.check_rewritten`, against ``snapshot=`` or live, at the
   endpoint captured when the job was built);
5. appends the decision to the audit log, identified by the sha256 of everything judged;
6. refuses with :class:`~zt_pipelines.errors.ZeroTrustViolation` — or sends exactly the approved
   request, with the client, endpoint, project, location and credentials captured when the job
   was built. If any of those (or the service account/network) changed between construction,
   decision and submission, it refuses with :class:`~zt_pipelines.errors.StateChangedError`.

aiplatform's ``submit`` also creates the pipeline-root bucket when it is missing and checks the
bucket's project (its "bucket squatting" check, which asks Resource Manager outside any
configured endpoint and logs a traceback when it cannot). This class sends the request itself:
the pipeline root must exist and grant what the run needs, or verification refuses, and the
bucket's project is checked through the captured endpoint (see docs/threat-model.md).

This module does IO (files, the clock, Google APIs through aiplatform and :mod:`zt_pipelines.gcp`);
the decisions themselves are made by the pure :mod:`zt_pipelines.spec` and
:mod:`zt_pipelines.policy`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import os
import re
import sys
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
from google.cloud.aiplatform.utils import pipeline_utils as _pipeline_utils
from google.cloud.aiplatform_v1.types import pipeline_job as _gca_pipeline_job

from zt_pipelines.audit import AuditLog, Decision, default_audit_log, identities_from, utc_now
from zt_pipelines.errors import (
    ApiError,
    InputError,
    MissingCredentialsError,
    PipelineRootOwnerError,
    StateChangedError,
    TemplateError,
    ZeroTrustViolation,
    ZtError,
)
from zt_pipelines.fingerprint import (
    DECISION_LABELS,
    SPEC_LABELS,
    VERIFIED_LABEL,
    canonical_spec_bytes,
    decision_sha256,
    spec_sha256,
)
from zt_pipelines.gcp.submitter import submitter_of
from zt_pipelines.identity import DEFAULT_NAME_TEMPLATE, classify_identity
from zt_pipelines.model import JobFields

EMULATOR_ENV = "ZT_EMULATOR_HOST"
_ZT_LABELS = frozenset((*SPEC_LABELS, *DECISION_LABELS, VERIFIED_LABEL))
_LOG = logging.getLogger("zt_pipelines.job")


def decision_document(
    request: Any,
    steps: Any,
    *,
    target: CallTarget,
    spec_digest: str | None = None,
    judged_under: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything one decision judged, as plain JSON: the request as it is (or would be) sent
    — minus our own labels, with the spec as its sha256 — where it goes, and every step's
    identity, needs and job fields. ``spec_digest`` is the spec's sha256 when the caller has
    it (the request's own ``pipeline_spec`` is then not read). ``judged_under``: what the
    decision was judged under besides the request — the policy (source and digests), the
    snapshot file, a what-if time — hashed with the rest."""
    from google.protobuf import json_format

    sent = json_format.MessageToDict(type(request).pb(request), preserving_proto_field_name=True)
    spec = sent.pop("pipeline_spec", {})
    sent["labels"] = {k: v for k, v in sent.get("labels", {}).items() if k not in _ZT_LABELS}
    return {
        "request": sent,
        "spec_sha256": spec_digest if spec_digest is not None else spec_sha256(spec),
        "target": {
            "project": target.project,
            "location": target.location,
            "endpoint": target.api_endpoint,
            "emulator": target.emulator_host,
        },
        "steps": [_plain(dataclasses.asdict(step)) for step in steps],
        **({"judged_under": _plain(judged_under)} if judged_under else {}),
    }


def _plain(value: Any) -> Any:
    """Dataclass fields as JSON values (enums and resource refs by their text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass(frozen=True)
class CallTarget:
    """Where and as whom this job talks to Google, captured once (at construction).

    Attributes:
        project, location: the job's.
        api_endpoint: ``aiplatform.init(api_endpoint=...)`` when the job's client was built
            (``""`` for Google's regional endpoint).
        emulator_host: ``$ZT_EMULATOR_HOST`` then (``""`` when unset).
        credentials: the job's credentials object (compared by identity).
    """

    project: str
    location: str
    api_endpoint: str
    emulator_host: str
    credentials: Any = dataclasses.field(compare=False, repr=False)

    def changes(self, now: CallTarget) -> list[str]:
        """What differs in ``now`` (empty when nothing did)."""
        found = [
            f"{name} {getattr(self, name)!r} → {getattr(now, name)!r}"
            for name in ("project", "location", "api_endpoint", "emulator_host")
            if getattr(self, name) != getattr(now, name)
        ]
        if now.credentials is not self.credentials:
            found.append("credentials were replaced")
        return found


@dataclass(frozen=True)
class Approval:
    """An allowed decision: the exact request that was verified and may now be sent.

    Attributes:
        service_account: the pipeline service account that was verified.
        network: the network that was verified (``None`` when none).
        spec_bytes: :func:`canonical_spec_bytes` of the rewritten spec.
        sha256: their hex sha256 (also in the job labels and the audit record).
        report: the verification report (allowed; may hold warnings).
        runtime_config: the serialised ``RuntimeConfig`` verified with the spec.
        request: the serialised ``PipelineJob`` resource that is sent.
        decision_sha256: sha256 of everything judged (the audit record's).
        target: where and as whom it was decided.
        reserved_ip_ranges: the ranges that were verified with the network.
        window_until: a schedule's end time its grants were judged until (RFC 3339; ``""``
            for ever, or not a schedule).
    """

    service_account: str
    network: str | None
    spec_bytes: bytes
    sha256: str
    report: Any
    runtime_config: bytes = b""
    request: bytes = b""
    decision_sha256: str = ""
    target: CallTarget | None = None
    reserved_ip_ranges: tuple[str, ...] = ()
    window_until: str = ""

    def spec(self) -> dict[str, Any]:
        """A fresh dict parsed from :attr:`spec_bytes` (what is handed to aiplatform)."""
        value: dict[str, Any] = json.loads(self.spec_bytes)
        return value

    def resource(self) -> Any:
        """A fresh ``PipelineJob`` resource parsed from :attr:`request`."""
        return _gca_pipeline_job.PipelineJob.deserialize(self.request)


def use_emulator_if_configured() -> str | None:
    """Point aiplatform (and google-cloud-storage) at ``$ZT_EMULATOR_HOST`` when it is set.

    Returns the ``host:port`` in use, or ``None``. Nothing else changes: the same code runs
    against Vertex when the variable is unset (and a ``STORAGE_EMULATOR_HOST`` exported here
    for an earlier emulator is taken back).

    Raises:
        InputError: the variable is set but is not ``HOST:PORT``.
    """
    from zt_pipelines.gcp.clients import emulator_host_from_env

    host = emulator_host_from_env()
    if not host:
        # the emulator is off: take back the variable exported for it (it would keep sending
        # google-cloud-storage, and the caller's token, to the old address)
        if _EXPORTED and os.environ.get("STORAGE_EMULATOR_HOST") == _EXPORTED.pop():
            del os.environ["STORAGE_EMULATOR_HOST"]
        return None
    endpoint = f"http://{host}"
    if initializer.global_config.api_endpoint != endpoint:
        aiplatform.init(api_endpoint=endpoint, api_transport="rest")
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    _EXPORTED[:] = [endpoint]
    return host


_EXPORTED: list[str] = []  # the STORAGE_EMULATOR_HOST value use_emulator_if_configured set


class PipelineJob(  # type: ignore[misc]
    aiplatform.PipelineJob,
    experiment_loggable_schemas=(),  # type: ignore[arg-type]  # leave aiplatform's experiment registry pointing at its class
):
    """``google.cloud.aiplatform.PipelineJob`` that refuses anything it cannot verify.

    The constructor takes exactly aiplatform's arguments, plus keyword-only extras:

    Args:
        manifest: a manifest file (or loaded mapping) declaring identities/needs per task for
            templates compiled elsewhere.
        policy: an organisation policy file (``zt-policy.yaml``) or loaded policy (default:
            ``$ZT_POLICY``); refused (``PolicyBindingError``) when the organisation made its
            file binding and this one decides otherwise. Every record names the policy used.
        snapshot: verify against this snapshot file (or loaded
            :class:`~zt_pipelines.policy.snapshot.Snapshot`) instead of live IAM state; the
            job can then be built and verified without any Google credentials.
        audit_log: where decisions are appended (a path or an
            :class:`~zt_pipelines.audit.AuditLog`); default :func:`default_audit_log`.
        naming_template: the naming template for derived step identities.
        clock: returns the current time (condition evaluation, suppression expiry) — for
            tests: outside a test suite (``ZT_TEST_CLOCK=1``) a time more than five minutes
            from the machine's clock is a what-if (ZT405, never allowed) and records carry
            the machine's time.
        step_defaults: CustomJob fields for every step that does not set its own (a
            :class:`~zt_pipelines.model.JobFields` or a mapping of its fields), e.g.
            ``{"persistent_resource_id": "train-pool"}`` to start every step on a Vertex
            persistent resource; verified like a step's own.

    Raises:
        InputError: no project is configured, or a template/argument is malformed.
        MissingCredentialsError: a remote template and no credentials anywhere.
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
        step_defaults: JobFields | Mapping[str, Any] | None = None,
    ) -> None:
        from zt_pipelines.declare import resolve_step_defaults
        from zt_pipelines.gcp.templates import fetch_template_text

        defaults = resolve_step_defaults(step_defaults)  # bad input fails before any fetch
        use_emulator_if_configured()
        credentials, missing = _credentials_or_placeholder(credentials)
        text = fetch_template_text(
            template_path,
            project=project or initializer.global_config._project,
            credentials=None if missing else credentials,
        )
        refusal = _BuildRefusal(audit_log, clock, credentials, project, location, job_id)
        with refusal.recorded(template_path):  # what aiplatform would refuse, refused here
            first, platform_docs = _split_documents(text, where=template_path)
            refusal.named(first)
            job_doc = _as_job_document(first, where=template_path, job_id=job_id)
            _require_known_parameters(job_doc, parameter_values, where=template_path)
        project = _project_or_error(project, have_credentials=not missing)
        refusal.project = project
        # aiplatform reads one YAML document only: hand it the first (the PipelineSpec or
        # PipelineJob) and keep the PlatformSpec documents (our declarations) for the rewrite.
        with (
            tempfile.TemporaryDirectory(prefix="zt-template-") as tmp,
            refusal.recorded(template_path, by_aiplatform=True),
        ):
            first_path = os.path.join(tmp, "template.json")
            Path(first_path).write_text(_yaml11_json(first))
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
        # every parameter value from every source, merged exactly as aiplatform merged them
        merged = _merged_parameters(job_doc, parameter_values)
        _require_same_keys(merged, self._gca_resource.runtime_config, where=template_path)
        self._zt_init(
            source=json.loads(
                canonical_spec_bytes(_struct_to_dict(self._gca_resource.pipeline_spec))
            ),
            platform_docs=platform_docs,
            parameter_values=merged,
            options={
                "manifest": manifest,
                "policy": policy,
                "snapshot": snapshot,
                "audit": audit_log,
                "naming_template": naming_template,
                "step_defaults": defaults,
            },
            clock=clock or utc_now,
            template_path=template_path,
            credentials_missing=missing,
        )

    def _zt_init(
        self,
        *,
        source: dict[str, Any],
        platform_docs: tuple[dict[str, Any], ...],
        parameter_values: dict[str, Any],
        options: Mapping[str, Any],
        clock: Callable[[], datetime],
        template_path: str,
        credentials_missing: bool,
        origin: str = "",
    ) -> None:
        """The state every instance carries, however aiplatform built it (``__init__``,
        ``clone``, ``get``, ``list``): what is verified and where it is sent."""
        self._zt_source = source
        self._zt_platform_docs = platform_docs
        self._zt_parameter_values = parameter_values
        self._zt_runtime = _runtime_bytes(self._gca_resource.runtime_config)
        # the request as built (its spec is _zt_source): later edits never reach Vertex
        self._zt_base = _request_bytes_without_spec(self._gca_resource)
        self._zt_manifest: Any = options.get("manifest")
        self._zt_policy: Any = options.get("policy")
        self._zt_snapshot: Any = options.get("snapshot")
        self._zt_audit: Any = options.get("audit")
        self._zt_naming_template: str | None = options.get("naming_template")
        self._zt_step_defaults: JobFields | None = options.get("step_defaults")
        self._zt_clock = clock
        self._zt_template_path = template_path
        self._zt_credentials_missing = credentials_missing
        self._zt_approval: Approval | None = None
        self._zt_pending: Approval | None = None
        self._zt_scheduling: Approval | None = None
        self._zt_window: Any = None  # a schedule's RunWindow while one is being verified
        self._zt_origin = origin  # "cli" when the zt-pipelines CLI drives the job (audit action)
        self._zt_target = self._zt_current_target()
        self._zt_api_client = getattr(self, "api_client", None)  # the client submit must use
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
        """Verify, then send exactly the verified request (aiplatform's ``submit``).

        With ``verify_after=True``, wait for the run to end and verify it against its approval
        (:meth:`verify_run`).

        Raises:
            ZeroTrustViolation: verification found an error; nothing was created — or, with
                ``verify_after``, the run did not verify.
            StateChangedError: endpoint, project, location, credentials, service account or
                network changed since the job was built or verified; nothing was created.
            MissingCredentialsError: no credentials to submit with.
        """
        self._zt_ensure()
        sa, net = _resolve(service_account, network)
        ranges = tuple(reserved_ip_ranges or ())
        approval = self._take_pending(sa, net, ranges) or self._decide("submit", sa, net, ranges)
        self._zt_require_unchanged(approval, "submit", sa, net)
        self._zt_send(approval, create_request_timeout, experiment, enable_preflight_validations)
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
        self._zt_ensure()
        if verify_after and not sync:
            raise InputError(
                "verify_after needs sync=True",
                where="PipelineJob.run",
                fix="or call job.wait() and then job.verify_run()",
            )
        sa, net = _resolve(service_account, network)
        ranges = tuple(reserved_ip_ranges or ())
        self._zt_pending = self._decide("run", sa, net, ranges)
        try:
            super().run(
                service_account=sa,
                network=net,
                reserved_ip_ranges=reserved_ip_ranges,
                sync=sync,
                create_request_timeout=create_request_timeout,
                enable_preflight_validations=enable_preflight_validations,
            )
        finally:
            if sync:  # an approval is for this run only: never left for a later submit()
                self._zt_pending = None
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

        A grant with a ``request.time`` condition must hold until ``end_time`` (for ever
        without one), or the schedule is refused (ZT223).

        Raises:
            ZeroTrustViolation: verification found an error; no schedule was created.
            StateChangedError: what the decision was taken against changed; no schedule.
        """
        self._zt_ensure()
        sa, net = _resolve(service_account, network)
        from zt_pipelines.policy.timewindow import schedule_window

        # the schedule's runs need the grants until its end time (for ever without one)
        self._zt_window = schedule_window(end_time)
        try:
            approval = self._decide("schedule", sa, net)
        finally:
            self._zt_window = None
        self._zt_require_unchanged(approval, "schedule", sa, net)
        self._install(approval)
        self._zt_scheduling = approval  # the schedule built below reads pipeline_spec
        try:
            return self._zt_create_schedule(
                approval,
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

    def _zt_create_schedule(self, approval: Approval, **kwargs: Any) -> Any:
        """aiplatform's ``create_schedule``; what it refuses itself (a display name over 128
        characters ...) becomes a typed error with a record voiding the approval."""
        try:
            return super().create_schedule(**kwargs)
        except _AIPLATFORM_REFUSALS as exc:
            raise self._zt_refused_before_send(approval, "create_schedule", exc) from exc

    def _zt_refused_before_send(self, approval: Approval, where: str, exc: Exception) -> ZtError:
        """aiplatform refused an argument after the decision: nothing was sent. Recorded as
        ``send-failed`` (the approval is void) and returned as a typed error."""
        text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        error = InputError(
            f"aiplatform refused the {where} argument ({type(exc).__name__}: {text[:300]}); "
            "nothing was sent",
            where=f"job {self.job_id}",
            fix="correct the argument and submit again: it verifies and sends anew",
        )
        context = _DecisionContext(self, "send-failed", approval.service_account, approval.network)
        with contextlib.suppress(ZtError):
            context.record(
                "refused",
                reason=error.message,
                sha256=approval.sha256,
                decision=approval.decision_sha256,
            )
        return error

    @property
    def pipeline_spec(self) -> Any:
        """The spec, verified first when it leaves this object.

        ``aiplatform.PipelineJobSchedule(pipeline_job=job, ...)`` reads this property: the job
        is verified here against the pipeline SA from ``aiplatform.init`` (the one the
        schedule will use when ``create()`` gets none), a refusal raises
        :class:`ZeroTrustViolation` before any schedule exists, and the schedule is bound to
        the approval: its ``create()`` refuses (:class:`StateChangedError`) to run under
        another service account, network, endpoint or credentials.
        """
        approval = self._exported_approval()
        if approval is None:
            return self._gca_resource.pipeline_spec
        _bind_reading_schedule(self, approval)
        return approval.spec()

    @property
    def runtime_config(self) -> Any:
        """The runtime config that is verified: every parameter value as merged at
        construction and the pipeline root then (an edit on the resource is discarded). The
        schedule reads it before :attr:`pipeline_spec`, so it must not carry an unverified
        edit."""
        self._zt_ensure()
        if self._zt_scheduling is not None:
            return _RuntimeConfig.deserialize(self._zt_scheduling.runtime_config)
        return _RuntimeConfig.deserialize(self._zt_runtime)

    def _exported_approval(self) -> Approval | None:
        """The approval an exported spec must come from: decided afresh on every export (an
        earlier submit's approval is not reused for a schedule)."""
        self._zt_ensure()
        if self._zt_scheduling is not None:  # inside create_schedule(), verified for its SA
            return self._zt_scheduling
        sa, net = _resolve(None, None)
        from zt_pipelines.policy.timewindow import schedule_window

        # an exported spec feeds a schedule whose end is not known here: for ever (fail closed)
        self._zt_window = schedule_window(None)
        try:
            approval = self._decide("export", sa, net)
        finally:
            self._zt_window = None
        self._zt_require_unchanged(approval, "export", sa, net)
        self._install(approval)
        return approval

    @property
    def verified_sha256(self) -> str | None:
        """The sha256 of the spec last verified and installed, if any."""
        approval = getattr(self, "_zt_approval", None)
        return approval.sha256 if approval else None

    @property
    def decision_sha256(self) -> str | None:
        """The sha256 of everything the last approval judged (the audit record's
        ``decision_sha256`` and the job's ``zt-decision-sha256-*`` labels), if any."""
        approval = getattr(self, "_zt_approval", None)
        return approval.decision_sha256 if approval else None

    def _repr_html_(self) -> str:
        import html

        report = getattr(self, "last_report", None)
        # the display name is any UTF-8 a project member chose (a job from get()/list()): text
        where = html.escape(f"{self._gca_resource.display_name} ({self.project}/{self.location})")
        head = f"<p><b>zt_pipelines.PipelineJob</b> {where}</p>"
        if report is None:
            return head + "<p>not verified yet: call <code>verify()</code></p>"
        return head + str(report._repr_html_())

    # ------------------------------------------------------------------ clone, get, list

    def clone(self, *args: Any, **kwargs: Any) -> PipelineJob:
        """aiplatform's ``clone``; the copy keeps this job's template, declarations and
        options, merges ``parameter_values`` over this job's as aiplatform does, and is
        verified on submit like any other job (aiplatform builds it without ``__init__``)."""
        self._zt_ensure()
        # aiplatform's clone copies runtime config, labels and encryption spec from
        # _gca_resource: hand it the request captured at construction, never a later edit
        captured = _gca_pipeline_job.PipelineJob.deserialize(self._zt_base)
        captured.runtime_config = _RuntimeConfig.deserialize(self._zt_runtime)
        captured.pipeline_spec = self._zt_source
        edited, self._gca_resource = self._gca_resource, captured
        try:
            cloned: PipelineJob = super().clone(*args, **kwargs)  # type: ignore[assignment]
        finally:
            self._gca_resource = edited
        bound = inspect.signature(aiplatform.PipelineJob.clone).bind(self, *args, **kwargs)
        new_values = bound.arguments.get("parameter_values")
        source = self._zt_source
        if bound.arguments.get("enable_caching") is not None:
            source = json.loads(json.dumps(source))
            _pipeline_jobs._set_enable_caching_value(source, bound.arguments["enable_caching"])
        cloned._zt_init(
            source=source,
            platform_docs=self._zt_platform_docs,
            parameter_values=_merge_over(source, self._zt_parameter_values, new_values),
            options={n: getattr(self, f"_zt_{n}") for n in _OPTIONS},
            clock=self._zt_clock,
            template_path=self._zt_template_path,
            credentials_missing=self._zt_credentials_missing
            and cloned.credentials is self.credentials,
            origin=self._zt_origin,
        )
        _require_same_keys(
            cloned._zt_parameter_values, cloned._gca_resource.runtime_config, where="clone"
        )
        return cloned

    def _zt_ensure(self) -> None:
        """State for an instance aiplatform built without ``__init__`` (``get``, ``list``):
        its spec, parameters and pipeline root as Vertex holds them, verified all the same."""
        if "_zt_source" in vars(self):
            return
        runtime = self._gca_resource.runtime_config
        if str(self.project).isdigit():  # Vertex names jobs by project number: find the id
            self.project = _project_id_of(str(self.project), self.credentials)
        self._parent = initializer.global_config.common_location_path(
            project=self.project, location=self.location
        )
        if not getattr(self, "job_id", None):  # a new run of a fetched job: a new id
            name = str(self._gca_resource.pipeline_spec.get("pipelineInfo", {}).get("name", ""))
            self.job_id = "{}-{}".format(
                re.sub("[^-0-9a-z]+", "-", name.lower()).strip("-") or "pipeline",
                _pipeline_jobs._get_current_time().strftime("%Y%m%d%H%M%S"),
            )
        self._zt_init(
            source=json.loads(
                canonical_spec_bytes(_struct_to_dict(self._gca_resource.pipeline_spec))
            ),
            platform_docs=(),
            parameter_values=_parameters_from_runtime(runtime),
            options={},
            clock=utc_now,
            template_path=str(self._gca_resource.template_uri or ""),
            credentials_missing=False,
        )
        # a fetched job carries Vertex's output-only fields; what is sent again is the request
        base = _gca_pipeline_job.PipelineJob(
            display_name=self._gca_resource.display_name,
            pipeline_spec=self._gca_resource.pipeline_spec,
            runtime_config=runtime,
            labels=dict(self._gca_resource.labels),
            encryption_spec=self._gca_resource.encryption_spec,
            template_uri=self._gca_resource.template_uri,
        )
        self._zt_base = _request_bytes_without_spec(base)

    # ------------------------------------------------------------------ the decision

    def _take_pending(
        self, sa: str | None, net: str | None, ranges: tuple[str, ...]
    ) -> Approval | None:
        pending, self._zt_pending = self._zt_pending, None
        if pending is not None and (
            pending.service_account,
            pending.network,
            pending.reserved_ip_ranges,
        ) == (sa, net, ranges):
            return pending
        return None

    def _install(self, approval: Approval) -> None:
        """Make the approved request the job's resource (aiplatform's schedule reads it)."""
        self._gca_resource = approval.resource()
        self._zt_approval = approval

    def _zt_current_target(self) -> CallTarget:
        from zt_pipelines.gcp.clients import emulator_host_from_env

        return CallTarget(
            project=str(self.project),
            location=str(self.location),
            api_endpoint=str(initializer.global_config.api_endpoint or ""),
            emulator_host=emulator_host_from_env() or "",
            credentials=self.credentials,
        )

    def _zt_require_unchanged(
        self, approval: Approval, action: str, sa: str | None, net: str | None
    ) -> None:
        """Refuse (audited) when what ``approval`` was decided against is no longer what the
        action would use."""
        changed: list[str] = []
        if approval.target is not None:
            changed = approval.target.changes(self._zt_current_target())
        if (approval.service_account, approval.network) != (sa, net):
            changed.append(
                f"service account/network {approval.service_account!r}/{approval.network!r} "
                f"→ {sa!r}/{net!r}"
            )
        if changed:
            self._zt_refuse_changed(action, sa, net, changed)

    def _zt_refuse_changed(
        self, action: str, sa: str | None, net: str | None, changed: list[str]
    ) -> None:
        error = StateChangedError(
            "refused: " + "; ".join(changed),
            where=f"{action} of job {self.job_id}",
            fix="build a new job (and verify it) after changing aiplatform.init, the "
            "credentials or ZT_EMULATOR_HOST",
        )
        self._zt_approval = None
        _DecisionContext(self, self._zt_action(action), sa, net).record(
            "refused", reason=error.message
        )
        raise error

    def _zt_action(self, action: str) -> str:
        origin = getattr(self, "_zt_origin", "")
        return f"{origin}-{action}" if origin else action

    def _decide(
        self, action: str, sa: str | None, net: str | None, ranges: tuple[str, ...] = ()
    ) -> Approval:
        """Rewrite, verify, audit; return the approval or raise (after auditing the refusal)."""
        self._zt_ensure()
        self._zt_approval = None
        self._zt_judged_under: dict[str, Any] = {}
        base = _DecisionContext(self, self._zt_action(action), sa, net)
        try:
            changed = self._zt_target.changes(self._zt_current_target())
            if changed:
                raise StateChangedError(
                    "refused: changed since the job was built: " + "; ".join(changed),
                    where=f"{action} of job {self.job_id}",
                    fix="build a new job after changing aiplatform.init, the credentials or "
                    "ZT_EMULATOR_HOST",
                )
            if self._zt_credentials_missing and (
                action not in ("verify",) or self._zt_snapshot is None
            ):
                raise MissingCredentialsError(
                    "no Google credentials to "
                    + ("verify live IAM state" if action == "verify" else action + " with"),
                    where=f"job {self.job_id}",
                    fix="call aiplatform.init(credentials=...) or run `gcloud auth "
                    "application-default login`; verify(snapshot=...) works offline",
                )
            found = self._verify_request(sa, net, ranges)
            report, spec_bytes, result, runtime, request, document = found
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
        decided = decision_sha256(document)
        self.last_report = report
        if not report.allowed:
            base.record(
                "refused", report=report, sha256=digest, steps=result.steps, decision=decided
            )
            raise ZeroTrustViolation(report, what=f"refused: {_summary(report)}")
        assert sa is not None  # an allowed report always has a pipeline SA
        base.record(
            "allowed",
            report=report,
            sha256=digest,
            steps=result.steps,
            decision=decided,
            baseline=self._zt_baseline(sa, result.steps, request),
        )
        labels = dict(request.labels)
        labels.update(
            {
                SPEC_LABELS[0]: digest[:32],
                SPEC_LABELS[1]: digest[32:],
                DECISION_LABELS[0]: decided[:32],
                DECISION_LABELS[1]: decided[32:],
                VERIFIED_LABEL: "true",
            }
        )
        request.labels = labels
        return Approval(
            sa,
            net,
            spec_bytes,
            digest,
            report,
            runtime,
            _gca_pipeline_job.PipelineJob.serialize(request),
            decided,
            self._zt_target,
            ranges,
            window_until=str(self._zt_judged_under.get("window", {}).get("until", "")),
        )

    def _verify_request(
        self, sa: str | None, net: str | None, ranges: tuple[str, ...]
    ) -> tuple[Any, bytes, Any, bytes, Any, dict[str, Any]]:
        """Rewrite with every parameter value and the pipeline root that will be sent, build
        the request, and verify it: (report, spec bytes, rewrite result, runtime, request,
        decision document)."""
        from zt_pipelines.errors import DefaultIdentityError, UnpinnedIdentityError
        from zt_pipelines.spec import rewrite_pipeline
        from zt_pipelines.verification import check_rewritten

        pipeline_name = str(self._zt_source.get("pipelineInfo", {}).get("name", ""))
        judged, org_policy = self._zt_authority()
        identity = classify_identity(sa, where="pipeline service account")
        if identity.is_default:
            raise ZeroTrustViolation(
                _default_identity_report(self, pipeline_name, sa, identity.description),
                what="refused: the pipeline would run as a default identity (ZT100)",
            )
        runtime = _RuntimeConfig.deserialize(self._zt_runtime)
        pipeline_root = runtime.gcs_output_directory or None
        options: dict[str, Any] = {}
        if _REWRITE_TAKES_PIPELINE_ROOT:
            options["pipeline_root"] = pipeline_root
        try:
            result = rewrite_pipeline(
                self._zt_source,
                platform_docs=self._zt_platform_docs,
                parameter_values=dict(self._zt_parameter_values),
                manifest=self._zt_manifest,
                project=self._zt_target.project,
                location=self._zt_target.location,
                pipeline_service_account=identity.email,
                naming_template=self._zt_naming_template or DEFAULT_NAME_TEMPLATE,
                defaults=self._zt_step_defaults,
                # the artifacts the run is given: a waived step pasting one covers that one
                input_artifacts={k: v.artifact_id for k, v in runtime.input_artifacts.items()},
                **options,
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
        request = _gca_pipeline_job.PipelineJob.deserialize(self._zt_base)
        request.runtime_config = runtime
        request.service_account = identity.email
        request.network = net or ""
        request.reserved_ip_ranges = list(ranges)
        document = decision_document(
            request,
            verified.steps,
            target=self._zt_target,
            spec_digest=hashlib.sha256(spec_bytes).hexdigest(),
            judged_under=self._zt_judged_under,
        )
        request.pipeline_spec = verified.spec
        submitter = self._submitter()
        self._zt_seen = None  # set by check_rewritten (on_snapshot) to the state it decides on
        report = check_rewritten(
            verified,
            project=self._zt_target.project,
            location=self._zt_target.location,
            pipeline_service_account=identity.email,
            # aiplatform's own default (a bucket it would create at submit, named with a
            # random salt of this process) is no root anyone chose: judged as `check` does
            pipeline_root=None if self._zt_generated_root(pipeline_root) else pipeline_root,
            network=net,
            policy=org_policy,
            snapshot=self._zt_snapshot,
            submitter=submitter.member if submitter else None,
            submitter_credentials=(
                ("service_account_key" if submitter.key_file else submitter.kind)
                if submitter
                else None
            ),
            credentials=None if self._zt_credentials_missing else self.credentials,
            now=judged.judged_at,
            template=self._zt_template_path,
            emulator_host=self._zt_target.emulator_host,
            on_snapshot=self._zt_saw,
            run_window=getattr(self, "_zt_window", None),
        )
        recorded = self._zt_judged_under.get("snapshot")
        if recorded and "path" in recorded and _snapshot_identity(self._zt_snapshot) != recorded:
            from zt_pipelines.errors import SnapshotError

            raise SnapshotError(  # the record must name the file that was judged
                "the snapshot file changed while it was read",
                where=str(self._zt_snapshot),
                fix="verify again once nothing writes to it",
            )
        return report, spec_bytes, verified, _runtime_bytes(runtime), request, document

    def _zt_authority(self) -> tuple[Any, Any]:
        """Who decides this decision's rules and time: the clock read once (the machine's, or
        a what-if, :mod:`zt_pipelines.clock`), the policy resolved once (the organisation's
        when binding, :mod:`zt_pipelines.authority`) and the snapshot file read; all three
        are kept for the record and hashed into ``decision_sha256``."""
        from zt_pipelines.authority import resolve_policy
        from zt_pipelines.clock import decision_time, stamp
        from zt_pipelines.policy.orgpolicy import policy_identity

        judged = decision_time(self._zt_clock())
        org_policy = resolve_policy(self._zt_policy)
        named = policy_identity(org_policy)
        if not named["source"].startswith("<"):  # a file: which one, whatever the cwd was
            named["source"] = str(Path(named["source"]).absolute())
        under: dict[str, Any] = {"policy": named}
        snapshot = _snapshot_identity(self._zt_snapshot)
        if snapshot:
            under["snapshot"] = snapshot
        if judged.far:
            under["judged_at"] = stamp(judged.judged_at)
        window = getattr(self, "_zt_window", None)
        if window is not None:  # a schedule's: judged until its end (for ever without one)
            under["window"] = {"until": stamp(window.until) if window.until else ""}
        self._zt_judged_under = under
        self._zt_judged_at = judged.judged_at
        return judged, org_policy

    def _zt_saw(self, snapshot: Any) -> None:
        """The IAM state the decision is taken on (kept for the approval's baseline)."""
        self._zt_seen = snapshot

    def _zt_baseline(self, sa: str, steps: Any, request: Any) -> dict[str, Any]:
        """What this approval saw, for drift and verify-run (:mod:`zt_pipelines.monitor.baseline`);
        if it cannot be computed, the record says why and drift reports it (ZT629)."""
        from google.protobuf import json_format

        from zt_pipelines.monitor.baseline import (
            approval_baseline,
            request_fields,
            runtime_parts,
        )

        try:
            runtime = request.runtime_config
            parts = runtime_parts(
                json_format.MessageToDict(
                    type(runtime).pb(runtime), preserving_proto_field_name=True
                ),
                labels=dict(request.labels),
                network=str(request.network),
                reserved_ip_ranges=[str(r) for r in request.reserved_ip_ranges],
                kms_key=str(request.encryption_spec.kms_key_name),
                request=request_fields(request),
            )
            baseline = approval_baseline(
                getattr(self, "_zt_seen", None),  # type: ignore[arg-type]
                [
                    sa,
                    *(
                        e or ""
                        for s in steps
                        for e in (
                            s.service_account,
                            s.launched_service_account,
                            s.serving_service_account,
                        )
                    ),
                ],
                now=getattr(self, "_zt_judged_at", None) or self._zt_clock(),
                pipeline_root=str(runtime.gcs_output_directory) or None,
                runtime=parts,
                source="snapshot" if self._zt_snapshot is not None else "live",
            )
            snapshot = getattr(self, "_zt_judged_under", {}).get("snapshot")
            if snapshot:  # which file: a decision on a snapshot names it (path, sha256)
                baseline["snapshot"] = dict(snapshot)
            return baseline
        except Exception as exc:  # a baseline is for later checks: never what refuses a run
            _LOG.warning("the approval's baseline could not be recorded: %s", exc)
            return {"unavailable": f"{type(exc).__name__}: {str(exc)[:200]}"}

    def _zt_send(
        self,
        approval: Approval,
        create_request_timeout: float | None,
        experiment: Any,
        enable_preflight_validations: bool | None,
    ) -> None:
        """Send the approved request with the client built at construction (aiplatform's
        ``submit`` without its bucket create-or-check, see the module docstring)."""
        target = approval.target or self._zt_target
        parent = f"projects/{target.project}/locations/{target.location}"
        changed = []
        if getattr(self, "_parent", parent) != parent:  # aiplatform's create target
            changed.append(f"the job's parent is {self._parent!r}, the approval's {parent!r}")
        if self.api_client is not getattr(self, "_zt_api_client", self.api_client):
            changed.append("the job's API client was replaced after construction")
        if changed:
            self._zt_refuse_changed("submit", approval.service_account, approval.network, changed)
        self._install(approval)
        self._zt_check_pipeline_root_owner(approval)
        if experiment:
            try:
                self._validate_experiment(experiment)
            except Exception as exc:  # aiplatform's ValueError/RuntimeError: typed, recorded
                raise self._zt_refused_before_send(approval, "experiment", exc) from exc
        _pipeline_jobs._LOGGER.log_create_with_lro(self.__class__)
        request = approval.resource()
        if enable_preflight_validations:
            request.preflight_validations = True
        try:
            self._gca_resource = self.api_client.create_pipeline_job(
                parent=parent,
                pipeline_job=request,
                pipeline_job_id=self.job_id,
                timeout=create_request_timeout,
            )
        except Exception as exc:
            self._zt_send_failed(approval, parent, exc)
            raise  # not reached: _zt_send_failed raises
        _pipeline_jobs._LOGGER.log_create_complete_with_getter(
            self.__class__, self._gca_resource, "pipeline_job"
        )
        _pipeline_jobs._LOGGER.info(f"View Pipeline Job:\n{self._dashboard_uri()}")
        if experiment:
            self._associate_to_experiment(experiment)

    def _zt_generated_root(self, root: str | None) -> bool:
        """True when ``root`` is the one aiplatform generated because nobody gave one (no
        argument, template root or ``aiplatform.init(staging_bucket=...)``)."""
        from google.cloud.aiplatform.utils import gcs_utils

        if not root:
            return False
        generated = gcs_utils.generate_gcs_directory_for_pipeline_artifacts(
            project=self._zt_target.project, location=self._zt_target.location
        )
        return bool(root == generated)

    def _zt_send_failed(self, approval: Approval, parent: str, exc: BaseException) -> None:
        """A create Vertex did not confirm: record it (the approval of this job id is void —
        a job that shows up with that id later is judged a shadow, not the approved run) and
        raise a typed error instead of the client's traceback. No retry: a create that timed
        out may have happened, and a second one would be a second run."""
        from google.api_core import exceptions as gexc

        if not isinstance(exc, (gexc.GoogleAPIError, OSError)):
            raise exc
        code = getattr(exc, "code", None)
        status = getattr(code, "name", "") or type(exc).__name__
        text = str(getattr(exc, "message", "") or exc)
        message = next((line.strip() for line in text.splitlines() if line.strip()), status)[:200]
        context = _DecisionContext(self, "send-failed", approval.service_account, approval.network)
        # if the audit log itself fails, the error below still says what happened
        with contextlib.suppress(ZtError):
            context.record(
                "refused",
                reason=f"creating the approved job failed ({status}: {message}); its approval "
                "is void",
                sha256=approval.sha256,
                decision=approval.decision_sha256,
            )
        raise ApiError(
            f"creating the pipeline job failed ({status}: {message})",
            where=f"{parent}/pipelineJobs/{self.job_id}",
            fix="Vertex did not confirm the create, so the job may or may not exist; its "
            "approval is void in the audit log (a job with this id is reported as a shadow by "
            "`zt-pipelines monitor`). Submit again: it verifies and sends anew",
        ) from exc

    def _zt_check_pipeline_root_owner(self, approval: Approval) -> None:
        """aiplatform's bucket-squatting check, through the captured endpoint: a pipeline root
        in a bucket of another project refuses, and so does one whose owner cannot be read
        (missing, unreadable): fail closed, where aiplatform logs and goes on."""
        root = _RuntimeConfig.deserialize(approval.runtime_config).gcs_output_directory
        if not root.startswith("gs://"):
            return
        bucket = root[len("gs://") :].split("/", 1)[0]
        target = approval.target or self._zt_target
        try:
            from zt_pipelines.gcp.clients import ClientFactory

            factory = ClientFactory(
                self.credentials, emulator_host=target.emulator_host, project=target.project
            )
            owner = str(factory.storage().get_bucket(bucket).project_number or "")
            project = factory.projects().get_project(name=f"projects/{target.project}")
            expected = str(project.name).rsplit("/", 1)[-1]
        except Exception as exc:
            # aiplatform logs this and goes on; a zero-trust submit does not: a bucket that
            # cannot be read (or does not exist yet) may be another project's by run time
            owner, expected = "", ""
            why = f"its owner could not be read ({type(exc).__name__}: {str(exc)[:200]})"
        else:
            why = (
                f"it belongs to project number {owner}, not to {target.project} ({expected})"
                " — a bucket squatting attack?"
            )
        finally:
            if "factory" in locals():
                factory.close()
        if not owner or owner != expected:
            error = PipelineRootOwnerError(
                f"refused: the pipeline-root bucket {bucket!r}: {why}",
                where=root,
                fix="use a pipeline root in an existing bucket of the job's project that the "
                "submitter can read (storage.buckets.get)",
            )
            self._zt_approval = None
            _DecisionContext(
                self, self._zt_action("submit"), approval.service_account, approval.network
            ).record("refused", reason=error.message)
            raise error

    def _submitter(self) -> Any:
        """Who is submitting (``None`` when the credentials do not say); resolved once per job
        and credentials, since end-user credentials cost a tokeninfo call."""
        from zt_pipelines.gcp import describe_submitter

        if getattr(self, "_zt_credentials_missing", False):
            return None
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

        self._zt_ensure()  # fetched with get()/list()
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


_OPTIONS = ("manifest", "policy", "snapshot", "audit", "naming_template", "step_defaults")


def _project_id_of(number: str, credentials: Any) -> str:
    """The project id of project ``number`` (Resource Manager, at the configured endpoint).

    Raises:
        ApiError: it cannot be read (a fetched job is then not verified, nor sent).
    """
    from zt_pipelines.errors import ApiError
    from zt_pipelines.gcp.clients import ClientFactory

    factory = ClientFactory(credentials)
    try:
        return str(factory.projects().get_project(name=f"projects/{number}").project_id)
    except Exception as exc:  # any API failure: we cannot know what we would verify
        raise ApiError(
            f"cannot resolve project number {number} to its id ({type(exc).__name__})",
            where="PipelineJob.get",
            fix="grant resourcemanager.projects.get, or build the job from its template",
        ) from exc
    finally:
        factory.close()


def _rewrite_takes_pipeline_root() -> bool:
    from zt_pipelines.spec import rewrite_pipeline

    return "pipeline_root" in inspect.signature(rewrite_pipeline).parameters


_REWRITE_TAKES_PIPELINE_ROOT = _rewrite_takes_pipeline_root()


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
        decision: str = "",
        baseline: Mapping[str, Any] | None = None,
    ) -> None:
        job = self.job
        findings = tuple(f.to_dict() for f in getattr(report, "findings", ()))
        under: Mapping[str, Any] = getattr(job, "_zt_judged_under", None) or {}
        decision_record = Decision(
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
            decision_sha256=decision,
            baseline=baseline,
            policy=under.get("policy"),
            judged_at=str(under.get("judged_at", "")),
            window=under.get("window"),
        )
        job._audit_log().append(decision_record)


def _snapshot_identity(snapshot: Any) -> dict[str, str]:
    """What names the snapshot a decision was judged on: a file's path and the sha256 of its
    content (decompressed for ``.gz``), a dict's canonical JSON sha256; empty for live state.

    Raises:
        SnapshotError: the file cannot be read (the check would refuse it the same way).
    """
    if snapshot is None:
        return {}
    from zt_pipelines import loaders
    from zt_pipelines.errors import SnapshotError

    if isinstance(snapshot, (str, os.PathLike)):
        raw = loaders.read_bytes(snapshot, kind="snapshot", error=SnapshotError)
        path = str(Path(snapshot).absolute())
        return {"path": path, "sha256": hashlib.sha256(raw).hexdigest()}
    if isinstance(snapshot, Mapping):
        return {"kind": "dict", "sha256": decision_sha256(snapshot)}
    return {"kind": type(snapshot).__name__}


def _member_or_unknown(job: PipelineJob) -> str:
    submitter = job._submitter()
    if submitter:
        return str(submitter.member)
    if getattr(job, "_zt_credentials_missing", False):
        return "unknown"
    return submitter_of(job.credentials)


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
    return f"{len(errors)} error{'' if len(errors) == 1 else 's'}: {', '.join(codes)}"


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


class _NoCredentials(auth_credentials.AnonymousCredentials):  # type: ignore[misc]
    """Stands in for credentials that do not exist, so an offline (snapshot) job can be built
    and verified; any call that needs Google refuses with :class:`MissingCredentialsError`."""


def _credentials_or_placeholder(credentials: Any) -> tuple[Any, bool]:
    """(credentials, missing): the argument, else ``aiplatform.init``'s, else the emulator's
    caller (with ``$ZT_EMULATOR_HOST``), else Application Default Credentials — asked once,
    quietly — else a placeholder (``missing``)."""
    if credentials is not None:
        return credentials, False
    configured = initializer.global_config._credentials
    if configured is not None:
        return configured, False
    from zt_pipelines.gcp.clients import ClientFactory, emulator_host_from_env

    if emulator_host_from_env():
        return ClientFactory().credentials, False
    from zt_pipelines.gcp.clients import default_credentials

    try:
        found, _project = default_credentials()
    except InputError:
        return _NoCredentials(), True  # type: ignore[no-untyped-call]
    return found, False


def _project_or_error(project: str | None, *, have_credentials: bool) -> str:
    """The project as aiplatform resolves it, without ever printing google-auth's multi-line
    error: the argument, ``aiplatform.init``'s, ADC's, ``$GOOGLE_CLOUD_PROJECT``."""
    found: str | None = project or initializer.global_config._project
    if not found and have_credentials:
        try:
            found = initializer.global_config.project
        except Exception:  # google.auth's GoogleAuthError: we say it in one line below
            found = None
    found = found or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    if not found:
        raise InputError(
            "no Google Cloud project",
            where="PipelineJob",
            fix="pass project=... or call aiplatform.init(project=..., location=...)",
        )
    return str(found)


# a JSON string (skipped whole) or a number with an exponent and no fraction (``1e-05``)
_EXPONENT_ONLY = re.compile(r'"(?:\\.|[^"\\])*"|(?<![\d.])(-?\d+)(e[-+]\d+)')


def _yaml11_json(document: Mapping[str, Any]) -> str:
    """``document`` as JSON that aiplatform's YAML 1.1 reader (PyYAML ``safe_load``) types
    as JSON does: PyYAML reads ``1e-05`` (no fraction) as the string ``"1e-05"``, so such a
    float is written ``1.0e-05`` — otherwise a 0.00001 default would reach Vertex as text."""
    return _EXPONENT_ONLY.sub(
        lambda m: f"{m.group(1)}.0{m.group(2)}" if m.group(1) else m.group(0),
        json.dumps(document),
    )


def _as_job_document(
    first: dict[str, Any], *, where: str, job_id: str | None = None
) -> dict[str, Any]:
    """The template as aiplatform reads it (a PipelineJob JSON, or a spec wrapped in one),
    checked for everything aiplatform's constructor refuses (:mod:`.spec.vertex_rules`)."""
    from zt_pipelines.spec.template import check_envelope

    check_envelope(first, where=where, job_id=job_id)
    if "pipelineSpec" not in first:
        return {"pipelineSpec": first, "runtimeConfig": {}}
    values = first["runtimeConfig"].get("parameterValues", {})
    if values is not None and not isinstance(values, dict):
        raise TemplateError("runtimeConfig.parameterValues is not a mapping", where=where)
    return first


# what aiplatform's constructor raises for arguments and templates it refuses
_AIPLATFORM_REFUSALS = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


class _BuildRefusal:
    """Turns a refusal while the job is built into a typed error with an audit record: the
    rules aiplatform applies (checked first, :mod:`.spec.vertex_rules`) and anything its
    constructor still raises. There is no job yet, so the record names what is known."""

    def __init__(
        self,
        audit_log: Any,
        clock: Callable[[], datetime] | None,
        credentials: Any,
        project: str | None,
        location: str | None,
        job_id: str | None,
    ) -> None:
        self.audit_log = audit_log
        self.clock = clock or utc_now
        self.credentials = credentials
        self.project = project
        self.location = location
        self.job_id = job_id
        self.pipeline = ""

    def named(self, first: Mapping[str, Any]) -> None:
        """The pipeline's name, for the record, once the template is read."""
        spec = first.get("pipelineSpec", first)
        info = spec.get("pipelineInfo") if isinstance(spec, Mapping) else None
        name = info.get("name") if isinstance(info, Mapping) else None
        self.pipeline = name if isinstance(name, str) else ""

    @contextlib.contextmanager
    def recorded(self, where: str, *, by_aiplatform: bool = False) -> Any:
        try:
            yield
        except ZtError as exc:
            self._record(exc.message)
            raise
        except Exception as exc:
            if not by_aiplatform:
                raise
            from google.protobuf.json_format import ParseError

            kind = f"{type(exc).__module__}.{type(exc).__name__}"
            text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), kind)
            error: ZtError
            if isinstance(exc, (*_AIPLATFORM_REFUSALS, ParseError)):
                error = InputError(
                    f"aiplatform refused to build the job ({type(exc).__name__}: {text[:300]})",
                    where=where,
                    fix="correct the argument or template field it names",
                )
            else:
                error = ApiError(
                    f"aiplatform failed to build the job ({type(exc).__name__}: {text[:300]})",
                    where=where,
                )
            self._record(error.message)
            raise error from exc

    def _record(self, reason: str) -> None:
        target = self.audit_log
        log = (
            target
            if isinstance(target, AuditLog)
            else AuditLog(target or default_audit_log(), clock=self.clock)
        )
        location = self.location or initializer.global_config.location
        with contextlib.suppress(ZtError):  # the error raised still says what happened
            log.append(
                Decision(
                    action="build",
                    outcome="refused",
                    submitter=submitter_of(self.credentials),
                    project=str(self.project or initializer.global_config._project or ""),
                    location=str(location or ""),
                    pipeline=self.pipeline,
                    job_id=str(self.job_id or ""),
                    reason=reason.splitlines()[0][:500] if reason else "",
                )
            )


def _require_known_parameters(
    job_doc: dict[str, Any], values: Mapping[str, Any] | None, *, where: str
) -> None:
    """A parameter value the pipeline has no parameter for is a typo: say which, and the
    closest name (aiplatform raises a bare ``ValueError`` for it)."""
    import difflib

    from zt_pipelines.loaders import check_plain_data

    # built in Python, not parsed: bounded and sendable (no lone surrogate) like a --param
    check_plain_data(
        dict(values or {}), where=where, kind="param", error=InputError, json_only=True
    )
    root = job_doc["pipelineSpec"].get("root", {})
    known = sorted((root.get("inputDefinitions") or {}).get("parameters") or {})
    given = [k for k, v in (values or {}).items() if v is not None and k in known]
    if given:  # schema 2.0.0 and older: values for three parameter types only
        from zt_pipelines.spec.vertex_rules import check_parameter_types

        check_parameter_types(job_doc["pipelineSpec"], given, where=where)
    for name in values or {}:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1)
        pipeline = job_doc["pipelineSpec"].get("pipelineInfo", {}).get("name", "")
        shown = ", ".join(known[:12]) + (f" … ({len(known)} in all)" if len(known) > 12 else "")
        raise InputError(
            f"parameter_values names {name!r}, which pipeline {pipeline!r} does not have",
            where=where,
            fix=(f"did you mean {close[0]!r}? " if close else "")
            + (f"its parameters: {shown}" if known else "it takes no parameters"),
        )


def _merged_parameters(job_doc: dict[str, Any], values: Mapping[str, Any] | None) -> dict[str, Any]:
    """aiplatform's own merge (``PipelineRuntimeConfigBuilder``): the template's runtime
    parameters, then ``values`` over them (JSON-encoded for schema ≤ 2.0.0), ``None`` dropped."""
    builder = _pipeline_utils.PipelineRuntimeConfigBuilder.from_job_spec_json(job_doc)
    builder.update_runtime_parameters(values)
    merged: dict[str, Any] = builder._parameter_values
    return {k: v for k, v in merged.items() if v is not None}


def _merge_over(
    source: Mapping[str, Any], base: Mapping[str, Any], values: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``values`` merged over ``base`` as aiplatform's clone merges them."""
    builder = _pipeline_utils.PipelineRuntimeConfigBuilder(
        pipeline_root="gs://unused",
        schema_version=str(source.get("schemaVersion", "2.1.0")),
        parameter_types={},
        parameter_values=dict(base),
    )
    builder.update_runtime_parameters(values)
    merged: dict[str, Any] = builder._parameter_values
    return {k: v for k, v in merged.items() if v is not None}


def _parameters_from_runtime(runtime: Any) -> dict[str, Any]:
    """The parameter values a runtime config carries (``parameterValues``, or the typed
    ``parameters`` of schema ≤ 2.0.0), as plain Python values."""
    values: dict[str, Any] = {}
    for name, value in runtime.parameter_values.items():
        values[str(name)] = _struct_to_dict(value)
    both = sorted(set(values) & {str(k) for k in runtime.parameters})
    if both:  # which of the two Vertex would use cannot be known: never verify one, send both
        raise InputError(
            f"the runtime config gives parameter {both[0]!r} twice, in parameterValues and in "
            "the legacy typed parameters",
            where="runtimeConfig",
            fix="give each parameter once (parameterValues)",
        )
    for name, typed in runtime.parameters.items():
        kind = type(typed).pb(typed).WhichOneof("value")
        values[str(name)] = getattr(typed, kind) if kind else None
    return {k: v for k, v in values.items() if v is not None}


def _require_same_keys(values: Mapping[str, Any], runtime: Any, *, where: str) -> None:
    """The parameters verified are the parameters sent: the same names, or refuse."""
    sent = {str(k) for k in runtime.parameter_values} | {str(k) for k in runtime.parameters}
    if sent != set(values):
        raise InputError(
            f"the runtime config aiplatform built carries parameters {sorted(sent)}, but the "
            f"merged values are {sorted(values)}",
            where=where,
        )


def _bind_reading_schedule(job: PipelineJob, approval: Approval) -> None:
    """When ``aiplatform.PipelineJobSchedule(pipeline_job=job)`` is reading the spec, make
    that schedule refuse to run under anything but what was approved."""
    from google.cloud.aiplatform import pipeline_job_schedules

    frame: Any = sys._getframe(2)
    for _ in range(4):  # the property, maybe a wrapper, then PipelineJobSchedule.__init__
        if frame is None:
            return
        reader = frame.f_locals.get("self")
        if isinstance(reader, pipeline_job_schedules.PipelineJobSchedule):
            if not isinstance(reader, _BoundSchedule):
                reader.__class__ = _BoundSchedule
            assert isinstance(reader, _BoundSchedule)
            reader._zt_job = job
            reader._zt_bound = approval
            reader._zt_api_client = getattr(reader, "api_client", None)  # create() must use it
            return
        frame = frame.f_back


class _BoundSchedule(aiplatform.PipelineJobSchedule):  # type: ignore[misc]
    """A schedule built from a verified job: ``create()`` resolves the service account and
    network as aiplatform does and refuses (audited) unless they, the endpoint and the
    credentials are the ones approved."""

    _zt_job: PipelineJob
    _zt_bound: Approval
    _zt_api_client: Any

    def create(self, *args: Any, **kwargs: Any) -> None:
        """aiplatform's ``create``, after checking it would run as approved."""
        bound = inspect.signature(aiplatform.PipelineJobSchedule.create).bind(self, *args, **kwargs)
        sa, net = _resolve(bound.arguments.get("service_account"), bound.arguments.get("network"))
        job = self._zt_job
        job._zt_require_unchanged(self._zt_bound, "schedule-create", sa, net)
        target = self._zt_bound.target or job._zt_target
        changed = []
        if self.credentials is not target.credentials:
            changed.append("the schedule's credentials are not the job's")
        if self.api_client is not getattr(self, "_zt_api_client", self.api_client):
            changed.append("the schedule's API client was replaced after construction")
        # PipelineJobSchedule(pipeline_job=job, project=..., location=...) may name another
        # place: the verified spec would run where nobody verified IAM
        parent = f"projects/{target.project}/locations/{target.location}"
        request_parent = getattr(
            getattr(self._gca_resource, "create_pipeline_job_request", None), "parent", parent
        )
        if (self.project, self.location) != (target.project, target.location):
            changed.append(
                f"the schedule is in {self.project}/{self.location}, the approval for "
                f"{target.project}/{target.location}"
            )
        for name, value in (
            ("parent", getattr(self, "_parent", parent)),
            ("request", request_parent),
        ):
            if value != parent:
                changed.append(f"the schedule's {name} is {value!r}, not {parent!r}")
        changed.extend(_request_edits(self._gca_resource, self._zt_bound, sa, net))
        if changed:
            job._zt_refuse_changed("schedule-create", sa, net, changed)
        super().create(*args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """aiplatform's ``update``, refused (audited) when it moves the end time past the one
        this schedule's grants were judged until: later runs would need grants nobody judged
        (a new schedule is verified for its own window)."""
        from zt_pipelines.policy.conditions import parse_rfc3339

        bound = inspect.signature(aiplatform.PipelineJobSchedule.update).bind(self, *args, **kwargs)
        end_time = bound.arguments.get("end_time")
        until = self._zt_bound.window_until
        if until and end_time is not None:
            try:
                later = parse_rfc3339(str(end_time)) > parse_rfc3339(until)
            except ValueError:
                later = True  # fail closed: an end time we cannot read may be any
            if later:
                self._zt_job._zt_refuse_changed(
                    "schedule-update",
                    self._zt_bound.service_account,
                    self._zt_bound.network,
                    [
                        f"the new end time {end_time} is after {until}, the end this "
                        "schedule's grants were judged until; create a new schedule (it is "
                        "verified for its own window)"
                    ],
                )
        super().update(*args, **kwargs)


# what a schedule's request copies from the verified job (PipelineJobSchedule.__init__)
_SCHEDULED_FIELDS = (
    "pipeline_spec",
    "runtime_config",
    "template_uri",
    "labels",
    "encryption_spec",
    "reserved_ip_ranges",
)


def _request_edits(schedule: Any, approval: Approval, sa: str | None, net: str | None) -> list[str]:
    """How a schedule's ``create_pipeline_job_request.pipeline_job`` differs from the approved
    request (an edit of the schedule's resource before ``create()``): the fields the schedule
    copies from the job, the SA and network ``create()`` leaves alone when it resolves none
    (``sa``/``net``), and any other field (a PSC interface, ...), which the approval never saw."""
    sent = getattr(getattr(schedule, "create_pipeline_job_request", None), "pipeline_job", None)
    if sent is None:
        return ["the schedule carries no pipeline job request"]
    approved = approval.resource()
    pb_sent, pb_approved = type(sent).pb(sent), type(approved).pb(approved)
    edits = []
    for name in _SCHEDULED_FIELDS:
        if getattr(pb_sent, name) != getattr(pb_approved, name):
            edits.append(f"the schedule's pipeline job {name} is not the approved one")
    for name, resolved in (("service_account", sa), ("network", net)):
        if (resolved or getattr(pb_sent, name)) != getattr(pb_approved, name):
            edits.append(f"the schedule's pipeline job {name} is not the approved one")
    judged = {*_SCHEDULED_FIELDS, "service_account", "network"}
    for field, _ in pb_sent.ListFields():
        if field.name not in judged:
            edits.append(f"the schedule's pipeline job sets {field.name}, which was not approved")
    return edits


def _split_documents(text: str, *, where: str) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """The first YAML/JSON document and the PlatformSpec documents after it."""
    from zt_pipelines.spec.template import parse_template_text

    parse_template_text(text, where=where)  # validates shape and raises TemplateError
    from zt_pipelines.errors import TemplateError
    from zt_pipelines.loaders import parse_text

    # the same strict loader: a second, laxer parse could read other values (YAML 1.1 `on:`
    # keys, plain dates) or fail on what the first accepted (tab-indented JSON)
    docs = [
        d
        for d in parse_text(text, where=where, kind="template", error=TemplateError)
        if d is not None
    ]
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


def _request_bytes_without_spec(resource: Any) -> bytes:
    """A serialised copy of a ``PipelineJob`` resource without its (large) pipeline spec."""
    copy = _gca_pipeline_job.PipelineJob.deserialize(
        _gca_pipeline_job.PipelineJob.serialize(resource)
    )
    _gca_pipeline_job.PipelineJob.pb(copy).ClearField("pipeline_spec")
    data: bytes = _gca_pipeline_job.PipelineJob.serialize(copy)
    return data


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
