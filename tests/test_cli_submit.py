"""``zt-pipelines submit`` (and the help/exit-code contract of the commands this part adds)."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud.aiplatform import initializer

from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator
from zt_pipelines.policy.snapshot_file import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_SA = "pipeline-sa@zt-demo.iam.gserviceaccount.com"


def _examples() -> Any:
    spec = importlib.util.spec_from_file_location(
        "zt_cli_examples", ROOT / "examples" / "pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    examples = _examples()
    out = tmp_path_factory.mktemp("cli-templates")
    return {n: examples.compile_pipeline(n, str(out / f"{n}.yaml")) for n in examples.PIPELINES}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_snapshot(ROOT / "examples" / "world.yaml")) as emu:
        yield emu


@pytest.fixture()
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.address}")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    config = initializer.global_config
    saved = dict(vars(config))
    emulator.clear_log()
    try:
        yield emulator
    finally:
        vars(config).clear()
        vars(config).update(saved)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def submit_args(template: str, audit: Path, *extra: str) -> list[str]:
    return [
        "submit",
        template,
        "--project",
        "zt-demo",
        "--location",
        "us-central1",
        "--job-id",
        f"cli-{uuid.uuid4().hex[:10]}",
        "--audit-log",
        str(audit),
        "--emulator-principal",
        "user:alice@example.com",
        *extra,
    ]


def test_submit_allowed_exits_zero_and_creates_the_job(
    emu: Emulator, templates: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = set(emu.pipeline_jobs)
    code, out, err = run(
        submit_args(templates["training"], tmp_path / "a.jsonl", "--pipeline-sa", PIPELINE_SA),
        capsys,
    )
    assert code == 0, err
    assert out.startswith("ALLOWED")
    created = set(emu.pipeline_jobs) - before
    assert len(created) == 1 and "submitted projects/" in err
    record = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[-1])
    assert record["action"] == "cli-submit" and record["outcome"] == "allowed"


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_submit_refused_exits_one_with_reads_only(
    emu: Emulator,
    templates: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    code, out, err = run(
        submit_args(
            templates["editor"],
            tmp_path / "a.jsonl",
            "--pipeline-sa",
            PIPELINE_SA,
            "--format",
            fmt,
        ),
        capsys,
    )
    assert code == 1
    assert "refused; nothing was submitted" in err
    assert emu.writes() == []
    if fmt == "json":
        assert json.loads(out)["allowed"] is False
    elif fmt == "sarif":
        sarif = json.loads(out)
        assert sarif["version"] == "2.1.0"
        assert "ZT211" in {r["ruleId"] for r in sarif["runs"][0]["results"]}
    else:
        assert out.startswith("REFUSED") and "ZT211" in out


def test_submit_without_pipeline_sa_is_zt100(
    emu: Emulator, templates: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(submit_args(templates["training"], tmp_path / "a.jsonl"), capsys)
    assert code == 1 and "ZT100" in out
    assert emu.writes() == []


def test_submit_against_a_snapshot_file(
    emu: Emulator, templates: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = str(ROOT / "examples" / "world.yaml")
    code, out, _ = run(
        submit_args(
            templates["missing-permission"],
            tmp_path / "a.jsonl",
            "--pipeline-sa",
            PIPELINE_SA,
            "--snapshot",
            snapshot,
        ),
        capsys,
    )
    assert code == 1 and "ZT200" in out
    # offline verification: the emulator served no IAM reads, and nothing was written
    assert not [r for r in emu.request_log if r.api in ("iam", "cloudresourcemanager")]
    assert emu.writes() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "nope.yaml", "--project", "zt-demo", "--location", "us-central1"], "nope.yaml"),
        (
            ["submit", "X", "--project", "zt-demo", "--location", "us-central1", "--param", "x"],
            "KEY=VALUE",
        ),
        (
            ["submit", "X", "--project", "zt-demo", "--location", "mars-north1"],
            "Unsupported region",
        ),
        (
            [
                "submit",
                "X",
                "--project",
                "p",
                "--location",
                "us-central1",
                "--emulator-principal",
                "b",
            ],
            "ZT_EMULATOR_HOST",
        ),
    ],
)
def test_submit_bad_input_exits_two(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    templates: dict[str, str],
) -> None:
    monkeypatch.delenv("ZT_EMULATOR_HOST", raising=False)
    args = [templates["training"] if a == "X" else a for a in args]
    config = initializer.global_config
    saved = dict(vars(config))
    try:
        code, _, err = run(args, capsys)
    finally:
        vars(config).clear()
        vars(config).update(saved)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["submit", "--help"], ["audit", "--help"], ["audit", "verify", "--help"], ["demo", "--help"]],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(argv, capsys)
    assert code == 0 and "Usage:" in out
