"""House rules that hold for every module: production code never imports the emulator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "zt_pipelines"
# the emulator itself, the demo that starts it, and the CLI (its `emulator` verb) may
MAY_IMPORT_EMULATOR = ("emulator/", "demo.py", "cli/")


def _imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every absolute module name ``path`` imports (``from a import b`` yields ``a`` and
    ``a.b``, so ``from zt_pipelines import emulator`` is caught too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    if package is None:
        package = ".".join(("zt_pipelines", *path.relative_to(PACKAGE).parent.parts))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _is_emulator(module: str) -> bool:
    return module == "zt_pipelines.emulator" or module.startswith("zt_pipelines.emulator.")


def test_no_production_module_imports_the_emulator() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(MAY_IMPORT_EMULATOR):
            continue
        bad = sorted(m for m in _imported_modules(path) if _is_emulator(m))
        if bad:
            offenders.append(f"{rel}: {', '.join(bad)}")
    assert offenders == []


def test_the_checker_sees_relative_and_from_package_imports(tmp_path: Path) -> None:
    # the rule above must not pass because the scanner misses a spelling
    sample = tmp_path / "probe.py"
    spellings = [
        "from zt_pipelines import emulator",
        "import zt_pipelines.emulator.auth",
        "from ..emulator import auth",
        "from zt_pipelines.emulator.auth import token_for",
    ]
    for line in spellings:
        sample.write_text(line + "\n")
        assert any(_is_emulator(m) for m in _imported_modules(sample, "zt_pipelines.gcp")), line


def test_live_mode_and_the_drop_in_load_without_the_emulator() -> None:
    # importing the production surface (live clients, the drop-in job, the template fetch)
    # must not load any emulator module, not even lazily through a helper
    code = (
        "import sys, zt_pipelines.gcp.clients, zt_pipelines.gcp.templates, zt_pipelines.job, "
        "zt_pipelines.verification\n"
        "from zt_pipelines.gcp.clients import ClientFactory\n"
        "import os; os.environ['ZT_EMULATOR_HOST']='127.0.0.1:1'; "
        "os.environ['ZT_EMULATOR_CALLER']='user:a@example.com'\n"
        "ClientFactory().credentials\n"
        "print(sorted(m for m in sys.modules if m.startswith('zt_pipelines.emulator')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
