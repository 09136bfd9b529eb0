"""Who else can become a pipeline's identities (ZT220, and a note on administrators) — pure.

A step identity is minimal only if nobody else can use it: a principal that can act as,
mint tokens for, sign as, or create keys for a step's service account holds everything that
step holds. The reach checks (ZT216–ZT218) walk *outward* from the pipeline's identities; this
one looks *inward*, at every binding on each identity's own service account and on its
project, folder and organisation that carries an impersonation permission.

Expected, and not reported: the pipeline identity on the step identities it launches and on
the jobs they launch, a step identity on the jobs it launches as itself, the submitter on the
pipeline identity, each identity on itself, Google's service agents, and the other identities
of the same pipeline (what they can become is judged by ZT216/ZT217). Everything else is:

- **ZT220** (error) — an impersonation role (Service Account User / Token Creator / Key Admin,
  a custom role with those permissions ...) held by another principal on the identity or an
  ancestor, including through a group, a domain or a principal set; on the identity itself
  any grant carrying one of them (a basic role, a policy rewrite) counts;
- a report note — administrators: a basic role (owner, editor) or a policy-rewriting
  permission on an ancestor (project / folder / organisation): whoever administers the project
  can always become its service accounts; disclosed on every report, not refused.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from zt_pipelines.identity import DEPUTY_AGENT_DOMAINS
from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.catalogue import is_basic_role
from zt_pipelines.policy.conditions import ConditionResult, Tri
from zt_pipelines.policy.lending import RESOURCE_PREFIXES, Lender, lender_of, on_resource
from zt_pipelines.policy.members import (
    Match,
    is_google_account,
    is_public_member,
    normalize_principal,
)
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.reach import CODE_RUNNER_EDGES, EDGE_PERMISSIONS, judge_condition
from zt_pipelines.policy.report import Evidence, Finding, record_maker
from zt_pipelines.policy.requirements import CheckContext, sa_member
from zt_pipelines.policy.snapshot import Condition as _Condition
from zt_pipelines.policy.snapshot import read_hides
from zt_pipelines.resources import CRM, display_uri, service_account_resource

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator
    from zt_pipelines.policy.snapshot import Node, Snapshot

#: policy rewrites: whoever holds them can grant themselves any of the others
#: moving the project, or a folder above it, under a parent its mover controls: everything
#: granted there is then inherited by every account below (administration by proxy, like a
#: policy rewrite; meaningful on the project and above, never on an account itself)
_MOVE_PERMISSIONS = frozenset({"resourcemanager.projects.move", "resourcemanager.folders.move"})
_ADMIN_PERMISSIONS = (
    frozenset(p for p in EDGE_PERMISSIONS if p.endswith(".setIamPolicy")) | _MOVE_PERMISSIONS
)
#: permissions that let their holder become a service account directly
IMPERSONATION_PERMISSIONS = frozenset(EDGE_PERMISSIONS) - _ADMIN_PERMISSIONS
_MAX_LISTED = 5
_ACT_AS = frozenset({"iam.serviceAccounts.actAs"})


def _home(member: str) -> str | None:
    """The project a user-managed service account lives in (``None`` for other members)."""
    if not member.startswith("serviceAccount:"):
        return None
    domain = member.partition("@")[2]
    if not domain.endswith(".iam.gserviceaccount.com"):
        return None
    return domain.removesuffix(".iam.gserviceaccount.com")


#: a Google service agent: ``service-NUMBER@DOMAIN.iam.gserviceaccount.com`` (also of an
#: organisation or folder: ``service-org-NUMBER@``); which DOMAINs are Google's is listed below
_AGENT = re.compile(
    r"^serviceAccount:service-(?:org-|folder-)?([0-9]+)@([a-z0-9-]+)\.iam\.gserviceaccount\.com$"
)
#: deputies: agents that act as an account only for a caller their service checked
_DEPUTY_DOMAINS = DEPUTY_AGENT_DOMAINS
#: the Vertex AI Custom Code Service Agent: a CustomJob (hyperparameter tuning job, custom
#: training pipeline) created without a service account runs its code as this agent
CUSTOM_CODE_AGENT_DOMAIN = "gcp-sa-aiplatform-cc"
#: service agents that run code a caller hands them, with no actAs asked — never deputies:
#: domain -> (what it is, the permissions that hand it code)
_CODE_RUNNING_AGENTS: dict[str, tuple[str, frozenset[str]]] = {
    domain: (what, CODE_RUNNER_EDGES[domain][0])
    for domain, what in (
        (
            CUSTOM_CODE_AGENT_DOMAIN,
            "the Vertex AI Custom Code Service Agent: whoever can create a CustomJob without a "
            "service account",
        ),
        (
            "gcp-sa-aiplatform-re",
            "the Vertex AI Reasoning Engine Service Agent: whoever can deploy an Agent Engine "
            "without a service account",
        ),
    )
}
#: what a deputy service agent may hold on an identity: it acts as the account for a caller
#: the service has already checked (actAs); a key or a policy rewrite is never a deputy's
_DEPUTY_PERMISSIONS = frozenset(
    {
        "iam.serviceAccounts.actAs",
        "iam.serviceAccounts.getAccessToken",
        "iam.serviceAccounts.getOpenIdToken",
        "iam.serviceAccounts.implicitDelegation",
        "iam.serviceAccounts.signBlob",
        "iam.serviceAccounts.signJwt",
    }
)
#: how many service accounts deep "who can become the one that may run as it" is followed
_MAX_DEPTH = 6


def _code_runner(member: str) -> tuple[str, str] | None:
    """(project number, domain) of a Google service agent that runs callers' code (``None``:
    not one)."""
    m = _AGENT.match(member)
    return (m.group(1), m.group(2)) if m and m.group(2) in _CODE_RUNNING_AGENTS else None


def _deputy(member: str, granted: frozenset[str], numbers: frozenset[str]) -> bool:
    """A deputy service agent (:data:`_DEPUTY_DOMAINS`) of one of the IAM state's own projects
    (folders, organisation) holding only what a deputy needs: never an agent that runs callers'
    code, never one of a project the state does not know, never for keys or a policy
    rewrite."""
    m = _AGENT.match(member)
    return (
        m is not None
        and m.group(2) in _DEPUTY_DOMAINS
        and m.group(1) in numbers
        and granted <= _DEPUTY_PERMISSIONS
    )


def deputy_binding(
    member: str, permissions: frozenset[str] | None, numbers: frozenset[str]
) -> bool:
    """Whether a binding of ``member`` carrying ``permissions`` (``None``: unknown) on a service
    account's own policy is a deputy's, which :func:`inbound_findings` does not call a path onto
    the account (ZT220): a deputy agent of one of the projects ``numbers`` names
    (:func:`known_numbers`) that may only act as it. What ``plan --prune`` keeps on a step
    identity is what the check accepts there."""
    if permissions is None:
        return False
    granted = permissions & (IMPERSONATION_PERMISSIONS | _ADMIN_PERMISSIONS)
    return _deputy(member, granted, numbers)


def known_numbers(snapshot: Snapshot) -> frozenset[str]:
    """Project numbers (and folder / organisation ids) of the snapshot's hierarchy."""
    out: set[str] = set()
    for node in snapshot.nodes.values():
        if node.kind == "project" and node.project_number:
            out.add(node.project_number)
        elif node.kind in ("folder", "organization"):
            out.add(node.name.rsplit("/", 1)[-1])
    return frozenset(out)


