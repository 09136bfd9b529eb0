"""Least privilege in depth: excess by scope (ZT214/ZT215) and who can become whom
(ZT216/ZT217/ZT218), through the public check on the test world and mutations of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_worlds import (
    ALICE,
    FOLDER,
    ORG,
    PIPELINE_SA,
    PROJECT,
    ROOT_BUCKET,
    TRAIN_SA,
    grant,
    node,
    sa_node,
    world_dict,
)
from test_check_codes import PIPELINE, TRAIN, run

from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.reach import reach_graph, render_path
from zt_pipelines.policy.report import Severity
from zt_pipelines.policy.snapshot_file import load_snapshot

LEGACY_SA = "legacy-sa@ml-prod.iam.gserviceaccount.com"
SA2 = "token-sa@ml-prod.iam.gserviceaccount.com"
SA3 = "editor-sa@ml-prod.iam.gserviceaccount.com"


def with_account(data: dict[str, Any], email: str, *bindings: tuple[str, str]) -> dict[str, Any]:
    """Add a service account of ml-prod (node + record); ``bindings`` are (role, member) on it."""
    data["nodes"].append(
        {
            "name": sa_node(email),
            "kind": "serviceAccount",
            "parent": PROJECT,
            "policy": {"bindings": [{"role": r, "members": [m]} for r, m in bindings]},
        }
    )
    data["serviceAccounts"].append({"email": email, "projectId": "ml-prod"})
    return data


def legacy_world() -> dict[str, Any]:
    """The clean world plus legacy-sa holding roles/editor on the project."""
    data = with_account(world_dict(), LEGACY_SA)
    return grant(data, PROJECT, "roles/editor", f"serviceAccount:{LEGACY_SA}")


# -- excess by scope -------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [PROJECT, FOLDER, ORG])
def test_grant_broader_than_the_need_names_the_narrower_scope(scope: str) -> None:
    # train needs storage.objects.get/list on gs://zt-features only
    data = grant(world_dict(), scope, "roles/storage.objectViewer", TRAIN)
    report = run(data)
    assert not report.allowed
    found = [f for f in report.by_code("ZT214") if f.principal == TRAIN]
    assert len(found) == 1, str(report)
    f = found[0]
    assert f.severity is Severity.ERROR and f.step == "train" and f.resource == scope
    assert "gs://zt-features" in f.message and "grant it there instead" in f.message
    narrower = {e.detail for e in f.evidence if e.kind == "scope"}
    assert "narrower scope: gs://zt-features" in narrower
    assert f.evidence[0].role == "roles/storage.objectViewer" and f.evidence[0].node == scope


def test_grant_on_the_needed_resource_itself_is_not_scope_excess() -> None:
    assert not run().by_code("ZT214")
    # the project's own needs (launching jobs) are at the project: not broader
    assert not [f for f in run().findings if f.code == "ZT214" and f.principal == PIPELINE]


def test_bucket_wide_grant_for_a_prefix_need_is_a_warning_with_the_prefix() -> None:
    report = run()
    found = [f for f in report.by_code("ZT215") if f.principal == TRAIN]
    assert found and all(f.severity is Severity.WARNING for f in found)
    assert all(f.resource == ROOT_BUCKET for f in found)
    assert any("gs://zt-pipeline-root/runs" in e.detail for f in found for e in f.evidence)
    # a prefix-conditioned grant on the bucket is already scoped
    data = world_dict()
    for b in node(data, ROOT_BUCKET)["policy"]["bindings"]:
        if b["role"] == "roles/storage.objectCreator":
            b["condition"] = {
                "expression": 'resource.name.startsWith("projects/_/buckets/zt-pipeline-root'
                '/objects/runs/")',
                "title": "runs only",
            }
    creator = [f for f in run(data).by_code("ZT215") if "objectCreator" in f.message]
    assert creator == []


# -- who can become whom ---------------------------------------------------------------------


def test_project_level_service_account_user_for_the_pipeline_sa_is_refused_with_the_path() -> None:
    data = grant(legacy_world(), PROJECT, "roles/iam.serviceAccountUser", PIPELINE)
    report = run(data)
    assert not report.allowed
    found = [f for f in report.by_code("ZT216") if LEGACY_SA in f.message]
    assert len(found) == 1, str(report)
    f = found[0]
    assert f.principal == PIPELINE and f.severity is Severity.ERROR
    assert "pipeline-sa → actAs → legacy-sa → roles/editor" in f.message
    hop = f.evidence[0]
    assert (hop.node, hop.role) == (PROJECT, "roles/iam.serviceAccountUser")
    # and the scope of the grant itself is broader than the step SAs it is needed on
    scope = [f for f in report.by_code("ZT214") if f.principal == PIPELINE]
    assert scope and "iam.serviceAccounts.actAs" in scope[0].message


def test_three_hop_chain_is_refused_with_the_whole_path() -> None:
    data = with_account(world_dict(), SA3)
    data = grant(data, PROJECT, "roles/editor", f"serviceAccount:{SA3}")
    data = with_account(data, SA2)
    # train -> tokenCreator on sa2 -> sa2 -> actAs on sa3 -> sa3 holds roles/editor
    data = grant(data, sa_node(SA2), "roles/iam.serviceAccountTokenCreator", TRAIN)
    data = grant(data, sa_node(SA3), "roles/iam.serviceAccountUser", f"serviceAccount:{SA2}")
    report = run(data)
    assert not report.allowed
    paths = [f for f in report.by_code("ZT216") if f"become {SA3}" in f.message]
    assert len(paths) == 1, str(report)
    f = paths[0]
    assert "train-sa → getAccessToken → token-sa → actAs → editor-sa → roles/editor" in f.message
    hops = [e for e in f.evidence if e.detail.startswith("hop")]
    assert [(e.node, e.role) for e in hops] == [
        (sa_node(SA2), "roles/iam.serviceAccountTokenCreator"),
        (sa_node(SA3), "roles/iam.serviceAccountUser"),
    ]
    # the first hop alone is refused too: token-sa can act as editor-sa (escalation-capable)
    first = [f for f in report.by_code("ZT216") if f"become {SA2}" in f.message]
    assert len(first) == 1 and "iam.serviceAccounts.actAs" in first[0].message


def test_group_of_unknown_membership_is_an_unverifiable_edge() -> None:
    data = grant(
        legacy_world(), sa_node(LEGACY_SA), "roles/iam.serviceAccountUser", "group:ops@example.com"
    )
    report = run(data)
    assert not report.allowed
    found = [f for f in report.by_code("ZT217") if f.principal == TRAIN]
    assert found, str(report)
    assert "ops@example.com" in found[0].message or any(
        e.member == "group:ops@example.com" for e in found[0].evidence
    )
    assert found[0].severity is Severity.ERROR


def test_unreadable_service_account_policy_is_an_unverifiable_edge() -> None:
    data = with_account(world_dict(), LEGACY_SA)
    data["unreadable"] = [
        {"target": sa_node(LEGACY_SA), "what": "serviceAccounts.getIamPolicy", "reason": "DENIED"}
    ]
    report = run(data)
    found = [f for f in report.by_code("ZT217") if f.principal == TRAIN]
    assert found and found[0].resource == sa_node(LEGACY_SA)
    assert "DENIED" in found[0].message


def test_conditional_impersonation_grant_is_unverifiable_not_ignored() -> None:
    data = grant(
        legacy_world(),
        sa_node(LEGACY_SA),
        "roles/iam.serviceAccountUser",
        TRAIN,
        condition="request.time < timestamp('2030-01-01T00:00:00Z')",
    )
    found = [f for f in run(data).by_code("ZT217") if f.principal == TRAIN]
    assert found and "conditional" in found[0].message


def test_expected_edges_are_not_findings_and_the_submitter_is_followed() -> None:
    report = run()
    assert not report.by_code("ZT216") and not report.by_code("ZT217")
    # alice (the submitter) acts as the pipeline SA by design; acting as legacy-sa is not
    data = grant(legacy_world(), sa_node(LEGACY_SA), "roles/iam.serviceAccountUser", ALICE)
    submitter = [f for f in run(data).by_code("ZT218") if f"become {LEGACY_SA}" in f.message]
    assert len(submitter) == 1 and submitter[0].severity is Severity.WARNING
    assert "alice@example.com → actAs → legacy-sa → roles/editor" in submitter[0].message


def test_reach_crosses_projects_through_a_folder_grant() -> None:
    data = with_account(world_dict(), "other-sa@other-proj.iam.gserviceaccount.com")
    data["nodes"][-1]["name"] = (
        "//iam.googleapis.com/projects/other-proj/serviceAccounts/other-sa@other-proj.iam.gserviceaccount.com"
    )
    data["nodes"][-1]["parent"] = "//cloudresourcemanager.googleapis.com/projects/other-proj"
    data["serviceAccounts"][-1]["projectId"] = "other-proj"
    data = grant(data, ORG, "roles/iam.serviceAccountTokenCreator", TRAIN)
    data = grant(
        data,
        "//cloudresourcemanager.googleapis.com/projects/other-proj",
        "roles/editor",
        "serviceAccount:other-sa@other-proj.iam.gserviceaccount.com",
    )
    ev = Evaluator(load_snapshot(data))
    graph = reach_graph(ev, [TRAIN], expected={})
    # one hop at the organisation reaches every account below it, in every project
    (hit,) = graph.reaches
    assert hit.target == "*" and hit.path[0].node == ORG
    assert {"other-sa@other-proj.iam.gserviceaccount.com", PIPELINE_SA} <= set(hit.targets)
    assert TRAIN_SA not in hit.targets
    assert render_path(TRAIN, hit.path) == "train-sa → getAccessToken → *"
    report = run(data)
    found = [f for f in report.by_code("ZT216") if f.principal == TRAIN]
    assert (
        len(found) == 1
        and "3 service accounts below //cloudresourcemanager.googleapis.com/organizations/100"
        in (found[0].message)
    )


def test_check_explain_prints_reach_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfp import compiler
    from test_check_cli import ARGS, cli, demo

    template = tmp_path / "demo.yaml"
    compiler.Compiler().compile(demo, str(template))
    world = tmp_path / "world.yaml"
    data = grant(legacy_world(), PROJECT, "roles/iam.serviceAccountUser", PIPELINE)
    world.write_text(yaml.safe_dump(data))
    code, out, _ = cli(
        ["check", str(template), *ARGS, "--snapshot", str(world), "--explain"], capsys
    )
    assert code == 1
    assert "who can become whom" in out
    assert "hop 1: pipeline-sa → actAs → legacy-sa: roles/iam.serviceAccountUser on" in out


# -- basic roles / escalation through members of unknown membership (ZT219) -------------------

OPS = "group:ops@example.com"  # not under `groups`: membership unknown


def test_basic_role_through_a_group_of_unknown_membership_is_a_may_hold_error() -> None:
    report = run(grant(world_dict(), PROJECT, "roles/editor", OPS))
    assert not report.allowed
    found = [f for f in report.by_code("ZT219") if f.principal == TRAIN]
    assert len(found) == 1, str(report)
    f = found[0]
    assert f.severity is Severity.ERROR and f.step == "train" and f.resource == PROJECT
    assert "may hold the basic role roles/editor" in f.message and OPS in f.message
    assert f.evidence[0].member == OPS and f.evidence[0].role == "roles/editor"
    # the pipeline identity is in the same position, and so reported too
    assert [f for f in report.by_code("ZT219") if f.principal == PIPELINE]


def test_escalation_permissions_through_a_group_of_unknown_membership_are_named() -> None:
    data = grant(world_dict(), PROJECT, "roles/resourcemanager.projectIamAdmin", OPS)
    found = [f for f in run(data).by_code("ZT219") if f.principal == TRAIN]
    assert len(found) == 1
    assert "resourcemanager.projects.setIamPolicy" in found[0].message
    assert any(
        e.kind == "permission" and e.detail.startswith("resourcemanager.projects.setIamPolicy")
        for e in found[0].evidence
    )


def test_known_membership_decides_and_harmless_roles_stay_a_note() -> None:
    # the same group, membership known and without train-sa: nothing to report for train
    data = grant(world_dict(), PROJECT, "roles/editor", OPS)
    data.setdefault("groups", {})["ops@example.com"] = [ALICE]
    assert not [f for f in run(data).findings if f.principal == TRAIN and f.code == "ZT219"]
    # membership known and WITH train-sa: a proven basic role (ZT211), not a "may hold"
    data["groups"]["ops@example.com"] = [TRAIN]
    report = run(data)
    assert [f for f in report.by_code("ZT211") if f.principal == TRAIN]
    assert not [f for f in report.by_code("ZT219") if f.principal == TRAIN]
    # a narrow read role through an unknown group: no may-hold error, but a coverage note
    harmless = grant(world_dict(), ROOT_BUCKET, "roles/storage.objectViewer", OPS)
    report = run(harmless)
    assert not report.by_code("ZT219")
    said = [n for n in report.notes if OPS in n and TRAIN in n]
    assert said and "roles/storage.objectViewer" in said[0] and "not counted" in said[0]


@pytest.mark.parametrize("role", ["roles/storage.objectViewer", "roles/bigquery.dataViewer"])
def test_org_wide_data_access_through_an_unknown_group_is_never_silent(role: str) -> None:
    report = run(grant(world_dict(), ORG, role, OPS))
    assert [n for n in report.notes if OPS in n and role in n and TRAIN in n], report.notes


def test_may_hold_through_a_known_group_that_nests_an_unknown_one() -> None:
    # ml-team is known, but one of its members is a group nobody listed: still unknown
    data = grant(world_dict(), PROJECT, "roles/owner", "group:ml-team@example.com")
    data["groups"]["ml-team@example.com"].append(OPS)
    found = [f for f in run(data).by_code("ZT219") if f.principal == TRAIN]
    assert len(found) == 1 and "group:ml-team@example.com" in found[0].message
    assert "roles/owner" in found[0].message


def test_reach_of_a_principal_without_a_complete_binding_search_is_a_coverage_note() -> None:
    # the clean world searched every step identity completely, not the submitter
    covered = [n for n in run().notes if n.startswith("who ") and "complete binding" in n]
    assert len(covered) == 1 and ALICE in covered[0]
    data = world_dict()
    data["completeBindingsFor"] = [m for m in data["completeBindingsFor"] if "train-sa" not in m]
    covered = [n for n in run(data).notes if n.startswith("who ") and "complete binding" in n]
    assert any(TRAIN in n for n in covered) and not any(PIPELINE in n for n in covered)


def test_reaching_an_identity_that_may_hold_a_basic_role_through_an_unknown_group_is_refused() -> (
    None
):
    # train can act as legacy-sa; legacy-sa holds nothing itself, but ops (membership unknown)
    # holds roles/editor on the project: legacy-sa may be in it
    data = with_account(world_dict(), LEGACY_SA, ("roles/iam.serviceAccountTokenCreator", TRAIN))
    data = grant(data, PROJECT, "roles/editor", OPS)
    found = [
        f for f in run(data).by_code("ZT216") if f.principal == TRAIN and LEGACY_SA in f.message
    ]
    assert len(found) == 1, [f.message for f in run(data).findings]
    assert "possibly a basic role (through group:ops@example.com" in found[0].message
