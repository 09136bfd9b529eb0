"""Implicit needs of GCPC steps, serving identities and where launched jobs run.

Steps are built as the rewrite describes them (``StepIdentity.job_kind`` and friends), so each
rule is tested on its own; tests/test_gcpc_e2e.py drives the same rules through a real
rewrite, provisioning and the emulator.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from zt_pipelines.errors import TemplateError
from zt_pipelines.model import Need, RewriteResult, StepIdentity
from zt_pipelines.policy.orgpolicy import load_policy
from zt_pipelines.policy.requirements import Requirement, derive_requirements
from zt_pipelines.policy.snapshot import ServiceAccount, Snapshot
from zt_pipelines.provision.requirements import wants_for
from zt_pipelines.resources import ResourceRef
from zt_pipelines.spec.gcpc import CATALOGUE, by_name
from zt_pipelines.verification import check_rewritten

P = "ml-prod"
L = "us-central1"
PIPE = f"pipeline@{P}.iam.gserviceaccount.com"
STEP = f"step-sa@{P}.iam.gserviceaccount.com"
SERVING = f"serving@{P}.iam.gserviceaccount.com"
PROJECT = "//cloudresourcemanager.googleapis.com/projects/"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def sa_node(email: str) -> str:
    return f"//iam.googleapis.com/projects/{P}/serviceAccounts/{email}"


def gcpc_step(kind: str, **fields: Any) -> StepIdentity:
    entry = by_name(kind)
    base = StepIdentity(
        task="t",
        component="comp-t",
        executor="exec-t",
        service_account=STEP,
        source="declared",
        job_kind=kind,
        wrapped_launcher=entry.wrap,
        launched_service_account=None if entry.wrap else STEP,
    )
    return replace(base, **fields)


def reqs(*steps: StepIdentity) -> set[tuple[str, str, str, str]]:
    result = RewriteResult(spec={}, pipeline_name="p", steps=steps)
    return {
        (r.principal, r.resource.name, r.permission, r.kind)
        for r in derive_requirements(
            result,
            project=P,
            location=L,
            pipeline_service_account=PIPE,
            pipeline_root=None,
            submitter=None,
        )
    }


def m(email: str) -> str:
    return f"serviceAccount:{email}"


def test_a_wrapped_bigquery_step_needs_jobs_create_as_itself() -> None:
    got = reqs(gcpc_step("BigqueryQueryJob"))
    assert (m(STEP), PROJECT + P, "bigquery.jobs.create", "job") in got
    # the pipeline launches the wrapper CustomJob and may act as the step
    assert (m(PIPE), PROJECT + P, "aiplatform.customJobs.create", "launch") in got
    assert (m(PIPE), sa_node(STEP), "iam.serviceAccounts.actAs", "launch") in got
    assert not any(p == "bigquery.jobs.create" and who == m(PIPE) for who, _, p, _ in got)


def test_a_job_in_another_project_is_needed_there() -> None:
    got = reqs(gcpc_step("BigqueryQueryJob", job_project="data-lake"))
    assert (m(STEP), PROJECT + "data-lake", "bigquery.jobs.create", "job") in got
    assert (m(STEP), PROJECT + P, "bigquery.jobs.create", "job") not in got


@pytest.mark.parametrize(
    ("kind", "create"),
    [
        ("HyperparameterTuningJob", "aiplatform.hyperparameterTuningJobs.create"),
        ("BatchPredictionJob", "aiplatform.batchPredictionJobs.create"),
        ("DataflowFlexTemplateJob", "dataflow.jobs.create"),
        ("DataprocPySparkBatch", "dataproc.batches.create"),
        ("CustomJob", "aiplatform.customJobs.create"),
    ],
)
def test_an_unwrapped_launcher_runs_as_the_pipeline_and_acts_as_the_job(
    kind: str, create: str
) -> None:
    got = reqs(gcpc_step(kind))
    assert (m(PIPE), PROJECT + P, create, "launch") in got
    assert (m(PIPE), sa_node(STEP), "iam.serviceAccounts.actAs", "launch") in got
    assert not any(who == m(STEP) and p == create for who, _, p, _ in got)
    for permission in by_name(kind).job_permissions:  # the worker identity's own needs
        assert (m(STEP), PROJECT + P, permission, "job") in got


def test_a_wrapped_dataflow_python_job_acts_as_its_worker() -> None:
    worker = f"worker-sa@{P}.iam.gserviceaccount.com"
    got = reqs(gcpc_step("DataflowPythonJob", launched_service_account=worker))
    assert (m(STEP), PROJECT + P, "dataflow.jobs.create", "job") in got
    assert (m(STEP), sa_node(worker), "iam.serviceAccounts.actAs", "job") in got
    assert (m(worker), PROJECT + P, "dataflow.workItems.lease", "job") in got
    # the same identity as step and worker still needs actAs on itself (Dataflow asks)
    got = reqs(gcpc_step("DataflowPythonJob", launched_service_account=STEP))
    assert (m(STEP), sa_node(STEP), "iam.serviceAccounts.actAs", "job") in got


def test_a_deploy_step_needs_deploy_and_act_as_on_the_serving_identity() -> None:
    got = reqs(gcpc_step("DeployModel", serving_service_account=SERVING))
    assert (m(STEP), PROJECT + P, "aiplatform.endpoints.deploy", "job") in got
    assert (m(STEP), sa_node(SERVING), "iam.serviceAccounts.actAs", "job") in got
    # an empty serving identity adds no actAs: it is refused itself (ZT100)
    empty = reqs(gcpc_step("DeployModel", serving_service_account=""))
    assert not any(p == "iam.serviceAccounts.actAs" and who == m(STEP) for who, _, p, _ in empty)


def test_every_supported_kind_derives_its_caller_permissions() -> None:
    for kind in CATALOGUE:
        if not kind.supported:
            continue
        got = reqs(gcpc_step(kind.name, serving_service_account=SERVING))
        caller = m(STEP) if kind.wrap else m(PIPE)
        for permission in kind.caller_permissions:
            assert (caller, PROJECT + P, permission, "job" if kind.wrap else "launch") in got


def test_an_unknown_kind_is_refused_not_ignored() -> None:
    step = replace(gcpc_step("BigqueryQueryJob"), job_kind="BigqueryTimeTravelJob")
    with pytest.raises(TemplateError, match="BigqueryTimeTravelJob"):
        reqs(step)


def test_provisioning_grants_implicit_needs_to_the_step_not_the_pipeline() -> None:
    result = RewriteResult(
        spec={},
        pipeline_name="p",
        steps=(gcpc_step("DeployModel", serving_service_account=SERVING),),
    )
    wants = wants_for(result, project=P, location=L, pipeline_service_account=PIPE)
    deploy = [w for w in wants if "aiplatform.endpoints.deploy" in w.permissions]
    assert [(w.member, w.step, w.declared) for w in deploy] == [(m(STEP), "t", False)]
    act_as = [w for w in wants if w.resource == ResourceRef(sa_node(SERVING))]
    assert [(w.member, w.step) for w in act_as] == [(m(STEP), "t")]


# -- findings --------------------------------------------------------------------------------


def world(*emails: str) -> Snapshot:
    return Snapshot(service_accounts={e: ServiceAccount(e, P) for e in emails})


def findings(
    snapshot: Snapshot, *steps: StepIdentity, policy: Any = None
) -> list[tuple[str, str | None, str]]:
    report = check_rewritten(
        RewriteResult(spec={}, pipeline_name="p", steps=steps),
        project=P,
        location=L,
        pipeline_service_account=PIPE,
        snapshot=snapshot,
        policy=policy,
        now=NOW,
    )
    return [(f.code, f.step, f.message) for f in report.findings]


def codes(snapshot: Snapshot, *steps: StepIdentity, policy: Any = None) -> set[str]:
    return {c for c, _, _ in findings(snapshot, *steps, policy=policy)}


def test_an_empty_serving_identity_is_a_default_identity() -> None:
    found = findings(world(PIPE, STEP), gcpc_step("DeployModel", serving_service_account=""))
    zt100 = [msg for code, step, msg in found if code == "ZT100" and step == "t"]
    assert zt100 and "Vertex AI service agent" in zt100[0]
    agent = "service-123456789012@gcp-sa-aiplatform.iam.gserviceaccount.com"
    assert "ZT100" in codes(
        world(PIPE, STEP), gcpc_step("DeployModel", serving_service_account=agent)
    )


def test_a_serving_identity_shared_with_a_step_or_missing_is_reported() -> None:
    shared = gcpc_step("DeployModel", serving_service_account=STEP)
    assert "ZT123" in codes(world(PIPE, STEP), shared)
    own = gcpc_step("DeployModel", serving_service_account=SERVING)
    assert "ZT123" not in codes(world(PIPE, STEP, SERVING), own)
    missing = [c for c, _, msg in findings(world(PIPE, STEP), own) if "serving identity" in msg]
    assert missing == ["ZT110"]


def test_a_job_outside_the_pipelines_project_or_region_must_be_declared() -> None:
    elsewhere = gcpc_step("BigqueryQueryJob", job_project="data-lake")
    assert "ZT122" in codes(world(PIPE, STEP), elsewhere)
    declared = replace(
        elsewhere,
        needs=(Need(ResourceRef(PROJECT + "data-lake"), ("bigquery.jobs.create",)),),
    )
    assert "ZT122" not in codes(world(PIPE, STEP), declared)
    region = gcpc_step("CustomJob", job_location="europe-west4")
    assert "ZT122" in codes(world(PIPE, STEP), region)
    allowed = load_policy({"regions": [L, "europe-west4"]})
    assert "ZT122" not in codes(world(PIPE, STEP), region, policy=allowed)
    # BigQuery's location is a dataset location (US, EU), not a Vertex region
    assert "ZT122" not in codes(world(PIPE, STEP), gcpc_step("BigqueryQueryJob", job_location="US"))


def test_the_policy_file_judges_a_launched_jobs_cmek_key() -> None:
    policy = load_policy({"cmek": {"keyPattern": "projects/kms-prod/.*"}})
    good = "projects/kms-prod/locations/us/keyRings/r/cryptoKeys/k"
    bad = gcpc_step(
        "BigqueryQueryJob", job_kms_key="projects/x/locations/us/keyRings/r/cryptoKeys/k"
    )
    messages = [
        msg for c, _, msg in findings(world(PIPE, STEP), bad, policy=policy) if c == "ZT500"
    ]
    assert any("BigqueryQueryJob job's CMEK key" in msg for msg in messages)
    ok = gcpc_step("BigqueryQueryJob", job_kms_key=good)
    messages = [msg for c, _, msg in findings(world(PIPE, STEP), ok, policy=policy) if c == "ZT500"]
    assert not any("job's CMEK key" in msg for msg in messages)


def test_requirements_are_typed_and_sorted() -> None:
    result = RewriteResult(spec={}, pipeline_name="p", steps=(gcpc_step("UploadModel"),))
    out = derive_requirements(
        result,
        project=P,
        location=L,
        pipeline_service_account=PIPE,
        pipeline_root=None,
        submitter=None,
    )
    assert all(isinstance(r, Requirement) for r in out)
    upload = [r for r in out if r.permission == "aiplatform.models.upload"]
    assert [(r.principal, r.code) for r in upload] == [(m(STEP), "ZT200")]


def test_live_mode_reads_the_launched_and_serving_identities() -> None:
    from zt_pipelines.policy.requirements import needed_nodes

    worker = f"worker-sa@{P}.iam.gserviceaccount.com"
    steps = (
        gcpc_step("DeployModel", serving_service_account=SERVING),
        replace(gcpc_step("DataflowPythonJob", launched_service_account=worker), task="df"),
    )
    needs = needed_nodes((), steps=steps, pipeline_service_account=PIPE)
    assert {SERVING, worker, STEP, PIPE} <= set(needs.service_accounts)


def test_a_launched_identity_of_its_own_is_checked_like_a_step_identity() -> None:
    worker = f"worker-sa@{P}.iam.gserviceaccount.com"
    step = gcpc_step("DataflowPythonJob", launched_service_account=worker)
    missing = [c for c, _, msg in findings(world(PIPE, STEP), step) if worker in msg]
    assert "ZT110" in missing
    keyed = Snapshot(
        service_accounts={
            PIPE: ServiceAccount(PIPE, P),
            STEP: ServiceAccount(STEP, P),
            worker: ServiceAccount(worker, P, user_managed_keys=("k1",)),
        }
    )
    assert "ZT111" in {c for c, _, msg in findings(keyed, step) if worker in msg}
