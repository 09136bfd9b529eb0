"""Rewrite speed against kfp's own compile, and import cost against ``import kfp``.

* rewrite: a generated 500-task pipeline (chains, a loop, a condition, a sub-pipeline) is
  compiled by kfp (baseline) and rewritten by zt (measured); ratio = rewrite / compile
  (goal <= 0.2).
* load + rewrite + dump: what every CLI call does (template file -> rewritten YAML text);
  ratio = that / compile (goal <= 0.3, issue #14), with the strict libyaml loader and the
  block YAML writer of ``zt_pipelines.loaders``; PyYAML's own CSafeLoader + CSafeDumper on the
  same file are printed as a second baseline.
* Rounds: each round runs the compile and every measured thing back to back (the order
  rotating from round to round, ``gc.collect()`` before each), and a ratio is the median of
  the rounds' own ratios (with their range): load drifting between rounds cancels out.
  Process-CPU ratios are printed too (a busy machine moves wall time more than CPU).
* import: the time of ``import X`` measured inside fresh interpreters (subprocesses);
  ratio = zt_pipelines / kfp (goal <= 1.1). Median of several repeats.
"""

import gc
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TASKS = 500
ROUNDS = 7
IMPORT_REPEATS = 7


def _build_pipeline(n_tasks: int) -> Any:
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def step(x: int) -> int:
        return x + 1

    @dsl.pipeline(name="inner")
    def inner(x: int) -> int:
        return step(x=step(x=x).output).output

    @dsl.pipeline(name="bench-500")
    def pipeline(seed: int = 1) -> None:
        made = 0
        previous = step(x=seed)
        made += 1
        with dsl.ParallelFor([1, 2, 3]) as item:
            step(x=item)
        made += 1
        with dsl.If(previous.output > 0):
            step(x=seed)
        made += 1
        inner(x=seed)
        made += 2
        while made < n_tasks:
            previous = step(x=previous.output)
            made += 1

    return pipeline


def _rounds(
    fns: dict[str, Callable[[], object]], rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """(wall, process CPU) seconds of each function in each round; the order rotates."""
    names = list(fns)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            gc.collect()  # no side pays for another's garbage
            started, used = time.perf_counter(), time.process_time()
            fns[name]()
            times[name].append((time.perf_counter() - started, time.process_time() - used))
    return times


def _ratio(times: dict[str, list[tuple[float, float]]], name: str, base: str) -> str:
    """Median of the rounds' wall ratios (range), and of their process-CPU ratios."""
    walls = sorted(m[0] / b[0] for m, b in zip(times[name], times[base], strict=True))
    cpus = sorted(m[1] / b[1] for m, b in zip(times[name], times[base], strict=True))
    return (
        f"ratio {statistics.median(walls):.3f} (rounds {walls[0]:.3f}-{walls[-1]:.3f}; "
        f"process CPU {statistics.median(cpus):.3f})"
    )


def _ms(times: dict[str, list[tuple[float, float]]], name: str) -> str:
    return f"{statistics.median(t[0] for t in times[name]) * 1000:.1f} ms"


def _import_time(modules: str, repeats: int) -> float:
    """Median seconds to import ``modules`` in a fresh interpreter (timed inside it)."""
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return statistics.median(times)


def _pyyaml_round_trip(path: Path) -> str:
    """What PyYAML's own C loader and dumper cost on the same file (the previous design)."""
    import yaml

    docs = list(yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader))
    return yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=True, width=4096)


def run() -> list[str]:
    """Measure and return report lines."""
    from kfp import compiler

    from zt_pipelines.spec import dump_template, load_template, rewrite_pipeline

    pipeline = _build_pipeline(TASKS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        spec, docs = load_template(path)
        steps = len(rewrite_pipeline((spec, docs), project="bench-project").steps)
        times = _rounds(
            {
                "compile": lambda: compiler.Compiler().compile(pipeline, str(path)),
                "rewrite": lambda: rewrite_pipeline((spec, docs), project="bench-project"),
                "full": lambda: dump_template(rewrite_pipeline(path, project="bench-project")),
                "pyyaml": lambda: _pyyaml_round_trip(path),
            },
            ROUNDS,
        )

    kfp_s = _import_time("kfp", IMPORT_REPEATS)
    zt_s = _import_time("zt_pipelines", IMPORT_REPEATS)
    spec_s = _import_time("zt_pipelines.spec, zt_pipelines.declare", IMPORT_REPEATS)
    return [
        f"pipeline: {steps} container tasks; kfp compile {_ms(times, 'compile')} (median of "
        f"{ROUNDS} rounds)",
        f"rewrite (IR in memory): {_ms(times, 'rewrite')} -> {_ratio(times, 'rewrite', 'compile')}"
        " (goal <= 0.2)",
        f"load + rewrite + dump (file to YAML text): {_ms(times, 'full')} -> "
        f"{_ratio(times, 'full', 'compile')} (goal <= 0.3)",
        f"  baseline: PyYAML CSafeLoader load + CSafeDumper dump alone (no rewrite): "
        f"{_ms(times, 'pyyaml')} -> {_ratio(times, 'pyyaml', 'compile')}",
        f"import (fresh interpreter, median of {IMPORT_REPEATS}): "
        f"kfp {kfp_s * 1000:.0f} ms, zt_pipelines {zt_s * 1000:.1f} ms -> ratio "
        f"{zt_s / kfp_s:.3f} (goal <= 1.1)",
        f"import zt_pipelines.spec + declare: {spec_s * 1000:.1f} ms -> ratio "
        f"{spec_s / kfp_s:.3f} vs kfp",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
