"""Excess by scope: a grant that serves a need from a broader scope than the need (pure).

A step that needs ``storage.objects.get`` on ``gs://features`` and holds
``roles/storage.objectViewer`` on the whole project holds the right permission on the wrong
scope: every bucket of the project. Two shapes:

- **hierarchy** — the binding is on a strict ancestor of a resource it serves (a project,
  folder or organisation above a bucket, a dataset above a table, ...): the narrower scope is
  the served resources themselves;
- **prefix** — the need names objects under a prefix (``gs://bucket/runs/``) and an
  unconditional binding on the bucket grants the object permission for every object: the
  narrower scope is the bucket with a ``resource.name.startsWith(...)`` condition (what
  ``zt-pipelines plan`` grants).

A conditional binding is taken as already scoped (its condition is what narrows it; whether it
holds is decided per need by the engine). Pure: no IO; reads the snapshot through the engine's
:class:`Evaluator` (passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from zt_pipelines.policy.members import Match
from zt_pipelines.policy.report import fast_init
from zt_pipelines.resources import display_uri

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator
    from zt_pipelines.policy.requirements import Requirement

ScopeKind = Literal["hierarchy", "prefix"]

_BUCKET_LEVEL_OBJECT_PERMISSIONS = frozenset({"storage.objects.list"})
_NOTHING: frozenset[str] = frozenset()


@fast_init
@dataclass(frozen=True, slots=True)
class BroadGrant:
    """One binding that serves ``permissions`` from broader than the needs' scope.

    Attributes:
        principal: the identity holding it.
        node: where the binding is.
        role: its role.
        member: the binding member that names the identity (itself or its group).
        kind: ``hierarchy`` or ``prefix``.
        permissions: the needed permissions it serves from too broad a scope.
        narrower: where (``gs://b``, ``gs://b/runs/``, ``bq://p.d.t`` ...) it would suffice.
    """

    principal: str
    node: str
    role: str
    member: str
    kind: ScopeKind
    permissions: tuple[str, ...]
    narrower: tuple[str, ...]


def object_level(resource: str, permission: str) -> bool:
    """True when IAM authorises ``permission`` on an object of a bucket (so a prefix condition
    can narrow it), not on the bucket itself."""
    return (
        resource.startswith("//storage.googleapis.com/")
        and permission.startswith("storage.objects.")
        and permission not in _BUCKET_LEVEL_OBJECT_PERMISSIONS
    )


def broad_grants(
    ev: Evaluator, principal: str, requirements: list[Requirement]
) -> list[BroadGrant]:
    """Every binding of ``principal`` (named directly or through a group of known membership)
    that serves one of its ``requirements`` from a broader scope than the requirement's."""
    if not requirements:
        return []
    held = [
        (node, c)
        for node, c in ev.held_candidates(principal)
        if c.match.match is Match.YES and c.binding.condition is None
    ]
    if not held:
        return []
    interest = {node.name for node, _c in held}
    # node -> (permission -> the requirements below it) it would serve there; only the nodes
    # where the principal holds something are indexed
    below: dict[str, dict[str, set[tuple[str, str | None]]]] = {}
    at: dict[str, set[str]] = {}
    prefixed: dict[str, dict[str, set[str]]] = {}
    whole_at: dict[str, set[str]] = {}
    above_of = ev.ancestor_names
    for r in requirements:
        res = r.resource
        name, prefix = res.name, res.prefix
        permission = r.permission
        if name in interest:
            here = at.get(name)
            if here is None:
                at[name] = {permission}
            else:
                here.add(permission)
            if not prefix:
                bucket_wide = whole_at.get(name)
                if bucket_wide is None:
                    whole_at[name] = {permission}
                else:
                    bucket_wide.add(permission)
            elif object_level(name, permission):
                prefixed.setdefault(name, {}).setdefault(permission, set()).add(prefix)
        for above in above_of(name):
            if above in interest:
                below.setdefault(above, {}).setdefault(permission, set()).add((name, prefix))
    out: list[BroadGrant] = []
    for node, c in held:
        perms = c.perms
        if not perms:
            continue
        served = below.get(node.name)
        if served:
            # needed at this node itself too: then the scope is right for those permissions
            broad = sorted(p for p in served if p in perms and p not in at.get(node.name, ()))
            if broad:
                where = sorted({display_uri(n, pre) for p in broad for n, pre in served[p]})
                out.append(
                    BroadGrant(
                        principal,
                        node.name,
                        c.binding.role,
                        c.member,
                        "hierarchy",
                        tuple(broad),
                        tuple(where),
                    )
                )
        objects = prefixed.get(node.name)
        if objects:
            # an unconditional bucket grant is broad unless some need here is bucket-wide
            whole = whole_at.get(node.name, _NOTHING)
            broad = sorted(p for p in objects if p in perms and p not in whole)
            if broad:
                where = sorted({display_uri(node.name, pre) for p in broad for pre in objects[p]})
                out.append(
                    BroadGrant(
                        principal,
                        node.name,
                        c.binding.role,
                        c.member,
                        "prefix",
                        tuple(broad),
                        tuple(where),
                    )
                )
    return out
