"""Property tests: monotonicity of allow and deny, and evidence that really is the cause."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from policy_worlds import FEATURES, FOLDER, NOW, ORG, PROJECT, RAW, world

from zt_pipelines.policy.conditions import ConditionEvaluator
from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Condition,
    DenyPolicy,
    DenyRule,
    Snapshot,
)

NODES = [ORG, FOLDER, PROJECT, RAW, FEATURES]
ROLES = [
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/storage.admin",
    "roles/editor",
    "organizations/100/roles/ztBucketGetter",
    "projects/ml-prod/roles/mystery",  # unknown role: never proves a grant
]
PRINCIPALS = [
    "serviceAccount:train-sa@ml-prod.iam.gserviceaccount.com",
    "serviceAccount:ingest-sa@ml-prod.iam.gserviceaccount.com",
    "user:alice@example.com",
]
MEMBERS = [
    *PRINCIPALS,
    "group:ml-team@example.com",
    "group:unknown@example.com",
    "allAuthenticatedUsers",
    "domain:example.com",
]
CONDITIONS = [
    None,
    'request.time < timestamp("2027-01-01T00:00:00Z")',
    'request.time < timestamp("2020-01-01T00:00:00Z")',
    'resource.name.startsWith("projects/_/buckets/zt-raw-data/")',
    'resource.matchTag("100/env", "prod")',
]
PERMISSIONS = [
    "storage.objects.get",
    "storage.objects.create",
    "storage.buckets.get",
    "storage.buckets.setIamPolicy",
]
DENY_PRINCIPALS = [
    "principal://iam.googleapis.com/projects/-/serviceAccounts/train-sa@ml-prod.iam.gserviceaccount.com",
    "principalSet://goog/public:all",
    "principalSet://goog/group/ml-team@example.com",
    "principalSet://goog/group/unknown@example.com",
]
DENY_PERMISSIONS = [
    "storage.googleapis.com/objects.get",
    "storage.googleapis.com/objects.*",
    "storage.googleapis.com/buckets.get",
    "*",
]

bindings = st.tuples(
    st.sampled_from(NODES),
    st.sampled_from(ROLES),
    st.sampled_from(MEMBERS),
    st.sampled_from(CONDITIONS),
)
deny_rules = st.tuples(
    st.sampled_from([ORG, FOLDER, PROJECT]),
    st.sampled_from(DENY_PRINCIPALS),
    st.sampled_from(DENY_PERMISSIONS),
    st.sampled_from([None, *DENY_PRINCIPALS]),
    st.sampled_from(
        [None, 'resource.type == "storage.googleapis.com/Object"', 'resource.matchTag("1/x", "y")']
    ),
)
questions = st.tuples(
    st.sampled_from(PRINCIPALS), st.sampled_from([RAW, FEATURES]), st.sampled_from(PERMISSIONS)
)


def build(base: Snapshot, grants: list[Any], denies: list[Any]) -> Snapshot:
    nodes = dict(base.nodes)
    for name, role, member, cond in grants:
        n = nodes[name]
        policy = n.policy or AllowPolicy()
        b = Binding(role, (member,), Condition(cond) if cond else None)
        nodes[name] = replace(n, policy=replace(policy, bindings=(*policy.bindings, b)))
    dps = list(base.deny_policies)
    for i, (at, who, perm, exc, cond) in enumerate(denies):
        rule = DenyRule(
            (who,), (perm,), (exc,) if exc else (), (), Condition(cond) if cond else None
        )
        dps.append(DenyPolicy(f"prop-{i}", at, (rule,)))
    return replace(base, nodes=nodes, deny_policies=tuple(dps))


BASE = world()
# build the CEL grammar now: lark raises the recursion limit once, outside hypothesis' runs
ConditionEvaluator().check_syntax("true")


def ask(snap: Snapshot, q: tuple[str, str, str]) -> str:
    return Evaluator(snap).decide(q[0], q[1], q[2], now=NOW).state


@settings(max_examples=150, deadline=None)
@given(st.lists(bindings, max_size=6), st.lists(deny_rules, max_size=2), bindings, questions)
def test_adding_a_grant_never_revokes(
    grants: list[Any], denies: list[Any], extra: Any, q: tuple[str, str, str]
) -> None:
    before = ask(build(BASE, grants, denies), q)
    after = ask(build(BASE, [*grants, extra], denies), q)
    if before == "granted":
        assert after == "granted"


@settings(max_examples=150, deadline=None)
@given(st.lists(bindings, max_size=6), st.lists(deny_rules, max_size=2), deny_rules, questions)
def test_adding_a_deny_never_grants(
    grants: list[Any], denies: list[Any], extra: Any, q: tuple[str, str, str]
) -> None:
    before = ask(build(BASE, grants, denies), q)
    after = ask(build(BASE, grants, [*denies, extra]), q)
    if before != "granted":
        assert after != "granted"


@settings(max_examples=150, deadline=None)
@given(st.lists(bindings, max_size=6), st.lists(deny_rules, max_size=2), questions)
def test_removing_the_evidence_binding_revokes(
    grants: list[Any], denies: list[Any], q: tuple[str, str, str]
) -> None:
    snap = build(BASE, grants, denies)
    d = Evaluator(snap).decide(q[0], q[1], q[2], now=NOW)
    if not d.granted:
        return
    nodes = dict(snap.nodes)
    for ev in d.evidence:
        assert ev.kind == "binding"
        n = nodes[ev.node]
        assert n.policy is not None
        kept = []
        for b in n.policy.bindings:
            same = b.role == ev.role and (b.condition.expression if b.condition else "") == (
                ev.condition
            )
            if same and ev.member in b.members:
                members = tuple(m for m in b.members if m != ev.member)
                if members:
                    kept.append(replace(b, members=members))
            else:
                kept.append(b)
        nodes[ev.node] = replace(n, policy=replace(n.policy, bindings=tuple(kept)))
    assert ask(replace(snap, nodes=nodes), q) != "granted"


@settings(max_examples=150, deadline=None)
@given(st.lists(bindings, max_size=6), st.lists(deny_rules, max_size=2), questions)
def test_evidence_is_consistent_with_the_answer(
    grants: list[Any], denies: list[Any], q: tuple[str, str, str]
) -> None:
    snap = build(BASE, grants, denies)
    d = Evaluator(snap).decide(q[0], q[1], q[2], now=NOW)
    if d.state == "granted":
        assert d.evidence
        for ev in d.evidence:
            role = snap.roles[ev.role]
            assert q[2] in role.permissions and ev.node in {n.name for n in snap.ancestors(q[1])}
    elif d.state == "denied":
        (ev,) = d.evidence
        assert ev.kind == "deny" and ev.deny_policy.startswith("prop-")
    elif d.state == "unverifiable":
        assert d.reasons and d.evidence
