"""A first check reads each project's ancestry in one call, to ask the ancestors' reads early.

The ancestry is a hint, like the cache's remembered shape: the fresh parent reads still decide
the snapshot, and a failed ancestry read is never unreadable and never retried.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_gcp_live import FOLDER, ORG, PROJECT, READER, fetch, sa_member, world
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp import ClientFactory, build_adapters
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot

ANCESTRY = "projects.getAncestry"
GET_FOLDER = "google.cloud.resourcemanager.v3.Folders/GetFolder"
ORG_POLICY = "google.cloud.resourcemanager.v3.Organizations/GetIamPolicy"


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    """A running emulator over the live tests' world (org → folder → proj-a1, org → proj-b2)."""
    with Emulator(world()) as emu:
        yield emu


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k != "fetchedAt"}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=json.dumps)
    return value


def _same(a: Snapshot, b: Snapshot) -> bool:
    return bool(_canonical(dump_snapshot(a)) == _canonical(dump_snapshot(b)))


def test_the_emulator_answers_a_projects_ancestry_bottom_to_top(emulator: Emulator) -> None:
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    hierarchy = build_adapters(factory, no_wait_policy()).hierarchy
    assert hierarchy.get_ancestry("proj-a1") == (PROJECT, FOLDER, ORG)  # type: ignore[attr-defined]
    assert hierarchy.get_ancestry("proj-b2") == (  # type: ignore[attr-defined]
        PROJECT.replace("proj-a1", "proj-b2"),
        ORG,
    )
    # by the project's number too, as Google answers
    assert hierarchy.get_ancestry("123456789012")[1:] == (FOLDER, ORG)  # type: ignore[attr-defined]


def test_an_ancestry_needs_projects_get_and_an_unknown_project_is_refused(
    emulator: Emulator,
) -> None:
    def ask(project: str, member: str | None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://{emulator.address}/v1/projects/{project}:getAncestry",
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        if member is not None:
            token = emulator_credentials(member)
            token.refresh(None)
            request.add_header("Authorization", f"Bearer {token.token}")
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, body = ask("proj-a1", sa_member(READER))
    assert status == 200
    assert [a["resourceId"] for a in body["ancestor"]] == [
        {"type": "project", "id": "proj-a1"},
        {"type": "folder", "id": "222"},
        {"type": "organization", "id": "111"},
    ]
    assert ask("proj-a1", "user:nobody@example.com")[0] == 403
    assert ask("no-such-project", sa_member(READER))[0] == 403
    assert ask("proj-a1", None)[0] == 401


def test_a_first_check_asks_the_organisations_reads_before_the_folder_answers(
    emulator: Emulator,
) -> None:
    clean = fetch(emulator)
    emulator.clear_log()
    # the folder answers late: following parents one by one, nothing about the organisation
    # could be asked before it; the ancestry names the organisation a round trip in
    emulator.add_fault(Fault(method=GET_FOLDER, delay_ms=600))
    slow = fetch(emulator)
    log = [(r.method, r.target) for r in emulator.request_log]  # in the order answered
    folder_at = next(i for i, (m, _) in enumerate(log) if m == GET_FOLDER)
    org_at = next(i for i, (m, t) in enumerate(log) if m == ORG_POLICY)
    assert org_at < folder_at, log
    assert sum(1 for m, _ in log if m == ANCESTRY) == 2  # one per project
    assert slow.unreadable == ()
    assert _same(slow, clean)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(method=ANCESTRY, code="PERMISSION_DENIED"),
        Fault(method=ANCESTRY, code="UNAVAILABLE"),
        Fault(method=ANCESTRY, malformed=True),
        Fault(method=ANCESTRY, reset=True),
    ],
    ids=["denied", "unavailable", "malformed", "reset"],
)
def test_a_failed_ancestry_changes_nothing_and_is_not_retried(
    emulator: Emulator, fault: Fault
) -> None:
    clean = fetch(emulator)
    emulator.clear_log()
    emulator.add_fault(fault)
    faulted = fetch(emulator)
    assert faulted.unreadable == ()
    assert _same(faulted, clean)
    assert emulator.counts()[ANCESTRY] == 2  # once per project, never again


def test_a_check_that_remembers_the_shape_reads_no_ancestry(
    emulator: Emulator, tmp_path: Path
) -> None:
    first = fetch(emulator, tmp_path)
    emulator.clear_log()
    second = fetch(emulator, tmp_path)
    assert ANCESTRY not in emulator.counts()
    assert _same(first, second)


def test_the_organisation_is_searched_once_whichever_answer_comes_first(
    emulator: Emulator,
) -> None:
    clean = fetch(emulator)
    search = "google.cloud.asset.v1.AssetService/SearchAllIamPolicies"
    # the ancestry names the organisation before the project's own answer (its number, which
    # the principal sets need) is in: the search waits for it rather than going out twice
    for late in (GET_FOLDER, "google.cloud.resourcemanager.v3.Projects/GetProject", ANCESTRY):
        emulator.clear_log()
        emulator.add_fault(Fault(method=late, delay_ms=300))
        snap = fetch(emulator)
        emulator.clear_faults()
        asked = [r.target for r in emulator.request_log if r.method == search]
        assert asked == ["organizations/111"], (late, asked)
        assert _same(snap, clean)
