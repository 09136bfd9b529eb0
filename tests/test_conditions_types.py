"""Ill-typed IAM conditions never decide: IAM type-checks a condition before it evaluates it, so
one that does not type-check never grants (allow) and is never ruled out (deny). Every operator
and function the evaluator models is attacked with arguments of the wrong type."""

from __future__ import annotations

import dataclasses

import pytest
from policy_worlds import FEATURES, NOW, PROJECT, TRAIN_SA, deny, node, v2_sa, world_dict

from zt_pipelines.errors import SnapshotError
from zt_pipelines.policy.conditions import (
    ConditionError,
    ConditionEvaluator,
    RequestAttributes,
    Tri,
)
from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot import AllowPolicy, Condition, DenyPolicy, DenyRule
from zt_pipelines.policy.snapshot_file import load_snapshot

TRAIN = f"serviceAccount:{TRAIN_SA}"
OBJECT = RequestAttributes(
    "projects/_/buckets/zt-features/objects/a.csv",
    type="storage.googleapis.com/Object",
    service="storage.googleapis.com",
)

#: each is ill-typed, and each would be TRUE (or decide a deny) if a definite part decided it
ILL_TYPED = [
    "1 ? true : true",
    '"x" ? true : true',
    "false ? 1 : true",
    'true ? true : "x"',
    'true || "x"',
    '"x" || true',
    "true || 1",
    "false && 1",
    '"a" in ["a", 1]',
    '"a" in ["a", true]',
    'resource.name in "projects/_/buckets/zt-features"',
    'resource.name in ["projects/_/buckets/zt-features/objects/a.csv", 1]',
    "1",
    '"true"',
    "request.time",
    "resource.name",
    '!"x"',
    "!1",
    "-true == false",
    '-"a" == "a"',
    'request.time < "2030-01-01T00:00:00Z"',
    "request.time > 0 || true",
    "resource.name == 1 || true",
    "true || resource.name != 1",
    "1 < true || true",
    "[1] < [2] || true",
    'null == "a" || true',
    "resource.name.startsWith(1) || true",
    'resource.name.startsWith("a", "b") || true',
    "resource.name.endsWith() || true",
    "resource.name.contains(true) || true",
    "resource.name.matches(1) || true",
    'matches(1, "a") || true',
    'request.time.startsWith("a") || true',
    "resource.name.getHours() == 1 || true",
    'request.time.getHours() == "1" || true',
    "request.time.getHours(1) == 1 || true",
    "timestamp(true) < request.time || true",
    'timestamp("2030-01-01T00:00:00Z")',
    'duration(1) > duration("1s") || true',
    '"a" + 1 == "a1" || true',
    "request.time + request.time > request.time || true",
    "1 % 1.0 == 0 || true",
    "size(1) == 1 || true",
    '"a"[0] == "a" || true',
    '[1]["a"] == 1 || true',
    'resource[1] == "a" || true',
    'resource.name.name == "a" || true',
    'resource.matchTag("k") || true',
    "resource.matchTag(1, 2) || true",
    "[1, 2].exists(x, 1) || true",
    '{"a": 1, 2: 1}["a"] == 1 || true',
    "!(1 ? true : true)",
]

#: well-typed conditions a real policy carries: none may be refused
WELL_TYPED = [
    'request.time < timestamp("2030-01-01T00:00:00Z")',
    'resource.name.startsWith("projects/_/buckets/zt-features")',
    'resource.type == "storage.googleapis.com/Object" && resource.name.endsWith(".csv")',
    'resource.service in ["storage.googleapis.com", "bigquery.googleapis.com"]',
    'request.time.getHours("Europe/Berlin") >= 9',
    'resource.matchTag("123/env", "prod")',
    'api.getAttribute("iam.googleapis.com/modifiedGrantsByRole", []).hasOnly(["roles/x"])',
    'resource.name.extract("projects/{p}/") == "x"',
    "has(resource.labels)",
    'request.time > timestamp("2020-01-01T00:00:00Z") + duration("3600s")',
    'resource["name"] == "x"',
    'request["time"] < timestamp("2030-01-01T00:00:00Z")',
    "[1, 2].exists(x, x > 1)",
    "size(resource.name) > 3 && resource.name.size() > 3",
    'true ? resource.name == "a" : false',
    'request.auth.claims.foo == "a"',
    "1 < 2.0",
    'request.time - timestamp("2020-01-01T00:00:00Z") > duration("1s")',
    'matches(resource.name, "a")',
    'int("1") == 1 && timestamp(1) < request.time',
    '{"a": 1}["a"] == 1 && "a" in {"a": 1}',
]


