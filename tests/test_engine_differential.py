"""Differential property test: the engine against an independent reference evaluator.

``iam_reference.py`` is written from Google's IAM documentation and shares no code with the
engine. Hypothesis generates small worlds — a hierarchy (organisation, folders, projects with
known or unknown numbers and parents, buckets), roles (some undefined), allow bindings with
every member kind (users, service accounts, groups nested or of unknown membership, domains,
``allUsers``/``allAuthenticatedUsers``, service-account principal sets of projects, folders and
the organisation, by id or number), deny policies (attached by id, by number, or to an unknown
number; v2 principals, wildcards, exceptions) and conditions (resource name/type/service, expiry,
time of day, tags, in several CEL spellings) — and asks both evaluators every (principal,
bucket, permission) question. They must agree on every answer. Fixed seed, fixed budget.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import iam_reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zt_pipelines.policy.conditions import ConditionEvaluator
from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Condition,
    DenyPolicy,
    DenyRule,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
    Unreadable,
)
from zt_pipelines.resources import ResourceRef

NOW = datetime.fromtimestamp(ref.NOW_EPOCH, tz=timezone.utc)
CRM = "//cloudresourcemanager.googleapis.com/"
SA_SET = "principalSet://cloudresourcemanager.googleapis.com/"
#: the budget (``make test`` runs the full 10,000; a quick local run may lower it)
EXAMPLES = int(os.environ.get("ZT_DIFFERENTIAL_EXAMPLES", "10000"))
PREFIX_EXAMPLES = max(1, EXAMPLES // 4)  # the prefix property (below) asks 7 objects a question
QUESTIONS = 8  # per generated world
PERMISSIONS = (
    "storage.objects.get",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.list",
    "storage.buckets.get",
)
V2_PATTERNS = (
    "storage.googleapis.com/objects.get",
    "storage.googleapis.com/objects.delete",
    "storage.googleapis.com/buckets.get",
    "storage.googleapis.com/objects.*",
    "storage.googleapis.com/*.get",
    "storage.googleapis.com/*",
    "bigquery.googleapis.com/*",
    "*",
    "iam.googleapis.com/serviceAccounts.actAs",
    "iam.googleapis.com/*",
)
#: asked on service accounts (IAM requests carry no resource attributes)
SA_PERMISSIONS = ("iam.serviceAccounts.actAs", "iam.serviceAccounts.get")
USERS = ("alice@example.com", "bob@other.org")
WORKFORCE = "principal://iam.googleapis.com/locations/global/workforcePools/corp/subject/eve"
OBJECTS = ("data/x.csv", "tmp/y.tmp")
BUCKETS = ("b0", "b1")
# shared across examples: parsing CEL is the slow part, and the evaluator is pure
_CONDITIONS = ConditionEvaluator()


# -- generated data: one seed per example, decoded here ----------------------------------------
# (one hypothesis draw per example keeps generation cheap on a 2-core CI machine; hypothesis
# still replays failures deterministically, and the failing seed is in its report)


class Draw:
    """Decodes the choices of one example from its seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return self.rng.randint(lo, hi)

    def pick(self, items: Any) -> Any:
        """One of ``items``."""
        items = list(items)
        return items[self.int(0, len(items) - 1)]

    def flag(self, one_in: int = 2) -> bool:
        """True about once in ``one_in``."""
        return self.int(0, one_in - 1) == 0

    def some(self, make: Any, lo: int, hi: int) -> list[Any]:
        """Between ``lo`` and ``hi`` results of ``make()``."""
        return [make() for _ in range(self.int(lo, hi))]


_NAMES = (
    "projects/_/buckets/b0",
    "projects/_/buckets/b1/",
    "projects/_/buckets/b0/objects/data/",
    "projects/_/buckets/b1/objects/tmp/",
)


