"""``-v`` / ``-vv`` of a live check, through the CLI against the emulator: ``-v`` logs every
cache lookup (hit, or miss and why), ``-vv`` logs every API call the check makes — one line
per call the emulator served, whatever its kind (started reads, batch parts, blocking reads)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from zt_pipelines.cli import cli
from zt_pipelines.emulator import Emulator
from zt_pipelines.policy.snapshot_file import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
CALL = "call "  # how an API call's debug line starts
PROJECT = "//cloudresourcemanager.googleapis.com/projects/zt-demo"


def _examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "zt_examples_pipeline_logging", ROOT / "examples/pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EX = _examples()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example pipeline whose steps touch buckets, datasets, tables and accounts."""
    out = tmp_path_factory.mktemp("templates")
    path: str = EX.compile_pipeline("editor", str(out / "editor.yaml"))
    return path


@pytest.fixture()
def live(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulator]:
    """The emulator over the demo world, the environment a user would set, and the
    ``zt_pipelines`` logger as it was before the CLI's ``-v`` changed it."""
    logger = logging.getLogger("zt_pipelines")
    level, handlers = logger.level, list(logger.handlers)
    with Emulator(load_snapshot(ROOT / "examples/world.yaml")) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        yield emu
    logger.setLevel(level)
    logger.handlers[:] = handlers


def _check(template: str, *verbose: str) -> list[str]:
    args = [
        "check",
        template,
        *verbose,
        "--project",
        EX.PROJECT,
        "--location",
        EX.LOCATION,
        "--pipeline-sa",
        EX.PIPELINE_SA,
        "--pipeline-root",
        EX.PIPELINE_ROOT,
        "--submitter",
        EX.SUBMITTER,
        "--format",
        "json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1), result.output
    return args


def test_vv_logs_every_api_call_of_a_live_check(
    live: Emulator, template: str, caplog: pytest.LogCaptureFixture
) -> None:
    _check(template, "-vv")  # the CLI's -vv alone turns the debug lines on
    calls = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("zt_pipelines") and r.getMessage().startswith(CALL)
    ]
    served = live.request_log
    assert served and {r.status for r in served} == {"OK"}
    # one line per call served: none is silent, whatever path it took
    assert len(calls) == len(served), (sorted(calls), sorted(r.method for r in served))
    kinds = {line.split()[1] for line in calls}
    # the kinds this check reads, by the three paths a read can take
    assert {
        "serviceAccountKeys.list",  # raw gRPC, started without a thread
        "serviceAccounts.getIamPolicy",
        "projects.get",
        "storage.buckets.get",  # a part of the storage batch request
        "storage.buckets.getIamPolicy",
        "denyPolicies.list",  # blocking, through the retry policy
        "storage.hmacKeys.list",
        "searchAllIamPolicies",
    } <= kinds
    assert any("storage batch request:" in r.getMessage() for r in caplog.records)


def test_v_logs_no_api_call_but_every_cache_lookup(
    live: Emulator, template: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    cache = str(tmp_path / "role-cache")
    args = [
        "snapshot",
        "-v",
        "--template",
        template,
        "--project",
        EX.PROJECT,
        "--pipeline-sa",
        EX.PIPELINE_SA,
        "--cache-dir",
        cache,
        "-o",
        str(tmp_path / "snap.json"),
    ]
    first = CliRunner().invoke(cli, args)  # the CLI's -v alone turns the info lines on
    assert first.exit_code == 0, first.output
    cold = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cache ")]
    # a first check finds nothing cached (it may find what it wrote itself a moment before)
    assert all(m.startswith(("cache miss (not cached): ", "cache hit: ")) for m in cold), cold
    assert "cache miss (not cached): roles roles/editor" in cold
    assert f"cache miss (not cached): hierarchy {PROJECT}" in cold
    assert not [r for r in caplog.records if r.getMessage().startswith(CALL)]  # -vv only
    caplog.clear()
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    warm = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cache ")]
    # what the first check cached (a role, the hierarchy's shape) the second finds
    assert "cache hit: roles roles/editor" in warm, warm
    assert f"cache hit: hierarchy {PROJECT}" in warm, warm
