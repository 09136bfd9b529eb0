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

A conditional binding is narrow only when its condition is FALSE outside the needs. It is
evaluated (three-valued, by the engine's condition evaluator) on probe requests for resources
the needs do not name under the same node — a sibling bucket / dataset / table / project (a
fixed name and the needed name with a suffix, so ``startsWith("…/buckets/features")`` is caught
reaching ``features-other``), and for a prefix an object prefix outside the needed ones. TRUE
on any probe: the same finding as an unconditional binding; UNKNOWN: the finding says "may".
Only conditional bindings pay for the probes. Pure: no IO; reads the snapshot through the
engine's :class:`Evaluator` (passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from zt_pipelines.policy.conditions import ConditionResult, RequestAttributes, Tri
from zt_pipelines.policy.conditions import request_attributes as _attributes
from zt_pipelines.policy.members import Match
from zt_pipelines.policy.report import fast_init
from zt_pipelines.policy.requirements import RunWindow
from zt_pipelines.policy.timewindow import later_times
from zt_pipelines.resources import display_uri

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator, _Candidate
    from zt_pipelines.policy.requirements import Requirement
    from zt_pipelines.policy.snapshot import Condition

ScopeKind = Literal["hierarchy", "prefix"]

_BUCKET_LEVEL_OBJECT_PERMISSIONS = frozenset({"storage.objects.list"})
_NOTHING: frozenset[str] = frozenset()
_STORAGE = "//storage.googleapis.com/"
#: a resource name (last path segment) no need names: the probe outside the needs
_PROBE = "zt-probe-outside-the-needs"
#: at most this many needed resources per (binding, permission) give a sibling probe
_MAX_PROBED = 32


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
        gives: the verb of the finding's sentence: ``gives``, or for a conditional binding
            ``gives (its condition also holds outside the needs: …)`` / ``may give (its
            condition cannot be ruled out outside the needs: …)``.
        condition: the binding's condition expression (``""``: unconditional).
    """

    principal: str
    node: str
    role: str
    member: str
    kind: ScopeKind
    permissions: tuple[str, ...]
    narrower: tuple[str, ...]
    gives: str = "gives"
    condition: str = ""


def object_permission(permission: str) -> bool:
    """An object permission that a prefix condition can narrow (not a bucket-level one)."""
    return (
        permission.startswith("storage.objects.")
        and permission not in _BUCKET_LEVEL_OBJECT_PERMISSIONS
    )


_OBJECT_PERMISSION: dict[str, bool] = {}  # permission -> object_permission(permission)
_IN_STORAGE: dict[str, bool] = {}  # resource name -> a Cloud Storage name
#: display names (:func:`display_uri`) by name or (name, prefix); cleared by every check
URIS: dict[str | tuple[str, str], str] = {}


def uri(name: str, prefix: str | None = None) -> str:
    """:func:`display_uri`, memoised (a bounded LRU thrashes at organisation scale: every
    step's prefix is another key)."""
    key = name if prefix is None else (name, prefix)  # no tuple for a plain name
    got = URIS.get(key)
    if got is None:
        if len(URIS) >= 1 << 18:
            URIS.clear()  # bounded: one huge check does not keep its names for ever
        got = URIS[key] = display_uri(name, prefix)
    return got


def _remember(memo: dict[str, bool], key: str, value: bool) -> bool:
    if len(memo) >= 1 << 16:
        memo.clear()  # bounded: names come from the checked pipelines
    memo[key] = value
    return value


def object_level(resource: str, permission: str) -> bool:
    """True when IAM authorises ``permission`` on an object of a bucket (so a prefix condition
    can narrow it), not on the bucket itself."""
    return (
        resource.startswith("//storage.googleapis.com/")
        and permission.startswith("storage.objects.")
        and permission not in _BUCKET_LEVEL_OBJECT_PERMISSIONS
    )


def broad_grants(
    ev: Evaluator,
    principal: str,
    requirements: list[Requirement],
    now: datetime,
    window: RunWindow | None = None,
) -> list[BroadGrant]:
    """Every binding of ``principal`` (named directly or through a group of known membership)
    that serves one of its ``requirements`` from a broader scope than the requirement's.

    ``now`` is ``request.time`` for conditional bindings' probes (see the module text); a
    condition that reads the time is probed over ``window`` too (a grant that starts during
    the run is broad from then)."""
    return [
        BroadGrant(principal, *found)
        for found in broad_grant_parts(ev, principal, requirements, now, window)
    ]


#: a :class:`BroadGrant`'s fields after ``principal``
BroadGrantParts = tuple[str, str, str, ScopeKind, tuple[str, ...], tuple[str, ...], str, str]

_GIVES = "gives"
_YES = Match.YES  # a plain global: Enum attributes go through EnumType.__getattr__ (3.11)


def broad_grant_parts(
    ev: Evaluator,
    principal: str,
    requirements: list[Requirement],
    now: datetime,
    window: RunWindow | None = None,
) -> list[BroadGrantParts]:
    """:func:`broad_grants` as tuples (node, role, member, kind, permissions, narrower, gives,
    condition): what the report turns into findings at once, without a :class:`BroadGrant`
    each."""
    if not requirements:
        return []
    held = []
    interest = set()
    for node, c in ev.held_candidates(principal):
        if c.match.match is _YES:
            held.append((node, c))
            interest.add(node.name)
    if not held:
        return []
    # node -> (permission -> the requirements below it) it would serve there; only the nodes
    # where the principal holds something are indexed
    below: dict[str, dict[str, set[tuple[str, str | None]]]] = {}
    at: dict[str, set[str]] = {}
    #: bucket -> object permission -> the prefixes it is needed under ("": the whole bucket)
    prefixed: dict[str, dict[str, set[str]]] = {}
    # a need is served from above only by a held node that is some node's parent: none of them
    # (a step holding grants on buckets and datasets only), no ancestry walk per need
    above_of = ev.ancestor_names if not interest.isdisjoint(ev.parent_names()) else None
    for r in requirements:
        res = r.resource
        name = res.name
        if name in interest:
            permission = r.permission
            if above_of is not None:  # what is needed on a node itself: read for hierarchy only
                here = at.get(name)
                if here is None:
                    at[name] = {permission}
                else:
                    here.add(permission)
            # object_level(), by two memos (a str.startswith costs more than a dict lookup)
            on_object = _OBJECT_PERMISSION.get(permission)
            if on_object is None:
                on_object = _remember(_OBJECT_PERMISSION, permission, object_permission(permission))
            if on_object:
                in_storage = _IN_STORAGE.get(name)
                if in_storage is None:
                    in_storage = _remember(_IN_STORAGE, name, name.startswith(_STORAGE))
                if in_storage:
                    prefix = res.prefix or ""
                    by_perm = prefixed.get(name)
                    if by_perm is None:
                        prefixed[name] = {permission: {prefix}}
                    elif permission in by_perm:
                        by_perm[permission].add(prefix)
                    else:
                        by_perm[permission] = {prefix}
        if above_of is not None:
            for above in above_of(name):
                if above in interest:
                    permission = r.permission
                    served_above = below.get(above)
                    if served_above is None:
                        below[above] = {permission: {(name, res.prefix)}}
                    elif permission in served_above:
                        served_above[permission].add((name, res.prefix))
                    else:
                        served_above[permission] = {(name, res.prefix)}
    out: list[BroadGrantParts] = []
    for node, c in held:
        perms = c.perms
        if not perms:
            continue
        name = node.name
        condition = c.binding.condition
        served = below.get(name) if below else None
        if served:
            # needed at this node itself too: then the scope is right for those permissions
            needed_here = at.get(name, _NOTHING)
            broad = []
            for p in served:
                if p in perms and p not in needed_here:
                    broad.append(p)
            if broad and condition is not None:
                broad.sort()
                probes = {p: _sibling_probes(ev, p, served[p]) for p in broad}
                parts = _conditional(
                    ev,
                    name,
                    c.binding.role,
                    c.member,
                    condition,
                    (now, window),
                    "hierarchy",
                    probes,
                    {p: served[p] for p in broad},
                )
                out += parts
            elif broad:
                broad.sort()
                resources = set(served[broad[0]])
                for p in broad[1:]:
                    resources |= served[p]
                out.append(
                    (
                        name,
                        c.binding.role,
                        c.member,
                        "hierarchy",
                        tuple(broad),
                        _shown(resources),
                        _GIVES,
                        "",
                    )
                )
        objects = prefixed.get(name) if prefixed else None
        if objects:
            found = _object_grant(ev, name, c, objects, now, window)
            if found is not None:
                out.append(found)
    return out


def object_grant(
    ev: Evaluator,
    bucket: str,
    c: _Candidate,
    needs: list[Requirement],
    now: datetime,
    window: RunWindow | None = None,
) -> BroadGrantParts | None:
    """The prefix-shaped broad grant of one binding on ``bucket`` (held by the principal), or
    ``None``: ``needs`` are the principal's requirements of object permissions in the bucket.
    The binding is broad for the permissions it gives that are needed under prefixes only
    (one need, no condition: when it is under a prefix and the role gives it)."""
    return _object_grant(ev, bucket, c, _by_permission(needs), now, window)


def _by_permission(needs: list[Requirement]) -> dict[str, set[str]]:
    """Object permission -> the prefixes it is needed under (``""``: the whole bucket)."""
    needed: dict[str, set[str]] = {}
    for r in needs:
        prefix = r.resource.prefix or ""
        permission = r.permission
        prefixes = needed.get(permission)
        if prefixes is None:
            needed[permission] = {prefix}
        else:
            prefixes.add(prefix)
    return needed


def _object_grant(
    ev: Evaluator,
    bucket: str,
    c: _Candidate,
    needed: dict[str, set[str]],
    now: datetime,
    window: RunWindow | None,
) -> BroadGrantParts | None:
    """:func:`object_grant` from permission -> prefixes (``""``: the whole bucket)."""
    perms = c.perms
    if not perms:
        return None
    broad = []
    for p, prefixes in needed.items():
        if p in perms and "" not in prefixes:
            broad.append(p)
    if not broad:
        return None
    condition = c.binding.condition
    if condition is not None:
        broad.sort()
        probes = {p: _outside_prefixes(bucket, p, needed[p]) for p in broad}
        inside: dict[str, set[tuple[str, str | None]]] = {
            p: {(bucket, pre) for pre in needed[p]} for p in broad
        }
        found = _conditional(
            ev,
            bucket,
            c.binding.role,
            c.member,
            condition,
            (now, window),
            "prefix",
            probes,
            inside,
        )
        return found[0] if found else None
    if len(broad) == 1:
        prefixes = needed[broad[0]]
    else:
        broad.sort()
        prefixes = needed[broad[0]]
        for p in broad[1:]:
            prefixes = prefixes | needed[p]
    where = (
        (uri(bucket, next(iter(prefixes))),)
        if len(prefixes) == 1
        else tuple(sorted({uri(bucket, pre) for pre in prefixes}))
    )
    return (bucket, c.binding.role, c.member, "prefix", tuple(broad), where, _GIVES, "")


def _shown(resources: set[tuple[str, str | None]]) -> tuple[str, ...]:
    """The display names of ``resources`` (name, prefix), sorted, each once."""
    if len(resources) == 1:
        (name, prefix) = next(iter(resources))
        return (display_uri(name, prefix),)
    return tuple(sorted({display_uri(n, pre) for n, pre in resources}))


def _conditional(
    ev: Evaluator,
    node: str,
    role: str,
    member: str,
    condition: Condition,
    when: tuple[datetime, RunWindow | None],
    kind: ScopeKind,
    probes: dict[str, list[RequestAttributes]],
    served: dict[str, set[tuple[str, str | None]]],
) -> list[BroadGrantParts]:
    """The broad grant of a conditional binding: the permissions whose condition is TRUE on a
    probe outside the needs — at the check time or at a time inside the run's window where a
    time condition changes —, else ("may") those where it is UNKNOWN, else none."""
    now, window = when
    times = (now, *later_times(ev, condition.expression, now, window))
    true: dict[str, ConditionResult] = {}
    unknown: dict[str, ConditionResult] = {}
    for permission, requests in probes.items():
        first_unknown: ConditionResult | None = None
        for attrs in requests:
            for t in times:
                got = ev.conditions.holds_somewhere(condition, attrs, t)
                if got.value is Tri.TRUE:
                    reason = got.reason or _named(attrs)
                    if t is not now:
                        reason += f", from {t.isoformat()} (inside the run's window)"
                    true[permission] = ConditionResult(Tri.TRUE, reason)
                    break
                if got.value is Tri.UNKNOWN and first_unknown is None:
                    first_unknown = got
            if permission in true:
                break
        else:
            if first_unknown is not None or not requests:
                unknown[permission] = first_unknown or ConditionResult(
                    Tri.UNKNOWN, "no resource outside the needs could be named to probe it"
                )
    if true:
        broad = sorted(true)
        why = true[broad[0]].reason or "true for a resource the needs do not name"
        gives = f"gives (its condition also holds outside the needs: {why})"
    elif unknown:
        broad = sorted(unknown)
        why = unknown[broad[0]].reason or "undecided"
        gives = f"may give (its condition cannot be ruled out outside the needs: {why})"
    else:
        return []
    resources: set[tuple[str, str | None]] = set()
    for p in broad:
        resources |= served[p]
    return [
        (node, role, member, kind, tuple(broad), _shown(resources), gives, condition.expression)
    ]


def _named(attrs: RequestAttributes) -> str:
    """Where a condition held, for the finding's sentence."""
    if attrs.name:
        return f"true for {attrs.name}"
    if attrs.name_prefix:
        return f"true for every resource under {attrs.name_prefix}"
    return "true for a resource the needs do not name"


def _sibling_probes(
    ev: Evaluator, permission: str, served: set[tuple[str, str | None]]
) -> list[RequestAttributes]:
    """Requests for ``permission`` on resources beside the needed ones that no need names: a
    fixed name and each needed name with a suffix, of the same kind and parent."""
    named = {name for name, _prefix in served}
    seen: set[str] = set()
    out: list[RequestAttributes] = []
    for name in sorted(named)[:_MAX_PROBED]:
        head, _, leaf = name.rpartition("/")
        if not head or not leaf:
            continue
        sep = "_" if name.startswith("//bigquery.googleapis.com/") else "-"
        kind = ev.chain(name)[0][0].kind if ev.chain(name)[0] else None
        for sibling in (f"{head}/{_PROBE.replace('-', sep)}", f"{name}{sep}zt{sep}probe"):
            if sibling in named or sibling in seen:
                continue
            seen.add(sibling)
            out.append(_attributes(sibling, None, permission, kind))
    return out


def _outside_prefixes(bucket: str, permission: str, needed: set[str]) -> list[RequestAttributes]:
    """Requests for ``permission`` on every object under a prefix of ``bucket`` outside the
    needed prefixes: a fixed one, and each ``dir/`` prefix's sibling ``dir-zt-probe/``."""
    candidates = [f"{_PROBE}/", f"~{_PROBE}/"]
    candidates += [pre.rstrip("/") + "-zt-probe/" for pre in sorted(needed) if pre.endswith("/")]
    out: list[RequestAttributes] = []
    for pre in candidates:
        if any(pre.startswith(n) or n.startswith(pre) for n in needed):
            continue  # overlaps a need: not outside it
        out.append(_attributes(bucket, pre, permission))
        if len(out) > _MAX_PROBED:
            break
    return out
