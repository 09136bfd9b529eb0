"""ZT225: dormant grants — a disabled or deleted custom role, a deleted principal — never grant
now, but are reported when they would let someone become a pipeline identity or give one
permissions back, naming who can wake them."""

from __future__ import annotations

from typing import Any

import pytest
from policy_worlds import NOW, PIPELINE_SA, PROJECT, TRAIN_SA, grant, sa_node, world_dict
from test_check_codes import TRAIN, run

from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot_file import load_snapshot

MALLORY = "user:mallory@gmail.com"
BOB = "user:bob@example.com"
TOKENS = "projects/ml-prod/roles/tokens"
OLD_CI = "deleted:serviceAccount:old-ci@ml-prod.iam.gserviceaccount.com?uid=77"


def with_role(data: dict[str, Any], name: str, perms: list[str], **extra: Any) -> dict[str, Any]:
    data["roles"].append({"name": name, "permissions": perms, **extra})
    return data


def zt224(report: Any, needle: str) -> list[Any]:
    return [f for f in report.by_code("ZT225") if needle in f.message]


@pytest.mark.parametrize(
    ("state", "woken_by"),
    [({"stage": "DISABLED"}, "re-enabling the role"), ({"deleted": True}, "undeleting the role")],
)
@pytest.mark.parametrize("where", [sa_node(TRAIN_SA), PROJECT])
def test_a_dormant_impersonation_role_on_an_identity_is_reported_not_granted(
    state: dict[str, Any], woken_by: str, where: str
) -> None:
    data = with_role(world_dict(), TOKENS, ["iam.serviceAccounts.getAccessToken"], **state)
    with_role(data, "projects/ml-prod/roles/roleAdmin", ["iam.roles.update", "iam.roles.undelete"])
    grant(data, where, TOKENS, MALLORY)
    grant(data, PROJECT, "projects/ml-prod/roles/roleAdmin", BOB)
    report = run(data)
    found = [f for f in zt224(report, f"could become {TRAIN_SA}") if f.principal == MALLORY]
    assert found, str(report)
    f = found[0]
    assert f.severity.value == "warning" and f.resource == where and "train" in (f.step or "")
    assert woken_by in f.message and BOB in f.message
    assert f.permission == "iam.serviceAccounts.getAccessToken"
    # dormant: not ZT220, and it grants nothing now
    assert not [g for g in report.by_code("ZT220") if g.principal == MALLORY]
    snap = load_snapshot(data)
    account = sa_node(TRAIN_SA)
    got = decide(MALLORY, account, "iam.serviceAccounts.getAccessToken", snap, now=NOW)
    assert not got.granted
    # the control: the same role active is ZT220, and nothing dormant is said
    active = with_role(world_dict(), TOKENS, ["iam.serviceAccounts.getAccessToken"])
    active_report = run(grant(active, where, TOKENS, MALLORY))
    assert [g for g in active_report.by_code("ZT220") if g.principal == MALLORY]
    assert not active_report.by_code("ZT225")


def test_a_dormant_escalation_role_held_by_an_identity_is_reported() -> None:
    data = with_role(
        world_dict(),
        "projects/ml-prod/roles/admin",
        ["resourcemanager.projects.setIamPolicy"],
        stage="DISABLED",
    )
    report = run(grant(data, PROJECT, "projects/ml-prod/roles/admin", TRAIN))
    [f] = [f for f in report.by_code("ZT225") if f.principal == TRAIN]
    assert "resourcemanager.projects.setIamPolicy" in f.message and "disabled" in f.message
    assert f.permission == "resourcemanager.projects.setIamPolicy" and f.resource == PROJECT
    assert "ZT212" not in report.codes() and "ZT211" not in report.codes()


@pytest.mark.parametrize(
    ("member", "words"),
    [
        (OLD_CI, "undeleting old-ci@ml-prod.iam.gserviceaccount.com (within 30 days"),
        ("deleted:user:eve@example.com?uid=78", "restoring eve@example.com"),
        ("deleted:group:ops@example.com?uid=79", "restoring ops@example.com"),
    ],
)
def test_a_deleted_principal_that_could_become_an_identity_is_reported(
    member: str, words: str
) -> None:
    data = grant(world_dict(), sa_node(TRAIN_SA), "roles/iam.serviceAccountTokenCreator", member)
    report = run(data)
    [f] = [f for f in report.by_code("ZT225") if f.principal == member]
    assert words in f.message and "a deleted principal" in f.message
    assert not [g for g in report.by_code("ZT220") if g.principal == member]


def test_who_can_undelete_an_account_is_named() -> None:
    data = grant(world_dict(), sa_node(PIPELINE_SA), "roles/iam.serviceAccountTokenCreator", OLD_CI)
    grant(data, PROJECT, "roles/iam.serviceAccountAdmin", BOB)  # carries undelete
    [f] = [f for f in run(data).by_code("ZT225") if f.principal == OLD_CI]
    assert f.step is None and f"could become {PIPELINE_SA}" in f.message
    assert "iam.serviceAccounts.undelete on projects/ml-prod: user:bob@example.com" in f.message


def test_the_expected_dormant_act_as_and_unrelated_dormant_bindings_are_not_reported() -> None:
    data = with_role(world_dict(), "projects/ml-prod/roles/actas", ["iam.serviceAccounts.actAs"])
    data["roles"][-1]["stage"] = "DISABLED"
    # the pipeline identity acting as a step identity: expected even when woken
    grant(data, sa_node(TRAIN_SA), "projects/ml-prod/roles/actas", f"serviceAccount:{PIPELINE_SA}")
    # a dormant role with no permission over accounts, held by someone else
    with_role(data, "projects/ml-prod/roles/reader", ["storage.objects.get"], stage="DISABLED")
    grant(data, PROJECT, "projects/ml-prod/roles/reader", MALLORY)
    assert not run(data).by_code("ZT225")
