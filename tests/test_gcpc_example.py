"""examples/gcpc_pipeline.yaml is exactly what examples/gcpc_pipeline.py compiles to.

``make demo`` runs without google-cloud-pipeline-components (a test dependency only: it pins
aiplatform<2), so the demo submits the shipped compile; this keeps it from drifting.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "examples" / "gcpc_pipeline.py"
SHIPPED = ROOT / "examples" / "gcpc_pipeline.yaml"


def _without_sdk_version(text: str) -> list[object]:
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        if isinstance(doc, dict):
            doc.pop("sdkVersion", None)
    return docs


def test_the_shipped_compile_matches_the_source(tmp_path: Path) -> None:
    gcpc = pytest.importorskip("google_cloud_pipeline_components")
    shipped = SHIPPED.read_text(encoding="utf-8")
    tags = set(re.findall(r"google-cloud-pipeline-components:([0-9.]+)", shipped))
    if tags != {gcpc.__version__}:
        pytest.skip(f"shipped compile uses GCPC {tags}, installed is {gcpc.__version__}")
    spec = importlib.util.spec_from_file_location("zt_gcpc_example_compile", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fresh = Path(module.compile_pipeline("gcpc-training", str(tmp_path / "fresh.yaml")))
    assert _without_sdk_version(fresh.read_text(encoding="utf-8")) == _without_sdk_version(
        shipped
    ), (
        "examples/gcpc_pipeline.yaml is stale: "
        "python examples/gcpc_pipeline.py examples/gcpc_pipeline.yaml"
    )


def test_importing_the_example_needs_no_gcpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo imports the example's constants where GCPC is not installed (aiplatform 2.x)."""
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components", None)  # not importable
    spec = importlib.util.spec_from_file_location("zt_gcpc_example_no_gcpc", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PIPELINE_SA.startswith("gcpc-pipeline@")
    assert callable(module.build_pipeline)  # building the pipeline itself needs GCPC
