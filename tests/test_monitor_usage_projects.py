"""usage reads the Cloud Audit Logs of every project the approvals name, fail closed per
project: a step's data lives in another project (its bucket's owner, found through
storage.buckets.get), and the emulator logs each use in the project that owns the resource, as
Google does. Real google-cloud-logging / storage / resource-manager clients throughout."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from monitor_world import (
    AUDITOR,
    EXAMPLES,
    LAKE,
    LAKE_NODE,
    LOCATION,
    PIPELINE_SA,
    PROJECT,
    RAW,
    SUBMITTER,
    lake_world,
    new_job_id,
)

from zt_pipelines.audit import AuditLog
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.job import PipelineJob
from zt_pipelines.monitor.coverage import usage_scope
from zt_pipelines.monitor.service import usage
from zt_pipelines.policy.snapshot import Binding, Node, Role, Snapshot

INGEST_SA = f"ingest-sa@{PROJECT}.iam.gserviceaccount.com"
LOGS_ON = {"allServices": ("DATA_READ", "DATA_WRITE")}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("tpl") / "training.yaml"
    return str(EXAMPLES.compile_pipeline("training", str(out)))


def _emulator(world: Snapshot, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(world, simulate_runs=True) as emulator:
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
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    yield from _emulator(lake_world(), monkeypatch)


@pytest.fixture()
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


def run_pipeline(template: str, audit: AuditLog) -> None:
    job = PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(SUBMITTER),
        audit_log=audit,
    )
    job.submit(service_account=PIPELINE_SA)
    job.wait()


def check(audit: AuditLog, **kw: Any) -> Any:
    kw.setdefault("factory", ClientFactory(emulator_credentials(AUDITOR)))
    kw.setdefault("retry", no_wait_policy(2))
    return usage(PROJECT, audit_log=audit, **kw)


def test_the_logs_of_the_project_owning_a_steps_bucket_are_read(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    emu.set_audit_configs(LAKE, LOGS_ON)
    run_pipeline(template, audit)
    verdict = check(audit)
    assert verdict.clean, [f.message for f in verdict.report.findings]
    # ingest's reads are logged in zt-lake only: read there, they are used, not "unused"
    assert not verdict.report.by_code("ZT630"), [f.message for f in verdict.report.findings]
    assert verdict.proposal["ingest"]["needs"] == {
        "gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]
    }
    notes = " ".join(verdict.report.notes)
    assert "of 2 projects compared" in notes and f"{LAKE} (bucket zt-demo-raw-data" in notes


def test_a_misuse_logged_in_another_project_is_caught(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    emu.set_audit_configs(LAKE, LOGS_ON)
    run_pipeline(template, audit)
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    emu.log_access(INGEST_SA, "storage.objects.get", RAW + "/rows.csv", at=at, project=LAKE)
    verdict = check(audit)
    [misuse] = verdict.report.by_code("ZT632")
    assert INGEST_SA in (misuse.principal or "") and not verdict.clean
    assert misuse.evidence and f"projects/{LAKE}/logs/" in misuse.evidence[0].detail


def test_a_project_whose_logs_cannot_be_read_is_named_and_never_clean(
    template: str, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    for emu in _emulator(lake_world(auditor_reads_lake=False), monkeypatch):
        emu.set_audit_configs(PROJECT, LOGS_ON)
        emu.set_audit_configs(LAKE, LOGS_ON)
        run_pipeline(template, audit)
        at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
        emu.log_access(INGEST_SA, "storage.objects.get", RAW + "/x", at=at, project=PROJECT)
        verdict = check(audit)
        assert not verdict.clean
        failed = [f.message for f in verdict.report.by_code("ZT634")]
        assert any(f"project {LAKE}'s Cloud Audit Logs" in m for m in failed), failed
        assert not any(f"project {PROJECT}'s" in m for m in failed), failed
        # the project that could be read still is: the misuse there is reported
        assert verdict.report.by_code("ZT632")
        # nothing of the unread project is called unused
        assert not verdict.report.by_code("ZT630")


@pytest.mark.parametrize(
    "fault",
    [
        Fault("storage.buckets.get", code="UNAVAILABLE"),
        Fault("storage.buckets.get", code="PERMISSION_DENIED"),
        Fault("*Projects/GetProject", code="UNAVAILABLE"),
    ],
    ids=lambda f: f"{f.method}-{f.code}",
)
def test_a_bucket_whose_owner_cannot_be_read_is_named_and_never_clean(
    emu: Emulator, template: str, audit: AuditLog, fault: Fault
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    emu.set_audit_configs(LAKE, LOGS_ON)
    run_pipeline(template, audit)
    emu.add_fault(fault)
    verdict = check(audit)
    assert not verdict.clean
    failed = " ".join(f.message for f in verdict.report.by_code("ZT634"))
    assert "bucket zt-demo-raw-data" in failed or "zt-demo-raw-data" in failed, failed
    assert not [f for f in verdict.report.by_code("ZT630") if f.step == "ingest"]


def test_audit_configs_are_read_per_project(emu: Emulator, template: str, audit: AuditLog) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)  # zt-lake: Data Access logs off
    run_pipeline(template, audit)
    verdict = check(audit)
    off = [f.message for f in verdict.report.by_code("ZT633")]
    assert any(f"storage.googleapis.com in project {LAKE}" in m for m in off), off
    assert not any(f"in project {PROJECT}" in m for m in off), off
    # what cannot be seen in zt-lake is never called unused
    assert not [f for f in verdict.report.by_code("ZT630") if f.step == "ingest"]


def test_the_scope_names_every_project_an_approval_reaches() -> None:
    approval = {
        "project": "run-project",
        "identities": [
            {"role": "pipeline", "service_account": "p@home-a.iam.gserviceaccount.com"},
            {
                "role": "step",
                "task": "t",
                "service_account": "s@home-b.iam.gserviceaccount.com",
                "needs": [
                    "//bigquery.googleapis.com/projects/bq-project/datasets/d "
                    "bigquery.tables.getData",
                    "//storage.googleapis.com/bkt (objects a/*) storage.objects.get",
                    "//aiplatform.googleapis.com/projects/123456/locations/l "
                    "aiplatform.customJobs.create",
                    "//iam.googleapis.com/projects/-/serviceAccounts/"
                    "x@home-b.iam.gserviceaccount.com iam.serviceAccounts.actAs",
                ],
            },
        ],
        "baseline": {
            "pipeline_root": "gs://root-bucket/x",
            "posture": {
                "s@home-b.iam.gserviceaccount.com": {
                    "grants": [
                        "roles/x on //cloudresourcemanager.googleapis.com/projects/granted-p",
                        "roles/y on //storage.googleapis.com/other-bkt if expr",
                        "roles/z on //cloudresourcemanager.googleapis.com/folders/9",
                    ]
                }
            },
        },
    }
    scope = usage_scope("asked", [approval])
    assert set(scope.projects) == {
        "asked",
        "run-project",
        "home-a",
        "home-b",
        "bq-project",
        "123456",
        "granted-p",
    }
    assert set(scope.buckets) == {"bkt", "root-bucket", "other-bkt"}
    assert scope.wide == ("//cloudresourcemanager.googleapis.com/folders/9",)


# -- organisation scale: usage --logs-from a log view fed by an aggregated sink ----------------

SEC = "zt-sec"
EXFIL = "exfil-project"
BUCKET = f"projects/{SEC}/locations/global/buckets/org-audit"
VIEW = f"{BUCKET}/views/all"
ORG = "organizations/100"
ORG_READS = frozenset(
    {
        "logging.sinks.list",
        "logging.views.get",
        "logging.views.access",
        "resourcemanager.projects.get",
        "resourcemanager.folders.get",
    }
)


def org_world(*, view_access: bool = True) -> Snapshot:
    """The lake world inside an organisation with a security project holding the log bucket
    and a project no approval names (where a leaked key is used); the auditor reads the Log
    Router configuration at the organisation."""
    base = lake_world()
    nodes = dict(base.nodes)
    roles = dict(base.roles)
    perms = ORG_READS if view_access else ORG_READS - {"logging.views.access"}
    roles["roles/zt.orgAudit"] = Role("roles/zt.orgAudit", perms)
    org_node = f"//cloudresourcemanager.googleapis.com/{ORG}"
    org = nodes[org_node]
    assert org.policy is not None
    nodes[org_node] = dataclasses.replace(
        org,
        policy=dataclasses.replace(
            org.policy,
            bindings=(*org.policy.bindings, Binding("roles/zt.orgAudit", (AUDITOR,))),
        ),
    )
    folder = nodes[LAKE_NODE].parent
    for name, number in ((SEC, "777000222"), (EXFIL, "777000333")):
        node = f"//cloudresourcemanager.googleapis.com/projects/{name}"
        nodes[node] = Node(node, "project", parent=folder, project_number=number)
    return dataclasses.replace(base, nodes=nodes, roles=roles)


@pytest.fixture()
def org(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    yield from _emulator(org_world(), monkeypatch)


def _org_setup(emu: Emulator, **sink: Any) -> None:
    for project in (PROJECT, LAKE, EXFIL):
        emu.set_audit_configs(project, LOGS_ON)
    sink.setdefault("filter", 'logName:"cloudaudit.googleapis.com"')
    emu.add_log_sink(ORG, "zt-audit", BUCKET, **sink)
    emu.add_log_view(VIEW)


def _entries_reads(emu: Emulator) -> list[str]:
    return [r.target for r in emu.request_log if r.method.endswith("ListLogEntries")]


def test_a_log_view_shows_a_misuse_in_a_project_no_approval_names(
    org: Emulator, template: str, audit: AuditLog
) -> None:
    _org_setup(org)
    run_pipeline(template, audit)
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    exfil = "//storage.googleapis.com/exfil-bucket/dump.csv"
    org.log_access(INGEST_SA, "storage.objects.create", exfil, at=at, project=EXFIL)
    # read project by project, the misuse is not seen (the report says what was read)
    plain = check(audit, record=False)
    assert not plain.report.by_code("ZT632")
    assert any("other projects" in n and "--logs-from" in n for n in plain.report.notes)
    org.clear_log()
    verdict = check(audit, logs_from=VIEW)
    [misuse] = verdict.report.by_code("ZT632")
    assert "exfil-bucket" in (misuse.resource or "") and not verdict.clean
    # one stream from the view, no per-project entries.list; the steps' own uses are there too
    assert _entries_reads(org) == [VIEW]
    assert not verdict.report.by_code("ZT630"), [f.message for f in verdict.report.findings]
    notes = " ".join(verdict.report.notes)
    assert f"log view {VIEW}" in notes and "2 of the 2" in notes


def test_a_clean_run_through_a_log_view_is_clean(
    org: Emulator, template: str, audit: AuditLog
) -> None:
    _org_setup(org)
    run_pipeline(template, audit)
    verdict = check(audit, logs_from=VIEW)
    assert verdict.clean, [f.message for f in verdict.report.findings]
    assert verdict.proposal["ingest"]["needs"] == {
        "gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]
    }


@pytest.mark.parametrize(
    ("sink", "why"),
    [
        ({"disabled": True}, "no enabled sink"),
        ({"include_children": False}, "does not include children"),
        ({"exclusions": ('logName="x"',)}, "has exclusions"),
        ({"filter": 'log_id("cloudaudit.googleapis.com/activity")'}, "not proven"),
    ],
    ids=["disabled", "no-children", "exclusions", "activity-only"],
)
def test_projects_not_proven_in_the_view_are_read_directly(
    org: Emulator, template: str, audit: AuditLog, sink: dict[str, Any], why: str
) -> None:
    _org_setup(org, **sink)
    run_pipeline(template, audit)
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    org.log_access(INGEST_SA, "storage.objects.get", RAW + "/x", at=at, project=LAKE)
    org.clear_log()
    verdict = check(audit, logs_from=VIEW)
    # the lake's misuse is still caught: its logs were read directly, and counted once
    [misuse] = verdict.report.by_code("ZT632")
    assert misuse.evidence and f"projects/{LAKE}/logs/" in misuse.evidence[0].detail
    reads = _entries_reads(org)
    assert f"projects/{LAKE}" in reads and f"projects/{PROJECT}" in reads
    notes = " ".join(verdict.report.notes)
    assert "read directly instead" in notes and why in notes, notes


@pytest.mark.parametrize(
    "fault",
    [
        Fault("google.logging.v2.LoggingServiceV2/ListLogEntries", code="UNAVAILABLE", times=1),
        Fault("google.logging.v2.LoggingServiceV2/ListLogEntries", code="PERMISSION_DENIED"),
    ],
    ids=["view-unavailable", "denied"],
)
def test_a_log_view_that_cannot_be_read_is_never_clean(
    org: Emulator, template: str, audit: AuditLog, fault: Fault
) -> None:
    _org_setup(org)
    run_pipeline(template, audit)
    org.add_fault(dataclasses.replace(fault, times=None if fault.times is None else 10))
    verdict = check(audit, logs_from=VIEW)
    assert not verdict.clean
    assert any(VIEW in f.message for f in verdict.report.by_code("ZT634"))


def test_no_view_access_is_never_clean(
    template: str, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    for emu in _emulator(org_world(view_access=False), monkeypatch):
        _org_setup(emu)
        run_pipeline(template, audit)
        verdict = check(audit, logs_from=VIEW)
        assert not verdict.clean
        assert any(VIEW in f.message for f in verdict.report.by_code("ZT634"))
        # the projects the approvals name were still read, directly
        assert "read directly instead" in " ".join(verdict.report.notes)


def test_a_sink_read_that_fails_proves_nothing(
    org: Emulator, template: str, audit: AuditLog
) -> None:
    _org_setup(org)
    run_pipeline(template, audit)
    org.add_fault(Fault("google.logging.v2.ConfigServiceV2/ListSinks", code="UNAVAILABLE"))
    verdict = check(audit, logs_from=VIEW)
    notes = " ".join(verdict.report.notes)
    assert "0 of the 2" in notes and "could not be read" in notes, notes
    assert verdict.clean, [f.message for f in verdict.report.findings]


def test_logs_from_must_name_a_log_view(audit: AuditLog) -> None:
    from zt_pipelines.errors import InputError

    for bad in ("projects/p", f"{BUCKET}", "bigquery.googleapis.com/projects/p/datasets/d"):
        with pytest.raises(InputError, match="is not a log view"):
            usage(PROJECT, audit_log=audit, logs_from=bad, record=False)


def test_usage_cli_reads_a_log_view(
    org: Emulator,
    template: str,
    audit: AuditLog,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zt_pipelines.cli import main

    _org_setup(org)
    run_pipeline(template, audit)
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    exfil = "//storage.googleapis.com/exfil-bucket/dump.csv"
    org.log_access(INGEST_SA, "storage.objects.create", exfil, at=at, project=EXFIL)
    monkeypatch.setenv("ZT_EMULATOR_CALLER", AUDITOR)
    base = ["usage", "--project", PROJECT, "--audit-log", str(audit.path), "--format", "json"]
    with pytest.raises(SystemExit) as done:
        main([*base, "--logs-from", VIEW])
    assert done.value.code == 1
    assert "ZT632" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main([*base, "--logs-from", "projects/p/datasets/d"])
    assert done.value.code == 2
    assert "is not a log view" in capsys.readouterr().err


def test_data_access_logs_turned_on_at_the_organisation_are_inherited(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs("organizations/100", LOGS_ON)  # no project sets anything itself
    run_pipeline(template, audit)
    verdict = check(audit)
    assert not verdict.report.by_code("ZT633"), [f.message for f in verdict.report.findings]
    assert verdict.clean and not verdict.report.by_code("ZT630")
    # an inherited configuration that cannot be read hides only logs that are on: a note
    emu.add_fault(Fault("*Organizations/GetIamPolicy", code="PERMISSION_DENIED"))
    hidden = check(audit, record=False)
    assert hidden.report.by_code("ZT633") and not hidden.report.by_code("ZT634")
    assert any("organizations/100" in n and "inherited" in n for n in hidden.report.notes)
