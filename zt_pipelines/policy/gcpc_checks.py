"""Checks on GCPC steps' launched jobs: what they run on, where, and as whom they serve.

* **Persistent resources** (ZT120, ZT121). A step that runs as a CustomJob on a Vertex
  persistent resource starts in seconds instead of minutes, but only runs as its *own*
  service account when the resource allows custom service accounts
  (``resourceRuntimeSpec.serviceAccountSpec.enableCustomServiceAccount``); otherwise Vertex
  refuses the job. A resource the snapshot does not hold (not read, not found) is unknown,
  and unknown is not verified: fail closed.
* **Serving identity** of a deploy step (the deployed model's service account): empty means
  the Vertex AI service agent serves the model — a default identity, ZT100 like every other;
  shared with the pipeline or a step it would serve with their permissions (ZT123); it must
  exist (ZT110).
* **Where a launched job runs** (ZT122): a job in another project, or a Vertex/Dataflow/
  Dataproc job in another region, than the pipeline's must be declared — a need on that
  project in the step's declaration, the region in the policy file's ``regions``.
* **The policy file** (ZT500) judges a launched job's CMEK key and network like a step's own.

Called through :func:`zt_pipelines.policy.findings.build_report`. Pure: no IO, no clock.
"""

from __future__ import annotations

from zt_pipelines.identity import classify_identity
from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES, OrgPolicy, policy_fullmatch
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import CheckContext, persistent_resource_name, sa_member
from zt_pipelines.policy.snapshot import ServiceAccount, Snapshot
from zt_pipelines.policy.wording import plural
from zt_pipelines.resources import project_resource, service_account_resource
from zt_pipelines.spec.gcpc import LauncherKind, by_name

# job families whose location is a Vertex/Compute region (BigQuery's is a dataset location)
_REGIONAL_JOBS = ("aiplatform.", "dataflow.", "dataproc.")


def accounts_absent(snapshot: Snapshot) -> str:
    """ZT110's evidence: where the missing account was looked for."""
    if snapshot.live:
        return "not found among the service accounts listed"
    return "not in the snapshot's service accounts"


def key_summary(record: ServiceAccount) -> str:
    """``N user-managed keys: K1, K2``, ``1 Cloud Storage HMAC key: A1`` and/or ``L API keys
    bound to it: U1`` (ZT111's message)."""
    parts = []
    if record.user_managed_keys:
        keys = ", ".join(record.user_managed_keys[:8])
        parts.append(f"{plural(len(record.user_managed_keys), 'user-managed key')}: {keys}")
    if record.hmac_keys:
        keys = ", ".join(record.hmac_keys[:8])
        parts.append(f"{plural(len(record.hmac_keys), 'Cloud Storage HMAC key')}: {keys}")
    if record.api_keys:
        keys = ", ".join(record.api_keys[:8])
        parts.append(f"{plural(len(record.api_keys), 'API key')} bound to it: {keys}")
    return " and ".join(parts)


def gcpc_findings(
    steps: tuple[StepIdentity, ...], snapshot: Snapshot, policy: OrgPolicy, ctx: CheckContext
) -> list[Finding]:
    """Every finding of this module for a rewritten pipeline's steps."""
    out = persistent_resource_findings(steps, snapshot, ctx)
    for step in steps:
        kind = _kind(step)
        if kind is None:
            continue
        out += _serving_findings(step, kind, steps, snapshot, ctx)
        out += _launched_findings(step, snapshot)
        out += _placement_findings(step, kind, policy, ctx)
        out += _job_policy_findings(step, kind, policy)
    return out


def launched_identity_uses(steps: tuple[StepIdentity, ...]) -> dict[str, list[tuple[str, str]]]:
    """Every identity a step's launched job (or deployed model) runs as, other than the step's
    own: ``{email: [(task, where it was pinned), ...]}``.

    A user-set launched identity (a GCPC ``service_account`` or ``dataflow_service_account``
    pipeline parameter feeding many components) is shared by every job it feeds; the shared
    identity check (ZT103) counts these uses with the steps' own.
    """
    uses: dict[str, list[tuple[str, str]]] = {}
    for step in steps:
        own = (step.service_account or "").lower()
        launched = (step.launched_service_account or "").lower()
        if launched and launched != own:
            uses.setdefault(launched, []).append((step.task, step.launched_identity_field))
        # a deployed model's server runs user code as its serving identity: one per model
        serving = (step.serving_service_account or "").lower()
        if serving and serving not in (own, launched):
            uses.setdefault(serving, []).append(
                (step.task, "the deployed model's serving identity")
            )
    return uses


