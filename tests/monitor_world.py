"""Shared fixtures of the monitoring tests: the example world plus an auditor, the emulator
with simulated runs, and jobs submitted through zt_pipelines.PipelineJob."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any

from zt_pipelines.policy.snapshot import Binding, Role, Snapshot
from zt_pipelines.policy.snapshot_file import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "zt-demo"
LOCATION = "us-central1"
PROJECT_NODE = f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"
ORG_NODE = "//cloudresourcemanager.googleapis.com/organizations/100"
AUDITOR = "user:auditor@example.com"
#: submits (as alice may) and reads runs (as the auditor may): for verify_after
AUDITOR_AND_SUBMITTER = "user:alice@example.com"
SUBMITTER = "user:alice@example.com"
PIPELINE_SA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{PROJECT}.iam.gserviceaccount.com"
LEGACY_SA = f"legacy-sa@{PROJECT}.iam.gserviceaccount.com"
MONITOR_PERMISSIONS = frozenset(
    {
        "aiplatform.pipelineJobs.get",
        "aiplatform.pipelineJobs.list",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.list",
        "aiplatform.schedules.get",
        "aiplatform.schedules.list",
        "logging.logEntries.list",
        "logging.privateLogEntries.list",
        "resourcemanager.projects.get",
        "resourcemanager.projects.getIamPolicy",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.list",
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccountKeys.list",
        "iam.roles.get",
        "iam.roles.list",
        "iam.denypolicies.get",
        "iam.denypolicies.list",
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "cloudasset.assets.searchAllIamPolicies",
        "cloudasset.assets.searchAllResources",
    }
)


def load_example(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EXAMPLES = load_example("zt_monitor_example_pipeline", ROOT / "examples" / "pipeline.py")


def monitor_world() -> Snapshot:
    """examples/world.yaml with an auditor who may read runs, jobs, logs and IAM."""
    base = load_snapshot(ROOT / "examples" / "world.yaml")
    roles = dict(base.roles)
    roles["roles/zt.monitor"] = Role("roles/zt.monitor", MONITOR_PERMISSIONS)
    nodes = dict(base.nodes)
    org = nodes[ORG_NODE]
    assert org.policy is not None
    nodes[ORG_NODE] = dataclasses.replace(
        org,
        policy=dataclasses.replace(
            org.policy,
            bindings=(
                *org.policy.bindings,
                Binding("organizations/100/roles/ztChecker", (AUDITOR,)),
            ),
        ),
    )
    project = nodes[PROJECT_NODE]
    assert project.policy is not None
    nodes[PROJECT_NODE] = dataclasses.replace(
        project,
        policy=dataclasses.replace(
            project.policy,
            bindings=(
                *project.policy.bindings,
                Binding("roles/zt.monitor", (AUDITOR, AUDITOR_AND_SUBMITTER)),
            ),
        ),
    )
    return dataclasses.replace(base, roles=roles, nodes=nodes)


def new_job_id() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"
