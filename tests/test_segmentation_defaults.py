"""Pipeline-wide network defaults: ``--step-network`` / ``--step-psc-attachment`` /
``--step-reserved-ip-range`` / ``--step-reach`` on the CLI and ``step_defaults=`` in Python
(``zt.check``, ``zt.PipelineJob``) place every step without its own network intent, and the
segmentation checks judge them exactly as per-step declarations.
"""

# no `from __future__ import annotations`: KFP reads the annotations as types
import copy
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import segmentation_world as sw
import yaml
from google.cloud.aiplatform import initializer
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.cli import main
from zt_pipelines.declare import step_defaults
from zt_pipelines.errors import DeclarationError
from zt_pipelines.spec import rewrite_pipeline

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
REACH = ["storage.googleapis.com", "aiplatform.googleapis.com"]
PSC = {"psc_interface_config": {"network_attachment": sw.ATTACHMENT}, "reach": REACH}


@zt.step(sw.TRAIN_SA)
@dsl.component(base_image=sw.IMAGE)
def plain_train(data: str) -> str:
    """No network intent of its own."""
    return data


@zt.step(sw.UPLOAD_SA, network=f"projects/{sw.NUMBER}/global/networks/ml-vpc")
@dsl.component(base_image=sw.IMAGE)
def peered_upload(model: str) -> str:
    """Its own VPC peering: a PSC default never mixes into it."""
    return model


