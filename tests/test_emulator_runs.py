# no "from __future__ import annotations": kfp reads the component annotations at runtime
"""``simulate_runs``: a pipeline job fails the way Vertex would fail it once it runs — the
run-as SA launching a GCPC CustomJob step without actAs on the step's SA — driven through the
real aiplatform.PipelineJob.run()."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_emulator_world import (
    ADMIN,
    PIPELINE_SA,
    PROJECT,
    STEP_SA,
    restored_aiplatform_config,
    vertex_init,
    world,
)

from zt_pipelines.emulator import Emulator
from zt_pipelines.emulator.runs import step_launches
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, Snapshot

STEP_NODE = f"//iam.googleapis.com/projects/proj-alpha/serviceAccounts/{STEP_SA}"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def train(text: str) -> str:
        return text

    train_job = create_custom_training_job_from_component(train, display_name="train")

    @dsl.pipeline(name="runs-emulator")
    def pipeline(step_sa: str = STEP_SA) -> None:
        train_job(text="a", service_account=step_sa)
        train_job(text="b", service_account="")

    path = tmp_path_factory.mktemp("tpl") / "runs.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def run_world(step_sa_grants_pipeline: bool) -> Snapshot:
    base = world()
    roles = dict(base.roles)
    roles["roles/storage.objectCreator"] = Role(
        "roles/storage.objectCreator", frozenset({"storage.objects.create"})
    )
    nodes = dict(base.nodes)
    project = nodes[PROJECT]
    assert project.policy is not None
    nodes[PROJECT] = dataclasses.replace(
        project,
        policy=dataclasses.replace(
            project.policy,
            bindings=(
                *project.policy.bindings,
                Binding("roles/aiplatform.user", (f"serviceAccount:{PIPELINE_SA}",)),
            ),
        ),
    )
    if step_sa_grants_pipeline:
        nodes[STEP_NODE] = dataclasses.replace(
            nodes.get(STEP_NODE) or _step_node(),
            policy=AllowPolicy(
                (Binding("roles/iam.serviceAccountUser", (f"serviceAccount:{PIPELINE_SA}",)),)
            ),
        )
    return dataclasses.replace(base, roles=roles, nodes=nodes)


def _step_node() -> Node:
    return Node(STEP_NODE, "serviceAccount", parent=PROJECT)


@pytest.fixture()
def vertex(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from restored_aiplatform_config()


def _run(emu: Emulator, monkeypatch: pytest.MonkeyPatch, template: Path, root: str) -> object:
    from google.cloud import aiplatform

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emu.address}")
    vertex_init(emu, ADMIN)
    # a fresh root bucket: aiplatform creates it and grants the run-as SA on it
    job = aiplatform.PipelineJob(
        display_name="runs", template_path=str(template), pipeline_root=root
    )
    job.run(service_account=PIPELINE_SA, sync=True)
    return job


def test_steps_and_their_service_accounts_are_read_from_the_spec(template: Path) -> None:
    import yaml

    spec = yaml.safe_load(template.read_text())
    job = {"pipelineSpec": spec, "runtimeConfig": {"parameterValues": {"step_sa": "x@y.iam"}}}
    launches = {(s.task, s.service_account) for s in step_launches(job)}
    assert launches == {("train", "x@y.iam"), ("train-2", "")}
    no_values = {(s.task, s.service_account) for s in step_launches({"pipelineSpec": spec})}
    assert ("train", STEP_SA) in no_values


def test_run_fails_when_the_pipeline_sa_cannot_act_as_a_step_sa(
    template: Path, monkeypatch: pytest.MonkeyPatch, vertex: None
) -> None:
    with Emulator(run_world(step_sa_grants_pipeline=False), simulate_runs=True) as emu:
        with pytest.raises(RuntimeError) as failed:
            _run(emu, monkeypatch, template, "gs://zt-runs-root-a/r")
        message = str(failed.value)
        assert f"cannot act as {STEP_SA}" in message and "train" in message
        assert "train-2" not in message  # empty SA: the service agent runs it, no actAs
        assert emu.custom_jobs == {}


def test_run_succeeds_and_launches_each_step_as_its_sa(
    template: Path, monkeypatch: pytest.MonkeyPatch, vertex: None
) -> None:
    with Emulator(run_world(step_sa_grants_pipeline=True), simulate_runs=True) as emu:
        _run(emu, monkeypatch, template, "gs://zt-runs-root-b/r")
        launched = sorted(j["jobSpec"]["serviceAccount"] for j in emu.custom_jobs.values())
        assert launched == ["", STEP_SA]
