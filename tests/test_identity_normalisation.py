"""Issue #10 item 5: a project is the same project under its id and its number — for deny
attachment points, parents, resource names, unreadable targets and principal sets — and a deny
policy attached to an unknown number is unverifiable, never absent. The emulator agrees."""

from __future__ import annotations

from typing import Any

import pytest
from policy_worlds import (
    FEATURES,
    FOLDER,
    NOW,
    PROJECT,
    TRAIN_SA,
    deny,
    grant,
    node,
    v2_sa,
    world_dict,
)

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp import fetch_snapshot
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot import DenyPolicy, DenyRule, Node, Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot

TRAIN = f"serviceAccount:{TRAIN_SA}"
NUMBER = "123456789012"  # ml-prod's number in the world file
BY_NUMBER = f"//cloudresourcemanager.googleapis.com/projects/{NUMBER}"
GET = ["storage.googleapis.com/objects.get"]


def _state(data: dict[str, Any], resource: str = FEATURES, member: str = TRAIN) -> str:
    return decide(member, resource, "storage.objects.get", load_snapshot(data), now=NOW).state


@pytest.mark.parametrize(
    "point",
    [
        f"cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}",  # the review's case
        f"cloudresourcemanager.googleapis.com%2fprojects%2f{NUMBER}",
        f"cloudresourcemanager.googleapis.com/projects/{NUMBER}",
        BY_NUMBER,
        f"policies/cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}/denypolicies/d1",
    ],
)
def test_deny_attached_by_project_number_applies(point: str) -> None:
    assert _state(deny(world_dict(), point, [v2_sa(TRAIN_SA)], GET)) == "denied"


def test_deny_attached_to_an_unknown_number_is_unverifiable_when_ours_is_unknown() -> None:
    data = world_dict()
    del node(data, PROJECT)["projectNumber"]
    data = deny(
        data, "cloudresourcemanager.googleapis.com%2Fprojects%2F999", [v2_sa(TRAIN_SA)], GET
    )
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable"
    assert any("projects/999" in r and "is unknown, so" in r for r in d.reasons), d.reasons


def test_deny_attached_to_another_known_number_does_not_apply() -> None:
    # every project on the chain has a known, different number: the policy is elsewhere
    data = deny(
        world_dict(), "cloudresourcemanager.googleapis.com%2Fprojects%2F999", [v2_sa(TRAIN_SA)], GET
    )
    assert _state(data) == "granted"
    # the other project's number puts it on the other project only
    data = deny(
        world_dict(),
        "cloudresourcemanager.googleapis.com/projects/222222222222",
        [v2_sa(TRAIN_SA)],
        GET,
    )
    assert _state(data) == "granted"


def test_unknown_number_deny_that_cannot_match_the_principal_is_ignored() -> None:
    data = world_dict()
    del node(data, PROJECT)["projectNumber"]
    data = deny(
        data,
        "cloudresourcemanager.googleapis.com/projects/999",
        [v2_sa("x@p.iam.gserviceaccount.com")],
        GET,
    )
    assert _state(data) == "granted"


def test_a_parent_named_by_number_is_the_project() -> None:
    # Cloud Asset writes parents with project numbers
    data = world_dict()
    node(data, FEATURES)["parent"] = BY_NUMBER
    grant(data, PROJECT, "roles/storage.admin", TRAIN)
    snap = load_snapshot(data)
    assert snap.nodes[FEATURES].parent == PROJECT
    d = decide(TRAIN, FEATURES, "storage.objects.delete", snap, now=NOW)
    assert d.granted
    data = deny(data, PROJECT, [v2_sa(TRAIN_SA)], ["storage.googleapis.com/objects.delete"])
    assert decide(
        TRAIN, FEATURES, "storage.objects.delete", load_snapshot(data), now=NOW
    ).state == ("denied")


def test_a_resource_asked_about_by_number_is_the_project() -> None:
    data = grant(world_dict(), PROJECT, "roles/storage.admin", TRAIN)
    snap = load_snapshot(data)
    by_id = decide(TRAIN, PROJECT, "storage.buckets.get", snap, now=NOW)
    by_number = decide(TRAIN, BY_NUMBER, "storage.buckets.get", snap, now=NOW)
    assert by_id.state == by_number.state == "granted"


def test_one_project_under_both_names_is_one_node() -> None:
    data = world_dict()
    data["nodes"].append(
        {
            "name": BY_NUMBER,
            "kind": "project",
            "parent": FOLDER,
            "policy": {"bindings": [{"role": "roles/storage.admin", "members": [TRAIN]}]},
        }
    )
    snap = load_snapshot(data)
    assert BY_NUMBER not in snap.nodes
    assert decide(TRAIN, FEATURES, "storage.objects.delete", snap, now=NOW).granted


def test_one_project_with_two_different_parents_has_an_unknown_ancestry() -> None:
    data = world_dict()
    data["nodes"].append(
        {
            "name": BY_NUMBER,
            "kind": "project",
            "parent": "//cloudresourcemanager.googleapis.com/organizations/100",
        }
    )
    assert _state(data) == "unverifiable"


