"""The first hour with Google's own pipelines, exactly as docs/gcpc.md walks it.

Google's AutoML Tabular template (as the GCPC package ships it), the example world served by
the emulator, the real CLI (`plan` → `apply` → `check` → `submit`) and the drop-in
``zt.PipelineJob`` from Python: every step of the page, its notes and its errors.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zt_pipelines as zt
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.policy.snapshot_file import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
PROJECT, LOCATION = "zt-demo", "us-central1"
PLATFORM, ALICE = "user:platform@example.com", "user:alice@example.com"
PIPELINE_ROOT = "gs://zt-demo-pipeline-root/runs"
PARAMS = {"project": PROJECT, "location": LOCATION, "root_dir": "gs://zt-demo-pipeline-root/a"}
JUSTIFICATION = '"Google\'s AutoML template: the launcher reads these run-time URIs"'
RUN = [
    "--project",
    PROJECT,
    "--pipeline-root",
    PIPELINE_ROOT,
    *(arg for k, v in PARAMS.items() for arg in ("--param", f"{k}={v}")),
]


@pytest.fixture(scope="module")
def automl(gcpc_corpus_dir: Path) -> Path:
    return gcpc_corpus_dir / "shipped" / "v1.automl.tabular.automl_tabular_pipeline.yaml"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    from zt_pipelines.demo import _environment

    with (
        Emulator(load_snapshot(ROOT / "examples" / "world.yaml")) as emu,
        _environment(emu.address),
    ):
        yield emu


def _cli(
    args: list[str], caller: str, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> tuple[Any, str, str]:
    mp.setenv("ZT_EMULATOR_CALLER", caller)
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _waivers(printed: str, path: Path) -> Path:
    """``check --print-waivers`` output, filled in as a reviewer does (docs/gcpc.md): it does
    not load before that."""
    assert "FILL IN" in printed
    filled = re.sub(r'justification: "FILL IN[^"]*"', f"justification: {JUSTIFICATION}", printed)
    filled = re.sub(r'expires: "FILL IN[^"]*"', "expires: 2099-03-31", filled)
    path.write_text(filled)
    return path


def test_automl_tabular_plan_apply_check_submit_from_the_cli_and_python(
    automl: Path,
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = str(automl)

    # plan without a pipeline root: said, not silent
    code, _, err = _cli(["plan", template, "--project", PROJECT], PLATFORM, capsys, monkeypatch)
    assert code == 0 and "no pipeline root" in err

    # plan, apply: 47 step identities + one derived pipeline identity, named for what follows
    code, out, err = _cli(["plan", template, *RUN], PLATFORM, capsys, monkeypatch)
    assert code == 0 and "no pipeline root" not in err
    # (a long name: the task shows after the pipeline's first five characters)
    assert len(re.findall(r"^  \+ zt-autom", out, re.M)) == 48
    args = ["apply", template, *RUN, "--submitter", ALICE, "--yes"]
    code, out, err = _cli(args, PLATFORM, capsys, monkeypatch)
    assert code == 0, err
    sa = re.search(r"pass --pipeline-sa (\S+) to check and submit", err)
    assert sa is not None, err
    pipeline_sa = sa.group(1)

    # check: everything granted; only Google's run-time payload values (ZT102) refuse
    args = ["check", template, *RUN, "--pipeline-sa", pipeline_sa, "--format", "json"]
    code, out, _ = _cli(args, ALICE, capsys, monkeypatch)
    report = json.loads(out)
    assert code == 1 and {f["code"] for f in report["findings"] if f["severity"] == "error"} == {
        "ZT102"
    }
    code, printed, _ = _cli([*args, "--print-waivers"], ALICE, capsys, monkeypatch)
    assert code == 1  # the check's verdict, whatever is printed
    steps = sorted({f["step"] for f in report["findings"] if f["code"] == "ZT102"})
    assert printed.count("- code: ZT102") == len(steps) > 0
    policy = _waivers(printed, tmp_path / "zt-policy.yaml")
    code, out, _ = _cli([*args, "--policy", str(policy)], ALICE, capsys, monkeypatch)
    assert code == 0 and json.loads(out)["allowed"]

    # one account set as every component's Dataflow identity: ZT103 names the jobs it runs
    shared = [*args, "--policy", str(policy), "--param", f"dataflow_service_account={pipeline_sa}"]
    code, out, err = _cli(shared, ALICE, capsys, monkeypatch)
    assert code == 1, err
    assert "ZT103" in {f["code"] for f in json.loads(out)["findings"]}

    # submit, every step started on the warm persistent resource (which allows custom SAs)
    submit = [
        "submit",
        template,
        *RUN,
        "--pipeline-sa",
        pipeline_sa,
        "--policy",
        str(policy),
        "--persistent-resource-id",
        "warm-pool",
        "--audit-log",
        str(tmp_path / "audit.jsonl"),
    ]
    code, _, err = _cli(submit, ALICE, capsys, monkeypatch)
    assert code == 0, err
    assert "submitted projects/" in err

    # the same from Python, as in a notebook
    from google.cloud import aiplatform

    aiplatform.init(project=PROJECT, location=LOCATION, credentials=emulator_credentials(ALICE))
    job = zt.PipelineJob(
        display_name="automl",
        template_path=template,
        pipeline_root=PIPELINE_ROOT,
        parameter_values=PARAMS,
        policy=str(policy),
        audit_log=tmp_path / "audit.jsonl",
        step_defaults={"persistent_resource_id": "warm-pool"},
    )
    assert job.verify(service_account=pipeline_sa).allowed
    job.submit(service_account=pipeline_sa)
    assert job.resource_name.startswith("projects/123456789012/locations/us-central1/pipelineJobs/")
    created = [r for r in emulator.request_log if r.method.endswith("pipelineJobs.create")]
    assert len(created) == 2 and all(r.status == "OK" for r in created), created

    # a typo in a parameter name: a typed error with the closest name, nothing created
    with pytest.raises(zt.InputError) as info:
        zt.PipelineJob(
            display_name="automl",
            template_path=template,
            parameter_values={**PARAMS, "root_dirr": "gs://x"},
        )
    assert "did you mean 'root_dir'?" in str(info.value)


@pytest.mark.parametrize(
    ("project", "said"),
    [
        # a snapshot of another project: one line says so, instead of a ZT201 per permission
        ("ml-prod", "project ml-prod is not in the snapshot: was it taken for another project?"),
        # before apply: nothing exists yet, and plan/apply is the next step
        (
            PROJECT,
            "48 service accounts this pipeline runs as do not exist yet: `zt-pipelines plan`",
        ),
    ],
)
def test_a_first_check_of_google_automl_says_the_one_next_step(
    automl: Path, project: str, said: str
) -> None:
    from zt_pipelines.policy.render import render_html, render_text

    report = zt.check(
        automl,
        project=project,
        location=LOCATION,
        pipeline_service_account=f"zt-automl-pipeline@{project}.iam.gserviceaccount.com",
        parameter_values={**PARAMS, "project": project},
        snapshot=ROOT / "examples" / "world.yaml",
    )
    assert not report.allowed
    text = render_text(report, width=400)
    assert text.splitlines()[1].startswith(said), text.splitlines()[:2]
    assert said in render_html(report)
