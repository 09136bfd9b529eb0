"""Fault matrix: every call site of the live fetch × every kind of failure, real clients.

Transient faults (timeout, UNAVAILABLE, 429, INTERNAL, connection reset, malformed body) for
the first two calls must be retried away and give exactly the clean answer; PERMISSION_DENIED
must make the read unreadable, and the engine must never grant what that read would have had
to prove. Retries never sleep here (injected zero-length sleep).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from test_gcp_live import BUCKET, DATASET, PIPE, PROJECT, READER, SA_NODE, TABLE, TRAIN, world

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp import fetch_snapshot
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot import UNREADABLE_WHAT, Snapshot

# emulator method -> a (member, resource, permission) whose answer that read decides; the
# answer must become "unverifiable" when the read is refused (granted or not before).
PROBE_GRANTED = (TRAIN, BUCKET, "storage.objects.list")
PROBE_ABSENT = (TRAIN, BUCKET, "storage.buckets.delete")
CALL_SITES: dict[str, tuple[str, str, str] | None] = {
    "google.cloud.resourcemanager.v3.Projects/GetProject": PROBE_GRANTED,
    "google.cloud.resourcemanager.v3.Projects/GetIamPolicy": (
        TRAIN,
        PROJECT,
        "bigquery.jobs.create",
    ),
    "google.cloud.resourcemanager.v3.Folders/GetFolder": PROBE_GRANTED,
    "google.cloud.resourcemanager.v3.Folders/GetIamPolicy": PROBE_ABSENT,
    "google.cloud.resourcemanager.v3.Organizations/GetIamPolicy": PROBE_ABSENT,
    "google.iam.v2.Policies/ListPolicies": PROBE_GRANTED,
    "google.iam.v2.Policies/GetPolicy": PROBE_GRANTED,
    # a custom role the listing could not return is read with roles.get instead
    "google.iam.admin.v1.IAM/ListRoles": None,
    # predefined roles a refused roles.get cannot return come from the shipped catalogue
    # (test_refused_get_role_falls_back_to_the_catalogue); custom ones stay unreadable
    "google.iam.admin.v1.IAM/GetRole": None,
    "google.iam.admin.v1.IAM/ListServiceAccounts": None,
    "google.iam.admin.v1.IAM/ListServiceAccountKeys": None,
    "google.iam.admin.v1.IAM/GetIamPolicy": (PIPE, SA_NODE, "iam.serviceAccounts.actAs"),
    "google.cloud.asset.v1.AssetService/SearchAllIamPolicies": None,
    "storage.buckets.get": PROBE_GRANTED,
    "storage.buckets.getIamPolicy": PROBE_GRANTED,
    "storage.hmacKeys.list": None,
    "apikeys.keys.list": None,
    "google.cloud.privilegedaccessmanager.v1.PrivilegedAccessManager/ListEntitlements": None,
    "bigquery.datasets.get": (TRAIN, DATASET, "bigquery.tables.getData"),
    "bigquery.tables.getIamPolicy": (TRAIN, TABLE, "bigquery.tables.updateData"),
}

TRANSIENT = {
    "timeout": {"delay_ms": 400},
    "UNAVAILABLE": {"code": "UNAVAILABLE"},
    "429": {"code": "RESOURCE_EXHAUSTED"},
    "INTERNAL": {"code": "INTERNAL"},
    "reset": {"reset": True},
    "malformed": {"malformed": True},
}
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def policy(deadline: float = 2.0) -> RetryPolicy:
    """Five attempts, no sleeping; timeout cases pass a deadline shorter than the delay."""
    return RetryPolicy(max_attempts=5, sleep=lambda _s: None, attempt_timeout=deadline)


def settle(emu: Emulator) -> None:
    """Wait until calls still held by an injected delay have ended (and been logged)."""
    for _ in range(200):
        if not emu.in_flight:
            return
        time.sleep(0.01)


def run(emu: Emulator, deadline: float = 2.0) -> Snapshot:
    """One live fetch as the reader."""
    return fetch_snapshot(
        resources=[BUCKET, TABLE],
        service_accounts=[TRAIN, PIPE],
        projects=["proj-a1"],
        credentials=emulator_credentials(f"serviceAccount:{READER}"),
        emulator_host=emu.address,
        retry=policy(deadline),
        use_cache=False,
    )


def run_with_fault(emu: Emulator, fault: Fault, deadline: float = 2.0) -> Snapshot:
    """One live fetch with only ``fault`` armed, on a settled emulator with an empty log."""
    emu.clear_faults()
    settle(emu)
    emu.clear_log()
    emu.add_fault(fault)
    try:
        return run(emu, deadline)
    finally:
        emu.clear_faults()


def essence(snap: Snapshot) -> tuple[object, ...]:
    """Everything the engine reads, in a comparable form."""
    return (
        snap.nodes,
        snap.roles,
        snap.deny_policies,
        snap.service_accounts,
        snap.unreadable,
        snap.complete_bindings_for,
    )


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """One emulator for the whole matrix (faults are cleared between cases)."""
    with Emulator(world()) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def clean(emu: Emulator) -> Snapshot:
    """The answer without faults."""
    snap = run(emu)
    assert snap.unreadable == ()
    return snap


@pytest.fixture(scope="module")
def clean_counts(emu: Emulator, clean: Snapshot) -> dict[str, int]:
    """Calls per method in a clean run."""
    emu.clear_log()
    run(emu)
    return dict(Counter(f"{r.method} {r.target}" for r in emu.request_log))


def test_every_call_site_is_exercised(emu: Emulator, clean: Snapshot) -> None:
    emu.clear_log()
    run(emu)
    assert set(CALL_SITES) <= set(emu.counts()), set(CALL_SITES) - set(emu.counts())


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
@pytest.mark.parametrize("method", sorted(CALL_SITES))
def test_transient_fault_recovers_with_the_clean_answer(
    emu: Emulator, clean: Snapshot, method: str, fault: str
) -> None:
    snap = run_with_fault(
        emu,
        Fault(method=method, times=2, **TRANSIENT[fault]),  # type: ignore[arg-type]
        0.15 if fault == "timeout" else 2.0,
    )
    assert essence(snap) == essence(clean)
    # the fault fired and the read was retried (a delayed call is logged when it ends)
    for _ in range(100):
        if emu.counts().get(method, 0) >= 3:
            break
        time.sleep(0.02)
    assert emu.counts()[method] >= 3


@pytest.mark.parametrize("method", sorted(CALL_SITES))
def test_permission_denied_fails_closed(
    emu: Emulator, clean: Snapshot, clean_counts: dict[str, int], method: str
) -> None:
    snap = run_with_fault(emu, Fault(method=method, code="PERMISSION_DENIED"))
    assert snap.unreadable, "a failed read must be recorded"
    assert any("PERMISSION_DENIED" in u.reason for u in snap.unreadable)
    # every failed read is one the engine knows the meaning of (policy/snapshot.py)
    assert all(u.what in UNREADABLE_WHAT for u in snap.unreadable), snap.unreadable
    # never retried: no target is asked more often than in the clean run
    asked = Counter(r.target for r in emu.request_log if r.method == method)
    for target, times in asked.items():
        assert times <= max(1, clean_counts.get(f"{method} {target}", 0)), target
    probe = CALL_SITES[method]
    if probe is not None:
        member, resource, permission = probe
        after = decide(f"serviceAccount:{member}", resource, permission, snap, now=NOW)
        assert after.state == "unverifiable", after
    # never an allow the faulted snapshot cannot prove that the clean one would not (a refused
    # GetRole swaps this world's hand-narrowed roles/editor for the real catalogue's one)
    for member, resource, permission in {
        p for p in CALL_SITES.values() if p and not method.endswith("/GetRole")
    }:
        before = decide(f"serviceAccount:{member}", resource, permission, clean, now=NOW)
        after = decide(f"serviceAccount:{member}", resource, permission, snap, now=NOW)
        assert before.granted or not after.granted
    if method.endswith("SearchAllIamPolicies"):
        assert snap.complete_bindings_for == frozenset()
    if method.endswith("ListServiceAccounts"):
        assert any(u.what == "serviceAccounts.get" for u in snap.unreadable)


def test_refused_get_role_falls_back_to_the_catalogue(emu: Emulator, clean: Snapshot) -> None:
    snap = run_with_fault(
        emu, Fault(method="google.iam.admin.v1.IAM/GetRole", code="PERMISSION_DENIED")
    )
    refused = {u.target for u in snap.unreadable if u.what == "roles.get"}
    # roles/zt.reader is this world's own invention: no catalogue defines it
    assert refused == {"roles/zt.reader"}
    member, resource, permission = PROBE_GRANTED
    after = decide(f"serviceAccount:{member}", resource, permission, snap, now=NOW)
    assert after.granted and after.evidence[0].role.startswith("roles/")


def test_persistent_transient_fault_exhausts_the_budget_and_fails_closed(
    emu: Emulator, clean: Snapshot
) -> None:
    snap = run_with_fault(emu, Fault(method="storage.buckets.getIamPolicy", code="UNAVAILABLE"))
    assert emu.counts()["storage.buckets.getIamPolicy"] == 5
    assert [u.target for u in snap.unreadable] == [BUCKET]
    after = decide(f"serviceAccount:{TRAIN}", BUCKET, "storage.objects.list", snap, now=NOW)
    assert not after.granted


@pytest.mark.parametrize("fault", ["UNAVAILABLE", "reset", "malformed", "timeout"])
@pytest.mark.parametrize(
    "method",
    ["google.iam.admin.v1.IAM/GetIamPolicy", "google.iam.admin.v1.IAM/ListServiceAccountKeys"],
)
def test_a_read_started_without_a_thread_keeps_the_retry_budget_and_fails_closed(
    emu: Emulator, method: str, fault: str
) -> None:
    """The per-identity reads start as gRPC futures; their retries still stop at five attempts
    per target, and what never answered is unreadable — never an empty policy or no keys."""
    spec = {"UNAVAILABLE": {"code": "UNAVAILABLE"}}.get(fault) or TRANSIENT[fault]
    snap = run_with_fault(
        emu,
        Fault(method=method, **spec),  # type: ignore[arg-type]
        0.15 if fault == "timeout" else 2.0,
    )
    settle(emu)
    asked = Counter(r.target for r in emu.request_log if r.method == method)
    # a reset drops the shared connection, so other calls in flight on it fail unlogged
    assert asked and set(asked.values()) <= ({1, 2, 3, 4, 5} if fault == "reset" else {5}), asked
    what = (
        "serviceAccounts.getIamPolicy"
        if method.endswith("GetIamPolicy")
        else "serviceAccountKeys.list"
    )
    failed = {u.target for u in snap.unreadable if u.what == what}
    assert {t.rsplit("/", 1)[1] for t in failed} == {TRAIN, PIPE}
    if what == "serviceAccounts.getIamPolicy":
        member, resource, permission = CALL_SITES[method]  # type: ignore[misc]
        after = decide(f"serviceAccount:{member}", resource, permission, snap, now=NOW)
        assert after.state == "unverifiable", after


@pytest.mark.parametrize("fault", ["UNAVAILABLE", "reset", "malformed", "timeout"])
@pytest.mark.parametrize("method", ["storage.buckets.get", "storage.buckets.getIamPolicy"])
def test_a_read_sent_in_a_storage_batch_keeps_the_retry_budget_and_fails_closed(
    emu: Emulator, method: str, fault: str
) -> None:
    """Bucket reads go as parts of one batch request: a part that fails (or a batch that fails
    as a whole: reset, timeout) is retried on its own, five attempts in all, and a bucket that
    never answered is unreadable — never an empty policy or a project of its own choosing."""
    spec = {"UNAVAILABLE": {"code": "UNAVAILABLE"}}.get(fault) or TRANSIENT[fault]
    snap = run_with_fault(
        emu,
        Fault(method=method, **spec),  # type: ignore[arg-type]
        0.15 if fault == "timeout" else 2.0,
    )
    settle(emu)
    asked = [r for r in emu.request_log if r.method == method]
    assert len(asked) == 5 and asked[0].batched and not any(r.batched for r in asked[1:])
    assert [u.target for u in snap.unreadable if u.what == method] == [BUCKET]
    member, resource, permission = PROBE_GRANTED
    after = decide(f"serviceAccount:{member}", resource, permission, snap, now=NOW)
    assert after.state == "unverifiable", after