def _condition(d: Draw, depth: int = 0) -> Any:
    """A condition AST (see ``iam_reference.condition``)."""
    kind = d.int(0, 11 if depth < 2 else 8)
    if kind == 0:
        return (
            "eq",
            "type",
            d.pick(["storage.googleapis.com/Object", "storage.googleapis.com/Bucket"]),
        )
    if kind == 1:
        return ("eq", "service", d.pick(["storage.googleapis.com", "aiplatform.googleapis.com"]))
    if kind == 2:
        return (
            "eq",
            "name",
            d.pick(["projects/_/buckets/b0", "projects/_/buckets/b1/objects/data/x.csv"]),
        )
    if kind == 3:
        return ("starts", d.pick(_NAMES))
    if kind == 4:
        return ("ends", d.pick([".csv", ".tmp"]))
    if kind == 5:
        return ("before", d.pick([ref.PAST, ref.FUTURE]))
    if kind in (6, 7, 8):
        return (("hours",), ("tag",), ("host",))[kind - 6]
    if kind == 9:
        return ("not", _condition(d, depth + 1))
    return ("and" if kind == 10 else "or", _condition(d, depth + 1), _condition(d, depth + 1))


# a fixed pool of (AST, spelling): parsing CEL costs milliseconds, so the worlds draw from a
# pool parsed once rather than from an unbounded space of new texts
_POOL_DRAW = Draw(20261129)
CONDITION_POOL = [(_condition(_POOL_DRAW), _POOL_DRAW.int(0, 2)) for _ in range(400)]


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(cond: Any, spelling: int) -> str:
    """CEL text for a condition AST; ``spelling`` picks equivalent forms."""
    op = cond[0]
    s = spelling % 3
    if op == "not":
        return f"!({render(cond[1], spelling + 1)})"
    if op in ("and", "or"):
        sym = "&&" if op == "and" else "||"
        return f"({render(cond[1], spelling + 1)}) {sym} ({render(cond[2], spelling + 2)})"
    if op == "eq":
        attr = ["resource.{}", 'resource["{}"]', "(resource).{}"][s].format(cond[1])
        return f'{attr} == "{cond[2]}"' if s != 2 else f'"{cond[2]}" == {attr}'
    if op in ("starts", "ends"):
        name = ["resource.name", 'resource["name"]', "(resource.name)"][s]
        method = "startsWith" if op == "starts" else "endsWith"
        return f'{name}.{method}("{cond[1]}")'
    if op == "before":
        when = f'timestamp("{_iso(cond[1])}")'
        return [f"request.time < {when}", f'request["time"] < {when}', f"{when} > (request.time)"][
            s
        ]
    if op == "hours":
        return [
            'request.time.getHours("UTC") < 18',
            '(request.time).getHours("UTC") < 18',
            'request["time"].getDayOfWeek("UTC") >= 0',
        ][s]
    if op == "tag":
        return 'resource.matchTag("1/env", "prod")'
    return 'request.host == "example.com"'


# -- worlds ------------------------------------------------------------------------------------


