"""``{{$.pipeline_root}}`` is pasted into launcher payloads: every root a run may get — the one
passed, the template's ``defaultPipelineRoot``, a PipelineJob template's ``gcsOutputDirectory``
— is judged on every path (``rewrite_pipeline``, ``zt.check``, the CLI, remote templates).
"""

import json
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.cli import main
from zt_pipelines.errors import InputError, TemplateError
from zt_pipelines.spec import load_template, rewrite_pipeline

pytest.importorskip("google_cloud_pipeline_components")
from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

PROJECT = "zt-demo"
PIPELINE_SA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{PROJECT}.iam.gserviceaccount.com"
EVIL = f"evil@{PROJECT}.iam.gserviceaccount.com"
INJECTIONS = [
    'gs://zt-root/x"}, "service_account": "' + EVIL + '", "scheduling": {"timeout": "',
    "gs://zt-root/x\\",
    "gs://zt-root/{{$.pipeline_job_name}}",
    "gs://zt-root/x\n",
]


def _compile(tmp_path: Path, root: str | None) -> Path:
    @dsl.pipeline(name="rootpaths", pipeline_root=root)
    def pipeline() -> None:
        train = CustomTrainingJobOp(
            display_name="t",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11"},
                }
            ],
            base_output_directory=dsl.PIPELINE_ROOT_PLACEHOLDER,
        )
        zt.step.on(train, TRAIN_SA)

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _job_document(path: Path, runtime: dict[str, Any]) -> dict[str, Any]:
    """A full PipelineJob JSON around the compiled spec (what `gcloud`/the REST API store)."""
    spec = load_template(path)[0]
    return {"displayName": "x", "pipelineSpec": spec, "runtimeConfig": runtime}


@pytest.mark.parametrize("root", INJECTIONS)
def test_a_template_default_root_that_could_change_a_payload_is_refused(
    tmp_path: Path, root: str
) -> None:
    path = _compile(tmp_path, root)
    with pytest.raises(TemplateError, match="pipeline root"):
        rewrite_pipeline(str(path), project=PROJECT)
    with pytest.raises(TemplateError, match="pipeline root"):
        zt.check(
            path,
            project=PROJECT,
            location="us-central1",
            pipeline_service_account=PIPELINE_SA,
            snapshot={"projects": {PROJECT: {}}},
        )


@pytest.mark.parametrize("root", INJECTIONS)
def test_a_root_passed_to_check_is_judged_as_the_drop_in_judges_it(
    tmp_path: Path, root: str
) -> None:
    path = _compile(tmp_path, None)
    with pytest.raises(InputError, match=r"pipeline.root"):
        zt.check(
            path,
            project=PROJECT,
            location="us-central1",
            pipeline_service_account=PIPELINE_SA,
            pipeline_root=root,
            snapshot={"projects": {PROJECT: {}}},
        )


@pytest.mark.parametrize("root", INJECTIONS)
def test_a_pipeline_job_templates_output_directory_is_judged(tmp_path: Path, root: str) -> None:
    document = _job_document(_compile(tmp_path, None), {"gcsOutputDirectory": root})
    with pytest.raises(TemplateError, match="pipeline root"):
        rewrite_pipeline(document, project=PROJECT)
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(document))
    with pytest.raises(TemplateError, match="pipeline root"):
        rewrite_pipeline(str(job_file), project=PROJECT)


def test_the_cli_check_refuses_with_exit_2_and_names_the_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _compile(tmp_path, INJECTIONS[0])
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "check",
                str(path),
                "--project",
                PROJECT,
                "--location",
                "us-central1",
                "--pipeline-sa",
                PIPELINE_SA,
                "--snapshot",
                str(Path(zt.__file__).parent / "examples" / "world.yaml"),
            ]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "defaultPipelineRoot" in err and "Traceback" not in err


def test_an_explicit_safe_root_overrides_an_unsafe_default(tmp_path: Path) -> None:
    """The template's default is not used when the submitter names the root."""
    path = _compile(tmp_path, INJECTIONS[0])
    result = rewrite_pipeline(str(path), project=PROJECT, pipeline_root="gs://zt-root/runs")
    assert [s.service_account for s in result.steps] == [TRAIN_SA]


def test_a_non_gcs_default_root_without_payload_characters_still_rewrites(tmp_path: Path) -> None:
    """The Kubeflow corpus has ``s3://change/me``: Vertex refuses it at submission; the rewrite
    (for a run that names its own root) must not."""
    path = _compile(tmp_path, "s3://change/me")
    result = rewrite_pipeline(str(path), project=PROJECT)
    assert [s.service_account for s in result.steps] == [TRAIN_SA]


def test_a_default_root_that_is_not_a_string_is_a_typed_error(tmp_path: Path) -> None:
    document = _job_document(_compile(tmp_path, None), {"gcsOutputDirectory": ["gs://a"]})
    with pytest.raises(TemplateError, match="gcsOutputDirectory"):
        rewrite_pipeline(document, project=PROJECT)


