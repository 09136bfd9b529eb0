"""The excess and scope checks walk each identity's bindings once; an identity holding nothing
on a node that is some node's parent skips the hierarchy index (the usual step). The report must
be exactly the one the whole scope check gives: compared on random worlds with the shortcut
turned off (every node taken for a parent)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from zt_pipelines.model import Need, RewriteResult, StepIdentity
from zt_pipelines.policy.engine import Evaluator, evaluate
from zt_pipelines.policy.requirements import CheckContext, derive_requirements
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Condition,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
)
from zt_pipelines.resources import ResourceRef, service_account_resource

NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)
CRM = "//cloudresourcemanager.googleapis.com/"
ORG = CRM + "organizations/1"
FOLDER = CRM + "folders/2"
PROJECTS = (CRM + "projects/proj-one", CRM + "projects/proj-two")
BUCKETS = tuple(f"//storage.googleapis.com/bkt-b{i}" for i in range(4))
DATASET = "//bigquery.googleapis.com/projects/proj-one/datasets/ds"
ACCOUNTS = tuple(f"acct-{i}@proj-one.iam.gserviceaccount.com" for i in range(4))
ROLES = {
    "roles/editor": ("storage.objects.get", "storage.objects.create", "storage.buckets.get"),
    "roles/storage.admin": (
        "storage.objects.get",
        "storage.objects.list",
        "storage.objects.create",
        "storage.objects.delete",
        "storage.buckets.get",
        "storage.buckets.setIamPolicy",
    ),
    "roles/storage.objectUser": (
        "storage.objects.get",
        "storage.objects.list",
        "storage.objects.create",
        "storage.objects.delete",
    ),
    "roles/storage.objectViewer": ("storage.objects.get", "storage.objects.list"),
    "roles/storage.objectCreator": ("storage.objects.create",),
    "roles/bigquery.dataViewer": ("bigquery.tables.getData", "bigquery.datasets.get"),
    "roles/iam.serviceAccountUser": ("iam.serviceAccounts.actAs",),
}
CONDITIONS = (
    'resource.name.startsWith("projects/_/buckets/bkt-b0/objects/data/")',
    'resource.name.startsWith("projects/_/buckets/bkt-b1/objects/")',
    'request.time < timestamp("2020-01-01T00:00:00Z")',
    'resource.name.endsWith(".csv")',
)
PERMISSIONS = (
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.buckets.get",
    "bigquery.tables.getData",
)


def _world(seed: int) -> tuple[Snapshot, RewriteResult, CheckContext, tuple[object, ...]]:
    rng = random.Random(seed)
    members = [f"serviceAccount:{e}" for e in ACCOUNTS] + ["group:g0@example.com"]
    grants: dict[str, list[Binding]] = {}
    for _ in range(rng.randint(3, 12)):  # grants at every level, on buckets above all
        name = rng.choice([ORG, FOLDER, *PROJECTS, DATASET, *BUCKETS, *BUCKETS])
        condition = Condition(rng.choice(CONDITIONS)) if rng.random() < 0.25 else None
        role = rng.choice([*ROLES, "roles/unknown"])
        grants.setdefault(name, []).append(Binding(role, (rng.choice(members),), condition))
    parent = {FOLDER: ORG, PROJECTS[0]: FOLDER, PROJECTS[1]: ORG, DATASET: PROJECTS[0]}
    kinds = {ORG: "organization", FOLDER: "folder", DATASET: "dataset"}
    nodes: dict[str, Node] = {}
    for i, bucket in enumerate(BUCKETS):
        parent[bucket] = PROJECTS[i % 2]
    for e in ACCOUNTS:
        parent[service_account_resource(e)] = PROJECTS[0]
    for name in [ORG, *parent]:
        kind = kinds.get(name) or (
            "project" if name in PROJECTS else "bucket" if "storage" in name else "serviceAccount"
        )
        bindings = tuple(grants.get(name, ()))
        nodes[name] = Node(
            name,
            kind,  # type: ignore[arg-type]
            parent=parent.get(name),
            policy=AllowPolicy(bindings) if bindings else None,
        )
    snap = Snapshot(
        nodes=nodes,
        roles={r: Role(r, frozenset(p)) for r, p in ROLES.items()},
        service_accounts={e: ServiceAccount(e, "proj-one") for e in ACCOUNTS},
        groups={} if rng.random() < 0.5 else {"group:g0@example.com": (members[0],)},
        complete_bindings_for=frozenset(members[:3]),
    )
    steps = []
    for i in range(rng.randint(1, 4)):
        needs = []
        for _ in range(rng.randint(1, 5)):
            name = rng.choice([*BUCKETS, *BUCKETS, DATASET, *PROJECTS])
            prefix = None
            if "storage" in name:
                prefix = rng.choice([None, "data/", "tmp/", "data/x.csv", "runs/"])
            permissions = tuple(rng.sample(PERMISSIONS, rng.randint(1, 3)))
            needs.append(Need(ResourceRef(name, prefix), permissions))
        account = rng.choice(ACCOUNTS)
        steps.append(
            StepIdentity(f"t{i}", f"comp-t{i}", f"exec-t{i}", account, "declared", tuple(needs))
        )
    result = RewriteResult({}, "rand", tuple(steps))
    pipeline_sa = rng.choice(ACCOUNTS)
    root = rng.choice([None, "gs://bkt-b0/runs", "gs://bkt-b1"])
    ctx = CheckContext("proj-one", "us-central1", pipeline_sa, root)
    reqs = derive_requirements(
        result,
        project="proj-one",
        location="us-central1",
        pipeline_service_account=pipeline_sa,
        pipeline_root=root,
        submitter=None,
    )
    return snap, result, ctx, tuple(reqs)


def _report(seed: int, every_node_a_parent: bool) -> str:
    snap, result, ctx, reqs = _world(seed)
    ev = Evaluator(snap)
    if every_node_a_parent:  # the shortcut off: every identity gets the whole scope check
        everything = frozenset(snap.nodes)
        ev.parent_names = lambda: everything  # type: ignore[method-assign]
    report = evaluate(reqs, result.steps, ev, None, now=NOW, context=ctx)  # type: ignore[arg-type]
    return report.to_json() + "\n" + repr(report)


@pytest.mark.parametrize("seed", range(100))
def test_the_one_walk_reports_what_the_whole_scope_check_does(seed: int) -> None:
    assert _report(seed, False) == _report(seed, True)


def test_the_worlds_exercise_prefix_scope_findings() -> None:
    # the comparison above means something only if the prefix shape is found in them
    found = {
        code
        for seed in range(60)
        for code in ("ZT214", "ZT215", "ZT210")
        if f'"code": "{code}"' in _report(seed, False)
    }
    assert found == {"ZT214", "ZT215", "ZT210"}
