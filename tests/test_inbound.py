"""ZT220: who else can become a pipeline identity — every grant on the identity and above it."""

from __future__ import annotations

from typing import Any

import pytest
from policy_worlds import (
    ALICE,
    FOLDER,
    ORG,
    PIPELINE_SA,
    PROJECT,
    TRAIN_SA,
    grant,
    sa_node,
    world_dict,
)
from test_check_codes import PIPELINE, TRAIN, run

MALLORY = "user:mallory@example.com"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
POOL = "principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/gh/*"


def zt220(data: dict[str, Any], **kw: Any) -> list[Any]:
    return run(data, **kw).by_code("ZT220")


@pytest.mark.parametrize(
    ("node", "role", "member"),
    [
        (sa_node(TRAIN_SA), TOKEN_CREATOR, MALLORY),
        (sa_node(TRAIN_SA), "roles/iam.serviceAccountKeyAdmin", MALLORY),
        (sa_node(TRAIN_SA), "roles/iam.serviceAccountUser", MALLORY),  # a person running as it
        (sa_node(TRAIN_SA), "roles/iam.workloadIdentityUser", POOL),  # every GitHub workflow
        (sa_node(TRAIN_SA), TOKEN_CREATOR, "group:ml-team@example.com"),
        (sa_node(TRAIN_SA), TOKEN_CREATOR, "allAuthenticatedUsers"),
        (PROJECT, TOKEN_CREATOR, MALLORY),  # every service account of the project
        (FOLDER, TOKEN_CREATOR, MALLORY),
        (ORG, "roles/iam.serviceAccountKeyAdmin", MALLORY),
        (sa_node(TRAIN_SA), TOKEN_CREATOR, f"serviceAccount:{PIPELINE_SA}"),  # beyond actAs
    ],
)
def test_another_principal_that_can_become_a_step_identity_refuses(
    node: str, role: str, member: str
) -> None:
    report = run(grant(world_dict(), node, role, member))
    found = [f for f in report.by_code("ZT220") if TRAIN_SA in f.message]
    assert found, str(report)
    f = found[0]
    assert f.principal == member and f.resource == node and "train" in (f.step or "")
    assert f.evidence[0].role == role and f.evidence[0].member == member
    assert not report.allowed


def test_the_pipeline_identity_beyond_act_as_by_the_submitter_refuses() -> None:
    # the submitter may act as the pipeline identity; a key or a token would outlive the run
    data = grant(world_dict(), sa_node(PIPELINE_SA), "roles/iam.serviceAccountKeyAdmin", ALICE)
    [f] = [f for f in zt220(data) if f.principal == ALICE]
    assert f.step is None and "iam.serviceAccountKeys.create" in f.message


def test_what_a_pipeline_needs_is_not_reported() -> None:
    # the pipeline identity's actAs on the steps, the submitter's on the pipeline identity
    report = run()
    assert not report.by_code("ZT220"), str(report)
    # with the submitter unknown, who may submit as the pipeline identity is a note
    unknown = run(submitter=None)
    assert not unknown.by_code("ZT220")
    assert [n for n in unknown.notes if ALICE in n and "may run as" in n]


def test_administrators_and_other_service_accounts_are_named_not_refused() -> None:
    data = grant(world_dict(), PROJECT, "roles/editor", MALLORY)
    grant(
        data,
        sa_node(TRAIN_SA),
        "roles/iam.serviceAccountUser",
        "serviceAccount:ci@p.iam.gserviceaccount.com",
    )
    report = run(data)
    assert not [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    assert [n for n in report.notes if n.startswith("administrators of") and MALLORY in n]
    assert [n for n in report.notes if "ci@p.iam.gserviceaccount.com may run as" in n]


def test_service_agents_and_deleted_principals_are_not_reported() -> None:
    agent = "serviceAccount:service-123@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    data = grant(world_dict(), sa_node(TRAIN_SA), TOKEN_CREATOR, agent)
    grant(data, sa_node(TRAIN_SA), TOKEN_CREATOR, "deleted:user:old@example.com?uid=1")
    assert not zt220(data)


def test_one_finding_per_binding_names_every_identity_it_reaches() -> None:
    [f] = [f for f in zt220(grant(world_dict(), PROJECT, TOKEN_CREATOR, MALLORY))]
    assert PIPELINE.partition(":")[2] in f.message and TRAIN.partition(":")[2] in f.message
    assert {e.detail for e in f.evidence if e.kind == "identity"} >= {PIPELINE, TRAIN}


def test_an_identity_of_another_project_is_named() -> None:
    # its administrators there can become it: not under this pipeline's review (a note)
    from dataclasses import replace

    from test_check_codes import TRAIN_STEP

    foreign = replace(TRAIN_STEP, service_account="robot-sa@other-proj.iam.gserviceaccount.com")
    report = run(steps=(foreign,))
    said = [n for n in report.notes if "live in another project than ml-prod" in n]
    assert said and "robot-sa@other-proj.iam.gserviceaccount.com" in said[0]
    assert not [n for n in run().notes if "another project" in n]
