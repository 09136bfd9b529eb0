"""The audit trail: chain integrity, tamper detection, concurrency, redaction, mirrors."""

from __future__ import annotations

import json
import logging
import multiprocessing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from zt_pipelines.audit import (
    GENESIS,
    AuditIdentity,
    AuditLog,
    AuditMirror,
    Decision,
    InMemoryMirror,
    redact,
    verify_chain,
)
from zt_pipelines.cli import cli
from zt_pipelines.errors import ApiError

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class TickingClock:
    """A clock that advances one second per call."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def decision(n: int, outcome: str = "allowed", **extra: object) -> Decision:
    fields: dict[str, object] = {
        "action": "submit",
        "outcome": outcome,
        "submitter": "user:alice@example.com",
        "project": "demo-proj",
        "location": "us-central1",
        "pipeline": f"pipe-{n}",
        "spec_sha256": f"{n:064x}",
        "identities": (
            AuditIdentity("pipeline", "pipeline-sa@demo-proj.iam.gserviceaccount.com"),
            AuditIdentity("step", "train-sa@demo-proj.iam.gserviceaccount.com", task="train"),
        ),
        "findings": ({"code": "ZT210", "severity": "warning", "message": "extra"},),
    }
    fields.update(extra)
    return Decision(**fields)  # type: ignore[arg-type]


def write_log(path: Path, count: int) -> AuditLog:
    log = AuditLog(path, clock=TickingClock())
    for n in range(count):
        log.append(decision(n))
    return log


def lines_of(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_records_hold_every_field_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "log.jsonl"
    log = write_log(path, 3)
    records = log.records()
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert records[0]["prev"] == GENESIS
    assert records[1]["prev"] == __import__("hashlib").sha256(lines_of(path)[0]).hexdigest()
    first = records[0]
    assert first["time"] == "2026-01-02T03:04:06.000+00:00"
    for key in (
        "submitter",
        "project",
        "location",
        "pipeline",
        "spec_sha256",
        "identities",
        "findings",
        "outcome",
    ):
        assert key in first
    assert first["identities"][1] == {
        "role": "step",
        "task": "train",
        "service_account": "train-sa@demo-proj.iam.gserviceaccount.com",
        "source": "",
    }
    assert path.stat().st_mode & 0o777 == 0o600
    report = log.verify()
    assert report.ok and report.records == 3


@pytest.mark.parametrize("target", [0, 2, 4])
def test_edited_line_is_named(tmp_path: Path, target: int) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    lines[target] = lines[target].replace(b'"outcome":"allowed"', b'"outcome":"refused"')
    rewrite(path, lines)
    report = AuditLog(path).verify()
    assert not report.ok
    assert [(p.line, p.kind) for p in report.problems] == [(target + 1, "edited")]


def test_edit_with_recomputed_own_hash_is_caught_by_the_next_line(tmp_path: Path) -> None:
    from zt_pipelines.audit.chain import canonical, sha256_hex

    path = tmp_path / "log.jsonl"
    write_log(path, 4)
    lines = lines_of(path)
    record = json.loads(lines[1])
    record["outcome"] = "refused"
    del record["hash"]
    record["hash"] = sha256_hex(canonical(record))
    lines[1] = canonical(record)
    rewrite(path, lines)
    report = AuditLog(path).verify()
    assert [(p.line, p.kind) for p in report.problems] == [(3, "edited")]
    assert "line 2 (seq 1) was changed" in report.problems[0].message


def test_dropped_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    del lines[2]
    rewrite(path, lines)
    report = AuditLog(path).verify()
    kinds = {p.kind for p in report.problems}
    assert kinds == {"dropped"}
    assert "seq 2 is missing" in report.problems[0].message


def test_reordered_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 5)
    lines = lines_of(path)
    lines[1], lines[3] = lines[3], lines[1]
    rewrite(path, lines)
    report = AuditLog(path).verify()
    assert not report.ok
    assert "reordered" in {p.kind for p in report.problems}
    assert any(p.line == 4 and "seq 1 after seq 3" in p.message for p in report.problems)


def test_duplicated_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    lines = lines_of(path)
    rewrite(path, [*lines, lines[1]])
    report = AuditLog(path).verify()
    assert [(p.line, p.kind) for p in report.problems] == [(4, "reordered")]


def test_truncated_tail_needs_the_head_anchor(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = write_log(path, 4)
    head = log.verify().head
    rewrite(path, lines_of(path)[:-1])
    assert AuditLog(path).verify().ok  # a shorter chain is still a chain...
    report = AuditLog(path).verify(expect_head=head)  # ...but not the one we anchored
    assert [p.kind for p in report.problems] == ["head"]


def test_garbage_line_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    lines = lines_of(path)
    lines[1] = b"{not json"
    rewrite(path, lines)
    report = verify_chain(lines_of(path))
    assert [(p.line, p.kind) for p in report.problems] == [(2, "malformed")]


def test_append_refuses_after_a_broken_last_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    with path.open("ab") as fh:
        fh.write(b"garbage\n")
    with pytest.raises(ApiError, match="audit log"):
        AuditLog(path).append(decision(9))


def _append_many(args: tuple[str, int]) -> None:
    path, worker = args
    log = AuditLog(path)
    for n in range(25):
        log.append(decision(worker * 100 + n))


def test_concurrent_appenders_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        pool.map(_append_many, [(str(path), w) for w in range(4)])
    report = AuditLog(path).verify()
    assert report.ok, report.problems
    assert report.records == 100
    assert sorted(r["seq"] for r in AuditLog(path).records()) == list(range(100))


SECRETS = [
    "ya29.a0AfH6SMBx3kzLongAccessTokenValue_1234567890",
    "Bearer abc.def.ghi-SECRETBEARER",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlX2J5dGVz",
    "1//0gLongRefreshTokenValueABCDEFGHIJ",
]


def test_no_secret_reaches_a_record_a_log_line_or_a_mirror(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.jsonl"
    mirror = InMemoryMirror()
    log = AuditLog(path, clock=TickingClock(), mirror=mirror)
    caplog.set_level(logging.DEBUG, logger="zt_pipelines")
    log.append(
        decision(
            1,
            outcome="refused",
            reason=f"token {SECRETS[0]} and {SECRETS[1]}",
            pipeline=f"p {SECRETS[3]}",
            findings=(
                {"code": "ZT400", "message": f"failed with {SECRETS[2]}", "access_token": "x"},
                {"code": "ZT400", "message": SECRETS[4], "private_key": "opaque-value-123"},
            ),
        )
    )
    written = path.read_text()
    mirrored = json.dumps(mirror.records)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in [
        *SECRETS,
        "opaque-value-123",
        "SECRETBEARER",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    ]:
        token = secret.strip().splitlines()[0] if "BEGIN" not in secret else secret.split("\n")[1]
        assert token not in written
        assert token not in mirrored
        assert token not in logged
    assert "[REDACTED]" in written
    assert AuditLog(path).verify().ok


def test_redact_keeps_ordinary_text() -> None:
    text = "train-sa@demo-proj.iam.gserviceaccount.com lacks storage.objects.get on gs://raw"
    assert redact(text) == text
    assert redact({"nested": [text, 3, None, True]}) == {"nested": [text, 3, None, True]}


class FailingMirror(AuditMirror):
    def emit(self, record: object) -> None:  # type: ignore[override]
        raise RuntimeError("sink down: Bearer leakedtoken123")


def test_mirror_receives_sealed_records_and_failures_are_errors(tmp_path: Path) -> None:
    mirror = InMemoryMirror()
    log = AuditLog(tmp_path / "a.jsonl", clock=TickingClock(), mirror=mirror)
    entry = log.append(decision(1))
    assert mirror.records == [entry.record]
    assert mirror.records[0]["hash"] == json.loads(lines_of(tmp_path / "a.jsonl")[0])["hash"]
    failing = AuditLog(tmp_path / "b.jsonl", mirror=FailingMirror())
    with pytest.raises(ApiError) as info:
        failing.append(decision(2))
    assert "leakedtoken123" not in str(info.value)


def test_cli_audit_verify(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", str(path)], standalone_mode=False)
    assert ok.exception is None and ok.return_value == 0
    assert "3 records, chain intact" in ok.output
    lines = lines_of(path)
    del lines[1]
    rewrite(path, lines)
    bad = runner.invoke(cli, ["audit", "verify", str(path)], standalone_mode=False)
    assert bad.return_value == 1
    assert "seq 1 is missing" in bad.output
    js = runner.invoke(
        cli, ["audit", "verify", "--format", "json", str(path)], standalone_mode=False
    )
    data = json.loads(js.output)
    assert data["ok"] is False and data["problems"][0]["kind"] == "dropped"
    shown = runner.invoke(cli, ["audit", "show", str(path)], standalone_mode=False)
    assert "pipe-0" in shown.output and "train=train-sa@" in shown.output


def test_cli_exit_codes_through_main(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    entry = "import sys; from zt_pipelines.cli import main; main(sys.argv[1:])"
    run = [sys.executable, "-c", entry, "audit", "verify"]
    assert subprocess.run([*run, str(path)], capture_output=True).returncode == 0
    missing = subprocess.run([*run, str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    rewrite(path, [lines_of(path)[1]])
    assert subprocess.run([*run, str(path)], capture_output=True).returncode == 1


@pytest.mark.parametrize("target", [1, 3])
@pytest.mark.parametrize("how", ["whitespace", "key order"])
def test_an_edit_that_keeps_the_json_equal_is_named(tmp_path: Path, target: int, how: str) -> None:
    # the last line (3) has no successor whose prev would notice; it must still be caught
    path = tmp_path / "log.jsonl"
    write_log(path, 4)
    lines = lines_of(path)
    record = json.loads(lines[target])
    if how == "whitespace":
        lines[target] = json.dumps(record, sort_keys=True).encode()
    else:
        lines[target] = json.dumps(dict(reversed(record.items())), separators=(",", ":")).encode()
    assert json.loads(lines[target]) == record
    rewrite(path, lines)
    report = AuditLog(path).verify()
    assert [(p.line, p.kind) for p in report.problems] == [(target + 1, "edited")]


@pytest.mark.parametrize(
    "param", ["X-Goog-Signature", "X-Amz-Signature", "sig", "X-Goog-Credential", "signature"]
)
def test_signed_url_signatures_are_redacted(param: str) -> None:
    # a template fetched from a signed URL may be named in a reason or finding
    url = f"https://storage.googleapis.com/b/p.yaml?X-Goog-Algorithm=GOOG4-RSA-SHA256&{param}=5ecret0123abcdef"
    cleaned = redact(f"cannot fetch the template at {url}")
    assert "5ecret0123abcdef" not in cleaned
    assert "storage.googleapis.com/b/p.yaml" in cleaned


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("identities", ["x"], "an identity is not an object"),
        ("identities", 5, "identities is not a list"),
        ("findings", [[1]], "a finding is not an object"),
        ("findings", [{"code": 7}], "a finding's code is not a string"),
        ("baseline", {"nodes": [{}]}, "baseline.nodes is not a list of strings"),
        ("project", ["p"], "project is not a string"),
    ],
)
def test_show_names_a_chained_record_of_another_shape_never_a_traceback(
    tmp_path: Path, field: str, value: object, said: str
) -> None:
    from zt_pipelines.audit.chain import seal, sha256_hex

    path = tmp_path / "log.jsonl"
    write_log(path, 1)
    [first] = lines_of(path)
    odd = {**json.loads(first), field: value}
    # a well-chained line of another shape: anyone who can write the file can append one
    with path.open("ab") as fh:
        fh.write(seal(odd, prev=sha256_hex(first), seq=1) + b"\n")
    assert AuditLog(path).verify().ok
    shown = CliRunner().invoke(cli, ["audit", "show", str(path)], standalone_mode=False)
    assert shown.exception is None, shown.exception
    assert shown.return_value == 1
    assert f"#1 malformed record ({said})" in shown.output
    assert "pipe-0" in shown.output  # the well-formed record is still shown
