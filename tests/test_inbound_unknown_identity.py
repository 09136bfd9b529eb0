"""ZT220 fails closed for the pipeline's own identities: when the allow policy of the pipeline
identity or of a step identity (or of an ancestor, or the ancestry) is not in the IAM state, who
can become it is not known — at every entry point (check, verify(), drop-in submit, drift)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitor_world import PIPELINE_SA as DEMO_PIPELINE_SA
from monitor_world import monitor_world
from policy_worlds import PIPELINE_SA, PROJECT, TRAIN_SA, node, sa_node, world_dict
from test_check_codes import run
from test_job import EXAMPLES, WORLD, audit, emu, emulator, make_job, templates  # noqa: F401
from test_monitor_drift import approved  # noqa: F401

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.emulator import Emulator
from zt_pipelines.monitor.service import drift
from zt_pipelines.resources import service_account_resource


def without(data: dict[str, Any], name: str) -> dict[str, Any]:
    data["nodes"] = [n for n in data["nodes"] if n["name"] != name]
    return data


def unknown(report: Any, email: str) -> list[Any]:
    return [
        f
        for f in report.by_code("ZT220")
        if f"who can become {email}" in f.message and "is not known" in f.message
    ]


@pytest.mark.parametrize("submitter", [None, "user:alice@example.com"])
def test_the_pipeline_identity_without_its_allow_policy_refuses(submitter: str | None) -> None:
    report = run(without(world_dict(), sa_node(PIPELINE_SA)), submitter=submitter)
    [f] = unknown(report, PIPELINE_SA)
    assert not report.allowed and f.step is None
    assert f.resource == sa_node(PIPELINE_SA) and "is not in the snapshot" in f.message
    # the control: with its (empty) policy present nothing is said
    assert not unknown(run(world_dict(), submitter=submitter), PIPELINE_SA)


def test_a_step_identity_without_its_allow_policy_refuses() -> None:
    report = run(without(world_dict(), sa_node(TRAIN_SA)))
    [f] = unknown(report, TRAIN_SA)
    assert not report.allowed and "train" in (f.step or "")


def test_an_unreadable_allow_policy_on_the_identity_or_above_refuses() -> None:
    for target in (sa_node(PIPELINE_SA), PROJECT):
        data = world_dict()
        data["unreadable"] = [
            {"target": target, "what": "getIamPolicy", "reason": "PERMISSION_DENIED: no"}
        ]
        report = run(data, submitter=None)
        [f] = unknown(report, PIPELINE_SA)
        assert "could not be read" in f.message and not report.allowed


def test_an_incomplete_ancestry_of_the_identity_refuses() -> None:
    data = world_dict()
    node(data, PROJECT)["parent"] = "//cloudresourcemanager.googleapis.com/folders/999"
    report = run(data, submitter=None)
    assert unknown(report, PIPELINE_SA) and not report.allowed


def test_public_check_refuses(tmp_path: Path) -> None:
    """``zt.check`` on a compiled pipeline with a snapshot file lacking the identity's policy."""
    data = yaml.safe_load(WORLD.read_text())
    data["nodes"] = [
        n for n in data["nodes"] if n["name"] != service_account_resource(DEMO_PIPELINE_SA)
    ]
    world = tmp_path / "world.yaml"
    world.write_text(yaml.safe_dump(data))
    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "training.yaml"))
    report = zt.check(
        template,
        project="zt-demo",
        location="us-central1",
        pipeline_service_account=DEMO_PIPELINE_SA,
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        snapshot=str(world),
    )
    assert unknown(report, DEMO_PIPELINE_SA) and not report.allowed


def test_verify_and_drop_in_submit_refuse(
    emu: Emulator,  # noqa: F811
    templates: dict[str, str],  # noqa: F811
    audit: AuditLog,  # noqa: F811
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(WORLD.read_text())
    data["nodes"] = [
        n for n in data["nodes"] if n["name"] != service_account_resource(DEMO_PIPELINE_SA)
    ]
    world = tmp_path / "world.yaml"
    world.write_text(yaml.safe_dump(data))
    job = make_job(templates["training"], audit, snapshot=str(world))
    report = job.verify(service_account=DEMO_PIPELINE_SA)
    assert unknown(report, DEMO_PIPELINE_SA) and not report.allowed
    with pytest.raises(zt.ZeroTrustViolation) as info:
        make_job(templates["training"], audit, snapshot=str(world)).submit(
            service_account=DEMO_PIPELINE_SA
        )
    assert unknown(info.value.report, DEMO_PIPELINE_SA)
    assert emu.writes() == []


def test_drift_refuses(approved: Path, tmp_path: Path) -> None:  # noqa: F811
    log = tmp_path / "audit.jsonl"
    log.write_bytes(approved.read_bytes())
    world = monitor_world()
    nodes = dict(world.nodes)
    del nodes[service_account_resource(DEMO_PIPELINE_SA)]
    [verdict] = drift(AuditLog(log), snapshot=dataclasses.replace(world, nodes=nodes))
    assert verdict.drifted, verdict.report
    assert [
        f
        for f in verdict.report.errors
        if f.message.startswith("since the approval (ZT220): who can become pipeline-sa@")
    ], verdict.report
