"""A live report speaks of what was read, not of "the snapshot": a resource the pipeline names
that does not exist "was not found", one the checker may not read "could not be read"; a
snapshot file keeps "is not in the snapshot". A read that found nothing gets a fix that helps
(check the name), not "grant the read role", and one headline naming the resource."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.policy.render import headline, render_text
from zt_pipelines.policy.report import Report
from zt_pipelines.policy.snapshot import Snapshot, Unreadable
from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.verification import check

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_job import PIPELINE_SA, WORLD

ALICE = "user:alice@example.com"
NOBODY = "serviceAccount:nobody@zt-demo.iam.gserviceaccount.com"
GHOST = "//storage.googleapis.com/zt-ghost-bucket"
GHOST_NEED = {"gs://zt-ghost-bucket": ["storage.objects.get"]}


# kfp reads annotations as types: the pipeline is built outside this module's
# ``from __future__ import annotations``
_PIPELINE = """
from kfp import dsl
from kfp.dsl import Dataset, Output
import zt_pipelines as zt

@zt.step("ingest-sa@zt-demo.iam.gserviceaccount.com", needs=NEEDS)
@dsl.component(base_image="python:3.11-slim")
def ingest(dataset: Output[Dataset]):
    pass

@dsl.pipeline(name="live-words", pipeline_root="gs://zt-demo-pipeline-root/runs")
def pipe():
    ingest()
"""


def _template(needs: dict[str, list[str]], out: Path) -> str:
    """A one-step pipeline compiled to ``out``: ``ingest`` as ingest-sa with ``needs``."""
    import importlib.util

    from kfp import compiler

    source = out / "live_words_pipeline.py"
    source.write_text(_PIPELINE.replace("NEEDS", repr(needs)))
    spec = importlib.util.spec_from_file_location("live_words_pipeline", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compiler.Compiler().compile(module.pipe, str(out / "p.yaml"))
    return str(out / "p.yaml")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_snapshot(WORLD)) as emu:
        yield emu


def _live(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, caller: str, out: Path) -> Report:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    return check(
        _template(GHOST_NEED, out),
        project="zt-demo",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        credentials=emulator_credentials(caller),
    )


def _said(report: Report) -> str:
    """Every message, evidence detail and note of ``report`` (what any format shows)."""
    parts = [*report.notes]
    for f in report.findings:
        parts.append(f.message)
        parts += [f"{e.node} {e.detail}" for e in f.evidence]
    return "\n".join(parts)


def test_a_live_report_says_not_found_for_a_resource_that_does_not_exist(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = _live(emulator, monkeypatch, ALICE, tmp_path)
    said = _said(report)
    assert "in the snapshot" not in said and "snapshot's" not in said, said
    need = [f for f in report.findings if f.code == "ZT201" and f.resource == GHOST]
    assert need and f"{GHOST} was not found" in need[0].message
    reads = [f for f in report.findings if f.code == "ZT400"]
    assert reads and all(f"{GHOST} was not found (" in f.message for f in reads)
    text = render_text(report, width=200)
    assert "check the name (the resource does not exist)" in text
    assert "give the checking identity the read role" not in text
    top = headline(report) or ""
    assert "1 resource the pipeline uses was not found (gs://zt-ghost-bucket)" in top


def test_a_live_report_says_could_not_be_read_where_the_checker_may_not_read(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = _live(emulator, monkeypatch, NOBODY, tmp_path)
    said = _said(report)
    assert "in the snapshot" not in said and "snapshot's" not in said, said
    assert "//storage.googleapis.com/zt-demo-pipeline-root could not be read" in said
    assert "lacks read access" in (headline(report) or "")


def test_a_snapshot_file_still_says_not_in_the_snapshot(tmp_path: Path) -> None:
    report = check(
        _template(GHOST_NEED, tmp_path),
        project="zt-demo",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=WORLD,
    )
    need = [f for f in report.findings if f.code == "ZT201" and f.resource == GHOST]
    assert need and f"{GHOST} is not in the snapshot" in need[0].message
    assert "was not found" not in _said(report)


def test_absent_words_follow_the_failed_read() -> None:
    name = "//storage.googleapis.com/b"
    denied = Unreadable(name, "storage.buckets.getIamPolicy", "PERMISSION_DENIED: 403")
    missing = Unreadable(name, "storage.buckets.get", "NOT_FOUND: 404")
    assert Snapshot().absent(name) == "is not in the snapshot"
    assert Snapshot(unreadable=(denied,)).absent(name) == "is not in the snapshot"
    assert Snapshot(live=True).absent(name) == "was not found"
    assert Snapshot(live=True, unreadable=(missing,)).absent(name) == "was not found"
    assert (
        Snapshot(live=True, unreadable=(denied,)).absent(name)
        == "could not be read (storage.buckets.getIamPolicy)"
    )
    assert (Snapshot().held, Snapshot(live=True).held) == ("in the snapshot", "read")
