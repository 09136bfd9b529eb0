"""The evaluation's memoised helpers answer exactly what they memoise (any order, any size)."""

from __future__ import annotations

import random

from zt_pipelines.policy import scope
from zt_pipelines.resources import display_uri

NAMES = [
    "//storage.googleapis.com/b",
    "//storage.googleapis.com/bkt-1",
    "//bigquery.googleapis.com/projects/p/datasets/d",
    "//bigquery.googleapis.com/projects/p/datasets/d/tables/t",
    "//cloudresourcemanager.googleapis.com/projects/p",
    "//cloudresourcemanager.googleapis.com/folders/1",
    "//iam.googleapis.com/projects/p/serviceAccounts/a@p.iam.gserviceaccount.com",
    "//aiplatform.googleapis.com/projects/p/locations/l/metadataStores/default",
]
PREFIXES = [None, "", "runs", "runs/", "step-1/", "a b/ü"]
PERMISSIONS = [
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.create",
    "storage.buckets.get",
    "bigquery.tables.getData",
    "storage.objectsx.get",
]


def test_uri_is_display_uri_memoised() -> None:
    rng = random.Random(7)
    scope.URIS.clear()
    for _ in range(2000):
        name, prefix = rng.choice(NAMES), rng.choice(PREFIXES)
        assert scope.uri(name, prefix) == display_uri(name, prefix), (name, prefix)
    scope.URIS.clear()


def test_object_permission_memo_is_object_level() -> None:
    rng = random.Random(3)
    for _ in range(500):
        name, permission = rng.choice(NAMES), rng.choice(PERMISSIONS)
        memo = scope._OBJECT_PERMISSION.get(permission)
        fresh = scope.object_permission(permission)
        assert memo in (None, fresh)
        assert (fresh and name.startswith("//storage.googleapis.com/")) == scope.object_level(
            name, permission
        )
