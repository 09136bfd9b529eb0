"""``zt-pipelines rewrite``: exit 0 with the rewritten YAML, exit 2 with one clear line.

No `from __future__ import annotations`: KFP reads component annotations at decoration time.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

from zt_pipelines.cli import main
from zt_pipelines.errors import ManifestError
from zt_pipelines.spec import load_template, rewrite_pipeline

PROJECT = "zt-test-project"
PARAM_SA = f"param-runner@{PROJECT}.iam.gserviceaccount.com"


@dsl.component(base_image="python:3.11")
def say(msg: str) -> str:
    return msg


@dsl.pipeline(name="inner")
def inner(msg: str) -> str:
    return say(msg=msg).output


@dsl.pipeline(name="cli-pipeline")
def pipeline(sa: str = "", n: int = 1) -> None:
    say(msg="root")
    inner(msg="a")
    inner(msg="b")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


def test_rewrite_cli_success(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.yaml"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"steps": {"inner/say": {"service_account": PARAM_SA}}}))
    code = run(
        [
            "rewrite",
            str(template),
            "-o",
            str(out),
            "--project",
            PROJECT,
            "--manifest",
            str(manifest),
            "--param",
            "n=3",
        ]
    )
    assert code == 0
    spec, docs = load_template(out)
    expected = rewrite_pipeline(template, project=PROJECT, manifest=manifest).spec
    # the --param value judged is the output's default (a plain submission runs it)
    expected["root"]["inputDefinitions"]["parameters"]["n"]["defaultValue"] = 3
    assert spec == expected
    assert docs == ()
    stdout = capsys.readouterr().out
    assert f"inner/say\t{PARAM_SA}\tmanifest" in stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ([], "project"),
        (["--project", PROJECT, "--param", "nope=1"], "nope"),
        (["--project", PROJECT, "--param", "novalue"], "KEY=VALUE"),
        (["--project", PROJECT, "--manifest", "/nonexistent/m.yaml"], "m.yaml"),
        (["--project", PROJECT, "--pipeline-sa", "not an email"], "whitespace"),
    ],
)
def test_rewrite_cli_bad_input_exits_2_with_one_line(
    template: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    out = tmp_path / "out.yaml"
    code = run(["rewrite", str(template), "-o", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("zt-pipelines: error:"), err
    assert needle in err
    assert not out.exists()


def test_rewrite_cli_missing_template_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        [
            "rewrite",
            str(tmp_path / "none.yaml"),
            "-o",
            str(tmp_path / "o.yaml"),
            "--project",
            PROJECT,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "none.yaml" in err and len(err.splitlines()) == 1


def test_rewrite_cli_as_a_real_process(template: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "zt-pipelines"
    if not script.exists():
        pytest.skip("the zt-pipelines console script is not installed in this environment")
    out = tmp_path / "out.yaml"
    proc = subprocess.run(
        [str(script), "rewrite", str(template), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "project" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ambiguous_manifest_task_names_the_paths(template: Path) -> None:
    spec, _ = load_template(template)
    # without the root-level "say", the name is shared by two sub-pipeline tasks
    tasks = {k: v for k, v in spec["root"]["dag"]["tasks"].items() if k != "say"}
    spec = {**spec, "root": {**spec["root"], "dag": {"tasks": tasks}}}
    with pytest.raises(ManifestError, match="ambiguous") as ambiguous:
        rewrite_pipeline(spec, project=PROJECT, manifest={"steps": {"say": {}}})
    assert "inner/say" in str(ambiguous.value) and "inner-2/say" in str(ambiguous.value)
    with pytest.raises(ManifestError, match="not a task"):
        rewrite_pipeline(spec, project=PROJECT, manifest={"steps": {"say-9": {}}})


LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]\n"
    for prev, name in zip("abcdefg", "bcdefgh", strict=True)
)
GARBAGE = {
    # nested aliases expand exponentially: this kept the rewrite busy for minutes
    "laughs.yaml": (
        'a: &a ["x", "x"]\n' + LAUGHS + "pipelineInfo: {name: p}\n"
        "root: {dag: {tasks: {}}}\nschemaVersion: *h\n"
    ),
    "unclosed.yaml": "steps: [\n",
    "list.yaml": "- 1\n- 2\n",
    "laughs-manifest.yaml": (
        "steps:\n  t:\n    psc_interface_config:\n      a: &a [x, x]\n"
        + "".join("      " + line + "\n" for line in LAUGHS.splitlines())
    ),
    "empty.yaml": "",
    "no-root.yaml": "pipelineInfo: {name: p}\n",
    "str-components.yaml": "pipelineInfo: {name: p}\nroot: {dag: {tasks: {}}}\ncomponents: x\n",
    "int-task.yaml": "pipelineInfo: {name: p}\nroot: {dag: {tasks: {t: 5}}}\n",
    "str-args.yaml": (
        "pipelineInfo: {name: p}\n"
        "root: {dag: {tasks: {t: {componentRef: {name: comp-t}}}}}\n"
        "components: {comp-t: {executorLabel: exec-t}}\n"
        "deploymentSpec: {executors: {exec-t: {container: {image: x, args: 7}}}}\n"
    ),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
@pytest.mark.parametrize("as_manifest", [False, True], ids=["template", "manifest"])
def test_rewrite_cli_garbage_files_exit_2_with_one_line(
    template: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    as_manifest: bool,
) -> None:
    garbage = tmp_path / name
    garbage.write_text(GARBAGE[name])
    args = [str(template), "--manifest", str(garbage)] if as_manifest else [str(garbage)]
    code = run(["rewrite", *args, "-o", str(tmp_path / "o.yaml"), "--project", PROJECT])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("zt-pipelines: error:"), err
    assert name in err


@pytest.mark.parametrize("where", ["missing-dir/out.yaml", "."])
def test_rewrite_cli_unwritable_output_exits_2_before_rewriting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    # the template does not even exist: the output is checked first, so that is what is named
    out = tmp_path / where
    code = run(["rewrite", str(tmp_path / "none.yaml"), "-o", str(out), "--project", PROJECT])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--output" in err and "none.yaml" not in err


@dsl.container_component
def echo(text: str):  # type: ignore[no-untyped-def]
    return dsl.ContainerSpec(image="alpine:3.19", command=["echo", text])


def test_rewrite_cli_warns_about_inputs_pasted_unescaped_into_the_payload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @dsl.pipeline(name="pasted")
    def pasted() -> None:
        echo(text=say(msg="x").output)

    template = tmp_path / "p.yaml"
    compiler.Compiler().compile(pasted, str(template))
    code = run(["rewrite", str(template), "-o", str(tmp_path / "o.yaml"), "--project", PROJECT])
    err = capsys.readouterr().err
    assert code == 0
    assert "warning: task 'echo' pastes 'text' (the output 'Output' of task 'say') unescaped" in err
    assert re.search(r"\(ZT102, upstream [0-9a-f]{24}\)", err)


def test_the_output_runs_the_values_the_rewrite_judged(template: Path, tmp_path: Path) -> None:
    """--param and --pipeline-root are written where a plain submission of the output reads
    them: a spec's defaults and default root, a PipelineJob file's runtimeConfig (red team
    in_13) — never the file's own values, which nothing judged."""
    import json

    sa = f"say-sa@{PROJECT}.iam.gserviceaccount.com"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"steps": {"say": {"service_account": sa}}}))
    common = ["--project", PROJECT, "--manifest", str(manifest)]
    common += ["--param", "n=7", "--pipeline-root", "gs://judged-root/runs"]
    out = tmp_path / "spec-out.yaml"
    assert run(["rewrite", str(template), *common, "-o", str(out)]) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["n"]["defaultValue"] == 7
    assert spec["defaultPipelineRoot"] == "gs://judged-root/runs"
    job = {
        "pipelineSpec": yaml.safe_load(template.read_text()),
        "runtimeConfig": {"parameterValues": {"n": 1}, "gcsOutputDirectory": "gs://other/r"},
    }
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    out = tmp_path / "job-out.yaml"
    assert run(["rewrite", str(job_file), *common, "-o", str(out)]) == 0
    runtime = yaml.safe_load(out.read_text())["runtimeConfig"]
    assert runtime == {"parameterValues": {"n": 7}, "gcsOutputDirectory": "gs://judged-root/runs"}


