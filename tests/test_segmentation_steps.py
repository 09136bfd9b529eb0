"""Steps that share a network intent share one evaluation, yet each gets its own verdict.

The checks memoise per (network intent, rules of that network targeting the step's identity):
a step whose identity a rule names must not inherit a neighbour's outcome, and every finding
and note must name its own step.
"""

from __future__ import annotations

from typing import Any

from zt_pipelines.model import JobFields, StepIdentity
from zt_pipelines.policy.requirements import CheckContext
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.segmentation import SegmentationPolicy, segmentation_findings
from zt_pipelines.segmentation.snapshot import load_section

P = "seg-proj"
NET = f"projects/{P}/global/networks/vpc"
ATT = f"projects/{P}/regions/us-central1/networkAttachments/att"
CTX = CheckContext(project=P, location="us-central1", pipeline_service_account=f"p@{P}.iam")


def _sa(name: str) -> str:
    return f"{name}@{P}.iam.gserviceaccount.com"


def _step(
    task: str, sa: str, reach: tuple[str, ...] | None = ("10.9.0.0/16 tcp:5432",)
) -> StepIdentity:
    return StepIdentity(
        task=task,
        component=f"comp-{task}",
        executor=f"exec-{task}",
        service_account=sa,
        source="declared",
        job=JobFields(psc_interface_config={"network_attachment": ATT}, reach=reach),
    )


def _snapshot(extra_rules: list[dict[str, Any]]) -> Snapshot:
    section = {
        "networks": [{"name": NET}],
        "subnetworks": [
            {
                "name": f"projects/{P}/regions/us-central1/subnetworks/s",
                "network": NET,
                "ipCidrRange": "10.1.0.0/24",
            }
        ],
        "networkAttachments": [
            {
                "name": ATT,
                "network": NET,
                "subnetworks": [f"projects/{P}/regions/us-central1/subnetworks/s"],
            }
        ],
        "firewalls": [
            {
                "name": "deny-all",
                "network": NET,
                "direction": "EGRESS",
                "priority": 65000,
                "denied": [{"IPProtocol": "all"}],
            },
            {
                "name": "db",
                "network": NET,
                "direction": "EGRESS",
                "priority": 1000,
                "allowed": [{"IPProtocol": "tcp", "ports": ["5432"]}],
                "destinationRanges": ["10.9.0.0/16"],
            },
            *extra_rules,
        ],
    }
    return Snapshot(segmentation=load_section(section, "test"))


def test_a_targeted_identity_does_not_share_its_neighbours_outcome() -> None:
    wide = {
        "name": "wide-for-b",
        "network": NET,
        "direction": "EGRESS",
        "priority": 900,
        "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}],
        "destinationRanges": ["0.0.0.0/0"],
        "targetServiceAccounts": [_sa("b").upper()],  # matched case-insensitively
    }
    steps = [
        _step("a1", _sa("a")),
        _step("b", _sa("b")),
        _step("a2", _sa("a")),
        _step("c", _sa("c")),
    ]
    findings, _ = segmentation_findings([], steps, _snapshot([wide]), SegmentationPolicy(), CTX)
    assert [(f.code, f.step) for f in findings] == [("ZT522", "b")]
    assert "wide-for-b" in findings[0].message
    # the same rule disabled (or on another network) opens nothing
    for change in ({"disabled": True}, {"network": f"projects/{P}/global/networks/other"}):
        findings, _ = segmentation_findings(
            [], steps, _snapshot([{**wide, **change}]), SegmentationPolicy(), CTX
        )
        assert findings == []


def test_each_step_gets_its_own_findings_and_notes() -> None:
    open_all = {
        "name": "open",
        "network": NET,
        "direction": "EGRESS",
        "priority": 100,
        "allowed": [{"IPProtocol": "all"}],
    }
    steps = [_step(f"t{i}", _sa(f"s{i}")) for i in range(5)] + [
        _step(f"quiet{i}", _sa("q"), reach=None) for i in range(3)
    ]
    findings, notes = segmentation_findings(
        [], steps, _snapshot([open_all]), SegmentationPolicy(), CTX
    )
    assert sorted(f.step for f in findings if f.code == "ZT522") == [f"t{i}" for i in range(5)]
    assert all("open" in f.message for f in findings)
    step_notes = [n for n in notes if not n.startswith("egress was judged")]
    assert sorted(n.split(":")[0] for n in step_notes) == [f"quiet{i}" for i in range(3)]
    assert len(notes) == len(step_notes) + 1  # once: what the evaluation did not read
