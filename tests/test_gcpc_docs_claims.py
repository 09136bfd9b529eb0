"""docs/gcpc.md, claim by claim, where no other test already holds it (the others are named
in the page's sections: test_gcpc_needs, test_gcpc_rewrite, test_gcpc_e2e, test_gcpc_images,
test_gcpc_shared_identity, test_step_defaults, test_gcpc_first_hour)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zt_pipelines as zt
from zt_pipelines.errors import IdentityError, InputError

pytest.importorskip("google_cloud_pipeline_components")

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "examples" / "world.yaml"
PROJECT, LOCATION = "zt-demo", "us-central1"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "zt_gcpc_example_claims", ROOT / "examples" / "gcpc_pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ex = _example()


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(ex.compile_pipeline("gcpc-training", str(tmp_path_factory.mktemp("ex") / "g.yaml")))


def test_plan_creates_the_examples_ten_identities(example: Path) -> None:
    """'`plan` creates its ten identities': eight steps, the serving identity, the pipeline's."""
    plan = zt.plan(
        example,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=ex.PIPELINE_SA,
        snapshot=WORLD,
    )
    created = {a.email for a in plan.accounts if a.state == "create"}
    assert created == {*ex.IDENTITIES.values(), ex.SERVING_SA, ex.PIPELINE_SA}
    assert len(created) == 10


def test_a_missing_implicit_permission_is_zt200_for_a_step_and_zt301_for_the_pipeline(
    example: Path,
) -> None:
    report = zt.check(
        example,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=ex.PIPELINE_SA,
        snapshot=WORLD,
    )
    codes = {(f.principal, f.permission): f.code for f in report.findings if f.permission}
    query = f"serviceAccount:{ex.IDENTITIES['bigquery-query-job']}"
    assert codes[(query, "bigquery.jobs.create")] == "ZT200"  # the wrapped launcher's call
    pipeline = f"serviceAccount:{ex.PIPELINE_SA}"
    assert codes[(pipeline, "aiplatform.customJobs.create")] == "ZT301"  # launching the step


def test_a_pipeline_identity_shared_with_other_pipelines_carries_their_grants(
    gcpc_corpus_dir: Path,
) -> None:
    """The demo's pipeline-sa may act as the demo pipeline's steps: reused for AutoML, it holds
    that beyond AutoML's needs (ZT212) and can become those steps (ZT216)."""
    report = zt.check(
        gcpc_corpus_dir / "shipped" / "v1.automl.tabular.automl_tabular_pipeline.yaml",
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com",
        parameter_values={"project": PROJECT, "location": LOCATION, "root_dir": "gs://b/r"},
        snapshot=WORLD,
    )
    pipeline = {f.code for f in report.findings if f.step is None}
    assert {"ZT212", "ZT216"} <= pipeline


def test_a_serving_identity_that_is_the_deploying_steps_own_is_refused(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp
    from google_cloud_pipeline_components.v1.model import ModelGetOp
    from kfp import compiler, dsl

    deployer = f"deployer@{PROJECT}.iam.gserviceaccount.com"

    @dsl.pipeline(name="self-serving", pipeline_root="gs://zt-demo-pipeline-root/x")
    def self_serving():  # type: ignore[no-untyped-def]
        model = ModelGetOp(model_name="projects/zt-demo/locations/us-central1/models/1")
        endpoint = EndpointCreateOp(display_name="e")
        deploy = ModelDeployOp(
            model=model.outputs["model"],
            endpoint=endpoint.outputs["endpoint"],
            dedicated_resources_machine_type="n1-standard-2",
            dedicated_resources_min_replica_count=1,
            service_account=deployer,
        )
        zt.step.on(deploy, deployer)

    path = tmp_path / "self.yaml"
    compiler.Compiler().compile(self_serving, str(path))
    with pytest.raises((IdentityError, InputError)) as info:
        zt.rewrite_pipeline(path, project=PROJECT)
    assert "model-deploy" in str(info.value)


def test_the_policy_file_judges_a_launched_jobs_network(tmp_path: Path) -> None:
    """'A launched job's CMEK key and network are judged by the policy file' — the network
    half (the CMEK half: test_gcpc_needs)."""
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
    from kfp import compiler, dsl

    def compiled(network: str) -> Path:
        @dsl.pipeline(name="peered", pipeline_root="gs://zt-demo-pipeline-root/x")
        def peered():  # type: ignore[no-untyped-def]
            train = CustomTrainingJobOp(
                display_name="t",
                worker_pool_specs=[
                    {
                        "machine_spec": {"machine_type": "n1-standard-4"},
                        "replica_count": 1,
                        "container_spec": {"image_uri": "python:3.11"},
                    }
                ],
                network=network,
            )
            zt.step.on(train, f"gcpc-train@{PROJECT}.iam.gserviceaccount.com")

        path = tmp_path / f"{network.rsplit('/', 1)[-1]}.yaml"
        compiler.Compiler().compile(peered, str(path))
        return path

    policy: dict[str, Any] = {
        "network": {"required": "projects/123456789012/global/networks/ml-vpc"}
    }

    def network_findings(network: str) -> list[str]:
        report = zt.check(
            compiled(network),
            project=PROJECT,
            location=LOCATION,
            pipeline_service_account=ex.PIPELINE_SA,
            snapshot=WORLD,
            policy=policy,
        )
        return [f.message for f in report.findings if f.code == "ZT500" and "network" in f.message]

    assert network_findings("projects/123456789012/global/networks/other")
    assert not network_findings("projects/123456789012/global/networks/ml-vpc")
