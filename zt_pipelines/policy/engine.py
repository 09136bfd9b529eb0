"""The verification engine: pure IAM evaluation over a :class:`Snapshot`.

:func:`decide` answers one (member, resource, permission) question four ways — *granted*
(with the binding that grants it), *not granted*, *unverifiable* (with why) or *denied* (with
the deny rule) — and :func:`evaluate` turns a pipeline's requirements into a
:class:`~zt_pipelines.policy.report.Report`. Only *granted* ever counts as granted.

Order of evaluation, as IAM does it: deny policies on the resource's ancestry first (with
exception principals/permissions and denial conditions), then allow bindings on the resource
and every ancestor (roles expanded, members matched, conditions evaluated). Anything the
snapshot cannot prove — an unknown group, an unknown role, an undecidable condition, an
unreadable policy, a missing ancestor — makes the answer *unverifiable*, never *granted*.

Pure: no IO, no clock (``now`` is an argument).
"""

from __future__ import annotations

import gc
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from zt_pipelines.policy.conditions import (
    ConditionEvaluator,
    ConditionResult,
    RequestAttributes,
    Tri,
    request_attributes,
)
from zt_pipelines.policy.deny import permission_matches
from zt_pipelines.policy.findings import build_report
from zt_pipelines.policy.members import Match, MemberMatch, MemberResolver, normalize_principal
from zt_pipelines.policy.report import Evidence, fast_init, new_evidence
from zt_pipelines.policy.role_catalogue import catalogue_role
from zt_pipelines.policy.snapshot import (
    Binding,
    DenyPolicy,
    Node,
    Snapshot,
    Unreadable,
    read_hides,
)
from zt_pipelines.resources import ResourceRef

if TYPE_CHECKING:
    from collections.abc import Iterable

    from zt_pipelines.model import StepIdentity
    from zt_pipelines.policy.orgpolicy import OrgPolicy
    from zt_pipelines.policy.report import Report
    from zt_pipelines.policy.requirements import CheckContext, Requirement

DecisionState = Literal["granted", "not_granted", "unverifiable", "denied"]
_UNSET = object()
_NAMED = MemberMatch(Match.YES, "named directly")
# the members as plain globals: an Enum attribute goes through EnumType.__getattr__ (3.11)
_YES, _NO, _UNKNOWN = Match.YES, Match.NO, Match.UNKNOWN
_TRUE = ConditionResult(Tri.TRUE)


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one (member, resource, permission) question.

    Attributes:
        state: granted / not_granted / unverifiable / denied.
        member: the principal asked about (normalised: ``serviceAccount:email``).
        resource: the full resource name.
        permission: the permission.
        evidence: for *granted*, the binding(s); for *denied*, the deny rule; for
            *unverifiable*, each thing that could not be decided.
        reasons: human sentences for *unverifiable* / *not_granted*.
    """

    state: DecisionState
    member: str
    resource: str
    permission: str
    evidence: tuple[Evidence, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def granted(self) -> bool:
        """True only for *granted*: fail closed."""
        return self.state == "granted"


class _NodeIndex:
    """One node's bindings by the principal they name directly, and the indirect members
    (groups, domains, principal sets, ...) that may cover a principal."""

    __slots__ = ("direct", "indirect")

    def __init__(
        self, direct: dict[str, list[Binding]], indirect: tuple[tuple[str, Binding], ...]
    ) -> None:
        self.direct = direct
        self.indirect = indirect


class _Candidate:
    """A binding on one node whose members cover one principal (or may), with what decide()
    needs of it precomputed once: the role's permissions and the evidence it gives."""

    __slots__ = ("_direct", "_inherited", "binding", "custom", "match", "member", "perms", "plain")

    member: str
    binding: Binding
    match: MemberMatch
    perms: frozenset[str] | None
    custom: bool
    #: grants whatever it holds, wherever it is: named (or a member of known membership), no
    #: condition, a known predefined role
    plain: bool
    _direct: Evidence | None
    _inherited: Evidence | None

    def evidence(self, node: str, inherited: bool) -> Evidence:
        """The binding evidence, on the resource itself or inherited from an ancestor."""
        ev = self._inherited if inherited else self._direct
        if ev is None:
            b = self.binding
            ev = new_evidence(
                "binding",
                node,
                b.role,
                self.member,
                b.condition.expression if b.condition else "",
                "",
                f"{self.match.reason}; inherited" if inherited else self.match.reason,
            )
            if inherited:
                self._inherited = ev
            else:
                self._direct = ev
        return ev


