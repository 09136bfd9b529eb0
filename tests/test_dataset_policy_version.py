"""BigQuery dataset access is read at policy version 3: below it BigQuery renames a conditional
entry's role (``ROLE_with_conditionalbinding_HASH``) and drops its condition, and the emulator
answers like BigQuery — so a check reading at version 1 would see an unknown role, never the
grant's condition (tests drive the real BigQuery client)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from test_gcp_live import DATASET, PROJECT, TRAIN, world

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp import ClientFactory, build_adapters, fetch_snapshot
from zt_pipelines.gcp.bigquery import get_dataset_v3
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.requirements import sa_member
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Condition, Node, Snapshot

READER = "reader-sa@proj-a1.iam.gserviceaccount.com"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
UNTIL = Condition('request.time < timestamp("2099-01-01T00:00:00Z")', "until 2099")


def conditional_world() -> Snapshot:
    """The live-test world where train-sa reads the dataset only under a condition."""
    base = world()
    nodes = dict(base.nodes)
    nodes[DATASET] = Node(
        DATASET,
        "dataset",
        parent=PROJECT,
        policy=AllowPolicy(
            (Binding("roles/bigquery.dataViewer", (sa_member(TRAIN),), UNTIL),), version=3
        ),
    )
    return replace(base, nodes=nodes)


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    with Emulator(conditional_world()) as emulator:
        yield emulator


def test_the_emulator_renames_conditional_entries_below_version_3(emu: Emulator) -> None:
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emu.address)
    client = factory.bigquery()
    v1 = client.get_dataset("proj-a1.features", retry=None)  # the library's own read
    [entry] = [e for e in v1.access_entries if e.entity_id == TRAIN]
    assert entry.role.startswith("roles/bigquery.dataViewer_with_conditionalbinding_")
    assert entry.condition is None
    v3 = get_dataset_v3(client, "proj-a1", "features")
    [entry] = [e for e in v3.access_entries if e.entity_id == TRAIN]
    assert entry.role == "roles/bigquery.dataViewer"
    assert entry.condition is not None and entry.condition.expression == UNTIL.expression
    asked = [r for r in emu.request_log if r.method == "bigquery.datasets.get"]
    assert len(asked) == 2
    factory.close()


def test_a_live_check_reads_the_condition_and_proves_the_grant(emu: Emulator) -> None:
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emu.address)
    policy = build_adapters(factory, no_wait_policy()).bigquery.get_dataset_policy(
        "proj-a1", "features"
    )
    factory.close()
    [binding] = [b for b in policy.bindings if sa_member(TRAIN) in b.members]
    assert binding.role == "roles/bigquery.dataViewer"
    assert binding.condition is not None and binding.condition.expression == UNTIL.expression
    snap = fetch_snapshot(
        resources=[DATASET],
        service_accounts=[TRAIN],
        projects=["proj-a1"],
        credentials=emulator_credentials(sa_member(READER)),
        emulator_host=emu.address,
        retry=no_wait_policy(),
        use_cache=False,
    )
    d = decide(sa_member(TRAIN), DATASET, "bigquery.tables.getData", snap, now=NOW)
    assert d.granted, d


def test_table_policies_are_read_at_version_3_and_the_emulator_renames_below() -> None:
    from test_gcp_live import TABLE

    base = world()
    nodes = dict(base.nodes)
    conditional = Binding("roles/bigquery.dataEditor", (sa_member(TRAIN),), UNTIL)
    nodes[TABLE] = replace(nodes[TABLE], policy=AllowPolicy((conditional,), version=3))
    with Emulator(replace(base, nodes=nodes)) as emulator:
        factory = ClientFactory(
            emulator_credentials(sa_member(READER)), emulator_host=emulator.address
        )
        client = factory.bigquery()
        v1 = client.get_iam_policy("proj-a1.features.rows", retry=None)  # the library: v1 only
        assert [b["role"] for b in v1.bindings] != ["roles/bigquery.dataEditor"]
        assert all("_withcond_" in b["role"] and not b.get("condition") for b in v1.bindings)
        policy = build_adapters(factory, no_wait_policy()).bigquery.get_table_policy(
            "proj-a1", "features", "rows"
        )
        factory.close()
    [binding] = policy.bindings
    assert binding.role == "roles/bigquery.dataEditor"
    assert binding.condition is not None and binding.condition.expression == UNTIL.expression
