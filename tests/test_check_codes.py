"""Every finding code, triggered and not triggered, with its evidence chain asserted.

The pipeline is built by hand as a RewriteResult (two steps, ingest -> train) and checked
against the clean test world and mutations of it, through the public check_rewritten().
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from policy_worlds import (
    ALICE,
    FEATURES,
    INGEST_SA,
    NOW,
    PIPELINE_SA,
    PROJECT,
    RAW,
    ROOT_BUCKET,
    TRAIN_SA,
    deny,
    grant,
    node,
    sa_node,
    v2_sa,
    world_dict,
)

from zt_pipelines.errors import PolicyFileError
from zt_pipelines.model import JobFields, Need, RewriteResult, StepIdentity
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES, OrgPolicy, Suppression
from zt_pipelines.policy.report import Report, Severity
from zt_pipelines.resources import normalize_resource
from zt_pipelines.verification import check_rewritten

TRAIN = f"serviceAccount:{TRAIN_SA}"
INGEST = f"serviceAccount:{INGEST_SA}"
PIPELINE = f"serviceAccount:{PIPELINE_SA}"

INGEST_STEP = StepIdentity(
    task="ingest",
    component="comp-ingest",
    executor="exec-ingest",
    service_account=INGEST_SA,
    source="manifest",
    needs=(
        Need(
            normalize_resource("gs://zt-raw-data"), ("storage.objects.get", "storage.objects.list")
        ),
        Need(normalize_resource("gs://zt-features"), ("storage.objects.create",)),
    ),
    image="us-docker.pkg.dev/ml-prod/images/ingest@sha256:" + "a" * 64,
)
TRAIN_STEP = StepIdentity(
    task="train",
    component="comp-train",
    executor="exec-train",
    service_account=TRAIN_SA,
    source="declared",
    needs=(
        Need(
            normalize_resource("gs://zt-features"), ("storage.objects.get", "storage.objects.list")
        ),
    ),
    image="us-docker.pkg.dev/ml-prod/images/train:latest",
)
STEPS = (INGEST_STEP, TRAIN_STEP)


def run(
    data: dict[str, Any] | None = None,
    *,
    steps: tuple[StepIdentity, ...] = STEPS,
    policy: dict[str, Any] | OrgPolicy | None = None,
    pipeline_sa: str = PIPELINE_SA,
    spec: dict[str, Any] | None = None,
    **kw: Any,
) -> Report:
    kw.setdefault("submitter", ALICE)
    kw.setdefault("pipeline_root", "gs://zt-pipeline-root/runs")
    return check_rewritten(
        RewriteResult(spec or {}, "demo", steps),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=pipeline_sa,
        snapshot=data if data is not None else world_dict(),
        policy=policy,
        now=NOW,
        **kw,
    )


def only(report: Report, code: str) -> Any:
    found = report.by_code(code)
    assert len(found) == 1, (code, found, str(report))
    return found[0]


def without_binding(data: dict[str, Any], name: str, role: str, member: str) -> dict[str, Any]:
    for b in node(data, name)["policy"]["bindings"]:
        if b["role"] == role and member in b["members"]:
            b["members"].remove(member)
    node(data, name)["policy"]["bindings"] = [
        b for b in node(data, name)["policy"]["bindings"] if b["members"]
    ]
    return data


def test_clean_world_is_allowed_with_only_excess_warnings() -> None:
    report = run()
    assert report.allowed, str(report)
    # excess permissions, and the pipeline root granted bucket-wide where runs/ would do
    assert report.codes() == {"ZT210", "ZT215"}
    assert all(f.severity is Severity.WARNING for f in report.findings)


# -- identities ------------------------------------------------------------------------------


def test_zt100_default_pipeline_identity() -> None:
    f = only(run(pipeline_sa="123456789012-compute@developer.gserviceaccount.com"), "ZT100")
    assert f.step is None and f.evidence[0].detail == "compute-default"


def test_zt100_default_step_identity() -> None:
    agent = "service-123456789012@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    report = run(steps=(INGEST_STEP, replace(TRAIN_STEP, service_account=agent)))
    f = only(report, "ZT100")
    assert f.step == "train" and f.principal == f"serviceAccount:{agent}"
    assert not report.allowed


def test_zt101_step_without_identity() -> None:
    report = run(steps=(INGEST_STEP, replace(TRAIN_STEP, service_account=None, source="pipeline")))
    f = only(report, "ZT101")
    assert f.step == "train" and f.principal == PIPELINE
    assert "ZT101" not in run().codes()


def test_zt102_identity_not_pinned() -> None:
    report = run(steps=(INGEST_STEP, replace(TRAIN_STEP, service_account=None, source="parameter")))
    assert only(report, "ZT102").step == "train"
    assert "ZT102" not in run().codes()


def test_zt103_shared_identity_and_pipeline_identity() -> None:
    shared = run(steps=(INGEST_STEP, replace(TRAIN_STEP, service_account=INGEST_SA)))
    f = only(shared, "ZT103")
    assert "ingest, train" in f.message and [e.detail for e in f.evidence] == [
        "used by ingest",
        "used by train",
    ]
    allowed = run(
        steps=(INGEST_STEP, replace(TRAIN_STEP, service_account=INGEST_SA)),
        policy={"identities": {"allowShared": True}},
    )
    assert "ZT103" not in allowed.codes()
    as_pipeline = run(steps=(INGEST_STEP, replace(TRAIN_STEP, service_account=PIPELINE_SA)))
    assert only(as_pipeline, "ZT103").message == "the step runs as the pipeline service account"
    assert "ZT103" not in run().codes()


def test_zt110_missing_and_disabled_identity() -> None:
    data = world_dict()
    data["serviceAccounts"] = [s for s in data["serviceAccounts"] if s["email"] != TRAIN_SA]
    f = only(run(data), "ZT110")
    assert f.step == "train" and "does not exist" in f.message
    assert f.evidence[0].kind == "missing"
    data = world_dict()
    data["serviceAccounts"][2]["disabled"] = True
    f = only(run(data), "ZT110")
    assert "disabled" in f.message and f.evidence[0].detail == "disabled"
    assert "ZT110" not in run().codes()


def test_zt111_user_managed_keys() -> None:
    data = world_dict()
    data["serviceAccounts"][1]["userManagedKeys"] = ["0123abcd"]
    f = only(run(data), "ZT111")
    assert f.step == "ingest" and f.evidence[0].detail == "key 0123abcd"
    assert "ZT111" not in run().codes()


# -- requirements ----------------------------------------------------------------------------


def test_zt200_declared_need_not_granted() -> None:
    data = without_binding(world_dict(), FEATURES, "roles/storage.objectViewer", TRAIN)
    report = run(data)
    found = {(f.step, f.permission, f.resource) for f in report.by_code("ZT200")}
    assert found == {
        ("train", "storage.objects.get", FEATURES),
        ("train", "storage.objects.list", FEATURES),
    }
    assert not report.allowed


def test_zt200_artifact_need_under_pipeline_root() -> None:
    data = without_binding(world_dict(), ROOT_BUCKET, "roles/storage.objectCreator", TRAIN)
    f = only(run(data), "ZT200")
    assert (f.step, f.permission) == ("train", "storage.objects.create")
    assert "pipeline-root artifacts" in f.message


def test_zt201_unknown_group_names_the_binding() -> None:
    data = without_binding(world_dict(), FEATURES, "roles/storage.objectViewer", TRAIN)
    grant(data, FEATURES, "roles/storage.objectViewer", "group:data-readers@example.com")
    report = run(data)
    got = report.by_code("ZT201")
    assert {f.permission for f in got} == {"storage.objects.get", "storage.objects.list"}
    ev = got[0].evidence[0]
    assert (ev.kind, ev.node, ev.role, ev.member) == (
        "binding",
        FEATURES,
        "roles/storage.objectViewer",
        "group:data-readers@example.com",
    )
    assert "ZT200" not in report.codes() and not report.allowed


def test_zt201_undecidable_condition() -> None:
    data = without_binding(world_dict(), FEATURES, "roles/storage.objectViewer", TRAIN)
    grant(data, FEATURES, "roles/storage.objectViewer", TRAIN, 'resource.matchTag("100/env", "ml")')
    f = report_f = run(data).by_code("ZT201")[0]
    assert f.evidence[0].condition == 'resource.matchTag("100/env", "ml")'
    assert "matchTag" in report_f.message


def test_zt202_denied_with_deny_rule_evidence() -> None:
    data = deny(world_dict(), PROJECT, [v2_sa(TRAIN_SA)], ["storage.googleapis.com/objects.list"])
    f = only(run(data), "ZT202")
    assert (f.step, f.permission) == ("train", "storage.objects.list")
    ev = f.evidence[0]
    assert (ev.kind, ev.deny_policy, ev.node) == ("deny", "deny-0", PROJECT)
    assert "ZT202" not in run().codes()


def test_zt300_submitter_cannot_act_as_or_create() -> None:
    report = run(submitter="user:bob@example.com")
    got = {(f.permission, f.resource) for f in report.by_code("ZT300")}
    assert got == {
        ("iam.serviceAccounts.actAs", sa_node(PIPELINE_SA)),
        ("aiplatform.pipelineJobs.create", PROJECT),
    }
    assert "ZT300" not in run().codes()
    assert "ZT300" not in run(submitter=None).codes()


def test_zt301_pipeline_cannot_act_as_step_identity() -> None:
    data = without_binding(
        world_dict(), sa_node(TRAIN_SA), "roles/iam.serviceAccountUser", PIPELINE
    )
    f = only(run(data), "ZT301")
    assert (f.step, f.principal, f.permission) == ("train", PIPELINE, "iam.serviceAccounts.actAs")
    assert f.resource == sa_node(TRAIN_SA)


def test_zt301_pipeline_cannot_create_custom_jobs() -> None:
    data = without_binding(world_dict(), PROJECT, "roles/aiplatform.user", PIPELINE)
    got = {f.permission for f in run(data).by_code("ZT301")}
    assert got == {
        "aiplatform.customJobs.create",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.cancel",
    }
    assert "ZT301" not in run().codes()


# -- excess privilege ------------------------------------------------------------------------


def test_zt210_excess_and_threshold() -> None:
    report = run()
    f = next(f for f in report.by_code("ZT210") if f.step == "train" and f.resource == FEATURES)
    assert "storage.folders.get" in f.message
    assert f.evidence[0].role == "roles/storage.objectViewer" and f.evidence[0].node == FEATURES
    assert "ZT210" not in run(policy={"excessThreshold": 5}).codes()


def test_zt210_grant_on_undeclared_resource() -> None:
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", TRAIN)
    f = next(f for f in run(data).by_code("ZT210") if f.resource == RAW and f.step == "train")
    assert "no step need covers" in f.message


def test_zt211_basic_role() -> None:
    data = grant(world_dict(), PROJECT, "roles/editor", TRAIN)
    report = run(data)
    f = only(report, "ZT211")
    assert (f.step, f.resource) == ("train", PROJECT)
    assert f.evidence[0].role == "roles/editor" and f.evidence[0].node == PROJECT
    assert not report.allowed
    assert "ZT211" not in run().codes()


def test_zt212_escalation_permission() -> None:
    data = grant(world_dict(), FEATURES, "roles/storage.admin", TRAIN)
    f = only(run(data), "ZT212")
    assert f.permission == "storage.buckets.setIamPolicy"
    assert f.evidence[0].role == "roles/storage.admin"
    assert "change who holds which role" in f.evidence[1].detail
    assert "ZT212" not in run().codes()


def test_zt212_not_raised_for_a_needed_escalation_permission() -> None:
    # the pipeline SA needs actAs on the step SAs: that is not excess
    assert not [f for f in run().by_code("ZT212") if f.principal == PIPELINE]


def test_zt213_public_declared_resource() -> None:
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", "allUsers")
    f = only(run(data), "ZT213")
    assert f.resource == RAW and f.evidence[0].member == "allUsers"
    assert "ZT213" not in run().codes()


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers"])
@pytest.mark.parametrize("role", ["roles/storage.objectViewer", "roles/storage.objectCreator"])
def test_zt213_a_public_pipeline_root_refuses_once(member: str, role: str) -> None:
    """Every step writes its artifacts to the root and later steps load them: a public reader
    sees them all, a public writer can replace a model. One finding, not one per step."""
    report = run(grant(world_dict(), ROOT_BUCKET, role, member))
    [f] = report.by_code("ZT213")
    assert f.evidence[0].member == member and f.evidence[0].node == ROOT_BUCKET
    assert not report.allowed


def test_zt213_a_public_project_above_the_launch_refuses() -> None:
    data = grant(world_dict(), PROJECT, "roles/viewer", "allAuthenticatedUsers")
    assert "ZT213" in run(data).codes()


# -- unreadable ------------------------------------------------------------------------------


def test_zt400_unreadable_policy_refuses() -> None:
    data = without_binding(world_dict(), FEATURES, "roles/storage.objectViewer", TRAIN)
    data["unreadable"] = [{"target": FEATURES, "what": "getIamPolicy", "reason": "UNAVAILABLE"}]
    report = run(data)
    f = only(report, "ZT400")
    assert f.resource == FEATURES and "UNAVAILABLE" in f.message
    assert {g.permission for g in report.by_code("ZT201")} == {
        "storage.objects.get",
        "storage.objects.list",
    }
    assert not report.allowed
    assert "ZT400" not in run().codes()


# -- organisation policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "kw", "steps", "needle"),
    [
        ({"regions": ["europe-west4"]}, {}, STEPS, "region us-central1"),
        ({"network": {"required": "projects/1/global/networks/vpc"}}, {}, STEPS, "network"),
        ({"network": {"requirePsc": True}}, {}, STEPS, "Private Service Connect"),
        ({"cmek": {"keyPattern": "projects/.+/cryptoKeys/.+"}}, {}, STEPS, "CMEK"),
        ({"images": {"allowedRegistries": ["europe-docker.pkg.dev/"]}}, {}, STEPS, "registry"),
        ({"images": {"requireDigest": True}}, {}, STEPS, "digest"),
        (
            {},
            {},
            (INGEST_STEP, replace(TRAIN_STEP, job=JobFields(enable_web_access=True))),
            "web access",
        ),
        ({}, {"submitter_credentials": "service_account_key"}, STEPS, "key file"),
        ({"submitters": {"allowed": ["serviceAccount:ci@*"]}}, {}, STEPS, "not an allowed"),
    ],
)
def test_zt500_rules(
    policy: dict[str, Any], kw: dict[str, Any], steps: tuple[StepIdentity, ...], needle: str
) -> None:
    report = run(policy=policy, steps=steps, **kw)
    assert any(needle in f.message for f in report.by_code("ZT500")), str(report)
    assert not report.allowed


def test_zt500_rules_satisfied() -> None:
    job = JobFields(
        network="projects/1/global/networks/vpc",
        encryption_spec_key_name="projects/p/locations/us/keyRings/k/cryptoKeys/c",
        psc_interface_config={"networkAttachment": "a"},
    )
    steps = tuple(replace(s, job=job) for s in STEPS)
    report = run(
        steps=steps,
        policy={
            "regions": ["us-central1"],
            "network": {"required": "projects/1/global/networks/vpc", "requirePsc": True},
            "cmek": {"keyPattern": "projects/.+/cryptoKeys/.+"},
            "images": {"allowedRegistries": ["us-docker.pkg.dev/ml-prod/"]},
            "submitters": {"allowed": ["user:*@example.com"]},
        },
        submitter_credentials="user",
    )
    assert "ZT500" not in report.codes(), str(report)


def test_suppression_active_and_expired() -> None:
    data = grant(world_dict(), PROJECT, "roles/editor", TRAIN)
    sup = {
        "code": "ZT211",
        "step": "train",
        "resource": "projects/ml-prod",
        "justification": "legacy training job, removal tracked in TICKET-1",
        "expires": "2026-12-31",
    }
    report = run(data, policy={"suppressions": [sup]})
    assert "ZT211" not in report.codes()
    assert report.suppressed[0].finding.code == "ZT211"
    assert report.suppressed[0].justification.startswith("legacy")
    expired = run(data, policy={"suppressions": [{**sup, "expires": "2026-11-24"}]})
    assert "ZT211" in expired.codes()
    f = only(expired, "ZT500")
    assert "expired on 2026-11-24" in f.message and f.step == "train"
    # the expiry day itself still counts
    assert (
        "ZT211"
        not in run(data, policy={"suppressions": [{**sup, "expires": "2026-11-25"}]}).codes()
    )


def test_severity_override() -> None:
    assert not run(policy={"severities": {"ZT210": "error"}}).allowed
    data = grant(world_dict(), PROJECT, "roles/editor", TRAIN)
    relaxed = {c: "warning" for c in ("ZT211", "ZT212", "ZT214", "ZT216")}
    assert run(data, policy={"severities": relaxed}).allowed


@pytest.mark.parametrize("code", ["ZT100", "ZT400"])
def test_default_identity_and_incomplete_verification_cannot_be_relaxed(code: str) -> None:
    for bad in (
        {"severities": {code: "note"}},
        {
            "suppressions": [
                {
                    "code": code,
                    "step": "train",
                    "justification": "we know what we are doing",
                    "expires": "2099-01-01",
                }
            ]
        },
    ):
        with pytest.raises(PolicyFileError, match=f"{code} cannot be"):
            run(policy=bad)
    # a hand-built policy object cannot relax them either
    relaxed = OrgPolicy(
        severities={**DEFAULT_SEVERITIES, code: Severity.NOTE},
        suppressions=(Suppression(code, "hand-built bypass", date(2099, 1, 1), step="train"),),
    )
    agent = "service-123456789012@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    data = world_dict()
    data["unreadable"] = [{"target": FEATURES, "what": "getIamPolicy", "reason": "UNAVAILABLE"}]
    report = run(
        data, steps=(INGEST_STEP, replace(TRAIN_STEP, service_account=agent)), policy=relaxed
    )
    assert only(report, code).severity is Severity.ERROR and not report.allowed
    assert not report.suppressed or all(s.finding.code != code for s in report.suppressed)


def test_no_pipeline_root_is_an_error_not_a_guess() -> None:
    # aiplatform would create a bucket named at submit time: nothing about it can be verified
    data = without_binding(world_dict(), ROOT_BUCKET, "roles/storage.objectCreator", TRAIN)
    report = run(data, pipeline_root=None)
    assert "ZT200" not in report.codes()  # no artifact needs on a bucket nobody named
    [finding] = report.by_code("ZT419")
    assert finding.severity.value == "error" and not report.allowed
    assert "vertex-pipelines" in finding.message and "<random>" in finding.message
    assert "ZT419" not in run(data).codes()
    # an organisation that accepts it says so in its policy
    relaxed = run(data, pipeline_root=None, policy={"version": 1, "severities": {"ZT419": "note"}})
    assert "ZT419" not in {f.code for f in relaxed.errors}


def _root_parent(parent: str | None) -> dict[str, Any]:
    data = world_dict()
    root = node(data, ROOT_BUCKET)
    if parent is None:
        root.pop("parent", None)
    else:
        root["parent"] = parent
    return data


def test_a_pipeline_root_in_another_projects_bucket_is_zt404() -> None:
    # red team in_27: check refused nothing while the drop-in's submit() refused the bucket
    assert "ZT404" not in run().codes()
    foreign = run(_root_parent("//cloudresourcemanager.googleapis.com/projects/other-proj"))
    finding = only(foreign, "ZT404")
    assert finding.severity.value == "error" and not foreign.allowed
    assert finding.resource == ROOT_BUCKET
    assert "belongs to project other-proj, not to ml-prod" in finding.message
    assert "gs://zt-pipeline-root/runs" in finding.message
    # the template's defaultPipelineRoot is judged the same way
    spec = {"defaultPipelineRoot": "gs://zt-pipeline-root/runs"}
    assert (
        "ZT404"
        in run(
            _root_parent("//cloudresourcemanager.googleapis.com/projects/other-proj"),
            spec=spec,
            pipeline_root=None,
        ).codes()
    )


@pytest.mark.parametrize(
    ("parent", "why"),
    [
        (None, "the bucket's project is unknown"),
        (
            "//cloudresourcemanager.googleapis.com/projects/999999999999",
            "belongs to project number 999999999999, not to ml-prod",
        ),
        ("//cloudresourcemanager.googleapis.com/folders/7", "not a project"),
    ],
    ids=["no-parent", "unknown-number", "folder"],
)
def test_a_pipeline_root_whose_project_is_not_proven_is_zt404(parent: str | None, why: str) -> None:
    assert why in only(run(_root_parent(parent)), "ZT404").message


def test_a_pipeline_root_bucket_absent_from_the_snapshot_is_zt404() -> None:
    data = world_dict()
    data["nodes"] = [n for n in data["nodes"] if n["name"] != ROOT_BUCKET]
    assert "is not in the snapshot" in only(run(data), "ZT404").message


def test_a_pipeline_root_named_by_its_projects_number_is_the_projects() -> None:
    own = "//cloudresourcemanager.googleapis.com/projects/123456789012"
    assert "ZT404" not in run(_root_parent(own)).codes()


def test_zt404_cannot_be_relaxed() -> None:
    data = _root_parent("//cloudresourcemanager.googleapis.com/projects/other-proj")
    with pytest.raises(PolicyFileError):
        run(data, policy={"version": 1, "severities": {"ZT404": "note"}})
    lenient = OrgPolicy(severities={"ZT404": Severity.NOTE})
    assert "ZT404" in {f.code for f in run(data, policy=lenient).errors}


def test_template_default_pipeline_root_is_checked_when_none_is_given() -> None:
    # as a run and provisioning would: the template's defaultPipelineRoot holds the artifacts
    data = without_binding(world_dict(), ROOT_BUCKET, "roles/storage.objectCreator", TRAIN)
    spec = {"defaultPipelineRoot": "gs://zt-pipeline-root/runs"}
    report = run(data, spec=spec, pipeline_root=None)
    assert {(f.code, f.principal) for f in report.by_code("ZT200")} == {("ZT200", TRAIN)}
    assert all(f.resource == ROOT_BUCKET for f in report.by_code("ZT200"))
    assert report.codes() == run(data).codes()


def test_granted_requirements_are_explained() -> None:
    report = run()
    g = next(
        g
        for g in report.granted
        if g.step == "train"
        and g.permission == "storage.objects.get"
        and g.resource == "gs://zt-features"
    )
    assert g.evidence[0].role == "roles/storage.objectViewer" and g.evidence[0].node == FEATURES
    assert (
        "train: serviceAccount:train-sa@ml-prod.iam.gserviceaccount.com has storage.objects.get "
        "on gs://zt-features — granted by roles/storage.objectViewer on "
        "//storage.googleapis.com/zt-features"
    ) in report.explain()
    assert len(report.to_dict()["granted"]) == len(report.granted) > 0


def test_inherited_grant_is_marked() -> None:
    data = grant(world_dict(), PROJECT, "roles/storage.objectViewer", TRAIN)
    data = without_binding(data, FEATURES, "roles/storage.objectViewer", TRAIN)
    g = next(g for g in run(data).granted if g.step == "train" and g.resource == "gs://zt-features")
    assert g.evidence[0].node == PROJECT and g.evidence[0].detail.endswith("inherited")


def test_unknown_submitter_is_noted() -> None:
    assert any("submitter unknown" in n for n in run(submitter=None).notes)
    assert not any("submitter unknown" in n for n in run().notes)


def test_zt102_unescaped_payload_inputs() -> None:
    steps = (INGEST_STEP, replace(TRAIN_STEP, unescaped_payload_inputs=("query",)))
    f = only(run(steps=steps), "ZT102")
    assert f.step == "train" and "'query'" in f.message
    assert f.evidence[0].detail == "input 'query' not proven safe"