@pytest.mark.parametrize("expression", ILL_TYPED)
def test_an_ill_typed_condition_is_refused_and_never_decides(expression: str) -> None:
    cel = ConditionEvaluator()
    with pytest.raises(ConditionError):
        cel.check_syntax(expression)
    for is_deny in (False, True):
        got = cel.evaluate(Condition(expression), OBJECT, NOW, deny=is_deny)
        assert got.value is Tri.UNKNOWN and got.reason
    assert cel.holds_somewhere(Condition(expression), OBJECT, NOW).value is Tri.UNKNOWN


@pytest.mark.parametrize("expression", WELL_TYPED)
def test_a_well_typed_condition_is_accepted(expression: str) -> None:
    ConditionEvaluator().check_syntax(expression)


def test_ill_typed_reasons_name_the_clash() -> None:
    cel = ConditionEvaluator()
    with pytest.raises(ConditionError, match="test of '\\?:' is int"):
        cel.check_syntax("1 ? true : true")
    with pytest.raises(ConditionError, match="a list of string and int"):
        cel.check_syntax('"a" in ["a", 1]')
    with pytest.raises(ConditionError, match="not a boolean"):
        cel.check_syntax('"x"')


@pytest.mark.parametrize("expression", ["1 ? true : true", 'true || "x"', '"a" in ["a", 1]'])
def test_a_snapshot_file_with_an_ill_typed_condition_is_refused_naming_the_binding(
    expression: str,
) -> None:
    data = world_dict()
    node(data, FEATURES)["policy"]["bindings"][0]["condition"] = {"expression": expression}
    with pytest.raises(SnapshotError) as info:
        load_snapshot(data)
    assert "policy.bindings[0].condition.expression" in str(info.value)
    assert "ill-typed" in str(info.value) or "not a boolean" in str(info.value)

    denied = deny(world_dict(), PROJECT, [v2_sa(TRAIN_SA)], ["storage.googleapis.com/objects.get"])
    denied["denyPolicies"][0]["rules"][0]["denialCondition"] = {"expression": expression}
    with pytest.raises(SnapshotError, match=r"denialCondition\.expression"):
        load_snapshot(denied)


@pytest.mark.parametrize("expression", ["1 ? true : true", 'true || "x"', "false ? 1 : true"])
def test_an_ill_typed_condition_read_live_never_grants(expression: str) -> None:
    """A state built without the file loader (a live read) still never grants on one."""
    snap = load_snapshot(world_dict())
    feat = snap.nodes[FEATURES]
    assert feat.policy is not None
    bindings = tuple(
        dataclasses.replace(b, condition=Condition(expression)) for b in feat.policy.bindings
    )
    nodes = dict(snap.nodes)
    nodes[FEATURES] = dataclasses.replace(feat, policy=AllowPolicy(bindings))
    got = decide(
        TRAIN, FEATURES, "storage.objects.get", dataclasses.replace(snap, nodes=nodes), now=NOW
    )
    assert got.state == "unverifiable" and not got.granted
    assert any("ill-typed" in r or "not a boolean" in r for r in got.reasons)
    # the control: the same binding unconditional grants
    assert decide(TRAIN, FEATURES, "storage.objects.get", snap, now=NOW).granted


@pytest.mark.parametrize("expression", ["!(1 ? true : true)", 'false && "x"', "false ? 1 : false"])
def test_an_ill_typed_deny_condition_is_never_ruled_out(expression: str) -> None:
    snap = load_snapshot(world_dict())
    rule = DenyRule(
        denied_principals=(v2_sa(TRAIN_SA),),
        denied_permissions=("storage.googleapis.com/objects.get",),
        denial_condition=Condition(expression),
    )
    with_deny = dataclasses.replace(snap, deny_policies=(DenyPolicy("deny-x", PROJECT, (rule,)),))
    got = decide(TRAIN, FEATURES, "storage.objects.get", with_deny, now=NOW)
    assert not got.granted and got.state in ("unverifiable", "denied")