def worlds(d: Draw) -> tuple[ref.World, Snapshot]:
    """A reference world and the same world as an engine snapshot."""
    folders: dict[str, str] = {}
    for i in range(d.int(0, 2)):
        folders[str(10 + i)] = d.pick(["org"] + [f"folder:{10 + j}" for j in range(i)])
    parents = ["org"] + [f"folder:{f}" for f in folders]
    projects: dict[str, ref.Project] = {}
    for i in range(d.int(1, 3)):
        number = None if d.flag(5) else str(1000 + i)
        parent = None if d.flag(10) else d.pick(parents)
        projects[f"p{i}"] = ref.Project(f"p{i}", number, parent)
    pids = sorted(projects)
    buckets = {b: d.pick(pids) for b in BUCKETS}
    sas = {f"s{i}@{pid}.iam.gserviceaccount.com": pid for i, pid in enumerate(pids)}
    principals = [f"serviceAccount:{e}" for e in sas] + [f"user:{u}" for u in USERS]

    group_names = ["g0@example.com", "g1@example.com", "gx@example.com"]  # gx: unknown
    groups: dict[str, list[str]] = {}
    for g in group_names[:2]:
        members = d.some(lambda: d.pick(principals + [f"group:{n}" for n in group_names]), 0, 3)
        groups[g] = [
            "user:" + m[5:].upper() if m.startswith("user:") and d.flag() else m for m in members
        ]

    roles = {
        f"roles/r{i}": set(d.some(lambda: d.pick(PERMISSIONS + SA_PERMISSIONS), 0, 4))
        for i in range(d.int(1, 3))
    }
    inactive = {r: d.pick(["DISABLED", "deleted"]) for r in roles if d.flag(6)}
    role_names = [*sorted(roles), "roles/undefined"]
    uids = {e: str(5000 + i) for i, e in enumerate(sas)}

    def sa_set() -> str:
        kind = d.pick(["projects", "folders", "organizations"])
        if kind == "projects":
            p = projects[d.pick(pids)]
            ident = p.number if p.number and d.flag() else p.pid
            ident = d.pick([ident, ident, "999"])
        elif kind == "folders":
            ident = d.pick([*folders, "77"])
        else:
            ident = "1"
        return f"{SA_SET}{kind}/{ident}/type/ServiceAccount"

    def member() -> str:
        m = d.pick(
            principals
            + [f"group:{g}" for g in group_names]
            + ["domain:example.com", "allUsers", "allAuthenticatedUsers", "SASET", "DELETED"]
        )
        if m == "DELETED":
            return f"deleted:{d.pick(principals)}?uid={d.int(1, 9)}"
        return sa_set() if m == "SASET" else str(m)

    def spelled() -> Any:
        return d.pick(CONDITION_POOL) if d.flag(3) else None

    nodes = [
        "org",
        *parents[1:],
        *(f"project:{p}" for p in pids),
        *(f"bucket:{b}" for b in BUCKETS),
        *(f"sa:{e}" for e in sas),
    ]
    bindings = [
        ref.Binding(d.pick(nodes), d.pick(role_names), d.some(member, 1, 2), spelled())
        for _ in range(d.int(0, 6))
    ]

    def deny_principal() -> str:
        kind = d.int(0, 6)
        if kind == 5:  # a service account by its unique id (one no account has, sometimes)
            uid = d.pick([*uids.values(), "9999"])
            return f"principal://iam.googleapis.com/projects/-/serviceAccounts/{uid}"
        if kind == 6:
            return "principalSet://goog/cloudIdentityCustomerId/C01234"
        if kind == 0:
            return "principalSet://goog/public:all"
        if kind == 1:
            return "principal://iam.googleapis.com/projects/-/serviceAccounts/" + d.pick(
                sorted(sas)
            )
        if kind == 2:
            return "principal://goog/subject/" + d.pick(USERS)
        if kind == 3:
            return "principalSet://goog/group/" + d.pick(group_names)
        return sa_set()

    def rule() -> ref.Rule:
        return ref.Rule(
            d.some(deny_principal, 1, 2),
            d.some(lambda: d.pick(V2_PATTERNS), 1, 2),
            d.some(deny_principal, 0, 1),
            d.some(lambda: d.pick(V2_PATTERNS[:3]), 0, 1),
            spelled(),
        )

    points = ["org", *parents[1:], *(f"project:{p}" for p in pids), "number:999"]
    denies = [(ref.Deny(d.pick(points), d.some(rule, 1, 2)), d.flag()) for _ in range(d.int(0, 2))]
    unreadable_allow = set(d.some(lambda: d.pick(nodes), 0, 1) if d.flag(4) else [])
    unreadable_deny = set(d.some(lambda: d.pick(nodes), 0, 1) if d.flag(4) else [])

    def plain(c: Any) -> Any:
        return c[0] if c else None

    world = ref.World(
        org="1",
        folders=folders,
        projects=projects,
        buckets=buckets,
        service_accounts=sas,
        groups=groups,
        roles={r: set() if r in inactive else p for r, p in roles.items()},
        sa_unique_ids=uids,
        bindings=[ref.Binding(b.node, b.role, b.members, plain(b.condition)) for b in bindings],
        denies=[
            ref.Deny(
                p.node,
                [
                    ref.Rule(
                        r.denied,
                        r.permissions,
                        r.exception_principals,
                        r.exception_permissions,
                        plain(r.condition),
                    )
                    for r in p.rules
                ],
            )
            for p, _ in denies
        ],
        unreadable_allow=unreadable_allow,
        unreadable_deny=unreadable_deny,
    )
    snapshot = _snapshot(world, bindings, denies)
    snapshot.roles.update(
        {
            r: Role(r, frozenset(roles[r]), stage=how, deleted=how == "deleted")
            for r, how in inactive.items()
        }
    )  # an inactive role keeps its permissions; IAM ignores its bindings
    return world, snapshot


