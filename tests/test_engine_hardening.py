"""Issue #10 items 4, 6 and 8: the engine's membership answers agree with Google's IAM docs.

Each class has the case the outside review found (first) and adversarial variants of our own.
"""

from __future__ import annotations

from typing import Any

import pytest
from policy_worlds import (
    FEATURES,
    FOLDER,
    NOW,
    ORG,
    PROJECT,
    TRAIN_SA,
    deny,
    grant,
    node,
    world_dict,
)

from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot_file import load_snapshot

TRAIN = f"serviceAccount:{TRAIN_SA}"
GET = "storage.objects.get"
VIEWER = "roles/storage.objectViewer"
WORKFORCE = "principal://iam.googleapis.com/locations/global/workforcePools/corp/subject/alice"
WORKLOAD = (
    "principal://iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/ci/subject/repo:org/app"
)
KSA = "serviceAccount:ml-prod.svc.id.goog[training/trainer]"
_CRM_SET = "principalSet://cloudresourcemanager.googleapis.com/"


def _sas(node_path: str) -> str:
    """The principal set of every service account under ``node_path`` (``folders/200``)."""
    return f"{_CRM_SET}{node_path}/type/ServiceAccount"


def _state(data: dict[str, Any], member: str, resource: str = FEATURES, perm: str = GET) -> str:
    return decide(member, resource, perm, load_snapshot(data), now=NOW).state


# -- 4. allAuthenticatedUsers holds Google accounts and service accounts, never federated ones --


@pytest.mark.parametrize("principal", [WORKFORCE, WORKLOAD, KSA])
def test_all_authenticated_users_never_covers_federated_identities(principal: str) -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", "allAuthenticatedUsers")
    assert _state(data, principal) == "not_granted"


@pytest.mark.parametrize(
    "principal",
    [
        TRAIN,
        "user:bob@gmail.com",
        f"principal://iam.googleapis.com/projects/-/serviceAccounts/{TRAIN_SA}",
    ],
)
def test_all_authenticated_users_still_covers_google_accounts(principal: str) -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", "allAuthenticatedUsers")
    assert _state(data, principal, perm="storage.objects.delete") == "granted"


def test_all_users_still_covers_federated_identities() -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", "allUsers")
    assert _state(data, WORKFORCE) == "granted"
    assert _state(data, KSA) == "granted"


def test_all_authenticated_users_in_a_group_does_not_reach_a_workforce_identity() -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", "group:everyone@example.com")
    data["groups"] = {"everyone@example.com": ["allAuthenticatedUsers"]}
    # a group holding allAuthenticatedUsers is not how IAM groups work; it must not widen it
    assert _state(data, WORKFORCE) != "granted"


# -- 6. "all service accounts of folder/project N" needs the SA's project in the hierarchy ----

_FOLDER_SAS = _sas("folders/200")


def _deny_folder_sas(data: dict[str, Any], members: str = _FOLDER_SAS) -> dict[str, Any]:
    return deny(data, ORG, [members], ["storage.googleapis.com/objects.get"])


def test_deny_sa_set_when_the_sa_project_ancestry_is_unknown_is_unverifiable() -> None:
    data = _deny_folder_sas(world_dict())
    # the SA's project (ml-prod) sits under folder 200, but the resource lives elsewhere and
    # ml-prod's parent link is lost: the deny may apply
    other = "//storage.googleapis.com/zt-other-bucket"
    grant(data, other, VIEWER, TRAIN)
    del node(data, PROJECT)["parent"]
    assert _state(data, TRAIN, other) == "unverifiable"


def test_deny_sa_set_when_the_parent_folder_is_missing_is_unverifiable() -> None:
    data = _deny_folder_sas(world_dict())
    other = "//storage.googleapis.com/zt-other-bucket"
    grant(data, other, VIEWER, TRAIN)
    node(data, PROJECT)["parent"] = "//cloudresourcemanager.googleapis.com/folders/999"
    assert _state(data, TRAIN, other) == "unverifiable"


def test_deny_sa_set_when_the_sa_project_ancestry_is_unreadable_is_unverifiable() -> None:
    data = _deny_folder_sas(world_dict())
    other = "//storage.googleapis.com/zt-other-bucket"
    grant(data, other, VIEWER, TRAIN)
    node(data, PROJECT)["parent"] = ORG  # what we saw, but the read that said so failed
    data["unreadable"] = [{"target": PROJECT, "what": "getAncestry", "reason": "503"}]
    assert _state(data, TRAIN, other) == "unverifiable"


def test_deny_project_sa_set_by_unknown_number_is_unverifiable() -> None:
    data = world_dict()
    del node(data, PROJECT)["projectNumber"]
    sas = _sas("projects/555")
    data = deny(data, ORG, [sas], ["storage.googleapis.com/objects.get"])
    assert _state(data, TRAIN) == "unverifiable"


@pytest.mark.parametrize(
    ("members", "state"),
    [
        (_FOLDER_SAS, "denied"),
        (_sas("organizations/100"), "denied"),
        (_sas("projects/123456789012"), "denied"),
        (_sas("projects/ml-prod"), "denied"),
        (_sas("folders/201"), "granted"),
        (_sas("projects/222222222222"), "granted"),
    ],
)
def test_deny_sa_set_placed_in_a_complete_hierarchy_is_decided(members: str, state: str) -> None:
    data = deny(world_dict(), ORG, [members], ["storage.googleapis.com/objects.get"])
    assert _state(data, TRAIN) == state


def test_deny_sa_set_never_covers_a_gke_service_account() -> None:
    data = grant(world_dict(), FEATURES, VIEWER, KSA)
    data = _deny_folder_sas(data)
    assert _state(data, KSA) == "granted"


