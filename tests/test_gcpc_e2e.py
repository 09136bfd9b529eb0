"""The Vertex-sample-style GCPC pipeline end to end, against the emulator and the real clients.

examples/gcpc_pipeline.py (BigQuery → preprocess → CustomTrainingJobOp → evaluate → dsl.If →
ModelUploadOp → EndpointCreateOp → ModelDeployOp, in a dsl.ExitHandler) in the example world
(examples/world.yaml), where none of its identities exist yet:

``plan`` derives every identity and every implicit GCPC need → ``apply`` (as the platform
engineer) creates and grants them → ``check`` is ALLOWED → ``zt_pipelines.PipelineJob(...)
.submit()`` (live check, real aiplatform client over REST) → the emulator runs the job and
every CustomJob it launches runs as its own service account.
"""

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.cloud import aiplatform

import zt_pipelines as zt
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.provision.apply import apply_plan

pytest.importorskip("google_cloud_pipeline_components")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PLATFORM = "user:platform@example.com"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zt_gcpc_example", EXAMPLES / "gcpc_pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ex = _example()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gcpc") / "gcpc.yaml"
    ex.compile_pipeline("gcpc-training", str(path))
    return path


@pytest.fixture()
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    from zt_pipelines.demo import _environment

    world = load_snapshot(EXAMPLES / "world.yaml")
    with Emulator(world, simulate_runs=True) as emu, _environment(emu.address):
        yield emu


def _check(template: Path, state: Any) -> "zt.Report":
    return zt.check(
        template,
        project=ex.PROJECT,
        location=ex.LOCATION,
        pipeline_service_account=ex.PIPELINE_SA,
        snapshot=state,
        submitter=ex.SUBMITTER,
    )


def _granted(plan: Any) -> set[tuple[str, str]]:
    """(member, permission) of every grant the plan makes, through its roles."""
    out = set()
    roles = {r.role.name: r.role.permissions for r in plan.custom_roles}
    for grant in plan.grants:
        for permission in roles.get(grant.role, ()):
            out.add((grant.member, permission))
    return out


def test_plan_apply_check_submit_every_custom_job_as_its_own_sa(
    template: Path, emulator: Emulator, tmp_path: Path
) -> None:
    before = _check(template, emulator.state)
    assert not before.allowed  # none of the example's identities exist yet

    plan = zt.plan(
        template,
        project=ex.PROJECT,
        location=ex.LOCATION,
        pipeline_service_account=ex.PIPELINE_SA,
        snapshot=emulator.state,
        submitter=ex.SUBMITTER,
    )
    created = {a.email for a in plan.accounts if a.state == "create"}
    assert set(ex.IDENTITIES.values()) <= created
    granted = _granted(plan)
    ids = ex.IDENTITIES
    for member, permission in (
        (ids["bigquery-query-job"], "bigquery.jobs.create"),
        (ids["model-upload"], "aiplatform.models.upload"),
        (ids["endpoint-create"], "aiplatform.endpoints.create"),
        (ids["model-deploy"], "aiplatform.endpoints.deploy"),
    ):
        assert (f"serviceAccount:{member}", permission) in granted, (member, permission)
    serving = f"//iam.googleapis.com/projects/{ex.PROJECT}/serviceAccounts/{ex.SERVING_SA}"
    assert any(
        g.resource == serving and g.member == f"serviceAccount:{ids['model-deploy']}"
        for g in plan.grants
    ), "the deploy step may act as the serving identity"

    factory = ClientFactory(
        emulator_credentials(PLATFORM), emulator_host=emulator.address, project=ex.PROJECT
    )
    try:
        apply_plan(
            plan, factory=factory, retry=no_wait_policy(), audit_log=tmp_path / "audit.jsonl"
        )
    finally:
        factory.close()

    after = _check(template, emulator.state)
    assert after.allowed, str(after)
    assert not after.suppressed  # under the strict defaults, nothing waived

    job = zt.PipelineJob(
        display_name="gcpc-e2e",
        template_path=str(template),
        job_id=f"gcpc-e2e-{uuid.uuid4().hex[:8]}",
        credentials=emulator_credentials(ex.SUBMITTER),
        project=ex.PROJECT,
        location=ex.LOCATION,
        audit_log=tmp_path / "audit.jsonl",
    )
    job.submit(service_account=ex.PIPELINE_SA)  # verified live against the emulator
    assert job.last_report is not None and job.last_report.allowed
    before = set(emulator.custom_jobs)
    alice = emulator_credentials(ex.SUBMITTER)
    ran = aiplatform.PipelineJob.get(job.resource_name, credentials=alice)
    assert ran.state.name == "PIPELINE_STATE_SUCCEEDED"  # the emulator ran it as Vertex would
    served = emulator.pipeline_jobs[job.resource_name]
    assert served["serviceAccount"] == ex.PIPELINE_SA
    accounts = {
        c["displayName"]: c["jobSpec"]["serviceAccount"]
        for name, c in emulator.custom_jobs.items()
        if name not in before
    }
    # every container step ran as a CustomJob under its own, distinct identity
    assert sorted(accounts.values()) == sorted(ex.IDENTITIES.values()), accounts
    assert accounts["exit-handler-1-condition-2-model-deploy"] == ex.IDENTITIES["model-deploy"]


