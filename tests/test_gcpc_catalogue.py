"""The GCPC launcher catalogue matches the installed GCPC's own launchers and components."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from zt_pipelines.spec.gcpc import (
    CATALOGUE,
    GCPC_MODULE_PREFIX,
    by_name,
    identify_launcher,
    is_gcpc_launcher_module,
)

gcpc = pytest.importorskip("google_cloud_pipeline_components")


def _executors(component: Any) -> list[dict[str, Any]]:
    from google.protobuf import json_format

    spec = json_format.MessageToDict(component.pipeline_spec)
    return [
        e["container"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e
    ]


def test_every_catalogued_module_exists_in_installed_gcpc() -> None:
    for kind in CATALOGUE:
        for module in kind.modules:
            if module == "launcher":
                continue  # GCPC's launchers as shipped inside other Google images
            assert module.startswith(GCPC_MODULE_PREFIX)
            assert importlib.util.find_spec(module) is not None, (kind.name, module)


def test_names_are_unique_and_resolvable() -> None:
    names = [kind.name for kind in CATALOGUE]
    assert len(names) == len(set(names))
    assert all(by_name(n).name == n for n in names)
    with pytest.raises(KeyError):
        by_name("NoSuchJob")


@pytest.mark.parametrize(
    ("op", "kind"),
    [
        ("v1.custom_job.CustomTrainingJobOp", "CustomJob"),
        ("v1.hyperparameter_tuning_job.HyperparameterTuningJobRunOp", "HyperparameterTuningJob"),
        ("v1.batch_predict_job.ModelBatchPredictOp", "BatchPredictionJob"),
        ("v1.bigquery.BigqueryQueryJobOp", "BigqueryQueryJob"),
        ("v1.bigquery.BigqueryCreateModelJobOp", "BigqueryCreateModelJob"),
        ("v1.bigquery.BigqueryEvaluateModelJobOp", "BigqueryEvaluateModelJob"),
        ("v1.bigquery.BigqueryPredictModelJobOp", "BigqueryPredictModelJob"),
        ("v1.bigquery.BigqueryExportModelJobOp", "BigqueryExportModelJob"),
        ("v1.dataflow.DataflowPythonJobOp", "DataflowPythonJob"),
        ("v1.dataflow.DataflowFlexTemplateJobOp", "DataflowFlexTemplateJob"),
        ("v1.dataproc.DataprocPySparkBatchOp", "DataprocPySparkBatch"),
        ("v1.dataproc.DataprocSparkSqlBatchOp", "DataprocSparkSqlBatch"),
        ("v1.model.ModelUploadOp", "UploadModel"),
        ("v1.model.ModelExportOp", "ExportModel"),
        ("v1.model.ModelDeleteOp", "DeleteModel"),
        ("v1.model.ModelGetOp", "GetModel"),
        ("v1.endpoint.EndpointCreateOp", "CreateEndpoint"),
        ("v1.endpoint.EndpointDeleteOp", "DeleteEndpoint"),
        ("v1.endpoint.ModelDeployOp", "DeployModel"),
        ("v1.endpoint.ModelUndeployOp", "UndeployModel"),
        ("v1.wait_gcp_resources.WaitGcpResourcesOp", "Wait"),
        ("v1.vertex_notification_email.VertexNotificationEmailOp", "VertexNotificationEmail"),
        ("v1.automl.training_job.AutoMLTabularTrainingJobRunOp", "AutoMLTrainingJob"),
        ("v1.automl.training_job.AutoMLImageTrainingJobRunOp", "AutoMLImageTrainingJob"),
    ],
)
def test_gcpc_components_are_identified(op: str, kind: str) -> None:
    module, _, name = op.rpartition(".")
    component = getattr(importlib.import_module(f"google_cloud_pipeline_components.{module}"), name)
    (container,) = _executors(component)
    found = identify_launcher(container)
    assert found is not None and found.name == kind
    assert is_gcpc_launcher_module(container) is not None


def test_recognition_ignores_the_image() -> None:
    """A launcher is recognised by its module and --type; the image tag plays no part."""
    container = {
        "image": "example.com/anything:latest",
        "command": ["python3", "-u", "-m", "launcher"],
        "args": ["--type", "UploadModel", "--payload", "{}"],
    }
    assert by_name("UploadModel") is identify_launcher(container)
    container["args"] = ["--type", "SomethingNew", "--payload", "{}"]
    assert identify_launcher(container) is None
    assert is_gcpc_launcher_module(container) == "launcher"  # unknown: the rewrite refuses it
    plain = {"image": "python:3.11", "command": ["sh", "-c", "python3 -m launcher"]}
    assert identify_launcher(plain) is None and is_gcpc_launcher_module(plain) is None


def test_unknown_gcpc_module_is_flagged_not_identified() -> None:
    container = {
        "image": "gcr.io/ml-pipeline/google-cloud-pipeline-components:9.0.0",
        "command": ["python3", "-u", "-m", f"{GCPC_MODULE_PREFIX}v2.new_job.launcher"],
        "args": ["--type", "NewJob"],
    }
    assert identify_launcher(container) is None
    assert is_gcpc_launcher_module(container) == f"{GCPC_MODULE_PREFIX}v2.new_job.launcher"


def test_every_gcpc_launcher_in_the_corpus_is_catalogued(gcpc_corpus_dir: Path) -> None:
    seen: set[str] = set()
    for path in sorted(gcpc_corpus_dir.glob("*/*.yaml")):
        ir = next(yaml.safe_load_all(path.read_text()))
        ir = ir.get("pipelineSpec", ir)
        for executor in ir["deploymentSpec"]["executors"].values():
            container = executor.get("container")
            if container is None or is_gcpc_launcher_module(container) is None:
                continue
            kind = identify_launcher(container)
            assert kind is not None, (path.name, container.get("command"))
            seen.add(kind.name)
    assert {"CustomJob", "BatchPredictionJob", "UploadModel", "BigqueryQueryJob"} <= seen