def _google_service_account(member: str) -> bool:
    """A user-managed Google service account (not a GKE Kubernetes service account, which is a
    federated workload of a pool, nor one of Google's service agents)."""
    m = _AGENT.match(member)
    return (
        member.startswith("serviceAccount:")
        and is_google_account(member)
        and not (m and (m.group(2) in _DEPUTY_DOMAINS or m.group(2) in _CODE_RUNNING_AGENTS))
        and not member.partition("@")[2].startswith("gcp-sa-")
    )


def _identities(
    steps: Iterable[StepIdentity], ctx: CheckContext
) -> dict[str, tuple[set[str], set[str]]]:
    """member -> (the tasks it serves, the members expected to become it)."""
    pipeline = sa_member(ctx.pipeline_service_account)
    out: dict[str, tuple[set[str], set[str]]] = {}

    def add(member: str, task: str | None, *expected: str) -> None:
        got = out.get(member)
        if got is None:
            got = out[member] = (set(), {member})
        if task:
            got[0].add(task)
        allowed = got[1]
        for e in expected:
            if e:
                allowed.add(e)

    add(pipeline, None, normalize_principal(ctx.submitter) if ctx.submitter else "")
    for step in steps:
        if not step.service_account:
            continue
        own = sa_member(step.service_account)
        add(own, step.task, pipeline)
        if step.launched_service_account or step.serving_service_account:
            for other in (step.launched_service_account, step.serving_service_account):
                if other:
                    add(sa_member(other), step.task, own, pipeline)
    return out


def identities_of(
    steps: Iterable[StepIdentity], ctx: CheckContext
) -> dict[str, tuple[set[str], set[str]]]:
    """The pipeline's identities (``serviceAccount:EMAIL``) -> (the tasks each serves, the
    members expected to become it: itself, the pipeline identity, the submitter)."""
    return _identities(steps, ctx)


@dataclass(frozen=True, slots=True)
class _Hold:
    """A binding member holding an impersonation or policy-rewrite permission over a service
    account, on the account (``depth`` 0) or on a project, folder or organisation above it."""

    node: str
    depth: int
    role: str
    raw: str
    member: str
    condition: str
    impersonate: frozenset[str]
    administer: frozenset[str]
    unknown: bool  # the role's definition is not known: it may carry any of them
    #: a token, a signature, a key or a policy rewrite: more than attaching the account
    beyond_act_as: bool

    @property
    def admin(self) -> bool:
        """Administration above the account: a basic role or a policy rewrite (a note)."""
        return (
            not self.unknown
            and self.depth > 0
            and (is_basic_role(self.role) or not self.impersonate)
        )

    def permission(self) -> str:
        """The permission a finding names (the most telling one)."""
        if self.unknown:
            return "an unknown set of permissions"
        return min((self.impersonate - _ACT_AS) or self.impersonate or self.administer)


