"""Shared fixtures: where ../shared lives, and whether its absence skips or fails."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ZT_SHARED_DIR", ROOT.parent / "shared"))
# the suite judges fixtures at fixed times (2026-...): outside a test suite a time that far
# from the machine's clock is a what-if (ZT405) and never dates a record (zt_pipelines.clock)
os.environ.setdefault("ZT_TEST_CLOCK", "1")
CORPUS = SHARED / "corpus" / "kfp-compiled"
GCPC_CORPUS = SHARED / "corpus" / "gcpc-2.22"
ROLES_FILE = SHARED / "data" / "gcp-predefined-roles.json.gz"


def require_shared(path: Path) -> Path:
    """Return ``path``; skip with a visible reason when missing, fail under CI=true."""
    if path.exists():
        return path
    message = f"{path} is missing: tests on the real corpus/role catalogue need ../shared"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: its absence is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The directory of 113 KFP-compiled pipelines."""
    return require_shared(CORPUS)


@pytest.fixture(scope="session")
def gcpc_corpus_dir() -> Path:
    """The directory of 41 GCPC 2.22 first-party pipelines (``shipped/`` and ``compiled/``)."""
    return require_shared(GCPC_CORPUS)


@pytest.fixture(scope="session")
def predefined_roles() -> dict[str, Any]:
    """``{"roles/NAME": {"title", "stage", "includedPermissions"}}`` for every predefined role."""
    with gzip.open(require_shared(ROLES_FILE), "rt") as fh:
        data: dict[str, Any] = json.load(fh)["roles"]
    return data
