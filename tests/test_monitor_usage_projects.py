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
    LOCATION,
    PIPELINE_SA,
    PROJECT,
    SUBMITTER,
    monitor_world,
    new_job_id,
)

from zt_pipelines.audit import AuditLog
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.job import PipelineJob
from zt_pipelines.monitor.coverage import usage_scope
from zt_pipelines.monitor.service import usage
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, Snapshot

LAKE = "zt-lake"
LAKE_NODE = f"//cloudresourcemanager.googleapis.com/projects/{LAKE}"
RAW = "//storage.googleapis.com/zt-demo-raw-data"
INGEST_SA = f"ingest-sa@{PROJECT}.iam.gserviceaccount.com"
LOGS_ON = {"allServices": ("DATA_READ", "DATA_WRITE")}


def lake_world(*, auditor_reads_lake: bool = True) -> Snapshot:
    """The monitor world with the raw-data bucket owned by another project, zt-lake."""
    base = monitor_world()
    nodes = dict(base.nodes)
    folder = nodes[f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"].parent
    bindings = (Binding("roles/zt.monitor", (AUDITOR,)),) if auditor_reads_lake else ()
    nodes[LAKE_NODE] = Node(
        LAKE_NODE,
        "project",
        parent=folder,
        project_number="777000111",
        policy=AllowPolicy(bindings=bindings),
    )
    # a project's custom role is grantable only in that project: the lake defines its own
    reader = f"projects/{LAKE}/roles/objectReader"
    roles = dict(base.roles)
    roles[reader] = Role(reader, frozenset({"storage.objects.get", "storage.objects.list"}))
    raw = nodes[RAW]
    assert raw.policy is not None
    nodes[RAW] = dataclasses.replace(
        raw,
        parent=LAKE_NODE,
        policy=dataclasses.replace(
            raw.policy,
            bindings=tuple(
                dataclasses.replace(b, role=reader) if b.role.endswith("/objectReader") else b
                for b in raw.policy.bindings
            ),
        ),
    )
    return dataclasses.replace(base, nodes=nodes, roles=roles)


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
    assert "read in 2 project(s)" in notes and f"{LAKE} (bucket zt-demo-raw-data" in notes


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
