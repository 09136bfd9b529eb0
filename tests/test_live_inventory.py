"""The inventory strategy (Cloud Asset in bulk) against the emulator: same answers as the
direct strategy, far fewer calls, and the same fail-closed behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from test_gcp_live import BUCKET, PIPE, SA_NODE, TABLE, TRAIN, fetch, world

from zt_pipelines.emulator import Emulator, Fault
from zt_pipelines.errors import InputError
from zt_pipelines.gcp import fetch_snapshot
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot import AllowPolicy, Snapshot

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
PROBES = (
    (TRAIN, BUCKET, "storage.objects.list"),
    (TRAIN, BUCKET, "storage.buckets.delete"),
    (TRAIN, TABLE, "bigquery.tables.updateData"),
    (PIPE, SA_NODE, "iam.serviceAccounts.actAs"),
    (TRAIN, "//cloudresourcemanager.googleapis.com/projects/proj-a1", "bigquery.jobs.create"),
)


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    """The standard test world."""
    with Emulator(world(extra_accounts=30)) as emulator:
        yield emulator


def policies(snap: Snapshot) -> dict[str, object]:
    """Every node's bindings (etags of empty policies differ by source)."""
    return {
        name: (node.kind, node.parent, node.policy.bindings if node.policy else None)
        for name, node in snap.nodes.items()
    }


def states(snap: Snapshot) -> list[str]:
    """The engine's answer for every probe."""
    return [decide(f"serviceAccount:{m}", r, p, snap, now=NOW).state for m, r, p in PROBES]


def test_inventory_gives_the_direct_answer_with_fewer_calls(emu: Emulator) -> None:
    direct = fetch(emu)
    direct_calls = sum(emu.counts().values())
    emu.clear_log()
    inventory = fetch(emu, strategy="inventory")
    inventory_calls = sum(emu.counts().values())
    assert inventory.unreadable == ()
    assert policies(inventory) == policies(direct)
    assert inventory.roles == direct.roles
    assert inventory.deny_policies == direct.deny_policies
    assert inventory.service_accounts == direct.service_accounts
    assert inventory.complete_bindings_for == direct.complete_bindings_for
    assert states(inventory) == states(direct)
    assert inventory_calls < direct_calls
    counts = emu.counts()
    assert "google.iam.admin.v1.IAM/ListServiceAccountKeys" not in counts
    assert counts["google.cloud.asset.v1.AssetService/SearchAllResources"] == 1


