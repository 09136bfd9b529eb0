"""BigQuery connections' service accounts, live: a step identity that holds
``bigquery.connections.use`` (or ``delegate``) acts as every connection's own account, which
no binding names until the connections are listed. Live mode lists them with the official
``bigquery_connection_v1`` client — only when an identity may hold such a grant — and
searches what those accounts hold, so a live check reports what a snapshot file of the same
world reports (ZT224); a listing that fails is ZT400 + ZT217, never silence."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_live_check import EX, NOW, example_world, run_check, templates

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp.bq_connections import BIGQUERY_LOCATIONS
from zt_pipelines.policy.report import Report
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, ServiceAccount, Snapshot
from zt_pipelines.resources import CRM, STORAGE
from zt_pipelines.verification import check

__all__ = ["templates"]  # the module fixture, shared with test_live_check

LIST = "google.cloud.bigquery.connection.v1.ConnectionService/ListConnections"
NUMBER = "123456789012"  # zt-demo's
BQCX = f"bqcx-{NUMBER}-ab12@gcp-sa-bigquery-condel.iam.gserviceaccount.com"
SECRETS = STORAGE + "zt-demo-secrets"
PROJECT = f"{CRM}projects/{EX.PROJECT}"


def lending_world(
    *, holder: str = f"serviceAccount:{EX.TRAIN_SA}", permission: str = "bigquery.connections.use"
) -> Snapshot:
    """The demo world where ``holder`` holds ``permission`` on zt-demo (a custom role) and a
    connection's account holds objectAdmin on a bucket no step needs."""
    world = example_world()
    role = Role(f"projects/{EX.PROJECT}/roles/connUser", frozenset({permission}))
    nodes = dict(world.nodes)
    project = nodes[PROJECT]
    assert project.project_number == NUMBER and project.policy is not None
    nodes[PROJECT] = replace(
        project,
        policy=AllowPolicy((*project.policy.bindings, Binding(role.name, (holder,)))),
    )
    nodes[SECRETS] = Node(
        SECRETS,
        "bucket",
        parent=PROJECT,
        policy=AllowPolicy((Binding("roles/storage.objectAdmin", (f"serviceAccount:{BQCX}",)),)),
        uniform_bucket_level_access=True,
    )
    return replace(world, nodes=nodes, roles={**world.roles, role.name: role})


@pytest.fixture()
def manifest(tmp_path: Path) -> str:
    path = tmp_path / "manifest.yaml"
    needs = {"train": {"service_account": EX.TRAIN_SA, "needs": {f"projects/{EX.PROJECT}": []}}}
    needs["train"]["needs"][f"projects/{EX.PROJECT}"] = ["bigquery.connections.use"]
    path.write_text(yaml.safe_dump({"steps": needs}))
    return str(path)


def _check(template: str, snapshot: object, manifest: str) -> Report:
    return check(
        template,
        project=EX.PROJECT,
        location=EX.LOCATION,
        pipeline_service_account=EX.PIPELINE_SA,
        pipeline_root=EX.PIPELINE_ROOT,
        submitter=EX.SUBMITTER,
        snapshot=snapshot,  # type: ignore[arg-type]
        now=NOW,
        manifest=manifest,
    )


def _live(
    world: Snapshot, template: str, manifest: str, *faults: Fault, **connections: Any
) -> tuple[Report, list[Any]]:
    with Emulator(world) as emu, pytest.MonkeyPatch.context() as mp:
        for fault in faults:
            emu.add_fault(fault)
        for location, account in connections.items():
            emu.add_bigquery_connection(EX.PROJECT, location.replace("_", "-"), "more", account)
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        return _check(template, None, manifest), emu.request_log


def lent(report: Report, account: str = BQCX) -> list[str]:
    return [f"{f.code} {f.message}" for f in report.findings if account in f.message]


