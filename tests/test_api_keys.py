"""API keys bound to a service account (API Keys v2 ``serviceAccountEmail``): a key bound to a
checked identity is a long-lived credential of it (ZT111), read live over the REST API (one
listing per identity project), carried by snapshot files; a failed listing is unreadable
(ZT400); and the right to bind a key to an account is an escalation and impersonation edge
(ZT212 / ZT216 outward, ZT220 inward)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_live_check import EX, codes, example_world, run_check, templates

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.policy.catalogue import escalation_reason
from zt_pipelines.policy.reach import EDGE_PERMISSIONS
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot
from zt_pipelines.resources import IAM

__all__ = ["templates"]  # the module fixture, shared with test_live_check

KEY = "5f8f2f3c-0d2e-4f57-9a53-6b1d2a7e9c01"
BIND = "iam.serviceAccountApiKeyBindings.create"


def with_api_keys(world: Snapshot, email: str, *keys: str) -> Snapshot:
    """``world`` where ``email`` has these bound API keys."""
    accounts = dict(world.service_accounts)
    accounts[email] = replace(accounts[email], api_keys=keys)
    return replace(world, service_accounts=accounts)


def with_grant(world: Snapshot, node: str, role: str, member: str) -> Snapshot:
    nodes = dict(world.nodes)
    found = nodes[node]
    policy = found.policy or AllowPolicy()
    bindings = (*policy.bindings, Binding(role, (member,)))
    nodes[node] = replace(found, policy=replace(policy, bindings=bindings))
    return replace(world, nodes=nodes)


def sa_node(email: str) -> str:
    return f"{IAM}projects/{EX.PROJECT}/serviceAccounts/{email}"


@pytest.fixture()
def keyed() -> Iterator[Emulator]:
    """The demo world where train-sa has a bound API key, with the demo submitter as caller."""
    world = with_api_keys(example_world(), EX.TRAIN_SA, KEY)
    with Emulator(world) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        yield emu


def zt111(report: object) -> list[str]:
    return [f.message for f in report.findings if f.code == "ZT111"]  # type: ignore[attr-defined]


def test_a_bound_api_key_of_a_step_identity_is_zt111_live(
    keyed: Emulator, templates: dict[str, str]
) -> None:
    report = run_check(templates["training"])
    messages = zt111(report)
    assert any(EX.TRAIN_SA in m and "API key" in m and KEY in m for m in messages), messages
    assert not report.allowed
    # one listing per project of the checked identities, not one per identity
    asked = [r for r in keyed.request_log if r.method == "apikeys.keys.list"]
    assert len(asked) == 1, asked


def test_the_file_carries_bound_keys_and_live_equals_offline(
    templates: dict[str, str], tmp_path: Path
) -> None:
    world = with_api_keys(example_world(), EX.TRAIN_SA, KEY)
    out = tmp_path / "w.json"
    out.write_text(json.dumps(dump_snapshot(world)))
    loaded = load_snapshot(out)
    assert loaded.service_accounts[EX.TRAIN_SA].api_keys == (KEY,)
    found = zt111(run_check(templates["training"], loaded))
    assert any(EX.TRAIN_SA in m and KEY in m for m in found), found
    assert not zt111(run_check(templates["training"], example_world()))


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "INTERNAL"])
def test_a_failed_listing_is_unreadable_never_none(
    keyed: Emulator, templates: dict[str, str], code: str
) -> None:
    keyed.add_fault(Fault(method="apikeys.keys.list", code=code))
    report = run_check(templates["training"])
    assert not report.allowed
    assert any(
        f.code == "ZT400" and "apikeys" in (f.resource or "") + f.message for f in report.findings
    ), [f.message for f in report.findings if f.code == "ZT400"]
    assert not zt111(report)  # nothing proven either way: unreadable, not "no keys"


def test_binding_a_key_to_the_pipeline_identity_is_escalation_and_reach(
    templates: dict[str, str],
) -> None:
    assert escalation_reason(BIND) is not None
    assert BIND in EDGE_PERMISSIONS
    world = with_grant(
        example_world(),
        sa_node(EX.PIPELINE_SA),
        "roles/iam.serviceAccountApiKeyBindingAdmin",
        f"serviceAccount:{EX.TRAIN_SA}",
    )
    report = run_check(templates["training"], world)
    assert not report.allowed
    assert {"ZT212", "ZT216"} <= codes(report), sorted(codes(report))


def test_an_outsider_who_can_bind_a_key_to_a_step_identity_is_zt220(
    templates: dict[str, str],
) -> None:
    world = with_grant(
        example_world(),
        sa_node(EX.TRAIN_SA),
        "roles/iam.serviceAccountApiKeyBindingAdmin",
        "user:mallory@example.com",
    )
    report = run_check(templates["training"], world)
    assert not report.allowed
    assert any(f.code == "ZT220" and "mallory" in f.message for f in report.findings), sorted(
        codes(report)
    )


def test_the_emulator_serves_the_rest_api_with_iam() -> None:
    from google.auth.transport.requests import AuthorizedSession

    world = with_api_keys(example_world(), EX.TRAIN_SA, "k-a", "k-b")
    with Emulator(world) as emu:

        def get(caller: str, **params: str) -> object:
            session = AuthorizedSession(emulator_credentials(caller))
            return session.get(
                f"http://{emu.address}/v2/projects/{EX.PROJECT}/locations/global/keys",
                params=params,
            )

        first = get(EX.SUBMITTER, pageSize="1")
        assert first.status_code == 200  # type: ignore[attr-defined]
        body = first.json()  # type: ignore[attr-defined]
        assert [k["serviceAccountEmail"] for k in body["keys"]] == [EX.TRAIN_SA]
        more = get(EX.SUBMITTER, pageSize="1", pageToken=body["nextPageToken"])
        rest = more.json()  # type: ignore[attr-defined]
        assert {body["keys"][0]["uid"], rest["keys"][0]["uid"]} == {"k-a", "k-b"}
        denied = get(f"serviceAccount:{EX.TRAIN_SA}")
        assert denied.status_code == 403  # type: ignore[attr-defined]