def _full(node: str, world: ref.World, *, by_number: bool = False) -> str:
    kind, _, ident = node.partition(":")
    if node == "org":
        return f"{CRM}organizations/{world.org}"
    if kind == "folder":
        return f"{CRM}folders/{ident}"
    if kind == "project":
        number = world.projects[ident].number
        if by_number and number:
            return f"cloudresourcemanager.googleapis.com%2Fprojects%2F{number}"
        return f"{CRM}projects/{ident}"
    if kind == "number":
        return f"cloudresourcemanager.googleapis.com%2Fprojects%2F{ident}"
    if kind == "sa":
        return (
            f"//iam.googleapis.com/projects/{world.service_accounts[ident]}/serviceAccounts/{ident}"
        )
    return f"//storage.googleapis.com/{ident}"


def _snapshot(
    world: ref.World, bindings: list[ref.Binding], denies: list[tuple[ref.Deny, bool]]
) -> Snapshot:
    def cond(c: Any) -> Condition | None:
        return Condition(render(c[0], c[1])) if c else None

    per_node: dict[str, list[Binding]] = defaultdict(list)
    for b in bindings:
        per_node[_full(b.node, world)].append(Binding(b.role, tuple(b.members), cond(b.condition)))
    nodes: dict[str, Node] = {}

    def add(name: str, kind: Any, parent: str | None, number: str | None = None) -> None:
        policy = AllowPolicy(tuple(per_node[name])) if per_node.get(name) else None
        nodes[name] = Node(name, kind, parent, policy, number)

    add(_full("org", world), "organization", None)
    for f, parent in world.folders.items():
        add(_full(f"folder:{f}", world), "folder", _full(parent, world))
    for pid, p in world.projects.items():
        add(
            _full(f"project:{pid}", world),
            "project",
            _full(p.parent, world) if p.parent else None,
            p.number,
        )
    for b, pid in world.buckets.items():
        add(_full(f"bucket:{b}", world), "bucket", _full(f"project:{pid}", world))
    for e, pid in world.service_accounts.items():
        add(_full(f"sa:{e}", world), "serviceAccount", _full(f"project:{pid}", world))
    deny_policies = tuple(
        DenyPolicy(
            f"policies/x/denypolicies/d{i}",
            _full(d.node, world, by_number=by_number),
            tuple(
                DenyRule(
                    tuple(r.denied),
                    tuple(r.permissions),
                    tuple(r.exception_principals),
                    tuple(r.exception_permissions),
                    cond(r.condition),
                )
                for r in d.rules
            ),
        )
        for i, (d, by_number) in enumerate(denies)
    )
    unreadable = tuple(
        Unreadable(_full(n, world), "getIamPolicy", "403") for n in sorted(world.unreadable_allow)
    ) + tuple(
        Unreadable(_full(n, world), "listPolicies", "403") for n in sorted(world.unreadable_deny)
    )
    return Snapshot(
        nodes=nodes,
        roles={name: Role(name, frozenset(perms)) for name, perms in world.roles.items()},
        deny_policies=deny_policies,
        service_accounts={
            e: ServiceAccount(e, pid, unique_id=world.sa_unique_ids[e])
            for e, pid in world.service_accounts.items()
        },
        groups={g: tuple(m) for g, m in world.groups.items()},
        unreadable=unreadable,
    )


