"""The report as people read it: terminal text that fits, HTML a reviewer would screenshot."""

from __future__ import annotations

import re

import pytest

from zt_pipelines.policy.render import FIXES, render_html, render_text, summary_line
from zt_pipelines.policy.report import CODES, Evidence, Finding, Grant, Report, Severity

SA = "serviceAccount:train-sa@ml-prod.iam.gserviceaccount.com"
LONG_NODE = "//cloudresourcemanager.googleapis.com/projects/ml-prod-with-a-rather-long-name-123"


def report(*, allowed: bool = False, notes: int = 9) -> Report:
    findings = [
        Finding(
            "ZT210",
            Severity.WARNING,
            "roles/storage.admin grants 41 permissions beyond the step's needs " * 3,
            step="train",
            principal=SA,
            evidence=(Evidence("binding", node=LONG_NODE, role="roles/storage.admin", member=SA),),
        )
    ]
    if not allowed:
        findings.insert(
            0,
            Finding(
                "ZT200",
                Severity.ERROR,
                "storage.objects.get is not granted",
                step="train",
                principal=SA,
                resource="//storage.googleapis.com/features",
                permission="storage.objects.get",
            ),
        )
        findings.insert(0, Finding("ZT100", Severity.ERROR, "<script>alert(1)</script> default"))
    granted = (
        Grant(
            SA,
            "//storage.googleapis.com/features",
            "storage.objects.list",
            step="train",
            evidence=(Evidence("binding", node=LONG_NODE, role="roles/storage.objectViewer"),),
        ),
        Grant("serviceAccount:eval@ml-prod.iam.gserviceaccount.com", "//x", "p.q.r", step="eval"),
    )
    return Report(
        findings=tuple(findings),
        pipeline="demo",
        project="ml-prod",
        location="us-central1",
        notes=tuple(f"coverage note number {i}" for i in range(notes)),
        granted=granted,
    )


@pytest.mark.parametrize("width", [60, 100, 160])
def test_text_fits_the_terminal_width(width: int) -> None:
    text = render_text(report(), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "\x1b[" not in text  # plain text unless colour is asked for


def test_verdict_first_then_findings_grouped_by_step_with_fixes() -> None:
    text = render_text(report())
    lines = text.splitlines()
    assert lines[0].startswith("REFUSED: demo in ml-prod/us-central1 — 2 errors, 1 warning")
    assert "(9 coverage notes below)" in lines[0]
    assert "0 note" not in lines[0]  # severity counts that are zero are not shown
    assert lines.index("pipeline") < next(i for i, s in enumerate(lines) if s.startswith("step "))
    assert any(line.startswith("step train") and SA in line for line in lines)
    assert text.count("fix: ") == 3
    assert "coverage notes (9):" in text


def test_colour_only_on_request() -> None:
    assert "\x1b[" in render_text(report(), color=True)


def test_one_line_verdict_plurals() -> None:
    one = Report(findings=(Finding("ZT200", Severity.ERROR, "x"),), project="p", location="l")
    assert summary_line(one) == "REFUSED: pipeline in p/l — 1 error"


def test_html_has_verdict_step_rows_fixes_and_folded_evidence() -> None:
    html = render_html(report())
    assert "REFUSED" in html and "<table" in html
    assert html.count("<tr><td") == 3  # (pipeline), eval, train
    assert "train-sa@ml-prod" in html and "roles/storage.objectViewer" in html
    assert "<details" in html and "fix:" in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_html_of_an_allowed_report_shows_steps_and_identities() -> None:
    html = render_html(report(allowed=True))
    assert "ALLOWED" in html and "eval@ml-prod" in html and "train-sa@ml-prod" in html


def test_repr_is_a_summary_not_a_dump() -> None:
    text = repr(report())
    assert text.startswith("<Report REFUSED") and len(text) < 200


def test_every_code_has_a_fix() -> None:
    assert set(CODES) <= set(FIXES), sorted(set(CODES) - set(FIXES))
    assert all(re.match(r"^[a-z]", fix) for fix in FIXES.values())


def test_cli_on_a_terminal_is_coloured_and_fits_it(tmp_path: pytest.TempPathFactory) -> None:
    """``zt-pipelines check`` under a pseudo-terminal of 72 columns: colour, no line wider."""
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from policy_worlds import FEATURES, PIPELINE_SA, TRAIN_SA, grant, world_dict

    root = Path(str(tmp_path))
    world = root / "world.yaml"
    world.write_text(
        yaml.safe_dump(
            grant(world_dict(), FEATURES, "roles/storage.admin", f"serviceAccount:{TRAIN_SA}")
        )
    )
    pipeline = root / "p.py"
    pipeline.write_text(
        "from kfp import compiler, dsl\nimport zt_pipelines as zt\n"
        f"@zt.step({TRAIN_SA!r}, needs={{'gs://zt-features': ['storage.objects.get']}})\n"
        "@dsl.component(base_image='python:3.11')\ndef train():\n    pass\n"
        "@dsl.pipeline(name='demo')\ndef demo():\n    train()\n"
        f"compiler.Compiler().compile(demo, {str(root / 'p.yaml')!r})\n"
    )
    subprocess.run([sys.executable, str(pipeline)], check=True)
    main, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "72", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from zt_pipelines.cli import main; main()", "check",
         str(root / "p.yaml"), "--project", "ml-prod", "--location", "us-central1",
         "--pipeline-sa", PIPELINE_SA, "--snapshot", str(world)],
        stdout=follower, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:  # read while it writes: a report larger than the pty buffer must not block it
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.wait(timeout=120)
    text = b"".join(chunks).decode()
    assert proc.returncode == 1, stderr
    assert "\x1b[" in text and "REFUSED" in text
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert max(len(line.rstrip("\r")) for line in plain.splitlines()) <= 72


def test_failed_reads_get_one_headline_with_the_fix() -> None:
    reads = tuple(
        Finding(
            "ZT400",
            Severity.ERROR,
            f"getIamPolicy on //x/{i} could not be read (PERMISSION_DENIED: 403); incomplete",
            resource=f"//x/{i}",
        )
        for i in range(38)
    )
    broken = Report(findings=reads, project="p", location="l")
    text = render_text(broken)
    assert text.splitlines()[1].startswith("the checking identity lacks read access: 38 of 38")
    assert "docs/live-mode.md" in text.splitlines()[1] + text.splitlines()[2]
    assert "lacks read access" in render_html(broken)
    flaky = Report(findings=(Finding("ZT400", Severity.ERROR, "UNAVAILABLE: 503"),))
    assert "verification is incomplete: 1 read failed" in render_text(flaky)
    assert "lacks read access" not in render_text(report())
