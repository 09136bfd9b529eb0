"""``make demo``: one allowed submission, four refusals, no writes, an intact audit chain."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from zt_pipelines.cli import cli
from zt_pipelines.demo import run_demo
from zt_pipelines.errors import InputError


def test_demo_allows_one_and_refuses_four(tmp_path: Path) -> None:
    out = io.StringIO()
    audit = tmp_path / "audit.jsonl"
    env_before = {k: os.environ.get(k) for k in ("ZT_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")}
    result = run_demo(out, audit_log=audit)
    text = out.getvalue()
    assert result.ok, text
    assert result.step_accounts == {
        "ingest": "ingest-sa@zt-demo.iam.gserviceaccount.com",
        "train": "train-sa@zt-demo.iam.gserviceaccount.com",
        "evaluate-and-upload": "upload-sa@zt-demo.iam.gserviceaccount.com",
    }
    assert "ZT100" in result.refusals["no service account"]
    assert "ZT200" in result.refusals["missing permission"]
    assert "ZT211" in result.refusals["roles/editor"]
    assert "ZT522" in result.refusals["segmentation"]
    assert result.writes_during_refusals == 0
    shown_codes = ("ZT100", "ZT200", "ZT211", "ZT522", "legacy-allow-https-egress")
    for shown in ("ALLOWED and submitted", "runs as train-sa@", *shown_codes):
        assert shown in text
    # the GCPC example: planned, applied, verified and submitted; every CustomJob its own SA
    assert result.gcpc_submitted
    assert set(result.gcpc_custom_jobs) >= {
        "exit-handler-1-bigquery-query-job",
        "exit-handler-1-custom-training-job",
        "exit-handler-1-condition-2-model-upload",
        "exit-handler-1-condition-2-endpoint-create",
        "exit-handler-1-condition-2-model-deploy",
        "notify",
    }
    assert len(set(result.gcpc_custom_jobs.values())) == len(result.gcpc_custom_jobs)
    assert result.gcpc_custom_jobs["exit-handler-1-bigquery-query-job"] == (
        "gcpc-query@zt-demo.iam.gserviceaccount.com"
    )
    assert "6. Google Cloud Pipeline Components" in text
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["outcome"] for r in records][:5] == ["allowed", *["refused"] * 4]
    assert [r["action"] for r in records][5] == "provision-apply"
    assert records[-1]["outcome"] == "allowed"
    assert "Traceback" not in text
    # the demo restores the environment it changed
    assert {k: os.environ.get(k) for k in env_before} == env_before


def test_demo_command_exits_zero(tmp_path: Path) -> None:
    runner = CliRunner()
    run = runner.invoke(
        cli, ["demo", "--audit-log", str(tmp_path / "a.jsonl")], standalone_mode=False
    )
    assert run.exception is None, run.output
    assert run.return_value == 0
    assert "OK: demo finished" in run.output


def test_demo_without_examples_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="example pipeline and world are missing"):
        run_demo(io.StringIO(), examples_dir=tmp_path)
