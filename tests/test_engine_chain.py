"""Evaluator.chain() builds a node's ancestry on its parent's memoised chain: it must answer as
the full walk up the snapshot does (loops, missing or unknown parents, unreadable ancestry,
deep hierarchies), whatever order the names are asked in."""

from __future__ import annotations

import random

import pytest

from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.snapshot import Node, Snapshot, Unreadable, read_hides

CRM = "//cloudresourcemanager.googleapis.com/"


def _walk(snap: Snapshot, name: str) -> tuple[tuple[Node, ...], str]:
    """The ancestry and its gap, walked in full (what chain() answered before its memo)."""
    nodes = tuple(snap.ancestors(name))
    gap = ""
    if not nodes:
        gap = f"{name} is not in the snapshot"
    else:
        top = nodes[-1]
        if top.parent is None and top.kind != "organization":
            gap = f"the ancestry of {top.name} is unknown"
        elif top.parent and top.parent not in snap.nodes:
            gap = f"{top.parent} (parent of {top.name}) is not in the snapshot"
        elif top.parent:
            gap = f"the ancestry of {name} loops through {top.parent}"
        for n in nodes:
            for u in snap.unreadable:
                if u.target == n.name and "ancestry" in read_hides(u.what):
                    gap = gap or f"{u.what} on {n.name} failed: {u.reason}"
    return nodes, gap


def _world(rng: random.Random) -> Snapshot:
    names = [f"{CRM}folders/{i}" for i in range(rng.randint(1, 90))]
    nodes: dict[str, Node] = {}
    org = f"{CRM}organizations/1"
    nodes[org] = Node(org, "organization")
    for i, name in enumerate(names):
        roll = rng.random()
        if roll < 0.75 and i:  # a tree, often deep
            parent: str | None = names[rng.randrange(max(0, i - 3), i)]
        elif roll < 0.82:
            parent = org
        elif roll < 0.88:
            parent = rng.choice(names)  # maybe a loop, maybe itself
        elif roll < 0.94:
            parent = f"{CRM}folders/missing-{i}"
        else:
            parent = None
        nodes[name] = Node(name, "folder", parent=parent)
    unreadable = tuple(
        Unreadable(rng.choice(names), rng.choice(["getAncestry", "getIamPolicy", "x"]), "denied")
        for _ in range(rng.randint(0, 3))
    )
    return Snapshot(nodes=nodes, roles={}, unreadable=unreadable)


@pytest.mark.parametrize("seed", range(200))
def test_chain_is_the_full_walk(seed: int) -> None:
    rng = random.Random(seed)
    snap = _world(rng)
    asked = [*snap.nodes, f"{CRM}folders/nowhere"]
    rng.shuffle(asked)
    ev = Evaluator(snap)
    for name in asked:
        assert ev.chain(name) == _walk(snap, name), name