_new_hold = record_maker(_Hold)
#: what a role gives over an account: (impersonate, administer, unknown, beyond actAs)
_RoleHolds = tuple[frozenset[str], frozenset[str], bool, bool]
_NO_HOLDS: _RoleHolds = (frozenset(), frozenset(), False, False)


class _HoldIndex:
    """:func:`_holds` for one check, memoised: what each role gives over an account, each
    member's normal form and the holds of each ancestor (a project's, folder's and
    organisation's bindings are the same for every account below them)."""

    def __init__(self, ev: Evaluator) -> None:
        self.ev = ev
        self.roles: dict[str, _RoleHolds] = {}
        self.members: dict[str, str] = {}
        self.at: dict[tuple[str, int], list[_Hold]] = {}
        #: account email -> the nodes _holds() read for it (the role-editor check reads the same)
        self.chains: dict[str, tuple[Node, ...]] = {}

    def role(self, role: str) -> _RoleHolds:
        got = self.roles.get(role)
        if got is None:
            perms = self.ev.role_permissions(role)
            if perms is None:
                got = (frozenset(), frozenset(), True, True)
            else:
                impersonate = perms & IMPERSONATION_PERMISSIONS
                administer = perms & _ADMIN_PERMISSIONS
                got = (
                    (
                        impersonate,
                        administer,
                        False,
                        bool(impersonate - _ACT_AS) or bool(administer),
                    )
                    if impersonate or administer
                    else _NO_HOLDS
                )
            self.roles[role] = got
        return got

    def node(self, node: Node, depth: int) -> list[_Hold]:
        """The holds of ``node``'s bindings, at ``depth`` above the account."""
        key = (node.name, depth)
        got = self.at.get(key)
        if got is not None:
            return got
        out: list[_Hold] = []
        members, roles = self.members, self.roles
        for binding in node.policy.bindings if node.policy else ():
            impersonate, administer, unknown, beyond = roles.get(binding.role) or self.role(
                binding.role
            )
            if not unknown and not impersonate and not administer:
                continue  # the common case, first
            if depth == 0 and administer & _MOVE_PERMISSIONS:  # an account is never moved
                administer = administer - _MOVE_PERMISSIONS
                beyond = unknown or bool(impersonate - _ACT_AS) or bool(administer)
            if not unknown and not impersonate and not administer:
                continue
            condition = binding.condition.expression if binding.condition else ""
            for raw in binding.members:
                member = members.get(raw)
                if member is None:
                    member = members[raw] = normalize_principal(raw)
                if member.startswith("deleted:"):
                    continue
                out.append(
                    _new_hold(
                        node.name,
                        depth,
                        binding.role,
                        raw,
                        member,
                        condition,
                        impersonate,
                        administer,
                        unknown,
                        beyond,
                    )
                )
        if depth > 0:  # an account's own policy is asked about once: not kept
            self.at[key] = out
        return out


def _holds(ev: Evaluator, email: str, index: _HoldIndex | None = None) -> tuple[list[_Hold], str]:
    """Who holds what over ``email``, and why the IAM state misses part of what grants over it
    (its own allow policy — then only its project's ancestry is searched —, an ancestor, or an
    allow policy on the chain that could not be read), or ``""``."""
    index = index or _HoldIndex(ev)
    name = service_account_resource(email)
    nodes, gap = ev.chain(name)
    own = bool(nodes)
    if not own:
        home = _home(f"serviceAccount:{email}")
        nodes = ev.chain(f"{CRM}projects/{home}")[0] if home else ()
    missing = gap if own else f"its allow policy ({name}) {ev.snapshot.absent(name)}"
    if not missing and ev.snapshot.unreadable:
        on_chain = {n.name for n in nodes}
        for u in ev.snapshot.unreadable:
            if u.target in on_chain and "allow" in read_hides(u.what):
                missing = f"the allow policy of {u.target} could not be read ({u.reason})"
                break
    index.chains[email] = nodes
    out: list[_Hold] = []
    for depth, node in enumerate(nodes, start=0 if own else 1):
        found = index.node(node, depth)
        if found:
            out += found
    return out, missing


def _code_givers(ev: Evaluator, number: str, domain: str) -> list[str]:
    """Who can hand code to project ``number``'s agent of ``domain`` (a code runner)."""
    project = ev.snapshot.project_by_number(number)
    if project is None:
        return []
    gives = _CODE_RUNNING_AGENTS[domain][1]
    found: set[str] = set()
    for node in ev.chain(project.name)[0]:
        for binding in node.policy.bindings if node.policy else ():
            perms = ev.role_permissions(binding.role)
            if perms is None or not perms.isdisjoint(gives):
                found.update(binding.members)
    return sorted(found)


