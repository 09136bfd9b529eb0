"""``make demo``: one allowed submission and four refusals, against the built-in emulator.

Starts the emulator with the example world (``examples/world.yaml``), compiles the example
training pipeline (``examples/pipeline.py``: ingest → train → evaluate-and-upload, each declared
with ``@zt.step``), verifies and submits it through :class:`zt_pipelines.PipelineJob` — the real
aiplatform client over REST to the emulator — and then shows four refused attempts:

1. no service account (Vertex would use the Compute Engine default identity) → ZT100;
2. a step whose identity lacks a permission it declared → ZT200;
3. a step whose identity holds ``roles/editor`` → ZT211;
4. a step on a VPC whose firewall lets it reach beyond its declared ``reach`` → ZT522.

Each refusal is checked against the emulator's request log: no write reached it.

Then Google Cloud Pipeline Components (``examples/gcpc_pipeline.py``, submitted as its shipped
compile ``examples/gcpc_pipeline.yaml``, so GCPC need not be installed): BigQuery query →
preprocessing → ``CustomTrainingJobOp`` → evaluation → ``dsl.If`` → ``ModelUploadOp`` →
``EndpointCreateOp`` → ``ModelDeployOp`` in a ``dsl.ExitHandler``. None of its identities
exist: ``plan`` derives them and every implicit GCPC need, ``apply`` (as the platform engineer)
creates them, the drop-in job verifies and submits, and the emulator runs it — every CustomJob
under its own service account.

Every decision is appended to a hash-chained audit log, which is verified at the end. IO: this
module starts a server, sets environment variables for its duration and prints.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from zt_pipelines.errors import InputError, ZeroTrustViolation

# the examples ship inside the package (zt_pipelines/examples links to the checkout's examples/)
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


@dataclass
class DemoResult:
    """What the demo did (for tests and the exit code).

    Attributes:
        submitted: resource name of the allowed pipeline job (empty if it was not created).
        step_accounts: task → service account, read back from the job the emulator received.
        refusals: attempt name → the refusing finding codes.
        writes_during_refusals: emulator writes seen while the refusals ran (must be 0).
        audit_ok: the audit chain verified intact.
        audit_records: records in the audit log.
        gcpc_submitted: resource name of the GCPC example's pipeline job (empty if refused).
        gcpc_custom_jobs: task → service account of every CustomJob the emulator ran for it.
        seconds: wall time.
    """

    submitted: str = ""
    step_accounts: dict[str, str] = field(default_factory=dict)
    refusals: dict[str, set[str]] = field(default_factory=dict)
    writes_during_refusals: int = 0
    audit_ok: bool = False
    audit_records: int = 0
    gcpc_submitted: str = ""
    gcpc_custom_jobs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The demo showed what it promises: one allowed job, four refusals, no writes, and
        the GCPC example submitted with every CustomJob under its own identity."""
        return (
            bool(self.submitted)
            and self.refusals.get("no service account", set()) >= {"ZT100"}
            and self.refusals.get("missing permission", set()) >= {"ZT200"}
            and self.refusals.get("roles/editor", set()) >= {"ZT211"}
            and self.refusals.get("segmentation", set()) >= {"ZT522"}
            and self.writes_during_refusals == 0
            and bool(self.gcpc_submitted)
            # every CustomJob of the GCPC run under its own, non-empty identity
            and bool(self.gcpc_custom_jobs)
            and all(self.gcpc_custom_jobs.values())
            and len(set(self.gcpc_custom_jobs.values())) == len(self.gcpc_custom_jobs)
            and self.audit_ok
        )


