"""Excess by scope through CONDITIONAL bindings (ZT214/ZT215): a condition narrows a broad grant
only when it is false outside the needs — probed on a sibling resource / an outside prefix."""

from __future__ import annotations

import pytest
from policy_worlds import FOLDER, ORG, PROJECT, ROOT_BUCKET, grant, node, world_dict
from test_check_codes import TRAIN, run

from zt_pipelines.policy.report import Severity

FEATURES_OBJECTS = "projects/_/buckets/zt-features/objects/"
ROOT_OBJECTS = "projects/_/buckets/zt-pipeline-root/objects/"


def _zt214(report_scope: str, condition: str | None) -> list[object]:
    data = grant(world_dict(), report_scope, "roles/storage.objectViewer", TRAIN, condition)
    report = run(data)
    return [
        f for f in report.by_code("ZT214") if f.principal == TRAIN and f.resource == report_scope
    ]


@pytest.mark.parametrize(
    "condition",
    [
        "true",
        'request.time < timestamp("2099-01-01T00:00:00Z")',
        'resource.type != "x"',
        'resource.name.startsWith("projects/_/buckets/")',
        'resource.service == "storage.googleapis.com"',
        # the classic prefix trap: no trailing slash, so zt-features-other is granted too
        'resource.name.startsWith("projects/_/buckets/zt-features")',
        # true on every bucket but one
        '!resource.name.startsWith("projects/_/buckets/zt-probe")',
    ],
)
@pytest.mark.parametrize("scope", [ORG, FOLDER, PROJECT])
def test_a_condition_true_outside_the_needs_keeps_the_broad_grant_an_error(
    scope: str, condition: str
) -> None:
    data = grant(world_dict(), scope, "roles/storage.objectViewer", TRAIN, condition)
    report = run(data)
    assert not report.allowed
    found = [f for f in report.by_code("ZT214") if f.principal == TRAIN and f.resource == scope]
    assert len(found) == 1, str(report)
    f = found[0]
    assert f.severity is Severity.ERROR
    assert "its condition also holds outside the needs" in f.message
    assert "may give" not in f.message and "gs://zt-features" in f.message
    assert f.evidence[0].condition == condition and f.evidence[0].role.endswith("objectViewer")


@pytest.mark.parametrize(
    "condition",
    [
        # name conditions naming exactly the needed bucket and its objects
        f'resource.name == "projects/_/buckets/zt-features" '
        f'|| resource.name.startsWith("{FEATURES_OBJECTS}")',
        f'resource.name in ["projects/_/buckets/zt-features"] '
        f'|| resource.name.startsWith("{FEATURES_OBJECTS}")',
        # expired: grants nothing anywhere
        'request.time < timestamp("2001-01-01T00:00:00Z")',
        "false",
    ],
)
def test_a_condition_false_outside_the_needs_is_scoped(condition: str) -> None:
    assert _zt214(ORG, condition) == []
    assert _zt214(PROJECT, condition) == []


@pytest.mark.parametrize(
    ("condition", "why"),
    [
        ('resource.name.endsWith(".csv")', "depends on the object name"),
        ("request.time.getHours() < 20", "getHours"),
        ('resource.matchTag("100/env", "prod")', "matchTag"),
    ],
)
def test_an_undecidable_condition_is_a_may_finding(condition: str, why: str) -> None:
    data = grant(world_dict(), ORG, "roles/storage.objectViewer", TRAIN, condition)
    report = run(data)
    found = [f for f in report.by_code("ZT214") if f.principal == TRAIN and f.resource == ORG]
    assert len(found) == 1, str(report)
    f = found[0]
    assert "may give" in f.message and "cannot be ruled out outside the needs" in f.message
    assert f.severity is Severity.ERROR and not report.allowed  # fail closed
    assert f.evidence[0].condition == condition


