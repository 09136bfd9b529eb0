"""The example training pipeline of ``make demo`` and the quickstart notebook.

Three steps, each declared with ``@zt.step`` (stacked above ``@dsl.component``): ``ingest``
reads raw data from a bucket, ``train`` trains from the ingested dataset, ``evaluate-and-upload``
evaluates the model, writes it to the model bucket and uploads it to Vertex AI. Every step gets
its own service account and declares exactly what it needs; artifacts under the pipeline root
are implicit needs.

Broken variants show what zero trust refuses (see ``examples/world.yaml``):

- :func:`pipeline_missing_permission` — ``train`` also reads ``gs://zt-demo-restricted``, which
  ``train-sa`` was never granted (ZT200);
- :func:`pipeline_with_editor` — ``evaluate-and-upload`` runs as ``legacy-sa``, which holds
  ``roles/editor`` on the project (ZT211);
- :func:`pipeline_open_egress` — ``ingest`` runs on the VPC ``ml-vpc`` declaring it reaches Cloud
  Storage only, but a legacy firewall rule opens HTTPS to anywhere (ZT522, naming the rule).

Compile with ``python examples/pipeline.py OUT.yaml``; the components are never run here.
No ``from __future__ import annotations``: KFP reads the annotations as types.
"""


import sys

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

import zt_pipelines as zt

PROJECT = "zt-demo"
LOCATION = "us-central1"
PIPELINE_ROOT = "gs://zt-demo-pipeline-root/runs"
PIPELINE_SA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
SUBMITTER = "user:alice@example.com"
IMAGE = "python:3.11-slim"

INGEST_SA = f"ingest-sa@{PROJECT}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{PROJECT}.iam.gserviceaccount.com"
UPLOAD_SA = f"upload-sa@{PROJECT}.iam.gserviceaccount.com"
LEGACY_SA = f"legacy-sa@{PROJECT}.iam.gserviceaccount.com"

UPLOAD_NEEDS = {
    "gs://zt-demo-models": ["storage.objects.create"],
    f"projects/{PROJECT}": ["aiplatform.models.upload"],
}


@zt.step(
    INGEST_SA,
    needs={"gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]},
)
@dsl.component(base_image=IMAGE)
def ingest(source: str, dataset: Output[Dataset]) -> None:
    """Copy the raw CSV files under ``source`` into the dataset artifact."""
    from pathlib import Path

    Path(dataset.path).write_text(f"rows from {source}\n")


@zt.step(TRAIN_SA)
@dsl.component(base_image=IMAGE)
def train(dataset: Input[Dataset], epochs: int, model: Output[Model]) -> None:
    """Train a model from the dataset artifact (artifacts only: no other resource)."""
    from pathlib import Path

    rows = Path(dataset.path).read_text()
    Path(model.path).write_text(f"model after {epochs} epochs on {len(rows)} bytes\n")


@zt.step(UPLOAD_SA, needs=UPLOAD_NEEDS)
@dsl.component(base_image=IMAGE)
def evaluate_and_upload(model: Input[Model], destination: str, metrics: Output[Metrics]) -> None:
    """Evaluate the model, copy it to ``destination`` and upload it to Vertex AI."""
    metrics.log_metric("accuracy", 0.93)


@zt.step(
    TRAIN_SA,
    needs={"gs://zt-demo-restricted": ["storage.objects.get", "storage.objects.list"]},
)
@dsl.component(base_image=IMAGE)
def train_with_restricted_data(dataset: Input[Dataset], epochs: int, model: Output[Model]) -> None:
    """Like :func:`train`, but also reads a bucket ``train-sa`` may not read."""
    from pathlib import Path

    Path(model.path).write_text(f"model after {epochs} epochs\n")


@zt.step(LEGACY_SA, needs=UPLOAD_NEEDS)
@dsl.component(base_image=IMAGE)
def evaluate_and_upload_legacy(
    model: Input[Model], destination: str, metrics: Output[Metrics]
) -> None:
    """Like :func:`evaluate_and_upload`, but run by an account holding ``roles/editor``."""
    metrics.log_metric("accuracy", 0.93)


@dsl.pipeline(name="zt-demo-training", pipeline_root=PIPELINE_ROOT)
def training_pipeline(
    source: str = "gs://zt-demo-raw-data/2026-01/", epochs: int = 3
) -> None:
    """ingest → train → evaluate-and-upload, each step under its own service account."""
    data = ingest(source=source)
    model = train(dataset=data.outputs["dataset"], epochs=epochs)
    evaluate_and_upload(model=model.outputs["model"], destination="gs://zt-demo-models/latest")


@dsl.pipeline(name="zt-demo-missing-permission", pipeline_root=PIPELINE_ROOT)
def pipeline_missing_permission(
    source: str = "gs://zt-demo-raw-data/2026-01/", epochs: int = 3
) -> None:
    """The training pipeline whose train step reads a bucket its identity cannot read."""
    data = ingest(source=source)
    model = train_with_restricted_data(dataset=data.outputs["dataset"], epochs=epochs)
    evaluate_and_upload(model=model.outputs["model"], destination="gs://zt-demo-models/latest")


@dsl.pipeline(name="zt-demo-editor", pipeline_root=PIPELINE_ROOT)
def pipeline_with_editor(source: str = "gs://zt-demo-raw-data/2026-01/", epochs: int = 3) -> None:
    """The training pipeline whose last step runs as an account holding roles/editor."""
    data = ingest(source=source)
    model = train(dataset=data.outputs["dataset"], epochs=epochs)
    evaluate_and_upload_legacy(
        model=model.outputs["model"], destination="gs://zt-demo-models/latest"
    )


ATTACHMENT = f"projects/{PROJECT}/regions/{LOCATION}/networkAttachments/ml-attach"


@zt.step(
    INGEST_SA,
    needs={"gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]},
    psc_interface_config={"network_attachment": ATTACHMENT},
    reach=["storage.googleapis.com"],
)
@dsl.component(base_image=IMAGE)
def ingest_private(source: str, dataset: Output[Dataset]) -> None:
    """Like :func:`ingest`, on ml-vpc's PSC interface, declared to reach Cloud Storage only."""
    from pathlib import Path

    Path(dataset.path).write_text(f"rows from {source}\n")


@dsl.pipeline(name="zt-demo-open-egress", pipeline_root=PIPELINE_ROOT)
def pipeline_open_egress(source: str = "gs://zt-demo-raw-data/2026-01/", epochs: int = 3) -> None:
    """The training pipeline whose ingest runs on ml-vpc, where a legacy firewall rule lets it
    reach any HTTPS host although it declares Cloud Storage only (ZT522)."""
    data = ingest_private(source=source)
    model = train(dataset=data.outputs["dataset"], epochs=epochs)
    evaluate_and_upload(model=model.outputs["model"], destination="gs://zt-demo-models/latest")


PIPELINES = {
    "training": training_pipeline,
    "missing-permission": pipeline_missing_permission,
    "editor": pipeline_with_editor,
    "open-egress": pipeline_open_egress,
}


def compile_pipeline(name: str, path: str) -> str:
    """Compile the named example pipeline to ``path`` (YAML) and return ``path``."""
    compiler.Compiler().compile(PIPELINES[name], package_path=path)
    return path


if __name__ == "__main__":
    compile_pipeline(sys.argv[2] if len(sys.argv) > 2 else "training", sys.argv[1])
