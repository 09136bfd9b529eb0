"""Job fields declared for a GCPC launcher left in place are applied or refused, never dropped.

A platform team declares `network`, `encryption_spec_key_name`, `labels`... for a step (manifest,
`@zt.step`, `zt.step.on`). On a CustomJob they go into its payload. On the other launchers left
as GCPC built them — Dataproc batches, batch prediction, Dataflow flex templates, tuning jobs —
each goes into the component input of that kind which carries it (a Dataproc batch's
`network_uri`/`kms_key`, ...), and a field the kind has no input for is a DeclarationError
naming the step and the field (red team in_15). Through real GCPC compiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zt_pipelines.errors import DeclarationError
from zt_pipelines.spec.rewrite import rewrite_pipeline

pytest.importorskip("google_cloud_pipeline_components")

PROJECT = "zt-demo"
PSA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
NET = "projects/123456789012/global/networks/ml-vpc"
KEY = "projects/ml-kms/locations/us-central1/keyRings/ml/cryptoKeys/k1"


def _compile(pipeline: Any, tmp_path: Path) -> str:
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return str(path)


def _pipeline() -> Any:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt
    from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
    from google_cloud_pipeline_components.v1.dataflow import DataflowFlexTemplateJobOp
    from google_cloud_pipeline_components.v1.dataproc import (
        DataprocPySparkBatchOp,
        DataprocSparkBatchOp,
        DataprocSparkRBatchOp,
        DataprocSparkSqlBatchOp,
    )
    from google_cloud_pipeline_components.v1.hyperparameter_tuning_job import (
        HyperparameterTuningJobRunOp,
        serialize_metrics,
        serialize_parameters,
    )
    from kfp import dsl

    @dsl.pipeline(name="decl", pipeline_root="gs://zt-demo-pipeline-root/x")
    def pipeline():  # type: ignore[no-untyped-def]
        DataprocPySparkBatchOp(main_python_file_uri="gs://zt-demo-models/x.py", batch_id="b1")
        DataprocSparkBatchOp(main_class="a.B", batch_id="b2")
        DataprocSparkRBatchOp(main_r_file_uri="gs://zt-demo-models/x.r", batch_id="b3")
        DataprocSparkSqlBatchOp(query_file_uri="gs://zt-demo-models/x.sql", batch_id="b4")
        ModelBatchPredictOp(
            job_display_name="bp",
            gcs_source_uris=["gs://zt-demo-raw-data/in.jsonl"],
            gcs_destination_output_uri_prefix="gs://zt-demo-models/out",
            instances_format="jsonl",
        )
        DataflowFlexTemplateJobOp(container_spec_gcs_path="gs://zt-demo-models/flex.json")
        HyperparameterTuningJobRunOp(
            display_name="t",
            base_output_directory="gs://zt-demo-pipeline-root/hpt",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11"},
                }
            ],
            study_spec_metrics=serialize_metrics({"acc": "maximize"}),
            study_spec_parameters=serialize_parameters(
                {"lr": hpt.DoubleParameterSpec(min=0.001, max=0.1, scale="log")}
            ),
            max_trial_count=2,
            parallel_trial_count=1,
        )

    return pipeline


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _compile(_pipeline(), tmp_path_factory.mktemp("decl"))


DATAPROC = [
    "dataproc-create-pyspark-batch",
    "dataproc-create-spark-batch",
    "dataproc-create-spark-r-batch",
    "dataproc-create-spark-sql-batch",
]


def _rewrite(template: str, task: str, **fields: Any) -> Any:
    return rewrite_pipeline(
        template,
        manifest={"steps": {task: fields}},
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PSA,
    )


def _bound(result: Any, task: str, name: str) -> Any:
    tasks = result.spec["root"]["dag"]["tasks"]
    return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def _step(result: Any, task: str) -> Any:
    (step,) = [s for s in result.steps if s.task == task]
    return step


@pytest.mark.parametrize("task", DATAPROC)
def test_a_dataproc_batch_takes_the_declared_network_key_and_labels(
    template: str, task: str
) -> None:
    result = _rewrite(
        template, task, network=NET, encryption_spec_key_name=KEY, labels={"team": "ml"}
    )
    assert _bound(result, task, "network_uri") == NET
    assert _bound(result, task, "kms_key") == KEY
    assert _bound(result, task, "labels") == {"team": "ml"}
    step = _step(result, task)  # and the check judges where the batch runs
    assert (step.job_network, step.job_kms_key) == (NET, KEY)
    again = rewrite_pipeline(
        result.spec, project=PROJECT, location="us-central1", pipeline_service_account=PSA
    )
    assert _step(again, task).job_network == NET  # idempotent


@pytest.mark.parametrize(
    ("task", "fields", "inputs"),
    [
        (
            "model-batch-predict",
            {"encryption_spec_key_name": KEY, "machine_type": "n1-standard-8"},
            {"encryption_spec_key_name": KEY, "machine_type": "n1-standard-8"},
        ),
        (
            "dataflow-flex-template",
            {"encryption_spec_key_name": KEY, "labels": {"team": "ml"}},
            {"kms_key_name": KEY, "additional_user_labels": {"team": "ml"}},
        ),
        (
            "hyperparameter-tuning-job",
            {"network": NET, "encryption_spec_key_name": KEY},
            {"network": NET, "encryption_spec_key_name": KEY},
        ),
    ],
)
def test_other_launchers_take_the_fields_they_have(
    template: str, task: str, fields: dict[str, Any], inputs: dict[str, Any]
) -> None:
    result = _rewrite(template, task, **fields)
    assert {name: _bound(result, task, name) for name in inputs} == inputs


@pytest.mark.parametrize(
    ("task", "field", "value"),
    [
        ("model-batch-predict", "network", NET),  # batch prediction has no network
        ("dataflow-flex-template", "network", NET),  # Dataflow's is a bare name: not guessed
        ("dataproc-create-pyspark-batch", "machine_type", "n1-standard-8"),
        ("dataproc-create-spark-batch", "enable_web_access", True),
        ("dataproc-create-spark-sql-batch", "persistent_resource_id", "pool"),
        ("dataproc-create-spark-r-batch", "psc_interface_config", {"network_attachment": "a"}),
        ("hyperparameter-tuning-job", "labels", {"team": "ml"}),
        ("hyperparameter-tuning-job", "reserved_ip_ranges", ["r1"]),
    ],
)
def test_a_field_the_kind_has_not_is_refused_naming_step_and_field(
    template: str, task: str, field: str, value: Any
) -> None:
    with pytest.raises(DeclarationError) as refused:
        _rewrite(template, task, **{field: value})
    assert field in refused.value.message and task in str(refused.value.where)


def test_a_declaration_never_overrides_what_the_task_sets(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.dataproc import DataprocPySparkBatchOp
    from kfp import dsl

    @dsl.pipeline(name="own-net", pipeline_root="gs://zt-demo-pipeline-root/x")
    def own():  # type: ignore[no-untyped-def]
        DataprocPySparkBatchOp(
            main_python_file_uri="gs://zt-demo-models/x.py",
            batch_id="b1",
            network_uri="projects/9/global/networks/other",
        )

    path = _compile(own, tmp_path)
    with pytest.raises(DeclarationError, match="network_uri"):
        _rewrite(path, "dataproc-create-pyspark-batch", network=NET)
    same = _rewrite(
        path, "dataproc-create-pyspark-batch", network="projects/9/global/networks/other"
    )
    assert _step(same, "dataproc-create-pyspark-batch").job_network.endswith("/other")


def test_cli_rewrite_refuses_a_dropped_field_with_a_typed_error(
    template: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from zt_pipelines.cli import main

    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"steps": {"model-batch-predict": {"network": NET}}}))
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "rewrite",
                template,
                "--project",
                PROJECT,
                "--pipeline-sa",
                PSA,
                "--manifest",
                str(manifest),
                "-o",
                str(tmp_path / "o.yaml"),
            ]
        )
    code = exited.value.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "network" in err and "model-batch-predict" in err
    assert not (tmp_path / "o.yaml").exists()


def test_step_defaults_reach_every_launched_job_that_has_the_field(template: str) -> None:
    """Red team round 6 in_10: a pipeline-wide default (`--step-network`, `step_defaults=`,
    ZT_STEP_NETWORK) goes into each launcher's own input, like a declaration — except where the
    step sets its own — and the steps it cannot reach are named, never passed over silently."""
    from zt_pipelines.model import JobFields

    result = rewrite_pipeline(
        template,
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PSA,
        defaults=JobFields(network=NET, persistent_resource_id="pool"),
    )
    for task in DATAPROC:
        assert _bound(result, task, "network_uri") == NET
        assert _step(result, task).job_network == NET
        assert _step(result, task).job_defaults_unreached == ("persistent_resource_id",)
    assert _bound(result, "hyperparameter-tuning-job", "network") == NET
    assert _step(result, "model-batch-predict").job_defaults_unreached == (
        "network",
        "persistent_resource_id",
    )


def test_a_step_default_never_overrides_the_steps_own_network(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.dataproc import DataprocPySparkBatchOp
    from kfp import dsl

    from zt_pipelines.model import JobFields

    @dsl.pipeline(name="own-subnet", pipeline_root="gs://zt-demo-pipeline-root/x")
    def own():  # type: ignore[no-untyped-def]
        DataprocPySparkBatchOp(
            main_python_file_uri="gs://zt-demo-models/x.py",
            batch_id="b1",
            subnetwork_uri="projects/p/regions/us-central1/subnetworks/s",
        )

    result = rewrite_pipeline(
        _compile(own, tmp_path),
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PSA,
        defaults=JobFields(network=NET),
    )
    task = result.spec["root"]["dag"]["tasks"]["dataproc-create-pyspark-batch"]
    assert "network_uri" not in task["inputs"]["parameters"]  # network_uri and subnet: one of


def test_check_and_rewrite_name_the_steps_a_default_does_not_reach(
    template: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zt_pipelines as zt
    from zt_pipelines.cli import main

    report = zt.check(
        template,
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PSA,
        snapshot=Path(__file__).resolve().parent.parent / "examples" / "world.yaml",
        step_defaults={"network": NET},
    )
    assert any(
        "do not reach model-batch-predict" in n and "BatchPredictionJob" in n for n in report.notes
    )
    with pytest.raises(SystemExit):
        main(
            [
                "rewrite",
                template,
                "--project",
                PROJECT,
                "--pipeline-sa",
                PSA,
                "--step-network",
                NET,
                "-o",
                str(tmp_path / "o.yaml"),
            ]
        )
    err = capsys.readouterr().err
    assert "the step defaults network do not reach task 'model-batch-predict'" in err
