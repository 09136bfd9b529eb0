"""The CLI as a new user meets it: every command that takes a template takes it from where
aiplatform takes it, and the emulator without a caller says so instead of "access denied"."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from zt_pipelines.cli import SUBCOMMANDS, _LazyGroup, main
from zt_pipelines.emulator import Emulator
from zt_pipelines.policy.snapshot_file import load_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_job import EXAMPLES, PIPELINE_SA, WORLD

ALICE = "user:alice@example.com"  # the world lets her read gs://zt-demo-restricted

# every command taking a template, with what else it needs to get as far as reading it
TEMPLATE_COMMANDS: dict[str, list[str]] = {
    "rewrite": ["-o", "{tmp}/r.yaml", "--project", "zt-demo"],
    "check": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "--snapshot", str(WORLD)],
    "snapshot": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "-o", "{tmp}/s.yaml"],
    "submit": [
        "--project",
        "zt-demo",
        "--pipeline-sa",
        PIPELINE_SA,
        "--audit-log",
        "{tmp}/a.jsonl",
        "--snapshot",
        str(WORLD),
    ],
    "plan": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "--snapshot", str(WORLD)],
    "apply": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "--snapshot", str(WORLD)],
    "reach": ["--project", "zt-demo", "--snapshot", str(WORLD)],
}


def _commands_taking_a_template() -> set[str]:
    found = set()
    for verb in SUBCOMMANDS:
        command = _LazyGroup._load(verb)
        assert command is not None, verb
        each = command.commands.values() if isinstance(command, click.Group) else [command]
        for sub in each:
            if any(p.name in ("template", "templates") for p in sub.params):
                found.add(verb)
    return found


def test_the_list_below_is_every_command_that_takes_a_template() -> None:
    assert _commands_taking_a_template() == set(TEMPLATE_COMMANDS)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_snapshot(WORLD)) as emu:
        yield emu


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("fh-templates")
    return Path(EXAMPLES.compile_pipeline("editor", str(out / "editor.yaml"))).read_bytes()


@pytest.mark.parametrize("verb", sorted(TEMPLATE_COMMANDS))
def test_every_template_command_reads_gs_and_artifact_registry(
    verb: str,
    emulator: Emulator,
    template: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("ZT_EMULATOR_CALLER", ALICE)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n" * 4))  # apply asks before writing
    name = f"templates/{uuid.uuid4().hex}.yaml"
    with emulator._world.lock:
        emulator._world.objects[("zt-demo-restricted", name)] = (template, "text/yaml")
    package = f"p{uuid.uuid4().hex[:8]}"
    registry = emulator.add_kfp_template(
        template, project="zt-demo", repository="pipelines", package=package, tags=("v1",)
    )
    for uri, key in ((f"gs://zt-demo-restricted/{name}", name[10:]), (registry, package)):
        rest = [a.replace("{tmp}", str(tmp_path)) for a in TEMPLATE_COMMANDS[verb]]
        argv = [verb, "--template", uri, *rest] if verb == "snapshot" else [verb, uri, *rest]
        emulator.clear_log()
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert "does not exist" not in err and uri.replace("//", "/") not in err, err
        reads = [r for r in emulator.request_log if r.caller == ALICE and r.status == "OK"]
        assert any(key in r.target for r in reads), (uri, err)


def test_a_check_against_the_emulator_without_a_caller_says_so(
    emulator: Emulator, tmp_path: Path
) -> None:
    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml"))
    env = {k: v for k, v in os.environ.items() if k != "ZT_EMULATOR_CALLER"}
    env["ZT_EMULATOR_HOST"] = emulator.address
    argv = ["check", template, "--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    run = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", *argv],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 1, run.stderr
    head = " ".join(run.stdout.split("\n\n")[0].splitlines()[1:])  # under the verdict
    assert "without credentials" in head and "ZT_EMULATOR_CALLER=" in head, run.stdout[:600]
