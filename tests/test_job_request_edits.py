"""An edit of aiplatform's resource after construction never reaches Vertex unverified: not
through ``clone()`` (which copies runtime config, labels and encryption spec from
``_gca_resource``), and not through a schedule built from the job (whose request is edited
before ``create()``). Against the emulator with the real clients."""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from google.protobuf import struct_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_world import LOCATION, PROJECT, SUBMITTER, monitor_world

import zt_pipelines as zt
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.errors import StateChangedError, TemplateError
from zt_pipelines.job import PipelineJob

pytest.importorskip("google_cloud_pipeline_components")
from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
from kfp import compiler, dsl

PIPELINE_SA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
INJECTED = '", "service_account": "evil@' + PROJECT + ".iam.gserviceaccount.com"
SAFE_TB = f"projects/{PROJECT}/locations/{LOCATION}/tensorboards/1"
POLICY = {"severities": {"ZT210": "warning", "ZT212": "warning", "ZT216": "warning"}}


@dsl.pipeline(name="edit-tb", pipeline_root="gs://zt-demo-pipeline-root/edits")
def edit_tb(tb: str = SAFE_TB):  # type: ignore[no-untyped-def]
    train = CustomTrainingJobOp(
        display_name="t",
        worker_pool_specs=[
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {"image_uri": "python:3.11"},
            }
        ],
        tensorboard=tb,
    )
    zt.step.on(train, f"train-sa@{PROJECT}.iam.gserviceaccount.com")


@pytest.fixture()
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(monitor_world()) as emulator:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.address}")
        config = initializer.global_config
        saved = dict(vars(config))
        config.__init__()  # type: ignore[misc]
        aiplatform.init(project=PROJECT, location=LOCATION, service_account=PIPELINE_SA)
        try:
            yield emulator
        finally:
            vars(config).clear()
            vars(config).update(saved)


def _job(tmp_path: Path, job_id: str) -> PipelineJob:
    path = tmp_path / "edit.yaml"
    compiler.Compiler().compile(edit_tb, str(path))
    return PipelineJob(
        display_name="edit-tb",
        template_path=str(path),
        job_id=job_id,
        parameter_values={"tb": SAFE_TB},
        credentials=emulator_credentials(SUBMITTER),
        policy=POLICY,
        audit_log=tmp_path / "audit.jsonl",
    )


def _edit_value(resource: Any) -> None:
    resource.runtime_config.parameter_values["tb"] = struct_pb2.Value(string_value=INJECTED)


def _edit_label(resource: Any) -> None:
    resource.labels["zt-spec-sha256"] = "forged"


def _edit_root(resource: Any) -> None:
    resource.runtime_config.gcs_output_directory = 'gs://zt-demo-pipeline-root/x"}'


EDITS: dict[str, Callable[[Any], None]] = {
    "parameter value": _edit_value,
    "label": _edit_label,
    "pipeline root": _edit_root,
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_clone_sends_the_request_captured_at_construction(
    emu: Emulator, tmp_path: Path, edit: str
) -> None:
    job = _job(tmp_path, "orig-1")
    EDITS[edit](job._gca_resource)  # after construction: never verified
    cloned = job.clone(job_id="clone-1")
    cloned.submit(service_account=PIPELINE_SA)
    assert cloned.last_report.allowed, str(cloned.last_report)
    sent = aiplatform.PipelineJob.get(
        cloned.resource_name, credentials=emulator_credentials(SUBMITTER)
    )._gca_resource
    assert sent.runtime_config.parameter_values["tb"] == SAFE_TB
    assert sent.labels.get("zt-spec-sha256") != "forged"
    assert sent.runtime_config.gcs_output_directory.startswith("gs://zt-demo-pipeline-root/edits")


def test_a_clone_with_new_values_is_verified_with_them(emu: Emulator, tmp_path: Path) -> None:
    job = _job(tmp_path, "orig-2")
    cloned = job.clone(job_id="clone-2", parameter_values={"tb": INJECTED})
    with pytest.raises(TemplateError, match="change the job's structure"):  # judged, not sent
        cloned.submit(service_account=PIPELINE_SA)
    assert not [r for r in emu.writes() if r.method.endswith("pipelineJobs.create")]


@pytest.mark.parametrize("edit", [*EDITS, "spec", "network", "psc"])
def test_a_schedule_whose_request_was_edited_is_refused(
    emu: Emulator, tmp_path: Path, edit: str
) -> None:
    job = _job(tmp_path, "sched-1")
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name="nightly", credentials=job.credentials
    )
    request = schedule._gca_resource.create_pipeline_job_request.pipeline_job
    if edit == "spec":
        request.pipeline_spec["pipelineInfo"] = {"name": "other"}
    elif edit == "network":
        request.network = f"projects/{PROJECT}/global/networks/other"
    elif edit == "psc":
        request.psc_interface_config.network_attachment = (
            f"projects/{PROJECT}/regions/{LOCATION}/networkAttachments/other"
        )
    else:
        EDITS[edit](request)
    with pytest.raises(StateChangedError, match=r"not the approved one|was not approved"):
        schedule.create(cron="0 1 * * *", service_account=PIPELINE_SA)
    assert not [r for r in emu.writes() if r.method.endswith("schedules.create")]


