"""A small IAM world for the emulator tests (built directly from the snapshot dataclasses)."""

from __future__ import annotations

from collections.abc import Iterator

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Condition,
    DenyPolicy,
    DenyRule,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
)

CRM = "//cloudresourcemanager.googleapis.com/"
ORG = CRM + "organizations/1001"
FOLDER = CRM + "folders/2002"
PROJECT = CRM + "projects/proj-alpha"
PROJECT_NUMBER = "123456789012"
BUCKET = "//storage.googleapis.com/zt-root-bucket"
DATASET = "//bigquery.googleapis.com/projects/proj-alpha/datasets/features"
TABLE = DATASET + "/tables/rows"

ADMIN = "serviceAccount:zt-admin@proj-alpha.iam.gserviceaccount.com"
SUBMITTER = "serviceAccount:ci-submit@proj-alpha.iam.gserviceaccount.com"
NO_ACT_AS = "serviceAccount:intern-dev@proj-alpha.iam.gserviceaccount.com"
PIPELINE_SA = "pipeline@proj-alpha.iam.gserviceaccount.com"
STEP_SA = "step-train@proj-alpha.iam.gserviceaccount.com"

ALL_ADMIN_PERMISSIONS = frozenset(
    {
        "resourcemanager.organizations.get",
        "resourcemanager.organizations.getIamPolicy",
        "resourcemanager.folders.get",
        "resourcemanager.folders.getIamPolicy",
        "resourcemanager.projects.get",
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.projects.setIamPolicy",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.list",
        "iam.serviceAccounts.create",
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccounts.setIamPolicy",
        "iam.serviceAccountKeys.list",
        "storage.hmacKeys.list",
        "apikeys.keys.list",
        "privilegedaccessmanager.entitlements.list",
        "iam.roles.get",
        "iam.roles.list",
        "iam.roles.create",
        "iam.roles.update",
        "iam.denypolicies.get",
        "iam.denypolicies.list",
        "cloudasset.assets.searchAllIamPolicies",
        "cloudasset.assets.searchAllResources",
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "storage.buckets.setIamPolicy",
        "storage.buckets.create",
        "storage.objects.create",
        "storage.objects.get",
        "storage.objects.list",
        "bigquery.datasets.get",
        "bigquery.datasets.update",
        "bigquery.tables.getIamPolicy",
        "bigquery.tables.setIamPolicy",
        "aiplatform.pipelineJobs.create",
        "aiplatform.pipelineJobs.get",
        "aiplatform.pipelineJobs.list",
        "aiplatform.pipelineJobs.cancel",
        "aiplatform.customJobs.create",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.list",
        "aiplatform.schedules.create",
        "aiplatform.schedules.get",
        "iam.serviceAccounts.actAs",
    }
)