def _lent(member: str) -> tuple[str, Lender] | None:
    """(project number, lender) of an identity a Google service lends whoever holds its
    permission, in full (its code or declarations run as it): ``None`` for any other."""
    if not member.startswith("serviceAccount:"):
        return None
    found = lender_of(member.partition(":")[2])
    return found if found is not None and found[1].lends is None else None


def _google_lent(member: str) -> bool:
    """An identity lent in full that lives in a Google-owned project (an agent, the Google APIs
    and legacy Cloud Build accounts): nobody is granted anything on it, so who can become it is
    exactly who can make its service act (:func:`_drivers`) — its allow policy is never read."""
    return _lent(member) is not None and not member.endswith("@developer.gserviceaccount.com")


def _drivers(ev: Evaluator, number: str, lender: Lender, *, approval: bool = False) -> list[_Hold]:
    """Who can make ``lender``'s service act as its identity of project ``number``: every
    member of a binding on the project (or above it) whose role carries a lending permission —
    or whose definition is unknown (it may) — as a hold over that identity. ``approval``: only
    the principals eligible for such a role through a PAM entitlement behind an approval."""
    project = ev.snapshot.project_by_number(number)
    if project is None:
        return []
    out: list[_Hold] = []
    chain = ev.chain(project.name)[0]
    names = {n.name for n in chain}
    # eligibility without approval is a grant whenever asked (with one: ZT222's concern)
    for e in ev.snapshot.entitlements:
        if e.node not in names or e.state == "DELETED" or e.approval_required is not approval:
            continue
        for r in e.roles:
            perms = ev.role_permissions(r.role)
            gives = lender.permissions & perms if perms is not None else frozenset()
            if perms is not None and not gives:
                continue
            how = "with an approval" if approval else "without approval"
            role = f"{r.role} (eligible {how}, PAM entitlement {e.name})"
            for raw in e.eligible:
                member = normalize_principal(raw)
                out.append(
                    _Hold(
                        e.node,
                        1,
                        role,
                        raw,
                        member,
                        r.condition,
                        gives,
                        frozenset(),
                        perms is None,
                        perms is None or bool(gives - _ACT_AS),
                    )
                )
    if approval:
        return out
    # and on the lending resources of the project themselves (a service, a function, a
    # repository ...): what applies there (lending.on_resource)
    on_resources = [
        (n, lent.permissions)
        for n in ev.snapshot.nodes.values()
        if n.name.startswith(RESOURCE_PREFIXES) and n.policy and n.policy.bindings
        for lent in on_resource(n.name)
        if lent.account == lender.account and project.name in {c.name for c in ev.chain(n.name)[0]}
    ]
    for node, applies in [(n, lender.permissions) for n in chain] + on_resources:
        for binding in node.policy.bindings if node.policy else ():
            perms = ev.role_permissions(binding.role)
            gives = applies & perms if perms is not None else frozenset()
            if perms is not None and not gives:
                continue
            condition = binding.condition.expression if binding.condition else ""
            for raw in binding.members:
                member = normalize_principal(raw)
                if member.startswith("deleted:"):
                    continue
                out.append(
                    _Hold(
                        node.name,
                        1,
                        binding.role,
                        raw,
                        member,
                        condition,
                        gives,
                        frozenset(),
                        perms is None,
                        perms is None or bool(gives - _ACT_AS),
                    )
                )
    return out


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def inbound_findings(
    steps: tuple[StepIdentity, ...],
    ev: Evaluator,
    ctx: CheckContext,
    *,
    now: datetime | None = None,
) -> tuple[list[Finding], list[str]]:
    """ZT220 for every principal, other than the expected ones, that can become one of the
    pipeline's identities (see the module docstring): one finding per binding, naming every
    identity it reaches; and notes naming the administrators above them and the other service
    accounts that may run as them.

    Another service account that may run as an identity is followed: whoever can become *it*
    (at any depth) is judged as if it held the grant on the identity itself. A conditional
    grant of a lending permission is judged at ``now`` and over the run's window: TRUE makes
    its holders drivers, UNKNOWN too (the finding says it may), FALSE none (``now`` unknown:
    UNKNOWN)."""
    identities = _identities(steps, ctx)
    ours = set(identities)
    pipeline = sa_member(ctx.pipeline_service_account)
    numbers = known_numbers(ev.snapshot)
    # (code, node, role, member, condition, path) -> the identities it can become
    reached: dict[tuple[str, str, str, str, str, str], list[str]] = {}
    hold_of: dict[tuple[str, str, str, str, str, str], tuple[_Hold, tuple[_Hold, ...]]] = {}
    holds_cache: dict[str, tuple[list[_Hold], str]] = {}
    index = _HoldIndex(ev)
    # (node, role, member, condition) of a conditional lending grant -> its judgement
    judged: dict[tuple[str, str, str, str], ConditionResult] = {}
    nodes = ev.snapshot.nodes

    def judge(d: _Hold) -> ConditionResult:
        key = (d.node, d.role, d.raw, d.condition)
        found = judged.get(key)
        if found is None:
            node = nodes.get(d.node)
            found = judged[key] = (
                judge_condition(
                    ev, _Condition(d.condition), node, d.impersonate, now, ctx.run_window
                )
                if node is not None and d.impersonate
                else ConditionResult(Tri.UNKNOWN, "the grant's node or role is not known")
            )
        return found

    def holds(email: str) -> tuple[list[_Hold], str]:
        found = holds_cache.get(email)
        if found is None:
            found = holds_cache[email] = _holds(ev, email, index)
        return found

    def record(kind: str, h: _Hold, identity: str, chain: tuple[_Hold, ...]) -> None:
        path = " -> ".join(c.member.partition(":")[2] for c in reversed(chain))
        key = (kind, h.node, h.role, h.raw, h.condition, path)
        targets = reached.setdefault(key, [])
        if identity not in targets:
            targets.append(identity)
        hold_of[key] = (h, chain)

    # service accounts that may run as an identity: who can become them is asked next
    # (account, identity, path, what its upstream holders are: "ZT220" or "admin")
    upstream: deque[tuple[str, str, tuple[_Hold, ...], str]] = deque()
    # the pipeline's own identities whose grants cannot all be read: who can become them is
    # not known (fail closed, as for an upstream account)
    unknown: list[tuple[str, str]] = []
    for identity in sorted(identities):
        allowed = identities[identity][1]
        found_here, why = holds(identity.partition(":")[2])
        if why:
            unknown.append((identity, why))
        for h in found_here:
            member = h.member
            if member == identity:
                continue
            # the launcher / the submitter may act as it — nothing more (keys, tokens, a policy
            # rewrite would outlive the run); the pipeline's other identities' reach is judged
            # by ZT216/ZT217
            if (member in allowed or member in ours) and not h.beyond_act_as:
                continue
            if not h.unknown and _deputy(member, h.impersonate | h.administer, numbers):
                continue
            if _lent(member) is not None:  # whoever makes a Google service act as it can too
                upstream.append((member, identity, (h,), "lent"))
            if h.admin and _code_runner(member) is None:
                record("admin", h, identity, ())
                if _google_service_account(member) and member not in ours:
                    # whoever can become an administering account administers too: named
                    upstream.append((member, identity, (h,), "admin"))
                continue
            # actAs alone attaches the identity to what its holder creates: another Google
            # service account (another pipeline, automation: who can become it is followed) or,
            # with the submitter unknown, whoever may submit as the pipeline identity — named
            # in a note; a person or an outside principal that can run as it — ZT220
            if not h.beyond_act_as and _code_runner(member) is None:
                if _google_service_account(member):
                    record("act-as", h, identity, ())
                    upstream.append((member, identity, (h,), "ZT220"))
                    continue
                if not ctx.submitter and identity == pipeline:
                    record("act-as", h, identity, ())
                    continue
            record("ZT220", h, identity, ())
    seen: set[tuple[str, str, str]] = set()
    while upstream:
        account, identity, chain, mode = upstream.popleft()
        if (account, identity, mode) in seen:
            continue
        seen.add((account, identity, mode))
        allowed = identities[identity][1]
        if mode == "lent":
            _judge_drivers(
                account, identity, chain, ev, ours | allowed, numbers, record, upstream, judge
            )
            continue
        found, missing = holds(account.partition(":")[2])
        if missing and mode == "ZT220" and not _google_lent(account):
            record("unread", chain[-1], identity, chain[:-1])  # unknown who: fail closed
        for h in found:
            member = h.member
            if member in (account, identity) or member in ours or member in allowed:
                continue  # the pipeline's own identities: their reach is ZT216/ZT217's
            if not h.unknown and _deputy(member, h.impersonate | h.administer, numbers):
                continue
            if _lent(member) is not None and len(chain) < _MAX_DEPTH:
                upstream.append((member, identity, (*chain, h), "lent"))
            if (h.admin or mode == "admin") and _code_runner(member) is None:
                record("admin", h, identity, chain)
                if _google_service_account(member) and len(chain) < _MAX_DEPTH:
                    upstream.append((member, identity, (*chain, h), "admin"))
            elif _google_service_account(member) and not h.unknown:
                if len(chain) >= _MAX_DEPTH:
                    record("deep", h, identity, chain)
                else:  # whatever it holds over the account, it can run as the identity
                    record("act-as", h, identity, chain)
                    upstream.append((member, identity, (*chain, h), mode))
            else:
                record("ZT220", h, identity, chain)
    # a lent identity of an unknown project that is ZT220 on its own grant already: once
    direct = {(k[1], k[2], k[3], k[4]) for k in reached if k[0] == "ZT220" and not k[5]}
    for key in [k for k in reached if k[0] == "undriven" and (k[1], k[2], k[3], k[4]) in direct]:
        del reached[key]
    out, notes = _report(reached, hold_of, identities, ev, ctx, judged)
    # administrators (a basic role, a policy rewrite above the identities) can become them
    # anyway: editing a role adds nothing to what their note says
    admins = {normalize_principal(k[3]) for k in reached if k[0] == "admin" and not k[5]}
    # accounts that may run as an identity: a custom role bound on their chain counts too
    upstream_of: dict[str, set[str]] = {}
    for account, identity, mode in seen:
        if mode == "ZT220":
            upstream_of.setdefault(account, set()).add(identity)
    editors, editor_notes = _role_editor_findings(identities, ev, admins, upstream_of, index.chains)
    return out + editors + _unknown_findings(unknown, identities, pipeline), notes + editor_notes


