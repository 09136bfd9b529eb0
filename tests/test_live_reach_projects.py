"""Live reach over a project known only from a principal search: when the search finds a grant
that can make an edge (impersonation or lending) on a project the check did not read, live mode
reads that project (number, parent, policy) and lists its service accounts, so whom the grant
reaches is judged as a snapshot file of the same world judges it (never quieter)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_live_check import EX, NOW, ROOT

from zt_pipelines.emulator import Emulator, Fault
from zt_pipelines.policy.report import Report
from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.verification import check

SIDE = "//cloudresourcemanager.googleapis.com/projects/side-proj"
SIDE_SA = "side-sa@side-proj.iam.gserviceaccount.com"
ORG_SAS = "principalSet://cloudresourcemanager.googleapis.com/organizations/100/type/ServiceAccount"
COND = {"title": "t", "expression": 'resource.name.startsWith("projects/_/buckets/zt-demo")'}
REACH = ("ZT216", "ZT217", "ZT224")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("templates")
    return str(EX.compile_pipeline("training", str(out / "training.yaml")))


def _world(*bindings: dict[str, Any], side_sa_holds: str | None = None) -> dict[str, Any]:
    """The demo world plus a project outside every chain the check reads (side-proj, under the
    demo's folder) with one service account, and ``bindings`` on that project."""
    w: dict[str, Any] = yaml.safe_load((ROOT / "examples/world.yaml").read_text())
    sa_node = f"//iam.googleapis.com/projects/side-proj/serviceAccounts/{SIDE_SA}"
    side_bindings = [copy.deepcopy(b) for b in bindings]
    if side_sa_holds:
        side_bindings.append({"role": side_sa_holds, "members": [f"serviceAccount:{SIDE_SA}"]})
    w["nodes"] += [
        {
            "name": SIDE,
            "kind": "project",
            "parent": "//cloudresourcemanager.googleapis.com/folders/200",
            "projectNumber": "555555555555",
            "policy": {"bindings": side_bindings},
        },
        {"name": sa_node, "kind": "serviceAccount", "parent": SIDE, "policy": {"bindings": []}},
    ]
    w.setdefault("serviceAccounts", []).append(
        {"email": SIDE_SA, "projectId": "side-proj", "uniqueId": "7777"}
    )
    return w


def _check(template: str, snapshot: object) -> Report:
    return check(
        template,
        project=EX.PROJECT,
        location=EX.LOCATION,
        pipeline_service_account=EX.PIPELINE_SA,
        pipeline_root=EX.PIPELINE_ROOT,
        submitter=EX.SUBMITTER,
        snapshot=snapshot,  # type: ignore[arg-type]
        now=NOW,
    )


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME",)}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _live(template: str, world: dict[str, Any], *faults: Fault) -> tuple[Report, Emulator]:
    with Emulator(load_snapshot(world)) as emu, pytest.MonkeyPatch.context() as mp:
        for fault in faults:
            emu.add_fault(fault)
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        return _check(template, None), emu


def _reach(report: Report) -> set[tuple[str, str | None]]:
    return {(f.code, f.principal) for f in report.findings if f.code in REACH}


def _side(report: Report, code: str) -> list[str]:
    return [f.message for f in report.by_code(code) if "side-proj" in f.message]


@pytest.mark.parametrize(
    ("binding", "holds"),
    [
        # a conditional edge (setIamPolicy) to every account of the organisation: ZT217 per step
        (
            {
                "role": "roles/resourcemanager.projectIamAdmin",
                "members": [ORG_SAS],
                "condition": COND,
            },
            None,
        ),
        # an unconditional basic role: side-sa and the project's lent agents hold it (ZT216)
        ({"role": "roles/editor", "members": [ORG_SAS]}, None),
        # a direct, settled edge to one identity; the account it reaches holds a basic role
        (
            {
                "role": "roles/iam.serviceAccountTokenCreator",
                "members": [f"serviceAccount:{EX.TRAIN_SA}"],
            },
            "roles/owner",
        ),
    ],
    ids=["conditional-set", "editor-set", "token-creator"],
)
def test_an_edge_on_a_project_found_by_search_is_judged_as_the_file_judges_it(
    template: str, env: None, binding: dict[str, Any], holds: str | None
) -> None:
    world = _world(binding, side_sa_holds=holds)
    offline = _check(template, world)
    live, emu = _live(template, world)
    assert _side(offline, "ZT217") or _side(offline, "ZT216"), str(offline)
    assert _reach(live) >= _reach(offline), (sorted(_reach(offline) - _reach(live)), str(live))
    # the side project was read and its accounts listed (whom the grant reaches)
    listed = [r.target for r in emu.request_log if r.method.endswith("IAM/ListServiceAccounts")]
    assert any("side-proj" in t for t in listed), listed
    assert len(_side(live, "ZT216")) == len(_side(offline, "ZT216"))
    assert len(_side(live, "ZT217")) == len(_side(offline, "ZT217"))


def test_unlisted_accounts_of_such_a_project_are_an_unverifiable_edge(
    template: str, env: None
) -> None:
    """Its account listing refused: whom the grant reaches is unknown — ZT217 naming why,
    never silence."""
    world = _world({"role": "roles/iam.serviceAccountTokenCreator", "members": [ORG_SAS]})
    live, _ = _live(
        template,
        world,
        Fault(method="google.iam.admin.v1.IAM/ListServiceAccounts", code="PERMISSION_DENIED"),
    )
    assert not live.allowed
    unknown = [m for m in _side(live, "ZT217") if "could not be listed" in m]
    assert unknown, str(live)


def test_a_search_hit_without_an_edge_reads_nothing_more(template: str, env: None) -> None:
    """A grant that can make no edge (object reads) costs no extra read: the side project is
    neither read nor listed."""
    world = _world({"role": "roles/storage.objectViewer", "members": [ORG_SAS]})
    live, emu = _live(template, world)
    targets = [r.target for r in emu.request_log]
    assert not [t for t in targets if "side-proj" in t or "555555555555" in t], targets
    offline = _check(template, world)
    assert _reach(live) >= _reach(offline)


def test_an_edge_on_a_folder_found_by_search_is_never_silent(template: str, env: None) -> None:
    """A folder outside every chain the check reads (its projects are not listed live): an
    edge grant there reaches accounts live mode cannot name — ZT217, where the file names the
    account it reaches (ZT216)."""
    folder = "//cloudresourcemanager.googleapis.com/folders/300"
    world = _world(side_sa_holds="roles/owner")
    for node in world["nodes"]:
        if node["name"] == SIDE:
            node["parent"] = folder
    world["nodes"].append(
        {
            "name": folder,
            "kind": "folder",
            "parent": "//cloudresourcemanager.googleapis.com/organizations/100",
            "policy": {
                "bindings": [
                    {
                        "role": "roles/iam.serviceAccountTokenCreator",
                        "members": [f"serviceAccount:{EX.TRAIN_SA}"],
                    }
                ]
            },
        }
    )
    offline = _check(template, world)
    live, _ = _live(template, world)
    assert [m for m in _side(offline, "ZT216") if EX.TRAIN_SA in m], str(offline)
    unknown = [f for f in live.by_code("ZT217") if f.resource == folder]
    assert unknown and EX.TRAIN_SA in unknown[0].message, str(live)
    assert "not listed" in unknown[0].message
    assert not live.allowed


@pytest.mark.parametrize("holds", ["roles/editor", "roles/storage.admin"])
def test_an_account_reached_through_its_own_policy_is_searched(
    template: str, env: None, holds: str
) -> None:
    """A step identity can mint tokens of an account of another project (a grant on that
    account, found by the search): what that account holds anywhere is searched live, as the
    file holds it, so reaching it is judged (ZT216) — never silence."""
    world = _world(side_sa_holds=holds)
    sa_node = f"//iam.googleapis.com/projects/side-proj/serviceAccounts/{SIDE_SA}"
    for node in world["nodes"]:
        if node["name"] == sa_node:
            node["policy"]["bindings"].append(
                {
                    "role": "roles/iam.serviceAccountTokenCreator",
                    "members": [f"serviceAccount:{EX.TRAIN_SA}"],
                }
            )
    offline = _check(template, world)
    live, _ = _live(template, world)
    want = [m for m in _side(offline, "ZT216") if EX.TRAIN_SA in m and SIDE_SA in m]
    assert want, str(offline)
    assert [m for m in _side(live, "ZT216") if EX.TRAIN_SA in m and SIDE_SA in m], str(live)
    assert _reach(live) >= _reach(offline)
