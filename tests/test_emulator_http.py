# no "from __future__ import annotations": kfp reads the component annotations at runtime
"""The emulator's HTTP half against the REAL clients: google-cloud-storage, google-cloud-bigquery
and aiplatform.PipelineJob (submit, run) over the Vertex AI REST transport."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.cloud import bigquery, storage
from test_emulator_world import (
    ADMIN,
    NO_ACT_AS,
    PIPELINE_SA,
    PROJECT_NUMBER,
    STEP_SA,
    SUBMITTER,
    restored_aiplatform_config,
    vertex_init,
    world,
)

from zt_pipelines.emulator import Emulator, emulator_credentials


@pytest.fixture()
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(world()) as running:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{running.address}")
        yield running


def gcs(member: str = ADMIN) -> storage.Client:
    return storage.Client(project="proj-alpha", credentials=emulator_credentials(member))


# -- Storage -------------------------------------------------------------------------------------


def test_bucket_metadata_carries_the_project_number(emu: Emulator) -> None:
    bucket = gcs().get_bucket("zt-root-bucket")
    assert str(bucket.project_number) == PROJECT_NUMBER
    assert not gcs().bucket("no-such-bucket").exists()


def test_bucket_iam_policy_round_trip_and_stale_etag(emu: Emulator) -> None:
    bucket = gcs().bucket("zt-root-bucket")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    assert {(b["role"], tuple(b["members"])) for b in policy.bindings} == {
        ("roles/storage.objectViewer", (f"serviceAccount:{PIPELINE_SA}",))
    }
    policy.bindings.append(
        {"role": "roles/storage.objectCreator", "members": {f"serviceAccount:{STEP_SA}"}}
    )
    bucket.set_iam_policy(policy)
    with pytest.raises(gexc.PreconditionFailed):
        bucket.set_iam_policy(policy)  # same etag again: someone else already wrote
    node = emu.state.nodes["//storage.googleapis.com/zt-root-bucket"]
    assert node.policy is not None
    assert {b.role for b in node.policy.bindings} == {
        "roles/storage.objectViewer",
        "roles/storage.objectCreator",
    }
    assert [r.method for r in emu.writes()] == ["storage.buckets.setIamPolicy"] * 2


def test_conditional_bucket_policy_needs_version_3(emu: Emulator) -> None:
    bucket = gcs().bucket("zt-root-bucket")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.version = 3
    policy.bindings.append(
        {
            "role": "roles/storage.objectViewer",
            "members": {f"serviceAccount:{STEP_SA}"},
            "condition": {"title": "runs", "expression": "resource.name.startsWith('r')"},
        }
    )
    bucket.set_iam_policy(policy)
    with pytest.raises(gexc.BadRequest):
        bucket.get_iam_policy()  # version 1: Cloud Storage refuses to hide the condition
    again = bucket.get_iam_policy(requested_policy_version=3)
    assert again.version == 3
    again.version = 1
    with pytest.raises(gexc.BadRequest):
        bucket.set_iam_policy(again)


@pytest.mark.parametrize(
    "expression", ["1 ? true : true", 'true || "x"', "resource.name.startsWith(", '"x"']
)
def test_a_condition_that_is_not_boolean_cel_is_refused_as_iam_does(
    emu: Emulator, expression: str
) -> None:
    """IAM refuses a policy whose condition does not parse or type-check: nothing is stored."""
    bucket = gcs().bucket("zt-root-bucket")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.version = 3
    policy.bindings.append(
        {
            "role": "roles/storage.objectViewer",
            "members": {f"serviceAccount:{STEP_SA}"},
            "condition": {"title": "bad", "expression": expression},
        }
    )
    with pytest.raises(gexc.BadRequest, match=r"roles/storage\.objectViewer"):
        bucket.set_iam_policy(policy)
    stored = bucket.get_iam_policy(requested_policy_version=3)
    assert all(expression != (b.get("condition") or {}).get("expression") for b in stored.bindings)


def test_bucket_create_and_objects(emu: Emulator) -> None:
    client = gcs()
    created = client.create_bucket("zt-new-bucket", project="proj-alpha")
    assert str(created.project_number) == PROJECT_NUMBER
    assert emu.state.nodes["//storage.googleapis.com/zt-new-bucket"].parent == (
        "//cloudresourcemanager.googleapis.com/projects/proj-alpha"
    )
    blob = created.blob("dir/one.txt")
    blob.upload_from_string(b"hello", content_type="text/plain")
    assert created.blob("dir/one.txt").download_as_bytes() == b"hello"
    assert [b.name for b in client.list_blobs("zt-new-bucket", prefix="dir/")] == ["dir/one.txt"]
    assert emu.objects[("zt-new-bucket", "dir/one.txt")] == b"hello"
    assert {r.method for r in emu.writes()} == {"storage.buckets.insert", "storage.objects.insert"}


def test_storage_refuses_callers_without_permission(emu: Emulator) -> None:
    with pytest.raises(gexc.Forbidden):
        gcs(NO_ACT_AS).bucket("zt-root-bucket").get_iam_policy()
    assert emu.request_log[-1].status == "PERMISSION_DENIED"


def test_chunked_request_bodies_are_read(emu: Emulator) -> None:
    import requests

    bucket = gcs().bucket("zt-root-bucket")
    etag = bucket.get_iam_policy(retry=None).etag
    body = json.dumps({"etag": etag, "bindings": [{"role": "roles/viewer", "members": [ADMIN]}]})
    reply = requests.put(
        f"http://{emu.address}/storage/v1/b/zt-root-bucket/iam",
        data=(part.encode() for part in (body[:10], body[10:])),  # a generator: sent chunked
        headers={"Authorization": "Bearer " + emulator_credentials(ADMIN).token},
        timeout=5,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["bindings"] == [{"role": "roles/viewer", "members": [ADMIN]}]


def test_storage_without_token_is_401(emu: Emulator) -> None:
    import requests

    reply = requests.get(f"http://{emu.address}/storage/v1/b/zt-root-bucket", timeout=5)
    assert reply.status_code == 401
    assert reply.json()["error"]["status"] == "UNAUTHENTICATED"


# -- BigQuery ------------------------------------------------------------------------------------


def bq(emu: Emulator, member: str = ADMIN) -> bigquery.Client:
    return bigquery.Client(
        project="proj-alpha",
        credentials=emulator_credentials(member),
        client_options=ClientOptions(api_endpoint=f"http://{emu.address}"),
    )


def test_bigquery_dataset_access_and_table_policy(emu: Emulator) -> None:
    client = bq(emu)
    dataset = client.get_dataset("proj-alpha.features")
    entries = [(e.role, e.entity_type, e.entity_id) for e in dataset.access_entries]
    assert entries == [("roles/bigquery.dataViewer", "userByEmail", STEP_SA)]
    table = "proj-alpha.features.rows"
    policy = client.get_iam_policy(table)
    assert policy.bindings == []
    policy.bindings = [
        {"role": "roles/bigquery.dataViewer", "members": {f"serviceAccount:{STEP_SA}"}}
    ]
    updated = client.set_iam_policy(table, policy)
    assert updated.etag != policy.etag
    with pytest.raises(gexc.Conflict):
        client.set_iam_policy(table, policy)
    with pytest.raises(gexc.NotFound):
        client.get_dataset("proj-alpha.missing")


def test_bigquery_dataset_access_update_with_etag(emu: Emulator) -> None:
    client = bq(emu)
    dataset = client.get_dataset("proj-alpha.features")
    entries = list(dataset.access_entries)
    entries.append(bigquery.AccessEntry("READER", "userByEmail", PIPELINE_SA))
    entries.append(
        bigquery.AccessEntry(
            None, "view", {"projectId": "proj-alpha", "datasetId": "v", "tableId": "t"}
        )
    )
    dataset.access_entries = entries
    updated = client.update_dataset(dataset, ["access_entries"], retry=None)
    node = emu.state.nodes["//bigquery.googleapis.com/projects/proj-alpha/datasets/features"]
    assert node.policy is not None
    assert {(b.role, m) for b in node.policy.bindings for m in b.members} == {
        ("roles/bigquery.dataViewer", f"serviceAccount:{STEP_SA}"),
        ("roles/bigquery.dataViewer", f"serviceAccount:{PIPELINE_SA}"),
    }
    assert any(e.entity_type == "view" for e in updated.access_entries)
    dataset.access_entries = entries[:1]  # the old etag: someone else wrote in between
    with pytest.raises(gexc.PreconditionFailed):
        client.update_dataset(dataset, ["access_entries"], retry=None)
    assert [r.method for r in emu.writes()] == ["bigquery.datasets.update"] * 2


def test_storage_test_iam_permissions_answers_for_the_caller(emu: Emulator) -> None:
    asked = ["storage.buckets.get", "storage.objects.list", "storage.buckets.setIamPolicy"]
    held = gcs(SUBMITTER).bucket("zt-root-bucket").test_iam_permissions(asked)
    assert held == ["storage.buckets.get", "storage.objects.list"]


# -- Vertex AI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def hello(text: str) -> str:
        return text

    @dsl.pipeline(name="hello-emulator")
    def pipeline(text: str = "hi") -> None:
        hello(text=text)

    path = tmp_path_factory.mktemp("tpl") / "hello.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


@pytest.fixture(autouse=True)
def _fresh_aiplatform_config() -> Iterator[None]:
    yield from restored_aiplatform_config()


def test_real_pipeline_job_submit_and_run(emu: Emulator, template: Path) -> None:
    from google.cloud import aiplatform

    vertex_init(emu, SUBMITTER)
    # a pipeline root in a bucket that does not exist yet: aiplatform creates it and grants the
    # run-as SA on it (the existing-bucket path asks Resource Manager at its default endpoint)
    job = aiplatform.PipelineJob(
        display_name="hello",
        template_path=str(template),
        pipeline_root="gs://zt-fresh-root/runs",
        parameter_values={"text": "zero trust"},
        enable_caching=False,
    )
    job.run(service_account=PIPELINE_SA, sync=True)
    assert job.state == aiplatform.gapic.PipelineState.PIPELINE_STATE_SUCCEEDED
    (name, sent), *_ = emu.pipeline_jobs.items()
    assert name.startswith(f"projects/{PROJECT_NUMBER}/locations/us-central1/pipelineJobs/hello-")
    assert sent["serviceAccount"] == PIPELINE_SA
    assert sent["runtimeConfig"]["gcsOutputDirectory"] == "gs://zt-fresh-root/runs"
    assert sent["runtimeConfig"]["parameterValues"] == {"text": "zero trust"}
    assert sent["pipelineSpec"]["pipelineInfo"]["name"] == "hello-emulator"
    counts = emu.counts()
    assert counts["aiplatform.pipelineJobs.create"] == 1
    assert counts["aiplatform.pipelineJobs.get"] >= 1
    listed = aiplatform.PipelineJob.list()
    assert [j.resource_name for j in listed] == [name]


def test_pipeline_job_needs_act_as_on_the_run_as_sa(emu: Emulator, template: Path) -> None:
    from google.cloud import aiplatform

    vertex_init(emu, NO_ACT_AS)
    job = aiplatform.PipelineJob(
        display_name="hello", template_path=str(template), pipeline_root="gs://zt-root-bucket/r"
    )
    emu.clear_log()
    with pytest.raises(gexc.Forbidden, match=r"iam\.serviceAccounts\.actAs"):
        job.submit(service_account=PIPELINE_SA)
    assert emu.pipeline_jobs == {}
    refused = [r for r in emu.request_log if r.method == "aiplatform.pipelineJobs.create"]
    assert [(r.caller, r.status) for r in refused] == [(NO_ACT_AS, "PERMISSION_DENIED")]


def test_custom_jobs_and_schedules(emu: Emulator) -> None:
    import requests

    base = f"http://{emu.address}/v1/projects/proj-alpha/locations/us-central1"
    auth = {"Authorization": "Bearer " + emulator_credentials(SUBMITTER).token}
    spec = {
        "displayName": "step",
        "jobSpec": {
            "serviceAccount": PIPELINE_SA,
            "workerPoolSpecs": [{"containerSpec": {"imageUri": "python:3.11"}}],
        },
    }
    created = requests.post(f"{base}/customJobs", json=spec, headers=auth, timeout=5).json()
    assert created["state"] == "JOB_STATE_PENDING"
    job_id = created["name"].rsplit("/", 1)[1]
    got = requests.get(f"{base}/customJobs/{job_id}", headers=auth, timeout=5).json()
    assert got["state"] == "JOB_STATE_SUCCEEDED"
    spec["jobSpec"]["serviceAccount"] = STEP_SA  # type: ignore[index]
    refused = requests.post(f"{base}/customJobs", json=spec, headers=auth, timeout=5)
    assert refused.status_code == 403 and refused.json()["error"]["status"] == "PERMISSION_DENIED"
    schedule = {
        "displayName": "nightly",
        "cron": "0 3 * * *",
        "createPipelineJobRequest": {"pipelineJob": {"serviceAccount": PIPELINE_SA}},
    }
    made = requests.post(f"{base}/schedules", json=schedule, headers=auth, timeout=5)
    assert made.status_code == 200 and made.json()["state"] == "ACTIVE"
    assert list(emu.schedules) == [made.json()["name"]]


def test_a_group_cannot_be_a_caller(emu: Emulator) -> None:
    # groups hold grants but never credentials: a token naming one is no authentication
    import requests

    reply = requests.get(
        f"http://{emu.address}/storage/v1/b/zt-root-bucket",
        headers={"Authorization": "Bearer zt-emulator:group:ml-admins@example.com"},
        timeout=5,
    )
    assert reply.status_code == 401
