"""Fault matrix for the segmentation reads: every new call site × every kind of failure,
against the emulator with the real clients (Cloud Asset gRPC, Compute REST, aiplatform
EndpointService REST).

Transient faults on the first two calls are retried away and give exactly the clean state;
PERMISSION_DENIED (and a fault that never clears) leaves the part unread and refuses (ZT530).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import segmentation_world as sw

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.gcp.segmentation import fetch_segmentation
from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.requirements import CheckContext
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.segmentation import SegmentationPolicy, segmentation_findings
from zt_pipelines.spec import rewrite_pipeline

CALL_SITES = (
    "google.cloud.asset.v1.AssetService/ListAssets",
    "compute.networkAttachments.get",
    "compute.subnetworks.get",
    "compute.networks.get",
    "compute.firewalls.list",
    "compute.globalAddresses.list",
    "aiplatform.endpoints.list",
)
TRANSIENT = {
    "timeout": {"delay_ms": 400},
    "UNAVAILABLE": {"code": "UNAVAILABLE"},
    "429": {"code": "RESOURCE_EXHAUSTED"},
    "INTERNAL": {"code": "INTERNAL"},
    "reset": {"reset": True},
    "malformed": {"malformed": True},
}
POLICY = SegmentationPolicy(require_perimeter=True, require_isolation=True)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(load_snapshot(sw.clean())) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> tuple[StepIdentity, ...]:
    path = sw.compile_segmented(str(tmp_path_factory.mktemp("f") / "p.yaml"))
    return rewrite_pipeline(path, project=sw.PROJECT).steps


@pytest.fixture(scope="module")
def base() -> Snapshot:
    world = sw.clean()
    del world["segmentation"]
    return load_snapshot(world)


def fetch(
    emu: Emulator, base: Snapshot, steps: tuple[StepIdentity, ...], deadline: float = 2.0
) -> Snapshot:
    return fetch_segmentation(
        base,
        steps,
        project=sw.PROJECT,
        perimeters=True,
        networks=True,
        location=sw.LOCATION,
        endpoint_projects=("zt-prod",),
        credentials=emulator_credentials(sw.SUBMITTER),
        emulator_host=emu.address,
        retry=RetryPolicy(max_attempts=5, sleep=lambda _s: None, attempt_timeout=deadline),
    )


def settle(emu: Emulator) -> None:
    for _ in range(200):
        if not emu.in_flight:
            return
        time.sleep(0.01)


def with_fault(emu: Emulator, fault: Fault, run: object) -> Snapshot:
    emu.clear_faults()
    settle(emu)
    emu.clear_log()
    emu.add_fault(fault)
    try:
        return run()  # type: ignore[operator,no-any-return]
    finally:
        emu.clear_faults()


def codes(snap: Snapshot, steps: tuple[StepIdentity, ...]) -> set[str]:
    ctx = CheckContext(
        project=sw.PROJECT, location=sw.LOCATION, pipeline_service_account=sw.PIPELINE_SA
    )
    findings, _ = segmentation_findings((), steps, snap, POLICY, ctx)
    return {f.code for f in findings}


def test_clean_read_is_complete(
    emu: Emulator, base: Snapshot, steps: tuple[StepIdentity, ...]
) -> None:
    emu.clear_log()
    snap = fetch(emu, base, steps)
    assert snap.segmentation is not None and snap.segmentation.unreadable == ()
    assert {r.method for r in emu.request_log} >= set(CALL_SITES)
    assert codes(snap, steps) == set()
    assert [e.name for e in snap.segmentation.endpoints] == [sw.ENDPOINT]


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
@pytest.mark.parametrize("method", CALL_SITES)
def test_transient_fault_recovers(
    emu: Emulator, base: Snapshot, steps: tuple[StepIdentity, ...], method: str, fault: str
) -> None:
    clean = fetch(emu, base, steps)
    spec = TRANSIENT[fault]
    snap = with_fault(
        emu,
        Fault(method=method, times=2, **spec),  # type: ignore[arg-type]
        lambda: fetch(emu, base, steps, deadline=0.2 if fault == "timeout" else 2.0),
    )
    assert [r for r in emu.request_log if r.method == method], "the fault never fired"
    assert snap.segmentation == clean.segmentation


@pytest.mark.parametrize("kind", ["PERMISSION_DENIED", "persistent UNAVAILABLE"])
@pytest.mark.parametrize("method", CALL_SITES)
def test_failed_read_fails_closed(
    emu: Emulator, base: Snapshot, steps: tuple[StepIdentity, ...], method: str, kind: str
) -> None:
    code = kind.split()[-1]
    snap = with_fault(emu, Fault(method=method, code=code), lambda: fetch(emu, base, steps))
    state = snap.segmentation
    assert state is not None and state.unreadable, "a failed read must be recorded"
    if "ListAssets" in method:
        assert state.perimeters is None
    else:
        assert state.networks is None
    assert "ZT530" in codes(snap, steps)


def test_caller_without_read_permissions_fails_closed(
    emu: Emulator, base: Snapshot, steps: tuple[StepIdentity, ...], tmp_path: Path
) -> None:
    """IAM is enforced on the new reads: a caller with no role reads nothing, refused."""
    snap = fetch_segmentation(
        base,
        steps,
        project=sw.PROJECT,
        perimeters=True,
        networks=True,
        credentials=emulator_credentials("user:mallory@example.com"),
        emulator_host=emu.address,
        retry=RetryPolicy(max_attempts=1, sleep=lambda _s: None),
    )
    state = snap.segmentation
    assert state is not None and state.perimeters is None and state.networks is None
    assert {u.reason.split(":")[0] for u in state.unreadable} == {"PERMISSION_DENIED"}
    assert "ZT530" in codes(snap, steps)
