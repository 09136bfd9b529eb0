"""ZT102 — a run-time value pasted where it could rewrite a job's payload, down to its identity —
cannot be lowered by a severity, in a file or in a hand-built policy; it can only be waived step
by step, by a suppression naming the step and the upstream digest of what feeds it (justified,
expiring, listed in the report; tests/test_waiver_upstream.py holds the upstream cases). The
review's case: `severities: {ZT102: warning}` turned the refusal into an allow for every step.

Known values that stay text inside a payload string (lists of numbers: ``[]``, ``[0.1, 0.5]``)
are proven inert and need no waiver at all.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest
from policy_worlds import ALICE, INGEST_SA, NOW, PIPELINE_SA, TRAIN_SA, world_dict

from zt_pipelines.errors import PolicyFileError
from zt_pipelines.model import RewriteResult, StepIdentity
from zt_pipelines.policy.orgpolicy import OrgPolicy, Suppression, load_policy
from zt_pipelines.policy.report import Report, Severity
from zt_pipelines.spec.jobs import inert_json, payload_slot_verdicts
from zt_pipelines.spec.payload import parse_payload
from zt_pipelines.verification import check_rewritten

TRAIN = StepIdentity(
    task="train",
    component="comp-train",
    executor="exec-train",
    service_account=TRAIN_SA,
    source="declared",
    unescaped_payload_inputs=("tensorboard",),
    payload_input_origins=(("tensorboard", "the output 'Output' of task 'pick'"),),
    upstream_digest="a" * 24,
)
INGEST = StepIdentity(
    task="ingest",
    component="comp-ingest",
    executor="exec-ingest",
    service_account=INGEST_SA,
    source="declared",
    unescaped_payload_inputs=("query",),
    upstream_digest="b" * 24,
)
UPSTREAM = {"train": "a" * 24, "ingest": "b" * 24}


def _check(policy: Any, steps: tuple[StepIdentity, ...] = (TRAIN, INGEST)) -> Report:
    return check_rewritten(
        RewriteResult({}, "demo", steps),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=world_dict(),
        policy=policy,
        now=NOW,
        submitter=ALICE,
        pipeline_root="gs://zt-pipeline-root/runs",
    )


def _waiver(**fields: Any) -> dict[str, Any]:
    """A ZT102 waiver; one naming a step names that step's upstream unless told otherwise."""
    upstream = {"upstream": UPSTREAM[fields["step"]]} if fields.get("step") in UPSTREAM else {}
    return {
        "code": "ZT102",
        "justification": "tensorboard comes from our own trusted step",
        "expires": "2099-01-01",
        **upstream,
        **fields,
    }


@pytest.mark.parametrize("level", ["warning", "note"])
def test_the_review_case_a_severity_cannot_lower_zt102(level: str) -> None:
    with pytest.raises(PolicyFileError, match="ZT102 cannot be relaxed") as info:
        load_policy({"severities": {"ZT102": level}})
    assert "severities.ZT102" in info.value.where


def test_the_same_in_pyproject_form(tmp_path: Any) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.zt-pipelines.severities]\nZT102 = "warning"\n')
    with pytest.raises(PolicyFileError, match="ZT102 cannot be relaxed"):
        load_policy(path)


@pytest.mark.parametrize(
    "scope",
    [
        {"principal": f"serviceAccount:{TRAIN_SA}"},
        {"resource": "gs://zt-features"},
        {"permission": "storage.objects.get"},
    ],
)
def test_a_zt102_suppression_must_name_its_step(scope: dict[str, str]) -> None:
    with pytest.raises(PolicyFileError, match="must name the step"):
        load_policy({"suppressions": [_waiver(**scope)]})


def test_a_hand_built_policy_cannot_lower_or_blanket_waive_zt102() -> None:
    relaxed = OrgPolicy(severities={"ZT102": Severity.WARNING})
    assert relaxed.severity("ZT102") is Severity.ERROR
    report = _check(relaxed)
    assert {f.severity for f in report.by_code("ZT102")} == {Severity.ERROR}
    blanket = OrgPolicy(
        suppressions=(
            Suppression("ZT102", "a waiver for everything here", date(2099, 1, 1), principal=None),
            Suppression(
                "ZT102",
                "a waiver by identity, not by step",
                date(2099, 1, 1),
                principal=f"serviceAccount:{TRAIN_SA}",
            ),
        )
    )
    report = _check(blanket)
    assert {f.step for f in report.by_code("ZT102")} == {"train", "ingest"}
    assert not report.allowed


