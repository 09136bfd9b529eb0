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
    data["serviceAccounts"].append({"email": CI, "projectId": "ml-prod", "uniqueId": "1009"})
    data["nodes"].append(
        {"name": sa_node(CI), "kind": "serviceAccount", "parent": PROJECT, "policy": {}}
    )
    grant(data, sa_node(TRAIN_SA), "roles/iam.serviceAccountUser", f"serviceAccount:{CI}")
    report = run(data)
    assert not report.by_code("ZT220"), str(report)
    assert [n for n in report.notes if n.startswith("administrators of") and MALLORY in n]
    assert [n for n in report.notes if f"{CI} may run as" in n]
    # mallory, editor of ml-prod, administers ci-runner too: named once per path
    assert [n for n in report.notes if f"can become {CI}, which may run as" in n]


VERTEX_AGENT = "serviceAccount:service-123456789012@gcp-sa-aiplatform.iam.gserviceaccount.com"
CC_AGENT = "serviceAccount:service-123456789012@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
CI = "ci-runner@ml-prod.iam.gserviceaccount.com"


def test_deputy_service_agents_and_deleted_principals_are_not_reported() -> None:
    # the Vertex AI Service Agent of the pipeline's project acts for callers Vertex checked;
    # so do the agents whose default project roles carry actAs / tokens (Compute, Pub/Sub)
    data = grant(world_dict(), PROJECT, "roles/aiplatform.serviceAgent", VERTEX_AGENT)
    grant(
        data,
        PROJECT,
        "roles/compute.serviceAgent",
        "serviceAccount:service-123456789012@compute-system.iam.gserviceaccount.com",
    )
    grant(
        data,
        PROJECT,
        "roles/pubsub.serviceAgent",
        "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com",
    )
    grant(data, sa_node(TRAIN_SA), TOKEN_CREATOR, VERTEX_AGENT)
    grant(data, sa_node(TRAIN_SA), TOKEN_CREATOR, "deleted:user:old@example.com?uid=1")
    assert not zt220(data)


def test_the_custom_code_service_agent_is_reported_with_who_can_run_code_as_it() -> None:
    # a CustomJob without a service account runs as this agent: its default project role
    # mints tokens for every account of the project
    data = grant(world_dict(), PROJECT, "roles/aiplatform.customCodeServiceAgent", CC_AGENT)
    grant(data, PROJECT, "roles/aiplatform.user", MALLORY)
    report = run(data)
    [f] = [f for f in report.by_code("ZT220") if f.principal == CC_AGENT]
    assert "Custom Code Service Agent" in f.message and MALLORY in f.message
    assert TRAIN_SA in f.message and PIPELINE_SA in f.message
    assert f.permission == "iam.serviceAccounts.getAccessToken" and not report.allowed


@pytest.mark.parametrize(
    ("member", "role"),
    [
        # a look-alike: any project may be called gcp-sa-..., any account service-NUMBER
        ("serviceAccount:mallory@gcp-sa-evil.iam.gserviceaccount.com", TOKEN_CREATOR),
        ("serviceAccount:service-1@gcp-sa-evil.iam.gserviceaccount.com", TOKEN_CREATOR),
        (
            "serviceAccount:service-123456789012@gcp-sa-evil.iam.gserviceaccount.com",
            TOKEN_CREATOR,
        ),
        # an agent that runs the code a caller deploys (Agent Engine without an account)
        (
            "serviceAccount:service-123456789012@gcp-sa-aiplatform-re.iam.gserviceaccount.com",
            TOKEN_CREATOR,
        ),
        # an agent of a project this IAM state does not know
        (
            "serviceAccount:service-999999999999@gcp-sa-aiplatform.iam.gserviceaccount.com",
            TOKEN_CREATOR,
        ),
        # the pipeline project's own agent, holding what no deputy needs
        (VERTEX_AGENT, "roles/iam.serviceAccountKeyAdmin"),
    ],
)
def test_a_service_agent_exemption_is_not_decided_by_its_name(member: str, role: str) -> None:
    report = run(grant(world_dict(), sa_node(TRAIN_SA), role, member))
    assert [f for f in report.by_code("ZT220") if f.principal == member], str(report)


def test_a_role_whose_definition_is_unknown_may_carry_impersonation() -> None:
    data = grant(world_dict(), sa_node(TRAIN_SA), "projects/ml-prod/roles/mystery", MALLORY)
    [f] = [f for f in zt220(data) if f.principal == MALLORY]
    assert "not known" in f.message


@pytest.mark.parametrize(
    "ksa",
    [
        "serviceAccount:ml-prod.svc.id.goog[default/runner]",
        "principal://iam.googleapis.com/projects/123456789012/locations/global/"
        "workloadIdentityPools/ml-prod.svc.id.goog/subject/ns/default/sa/runner",
    ],
)
def test_a_kubernetes_service_account_with_act_as_refuses_in_either_spelling(ksa: str) -> None:
    for target in (TRAIN_SA, PIPELINE_SA):
        data = grant(world_dict(), sa_node(target), "roles/iam.serviceAccountUser", ksa)
        assert [f for f in zt220(data) if f.principal == ksa], target


def with_ci_runner(target: str, role: str, member: str) -> dict[str, Any]:
    """ci-runner may act as ``target``; ``member`` holds ``role`` on ci-runner."""
    data = world_dict()
    data["serviceAccounts"].append({"email": CI, "projectId": "ml-prod", "uniqueId": "1009"})
    data["nodes"].append(
        {"name": sa_node(CI), "kind": "serviceAccount", "parent": PROJECT, "policy": {}}
    )
    grant(data, sa_node(target), "roles/iam.serviceAccountUser", f"serviceAccount:{CI}")
    return grant(data, sa_node(CI), role, member)


