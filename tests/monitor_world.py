"""Shared fixtures of the monitoring tests: the example world plus an auditor, the emulator
with simulated runs, and jobs submitted through zt_pipelines.PipelineJob."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any

from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, Snapshot
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
        "storage.hmacKeys.list",
        "apikeys.keys.list",
        "privilegedaccessmanager.entitlements.list",
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


LAKE = "zt-lake"
LAKE_NODE = f"//cloudresourcemanager.googleapis.com/projects/{LAKE}"
RAW = "//storage.googleapis.com/zt-demo-raw-data"


def lake_world(*, auditor_reads_lake: bool = True) -> Snapshot:
    """The monitor world with the raw-data bucket owned by another project, zt-lake."""
    base = monitor_world()
    nodes = dict(base.nodes)
    folder = nodes[f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"].parent
    bindings = (Binding("roles/zt.monitor", (AUDITOR,)),) if auditor_reads_lake else ()
    nodes[LAKE_NODE] = Node(
        LAKE_NODE,
        "project",
        parent=folder,
        project_number="777000111",
        policy=AllowPolicy(bindings=bindings),
    )
    # a project's custom role is grantable only in that project: the lake defines its own
    reader = f"projects/{LAKE}/roles/objectReader"
    roles = dict(base.roles)
    roles[reader] = Role(reader, frozenset({"storage.objects.get", "storage.objects.list"}))
    raw = nodes[RAW]
    assert raw.policy is not None
    nodes[RAW] = dataclasses.replace(
        raw,
        parent=LAKE_NODE,
        policy=dataclasses.replace(
            raw.policy,
            bindings=tuple(
                dataclasses.replace(b, role=reader) if b.role.endswith("/objectReader") else b
                for b in raw.policy.bindings
            ),
        ),
    )
    return dataclasses.replace(base, nodes=nodes, roles=roles)
