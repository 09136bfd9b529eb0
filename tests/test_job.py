"""The drop-in PipelineJob, end to end: real kfp compiles, real aiplatform, our emulator.

Every refusal must leave the emulator's state unchanged (its request log shows only reads);
every allowed submission must send exactly the spec that was verified.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.job import SPEC_LABELS, PipelineJob, _struct_to_dict, canonical_spec_bytes
from zt_pipelines.policy.snapshot_file import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "examples" / "world.yaml"
PROJECT = "zt-demo"
LOCATION = "us-central1"
PIPELINE_SA = "pipeline-sa@zt-demo.iam.gserviceaccount.com"
STEP_SAS = {
    "ingest": "ingest-sa@zt-demo.iam.gserviceaccount.com",
    "train": "train-sa@zt-demo.iam.gserviceaccount.com",
    "evaluate-and-upload": "upload-sa@zt-demo.iam.gserviceaccount.com",
}


def _load_examples() -> Any:
    spec = importlib.util.spec_from_file_location(
        "zt_example_pipeline", ROOT / "examples" / "pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EXAMPLES = _load_examples()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("templates")
    return {
        name: EXAMPLES.compile_pipeline(name, str(out / f"{name}.yaml"))
        for name in EXAMPLES.PIPELINES
    }


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_snapshot(WORLD)) as emu:
        yield emu


@pytest.fixture()
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The shared emulator with a clean log, aiplatform reset and pointed at it."""
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.address}")
    config = initializer.global_config  # aiplatform.init is bound to this object: reset in place
    saved = dict(vars(config))
    config.__init__()  # type: ignore[misc]
    aiplatform.init(project=PROJECT, location=LOCATION)
    emulator.clear_log()
    BASELINE["jobs"] = set(emulator.pipeline_jobs)
    BASELINE["schedules"] = set(emulator.schedules)
    try:
        yield emulator
    finally:
        vars(config).clear()
        vars(config).update(saved)


BASELINE: dict[str, set[str]] = {"jobs": set(), "schedules": set()}


def created_jobs(emu: Emulator) -> dict[str, dict[str, Any]]:
    """Pipeline jobs created during the current test (the emulator is shared by the module)."""
    return {k: v for k, v in emu.pipeline_jobs.items() if k not in BASELINE["jobs"]}


def created_schedules(emu: Emulator) -> dict[str, dict[str, Any]]:
    """Schedules created during the current test."""
    return {k: v for k, v in emu.schedules.items() if k not in BASELINE["schedules"]}


@pytest.fixture()
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


def make_job(template: str, audit: AuditLog, **extra: Any) -> PipelineJob:
    extra.setdefault("job_id", f"t-{uuid.uuid4().hex[:12]}")  # the module shares one emulator
    return PipelineJob(
        display_name="demo",
        template_path=template,
        credentials=emulator_credentials("user:alice@example.com"),
        audit_log=audit,
        **extra,
    )


def _walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _walk_keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_keys(v)


def step_service_accounts(spec: dict[str, Any]) -> dict[str, str]:
    """task name -> the service_account its CustomJob launcher receives (a task constant, else
    the component's pinned input default, as GCPC writes it)."""
    found: dict[str, str] = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        params = task.get("inputs", {}).get("parameters", {})
        sa = params.get("service_account", {}).get("runtimeValue", {}).get("constant")
        if sa is None:
            component = spec["components"][task["componentRef"]["name"]]
            definition = component["inputDefinitions"]["parameters"].get("service_account", {})
            sa = definition.get("defaultValue")
        if sa is not None:
            found[name] = sa
    return found


# ------------------------------------------------------------------------ signature


def test_constructor_signature_is_aiplatforms_plus_keyword_only_extras() -> None:
    base = inspect.signature(aiplatform.PipelineJob.__init__).parameters
    ours = inspect.signature(PipelineJob.__init__).parameters
    base_names = list(base)
    assert list(ours)[: len(base_names)] == base_names
    for name, param in base.items():
        assert ours[name].kind == param.kind, name
        assert ours[name].default == param.default, name
    extras = [p for name, p in ours.items() if name not in base]
    assert {p.name for p in extras} >= {"manifest", "policy", "snapshot", "audit_log"}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extras)
    assert all(p.default is None for p in extras)
    assert issubclass(PipelineJob, aiplatform.PipelineJob)
    assert zt.PipelineJob is PipelineJob


