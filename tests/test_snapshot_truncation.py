"""Snapshot completeness and values that must not be coerced (issue #10 classes 10 and 11).

A snapshot file cut at a line boundary, a hand-written world without a section, groups that
differ only in case, a role stage that is almost Google's, ``needs: null``: each used to describe
a more permissive world than the real one. Now: absent = unknown (refused as ZT400), a digest
catches cut and edited files, collisions and near-enums are typed errors."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler
from policy_worlds import (
    FEATURES,
    NOW,
    PIPELINE_SA,
    PROJECT,
    TRAIN_SA,
    WORLD_FILE,
    deny,
    v2_sa,
    world_dict,
)
from test_check_cli import demo

import zt_pipelines as zt
from zt_pipelines.declare import load_manifest
from zt_pipelines.errors import ManifestError, SnapshotError
from zt_pipelines.loaders import dump_yaml
from zt_pipelines.policy.catalogue import roles_from_catalogue
from zt_pipelines.policy.snapshot_file import (
    dump_snapshot,
    integrity_digest,
    load_snapshot,
    seal,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tpl") / "demo.yaml"
    compiler.Compiler().compile(demo, str(out))  # ingest + train, allowed in the clean world
    return out


def check(template: Path, snapshot: Any) -> Any:
    return zt.check(
        str(template),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://zt-pipeline-root/runs",
        snapshot=snapshot,
        submitter="user:alice@example.com",
        now=NOW,
    )


def denied_world() -> dict[str, Any]:
    """The clean world plus a deny policy that takes the train step's read away."""
    return deny(world_dict(), PROJECT, [v2_sa(TRAIN_SA)], ["storage.googleapis.com/objects.get"])


def codes(report: Any) -> set[str]:
    return {f.code for f in report.findings}


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return path


# ------------------------------------------------------------------ class 11: truncation


def test_the_baselines(template: Path, tmp_path: Path) -> None:
    assert check(template, WORLD_FILE).allowed
    refused = check(template, write_yaml(tmp_path / "d.yaml", denied_world()))
    assert not refused.allowed and "ZT202" in codes(refused)


def test_a_file_cut_before_denypolicies_is_refused_not_a_more_permissive_world(
    template: Path, tmp_path: Path
) -> None:
    data = denied_world()
    # the review's case: sections in an order where a cut at a line boundary drops the deny
    ordered = {k: data[k] for k in data if k != "denyPolicies"}
    text = yaml.safe_dump(ordered, sort_keys=False)
    cut = tmp_path / "cut.yaml"
    cut.write_text(text)  # ...denyPolicies: and everything after it is gone
    report = check(template, cut)
    assert not report.allowed
    assert any(
        f.code == "ZT400" and "no denyPolicies section" in f.message for f in report.findings
    )


def test_a_file_without_unreadable_is_refused(template: Path, tmp_path: Path) -> None:
    data = world_dict()
    data["unreadable"] = [
        {"target": FEATURES, "what": "storage.buckets.getIamPolicy", "reason": "DENIED"}
    ]
    assert not check(template, write_yaml(tmp_path / "u.yaml", data)).allowed
    del data["unreadable"]
    report = check(template, write_yaml(tmp_path / "no-u.yaml", data))
    assert not report.allowed
    assert any("no unreadable section" in f.message for f in report.findings)


def test_absent_sections_in_json_and_gzip_files(template: Path, tmp_path: Path) -> None:
    import gzip

    data = denied_world()
    del data["denyPolicies"]
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps(data))
    assert not check(template, as_json).allowed
    as_gz = tmp_path / "s.json.gz"
    as_gz.write_bytes(gzip.compress(json.dumps(data).encode()))
    assert not check(template, as_gz).allowed


def test_present_and_empty_differs_from_absent(template: Path, tmp_path: Path) -> None:
    data = world_dict()
    assert data["denyPolicies"] == [] and data["unreadable"] == []
    report = check(template, write_yaml(tmp_path / "empty.yaml", data))
    assert report.allowed
    (note,) = report.by_code("ZT401")  # a hand-written world: it says so
    assert note.severity == "note" and "integrity digest" in note.message


def test_a_python_dict_is_taken_as_complete(template: Path) -> None:
    data = world_dict()
    del data["denyPolicies"], data["unreadable"]
    report = check(template, data)
    assert report.allowed and "ZT401" not in codes(report)


# ------------------------------------------------------------------ class 11: integrity


def test_sealed_snapshots_load_in_yaml_and_json(template: Path, tmp_path: Path) -> None:
    sealed = seal(dump_snapshot(load_snapshot(world_dict())))
    assert sealed["integrity"]["sha256"] == integrity_digest(sealed)
    as_yaml = tmp_path / "s.yaml"
    as_yaml.write_text(dump_yaml([sealed]))
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps(sealed, indent=2))
    for path in (as_yaml, as_json):
        report = check(template, path)
        assert report.allowed and "ZT401" not in codes(report)


