"""Usage from Cloud Audit Logs, end to end: runs submitted through zt_pipelines.PipelineJob,
the emulator's simulated steps logging what they did, read back with the real Cloud Logging
client (entries.list, server-side filter, paginated) and the project's auditConfigs."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from monitor_world import (
    AUDITOR,
    EXAMPLES,
    LOCATION,
    PIPELINE_SA,
    PROJECT,
    SUBMITTER,
    monitor_world,
    new_job_id,
)

from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.emulator.run_details import RunScript
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.job import PipelineJob
from zt_pipelines.monitor.service import usage

INGEST_SA = f"ingest-sa@{PROJECT}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{PROJECT}.iam.gserviceaccount.com"
RAW = "//storage.googleapis.com/zt-demo-raw-data"
LOGS_ON = {"allServices": ("DATA_READ", "DATA_WRITE")}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("tpl") / "training.yaml"
    return str(EXAMPLES.compile_pipeline("training", str(out)))


@pytest.fixture()
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(monitor_world(), simulate_runs=True) as emulator:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.address}")
        config = initializer.global_config
        saved = dict(vars(config))
        config.__init__()  # type: ignore[misc]
        aiplatform.init(project=PROJECT, location=LOCATION)
        try:
            yield emulator
        finally:
            vars(config).clear()
            vars(config).update(saved)


@pytest.fixture()
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


def run_pipeline(template: str, audit: AuditLog) -> PipelineJob:
    job = PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(SUBMITTER),
        audit_log=audit,
    )
    job.submit(service_account=PIPELINE_SA)
    job.wait()  # the simulated run ends on the first read: its steps' accesses are logged
    return job


def check(audit: AuditLog, **kw: Any) -> Any:
    kw.setdefault("factory", ClientFactory(emulator_credentials(AUDITOR)))
    kw.setdefault("retry", no_wait_policy(2))
    return usage(PROJECT, audit_log=audit, **kw)


def test_runs_within_their_declared_needs_are_clean(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    verdict = check(audit)
    assert verdict.clean, [f.message for f in verdict.report.findings]
    assert not verdict.report.by_code("ZT630")
    assert verdict.proposal["ingest"]["needs"] == {
        "gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]
    }
    assert audit.records()[-1]["action"] == "usage"
    # the report says which projects' logs were read
    assert any(
        f"Cloud Audit Logs of 1 project compared: {PROJECT}" in n for n in verdict.report.notes
    )


def test_an_unused_declared_permission_is_reported_with_a_tighter_proposal(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    emu.script_run(RunScript(task="ingest", omit=("storage.objects.list",)))
    run_pipeline(template, audit)
    verdict = check(audit)
    [unused] = verdict.report.by_code("ZT630")
    assert unused.step == "ingest" and unused.permission == "storage.objects.list"
    assert verdict.proposal["ingest"]["needs"] == {"gs://zt-demo-raw-data": ["storage.objects.get"]}


def test_an_undeclared_access_is_an_error_with_the_log_entry_as_evidence(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    secret = "//storage.googleapis.com/zt-demo-restricted/secret.csv"
    emu.script_run(RunScript(task="train", accesses=(("storage.objects.get", secret),)))
    run_pipeline(template, audit)
    verdict = check(audit)
    assert not verdict.clean
    [anomaly] = verdict.report.by_code("ZT631")
    assert anomaly.step == "train" and anomaly.permission == "storage.objects.get"
    assert "zt-demo-restricted" in (anomaly.resource or "")
    assert anomaly.evidence and "insertId=" in anomaly.evidence[0].detail


def test_a_use_outside_every_run_is_possible_credential_misuse(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    emu.log_access(INGEST_SA, "storage.objects.get", RAW + "/rows.csv", at=at, project=PROJECT)
    verdict = check(audit)
    [misuse] = verdict.report.by_code("ZT632")
    assert INGEST_SA in (misuse.principal or "")
    assert not verdict.clean


def test_data_access_logs_off_is_said_and_nothing_is_called_unused(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    run_pipeline(template, audit)  # no auditConfigs: Data Access logs are off
    verdict = check(audit)
    off = verdict.report.by_code("ZT633")
    assert any("storage.googleapis.com" in f.message for f in off)
    assert not verdict.report.by_code("ZT630")


@pytest.mark.parametrize(
    "fault",
    [
        Fault("google.logging.v2.LoggingServiceV2/ListLogEntries", code="UNAVAILABLE"),
        Fault("google.logging.v2.LoggingServiceV2/ListLogEntries", code="PERMISSION_DENIED"),
        Fault("google.logging.v2.LoggingServiceV2/ListLogEntries", malformed=True),
        Fault("google.logging.v2.LoggingServiceV2/ListLogEntries", reset=True),
        Fault("*Projects/GetIamPolicy", code="UNAVAILABLE"),
        Fault("aiplatform.pipelineJobs.get", code="UNAVAILABLE"),
    ],
    ids=lambda f: f"{f.method}-{f.code or 'malformed'}",
)
def test_a_failed_read_is_never_clean(
    emu: Emulator, template: str, audit: AuditLog, fault: Fault
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    emu.add_fault(fault)
    verdict = check(audit)
    assert not verdict.clean
    assert "ZT634" in verdict.report.codes()


def test_usage_reads_pages_with_a_server_side_filter(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    emu.clear_log()
    verdict = check(audit, factory=None, credentials=emulator_credentials(AUDITOR))
    assert verdict.clean
    calls = [r for r in emu.request_log if r.method.endswith("ListLogEntries")]
    assert len(calls) == 1  # one page: the filter left only the steps' entries


def test_usage_cli(
    emu: Emulator,
    template: str,
    audit: AuditLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    emu.script_run(RunScript(task="ingest", omit=("storage.objects.list",)))
    run_pipeline(template, audit)
    monkeypatch.setenv("ZT_EMULATOR_CALLER", AUDITOR)
    proposal = tmp_path / "tighter.yaml"
    with pytest.raises(SystemExit) as done:
        main(
            [
                "usage",
                "--project",
                PROJECT,
                "--audit-log",
                str(audit.path),
                "--proposal",
                str(proposal),
            ]
        )
    assert done.value.code == 0  # an unused permission is a warning
    manifest = yaml.safe_load(proposal.read_text())
    assert manifest["steps"]["ingest"]["needs"] == {
        "gs://zt-demo-raw-data": ["storage.objects.get"]
    }


def test_the_emulator_refuses_a_filter_it_does_not_understand(emu: Emulator) -> None:
    from google.api_core import exceptions
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

    client = ClientFactory(emulator_credentials(AUDITOR))._gapic(LoggingServiceV2Client)
    with pytest.raises(exceptions.InvalidArgument):
        list(
            client.list_log_entries(
                request={"resource_names": [f"projects/{PROJECT}"], "filter": "severity>=ERROR"}
            )
        )


def test_an_access_iam_refused_during_a_run_is_a_warning(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    [ingest] = [s for s in emu.step_runs if s.task == "ingest"]
    during = ingest.start + (ingest.end - ingest.start) / 2
    emu.log_access(
        INGEST_SA,
        "storage.objects.delete",
        RAW + "/rows.csv",
        at=during,
        project=PROJECT,
        granted=False,
    )
    verdict = check(audit)
    [refused] = verdict.report.by_code("ZT635")
    assert refused.step == "ingest" and refused.permission == "storage.objects.delete"
    assert not verdict.report.by_code("ZT631")  # refused: nothing happened, not an anomaly


def schedule_pipeline(template: str, audit: AuditLog) -> str:
    job = PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(SUBMITTER),
        audit_log=audit,
    )
    schedule = job.create_schedule(
        cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA
    )
    return str(schedule.resource_name)


def test_runs_a_schedule_started_are_usage_windows(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    schedule = schedule_pipeline(template, audit)
    fired = [emu.run_schedule(schedule) for _ in range(2)]
    emu.clear_log()
    verdict = check(audit)
    # the steps' accesses during the scheduled runs are inside approved windows: no ZT632
    assert verdict.clean, [f.message for f in verdict.report.findings]
    assert not verdict.report.by_code("ZT632")
    assert verdict.proposal["ingest"]["needs"] == {
        "gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]
    }
    assert emu.counts().get("aiplatform.pipelineJobs.get") == len(fired)
    # an access outside both runs is still outside every approved run
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    emu.log_access(INGEST_SA, "storage.objects.get", RAW + "/rows.csv", at=at, project=PROJECT)
    assert check(audit).report.by_code("ZT632")


def test_a_schedule_list_that_fails_is_never_clean(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    schedule = schedule_pipeline(template, audit)
    emu.run_schedule(schedule)
    for method in ("aiplatform.schedules.list", "aiplatform.pipelineJobs.list"):
        emu.clear_faults()
        emu.add_fault(Fault(method, code="PERMISSION_DENIED"))
        verdict = check(audit)
        assert not verdict.clean
        assert any("schedule" in f.message for f in verdict.report.by_code("ZT634")), method


def test_the_compiled_matching_decides_as_covers() -> None:
    """evaluate_usage's hot loop (needs compiled by permission) against covers(), need by need."""
    from itertools import product

    from zt_pipelines.model import Need
    from zt_pipelines.monitor.usage import Access, StepWindow, covers, evaluate_usage
    from zt_pipelines.resources import ResourceRef

    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    end = start + datetime.timedelta(hours=1)
    needs = [
        Need(ResourceRef("//storage.googleapis.com/raw", None), ("storage.objects.get",)),
        Need(ResourceRef("//storage.googleapis.com/pre", "2026/"), ("storage.objects.list",)),
        Need(ResourceRef("//storage.googleapis.com/pre", "2026/"), ("storage.objects.get",)),
        Need(ResourceRef("//bigquery.googleapis.com/projects/p/datasets/d", None), ("x.y.z",)),
    ]
    resources = [
        "projects/_/buckets/raw",
        "projects/_/buckets/raw/objects/a.csv",
        "projects/_/buckets/rawer/objects/a.csv",
        "projects/_/buckets/pre",
        "projects/_/buckets/pre/objects/2026/a",
        "projects/_/buckets/pre/objects/2025/a",
        "projects/p/datasets/d",
        "projects/p/datasets/d/tables/t",
        "projects/p/datasets/dd",
    ]
    permissions = ["storage.objects.get", "storage.objects.list", "x.y.z", "other.p.q"]
    for need, resource, permission in product(needs, resources, permissions):
        window = StepWindow("r", "t", "sa@p.iam.gserviceaccount.com", start, end, needs=(need,))
        access = Access(start.timestamp() + 1, "sa@p.iam.gserviceaccount.com", permission, resource)
        verdict = evaluate_usage(
            [window], [access], audit_configs={}, now=end, project="p", since=start
        )
        undeclared = bool(verdict.report.by_code("ZT631"))
        assert undeclared is not covers(need, permission, resource), (need, resource, permission)
