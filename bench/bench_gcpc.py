"""Rewriting Google's own AutoML Tabular pipeline, against kfp loading the same file.

* file → rewrite → file: ``load_template`` + ``rewrite_pipeline`` (with the parameters the
  corpus test uses: project, location, root_dir) + ``dump_template`` + writing the YAML, for
  ``../shared/corpus/gcpc-2.22/shipped/v1.automl.tabular.automl_tabular_pipeline.yaml``
  (the largest shipped GCPC template, ~500 KB); baseline: ``kfp.components.
  load_component_from_file`` on the same file (goal: ratio <= 1.0). Medians of several
  repeats, both in this process.

Without ``../shared`` (or ``$ZT_SHARED_DIR``) the benchmark says so and measures nothing.
"""

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPEATS = 5
TEMPLATE = "corpus/gcpc-2.22/shipped/v1.automl.tabular.automl_tabular_pipeline.yaml"
PARAMETERS = {
    "project": "bench-project",
    "location": "us-central1",
    "root_dir": "gs://bench-bucket/root",
}


def _shared() -> Path:
    root = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("ZT_SHARED_DIR", root.parent / "shared"))


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
        load_s = _median_time(lambda: components.load_component_from_file(str(source)), REPEATS)
        rewrite_s = _median_time(rewrite_file, REPEATS)
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
        f"kfp.components.load_component_from_file: {load_s * 1000:.0f} ms (median of {REPEATS})",
        f"file -> rewrite -> file: {rewrite_s * 1000:.0f} ms -> ratio {rewrite_s / load_s:.2f} "
        "(goal <= 1.0)",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
