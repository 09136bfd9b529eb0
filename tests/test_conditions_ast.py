"""Issue #10 item 7: conditions are decided on the parsed CEL AST, never by matching text, and
resource attributes exist only where Google documents them."""

from __future__ import annotations

import pytest
from policy_worlds import FEATURES, NOW, PROJECT, TRAIN_SA, deny, grant, sa_node, v2_sa, world_dict

from zt_pipelines.policy.conditions import (
    ConditionEvaluator,
    RequestAttributes,
    Tri,
    request_attributes,
)
from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot import Condition
from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.resources import normalize_resource

TRAIN = f"serviceAccount:{TRAIN_SA}"
_AIP = "//aiplatform.googleapis.com"
_AR = "//artifactregistry.googleapis.com/projects/p/locations/l"
RAW = "//storage.googleapis.com/zt-raw-data"
OBJECT = RequestAttributes(
    None,
    "projects/_/buckets/b/objects/in/",
    "storage.googleapis.com/Object",
    "storage.googleapis.com",
)


def _value(expression: str, attrs: RequestAttributes = OBJECT, *, deny: bool = False) -> Tri:
    return ConditionEvaluator().evaluate(Condition(expression), attrs, NOW, deny=deny).value


def _allow_state(expression: str) -> str:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", TRAIN, condition=expression)
    return decide(TRAIN, FEATURES, "storage.objects.delete", load_snapshot(data), now=NOW).state


# -- time of day: the step runs later than the check, whatever the spelling ----------------


@pytest.mark.parametrize(
    "expression",
    [
        '(request.time).getHours("UTC") < 18',  # the review's case (NOW is 12:00 UTC)
        'request["time"].getHours("UTC") < 18',
        '(request)["time"].getHours("UTC") < 18',
        'request.time.getHours("UTC") < 18 && true',
        'true ? request.time.getHours("UTC") < 18 : false',
        'request.time.getDayOfWeek("UTC") != 0',
        'request.time.getFullYear("UTC") == 2026',
        '!(request.time.getHours("UTC") >= 18)',
        'request.time.getHours("UTC") in [10, 11, 12, 13]',
        "((request)).time.getMinutes() >= 0",
    ],
)
def test_time_of_day_is_unknown_in_every_spelling(expression: str) -> None:
    assert _allow_state(expression) == "unverifiable"
    assert _value(expression) is Tri.UNKNOWN


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ('request["time"] < timestamp("2027-01-01T00:00:00Z")', Tri.TRUE),
        ('(request.time) > timestamp("2027-01-01T00:00:00Z")', Tri.FALSE),
        ('request.time < timestamp("2026-11-25T13:00:00+01:00")', Tri.FALSE),  # 12:00Z
        ('request.time < timestamp("2026-11-25")', Tri.UNKNOWN),  # not RFC 3339: Google errs
        ('request.time < "2027-01-01T00:00:00Z"', Tri.UNKNOWN),  # a string is not a time
        ('request.time.getHours("UTC") < 18 || true', Tri.TRUE),  # decided without the hour
        ('request.time.getHours("UTC") < 18 && false', Tri.FALSE),
    ],
)
def test_expiry_is_still_decided_exactly(expression: str, value: Tri) -> None:
    assert _value(expression) is value


