"""Test worlds for the policy engine: the clean world file and small mutations of it."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.snapshot_file import load_snapshot

FIXTURES = Path(__file__).parent / "fixtures" / "snapshots"
WORLD_FILE = FIXTURES / "world.yaml"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

ORG = "//cloudresourcemanager.googleapis.com/organizations/100"
FOLDER = "//cloudresourcemanager.googleapis.com/folders/200"
PROJECT = "//cloudresourcemanager.googleapis.com/projects/ml-prod"
OTHER_PROJECT = "//cloudresourcemanager.googleapis.com/projects/other-proj"
ROOT_BUCKET = "//storage.googleapis.com/zt-pipeline-root"
RAW = "//storage.googleapis.com/zt-raw-data"
FEATURES = "//storage.googleapis.com/zt-features"
OTHER_BUCKET = "//storage.googleapis.com/zt-other-bucket"
DATASET = "//bigquery.googleapis.com/projects/ml-prod/datasets/analytics"

PIPELINE_SA = "pipeline-sa@ml-prod.iam.gserviceaccount.com"
INGEST_SA = "ingest-sa@ml-prod.iam.gserviceaccount.com"
TRAIN_SA = "train-sa@ml-prod.iam.gserviceaccount.com"
ALICE = "user:alice@example.com"


def sa_node(email: str) -> str:
    """The full resource name of a service account in ml-prod."""
    return f"//iam.googleapis.com/projects/ml-prod/serviceAccounts/{email}"


def world_dict() -> dict[str, Any]:
    """A fresh, mutable copy of the clean world."""
    return copy.deepcopy(_WORLD)


def world() -> Snapshot:
    """The clean world as a snapshot."""
    return load_snapshot(world_dict())


def node(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The node ``name`` of a world dict (for mutation)."""
    for n in data["nodes"]:
        if n["name"] == name:
            return n  # type: ignore[no-any-return]
    raise KeyError(name)


def grant(
    data: dict[str, Any],
    name: str,
    role: str,
    member: str,
    condition: str | None = None,
) -> dict[str, Any]:
    """Add a binding to node ``name`` of a world dict; returns the dict."""
    n = node(data, name)
    binding: dict[str, Any] = {"role": role, "members": [member]}
    if condition is not None:
        binding["condition"] = {"expression": condition, "title": "test"}
    n.setdefault("policy", {}).setdefault("bindings", []).append(binding)
    return data


def deny(
    data: dict[str, Any],
    attachment: str,
    principals: list[str],
    permissions: list[str],
    **extra: Any,
) -> dict[str, Any]:
    """Add a deny policy with one rule; returns the dict."""
    rule: dict[str, Any] = {"deniedPrincipals": principals, "deniedPermissions": permissions}
    rule.update(extra)
    data.setdefault("denyPolicies", []).append(
        {
            "name": f"deny-{len(data.get('denyPolicies', []))}",
            "attachmentPoint": attachment,
            "rules": [rule],
        }
    )
    return data


def v2_sa(email: str) -> str:
    """An IAM v2 principal identifier for a service account."""
    return f"principal://iam.googleapis.com/projects/-/serviceAccounts/{email}"


_WORLD: dict[str, Any] = yaml.safe_load(WORLD_FILE.read_text())
