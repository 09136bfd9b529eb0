"""The predefined-role catalogue shipped with the package, and permission-name validation.

``zt_pipelines/data/predefined_roles.json.gz`` holds every predefined role with its
permissions (built by ``tools/build_role_catalogue.py`` from public data; source and date in
docs/dependencies.md and :func:`catalogue_info`). It serves two purposes:

- **offline role definitions**: when a snapshot lacks the definition of a ``roles/...`` role,
  the engine and ``plan`` use the catalogue's (a definition in the snapshot — read live or
  written in a file — always wins);
- **permission names**: every permission a user writes (``@zt.step`` needs, manifests, policy
  files, plans) must be one the catalogue knows; an unknown one is an
  :class:`~zt_pipelines.errors.UnknownPermissionError` naming the closest known names.

It also carries each permission's **custom-role support level** (IAM's
``customRolesSupportLevel``: ``SUPPORTED``, ``TESTING``, ``NOT_SUPPORTED``) where public data
says (:func:`support_level`). Where it does not, the level is ``UNKNOWN`` offline: ``plan``
says so, and ``apply`` reads the levels live (``queryTestablePermissions``) before it creates
or updates any custom role (see :mod:`zt_pipelines.provision.support`).

Reads one static package file, once (cached); otherwise pure.
"""

from __future__ import annotations

import difflib
import gzip
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from zt_pipelines.errors import UnknownPermissionError
from zt_pipelines.policy.snapshot import Role, Snapshot
from zt_pipelines.resources import check_permission

FORMAT = "zt-pipelines/role-catalogue@1"
_FILE = "predefined_roles.json.gz"

#: IAM's ``Permission.CustomRolesSupportLevel``, plus ``UNKNOWN`` (no source says)
SupportLevel = Literal["SUPPORTED", "TESTING", "NOT_SUPPORTED", "UNKNOWN"]
SUPPORT_LEVELS: tuple[str, ...] = ("SUPPORTED", "TESTING", "NOT_SUPPORTED")


@dataclass(frozen=True)
class CatalogueInfo:
    """Where the shipped catalogue comes from.

    Attributes:
        source: the public dataset (name, commit, licence).
        date: the dataset's date (``YYYY-MM-DD``).
        roles: how many predefined roles it holds.
        permissions: how many distinct permissions.
        support_source: where the custom-role support levels come from (``""``: none).
        support_date: their date.
        support_complete: True when the levels cover every permission (an unlisted one is
            then ``SUPPORTED``); False when only some are known (an unlisted one is
            ``UNKNOWN``).
    """

    source: str
    date: str
    roles: int
    permissions: int
    support_source: str = ""
    support_date: str = ""
    support_complete: bool = False


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    raw = resources.files("zt_pipelines").joinpath("data").joinpath(_FILE).read_bytes()
    doc: dict[str, Any] = json.loads(gzip.decompress(raw))
    if doc.get("format") != FORMAT:  # pragma: no cover - the build script writes FORMAT
        raise RuntimeError(f"{_FILE}: unexpected format {doc.get('format')!r}")
    return doc


@lru_cache(maxsize=1)
def known_permissions() -> frozenset[str]:
    """Every permission some predefined role includes (13,000+ names), and every permission
    the support-level source names."""
    return frozenset(_document()["permissions"]) | frozenset(_support_table())


@lru_cache(maxsize=1)
def _support_table() -> dict[str, str]:
    support = _document().get("support") or {}
    return {p: level for level in SUPPORT_LEVELS for p in support.get("levels", {}).get(level, ())}


def support_level(permission: str) -> SupportLevel:
    """The custom-role support level of ``permission`` according to the shipped catalogue.

    ``UNKNOWN`` when no public source the catalogue was built from says (and the source is not
    complete). A live read (``permissions.queryTestablePermissions``) is the authority; this
    is the offline answer.
    """
    found = _support_table().get(permission)
    if found is not None:
        return found  # type: ignore[return-value]
    complete = bool((_document().get("support") or {}).get("complete"))
    return "SUPPORTED" if complete and permission in known_permissions() else "UNKNOWN"


def support_levels() -> dict[str, str]:
    """Every permission whose level the catalogue records explicitly (level per name)."""
    return dict(_support_table())


