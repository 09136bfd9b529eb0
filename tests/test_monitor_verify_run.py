"""Post-run verification end to end: real kfp compiles, real aiplatform submits through
zt_pipelines.PipelineJob, the emulator simulates the run (task details + CustomJobs), and
verify-run reads them back with the real Vertex AI clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from monitor_world import (
    AUDITOR,
    AUDITOR_AND_SUBMITTER,
    EXAMPLES,
    LEGACY_SA,
    LOCATION,
    PIPELINE_SA,
    PROJECT,
    SUBMITTER,
    TRAIN_SA,
    monitor_world,
    new_job_id,
)

from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.emulator.run_details import RunScript
from zt_pipelines.gcp.clients import ClientFactory, emulator_aiplatform_init_kwargs
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.job import PipelineJob
from zt_pipelines.monitor import expected_tasks
from zt_pipelines.monitor.service import verify_run


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("tpl") / "training.yaml"
    return str(EXAMPLES.compile_pipeline("training", str(out)))


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(monitor_world(), simulate_runs=True) as emu:
        yield emu


@pytest.fixture()
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.address}")
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # plain aiplatform's ADC: no metadata probe
    config = initializer.global_config
    saved = dict(vars(config))
    config.__init__()  # type: ignore[misc]
    aiplatform.init(project=PROJECT, location=LOCATION)
    emulator.clear_log()
    try:
        yield emulator
    finally:
        emulator.clear_faults()
        emulator.clear_run_scripts()
        vars(config).clear()
        vars(config).update(saved)


@pytest.fixture()
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


def submit(template: str, audit: AuditLog) -> PipelineJob:
    job = PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(SUBMITTER),
        audit_log=audit,
    )
    job.submit(service_account=PIPELINE_SA)
    return job


def auditor() -> ClientFactory:
    return ClientFactory(emulator_credentials(AUDITOR))


def check(job_id: str, audit: AuditLog, **kw: Any) -> Any:
    kw.setdefault("factory", auditor())
    kw.setdefault("retry", no_wait_policy(2))
    return verify_run(job_id, project=PROJECT, location=LOCATION, audit_log=audit, **kw)


def test_a_run_submitted_through_zt_verifies_clean_and_is_recorded(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    job = submit(template, audit)
    verdict = check(job.job_id, audit)
    assert verdict.verified, verdict.report
    assert not verdict.report.errors
    ran = {
        t.path: verdict.run.jobs[t.job_names[0]].service_account
        for t in verdict.run.tasks
        if t.job_names
    }
    assert ran["train"] == TRAIN_SA
    assert len(ran) == 3
    last = audit.records()[-1]
    assert last["action"] == "verify-run" and last["outcome"] == "allowed"
    assert last["job_id"] == job.job_id
    assert audit.verify().ok


def test_reads_cost_at_most_tasks_plus_three_calls(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    job = submit(template, audit)
    emu.clear_log()
    check(job.job_id, audit)
    counts = emu.counts()
    assert sum(counts.values()) <= 3 + 3
    assert counts.get("aiplatform.pipelineJobs.get") == 1


def test_a_task_that_ran_as_another_service_account_is_caught(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.script_run(RunScript(task="train", service_account=LEGACY_SA))
    job = submit(template, audit)
    verdict = check(job.job_id, audit)
    assert not verdict.verified
    [finding] = verdict.report.by_code("ZT605")
    assert finding.step == "train" and LEGACY_SA in finding.message
    assert audit.records()[-1]["outcome"] == "refused"


def test_a_changed_image_is_caught(emu: Emulator, template: str, audit: AuditLog) -> None:
    emu.script_run(RunScript(task="ingest", image="evil.example/miner:latest"))
    job = submit(template, audit)
    verdict = check(job.job_id, audit)
    assert not verdict.verified
    [finding] = verdict.report.by_code("ZT606")
    assert finding.step == "ingest" and "evil.example/miner" in finding.message


def test_network_and_key_changes_and_extra_tasks_are_caught(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.script_run(RunScript(task="train", network="projects/1/global/networks/other"))
    emu.script_run(RunScript(task="evaluate-and-upload", kms_key="projects/x/keys/k"))
    emu.script_run(
        RunScript(task="exfiltrate", extra_task=True, service_account=TRAIN_SA, image="x:1")
    )
    job = submit(template, audit)
    verdict = check(job.job_id, audit)
    assert {"ZT607", "ZT608", "ZT610"} <= verdict.report.codes()
    assert not verdict.verified


def test_a_job_submitted_with_plain_aiplatform_is_caught(
    emu: Emulator, template: str, audit: AuditLog, tmp_path: Path
) -> None:
    import yaml

    plain = tmp_path / "plain.json"  # aiplatform reads one document: the PipelineSpec
    plain.write_text(json.dumps(next(yaml.safe_load_all(Path(template).read_text()))))
    aiplatform.init(
        project=PROJECT,
        location=LOCATION,
        **emulator_aiplatform_init_kwargs(emulator_credentials(SUBMITTER)),
    )
    job = aiplatform.PipelineJob(
        display_name="shadow",
        template_path=str(plain),
        job_id=new_job_id(),
        # a bucket that does not exist: aiplatform's ownership check of an existing one asks
        # the real Resource Manager for the project number (no network here)
        pipeline_root=f"gs://zt-shadow-{new_job_id()}/runs",
    )
    job.submit(service_account=PIPELINE_SA)
    verdict = check(job.job_id, audit)
    assert not verdict.verified
    assert "ZT601" in verdict.report.codes()


def test_no_approval_in_the_audit_log_is_caught(
    emu: Emulator, template: str, audit: AuditLog, tmp_path: Path
) -> None:
    job = submit(template, audit)
    verdict = check(job.job_id, AuditLog(tmp_path / "other.jsonl"))
    assert not verdict.verified
    assert "ZT602" in verdict.report.codes()


def test_a_tampered_audit_log_is_not_trusted(emu: Emulator, template: str, audit: AuditLog) -> None:
    job = submit(template, audit)
    lines = audit.path.read_bytes().splitlines()
    record = json.loads(lines[0])
    record["reason"] = "edited"
    audit.path.write_bytes(json.dumps(record).encode() + b"\n" + b"\n".join(lines[1:]))
    verdict = check(job.job_id, audit, record=False)
    assert not verdict.verified
    assert "ZT614" in verdict.report.codes()


@pytest.mark.parametrize(
    "fault",
    [
        Fault("aiplatform.pipelineJobs.get", code="UNAVAILABLE"),
        Fault("aiplatform.pipelineJobs.get", code="PERMISSION_DENIED"),
        Fault("aiplatform.pipelineJobs.get", malformed=True),
        Fault("aiplatform.customJobs.*", code="UNAVAILABLE"),
        Fault("aiplatform.customJobs.*", code="PERMISSION_DENIED"),
        Fault("aiplatform.customJobs.*", reset=True),
        Fault("aiplatform.customJobs.*", malformed=True),
    ],
    ids=lambda f: f"{f.method}-{f.code or ('malformed' if f.malformed else 'reset')}",
)
def test_a_failed_read_never_yields_verified(
    emu: Emulator, template: str, audit: AuditLog, fault: Fault
) -> None:
    job = submit(template, audit)
    emu.add_fault(fault)
    verdict = check(job.job_id, audit)
    assert not verdict.verified
    assert "ZT600" in verdict.report.codes()
    assert audit.records()[-1]["outcome"] == "refused"


def test_a_transient_failure_is_retried_and_then_verifies(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    job = submit(template, audit)
    emu.add_fault(Fault("aiplatform.pipelineJobs.get", code="UNAVAILABLE", times=1))
    assert check(job.job_id, audit).verified


def test_verify_run_cli_exit_codes(
    emu: Emulator,
    template: str,
    audit: AuditLog,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_CALLER", AUDITOR)
    base = [
        "verify-run",
        "--project",
        PROJECT,
        "--location",
        LOCATION,
        "--audit-log",
        str(audit.path),
    ]
    good = submit(template, audit)
    with pytest.raises(SystemExit) as ok:
        main([*base, good.job_id])
    assert ok.value.code == 0
    emu.script_run(RunScript(task="train", service_account=LEGACY_SA))  # runs end when read
    bad = submit(template, audit)
    with pytest.raises(SystemExit) as refused:
        main([*base, bad.job_id, "--format", "json"])
    assert refused.value.code == 1
    out = capsys.readouterr().out
    assert '"ZT605"' in out


def test_expected_tasks_read_identity_and_image_from_the_approved_spec(template: str) -> None:
    import yaml

    from zt_pipelines.spec import rewrite_pipeline

    docs = list(yaml.safe_load_all(Path(template).read_text()))
    result = rewrite_pipeline(
        docs[0],
        platform_docs=tuple(docs[1:]),
        project=PROJECT,
        pipeline_service_account=PIPELINE_SA,
    )
    expected = expected_tasks(result.spec)
    assert expected["train"].kind == "custom_job"
    assert expected["train"].service_account == TRAIN_SA
    assert expected["train"].images == (EXAMPLES.IMAGE,)
    assert {p for p, e in expected.items() if e.kind == "custom_job"} == {
        "ingest",
        "train",
        "evaluate-and-upload",
    }


def test_submit_verify_after_verifies_when_the_run_ends(
    emu: Emulator, template: str, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_CALLER", AUDITOR)
    job = PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(AUDITOR_AND_SUBMITTER),
        audit_log=audit,
    )
    job.submit(service_account=PIPELINE_SA, verify_after=True)
    assert job.last_run_report.allowed
    assert [r["action"] for r in audit.records()] == ["submit", "verify-run"]


def test_run_verify_after_raises_when_the_run_deviates(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    from zt_pipelines.errors import ZeroTrustViolation

    emu.script_run(RunScript(task="train", service_account=LEGACY_SA))
    job = PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(AUDITOR_AND_SUBMITTER),
        audit_log=audit,
    )
    with pytest.raises(ZeroTrustViolation) as raised:
        job.run(service_account=PIPELINE_SA, verify_after=True)
    assert "ZT605" in raised.value.report.codes()
    assert audit.records()[-1]["outcome"] == "refused"


def test_verify_after_needs_a_synchronous_run(template: str, audit: AuditLog) -> None:
    from zt_pipelines.errors import InputError

    job = PipelineJob(
        display_name="training",
        template_path=template,
        audit_log=audit,
        project=PROJECT,
        location=LOCATION,
        credentials=emulator_credentials(SUBMITTER),
    )
    with pytest.raises(InputError):
        job.run(service_account=PIPELINE_SA, sync=False, verify_after=True)
    assert audit.records() == []


def test_a_succeeded_run_whose_task_details_hide_a_task_is_not_verified() -> None:
    """Pure: task details that leave out a job task of a succeeded run never verify."""
    import datetime

    import yaml

    from zt_pipelines.fingerprint import SPEC_LABELS, VERIFIED_LABEL, spec_sha256
    from zt_pipelines.monitor.model import ObservedRun, ObservedTask
    from zt_pipelines.monitor.runs import evaluate_run
    from zt_pipelines.spec import rewrite_pipeline

    out = Path(EXAMPLES.compile_pipeline("training", "/tmp/zt-monitor-hidden.yaml"))
    docs = list(yaml.safe_load_all(out.read_text()))
    spec = rewrite_pipeline(
        docs[0],
        platform_docs=tuple(docs[1:]),
        project=PROJECT,
        pipeline_service_account=PIPELINE_SA,
    ).spec
    digest = spec_sha256(spec)
    run = ObservedRun(
        name=f"projects/1/locations/{LOCATION}/pipelineJobs/j",
        job_id="j",
        project=PROJECT,
        location=LOCATION,
        state="PIPELINE_STATE_SUCCEEDED",
        labels={SPEC_LABELS[0]: digest[:32], SPEC_LABELS[1]: digest[32:], VERIFIED_LABEL: "true"},
        spec_sha256=digest,
        service_account=PIPELINE_SA,
        pipeline_spec=spec,
        tasks=(ObservedTask("1", "", "SUCCEEDED"),),
    )
    approval = {
        "action": "submit",
        "outcome": "allowed",
        "spec_sha256": digest,
        "project": PROJECT,
        "location": LOCATION,
        "job_id": "j",
        "identities": [{"role": "pipeline", "service_account": PIPELINE_SA}],
    }
    verdict = evaluate_run(
        run,
        [approval],
        now=datetime.datetime.now(datetime.timezone.utc),
        spec_labels=SPEC_LABELS,
        verified_label=VERIFIED_LABEL,
    )
    assert not verdict.verified
    assert {f.step for f in verdict.report.by_code("ZT611")} == {
        "ingest",
        "train",
        "evaluate-and-upload",
    }


def test_decision_labels_that_are_not_the_approvals_are_caught(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    from zt_pipelines.fingerprint import DECISION_LABELS

    job = submit(template, audit)
    record = audit.records()[-1]
    assert record.get("decision_sha256")
    stored = emu._world.served_jobs  # a label edit after submission (as a job update would)
    [name] = [n for n in stored if n.endswith(job.job_id)]
    stored[name]["labels"][DECISION_LABELS[0]] = "0" * 32
    verdict = check(job.job_id, audit)
    assert not verdict.verified
    assert any("decision labels" in f.message for f in verdict.report.by_code("ZT603"))


def test_a_run_that_has_not_ended_is_verified_only_so_far() -> None:
    """Pure: a running run gets ZT613 (a warning) and nothing is claimed for the rest."""
    import datetime

    from zt_pipelines.fingerprint import SPEC_LABELS, VERIFIED_LABEL
    from zt_pipelines.monitor.model import ObservedRun
    from zt_pipelines.monitor.runs import evaluate_run

    run = ObservedRun(
        name=f"projects/1/locations/{LOCATION}/pipelineJobs/j",
        job_id="j",
        project=PROJECT,
        location=LOCATION,
        state="PIPELINE_STATE_RUNNING",
        labels={SPEC_LABELS[0]: "a" * 32, SPEC_LABELS[1]: "b" * 32, VERIFIED_LABEL: "true"},
        spec_sha256="a" * 32 + "b" * 32,
        service_account=PIPELINE_SA,
    )
    approval = {
        "action": "submit",
        "outcome": "allowed",
        "spec_sha256": "a" * 32 + "b" * 32,
        "project": PROJECT,
        "location": LOCATION,
        "job_id": "j",
        "identities": [{"role": "pipeline", "service_account": PIPELINE_SA}],
    }
    verdict = evaluate_run(
        run,
        [approval],
        now=datetime.datetime.now(datetime.timezone.utc),
        spec_labels=SPEC_LABELS,
        verified_label=VERIFIED_LABEL,
    )
    assert [f.code for f in verdict.report.findings] == ["ZT613"]
    assert verdict.verified  # a warning: what ran so far matches
    # ... but it is not recorded as verified: monitor must verify the run again once it ends
    from zt_pipelines.monitor.service import post_run_decision

    record = post_run_decision(verdict, submitter="user:ci@example.com")
    assert record.outcome == "refused" and "not complete" in record.reason


def test_the_runtime_config_is_rehashed_against_the_approval(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    import dataclasses
    from datetime import datetime, timezone

    from zt_pipelines.fingerprint import DECISION_LABELS, SPEC_LABELS, VERIFIED_LABEL
    from zt_pipelines.monitor import evaluate_run

    job = submit(template, audit)
    verdict = check(job.job_id, audit, record=False)
    assert verdict.verified, verdict.report
    assert any("is the approved one" in n for n in verdict.report.notes)
    run = verdict.run
    assert run.runtime_config.get("gcs_output_directory") == EXAMPLES.PIPELINE_ROOT

    def rerun(**changes: Any) -> Any:
        return evaluate_run(
            dataclasses.replace(run, **changes),
            audit.records(),
            now=datetime.now(timezone.utc),
            spec_labels=SPEC_LABELS,
            verified_label=VERIFIED_LABEL,
            decision_labels=DECISION_LABELS,
        ).report

    # Vertex's own labels are not the user's: they do not count
    same = rerun(labels={**run.labels, "vertex-ai-pipelines-run-billing-id": "123"})
    assert same.allowed, same
    params = dict(run.runtime_config.get("parameter_values") or {})
    cases = {
        "parameter epochs is set but was not approved": {
            "runtime_config": {**run.runtime_config, "parameter_values": {**params, "epochs": 9}}
        },
        "runtime gcs_output_directory differs": {
            "runtime_config": {**run.runtime_config, "gcs_output_directory": "gs://elsewhere/r"}
        },
        "label team is set but was not approved": {"labels": {**run.labels, "team": "x"}},
        "network is set but was not approved": {"network": "projects/1/global/networks/n"},
    }
    for expected, changes in cases.items():
        report = rerun(**changes)
        [finding] = report.by_code("ZT615")
        assert expected in finding.message, (expected, finding.message)
        assert not report.allowed
    if params:
        name = sorted(params)[0]
        other = {**params, name: ["changed"]}
        report = rerun(runtime_config={**run.runtime_config, "parameter_values": other})
        assert f"parameter {name} differs" in report.by_code("ZT615")[0].message


def test_a_scheduled_run_verifies_and_a_copy_with_other_parameters_is_caught(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

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
    fired = emu.run_schedule(str(schedule.resource_name))
    verdict = check(fired, audit)
    assert verdict.verified, verdict.report
    assert verdict.approval is not None and verdict.approval["action"] == "schedule"
    assert any("is the approved one" in n for n in verdict.report.notes)
    # the same spec and labels, started by hand with another source: the schedule's approval
    # matches by spec hash, the runtime config does not
    sent = dict(emu.pipeline_jobs[fired])
    sent["runtimeConfig"].setdefault("parameterValues", {})["source"] = "gs://attacker/exfil/"
    copy = aiplatform_v1.PipelineJob.pb(aiplatform_v1.PipelineJob())
    json_format.ParseDict(sent, copy, ignore_unknown_fields=True)
    client = aiplatform_v1.PipelineServiceClient(
        credentials=emulator_credentials(SUBMITTER),
        transport="rest",
        client_options={"api_endpoint": f"http://{emu.address}"},
    )
    other = client.create_pipeline_job(
        parent=f"projects/{PROJECT}/locations/{LOCATION}",
        pipeline_job=aiplatform_v1.PipelineJob.wrap(copy),
        pipeline_job_id=new_job_id(),
    )
    caught = check(other.name, audit)
    assert not caught.verified
    [finding] = caught.report.by_code("ZT615")
    assert "parameter source" in finding.message
    assert "attacker" not in finding.message  # values are hashed, never shown or stored


@pytest.mark.parametrize(
    ("action", "approves"),
    [
        ("submit", True),
        ("run", True),
        ("schedule", True),
        ("export", True),
        ("cli-submit", True),
        ("cli-run", True),
        ("cli-schedule", True),
        ("verify", False),
        ("cli-verify", False),
        ("verify-run", False),
        ("cli-verify-run", False),
        ("drift", False),
        ("usage", False),
        ("monitor", False),
        ("provision-apply", False),
        ("x-submit", False),
        ("submit-run", False),
    ],
)
def test_only_submitting_actions_approve(action: str, approves: bool) -> None:
    from zt_pipelines.monitor.runs import approving

    assert approving({"action": action, "outcome": "allowed"}) is approves
    assert not approving({"action": action, "outcome": "refused"})


def test_a_verify_run_record_never_replaces_the_approval(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    from datetime import timedelta

    from zt_pipelines.monitor.service import relevant_approvals

    job = submit(template, audit)
    assert check(job.job_id, audit).verified
    [approval] = relevant_approvals(audit.records(), now=datetime_now(), since=timedelta(days=1))
    assert approval["action"] == "submit"
    assert any(i.get("needs") for i in approval["identities"])


def datetime_now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
