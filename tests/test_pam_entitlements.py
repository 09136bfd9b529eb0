"""Privileged Access Manager entitlements (ZT221 / ZT222): an identity eligible for an
entitlement can be granted its roles at run time. Read live with the official
``privilegedaccessmanager_v1`` client (one listing per hierarchy node), carried by snapshot
files, judged against the identity's needs on the entitlement's node; a failed listing is
unreadable (ZT400), never "no entitlements"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_live_check import EX, codes, example_world, run_check, templates

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.policy.snapshot import Entitlement, EntitlementRole, Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot
from zt_pipelines.resources import CRM

__all__ = ["templates"]  # the module fixture, shared with test_live_check

PROJECT = f"{CRM}projects/{EX.PROJECT}"
NAME = f"projects/{EX.PROJECT}/locations/global/entitlements/break-glass"
LIST = "google.cloud.privilegedaccessmanager.v1.PrivilegedAccessManager/ListEntitlements"


def entitled(
    world: Snapshot,
    *eligible: str,
    role: str = "roles/storage.admin",
    approval: bool = False,
    node: str = PROJECT,
    name: str = NAME,
    state: str = "AVAILABLE",
) -> Snapshot:
    """``world`` with one entitlement of ``role`` on ``node`` for ``eligible``."""
    e = Entitlement(
        name=name,
        node=node,
        eligible=eligible,
        roles=(EntitlementRole(role),),
        approval_required=approval,
        max_duration="3600s",
        state=state,
    )
    return replace(world, entitlements=(*world.entitlements, e))


def found(report: object, code: str) -> list[str]:
    return [f.message for f in report.findings if f.code == code]  # type: ignore[attr-defined]


@pytest.fixture()
def eligible_world() -> Iterator[Emulator]:
    """The demo world where train-sa may grant itself storage.admin on the project, no
    approval, with the demo submitter as caller."""
    world = entitled(example_world(), f"serviceAccount:{EX.TRAIN_SA}")
    with Emulator(world) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        yield emu


def test_the_demo_world_lists_entitlements_and_has_none(templates: dict[str, str]) -> None:
    with Emulator(example_world()) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        report = run_check(templates["training"])
        asked = {r.target for r in emu.request_log if r.method == LIST}
    assert not found(report, "ZT221") and not found(report, "ZT222")
    # every node of the chain: project, folder, organisation
    assert {t.split("/locations/")[0] for t in asked} >= {
        f"projects/{EX.PROJECT}",
        "folders/200",
        "organizations/100",
    }, asked


def test_self_elevation_without_approval_is_zt221_live(
    eligible_world: Emulator, templates: dict[str, str]
) -> None:
    report = run_check(templates["training"])
    messages = found(report, "ZT221")
    assert any(
        EX.TRAIN_SA in m
        and NAME in m
        and "no approval" in m
        and "storage.buckets.setIamPolicy" in m
        for m in messages
    ), messages
    assert not report.allowed
    assert {f.code for f in report.findings if f.code == "ZT221"} and all(
        f.severity.value == "error" for f in report.findings if f.code == "ZT221"
    )


def test_the_file_round_trip_judges_the_same(templates: dict[str, str], tmp_path: Path) -> None:
    world = entitled(example_world(), f"serviceAccount:{EX.TRAIN_SA}")
    out = tmp_path / "w.json"
    out.write_text(json.dumps(dump_snapshot(world)))
    loaded = load_snapshot(out)
    assert loaded.entitlements == world.entitlements
    assert found(run_check(templates["training"], loaded), "ZT221")


def test_approval_required_is_a_warning_not_a_refusal(templates: dict[str, str]) -> None:
    clean = run_check(templates["training"], example_world())
    world = entitled(example_world(), f"serviceAccount:{EX.TRAIN_SA}", approval=True)
    report = run_check(templates["training"], world)
    assert found(report, "ZT222") and not found(report, "ZT221")
    assert all(f.severity.value == "warning" for f in report.findings if f.code == "ZT222")
    assert report.allowed == clean.allowed


def test_eligibility_through_a_group_of_unknown_membership_may_elevate(
    templates: dict[str, str],
) -> None:
    world = entitled(example_world(), "group:ml-oncall@example.com")
    messages = found(run_check(templates["training"], world), "ZT221")
    assert any("may be eligible" in m for m in messages), messages


def test_a_known_group_and_a_principal_set_count_and_others_do_not(
    templates: dict[str, str],
) -> None:
    grouped = replace(
        entitled(example_world(), "group:oncall@example.com"),
        groups={"oncall@example.com": (f"serviceAccount:{EX.TRAIN_SA}",)},
    )
    assert any(
        "is eligible" in m for m in found(run_check(templates["training"], grouped), "ZT221")
    )
    sa_set = (
        f"principalSet://cloudresourcemanager.googleapis.com/projects/{EX.PROJECT}"
        "/type/ServiceAccount"
    )
    assert found(run_check(templates["training"], entitled(example_world(), sa_set)), "ZT221")
    other = entitled(example_world(), "user:oncall@example.com")
    assert not found(run_check(templates["training"], other), "ZT221")
    deleted = entitled(example_world(), f"serviceAccount:{EX.TRAIN_SA}", state="DELETED")
    assert not found(run_check(templates["training"], deleted), "ZT221")


def test_an_entitlement_inherited_from_the_organisation_counts(
    templates: dict[str, str],
) -> None:
    world = entitled(
        example_world(),
        f"serviceAccount:{EX.TRAIN_SA}",
        role="roles/iam.serviceAccountTokenCreator",
        node=f"{CRM}organizations/100",
        name="organizations/100/locations/global/entitlements/tokens",
    )
    messages = found(run_check(templates["training"], world), "ZT221")
    assert any("escalation-capable" in m and "organizations/100" in m for m in messages), messages


def test_another_principal_eligible_to_impersonate_is_zt220(templates: dict[str, str]) -> None:
    """Inward: an outsider eligible, without approval, for Token Creator on the identities'
    project can become every step identity; with an approval it is a warning (ZT222)."""
    tokens = "roles/iam.serviceAccountTokenCreator"
    world = entitled(example_world(), "user:mallory@example.com", role=tokens)
    report = run_check(templates["training"], world)
    inbound = [
        f
        for f in report.findings
        if f.code == "ZT220" and f.principal == "user:mallory@example.com"
    ]
    assert inbound and EX.TRAIN_SA in inbound[0].message and NAME in inbound[0].message
    assert not report.allowed
    gated = run_check(
        templates["training"],
        entitled(example_world(), "group:oncall@example.com", role=tokens, approval=True),
    )
    assert any("oncall" in m and EX.TRAIN_SA in m for m in found(gated, "ZT222"))
    assert not [f for f in gated.findings if f.code == "ZT220" and "oncall" in f.message]
    # a pipeline identity named in another spelling is judged as its own eligibility (ZT221),
    # not as an outsider (ZT220)
    upper = f"serviceAccount:{EX.TRAIN_SA.upper()}"
    own = run_check(templates["training"], entitled(example_world(), upper, role=tokens))
    assert found(own, "ZT221")
    assert not [f for f in own.findings if f.code == "ZT220" and f.principal == upper]
    # a role that cannot impersonate: not an inbound edge
    reader = entitled(
        example_world(), "user:mallory@example.com", role="roles/storage.objectViewer"
    )
    assert not [
        f for f in run_check(templates["training"], reader).findings if "mallory" in f.message
    ]


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "INTERNAL"])
def test_a_failed_listing_is_unreadable_never_none(
    eligible_world: Emulator, templates: dict[str, str], code: str
) -> None:
    eligible_world.add_fault(Fault(method=LIST, code=code))
    report = run_check(templates["training"])
    assert not report.allowed
    assert any(
        f.code == "ZT400" and "privilegedaccessmanager" in (f.resource or "") + f.message
        for f in report.findings
    ), sorted(codes(report))
    assert not found(report, "ZT221")


def test_the_emulator_serves_the_official_client_with_iam() -> None:
    from google.api_core import exceptions
    from google.cloud import privilegedaccessmanager_v1 as pam

    from zt_pipelines.gcp.clients import emulator_channel

    world = entitled(example_world(), f"serviceAccount:{EX.TRAIN_SA}", approval=True)
    with Emulator(world) as emu:

        def client(caller: str) -> pam.PrivilegedAccessManagerClient:
            channel = emulator_channel(emu.address, emulator_credentials(caller))
            transport = pam.PrivilegedAccessManagerClient.get_transport_class("grpc")(
                channel=channel
            )
            return pam.PrivilegedAccessManagerClient(transport=transport)

        parent = f"projects/{EX.PROJECT}/locations/global"
        got = list(client(EX.SUBMITTER).list_entitlements(parent=parent))
        assert [e.name for e in got] == [NAME]
        access = got[0].privileged_access.gcp_iam_access
        assert [b.role for b in access.role_bindings] == ["roles/storage.admin"]
        assert got[0].approval_workflow.manual_approvals.steps
        assert list(got[0].eligible_users[0].principals) == [f"serviceAccount:{EX.TRAIN_SA}"]
        with pytest.raises(exceptions.PermissionDenied):
            list(client(f"serviceAccount:{EX.TRAIN_SA}").list_entitlements(parent=parent))