@lru_cache(maxsize=1)
def predefined_roles() -> dict[str, Role]:
    """Every predefined role of the catalogue, as :class:`Role` definitions."""
    doc = _document()
    table: list[str] = doc["permissions"]
    out: dict[str, Role] = {}
    for name, (title, stage, deltas) in doc["roles"].items():
        perms: list[str] = []
        at = 0
        for d in deltas:
            at += d
            perms.append(table[at])
        out[name] = Role(name, frozenset(perms), title=title, stage=stage)
    return out


def catalogue_role(name: str) -> Role | None:
    """The shipped definition of predefined role ``name`` (``roles/...``), if known."""
    if not name.startswith("roles/"):
        return None
    return predefined_roles().get(name)


def catalogue_info() -> CatalogueInfo:
    """Source, date and size of the shipped catalogue."""
    doc = _document()
    support = doc.get("support") or {}
    return CatalogueInfo(
        doc["source"],
        doc["date"],
        len(doc["roles"]),
        len(known_permissions()),
        support_source=str(support.get("source", "")),
        support_date=str(support.get("date", "")),
        support_complete=bool(support.get("complete")),
    )


@lru_cache(maxsize=1)
def _by_service() -> dict[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for p in _document()["permissions"]:
        groups.setdefault(p.split(".", 1)[0], []).append(p)
    return {k: tuple(v) for k, v in groups.items()}


def suggest_permissions(permission: str, n: int = 3) -> list[str]:
    """The known permission names closest to ``permission`` (best first, possibly none)."""
    service = permission.split(".", 1)[0]
    groups = _by_service()
    same = groups.get(service)
    if same is None:  # the service itself is misspelt: match it first, then the name
        services = difflib.get_close_matches(service, list(groups), n=3, cutoff=0.6)
        pool: list[str] = [p for s in services for p in groups[s]]
    else:
        pool = list(same)
    found = difflib.get_close_matches(permission, pool, n=n, cutoff=0.6)
    if not found:
        found = difflib.get_close_matches(permission, sorted(known_permissions()), n=n, cutoff=0.8)
    return found


def validate_permission(permission: str, *, where: str | None = None) -> str:
    """Return ``permission`` if it is well formed and known to the catalogue, else raise.

    Raises:
        PermissionFormatError: not ``service.resource.verb``.
        UnknownPermissionError: well formed but no predefined role includes it; the message
            names the closest known permissions.
    """
    check_permission(permission, where=where)
    if permission in known_permissions():
        return permission
    near = suggest_permissions(permission)
    info = catalogue_info()
    hint = f"did you mean {' or '.join(near)}?" if near else "no known permission is close"
    raise UnknownPermissionError(
        f"{permission!r} is not a known IAM permission ({hint})",
        where=where,
        fix=f"use a permission from the predefined-role catalogue ({info.date}); "
        "`gcloud iam roles describe ROLE` lists a role's permissions",
        suggestions=tuple(near),
    )


def validate_permissions(permissions: Any, *, where: str | None = None) -> tuple[str, ...]:
    """:func:`validate_permission` over an iterable, in order."""
    return tuple(validate_permission(p, where=where) for p in permissions)


def referenced_roles(snapshot: Snapshot) -> set[str]:
    """Every role some allow-policy binding of ``snapshot`` names."""
    return {b.role for node in snapshot.nodes.values() if node.policy for b in node.policy.bindings}


def with_catalogue_roles(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` carrying a definition of every predefined role its bindings use.

    Definitions already in the snapshot (read live, or written in a file) win; missing
    ``roles/...`` definitions come from the shipped catalogue, and a failed ``roles.get`` of a
    role the catalogue defines is no longer unreadable. Custom roles are never filled in: only
    their own definition says what they grant.
    """
    missing = {
        r
        for r in referenced_roles(snapshot)
        if r not in snapshot.roles and catalogue_role(r) is not None
    }
    failed = {
        u.target
        for u in snapshot.unreadable
        if u.what == "roles.get" and catalogue_role(u.target) is not None
    }
    if not missing and not failed:
        return snapshot
    roles = dict(snapshot.roles)
    for name in sorted(missing | failed):
        if name not in roles:
            found = catalogue_role(name)
            if found is not None:
                roles[name] = found
    unreadable = tuple(
        u for u in snapshot.unreadable if not (u.what == "roles.get" and u.target in roles)
    )
    return replace(snapshot, roles=roles, unreadable=unreadable)
