"""The live fetch's decisions, pure (policy/assembly.py): what the reads mean, fail closed."""

from __future__ import annotations

import copy

from zt_pipelines.gcp.interface import PolicySearchHit
from zt_pipelines.policy.assembly import Reads, assemble, containing_sets
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, ServiceAccount, Unreadable

BUCKET = "//storage.googleapis.com/b-1"
PROJECT = "//cloudresourcemanager.googleapis.com/projects/p-1"
SA = "train-sa@p-1.iam.gserviceaccount.com"


def reads() -> Reads:
    r = Reads()
    r.nodes[PROJECT] = Node(PROJECT, "project", None, project_number="11")
    r.numbers["11"] = "p-1"
    r.accounts[SA] = ServiceAccount(SA, "p-1")
    r.keys[SA] = ()
    r.hmac["p-1"] = {}  # the project's HMAC keys were listed: none
    r.apikeys["p-1"] = {}  # and its API keys: none bound
    index = AllowPolicy((Binding("roles/storage.admin", (f"serviceAccount:{SA}",)),))
    r.hits.append(
        PolicySearchHit(BUCKET, "storage.googleapis.com/Bucket", "projects/11", (), "", index)
    )
    r.unreadable.append(Unreadable(BUCKET, "storage.buckets.getIamPolicy", "UNAVAILABLE"))
    return r


def test_a_failed_direct_read_is_not_replaced_by_the_index_and_reads_are_not_mutated() -> None:
    fetched = reads()
    before = copy.deepcopy(fetched)
    snap = assemble(fetched, [BUCKET], declared=[BUCKET], principals=[SA], inventory=False)
    assert BUCKET not in snap.nodes or snap.nodes[BUCKET].policy is None
    assert [u.target for u in snap.unreadable] == [BUCKET]
    assert fetched == before  # assembling decides; it does not change what was read
    assert snap == assemble(fetched, [BUCKET], declared=[BUCKET], principals=[SA], inventory=False)


def test_index_hits_fill_nodes_no_direct_read_covered_and_completeness_needs_every_root() -> None:
    fetched = reads()
    fetched.unreadable.clear()
    fetched.roots.add(PROJECT)
    snap = assemble(fetched, [BUCKET], declared=[BUCKET], principals=[SA], inventory=False)
    node = snap.nodes[BUCKET]
    assert node.parent == PROJECT and node.policy is not None
    assert node.policy.bindings[0].role == "roles/storage.admin"
    assert snap.complete_bindings_for == frozenset()  # no principal search recorded
    fetched.searched[SA] = {PROJECT}
    snap = assemble(fetched, [BUCKET], declared=[BUCKET], principals=[SA], inventory=False)
    # its own email is not enough: grants to everyone and to "every SA of p-1" name no email
    assert snap.complete_bindings_for == frozenset()
    for member in containing_sets(SA, fetched.nodes) or ():
        fetched.searched[member] = {PROJECT}
    assert set(containing_sets(SA, fetched.nodes) or ()) >= {"allUsers", "allAuthenticatedUsers"}
    snap = assemble(fetched, [BUCKET], declared=[BUCKET], principals=[SA], inventory=False)
    assert snap.complete_bindings_for == frozenset({f"serviceAccount:{SA}"})