@pytest.mark.parametrize("method", ["submit", "run", "create_schedule", "from_pipeline_func"])
def test_methods_accept_everything_aiplatforms_accept(method: str) -> None:
    base = inspect.signature(getattr(aiplatform.PipelineJob, method)).parameters
    ours = inspect.signature(getattr(PipelineJob, method)).parameters
    for name, param in base.items():
        assert name in ours, f"{method}({name}) missing"
        assert ours[name].kind == param.kind, f"{method}({name})"
        assert ours[name].default == param.default, f"{method}({name})"


# ------------------------------------------------------------------------ refusals


def test_no_service_account_is_refused_before_anything_is_written(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["training"], audit)
    with pytest.raises(zt.ZeroTrustViolation) as info:
        job.submit()
    assert info.value.report.codes() == {"ZT100"}
    assert "Compute Engine default service account" in str(info.value)
    assert emu.writes() == []
    assert created_jobs(emu) == {}
    # not even the bucket lookup of create_gcs_bucket_for_pipeline_artifacts...
    assert not [r for r in emu.request_log if r.api == "storage"]
    [record] = audit.records()
    assert record["outcome"] == "refused" and record["action"] == "submit"
    assert record["findings"][0]["code"] == "ZT100"
    assert record["submitter"] == "user:alice@example.com"


def test_no_service_account_names_the_default_sa_when_the_snapshot_knows_the_number(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["training"], audit, snapshot=str(WORLD))
    report = job.verify()
    assert report.codes() == {"ZT100"}
    assert "123456789012-compute@developer.gserviceaccount.com" in str(report)


def test_default_compute_sa_argument_is_refused(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["training"], audit)
    with pytest.raises(zt.ZeroTrustViolation) as info:
        job.submit(service_account="123456789012-compute@developer.gserviceaccount.com")
    assert info.value.report.codes() == {"ZT100"}
    assert emu.writes() == []


@pytest.mark.parametrize(
    ("name", "code", "task"),
    [("missing-permission", "ZT200", "train-with-restricted-data"), ("editor", "ZT211", None)],
)
def test_bad_pipelines_are_refused_with_reads_only(
    emu: Emulator,
    templates: dict[str, str],
    audit: AuditLog,
    name: str,
    code: str,
    task: str | None,
) -> None:
    job = make_job(templates[name], audit)
    with pytest.raises(zt.ZeroTrustViolation) as info:
        job.submit(service_account=PIPELINE_SA)
    report = info.value.report
    assert code in {f.code for f in report.errors}
    if task is not None:
        assert any(f.step == task for f in report.by_code(code))
    assert emu.writes() == []
    assert created_jobs(emu) == {}
    assert all(not r.write for r in emu.request_log)
    [record] = audit.records()
    assert record["outcome"] == "refused"
    assert len(record["spec_sha256"]) == 64
    assert code in {f["code"] for f in record["findings"]}


def test_run_async_refuses_in_the_callers_thread(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["editor"], audit)
    with pytest.raises(zt.ZeroTrustViolation):
        job.run(service_account=PIPELINE_SA, sync=False)
    assert emu.writes() == []


def test_create_schedule_is_refused_without_a_schedule(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["missing-permission"], audit)
    with pytest.raises(zt.ZeroTrustViolation):
        job.create_schedule(cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA)
    assert emu.writes() == []
    assert created_schedules(emu) == {}


def test_pipeline_job_schedule_built_from_our_job_is_verified(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["training"], audit)
    with pytest.raises(zt.ZeroTrustViolation) as info:  # no aiplatform.init SA → ZT100
        aiplatform.PipelineJobSchedule(
            pipeline_job=job, display_name="direct", credentials=job.credentials
        )
    assert info.value.report.codes() == {"ZT100"}
    assert emu.writes() == []
    assert audit.records()[-1]["action"] == "export"


# ------------------------------------------------------------------------ allowed


