"""Live fetch vs. the per-tuple baseline, against the emulator with 50 ms injected latency.

World: 1 organisation, 1 folder, 2 projects; a generated 100-step pipeline, one service
account per step, touching 40 resources (buckets, datasets, tables) plus the pipeline root.

(a) our live fetch (``fetch_snapshot``): API calls, wall time and CPU (ours and the emulator's)
    per call, cold (a first check: new credentials, so new clients and connections, and an
    empty cache) and warm (a second check in the same process: the same clients and cache;
    every policy, key list and account is still read again);
(b) the baseline a user would script today: one Policy Troubleshooter call per
    (principal, resource, permission), serial. Its call count is exact; its wall time is
    measured on a serial sample and scaled to the full count (said so in the output).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp import ClientFactory, build_adapters, fetch_snapshot
from zt_pipelines.gcp.interface import READ_PERMISSIONS
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    DenyPolicy,
    DenyRule,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
)

LATENCY_MS = 50
REPEATS = 5
STEPS = 100
CRM = "//cloudresourcemanager.googleapis.com/"
ORG, FOLDER = CRM + "organizations/4242", CRM + "folders/77"
PROJECTS = ("zt-bench-a", "zt-bench-b")
READER = "checker@zt-bench-a.iam.gserviceaccount.com"
PIPE = "pipeline@zt-bench-a.iam.gserviceaccount.com"
ROOT = "//storage.googleapis.com/zt-bench-root"
STORAGE_READ = ("storage.objects.get", "storage.objects.list")
STORAGE_WRITE = ("storage.objects.create",)
BQ_READ = ("bigquery.tables.getData", "bigquery.tables.get")


def _resources() -> list[tuple[str, str, tuple[str, ...]]]:
    """40 resources: (full name, role that grants the need, permissions needed)."""
    out = []
    for i in range(24):
        project = PROJECTS[i % 2]
        out.append((f"//storage.googleapis.com/zt-bench-{project}-b{i:02d}", project, STORAGE_READ))
    for i in range(8):
        project = PROJECTS[i % 2]
        dataset = f"//bigquery.googleapis.com/projects/{project}/datasets/ds{i}"
        out.append((dataset, project, BQ_READ))
        out.append((dataset + f"/tables/t{i}", project, BQ_READ))
    return out


def build_world() -> tuple[Snapshot, list[tuple[str, str, str]], list[str], list[str]]:
    """The world, the baseline tuples, the declared resources and the step accounts."""
    resources = _resources()
    role_for = {
        STORAGE_READ: "roles/storage.objectViewer",
        BQ_READ: "roles/bigquery.dataViewer",
    }
    grants: dict[str, list[Binding]] = {name: [] for name, _, _ in resources}
    grants[ROOT] = []
    tuples: list[tuple[str, str, str]] = []
    accounts = {
        READER: ServiceAccount(READER, PROJECTS[0]),
        PIPE: ServiceAccount(PIPE, PROJECTS[0]),
    }
    steps = []
    sa_nodes: dict[str, Node] = {}
    for step in range(STEPS):
        project = PROJECTS[step % 2]
        email = f"step-{step:03d}@{project}.iam.gserviceaccount.com"
        steps.append(email)
        accounts[email] = ServiceAccount(email, project)
        member = f"serviceAccount:{email}"
        for k in (step % 40, (step * 7 + 3) % 40):
            name, _, perms = resources[k]
            grants[name].append(Binding(role_for[perms], (member,)))
            tuples += [(member, name, p) for p in perms]
        grants[ROOT].append(Binding("roles/storage.objectUser", (member,)))
        tuples += [(member, ROOT, p) for p in (*STORAGE_READ, *STORAGE_WRITE)]
        sa_name = f"//iam.googleapis.com/projects/{project}/serviceAccounts/{email}"
        sa_nodes[sa_name] = Node(
            sa_name,
            "serviceAccount",
            parent=CRM + f"projects/{project}",
            policy=AllowPolicy(
                (Binding("roles/iam.serviceAccountUser", (f"serviceAccount:{PIPE}",)),)
            ),
        )
        tuples.append((f"serviceAccount:{PIPE}", sa_name, "iam.serviceAccounts.actAs"))
    for perm in (
        "aiplatform.customJobs.create",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.cancel",
        "aiplatform.metadataStores.get",
    ):
        tuples.append((f"serviceAccount:{PIPE}", CRM + f"projects/{PROJECTS[0]}", perm))
    nodes: dict[str, Node] = {
        ORG: Node(
            ORG,
            "organization",
            policy=AllowPolicy(
                (Binding("roles/iam.securityReviewer", (f"serviceAccount:{READER}",)),)
            ),
        ),
        FOLDER: Node(FOLDER, "folder", parent=ORG, policy=AllowPolicy()),
        CRM + f"projects/{PROJECTS[0]}": Node(
            CRM + f"projects/{PROJECTS[0]}",
            "project",
            parent=FOLDER,
            project_number="1001",
            policy=AllowPolicy((Binding("roles/aiplatform.user", (f"serviceAccount:{PIPE}",)),)),
        ),
        CRM + f"projects/{PROJECTS[1]}": Node(
            CRM + f"projects/{PROJECTS[1]}",
            "project",
            parent=ORG,
            project_number="1002",
            policy=AllowPolicy(),
        ),
        **sa_nodes,
    }
    for name, project, _ in resources:
        kind = (
            "bucket"
            if name.startswith("//storage")
            else ("table" if "/tables/" in name else "dataset")
        )
        parent = CRM + f"projects/{project}"
        if kind == "table":
            parent = name.rsplit("/tables/", 1)[0]
        nodes[name] = Node(name, kind, parent=parent, policy=AllowPolicy(tuple(grants[name])))
    nodes[ROOT] = Node(
        ROOT,
        "bucket",
        parent=CRM + f"projects/{PROJECTS[0]}",
        policy=AllowPolicy(tuple(grants[ROOT])),
    )
    roles = {
        "roles/iam.securityReviewer": Role("roles/iam.securityReviewer", READ_PERMISSIONS),
        "roles/storage.objectViewer": Role("roles/storage.objectViewer", frozenset(STORAGE_READ)),
        "roles/storage.objectUser": Role(
            "roles/storage.objectUser", frozenset((*STORAGE_READ, *STORAGE_WRITE))
        ),
        "roles/bigquery.dataViewer": Role("roles/bigquery.dataViewer", frozenset(BQ_READ)),
        "roles/iam.serviceAccountUser": Role(
            "roles/iam.serviceAccountUser", frozenset({"iam.serviceAccounts.actAs"})
        ),
        "roles/aiplatform.user": Role(
            "roles/aiplatform.user",
            frozenset(
                {
                    "aiplatform.customJobs.create",
                    "aiplatform.customJobs.get",
                    "aiplatform.customJobs.cancel",
                    "aiplatform.metadataStores.get",
                }
            ),
        ),
    }
    deny = (
        DenyPolicy(
            "no-public-delete",
            ORG,
            (
                DenyRule(
                    ("principalSet://goog/public:all",), ("storage.googleapis.com/objects.delete",)
                ),
            ),
        ),
    )
    snap = Snapshot(nodes=nodes, roles=roles, deny_policies=deny, service_accounts=accounts)
    declared = [name for name, _, _ in resources] + [ROOT]
    return snap, tuples, declared, steps


def _serve(world: Snapshot, latency_ms: int, conn: Any) -> None:
    """Child process: run the emulator and answer ``address`` / ``clear`` / ``counts``."""
    with Emulator(world, latency_ms=latency_ms) as emu:
        conn.send(emu.address)
        while True:
            command = conn.recv()
            if command == "clear":
                emu.clear_log()
                conn.send(None)
            elif command == "counts":
                conn.send(emu.counts())
            elif command == "cpu":
                conn.send(time.process_time())
            else:
                return


class _RemoteEmulator:
    """The parent's handle on an emulator in its own process (as Google's servers are)."""

    def __init__(self, conn: Any, address: str) -> None:
        self._conn = conn
        self.address = address

    def clear_log(self) -> None:
        self._conn.send("clear")
        self._conn.recv()

    def counts(self) -> dict[str, int]:
        self._conn.send("counts")
        counts: dict[str, int] = self._conn.recv()
        return counts

    def cpu(self) -> float:
        """CPU seconds the emulator's process has used so far."""
        self._conn.send("cpu")
        used: float = self._conn.recv()
        return used


