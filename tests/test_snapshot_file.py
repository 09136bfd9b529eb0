"""Snapshot files: strict loading, round trip, and the predefined role catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_worlds import WORLD_FILE, world, world_dict

from zt_pipelines.errors import SnapshotError
from zt_pipelines.policy.snapshot_file import (
    dump_snapshot,
    load_catalogue_file,
    load_snapshot,
    roles_from_catalogue,
    with_roles,
)


def test_world_file_loads_and_round_trips(tmp_path: Path) -> None:
    snap = load_snapshot(WORLD_FILE)
    assert snap == world()
    dumped = dump_snapshot(snap)
    assert load_snapshot(dumped) == snap
    out = tmp_path / "snap.json"
    out.write_text(json.dumps(dumped))
    assert load_snapshot(out) == snap
    out_yaml = tmp_path / "snap.yaml"
    out_yaml.write_text(yaml.safe_dump(dumped))
    assert load_snapshot(out_yaml) == snap


def test_catalogue_roles_are_added_under_the_files_roles(predefined_roles: dict[str, Any]) -> None:
    roles = roles_from_catalogue({"roles": predefined_roles})
    assert len(roles["roles/editor"].permissions) == 11979
    snap = with_roles(world(), roles)
    # the file's own (deliberately tiny) roles/editor wins over the catalogue's
    assert len(snap.roles["roles/editor"].permissions) == 8
    assert "roles/bigquery.admin" in snap.roles
    assert load_snapshot(world_dict(), roles=roles).roles.keys() == snap.roles.keys()


def test_catalogue_file_reader(tmp_path: Path) -> None:
    path = tmp_path / "roles.json"
    path.write_text(json.dumps({"roles": {"roles/x.y": {"includedPermissions": ["a.b.c"]}}}))
    assert load_catalogue_file(path)["roles/x.y"].permissions == frozenset({"a.b.c"})
    path.write_text(json.dumps({"roles": {"roles/x.y": {"includedPermissions": "a.b.c"}}}))
    with pytest.raises(SnapshotError, match=r"roles\.json"):
        load_catalogue_file(path)


def test_gzipped_json_snapshot(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "snap.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(dump_snapshot(world()), fh)
    assert load_snapshot(path) == world()