def test_allowed_submission_sends_exactly_the_verified_spec(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["training"], audit)
    job.submit(service_account=PIPELINE_SA)
    [sent] = created_jobs(emu).values()
    assert sent["serviceAccount"] == PIPELINE_SA
    spec = sent["pipelineSpec"]
    # every step runs as its own declared SA, launched as a CustomJob
    assert step_service_accounts(spec) == STEP_SAS
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"].startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components")
        assert "google_cloud_pipeline_components.container.v1.custom_job.launcher" in " ".join(
            container["command"]
        )
    # no metadata of ours reaches Vertex
    assert "zt_pipelines" not in set(_walk_keys(sent))
    assert "platforms" not in spec
    # verified bytes == submitted bytes: one hash in the label, the record and the object
    submitted = hashlib.sha256(canonical_spec_bytes(spec)).hexdigest()
    labels = sent["labels"]
    assert labels[SPEC_LABELS[0]] + labels[SPEC_LABELS[1]] == submitted
    assert job.verified_sha256 == submitted
    [record] = audit.records()
    assert record["outcome"] == "allowed" and record["spec_sha256"] == submitted
    assert {i["task"]: i["service_account"] for i in record["identities"] if i["task"]} == (
        STEP_SAS
    )
    # and the object aiplatform submitted holds the same bytes
    installed = _struct_to_dict(job._gca_resource.pipeline_spec)
    assert canonical_spec_bytes(installed) == canonical_spec_bytes(spec)


