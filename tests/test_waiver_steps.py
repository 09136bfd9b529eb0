"""A step waiver covers the steps that were reviewed, never a step added to a finding later.

The review's case (in_04): waivers for the legacy uploader (`ZT211/212/214/216` and `ZT103`,
`step: evaluate-and-upload`) also silenced the same findings once `train` ran as the same
over-privileged identity: the finding's step became "evaluate-and-upload,train" and any
listed step matched; ZT103 named only its first user. Now a waiver matches a finding only when
every step the finding is about is listed in the waiver (`step: [a, b]` for the shared case),
and ZT103 is matched on all of its users (steps and the steps whose jobs use the identity).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from policy_worlds import ALICE, INGEST_SA, NOW, PIPELINE_SA, TRAIN_SA, world_dict

from zt_pipelines.errors import PolicyFileError
from zt_pipelines.model import Need, RewriteResult, StepIdentity
from zt_pipelines.policy.orgpolicy import OrgPolicy, Suppression, load_policy
from zt_pipelines.policy.report import Report
from zt_pipelines.resources import normalize_resource
from zt_pipelines.verification import check_rewritten

WHY = "legacy uploader keeps its grants until ML-1234 retires it"


def _step(task: str, sa: str, **fields: Any) -> StepIdentity:
    return StepIdentity(
        task=task,
        component=f"comp-{task}",
        executor=f"exec-{task}",
        service_account=sa,
        source="declared",
        needs=(Need(normalize_resource("gs://zt-raw-data"), ("storage.objects.get",)),),
        **fields,
    )


def _check(policy: Any, *steps: StepIdentity) -> Report:
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


def _waivers(codes: set[str], step: Any, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"code": c, "step": step, "justification": WHY, "expires": "2099-01-01", **extra}
        for c in sorted(codes)
    ]


def _about_both(report: Report) -> set[str]:
    return {f.code for f in report.findings if f.code == "ZT103" or "," in (f.step or "")}


@pytest.mark.parametrize("shared", [False, True])
def test_the_review_case_another_step_adopting_a_waived_identity(shared: bool) -> None:
    adopted = (_step("evaluate-and-upload", INGEST_SA), _step("train", INGEST_SA))
    extra: dict[str, Any] = {"identities": {"allowShared": True}} if shared else {}
    codes = _about_both(_check(OrgPolicy(allow_shared_identities=shared), *adopted))
    assert codes and (shared or "ZT103" in codes)
    # the waivers the platform team wrote for the legacy step alone
    single = {"suppressions": _waivers(codes, "evaluate-and-upload"), **extra}
    report = _check(single, *adopted)
    assert codes <= {f.code for f in report.findings}  # back, for "evaluate-and-upload,train"
    assert not any("train" in (s.finding.step or "") for s in report.suppressed)
    assert not report.allowed
    # reviewed for both: one waiver naming both steps covers it
    both = {"suppressions": _waivers(codes, ["train", "evaluate-and-upload"]), **extra}
    report = _check(both, *adopted)
    assert not codes & {f.code for f in report.findings if f.step}  # (pipeline-level ones stay)
    assert {s.finding.code for s in report.suppressed} == codes


def test_zt103_is_matched_on_every_user_not_the_first() -> None:
    """ZT103 is filed under its first user; a waiver for that step alone does not cover a
    later-sorting step (or a step's launched job) that adopts the identity."""
    steps = (_step("a-first", INGEST_SA), _step("b-later", INGEST_SA))
    report = _check({"suppressions": _waivers({"ZT103"}, "a-first")}, *steps)
    (finding,) = report.by_code("ZT103")
    assert finding.step == "a-first"
    report = _check({"suppressions": _waivers({"ZT103"}, ["a-first", "b-later"])}, *steps)
    assert not report.by_code("ZT103")
    # a step whose launched job runs as the identity is a user too
    job = _step("c-job", TRAIN_SA, launched_service_account=INGEST_SA, launched_identity_field="x")
    report = _check({"suppressions": _waivers({"ZT103"}, ["a-first", "b-later"])}, *steps, job)
    assert report.by_code("ZT103")
    three = _waivers({"ZT103"}, ["a-first", "b-later", "c-job"])
    assert not _check({"suppressions": three}, *steps, job).by_code("ZT103")


def test_a_waiver_listing_more_steps_still_covers_a_finding_about_fewer() -> None:
    steps = (_step("a-first", INGEST_SA), _step("b-later", INGEST_SA))
    policy = {"suppressions": _waivers({"ZT103"}, ["a-first", "b-later", "c-gone"])}
    assert not _check(policy, *steps).by_code("ZT103")


def test_a_hand_built_waiver_follows_the_same_rule() -> None:
    steps = (_step("a-first", INGEST_SA), _step("b-later", INGEST_SA))
    one = OrgPolicy(suppressions=(Suppression("ZT103", WHY, date(2099, 1, 1), step="a-first"),))
    assert _check(one, *steps).by_code("ZT103")


def test_step_lists_in_the_policy_file() -> None:
    loaded = load_policy({"suppressions": _waivers({"ZT103"}, ["b", "a", "b"])})
    assert loaded.suppressions[0].step == "a,b"
    with pytest.raises(PolicyFileError, match="list written as text") as info:
        load_policy({"suppressions": _waivers({"ZT103"}, "a,b")})
    assert info.value.where.endswith("suppressions[0].step")
    with pytest.raises(PolicyFileError, match="waives one step"):
        load_policy({"suppressions": _waivers({"ZT102"}, ["a", "b"], upstream="0" * 24)})
    for bad in ([], [""], [1], "", ["a", None]):
        with pytest.raises(PolicyFileError):
            load_policy({"suppressions": _waivers({"ZT103"}, bad)})
