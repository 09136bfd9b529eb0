"""Google's own pipelines: ``plan`` yields the complete grant set, and after ``apply`` (emulator,
real clients) ``check`` is ALLOWED — every identity exists and holds every implicit need of
every GCPC launcher and job (CustomJob, batch prediction, BigQuery, model upload, evaluation
import ...), found in the first-party templates of ``../shared/corpus/gcpc-2.22``.

The templates declare nothing, so every step gets a derived identity that ``plan`` creates;
their data access (the user's tables and files) is not derived, as it is not declared.
ZT102 (a run-time value pasted into a payload) is a payload-safety finding, not a grant: no
severity can lower it, so the policy waives it step by step, as a team that reviewed Google's
templates would (a suppression naming each step and the upstream digest of what feeds it).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SHARED, require_shared

import zt_pipelines as zt
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.orgpolicy import OrgPolicy, load_policy
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, Snapshot
from zt_pipelines.provision.apply import apply_plan
from zt_pipelines.spec import rewrite_pipeline

PROJECT = "zt-gcpc-corpus"
LOCATION = "us-central1"
ROOT = "gs://zt-gcpc-corpus-root/runs"
PIPELINE_SA = f"corpus-pipeline@{PROJECT}.iam.gserviceaccount.com"
SUBMITTER = "user:ml-engineer@example.com"
ADMIN = "user:platform@example.com"
CRM = "//cloudresourcemanager.googleapis.com/"
ADMIN_ROLE = f"projects/{PROJECT}/roles/provisioner"
SHIPPED = SHARED / "corpus" / "gcpc-2.22" / "shipped"
PIPELINES = (
    "v1.automl.tabular.automl_tabular_pipeline.yaml",
    "v1.automl.forecasting.bqml_arima_train_pipeline.yaml",
)


def waivers(template: Path, params: dict[str, str]) -> OrgPolicy:
    """A policy with one ZT102 suppression per step that pastes a run-time value."""
    steps = rewrite_pipeline(template, project=PROJECT, parameter_values=params).steps
    return load_policy(
        {
            "suppressions": [
                {
                    "code": "ZT102",
                    "step": s.task,
                    "upstream": s.upstream_digest,
                    "justification": "Google's first-party template, reviewed",
                    "expires": "2099-01-01",
                }
                for s in steps
                if s.unescaped_payload_inputs
            ]
        }
    )


def empty_project() -> Snapshot:
    org = CRM + "organizations/4242"
    project = CRM + "projects/" + PROJECT
    admin = frozenset(
        {
            "iam.serviceAccounts.create",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
            "iam.serviceAccounts.getIamPolicy",
            "iam.serviceAccounts.setIamPolicy",
            "iam.serviceAccountKeys.list",
            "storage.hmacKeys.list",
            "apikeys.keys.list",
            "privilegedaccessmanager.entitlements.list",
            "iam.roles.create",
            "iam.roles.get",
            "iam.roles.list",
            "iam.roles.update",
            "iam.roles.undelete",
            "iam.denypolicies.get",
            "iam.denypolicies.list",
            "resourcemanager.projects.get",
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.setIamPolicy",
            "storage.buckets.get",
            "storage.buckets.getIamPolicy",
            "storage.buckets.setIamPolicy",
        }
    )
    nodes = [
        Node(org, "organization", None, AllowPolicy(etag="o0")),
        Node(
            project,
            "project",
            org,
            project_number="777000777000",
            policy=AllowPolicy((Binding(ADMIN_ROLE, (ADMIN,)),), etag="p0"),
        ),
        Node("//storage.googleapis.com/zt-gcpc-corpus-root", "bucket", project, AllowPolicy()),
    ]
    user = "roles/iam.serviceAccountUser"
    return Snapshot(
        nodes={n.name: n for n in nodes},
        roles={
            ADMIN_ROLE: Role(ADMIN_ROLE, admin, "provisioner"),
            user: Role(user, frozenset({"iam.serviceAccounts.actAs", "iam.serviceAccounts.get"})),
        },
    )


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    with Emulator(empty_project()) as emu:
        yield emu


@pytest.mark.shared
@pytest.mark.parametrize("name", PIPELINES)
def test_plan_apply_check_is_allowed_for_a_first_party_pipeline(
    name: str, emulator: Emulator, tmp_path: Path
) -> None:
    template = require_shared(SHIPPED / name)
    params = {"project": PROJECT, "location": LOCATION, "root_dir": ROOT}
    policy = waivers(template, params)

    def check() -> "zt.Report":
        return zt.check(
            template,
            project=PROJECT,
            location=LOCATION,
            pipeline_service_account=PIPELINE_SA,
            pipeline_root=ROOT,
            parameter_values=params,
            policy=policy,
            snapshot=emulator.state,
            submitter=SUBMITTER,
        )

    assert not check().allowed  # nothing exists yet
    plan = zt.plan(
        template,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        pipeline_root=ROOT,
        parameter_values=params,
        snapshot=emulator.state,
        submitter=SUBMITTER,
    )
    factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emulator.address)
    try:
        apply_plan(plan, factory=factory, retry=no_wait_policy(), audit_log=tmp_path / "a.jsonl")
    finally:
        factory.close()
    report = check()
    assert report.allowed, str(report)
    # the implicit GCPC needs are among what was proven granted
    granted = {g.permission for g in report.granted}
    assert "aiplatform.customJobs.create" in granted
    if "automl_tabular" in name:
        assert {"aiplatform.batchPredictionJobs.create", "aiplatform.models.upload"} <= granted
    else:
        assert {"bigquery.jobs.create", "bigquery.models.create"} <= granted
    # and a fresh plan has nothing left to do
    again = zt.plan(
        template,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        pipeline_root=ROOT,
        parameter_values=params,
        snapshot=emulator.state,
        submitter=SUBMITTER,
    )
    assert again.is_noop, str(again)