# -- 8. fail-closed cases where Google grants -------------------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        _sas("projects/ml-prod"),
        _sas("projects/123456789012"),
        _FOLDER_SAS,
        _sas("organizations/100"),
    ],
)
def test_allow_binding_to_all_service_accounts_of_a_node_grants(members: str) -> None:
    data = grant(world_dict(), "//storage.googleapis.com/zt-other-bucket", VIEWER, members)
    assert _state(data, TRAIN, "//storage.googleapis.com/zt-other-bucket") == "granted"


@pytest.mark.parametrize(
    ("members", "state"),
    [
        (_sas("projects/other-proj"), "not_granted"),
        (_sas("folders/201"), "not_granted"),
        (_CRM_SET + "folders/200/type/Users", "unverifiable"),
    ],
)
def test_allow_sa_set_elsewhere_does_not_grant(members: str, state: str) -> None:
    bucket = "//storage.googleapis.com/zt-other-bucket"
    data = grant(world_dict(), bucket, VIEWER, members)
    assert _state(data, TRAIN, bucket) == state


def test_allow_sa_set_with_unplaced_project_is_unverifiable() -> None:
    bucket = "//storage.googleapis.com/zt-other-bucket"
    data = grant(world_dict(), bucket, VIEWER, _FOLDER_SAS)
    del node(data, PROJECT)["parent"]
    assert _state(data, TRAIN, bucket) == "unverifiable"


_WF = "principalSet://iam.googleapis.com/locations/global/workforcePools"
_POOL = f"{_WF}/corp"


@pytest.mark.parametrize(
    ("members", "principal", "state"),
    [
        (f"{_POOL}/*", WORKFORCE, "granted"),
        (f"{_POOL}/group/admins", WORKFORCE, "unverifiable"),
        (f"{_POOL}/attribute.department/ml", WORKFORCE, "unverifiable"),
        (f"{_WF}/other/*", WORKFORCE, "not_granted"),
        (f"{_POOL}/*", TRAIN, "not_granted"),
        (
            "principalSet://iam.googleapis.com/projects/123456789012/locations/global/"
            "workloadIdentityPools/ci/*",
            WORKLOAD,
            "granted",
        ),
        # a workforce pool named like a workload pool's prefix is a different pool
        (f"{_WF}/cor/*", WORKFORCE, "not_granted"),
    ],
)
def test_workforce_and_workload_pool_sets(members: str, principal: str, state: str) -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", members)
    assert _state(data, principal, perm="storage.objects.delete") == state


def test_gke_service_account_binding_loads_and_never_matches_a_real_sa() -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", KSA)
    snap = load_snapshot(data)  # used to fail: "not an IAM member"
    assert decide(KSA, FEATURES, "storage.objects.delete", snap, now=NOW).granted
    for lookalike in (
        "serviceAccount:ml-prod.svc.id.goog@ml-prod.iam.gserviceaccount.com",
        "serviceAccount:trainer@ml-prod.svc.id.goog",
        TRAIN,
    ):
        d = decide(lookalike, FEATURES, "storage.objects.delete", snap, now=NOW)
        assert d.state == "not_granted", lookalike


@pytest.mark.parametrize(
    "member",
    [
        "serviceAccount:ml-prod.svc.id.goog[ns]",
        "serviceAccount:ml-prod.svc.id.goog[ns/ksa] ",
        "serviceAccount:ml-prod.svc.id.goog[ns/ksa/extra]",
    ],
)
def test_malformed_gke_members_are_still_refused(member: str) -> None:
    from zt_pipelines.policy.snapshot_file import SnapshotError

    with pytest.raises(SnapshotError):
        load_snapshot(grant(world_dict(), FEATURES, VIEWER, member))


@pytest.mark.parametrize("what", ["listPolicies", "denyPolicies.list", "listPolicies(deny)"])
def test_unreadable_deny_listing_on_a_bucket_does_not_block(what: str) -> None:
    data = world_dict()
    data["unreadable"] = [{"target": FEATURES, "what": what, "reason": "403"}]
    assert _state(data, TRAIN) == "granted"


@pytest.mark.parametrize("target", [PROJECT, FOLDER, ORG])
def test_unreadable_deny_listing_on_the_hierarchy_still_blocks(target: str) -> None:
    data = world_dict()
    data["unreadable"] = [{"target": target, "what": "listPolicies", "reason": "403"}]
    assert _state(data, TRAIN) == "unverifiable"


def test_all_authenticated_users_covers_a_v2_google_account_subject() -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", "allAuthenticatedUsers")
    who = "principal://goog/subject/Bob@Gmail.com"
    assert _state(data, who, perm="storage.objects.delete") == "granted"


@pytest.mark.parametrize(
    ("denied", "state"),
    [
        (f"{_POOL}/*", "denied"),
        (f"{_POOL}/group/admins", "unverifiable"),
        (f"{_WF}/other/*", "granted"),
        ("principalSet://goog/public:all", "denied"),  # every principal, federated ones too
    ],
)
def test_deny_rules_on_workforce_pool_sets(denied: str, state: str) -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", f"{_POOL}/*")
    data = deny(data, PROJECT, [denied], ["storage.googleapis.com/objects.delete"])
    assert _state(data, WORKFORCE, perm="storage.objects.delete") == state


@pytest.mark.parametrize(
    "members",
    [
        _sas("folders/0200"),
        _sas("organizations/org-100"),
        _CRM_SET + "folders/\uff12\uff10\uff10/type/ServiceAccount",  # full-width digits
        _sas("projects/0123456789012"),
    ],
)
def test_a_non_canonical_sa_set_in_a_deny_rule_may_apply(members: str) -> None:
    data = deny(world_dict(), ORG, [members], ["storage.googleapis.com/objects.get"])
    assert _state(data, TRAIN) == "unverifiable"
