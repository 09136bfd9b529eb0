"""The drop-in PipelineJob's cost over plain ``aiplatform.PipelineJob.submit``.

Against the emulator with the example world (``examples/``): the baseline submits the already
rewritten spec with aiplatform's own ``PipelineJob`` (no verification); measured are
``zt_pipelines.PipelineJob.submit`` verifying against the snapshot file (offline) and live (the
adapters read IAM state from the emulator). Each is the median of several submissions in this
process; ratios = measured / baseline. Also reported: API calls per submission.
"""

import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPEATS = 7
ROOT = Path(__file__).resolve().parent.parent


def _examples() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_examples", ROOT / "examples" / "pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _median(fn: Callable[[], None]) -> float:
    fn()  # warm-up (imports, channels, role cache)
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run() -> list[str]:
    """Median submit time of plain aiplatform vs zt (snapshot, live), and calls per submit."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    from zt_pipelines.audit import AuditLog
    from zt_pipelines.emulator import Emulator, emulator_credentials
    from zt_pipelines.job import PipelineJob, canonical_spec_bytes
    from zt_pipelines.policy.snapshot_file import load_snapshot
    from zt_pipelines.spec import rewrite_pipeline

    examples = _examples()
    world = load_snapshot(ROOT / "examples" / "world.yaml")
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("google.cloud.aip")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    saved_env = dict(os.environ)
    config = initializer.global_config
    saved_config = dict(vars(config))
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, Emulator(world) as emu:
        template = examples.compile_pipeline("training", f"{tmp}/training.yaml")
        rewritten = rewrite_pipeline(
            template, project=examples.PROJECT, pipeline_service_account=examples.PIPELINE_SA
        )
        plain = Path(tmp) / "rewritten.json"
        plain.write_bytes(canonical_spec_bytes(rewritten.spec))
        os.environ.update(
            ZT_EMULATOR_HOST=emu.address,
            STORAGE_EMULATOR_HOST=f"http://{emu.address}",
            NO_GCE_CHECK="True",
        )
        aiplatform.init(
            project=examples.PROJECT,
            location=examples.LOCATION,
            api_endpoint=f"http://{emu.address}",
            api_transport="rest",
        )
        alice = emulator_credentials(examples.SUBMITTER)
        audit = AuditLog(Path(tmp) / "audit.jsonl")

        def baseline() -> None:
            aiplatform.PipelineJob(
                display_name="b",
                template_path=str(plain),
                job_id=f"b-{uuid.uuid4().hex[:10]}",
                credentials=alice,
            ).submit(service_account=examples.PIPELINE_SA)

        def ours(snapshot: Any) -> Callable[[], None]:
            def submit() -> None:
                PipelineJob(
                    display_name="z",
                    template_path=template,
                    job_id=f"z-{uuid.uuid4().hex[:10]}",
                    credentials=alice,
                    snapshot=snapshot,
                    audit_log=audit,
                ).submit(service_account=examples.PIPELINE_SA)

            return submit

        results: dict[str, tuple[float, float]] = {}
        for name, fn in (
            ("aiplatform (baseline)", baseline),
            ("zt, snapshot", ours(world)),
            ("zt, live", ours(None)),
        ):
            emu.clear_log()
            seconds = _median(fn)
            calls = len(emu.request_log) / (REPEATS + 1)
            results[name] = (seconds, calls)
        base = results["aiplatform (baseline)"][0]
        for name, (seconds, calls) in results.items():
            lines.append(
                f"{name:22} {seconds * 1000:7.1f} ms/submit  {calls:5.1f} API calls  "
                f"ratio {seconds / base:.2f}"
            )
    os.environ.clear()
    os.environ.update(saved_env)
    vars(config).clear()
    vars(config).update(saved_config)
    return lines
