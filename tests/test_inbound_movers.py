"""Administrators by proxy: whoever can move the pipeline's project, or a folder above it,
under a parent they control inherits there what they hold on every account below — named with
the administrators, like a policy rewrite; never on an account itself."""

from __future__ import annotations

import pytest
from policy_worlds import FOLDER, ORG, PROJECT, TRAIN_SA, grant, sa_node, world_dict
from test_check_codes import run

MALLORY = "user:mallory@gmail.com"
MOVER = "organizations/100/roles/mover"


@pytest.mark.parametrize(
    "perms",
    [["resourcemanager.projects.move"], ["resourcemanager.folders.move"]],
)
@pytest.mark.parametrize("where", [PROJECT, FOLDER, ORG])
def test_a_mover_above_the_identities_is_named_as_an_administrator(
    perms: list[str], where: str
) -> None:
    data = world_dict()
    data["roles"].append({"name": MOVER, "permissions": perms})
    report = run(grant(data, where, MOVER, MALLORY))
    notes = [n for n in report.notes if MALLORY in n and n.startswith("administrators of")]
    assert notes and "moving the project" in notes[0], report.notes
    assert not [f for f in report.by_code("ZT220") if f.principal == MALLORY]


def test_a_move_permission_on_an_account_is_nothing() -> None:
    data = world_dict()
    data["roles"].append({"name": MOVER, "permissions": ["resourcemanager.projects.move"]})
    report = run(grant(data, sa_node(TRAIN_SA), MOVER, MALLORY))
    assert not [n for n in report.notes if MALLORY in n]
    assert not [f for f in report.findings if f.principal == MALLORY]
