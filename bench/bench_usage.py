"""Continuous verification: ``usage`` over 100,000 Cloud Audit Log entries.

Against the emulator: an approved run of the example pipeline (simulated), and 100,000 Data
Access entries by its ingest step inside the step's run window, served by Cloud Logging
``entries.list`` in pages of 1000. Baseline: the Logging client (``LoggingServiceV2Client``)
paging through the same entries with the same server-side filter, doing nothing with them.
Measured: ``zt_pipelines.monitor.service.usage`` end to end (the run's task details, the
project's audit configs, the same pages, and the evaluation). Goal: ratio ≤ 1.2. Both run
``REPEATS`` times, interleaved (each first in turn, after a collection); the ratios are the
medians of the back-to-back pairs' ratios (wall and process CPU), with their range.
"""

import datetime
import gc
import importlib.util
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = 100_000
REPEATS = 7


def _examples() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_usage_examples", ROOT / "examples" / "pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run() -> list[str]:
    """Wall time of usage over 100k entries against the client's bare paging."""
    import yaml
    from google.cloud import aiplatform_v1

    from zt_pipelines.audit import AuditLog, Decision, identities_from
    from zt_pipelines.emulator import Emulator, emulator_credentials
    from zt_pipelines.emulator.audit_logs import build_entry
    from zt_pipelines.fingerprint import SPEC_LABELS, VERIFIED_LABEL, spec_sha256
    from zt_pipelines.gcp.audit_logs import audit_filter
    from zt_pipelines.gcp.clients import ClientFactory
    from zt_pipelines.gcp.retry import no_wait_policy
    from zt_pipelines.monitor.service import usage
    from zt_pipelines.policy.snapshot_file import load_snapshot
    from zt_pipelines.spec import rewrite_pipeline

    examples = _examples()
    world = load_snapshot(ROOT / "examples" / "world.yaml")
    project = examples.PROJECT
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(world, simulate_runs=True, enforce_iam=False) as emu,
    ):
        path = examples.compile_pipeline("training", str(Path(tmp) / "t.yaml"))
        docs = list(yaml.safe_load_all(Path(path).read_text()))
        result = rewrite_pipeline(
            docs[0],
            platform_docs=tuple(docs[1:]),
            project=project,
            pipeline_service_account=examples.PIPELINE_SA,
        )
        digest = spec_sha256(result.spec)
        factory = ClientFactory(emulator_credentials(examples.SUBMITTER), emulator_host=emu.address)
        vertex = aiplatform_v1.PipelineServiceClient(
            credentials=factory.credentials,
            transport="rest",
            client_options={"api_endpoint": factory.http_endpoint},
        )
        job_id = f"bench-{uuid.uuid4().hex[:10]}"
        job = vertex.create_pipeline_job(
            parent=f"projects/{project}/locations/{examples.LOCATION}",
            pipeline_job_id=job_id,
            pipeline_job={
                "display_name": "bench",
                "pipeline_spec": result.spec,
                "service_account": examples.PIPELINE_SA,
                "labels": {
                    SPEC_LABELS[0]: digest[:32],
                    SPEC_LABELS[1]: digest[32:],
                    VERIFIED_LABEL: "true",
                },
                "runtime_config": {"gcs_output_directory": examples.PIPELINE_ROOT},
            },
        )
        vertex.get_pipeline_job(name=job.name)  # the simulated run ends on first read
        audit = AuditLog(Path(tmp) / "audit.jsonl")
        audit.append(
            Decision(
                action="submit",
                outcome="allowed",
                submitter=examples.SUBMITTER,
                project=project,
                location=examples.LOCATION,
                pipeline=result.pipeline_name,
                spec_sha256=digest,
                identities=identities_from(examples.PIPELINE_SA, result.steps),
                job_id=job_id,
            )
        )
        emu.set_audit_configs(project, {"allServices": ("DATA_READ", "DATA_WRITE")})
        [ingest] = [s for s in emu.step_runs if s.task == "ingest"]
        span = ingest.end - ingest.start
        raw = "//storage.googleapis.com/zt-demo-raw-data"
        batch = []
        for i in range(ENTRIES):
            at = ingest.start + span * (i + 1) / (ENTRIES + 1)
            name, entry = build_entry(
                project=project,
                principal=ingest.service_account,
                permission="storage.objects.get",
                resource=f"{raw}/rows/{i}.csv",
                at=at,
            )
            batch.append((at, ingest.service_account, name, entry))
        emu.add_log_entries(batch)
        now = datetime.datetime.now(datetime.timezone.utc)
        since = datetime.timedelta(days=1)
        identities = sorted(s.service_account for s in result.steps if s.service_account)
        text = audit_filter(project, identities, now - since, now)

        from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

        client = factory._gapic(LoggingServiceV2Client)
        request = {
            "resource_names": [f"projects/{project}"],
            "filter": text,
            "order_by": "timestamp asc",
            "page_size": 1000,
        }

        def baseline() -> int:
            return sum(1 for _ in client.list_log_entries(request=request))

        def measured() -> Any:
            return usage(
                project,
                audit_log=audit,
                since=since,
                factory=factory,
                retry=no_wait_policy(),
                clock=lambda: now,
                record=False,
            )

        counted = baseline()  # warm-up (and the server's filtered list)
        verdict = measured()
        assert verdict.clean, str(verdict.report)
        base_times, times, base_cpu, cpu = [], [], [], []

        def timed(fn: Any, walls: list[float], cpus: list[float]) -> None:
            gc.collect()  # neither side pays for the other's garbage
            started, used = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - used)

        for i in range(REPEATS):  # interleaved, each side first in turn
            pair = [(baseline, base_times, base_cpu), (measured, times, cpu)]
            for fn, walls, cpus in pair if i % 2 == 0 else pair[::-1]:
                timed(fn, walls, cpus)
        # each pair ran back to back: its ratio cancels the load drifting between pairs
        walls = sorted(m / b for m, b in zip(times, base_times, strict=True))
        cpus = sorted(m / b for m, b in zip(cpu, base_cpu, strict=True))
        base, mine = statistics.median(base_times), statistics.median(times)
        # the emulator serves from this process: its CPU is in both
        wall_ratio, cpu_ratio = statistics.median(walls), statistics.median(cpus)
    return [
        f"usage over {counted:,} audit log entries ({-(-counted // 1000)} pages): "
        f"{mine:.2f} s; the Logging client paging alone {base:.2f} s (medians of {REPEATS})",
        f"ratio {wall_ratio:.2f} (goal <= 1.2; pairs {walls[0]:.2f}-{walls[-1]:.2f}); "
        f"process CPU ratio {cpu_ratio:.2f} (pairs {cpus[0]:.2f}-{cpus[-1]:.2f})",
    ]
