"""Verification engine: 1,000 steps x 5 needs against the full real predefined-role catalogue.

Measures one complete ``evaluate()`` (requirements derived, every need decided, identities,
excess privilege, org policy) — seconds and peak traced memory — and, in the same run, the
naive baseline a script would do: per (principal, resource, permission) tuple, walk the
ancestry and scan every binding, expanding each role from its permission list on every look.
Goals: <= 0.5 s and <= 300 MB for the engine; at organisation scale (10,000 steps x 5 needs)
<= 1.5 s, with its peak memory and its growth from 1,000 and 3,000 steps.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zt_pipelines.model import Need, RewriteResult, StepIdentity
from zt_pipelines.policy.engine import Evaluator, evaluate
from zt_pipelines.policy.requirements import CheckContext, derive_requirements
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, ServiceAccount, Snapshot
from zt_pipelines.policy.snapshot_file import roles_from_catalogue
from zt_pipelines.resources import ResourceRef, service_account_resource

ROOT = Path(__file__).resolve().parent.parent
ROLES_FILE = (
    Path(os.environ.get("ZT_SHARED_DIR", ROOT.parent / "shared"))
    / "data"
    / ("gcp-predefined-roles.json.gz")
)
STEPS = 1000
NEEDS = 5
BUCKETS = 200
PROJECT = "bench-proj"
CRM = "//cloudresourcemanager.googleapis.com/"
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)
PIPELINE_SA = f"pipeline@{PROJECT}.iam.gserviceaccount.com"
NEED_PERMS = [
    ("storage.objects.get", "roles/storage.objectViewer"),
    ("storage.objects.list", "roles/storage.objectViewer"),
    ("storage.objects.create", "roles/storage.objectCreator"),
    ("bigquery.tables.getData", "roles/bigquery.dataViewer"),
    ("storage.objects.delete", "roles/storage.objectUser"),
]


def _world(roles_data: dict[str, Any], steps_count: int = STEPS) -> tuple[Snapshot, RewriteResult]:
    roles = roles_from_catalogue(roles_data)
    org = CRM + "organizations/1"
    project = CRM + f"projects/{PROJECT}"
    nodes: dict[str, Node] = {
        org: Node(org, "organization"),
        project: Node(
            project,
            "project",
            parent=org,
            project_number="1234",
            policy=AllowPolicy(
                (Binding("roles/aiplatform.user", (f"serviceAccount:{PIPELINE_SA}",)),)
            ),
        ),
    }
    grants: dict[str, list[Binding]] = {}
    steps = []
    sas: dict[str, ServiceAccount] = {PIPELINE_SA: ServiceAccount(PIPELINE_SA, PROJECT)}
    for i in range(steps_count):
        email = f"step-{i:04d}@{PROJECT}.iam.gserviceaccount.com"
        sas[email] = ServiceAccount(email, PROJECT)
        member = f"serviceAccount:{email}"
        needs = []
        for j in range(NEEDS):
            perm, role = NEED_PERMS[j]
            if perm.startswith("bigquery"):
                name = f"//bigquery.googleapis.com/projects/{PROJECT}/datasets/ds{(i + j) % 50}"
                kind = "dataset"
            else:
                name = f"//storage.googleapis.com/bench-bucket-{(i * 7 + j) % BUCKETS:03d}"
                kind = "bucket"
            nodes.setdefault(name, Node(name, kind, parent=project))  # type: ignore[arg-type]
            grants.setdefault(name, []).append(Binding(role, (member,)))
            needs.append(Need(ResourceRef(name, f"step-{i}/"), (perm,)))
        sa_name = service_account_resource(email)
        nodes[sa_name] = Node(
            sa_name,
            "serviceAccount",
            parent=project,
            policy=AllowPolicy(
                (Binding("roles/iam.serviceAccountUser", (f"serviceAccount:{PIPELINE_SA}",)),)
            ),
        )
        steps.append(
            StepIdentity(
                f"step-{i}",
                f"comp-{i}",
                f"exec-{i}",
                email,
                "declared",
                tuple(needs),
                image="python:3.11",
            )
        )
    for name, bindings in grants.items():
        nodes[name] = Node(
            nodes[name].name, nodes[name].kind, parent=project, policy=AllowPolicy(tuple(bindings))
        )
    root = "//storage.googleapis.com/bench-root"
    nodes[root] = Node(
        root,
        "bucket",
        parent=project,
        policy=AllowPolicy(
            (
                Binding("roles/storage.objectUser", tuple(f"serviceAccount:{e}" for e in sas)),
                Binding("roles/storage.legacyBucketReader", (f"serviceAccount:{PIPELINE_SA}",)),
            )
        ),
    )
    snap = Snapshot(
        nodes=nodes,
        roles=roles,
        service_accounts=sas,
        complete_bindings_for=frozenset(f"serviceAccount:{e}" for e in sas),
    )
    return snap, RewriteResult({}, "bench", tuple(steps))


def _naive(requirements: Any, snap: Snapshot, raw_roles: dict[str, Any]) -> int:
    """What a hand-written script does: scan every binding of every ancestor per tuple."""
    granted = 0
    for r in requirements:
        node = snap.nodes.get(r.resource.name)
        found = False
        while node is not None and not found:
            for b in node.policy.bindings if node.policy else ():
                perms = set(raw_roles.get(b.role, {}).get("includedPermissions", []))
                if r.permission in perms and r.principal in b.members:
                    found = True
                    break
            node = snap.nodes.get(node.parent) if node.parent else None
        granted += found
    return granted


def _measure(fn: Any) -> tuple[Any, float, float]:
    """(value, best wall seconds of 3 untraced runs, peak MB of one tracemalloc-traced run)."""
    best = float("inf")
    value = None
    for _ in range(3):
        value = None  # the previous result is freed outside the timed call
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return value, best, peak


def run() -> list[str]:
    """Build the world, time the engine and the naive baseline, return report lines."""
    if not ROLES_FILE.exists():
        return [f"skipped: {ROLES_FILE} is missing (needs ../shared)"]
    with gzip.open(ROLES_FILE, "rt") as fh:
        raw = json.load(fh)["roles"]
    snap, result = _world(raw)
    ctx = CheckContext(PROJECT, "us-central1", PIPELINE_SA, "gs://bench-root/runs")
    reqs = derive_requirements(
        result,
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://bench-root/runs",
        submitter=None,
    )

    def engine() -> Any:
        return evaluate(reqs, result.steps, Evaluator(snap), None, now=NOW, context=ctx)

    engine()  # warm imports and the CEL/regex caches outside the timed run
    report, seconds, peak = _measure(engine)
    decisions, decide_s, _ = _measure(lambda: _decide_shared(snap, reqs))
    _, oneshot_s, _ = _measure(lambda: _decide_one_shot(snap, reqs))
    granted_naive, naive_s, naive_peak = _measure(lambda: _naive(reqs, snap, raw))
    return [
        f"world: {STEPS} steps x {NEEDS} needs, {len(reqs):,} requirements, "
        f"{len(snap.nodes):,} nodes, {len(snap.roles):,} real roles",
        f"engine evaluate() (everything): {seconds:.3f} s best of 3, peak {peak:.1f} MB traced "
        f"(goals <= 0.5 s, <= 300 MB); {len(report.findings):,} findings",
        f"engine decide() x {len(reqs):,}, one indexed Evaluator: {decide_s:.3f} s, "
        f"{decisions:,} granted",
        f"baseline A, one-shot decide() per tuple (no shared index): {oneshot_s:.3f} s "
        f"-> evaluate/A = {seconds / oneshot_s:.3f}, decide/A = {decide_s / oneshot_s:.3f}",
        f"baseline B, naive allow-only scan (no deny/conditions/groups/evidence): "
        f"{naive_s:.3f} s, peak {naive_peak:.1f} MB, {granted_naive:,} granted "
        f"-> decide/B = {decide_s / naive_s:.2f}",
        *_organisation_scale(raw, seconds),
        f"process max RSS (catalogue + world + all runs): {_max_rss_mb():.0f} MB",
    ]


def _organisation_scale(raw: dict[str, Any], small_seconds: float) -> list[str]:
    """evaluate() of 10,000 steps x 5 needs (goal <= 1.5 s): seconds (best of 2, each on a fresh
    Evaluator, so every index is rebuilt: what one ``check`` pays), peak traced memory, and the
    growth against 3,000 and 1,000 steps (10.0 = linear for 10x the steps)."""
    steps = 10 * STEPS
    third = _scaled(raw, 3 * STEPS)[0]
    best, peak, findings, requirements, cpu, young, full = _scaled(raw, steps)
    return [
        f"organisation scale: evaluate() of {steps:,} steps x {NEEDS} needs ({requirements:,} "
        f"requirements): {best:.3f} s best of 2 (goal <= 1.5 s; process CPU {cpu:.3f} s, "
        f"less sensitive to load), peak {peak:.0f} MB traced, "
        f"{findings:,} findings; growth vs {STEPS:,} steps = {best / small_seconds:.1f}x for "
        f"10x the steps (10.0 = linear), {3 * STEPS:,} steps took {third:.3f} s "
        f"({best / third:.1f}x for 3.3x)",
        f"after that call, the collector's work on what it made (paid by whatever runs next, "
        f"not in the time above): young collections {young:.3f} s; a full collection of the "
        f"heap, which the process makes sooner or later, {full:.3f} s",
        _fresh_process(steps),
        f"load average at the end (2 cores shared): {_load()}",
    ]


def _fresh_process(steps: int) -> str:
    """The same measurement in a new interpreter: what one ``check`` of a CLI process pays,
    without the heap this benchmark has built by then (its 1,000-step world, baselines ...)."""
    import subprocess
    import sys

    code = (
        "import gzip, json; from bench.bench_engine import ROLES_FILE, _scaled; "
        "raw = json.load(gzip.open(ROLES_FILE, 'rt'))['roles']; "
        f"b = _scaled(raw, {steps}); print(f'{{b[0]:.3f}} {{b[4]:.3f}}')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        return f"organisation scale in a fresh process: failed ({done.stderr.strip()[-200:]})"
    wall, cpu = done.stdout.split()
    return (
        f"organisation scale in a fresh process (what one CLI check pays): {wall} s best of 2 "
        f"(process CPU {cpu} s)"
    )


def _scaled(raw: dict[str, Any], steps: int) -> tuple[float, float, int, int, float, float, float]:
    """(best wall seconds of 2, peak MB of a traced run, findings, requirements, best CPU
    seconds of 2, seconds of the young collections right after the call, seconds of a full
    collection then) at ``steps``."""
    snap, result = _world(raw, steps)
    ctx = CheckContext(PROJECT, "us-central1", PIPELINE_SA, "gs://bench-root/runs")
    reqs = derive_requirements(
        result,
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://bench-root/runs",
        submitter=None,
    )
    best = cpu = young = full = float("inf")
    report = None
    for _ in range(2):
        report = None  # the previous report is freed outside the timed call
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        report = evaluate(reqs, result.steps, Evaluator(snap), None, now=NOW, context=ctx)
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
        start = time.perf_counter()
        gc.collect(1)  # what the next young collections walk of what the call made
        young = min(young, time.perf_counter() - start)
        start = time.perf_counter()
        gc.collect()
        full = min(full, time.perf_counter() - start)
    report = None
    tracemalloc.start()
    report = evaluate(reqs, result.steps, Evaluator(snap), None, now=NOW, context=ctx)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return best, peak, len(report.findings), len(reqs), cpu, young, full


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not on every platform
        return "unknown"


def _max_rss_mb() -> float:
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _decide_shared(snap: Snapshot, reqs: Any) -> int:
    ev = Evaluator(snap)
    return sum(ev.decide(r.principal, r.resource, r.permission, now=NOW).granted for r in reqs)


def _decide_one_shot(snap: Snapshot, reqs: Any) -> int:
    return sum(
        Evaluator(snap).decide(r.principal, r.resource, r.permission, now=NOW).granted for r in reqs
    )


if __name__ == "__main__":
    for line in run():
        print(line)
