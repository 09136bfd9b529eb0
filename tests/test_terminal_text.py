"""Text from a template, an audit log or an API reaches a terminal as text: an escape sequence
(an OSC 52 clipboard write, a window title), a one-character C1 CSI, a carriage return that
overwrites a line or a bidirectional override is shown as ``\\uXXXX``, never acted on — in
every text report and every human-readable line a verb prints."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from monitor_world import EXAMPLES, PIPELINE_SA

from zt_pipelines.audit import AuditLog, Decision, identities_from
from zt_pipelines.cli import main
from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.render import render_text
from zt_pipelines.policy.report import Evidence, Finding, Report, Severity, SuppressedFinding
from zt_pipelines.policy.wording import shown

ROOT = Path(__file__).resolve().parent.parent
WORLD = str(ROOT / "examples" / "world.yaml")
BASE = ["--project", "zt-demo", "--location", "us-central1", "--pipeline-sa", PIPELINE_SA]
OSC52 = "\x1b]52;c;Y3VybCBodHRwczovL2V2aWwuZXhhbXBsZS94IHwgc2g=\x1b\\"
BAD = OSC52 + "\x1b]0;ALLOWED\x07" + "\x9b2J" + "\u202eevil\u202c" + "\rALLOWED" + "\x00\x7f"
#: what no output may carry raw (rich's own colour codes start with ESC [ and are allowed
#: only where colour was asked for)
RAW = ("\x1b]", "\x07", "\x9b", "\u202e", "\r", "\x00", "\x7f")


def _clean(text: str, *, colour: bool = False) -> None:
    for raw in RAW:
        assert raw not in text, repr(raw)
    if not colour:
        assert "\x1b" not in text
    assert "\\u001b]52;c;" in text or "\\u001b" in text  # shown, not dropped


@pytest.mark.parametrize(
    "text",
    [BAD, "tab\tand\nnewline stay", "é ü 中文 stay", "\u2028\u2029\u2066\u2069\u200e\u200f"],
)
def test_shown_escapes_what_a_terminal_acts_on_and_reads_back_as_json(text: str) -> None:
    out = shown(text)
    assert all(ch in "\t\n" or ch.isprintable() for ch in out)
    for ascii_only in (True, False):  # printed JSON keeps its meaning
        document = json.dumps({"v": text}, ensure_ascii=ascii_only)
        assert json.loads(shown(document)) == {"v": text}


@pytest.mark.parametrize("colour", [False, True])
def test_every_part_of_a_text_report_is_shown_as_text(colour: bool) -> None:
    finding = Finding(
        "ZT500",
        Severity.ERROR,
        f"image {BAD} is not allowed",
        step=f"step{BAD}",
        principal=f"serviceAccount:{BAD}",
        resource=f"//storage.googleapis.com/{BAD}",
        permission=f"storage.{BAD}",
        evidence=(Evidence("binding", node=BAD, role=BAD, member=BAD, detail=BAD),),
    )
    report = Report(
        findings=(finding,),
        suppressed=(SuppressedFinding(finding, f"waived {BAD}", "2099-01-01"),),
        notes=(f"note {BAD}",),
        pipeline=f"pipe{BAD}",
        step_identities=((f"step{BAD}", f"serviceAccount:{BAD}"),),
    )
    _clean(render_text(report, color=colour), colour=colour)
    _clean(str(report))


def _template(tmp_path: Path) -> str:
    path = Path(EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml")))
    docs = list(yaml.safe_load_all(path.read_text()))
    executors = docs[0]["deploymentSpec"]["executors"]
    executors[sorted(executors)[0]]["container"]["image"] = "python:3.11-slim" + BAD
    out = tmp_path / "bad.yaml"
    out.write_text("\n---\n".join(json.dumps(d) for d in docs) + "\n")
    return str(out)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    got = capsys.readouterr()
    return int(done.value.code or 0), got.out + got.err


def test_verbs_print_a_template_full_of_escapes_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = _template(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: 1\nimages:\n  allowedRegistries: ["us-docker.pkg.dev/zt-demo/"]\n')
    check = ["check", template, *BASE, "--snapshot", WORLD, "--policy", str(policy)]
    code, out = _run(check, capsys)
    assert code == 1 and "ZT500" in out
    _clean(out)
    code, out = _run([*check, "--explain"], capsys)
    _clean(out)
    code, out = _run(["precommit-check", template, *BASE, "--snapshot", WORLD], capsys)
    assert "\x1b" not in out and "\u202e" not in out
    # a task named with escapes: rewrite's step lines, plan's table
    docs = list(yaml.safe_load_all(Path(template).read_text()))
    tasks = docs[0]["root"]["dag"]["tasks"]
    first = sorted(tasks)[0]
    renamed = copy.deepcopy(docs)
    renamed[0]["root"]["dag"]["tasks"] = {
        (f"{k}{BAD}" if k == first else k): v for k, v in tasks.items()
    }
    named = tmp_path / "named.yaml"
    named.write_text("\n---\n".join(json.dumps(d) for d in renamed) + "\n")
    for argv in (
        ["rewrite", str(named), *BASE, "-o", str(tmp_path / "rw.yaml")],
        ["plan", str(named), *BASE[:4], "--snapshot", WORLD],
        ["check", str(named), *BASE, "--snapshot", WORLD],
    ):
        _code, out = _run(argv, capsys)
        assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out, argv[0]


def test_audit_show_and_errors_print_log_and_input_text_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    step = StepIdentity(
        task=f"train{BAD}",
        component="comp-train",
        executor="exec-train",
        service_account="train-sa@zt-demo.iam.gserviceaccount.com",
        source="declared",
    )
    decision = Decision(
        action="verify",
        outcome="allowed",
        submitter=f"user:{BAD}",
        project="zt-demo",
        location="us-central1",
        pipeline=f"pipe{BAD}",
        identities=identities_from(PIPELINE_SA, [step]),
    )
    log.append(decision)
    _code, out = _run(["audit", "show", str(log.path)], capsys)
    assert "pipe" in out
    _clean(out)
    code, out = _run(["check", str(tmp_path / f"missing{BAD}.yaml"), *BASE], capsys)
    assert code == 2 and "missing" in out
    _clean(out)