def _root_creator_condition(
    condition: str | None, root: str = "gs://zt-pipeline-root/runs"
) -> list[object]:
    data = world_dict()
    for b in node(data, ROOT_BUCKET)["policy"]["bindings"]:
        if b["role"] == "roles/storage.objectCreator":
            if condition is None:
                b.pop("condition", None)
            else:
                b["condition"] = {"expression": condition, "title": "t"}
    return [
        f
        for f in run(data, pipeline_root=root).by_code("ZT215")
        if f.principal == TRAIN and "objectCreator" in f.message
    ]


@pytest.mark.parametrize(
    "condition",
    [
        "true",
        'resource.type == "storage.googleapis.com/Object"',
        f'resource.name.startsWith("{ROOT_OBJECTS}")',
        f'!resource.name.startsWith("{ROOT_OBJECTS}zt-probe")',
    ],
)
def test_a_bucket_grant_whose_condition_holds_outside_the_prefix_is_zt215(condition: str) -> None:
    found = _root_creator_condition(condition)
    assert len(found) == 1, found
    f = found[0]
    assert f.severity is Severity.WARNING and "gs://zt-pipeline-root/runs" in f.message
    assert "its condition also holds outside the needs" in f.message
    assert f.evidence[0].condition == condition


def test_a_prefix_condition_as_plan_writes_it_stays_scoped() -> None:
    # the root is a folder whether written gs://B/runs or gs://B/runs/ (red team in_19)
    for root in ("gs://zt-pipeline-root/runs", "gs://zt-pipeline-root/runs/"):
        assert (
            _root_creator_condition(f'resource.name.startsWith("{ROOT_OBJECTS}runs/")', root) == []
        )
        # a condition without the slash also grants runs-old/, another pipeline's root
        trap = _root_creator_condition(f'resource.name.startsWith("{ROOT_OBJECTS}runs")', root)
        assert len(trap) == 1 and "also holds outside" in trap[0].message  # type: ignore[attr-defined]
    # and an undecidable one says "may"
    may = _root_creator_condition('resource.name.endsWith(".json")')
    assert len(may) == 1 and "may give" in may[0].message  # type: ignore[attr-defined]


def test_unconditional_findings_are_unchanged() -> None:
    found = _zt214(ORG, None)
    assert len(found) == 1
    assert " gives serviceAccount:" in found[0].message  # type: ignore[attr-defined]
    assert found[0].evidence[0].condition == ""  # type: ignore[attr-defined]
    assert len(_root_creator_condition(None)) == 1


@pytest.mark.parametrize(
    ("condition", "broad"),
    [
        ("true", "projects/ml-prod/datasets/zt_probe_outside_the_needs"),
        # no trailing slash: analytics_old is granted too
        ('resource.name.startsWith("projects/ml-prod/datasets/analytics")', "analytics_zt_probe"),
        (
            'resource.name == "projects/ml-prod/datasets/analytics" '
            '|| resource.name.startsWith("projects/ml-prod/datasets/analytics/")',
            None,
        ),
    ],
)
def test_a_conditional_project_grant_for_a_dataset_need_is_probed_on_a_sibling_dataset(
    condition: str, broad: str | None
) -> None:
    from dataclasses import replace

    from test_check_codes import INGEST_STEP, TRAIN_STEP

    from zt_pipelines.model import Need
    from zt_pipelines.resources import normalize_resource

    dataset = Need(
        normalize_resource("bq://ml-prod.analytics"),
        ("bigquery.datasets.get", "bigquery.tables.getData"),
    )
    steps = (INGEST_STEP, replace(TRAIN_STEP, needs=(*TRAIN_STEP.needs, dataset)))
    data = grant(world_dict(), PROJECT, "roles/bigquery.dataViewer", TRAIN, condition)
    found = [f for f in run(data, steps=steps).by_code("ZT214") if f.principal == TRAIN]
    if broad is None:
        assert found == []
    else:
        assert len(found) == 1 and broad in found[0].message
        assert "bq://ml-prod.analytics" in found[0].message
