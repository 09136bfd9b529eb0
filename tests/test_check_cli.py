"""check() end to end on a real kfp compile, and the ``zt-pipelines check`` command."""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl
from policy_worlds import FEATURES, INGEST_SA, PIPELINE_SA, TRAIN_SA, WORLD_FILE, grant, world_dict

import zt_pipelines as zt
from zt_pipelines.cli import main

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@zt.step(
    INGEST_SA,
    needs={
        "gs://zt-raw-data": ["storage.objects.get", "storage.objects.list"],
        "gs://zt-features": ["storage.objects.create"],
    },
)
@dsl.component(base_image="python:3.11")
def ingest(out: dsl.Output[dsl.Dataset]):
    pass


@zt.step(TRAIN_SA, needs={"gs://zt-features": ["storage.objects.get", "storage.objects.list"]})
@dsl.component(base_image="python:3.11")
def train(data: dsl.Input[dsl.Dataset]):
    pass


@dsl.pipeline(name="demo")
def demo():
    i = ingest()
    train(data=i.outputs["out"])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tpl") / "demo.yaml"
    compiler.Compiler().compile(demo, str(out))
    return out


ARGS = [
    "--project",
    "ml-prod",
    "--location",
    "us-central1",
    "--pipeline-sa",
    PIPELINE_SA,
    "--pipeline-root",
    "gs://zt-pipeline-root/runs",
    "--submitter",
    "user:alice@example.com",
    "--now",
    "2026-11-25T12:00:00Z",
]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_check_end_to_end_allowed(template: Path) -> None:
    report = zt.check(
        str(template),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://zt-pipeline-root/runs",
        snapshot=WORLD_FILE,
        submitter="user:alice@example.com",
        now=NOW,
    )
    assert report.allowed, str(report)
    assert report.pipeline == "demo" and report.template == str(template)
    assert {f.step for f in report.findings} <= {"ingest", "train", None}


def test_check_end_to_end_refused_with_evidence(template: Path) -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", f"serviceAccount:{TRAIN_SA}")
    report = zt.check(
        str(template),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=data,
        now=NOW,
    )
    (f,) = report.by_code("ZT212")
    assert f.step == "train" and f.evidence[0].role == "roles/storage.admin"
    assert not report.allowed


def test_check_default_pipeline_sa_is_a_zt100_refusal(template: Path) -> None:
    report = zt.check(
        str(template),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account="123456789012-compute@developer.gserviceaccount.com",
        snapshot=WORLD_FILE,
        now=NOW,
    )
    assert "ZT100" in report.codes() and not report.allowed


def test_cli_allowed_exit_0(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["check", str(template), *ARGS, "--snapshot", str(WORLD_FILE)], capsys)
    assert code == 0 and out.startswith("ALLOWED")