def _unknown_findings(
    unknown: list[tuple[str, str]],
    identities: dict[str, tuple[set[str], set[str]]],
    pipeline: str,
) -> list[Finding]:
    """ZT220 for each of the pipeline's own identities whose grants are not all in the IAM
    state (``unknown``: identity, why): who can become it is not known."""
    out: list[Finding] = []
    for identity, why in unknown:
        email = identity.partition(":")[2]
        tasks = sorted(identities[identity][0])
        role = "the pipeline identity" if identity == pipeline else "a step identity"
        account = service_account_resource(email)
        out.append(
            Finding(
                "ZT220",
                DEFAULT_SEVERITIES["ZT220"],
                f"who can become {email} ({role}) is not known: {why} (read it — a snapshot "
                "taken for this pipeline includes it — or name another identity)",
                step=",".join(tasks) or None,
                resource=account,
                evidence=(
                    Evidence("unreadable", node=account, detail=why),
                    Evidence("identity", detail=identity),
                ),
            )
        )
    return out


def _judge_drivers(
    account: str,
    identity: str,
    chain: tuple[_Hold, ...],
    ev: Evaluator,
    skip: set[str],
    numbers: frozenset[str],
    record: Callable[[str, _Hold, str, tuple[_Hold, ...]], None],
    upstream: deque[tuple[str, str, tuple[_Hold, ...], str]],
    judge: Callable[[_Hold], ConditionResult],
) -> None:
    """Who can make a Google service act as ``account`` (lent in full: lending.LENDERS), which
    can become ``identity`` along ``chain``: each is judged as if it held ``chain``'s first
    grant itself — an administrator through a basic role is named in the note, another Google
    service account is followed upstream, anyone else is ZT220. A conditional grant
    (``judge``) FALSE now and over the run's window drives nothing."""
    lent = _lent(account)
    if lent is None:
        return
    if ev.snapshot.project_by_number(lent[0]) is None:  # who can make it act: unknown
        record("undriven", chain[-1], identity, chain[:-1])
        return
    for d in _drivers(ev, *lent):
        member = d.member
        if member in (account, identity) or member in skip:
            continue  # the pipeline's own identities: what they reach is ZT216's
        m = _AGENT.match(member)
        if m is not None and m.group(2) in _DEPUTY_DOMAINS and m.group(1) in numbers:
            continue  # a deputy agent builds / deploys for callers its service checked
        if d.condition and judge(d).value is Tri.FALSE:
            continue  # not now, nor at any time of the run's window
        if d.admin:
            record("admin", d, identity, chain)
        elif _google_service_account(member) and not d.unknown:
            if len(chain) >= _MAX_DEPTH:
                record("deep", d, identity, chain)
            else:
                record("act-as", d, identity, chain)
                upstream.append((member, identity, (*chain, d), "ZT220"))
        else:
            record("ZT220", d, identity, chain)
    for d in _drivers(ev, *lent, approval=True):  # once approved: a warning (ZT222)
        if d.member in (account, identity) or d.member in skip:
            continue
        if d.condition and judge(d).value is Tri.FALSE:
            continue
        record("approval", d, identity, chain)