@pytest.mark.parametrize("cut", [0.25, 0.5, 0.9])
def test_a_sealed_file_cut_at_any_line_is_refused(tmp_path: Path, cut: float) -> None:
    data = seal(dump_snapshot(load_snapshot(denied_world())))
    lines = dump_yaml([data]).splitlines(keepends=True)
    seal_lines = [i for i, line in enumerate(lines) if line.startswith(("integrity", "  sha256"))]
    body = [line for i, line in enumerate(lines) if i not in seal_lines]
    kept = body[: int(len(body) * cut)] + [lines[i] for i in seal_lines] + ["version: 1\n"]
    path = tmp_path / "cut.yaml"
    path.write_text("".join(kept))
    with pytest.raises(SnapshotError, match="integrity digest"):
        load_snapshot(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["denyPolicies"].clear(),
        lambda d: d["unreadable"].append({"target": FEATURES, "what": "x", "reason": ""}),
        lambda d: d["nodes"][0].update(displayName="renamed"),
        lambda d: d.pop("groups"),
    ],
)
def test_an_edited_sealed_file_is_refused(tmp_path: Path, edit: Any) -> None:
    data = seal(dump_snapshot(load_snapshot(denied_world())))
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match=r"\$\.integrity\.sha256"):
        load_snapshot(path)


def test_a_malformed_digest_is_a_schema_error(tmp_path: Path) -> None:
    data = seal(world_dict())
    data["integrity"] = {"sha256": "abc"}
    with pytest.raises(SnapshotError, match="integrity"):
        load_snapshot(write_yaml(tmp_path / "bad.yaml", data))


# ------------------------------------------------------------------ class 10: collisions


@pytest.mark.parametrize(
    "names",
    [
        ("ml-team@example.com", "ML-team@example.com"),
        ("ml-team@example.com", "ml-team@EXAMPLE.COM"),
        ("ML-TEAM@EXAMPLE.COM", "ml-team@example.com"),
    ],
)
def test_groups_differing_in_case_are_refused(names: tuple[str, str]) -> None:
    data = world_dict()
    data["groups"] = {names[0]: [f"serviceAccount:{TRAIN_SA}"], names[1]: []}
    with pytest.raises(SnapshotError, match="same group"):
        load_snapshot(data)


@pytest.mark.parametrize("stage", ["disabled", "DISABLED ", "Disabled", "", "GA\n", "ENABLED", 1])
def test_role_stage_must_be_googles_exact_enum(stage: Any, tmp_path: Path) -> None:
    data = world_dict()
    data["roles"][0]["stage"] = stage
    with pytest.raises(SnapshotError, match="stage"):
        load_snapshot(data)
    with pytest.raises(SnapshotError, match="stage"):
        roles_from_catalogue({"roles": {"roles/x.y": {"stage": stage}}})


@pytest.mark.parametrize("stage", ["ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP"])
def test_every_google_stage_loads(stage: str) -> None:
    data = world_dict()
    data["roles"][0]["stage"] = stage
    assert load_snapshot(data).roles[data["roles"][0]["name"]].stage == stage


def test_catalogue_deleted_must_be_a_boolean() -> None:
    for value in ("false", 0, None):
        with pytest.raises(SnapshotError, match="deleted"):
            roles_from_catalogue({"roles": {"roles/x.y": {"deleted": value}}})


@pytest.mark.parametrize(
    "entry",
    [
        "needs: null",
        "needs: ~",
        "needs:",
        "service_account: null",
        "network: null",
    ],
)
def test_null_in_a_manifest_is_refused_never_no_needs(tmp_path: Path, entry: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(f"steps:\n  train:\n    {entry}\n")
    with pytest.raises(ManifestError, match="is null"):
        load_manifest(path)


@pytest.mark.parametrize(
    "path",
    [
        ["denyPolicies"],
        ["unreadable"],
        ["groups"],
        ["roles"],
        ["nodes", 0, "parent"],
        ["nodes", 0, "policy"],
        ["roles", 0, "stage"],
        ["roles", 0, "deleted"],
        ["serviceAccounts", 0, "disabled"],
    ],
)
def test_null_is_never_empty_or_default_in_a_snapshot(path: list[Any]) -> None:
    data = world_dict()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = None
    with pytest.raises(SnapshotError):
        load_snapshot(data)


@pytest.mark.parametrize(
    "text",
    [
        "severities: null\n",
        "severities: {ZT210: null}\n",
        "network: null\n",
        "regions: null\n",
        "suppressions: [null]\n",
        "excessThreshold: null\n",
        "severities: {ZT210: Warning}\n",  # enums are exact, never coerced
        "severities: {ZT210: 'warning '}\n",
    ],
)
def test_null_and_near_enums_in_a_policy_are_refused(tmp_path: Path, text: str) -> None:
    from zt_pipelines.errors import PolicyFileError
    from zt_pipelines.policy.orgpolicy import load_policy

    path = tmp_path / "zt-policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError):
        load_policy(path)