@pytest.mark.parametrize(
    "permission", ["bigquery.connections.use", "bigquery.connections.delegate"]
)
def test_a_connection_account_is_searched_live_as_the_file_holds_it(
    templates: dict[str, str], manifest: str, permission: str
) -> None:
    world = lending_world(permission=permission)
    offline = _check(templates["training"], world, manifest)
    live, log = _live(world, templates["training"], manifest)
    assert lent(offline), str(offline)
    assert lent(live) == lent(offline), str(live)
    assert [f for f in lent(live) if f.startswith("ZT224")]
    # every location BigQuery serves, each once (the API lists one location at a time)
    asked = sorted(r.target for r in log if r.method == LIST)
    assert asked == sorted(f"projects/{EX.PROJECT}/locations/{loc}" for loc in BIGQUERY_LOCATIONS)
    # the account found is searched (what it holds anywhere), as the identities are
    searches = [r for r in log if r.method.endswith("SearchAllIamPolicies")]
    assert searches, log


def test_a_connection_in_any_location_is_found(templates: dict[str, str], manifest: str) -> None:
    """A Spark connection in europe-west1 acting as an account that reads another bucket."""
    other = f"bqcx-{NUMBER}-cd34@gcp-sa-bigquery-condel.iam.gserviceaccount.com"
    world = lending_world()
    nodes = dict(world.nodes)
    nodes[SECRETS + "2"] = Node(
        SECRETS + "2",
        "bucket",
        parent=PROJECT,
        policy=AllowPolicy((Binding("roles/storage.objectViewer", (f"serviceAccount:{other}",)),)),
        uniform_bucket_level_access=True,
    )
    world = replace(world, nodes=nodes)
    offline = _check(templates["training"], world, manifest)
    live, _ = _live(world, templates["training"], manifest, europe_west1=other)
    assert lent(offline, other), str(offline)
    assert lent(live, other) == lent(offline, other)


def test_a_refused_listing_is_unverifiable_never_silent(
    templates: dict[str, str], manifest: str
) -> None:
    world = lending_world()
    live, _ = _live(
        world,
        templates["training"],
        manifest,
        Fault(method=LIST, code="PERMISSION_DENIED"),
    )
    assert not live.allowed
    zt400 = [f.message for f in live.by_code("ZT400") if "BigQuery connections" in f.message]
    assert len(zt400) == 1, zt400  # one per project, not one per location
    zt217 = [
        f.message
        for f in live.by_code("ZT217")
        if "connections of project " + NUMBER + " could not be listed" in f.message
    ]
    assert zt217 and EX.TRAIN_SA in zt217[0], str(live)


def test_no_identity_holding_connections_use_lists_nothing(templates: dict[str, str]) -> None:
    """The demo world: nobody the check follows holds the permission, so no listing (the
    cost of a live check stays where it was)."""
    with Emulator(example_world()) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        run_check(templates["training"])
        assert not [r for r in emu.request_log if r.method == LIST]


def test_someone_elses_grant_lists_nothing(templates: dict[str, str], manifest: str) -> None:
    world = lending_world(holder="user:analyst@example.com")
    _, log = _live(world, templates["training"], manifest)
    assert not [r for r in log if r.method == LIST]


@pytest.fixture()
def served() -> Iterator[Emulator]:
    with Emulator(lending_world()) as emu:
        yield emu


def _client(emu: Emulator, caller: str) -> Any:
    from google.cloud import bigquery_connection_v1 as bqc

    from zt_pipelines.gcp.clients import emulator_channel

    channel = emulator_channel(emu.address, emulator_credentials(caller))
    transport = bqc.ConnectionServiceClient.get_transport_class("grpc")(channel=channel)
    return bqc.ConnectionServiceClient(transport=transport)