@contextmanager
def _emulator_process(world: Snapshot, latency_ms: int) -> Iterator[_RemoteEmulator]:
    # the emulator must not share the client's interpreter lock: Google's servers do not
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(world, latency_ms, child), daemon=True)
    process.start()
    try:
        yield _RemoteEmulator(parent, parent.recv())
    finally:
        parent.send("stop")
        process.join(timeout=10)


def run() -> list[str]:
    """Run the benchmark and return report lines."""
    world, tuples, declared, steps = build_world()
    creds = emulator_credentials(f"serviceAccount:{READER}")
    retry = RetryPolicy(sleep=lambda _s: None)
    results: dict[str, dict[str, tuple[int, float, int, float, float]]] = {}
    methods: dict[str, str] = {}
    same = True
    with _emulator_process(world, LATENCY_MS) as emu:
        answers = {}
        for strategy in ("direct", "inventory"):

            def ours(
                cache: str, caller: Any, strategy: str = strategy
            ) -> tuple[int, float, int, float, float]:
                emu.clear_log()
                served = emu.cpu()
                used = time.process_time()
                start = time.perf_counter()
                snap = fetch_snapshot(
                    resources=declared,
                    service_accounts=[*steps, PIPE],
                    projects=list(PROJECTS),
                    credentials=caller,
                    emulator_host=emu.address,
                    cache_dir=cache,
                    retry=retry,
                    strategy=strategy,
                )
                wall = time.perf_counter() - start
                client_cpu = time.process_time() - used
                answers[strategy] = snap
                calls = sum(emu.counts().values())
                return calls, wall, len(snap.unreadable), client_cpu, emu.cpu() - served

            cold, warm = [], []
            for _ in range(REPEATS):  # medians: the machine is shared
                with tempfile.TemporaryDirectory() as cache:
                    # new credentials: a first check builds its clients and connections
                    caller = emulator_credentials(f"serviceAccount:{READER}")
                    cold.append(ours(cache, caller))
                    warm.append(ours(cache, caller))
            results[strategy] = {"cold": _median(cold), "warm": _median(warm)}
            methods[strategy] = ", ".join(
                f"{m.split('/')[-1]}={n}"
                for m, n in sorted(emu.counts().items(), key=lambda kv: -kv[1])
            )
        same = _same_answers(answers["direct"], answers["inventory"], tuples)

        factory = ClientFactory(creds, emulator_host=emu.address)
        troubleshooter = build_adapters(factory, retry).troubleshooter
        assert troubleshooter is not None
        sample = tuples[:: max(1, len(tuples) // 40)][:40]
        emu.clear_log()
        start = time.perf_counter()
        for member, resource, permission in sample:
            troubleshooter.troubleshoot(member, resource, permission)
        per_call = (time.perf_counter() - start) / len(sample)
        factory.close()
    base_calls, base_wall = len(tuples), per_call * len(tuples)
    rtt = LATENCY_MS / 1000
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"world: {STEPS} steps / {STEPS} step SAs, {len(declared) - 1} resources + pipeline "
        f"root, 2 projects, 1 folder, 1 org; injected latency {LATENCY_MS} ms per call; "
        f"emulator in its own process; wall = median of {REPEATS}; load average {load} "
        f"on {os.cpu_count()} cores (the emulator's CPU competes with ours)",
        f"baseline (troubleshooter, serial): {base_calls} calls, {base_wall:.2f} s "
        f"(measured {len(sample)} calls at {per_call * 1000:.1f} ms each, scaled)",
    ]
    for strategy, runs in results.items():
        for phase, (calls, wall, bad, client_cpu, served_cpu) in runs.items():
            goal = 4 * LATENCY_MS + 100 if phase == "cold" else 2 * LATENCY_MS
            lines.append(
                f"ours {strategy:9} {phase}: {calls:4d} calls ({base_calls / calls:5.1f}x fewer; "
                f"goal >= 50x), {wall * 1000:5.0f} ms = {wall / rtt:4.1f} RTT "
                f"({base_wall / wall:4.0f}x faster; goal <= {goal} ms = "
                f"{goal / LATENCY_MS:.0f} RTT, {wall * 1000 / goal:4.2f}x of it), unreadable={bad}"
            )
            lines.append(
                f"  cpu per call: client {client_cpu / calls * 1000:.2f} ms "
                f"({client_cpu * 1000:.0f} ms), emulator {served_cpu / calls * 1000:.2f} ms "
                f"({served_cpu * 1000:.0f} ms)"
            )
        lines.append(f"  {strategy} warm calls by method: {methods[strategy]}")
    lines += _floor_lines(results["direct"]["warm"])
    lines.append(
        "direct and inventory give the same decision on every baseline tuple: "
        + ("yes" if same else "NO")
    )
    lines.append(_engine_line(answers["inventory"], tuples))
    return lines


def _floor_lines(warm: tuple[int, float, int, float, float]) -> list[str]:
    """The grpcio echo floor for a wave of the warm check's size, what the check adds above
    it per call, and — when warm misses 2 RTT — the bound its CPU sets (the reason)."""
    from bench.grpc_floor import measure

    calls, wall, _, client_cpu, served_cpu = warm
    floor = measure(calls, LATENCY_MS)
    rtt, cores = LATENCY_MS / 1000, os.cpu_count() or 1
    lines = [
        f"floor: grpcio unary echo (no zt-pipelines or emulator code), {calls} calls at once "
        f"with a {LATENCY_MS} ms wait in the server: {floor.wall * 1000:.0f} ms = "
        f"{floor.wall / rtt:.1f} RTT; cpu per call: client {floor.client_cpu * 1000:.2f} ms, "
        f"server {floor.server_cpu * 1000:.2f} ms",
        f"  direct warm above the floor, per call: client "
        f"{(client_cpu / calls - floor.client_cpu) * 1000:+.2f} ms, emulator "
        f"{(served_cpu / calls - floor.server_cpu) * 1000:+.2f} ms; wall "
        f"{wall / floor.wall:.2f}x the floor's",
    ]
    if wall > 2 * rtt:
        bound = rtt + (client_cpu + served_cpu) / cores
        lines.append(
            f"  why direct warm misses 2 RTT: its {calls} reads cost {client_cpu * 1000:.0f} ms "
            f"of client and {served_cpu * 1000:.0f} ms of emulator CPU on {cores} shared cores, "
            f"so a wave takes at least {rtt * 1000:.0f} ms + "
            f"{(client_cpu + served_cpu) * 1000 / cores:.0f} ms = {bound * 1000:.0f} ms "
            f"({bound / rtt:.1f} RTT) even perfectly parallel; the echo alone needs "
            f"{floor.wall / rtt:.1f} RTT for as many calls"
        )
    return lines


def _engine_line(snap: Snapshot, tuples: list[tuple[str, str, str]]) -> str:
    """How long the local evaluation of every baseline tuple takes (no IO)."""
    from datetime import datetime, timezone

    from zt_pipelines.policy.engine import Evaluator

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    start = time.perf_counter()
    evaluator = Evaluator(snap)
    granted = sum(evaluator.decide(m, r, p, now=now).granted for m, r, p in tuples)
    took = time.perf_counter() - start
    return (
        f"engine: {len(tuples)} decisions from the fetched snapshot in {took * 1000:.0f} ms "
        f"({granted} granted), i.e. what the baseline's {len(tuples)} calls answer"
    )


def _median(
    runs: list[tuple[int, float, int, float, float]],
) -> tuple[int, float, int, float, float]:
    """The median wall time with the median client and emulator CPU of the same runs (each
    its own median: one run's CPU moves with the load as much as its wall time); calls and
    unreadable are the same in every run."""
    middle = len(runs) // 2
    calls, wall, bad, _, _ = sorted(runs, key=lambda r: r[1])[middle]
    return (
        calls,
        wall,
        bad,
        sorted(r[3] for r in runs)[middle],
        sorted(r[4] for r in runs)[middle],
    )


def _same_answers(a: Snapshot, b: Snapshot, tuples: list[tuple[str, str, str]]) -> bool:
    from datetime import datetime, timezone

    from zt_pipelines.policy.engine import Evaluator

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    left, right = Evaluator(a), Evaluator(b)
    return all(
        left.decide(m, r, p, now=now).state == right.decide(m, r, p, now=now).state
        for m, r, p in tuples
    )


if __name__ == "__main__":
    for line in run():
        print(line)
