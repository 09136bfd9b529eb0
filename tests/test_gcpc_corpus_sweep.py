"""Every one of Google's 41 GCPC 2.22 pipelines, end to end: rewrite → ``plan`` → ``apply``
(emulator, real clients) → ``check`` → the drop-in ``zt.PipelineJob`` submit → the run.

Each pipeline starts in an empty project (only the platform engineer's provisioning role and
the pipeline-root bucket, tests/test_gcpc_corpus_plan.py's world) with a submitter who may see
the project, its runs and the root bucket (``submit`` reads the bucket's owner). After ``plan``
and ``apply``:

- ``check`` refuses only for ZT102 — a value known only at run time pasted into a launcher's
  payload, in every AutoML and evaluation template Google ships. That finding is real: no
  severity relaxes it, so a reviewer waives it step by step, naming the upstream digest of what
  feeds the step (``waivers``). Nothing else is refused: no grant is missing, nothing is
  unverifiable, no identity is shared or default;
- with those waivers ``check`` is ALLOWED, and a second ``plan`` has nothing left to do;
- the drop-in submit (verified against the applied world) creates the pipeline job, and the
  emulator's run (``simulate_runs``: the pipeline identity writes the root and launches every
  step's CustomJob) succeeds with every step's job under that step's own identity.

Pipelines whose parameters have no default get plausible values (``_values``).
"""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import GCPC_CORPUS, require_shared
from test_gcpc_corpus_plan import (
    ADMIN,
    LOCATION,
    PIPELINE_SA,
    PROJECT,
    ROOT,
    SUBMITTER,
    empty_project,
    waivers,
)

import zt_pipelines as zt
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Role, Snapshot
from zt_pipelines.provision.apply import apply_plan
from zt_pipelines.spec import load_template, rewrite_pipeline

BUCKET = "//storage.googleapis.com/zt-gcpc-corpus-root"
CRM = "//cloudresourcemanager.googleapis.com/projects/"
# values of parameters that name a place or a resource; the rest get one of their type
NAMED: dict[str, Any] = {
    "project": PROJECT,
    "location": LOCATION,
    "root_dir": "gs://zt-gcpc-corpus-root/work",
    "model_name": f"projects/{PROJECT}/locations/{LOCATION}/models/1234",
    "batch_predict_gcs_destination_output_uri": "gs://zt-gcpc-corpus-root/predictions",
    "batch_predict_instances_format": "jsonl",
    "prediction_type": "classification",
    "large_model_reference": "llama-2-7b",
    "task_type": "summarization",
    "task": "summarization",
    "dataprep_train_end_date": "2024-01-01",
    "dataprep_test_set_bigquery_dataset": f"bq://{PROJECT}.test",
}
BY_TYPE: dict[str, Any] = {
    "NUMBER_INTEGER": 2,
    "NUMBER_DOUBLE": 1.0,
    "LIST": ["a"],
    "STRUCT": {"a": "b"},
    "BOOLEAN": False,
}


def _names() -> list[str]:
    files = sorted(p.name for p in GCPC_CORPUS.glob("*/*.yaml"))
    return files or ["(Google's GCPC pipelines are missing)"]


def _values(ir: dict[str, Any]) -> dict[str, Any]:
    params = (ir["root"].get("inputDefinitions") or {}).get("parameters") or {}
    out: dict[str, Any] = {}
    for name, definition in params.items():
        if name in NAMED:
            out[name] = NAMED[name]
        elif "defaultValue" not in definition and not definition.get("isOptional"):
            kind = definition["parameterType"]
            text = f"gs://zt-gcpc-corpus-root/in/{name}" if "dataset" in name else name
            out[name] = BY_TYPE.get(kind, text)
    return out