def test_the_emulator_serves_the_official_client_with_iam(served: Emulator) -> None:
    from google.api_core import exceptions

    served.add_bigquery_connection(
        EX.PROJECT,
        "europe-west1",
        "sql",
        "service-1@gcp-sa-x.iam.gserviceaccount.com",
        kind="cloud_sql",
    )
    client = _client(served, EX.SUBMITTER)
    us = list(
        client.list_connections(
            request={"parent": f"projects/{EX.PROJECT}/locations/us", "page_size": 10}
        )
    )
    assert [c.cloud_resource.service_account_id for c in us] == [BQCX]
    assert us[0].name == f"projects/{EX.PROJECT}/locations/us/connections/ab12"
    # by number, too; and another location holds only its own
    eu = list(
        client.list_connections(
            request={"parent": f"projects/{NUMBER}/locations/europe-west1", "page_size": 10}
        )
    )
    assert [c.cloud_sql.service_account_id for c in eu] == [
        "service-1@gcp-sa-x.iam.gserviceaccount.com"
    ]
    assert not list(
        client.list_connections(
            request={"parent": f"projects/{EX.PROJECT}/locations/eu", "page_size": 10}
        )
    )
    with pytest.raises(exceptions.InvalidArgument):
        list(client.list_connections(request={"parent": f"projects/{EX.PROJECT}", "page_size": 10}))
    with pytest.raises(exceptions.InvalidArgument):  # page_size is required, as on Google
        list(client.list_connections(request={"parent": f"projects/{EX.PROJECT}/locations/us"}))
    with pytest.raises(exceptions.PermissionDenied):
        list(
            _client(served, f"serviceAccount:{EX.TRAIN_SA}").list_connections(
                request={"parent": f"projects/{EX.PROJECT}/locations/us", "page_size": 10}
            )
        )


def test_the_adapter_pages_through_the_emulator(served: Emulator) -> None:
    from zt_pipelines.gcp.bq_connections import BigQueryConnectionAdapter
    from zt_pipelines.gcp.clients import ClientFactory

    for i in range(5):
        served.add_bigquery_connection(
            EX.PROJECT,
            "us",
            f"c{i}",
            f"bqcx-{NUMBER}-c{i}@gcp-sa-bigquery-condel.iam.gserviceaccount.com",
        )
    factory = ClientFactory(emulator_credentials(EX.SUBMITTER), emulator_host=served.address)
    adapter = BigQueryConnectionAdapter(factory, page_size=2)
    got = adapter.list_connection_accounts(EX.PROJECT, "us")
    assert len(got) == 6 and BQCX in got
    first = adapter.start_list_connection_accounts(EX.PROJECT, "us")
    assert first is not None
    page = first.outcome()
    assert len(page.items) == 2 and page.next_token
    rest = adapter.list_connection_accounts_after(EX.PROJECT, "us", page.next_token)
    assert sorted([*page.items, *rest]) == sorted(got)


def test_a_connection_lent_to_an_account_an_identity_can_become(
    templates: dict[str, str], manifest: str
) -> None:
    """train-sa can mint tokens of an account of another project that holds
    bigquery.connections.use: the connections are listed for it too (ZT224, as the file)."""
    side = "side-sa@side-proj.iam.gserviceaccount.com"
    world = lending_world(holder=f"serviceAccount:{side}")
    side_project = f"{CRM}projects/side-proj"
    side_node = f"//iam.googleapis.com/projects/side-proj/serviceAccounts/{side}"
    token = Binding("roles/iam.serviceAccountTokenCreator", (f"serviceAccount:{EX.TRAIN_SA}",))
    nodes = {
        **world.nodes,
        side_project: Node(
            side_project,
            "project",
            parent="//cloudresourcemanager.googleapis.com/folders/200",
            project_number="555555555555",
            policy=AllowPolicy(()),
        ),
        side_node: Node(
            side_node, "serviceAccount", parent=side_project, policy=AllowPolicy((token,))
        ),
    }
    accounts = {**world.service_accounts, side: ServiceAccount(side, "side-proj", "7777")}
    world = replace(world, nodes=nodes, service_accounts=accounts)
    offline = _check(templates["training"], world, manifest)
    live, log = _live(world, templates["training"], manifest)
    assert [f for f in lent(offline) if EX.TRAIN_SA in f], str(offline)
    assert lent(live) == lent(offline), str(live)
    assert [r for r in log if r.method == LIST]
