"""A model's serving image under the policy's ``images`` rules (red team in_05).

GCPC's documented way to serve a custom container: an importer of an UnmanagedContainerModel
whose metadata names the image (``containerSpec.imageUri``) → ModelUploadOp → ModelDeployOp.
A constant there is known before submission: the upload and the deploy step are judged on it
(ZT500 naming it), on a first rewrite and on a rewrite of the rewritten pipeline. Only a value
known at run time — metadata from a parameter placeholder, a model from another step or from
outside the pipeline — stays ZT124.
"""

from pathlib import Path
from typing import Any

import pytest
from google_cloud_pipeline_components.types import artifact_types
from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp
from google_cloud_pipeline_components.v1.model import ModelGetOp, ModelUploadOp
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.spec import rewrite_pipeline

ROOT = Path(__file__).resolve().parent.parent
PROJECT, LOCATION = "zt-demo", "us-central1"
ALLOWED = "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-0:latest"
EVIL = "docker.io/evil/serve:1"
SERVING = "gcpc-serving@zt-demo.iam.gserviceaccount.com"


def _deploy(model: Any) -> None:
    endpoint = EndpointCreateOp(display_name="e")
    ModelDeployOp(
        model=model,
        endpoint=endpoint.outputs["endpoint"],
        dedicated_resources_machine_type="n1-standard-2",
        dedicated_resources_min_replica_count=1,
        dedicated_resources_max_replica_count=1,
        service_account=SERVING,
    )


def _compile(pipeline: Any, path: Path) -> Path:
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _constant(image: str, tmp: Path) -> Path:
    @dsl.pipeline(name="serve")
    def serve() -> None:
        unmanaged = dsl.importer(
            artifact_uri="gs://zt-demo-models/m",
            artifact_class=artifact_types.UnmanagedContainerModel,
            metadata={"containerSpec": {"imageUri": image}},
        )
        upload = ModelUploadOp(
            display_name="m", unmanaged_container_model=unmanaged.outputs["artifact"]
        )
        _deploy(upload.outputs["model"])

    return _compile(serve, tmp / "constant.yaml")


def _images(path: Path) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    first = rewrite_pipeline(path, project=PROJECT)
    again = rewrite_pipeline((first.spec, first.platform_docs), project=PROJECT)
    out = {s.task: (s.job_images, s.job_images_unknown) for s in first.steps}
    assert {s.task: (s.job_images, s.job_images_unknown) for s in again.steps} == out
    return {t: v for t, v in out.items() if t in ("model-upload", "model-deploy")}


def _check(path: Path) -> zt.Report:
    return zt.check(
        path,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=f"serve-pipeline@{PROJECT}.iam.gserviceaccount.com",
        snapshot=ROOT / "examples" / "world.yaml",
        policy={"images": {"allowedRegistries": ["gcr.io/ml-pipeline/", "us-docker.pkg.dev/"]}},
    )


def test_a_constant_serving_image_is_judged_on_upload_and_deploy(tmp_path: Path) -> None:
    images = _images(_constant(ALLOWED, tmp_path))
    for task in ("model-upload", "model-deploy"):
        known, unknown = images[task]
        assert ALLOWED in known and unknown == (), (task, images[task])
    report = _check(_constant(ALLOWED, tmp_path))
    assert not {"ZT124", "ZT500"} & set(report.codes()), str(report)


def test_a_constant_serving_image_from_elsewhere_is_refused_by_name(tmp_path: Path) -> None:
    report = _check(_constant(EVIL, tmp_path))
    named = {f.step for f in report.findings if f.code == "ZT500" and EVIL in f.message}
    assert named == {"model-upload", "model-deploy"}, str(report)
    assert "ZT124" not in report.codes()


def test_run_time_serving_images_stay_unverifiable(tmp_path: Path) -> None:
    @dsl.pipeline(name="serve-param")
    def from_parameter(image: str = ALLOWED) -> None:
        unmanaged = dsl.importer(
            artifact_uri="gs://zt-demo-models/m",
            artifact_class=artifact_types.UnmanagedContainerModel,
            metadata={"containerSpec": {"imageUri": image}},
        )
        upload = ModelUploadOp(
            display_name="m", unmanaged_container_model=unmanaged.outputs["artifact"]
        )
        _deploy(upload.outputs["model"])

    @dsl.pipeline(name="serve-existing")
    def existing_model() -> None:
        model = ModelGetOp(model_name=f"projects/{PROJECT}/locations/{LOCATION}/models/1")
        _deploy(model.outputs["model"])

    for pipeline, tasks in ((from_parameter, 2), (existing_model, 1)):
        images = _images(_compile(pipeline, tmp_path / f"{pipeline.name}.yaml"))
        assert len(images) == tasks
        for task, (known, unknown) in images.items():
            assert not any("docker.pkg.dev/vertex-ai" in i for i in known), task
            assert unknown and "serving container" in unknown[0], (task, unknown)


@pytest.mark.parametrize("metadata", [{"containerSpec": {"imageUri": ""}}, {"other": 1}])
def test_an_importer_without_a_serving_image_stays_unverifiable(
    metadata: dict[str, Any], tmp_path: Path
) -> None:
    @dsl.pipeline(name="serve-odd")
    def odd() -> None:
        unmanaged = dsl.importer(
            artifact_uri="gs://zt-demo-models/m",
            artifact_class=artifact_types.UnmanagedContainerModel,
            metadata=metadata,
        )
        upload = ModelUploadOp(
            display_name="m", unmanaged_container_model=unmanaged.outputs["artifact"]
        )
        _deploy(upload.outputs["model"])

    for known, unknown in _images(_compile(odd, tmp_path / "odd.yaml")).values():
        assert unknown, known


@pytest.mark.parametrize(
    "spec",
    [
        {"imageUri": ALLOWED, "image_uri": EVIL},  # GCPC snake-cases both: the last one wins
        {"imageUri": ALLOWED, "ImageUri": EVIL},
        {"image_uri": EVIL, "imageUri": ALLOWED},
    ],
)
def test_two_spellings_of_the_serving_image_are_not_read_as_one(
    spec: dict[str, Any], tmp_path: Path
) -> None:
    @dsl.pipeline(name="serve-twice")
    def twice() -> None:
        unmanaged = dsl.importer(
            artifact_uri="gs://zt-demo-models/m",
            artifact_class=artifact_types.UnmanagedContainerModel,
            metadata={"containerSpec": spec},
        )
        upload = ModelUploadOp(
            display_name="m", unmanaged_container_model=unmanaged.outputs["artifact"]
        )
        _deploy(upload.outputs["model"])

    for known, unknown in _images(_compile(twice, tmp_path / "twice.yaml")).values():
        assert ALLOWED not in known and unknown, known
