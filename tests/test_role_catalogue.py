"""The shipped predefined-role catalogue, and permission names validated in every input kind.

No `from __future__ import annotations`: KFP reads component annotations at decoration time.
"""

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler, dsl

import zt_pipelines as zt
from tests.conftest import ROLES_FILE, require_shared
from zt_pipelines.declare import load_manifest
from zt_pipelines.errors import PolicyFileError, UnknownPermissionError
from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.orgpolicy import load_policy
from zt_pipelines.policy.role_catalogue import (
    catalogue_info,
    known_permissions,
    predefined_roles,
    suggest_permissions,
    validate_permission,
    with_catalogue_roles,
)
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, Snapshot, Unreadable
from zt_pipelines.provision.plan import Want, build_plan
from zt_pipelines.resources import ResourceRef
from zt_pipelines.spec import rewrite_pipeline

PROJECT = "zt-test-project"
SA = f"train-runner@{PROJECT}.iam.gserviceaccount.com"
PIPELINE_SA = f"pipeline@{PROJECT}.iam.gserviceaccount.com"
DATA = Path(__file__).resolve().parent.parent / "zt_pipelines" / "data"


def test_catalogue_holds_every_role_and_permission_of_the_public_dataset() -> None:
    with gzip.open(require_shared(ROLES_FILE), "rt") as fh:
        source = json.load(fh)["roles"]
    shipped = predefined_roles()
    assert set(shipped) == set(source)
    for name, spec in source.items():
        assert shipped[name].permissions == frozenset(spec["includedPermissions"]), name
        assert (shipped[name].title, shipped[name].stage) == (spec["title"], spec["stage"])
    info = catalogue_info()
    assert info.date == "2026-08-22" and "iann0036/iam-dataset" in info.source
    assert info.roles == len(source) and info.permissions == len(known_permissions())


def test_catalogue_is_our_compact_format_not_a_copy() -> None:
    shipped = (DATA / "predefined_roles.json.gz").read_bytes()
    assert shipped != require_shared(ROLES_FILE).read_bytes()
    assert len(shipped) < ROLES_FILE.stat().st_size / 2
    assert json.loads(gzip.decompress(shipped))["format"] == "zt-pipelines/role-catalogue@1"


def test_suggestions_name_the_closest_known_permissions() -> None:
    assert suggest_permissions("storage.objects.lst")[0] == "storage.objects.list"
    assert suggest_permissions("storag.objects.get")[0] == "storage.objects.get"
    assert suggest_permissions("bigquery.tables.getdata")[0] == "bigquery.tables.getData"
    with pytest.raises(UnknownPermissionError) as err:
        validate_permission("storage.objects.lst", where="here")
    assert "did you mean storage.objects.list" in str(err.value)
    assert err.value.suggestions[0] == "storage.objects.list" and err.value.where == "here"
    assert validate_permission("storage.objects.list") == "storage.objects.list"


def test_misspelt_permission_in_the_decorator() -> None:
    with pytest.raises(UnknownPermissionError, match=r"did you mean storage\.objects\.list"):

        @zt.step(SA, needs={"gs://raw-data": ["storage.objects.lst"]})
        @dsl.component(base_image="python:3.11")
        def train(x: int) -> int:
            return x


def test_misspelt_permission_in_a_compiled_template(tmp_path: Path) -> None:
    @zt.step(SA, needs={"gs://raw-data": ["storage.objects.list"]})
    @dsl.component(base_image="python:3.11")
    def train(x: int) -> int:
        return x

    @dsl.pipeline(name="p")
    def pipe(x: int = 1) -> None:
        train(x=x)

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipe, str(path))
    path.write_text(path.read_text().replace("storage.objects.list", "storage.objects.lst"))
    with pytest.raises(UnknownPermissionError, match=r"did you mean storage\.objects\.list"):
        rewrite_pipeline(str(path), project=PROJECT, pipeline_service_account=PIPELINE_SA)


