"""Uniform bucket-level access (ZT402): Cloud Storage ACLs grant in parallel with IAM and zt
does not read them, so a bucket the pipeline uses must have them switched off. Read live with
the ``buckets.get`` already made for the bucket's project (real storage client against the
emulator), carried by snapshot files; unknown in a snapshot file is a note, not an error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_live_check import EX, codes, example_world, run_check, templates

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.errors import SnapshotError
from zt_pipelines.policy.report import Report
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot

__all__ = ["templates"]  # the module fixture, shared with test_live_check

ROOT_BUCKET = "//storage.googleapis.com/zt-demo-pipeline-root"
RAW = "//storage.googleapis.com/zt-demo-raw-data"


def with_uniform(world: Snapshot, bucket: str, value: bool | None) -> Snapshot:
    """``world`` where ``bucket``'s uniform bucket-level access is ``value``."""
    nodes = dict(world.nodes)
    nodes[bucket] = replace(nodes[bucket], uniform_bucket_level_access=value)
    return replace(world, nodes=nodes)


def zt402(report: Report) -> set[str]:
    return {str(f.resource) for f in report.findings if f.code == "ZT402"}


@pytest.fixture()
def fine_grained_root() -> Iterator[Emulator]:
    """The demo world whose pipeline-root bucket has fine-grained (ACL) access control."""
    world = with_uniform(example_world(), ROOT_BUCKET, False)
    with Emulator(world) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        yield emu


def test_a_pipeline_root_without_uniform_access_is_zt402_live(
    fine_grained_root: Emulator, templates: dict[str, str]
) -> None:
    report = run_check(templates["training"])
    assert zt402(report) == {ROOT_BUCKET}
    assert not report.allowed
    found = next(f for f in report.findings if f.code == "ZT402")
    assert found.severity == "error" and "ACL" in found.message
    # no extra read: the setting comes with the buckets.get made for the project number
    methods = {r.method for r in fine_grained_root.request_log if r.api == "storage"}
    assert methods <= {
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "storage.hmacKeys.list",
        "apikeys.keys.list",
        "privilegedaccessmanager.entitlements.list",
    }


def test_the_demo_world_is_uniform_live_and_offline(templates: dict[str, str]) -> None:
    world = example_world()
    assert all(
        n.uniform_bucket_level_access is True for n in world.nodes.values() if n.kind == "bucket"
    )
    offline = run_check(templates["training"], world)
    assert "ZT402" not in codes(offline)
    assert not [n for n in offline.notes if "uniform bucket-level access" in n]


def test_a_declared_bucket_from_a_snapshot_file(templates: dict[str, str], tmp_path: Path) -> None:
    off = with_uniform(example_world(), RAW, False)
    out = tmp_path / "w.json"
    out.write_text(json.dumps(dump_snapshot(off)))
    loaded = load_snapshot(out)
    assert loaded.nodes[RAW].uniform_bucket_level_access is False
    assert zt402(run_check(templates["training"], loaded)) == {RAW}
    # absent from a snapshot file = unknown: a note, never an error (old files keep working)
    unknown = run_check(templates["training"], with_uniform(example_world(), RAW, None))
    assert "ZT402" not in codes(unknown)
    assert any(
        "uniform bucket-level access" in n and "zt-demo-raw-data" in n for n in unknown.notes
    )


def test_uniform_access_on_a_non_bucket_node_is_refused(tmp_path: Path) -> None:
    data = dump_snapshot(example_world())
    project = next(n for n in data["nodes"] if n["kind"] == "project")
    project["uniformBucketLevelAccess"] = True
    data.pop("integrity", None)
    out = tmp_path / "w.json"
    out.write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match="uniformBucketLevelAccess"):
        load_snapshot(out)


def test_the_emulator_serves_the_setting_to_the_real_client() -> None:
    from google.cloud import storage

    world = with_uniform(example_world(), ROOT_BUCKET, False)
    with Emulator(world) as emu:
        client = storage.Client(
            project=EX.PROJECT,
            credentials=emulator_credentials(EX.SUBMITTER),
            client_options={"api_endpoint": f"http://{emu.address}"},
        )
        root = client.get_bucket("zt-demo-pipeline-root")
        raw = client.get_bucket("zt-demo-raw-data")
        assert root.iam_configuration.uniform_bucket_level_access_enabled is False
        assert raw.iam_configuration.uniform_bucket_level_access_enabled is True