def world(extra_sas: int = 0) -> Snapshot:
    """Org → folder → project with a bucket, a dataset and a table; an admin, a submitter who
    may act as the pipeline SA, and an intern who may create jobs but not act as anyone."""
    roles = {
        "roles/zt.admin": Role("roles/zt.admin", ALL_ADMIN_PERMISSIONS, title="Admin"),
        "roles/aiplatform.user": Role(
            "roles/aiplatform.user",
            frozenset(
                {
                    "aiplatform.pipelineJobs.create",
                    "aiplatform.pipelineJobs.get",
                    "aiplatform.pipelineJobs.list",
                    "aiplatform.customJobs.create",
                    "aiplatform.customJobs.get",
                    "aiplatform.schedules.create",
                }
            ),
            title="Vertex AI User",
        ),
        "roles/iam.serviceAccountUser": Role(
            "roles/iam.serviceAccountUser",
            frozenset({"iam.serviceAccounts.actAs", "iam.serviceAccounts.get"}),
            title="Service Account User",
        ),
        "roles/storage.objectViewer": Role(
            "roles/storage.objectViewer",
            frozenset({"storage.objects.get", "storage.objects.list"}),
            title="Storage Object Viewer",
        ),
        "roles/storage.legacyBucketReader": Role(
            "roles/storage.legacyBucketReader",
            frozenset({"storage.buckets.get", "storage.objects.list"}),
        ),
        "projects/proj-alpha/roles/customReader": Role(
            "projects/proj-alpha/roles/customReader",
            frozenset({"storage.objects.get"}),
            title="Custom reader",
        ),
    }
    nodes = {
        ORG: Node(
            ORG,
            "organization",
            policy=AllowPolicy((Binding("roles/zt.admin", (ADMIN,)),), etag="BwYAAAAAAAE="),
            display_name="example.com",
        ),
        FOLDER: Node(FOLDER, "folder", parent=ORG, policy=AllowPolicy(), display_name="ml"),
        PROJECT: Node(
            PROJECT,
            "project",
            parent=FOLDER,
            project_number=PROJECT_NUMBER,
            policy=AllowPolicy(
                (
                    Binding("roles/aiplatform.user", (SUBMITTER, NO_ACT_AS)),
                    Binding("roles/storage.legacyBucketReader", (SUBMITTER,)),
                    Binding(
                        "roles/storage.objectViewer",
                        (f"serviceAccount:{STEP_SA}",),
                        Condition("resource.name.startsWith('x')", title="prefix"),
                    ),
                )
            ),
        ),
        BUCKET: Node(
            BUCKET,
            "bucket",
            parent=PROJECT,
            policy=AllowPolicy(
                (Binding("roles/storage.objectViewer", (f"serviceAccount:{PIPELINE_SA}",)),)
            ),
        ),
        DATASET: Node(
            DATASET,
            "dataset",
            parent=PROJECT,
            policy=AllowPolicy(
                (Binding("roles/bigquery.dataViewer", (f"serviceAccount:{STEP_SA}",)),)
            ),
        ),
        TABLE: Node(TABLE, "table", parent=DATASET, policy=AllowPolicy()),
        f"//iam.googleapis.com/projects/proj-alpha/serviceAccounts/{PIPELINE_SA}": Node(
            f"//iam.googleapis.com/projects/proj-alpha/serviceAccounts/{PIPELINE_SA}",
            "serviceAccount",
            parent=PROJECT,
            policy=AllowPolicy((Binding("roles/iam.serviceAccountUser", (SUBMITTER,)),)),
        ),
    }
    accounts = {
        email: ServiceAccount(email, "proj-alpha", unique_id=str(1000 + i))
        for i, email in enumerate(
            [
                PIPELINE_SA,
                STEP_SA,
                "zt-admin@proj-alpha.iam.gserviceaccount.com",
                "ci-submit@proj-alpha.iam.gserviceaccount.com",
                "intern-dev@proj-alpha.iam.gserviceaccount.com",
                *(f"bulk-{n:03d}@proj-alpha.iam.gserviceaccount.com" for n in range(extra_sas)),
            ]
        )
    }
    accounts[STEP_SA] = ServiceAccount(STEP_SA, "proj-alpha", "2000", user_managed_keys=("k1",))
    deny = (
        DenyPolicy(
            name="no-delete",
            attachment_point=PROJECT,
            rules=(
                DenyRule(
                    denied_principals=("principalSet://goog/public:all",),
                    denied_permissions=("iam.googleapis.com/serviceAccounts.delete",),
                    exception_principals=(
                        "principal://iam.googleapis.com/projects/-/serviceAccounts/"
                        "zt-admin@proj-alpha.iam.gserviceaccount.com",
                    ),
                ),
            ),
        ),
    )
    return Snapshot(nodes=nodes, roles=roles, deny_policies=deny, service_accounts=accounts)


def restored_aiplatform_config() -> Iterator[None]:
    """Body of a fixture: leave aiplatform's process-global config as it was found."""
    from google.cloud import aiplatform

    # aiplatform.init is process-global: leave no emulator endpoint or credentials behind
    config = aiplatform.initializer.global_config
    saved = dict(vars(config))
    yield
    vars(config).clear()
    vars(config).update(saved)


def vertex_init(emu: Emulator, member: str) -> None:
    """Point aiplatform (REST transport) at ``emu`` in proj-alpha, calling as ``member``."""
    from google.cloud import aiplatform

    aiplatform.init(
        project="proj-alpha",
        location="us-central1",
        api_endpoint=f"http://{emu.address}",
        api_transport="rest",
        credentials=emulator_credentials(member),
    )