def test_service_account_from_aiplatform_init_is_used(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    aiplatform.init(service_account=PIPELINE_SA)
    job = make_job(templates["training"], audit)
    job.run(sync=True)
    [sent] = created_jobs(emu).values()
    assert sent["serviceAccount"] == PIPELINE_SA
    assert audit.records()[-1]["action"] == "run"
    assert len(audit.records()) == 1  # run() verified once, submit() reused it


def test_verify_returns_a_report_and_writes_nothing(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    ok = make_job(templates["training"], audit).verify(service_account=PIPELINE_SA)
    bad = make_job(templates["editor"], audit).verify(service_account=PIPELINE_SA)
    assert ok.allowed and not bad.allowed
    assert "ZT211" in bad.codes()
    assert emu.writes() == []
    assert "<table" in bad._repr_html_()


def test_notebook_views_show_untrusted_names_as_text(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    """A display name is any UTF-8 a project member chose (a job from get()/list() included):
    every HTML view shows it as text; so does a refusal without a report."""
    name = 'x<img src=x onerror="alert(document.domain)"><script>alert(1)</script>'
    job = make_job(templates["training"], audit)
    job._gca_resource.display_name = name
    for view in (
        job._repr_html_(),
        (job.verify(service_account=PIPELINE_SA), job._repr_html_())[1],
    ):
        assert "<img" not in view and "<script" not in view
        assert "x&lt;img src=x onerror=&quot;alert(document.domain)&quot;&gt;" in view
    bare = zt.ZeroTrustViolation(f"refused {name}")._repr_html_()
    assert "<img" not in bare and "<script" not in bare and bare.startswith("<pre>")


def test_create_schedule_uses_the_verified_spec(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["training"], audit)
    job.create_schedule(cron="0 * * * *", display_name="hourly", service_account=PIPELINE_SA)
    [served] = created_schedules(emu).values()
    sent = served["createPipelineJobRequest"]["pipelineJob"]
    assert sent["serviceAccount"] == PIPELINE_SA
    assert step_service_accounts(sent["pipelineSpec"]) == STEP_SAS
    digest = hashlib.sha256(canonical_spec_bytes(sent["pipelineSpec"])).hexdigest()
    assert digest == audit.records()[-1]["spec_sha256"] == job.verified_sha256


def test_from_pipeline_func_builds_a_verified_job(emu: Emulator, audit: AuditLog) -> None:
    job = PipelineJob.from_pipeline_func(
        EXAMPLES.training_pipeline,
        job_id=f"t-{uuid.uuid4().hex[:12]}",
        credentials=emulator_credentials("user:alice@example.com"),
        audit_log=audit,
    )
    assert isinstance(job, PipelineJob)
    job.submit(service_account=PIPELINE_SA)
    [sent] = created_jobs(emu).values()
    assert step_service_accounts(sent["pipelineSpec"]) == STEP_SAS


def test_no_token_in_the_audit_log(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    creds = emulator_credentials("user:alice@example.com")
    job = make_job(templates["training"], audit)
    job.submit(service_account=PIPELINE_SA)
    assert creds.token not in audit.path.read_text()
    assert os.environ.get("ZT_EMULATOR_HOST")


def test_pipeline_job_schedule_from_our_job_gets_the_verified_spec(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    aiplatform.init(service_account=PIPELINE_SA)
    job = make_job(templates["training"], audit)
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name="direct", credentials=job.credentials
    )
    schedule.create(cron="0 3 * * *")
    [served] = created_schedules(emu).values()
    sent = served["createPipelineJobRequest"]["pipelineJob"]
    assert step_service_accounts(sent["pipelineSpec"]) == STEP_SAS
    digest = hashlib.sha256(canonical_spec_bytes(sent["pipelineSpec"])).hexdigest()
    assert digest == job.verified_sha256 == audit.records()[-1]["spec_sha256"]
    assert audit.records()[-1]["action"] == "export"


def test_run_async_allowed_then_wait(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["training"], audit)
    job.run(service_account=PIPELINE_SA, sync=False)
    job.wait()
    [sent] = created_jobs(emu).values()
    assert step_service_accounts(sent["pipelineSpec"]) == STEP_SAS


def test_no_audit_record_no_submission(
    emu: Emulator, templates: dict[str, str], tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()  # the audit log path is a directory: the record cannot be written
    job = make_job(templates["training"], AuditLog(blocked))
    with pytest.raises(zt.ApiError, match="audit log"):
        job.submit(service_account=PIPELINE_SA)
    assert emu.writes() == []
    assert created_jobs(emu) == {}


def test_refusal_message_is_a_readable_table_and_html_in_notebooks(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["missing-permission"], audit)
    with pytest.raises(zt.ZeroTrustViolation) as info:
        job.submit(service_account=PIPELINE_SA)
    text = str(info.value)
    assert text.splitlines()[0].startswith("refused: ")
    assert "REFUSED: zt-demo-missing-permission" in text
    assert "\nstep " in text and "error   ZT200" in text and "fix: " in text
    html = info.value._repr_html_()
    assert "<table" in html and "ZT200" in html and "<details" in html and "fix:" in html
    assert "ZT200" in job._repr_html_()


def test_mirror_receives_the_jobs_decisions(
    emu: Emulator, templates: dict[str, str], tmp_path: Path
) -> None:
    from zt_pipelines.audit import InMemoryMirror

    mirror = InMemoryMirror()
    job = make_job(templates["training"], AuditLog(tmp_path / "a.jsonl", mirror=mirror))
    job.submit(service_account=PIPELINE_SA)
    assert [r["outcome"] for r in mirror.records] == ["allowed"]
    assert mirror.records[0]["spec_sha256"] == job.verified_sha256


def test_snapshot_mode_verifies_offline(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    job = make_job(templates["editor"], audit, snapshot=str(WORLD))
    report = job.verify(service_account=PIPELINE_SA)
    assert "ZT211" in report.codes()
    # the IAM state came from the file: no IAM/Resource Manager/Storage IAM reads
    assert not [r for r in emu.request_log if r.api in ("iam", "cloudresourcemanager")]


def test_a_clone_is_verified_too(emu: Emulator, templates: dict[str, str], audit: AuditLog) -> None:
    original = make_job(templates["editor"], audit)
    cloned = original.clone(job_id=f"t-{uuid.uuid4().hex[:12]}")
    assert isinstance(cloned, PipelineJob)
    with pytest.raises(zt.ZeroTrustViolation) as info:
        cloned.submit(service_account=PIPELINE_SA)
    assert "ZT211" in info.value.report.codes()
    assert emu.writes() == []
    assert audit.records()[-1]["outcome"] == "refused"


def test_a_malformed_emulator_address_is_bad_input(
    templates: dict[str, str], audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_HOST", "not an address")
    with pytest.raises(zt.InputError, match="HOST:PORT"):
        make_job(templates["training"], audit)


@pytest.mark.parametrize(
    "account",
    ["pipeline-sa@zt-demo.iam.gserviceaccount.com.", "pipеline-sa@zt-demo.iam.gserviceaccount.com"],
)
def test_a_malformed_pipeline_sa_is_bad_input_and_audited(
    emu: Emulator, templates: dict[str, str], audit: AuditLog, account: str
) -> None:
    job = make_job(templates["training"], audit)
    with pytest.raises(zt.IdentityError):
        job.submit(service_account=account)  # a stray dot; a Cyrillic 'е' (homoglyph)
    assert emu.writes() == []
    [record] = audit.records()
    assert record["outcome"] == "refused" and "service account" in record["reason"]


def test_bad_template_is_a_typed_error(tmp_path: Path, audit: AuditLog) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: [a, list\n")
    with pytest.raises(zt.TemplateError, match=r"bad\.yaml"):
        make_job(str(bad), audit)


def test_an_identity_only_known_at_run_time_is_zt102(
    emu: Emulator, audit: AuditLog, tmp_path: Path
) -> None:
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim")
    def hello():  # type: ignore[no-untyped-def]
        print("hello")

    def body(step_sa: str) -> None:
        zt.step.on(hello(), service_account=step_sa)

    body.__annotations__ = {
        "step_sa": str
    }  # this module's annotations are strings; kfp reads types
    pipeline = dsl.pipeline(name="param-sa", pipeline_root="gs://zt-demo-pipeline-root/runs")(body)

    path = str(tmp_path / "param.yaml")
    compiler.Compiler().compile(pipeline, package_path=path)
    job = make_job(path, audit)  # no parameter_values: the step's SA is unknown until run time
    with pytest.raises(zt.ZeroTrustViolation) as info:
        job.submit(service_account=PIPELINE_SA)
    assert info.value.report.codes() == {"ZT102"}
    assert emu.writes() == []
    assert audit.records()[-1]["findings"][0]["code"] == "ZT102"


def test_template_from_gcs_keeps_its_declarations(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    from google.cloud import storage

    writer = emulator_credentials("serviceAccount:pipeline-sa@zt-demo.iam.gserviceaccount.com")
    client = storage.Client(project=PROJECT, credentials=writer)
    blob = client.bucket("zt-demo-pipeline-root").blob("templates/training.yaml")
    blob.upload_from_filename(templates["training"])
    job = PipelineJob(
        display_name="from-gcs",
        template_path="gs://zt-demo-pipeline-root/templates/training.yaml",
        credentials=writer,
        audit_log=audit,
        snapshot=str(WORLD),
        job_id=f"t-{uuid.uuid4().hex[:12]}",
    )
    # the PlatformSpec document (our declarations) survived the trip through storage
    report = job.verify(service_account=PIPELINE_SA)
    assert {i["service_account"] for i in audit.records()[-1]["identities"]} >= set(
        STEP_SAS.values()
    )
    assert "ZT100" not in report.codes()


def test_fields_changed_on_the_resource_after_verification_are_not_submitted(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    # verified with no network and the constructor's parameter values; a later edit of the
    # aiplatform resource must not reach Vertex (aiplatform keeps a network it is not given)
    job = make_job(templates["training"], audit)
    job._gca_resource.network = "projects/123/global/networks/unverified"
    job._gca_resource.runtime_config.parameter_values["source"] = {"string_value": "gs://other/"}
    job.submit(service_account=PIPELINE_SA)
    [sent] = created_jobs(emu).values()
    assert not sent.get("network")
    assert "source" not in sent["runtimeConfig"].get(
        "parameterValues", {}
    )  # the default, as verified
    assert not job._gca_resource.network


def test_pipeline_job_schedule_from_our_job_gets_the_verified_parameters(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    # PipelineJobSchedule reads job.runtime_config before job.pipeline_spec (which verifies)
    aiplatform.init(service_account=PIPELINE_SA)
    job = make_job(templates["training"], audit)
    job._gca_resource.runtime_config.parameter_values["source"] = {"string_value": "gs://other/"}
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name="params", credentials=job.credentials
    )
    schedule.create(cron="0 3 * * *")
    [served] = created_schedules(emu).values()
    runtime = served["createPipelineJobRequest"]["pipelineJob"]["runtimeConfig"]
    assert "source" not in runtime.get("parameterValues", {})  # the default, as verified


def test_an_unexpected_error_during_verification_is_audited_as_refused(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    def broken_clock() -> Any:
        raise RuntimeError("clock unavailable")

    job = make_job(templates["training"], audit, clock=broken_clock)
    with pytest.raises(RuntimeError):
        job.submit(service_account=PIPELINE_SA)
    assert not created_jobs(emu)
    [record] = audit.records()
    assert record["outcome"] == "refused" and "clock unavailable" in record["reason"]


def test_a_schedule_built_after_submit_is_verified_and_audited_again(
    emu: Emulator, templates: dict[str, str], audit: AuditLog
) -> None:
    aiplatform.init(service_account=PIPELINE_SA)
    job = make_job(templates["training"], audit)
    job.submit()
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name="later", credentials=job.credentials
    )
    schedule.create(cron="0 3 * * *")
    assert [r["action"] for r in audit.records()] == ["submit", "export"]
