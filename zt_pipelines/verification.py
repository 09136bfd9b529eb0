"""``zt_pipelines.verification`` (``zt.check``): verify identities before anything is submitted.

This is the IO shell around the pure engine: it reads the template, the manifest, the policy
and the snapshot files, reads the clock (unless ``now`` is given), and — when no snapshot is
given — asks the live adapters (:func:`zt_pipelines.gcp.fetch_snapshot`) for exactly the IAM
state the requirements need. Everything it decides, it decides through
:func:`zt_pipelines.policy.engine.evaluate`.

A default identity or an identity that cannot be pinned before submission is reported as a
refusing finding (ZT100 / ZT102) rather than raised, so the report says everything at once.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from zt_pipelines.clock import DecisionTime, decision_time, what_if_message
from zt_pipelines.errors import (
    ApiError,
    DefaultIdentityError,
    InputError,
    PipelineIdentityReuseError,
    UnpinnedIdentityError,
    ZtError,
)
from zt_pipelines.identity import classify_identity, submitter_member
from zt_pipelines.model import JobFields, RewriteResult
from zt_pipelines.policy.orgpolicy import OrgPolicy
from zt_pipelines.policy.report import Evidence, Finding, Report, Severity, sort_findings
from zt_pipelines.policy.requirements import (
    CheckContext,
    RunWindow,
    derive_requirements,
    needed_nodes,
    pipeline_root_of,
    submitter_credential_kind,
)
from zt_pipelines.policy.snapshot import Role, Snapshot

_LOG = logging.getLogger("zt_pipelines.verification")

# a Vertex region: letters and hyphens, then the zone digit(s) (us-central1, europe-west4)
_LOCATION = re.compile(r"^[a-z]+(?:-[a-z]+)+[0-9]+$")

SnapshotInput = str | Path | dict[str, Any] | Snapshot | None
PolicyInput = str | Path | dict[str, Any] | OrgPolicy | None


def check(
    template: str | Path | dict[str, Any],
    *,
    project: str,
    location: str,
    pipeline_service_account: str,
    pipeline_root: str | None = None,
    parameter_values: dict[str, Any] | None = None,
    manifest: Any = None,
    policy: PolicyInput = None,
    snapshot: SnapshotInput = None,
    submitter: str | None = None,
    submitter_credentials: str | None = None,
    network: str | None = None,
    credentials: Any = None,
    roles: str | Path | dict[str, Role] | None = None,
    now: datetime | None = None,
    step_defaults: JobFields | Mapping[str, Any] | None = None,
    run_window: RunWindow | None = None,
    input_artifacts: Mapping[str, str] | None = None,
) -> Report:
    """Rewrite ``template`` as it would be submitted and verify every identity in it.

    Args:
        template: a compiled pipeline: a path, a ``gs://`` / Artifact Registry / https URI
            (fetched as aiplatform fetches it, with ``credentials``), or an IR dict.
        project: the project the pipeline runs in.
        location: the region it runs in.
        pipeline_service_account: the pipeline identity.
        pipeline_root: ``gs://...`` where artifacts go (adds the implicit storage needs);
            default: the template's ``defaultPipelineRoot``.
        parameter_values: pipeline parameters (identities from parameters are pinned).
        manifest: per-task declarations for templates compiled elsewhere.
        policy: ``zt-policy.yaml`` / ``pyproject.toml`` path, a dict, or an :class:`OrgPolicy`;
            ``$ZT_POLICY`` (else the strict defaults) when ``None``; the organisation's file
            when ``ZT_POLICY_BINDING`` / ``ZT_POLICY_SHA256`` make it binding.
        snapshot: a snapshot file, dict or :class:`Snapshot`; ``None`` reads live state.
        submitter: the submitting principal (``user:...``), for ZT300 and submitter rules.
        submitter_credentials: ``user``, ``service_account_key``, ... for submitter rules.
        network: the pipeline job's network, if set.
        credentials: google-auth credentials for live mode.
        roles: a predefined-role catalogue (path or ``{name: Role}``) to add to a snapshot.
        now: the time conditions and suppressions are evaluated at (default: the machine's
            clock); more than five minutes from it, outside a test suite, the report is a
            what-if and refuses (ZT405).
        step_defaults: CustomJob fields for every step that does not set its own (a
            :class:`~zt_pipelines.model.JobFields` or a mapping of its fields, e.g.
            ``{"persistent_resource_id": "train-pool"}``).
        run_window: until when the grants must hold: a run's timeout, a schedule's end
            (:func:`~zt_pipelines.policy.timewindow.schedule_window`); default: a run of
            seven days. A grant that expires inside it is ZT223.
        input_artifacts: the pipeline's input artifacts the run is given (name -> artifact
            id, as ``PipelineJob(input_artifacts=...)``): a step pasting one is judged, and
            its ZT102 waiver matched, for that artifact.

    Raises:
        InputError: (or a subclass) for unreadable or malformed inputs (exit code 2).
    """
    from zt_pipelines.declare import resolve_step_defaults
    from zt_pipelines.spec import rewrite_pipeline

    defaults = resolve_step_defaults(step_defaults)
    submitter_credentials = submitter_credential_kind(submitter_credentials)
    if parameter_values is not None:  # built in Python: bounded and sendable, like a --param
        from zt_pipelines.loaders import check_plain_data

        check_plain_data(
            dict(parameter_values),
            where="parameter_values",
            kind="param",
            error=InputError,
            json_only=True,
        )

    _require_location(location)
    _require_submitter(submitter)
    when = decision_time(now).judged_at  # a clock that is no datetime: typed, before anything
    sa = classify_identity(pipeline_service_account, where="pipeline service account")
    template_name = str(template) if isinstance(template, (str, Path)) else ""
    source: Any = template
    if isinstance(template, str):
        from zt_pipelines.gcp.templates import fetch_template_text, is_remote

        if is_remote(template):
            from zt_pipelines.spec.template import parse_template_documents

            text = fetch_template_text(template, credentials=credentials, project=project)
            # whole documents: a PipelineJob template's runtimeConfig reaches Vertex too
            first, rest = parse_template_documents(text, where=template)
            source = (first, tuple(rest))
    ctx = CheckContext(
        project=project,
        location=location,
        pipeline_service_account=sa.email,
        pipeline_root=pipeline_root,
        submitter=submitter,
        submitter_credentials=submitter_credentials,
        network=network,
        template=template_name,
    )
    if pipeline_root is None:  # the root a run would get: the template's, as aiplatform picks
        pipeline_root = _template_root(source)
        explicit_root = None
    else:
        explicit_root = pipeline_root
    try:
        result = rewrite_pipeline(
            source,
            parameter_values=parameter_values,
            manifest=manifest,
            project=project,
            location=location,
            pipeline_service_account=sa.email or None,
            defaults=defaults,
            pipeline_root=explicit_root,  # pasted into launcher payloads: judged as sent
            input_artifacts=input_artifacts,
        )
    except DefaultIdentityError as exc:
        return _refusal("ZT100", exc, ctx, when)
    except UnpinnedIdentityError as exc:
        return _refusal("ZT102", exc, ctx, when)
    except PipelineIdentityReuseError as exc:
        return _refusal("ZT103", exc, ctx, when)
    return check_rewritten(
        result,
        project=project,
        location=location,
        pipeline_service_account=sa.email,
        pipeline_root=pipeline_root,
        policy=policy,
        snapshot=snapshot,
        submitter=submitter,
        submitter_credentials=submitter_credentials,
        network=network,
        credentials=credentials,
        roles=roles,
        now=when,
        template=template_name,
        run_window=run_window,
    )


def check_rewritten(
    result: RewriteResult,
    *,
    project: str,
    location: str,
    pipeline_service_account: str,
    pipeline_root: str | None = None,
    policy: PolicyInput = None,
    snapshot: SnapshotInput = None,
    submitter: str | None = None,
    submitter_credentials: str | None = None,
    network: str | None = None,
    credentials: Any = None,
    roles: str | Path | dict[str, Role] | None = None,
    now: datetime | None = None,
    template: str = "",
    emulator_host: str | None = None,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    run_window: RunWindow | None = None,
) -> Report:
    """Verify an already rewritten pipeline (the exact spec the drop-in ``PipelineJob`` submits).

    Parameters and manifests were applied by the rewrite that produced ``result``, so this
    function does not take them (accepting and ignoring them would surprise a caller). Without
    ``pipeline_root`` the template's ``defaultPipelineRoot`` is used, as a run (and
    provisioning) would. ``emulator_host`` pins where live state is read (the drop-in job
    passes the address it captured, so a later change of ``$ZT_EMULATOR_HOST`` is not read);
    default ``$ZT_EMULATOR_HOST``. ``on_snapshot`` is handed the IAM state the decision is
    taken on (the drop-in job records the approved identities' posture from it).
    ``run_window``: until when the grants must hold (as :func:`check`).
    """
    _require_location(location)
    _require_submitter(submitter)
    emulator = os.environ.get("ZT_EMULATOR_HOST") if emulator_host is None else emulator_host
    if snapshot is None and submitter is None:
        # live mode: whoever holds these credentials is who would submit
        submitter, submitter_credentials = _live_submitter(
            credentials, submitter_credentials, emulator or None
        )
    pipeline_root = pipeline_root_of(result, pipeline_root)
    judged = decision_time(now)
    when = judged.judged_at
    sa = classify_identity(pipeline_service_account, where="pipeline service account")
    org_policy = resolve_policy(policy)
    requirements = derive_requirements(
        result,
        project=project,
        location=location,
        pipeline_service_account=sa.email,
        pipeline_root=pipeline_root,
        submitter=submitter,
    )
    extra_roles = _roles(roles)
    started = time.perf_counter()
    _LOG.info(
        "checking %s in %s/%s: %s; submitter %s",
        result.pipeline_name,
        project,
        location,
        _source_note(snapshot, emulator).removeprefix("IAM state "),
        submitter or "unknown",
    )
    world = _snapshot(
        snapshot,
        requirements,
        result,
        sa.email,
        extra_roles,
        credentials=credentials,
        emulator_host=emulator,
        project=project,
        location=location,
    )
    if snapshot is None:  # live: the perimeters and networks the policy and steps call for
        from zt_pipelines.gcp.segmentation import fetch_segmentation, reads_needed

        perimeters, networks = reads_needed(org_policy, result.steps)
        world = fetch_segmentation(
            world,
            result.steps,
            project=project,
            perimeters=perimeters,
            networks=networks,
            location=location,
            endpoint_projects=org_policy.endpoint_projects,
            credentials=credentials,
            emulator_host=emulator or None,  # the endpoint the IAM state came from
        )
    ctx = CheckContext(
        project=project,
        location=location,
        pipeline_service_account=sa.email,
        pipeline_root=pipeline_root,
        submitter=submitter,
        submitter_credentials=submitter_credentials,
        network=network,
        template=template,
        run_window=run_window,
    )
    from zt_pipelines.policy.engine import evaluate
    from zt_pipelines.segmentation import check_segmentation

    _LOG.info(
        "IAM state: %d resources, %d service accounts, %d roles, %d unreadable (%.0f ms)",
        len(world.nodes),
        len(world.service_accounts),
        len(world.roles),
        len(world.unreadable),
        (time.perf_counter() - started) * 1000,
    )
    if on_snapshot is not None:
        on_snapshot(world)
    report = evaluate(
        requirements,
        result.steps,
        world,
        org_policy,
        now=when,
        context=ctx,
        pipeline=result.pipeline_name,
    )
    report = check_segmentation(
        report, requirements, result.steps, world, org_policy, now=when, context=ctx
    )
    report = _credentials_in_spec(report, result.spec)
    report = _unreached_defaults(report, result.steps)
    report = _what_if(report, judged)
    if _LOG.isEnabledFor(logging.INFO):
        from zt_pipelines.policy.render import plural

        _LOG.info(
            "%s: %d of %s granted, %s",
            "allowed" if report.allowed else "refused",
            len(report.granted),
            plural(len(requirements), "requirement"),
            plural(len(report.findings), "finding"),
        )
    return replace(report, notes=(*report.notes, _source_note(snapshot, emulator)))


def _what_if(report: Report, judged: DecisionTime) -> Report:
    """ZT405 when the decision was judged at a time far from the machine's (outside a test
    suite): waivers, expiries and conditions were read as of another time, so the report is a
    what-if and never allows a run."""
    if not judged.what_if:
        return report
    found = Finding(
        "ZT405",
        Severity.ERROR,
        what_if_message(
            judged,
            what="suppression expiries, time-bound grants and conditions were read at a time "
            "the run will not have",
        ),
        evidence=(Evidence("policy", detail="clock= / now= / --now"),),
    )
    return replace(report, findings=sort_findings([*report.findings, found]))


def _unreached_defaults(report: Report, steps: Any) -> Report:
    """A note per step whose launched job the pipeline-wide step defaults do not reach (a
    Dataproc batch has no PSC interface, a batch prediction no network): the defaults are
    applied to every job that has the field, and this says where they are not."""
    notes = [
        f"the step defaults {', '.join(s.job_defaults_unreached)} do not reach {s.task}: "
        f"its {s.job_kind} job takes no such field from its component (it runs without them)"
        for s in steps
        if getattr(s, "job_defaults_unreached", ())
    ]
    return replace(report, notes=(*report.notes, *notes)) if notes else report


def _credentials_in_spec(report: Report, spec: Mapping[str, Any]) -> Report:
    """ZT410 for every string of the spec that holds a key or a token (the step would act as
    whoever it belongs to; Vertex stores the spec for every reader of the job)."""
    import json

    from zt_pipelines.credentials import credential_paths, may_hold_credentials
    from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES

    if not may_hold_credentials(json.dumps(spec, ensure_ascii=False)):
        return report
    found = [
        Finding(
            "ZT410",
            DEFAULT_SEVERITIES["ZT410"],
            f"the pipeline spec holds {kind} at {path} (not shown): the step would act as "
            "whoever it belongs to, and Vertex keeps the spec for every reader of the job",
            step=_step_of(spec, path),
            evidence=(Evidence("policy", detail=path),),
        )
        for path, kind in credential_paths(spec)
    ]
    return replace(report, findings=sort_findings([*report.findings, *found]))


def _step_of(spec: Mapping[str, Any], path: str) -> str | None:
    """The tasks a spec path belongs to: ``deploymentSpec.executors.E...`` (the components run
    by executor E) or ``components.C...``, then every task of any DAG that runs them."""
    parts = path.split(".")
    components = spec.get("components") or {}
    if len(parts) > 2 and parts[:2] == ["deploymentSpec", "executors"]:
        wanted = {
            name
            for name, c in components.items()
            if isinstance(c, Mapping) and c.get("executorLabel") == parts[2]
        }
    elif len(parts) > 1 and parts[0] == "components":
        wanted = {parts[1]}
    else:
        return None
    dags = [spec.get("root") or {}, *components.values()]
    tasks = sorted(
        str(task_name)
        for dag in dags
        if isinstance(dag, Mapping)
        for task_name, task in ((dag.get("dag") or {}).get("tasks") or {}).items()
        if isinstance(task, Mapping) and (task.get("componentRef") or {}).get("name") in wanted
    )
    return ",".join(tasks) or None


def _source_note(snapshot: SnapshotInput, emulator: str | None) -> str:
    """Where the state the decision rests on came from (a report must say when it is not
    Google's APIs: one CI variable, ``ZT_EMULATOR_HOST``, points every read elsewhere)."""
    if snapshot is not None:
        name = f" {snapshot}" if isinstance(snapshot, (str, Path)) else ""
        return f"IAM state from the snapshot{name}, not read live"
    if emulator:
        return (
            f"IAM state read live from the emulator at {emulator} (ZT_EMULATOR_HOST), "
            "not from Google's APIs"
        )
    return "IAM state read live from Google's APIs"


def _template_root(source: Any) -> str | None:
    """The pipeline root a run of this template gets when none is given, as aiplatform picks
    it: the spec's ``defaultPipelineRoot``, else a PipelineJob template's
    ``runtimeConfig.gcsOutputDirectory`` (only ``gs://`` roots: Vertex takes no other)."""
    from zt_pipelines.spec.template import load_template_job

    if isinstance(source, tuple):
        document: Any = source[0]
    elif isinstance(source, (str, Path, Mapping)):
        document = source
    else:
        return None
    roots = load_template_job(document)[3]  # in aiplatform's order: the first one is used
    return roots[0] if roots and roots[0].startswith("gs://") else None


def _roles(roles: str | Path | dict[str, Role] | None) -> dict[str, Role]:
    if roles is None:
        return {}
    if isinstance(roles, dict):
        return roles
    from zt_pipelines.policy.snapshot_file import load_catalogue_file

    return load_catalogue_file(roles)


def _snapshot(
    snapshot: SnapshotInput,
    requirements: Any,
    result: RewriteResult,
    pipeline_sa: str,
    roles: dict[str, Role],
    *,
    credentials: Any,
    emulator_host: str | None,
    project: str | None = None,
    location: str | None = None,
) -> Snapshot:
    from zt_pipelines.policy.snapshot_file import load_snapshot, with_roles

    if isinstance(snapshot, Snapshot):
        return with_roles(snapshot, roles) if roles else snapshot
    if snapshot is not None:
        return load_snapshot(snapshot, roles=roles or None)
    needs = needed_nodes(
        requirements,
        steps=result.steps,
        pipeline_service_account=pipeline_sa,
        project=project,
        location=location,
    )
    try:
        from zt_pipelines.gcp import fetch_snapshot  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ApiError(
            "live verification is not available in this build",
            where="check",
            fix="pass a snapshot file (--snapshot FILE)",
        ) from exc
    live: Snapshot = fetch_snapshot(
        resources=needs.resources,
        service_accounts=needs.service_accounts,
        principals=needs.principals,
        projects=needs.projects,
        credentials=credentials,
        emulator_host=emulator_host,
        persistent_resources=needs.persistent_resources,
    )
    return with_roles(live, roles) if roles else live


def _live_submitter(
    credentials: Any, kind: str | None, emulator_host: str | None
) -> tuple[str | None, str | None]:
    """The member behind the live credentials (``None`` when they do not say: the report then
    notes that ZT300 was not checked)."""
    from zt_pipelines.errors import IdentityError
    from zt_pipelines.gcp import describe_submitter
    from zt_pipelines.gcp.clients import emulator_caller_credentials

    if credentials is None and emulator_host:
        credentials = emulator_caller_credentials()
    try:
        found = describe_submitter(credentials)
        submitter_member(found.member)  # e.g. a default SA cannot be checked as a submitter
    except IdentityError:
        return None, kind
    return found.member, kind or ("service_account_key" if found.key_file else found.kind)


def _require_location(location: str) -> None:
    if not isinstance(location, str) or not _LOCATION.match(location):
        raise InputError(
            f"location {location!r} is not a Vertex AI region",
            where="location",
            fix="e.g. us-central1 or europe-west4",
        )


def resolve_policy(policy: str | Path | dict[str, Any] | OrgPolicy | None) -> OrgPolicy:
    """The organisation policy a check applies: ``policy``, else the file ``$ZT_POLICY`` names
    (the same environment the CLI reads, so a notebook, a script, the drop-in job and the CLI
    apply the same rules), else the strict defaults — unless the organisation made its file
    binding (``ZT_POLICY_BINDING=1`` / ``ZT_POLICY_SHA256``, :mod:`zt_pipelines.authority`):
    then the file ``$ZT_POLICY`` names applies, and a ``policy`` that decides otherwise is
    refused.

    Raises:
        PolicyFileError: the file is unreadable or invalid (naming the file and the JSON
            path), or (``PolicyBindingError``) the organisation's binding policy is not the
            one given.
    """
    from zt_pipelines.authority import resolve_policy as resolve

    return resolve(policy)


def _require_submitter(submitter: str | None) -> None:
    """A submitter is one principal that holds credentials: never a group, domain or set
    (the one rule, :func:`zt_pipelines.identity.submitter_member`)."""
    if submitter is not None:
        submitter_member(submitter, where="submitter")


def _refusal(code: str, exc: ZtError, ctx: CheckContext, now: datetime) -> Report:
    """A report with one refusing finding, for errors that stop the rewrite itself."""
    step = None
    if exc.where and exc.where.startswith("task "):
        step = exc.where[len("task ") :].strip("'\"")
    finding = Finding(
        code,
        Severity.ERROR,
        exc.what + (f" — {exc.fix}" if exc.fix else ""),
        step=step,
        evidence=(Evidence("identity", detail=exc.where or ""),),
    )
    return Report(
        findings=sort_findings([finding]),
        project=ctx.project,
        location=ctx.location,
        checked_at=now.isoformat(),
        template=ctx.template,
    )
