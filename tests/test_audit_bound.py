"""A decision record is bounded before it is written: a large pipeline's record leaves findings
out (summarised, with a digest of the whole list), one that cannot fit is refused before the
file is touched, and a log whose last line is broken says how to go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zt_pipelines.audit import AuditLog
from zt_pipelines.audit.bound import KEPT_CODES, RECORD_BUDGET, RECORD_LIMIT
from zt_pipelines.audit.chain import canonical, redact, sha256_hex
from zt_pipelines.audit.log import AuditIdentity, Decision
from zt_pipelines.audit.shape import record_problem
from zt_pipelines.errors import ApiError


def _finding(i: int, severity: str, code: str) -> dict[str, object]:
    return {
        "code": code,
        "severity": severity,
        "step": f"step-{i}",
        "message": f"finding {i} " + "x" * 400,
        "principal": None,
        "resource": None,
        "permission": None,
        "evidence": [],
    }


def _decision(findings: list[dict[str, object]], identities: int = 3) -> Decision:
    return Decision(
        action="verify",
        outcome="refused",
        submitter="user:alice@example.com",
        project="p",
        location="us-central1",
        pipeline="big",
        spec_sha256="0" * 64,
        identities=tuple(
            AuditIdentity(
                role="step", task=f"t{i}", service_account=f"sa{i}@p.iam.gserviceaccount.com"
            )
            for i in range(identities)
        ),
        findings=tuple(findings),
    )


def test_a_small_record_is_written_whole(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    entry = log.append(_decision([_finding(0, "note", "ZT200")]))
    assert "findings_omitted" not in entry.record
    assert len(entry.record["findings"]) == 1


def test_a_large_record_leaves_out_notes_first_and_says_what_it_left_out(tmp_path: Path) -> None:
    findings = (
        [_finding(i, "error", "ZT110") for i in range(100)]
        + [_finding(i, "note", "ZT200") for i in range(300)]
        + [_finding(i, "warning", "ZT210") for i in range(100)]
        + [_finding(0, "note", "ZT629")]
    )
    log = AuditLog(tmp_path / "a.jsonl")
    entry = log.append(_decision(findings))
    line = (tmp_path / "a.jsonl").read_bytes().rstrip(b"\n")
    assert len(line) <= RECORD_BUDGET
    kept = entry.record["findings"]
    omitted = entry.record["findings_omitted"]
    assert omitted["of"] == len(findings)
    assert omitted["count"] == len(findings) - len(kept)
    assert sum(omitted["by_code"].values()) == omitted["count"]
    # every error and warning fits once the notes are gone; the read-back code stays
    codes = [f["code"] for f in kept]
    assert codes.count("ZT110") == 100 and codes.count("ZT210") == 100
    assert "ZT629" in codes and "ZT629" in KEPT_CODES
    from zt_pipelines.monitor.drift import POSTURE_CODE

    assert POSTURE_CODE in KEPT_CODES  # drift reads postures back from its records
    assert set(omitted["by_code"]) == {"ZT200"}
    # the digest is over the whole list, so a re-run's findings can be proven equal
    assert omitted["sha256"] == sha256_hex(canonical({"findings": redact(findings)}))
    assert record_problem(entry.record) == ""
    assert log.verify().ok
    assert json.loads(line)["seq"] == 0


def test_errors_go_last_and_only_when_the_rest_is_not_enough(tmp_path: Path) -> None:
    findings = [_finding(i, "error", "ZT201") for i in range(800)]
    entry = AuditLog(tmp_path / "a.jsonl").append(_decision(findings))
    assert 0 < len(entry.record["findings"]) < 800
    # the first errors are kept, the last left out
    assert entry.record["findings"][0]["step"] == "step-0"
    assert entry.record["findings_omitted"]["by_code"] == {
        "ZT201": entry.record["findings_omitted"]["count"]
    }


def test_a_record_that_cannot_fit_is_refused_before_the_file_is_touched(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.append(_decision([]))
    before = path.read_bytes()
    too_many = RECORD_LIMIT // 60  # each identity takes more than 60 bytes
    with pytest.raises(ApiError) as caught:
        log.append(_decision([], identities=too_many))
    assert "line limit" in caught.value.message and "split the pipeline" in str(caught.value.fix)
    assert path.read_bytes() == before
    log.append(_decision([]))  # the log goes on
    assert log.verify().ok and len(log.lines()) == 2


def test_a_broken_last_line_names_the_way_on(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.append(_decision([]))
    with path.open("ab") as fh:
        fh.write(b'{"not": "a record"}\n')
    with pytest.raises(ApiError) as caught:
        log.append(_decision([]))
    assert "not a chained record" in caught.value.message
    assert "zt-pipelines audit verify" in str(caught.value.fix)
