"""Build the predefined-role catalogue shipped in ``zt_pipelines/data/`` from public data.

Input: a ``{"source", "roles": {"roles/NAME": {"title", "stage", "includedPermissions"}}}``
file (``gcloud iam roles describe`` for every predefined role, as collected by
iann0036/iam-dataset, MIT License). Output: ``zt_pipelines/data/predefined_roles.json.gz`` in
our own compact format (read by :mod:`zt_pipelines.policy.role_catalogue`)::

    {"format": "zt-pipelines/role-catalogue@1", "source": str, "date": "YYYY-MM-DD",
     "permissions": [every permission, sorted],
     "roles": {"roles/NAME": [title, stage, [index deltas into "permissions"]]}}

Each role's permissions are stored as ascending indices into the one sorted permission table,
delta-encoded, so 165,000 permission entries cost a few hundred kilobytes.

Usage: ``python tools/build_role_catalogue.py SOURCE.json.gz DATE [OUT]``; re-run at release
time with a newer dataset and update docs/dependencies.md with its source and date.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

FORMAT = "zt-pipelines/role-catalogue@1"
OUT = Path(__file__).resolve().parent.parent / "zt_pipelines" / "data" / "predefined_roles.json.gz"


def build(source: Path, date: str) -> dict[str, object]:
    """The catalogue document for ``source``, dated ``date``."""
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    roles = data["roles"]
    permissions = sorted({p for r in roles.values() for p in r["includedPermissions"]})
    index = {p: i for i, p in enumerate(permissions)}
    encoded: dict[str, list[object]] = {}
    for name in sorted(roles):
        spec = roles[name]
        ids = sorted({index[p] for p in spec["includedPermissions"]})
        deltas = [b - a for a, b in zip([0, *ids], ids, strict=False)]
        encoded[name] = [spec.get("title", ""), spec.get("stage", "GA"), deltas]
    return {
        "format": FORMAT,
        "source": str(data.get("source", source.name)),
        "date": date,
        "permissions": permissions,
        "roles": encoded,
    }


def main(argv: list[str]) -> int:
    """Write the catalogue; print its size."""
    if len(argv) not in (3, 4):
        print(__doc__)
        return 2
    out = Path(argv[3]) if len(argv) == 4 else OUT
    doc = build(Path(argv[1]), argv[2])
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0: the same input gives the same bytes (reviewable, reproducible)
    out.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(
        f"{out}: {len(doc['roles'])} roles, {len(doc['permissions'])} permissions, "  # type: ignore[arg-type]
        f"{out.stat().st_size:,} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
