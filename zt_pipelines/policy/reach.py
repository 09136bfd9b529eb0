"""Who can become whom: the reach graph of a pipeline's identities (pure).

An identity can obtain another service account's rights by acting as it, minting its tokens,
signing as it, creating its keys or rewriting its allow policy — each granted on the service
account itself or on any project, folder or organisation above it (which reaches every
service account below). Following those edges transitively from every step SA, the pipeline
SA and the submitter gives the identities each of them can become; a step that can become an
identity holding more than the step's own needs, a basic role or an escalation-capable
permission is refused with the whole path as evidence
(``train-sa → actAs → legacy-sa → roles/editor``).

Fail closed: an edge the snapshot cannot settle — a service account policy that could not be
read, a group of unknown membership, a conditional grant, a role without a definition — is an
unverifiable edge, reported, never ignored. Deny policies are not applied to edges (a deny can
only remove an edge, so ignoring it over-reports reach, never under-reports it).

Expected edges are not findings: the pipeline SA acting as its own step SAs through a grant on
each step SA, and the submitter acting as the pipeline SA through a grant on it.

Pure: no IO. Reads the snapshot through the engine's :class:`Evaluator` (passed in).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from zt_pipelines.policy.catalogue import escalation_rank, escalation_reason, is_basic_role
from zt_pipelines.policy.conditions import ConditionResult, Tri, request_attributes
from zt_pipelines.policy.lending import (
    LENDERS,
    LENDING_PERMISSIONS,
    RESOURCE_PREFIXES,
    Lender,
    lender_of,
    lent_permissions,
    on_resource,
)
from zt_pipelines.policy.members import Match, MemberMatch
from zt_pipelines.policy.report import Evidence, Finding, record_maker
from zt_pipelines.policy.snapshot import read_hides
from zt_pipelines.policy.wording import plural
from zt_pipelines.resources import CRM, IAM

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator
    from zt_pipelines.policy.requirements import RunWindow
    from zt_pipelines.policy.snapshot import Binding, Condition, Node

#: permissions that let their holder become a service account, with the edge's label (most
#: direct first). Granted on a project, folder or organisation they reach every SA below.
EDGE_PERMISSIONS: dict[str, str] = {
    "iam.serviceAccounts.actAs": "actAs",
    "iam.serviceAccounts.getAccessToken": "getAccessToken",
    "iam.serviceAccounts.getOpenIdToken": "getOpenIdToken",
    "iam.serviceAccounts.signBlob": "signBlob",
    "iam.serviceAccounts.signJwt": "signJwt",
    "iam.serviceAccounts.implicitDelegation": "implicitDelegation",
    "iam.serviceAccountKeys.create": "serviceAccountKeys.create",
    # an API key bound to the account authenticates as it (with apikeys.keys.create in some
    # project, which is not provably absent: the binding right alone is the edge, fail closed)
    "iam.serviceAccountApiKeyBindings.create": "bind an API key",
    # HMAC keys are created for any account of the project with this project-level permission
    # alone (none on the account); update re-activates an INACTIVE one: Cloud Storage as it
    "storage.hmacKeys.create": "create an HMAC key",
    "storage.hmacKeys.update": "re-activate an HMAC key",
    "iam.serviceAccounts.setIamPolicy": "setIamPolicy",
    # rewriting a project's, folder's or organisation's allow policy grants any of the above
    "resourcemanager.projects.setIamPolicy": "setIamPolicy",
    "resourcemanager.folders.setIamPolicy": "setIamPolicy",
    "resourcemanager.organizations.setIamPolicy": "setIamPolicy",
}
_EDGE_SET = frozenset(EDGE_PERMISSIONS)
_HIERARCHY = frozenset({"project", "folder", "organization", "serviceAccount"})
_REACHING = _EDGE_SET | LENDING_PERMISSIONS
#: the permissions that lend a BigQuery connection's own service account (one per connection)
CONNECTION_PERMISSIONS: frozenset[str] = frozenset(
    p
    for lender in LENDERS
    if "bigquery.connections.use" in lender.permissions
    for p in lender.permissions
)
_ORDER = {p: i for i, p in enumerate(EDGE_PERMISSIONS)}
_UNKNOWN = Match.UNKNOWN  # an Enum attribute costs a lookup per binding

#: Google service agents that run the code a caller hands them, with no actAs asked: whoever
#: can create such a job or deployment in a project runs as that project's agent
#: (``service-NUMBER@DOMAIN.iam.gserviceaccount.com``). domain -> (permissions, edge label).
#: A view of :data:`zt_pipelines.policy.lending.LENDERS` (the one table), kept for its readers.
CODE_RUNNER_EDGES: dict[str, tuple[frozenset[str], str]] = {
    lender.account.split("@", 1)[1].split(".", 1)[0]: (lender.permissions, lender.label)
    for lender in LENDERS
    if lender.lends is None and lender.account.startswith("service-{number}@")
}


@dataclass(frozen=True, slots=True)
class Hop:
    """One edge of a path: ``source`` can become ``target`` through ``role`` on ``node``.

    Attributes:
        source: the member that holds the grant (``serviceAccount:...``, ``user:...``).
        target: the service account it can become (email).
        permission: the permission that makes the edge (the most direct one of the role).
        role: the role of the binding.
        node: where the binding is (the SA itself, or a project/folder/organisation above it).
        via: the binding member that matched ``source`` (itself, or a group/domain).
        condition: the binding's condition expression, if any.
    """

    source: str
    target: str
    permission: str
    role: str
    node: str
    via: str
    condition: str = ""

    @property
    def label(self) -> str:
        """The short name of the edge (``actAs``, ``getAccessToken`` ... or the job that runs
        as a code-running service agent)."""
        return EDGE_PERMISSIONS.get(self.permission, self.permission)


_new_hop = record_maker(Hop)  # out_edges() makes one per account below a binding: 10,000s


@dataclass(frozen=True)
class Reach:
    """An identity ``start`` can become ``target`` along ``path`` (first hop first).

    A last hop granted above the accounts (project, folder, organisation) reaches all of them
    at once: ``target`` is then ``*`` and ``targets`` lists the accounts newly reached."""

    start: str
    target: str
    path: tuple[Hop, ...]
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnknownEdge:
    """An edge the snapshot cannot settle, reached from ``start`` after ``path``.

    ``target``: the one identity it would reach (a lent identity, whose grants are known: the
    edge matters only if reaching it would), or ``""`` (any account below ``node``)."""

    start: str
    path: tuple[Hop, ...]
    source: str
    reason: str
    node: str = ""
    role: str = ""
    via: str = ""
    target: str = ""


@dataclass(frozen=True)
class ReachGraph:
    """What every start identity can become, and the edges that could not be settled."""

    reaches: tuple[Reach, ...]
    unknown: tuple[UnknownEdge, ...]
    #: service accounts known to the snapshot, for the report's coverage note
    accounts: int = 0


def short(member: str) -> str:
    """A compact name for paths: the account id of a service account, else the email."""
    kind, _, rest = member.partition(":")
    email = rest if kind in ("serviceAccount", "user", "group") else member
    if email.endswith(".iam.gserviceaccount.com"):
        return email.split("@", 1)[0]
    return email


def render_path(start: str, path: tuple[Hop, ...]) -> str:
    """``train-sa → actAs → sa2 → getAccessToken → sa3``."""
    parts = [short(start)]
    for hop in path:
        parts += [hop.label, short(hop.target)]
    return " → ".join(parts)


class _Graph:
    """The edge index over one snapshot: which service accounts sit below each node, and which
    bindings there carry an edge permission (or a role of unknown definition)."""

    def __init__(
        self, ev: Evaluator, now: datetime | None = None, window: RunWindow | None = None
    ) -> None:
        self.ev = ev
        self.now, self.window = now, window
        # (role, node) -> the lenders the role's holders there make act: (number, lender,
        # the lending permissions it carries, the edge's name); memoised per role and node
        self._lends: dict[tuple[str, str], list[tuple[str, Lender, frozenset[str], str]]] = {}
        self._lend_judged: dict[tuple[str, str, frozenset[str]], ConditionResult] = {}
        snap = ev.snapshot
        emails = {e.lower() for e in snap.service_accounts}
        for name, node in snap.nodes.items():
            if node.kind == "serviceAccount" and "/serviceAccounts/" in name:
                emails.add(name.rsplit("/", 1)[1].lower())
        self.accounts = sorted(emails)
        self.node_of: dict[str, str] = {}
        self.below: dict[str, list[str]] = {}
        self.gaps: dict[str, str] = {}
        nodes, chain, below, node_of = snap.nodes, ev.chain, self.below, self.node_of
        for email in self.accounts:  # _sa_node() and _chain(), inline (10,000s of accounts)
            home = self._project(email)
            name = f"{IAM}projects/{home}/serviceAccounts/{email}"
            if name not in nodes:
                other = f"{IAM}projects/-/serviceAccounts/{email}"
                if other in nodes:
                    name = other
            node_of[email] = name
            # the account's own policy is not in the snapshot: grants above it still reach it
            above = chain(name)[0] or chain(CRM + "projects/" + home)[0]
            for n in above:
                got = below.get(n.name)
                if got is None:
                    below[n.name] = [email]
                else:
                    got.append(email)
        self.edge_roles: dict[str, frozenset[str] | None] = {}
        # role -> (its edge permissions or None: unknown, the most direct one): per role
        self._edge_best: dict[str, tuple[frozenset[str] | None, str]] = {}
        # hierarchy node -> the identities Google services lend in the projects at or below
        # it: (project number, lender); a project whose number the state lacks: ("?" + its
        # name, lender) — its lent accounts are not known by name (see _unattributed)
        self.agents_below: dict[str, list[tuple[str, Lender]]] = {}
        for project in snap.nodes.values():
            if project.kind != "project":
                continue
            number = project.project_number or "?" + project.name
            for n in ev.chain(project.name)[0]:
                self.agents_below.setdefault(n.name, []).extend(
                    (number, lender) for lender in LENDERS
                )
        # a grant on a lending resource itself (a Cloud Run service, a function, a Dataform
        # repository, a BigQuery connection ...): its project's lenders, for what applies there
        for node in snap.nodes.values():
            if node.kind in _HIERARCHY or not node.name.startswith(RESOURCE_PREFIXES):
                continue
            lenders = on_resource(node.name)
            owner = next((n for n in ev.chain(node.name)[0] if n.kind == "project"), None)
            if lenders and owner is not None:
                number = owner.project_number or "?" + owner.name
                self.agents_below[node.name] = [(number, lender) for lender in lenders]
        self._per_resource: list[str] | None = None
        self._orphans: list[tuple[str, str]] | None = None
        # projects whose service accounts could not be listed: whom an edge there reaches is
        # unknown (live mode lists the identities' projects and those a search found edges on)
        self.unlisted = {
            u.target: u.reason
            if u.reason.startswith(("its ", "the "))
            else f"its service accounts could not be listed ({u.reason})"
            for u in sorted(snap.unreadable, key=lambda u: u.reason, reverse=True)
            if u.what == "serviceAccounts.list"
        }
        # numbers of projects whose BigQuery connections could not be listed: whose accounts a
        # grant of bigquery.connections.use there lends is unknown
        no_connections: set[str] = set()
        for u in snap.unreadable:
            if u.what == "bigquery.connections.list":
                listed = snap.nodes.get(u.target)
                if listed is not None and listed.project_number:
                    no_connections.add(listed.project_number)
        self.no_connections = frozenset(no_connections)
        # the nodes out_edges() looks at: accounts or lent agents at or below them, or accounts
        # not listed (one lookup per binding; most bindings are on buckets, datasets ...)
        self._relevant = frozenset(self.below) | frozenset(self.agents_below) | set(self.unlisted)

    def _project(self, email: str) -> str:
        record = self.ev.snapshot.service_accounts.get(email)
        if record is not None and record.project_id:
            return record.project_id
        domain = email.partition("@")[2]
        return domain.split(".", 1)[0] if domain.endswith(".iam.gserviceaccount.com") else "-"

    def _reaching(self, role: str) -> bool:
        """Can a grant of ``role`` make an edge (impersonation or lending; unknown: yes)?"""
        perms = self.ev.role_permissions(role)
        return perms is None or not perms.isdisjoint(_REACHING)

    def edge_permissions(self, role: str) -> frozenset[str] | None:
        """The edge permissions ``role`` includes (``None``: definition unknown)."""
        if role not in self.edge_roles:
            perms = self.ev.role_permissions(role)
            self.edge_roles[role] = None if perms is None else perms & _EDGE_SET
        return self.edge_roles[role]

    def out_edges(self, member: str) -> tuple[list[Hop], list[UnknownEdge]]:
        """Every edge out of ``member`` (settled), and the ones that cannot be settled."""
        hops: list[Hop] = []
        unknown: list[UnknownEdge] = []
        if lent_permissions(member.partition(":")[2]) is not None:
            return hops, unknown  # lent only in part (its reads): none of its edges are
        agents_below, below, unlisted = self.agents_below, self.below, self.unlisted
        edge_best, relevant = self._edge_best, self._relevant
        own = member.partition(":")[2]
        for node, binding, mm, via in self.ev.member_bindings(member):
            name = node.name
            if name not in relevant:
                continue  # no account at or below this node (a bucket, a dataset, ...)
            agents = agents_below.get(name)
            targets = below.get(name)
            if unlisted and name in unlisted and self._reaching(binding.role):
                unknown.append(_unknown(member, node, binding, via, unlisted[name]))
            if not agents and not targets:
                continue  # no account at or below this node (a bucket, a dataset, ...)
            if agents and self.no_connections:
                self._connections_unknown(member, node, binding, via, agents, unknown)
            cond = binding.condition.expression if binding.condition else ""
            if agents:
                hops += self._runner_hops(member, node, binding, mm, via, agents, unknown, targets)
            if not targets:
                continue
            role = binding.role
            known = edge_best.get(role)
            if known is None:
                perms = self.edge_permissions(role)
                known = edge_best[role] = (
                    perms,
                    min(perms, key=_ORDER.__getitem__) if perms else "",
                )
            perms, best = known
            if perms is None:
                unknown.append(_unknown(member, node, binding, via, "role definition unknown"))
                continue
            if not perms:
                continue
            if mm.match is _UNKNOWN:
                unknown.append(_unknown(member, node, binding, via, mm.reason))
                continue
            if cond:
                unknown.append(
                    _unknown(member, node, binding, via, f"a conditional grant ({cond})")
                )
                continue
            if node.kind != "serviceAccount":  # every account below, as one hop
                hops.append(_new_hop(member, "*", best, binding.role, node.name, via, cond))
                continue
            for target in targets:
                if target == own:
                    continue
                hops.append(_new_hop(member, target, best, binding.role, node.name, via, cond))
        return hops, unknown

    def _runner_hops(
        self,
        member: str,
        node: Node,
        binding: Binding,
        mm: MemberMatch,
        via: str,
        agents: list[tuple[str, Lender]],
        unknown: list[UnknownEdge],
        covered: list[str] | None,
    ) -> list[Hop]:
        """Hops to the identities Google services lend ``member`` (lending.LENDERS), judged as
        a grant is: a condition TRUE now or at a time of the run's window where it can change
        is an edge, FALSE none, UNKNOWN an unknown edge to that identity (as are a group of
        unknown membership and a role of unknown definition — unless the binding is an
        unknown edge to every account below already, ``covered``)."""
        lends = self._lends.get((binding.role, node.name))
        if lends is None:
            lends = self._lends[(binding.role, node.name)] = self._lenders(binding.role, agents)
        if not lends:
            return []
        unsure = ""
        if self.ev.role_permissions(binding.role) is None:
            if covered:
                return []  # an unknown edge to every account below already (ZT217)
            unsure = "role definition unknown"
        elif mm.match is Match.UNKNOWN:
            unsure = mm.reason or "membership unknown"
        own = member.partition(":")[2]
        condition = binding.condition
        cond = condition.expression if condition else ""
        hops = []
        for number, lender, gives, label in lends:
            why = unsure
            if condition is not None:
                judged = self.lend_condition(condition, node, gives)
                if judged.value is Tri.FALSE:
                    continue  # not now, nor at any time of the run's window
                if judged.value is Tri.UNKNOWN:
                    why = "; ".join(
                        w
                        for w in (
                            why,
                            f"a conditional grant ({cond})"
                            + (f": {judged.reason}" if judged.reason else ""),
                        )
                        if w
                    )
            if number.startswith("?"):  # which account it lends is not known by name
                agents_lent = self._unattributed(lender)
                why = "; ".join(
                    w
                    for w in (
                        f"the number of {number[1:].rsplit('/', 2)[-1]} is not in the IAM "
                        "state, and this account of an unknown project may be it",
                        why,
                    )
                    if w
                )
            else:
                fixed = lender.email(number)
                agents_lent = [fixed] if fixed else self._accounts_lent(number, lender)
            for agent in agents_lent:
                if agent == own:
                    continue
                if why:
                    unknown.append(
                        UnknownEdge(
                            member,
                            (),
                            member,
                            f"{label} would act as {lender.what}, {agent}: {why}",
                            node.name,
                            binding.role,
                            via,
                            agent,
                        )
                    )
                else:
                    hops.append(Hop(member, agent, label, binding.role, node.name, via, cond))
        return hops

    def _lenders(
        self, role: str, agents: list[tuple[str, Lender]]
    ) -> list[tuple[str, Lender, frozenset[str], str]]:
        """The lenders below a node whose permissions ``role`` carries (all of them when its
        definition is unknown: it may)."""
        perms = self.ev.role_permissions(role)
        out = []
        for number, lender in agents:
            if perms is None:
                out.append((number, lender, lender.permissions, lender.label))
            elif not perms.isdisjoint(lender.permissions):
                gives = perms & lender.permissions
                out.append((number, lender, gives, lender.label_for(gives)))
        return out

    def lend_condition(
        self, condition: Condition, node: Node, permissions: frozenset[str]
    ) -> ConditionResult:
        """A lending grant's condition, for a request for one of ``permissions`` on ``node``:
        TRUE when it holds now or at a time inside the run's window where it can change (a
        time-bound grant starting during the run), else UNKNOWN when it may, else FALSE.
        Memoised per (expression, node, permissions): the same for every holder."""
        key = (condition.expression, node.name, permissions)
        found = self._lend_judged.get(key)
        if found is None:
            found = self._lend_judged[key] = judge_condition(
                self.ev, condition, node, permissions, self.now, self.window
            )
        return found

    def _connections_unknown(
        self,
        member: str,
        node: Node,
        binding: Binding,
        via: str,
        agents: list[tuple[str, Lender]],
        unknown: list[UnknownEdge],
    ) -> None:
        """An unknown edge for a grant that lends the accounts of BigQuery connections in a
        project whose connections could not be listed (which accounts it lends is unknown)."""
        perms = self.ev.role_permissions(binding.role)
        if perms is not None and perms.isdisjoint(CONNECTION_PERMISSIONS):
            return
        for number in sorted({n for n, _lender in agents if n in self.no_connections}):
            why = f"the BigQuery connections of project {number} could not be listed"
            unknown.append(_unknown(member, node, binding, via, why))

    def _unattributed(self, lender: Lender) -> list[str]:
        """The accounts of ``lender``'s form the IAM state names (a binding's member, a listed
        account) whose project number is none of its projects': one may be what a project
        whose number it lacks lends. Scanned once, only when such a project lends."""
        if self._orphans is None:
            snap = self.ev.snapshot
            known = {n.project_number for n in snap.nodes.values() if n.project_number}
            emails = {e.lower() for e in snap.service_accounts}
            emails.update(
                m.partition(":")[2].lower()
                for n in snap.nodes.values()
                for b in (n.policy.bindings if n.policy else ())
                for m in b.members
                if m.startswith("serviceAccount:")
            )
            orphans = []
            for email in sorted(emails):
                found = lender_of(email)
                if found is not None and found[0] not in known:
                    orphans.append((email, found[0]))
            self._orphans = orphans
        return [e for e, number in self._orphans if lender.matches(e, number)]

    def _accounts_lent(self, number: str, lender: Lender) -> list[str]:
        """The per-resource accounts (a BigQuery connection's) of project ``number`` that the
        IAM state names in a binding: the others hold nothing it knows of."""
        if self._per_resource is None:
            found = {
                m.partition(":")[2].lower()
                for n in self.ev.snapshot.nodes.values()
                for b in (n.policy.bindings if n.policy else ())
                for m in b.members
                if m.startswith("serviceAccount:") and "@gcp-sa-bigquery-c" in m
            }
            self._per_resource = sorted(found)
        return [e for e in self._per_resource if lender.matches(e, number)]

    def unreadable_policies(self) -> list[tuple[str, str]]:
        """(node, why) for every node above some service account whose allow policy (or
        ancestry) could not be read: who can become those accounts is unknown."""
        out = []
        for u in self.ev.snapshot.unreadable:
            hides = read_hides(u.what)
            if ("allow" in hides or "ancestry" in hides) and (
                u.target in self.below or u.target.startswith(IAM)
            ):
                out.append((u.target, f"{u.what} failed: {u.reason}"))
        return out


def judge_condition(
    ev: Evaluator,
    condition: Condition,
    node: Node,
    permissions: frozenset[str],
    now: datetime | None,
    window: RunWindow | None,
) -> ConditionResult:
    """A grant's ``condition`` for a request for one of ``permissions`` on ``node``: TRUE when
    it holds at ``now`` or at a time inside ``window`` where it can change (each timestamp it
    names, the window's end), else UNKNOWN when it may at one of them, else FALSE. Without
    ``now`` it is UNKNOWN (fail closed)."""
    from zt_pipelines.policy.timewindow import later_times

    if now is None:
        return ConditionResult(Tri.UNKNOWN, "the check time is not known")
    times = (now, *later_times(ev, condition.expression, now, window))
    first_unknown: ConditionResult | None = None
    for permission in sorted(permissions):
        attrs = request_attributes(node.name, None, permission, node.kind)
        for t in times:
            got = ev.conditions.evaluate(condition, attrs, t)
            if got.value is Tri.TRUE:
                when = "" if t is now else f"from {t.isoformat()}, inside the run's window"
                return ConditionResult(Tri.TRUE, when)
            if got.value is Tri.UNKNOWN and first_unknown is None:
                first_unknown = got
    return first_unknown or ConditionResult(Tri.FALSE)


def _unknown(member: str, node: Node, binding: Binding, via: str, why: str) -> UnknownEdge:
    return UnknownEdge(member, (), member, why, node.name, binding.role, via)


def reach_graph(
    ev: Evaluator,
    starts: list[str],
    *,
    expected: dict[str, set[str]],
    now: datetime | None = None,
    window: RunWindow | None = None,
) -> ReachGraph:
    """Breadth-first from every start member over the impersonation edges of the snapshot.

    Args:
        ev: the engine's evaluator over the snapshot.
        starts: members to start from (``serviceAccount:EMAIL``, ``user:EMAIL``).
        expected: start member → service-account emails it is expected to become through a
            grant on the account itself (the pipeline SA's step SAs; the submitter's pipeline
            SA). Those hops are neither reported nor followed.
        now: the check time: a conditional grant of a lending permission is judged at it and
            over ``window`` (``None``: such a grant is an unknown edge).
        window: until when the run uses its identities (``None``: the default run window).

    Returns:
        The shortest path to every identity each start can become, and unsettled edges.
    """
    graph = _Graph(ev, now, window)
    cache: dict[str, tuple[list[Hop], list[UnknownEdge]]] = {}
    blind = graph.unreadable_policies()
    reaches: list[Reach] = []
    unknown: list[UnknownEdge] = []
    for start in starts:
        seen = {start.partition(":")[2]} if start.startswith("serviceAccount:") else set()
        allowed = expected.get(start, set())
        queue: deque[tuple[str, tuple[Hop, ...]]] = deque([(start, ())])
        for node, why in blind:
            unknown.append(UnknownEdge(start, (), start, why, node))
        while queue:
            member, path = queue.popleft()
            if member not in cache:
                cache[member] = graph.out_edges(member)
            hops, unsure = cache[member]
            if unsure:
                unknown.extend(
                    UnknownEdge(start, path, u.source, u.reason, u.node, u.role, u.via, u.target)
                    for u in unsure
                )
            # expected hops: by design (launched by / submitted as, granted on the SA itself)
            expected_targets: list[str] = []
            if not path and allowed:
                # an expected hop (the launcher's actAs on its own step) must not hide a
                # stronger edge to the same account (a token grant on the folder): whatever
                # order the policies were read in, the unexpected hops go first, and the
                # expected ones are only marked seen
                node_of = graph.node_of
                unexpected = []
                for h in hops:
                    if h.target in allowed and h.node == node_of.get(h.target):
                        expected_targets.append(h.target)
                    else:
                        unexpected.append(h)
                hops = unexpected
            for hop in hops:
                if hop.target == "*":
                    fresh = tuple(t for t in graph.below.get(hop.node, ()) if t not in seen)
                    if fresh:
                        seen.update(fresh)
                        reaches.append(Reach(start, "*", (*path, hop), fresh))
                    # the accounts' own onward edges are not followed: any account with an
                    # edge holds an escalation-capable permission, so this hop is refused
                    # already (reported once, naming the worst account it reaches)
                    continue
                if hop.target in seen:
                    continue
                seen.add(hop.target)
                walked = (*path, hop)
                reaches.append(Reach(start, hop.target, walked))
                queue.append((f"serviceAccount:{hop.target}", walked))
            seen.update(expected_targets)
    return ReachGraph(tuple(reaches), tuple(unknown), len(graph.accounts))


@dataclass(frozen=True)
class Holding:
    """What a reached identity holds that makes reaching it dangerous."""

    node: str
    role: str
    why: str


class Holdings:
    """What each reached identity holds, indexed once per identity (the start-independent part:
    basic roles, escalation-capable permissions, unknown roles) and filtered per start."""

    _RANK = ("a basic role", "escalation-capable", "a role of unknown")

    def __init__(self, ev: Evaluator) -> None:
        self.ev = ev
        self._grants: dict[str, list[tuple[str, str, frozenset[str], str]]] = {}
        self._severe: dict[str, bool] = {}  # asked once per target of every path: memoised

    def _of(self, email: str) -> list[tuple[str, str, frozenset[str], str]]:
        found = self._grants.get(email)
        if found is None:
            found = []
            lent = lent_permissions(email)
            for node, binding, mm, via in self.ev.member_bindings(f"serviceAccount:{email}"):
                if mm.match is Match.UNKNOWN:  # a group of unknown membership: MAY hold it
                    maybe = self._maybe(binding.role, via)
                    if maybe:
                        found.append((node.name, binding.role, frozenset(), maybe))
                    continue
                if mm.match is not Match.YES:
                    continue
                perms = self.ev.role_permissions(binding.role)
                if perms is not None and lent is not None:
                    # a service lends only part of its identity: the rest is not reached; on
                    # a project or above it reaches every resource there, beyond any need
                    perms = perms & lent
                    if perms:
                        wide = node.kind in ("project", "folder", "organization")
                        why = f"{', '.join(sorted(perms))} on every resource below" if wide else ""
                        found.append((node.name, binding.role, perms, why))
                elif perms is None:
                    found.append((node.name, binding.role, frozenset(), self._RANK[2]))
                elif is_basic_role(binding.role):
                    why = f"a basic role ({len(perms):,} permissions)"
                    found.append((node.name, binding.role, perms, why))
                else:
                    risky = sorted((p for p in perms if escalation_reason(p)), key=escalation_rank)
                    why = f"escalation-capable {', '.join(risky[:3])}" if risky else ""
                    found.append((node.name, binding.role, perms, why))
            self._grants[email] = found
        return found

    def _maybe(self, role: str, via: str) -> str:
        """Why a grant through a member of unknown membership matters (``""``: it does not)."""
        perms = self.ev.role_permissions(role)
        if perms is None:
            return ""
        if is_basic_role(role):
            return f"possibly a basic role (through {via}, whose membership is unknown)"
        risky = sorted((p for p in perms if escalation_reason(p)), key=escalation_rank)
        if not risky:
            return ""
        return (
            f"possibly escalation-capable {', '.join(risky[:3])} (through {via}, whose "
            "membership is unknown)"
        )

    def severe(self, email: str) -> bool:
        """True when ``email`` holds a basic role, an escalation-capable permission or a role
        of unknown definition (dangerous to reach, whatever the start needs)."""
        found = self._severe.get(email)
        if found is None:
            found = self._severe[email] = any(why for _n, _r, _p, why in self._of(email))
        return found

    def dangerous(
        self, email: str, needed_at: dict[str, set[str]] | None, start: str = "the start"
    ) -> list[Holding]:
        """The grants of ``email`` that give a basic role, an escalation-capable permission, a
        role of unknown definition, or more than ``needed_at`` (node → permissions the start
        itself needs on that node or below) — the most dangerous first."""
        out: list[Holding] = []
        for node, role, perms, why in self._of(email):
            if why:
                out.append(Holding(node, role, why))
                continue
            beyond = perms - (needed_at or {}).get(node, set())
            if beyond:
                text = f"{plural(len(beyond), 'permission')} beyond {start}'s needs, e.g. "
                out.append(Holding(node, role, text + ", ".join(sorted(beyond)[:3])))
        out.sort(
            key=lambda h: next((i for i, r in enumerate(self._RANK) if h.why.startswith(r)), 3)
        )
        return out


def dangerous_holdings(
    ev: Evaluator, email: str, needed_at: dict[str, set[str]] | None, start: str = "the start"
) -> list[Holding]:
    """One-shot :meth:`Holdings.dangerous`."""
    return Holdings(ev).dangerous(email, needed_at, start)


def path_evidence(start: str, path: tuple[Hop, ...]) -> tuple[Evidence, ...]:
    """One evidence link per hop, in order."""
    return tuple(
        Evidence(
            "binding",
            node=h.node,
            role=h.role,
            member=h.via,
            condition=h.condition,
            detail=f"hop {i + 1}: {short(h.source)} → {h.label} → {short(h.target)}",
        )
        for i, h in enumerate(path)
    )


def accounts_without_policy(ev: Evaluator) -> list[str]:
    """Service accounts the snapshot knows whose own allow policy it does not hold (and that
    are not reported unreadable): grants on them are invisible to the reach graph."""
    held = {  # the cheaper test first: most nodes are not service accounts
        name.rpartition("/")[2].lower()
        for name in ev.snapshot.nodes
        if "/serviceAccounts/" in name and name.startswith(IAM)
    }
    held |= {
        u.target.rsplit("/", 1)[1].lower()
        for u in ev.snapshot.unreadable
        if "/serviceAccounts/" in u.target
    }
    return [e for e in ev.snapshot.service_accounts if e.lower() not in held]


REACH_CODES = ("ZT216", "ZT217", "ZT218")


def explain_reach(findings: Iterable[Finding]) -> str:
    """``check --explain``: every reach finding's path, one hop per line with its binding."""
    lines: list[str] = []
    for f in findings:
        if f.code not in REACH_CODES:
            continue
        lines.append(f"{f.code} {f.principal}: {f.message}")
        for e in f.evidence:
            where = f"{e.role} on {e.node}" if e.role else e.node
            cond = f" if {e.condition}" if e.condition else ""
            via = f" (as {e.member})" if e.member and e.detail.startswith("hop") else ""
            lines.append(f"    {e.detail}: {where}{cond}{via}")
    return "\n".join(lines)
