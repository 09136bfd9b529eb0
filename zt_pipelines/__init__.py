"""zt-pipelines: zero trust for Vertex AI Pipelines.

Public API (imported lazily so ``import zt_pipelines`` stays cheap; aiplatform is only
imported when :class:`PipelineJob` is first used)::

    import zt_pipelines as zt

    @zt.step("train-sa@proj.iam.gserviceaccount.com",
             needs={"gs://features": ["storage.objects.get"]})
    @dsl.component
    def train(...): ...

    spec = zt.rewrite(compiled_ir, project="proj")
    report = zt.check("pipeline.yaml", project="proj", location="us-central1",
                      pipeline_service_account="pipeline-sa@proj.iam.gserviceaccount.com",
                      snapshot="snapshot.yaml")
    job = zt.PipelineJob(display_name="train", template_path="pipeline.yaml")  # drop-in
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zt_pipelines.errors import (
    ApiError,
    DeclarationError,
    DefaultIdentityError,
    IdentityError,
    InputError,
    ManifestError,
    MissingCredentialsError,
    PipelineRootOwnerError,
    PolicyFileError,
    ResourceError,
    SnapshotError,
    StateChangedError,
    TemplateError,
    ZeroTrustViolation,
    ZtError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time the names load lazily
    from zt_pipelines.declare import load_manifest, step
    from zt_pipelines.job import PipelineJob
    from zt_pipelines.policy.orgpolicy import load_policy
    from zt_pipelines.policy.report import Finding, Report
    from zt_pipelines.policy.snapshot_file import load_snapshot
    from zt_pipelines.provision import Plan, plan  # type: ignore[no-redef]
    from zt_pipelines.spec.rewrite import rewrite, rewrite_pipeline
    from zt_pipelines.verification import check

# name -> module that defines it; resolved on first attribute access.
_LAZY = {
    "step": "zt_pipelines.declare",
    "load_manifest": "zt_pipelines.declare",
    "rewrite": "zt_pipelines.spec",
    "rewrite_pipeline": "zt_pipelines.spec",
    "check": "zt_pipelines.verification",
    "Report": "zt_pipelines.policy.report",
    "Finding": "zt_pipelines.policy.report",
    "load_snapshot": "zt_pipelines.policy.snapshot_file",
    "load_policy": "zt_pipelines.policy.orgpolicy",
    "PipelineJob": "zt_pipelines.job",
    "plan": "zt_pipelines.provision",
    "Plan": "zt_pipelines.provision",
}

__all__ = [
    "ApiError",
    "DeclarationError",
    "DefaultIdentityError",
    "Finding",
    "IdentityError",
    "InputError",
    "ManifestError",
    "MissingCredentialsError",
    "PipelineJob",
    "PipelineRootOwnerError",
    "Plan",
    "PolicyFileError",
    "Report",
    "ResourceError",
    "SnapshotError",
    "StateChangedError",
    "TemplateError",
    "ZeroTrustViolation",
    "ZtError",
    "check",
    "load_manifest",
    "load_policy",
    "load_snapshot",
    "plan",
    "rewrite",
    "rewrite_pipeline",
    "step",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zt_pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
