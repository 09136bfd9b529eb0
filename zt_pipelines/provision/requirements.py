"""What each identity needs, as provisioning sees it: declared plus implicit needs.

Provisioning must grant exactly what a check verifies, or a check after ``apply`` would not
be allowed. So the requirements come from the verification engine's own derivation,
:func:`zt_pipelines.policy.requirements.derive_requirements` (one rule, one place), and are
only regrouped here: one :class:`~zt_pipelines.provision.plan.Want` per requirement, marked
``declared`` (the user asked for it; escalation-capable permissions are refused) or implicit
(artifacts, orchestration, launch, submit: the pipeline's own needs).

Pure: no IO.
"""

from __future__ import annotations

from zt_pipelines.model import RewriteResult
from zt_pipelines.policy.requirements import Requirement, derive_requirements, pipeline_root_of
from zt_pipelines.provision.plan import PIPELINE_STEP, SUBMITTER_STEP, Want, want_order


def wants_for(
    result: RewriteResult,
    *,
    project: str,
    location: str,
    pipeline_service_account: str,
    pipeline_root: str | None = None,
    submitter: str | None = None,
) -> tuple[Want, ...]:
    """Every (member, resource, permission) the pipeline needs, declared and implicit."""
    requirements = derive_requirements(
        result,
        project=project,
        location=location,
        pipeline_service_account=pipeline_service_account,
        pipeline_root=pipeline_root_of(result, pipeline_root),
        submitter=submitter,
    )
    return tuple(sorted((_want(r) for r in requirements), key=want_order))


def _want(req: Requirement) -> Want:
    if req.kind == "submit":
        step = SUBMITTER_STEP
    elif req.kind in ("orchestration", "launch") or req.step is None:
        step = PIPELINE_STEP  # the pipeline SA's own needs, even when launching one step
    else:
        step = req.step
    return Want(req.principal, req.resource, (req.permission,), step, req.kind == "declared")
