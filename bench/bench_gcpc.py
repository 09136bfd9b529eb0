"""Rewriting Google's own AutoML Tabular pipeline, against kfp loading the same file.

* file → rewrite → file: ``load_template`` + ``rewrite_pipeline`` (with the parameters the
  corpus test uses: project, location, root_dir) + ``dump_template`` + writing the YAML, for
  ``../shared/corpus/gcpc-2.22/shipped/v1.automl.tabular.automl_tabular_pipeline.yaml``
  (the largest shipped GCPC template, ~500 KB); baseline: ``kfp.components.
  load_component_from_file`` on the same file (goal: ratio <= 1.0). Both run back to back
  in each of several rounds (each first in turn, ``gc.collect()`` before each), in this
  process; the ratio is the median of the rounds' ratios (load drifting between rounds
  cancels out), printed with their range and the process-CPU ratio.

Without ``../shared`` (or ``$ZT_SHARED_DIR``) the benchmark says so and measures nothing.
"""

import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROUNDS = 7
TEMPLATE = "corpus/gcpc-2.22/shipped/v1.automl.tabular.automl_tabular_pipeline.yaml"
PARAMETERS = {
    "project": "bench-project",
    "location": "us-central1",
    "root_dir": "gs://bench-bucket/root",
}


def _shared() -> Path:
    root = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("ZT_SHARED_DIR", root.parent / "shared"))


def _pairs(
    baseline: Callable[[], object], measured: Callable[[], object], rounds: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(wall, process CPU) seconds of each side per round, each side first in turn."""
    base: list[tuple[float, float]] = []
    mine: list[tuple[float, float]] = []
    for index in range(rounds):
        pair = [(baseline, base), (measured, mine)]
        for fn, out in pair if index % 2 == 0 else pair[::-1]:
            gc.collect()
            started, used = time.perf_counter(), time.process_time()
            fn()
            out.append((time.perf_counter() - started, time.process_time() - used))
    return base, mine


def run() -> list[str]:
    """Measure and return report lines."""
    source = _shared() / TEMPLATE
    if not source.is_file():
        return [f"skipped: {source} is missing (the GCPC corpus lives in ../shared)"]
    from kfp import components

    from zt_pipelines.spec import dump_template, rewrite_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rewritten.yaml"

        def rewrite_file() -> None:
            result = rewrite_pipeline(
                source,
                project=PARAMETERS["project"],
                location=PARAMETERS["location"],
                parameter_values=PARAMETERS,
            )
            out.write_text(dump_template(result), encoding="utf-8")

        try:
            rewrite_file()  # warm-up, and the error if this build cannot rewrite it yet
        except Exception as exc:  # report, never crash the other benchmarks
            return [f"rewrite failed: {type(exc).__name__}: {exc}"[:300]]
        base, mine = _pairs(
            lambda: components.load_component_from_file(str(source)), rewrite_file, ROUNDS
        )
        walls = sorted(m[0] / b[0] for m, b in zip(mine, base, strict=True))
        cpus = sorted(m[1] / b[1] for m, b in zip(mine, base, strict=True))
        load_s = statistics.median(b[0] for b in base)
        rewrite_s = statistics.median(m[0] for m in mine)
        size_in, size_out = source.stat().st_size, out.stat().st_size
        steps = len(
            rewrite_pipeline(
                source,
                project=PARAMETERS["project"],
                location=PARAMETERS["location"],
                parameter_values=PARAMETERS,
            ).steps
        )
    return [
        f"{source.name}: {size_in // 1024} KB -> {size_out // 1024} KB, {steps} steps",
        f"kfp.components.load_component_from_file: {load_s * 1000:.0f} ms (median of {ROUNDS} "
        "rounds)",
        f"file -> rewrite -> file: {rewrite_s * 1000:.0f} ms -> ratio "
        f"{statistics.median(walls):.2f} (goal <= 1.0; rounds {walls[0]:.2f}-{walls[-1]:.2f}; "
        f"process CPU {statistics.median(cpus):.2f})",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