def test_an_unedited_schedule_is_created(emu: Emulator, tmp_path: Path) -> None:
    job = _job(tmp_path, "sched-2")
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name="nightly", credentials=job.credentials
    )
    schedule.create(cron="0 1 * * *", service_account=PIPELINE_SA)
    got = aiplatform.PipelineJobSchedule.get(
        schedule.resource_name, credentials=emulator_credentials(SUBMITTER)
    )._gca_resource.create_pipeline_job_request.pipeline_job
    assert got.runtime_config.parameter_values["tb"] == SAFE_TB
    assert got.service_account == PIPELINE_SA


@pytest.mark.parametrize("edit", ["parent", "api client"])
def test_a_submit_whose_create_target_was_edited_is_refused(
    emu: Emulator, tmp_path: Path, edit: str
) -> None:
    """aiplatform creates under ``job._parent`` with ``job.api_client``: the approval's place
    and the client built at construction, or nothing is sent."""
    job = _job(tmp_path, f"target-{edit.replace(' ', '-')}")
    if edit == "parent":
        job._parent = f"projects/other-proj/locations/{LOCATION}"
    else:
        job.api_client = aiplatform.PipelineJob._instantiate_client(  # another client
            location=LOCATION, credentials=job.credentials
        )
    with pytest.raises(StateChangedError, match=r"parent|API client"):
        job.submit(service_account=PIPELINE_SA)
    assert not [r for r in emu.writes() if r.method.endswith("pipelineJobs.create")]


def test_a_schedule_whose_api_client_was_replaced_is_refused(emu: Emulator, tmp_path: Path) -> None:
    job = _job(tmp_path, "sched-client")
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name="nightly", credentials=job.credentials
    )
    schedule.api_client = aiplatform.PipelineJobSchedule._instantiate_client(
        location=LOCATION, credentials=emulator_credentials("user:mallory@example.com")
    )
    with pytest.raises(StateChangedError, match="API client"):
        schedule.create(cron="0 1 * * *", service_account=PIPELINE_SA)
    assert not [r for r in emu.writes() if r.method.endswith("schedules.create")]


@pytest.mark.parametrize("code", ["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"])
def test_a_create_vertex_does_not_confirm_is_typed_and_voids_its_approval(
    emu: Emulator, tmp_path: Path, code: str
) -> None:
    from zt_pipelines.emulator import Fault
    from zt_pipelines.errors import ApiError
    from zt_pipelines.monitor.service import read_approvals

    job = _job(tmp_path, f"lost-{code.lower().replace('_', '-')}")
    emu.add_fault(Fault(method="*pipelineJobs.create", code=code, times=1))
    with pytest.raises(ApiError, match="creating the pipeline job failed") as info:
        job.submit(service_account=PIPELINE_SA)  # a typed error, not the client's traceback
    assert info.value.where.endswith(f"/pipelineJobs/{job.job_id}")
    records = job._audit_log().records()
    assert [(r["action"], r["outcome"]) for r in records[-2:]] == [
        ("submit", "allowed"),
        ("send-failed", "refused"),
    ]
    # a job that shows up later with this id is not the approved run: no approval holds it
    approvals, problem = read_approvals(job._audit_log())
    assert not problem
    assert not [r for r in approvals if r["outcome"] == "allowed" and r["job_id"] == job.job_id]
