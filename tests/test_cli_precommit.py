"""The pre-commit hook: `.pre-commit-hooks.yaml` runs `precommit-check` on compiled templates."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from zt_pipelines.cli import main

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "examples" / "world.yaml"
ARGS = [
    "--project",
    "zt-demo",
    "--location",
    "us-central1",
    "--pipeline-sa",
    "pipeline-sa@zt-demo.iam.gserviceaccount.com",
    "--snapshot",
    str(WORLD),
    "--submitter",
    "user:alice@example.com",
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location(
        "zt_hook_examples", ROOT / "examples" / "pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("hook")
    return {n: Path(module.compile_pipeline(n, str(out / f"{n}.yaml"))) for n in module.PIPELINES}


def hook_argv() -> list[str]:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "zt-pipelines-check" and hook["language"] == "python"
    assert hook["pass_filenames"] is True
    program, *rest = shlex.split(hook["entry"])
    assert program == "zt-pipelines"  # the console script of this package
    return rest


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out + err


def test_hook_passes_a_good_template_and_skips_other_yaml(
    compiled: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "values.yaml"
    other.write_text("replicas: 3\n")
    code, out = run([*hook_argv(), *ARGS, str(compiled["training"]), str(other)], capsys)
    assert code == 0, out
    assert "training.yaml: allowed" in out and "values.yaml" not in out


def test_hook_blocks_a_refused_template(
    compiled: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(
        [*hook_argv(), *ARGS, str(compiled["training"]), str(compiled["missing-permission"])],
        capsys,
    )
    assert code == 1
    assert "missing-permission.yaml:" in out and "ZT200" in out


def test_hook_needs_a_snapshot(
    compiled: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run([*hook_argv(), *ARGS[:-4], str(compiled["training"])], capsys)
    assert code == 2 and "--snapshot" in out


def test_hook_json_and_sarif(compiled: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    files = [str(compiled["training"]), str(compiled["editor"])]
    code, out = run([*hook_argv(), *ARGS, "--format", "json", *files], capsys)
    data = json.loads(out)
    assert code == 1
    assert data[files[0]]["allowed"] is True and data[files[1]]["allowed"] is False
    code, out = run([*hook_argv(), *ARGS, "--format", "sarif", *files], capsys)
    sarif = json.loads(out)
    assert code == 1 and sarif["version"] == "2.1.0" and len(sarif["runs"]) == 2
    assert "ZT211" in {r["ruleId"] for r in sarif["runs"][1]["results"]}


def _disguise(text: str, how: str) -> str:
    """A template aiplatform's lax reader (PyYAML) still reads, the strict loader refuses, and
    whose bytes need not name ``pipelineInfo``."""
    if how == "escaped key + duplicate key":
        data = next(yaml.safe_load_all(text))
        body = json.dumps(data)
        body = body.replace('"pipelineInfo"', '"pipeline\\u0049nfo"', 1)
        return body[:-1] + ', "sdkVersion": "a", "sdkVersion": "b"}'
    if how == "alias":
        return text.replace("pipelineInfo:", "pipelineInfo: &info", 1) + "x: *info\n"
    if how == "yaml tag":
        return "zt: !!binary aGk=\n" + text
    if how == "escaped key + NaN":
        data = next(yaml.safe_load_all(text))
        body = json.dumps(data).replace('"pipelineInfo"', '"pipeline\\u0049nfo"', 1)
        return body[:-1] + ', "zt": NaN}'
    if how == "escaped key in a job envelope + duplicate":
        data = next(yaml.safe_load_all(text))
        job = json.dumps({"pipelineSpec": data, "runtimeConfig": {}})
        job = job.replace('"pipelineSpec"', '"pipeline\\u0053pec"', 1)
        return job[:-1] + ', "displayName": "a", "displayName": "b"}'
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "escaped key + duplicate key",
        "alias",
        "yaml tag",
        "escaped key + NaN",
        "escaped key in a job envelope + duplicate",
        "utf-16-le bom",
        "utf-16-be bom",
        "utf-32-le bom",
    ],
)
def test_a_template_the_strict_loader_refuses_is_never_skipped(
    compiled: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """What aiplatform would read as a pipeline is checked (and refused), never skipped."""
    text = (
        compiled["minimal"].read_text()
        if "minimal" in compiled
        else next(iter(compiled.values())).read_text()
    )
    path = tmp_path / "disguised.yaml"
    if how.startswith("utf-"):  # re-encoded with a byte-order mark (PyYAML reads it)
        first = json.dumps(next(yaml.safe_load_all(text)))
        path.write_bytes(("\ufeff" + first).encode(how[: -len(" bom")]))
    else:
        path.write_text(_disguise(text, how))
    code, out = run([*hook_argv(), *ARGS, str(path)], capsys)
    assert code == 2, out
    assert "disguised.yaml" in out


def test_broken_yaml_that_is_no_pipeline_is_still_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Helm template (not YAML until rendered) in the same repository is not a pipeline."""
    helm = tmp_path / "deployment.yaml"
    helm.write_text("apiVersion: apps/v1\nkind: Deployment\n{{- if .Values.x }}\n  a: b\n")
    dupe = tmp_path / "config.yaml"
    dupe.write_text("a: 1\na: 2\n")
    code, out = run([*hook_argv(), *ARGS, str(helm), str(dupe)], capsys)
    assert code == 0, out