def test_the_binding_without_its_condition_is_unchanged() -> None:
    """The check does not alter well-typed decisions: the same binding with a well-typed
    condition that holds still grants."""
    data = world_dict()
    node(data, FEATURES)["policy"]["bindings"][0]["condition"] = {
        "expression": 'resource.name.startsWith("projects/_/buckets/zt-features") || 1 == 2'
    }
    got = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert got.granted


#: well-typed as far as we can tell, but naming what IAM Conditions does not document: never
#: decided, however a definite operand beside it reads
UNMODELLED = [
    "resource.name.lowerAscii() || true",
    'resource.name.split("/") || true',
    "request.auth.claims || true",
    'resource.labels["x"] || true',
    'resource.labels.env == "x" || true',
    'api.getAttribute("iam.googleapis.com/notDocumented", false) || true',
    "x || true",
    "dyn(true) || true",
    "resource.hasNoSuchFunction() || true",
    'true || resource.name.lowerAscii() == "x"',
    '!(resource.name.lowerAscii() == "x" && false)',
]

#: documented attributes and functions with their documented types
DOCUMENTED = [
    'api.getAttribute("iam.googleapis.com/modifiedGrantsByRole", []).hasOnly(["roles/viewer"])',
    '"accessPolicies/1/accessLevels/corp" in request.auth.access_levels',
    'api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("runs/")',
    'destination.port == 22 && destination.ip == "10.0.0.1"',
    "compute.isForwardingRuleCreationOperation()",
    'compute.matchLoadBalancingSchemes(["INTERNAL"])',
    'resource.hasTagKey("123/env") && resource.matchTagId("tagKeys/1", "tagValues/2")',
    '[1, 2].exists(x, x > 1) && ["a"].all(y, y.startsWith("a"))',
]


@pytest.mark.parametrize("expression", UNMODELLED)
def test_what_iam_does_not_document_is_never_decided(expression: str) -> None:
    cel = ConditionEvaluator()
    cel.check_syntax(expression)  # a snapshot Google may have written still loads
    for is_deny in (False, True):
        got = cel.evaluate(Condition(expression), OBJECT, NOW, deny=is_deny)
        assert got.value is Tri.UNKNOWN and "does not document" in got.reason
    assert cel.holds_somewhere(Condition(expression), OBJECT, NOW).value is Tri.UNKNOWN


@pytest.mark.parametrize("expression", UNMODELLED[:5])
def test_an_undocumented_condition_never_grants_a_need(expression: str) -> None:
    data = world_dict()
    node(data, FEATURES)["policy"]["bindings"][0]["condition"] = {"expression": expression}
    got = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert got.state == "unverifiable" and not got.granted


@pytest.mark.parametrize("expression", DOCUMENTED)
def test_documented_attributes_are_typed_and_decided_where_they_can_be(expression: str) -> None:
    cel = ConditionEvaluator()
    cel.check_syntax(expression)
    got = cel.evaluate(Condition(f"({expression}) || true"), OBJECT, NOW)
    assert got.value is Tri.TRUE  # the documented unknown value is a boolean: true decides


@pytest.mark.parametrize(
    "expression",
    [
        'api.getAttribute("iam.googleapis.com/modifiedGrantsByRole", []) || true',
        'api.getAttribute("iam.googleapis.com/modifiedGrantsByRole", "x") == "x"',
        'api.getAttribute("iam.googleapis.com/modifiedGrantsByRole", []) == "roles/x"',
        "request.auth.access_levels || true",
        'destination.port == "22" || true',
        "destination.ip || true",
        "compute.matchLoadBalancingSchemes(1) || true",
        'compute.isForwardingRuleCreationOperation("x") || true',
        '[1].hasOnly(["a"]) || true',
        "resource.matchTag(1, 2) || true",
    ],
)
def test_documented_attributes_used_with_the_wrong_type_are_refused(expression: str) -> None:
    with pytest.raises(ConditionError, match="ill-typed"):
        ConditionEvaluator().check_syntax(expression)