def _candidate(
    member: str, binding: Binding, match: MemberMatch, perms: frozenset[str] | None, custom: bool
) -> _Candidate:
    """A :class:`_Candidate` (no ``__init__``: the fields are stored here, once)."""
    c = _Candidate()
    c.member = member
    c.binding = binding
    c.match = match
    c.perms = perms
    c.custom = custom
    c.plain = perms is not None and not custom and binding.condition is None and match.match is _YES
    c._direct = c._inherited = None
    return c


def _is_custom(role: str) -> bool:
    return role.startswith(("projects/", "organizations/"))


_DENY_POINTS = ("organization", "folder", "project")
_PROJECTS = "//cloudresourcemanager.googleapis.com/projects/"
_INDIRECT_KINDS = (
    "group:",
    "domain:",
    "allUsers",
    "allAuthenticatedUsers",
    "principalSet://",
    "projectOwner:",
    "projectEditor:",
    "projectViewer:",
)


_CRM = "//cloudresourcemanager.googleapis.com/"
_INDIRECT_ENTRY = "<indirect>"  # compared by identity: no member's normal form is this object


def custom_role_applies(role: str, ancestors: tuple[Node, ...] | list[Node]) -> bool:
    """Whether a binding of ``role`` on ``ancestors[0]`` can grant anything: a custom role
    ``projects/P/roles/R`` is usable only in project P's policies and below it, one of
    ``organizations/O/roles/R`` only inside organisation O. Predefined roles apply anywhere."""
    kind, _, rest = role.partition("/")
    if kind not in ("projects", "organizations") or "/roles/" not in role:
        return True
    owner = _CRM + kind + "/" + rest.split("/", 1)[0]
    return any(n.name == owner for n in ancestors)


