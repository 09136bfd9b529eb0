"""Templates from where aiplatform takes them (local, gs://, Artifact Registry), one fetch for
the drop-in job and every CLI command, against the emulator with the real clients."""

from __future__ import annotations

import json
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.templates import fetch_template_text
from zt_pipelines.job import PipelineJob
from zt_pipelines.policy.snapshot_file import load_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_job import EXAMPLES, PIPELINE_SA, STEP_SAS, WORLD

ALICE = "user:alice@example.com"


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("ar-templates")
    return {n: EXAMPLES.compile_pipeline(n, str(out / f"{n}.yaml")) for n in EXAMPLES.PIPELINES}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_snapshot(WORLD)) as emu:
        yield emu


@pytest.fixture()
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.address}")
    monkeypatch.delenv("ZT_EMULATOR_CALLER", raising=False)
    config = initializer.global_config
    saved = dict(vars(config))
    config.__init__()  # type: ignore[misc]
    emulator.clear_log()
    try:
        yield emulator
    finally:
        vars(config).clear()
        vars(config).update(saved)


@pytest.fixture()
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any name lookup other than loopback: the emulator switch must keep us local."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1"):
            looked_up.append(str(host))
            raise OSError(f"DNS lookup of {host} during an emulator test")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return looked_up


def _publish(emu: Emulator, path: str, package: str = "training") -> str:
    return emu.add_kfp_template(
        Path(path).read_bytes(),
        project="zt-demo",
        repository="pipelines",
        package=package,
        tags=("v1", "latest"),
    )


def test_registry_template_with_aiplatform_init_credentials(
    emu: Emulator, templates: dict[str, str], tmp_path: Path, no_dns: list[str]
) -> None:
    # the issue: with aiplatform.init / ADC credentials (no credentials= argument) this was
    # AttributeError: 'NoneType' object has no attribute 'before_request'
    version_url = _publish(emu, templates["training"])
    aiplatform.init(
        project="zt-demo", location="us-central1", credentials=emulator_credentials(ALICE)
    )
    tag_url = version_url.rsplit("/", 1)[0] + "/v1"
    audit = AuditLog(tmp_path / "audit.jsonl")
    job = PipelineJob(
        display_name="ar",
        template_path=tag_url,
        audit_log=audit,
        snapshot=str(WORLD),
        job_id=f"t-{uuid.uuid4().hex[:12]}",
    )
    report = job.verify(service_account=PIPELINE_SA)
    assert report.allowed
    # the PlatformSpec documents (our declarations) came through the registry
    steps = {i["service_account"] for i in audit.records()[-1]["identities"] if i["task"]}
    assert steps == set(STEP_SAS.values())
    assert job._gca_resource.template_uri == tag_url
    [download] = [r for r in emu.request_log if r.api == "artifactregistry"]
    assert download.caller == ALICE and download.status == "OK"
    assert download.target.endswith("/zt-demo/pipelines/training/v1")
    # submitted as aiplatform would: the registry URI rides along, and is part of the decision
    job.submit(service_account=PIPELINE_SA)
    [sent] = [j for j in emu.pipeline_jobs.values() if j.get("templateUri") == tag_url]
    assert sent["labels"]["zt-verified"] == "true"
    assert audit.records()[-1]["outcome"] == "allowed"
    assert no_dns == []


def test_registry_version_and_tag_are_the_same_bytes(
    emu: Emulator, templates: dict[str, str], no_dns: list[str]
) -> None:
    url = _publish(emu, templates["editor"], package="editor")
    creds = emulator_credentials(ALICE)
    by_version = fetch_template_text(url, credentials=creds)
    by_tag = fetch_template_text(url.rsplit("/", 1)[0] + "/latest", credentials=creds)
    assert by_version == by_tag == Path(templates["editor"]).read_text()


@pytest.mark.parametrize(
    ("suffix", "member", "error", "needle"),
    [
        ("/no-such-tag", ALICE, zt.TemplateError, "not found"),
        ("", "user:mallory@example.com", zt.ApiError, "403"),  # no download permission
        ("", None, zt.ApiError, "401"),  # anonymous
    ],
)
def test_registry_failures_are_typed(
    emu: Emulator,
    templates: dict[str, str],
    suffix: str,
    member: str | None,
    error: type[Exception],
    needle: str,
) -> None:
    url = _publish(emu, templates["training"])
    if suffix:
        url = url.rsplit("/", 1)[0] + suffix
    creds = emulator_credentials(member) if member else None
    with pytest.raises(error, match=needle):
        fetch_template_text(url, credentials=creds)


def test_https_outside_the_registry_is_refused_under_the_emulator(
    emu: Emulator, no_dns: list[str]
) -> None:
    with pytest.raises(zt.TemplateError, match="leave the emulator"):
        fetch_template_text("https://example.com/pipelines/t.yaml")
    assert no_dns == []


def test_a_lost_slash_in_a_uri_is_named(tmp_path: Path) -> None:
    with pytest.raises(zt.TemplateError, match="lost a slash"):
        fetch_template_text("gs:/bucket/t.yaml")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def _upload_gcs(emu: Emulator, path: str, name: str) -> str:
    # seeded into a bucket alice may read (the world grants her objectViewer there)
    with emu._world.lock:
        emu._world.objects[("zt-demo-restricted", name)] = (Path(path).read_bytes(), "text/yaml")
    return f"gs://zt-demo-restricted/{name}"


@pytest.mark.parametrize("where", ["gs", "registry"])
def test_every_cli_command_takes_remote_templates(
    emu: Emulator,
    templates: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_dns: list[str],
    where: str,
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_CALLER", ALICE)
    if where == "gs":
        uri = _upload_gcs(emu, templates["editor"], f"templates/{uuid.uuid4().hex}.yaml")
    else:
        uri = _publish(emu, templates["editor"], package="editor")
    common = ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    world = ["--snapshot", str(WORLD)]
    code, out, err = _run(["check", uri, "--location", "us-central1", *common, *world], capsys)
    assert code == 1 and "ZT211" in out, err  # the editor step is refused, from the remote copy
    code, out, err = _run(
        ["rewrite", uri, "-o", str(tmp_path / "r.yaml"), "--project", "zt-demo"], capsys
    )
    assert code == 0, err
    assert "legacy-sa@zt-demo.iam.gserviceaccount.com" in out
    code, out, err = _run(["plan", uri, *common, *world, "--format", "json"], capsys)
    # legacy-sa holds roles/editor: acting as it is held back for review (exit 3)
    assert code == 3, err
    held = json.loads(out)["held_back"]
    assert any(h["resource"].endswith("/legacy-sa@zt-demo.iam.gserviceaccount.com") for h in held)
    code, out, err = _run(
        ["snapshot", "--template", uri, *common, "-o", str(tmp_path / "s.yaml")], capsys
    )
    assert code == 0, err
    code, out, err = _run(
        [
            "submit",
            uri,
            "--project",
            "zt-demo",
            "--location",
            "us-central1",
            "--pipeline-sa",
            PIPELINE_SA,
            "--audit-log",
            str(tmp_path / "a.jsonl"),
            "--emulator-principal",
            ALICE,
        ],
        capsys,
    )
    assert code == 1 and "ZT211" in out, err
    assert emu.writes() == []
    assert no_dns == []