# -- resource attributes in any spelling --------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ('resource["name"].startsWith("projects/_/buckets/b/objects/in/")', Tri.TRUE),
        ('(resource).name.startsWith("projects/_/buckets/b/")', Tri.TRUE),
        ('resource.name.startsWith("projects/_/buckets/b/objects/out/")', Tri.FALSE),
        ('resource["type"] == "storage.googleapis.com/Object"', Tri.TRUE),
        ('resource.type in ["storage.googleapis.com/Bucket", "x"]', Tri.FALSE),
        ('resource.service != "storage.googleapis.com" ? false : true', Tri.TRUE),
        ('resource.name == "projects/_/buckets/other/objects/x"', Tri.FALSE),
        ('resource.name == "projects/_/buckets/b/objects/in/x"', Tri.FALSE),  # probe: allow
        ('resource.name.matches("^projects/_/buckets/b/objects/in/.*$")', Tri.UNKNOWN),
        ('resource.name.extract("{x}/") == "a"', Tri.UNKNOWN),
        ("has(resource.name)", Tri.UNKNOWN),
        ("size(resource.name) > 0", Tri.UNKNOWN),
        ("resource.type == 1", Tri.UNKNOWN),  # a type error: never a decision
        ('resource.labels["env"] == "prod"', Tri.UNKNOWN),
        ('api.getAttribute("x", []) == []', Tri.UNKNOWN),
        ('"storage.googleapis.com/Object" == resource.type', Tri.TRUE),
        ("1 == 1", Tri.TRUE),
        ("010 == 8", Tri.UNKNOWN),
    ],
)
def test_resource_attributes_in_any_spelling(expression: str, value: Tri) -> None:
    assert _value(expression) is value


def test_a_deny_condition_is_never_ruled_out_by_probe_names() -> None:
    expression = 'resource.name == "projects/_/buckets/b/objects/in/x"'
    assert _value(expression, deny=True) is Tri.UNKNOWN
    assert _value('resource.name.startsWith("projects/_/buckets/b/objects/out/")', deny=True) is (
        Tri.FALSE
    )


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 3000 + "true" + ")" * 3000,
        "!" * 5000 + "true",
        "x" * 20_000,
    ],
)
def test_hostile_expressions_are_unknown_not_errors(expression: str) -> None:
    assert _value(expression) is Tri.UNKNOWN


# -- resource attributes only on services that have them ----------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        'resource.type == "cloudresourcemanager.googleapis.com/Project"',
        'resource.service == "aiplatform.googleapis.com"',
        'resource.name.startsWith("projects/ml-prod")',
        'resource.type != "aiplatform.googleapis.com/CustomJob"',
    ],
)
def test_resource_attributes_on_vertex_ai_are_unknown(expression: str) -> None:
    data = grant(world_dict(), PROJECT, "roles/aiplatform.user", TRAIN, condition=expression)
    d = decide(TRAIN, PROJECT, "aiplatform.customJobs.create", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable", d


@pytest.mark.parametrize(
    "expression",
    [
        'resource.type == "iam.googleapis.com/ServiceAccount"',
        'resource.name.startsWith("projects/ml-prod/serviceAccounts/")',
        'resource.service == "iam.googleapis.com"',
    ],
)
def test_resource_attributes_on_iam_are_unknown(expression: str) -> None:
    target = sa_node(TRAIN_SA)
    data = grant(
        world_dict(), target, "roles/iam.serviceAccountUser", "user:bob@example.com", expression
    )
    d = decide(
        "user:bob@example.com", target, "iam.serviceAccounts.actAs", load_snapshot(data), now=NOW
    )
    assert d.state == "unverifiable", d


def test_a_deny_on_vertex_ai_with_a_resource_condition_may_apply() -> None:
    data = deny(
        world_dict(),
        PROJECT,
        [v2_sa(TRAIN_SA)],
        ["aiplatform.googleapis.com/customJobs.create"],
        denialCondition={"expression": 'resource.type == "storage.googleapis.com/Object"'},
    )
    grant(data, PROJECT, "roles/aiplatform.user", TRAIN)
    d = decide(TRAIN, PROJECT, "aiplatform.customJobs.create", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable", d


@pytest.mark.parametrize(
    ("name", "permission", "known"),
    [
        ("//storage.googleapis.com/b", "storage.objects.get", True),
        ("//bigquery.googleapis.com/projects/p/datasets/d", "bigquery.tables.getData", True),
        (_AIP + "/projects/p/locations/l/models/m", "aiplatform.models.get", False),
        (_AR + "/repositories/r", "artifactregistry.repositories.downloadArtifacts", False),
        (sa_node("a@p.iam.gserviceaccount.com"), "iam.serviceAccounts.actAs", False),
        ("//cloudresourcemanager.googleapis.com/projects/p", "aiplatform.customJobs.create", False),
    ],
)
def test_request_attributes_exist_only_for_listed_services(
    name: str, permission: str, known: bool
) -> None:
    attrs = request_attributes(name, None, permission)
    assert (attrs.unavailable == "") is known


def test_object_prefix_startswith_still_decides_the_prefix_need() -> None:
    cond = 'resource.name.startsWith("projects/_/buckets/zt-raw-data/objects/in/")'
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", TRAIN, condition=cond)
    ref = normalize_resource("gs://zt-raw-data/in/sub/")
    assert decide(TRAIN, ref, "storage.objects.get", load_snapshot(data), now=NOW).granted


BUCKET = RequestAttributes(
    "projects/_/buckets/b", None, "storage.googleapis.com/Bucket", "storage.googleapis.com"
)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ('resource.name.matches("^projects/_/buckets/b$")', Tri.TRUE),
        ('resource.name.matches("buckets/[a-c]")', Tri.TRUE),  # unanchored, as CEL's
        ('resource.name.matches("^buckets/")', Tri.FALSE),
        ('resource.name.matches("(b)\\\\1")', Tri.UNKNOWN),  # a backreference: not RE2
        ('resource.name.matches("(a+)+$")', Tri.FALSE),  # linear time, no backtracking
        ('request.time < timestamp("2027-01-01t00:00:00z")', Tri.UNKNOWN),  # not RFC 3339 for CEL
        ('request.time < timestamp("2027-01-01T00:00:00.123456789+02:00")', Tri.TRUE),
    ],
)
def test_matches_and_timestamps_on_known_values(expression: str, value: Tri) -> None:
    assert _value(expression, BUCKET) is value


