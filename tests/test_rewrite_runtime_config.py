"""`zt-pipelines rewrite` of a PipelineJob-form template keeps its runtimeConfig: the parameter
values `check` judged are the ones the rewritten file runs with (JSON or YAML, local or gs://).

The pipeline: a GCPC CustomTrainingJobOp whose `tensorboard` comes from pipeline parameter `tb`;
the spec's default for `tb` injects a service account into the job payload, the PipelineJob
document's runtimeConfig gives a harmless value. Dropping the runtimeConfig would run the
injecting default, which nothing checked.
"""

# no `from __future__ import annotations`: kfp reads the annotations at run time

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform

from zt_pipelines.loaders import parse_text
from zt_pipelines.spec import dump_template, rewrite_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_templates import ALICE, _run, _upload_gcs, emu, emulator, no_dns  # noqa: F401

P = "zt-demo"
SAFE = f"projects/{P}/locations/us-central1/tensorboards/1"
INJECTED = '", "service_account": "legacy-sa@' + P + ".iam.gserviceaccount.com"
ROOT = "gs://zt-demo-pipeline-root/tb"
PIPELINE_SA = f"pipeline-sa@{P}.iam.gserviceaccount.com"
WORLD = Path(__file__).resolve().parents[1] / "examples" / "world.yaml"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
    from kfp import compiler, dsl

    @dsl.pipeline(name="tb", pipeline_root=ROOT)
    def tb(tb: str = INJECTED):  # type: ignore[no-untyped-def]
        CustomTrainingJobOp(
            display_name="t",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11"},
                }
            ],
            tensorboard=tb,
        )

    out = tmp_path_factory.mktemp("in10") / "spec.yaml"
    compiler.Compiler().compile(tb, str(out))
    return yaml.safe_load(out.read_text())  # type: ignore[no-any-return]


def _job(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "displayName": "tb",
        "labels": {"team": "ml"},
        "pipelineSpec": spec,
        "runtimeConfig": {"parameterValues": {"tb": SAFE}, "gcsOutputDirectory": ROOT},
    }


def _files(tmp_path: Path, spec: dict[str, Any], form: str) -> tuple[Path, list[str]]:
    (tmp_path / "manifest.yaml").write_text(
        yaml.safe_dump(
            {
                "steps": {
                    "custom-training-job": {
                        "service_account": f"train-sa@{P}.iam.gserviceaccount.com"
                    }
                }
            }
        )
    )
    job = tmp_path / f"job.{form}"
    text = json.dumps(_job(spec)) if form == "json" else yaml.safe_dump(_job(spec))
    job.write_text(text)
    common = [
        "--project",
        P,
        "--pipeline-sa",
        PIPELINE_SA,
        "--manifest",
        str(tmp_path / "manifest.yaml"),
    ]
    return job, common


def _sent(path: Path) -> dict[str, Any]:
    """What plain aiplatform sends for the file: the runtime parameter values."""
    job = aiplatform.PipelineJob(
        display_name="tb",
        template_path=str(path),
        project=P,
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    return dict(job._gca_resource.runtime_config.parameter_values)


@pytest.mark.parametrize("form", ["json", "yaml"])
def test_rewrite_keeps_the_pipelinejob_runtime_config(
    spec: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    job, common = _files(tmp_path, spec, form)
    out = tmp_path / "out.yaml"
    code, _stdout, err = _run(["rewrite", str(job), *common, "-o", str(out)], capsys)
    assert code == 0, err
    first = parse_text(out.read_text(), where="out", kind="template", error=ValueError)[0]
    assert first["runtimeConfig"] == _job(spec)["runtimeConfig"]
    assert first["displayName"] == "tb" and first["labels"] == {"team": "ml"}
    assert first["pipelineSpec"]["pipelineInfo"]["name"] == "tb"
    assert _sent(out) == {"tb": SAFE}  # not the spec's injecting default
    # check of the rewritten file judges the same values as check of the template
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump({"severities": {"ZT210": "warning", "ZT212": "warning", "ZT216": "warning"}})
    )
    world = ["--snapshot", str(WORLD), "--policy", str(policy)]
    before = _run(["check", str(job), *common, *world], capsys)
    after = _run(["check", str(out), *common, *world], capsys)
    assert before[0] == after[0] == 0, (before, after)


def test_rewrite_of_a_spec_stays_a_spec(
    spec: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _job_path, common = _files(tmp_path, spec, "json")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out.yaml"
    code, _stdout, err = _run(
        ["rewrite", str(tmp_path / "spec.yaml"), *common, "-o", str(out), "--param", f"tb={SAFE}"],
        capsys,
    )
    assert code == 0, err
    first = parse_text(out.read_text(), where="out", kind="template", error=ValueError)[0]
    assert "pipelineSpec" not in first and "runtimeConfig" not in first
    assert first["pipelineInfo"]["name"] == "tb"


def test_dump_template_takes_the_job_document(spec: dict[str, Any]) -> None:
    manifest = {
        "steps": {
            "custom-training-job": {"service_account": f"train-sa@{P}.iam.gserviceaccount.com"}
        }
    }
    result = rewrite_pipeline(
        _job(spec), manifest=manifest, project=P, pipeline_service_account=PIPELINE_SA
    )
    text = dump_template(result, job=_job(spec))
    first = yaml.safe_load(text)
    assert first["runtimeConfig"]["parameterValues"] == {"tb": SAFE}
    assert first["pipelineSpec"] == result.spec
    assert yaml.safe_load(dump_template(result)) == result.spec  # without it: the spec alone


def test_remote_pipelinejob_template_keeps_its_runtime_config(
    emu: Any,  # noqa: F811
    spec: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_dns: list[str],  # noqa: F811
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_CALLER", ALICE)
    job, common = _files(tmp_path, spec, "json")
    uri = _upload_gcs(emu, str(job), f"templates/{uuid.uuid4().hex}.json")
    out = tmp_path / "out.yaml"
    code, _stdout, err = _run(["rewrite", uri, *common, "-o", str(out)], capsys)
    assert code == 0, err
    first = parse_text(out.read_text(), where="out", kind="template", error=ValueError)[0]
    assert first["runtimeConfig"]["parameterValues"] == {"tb": SAFE}
    assert no_dns == []
