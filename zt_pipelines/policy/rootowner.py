"""Whose bucket the pipeline root is in (ZT404) — pure.

Vertex writes every artifact of a run (datasets, models, the values passed between steps)
under the pipeline root. A root in another project's bucket hands all of them to that
project's owners, who can read them and replace them between steps. aiplatform only logs a
warning for such a root; the drop-in's ``submit()`` refuses it (``PipelineRootOwnerError``).
This module makes every verification say the same before any submission: ``check`` (file or
live), ``verify()``, plan's checks. The bucket's parent is read like any resource's (a snapshot
file's ``parent``, the live read's project number); an owner that cannot be read is not
proven to be the pipeline's project, so it is refused too (fail closed, as ``submit()``).
"""

from __future__ import annotations

from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import CheckContext
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.resources import STORAGE

__all__ = ["root_owner_findings"]

_PROJECTS = "//cloudresourcemanager.googleapis.com/projects/"


def root_owner_findings(snapshot: Snapshot, context: CheckContext) -> list[Finding]:
    """ZT404 when ``context.pipeline_root``'s bucket is not proven to be in ``context.project``.

    Args:
        snapshot: the IAM state the check judges (file or live).
        context: the submission; nothing is said without a ``gs://`` pipeline root.

    Returns:
        No finding, or one naming the bucket and its project (or why it is unknown).
    """
    root = context.pipeline_root
    if not root or not root.startswith("gs://"):
        return []
    bucket = root[len("gs://") :].split("/", 1)[0]
    name = f"{STORAGE}{bucket}"
    expected = f"{_PROJECTS}{context.project}"
    if any(u.target == name for u in snapshot.unreadable):
        return []  # reported as ZT400: we could not look
    node = snapshot.nodes.get(name)
    if node is not None and node.parent == expected:
        return []
    own = snapshot.nodes.get(expected)
    if node is None:
        where = "among the resources read" if snapshot.live else "in the snapshot"
        why = f"the bucket is not {where}, so its project cannot be verified"
    elif node.parent is None:
        why = "the bucket's project is unknown"
    elif not node.parent.startswith(_PROJECTS):
        why = f"the bucket's parent is {node.parent}, not a project"
    else:
        owner = node.parent[len(_PROJECTS) :]
        if owner.isdigit() and (own is None or not own.project_number):
            why = (
                f"it belongs to project number {owner}, and the number of {context.project} "
                "is unknown here"
            )
        elif owner.isdigit() and own is not None and own.project_number == owner:
            return []
        else:
            what = "project number" if owner.isdigit() else "project"
            why = f"it belongs to {what} {owner}, not to {context.project}"
    return [
        Finding(
            "ZT404",
            DEFAULT_SEVERITIES["ZT404"],
            f"the pipeline root {root} is in bucket {bucket}: {why}; that project's owners "
            "would read every artifact of the run and could replace them between steps",
            resource=name,
            evidence=(
                Evidence(
                    "policy",
                    node=name,
                    detail=f"parent {node.parent}" if node and node.parent else "parent unknown",
                ),
            ),
        )
    ]
