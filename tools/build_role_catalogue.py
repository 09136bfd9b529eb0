"""Build the predefined-role catalogue shipped in ``zt_pipelines/data/`` from public data.

Input: a ``{"source", "roles": {"roles/NAME": {"title", "stage", "includedPermissions"}}}``
file (``gcloud iam roles describe`` for every predefined role, as collected by
iann0036/iam-dataset, MIT License). Output: ``zt_pipelines/data/predefined_roles.json.gz`` in
our own compact format (read by :mod:`zt_pipelines.policy.role_catalogue`)::

    {"format": "zt-pipelines/role-catalogue@1", "source": str, "date": "YYYY-MM-DD",
     "permissions": [every permission, sorted],
     "roles": {"roles/NAME": [title, stage, [index deltas into "permissions"]]},
     "support": {"source": str, "date": str, "complete": bool,
                 "levels": {"TESTING": [...], "NOT_SUPPORTED": [...], "SUPPORTED": [...]}}}

Each role's permissions are stored as ascending indices into the one sorted permission table,
delta-encoded, so 165,000 permission entries cost a few hundred kilobytes.

``support`` (optional) is each permission's custom-role support level (IAM's
``customRolesSupportLevel``), from ``--support FILE``, which is either

- the output of ``gcloud iam list-testable-permissions //cloudresourcemanager.googleapis.com/
  organizations/ORG --format=json`` (every permission testable there; one without the field is
  ``SUPPORTED``, as IAM documents): ``complete`` is then true and only TESTING/NOT_SUPPORTED
  are stored; or
- a curated ``{"source", "date", "levels": {PERMISSION: LEVEL}}`` file of what public
  documentation states (``tools/custom_role_support.json``): ``complete`` is false, so every
  permission it does not name is ``UNKNOWN`` offline.

Usage: ``python tools/build_role_catalogue.py SOURCE.json.gz DATE [OUT] [--support FILE]``;
re-run at release time with a newer dataset and update docs/dependencies.md with its source
and date.
"""

from __future__ import annotations

import gzip
import zlib
import json
import sys
from pathlib import Path

FORMAT = "zt-pipelines/role-catalogue@1"
HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "zt_pipelines" / "data" / "predefined_roles.json.gz"
SUPPORT = HERE / "custom_role_support.json"
LEVELS = ("SUPPORTED", "TESTING", "NOT_SUPPORTED")


def support_section(path: Path) -> dict[str, object]:
    """The ``support`` section from a gcloud listing or a curated levels file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    levels: dict[str, list[str]] = {level: [] for level in LEVELS}
    if isinstance(data, list):  # gcloud iam list-testable-permissions --format=json
        for item in data:
            level = item.get("customRolesSupportLevel") or "SUPPORTED"
            if level not in LEVELS:
                raise SystemExit(f"{path}: {item.get('name')!r} has unknown level {level!r}")
            if level != "SUPPORTED":  # complete: an unlisted permission is SUPPORTED
                levels[level].append(str(item["name"]))
        meta = {"source": f"gcloud iam list-testable-permissions ({path.name})", "date": ""}
        complete = True
    else:
        for name, level in sorted(data["levels"].items()):
            if level not in LEVELS:
                raise SystemExit(f"{path}: {name!r} has unknown level {level!r}")
            levels[level].append(name)
        meta = {"source": str(data["source"]), "date": str(data["date"])}
        complete = False
    return {
        **meta,
        "complete": complete,
        "levels": {k: sorted(v) for k, v in levels.items() if v},
    }


def build(source: Path, date: str, support: Path | None = None) -> dict[str, object]:
    """The catalogue document for ``source``, dated ``date`` (with ``support`` levels)."""
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
    doc: dict[str, object] = {
        "format": FORMAT,
        "source": str(data.get("source", source.name)),
        "date": date,
        "permissions": permissions,
        "roles": encoded,
    }
    if support is not None:
        doc["support"] = support_section(support)
    return doc


def main(argv: list[str]) -> int:
    """Write the catalogue; print its size."""
    support: Path | None = SUPPORT
    if "--support" in argv:
        at = argv.index("--support")
        if at + 1 >= len(argv):
            print(__doc__)
            return 2
        support = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    if len(argv) not in (3, 4):
        print(__doc__)
        return 2
    out = Path(argv[3]) if len(argv) == 4 else OUT
    doc = build(Path(argv[1]), argv[2], support)
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0: the same input gives the same bytes (reviewable, reproducible)
    # zlib's own gzip framing (mtime 0, OS byte 3) on every Python: 3.10's gzip.compress writes
    # another OS byte than 3.11's, and the shipped file must rebuild byte for byte on both.
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out.write_bytes(packer.compress(raw) + packer.flush())
    print(
        f"{out}: {len(doc['roles'])} roles, {len(doc['permissions'])} permissions, "  # type: ignore[arg-type]
        f"{out.stat().st_size:,} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