def _report(
    reached: dict[tuple[str, str, str, str, str, str], list[str]],
    hold_of: dict[tuple[str, str, str, str, str, str], tuple[_Hold, tuple[_Hold, ...]]],
    identities: dict[str, tuple[set[str], set[str]]],
    ev: Evaluator,
    ctx: CheckContext,
    judged: dict[tuple[str, str, str, str], ConditionResult] | None = None,
) -> tuple[list[Finding], list[str]]:
    out: list[Finding] = []
    admins: dict[tuple[str, str], tuple[list[str], set[str]]] = {}  # -> who, identities
    act_as: dict[tuple[str, str], list[str]] = {}  # (identity, path) -> who may run as it
    for key, targets in sorted(reached.items()):
        code, where, role, member, condition, path = key
        h, chain = hold_of[key]
        names = _listed([t.partition(":")[2] for t in targets])
        through = f" through {path}" if path else ""
        if code == "admin":
            who_, over = admins.setdefault((where, path), ([], set()))
            who_.append(f"{member} ({role})")
            over.update(targets)
            continue
        if code == "act-as":
            for target in targets:
                act_as.setdefault((target, path), []).append(member)
            continue
        tasks = sorted({t for target in targets for t in identities[target][0]})
        who = "anyone" if is_public_member(member) else member
        finding_code = "ZT222" if code == "approval" else "ZT220"
        when = " (when its condition holds)" if condition else ""
        verdict = (judged or {}).get((where, role, member, condition)) if condition else None
        if verdict is not None and verdict.value is Tri.TRUE:
            when = f" (its condition holds {verdict.reason or 'now'})"
        elif verdict is not None and verdict.value is Tri.UNKNOWN:
            when = f" (when its condition holds, which cannot be decided: {verdict.reason})"
        if code == "unread":
            message = (
                f"{h.member} may run as {names}{through}, and who can become it is not known: "
                f"its allow policy is not in the IAM state (read it, or remove its grant)"
            )
            member, where, role = h.member, h.node, h.role
        elif code == "undriven":
            number, lender = _lent(h.member) or ("?", None)
            message = (
                f"{h.member} can become {names}{through}, and who can make Google act as it is "
                f"not known: it is "
                + (lender.what if lender else "a lent identity")
                + f" of project {number}, which is not in the IAM state (read that project, or "
                "remove its grant)"
            )
            member, where, role = h.member, h.node, h.role
        elif code == "deep":
            message = (
                f"{who} can become {names}{through}: a chain of more than {_MAX_DEPTH} service "
                f"accounts, not followed further"
            )
        else:
            runner = _code_runner(normalize_principal(member))
            message = (
                f"{who} can become {names}{through}: it holds {h.permission()} through {role} "
                f"on {display_uri(where)}{when}"
            )
            if h.unknown:
                message += " (the role's definition is not known: it may carry any of them)"
            lent = _lent(chain[-1].member) if chain else None
            if lent is not None and (h.unknown or h.impersonate & lent[1].permissions):
                label = lent[1].label_for(h.impersonate) if not h.unknown else lent[1].label
                message += f" ({label} acts as {lent[1].what} of project {lent[0]})"
            if runner is not None:
                number, domain = runner
                givers = _code_givers(ev, number, domain)
                message += (
                    f"; it is {_CODE_RUNNING_AGENTS[domain][0]} in project {number} runs code "
                    "as it" + (f" ({_listed(givers)})" if givers else "")
                )
        if code == "approval":
            message = message.replace(
                ": it holds ", ", once an approver grants it: it may hold ", 1
            )
        out.append(
            Finding(
                finding_code,
                DEFAULT_SEVERITIES[finding_code],
                message,
                step=",".join(tasks) or None,
                principal=member,
                resource=where,
                permission=h.permission() if code not in ("unread", "deep", "undriven") else None,
                evidence=(
                    Evidence("binding", node=where, role=role, member=member, condition=condition),
                    *(
                        Evidence(
                            "binding",
                            node=c.node,
                            role=c.role,
                            member=c.raw,
                            condition=c.condition,
                        )
                        for c in reversed(
                            chain if code not in ("unread", "undriven") else chain[:-1]
                        )
                    ),
                    *(Evidence("identity", detail=t) for t in targets[:20]),
                ),
            )
        )
    notes = [
        (
            f"administrators of {display_uri(where)} can become {path.split(' -> ')[0]}, which "
            f"may run as {_listed(sorted(t.partition(':')[2] for t in over))}"
            if path
            else f"administrators of {display_uri(where)} can become the pipeline's identities "
            "below it"
        )
        + " (a basic role, a policy rewrite, or moving the project or a folder above it under "
        + f"another parent): {_listed(who)}"
        for (where, path), (who, over) in sorted(admins.items())
    ]
    foreign = sorted(
        i.partition(":")[2]
        for i in identities
        if ctx.project and _home(i) not in (None, ctx.project)
    )
    if foreign:  # whoever administers their projects can become them; not under this review
        notes.append(
            f"{len(foreign)} of the pipeline's identities live in another project than "
            f"{ctx.project} (their administrators there can become them): " + _listed(foreign)
        )
    notes += [
        _listed(sorted(set(who)))
        + f" may run as {target.partition(':')[2]}"
        + (f" through {path}" if path else " (actAs: attach it to what they create)")
        for (target, path), who in sorted(act_as.items())
    ]
    return out, notes


