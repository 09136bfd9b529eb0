"""Hostile audit logs (issue #10 class 13): forged seq numbers, inserted blank lines, a
re-chained log without an anchor, hostile JSON on a line. Bounded work, named problems."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from test_audit import decision, lines_of, rewrite, write_log

from zt_pipelines.audit import AuditLog, verify_chain
from zt_pipelines.audit.chain import canonical, seal, sha256_hex
from zt_pipelines.cli import cli


def forged(seq: int, prev: str) -> bytes:
    """A line with a correct own hash (anyone can compute it) and any seq."""
    return seal({"action": "submit", "outcome": "allowed"}, prev=prev, seq=seq)


def test_a_huge_seq_is_one_gap_not_a_billion_steps(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    lines = lines_of(path)
    for seq in (10**9, 10**18, 2**62):
        report = verify_chain([*lines, forged(seq, sha256_hex(lines[-1]))])
        assert not report.ok
        assert any(p.kind == "dropped" and f"{seq - 1}" in p.message for p in report.problems)
    huge = verify_chain([*lines, forged(2**200, sha256_hex(lines[-1]))])  # beyond the bound
    assert [p.kind for p in huge.problems] == ["malformed"]


def test_gaps_of_every_size_are_named(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    lines = lines_of(path)
    small = verify_chain([lines[0], forged(3, sha256_hex(lines[0]))])
    assert [p.message for p in small.problems if p.kind == "dropped"] == [
        "seq 1 is missing (it belonged after line 1): record dropped",
        "seq 2 is missing (it belonged after line 1): record dropped",
    ]
    # many gaps of one: linear, each named
    many = [forged(2 * i, "x") for i in range(2000)]
    report = verify_chain(many)
    assert sum(p.kind == "dropped" for p in report.problems) == 1999


def test_non_integer_seqs_are_edits(tmp_path: Path) -> None:
    for seq in (True, -1, 1.0, "1", None):
        body = {"action": "x", "seq": seq, "prev": "0" * 64, "v": 1}
        body["hash"] = sha256_hex(canonical(body))
        report = verify_chain([canonical(body)])
        assert [p.kind for p in report.problems] == ["edited"], seq


def test_inserted_blank_lines_fail(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    data = path.read_bytes()
    for edited in (
        data.replace(b"\n", b"\n\n", 1),  # between records
        b"\n" + data,  # before the first
        data + b"\n",  # after the last
        data.replace(b"\n", b"\n   \n", 1),  # whitespace only
    ):
        path.write_bytes(edited)
        report = AuditLog(path).verify()
        assert not report.ok
        assert any(p.kind == "malformed" and "blank" in p.message for p in report.problems)


def test_hostile_json_on_a_line_is_malformed_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 1)
    (line,) = lines_of(path)
    for hostile in (
        b"[" * 100_000,
        b'{"seq": ' + b"9" * 6000 + b"}",
        line[:-1] + b',"seq":0}',  # a duplicate key: the last would win in json.loads
        b'{"a": NaN}',
        b"\xff\xfe{}",
    ):
        report = verify_chain([line, hostile])
        assert [p.kind for p in report.problems] == ["malformed"]


def test_a_rechained_log_passes_only_with_a_no_anchor_statement(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    head = AuditLog(path).verify().head
    # the attacker rewrites the whole log consistently, with different decisions
    other = tmp_path / "other.jsonl"
    log = AuditLog(other)
    for n in range(3):
        log.append(decision(n, outcome="refused"))
    rewrite(path, lines_of(other))
    runner = CliRunner()
    plain = runner.invoke(cli, ["audit", "verify", str(path)], standalone_mode=False)
    assert plain.return_value == 0
    assert "no anchor" in plain.output and "--expect-head" in plain.output
    as_json = runner.invoke(
        cli, ["audit", "verify", "--format", "json", str(path)], standalone_mode=False
    )
    assert json.loads(as_json.output)["anchored"] is False
    anchored = runner.invoke(
        cli, ["audit", "verify", "--expect-head", head, str(path)], standalone_mode=False
    )
    assert anchored.return_value == 1 and "head" in anchored.output
    rewrite(path, lines_of(other))
    good = runner.invoke(
        cli,
        ["audit", "verify", "--expect-head", AuditLog(other).verify().head, str(path)],
        standalone_mode=False,
    )
    assert good.return_value == 0 and "matches the expected head" in good.output
    assert "no anchor" not in good.output