@dsl.pipeline(name="zt-defaults", pipeline_root=sw.PIPELINE_ROOT)
def defaults_pipeline(source: str = "gs://zt-demo-raw-data/x/") -> None:
    """train has no network; upload peers with ml-vpc on its own."""
    model = plain_train(data=source)
    peered_upload(model=model.output)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("defaults") / "p.yaml"
    compiler.Compiler().compile(defaults_pipeline, package_path=str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The segmented world (with a PSA range for the peered step) and its policy."""
    out = tmp_path_factory.mktemp("world")
    world = sw.clean()
    world["segmentation"]["allocatedRanges"] = [
        {"name": "psa", "network": sw.NETWORK, "range": "10.8.0.0/16"}
    ]
    snapshot = out / "world.json"
    snapshot.write_text(json.dumps(world))
    policy = out / "zt-policy.yaml"
    policy.write_text(yaml.safe_dump(sw.POLICY))
    return snapshot, policy


def _seg(report: zt.Report) -> set[tuple[str, str | None]]:
    return {(f.code, f.step) for f in report.findings if f.code.startswith("ZT5")}


def test_the_defaults_place_only_steps_without_their_own(template: Path) -> None:
    result = rewrite_pipeline(template, project=sw.PROJECT, defaults=step_defaults(PSC))
    steps = {s.task: s.job for s in result.steps}
    # the placement checked is the one submitted: train's CustomJob payload carries it
    payload = json.dumps(result.spec)
    assert payload.count(sw.ATTACHMENT) == 1
    assert '"psc_interface_config": {"defaultValue": {"network_attachment"' in payload
    assert steps["plain-train"].psc_interface_config == PSC["psc_interface_config"]
    assert steps["plain-train"].reach == tuple(REACH)
    upload = steps["peered-upload"]
    assert upload.network and upload.psc_interface_config is None  # its own, unmixed
    assert upload.reach == tuple(REACH)  # reach is its own field: the default applies


def test_check_judges_the_default_placement(template: Path, files: tuple[Path, Path]) -> None:
    snapshot, policy = files

    def check(defaults: Any) -> zt.Report:
        return zt.check(
            template,
            project=sw.PROJECT,
            location=sw.LOCATION,
            pipeline_service_account=sw.PIPELINE_SA,
            submitter=sw.SUBMITTER,
            snapshot=str(snapshot),
            policy=str(policy),
            now=NOW,
            step_defaults=defaults,
        )

    # without defaults, train runs on Google's network: refused under requireIsolation
    assert ("ZT520", "plain-train") in _seg(check(None))
    placed = check(PSC)
    assert ("ZT520", "plain-train") not in _seg(placed)
    assert not any(step == "plain-train" for _, step in _seg(placed)), _seg(placed)
    # a default attachment that does not exist is named for the step it placed
    missing = dict(PSC, psc_interface_config={"network_attachment": sw.ATTACHMENT + "-gone"})
    assert ("ZT521", "plain-train") in _seg(check(missing))


def _cli(template: Path, files: tuple[Path, Path], *extra: str) -> list[str]:
    snapshot, policy = files
    return [
        "check",
        str(template),
        "--project",
        sw.PROJECT,
        "--location",
        sw.LOCATION,
        "--pipeline-sa",
        sw.PIPELINE_SA,
        "--snapshot",
        str(snapshot),
        "--policy",
        str(policy),
        "--now",
        NOW.isoformat(),
        "--format",
        "json",
        *extra,
    ]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _codes(out: str) -> set[tuple[str, str | None]]:
    found = json.loads(out)["findings"]
    return {(f["code"], f["step"]) for f in found if f["code"].startswith("ZT5")}


def test_cli_flags_place_the_steps(
    template: Path,
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, out, _ = _run(_cli(template, files), capsys)
    assert ("ZT520", "plain-train") in _codes(out)
    flags = ["--step-psc-attachment", sw.ATTACHMENT]
    for entry in REACH:
        flags += ["--step-reach", entry]
    _, out, _ = _run(_cli(template, files, *flags), capsys)
    assert not any(step == "plain-train" for _, step in _codes(out)), _codes(out)
    # a reach the firewall does not allow, declared by flag: ZT525 names the step it placed
    _, out, _ = _run(_cli(template, files, *flags, "--step-reach", "10.99.0.0/16 tcp:22"), capsys)
    assert ("ZT525", "plain-train") in _codes(out)
    # the attachment from the environment
    monkeypatch.setenv("ZT_STEP_PSC_ATTACHMENT", sw.ATTACHMENT + "-gone")
    _, out, _ = _run(_cli(template, files), capsys)
    assert ("ZT521", "plain-train") in _codes(out)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--step-network", "ml-vpc"], "--step-network"),
        (["--step-reach", "not a reach"], "--step-reach"),
        (
            ["--step-network", sw.NETWORK, "--step-psc-attachment", sw.ATTACHMENT],
            "--step-network / --step-psc-attachment",
        ),
    ],
)
def test_bad_network_flags_are_exit_2_naming_them(
    template: Path,
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    named: str,
) -> None:
    code, out, err = _run(_cli(template, files, *flags), capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"zt-pipelines: error: {named}"), err
    assert "Traceback" not in err


def test_python_defaults_refuse_network_with_psc() -> None:
    with pytest.raises(DeclarationError) as info:
        zt.check(
            "never-read.yaml",
            project=sw.PROJECT,
            location=sw.LOCATION,
            pipeline_service_account=sw.PIPELINE_SA,
            step_defaults={"network": sw.NETWORK, **PSC},
        )
    assert "network and psc_interface_config" in str(info.value)


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No aiplatform.init, no ADC, no emulator: the job verifies against a snapshot."""
    for name in ("ZT_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    config = initializer.global_config
    saved = dict(vars(config))
    config.__init__()  # type: ignore[misc]
    yield
    vars(config).clear()
    vars(config).update(saved)


def test_pipeline_job_takes_the_network_defaults(
    offline: None, template: Path, files: tuple[Path, Path], tmp_path: Path
) -> None:
    snapshot, policy = files

    def job(defaults: Any) -> zt.PipelineJob:
        return zt.PipelineJob(
            display_name="defaults",
            template_path=str(template),
            project=sw.PROJECT,
            location=sw.LOCATION,
            snapshot=str(snapshot),
            policy=str(policy),
            audit_log=tmp_path / "audit.jsonl",
            clock=lambda: NOW,
            step_defaults=defaults,
        )

    assert ("ZT520", "plain-train") in _seg(job(None).verify(service_account=sw.PIPELINE_SA))
    report = job(copy.deepcopy(PSC)).verify(service_account=sw.PIPELINE_SA)
    assert not any(step == "plain-train" for _, step in _seg(report)), _seg(report)
