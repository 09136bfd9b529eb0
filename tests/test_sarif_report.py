"""Report renderings: SARIF 2.1.0 (validated against the official schema), JSON, text, HTML."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from policy_worlds import PROJECT, RAW, TRAIN_SA, grant, world_dict
from test_check_codes import run

from zt_pipelines.policy.report import CODES, Report

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "sarif-schema-2.1.0.json").read_text())
TRAIN = f"serviceAccount:{TRAIN_SA}"


def busy_report() -> Report:
    data = grant(world_dict(), PROJECT, "roles/editor", TRAIN)
    grant(data, RAW, "roles/storage.objectViewer", "allUsers")
    sup = {
        "code": "ZT210",
        "step": "ingest",
        "justification": "tracked in TICKET-7",
        "expires": "2027-01-01",
    }
    return replace_template(run(data, policy={"suppressions": [sup]}))


def replace_template(report: Report) -> Report:
    from dataclasses import replace

    return replace(report, template="pipelines/demo.yaml")


def test_sarif_validates_against_the_official_schema() -> None:
    report = busy_report()
    sarif = report.to_sarif()
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    run_ = sarif["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(CODES)
    results = run_["results"]
    assert {r["ruleId"] for r in results} >= {"ZT211", "ZT212", "ZT213", "ZT210"}
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["level"] in ("error", "warning", "note")
    suppressed = [r for r in results if "suppressions" in r]
    assert suppressed and suppressed[0]["suppressions"][0]["justification"].startswith("tracked")
    editor = next(r for r in results if r["ruleId"] == "ZT211")
    assert editor["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "pipelines/demo.yaml"
    )
    assert editor["properties"]["evidence"][0]["role"] == "roles/editor"


def test_sarif_of_a_clean_report_validates() -> None:
    sarif = run(policy={"excessThreshold": 100}).to_sarif()
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    # only the bucket-wide pipeline-root grants of the test world (a warning) remain
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} <= {"ZT215"}
    assert all(r["level"] == "warning" for r in sarif["runs"][0]["results"])


def test_schema_rejects_a_broken_log() -> None:
    # the validator really checks: a result without a message is not SARIF
    sarif = busy_report().to_sarif()
    del sarif["runs"][0]["results"][0]["message"]
    try:
        jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the schema accepted a result without a message")


def test_json_round_trips_findings() -> None:
    report = busy_report()
    data = json.loads(report.to_json())
    assert data["allowed"] is False
    assert len(data["findings"]) == len(report.findings)
    first = data["findings"][0]
    assert set(first) == {
        "code",
        "severity",
        "message",
        "step",
        "principal",
        "resource",
        "permission",
        "evidence",
    }
    assert data["suppressed"][0]["justification"] == "tracked in TICKET-7"


def test_text_table_and_html() -> None:
    report = busy_report()
    text = str(report)
    assert text.startswith("REFUSED: demo in ml-prod/us-central1")
    assert "error   ZT211" in text
    assert "binding roles/editor on" in text and "projects/ml-prod" in text
    html = report._repr_html_()
    assert "<table" in html and "REFUSED" in html and "roles/editor" in html
    assert "<script" not in html
    ok = run(policy={"excessThreshold": 100})
    assert str(ok).startswith("ALLOWED") and "0 errors" in str(ok)


def test_sarif_carries_coverage_notes() -> None:
    sarif = run(submitter=None).to_sarif()
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any("submitter unknown" in n["message"]["text"] for n in notes)


def test_text_of_a_clean_report_still_says_what_was_not_checked() -> None:
    report = Report(
        findings=(),
        project=PROJECT,
        location="us-central1",
        notes=("submitter unknown: its actAs/pipelineJobs.create (ZT300) were not checked",),
    )
    text = str(report)
    assert text.startswith("ALLOWED")
    assert "coverage notes (1):" in text and "- submitter unknown" in text
