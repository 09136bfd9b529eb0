"""The policy file's ``images`` rules judge EVERY image a step's launched job runs.

A GCPC ``CustomTrainingJobOp`` runs one container per worker pool, a tuning job runs its trial
pools, and every one of them runs as the step's identity: each image is judged by
``images.allowedRegistries`` / ``images.requireDigest`` (ZT500), and an image known only at
run time (a pool list from an upstream output, a model's serving container) cannot be judged —
ZT124, never a pass. Through real GCPC compiles and the rewrite.
"""

from pathlib import Path
from typing import Any

import pytest

import zt_pipelines as zt

pytest.importorskip("google_cloud_pipeline_components")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROJECT, LOCATION = "zt-demo", "us-central1"
PIPELINE_SA = f"gcpc-pipeline@{PROJECT}.iam.gserviceaccount.com"
GOOD = "us-docker.pkg.dev/ml-prod/train/trainer@sha256:" + "a" * 64
EVIL = "docker.io/evil/miner:latest"
POLICY = {
    "images": {
        "allowedRegistries": ["us-docker.pkg.dev/ml-prod/", "gcr.io/ml-pipeline/"],
        "requireDigest": False,
    }
}
DIGEST_POLICY = {"images": {"requireDigest": True}}


def container_pool(image: str) -> dict[str, Any]:
    return {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": image},
    }


def package_pool(image: str) -> dict[str, Any]:
    return {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "python_package_spec": {
            "executor_image_uri": image,
            "package_uris": ["gs://zt-demo-pipeline-root/pkg.tar.gz"],
            "python_module": "trainer.task",
        },
    }


def _check(pipeline: Any, tmp_path: Path, policy: Any, **params: Any) -> zt.Report:
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return zt.check(
        path,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        snapshot=EXAMPLES / "world.yaml",
        policy=policy,
        parameter_values=params or None,
    )


def _images(report: zt.Report) -> list[str]:
    return sorted(f.message for f in report.findings if f.code == "ZT500" and "image" in f.message)


def _training(pools: list[dict[str, Any]]) -> Any:
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
    from kfp import dsl

    @dsl.pipeline(name="pools", pipeline_root="gs://zt-demo-pipeline-root/x")
    def pipeline():  # type: ignore[no-untyped-def]
        train = CustomTrainingJobOp(display_name="t", worker_pool_specs=pools)
        zt.step.on(train, f"gcpc-train@{PROJECT}.iam.gserviceaccount.com")

    return pipeline


@pytest.mark.parametrize(
    "pools",
    [
        [container_pool(GOOD), container_pool(EVIL)],  # the red team's case: pool 1
        [container_pool(EVIL), container_pool(GOOD)],
        [container_pool(GOOD), {}, package_pool(EVIL)],  # a package pool's executor image
        [container_pool(GOOD), container_pool(GOOD), container_pool(GOOD), container_pool(EVIL)],
    ],
    ids=["pool-1", "pool-0", "package-pool-2", "pool-3"],
)
def test_every_worker_pool_image_is_judged(pools: list[dict[str, Any]], tmp_path: Path) -> None:
    report = _check(_training(pools), tmp_path, POLICY)
    assert _images(report) == [
        f"image {EVIL} is not from an allowed registry "
        "(us-docker.pkg.dev/ml-prod/, gcr.io/ml-pipeline/)"
    ]
    assert not report.allowed


def test_every_worker_pool_image_must_be_pinned_by_digest(tmp_path: Path) -> None:
    unpinned = "us-docker.pkg.dev/ml-prod/train/eval:latest"
    report = _check(
        _training([container_pool(GOOD), container_pool(unpinned)]), tmp_path, DIGEST_POLICY
    )
    assert _images(report) == [f"image {unpinned} is not pinned by digest"]


def test_good_images_in_every_pool_pass_the_images_rules(tmp_path: Path) -> None:
    report = _check(_training([container_pool(GOOD), package_pool(GOOD)]), tmp_path, POLICY)
    assert _images(report) == [] and "ZT124" not in report.codes()