def test_a_pipelinejob_files_own_spec_root_does_not_outrank_the_judged_one(
    template: Path, tmp_path: Path
) -> None:
    """aiplatform reads a PipelineJob file's root as pipelineSpec.defaultPipelineRoot first,
    runtimeConfig.gcsOutputDirectory second: the judged --pipeline-root goes into both (red team
    round 6 in_08), so the output never runs in the spec's own (unjudged) bucket."""
    import json

    from google.cloud.aiplatform.utils import yaml_utils

    spec = yaml.safe_load(template.read_text())
    spec["defaultPipelineRoot"] = "gs://attacker-exfil/r"
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"pipelineSpec": spec, "runtimeConfig": {}}))
    sa = f"say-sa@{PROJECT}.iam.gserviceaccount.com"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"steps": {"say": {"service_account": sa}}}))
    out = tmp_path / "job-out.json"
    argv = ["rewrite", str(job_file), "--project", PROJECT, "--manifest", str(manifest)]
    assert run([*argv, "--pipeline-root", "gs://judged-root/runs", "-o", str(out)]) == 0
    written = yaml_utils.load_yaml(str(out))
    root = written["pipelineSpec"].get("defaultPipelineRoot") or written["runtimeConfig"].get(
        "gcsOutputDirectory"
    )
    assert root == "gs://judged-root/runs"  # aiplatform's own order
    assert written["runtimeConfig"]["gcsOutputDirectory"] == "gs://judged-root/runs"
