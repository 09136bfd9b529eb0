"""A batch prediction's serving image under the policy's ``images`` rules (in_05's class).

`ModelBatchPredictOp` is left in place; its job runs the model's serving container. When that
is a constant — the model an upload step made from an importer's `containerSpec.imageUri`,
or an UnmanagedContainerModel importer passed straight to the batch prediction — it is judged
(ZT500 naming it), on a first rewrite and on a second. Anything else stays ZT124: a model from
outside the pipeline, metadata from a parameter, both inputs at once, colliding spellings of
the image (GCPC's launcher snake-cases the metadata and keeps the last), or a payload edited to
name another model than its input.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml
from google_cloud_pipeline_components.types import artifact_types
from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
from google_cloud_pipeline_components.v1.model import ModelGetOp, ModelUploadOp
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.spec import rewrite_pipeline

ROOT = Path(__file__).resolve().parent.parent
PROJECT, LOCATION = "zt-demo", "us-central1"
ALLOWED = "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-0:latest"
EVIL = "docker.io/evil/serve:1"
TASK = "model-batch-predict"
RUN_TIME = "the model's serving container (an artifact read at run time)"


def _predict(**model: Any) -> None:
    ModelBatchPredictOp(
        job_display_name="bp",
        gcs_source_uris=["gs://zt-demo-raw-data/in.jsonl"],
        gcs_destination_output_uri_prefix="gs://zt-demo-models/out",
        instances_format="jsonl",
        **model,
    )


def _importer(metadata: Any) -> Any:
    return dsl.importer(
        artifact_uri="gs://zt-demo-models/m",
        artifact_class=artifact_types.UnmanagedContainerModel,
        metadata=metadata,
    )


def _uploaded(metadata: Any) -> Any:
    @dsl.pipeline(name="bp-upload")
    def pipeline() -> None:
        upload = ModelUploadOp(
            display_name="m", unmanaged_container_model=_importer(metadata).outputs["artifact"]
        )
        _predict(model=upload.outputs["model"])

    return pipeline


def _unmanaged(metadata: Any) -> Any:
    @dsl.pipeline(name="bp-unmanaged")
    def pipeline() -> None:
        _predict(unmanaged_container_model=_importer(metadata).outputs["artifact"])

    return pipeline


def _compile(pipeline: Any, path: Path) -> Path:
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _images(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    first = rewrite_pipeline(path, project=PROJECT)
    again = rewrite_pipeline((first.spec, first.platform_docs), project=PROJECT)
    (step,) = [s for s in first.steps if s.task == TASK]
    (same,) = [s for s in again.steps if s.task == TASK]
    assert step.job_kind == "BatchPredictionJob" and not step.wrapped_launcher
    assert (same.job_images, same.job_images_unknown) == (step.job_images, step.job_images_unknown)
    return step.job_images, step.job_images_unknown


def _check(path: Path) -> zt.Report:
    return zt.check(
        path,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=f"serve-pipeline@{PROJECT}.iam.gserviceaccount.com",
        snapshot=ROOT / "examples" / "world.yaml",
        policy={"images": {"allowedRegistries": ["gcr.io/ml-pipeline/", "us-docker.pkg.dev/"]}},
    )


@pytest.mark.parametrize("build", [_uploaded, _unmanaged], ids=["uploaded", "unmanaged"])
def test_a_constant_model_image_is_judged_on_the_batch_prediction(
    build: Any, tmp_path: Path
) -> None:
    meta = {"containerSpec": {"imageUri": ALLOWED}}
    known, unknown = _images(_compile(build(meta), tmp_path / "a.yaml"))
    assert ALLOWED in known and RUN_TIME not in unknown
    report = _check(_compile(build(meta), tmp_path / "a.yaml"))
    assert not {f.code for f in report.findings if f.step == TASK} & {"ZT124", "ZT500"}, str(report)
    evil = _check(_compile(build({"containerSpec": {"imageUri": EVIL}}), tmp_path / "e.yaml"))
    named = [f for f in evil.findings if f.code == "ZT500" and f.step == TASK]
    assert named and EVIL in named[0].message, str(evil)
    assert not [f for f in evil.findings if f.code == "ZT124" and f.step == TASK]


@pytest.mark.parametrize(
    ("build", "metadata"),
    [
        # GCPC's batch launcher snake-cases the whole metadata: these two keys collide
        (
            _unmanaged,
            {"containerSpec": {"imageUri": ALLOWED}, "container_spec": {"image_uri": EVIL}},
        ),
        (_unmanaged, {"containerSpec": {"imageUri": ALLOWED, "image_uri": EVIL}}),
        (_uploaded, {"containerSpec": {"imageUri": ALLOWED, "ImageUri": EVIL}}),
        (_unmanaged, {"containerSpec": {}}),
        (_unmanaged, {"predictSchemata": {}}),
    ],
    ids=["spec-collision", "image-collision", "upload-image-collision", "no-image", "no-spec"],
)
def test_an_ambiguous_or_missing_constant_stays_unverifiable(
    build: Any, metadata: Any, tmp_path: Path
) -> None:
    known, unknown = _images(_compile(build(metadata), tmp_path / "a.yaml"))
    assert RUN_TIME in unknown and ALLOWED not in known and EVIL not in known


def test_run_time_models_stay_unverifiable(tmp_path: Path) -> None:
    @dsl.pipeline(name="bp-get")
    def existing() -> None:
        _predict(model=ModelGetOp(model_name="m").outputs["model"])

    @dsl.pipeline(name="bp-param")
    def from_parameter(image: str = ALLOWED) -> None:
        _predict(
            unmanaged_container_model=_importer({"containerSpec": {"imageUri": image}}).outputs[
                "artifact"
            ]
        )

    @dsl.pipeline(name="bp-both")
    def both() -> None:
        meta = {"containerSpec": {"imageUri": ALLOWED}}
        upload = ModelUploadOp(
            display_name="m", unmanaged_container_model=_importer(meta).outputs["artifact"]
        )
        _predict(
            model=upload.outputs["model"],
            unmanaged_container_model=_importer(meta).outputs["artifact"],
        )

    for i, pipeline in enumerate((existing, from_parameter, both)):
        known, unknown = _images(_compile(pipeline, tmp_path / f"{i}.yaml"))
        assert RUN_TIME in unknown and ALLOWED not in known, pipeline


def test_a_payload_that_names_another_model_is_not_resolved_to_the_upload(
    tmp_path: Path,
) -> None:
    path = _compile(_uploaded({"containerSpec": {"imageUri": ALLOWED}}), tmp_path / "a.yaml")
    docs = list(yaml.safe_load_all(path.read_text()))
    ir = docs[0]
    label = ir["components"]["comp-model-batch-predict"]["executorLabel"]
    args = ir["deploymentSpec"]["executors"][label]["container"]["args"]
    at = args.index("--payload") + 1
    placeholder = "{{$.inputs.artifacts['model'].metadata['resourceName']}}"
    assert placeholder in args[at]
    args[at] = args[at].replace(placeholder, "projects/zt-demo/locations/us-central1/models/other")
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    known, unknown = _images(edited)
    assert RUN_TIME in unknown and ALLOWED not in known


def test_a_deploy_payload_that_names_another_model_is_not_resolved_to_the_upload(
    tmp_path: Path,
) -> None:
    """The same for a deploy step (wrapped in a CustomJob): its payload's
    ``deployed_model.model`` must be its model input's, or the upload's image is not its."""
    from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp

    @dsl.pipeline(name="serve")
    def serve() -> None:
        meta = {"containerSpec": {"imageUri": ALLOWED}}
        upload = ModelUploadOp(
            display_name="m", unmanaged_container_model=_importer(meta).outputs["artifact"]
        )
        ModelDeployOp(
            model=upload.outputs["model"],
            endpoint=EndpointCreateOp(display_name="e").outputs["endpoint"],
            dedicated_resources_machine_type="n1-standard-2",
            dedicated_resources_min_replica_count=1,
            dedicated_resources_max_replica_count=1,
        )

    path = _compile(serve, tmp_path / "d.yaml")

    def deploy_images(p: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
        first = rewrite_pipeline(p, project=PROJECT)
        again = rewrite_pipeline((first.spec, first.platform_docs), project=PROJECT)
        found = [
            (s.job_images, s.job_images_unknown) for s in first.steps if s.task == "model-deploy"
        ]
        assert found == [
            (s.job_images, s.job_images_unknown) for s in again.steps if s.task == "model-deploy"
        ]
        return found[0]

    assert ALLOWED in deploy_images(path)[0]  # as GCPC writes it: the upload's image
    docs = list(yaml.safe_load_all(path.read_text()))
    ir = docs[0]
    label = ir["components"]["comp-model-deploy"]["executorLabel"]
    args = ir["deploymentSpec"]["executors"][label]["container"]["args"]
    at = args.index("--payload") + 1
    placeholder = "{{$.inputs.artifacts['model'].metadata['resourceName']}}"
    assert placeholder in args[at]
    args[at] = args[at].replace(placeholder, "projects/zt-demo/locations/us-central1/models/other")
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    known, unknown = deploy_images(edited)
    assert ALLOWED not in known and unknown