def _kind(step: StepIdentity) -> LauncherKind | None:
    if not step.job_kind:
        return None
    try:
        return by_name(step.job_kind)
    except KeyError:
        return None  # refused when its requirements are derived (TemplateError)


def _serving_findings(
    step: StepIdentity,
    kind: LauncherKind,
    steps: tuple[StepIdentity, ...],
    snapshot: Snapshot,
    ctx: CheckContext,
) -> list[Finding]:
    if kind.serving_identity is None:
        return []
    serving = (step.serving_service_account or "").lower()
    if not serving:
        return [
            _f(
                "ZT100",
                "the deployed model would serve as the Vertex AI service agent: the deploy "
                "step has no serving identity (ModelDeployOp service_account)",
                step=step.task,
                evidence=(Evidence("identity", detail="serving identity empty"),),
            )
        ]
    found = classify_identity(serving, where=f"task {step.task!r}: serving identity")
    who = sa_member(serving)
    if found.is_default:
        return [
            _f(
                "ZT100",
                f"the deployed model would serve as {found.description} ({serving})",
                step=step.task,
                principal=who,
                evidence=(Evidence("identity", detail=found.default_kind or ""),),
            )
        ]
    out: list[Finding] = []
    sharers = sorted(
        {s.task for s in steps if (s.service_account or "").lower() == serving}
        | ({"the pipeline"} if serving == ctx.pipeline_service_account.lower() else set())
    )
    if sharers:
        out.append(
            _f(
                "ZT123",
                f"the serving identity {serving} also runs {', '.join(sharers)}: the deployed "
                "model would serve with their permissions",
                step=step.task,
                principal=who,
                evidence=tuple(Evidence("identity", detail=f"used by {t}") for t in sharers),
            )
        )
    return out + _account_findings(serving, "serving identity", step.task, snapshot)


def _launched_findings(step: StepIdentity, snapshot: Snapshot) -> list[Finding]:
    """A launched identity other than the step's own (e.g. a Dataflow worker) is checked
    like a step identity: it must exist, be enabled and hold no user-managed keys."""
    launched = (step.launched_service_account or "").lower()
    if not launched or launched == (step.service_account or "").lower():
        return []
    if classify_identity(launched, where=f"task {step.task!r}: launched identity").is_default:
        return [
            _f(
                "ZT100",
                f"the job the step launches would run as a default identity ({launched})",
                step=step.task,
                principal=sa_member(launched),
            )
        ]
    return _account_findings(launched, "launched job identity", step.task, snapshot)


def _account_findings(email: str, what: str, task: str, snapshot: Snapshot) -> list[Finding]:
    node = service_account_resource(email)
    who = sa_member(email)
    record = snapshot.service_accounts.get(email)
    if record is None:
        unreadable = {u.target for u in snapshot.unreadable}
        if unreadable & {email, node, who}:
            return []  # reported as ZT400: we could not look
        return [
            _f(
                "ZT110",
                f"{what} {email} does not exist",
                step=task,
                principal=who,
                resource=node,
                evidence=(Evidence("missing", node=node, detail=accounts_absent(snapshot)),),
            )
        ]
    out: list[Finding] = []
    if record.disabled:
        out.append(
            _f(
                "ZT110",
                f"{what} {email} is disabled",
                step=task,
                principal=who,
                resource=node,
                evidence=(Evidence("identity", node=node, detail="disabled"),),
            )
        )
    if record.user_managed_keys or record.hmac_keys or record.api_keys:
        out.append(
            _f(
                "ZT111",
                f"{what} {email} has {key_summary(record)}",
                step=task,
                principal=who,
                resource=node,
            )
        )
    return out


