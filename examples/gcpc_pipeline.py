"""The Google Cloud Pipeline Components example of ``make demo`` and the quickstart notebook.

Written the way Google's Vertex AI samples write a training pipeline — GCPC's BigQuery query
→ a Python preprocessing step → ``CustomTrainingJobOp`` → a Python evaluation → ``dsl.If`` on
its metric → ``ModelUploadOp`` → ``EndpointCreateOp`` → ``ModelDeployOp``, all inside a
``dsl.ExitHandler`` whose exit task always reports — and then given zero trust with a handful
of lines: every step, GCPC or not, gets its own service account with ``@zt.step`` (Python
components) or ``zt.step.on(task, ...)`` (GCPC tasks), and the deployed model serves as its
own identity (``ModelDeployOp(service_account=...)``). What each GCPC step needs implicitly
(``bigquery.jobs.create``, ``aiplatform.models.upload``, actAs on the serving identity, ...)
is derived by ``zt-pipelines plan``/``check``; only data access is declared.

Compile with ``python examples/gcpc_pipeline.py OUT.yaml`` (needs
``google-cloud-pipeline-components``); ``examples/gcpc_pipeline.yaml`` is that output,
for environments without GCPC (``tests/test_gcpc_example.py`` keeps it in step).
No ``from __future__ import annotations``: KFP reads the annotations as types.
"""

import sys
from typing import Any

from kfp import compiler, dsl
from kfp.dsl import Artifact, Dataset, Input, Output

import zt_pipelines as zt

PROJECT = "zt-demo"
LOCATION = "us-central1"
PIPELINE_ROOT = "gs://zt-demo-pipeline-root/gcpc"
# its own pipeline identity: the training example's pipeline-sa may act as that example's steps,
# which this pipeline does not need (and check would flag as excess)
PIPELINE_SA = f"gcpc-pipeline@{PROJECT}.iam.gserviceaccount.com"
SUBMITTER = "user:alice@example.com"
#: the platform engineer who creates the example's identities (``zt-pipelines apply``)
PLATFORM = "user:platform@example.com"
IMAGE = "python:3.11-slim"
TRAINER_IMAGE = "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-0:latest"
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-0:latest"
MODEL_DIR = "gs://zt-demo-models/gcpc"


def sa(name: str) -> str:
    """The email of the example's service account ``name``."""
    return f"{name}@{PROJECT}.iam.gserviceaccount.com"


#: task name -> the identity it runs as (the serving identity is the deployed model's own)
IDENTITIES = {
    "bigquery-query-job": sa("gcpc-query"),
    "preprocess": sa("gcpc-preprocess"),
    "custom-training-job": sa("gcpc-train"),
    "evaluate": sa("gcpc-evaluate"),
    "model-upload": sa("gcpc-upload"),
    "endpoint-create": sa("gcpc-endpoint"),
    "model-deploy": sa("gcpc-deploy"),
    "notify": sa("gcpc-notify"),
}
SERVING_SA = sa("gcpc-serving")

QUERY = f"SELECT * FROM `{PROJECT}.sales.transactions` WHERE day >= @since"


@zt.step(IDENTITIES["preprocess"])
@dsl.component(base_image=IMAGE)
def preprocess(table: Input[Artifact], features: Output[Dataset]) -> None:
    """Turn the query's destination table into training features (artifacts only)."""
    from pathlib import Path

    Path(features.path).write_text(f"features from {table.uri}\n")


@zt.step(IDENTITIES["evaluate"], needs={MODEL_DIR: ["storage.objects.get"]})
@dsl.component(base_image=IMAGE)
def evaluate(model_dir: str) -> float:
    """Evaluate the trained model under ``model_dir``; return its accuracy."""
    return 0.93


@zt.step(IDENTITIES["notify"])
@dsl.component(base_image=IMAGE)
def notify(message: str) -> None:
    """The exit task: report how the run ended (runs whatever happened)."""
    print(message)


