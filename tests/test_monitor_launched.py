"""Launched-job and serving identities after submission: the approval records them (roles
``launched`` / ``serving``), its baseline holds their posture, drift follows it and usage reads
a launched identity's uses (outside its step's runs: possible misuse). End to end with Google's
GCPC example pipeline (a deploy step with its own serving identity) and the training example,
against the emulator with the real clients."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from monitor_world import (
    AUDITOR,
    EXAMPLES,
    LEGACY_SA,
    LOCATION,
    PIPELINE_SA,
    PROJECT,
    PROJECT_NODE,
    SUBMITTER,
    monitor_world,
    new_job_id,
)

import zt_pipelines as zt
from zt_pipelines.audit import AuditIdentity, AuditLog, Decision, identities_from
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.model import StepIdentity
from zt_pipelines.monitor.service import drift, usage, verify_run
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Snapshot
from zt_pipelines.policy.snapshot_file import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = "user:platform@example.com"
LOGS_ON = {"allServices": ("DATA_READ", "DATA_WRITE")}


def with_binding(world: Snapshot, node: str, role: str, member: str) -> Snapshot:
    nodes = dict(world.nodes)
    policy = nodes[node].policy or AllowPolicy()
    nodes[node] = dataclasses.replace(
        nodes[node],
        policy=dataclasses.replace(policy, bindings=(*policy.bindings, Binding(role, (member,)))),
    )
    return dataclasses.replace(world, nodes=nodes)


def test_the_audit_record_names_launched_and_serving_identities() -> None:
    step = StepIdentity(
        task="evaluate",
        component="c",
        executor="e",
        service_account="eval@p.iam.gserviceaccount.com",
        source="declared",
        launched_service_account="dataflow-worker@p.iam.gserviceaccount.com",
        launched_identity_field="input dataflow_service_account",
    )
    deploy = StepIdentity(
        task="deploy",
        component="c",
        executor="e",
        service_account="deploy@p.iam.gserviceaccount.com",
        source="declared",
        serving_service_account="serving@p.iam.gserviceaccount.com",
    )
    same = dataclasses.replace(
        step, task="train", launched_service_account="EVAL@p.iam.gserviceaccount.com"
    )
    found = identities_from("pipe@p.iam.gserviceaccount.com", [step, deploy, same])
    others = [
        (i.role, i.task, i.service_account, i.source)
        for i in found
        if i.role not in ("pipeline", "step")
    ]
    assert others == [
        (
            "launched",
            "evaluate",
            "dataflow-worker@p.iam.gserviceaccount.com",
            "input dataflow_service_account",
        ),
        ("serving", "deploy", "serving@p.iam.gserviceaccount.com", "serving"),
    ]  # a job that runs as the step itself is not a second identity


# -- serving identity: Google's GCPC example end to end ----------------------------------------


def _gcpc_example() -> ModuleType:
    path = ROOT / "examples" / "gcpc_pipeline.py"
    spec = importlib.util.spec_from_file_location("zt_gcpc_example_launched", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gcpc_approved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path, Snapshot]]:
    """The GCPC example planned, applied and submitted through zt: (example, audit log, the
    IAM state after apply)."""
    pytest.importorskip("google_cloud_pipeline_components")
    from zt_pipelines.demo import _environment
    from zt_pipelines.provision.apply import apply_plan

    ex = _gcpc_example()
    out = tmp_path_factory.mktemp("launched")
    template = out / "gcpc.yaml"
    ex.compile_pipeline("gcpc-training", str(template))
    log = out / "audit.jsonl"
    world = load_snapshot(ROOT / "examples" / "world.yaml")
    with Emulator(world, simulate_runs=True) as emu, _environment(emu.address):
        plan = zt.plan(
            template,
            project=ex.PROJECT,
            location=ex.LOCATION,
            pipeline_service_account=ex.PIPELINE_SA,
            snapshot=emu.state,
            submitter=ex.SUBMITTER,
        )
        factory = ClientFactory(
            emulator_credentials(PLATFORM), emulator_host=emu.address, project=ex.PROJECT
        )
        try:
            apply_plan(plan, factory=factory, retry=no_wait_policy(), audit_log=out / "p.jsonl")
        finally:
            factory.close()
        job = zt.PipelineJob(
            display_name="gcpc-launched",
            template_path=str(template),
            job_id=f"gcpc-{uuid.uuid4().hex[:8]}",
            credentials=emulator_credentials(ex.SUBMITTER),
            project=ex.PROJECT,
            location=ex.LOCATION,
            audit_log=log,
        )
        job.submit(service_account=ex.PIPELINE_SA)
        state = emu.state
    yield ex, log, state


def test_the_approval_records_the_serving_identity_and_its_posture(
    gcpc_approved: tuple[Any, Path, Snapshot],
) -> None:
    ex, log, _state = gcpc_approved
    [approval] = [r for r in AuditLog(log).records() if r["action"] == "submit"]
    serving = ex.SERVING_SA.lower()
    assert {
        (i["role"], i["task"]) for i in approval["identities"] if i["service_account"] == serving
    } == {("serving", "exit-handler-1/condition-2/model-deploy")}
    assert serving in approval["baseline"]["posture"]


def test_drift_follows_the_serving_identity(
    gcpc_approved: tuple[Any, Path, Snapshot], tmp_path: Path
) -> None:
    ex, log, state = gcpc_approved
    copy = tmp_path / "audit.jsonl"
    copy.write_bytes(log.read_bytes())
    [quiet] = drift(AuditLog(copy), snapshot=state, record=False)
    assert not [f for f in quiet.report.errors if ex.SERVING_SA.lower() in f.message]
    project = f"//cloudresourcemanager.googleapis.com/projects/{ex.PROJECT}"
    changed = with_binding(state, project, "roles/editor", f"serviceAccount:{ex.SERVING_SA}")
    [verdict] = drift(AuditLog(copy), snapshot=changed, record=False)
    assert verdict.drifted
    grants = [f for f in verdict.report.by_code("ZT620") if ex.SERVING_SA.lower() in f.message]
    assert grants and "since the approval" in grants[0].message, [
        f.message for f in verdict.report.findings
    ]


# -- launched identity: usage and verify-run -----------------------------------------------------


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


def _approve_with_launched(tmp_path: Path) -> tuple[AuditLog, str]:
    """The training example submitted through zt, then its approval re-recorded naming
    LEGACY_SA as the identity the train step's launched job runs as."""
    audit = AuditLog(tmp_path / "audit.jsonl")
    template = str(EXAMPLES.compile_pipeline("training", str(tmp_path / "training.yaml")))
    job = zt.PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(SUBMITTER),
        audit_log=audit,
    )
    job.submit(service_account=PIPELINE_SA)
    job.wait()
    [approval] = [r for r in audit.records() if r["action"] == "submit"]
    identities = [
        AuditIdentity(
            i["role"], i["service_account"], i["task"], i["source"], tuple(i.get("needs", ()))
        )
        for i in approval["identities"]
    ]
    identities.append(
        AuditIdentity("launched", LEGACY_SA, "train", "payload job_spec.service_account")
    )
    # the baseline holds its posture at the approval, as the drop-in records it
    from zt_pipelines.monitor.baseline import approval_baseline

    baseline = dict(approval["baseline"])
    extra = approval_baseline(
        monitor_world(),
        [LEGACY_SA],
        now=datetime.datetime.now(datetime.timezone.utc),
        pipeline_root=None,
        runtime={},
        source="snapshot",
    )
    baseline["posture"] = {**baseline["posture"], **extra["posture"]}
    keep = ("action", "outcome", "submitter", "project", "location", "pipeline", "spec_sha256")
    audit.append(
        Decision(
            **{k: approval[k] for k in keep},
            identities=tuple(identities),
            findings=tuple(approval["findings"]),
            job_id=approval["job_id"],
            reason=approval["reason"],
            decision_sha256=approval.get("decision_sha256", ""),
            baseline=baseline,
        )
    )
    return audit, str(job.job_id)