def test_misspelt_permission_in_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "steps": {
                    "train": {"service_account": SA, "needs": {"gs://b-1": ["storage.objets.get"]}}
                }
            }
        )
    )
    with pytest.raises(UnknownPermissionError) as err:
        load_manifest(path)
    assert "storage.objects.get" in str(err.value) and str(path) in str(err.value)


def test_misspelt_permission_in_a_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "suppressions": [
                    {
                        "code": "ZT210",
                        "permission": "storage.objects.lst",
                        "justification": "reviewed by the data platform team",
                        "expires": "2099-01-01",
                    }
                ]
            }
        )
    )
    with pytest.raises(PolicyFileError) as err:
        load_policy(path)
    assert "did you mean storage.objects.list" in str(err.value)
    assert "suppressions[0].permission" in str(err.value)


@pytest.mark.parametrize("roles", ["custom", "predefined"])
def test_misspelt_permission_in_a_plan(roles: Any) -> None:
    want = Want(
        f"serviceAccount:{SA}",
        ResourceRef("//storage.googleapis.com/b-1"),
        ("storage.objects.lst",),
        "train",
    )
    with pytest.raises(UnknownPermissionError, match=r"did you mean storage\.objects\.list"):
        build_plan([want], project=PROJECT, pipeline_service_account=PIPELINE_SA, roles=roles)


def test_engine_uses_the_catalogue_when_the_snapshot_lacks_a_definition() -> None:
    bucket = "//storage.googleapis.com/b-1"
    org = "//cloudresourcemanager.googleapis.com/organizations/1"
    nodes = {
        org: Node(org, "organization"),
        bucket: Node(
            bucket,
            "bucket",
            parent=org,
            policy=AllowPolicy((Binding("roles/storage.objectViewer", (f"serviceAccount:{SA}",)),)),
        ),
    }
    now = __import__("datetime").datetime(2026, 11, 1)
    ev = Evaluator(Snapshot(nodes=nodes))
    assert ev.decide(f"serviceAccount:{SA}", bucket, "storage.objects.get", now=now).granted
    assert ev.catalogue_used == {"roles/storage.objectViewer"}
    # a definition in the snapshot (live or file) overrides the catalogue
    narrowed = Role("roles/storage.objectViewer", frozenset({"storage.objects.list"}))
    ev = Evaluator(Snapshot(nodes=nodes, roles={narrowed.name: narrowed}))
    assert (
        ev.decide(f"serviceAccount:{SA}", bucket, "storage.objects.get", now=now).state
        == "not_granted"
    )
    assert not ev.catalogue_used


def test_with_catalogue_roles_fills_bound_predefined_roles_only() -> None:
    node = Node(
        "//storage.googleapis.com/b-1",
        "bucket",
        policy=AllowPolicy(
            (
                Binding("roles/storage.objectViewer", ("user:a@x.com",)),
                Binding("projects/p/roles/custom1", ("user:a@x.com",)),
                Binding("roles/iam.serviceAccountUser", ("user:a@x.com",)),
            )
        ),
    )
    live = Role("roles/iam.serviceAccountUser", frozenset({"iam.serviceAccounts.actAs"}))
    snap = Snapshot(
        nodes={node.name: node},
        roles={live.name: live},
        unreadable=(
            Unreadable("roles/storage.objectViewer", "roles.get", "PERMISSION_DENIED"),
            Unreadable("projects/p/roles/custom1", "roles.get", "PERMISSION_DENIED"),
        ),
    )
    filled = with_catalogue_roles(snap)
    assert filled.roles["roles/iam.serviceAccountUser"] is live  # live wins
    assert "storage.objects.get" in filled.roles["roles/storage.objectViewer"].permissions
    assert "projects/p/roles/custom1" not in filled.roles
    assert [u.target for u in filled.unreadable] == ["projects/p/roles/custom1"]