def test_cli_refused_exit_1_json_and_sarif(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "snap.yaml"
    snap.write_text(
        yaml.safe_dump(
            grant(
                world_dict(),
                "//cloudresourcemanager.googleapis.com/projects/ml-prod",
                "roles/editor",
                f"serviceAccount:{TRAIN_SA}",
            )
        )
    )
    code, out, _ = cli(
        ["check", str(template), *ARGS, "--snapshot", str(snap), "--format", "json"], capsys
    )
    assert code == 1
    data = json.loads(out)
    assert data["allowed"] is False and any(f["code"] == "ZT211" for f in data["findings"])
    sarif_file = tmp_path / "out.sarif"
    code, _, _ = cli(
        [
            "check",
            str(template),
            *ARGS,
            "--snapshot",
            str(snap),
            "--format",
            "sarif",
            "-o",
            str(sarif_file),
        ],
        capsys,
    )
    assert code == 1
    assert json.loads(sarif_file.read_text())["version"] == "2.1.0"


def test_cli_policy_file(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "zt-policy.yaml"
    policy.write_text("regions: [europe-west4]\n")
    code, out, _ = cli(
        ["check", str(template), *ARGS, "--snapshot", str(WORLD_FILE), "--policy", str(policy)],
        capsys,
    )
    assert code == 1 and "ZT500" in out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--snapshot", "nope.yaml"], "nope.yaml"),
        (["--snapshot", str(WORLD_FILE), "--param", "novalue"], "--param"),
        (["--snapshot", str(WORLD_FILE), "--now", "yesterday"], "--now"),
        (["--snapshot", str(WORLD_FILE), "--policy", "missing-policy.yaml"], "missing-policy"),
        (["--snapshot", str(WORLD_FILE), "--param", "a=1", "--param", "a=2"], "twice"),
        (["--snapshot", str(WORLD_FILE), "-o", "/nonexistent-dir/r.json"], "--output"),
        (["--snapshot", str(WORLD_FILE), "-o", "/"], "is a directory"),
        (["--snapshot", str(WORLD_FILE), "--location", "us central1"], "location"),
        (["--snapshot", str(WORLD_FILE), "--location", ""], "location"),
        (["--snapshot", str(WORLD_FILE), "--submitter", "group:ml@example.com"], "submitter"),
        (["--snapshot", str(WORLD_FILE), "--submitter", "allUsers"], "submitter"),
        (["--snapshot", str(WORLD_FILE), "--submitter", "bob"], "submitter"),
        (["--snapshot", str(WORLD_FILE), "--submitter", "user:a@x.com@example.com"], "submitter"),
    ],
)
def test_cli_bad_input_exit_2(
    template: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    code, _, err = cli(["check", str(template), *ARGS, *extra], capsys)
    assert code == 2 and needle in err and "Traceback" not in err


def test_cli_bad_snapshot_names_file_and_path(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = world_dict()
    data["nodes"][2]["policy"]["bindings"][0]["members"][0] = "pipeline-sa"
    snap = tmp_path / "bad.yaml"
    snap.write_text(yaml.safe_dump(data))
    code, _, err = cli(["check", str(template), *ARGS, "--snapshot", str(snap)], capsys)
    assert code == 2
    assert f"{snap}: $.nodes[2].policy.bindings[0].members[0]" in err


def test_check_is_the_function_whatever_the_import_order() -> None:
    import importlib

    import zt_pipelines.verification as module

    package = importlib.import_module("zt_pipelines")
    assert package.check is module.check
    assert callable(package.check)


@dsl.component(base_image="python:3.11")
def who() -> str:
    return "x"


@dsl.pipeline(name="runtime-sa")
def runtime_sa(sa: str = TRAIN_SA):
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

    who()
    CustomTrainingJobOp(display_name="job", worker_pool_specs=[], service_account=sa)


def test_check_identity_from_runtime_value_is_zt102(tmp_path: Path) -> None:
    pytest.importorskip("google_cloud_pipeline_components")
    from zt_pipelines.spec import load_template

    path = tmp_path / "rt.yaml"
    compiler.Compiler().compile(runtime_sa, str(path))
    spec, _ = load_template(path)
    task = spec["root"]["dag"]["tasks"]["custom-training-job"]
    task["inputs"]["parameters"]["service_account"] = {
        "taskOutputParameter": {"producerTask": "who", "outputParameterKey": "Output"}
    }
    report = zt.check(
        spec,
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=WORLD_FILE,
        now=NOW,
    )
    (f,) = report.findings
    assert f.code == "ZT102" and f.step == "custom-training-job" and not report.allowed
    # the same pipeline with the parameter pinned is checked normally
    ok = zt.check(
        str(path),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=WORLD_FILE,
        now=NOW,
    )
    assert "ZT102" not in ok.codes()


def test_cli_refused_world_file(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused = WORLD_FILE.parent / "refused.yaml"
    code, out, _ = cli(
        ["check", str(template), *ARGS, "--snapshot", str(refused), "--format", "json"], capsys
    )
    assert code == 1
    findings = json.loads(out)["findings"]
    errors = {f["code"] for f in findings if f["severity"] == "error"}
    assert errors == {"ZT111", "ZT202", "ZT211", "ZT212", "ZT213", "ZT214", "ZT216", "ZT400"}
    # roles/editor on the project: broader than train's needs and reaching every SA below
    scope = next(f for f in findings if f["code"] == "ZT214")
    assert "gs://zt-features" in scope["message"]
    assert any("train-sa → actAs → pipeline-sa" in f["message"] for f in findings)
    denied = next(f for f in findings if f["code"] == "ZT202")
    assert (denied["step"], denied["permission"]) == ("ingest", "storage.objects.create")
    assert denied["evidence"][0]["deny_policy"].endswith("no-writes-for-ingest")


def test_cli_explain(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        ["check", str(template), *ARGS, "--snapshot", str(WORLD_FILE), "--explain"], capsys
    )
    assert code == 0
    assert (
        "train: serviceAccount:train-sa@ml-prod.iam.gserviceaccount.com has "
        "storage.objects.get on gs://zt-features — granted by roles/storage.objectViewer on "
        "//storage.googleapis.com/zt-features"
    ) in out


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ("SERVICE_ACCOUNT_KEY", "service_account_key"),
        ("service-account-key", "service_account_key"),
        ("serviceAccountKey", "service_account_key"),
        ("service_account_key ", "service_account_key"),
        ("user", "user"),
    ],
)
def test_submitter_credential_kinds_are_normalised(given: str, kind: str) -> None:
    from zt_pipelines.policy.requirements import submitter_credential_kind

    assert submitter_credential_kind(given) == kind


def test_an_unknown_submitter_credential_kind_exits_2(
    template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a typo must never switch the key-file rule off (red team in_20)
    argv = ["check", str(template), *ARGS, "--snapshot", str(WORLD_FILE)]
    code, _, err = cli([*argv, "--submitter-credentials", "/home/ci/key.json"], capsys)
    assert code == 2 and "service_account_key" in err


def test_the_step_default_variables_are_read_by_every_entry_point(
    template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CLI's flags read ZT_STEP_* / ZT_PERSISTENT_RESOURCE_ID: zt.check and the drop-in
    # must judge the same placement (red team in_17)
    from zt_pipelines.declare import resolve_step_defaults

    monkeypatch.setenv("ZT_PERSISTENT_RESOURCE_ID", "train-pool")
    resolved = resolve_step_defaults(None)
    assert resolved is not None and resolved.persistent_resource_id == "train-pool"
    mine = resolve_step_defaults({"persistent_resource_id": "mine"})
    assert mine is not None and mine.persistent_resource_id == "mine"  # the caller's wins
    report = zt.check(
        template,
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://zt-pipeline-root/runs",
        snapshot=WORLD_FILE,
        submitter="user:alice@example.com",
        now=NOW,
    )
    assert {"ZT120", "ZT121"} & set(report.codes()), str(report)  # the pool is judged
    monkeypatch.setenv("ZT_STEP_NETWORK", "not a network")
    with pytest.raises(zt.DeclarationError, match="ZT_STEP_NETWORK"):
        resolve_step_defaults(None)