def test_strategy_from_the_environment(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZT_LIVE_STRATEGY", "inventory")
    fetch(emu)
    assert "google.cloud.asset.v1.AssetService/SearchAllResources" in emu.counts()
    monkeypatch.setenv("ZT_LIVE_STRATEGY", "fastest")
    with pytest.raises(InputError):
        fetch_snapshot(resources=[], service_accounts=[], emulator_host=emu.address)


def test_failed_dump_falls_back_to_direct_reads(emu: Emulator) -> None:
    clean = fetch(emu, strategy="inventory")
    emu.add_fault(Fault(method="*SearchAllIamPolicies", code="PERMISSION_DENIED"))
    snap = fetch(emu, strategy="inventory")
    # allow policies come from their own APIs instead: the same grants are proven
    assert states(snap) == states(clean)
    assert emu.counts()["storage.buckets.getIamPolicy"] == 1
    # but nothing proves the accounts' bindings elsewhere are complete
    assert snap.complete_bindings_for == frozenset()
    assert any("searchAllIamPolicies" in u.what for u in snap.unreadable)


def test_failed_key_search_makes_keys_unreadable(emu: Emulator) -> None:
    emu.add_fault(Fault(method="*SearchAllResources", code="PERMISSION_DENIED"))
    snap = fetch(emu, strategy="inventory")
    assert TRAIN in snap.service_accounts
    assert any(
        u.what == "serviceAccountKeys.list" and u.target.endswith(TRAIN) for u in snap.unreadable
    )


@pytest.mark.parametrize(
    "fault",
    [
        {"delay_ms": 400},  # a timeout: the attempt's deadline is shorter
        {"code": "UNAVAILABLE"},
        {"code": "RESOURCE_EXHAUSTED"},
        {"code": "INTERNAL"},
        {"reset": True},
        {"malformed": True},
    ],
)
@pytest.mark.parametrize("method", ["*SearchAllIamPolicies", "*SearchAllResources"])
def test_transient_inventory_faults_recover(
    emu: Emulator, method: str, fault: dict[str, object]
) -> None:
    clean = fetch(emu, strategy="inventory")
    emu.add_fault(Fault(method=method, times=2, **fault))  # type: ignore[arg-type]
    deadline = 0.15 if "delay_ms" in fault else 5.0
    retry = RetryPolicy(max_attempts=5, sleep=lambda _s: None, attempt_timeout=deadline)
    snap = fetch(emu, strategy="inventory", retry=retry)
    assert snap.unreadable == ()
    assert policies(snap) == policies(clean)
    assert snap.service_accounts == clean.service_accounts


def test_account_without_bindings_has_an_empty_policy_not_an_unknown_one(emu: Emulator) -> None:
    lonely = "step-007-sa@proj-a1.iam.gserviceaccount.com"
    snap = fetch(emu, strategy="inventory", service_accounts=[TRAIN, PIPE, lonely])
    node = snap.nodes[f"//iam.googleapis.com/projects/proj-a1/serviceAccounts/{lonely}"]
    assert node.policy == AllowPolicy()
    assert node.parent == "//cloudresourcemanager.googleapis.com/projects/proj-a1"


class _GoogleShapedSearch:
    """The emulator's Cloud Asset answers, renamed the way Google names assets: projects by
    number, service accounts by unique id (a wrapper over the real adapter, not a mock)."""

    def __init__(self, inner: object, numbers: dict[str, str], uids: dict[str, str]) -> None:
        self.inner = inner
        self.numbers = numbers
        self.uids = uids

    def _rename(self, name: str) -> str:
        crm = "//cloudresourcemanager.googleapis.com/projects/"
        if name.startswith(crm):
            return crm + self.numbers.get(name[len(crm) :], name[len(crm) :])
        head, _, last = name.rpartition("/")
        return f"{head}/{self.uids[last]}" if last in self.uids else name

    def search_policies(self, scope: str, query: str) -> list[object]:
        from dataclasses import replace

        hits = self.inner.search_policies(scope, query)  # type: ignore[attr-defined]
        return [replace(h, resource=self._rename(h.resource)) for h in hits]

    def search_keys(self, scope: str) -> list[object]:
        return self.inner.search_keys(scope)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("strategy", ["direct", "inventory"])
def test_google_asset_names_map_onto_snapshot_names(strategy: str) -> None:
    from dataclasses import replace

    from zt_pipelines.emulator import emulator_credentials
    from zt_pipelines.gcp import ClientFactory, build_adapters
    from zt_pipelines.gcp.retry import no_wait_policy

    base = world()
    uids = {email: str(100000 + i) for i, email in enumerate(sorted(base.service_accounts))}
    accounts = {e: replace(sa, unique_id=uids[e]) for e, sa in base.service_accounts.items()}
    with Emulator(replace(base, service_accounts=accounts)) as emu:
        plain = fetch(emu, strategy=strategy)
        factory = ClientFactory(
            emulator_credentials("serviceAccount:reader-sa@proj-a1.iam.gserviceaccount.com"),
            emulator_host=emu.address,
        )
        real = build_adapters(factory, no_wait_policy())
        numbers = {"proj-a1": "123456789012", "proj-b2": "222222222222"}
        shaped = replace(
            real, search=_GoogleShapedSearch(real.search, numbers, {e: uids[e] for e in uids})
        )
        renamed = fetch(emu, strategy=strategy, adapters=shaped)
    assert policies(renamed) == policies(plain)
    assert not [n for n in renamed.nodes if n.endswith(("/123456789012", "/222222222222"))]


def test_declared_service_account_resource_is_read_in_both_strategies(emu: Emulator) -> None:
    direct = fetch(emu, resources=[SA_NODE], service_accounts=[PIPE])
    emu.clear_log()
    inventory = fetch(emu, resources=[SA_NODE], service_accounts=[PIPE], strategy="inventory")
    assert inventory.unreadable == direct.unreadable == ()
    assert policies(inventory)[SA_NODE] == policies(direct)[SA_NODE]
    assert inventory.service_accounts == direct.service_accounts
    assert inventory.service_accounts[TRAIN].user_managed_keys
