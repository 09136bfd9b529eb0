"""notebooks/quickstart.ipynb runs clean against the emulator (nbclient, kernel from this venv)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def _outputs(nb: nbformat.NotebookNode) -> list[dict[str, object]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def _decisions_differ_where_specs_agree(text: str) -> None:
    """The audit cell: the refused and the allowed verify of one pipeline share the spec hash
    but not the decision hash (the record names exactly what was approved)."""
    import re

    rows = re.findall(r"^\d+\s+verify\s+(refused|allowed)\s+(\w{12}) (\w{12})$", text, re.M)
    by = {outcome: (spec, decision) for outcome, spec, decision in rows}
    assert set(by) == {"refused", "allowed"}, rows
    assert by["refused"][0] == by["allowed"][0]
    assert by["refused"][1] != by["allowed"][1]


def test_quickstart_notebook_runs_clean() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on any error outside "raises-exception" cells
    outputs = _outputs(nb)
    html = [str(o["data"]["text/html"]) for o in outputs if "text/html" in o.get("data", {})]
    # the refused report and the allowed report both render as HTML
    assert any("REFUSED" in h and "<table" in h and "ZT200" in h for h in html)
    assert any("ALLOWED" in h for h in html)
    text = "".join(str(o.get("text", "")) for o in outputs)
    assert "writes that reached the emulator: 0" in text
    assert "train                runs as train-sa@zt-demo.iam.gserviceaccount.com" in text
    assert "chain intact" in text
    _decisions_differ_where_specs_agree(text)
    # the GCPC example: planned, applied, submitted, and every CustomJob ran as its own SA
    assert "run: PIPELINE_STATE_SUCCEEDED" in text
    for task, account in (
        ("exit-handler-1-bigquery-query-job", "gcpc-query"),
        ("exit-handler-1-custom-training-job", "gcpc-train"),
        ("exit-handler-1-condition-2-model-deploy", "gcpc-deploy"),
    ):
        assert f"{task:45} runs as {account}@zt-demo.iam.gserviceaccount.com" in text
    # the happy path is quiet: no aiplatform "bucket squatting" traceback on stderr
    assert "squatting" not in text and "Traceback" not in text
    # only the cell tagged raises-exception raised, and it raised a ZeroTrustViolation
    errors = [
        cell
        for cell in nb.cells
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.outputs)
    ]
    assert all("raises-exception" in c.metadata.get("tags", []) for c in errors)
    [refused] = [c for c in nb.cells if "raises-exception" in c.metadata.get("tags", [])]
    shown = [
        str(o["data"]["text/html"]) for o in refused.outputs if "text/html" in o.get("data", {})
    ]
    assert shown and "REFUSED" in shown[0] and "ZT200" in shown[0]  # the report, not a traceback


def test_the_committed_notebook_carries_its_outputs() -> None:
    """It reads on a code host without running: the refusal, the allowed report and the
    audit trail are in the committed file (regenerate with nbclient after changing a cell)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    outputs = _outputs(nb)
    html = [str(o["data"]["text/html"]) for o in outputs if "text/html" in o.get("data", {})]
    text = "".join(str(o.get("text", "")) for o in outputs)
    assert any("REFUSED" in h for h in html) and any("ALLOWED" in h for h in html)
    assert "writes that reached the emulator: 0" in text and "chain intact" in text
    _decisions_differ_where_specs_agree(text)
    assert not any(o.get("name") == "stderr" for o in outputs)
