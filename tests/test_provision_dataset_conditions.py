"""apply keeps the IAM conditions of BigQuery dataset access entries it rewrites.

BigQuery dataset access entries carry IAM conditions (``AccessEntry.condition``). apply
rewrites a dataset's whole access list to add one step grant: every other entry — its
condition included — must come back exactly as it was, or a time-limited grant to someone
else becomes permanent. Driven through the real google-cloud-bigquery client against the
emulator, which serves conditional access entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import AccessEntry
from google.cloud.bigquery.dataset import Condition as BqCondition
from test_provision_apply import (
    ADMIN,
    FULL_NEEDS,
    PREP_SA,
    PROJECT,
    TABLE,
    empty_project,
    make_plan,
    members_of,
    template,  # noqa: F401  (the compiled pipeline fixture)
)

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.errors import ZtError
from zt_pipelines.gcp.bigquery import get_dataset_v3
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Condition, Node, Snapshot
from zt_pipelines.provision.apply import apply_plan

DATASET = TABLE.rsplit("/tables/", 1)[0]
ALICE = "user:alice@example.com"
ANALYSTS = "group:analysts@example.com"
UNTIL = Condition(
    'request.time < timestamp("2026-12-01T00:00:00Z")', "until December", "temporary access"
)
VIEWER = "roles/bigquery.dataViewer"


def world_with(*bindings: Binding) -> Snapshot:
    world = empty_project()
    old = world.nodes[DATASET]
    world.nodes[DATASET] = Node(old.name, old.kind, old.parent, AllowPolicy(bindings, "d1", 3))
    return world


@pytest.fixture()
def emu_with_alice() -> Iterator[Emulator]:
    with Emulator(world_with(Binding(VIEWER, (ALICE,), UNTIL))) as emu:
        yield emu


def bq_client(emu: Emulator) -> bigquery.Client:
    factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
    return factory.bigquery()


def conditions_of(state: Snapshot) -> dict[tuple[str, str], Condition | None]:
    policy = state.nodes[DATASET].policy
    assert policy is not None
    return {(b.role, m): b.condition for b in policy.bindings for m in b.members}


def apply_full(emu: Emulator, template: Path) -> None:  # noqa: F811
    factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
    try:
        planned = make_plan(template, FULL_NEEDS, emu.state)
        apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
    finally:
        factory.close()


def test_the_emulator_serves_conditional_access_entries_to_the_bigquery_client(
    emu_with_alice: Emulator,
) -> None:
    client = bq_client(emu_with_alice)
    # read at access policy version 3, as BigQuery wants for conditional entries; a version-1
    # read gets the entry renamed and without its condition (as BigQuery answers)
    old = client.get_dataset(f"{PROJECT}.features")
    [renamed] = [e for e in old.access_entries if e.entity_id == "alice@example.com"]
    assert renamed.condition is None and "_with_conditionalbinding_" in str(renamed.role)
    ds = get_dataset_v3(client, PROJECT, "features")
    [entry] = [e for e in ds.access_entries if e.entity_id == "alice@example.com"]
    assert entry.condition is not None
    assert entry.condition.expression == UNTIL.expression
    assert entry.condition.title == UNTIL.title
    # a round trip through update_dataset keeps it, and a new conditional entry is stored as one
    ds.access_entries = [
        *ds.access_entries,
        AccessEntry(
            VIEWER,
            "groupByEmail",
            "analysts@example.com",
            condition=BqCondition('resource.name.startsWith("x")', "x only", None),
        ),
    ]
    client.update_dataset(ds, ["access_entries"])
    held = conditions_of(emu_with_alice.state)
    assert held[(VIEWER, ALICE)] == UNTIL
    assert held[(VIEWER, ANALYSTS)] == Condition('resource.name.startsWith("x")', "x only", "")


def test_apply_keeps_anothers_conditional_dataset_access_conditional(
    emu_with_alice: Emulator,
    template: Path,  # noqa: F811
) -> None:
    apply_full(emu_with_alice, template)
    held = conditions_of(emu_with_alice.state)
    assert held[(VIEWER, ALICE)] == UNTIL  # still time-limited, title and description kept
    members = {m for _, m, _ in members_of(emu_with_alice.state, DATASET)}
    assert f"serviceAccount:{PREP_SA}" in members
    # and the real client still sees the condition on alice's entry
    ds = get_dataset_v3(bq_client(emu_with_alice), PROJECT, "features")
    [entry] = [e for e in ds.access_entries if e.entity_id == "alice@example.com"]
    assert entry.condition is not None and entry.condition.expression == UNTIL.expression


def test_a_conditional_entry_does_not_count_as_the_unconditional_grant_apply_needs(
    template: Path,  # noqa: F811
) -> None:
    planned_role = next(
        g.role
        for g in make_plan(template, FULL_NEEDS, empty_project()).grants
        if g.resource == DATASET
    )
    prep = f"serviceAccount:{PREP_SA}"
    # the step SA already holds the planned role on the dataset, but only until December
    with Emulator(world_with(Binding(planned_role, (prep,), UNTIL))) as emu:
        apply_full(emu, template)
        policy = emu.state.nodes[DATASET].policy
        assert policy is not None
        held = sorted(
            (b.condition.expression if b.condition else "")
            for b in policy.bindings
            if prep in b.members and b.role == planned_role
        )
        assert held == ["", UNTIL.expression]  # the unconditional grant added, the other kept


def test_conditional_group_and_iam_member_entries_survive_apply(template: Path) -> None:  # noqa: F811
    other = Condition('resource.name.endsWith("/tables/rows")', "rows only")
    principal = "principal://iam.googleapis.com/locations/global/workforcePools/p/subject/s"
    world = world_with(
        Binding(VIEWER, (ANALYSTS,), UNTIL),
        Binding("roles/bigquery.dataEditor", (principal,), other),
        Binding(VIEWER, ("user:bob@example.com",)),
    )
    with Emulator(world) as emu:
        apply_full(emu, template)
        held = conditions_of(emu.state)
        assert held[(VIEWER, ANALYSTS)] == UNTIL
        assert held[("roles/bigquery.dataEditor", principal)] == other
        assert held[(VIEWER, "user:bob@example.com")] is None


def test_apply_refuses_an_entry_bigquery_showed_without_its_condition(template: Path) -> None:  # noqa: F811
    # a version-1 read shows a conditional entry as "<role>withcond<hash>": never rewrite it
    hidden = Binding("roles/bigquery.dataViewerwithcond1f2e3d", (ALICE,))
    with Emulator(world_with(hidden)) as emu:
        with pytest.raises(ZtError, match="without its condition"):
            apply_full(emu, template)
        assert conditions_of(emu.state) == {(hidden.role, ALICE): None}