def test_a_remote_pipeline_job_template_keeps_its_runtime_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PipelineJob JSON fetched from gs:// carries its runtimeConfig to Vertex: ``check``
    judges its root (and its parameter values) as a local file's."""
    from zt_pipelines.emulator import Emulator
    from zt_pipelines.policy.snapshot_file import load_snapshot

    world = Path(zt.__file__).parent / "examples" / "world.yaml"
    document = _job_document(_compile(tmp_path, None), {"gcsOutputDirectory": INJECTIONS[0]})
    with Emulator(load_snapshot(world)) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emu.address}")
        monkeypatch.setenv("ZT_EMULATOR_CALLER", "user:alice@example.com")
        with emu._world.lock:
            emu._world.objects[("zt-demo-restricted", "job.json")] = (
                json.dumps(document).encode(),
                "application/json",
            )
        with pytest.raises(TemplateError, match=r"gcsOutputDirectory|pipeline root"):
            zt.check(
                "gs://zt-demo-restricted/job.json",
                project=PROJECT,
                location="us-central1",
                pipeline_service_account=PIPELINE_SA,
                snapshot=world,
            )


def test_the_report_says_where_the_iam_state_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report read from an emulator (one CI variable away) never looks like Google's."""
    from zt_pipelines.emulator import Emulator, emulator_credentials
    from zt_pipelines.policy.snapshot_file import load_snapshot

    world = Path(zt.__file__).parent / "examples" / "world.yaml"
    path = _compile(tmp_path, None)
    kw: dict[str, Any] = {
        "project": PROJECT,
        "location": "us-central1",
        "pipeline_service_account": PIPELINE_SA,
        "pipeline_root": "gs://zt-demo-pipeline-root/runs",
    }
    offline = zt.check(path, snapshot=world, **kw)
    assert any("from the snapshot" in n and "world.yaml" in n for n in offline.notes)
    with Emulator(load_snapshot(world)) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        live = zt.check(path, credentials=emulator_credentials("user:alice@example.com"), **kw)
    note = next(n for n in live.notes if "read live" in n)
    assert f"emulator at {emu.address}" in note and "not from Google" in note
    sarif = live.to_sarif()["runs"][0]["invocations"][0]
    assert any(emu.address in str(n) for n in sarif.get("toolExecutionNotifications", []))
    assert emu.address in str(live) and emu.address in live._repr_html_()


@pytest.mark.parametrize(
    "runtime",
    [
        {"parameterValues": {}, "parameters": {"tb": {"stringValue": "x"}}},
        {"parameterValues": {"tb": "x"}, "parameters": {}},
        {"parameterValues": {"tb": "x"}, "parameters": {"tb": {"stringValue": "y"}}},
    ],
)
def test_a_pipeline_job_template_with_both_parameter_fields_is_refused(
    tmp_path: Path, runtime: dict[str, Any]
) -> None:
    """aiplatform reads parameterValues whenever present and ignores the typed parameters:
    zt must never judge values the SDK would not send (and the spec's default would run)."""
    document = _job_document(_compile(tmp_path, None), runtime)
    with pytest.raises(TemplateError, match="both parameterValues"):
        rewrite_pipeline(document, project=PROJECT)
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(document))
    with pytest.raises(TemplateError, match="both parameterValues"):
        zt.check(
            job_file,
            project=PROJECT,
            location="us-central1",
            pipeline_service_account=PIPELINE_SA,
            snapshot={"projects": {PROJECT: {}}},
        )


def test_check_judges_the_root_a_pipeline_job_template_runs_with(tmp_path: Path) -> None:
    """aiplatform runs a PipelineJob template with its runtimeConfig.gcsOutputDirectory when no
    root is given: ``check`` verifies the same bucket (here one nobody granted anything on)."""
    world = Path(zt.__file__).parent / "examples" / "world.yaml"
    exfil = "gs://attacker-exfil-bucket/runs"
    document = _job_document(_compile(tmp_path, None), {"gcsOutputDirectory": exfil})
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(document))
    kw: dict[str, Any] = {
        "project": PROJECT,
        "location": "us-central1",
        "pipeline_service_account": PIPELINE_SA,
        "snapshot": world,
    }
    implicit = zt.check(job_file, **kw)
    explicit = zt.check(job_file, pipeline_root=exfil, **kw)
    assert not implicit.allowed
    assert sorted(f.code for f in implicit.findings) == sorted(f.code for f in explicit.findings)
    assert any("attacker-exfil-bucket" in f.resource for f in implicit.findings if f.resource)


@pytest.mark.parametrize("where", ["argument", "template"])
def test_a_null_parameter_value_means_the_default_as_aiplatform_sends_it(
    tmp_path: Path, where: str
) -> None:
    """aiplatform drops None values, so Vertex runs the spec's default: that is what is judged."""

    @dsl.pipeline(name="nulls")
    def pipeline(tb: str = INJECTIONS[0]) -> None:
        train = CustomTrainingJobOp(
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
        zt.step.on(train, TRAIN_SA)

    path = tmp_path / "nulls.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    if where == "argument":
        source: Any = str(path)
        values: dict[str, Any] | None = {"tb": None}
    else:
        source = {"pipelineSpec": load_template(path)[0], "runtimeConfig": {}}
        source["runtimeConfig"]["parameterValues"] = {"tb": None}
        values = None
    with pytest.raises(TemplateError, match="change the job's structure"):
        rewrite_pipeline(source, project=PROJECT, parameter_values=values)