# -- whoever can edit a custom role bound on an identity's chain ----------------------------

#: permissions that change what an existing custom role grants (undelete brings one back)
_ROLE_EDIT = frozenset({"iam.roles.update", "iam.roles.undelete"})


def _role_home(role: str) -> str | None:
    """The project or organisation a custom role is defined in (``None``: a predefined role)."""
    kind, _, rest = role.partition("/")
    if kind not in ("projects", "organizations") or "/roles/" not in rest:
        return None
    return f"{CRM}{kind}/{rest.split('/roles/', 1)[0]}"


def _role_editor_findings(
    identities: dict[str, tuple[set[str], set[str]]],
    ev: Evaluator,
    administer: set[str],
    upstream_of: dict[str, set[str]] | None = None,
    chains: dict[str, tuple[Node, ...]] | None = None,
) -> tuple[list[Finding], list[str]]:
    """A custom role's definition decides what every binding of it grants: whoever can edit a
    custom role bound to another principal on an identity's account, project, folder or
    organisation can make that binding carry ``getAccessToken`` over the identity. ZT220 when
    the editor is itself bound to the role there (and administers nothing above the identity
    already, ``administer``); otherwise named as an administrator."""
    ours = set(identities)
    # (role, node where it is bound) -> the identities below, the other members bound to it
    bound: dict[tuple[str, str], tuple[list[str], set[str], str]] = {}
    # node -> its custom-role bindings naming someone else (read once per node, not per
    # identity: a project's bindings are above all of its accounts)
    custom: dict[str, list[tuple[str, set[str], str]]] = {}
    # each identity, and each account that may run as one (``upstream_of``: whoever becomes
    # it becomes them): its chain's custom-role bindings naming someone else
    subjects = {i: {i} for i in identities}
    for account, reached in (upstream_of or {}).items():
        subjects.setdefault(account, set()).update(reached)
    chains = chains or {}
    for subject in sorted(subjects):
        email = subject.partition(":")[2]
        # _holds() read the same nodes for an account it was asked about (``chains``)
        found_chain = chains.get(email) if subject.startswith("serviceAccount:") else None
        if found_chain is not None:
            nodes = found_chain
        else:
            nodes, _gap = ev.chain(service_account_resource(email))
            if not nodes:
                home = _home(subject)
                nodes = ev.chain(f"{CRM}projects/{home}")[0] if home else ()
        for node in nodes:
            found = custom.get(node.name)
            if found is None:
                found = custom[node.name] = _custom_bindings(node, ours)
            for role, others, condition in found:
                others = others - {subject}
                if not others:
                    continue
                targets, members, _ = bound.setdefault((role, node.name), ([], set(), condition))
                for identity in sorted(subjects[subject]):
                    if identity not in targets:
                        targets.append(identity)
                members.update(others)
    out: list[Finding] = []
    notes: list[str] = []
    editors_of: dict[str, list[tuple[str, str, str, str]]] = {}
    for (role, where), (targets, members, condition) in sorted(bound.items()):
        home = _role_home(role)
        assert home is not None
        editors = editors_of.get(home)
        if editors is None:
            editors = editors_of[home] = _role_editors(ev, home, ours)
        names = _listed([t.partition(":")[2] for t in targets])
        tasks = sorted({t for target in targets for t in identities[target][0]})
        admins: list[str] = []
        for at, editor_role, raw, member in editors:
            # bound to the role itself, or through a group / domain it is (or may be) in
            if member in administer:
                continue  # named among the administrators already
            if all(ev.members.matches(m, member).match is Match.NO for m in members):
                admins.append(f"{raw} ({editor_role})")
                continue
            who = "anyone" if is_public_member(member) else raw
            out.append(
                Finding(
                    "ZT220",
                    DEFAULT_SEVERITIES["ZT220"],
                    f"{who} can become {names} by editing {role}, bound to it on "
                    f"{display_uri(where)}: it holds iam.roles.update through {editor_role} on "
                    f"{display_uri(at)} (a role's definition decides what every binding of "
                    "it grants)",
                    step=",".join(tasks) or None,
                    principal=raw,
                    resource=where,
                    permission="iam.roles.update",
                    evidence=(
                        Evidence("binding", node=at, role=editor_role, member=raw),
                        Evidence("binding", node=where, role=role, member=raw, condition=condition),
                        *(Evidence("identity", detail=t) for t in targets[:20]),
                    ),
                )
            )
        if admins:
            notes.append(
                f"administrators of {role} (bound on {display_uri(where)}, above {names}) "
                "decide what it grants, and so who can become them: " + _listed(sorted(admins))
            )
    return out, notes