def build_pipeline() -> Any:
    """The GCPC pipeline. kfp builds a pipeline when it is defined, which needs GCPC installed,
    so it is defined on demand: importing this module (for its constants) does not need GCPC."""
    from google_cloud_pipeline_components.types import artifact_types
    from google_cloud_pipeline_components.v1.bigquery import BigqueryQueryJobOp
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
    from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp
    from google_cloud_pipeline_components.v1.model import ModelUploadOp

    @dsl.pipeline(name="zt-demo-gcpc-training", pipeline_root=PIPELINE_ROOT)
    def gcpc_pipeline(since: str = "2026-01-01", threshold: float = 0.9) -> None:
        """BigQuery → preprocess → custom training → evaluate → if good: upload, create, deploy."""
        exit_task = notify(message="zt-demo-gcpc-training finished")
        with dsl.ExitHandler(exit_task, name="train-and-deploy"):
            query = BigqueryQueryJobOp(
                query=QUERY,
                location="US",
                query_parameters=[
                    {"name": "since", "parameterType": {"type": "STRING"}, "parameterValue": {}}
                ],
            )
            zt.step.on(
                query,
                IDENTITIES["bigquery-query-job"],
                needs={
                    f"bq://{PROJECT}.sales": ["bigquery.tables.get", "bigquery.tables.getData"],
                    f"bq://{PROJECT}.scratch": [
                        "bigquery.tables.create",
                        "bigquery.tables.updateData",
                    ],
                },
            )
            features = preprocess(table=query.outputs["destination_table"])
            train = CustomTrainingJobOp(
                display_name="zt-demo-gcpc-train",
                worker_pool_specs=[
                    {
                        "machine_spec": {"machine_type": "n1-standard-4"},
                        "replica_count": 1,
                        "container_spec": {
                            "image_uri": TRAINER_IMAGE,
                            "args": ["--model-dir", MODEL_DIR],
                        },
                    }
                ],
                base_output_directory=MODEL_DIR,
            ).after(features)
            zt.step.on(
                train,
                IDENTITIES["custom-training-job"],
                needs={MODEL_DIR: ["storage.objects.create", "storage.objects.get"]},
            )
            metric = evaluate(model_dir=MODEL_DIR).after(train)
            with dsl.If(metric.output >= threshold, name="good-enough"):
                unmanaged = dsl.importer(
                    artifact_uri=MODEL_DIR,
                    artifact_class=artifact_types.UnmanagedContainerModel,
                    metadata={"containerSpec": {"imageUri": SERVING_IMAGE}},
                )
                upload = ModelUploadOp(
                    display_name="zt-demo-gcpc-model",
                    unmanaged_container_model=unmanaged.outputs["artifact"],
                )
                zt.step.on(
                    upload,
                    IDENTITIES["model-upload"],
                    needs={MODEL_DIR: ["storage.objects.get", "storage.objects.list"]},
                )
                endpoint = EndpointCreateOp(display_name="zt-demo-gcpc-endpoint")
                zt.step.on(endpoint, IDENTITIES["endpoint-create"])
                deploy = ModelDeployOp(
                    model=upload.outputs["model"],
                    endpoint=endpoint.outputs["endpoint"],
                    dedicated_resources_machine_type="n1-standard-2",
                    dedicated_resources_min_replica_count=1,
                    dedicated_resources_max_replica_count=1,
                    service_account=SERVING_SA,
                )
                zt.step.on(deploy, IDENTITIES["model-deploy"])

    return gcpc_pipeline


PIPELINES = {"gcpc-training": build_pipeline}


def compile_pipeline(name: str, path: str) -> str:
    """Compile the named example pipeline to ``path`` (YAML) and return ``path``."""
    compiler.Compiler().compile(PIPELINES[name](), package_path=path)
    return path


if __name__ == "__main__":
    compile_pipeline(sys.argv[2] if len(sys.argv) > 2 else "gcpc-training", sys.argv[1])
