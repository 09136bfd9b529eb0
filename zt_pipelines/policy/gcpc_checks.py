"""Checks on what a step's launched job runs on and where (ZT120–ZT129): persistent resources.

A step that runs as a CustomJob on a Vertex persistent resource starts in seconds instead of
minutes, but only runs as its *own* service account when the resource allows custom service
accounts (``resourceRuntimeSpec.serviceAccountSpec.enableCustomServiceAccount``); otherwise
Vertex refuses the job. A resource the snapshot does not hold (not read, not found) is
unknown, and unknown is not verified: fail closed.

Called through :func:`zt_pipelines.policy.findings.build_report`. Pure: no IO, no clock.
"""

from __future__ import annotations

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import CheckContext, persistent_resource_name, sa_member
from zt_pipelines.policy.snapshot import Snapshot


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
                    f"persistent resource {name} is unknown (not in the snapshot, or it does "
                    "not exist): whether it runs jobs as their own service account cannot be "
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