# -- serving identities, through a real GCPC compile -------------------------------------------


@pytest.fixture(scope="module")
def deploy_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp
    from google_cloud_pipeline_components.v1.model import ModelGetOp
    from kfp import compiler, dsl

    @dsl.pipeline(name="deploy-only", pipeline_root="gs://zt-demo-pipeline-root/deploy")
    def deploy_only(serving: str = ""):  # type: ignore[no-untyped-def]
        model = ModelGetOp(model_name="projects/zt-demo/locations/us-central1/models/1")
        zt.step.on(model, ex.sa("get-model"))
        endpoint = EndpointCreateOp(display_name="e")
        zt.step.on(endpoint, ex.sa("create-endpoint"))
        deploy = ModelDeployOp(
            model=model.outputs["model"],
            endpoint=endpoint.outputs["endpoint"],
            dedicated_resources_machine_type="n1-standard-2",
            dedicated_resources_min_replica_count=1,
            service_account=serving,
        )
        zt.step.on(deploy, ex.sa("deploy-model"))

    path = tmp_path_factory.mktemp("deploy") / "deploy.yaml"
    compiler.Compiler().compile(deploy_only, str(path))
    return path


@pytest.mark.parametrize(
    ("serving", "code"),
    [
        ("service-123456789012@gcp-sa-aiplatform.iam.gserviceaccount.com", "ZT100"),
        ("123456789012-compute@developer.gserviceaccount.com", "ZT100"),
        (ex.sa("create-endpoint"), "ZT123"),  # serves with the endpoint creator's rights
    ],
)
def test_a_default_or_shared_serving_identity_is_refused(
    deploy_template: Path, serving: str, code: str
) -> None:
    report = zt.check(
        deploy_template,
        project=ex.PROJECT,
        location=ex.LOCATION,
        pipeline_service_account=ex.PIPELINE_SA,
        parameter_values={"serving": serving},
        snapshot=EXAMPLES / "world.yaml",
    )
    assert not report.allowed
    assert any(f.code == code and f.step == "model-deploy" for f in report.errors), str(report)


def test_the_deploy_step_needs_act_as_on_its_serving_identity(deploy_template: Path) -> None:
    serving = ex.sa("model-serving")
    plan = zt.plan(
        deploy_template,
        project=ex.PROJECT,
        location=ex.LOCATION,
        pipeline_service_account=ex.PIPELINE_SA,
        parameter_values={"serving": serving},
    )
    node = f"//iam.googleapis.com/projects/{ex.PROJECT}/serviceAccounts/{serving}"
    assert [g.member for g in plan.grants if g.resource == node] == [
        f"serviceAccount:{ex.sa('deploy-model')}"
    ]
    assert serving in {a.email for a in plan.accounts}  # plan creates the serving identity


# -- where launched jobs run, through a real GCPC compile --------------------------------------


def test_a_job_sent_to_another_project_or_region_is_reported_until_declared(
    tmp_path: Path,
) -> None:
    from google_cloud_pipeline_components.v1.bigquery import BigqueryQueryJobOp
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
    from kfp import compiler, dsl

    @dsl.pipeline(name="elsewhere", pipeline_root="gs://zt-demo-pipeline-root/elsewhere")
    def elsewhere(bq_project: str = "data-lake", region: str = "europe-west4"):  # type: ignore[no-untyped-def]
        query = BigqueryQueryJobOp(query="SELECT 1", project=bq_project, location="EU")
        zt.step.on(query, ex.sa("elsewhere-query"))
        train = CustomTrainingJobOp(
            display_name="t",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11"},
                }
            ],
            location=region,
        )
        zt.step.on(train, ex.sa("elsewhere-train"))

    path = tmp_path / "elsewhere.yaml"
    compiler.Compiler().compile(elsewhere, str(path))

    def zt122(**kw: Any) -> set[str | None]:
        report = zt.check(
            path,
            project=ex.PROJECT,
            location=ex.LOCATION,
            pipeline_service_account=ex.PIPELINE_SA,
            snapshot=EXAMPLES / "world.yaml",
            **kw,
        )
        return {f.step for f in report.findings if f.code == "ZT122"}

    assert zt122() == {"bigquery-query-job", "custom-training-job"}
    # the pipeline's own project and region: nothing to declare
    assert zt122(parameter_values={"bq_project": ex.PROJECT, "region": ex.LOCATION}) == set()
    # the region allowed by the policy file: only the other project is left
    assert zt122(policy={"regions": [ex.LOCATION, "europe-west4"]}) == {"bigquery-query-job"}