_ENGINE_STATE = {
    "granted": "granted",
    "not_granted": "not_granted",
    "denied": "denied",
    "unverifiable": "unknown",
}


for _cond, _spelling in CONDITION_POOL:  # parsed up front (celpy also raises the recursion limit)
    _CONDITIONS.check_syntax(render(_cond, _spelling))


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.integers(0, 2**64 - 1))
def test_engine_agrees_with_the_reference_evaluator(seed: int) -> None:
    d = Draw(seed)
    world, snapshot = worlds(d)
    evaluator = Evaluator(snapshot)
    evaluator.conditions = _CONDITIONS
    principals = [f"serviceAccount:{e}" for e in world.service_accounts]
    principals += [f"user:{u}" for u in USERS] + [WORKFORCE]
    resources = [*BUCKETS, *(f"sa:{e}" for e in world.service_accounts)]
    for _ in range(QUESTIONS):
        principal, resource, obj = d.pick(principals), d.pick(resources), d.pick(OBJECTS)
        on_sa = resource.startswith("sa:")
        permission = d.pick(SA_PERMISSIONS if on_sa else PERMISSIONS)
        name = _full(resource if on_sa else f"bucket:{resource}", world)
        want = ref.decide(world, principal, resource, permission, obj)
        got = evaluator.decide(principal, name, permission, now=NOW, object_name=obj)
        assert _ENGINE_STATE[got.state] == want, (principal, resource, permission, obj, got, world)


def test_the_reference_shares_no_code_with_the_engine() -> None:
    source = Path(ref.__file__).read_text(encoding="utf-8")
    assert "zt_pipelines" not in source.replace("``zt_pipelines``", "")


# -- needs on an object prefix: the engine's answer must hold for every object under it --------

PREFIXES = ("", "data/", "tmp/", "data/x")
OBJECT_PERMISSIONS = ("storage.objects.get", "storage.objects.create", "storage.objects.delete")


def _witnesses(prefix: str) -> list[str]:
    """Object names under ``prefix``: the engine's own probes and others a condition may tell
    apart (``.csv`` / ``.tmp`` endings, the ``data/`` and ``tmp/`` folders)."""
    tails = ["", "zt-probe/zt-probe.bin", "x.csv", "y.tmp", "data/x.csv", "tmp/y.tmp", "z"]
    return [prefix + t for t in tails if prefix + t]  # an object name is never empty


@settings(
    max_examples=PREFIX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.integers(0, 2**64 - 1))
def test_prefix_answers_hold_for_every_object_under_the_prefix(seed: int) -> None:
    d = Draw(seed)
    world, snapshot = worlds(d)
    evaluator = Evaluator(snapshot)
    evaluator.conditions = _CONDITIONS
    principals = [f"serviceAccount:{e}" for e in world.service_accounts]
    principals += [f"user:{u}" for u in USERS]
    for _ in range(QUESTIONS):
        principal, bucket = d.pick(principals), d.pick(BUCKETS)
        permission, prefix = d.pick(OBJECT_PERMISSIONS), d.pick(PREFIXES)
        got = evaluator.decide(
            principal,
            ResourceRef(f"//storage.googleapis.com/{bucket}", prefix),
            permission,
            now=NOW,
        ).state
        each = [ref.decide(world, principal, bucket, permission, o) for o in _witnesses(prefix)]
        context = (principal, bucket, permission, prefix, each, world)
        if got == "granted":  # granted for the whole prefix: for every object
            assert set(each) == {"granted"}, context
        elif got == "denied":  # denied for the whole prefix: for every object
            assert set(each) == {"denied"}, context
        elif got == "not_granted":  # some object under the prefix is not granted
            assert "granted" not in each or set(each) != {"granted"}, context
            assert "denied" not in each or set(each) != {"denied"}, context
