"""Permissions that make Google run caller-chosen code as ANOTHER identity are escalations.

Submitting a Dataproc job (it runs as the cluster's service account), exec'ing into or
creating a GKE pod / workload (the node's or a workload identity), running a Cloud Run job
with overrides, updating a Deployment Manager deployment, a Composer environment or a Cloud
Build build: none asks the caller for actAs, each gives the caller another identity's power.
A step identity that holds one without needing it is refused (ZT212, an error), never only
"excess" (ZT210, a warning); a declared need for one is held back for review.
"""

import copy
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import zt_pipelines as zt
from zt_pipelines.demo import EXAMPLES_DIR, load_examples
from zt_pipelines.policy.catalogue import escalation_reason
from zt_pipelines.policy.role_catalogue import known_permissions, predefined_roles
from zt_pipelines.provision import Want, build_plan
from zt_pipelines.resources import ResourceRef

CODE_AS_ANOTHER = [
    "dataproc.jobs.create",
    "dataproc.workflowTemplates.instantiateInline",
    "container.pods.exec",
    "container.pods.attach",
    "container.pods.create",
    "container.pods.update",
    "container.deployments.create",
    "container.daemonSets.update",
    "container.cronJobs.create",
    "container.jobs.create",
    "container.serviceAccounts.createToken",
    "run.jobs.runWithOverrides",
    "run.jobs.create",
    "run.jobs.update",
    "deploymentmanager.deployments.update",
    "composer.environments.update",
    "cloudbuild.builds.update",
]
# their read-only neighbours stay plain excess
HARMLESS = ["dataproc.jobs.get", "container.pods.get", "container.pods.list", "run.jobs.get"]
PROJECT_NODE = "//cloudresourcemanager.googleapis.com/projects/zt-demo"
TRAIN = "serviceAccount:train-sa@zt-demo.iam.gserviceaccount.com"


@pytest.mark.parametrize("permission", CODE_AS_ANOTHER)
def test_each_is_a_real_permission_and_escalation_capable(permission: str) -> None:
    assert permission in known_permissions()  # a name IAM knows, from the shipped catalogue
    assert escalation_reason(permission)


@pytest.mark.parametrize("permission", HARMLESS)
def test_read_only_neighbours_are_not_escalations(permission: str) -> None:
    assert permission in known_permissions()
    assert escalation_reason(permission) is None


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> str:
    examples: ModuleType = load_examples()
    out = tmp_path_factory.mktemp("esc")
    return str(examples.compile_pipeline("training", str(out / "training.yaml")))


def world_where_train_holds(role: str, permissions: list[str] | None) -> dict[str, Any]:
    world = copy.deepcopy(yaml.safe_load((EXAMPLES_DIR / "world.yaml").read_text()))
    if permissions is not None:
        world["roles"].append({"name": role, "title": "t", "permissions": permissions})
    for node in world["nodes"]:
        if node["name"] == PROJECT_NODE:
            node["policy"]["bindings"].append({"role": role, "members": [TRAIN]})
    return world


def check(template: str, world: dict[str, Any]) -> zt.Report:
    return zt.check(
        template,
        project="zt-demo",
        location="us-central1",
        pipeline_service_account="pipeline-sa@zt-demo.iam.gserviceaccount.com",
        pipeline_root="gs://zt-demo-pipeline-root/runs",
        snapshot=world,
    )


def escalations_of_train(report: zt.Report, role: str) -> list[zt.Finding]:
    return [
        f
        for f in report.findings
        if f.code == "ZT212" and f.principal == TRAIN and role in f.message
    ]


def test_a_dataproc_submitter_step_identity_is_refused(training: str) -> None:
    # the red-team reproducer: jobs run as the cluster's SA, no actAs asked
    role = "projects/zt-demo/roles/dataprocSubmitter"
    world = world_where_train_holds(role, ["dataproc.jobs.create", "dataproc.clusters.use"])
    report = check(training, world)
    assert not report.allowed
    [found] = escalations_of_train(report, role)
    assert found.permission == "dataproc.jobs.create"


@pytest.mark.parametrize(
    "permissions",
    [
        ["container.deployments.create", "container.deployments.get"],
        ["run.jobs.runWithOverrides", "run.jobs.get"],
        ["composer.environments.update", "composer.environments.get"],
        ["cloudbuild.builds.update", "cloudbuild.builds.get"],
    ],
)
def test_a_custom_role_running_code_as_another_identity_is_refused(
    training: str, permissions: list[str]
) -> None:
    role = "projects/zt-demo/roles/runner"
    report = check(training, world_where_train_holds(role, permissions))
    assert not report.allowed
    [found] = escalations_of_train(report, role)
    assert found.permission == permissions[0]


def test_a_predefined_role_with_pod_exec_is_refused_and_a_read_only_one_is_not(
    training: str,
) -> None:
    assert "container.pods.exec" in predefined_roles()["roles/container.developer"].permissions
    report = check(training, world_where_train_holds("roles/container.developer", None))
    assert not report.allowed and escalations_of_train(report, "roles/container.developer")
    viewer = check(training, world_where_train_holds("roles/container.viewer", None))
    assert not escalations_of_train(viewer, "roles/container.viewer")


@pytest.mark.parametrize("permission", ["dataproc.jobs.create", "container.pods.exec"])
def test_a_declared_need_for_one_is_held_back_for_review(permission: str) -> None:
    step_sa = "serviceAccount:step-runner@zt-demo.iam.gserviceaccount.com"
    wants = [
        Want(step_sa, ResourceRef(PROJECT_NODE), (permission, "storage.objects.get"), "work"),
    ]
    plan = build_plan(
        wants,
        project="zt-demo",
        pipeline_service_account="pipeline-sa@zt-demo.iam.gserviceaccount.com",
    )
    assert [(h.permission, h.step) for h in plan.held_back] == [(permission, "work")]
    assert plan.needs_review
    assert not any(permission in g.permissions for g in plan.grants)


def test_the_findings_page_names_them() -> None:
    text = (Path(zt.__file__).parents[1] / "docs" / "findings.md").read_text(encoding="utf-8")
    zt212 = text[text.index("## ZT212") :]
    zt212 = zt212[: zt212.index("\n## ", 5)]
    for permission in ("dataproc.jobs.create", "container.pods.exec", "run.jobs.runWithOverrides"):
        assert permission in zt212