def _world() -> Snapshot:
    """The empty project, and a submitter who may see the project, its runs and the root."""
    snap = empty_project()
    nodes = dict(snap.nodes)
    reader = f"projects/{PROJECT}/roles/rootReader"
    viewer = f"projects/{PROJECT}/roles/runs"
    nodes[BUCKET] = replace(
        nodes[BUCKET], policy=AllowPolicy((Binding(reader, (SUBMITTER,)),), etag="b0")
    )
    project = nodes[CRM + PROJECT]
    assert project.policy is not None
    bindings = (*project.policy.bindings, Binding(viewer, (SUBMITTER,)))
    nodes[CRM + PROJECT] = replace(project, policy=replace(project.policy, bindings=bindings))
    roles = {
        **snap.roles,
        reader: Role(reader, frozenset({"storage.buckets.get"}), "root reader"),
        viewer: Role(
            viewer,
            frozenset({"resourcemanager.projects.get", "aiplatform.pipelineJobs.get"}),
            "runs viewer",
        ),
    }
    return replace(snap, nodes=nodes, roles=roles)


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    from zt_pipelines.demo import _environment

    with Emulator(_world(), simulate_runs=True) as emu, _environment(emu.address):
        yield emu


@pytest.mark.shared
@pytest.mark.parametrize("name", _names())
def test_a_google_pipeline_is_allowed_after_plan_apply_and_runs_as_its_steps(
    name: str, emulator: Emulator, tmp_path: Path
) -> None:
    template = require_shared(next(GCPC_CORPUS.glob(f"*/{name}"), GCPC_CORPUS / name))
    ir, _ = load_template(template)
    params = _values(ir)
    kw: dict[str, Any] = dict(
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        pipeline_root=ROOT,
        parameter_values=params,
        submitter=SUBMITTER,
    )
    plan = zt.plan(template, snapshot=emulator.state, **kw)
    factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emulator.address)
    try:
        apply_plan(plan, factory=factory, retry=no_wait_policy(), audit_log=tmp_path / "a.jsonl")
    finally:
        factory.close()

    # the only refusal left is the real one: run-time values pasted into launcher payloads
    unwaived = zt.check(template, snapshot=emulator.state, **kw)
    errors = {f.code for f in unwaived.findings if f.severity.value == "error"}
    steps = rewrite_pipeline(template, project=PROJECT, parameter_values=params).steps
    pasting = {s.task for s in steps if s.unescaped_payload_inputs}
    assert errors == ({"ZT102"} if pasting else set()), str(unwaived)
    assert {f.step for f in unwaived.findings if f.code == "ZT102"} == pasting

    policy = waivers(template, params)
    report = zt.check(template, snapshot=emulator.state, policy=policy, **kw)
    assert report.allowed, str(report)
    assert zt.plan(template, snapshot=emulator.state, **kw).is_noop

    # the drop-in job: verified against the applied world, submitted, and run
    from google.cloud import aiplatform

    alice = emulator_credentials(SUBMITTER)
    aiplatform.init(project=PROJECT, location=LOCATION, credentials=alice)
    job = zt.PipelineJob(
        display_name="gcpc-sweep",
        template_path=str(template),
        pipeline_root=ROOT,
        parameter_values=params,
        policy=policy,
        snapshot=emulator.state,
        audit_log=tmp_path / "audit.jsonl",
    )
    job.submit(service_account=PIPELINE_SA)
    assert job.last_report is not None and job.last_report.allowed
    ran = aiplatform.PipelineJob.get(job.resource_name, credentials=alice)
    assert ran.state.name == "PIPELINE_STATE_SUCCEEDED", ran.error
    assert emulator.pipeline_jobs[job.resource_name]["serviceAccount"] == PIPELINE_SA
    # every step's job runs as the step's own identity — but a GCPC launcher left in place
    # (batch prediction, Dataflow ...), which is Google's code run as the pipeline identity and
    # starts its job under the step's identity, pinned in the payload
    expected = []
    for step in steps:
        if step.wrapped_launcher or step.job_kind == "CustomJob":
            expected.append(step.service_account)
        else:
            assert step.launched_service_account == step.service_account, step.task
            expected.append(PIPELINE_SA)
    ran_as = [c["jobSpec"].get("serviceAccount") for c in emulator.custom_jobs.values()]
    assert sorted(ran_as) == sorted(expected), ran_as
    own = [member for _, member in report.step_identities]
    assert len(set(own)) == len(own) == len(expected)