def test_a_gke_service_account_may_be_in_a_workload_pool_set() -> None:
    ksa = "serviceAccount:ml-prod.svc.id.goog[training/trainer]"
    pool = (
        "principalSet://iam.googleapis.com/projects/123456789012/locations/global/"
        "workloadIdentityPools/ml-prod.svc.id.goog/*"
    )
    data = grant(world_dict(), FEATURES, "roles/storage.admin", ksa)
    data = deny(data, PROJECT, [pool], ["storage.googleapis.com/objects.delete"])
    d = decide(ksa, FEATURES, "storage.objects.delete", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable", d


DATASET = "//bigquery.googleapis.com/projects/ml-prod/datasets/analytics"
_SM = "//secretmanager.googleapis.com"
_CRM = "//cloudresourcemanager.googleapis.com"


@pytest.mark.parametrize(
    ("expression", "state"),
    [
        # reading a dataset's tables is a request on each table, not on the dataset
        ('resource.type == "bigquery.googleapis.com/Dataset"', "not_granted"),
        ('resource.type == "bigquery.googleapis.com/Table"', "granted"),
        ('resource.name.startsWith("projects/ml-prod/datasets/analytics/tables/")', "granted"),
        ('resource.name == "projects/ml-prod/datasets/analytics"', "not_granted"),
        ('resource.name.endsWith("/tables/events")', "not_granted"),  # not every table
    ],
)
def test_table_requests_under_a_dataset_carry_table_attributes(expression: str, state: str) -> None:
    data = grant(world_dict(), DATASET, "roles/bigquery.dataViewer", TRAIN, condition=expression)
    d = decide(TRAIN, DATASET, "bigquery.tables.getData", load_snapshot(data), now=NOW)
    assert d.state == state, d


@pytest.mark.parametrize(
    ("name", "kind", "permission"),
    [
        ("//storage.googleapis.com/b", "bucket", "storage.managedFolders.get"),
        (_SM + "/projects/p/secrets/s", "secret", "secretmanager.versions.access"),
        (_CRM + "/projects/p", "project", "resourcemanager.folders.get"),
        ("//bigquery.googleapis.com/projects/p/datasets/d", "dataset", "bigquery.tables.list"),
    ],
)
def test_a_request_on_another_kind_than_the_node_has_no_invented_type(
    name: str, kind: str, permission: str
) -> None:
    attrs = request_attributes(name, None, permission, kind)
    assert attrs.type is None and attrs.name is None and attrs.name_prefix is None