class Evaluator:
    """Indexes a snapshot once (members per node, role expansion, deny policies) and answers
    :meth:`decide` questions quickly. Treat the snapshot as immutable while in use."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.members = MemberResolver(snapshot)
        self.conditions = ConditionEvaluator()
        self._nodes: dict[str, _NodeIndex] = {}
        self._chains: dict[str, tuple[tuple[Node, ...], str]] = {}
        self._above: dict[str, tuple[str, ...]] = {}
        self._deny: dict[str, list[DenyPolicy]] = defaultdict(list)
        # attached to a project the snapshot has under no such name: may be a project known
        # here by its other name only (never simply absent)
        self._unplaced: list[DenyPolicy] = []
        for dp in snapshot.deny_policies:
            point = dp.attachment_point
            if point.startswith(_PROJECTS) and point not in snapshot.nodes:
                self._unplaced.append(dp)  # a project known here under another name, maybe
            self._deny[point].append(dp)
        self._unreadable: dict[str, list[Unreadable]] = defaultdict(list)
        for u in snapshot.unreadable:
            self._unreadable[u.target].append(u)
        self._role_cache: dict[str, object] = {}
        #: role -> (its permissions, a custom role, known and predefined): what each candidate
        #: binding needs of it
        self._role_facts: dict[str, tuple[frozenset[str] | None, bool, bool]] = {}
        self._principals: dict[str, str] = {}
        self._cand: dict[tuple[str, str], tuple[_Candidate, ...]] = {}
        self._canon: dict[str, str] = {}
        self._held: dict[str, list[tuple[Node, Binding, MemberMatch, str]]] = {}
        # principal -> node name -> its candidates there, for principals whose bindings were
        # all looked up (member_bindings): decide() then skips every node without one
        self._held_at: dict[str, dict[str, tuple[_Candidate, ...]]] = {}
        self._held_list: dict[str, list[tuple[Node, _Candidate]]] = {}
        #: principals (of _held_at) bound on no node that is some node's parent: a resource's
        #: ancestors hold nothing of theirs, so decide_many() looks at the resource alone
        self._low: set[str] = set()
        #: predefined roles whose definition came from the shipped catalogue
        self.catalogue_used: set[str] = set()
        #: normal member -> its bindings, as member_bindings() gives them (named directly)
        self._by_member: dict[str, list[tuple[Node, Binding, MemberMatch, str]]] | None = None
        self._indirect_all: list[tuple[Node, str, Binding]] | None = None
        self._parents: frozenset[str] | None = None
        self._walking: set[str] = set()  # names whose chain() is being worked out

    # -- indexes -------------------------------------------------------------------------

    def _index(self, node: Node) -> _NodeIndex:
        idx = self._nodes.get(node.name)
        if idx is None:
            direct: dict[str, list[Binding]] = {}
            indirect: list[tuple[str, Binding]] = []
            normal = self._principals  # member -> normalised, shared with decide()
            for b in node.policy.bindings if node.policy else ():
                for m in b.members:
                    if m.startswith(_INDIRECT_KINDS):
                        indirect.append((m, b))
                        continue
                    p = normal.get(m)
                    if p is None:
                        p = normal[m] = normalize_principal(m)
                    got = direct.get(p)
                    if got is None:
                        direct[p] = [b]
                    else:
                        got.append(b)
            idx = _NodeIndex(direct, tuple(indirect))
            self._nodes[node.name] = idx
        return idx

    def role_permissions(self, role: str) -> frozenset[str] | None:
        """The permissions of ``role``; ``None`` when its definition is not in the snapshot.

        A predefined (``roles/...``) role the snapshot lacks is taken from the shipped
        catalogue (:mod:`~zt_pipelines.policy.role_catalogue`); the snapshot's own definition
        (read live or written in a file) always wins. A deleted or disabled role grants
        nothing (IAM inactivates its bindings)."""
        cached = self._role_cache.get(role, _UNSET)
        if cached is not _UNSET:
            return cached  # type: ignore[return-value]
        r = self.snapshot.roles.get(role)
        if r is None:
            # a predefined role the snapshot lacks: the shipped catalogue's definition
            r = catalogue_role(role)
            if r is not None:
                self.catalogue_used.add(role)
        perms = (
            None
            if r is None
            else frozenset()
            if r.deleted or r.stage == "DISABLED"
            else r.permissions
        )
        self._role_cache[role] = perms
        return perms

    def chain(self, name: str) -> tuple[tuple[Node, ...], str]:
        """(the node and its known ancestors, why the ancestry is incomplete or ``""``)."""
        cached = self._chains.get(name)
        if cached is not None:
            return cached
        node = self.snapshot.nodes.get(name)
        walking = self._walking
        if (
            node is not None
            and node.parent
            and node.parent in self.snapshot.nodes
            and name not in walking  # a loop: the walk below says so
            and len(walking) < 64  # no deep recursion: the walk below
        ):
            # the parent's chain, memoised, when it is complete (thousands of accounts and
            # buckets share one project's): what snapshot.ancestors() would walk again
            walking.add(name)
            try:
                above, gap = self.chain(node.parent)
            finally:
                walking.discard(name)
            if not gap:  # complete: ends at an organisation, no loop (so not through node)
                for u in self._unreadable.get(node.name, ()):
                    if "ancestry" in read_hides(u.what):
                        gap = gap or f"{u.what} on {node.name} failed: {u.reason}"
                cached = self._chains[name] = ((node, *above), gap)
                return cached
        nodes = tuple(self.snapshot.ancestors(name))
        gap = ""
        if not nodes:
            gap = f"{name} {self.snapshot.absent(name)}"
        else:
            top = nodes[-1]
            if top.parent is None and top.kind != "organization":
                gap = f"the ancestry of {top.name} is unknown"
            elif top.parent and top.parent not in self.snapshot.nodes:
                gap = f"{top.parent} (parent of {top.name}) {self.snapshot.absent(top.parent)}"
            elif top.parent:  # the walk stopped at a known parent: the hierarchy loops
                gap = f"the ancestry of {name} loops through {top.parent}"
            for n in nodes:
                for u in self._unreadable.get(n.name, ()):
                    if "ancestry" in read_hides(u.what):
                        gap = gap or f"{u.what} on {n.name} failed: {u.reason}"
        cached = (nodes, gap)
        self._chains[name] = cached
        return cached

    def ancestor_names(self, name: str) -> tuple[str, ...]:
        """The names of ``name``'s known ancestors, nearest first (without ``name`` itself):
        :meth:`chain`'s nodes after the first, memoised."""
        got = self._above.get(name)
        if got is None:
            got = self._above[name] = tuple(n.name for n in self.chain(name)[0][1:])
        return got

    def parent_names(self) -> frozenset[str]:
        """The names of every node that is some node's parent (memoised)."""
        got = self._parents
        if got is None:
            nodes = self.snapshot.nodes
            got = self._parents = frozenset(
                nodes[n.parent].name for n in nodes.values() if n.parent and n.parent in nodes
            )
        return got

    def bindings_for(self, principal: str) -> list[tuple[Node, Binding, MemberMatch]]:
        """Every visible binding, anywhere, whose members cover ``principal`` (or may)."""
        return [(n, b, mm) for n, b, mm, _ in self.member_bindings(principal)]

    def names_deleted_member(self) -> bool:
        """Whether any binding of the snapshot names a ``deleted:`` member (read from the index
        :meth:`member_bindings` builds, when built: no second pass over every binding)."""
        by_member = self._by_member
        if by_member is not None:
            return any(m.startswith("deleted:") for m in by_member)
        return any(
            m.startswith("deleted:")
            for n in self.snapshot.nodes.values()
            for b in (n.policy.bindings if n.policy else ())
            for m in b.members
        )

    def member_bindings(self, principal: str) -> list[tuple[Node, Binding, MemberMatch, str]]:
        """:meth:`bindings_for`, each with the member entry that covers ``principal`` (the
        principal itself, or the group/domain/principal set it may belong to).

        Memoised per principal (the excess, scope and reach checks each ask): the same list is
        returned every time, so callers must not change it."""
        held = self._held.get(principal)
        if held is None:
            normal = self._principals.get(principal)
            if normal is None:
                normal = self._principals[principal] = normalize_principal(principal)
            held = self._member_bindings(normal)
            at: dict[str, tuple[_Candidate, ...]] = {}
            listed: list[tuple[Node, _Candidate]] = []
            facts = self._role_facts
            high = False  # bound on a node that is another's parent
            parents = self._parents or self.parent_names()
            for node, b, mm, member in held:
                role = b.role
                known = facts.get(role)
                if known is None:
                    perms = self.role_permissions(role)
                    custom = _is_custom(role)
                    known = facts[role] = (perms, custom, perms is not None and not custom)
                # _candidate(), inline: organisation scale makes 100,000s
                c = _Candidate()
                c.member = member
                c.binding = b
                c.match = mm
                c.perms, c.custom, plain = known
                c.plain = plain and b.condition is None and (mm is _NAMED or mm.match is _YES)
                c._direct = c._inherited = None
                name = node.name
                there = at.get(name)
                if there is None:
                    at[name] = (c,)
                    if not high and name in parents:
                        high = True
                else:
                    at[name] = (*there, c)
                listed.append((node, c))
            self._held_at[normal] = at
            if not high:
                self._low.add(normal)  # a resource's ancestors hold nothing of theirs
            self._held_list[principal] = listed
            self._held[principal] = held
        return held

    def held_candidates(self, principal: str) -> list[tuple[Node, _Candidate]]:
        """:meth:`member_bindings` as (node, candidate) pairs, in the same order: each with
        the role's permissions and the evidence :meth:`decide` gives for it (read-only)."""
        self.member_bindings(principal)
        return self._held_list[principal]

    def binding_evidence(
        self, node: Node, principal: str, binding: Binding, member: str
    ) -> Evidence | None:
        """The evidence :meth:`decide` gives for ``binding`` on ``node`` itself when it covers
        ``principal`` through ``member`` (shared, not rebuilt), or ``None`` if it does not."""
        normal = self._principals.get(principal)
        if normal is None:
            normal = self._principals[principal] = normalize_principal(principal)
        held = self._held_at.get(normal)
        found = held.get(node.name, ()) if held is not None else self._candidates(node, normal)
        for c in found:
            if c.binding is binding and c.member == member:
                return c.evidence(node.name, False)
        return None

    def _member_bindings(self, principal: str) -> list[tuple[Node, Binding, MemberMatch, str]]:
        by_member, indirect_all = self._by_member, self._indirect_all
        if by_member is None or indirect_all is None:
            # one pass over the snapshot: every direct member's bindings, every indirect entry
            # (the same order as the node indexes: node by node, binding by binding)
            by_member, indirect_all = {}, []
            normal = self._principals
            # member entry -> its normal form, or "" for an indirect one: an account is named in
            # many bindings, and str.startswith with 8 prefixes costs more than this lookup
            direct: dict[str, str] = {}
            for node in self.snapshot.nodes.values():
                for b in node.policy.bindings if node.policy else ():
                    for entry in b.members:
                        p = direct.get(entry)
                        if p is None:
                            if entry.startswith(_INDIRECT_KINDS):
                                p = direct[entry] = _INDIRECT_ENTRY
                            else:
                                p = normal.get(entry)
                                if p is None:
                                    p = normal[entry] = normalize_principal(entry)
                                direct[entry] = p
                        if p is _INDIRECT_ENTRY:
                            indirect_all.append((node, entry, b))
                            continue
                        got = by_member.get(p)
                        if got is None:
                            by_member[p] = [(node, b, _NAMED, p)]
                        else:
                            got.append((node, b, _NAMED, p))
            self._by_member, self._indirect_all = by_member, indirect_all
        named = by_member.get(principal)
        if not indirect_all:  # the index's own list, shared (read-only, as member_bindings')
            return named if named is not None else []
        out = list(named) if named is not None else []
        for node, member, b in indirect_all:
            m = self.members.matches(member, principal)
            if m.match is not _NO:
                out.append((node, b, m, member))
        return out

    def _candidates(self, node: Node, principal: str) -> tuple[_Candidate, ...]:
        """The bindings on ``node`` whose members cover ``principal`` (or may), memoised: a
        project's or organisation's bindings are asked about once per principal, not once per
        requirement below them."""
        key = (node.name, principal)
        found = self._cand.get(key)
        if found is None:
            idx = self._index(node)
            role_permissions = self.role_permissions
            items = [
                _candidate(principal, b, _NAMED, role_permissions(b.role), _is_custom(b.role))
                for b in idx.direct.get(principal, ())
            ]
            for m, b in idx.indirect:
                mm = self.members.matches(m, principal)
                if mm.match is not _NO:
                    items.append(_candidate(m, b, mm, role_permissions(b.role), _is_custom(b.role)))
            found = self._cand[key] = tuple(items)
        return found

    # -- decide --------------------------------------------------------------------------

    def decide(
        self,
        member: str,
        resource: str | ResourceRef,
        permission: str,
        *,
        now: datetime,
        object_name: str | None = None,
    ) -> Decision:
        """Is ``permission`` on ``resource`` granted to ``member`` at ``now``?

        ``resource`` is a full resource name or a :class:`ResourceRef` (whose ``prefix`` names
        the objects under a bucket). ``object_name`` names one exact object in a bucket.
        """
        principal = self._principals.get(member)
        if principal is None:
            principal = self._principals[member] = normalize_principal(member)
        if isinstance(resource, ResourceRef):
            name, prefix = resource.name, resource.prefix
        else:
            name, prefix = resource, None
        canon = self._canon.get(name)
        if canon is None:
            canon = self._canon[name] = self.snapshot.canonical(name)  # a project by its number
        name = canon
        chain, gap = self.chain(name)
        if not chain:
            return Decision(
                "unverifiable",
                principal,
                name,
                permission,
                (Evidence("missing", node=name, detail=f"resource {self.snapshot.absent(name)}"),),
                (gap,),
            )
        # what could block a grant (ancestry gaps, deny doubts) vs what only fails to prove one
        uncertain: list[tuple[Evidence, str]] = []
        if gap:
            uncertain.append((Evidence("missing", node=chain[-1].name, detail=gap), gap))

        # 1. deny before allow
        if self._deny or self._unreadable or self._unplaced:
            denied = self._deny_phase(
                principal, name, prefix, permission, chain, now, object_name, uncertain
            )
            if denied is not None:
                return denied

        # 2. allow bindings on the resource and every ancestor
        grants: list[Evidence] = []
        allow_doubts: list[tuple[Evidence, str]] = []
        attrs: RequestAttributes | None = None  # only a condition reads them: computed then
        unreadable = self._unreadable
        indexes = self._nodes
        held = self._held_at.get(principal)  # every binding of the principal, by node
        for depth, node in enumerate(chain):
            for u in unreadable.get(node.name, ()) if unreadable else ():
                if "allow" in read_hides(u.what):
                    why = f"the allow policy of {node.name} could not be read: {u.reason}"
                    allow_doubts.append((Evidence("unreadable", node=node.name, detail=why), why))
            if held is not None:
                found = held.get(node.name)
                if found is None:
                    continue  # no binding here names the principal (the common case)
            else:
                idx = indexes.get(node.name) or self._index(node)
                if not idx.indirect and principal not in idx.direct:
                    continue  # nothing on this node can name the principal
                found = self._candidates(node, principal)
            for c in found:
                perms = c.perms
                if perms is not None and permission not in perms:
                    continue
                b = c.binding
                if c.custom and not custom_role_applies(b.role, chain[depth:]):
                    continue  # IAM refuses such a binding: only a hand-made snapshot has it
                cond = _TRUE
                if b.condition is not None:
                    if attrs is None:
                        attrs = _request(name, prefix, permission, chain[0].kind, object_name)
                    cond = self.conditions.evaluate(b.condition, attrs, now)
                    if cond.value is Tri.FALSE:
                        continue
                ev = c.evidence(node.name, depth > 0)
                m, mm = c.member, c.match
                if perms is None:
                    why = (
                        f"the definition of {b.role} (bound on {node.name}) "
                        f"{self.snapshot.absent(b.role)}"
                    )
                    allow_doubts.append((ev, why))
                elif mm.match is _UNKNOWN:
                    allow_doubts.append((ev, f"{b.role} on {node.name} via {m}: {mm.reason}"))
                elif cond.value is Tri.UNKNOWN:
                    allow_doubts.append((ev, f"{b.role} on {node.name}: {cond.reason}"))
                else:
                    grants.append(ev)

        if grants:
            if not uncertain:
                if len(grants) > 1:
                    grants.sort(key=lambda e: (bool(e.condition), e.member != principal))
                return Decision("granted", principal, name, permission, tuple(grants))
            return Decision(
                "unverifiable",
                principal,
                name,
                permission,
                tuple(e for e, _ in uncertain) + tuple(grants),
                tuple(w for _, w in uncertain),
            )
        doubts = uncertain + allow_doubts
        if doubts:
            return Decision(
                "unverifiable",
                principal,
                name,
                permission,
                tuple(e for e, _ in doubts),
                tuple(w for _, w in doubts),
            )
        return Decision(
            "not_granted",
            principal,
            name,
            permission,
            (),
            (f"no binding on {name} or its ancestors grants {permission} to {principal}",),
        )

    def decide_many(
        self, questions: Iterable[tuple[str, ResourceRef, str]], *, now: datetime
    ) -> list[tuple[Evidence, ...] | Decision]:
        """:meth:`decide` for each ``(member, resource, permission)``, in order; a repeated
        question is decided once.

        A *granted* answer comes back as its evidence tuple alone (what
        ``decide(...).evidence`` would be) and every other answer as the :class:`Decision`.
        The common case is answered without building a Decision: the principal's bindings are
        indexed (:meth:`member_bindings`), the snapshot has no deny policy and no unreadable
        read, the ancestry is complete, and every binding that carries the permission names the
        principal without a condition. Anything else is :meth:`decide`'s.
        """
        simple = not (self._deny or self._unreadable or self._unplaced)
        principals, held_at, lows = self._principals, self._held_at, self._low
        # resource name -> the names of its node and ancestors, or () when decide() must
        # answer (not in the snapshot, incomplete ancestry)
        above: dict[str, tuple[str, ...]] = {}
        seen: dict[tuple[str, str, str | None, str], tuple[Evidence, ...] | Decision] = {}
        out: list[tuple[Evidence, ...] | Decision] = []
        last: str | None = None
        held: dict[str, tuple[_Candidate, ...]] | None = None
        principal = ""
        low = False
        for member, res, permission in questions:
            if member != last:  # a principal's questions mostly come in a row
                last = member
                got_principal = principals.get(member)  # memoised as decide() does
                if got_principal is None:
                    got_principal = principals[member] = normalize_principal(member)
                principal = got_principal
                held = held_at.get(principal) if simple else None
                low = principal in lows
            if held is not None:
                name = res.name
                names = above.get(name)
                if names is None:
                    canon = self._canon.get(name)
                    if canon is None:
                        canon = self._canon[name] = self.snapshot.canonical(name)
                    chain, gap = self.chain(canon)
                    names = above[name] = tuple(n.name for n in chain) if not gap else ()
                if names:
                    if low:  # the common case: one plain binding on the resource itself
                        found = held.get(names[0])
                        if found is not None and len(found) == 1:
                            c = found[0]
                            if c.plain and permission in c.perms:  # type: ignore[operator]
                                e = c._direct
                                if e is None:  # c.evidence(names[0], False), inline: plain
                                    e = c._direct = new_evidence(
                                        "binding",
                                        names[0],
                                        c.binding.role,
                                        c.member,
                                        "",
                                        "",
                                        c.match.reason,
                                    )
                                out.append((e,))
                                continue
                    # decide()'s allow pass where it can only grant: every binding that carries
                    # the permission is plain (else decide() answers)
                    grants: list[Evidence] = []
                    inherited = plain = False
                    for n in names:
                        found = held.get(n)
                        if found is not None:
                            for c in found:
                                perms = c.perms
                                if perms is not None and permission not in perms:
                                    continue
                                if not c.plain:
                                    break  # decide()'s
                                e = c._inherited if inherited else c._direct
                                grants.append(e if e is not None else c.evidence(n, inherited))
                            else:
                                inherited = True
                                continue
                            grants = []
                            break
                        inherited = True
                    else:
                        plain = bool(grants)
                    if plain:
                        if len(grants) > 1:
                            grants.sort(key=lambda e: (bool(e.condition), e.member != principal))
                        out.append(tuple(grants))
                        continue
            key = (member, res.name, res.prefix, permission)
            got = seen.get(key)
            if got is None:
                decision = self.decide(member, res, permission, now=now)
                got = seen[key] = decision.evidence if decision.state == "granted" else decision
            out.append(got)
        return out

    def _deny_phase(
        self,
        principal: str,
        name: str,
        prefix: str | None,
        permission: str,
        chain: tuple[Node, ...],
        now: datetime,
        object_name: str | None,
        uncertain: list[tuple[Evidence, str]],
    ) -> Decision | None:
        """Deny policies on the chain: the *denied* decision, or ``None`` with every deny rule
        that may apply (and every unreadable deny policy) added to ``uncertain``."""
        attrs: RequestAttributes | None = None
        sites: list[tuple[Node, list[DenyPolicy] | tuple[()], str]] = [
            (node, self._deny.get(node.name, ()), "") for node in chain
        ]
        for node in chain if self._unplaced else ():
            for dp in self._unplaced:
                why = self.snapshot.may_be(dp.attachment_point, node)
                if why:
                    sites.append((node, [dp], why))
        for node, policies, maybe in sites:
            for u in self._unreadable.get(node.name, ()) if not maybe else ():
                # deny policies attach only to organisations, folders and projects
                if "deny" in read_hides(u.what) and node.kind in _DENY_POINTS:
                    why = f"deny policies on {node.name} could not be read: {u.reason}"
                    uncertain.append((Evidence("unreadable", node=node.name, detail=why), why))
            for dp in policies:
                for i, rule in enumerate(dp.rules):
                    if not any(permission_matches(p, permission) for p in rule.denied_permissions):
                        continue
                    if any(permission_matches(p, permission) for p in rule.exception_permissions):
                        continue
                    who = _best(self.members, rule.denied_principals, principal)
                    if who[0].match is Match.NO:
                        continue
                    exc = _best(self.members, rule.exception_principals, principal)
                    if exc[0].match is Match.YES:
                        continue
                    cond = _TRUE
                    if rule.denial_condition is not None:
                        if attrs is None:
                            attrs = _request(name, prefix, permission, chain[0].kind, object_name)
                        cond = self.conditions.evaluate(
                            rule.denial_condition, attrs, now, deny=True
                        )
                        if cond.value is Tri.FALSE:
                            continue
                    ev = Evidence(
                        "deny",
                        node=dp.attachment_point,
                        member=who[1],
                        condition=rule.denial_condition.expression if rule.denial_condition else "",
                        deny_policy=dp.name,
                        detail=f"rule {i}: {who[0].reason}",
                    )
                    if (
                        who[0].match is Match.YES
                        and exc[0].match is Match.NO
                        and cond.value is Tri.TRUE
                        and not maybe
                    ):
                        return Decision(
                            "denied",
                            principal,
                            name,
                            permission,
                            (ev,),
                            (f"denied by {dp.name} rule {i}",),
                        )
                    why = "; ".join(
                        r
                        for r in (
                            who[0].reason if who[0].match is Match.UNKNOWN else "",
                            exc[0].reason if exc[0].match is Match.UNKNOWN else "",
                            cond.reason,
                            f"attached to {dp.attachment_point}; {maybe}" if maybe else "",
                        )
                        if r
                    )
                    uncertain.append((ev, f"deny rule {i} of {dp.name} may apply: {why}"))
        return None