def _placement_findings(
    step: StepIdentity, kind: LauncherKind, policy: OrgPolicy, ctx: CheckContext
) -> list[Finding]:
    out: list[Finding] = []
    project = step.job_project
    said = f"the step's {kind.name} job runs in project {project}"
    if not project and step.code_project:
        # a container step's CustomJob runs in the pipeline's place; its own project input
        # says where its code is pointed: undeclared, the same surprise
        project = step.code_project
        said = f"the step's code is pointed at project {project} (its project input)"
    if project and project != ctx.project:
        declared = {n.resource.name for n in step.needs}
        if project_resource(project) not in declared:
            out.append(
                _f(
                    "ZT122",
                    f"{said}, not the pipeline's {ctx.project}, and the step does not declare it",
                    step=step.task,
                    resource=project_resource(project),
                    evidence=(Evidence("policy", detail=f"job project {project}"),),
                )
            )
    location = step.job_location
    said = f"the step's {kind.name} job runs in {location}"
    if not location and step.code_location:
        location = step.code_location
        said = f"the step's code is pointed at {location} (its location input)"
    if (
        location
        and location != ctx.location
        and kind.job.startswith(_REGIONAL_JOBS)
        and location not in (policy.allowed_regions or ())
    ):
        out.append(
            _f(
                "ZT122",
                f"{said}, not the pipeline's {ctx.location}, and the policy file does not "
                "allow that region",
                step=step.task,
                evidence=(Evidence("policy", detail=f"job location {location}"),),
            )
        )
    return out


def _job_policy_findings(
    step: StepIdentity, kind: LauncherKind, policy: OrgPolicy
) -> list[Finding]:
    out: list[Finding] = []
    src = Evidence("policy", detail=f"organisation policy {policy.source}")
    if policy.cmek_key_pattern and kind.cmek_inputs:
        key = step.job_kms_key
        if not key or not policy_fullmatch(policy.cmek_key_pattern, key):
            out.append(
                _f(
                    "ZT500",
                    f"the step's {kind.name} job's CMEK key {key or '(none)'} does not match "
                    f"{policy.cmek_key_pattern}",
                    step=step.task,
                    evidence=(src,),
                )
            )
    if (
        policy.required_network
        and kind.network_inputs
        and step.job_network is not None
        and not policy_fullmatch(policy.required_network, step.job_network)
    ):
        out.append(
            _f(
                "ZT500",
                f"the step's {kind.name} job's network {step.job_network or '(none)'} does "
                f"not match the required {policy.required_network}",
                step=step.task,
                evidence=(src,),
            )
        )
    return out


def persistent_resource_findings(
    steps: tuple[StepIdentity, ...], snapshot: Snapshot, ctx: CheckContext
) -> list[Finding]:
    """ZT120 / ZT121 for every step that runs on a persistent resource."""
    out: list[Finding] = []
    unreadable = {u.target: u for u in snapshot.unreadable}
    for step in steps:
        name = persistent_resource_name(step, ctx.project, ctx.location)
        if name is None:
            continue
        who = sa_member(step.service_account) if step.service_account else None
        found = snapshot.persistent_resources.get(name)
        if found is None:
            failed = unreadable.get(name)
            if failed is not None:
                continue  # the failed read itself is reported (ZT400)
            out.append(
                _f(
                    "ZT121",
                    f"persistent resource {name} is unknown ("
                    + (
                        "not found"
                        if snapshot.live
                        else "not in the snapshot, or it does not exist"
                    )
                    + "): whether it runs jobs as their own service account cannot be "
                    "verified",
                    step=step.task,
                    principal=who,
                    resource=name,
                    evidence=(Evidence("missing", node=name, detail="persistentResources.get"),),
                )
            )
        elif not found.enable_custom_service_account:
            out.append(
                _f(
                    "ZT120",
                    f"persistent resource {name} does not allow custom service accounts "
                    "(resourceRuntimeSpec.serviceAccountSpec.enableCustomServiceAccount is "
                    "false): the step's CustomJob cannot run as its own identity there",
                    step=step.task,
                    principal=who,
                    resource=name,
                    evidence=(
                        Evidence(
                            "identity",
                            node=name,
                            detail="enableCustomServiceAccount=false"
                            + (f", state {found.state}" if found.state else ""),
                        ),
                    ),
                )
            )
    return out


def _f(code: str, message: str, **kw: object) -> Finding:
    return Finding(code, DEFAULT_SEVERITIES[code], message, **kw)  # type: ignore[arg-type]