def load_examples(examples_dir: Path = EXAMPLES_DIR) -> ModuleType:
    """Import ``examples/pipeline.py`` from ``examples_dir``.

    Raises:
        InputError: the directory has no example pipeline (not a source checkout).
    """
    path = examples_dir / "pipeline.py"
    if not path.is_file() or not (examples_dir / "world.yaml").is_file():
        raise InputError(
            "the example pipeline and world are missing",
            where=str(examples_dir),
            fix="reinstall zt-pipelines (the examples ship inside it) or pass --examples DIR",
        )
    return _import(path, "zt_examples_pipeline")


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise InputError("cannot import the example pipeline", where=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def _environment(address: str) -> Iterator[None]:
    """Point aiplatform and our adapters at the emulator for the demo, then restore."""
    from google.cloud.aiplatform import initializer

    names = ("ZT_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "NO_GCE_CHECK")
    saved_env = {name: os.environ.get(name) for name in names}
    config = initializer.global_config
    saved_config = dict(vars(config))
    quiet = [logging.getLogger("google.cloud.aiplatform")] + [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("google.cloud.aiplatform.") and isinstance(logger, logging.Logger)
    ]
    saved_levels = [logger.level for logger in quiet]
    os.environ["ZT_EMULATOR_HOST"] = address
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://{address}"
    os.environ["NO_GCE_CHECK"] = "True"  # no metadata-server probe: there is no cloud here
    # aiplatform logs its own progress (and, against an emulator, fails to look up the project
    # number for its bucket-ownership check from the real Resource Manager): keep it quiet.
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        vars(config).clear()
        vars(config).update(saved_config)
        for logger, level in zip(quiet, saved_levels, strict=True):
            logger.setLevel(level)


def run_demo(
    out: TextIO | None = None,
    *,
    examples_dir: Path = EXAMPLES_DIR,
    audit_log: Path | None = None,
) -> DemoResult:
    """Run the demo, printing to ``out`` (stdout by default); see the module docstring."""
    stream = out or sys.stdout
    started = time.monotonic()
    result = DemoResult()

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    examples = load_examples(examples_dir)
    from google.cloud import aiplatform

    from zt_pipelines.audit import AuditLog
    from zt_pipelines.emulator import Emulator, emulator_credentials
    from zt_pipelines.job import PipelineJob
    from zt_pipelines.policy.snapshot_file import load_snapshot

    world = load_snapshot(examples_dir / "world.yaml")
    gcpc_template = examples_dir / "gcpc_pipeline.yaml"
    if not gcpc_template.is_file() or not (examples_dir / "gcpc_pipeline.py").is_file():
        raise InputError(
            "the GCPC example pipeline is missing",
            where=str(examples_dir),
            fix="reinstall zt-pipelines (the examples ship inside it) or pass --examples DIR",
        )
    gcpc = _import(examples_dir / "gcpc_pipeline.py", "zt_examples_gcpc_pipeline")
    with tempfile.TemporaryDirectory(prefix="zt-demo-") as tmp:
        log = AuditLog(audit_log or Path(tmp) / "audit.jsonl")
        templates = {
            name: examples.compile_pipeline(name, str(Path(tmp) / f"{name}.yaml"))
            for name in examples.PIPELINES
        }
        with Emulator(world, simulate_runs=True) as emu, _environment(emu.address):
            aiplatform.init(project=examples.PROJECT, location=examples.LOCATION)
            alice = emulator_credentials(examples.SUBMITTER)
            say(f"zt-pipelines demo — emulator on {emu.address}, world {examples_dir}/world.yaml")
            say(f"submitter {examples.SUBMITTER}; audit log {log.path}")
            say()

            def job(name: str) -> PipelineJob:
                return PipelineJob(
                    display_name=f"demo-{name}",
                    template_path=templates[name],
                    job_id=f"zt-demo-{name}-{uuid.uuid4().hex[:8]}",
                    credentials=alice,
                    audit_log=log,
                )

            say("1. The training pipeline: ingest → train → evaluate-and-upload")
            allowed = job("training")
            try:
                allowed.submit(service_account=examples.PIPELINE_SA)
            except ZeroTrustViolation as exc:  # the example world should allow it: say why not
                say("   !! the example pipeline was refused:")
                _show_errors(say, exc.report)
            else:
                sent = emu.pipeline_jobs.get(allowed.resource_name) or {}
                result.submitted = allowed.resource_name if sent else ""
                result.step_accounts = _step_accounts(sent.get("pipelineSpec", {}))
                say(f"   ALLOWED and submitted: {allowed.resource_name}")
                say(f"   pipeline SA  {sent.get('serviceAccount', '?')}")
                for task, account in sorted(result.step_accounts.items()):
                    say(f"   step {task:<20} runs as {account}")
                say(f"   spec sha256  {allowed.verified_sha256} (job labels + audit record)")
                found = len(allowed.last_report.findings) if allowed.last_report else 0
                say(f"   findings     {found} (0 errors)")
            say()

            attempts = [
                (
                    "no service account",
                    "training",
                    None,
                    "no service_account and none in aiplatform.init()",
                ),
                (
                    "missing permission",
                    "missing-permission",
                    examples.PIPELINE_SA,
                    "train also reads gs://zt-demo-restricted",
                ),
                (
                    "roles/editor",
                    "editor",
                    examples.PIPELINE_SA,
                    "evaluate-and-upload runs as legacy-sa",
                ),
                (
                    "segmentation",
                    "open-egress",
                    examples.PIPELINE_SA,
                    "ingest on ml-vpc declares Cloud Storage, the firewall opens HTTPS anywhere",
                ),
            ]
            for number, (label, name, account, why) in enumerate(attempts, start=2):
                say(f"{number}. Refused: {label} ({why})")
                before = len(emu.writes())
                try:
                    job(name).submit(service_account=account)
                except ZeroTrustViolation as exc:
                    result.refusals[label] = {f.code for f in exc.report.errors}
                    _show_errors(say, exc.report)
                else:
                    say("   !! this attempt was NOT refused")
                written = len(emu.writes()) - before
                result.writes_during_refusals += written
                say(f"   emulator writes during this attempt: {written}")
                say()

            _gcpc_section(say, result, gcpc, gcpc_template, emu, alice, log)
            say()

        chain = log.verify()
        result.audit_ok = chain.ok
        result.audit_records = chain.records
        say(
            f"Audit log: {chain.records} decisions, chain "
            f"{'intact' if chain.ok else 'BROKEN'}, head {chain.head[:16]}…"
        )
        if audit_log:
            say(f"(verify it yourself: zt-pipelines audit verify {log.path})")
    result.seconds = time.monotonic() - started
    say(f"{'OK' if result.ok else 'FAILED'}: demo finished in {result.seconds:.1f} s")
    return result


def _gcpc_section(
    say: Any,
    result: DemoResult,
    gcpc: ModuleType,
    template: Path,
    emu: Any,
    alice: Any,
    log: Any,
) -> None:
    """6. The GCPC example: plan → apply → verify and submit → the run's CustomJobs."""
    from google.cloud import aiplatform

    from zt_pipelines.emulator import emulator_credentials
    from zt_pipelines.gcp.clients import ClientFactory
    from zt_pipelines.job import PipelineJob
    from zt_pipelines.policy.wording import plural
    from zt_pipelines.provision import plan as make_plan
    from zt_pipelines.provision.apply import apply_plan

    say("6. Google Cloud Pipeline Components (examples/gcpc_pipeline.py): BigQuery → preprocess")
    say("   → CustomTrainingJobOp → evaluate → If → ModelUpload → EndpointCreate → ModelDeploy")
    plan = make_plan(
        str(template),
        project=gcpc.PROJECT,
        location=gcpc.LOCATION,
        pipeline_service_account=gcpc.PIPELINE_SA,
        snapshot=emu.state,
        submitter=gcpc.SUBMITTER,
    )
    created = [a for a in plan.accounts if a.state == "create"]
    say(
        f"   plan: {plural(len(created), 'service account')} to create, "
        f"{plural(len(plan.grants), 'grant')} "
        "(declared data access + every implicit GCPC need)"
    )
    factory = ClientFactory(
        emulator_credentials(gcpc.PLATFORM), emulator_host=emu.address, project=gcpc.PROJECT
    )
    try:
        apply_plan(plan, factory=factory, audit_log=log)
    finally:
        factory.close()
    say(f"   applied as {gcpc.PLATFORM}")
    job = PipelineJob(
        display_name="demo-gcpc",
        template_path=str(template),
        job_id=f"zt-demo-gcpc-{uuid.uuid4().hex[:8]}",
        credentials=alice,
        audit_log=log,
    )
    try:
        job.submit(service_account=gcpc.PIPELINE_SA)
    except ZeroTrustViolation as exc:
        say("   !! the GCPC example was refused:")
        _show_errors(say, exc.report)
        return
    result.gcpc_submitted = job.resource_name
    say(f"   ALLOWED and submitted: {job.resource_name}")
    # reading the job back lets the emulator run it: one CustomJob per step, as Vertex would
    before = set(emu.custom_jobs)
    ran = aiplatform.PipelineJob.get(job.resource_name, credentials=alice)
    say(f"   run state    {ran.state.name if ran.state is not None else '?'}")
    for name, custom in sorted(emu.custom_jobs.items(), key=lambda i: str(i[1]["displayName"])):
        if name in before:
            continue
        task = str(custom.get("displayName", ""))
        account = str((custom.get("jobSpec") or {}).get("serviceAccount", ""))
        result.gcpc_custom_jobs[task] = account
        say(f"   CustomJob {task:<42} runs as {account or '(the Custom Code Service Agent!)'}")


def _show_errors(say: Any, report: Any) -> None:
    for finding in report.errors:
        who = (finding.principal or "").removeprefix("serviceAccount:") or "-"
        where = f"step {finding.step}" if finding.step else "pipeline"
        say(f"   {finding.code}  {where}  {who}")
        for line in textwrap.wrap(finding.message, width=92, break_on_hyphens=False):
            say(f"          {line}")


def _step_accounts(spec: dict[str, Any]) -> dict[str, str]:
    """task → service account, read from a submitted spec (task constant or pinned default)."""
    found: dict[str, str] = {}
    components = spec.get("components", {})
    for name, task in spec.get("root", {}).get("dag", {}).get("tasks", {}).items():
        params = task.get("inputs", {}).get("parameters", {})
        account = params.get("service_account", {}).get("runtimeValue", {}).get("constant")
        if account is None:
            component = components.get(task.get("componentRef", {}).get("name", ""), {})
            definitions = component.get("inputDefinitions", {}).get("parameters", {})
            account = definitions.get("service_account", {}).get("defaultValue")
        if account:
            found[name] = str(account)
    return found