def test_a_step_waiver_covers_that_step_only() -> None:
    report = _check(load_policy({"suppressions": [_waiver(step="train")]}))
    assert [f.step for f in report.by_code("ZT102")] == ["ingest"]  # still refused
    assert not report.allowed
    (waived,) = [s for s in report.suppressed if s.finding.code == "ZT102"]
    assert waived.finding.step == "train" and "tensorboard" in waived.finding.message
    assert "task 'pick'" in waived.finding.message and "a" * 24 in waived.finding.message


def test_a_step_waiver_covers_that_step_fed_as_reviewed_only() -> None:
    """The step's name with another upstream (the step's pasted values now come from
    elsewhere) matches nothing, and the finding says what changed."""
    report = _check(load_policy({"suppressions": [_waiver(step="train", upstream="c" * 24)]}))
    (finding,) = [f for f in report.by_code("ZT102") if f.step == "train"]
    assert f"was for upstream {'c' * 24}, it is now {'a' * 24}" in finding.message
    assert not report.allowed and not report.suppressed


def test_an_untraced_step_and_a_hand_built_waiver_without_upstream_never_match() -> None:
    untraced = StepIdentity(
        task="train",
        component="comp-train",
        executor="exec-train",
        service_account=TRAIN_SA,
        source="declared",
        unescaped_payload_inputs=("tensorboard",),
    )
    report = _check(load_policy({"suppressions": [_waiver(step="train")]}), (untraced,))
    assert [f.step for f in report.by_code("ZT102")] == ["train"]
    assert "cannot be waived" in report.by_code("ZT102")[0].message
    bare = OrgPolicy(
        suppressions=(
            Suppression("ZT102", "reviewed, no upstream", date(2099, 1, 1), step="train"),
        )
    )
    assert [f.step for f in _check(bare, (TRAIN,)).by_code("ZT102")] == ["train"]


def test_an_expired_step_waiver_refuses_again() -> None:
    report = _check(
        load_policy({"suppressions": [_waiver(step="train", expires="2020-01-01")]}), (TRAIN,)
    )
    assert [f.step for f in report.by_code("ZT102")] == ["train"]
    assert report.by_code("ZT500")


def test_every_waived_step_is_listed_on_its_own() -> None:
    policy = load_policy({"suppressions": [_waiver(step="train"), _waiver(step="ingest")]})
    report = _check(policy)
    assert not report.by_code("ZT102")
    assert sorted(s.finding.step or "" for s in report.suppressed) == ["ingest", "train"]


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        ([], "safe"),
        ([0.1, 0.5, 0.9], "safe"),
        ([[1, 2], [True, None]], "safe"),
        (["a"], "unsafe"),
        ([1, "2"], "unsafe"),
        ({}, "unsafe"),
        ({"a": 1}, "unsafe"),
    ],
)
def test_a_list_of_numbers_stays_text_inside_a_payload_string(value: Any, verdict: str) -> None:
    parsed = parse_payload(
        '{"args": ["--quantiles", "{{$.inputs.parameters[\'q\']}}"]}', lambda n: True
    )
    bindings = {"q": {"runtimeValue": {"constant": value}}}
    (found,) = payload_slot_verdicts(parsed, bindings, {}, {})
    assert found.verdict == verdict
    assert inert_json(value) is (verdict == "safe")


def test_a_waiver_never_covers_a_step_whose_name_lists_it() -> None:
    """A finding's step is matched exactly: a (hand-built) step named "train,evil" does not
    borrow the waiver for "train" (task names are refused in that form when a template loads;
    tests/test_rewrite_errors.py)."""
    evil = StepIdentity(
        task="train,evil",
        component="comp-evil",
        executor="exec-evil",
        service_account=INGEST_SA,
        source="declared",
        unescaped_payload_inputs=("tensorboard",),
    )
    waiver = _waiver(step="train", upstream="a" * 24)
    evil = dataclasses.replace(evil, upstream_digest="a" * 24)  # even fed the same way
    report = _check(load_policy({"suppressions": [waiver]}), (TRAIN, evil))
    assert [f.step for f in report.by_code("ZT102")] == ["train,evil"]
    assert not report.allowed
