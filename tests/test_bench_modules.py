"""Every benchmark module of ``make bench`` imports (a helper one module takes from another
must still exist): the suite runs no benchmark, so this is what keeps ``make bench`` runnable."""

import importlib
import pkgutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(BENCH)]) if m.name.startswith("bench_"))


@pytest.mark.parametrize("name", MODULES)
def test_every_bench_module_imports_and_has_run(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert callable(module.run)


def test_there_are_bench_modules() -> None:
    assert len(MODULES) >= 10