def _request(
    name: str, prefix: str | None, permission: str, kind: str, object_name: str | None
) -> RequestAttributes:
    """The request attributes a condition reads (``object_name`` names one exact object)."""
    got = request_attributes(name, prefix, permission, kind)
    if object_name is not None and got.name_prefix is not None:
        got = RequestAttributes(got.name_prefix + object_name, None, got.type, got.service)
    return got


def _best(
    resolver: MemberResolver, patterns: tuple[str, ...], principal: str
) -> tuple[MemberMatch, str]:
    """The strongest (YES > UNKNOWN > NO) deny-principal match, and the pattern that gave it."""
    best = (MemberMatch(Match.NO), "")
    for p in patterns:
        m = resolver.deny_matches(p, principal)
        if m.match is Match.YES:
            return (m, p)
        if m.match is Match.UNKNOWN and best[0].match is Match.NO:
            best = (m, p)
    return best


def decide(
    member: str,
    resource: str | ResourceRef,
    permission: str,
    snapshot: Snapshot,
    *,
    now: datetime,
    object_name: str | None = None,
) -> Decision:
    """One-shot :meth:`Evaluator.decide` (builds an :class:`Evaluator`; reuse one for many)."""
    return Evaluator(snapshot).decide(
        member, resource, permission, now=now, object_name=object_name
    )


