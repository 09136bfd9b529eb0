"""Who can become whom: the reach graph for 1,000 step SAs and 5,000 SA-policy edges.

The bench_engine world (1,000 steps x 5 needs, the real role catalogue) plus 1,000 more
service accounts, each step SA holding ``roles/iam.serviceAccountUser`` on five of them (5,000
edges on service-account policies), 1 % of which hold ``roles/editor``. Measured: the reach
graph with its findings (every start: steps, pipeline SA, submitter), against ``evaluate()`` of
the same world as the baseline (which includes the reach graph). Goal: <= 1.0x evaluate().
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import replace
from typing import Any

from bench.bench_engine import NOW, PIPELINE_SA, PROJECT, ROLES_FILE, _world
from zt_pipelines.policy.engine import Evaluator, evaluate
from zt_pipelines.policy.findings import _reach_findings
from zt_pipelines.policy.requirements import CheckContext, derive_requirements
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, ServiceAccount
from zt_pipelines.resources import service_account_resource

OTHERS = 1000
EDGES_PER_STEP = 5


def _best(fn: Any, runs: int = 3) -> tuple[Any, float]:
    best, value = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def run() -> list[str]:
    """Build the world, time the reach graph and evaluate(), return report lines."""
    if not ROLES_FILE.exists():
        return [f"skipped: {ROLES_FILE} is missing (needs ../shared)"]
    with gzip.open(ROLES_FILE, "rt") as fh:
        raw = json.load(fh)["roles"]
    snap, result = _world(raw)
    nodes = dict(snap.nodes)
    accounts = dict(snap.service_accounts)
    project = f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"
    holders: dict[int, list[str]] = {}
    steps = [s.service_account for s in result.steps if s.service_account]
    for i, email in enumerate(steps):
        for k in range(EDGES_PER_STEP):
            holders.setdefault((i * EDGES_PER_STEP + k) % OTHERS, []).append(email)
    editors = []
    for j in range(OTHERS):
        email = f"svc-{j:04d}@{PROJECT}.iam.gserviceaccount.com"
        accounts[email] = ServiceAccount(email, PROJECT)
        members = tuple(f"serviceAccount:{e}" for e in holders.get(j, []))
        name = service_account_resource(email)
        nodes[name] = Node(
            name,
            "serviceAccount",
            parent=project,
            policy=AllowPolicy((Binding("roles/iam.serviceAccountUser", members),)),
        )
        if j % 100 == 0:
            editors.append(f"serviceAccount:{email}")
    top = nodes[project]
    assert top.policy is not None
    nodes[project] = replace(
        top, policy=AllowPolicy((*top.policy.bindings, Binding("roles/editor", tuple(editors))))
    )
    snap = replace(snap, nodes=nodes, service_accounts=accounts)
    ctx = CheckContext(
        PROJECT, "us-central1", PIPELINE_SA, "gs://bench-root/runs", submitter="user:a@example.com"
    )
    reqs = derive_requirements(
        result,
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://bench-root/runs",
        submitter=None,
    )
    edges = sum(len(v) for v in holders.values())
    report, eval_s = _best(
        lambda: evaluate(reqs, result.steps, Evaluator(snap), None, now=NOW, context=ctx)
    )
    (found, _notes), reach_s = _best(
        lambda: _reach_findings(reqs, result.steps, Evaluator(snap), ctx)
    )
    return [
        f"world: {len(steps):,} step SAs, {OTHERS:,} more SAs, {edges:,} SA-policy edges, "
        f"{len(editors)} editors reachable",
        f"baseline evaluate() (everything, reach included): {eval_s:.3f} s, "
        f"{len(report.findings):,} findings",
        f"reach graph + its findings (fresh Evaluator): {reach_s:.3f} s, {len(found):,} findings "
        f"-> reach/evaluate = {reach_s / eval_s:.2f} (goal <= 1.0)",
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