@pytest.mark.parametrize(
    ("target", "role", "member"),
    [
        (TRAIN_SA, TOKEN_CREATOR, MALLORY),
        (PIPELINE_SA, "roles/iam.serviceAccountKeyAdmin", MALLORY),
        (TRAIN_SA, "roles/iam.workloadIdentityUser", POOL),
        (TRAIN_SA, "roles/iam.serviceAccountUser", "group:ml-team@example.com"),
    ],
)
def test_who_can_become_a_service_account_that_may_run_as_an_identity_is_judged(
    target: str, role: str, member: str
) -> None:
    report = run(with_ci_runner(target, role, member))
    [f] = [f for f in report.by_code("ZT220") if f.principal == member]
    assert target in f.message and f"through {CI}" in f.message and not report.allowed
    # the evidence is the whole path: the member's grant on ci-runner, ci-runner's on the target
    assert [e.member for e in f.evidence if e.kind == "binding"] == [member, f"serviceAccount:{CI}"]


def test_a_chain_of_service_accounts_is_followed_and_named() -> None:
    email = "deploy@ml-prod.iam.gserviceaccount.com"
    data = with_ci_runner(TRAIN_SA, TOKEN_CREATOR, f"serviceAccount:{email}")
    data["serviceAccounts"].append({"email": email, "projectId": "ml-prod", "uniqueId": "1010"})
    deploy = sa_node(email)
    data["nodes"].append({"name": deploy, "kind": "serviceAccount", "parent": PROJECT})
    clean = run(data)
    assert not clean.by_code("ZT220"), str(clean)  # service accounts all the way: notes
    assert [n for n in clean.notes if "deploy@" in n and f"through {CI}" in n]
    grant(data, deploy, TOKEN_CREATOR, MALLORY)
    [f] = [f for f in zt220(data) if f.principal == MALLORY]
    assert f"through deploy@ml-prod.iam.gserviceaccount.com -> {CI}" in f.message


def test_an_account_that_may_run_as_an_identity_and_whose_policy_is_unread_refuses() -> None:
    data = grant(
        world_dict(),
        sa_node(TRAIN_SA),
        "roles/iam.serviceAccountUser",
        "serviceAccount:ci@other-proj.iam.gserviceaccount.com",
    )
    [f] = zt220(data)
    assert "who can become it is not known" in f.message
    assert f.principal == "serviceAccount:ci@other-proj.iam.gserviceaccount.com"


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


def test_who_can_become_an_administering_account_is_named() -> None:
    # ci-runner administers ml-prod (an editor: a note); mallory can mint its tokens: she
    # administers too, and the notes say so
    data = with_ci_runner(TRAIN_SA, "roles/iam.serviceAccountTokenCreator", MALLORY)
    grant(data, PROJECT, "roles/editor", f"serviceAccount:{CI}")
    report = run(data)
    assert [n for n in report.notes if MALLORY in n and CI in n], report.notes


def test_an_account_whose_ancestry_is_unknown_fails_closed() -> None:
    # ci-runner lives in a project whose parent is not in the IAM state: grants above it unknown
    data = grant(
        world_dict(),
        sa_node(TRAIN_SA),
        "roles/iam.serviceAccountUser",
        "serviceAccount:ci@lost-proj.iam.gserviceaccount.com",
    )
    node = "//iam.googleapis.com/projects/lost-proj/serviceAccounts/ci@lost-proj.iam"
    node += ".gserviceaccount.com"
    data["nodes"].append(
        {
            "name": node,
            "kind": "serviceAccount",
            "parent": "//cloudresourcemanager.googleapis.com/projects/lost-proj",
        }
    )
    [f] = zt220(data)
    assert "who can become it is not known" in f.message


@pytest.mark.parametrize(
    ("agent", "edge"),
    [
        (CC_AGENT, "a CustomJob without a service account"),
        (
            "serviceAccount:service-123456789012@gcp-sa-aiplatform-re.iam.gserviceaccount.com",
            "an Agent Engine without a service account",
        ),
    ],
)
def test_whoever_can_hand_code_to_a_service_agent_reaches_what_it_holds(
    agent: str, edge: str
) -> None:
    # the pipeline identity creates CustomJobs (so could one without a service account); the
    # reasoning engine agent is reached by whoever may deploy an Agent Engine (the world's
    # aiplatform.user is a trimmed copy: the catalogue's Vertex AI Administrator here)
    data = grant(world_dict(), PROJECT, "roles/storage.objectViewer", agent)
    grant(data, PROJECT, "roles/aiplatform.admin", PIPELINE)
    report = run(data)
    [f] = [f for f in report.by_code("ZT216") if agent.partition(":")[2] in f.message]
    assert f.principal == PIPELINE and edge in f.message and not report.allowed


def test_an_expected_act_as_never_hides_a_stronger_edge_whatever_the_read_order() -> None:
    # the pipeline identity's actAs on its steps is expected; its token grant on the folder is
    # not: ZT216 names the step identity's extra role in either order of the nodes
    data = grant(world_dict(), FOLDER, TOKEN_CREATOR, PIPELINE)
    grant(data, PROJECT, "roles/viewer", TRAIN)
    found = []
    for order in (1, -1):
        shuffled = dict(data, nodes=data["nodes"][::order])
        found.append(
            sorted(f.message for f in run(shuffled).by_code("ZT216") if f.principal == PIPELINE)
        )
    assert found[0] and found[0] == found[1]