# -- the whole check -----------------------------------------------------------------------


def evaluate(
    requirements: tuple[Requirement, ...] | list[Requirement],
    steps: tuple[StepIdentity, ...] | list[StepIdentity],
    snapshot: Snapshot | Evaluator,
    policy: OrgPolicy | None,
    *,
    now: datetime,
    context: CheckContext,
    pipeline: str = "",
) -> Report:
    """Turn a pipeline's requirements and steps into a :class:`Report` (pure).

    Findings: identities (ZT100–ZT111), every requirement decided (ZT200–ZT202, ZT300,
    ZT301), excess privilege of every step and pipeline identity (ZT210–ZT213), what the
    snapshot could not read (ZT400) and the organisation policy rules (ZT500). Severities and
    suppressions come from ``policy`` (strict defaults when ``None``).
    """
    evaluator = snapshot if isinstance(snapshot, Evaluator) else Evaluator(snapshot)
    # The cyclic collector would walk every object of the snapshot over and over while the
    # report allocates (cost grows with world x report: the superlinear part at 10,000 steps);
    # evaluation creates no reference cycles, so it is paused for the call and restored.
    # Restored, the report's million objects would all be young: the first two collections
    # after the call would walk them (~0.3 s at 10,000 steps). They live as long as the report,
    # so they are aged at once (freeze + unfreeze moves every tracked object to the oldest
    # generation without a walk; nothing is kept from the collector, only walked later, in the
    # next full collection the process makes anyway).
    paused = gc.isenabled()
    gc.disable()
    try:
        return build_report(
            tuple(requirements),
            tuple(steps),
            evaluator,
            policy,
            now=now,
            context=context,
            pipeline=pipeline,
        )
    finally:
        if paused:
            gc.freeze()
            gc.unfreeze()
            gc.enable()
