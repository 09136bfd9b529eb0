"""Realism: the engine on the real predefined-role catalogue (../shared/data)."""

from __future__ import annotations

from typing import Any

import pytest
from policy_worlds import (
    FEATURES,
    NOW,
    OTHER_BUCKET,
    PROJECT,
    RAW,
    TRAIN_SA,
    grant,
    world_dict,
)
from test_check_codes import STEPS, run

from zt_pipelines.policy.catalogue import BASIC_ROLES, ESCALATION_PERMISSIONS, escalation_reason
from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.snapshot import Role
from zt_pipelines.policy.snapshot_file import load_snapshot, roles_from_catalogue
from zt_pipelines.resources import normalize_resource

TRAIN = f"serviceAccount:{TRAIN_SA}"


@pytest.fixture(scope="module")
def real_roles(predefined_roles: dict[str, Any]) -> dict[str, Role]:
    return roles_from_catalogue({"roles": predefined_roles})


def real_world(real_roles: dict[str, Role]) -> dict[str, Any]:
    data = world_dict()
    data["roles"] = [r for r in data["roles"] if not r["name"].startswith("roles/")]
    return data


def test_editor_is_zt211_with_the_real_permission_count(real_roles: dict[str, Role]) -> None:
    data = grant(real_world(real_roles), PROJECT, "roles/editor", TRAIN)
    report = run(load_snapshot(data, roles=real_roles), steps=STEPS)
    (f,) = report.by_code("ZT211")
    assert "11,979 permissions" in f.message
    assert f.evidence[0].role == "roles/editor" and f.evidence[0].node == PROJECT
    # editor also carries escalation-capable permissions the step does not need
    esc = [g for g in report.by_code("ZT212") if g.step == "train" and g.resource == PROJECT]
    assert esc and "iam.serviceAccounts.actAs" in esc[0].message
    assert not report.allowed


def test_object_viewer_on_one_bucket_only(real_roles: dict[str, Role]) -> None:
    data = grant(real_world(real_roles), RAW, "roles/storage.objectViewer", TRAIN)
    ev = Evaluator(load_snapshot(data, roles=real_roles))
    d = ev.decide(TRAIN, normalize_resource("gs://zt-raw-data"), "storage.objects.get", now=NOW)
    assert d.granted and d.evidence[0].role == "roles/storage.objectViewer"
    assert d.evidence[0].node == RAW
    assert ev.decide(TRAIN, OTHER_BUCKET, "storage.objects.get", now=NOW).state == "not_granted"
    ingest = "serviceAccount:ingest-sa@ml-prod.iam.gserviceaccount.com"
    assert ev.decide(ingest, FEATURES, "storage.objects.get", now=NOW).state == "not_granted"
    assert ev.decide(TRAIN, RAW, "storage.objects.delete", now=NOW).state == "not_granted"
    assert ev.decide(TRAIN, RAW, "storage.buckets.setIamPolicy", now=NOW).state == "not_granted"


def test_real_world_pipeline_is_allowed(real_roles: dict[str, Role]) -> None:
    report = run(load_snapshot(real_world(real_roles), roles=real_roles), steps=STEPS)
    assert report.allowed, str(report)
    # real roles carry extras (e.g. objectViewer's storage.managedFolders.*): warnings only
    assert report.codes() <= {"ZT210", "ZT215"}
    f = next(f for f in report.by_code("ZT210") if f.step == "train" and f.resource == FEATURES)
    assert f.evidence[0].role == "roles/storage.objectViewer"


def test_catalogue_sanity(real_roles: dict[str, Role]) -> None:
    assert len(real_roles) == 2461
    assert real_roles.keys() >= BASIC_ROLES
    owner = real_roles["roles/owner"].permissions
    assert "resourcemanager.projects.setIamPolicy" in owner
    assert escalation_reason("resourcemanager.projects.setIamPolicy")
    assert escalation_reason("storage.objects.get") is None
    # every exact escalation permission is a real one (a misspelt entry would never match)
    real = frozenset().union(*(r.permissions for r in real_roles.values()))
    assert sorted(set(ESCALATION_PERMISSIONS) - real) == []
