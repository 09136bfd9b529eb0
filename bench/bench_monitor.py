"""Continuous verification: ``verify-run`` of a 100-task run at 50 ms injected latency.

Against the emulator (simulated runs): a pipeline job whose spec holds 100 GCPC CustomJob steps
is created with zt-pipelines labels and an approval record; ``verify_run`` then reads the job
and its 100 CustomJobs with the real Vertex AI clients. Reported: API calls (goal ≤ tasks + 3)
and wall time against the round-trip time of one call measured in the same run (goal ≤
4 × RTT + 100 ms).
"""

import copy
import importlib.util
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TASKS = 100
LATENCY_MS = 50
REPEATS = 5


def _examples() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_monitor_examples", ROOT / "examples" / "pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _wide_spec(examples: Any, tmp: str) -> dict[str, Any]:
    """The example pipeline rewritten, with its train step repeated ``TASKS`` times."""
    import yaml

    from zt_pipelines.spec import rewrite_pipeline

    path = examples.compile_pipeline("training", str(Path(tmp) / "t.yaml"))
    docs = list(yaml.safe_load_all(Path(path).read_text()))
    result = rewrite_pipeline(
        docs[0],
        platform_docs=tuple(docs[1:]),
        project=examples.PROJECT,
        pipeline_service_account=examples.PIPELINE_SA,
    )
    spec = copy.deepcopy(result.spec)
    train = spec["root"]["dag"]["tasks"]["train"]
    tasks = {}
    for i in range(TASKS):
        task = copy.deepcopy(train)
        task.pop("dependentTasks", None)
        task["inputs"].pop("artifacts", None)
        task["taskInfo"] = {"name": f"train-{i}"}
        tasks[f"train-{i}"] = task
    spec["root"]["dag"]["tasks"] = tasks
    return spec


def run() -> list[str]:
    """Calls and wall time of verify-run for a 100-task run, against the measured RTT."""
    from google.cloud import aiplatform_v1

    from zt_pipelines.audit import AuditLog, Decision, identities_from
    from zt_pipelines.emulator import Emulator, emulator_credentials
    from zt_pipelines.fingerprint import SPEC_LABELS, VERIFIED_LABEL, spec_sha256
    from zt_pipelines.gcp.clients import ClientFactory
    from zt_pipelines.gcp.retry import no_wait_policy
    from zt_pipelines.monitor.service import verify_run
    from zt_pipelines.policy.snapshot_file import load_snapshot

    examples = _examples()
    world = load_snapshot(ROOT / "examples" / "world.yaml")
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(world, simulate_runs=True, enforce_iam=False) as emu,
    ):
        spec = _wide_spec(examples, tmp)
        digest = spec_sha256(spec)
        factory = ClientFactory(emulator_credentials(examples.SUBMITTER), emulator_host=emu.address)
        client = aiplatform_v1.PipelineServiceClient(
            credentials=factory.credentials,
            transport="rest",
            client_options={"api_endpoint": factory.http_endpoint},
        )
        parent = f"projects/{examples.PROJECT}/locations/{examples.LOCATION}"
        job_id = f"bench-{uuid.uuid4().hex[:10]}"
        job = client.create_pipeline_job(
            parent=parent,
            pipeline_job_id=job_id,
            pipeline_job={
                "display_name": "bench",
                "pipeline_spec": spec,
                "service_account": examples.PIPELINE_SA,
                "labels": {
                    SPEC_LABELS[0]: digest[:32],
                    SPEC_LABELS[1]: digest[32:],
                    VERIFIED_LABEL: "true",
                },
                "runtime_config": {"gcs_output_directory": examples.PIPELINE_ROOT},
            },
        )
        client.get_pipeline_job(name=job.name)  # the simulated run ends on first read
        audit = AuditLog(Path(tmp) / "audit.jsonl")
        audit.append(
            Decision(
                action="submit",
                outcome="allowed",
                submitter=examples.SUBMITTER,
                project=examples.PROJECT,
                location=examples.LOCATION,
                pipeline="zt-demo-training",
                spec_sha256=digest,
                identities=identities_from(examples.PIPELINE_SA, ()),
                job_id=job_id,
            )
        )

        def verify() -> Any:
            return verify_run(
                job_id,
                project=examples.PROJECT,
                location=examples.LOCATION,
                audit_log=audit,
                factory=factory,
                retry=no_wait_policy(),
                record=False,
            )

        first = verify()  # warm-up: clients, imports
        assert first.verified, str(first.report)
        emu.latency_ms = LATENCY_MS
        rtts = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            client.get_pipeline_job(name=job.name)
            rtts.append(time.perf_counter() - started)
        rtt = statistics.median(rtts)
        walls = []
        calls = 0
        for _ in range(REPEATS):
            emu.clear_log()
            started = time.perf_counter()
            verdict = verify()
            walls.append(time.perf_counter() - started)
            calls = sum(emu.counts().values())
            assert verdict.verified
        wall = statistics.median(walls)
    bound = 4 * rtt + 0.100
    return [
        f"verify-run, {TASKS}-task run, {LATENCY_MS} ms latency: {calls} API calls "
        f"(goal <= {TASKS + 3})",
        f"wall {wall * 1000:.0f} ms, RTT {rtt * 1000:.0f} ms, bound 4xRTT+100ms = "
        f"{bound * 1000:.0f} ms, ratio wall/bound = {wall / bound:.2f} (goal <= 1.0)",
    ]