def test_a_tuning_jobs_trial_image_is_judged(tmp_path: Path) -> None:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt
    from google_cloud_pipeline_components.v1.hyperparameter_tuning_job import (
        HyperparameterTuningJobRunOp,
        serialize_metrics,
        serialize_parameters,
    )
    from kfp import dsl

    @dsl.pipeline(name="tuning", pipeline_root="gs://zt-demo-pipeline-root/x")
    def tuning():  # type: ignore[no-untyped-def]
        run = HyperparameterTuningJobRunOp(
            display_name="t",
            base_output_directory="gs://zt-demo-pipeline-root/hpt",
            worker_pool_specs=[container_pool(GOOD), container_pool(EVIL)],
            study_spec_metrics=serialize_metrics({"acc": "maximize"}),
            study_spec_parameters=serialize_parameters(
                {"lr": hpt.DoubleParameterSpec(min=0.001, max=0.1, scale="log")}
            ),
            max_trial_count=2,
            parallel_trial_count=1,
        )
        zt.step.on(run, f"gcpc-tune@{PROJECT}.iam.gserviceaccount.com")

    assert EVIL in " ".join(_images(_check(tuning, tmp_path, POLICY)))


def test_pools_known_only_at_run_time_are_zt124_under_an_images_policy(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
    from kfp import dsl

    @dsl.component(base_image="python:3.11-slim")
    def make_pools() -> list:  # type: ignore[type-arg]
        return [{"container_spec": {"image_uri": "anything"}}]

    @dsl.pipeline(name="late-pools", pipeline_root="gs://zt-demo-pipeline-root/x")
    def late():  # type: ignore[no-untyped-def]
        pools = make_pools()
        zt.step.on(pools, f"gcpc-pools@{PROJECT}.iam.gserviceaccount.com")
        train = CustomTrainingJobOp(display_name="t", worker_pool_specs=pools.output)
        zt.step.on(train, f"gcpc-train@{PROJECT}.iam.gserviceaccount.com")

    report = _check(late, tmp_path, POLICY)
    (finding,) = [f for f in report.findings if f.code == "ZT124"]
    assert finding.step == "custom-training-job" and finding in report.errors
    assert "job_spec.worker_pool_specs (known only at run time)" in finding.message
    # without an images policy there is nothing to judge: no ZT124
    assert "ZT124" not in _check(late, tmp_path, None).codes()


def test_a_batch_prediction_serving_image_is_zt124_under_an_images_policy(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
    from kfp import dsl

    @dsl.pipeline(name="predict", pipeline_root="gs://zt-demo-pipeline-root/x")
    def predict():  # type: ignore[no-untyped-def]
        job = ModelBatchPredictOp(
            job_display_name="p",
            gcs_source_uris=["gs://zt-demo-raw-data/in.jsonl"],
            gcs_destination_output_uri_prefix="gs://zt-demo-pipeline-root/out",
            instances_format="jsonl",
        )
        zt.step.on(job, f"gcpc-predict@{PROJECT}.iam.gserviceaccount.com")

    report = _check(predict, tmp_path, POLICY)
    assert [f.step for f in report.findings if f.code == "ZT124"] == ["model-batch-predict"]
    relaxed = {**POLICY, "severities": {"ZT124": "warning"}}
    assert "ZT124" not in {f.code for f in _check(predict, tmp_path, relaxed).errors}


def test_google_automl_job_images_are_all_judged(gcpc_corpus_dir: Path) -> None:
    """AutoML Tabular: every CustomJob image is a constant in Google's payloads (judged), and
    its batch predictions run the trained model's container (ZT124)."""
    template = gcpc_corpus_dir / "shipped" / "v1.automl.tabular.automl_tabular_pipeline.yaml"
    params = {"project": PROJECT, "location": LOCATION, "root_dir": "gs://zt-demo-pipeline-root/a"}
    report = zt.check(
        template,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        snapshot=EXAMPLES / "world.yaml",
        parameter_values=params,
        policy={"images": {"allowedRegistries": ["gcr.io/ml-pipeline/"]}},
    )
    training = [m for m in _images(report) if "automl-tabular/training" in m]
    assert training and all("is not from an allowed registry" in m for m in training)
    assert {f.step for f in report.findings if f.code == "ZT124"} >= {
        "exit-handler-1/condition-2/condition-3/model-batch-predict"
    }


def test_the_example_judges_training_images_and_its_constant_serving_container(
    tmp_path: Path,
) -> None:
    """examples/gcpc_pipeline.py: the training job's image is judged, and so is the uploaded
    and deployed model's serving container — a constant in the importer's metadata the upload
    takes, which the deploy's model comes from (GCPC's documented pattern): ZT500 naming it,
    never ZT124 (red team in_05)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "zt_gcpc_example_images", EXAMPLES / "gcpc_pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    path = Path(example.compile_pipeline("gcpc-training", str(tmp_path / "gcpc.yaml")))
    report = zt.check(
        path,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=example.PIPELINE_SA,
        snapshot=EXAMPLES / "world.yaml",
        policy={"images": {"allowedRegistries": ["gcr.io/ml-pipeline/", "python:"]}},
    )
    assert "ZT124" not in report.codes()
    serving = {
        f.step.rsplit("/", 1)[-1]
        for f in report.findings
        if f.code == "ZT500" and f.step and example.SERVING_IMAGE in f.message
    }
    assert serving == {"model-upload", "model-deploy"}
    allowed = ["gcr.io/ml-pipeline/", "python:", example.SERVING_IMAGE.split("/")[0] + "/"]
    assert not any(
        example.SERVING_IMAGE in f.message
        for f in zt.check(
            path,
            project=PROJECT,
            location=LOCATION,
            pipeline_service_account=example.PIPELINE_SA,
            snapshot=EXAMPLES / "world.yaml",
            policy={"images": {"allowedRegistries": allowed}},
        ).findings
    )
    assert (
        "ZT124"
        not in zt.check(
            path,
            project=PROJECT,
            location=LOCATION,
            pipeline_service_account=example.PIPELINE_SA,
            snapshot=EXAMPLES / "world.yaml",
        ).codes()
    )


def _dataproc(op_name: str, **extra: Any) -> Any:
    from google_cloud_pipeline_components.v1 import dataproc
    from kfp import dsl

    op = getattr(dataproc, op_name)
    required = {
        "DataprocPySparkBatchOp": {"main_python_file_uri": "gs://zt-demo-models/x.py"},
        "DataprocSparkBatchOp": {"main_class": "a.B"},
        "DataprocSparkRBatchOp": {"main_r_file_uri": "gs://zt-demo-models/x.r"},
        "DataprocSparkSqlBatchOp": {"query_file_uri": "gs://zt-demo-models/x.sql"},
    }[op_name]

    @dsl.pipeline(name="dataproc", pipeline_root="gs://zt-demo-pipeline-root/x")
    def pipeline(runtime_image: str = GOOD):  # type: ignore[no-untyped-def]
        args = {k: (runtime_image if v == "PARAM" else v) for k, v in extra.items()}
        batch = op(batch_id="b1", **required, **args)
        zt.step.on(batch, f"gcpc-spark@{PROJECT}.iam.gserviceaccount.com")

    return pipeline


@pytest.mark.parametrize(
    "op_name",
    [
        "DataprocPySparkBatchOp",
        "DataprocSparkBatchOp",
        "DataprocSparkRBatchOp",
        "DataprocSparkSqlBatchOp",
    ],
)
def test_a_dataproc_batchs_container_image_is_judged(op_name: str, tmp_path: Path) -> None:
    """Red team in_14: Dataproc Serverless runs the driver and executors in
    ``runtime_config.container_image``; every batch kind's image is judged like a pool's."""
    report = _check(_dataproc(op_name, container_image=EVIL), tmp_path, POLICY)
    assert _images(report) == [
        f"image {EVIL} is not from an allowed registry "
        "(us-docker.pkg.dev/ml-prod/, gcr.io/ml-pipeline/)"
    ]
    assert not report.allowed
    # Dataproc's own runtime image (no container_image) is Google's: nothing to judge
    plain = _check(_dataproc(op_name), tmp_path, POLICY)
    assert _images(plain) == [] and "ZT124" not in plain.codes()


def test_a_dataproc_image_from_a_parameter_is_judged_with_its_value(tmp_path: Path) -> None:
    pipeline = _dataproc("DataprocPySparkBatchOp", container_image="PARAM")
    assert _images(_check(pipeline, tmp_path, POLICY)) == []
    assert EVIL in " ".join(_images(_check(pipeline, tmp_path, POLICY, runtime_image=EVIL)))
    unpinned = _images(_check(pipeline, tmp_path, DIGEST_POLICY, runtime_image="gcr.io/x/y:1"))
    assert "image gcr.io/x/y:1 is not pinned by digest" in unpinned


def test_a_dataproc_image_known_only_at_run_time_is_zt124(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.dataproc import DataprocPySparkBatchOp
    from kfp import dsl

    @dsl.component(base_image="python:3.11-slim")
    def pick() -> str:
        return "docker.io/evil/x:1"

    @dsl.pipeline(name="late-image", pipeline_root="gs://zt-demo-pipeline-root/x")
    def late():  # type: ignore[no-untyped-def]
        image = pick()
        zt.step.on(image, f"gcpc-pick@{PROJECT}.iam.gserviceaccount.com")
        batch = DataprocPySparkBatchOp(
            main_python_file_uri="gs://zt-demo-models/x.py",
            batch_id="b1",
            container_image=image.output,
        )
        zt.step.on(batch, f"gcpc-spark@{PROJECT}.iam.gserviceaccount.com")

    report = _check(late, tmp_path, POLICY)
    (finding,) = [f for f in report.findings if f.code == "ZT124"]
    assert "runtime_config.container_image (known only at run time)" in finding.message
    assert not report.allowed


def test_a_flex_templates_sdk_container_image_is_judged(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.dataflow import DataflowFlexTemplateJobOp
    from kfp import dsl

    @dsl.pipeline(name="flex", pipeline_root="gs://zt-demo-pipeline-root/x")
    def flex():  # type: ignore[no-untyped-def]
        job = DataflowFlexTemplateJobOp(
            container_spec_gcs_path="gs://zt-demo-models/flex.json", sdk_container_image=EVIL
        )
        zt.step.on(job, f"gcpc-flex@{PROJECT}.iam.gserviceaccount.com")

    report = _check(flex, tmp_path, POLICY)
    assert EVIL in " ".join(_images(report))
    # the template file's own container is still unreadable before submission
    assert any(f.code == "ZT124" for f in report.findings)


def _hand_edited(tmp_path: Path, old: str, new: str) -> Path:
    """A compiled Dataproc batch whose payload text is edited by hand (what a compiled file
    can carry that GCPC's Python never writes)."""
    import json

    import yaml
    from kfp import compiler

    path = tmp_path / "dp.yaml"
    compiler.Compiler().compile(_dataproc("DataprocPySparkBatchOp"), str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    (executor,) = docs[0]["deploymentSpec"]["executors"].values()
    parts = executor["container"]["args"]
    at = parts.index("--payload") + 1
    payload = json.loads(parts[at])
    payload["Concat"][payload["Concat"].index(old)] = new
    parts[at] = json.dumps(payload)
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.mark.parametrize(
    "new",
    [
        # camelCase: the launcher's protobuf parser accepts both spellings
        ', "runtime_config": {"containerImage": "' + EVIL + '", ',
        # an image field nested anywhere else in the payload
        ', "runtime_config": {"peripherals": {"spark_history": {"image": "' + EVIL + '"}}, ',
    ],
    ids=["camel-case", "nested"],
)
def test_any_image_field_of_a_payload_is_judged(new: str, tmp_path: Path) -> None:
    path = _hand_edited(tmp_path, ', "runtime_config": {', new)
    report = zt.check(
        path,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        snapshot=EXAMPLES / "world.yaml",
        policy=POLICY,
    )
    assert EVIL in " ".join(_images(report)) and not report.allowed
