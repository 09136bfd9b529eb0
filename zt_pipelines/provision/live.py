"""Read the current state a plan diffs against, live (or from the emulator). Does IO.

Everything a check of the same pipeline would read — the declared resources, the pipeline
root, the project, every step and pipeline service account and their custom roles — through
the live adapters (:func:`zt_pipelines.gcp.fetch_snapshot`), so ``plan`` and ``check`` see the
same world.
"""

from __future__ import annotations

import os
from typing import Any

from zt_pipelines.model import RewriteResult
from zt_pipelines.policy.requirements import derive_requirements, needed_nodes, pipeline_root_of
from zt_pipelines.policy.snapshot import Snapshot


def read_state(
    result: RewriteResult,
    *,
    project: str,
    pipeline_service_account: str,
    location: str = "us-central1",
    pipeline_root: str | None = None,
    submitter: str | None = None,
    credentials: Any = None,
    emulator_host: str | None = None,
) -> Snapshot:
    """The live snapshot of everything the plan of an already rewritten pipeline touches.

    Takes the :class:`~zt_pipelines.model.RewriteResult` the plan is computed from, so the
    state is read for exactly the identities (parameters, manifest) the plan uses.
    """
    from zt_pipelines.gcp import fetch_snapshot

    requirements = derive_requirements(
        result,
        project=project,
        location=location,
        pipeline_service_account=pipeline_service_account.lower(),
        pipeline_root=pipeline_root_of(result, pipeline_root),
        submitter=submitter,
    )
    needs = needed_nodes(
        requirements, steps=result.steps, pipeline_service_account=pipeline_service_account
    )
    snapshot: Snapshot = fetch_snapshot(
        resources=needs.resources,
        service_accounts=needs.service_accounts,
        principals=needs.principals,
        projects=tuple(sorted({*needs.projects, project})),
        credentials=credentials,
        emulator_host=emulator_host or os.environ.get("ZT_EMULATOR_HOST") or None,
        use_cache=False,
    )
    from zt_pipelines.gcp.segmentation import fetch_segmentation

    # perimeters and the steps' networks, so the plan can emit what segmentation lacks
    networked = any(
        s.job.network or s.job.psc_interface_config or s.job.reach is not None for s in result.steps
    )
    return fetch_segmentation(
        snapshot,
        result.steps,
        project=project,
        perimeters=True,
        networks=networked,
        credentials=credentials,
        emulator_host=emulator_host or os.environ.get("ZT_EMULATOR_HOST") or None,
    )


def read_support(
    parent: str,
    *,
    credentials: Any = None,
    emulator_host: str | None = None,
    factory: Any = None,
) -> dict[str, str]:
    """Permission → custom-role support level for every permission a custom role under
    ``parent`` (``projects/P`` or ``organizations/O``) may name, read live
    (``permissions.queryTestablePermissions``).

    Raises:
        ApiError: the read failed (after retries).
    """
    from zt_pipelines.gcp.clients import ClientFactory
    from zt_pipelines.gcp.iam_admin import IamAdminAdapter
    from zt_pipelines.resources import CRM

    factory = factory or ClientFactory(
        credentials, emulator_host=emulator_host or os.environ.get("ZT_EMULATOR_HOST") or None
    )
    return IamAdminAdapter(factory).query_testable_permissions(CRM + parent)
