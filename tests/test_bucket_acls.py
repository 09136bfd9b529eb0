"""The ACLs of a bucket without uniform bucket-level access: read live with the same
``buckets.get`` (``projection=full``) through the real storage client against the emulator,
carried by snapshot files, and judged — public entries (bucket or default object ACL) are
ZT213, entries reaching a pipeline identity (by name, group, project team) ZT403; the bucket
stays ZT402."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_live_check import EX, example_world, run_check, templates

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.errors import SnapshotError
from zt_pipelines.policy.report import Report
from zt_pipelines.policy.snapshot import AclEntry, Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot

__all__ = ["templates"]  # the module fixture, shared with test_live_check

ROOT_BUCKET = "//storage.googleapis.com/zt-demo-pipeline-root"


def with_acls(
    world: Snapshot,
    acl: tuple[AclEntry, ...] | None,
    default: tuple[AclEntry, ...] | None = (),
    bucket: str = ROOT_BUCKET,
) -> Snapshot:
    """``world`` where ``bucket`` has fine-grained access with these ACLs."""
    nodes = dict(world.nodes)
    nodes[bucket] = replace(
        nodes[bucket], uniform_bucket_level_access=False, acl=acl, default_object_acl=default
    )
    return replace(world, nodes=nodes)


def found(report: Report, code: str) -> list[str]:
    return [f.message for f in report.findings if f.code == code]


@pytest.fixture()
def public_default_acl() -> Iterator[Emulator]:
    """The demo world whose pipeline root gives every new object to allUsers and is owned,
    through its bucket ACL, by train-sa."""
    world = with_acls(
        example_world(),
        (AclEntry(f"user-{EX.TRAIN_SA}", "OWNER"), AclEntry("project-owners-123", "OWNER")),
        (AclEntry("allUsers", "READER"),),
    )
    with Emulator(world) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        yield emu


def test_acls_are_read_live_and_judged(
    public_default_acl: Emulator, templates: dict[str, str]
) -> None:
    report = run_check(templates["training"])
    public = found(report, "ZT213")
    assert any("every new object" in m and "allUsers" in m for m in public), public
    mine = found(report, "ZT403")
    assert any(EX.TRAIN_SA in m and "OWNER" in m and "bucket ACL" in m for m in mine), mine
    [zt402] = found(report, "ZT402")
    assert "were read" in zt402 and "allUsers READER" in zt402, zt402
    assert not report.allowed
    # no extra read: the ACLs come with the buckets.get made for the project number
    methods = {r.method for r in public_default_acl.request_log if r.api == "storage"}
    assert methods <= {
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "storage.hmacKeys.list",
    }
    gets = [r.target for r in public_default_acl.request_log if r.method == "storage.buckets.get"]
    assert len(gets) == len(set(gets)), gets


def test_the_file_round_trip_and_live_equal_offline(
    templates: dict[str, str], tmp_path: Path
) -> None:
    world = with_acls(
        example_world(),
        (AclEntry(f"user-{EX.TRAIN_SA}", "WRITER"),),
        (AclEntry("allAuthenticatedUsers", "READER"),),
    )
    out = tmp_path / "w.json"
    out.write_text(json.dumps(dump_snapshot(world)))
    loaded = load_snapshot(out)
    assert loaded.nodes[ROOT_BUCKET].acl == (AclEntry(f"user-{EX.TRAIN_SA}", "WRITER"),)
    report = run_check(templates["training"], loaded)
    assert found(report, "ZT403") and any(
        "allAuthenticatedUsers" in m for m in found(report, "ZT213")
    )


def test_groups_and_project_teams_reach_identities(templates: dict[str, str]) -> None:
    unknown_group = with_acls(example_world(), (AclEntry("group-ml@example.com", "OWNER"),))
    assert any(
        "may hold" in m for m in found(run_check(templates["training"], unknown_group), "ZT403")
    )
    known = replace(unknown_group, groups={"ml@example.com": (f"serviceAccount:{EX.TRAIN_SA}",)})
    assert any(
        EX.TRAIN_SA in m and "holds OWNER" in m
        for m in found(run_check(templates["training"], known), "ZT403")
    )
    other = with_acls(example_world(), (AclEntry("user-someone@example.com", "OWNER"),))
    report = run_check(templates["training"], other)
    assert not found(report, "ZT403") and not found(report, "ZT213")
    assert found(report, "ZT402")  # another principal's entry: still not governed by IAM alone


def test_an_entity_by_numeric_id_is_matched_or_unknown(templates: dict[str, str]) -> None:
    """``user-ID`` / ``group-ID`` are documented entity forms: a service account's id is its
    unique id; an id the check cannot place is "may hold", never "not this identity"."""
    world = example_world()
    accounts = dict(world.service_accounts)
    accounts[EX.TRAIN_SA] = replace(accounts[EX.TRAIN_SA], unique_id="1003")
    world = replace(world, service_accounts=accounts)
    by_id = with_acls(world, (AclEntry("user-1003", "OWNER"),))
    assert any(
        EX.TRAIN_SA in m and "holds OWNER" in m
        for m in found(run_check(templates["training"], by_id), "ZT403")
    )
    other = with_acls(world, (AclEntry("user-2004", "OWNER"),))
    assert not [
        m for m in found(run_check(templates["training"], other), "ZT403") if EX.TRAIN_SA in m
    ]
    group = with_acls(world, (AclEntry("group-00abc", "OWNER"),))
    assert any("may hold" in m for m in found(run_check(templates["training"], group), "ZT403"))


def test_acls_on_a_non_bucket_node_are_refused(tmp_path: Path) -> None:
    data = dump_snapshot(example_world())
    project = next(n for n in data["nodes"] if n["kind"] == "project")
    project["acl"] = [{"entity": "allUsers", "role": "READER"}]
    data.pop("integrity", None)
    out = tmp_path / "w.json"
    out.write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match="acl"):
        load_snapshot(out)


def test_the_emulator_serves_acls_to_the_real_client_with_iam() -> None:
    from google.api_core import exceptions
    from google.cloud import storage

    world = with_acls(example_world(), (AclEntry("allUsers", "READER"),), ())
    with Emulator(world) as emu:

        def client(caller: str) -> storage.Client:
            return storage.Client(
                project=EX.PROJECT,
                credentials=emulator_credentials(caller),
                client_options={"api_endpoint": f"http://{emu.address}"},
            )

        bucket = client(EX.SUBMITTER).bucket("zt-demo-pipeline-root")
        bucket.reload(projection="full")
        assert [(e["entity"], e["role"]) for e in bucket._properties["acl"]] == [
            ("allUsers", "READER")
        ]
        assert bucket._properties["defaultObjectAcl"] == []
        uniform = client(EX.SUBMITTER).bucket("zt-demo-raw-data")
        uniform.reload(projection="full")
        assert "acl" not in uniform._properties  # uniform access: no ACLs
        # projection=full needs getIamPolicy: a caller with buckets.get only is refused
        reader = client(f"serviceAccount:{EX.TRAIN_SA}").bucket("zt-demo-pipeline-root")
        with pytest.raises(exceptions.Forbidden):
            reader.reload(projection="full")
