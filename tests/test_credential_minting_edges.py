"""Permissions that mint a credential of a chosen account are impersonation edges: binding an
API key to it, creating (or re-activating) a Cloud Storage HMAC key for any account of a
project. Outward (a step holding them: ZT216) and inward (another principal: ZT220)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_live_check import EX, codes, example_world, run_check, templates

from zt_pipelines.policy.catalogue import escalation_reason
from zt_pipelines.policy.reach import EDGE_PERMISSIONS
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Snapshot
from zt_pipelines.resources import CRM

__all__ = ["templates"]  # the module fixture, shared with test_live_check

PROJECT = f"{CRM}projects/{EX.PROJECT}"


def with_grant(world: Snapshot, node: str, role: str, member: str) -> Snapshot:
    nodes = dict(world.nodes)
    found = nodes[node]
    policy = found.policy or AllowPolicy()
    nodes[node] = replace(
        found, policy=replace(policy, bindings=(*policy.bindings, Binding(role, (member,))))
    )
    return replace(world, nodes=nodes)


@pytest.mark.parametrize(
    "permission",
    [
        "iam.serviceAccountApiKeyBindings.create",
        "storage.hmacKeys.create",
        "storage.hmacKeys.update",
    ],
)
def test_each_is_escalation_and_an_edge(permission: str) -> None:
    assert escalation_reason(permission) is not None
    assert permission in EDGE_PERMISSIONS


def test_an_outsider_who_can_create_hmac_keys_in_the_project_is_zt220(
    templates: dict[str, str],
) -> None:
    world = with_grant(example_world(), PROJECT, "roles/storage.hmacKeyAdmin", "user:mallory@x.com")
    report = run_check(templates["training"], world)
    assert any(f.code == "ZT220" and "mallory" in f.message for f in report.findings)
    assert not report.allowed


def test_a_step_that_can_create_hmac_keys_reaches_the_projects_accounts(
    templates: dict[str, str],
) -> None:
    world = with_grant(
        example_world(), PROJECT, "roles/storage.hmacKeyAdmin", f"serviceAccount:{EX.TRAIN_SA}"
    )
    assert {"ZT212", "ZT216"} <= codes(run_check(templates["training"], world))


def test_reading_api_key_strings_is_escalation_capable(templates: dict[str, str]) -> None:
    """A key bound to an account is that account's credential: whoever can read key strings
    in its project can use it (roles/serviceusage.apiKeysViewer holds getKeyString)."""
    assert escalation_reason("apikeys.keys.getKeyString") is not None
    world = with_grant(
        example_world(),
        PROJECT,
        "roles/serviceusage.apiKeysViewer",
        f"serviceAccount:{EX.TRAIN_SA}",
    )
    report = run_check(templates["training"], world)
    assert any(f.code == "ZT212" and "getKeyString" in f.message for f in report.findings), sorted(
        codes(report)
    )
