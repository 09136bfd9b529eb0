"""The audit record says where a wrapped step's code is pointed (``code_project`` /
``code_location``: its own ``project`` / ``location`` inputs, what ZT122 judged), next to where
its job runs; drift reads them back. Records of steps without them are unchanged."""

from datetime import datetime, timezone
from pathlib import Path

from zt_pipelines.audit import AuditLog, Decision, identities_from
from zt_pipelines.job import PipelineJob
from zt_pipelines.model import StepIdentity
from zt_pipelines.monitor.drift import approved_identities

WORLD = Path(__file__).resolve().parent.parent / "examples" / "world.yaml"
PIPE = "pipeline-sa@zt-demo.iam.gserviceaccount.com"
T = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _step(**place: str) -> StepIdentity:
    return StepIdentity(
        task="read",
        component="comp-read",
        executor="exec-read",
        service_account="read@zt-demo.iam.gserviceaccount.com",
        source="derived",
        job_kind="CustomJob",
        **place,  # type: ignore[arg-type]
    )


def _body(step: StepIdentity) -> dict[str, object]:
    decision = Decision(
        action="verify",
        outcome="allowed",
        submitter="user:alice@example.com",
        project="zt-demo",
        location="us-central1",
        pipeline="p",
        identities=identities_from(PIPE, [step]),
    )
    return decision.to_body(T)


def test_a_steps_code_place_is_recorded_with_its_job_and_read_back_by_drift() -> None:
    body = _body(_step(code_project="data-lake", code_location="europe-west4"))
    (job,) = [i["job"] for i in body["identities"] if i["task"] == "read"]  # type: ignore[attr-defined, index]
    assert job["code_project"] == "data-lake" and job["code_location"] == "europe-west4"
    assert job["project"] == "" and job["location"] == ""  # the job runs in the pipeline's place
    _, steps, _ = approved_identities(body)
    assert (steps[0].code_project, steps[0].code_location) == ("data-lake", "europe-west4")


def test_a_record_without_a_code_place_is_unchanged() -> None:
    body = _body(_step(job_project="zt-demo", job_location="us-central1"))
    (job,) = [i["job"] for i in body["identities"] if i["task"] == "read"]  # type: ignore[attr-defined, index]
    assert job == {
        "kind": "CustomJob",
        "wrapped": False,
        "project": "zt-demo",
        "location": "us-central1",
    }


def test_the_drop_in_records_where_a_wrapped_steps_code_is_pointed(tmp_path: Path) -> None:
    """Through the drop-in's own decision (offline verify against the example world)."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def reader(project: str, location: str) -> str:
        return project + location

    @dsl.pipeline(name="plain-place", pipeline_root="gs://zt-demo-pipeline-root/runs")
    def plain_place(project: str = "data-lake", location: str = "europe-west4"):  # type: ignore[no-untyped-def]
        reader(project=project, location=location)

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(plain_place, str(path))
    audit = AuditLog(tmp_path / "audit.jsonl")
    job = PipelineJob(
        display_name="place",
        template_path=str(path),
        project="zt-demo",
        location="us-central1",
        snapshot=str(WORLD),
        audit_log=audit,
    )
    report = job.verify(service_account=PIPE)
    assert any(f.code == "ZT122" for f in report.findings)  # what the recorded place explains
    (record,) = audit.records()
    (step,) = [i for i in record["identities"] if i["role"] == "step"]
    assert step["job"]["code_project"] == "data-lake"
    assert step["job"]["code_location"] == "europe-west4"
