"""derive_requirements(): declared plus implicit needs; needed_nodes(): the fetch plan input."""

from __future__ import annotations

from dataclasses import replace

from policy_worlds import INGEST_SA, PIPELINE_SA, PROJECT, TRAIN_SA, sa_node
from test_check_codes import STEPS, TRAIN_STEP

from zt_pipelines.model import RewriteResult
from zt_pipelines.policy.requirements import derive_requirements, needed_nodes

ROOT = "//storage.googleapis.com/zt-pipeline-root"


def reqs(**kw: object) -> set[tuple[str, str, str | None, str, str | None, str]]:
    args: dict[str, object] = {
        "project": "ml-prod",
        "location": "us-central1",
        "pipeline_service_account": PIPELINE_SA,
        "pipeline_root": "gs://zt-pipeline-root/runs",
        "submitter": "alice@example.com",
    }
    args.update(kw)
    steps = args.pop("steps", STEPS)
    out = derive_requirements(RewriteResult({}, "demo", steps), **args)  # type: ignore[arg-type]
    return {
        (r.principal, r.resource.name, r.resource.prefix, r.permission, r.step, r.kind) for r in out
    }


def test_declared_and_implicit_needs() -> None:
    got = reqs()
    train, pipe = f"serviceAccount:{TRAIN_SA}", f"serviceAccount:{PIPELINE_SA}"
    # declared
    assert (
        train,
        "//storage.googleapis.com/zt-features",
        None,
        "storage.objects.get",
        "train",
        "declared",
    ) in got
    # artifacts under the pipeline root, per step
    for perm in ("storage.objects.get", "storage.objects.create"):
        # the root is a folder: runs/ (never runs-prod/, another pipeline's root)
        assert (train, ROOT, "runs/", perm, "train", "artifacts") in got
        assert (pipe, ROOT, "runs/", perm, None, "orchestration") in got
    assert (pipe, ROOT, None, "storage.buckets.get", None, "orchestration") in got
    assert (pipe, PROJECT, None, "aiplatform.metadataStores.get", None, "orchestration") in got
    for perm in ("create", "get", "cancel"):
        assert (pipe, PROJECT, None, f"aiplatform.customJobs.{perm}", None, "launch") in got
    for sa, task in ((TRAIN_SA, "train"), (INGEST_SA, "ingest")):
        assert (pipe, sa_node(sa), None, "iam.serviceAccounts.actAs", task, "launch") in got
    # the submitter (a bare email is a user)
    alice = "user:alice@example.com"
    assert (alice, sa_node(PIPELINE_SA), None, "iam.serviceAccounts.actAs", None, "submit") in got
    assert (alice, PROJECT, None, "aiplatform.pipelineJobs.create", None, "submit") in got


def test_optional_parts() -> None:
    got = reqs(pipeline_root=None, submitter=None)
    assert not any(r[5] in ("artifacts", "submit") for r in got)
    assert not any(r[1] == ROOT for r in got)


def test_step_without_identity_needs_go_to_the_pipeline_sa() -> None:
    steps = (replace(TRAIN_STEP, service_account=None, source="pipeline"),)
    got = reqs(steps=steps)
    pipe = f"serviceAccount:{PIPELINE_SA}"
    assert (
        pipe,
        "//storage.googleapis.com/zt-features",
        None,
        "storage.objects.get",
        "train",
        "declared",
    ) in got
    assert not any(r[3] == "iam.serviceAccounts.actAs" and r[5] == "launch" for r in got)


def test_needed_nodes() -> None:
    out = derive_requirements(
        RewriteResult({}, "demo", STEPS),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://zt-pipeline-root/runs",
        submitter="user:alice@example.com",
    )
    nodes = needed_nodes(out, steps=STEPS, pipeline_service_account=PIPELINE_SA)
    assert ROOT in nodes.resources and PROJECT in nodes.resources
    assert sa_node(TRAIN_SA) in nodes.resources
    assert set(nodes.service_accounts) == {PIPELINE_SA, TRAIN_SA, INGEST_SA}
    assert f"serviceAccount:{TRAIN_SA}" in nodes.principals
    assert "user:alice@example.com" not in nodes.principals  # submitters: no binding search
    assert nodes.projects == ("ml-prod",)