def _custom_bindings(node: Node, ours: set[str]) -> list[tuple[str, set[str], str]]:
    """(role, members other than the pipeline's identities, condition) of every binding of a
    custom role on ``node`` that names someone else (the pipeline's own: ZT21x's concern)."""
    out = []
    for binding in node.policy.bindings if node.policy else ():
        if _role_home(binding.role) is None:
            continue
        others = {normalize_principal(m) for m in binding.members} - ours
        others = {m for m in others if not m.startswith("deleted:")}
        if others:
            condition = binding.condition.expression if binding.condition else ""
            out.append((binding.role, others, condition))
    return out


def _role_editors(ev: Evaluator, home: str, ours: set[str]) -> list[tuple[str, str, str, str]]:
    """(node, role, member as written, member) for everyone who can edit the custom roles
    defined in ``home`` (a project or organisation): ``iam.roles.update`` / ``undelete`` there
    or above. The pipeline's own identities are left out (their escalation is ZT212)."""
    found: list[tuple[str, str, str, str]] = []
    for node in ev.chain(home)[0]:
        for binding in node.policy.bindings if node.policy else ():
            perms = ev.role_permissions(binding.role)
            if not perms or perms.isdisjoint(_ROLE_EDIT):
                continue
            for raw in binding.members:
                member = normalize_principal(raw)
                if member not in ours and not member.startswith("deleted:"):
                    found.append((node.name, binding.role, raw, member))
    return found