def test_an_unreadable_deny_listing_by_number_hides_the_project() -> None:
    data = world_dict()
    data["unreadable"] = [{"target": BY_NUMBER, "what": "listPolicies", "reason": "403"}]
    assert _state(data) == "unverifiable"


def test_a_service_account_whose_project_is_given_by_number() -> None:
    data = world_dict()
    data["serviceAccounts"] = [{"email": TRAIN_SA, "projectId": NUMBER}]
    sas = "principalSet://cloudresourcemanager.googleapis.com/projects/ml-prod/type/ServiceAccount"
    data = deny(data, PROJECT, [sas], GET)
    snap = load_snapshot(data)
    assert snap.service_accounts[TRAIN_SA].project_id == "ml-prod"
    assert decide(TRAIN, FEATURES, "storage.objects.get", snap, now=NOW).state == "denied"


def test_normalisation_is_stable_through_dump_and_load() -> None:
    data = deny(
        world_dict(),
        f"cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}",
        [v2_sa(TRAIN_SA)],
        GET,
    )
    node(data, FEATURES)["parent"] = BY_NUMBER
    once = load_snapshot(data)
    twice = load_snapshot(dump_snapshot(once))
    assert once == twice
    assert once.deny_policies[0].attachment_point == PROJECT


def test_snapshots_built_in_code_are_normalised_too() -> None:
    snap = Snapshot(
        nodes={
            PROJECT: Node(PROJECT, "project", parent="", project_number="42"),
            FEATURES: Node(
                FEATURES, "bucket", parent="//cloudresourcemanager.googleapis.com/projects/42"
            ),
        },
        deny_policies=(
            DenyPolicy(
                "d",
                "cloudresourcemanager.googleapis.com%2Fprojects%2F42",
                (DenyRule(("principalSet://goog/public:all",), ("*",)),),
            ),
        ),
    )
    assert snap.nodes[FEATURES].parent == PROJECT
    assert snap.deny_policies[0].attachment_point == PROJECT


# -- the emulator agrees: a deny policy attached by number is served for the project --------


def test_emulator_serves_a_deny_policy_attached_by_number() -> None:
    data = deny(
        world_dict(),
        f"cloudresourcemanager.googleapis.com%2Fprojects%2F{NUMBER}",
        [v2_sa(TRAIN_SA)],
        GET,
    )
    with Emulator(load_snapshot(data), enforce_iam=False) as emu:
        snap = fetch_snapshot(
            resources=[FEATURES],
            service_accounts=[TRAIN_SA],
            credentials=emulator_credentials(TRAIN),
            emulator_host=emu.address,
            retry=no_wait_policy(),
            use_cache=False,
        )
    assert [dp.attachment_point for dp in snap.deny_policies] == [PROJECT]
    assert decide(TRAIN, FEATURES, "storage.objects.get", snap, now=NOW).state == "denied"


def test_service_account_principal_sets_by_number_are_rewritten_once() -> None:
    by_number = (
        f"principalSet://cloudresourcemanager.googleapis.com/projects/{NUMBER}/type/ServiceAccount"
    )
    by_id = (
        "principalSet://cloudresourcemanager.googleapis.com/projects/ml-prod/type/ServiceAccount"
    )
    bucket = "//storage.googleapis.com/zt-other-bucket"
    data = grant(world_dict(), bucket, "roles/storage.objectViewer", by_number)
    data = deny(
        data,
        PROJECT,
        [by_number],
        ["storage.googleapis.com/objects.delete"],
        exceptionPrincipals=[by_number],
    )
    snap = load_snapshot(data)
    assert snap.nodes[bucket].policy is not None
    assert snap.nodes[bucket].policy.bindings[-1].members == (by_id,)
    rule = snap.deny_policies[0].rules[0]
    assert rule.denied_principals == rule.exception_principals == (by_id,)
    assert decide(TRAIN, bucket, "storage.objects.get", snap, now=NOW).granted


def test_deny_by_id_on_a_project_known_only_by_number_is_unverifiable() -> None:
    # Cloud Asset style: the bucket's project is known by its number only, the deny by id
    data = world_dict()
    node(data, FEATURES)["parent"] = "//cloudresourcemanager.googleapis.com/projects/777"
    data["nodes"].append(
        {
            "name": "//cloudresourcemanager.googleapis.com/projects/777",
            "kind": "project",
            "parent": FOLDER,
        }
    )
    data = deny(
        data, "//cloudresourcemanager.googleapis.com/projects/hidden-proj", [v2_sa(TRAIN_SA)], GET
    )
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable" and any("by its number only" in r for r in d.reasons), d
    # a project known by both names is not in doubt
    data2 = deny(
        world_dict(),
        "//cloudresourcemanager.googleapis.com/projects/hidden-proj",
        [v2_sa(TRAIN_SA)],
        GET,
    )
    assert _state(data2) == "granted"