def test_usage_reads_a_launched_identity_and_flags_its_use_outside_every_run(
    emu: Emulator, tmp_path: Path
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    audit, job_id = _approve_with_launched(tmp_path)
    [train] = [s for s in emu.step_runs if s.task == "train"]
    inside = train.start + (train.end - train.start) / 2
    outside = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    obj = "//storage.googleapis.com/zt-demo-models/m.bin"
    emu.log_access(LEGACY_SA, "storage.objects.get", obj, at=inside, project=PROJECT)
    emu.log_access(LEGACY_SA, "storage.objects.get", obj, at=outside, project=PROJECT)
    verdict = usage(
        PROJECT,
        audit_log=audit,
        factory=ClientFactory(emulator_credentials(AUDITOR)),
        retry=no_wait_policy(2),
        record=False,
    )
    [misuse] = verdict.report.by_code("ZT632")
    assert LEGACY_SA in (misuse.principal or "")
    assert misuse.evidence and outside.isoformat()[:16] in misuse.evidence[0].detail
    assert not [f for f in verdict.report.by_code("ZT631") if LEGACY_SA in (f.principal or "")]
    assert any("launched-job identities" in n for n in verdict.report.notes)
    # verify-run still compares the train task with the step's own identity
    checked = verify_run(
        job_id,
        project=PROJECT,
        location=LOCATION,
        audit_log=audit,
        factory=ClientFactory(emulator_credentials(AUDITOR)),
        retry=no_wait_policy(2),
        record=False,
    )
    assert not checked.report.by_code("ZT605"), [f.message for f in checked.report.findings]


def test_drift_follows_a_launched_identity(emu: Emulator, tmp_path: Path) -> None:
    audit, _job = _approve_with_launched(tmp_path)
    [quiet] = drift(audit, snapshot=monitor_world(), record=False)
    assert not [f for f in quiet.report.errors if LEGACY_SA in f.message]
    changed = with_binding(
        monitor_world(), PROJECT_NODE, "roles/storage.objectViewer", f"serviceAccount:{LEGACY_SA}"
    )
    [verdict] = drift(audit, snapshot=changed, record=False)
    [grant] = [f for f in verdict.report.by_code("ZT620") if LEGACY_SA in f.message]
    assert grant.resource == PROJECT_NODE and "since the approval" in grant.message
