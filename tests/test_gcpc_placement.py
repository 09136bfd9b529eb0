"""Where a step's job is launched versus where its code is pointed.

A CustomJob launcher runs its job where its ``--project`` / ``--location`` say. Google's LLM
components pass the running pipeline's there and give their code a ``project`` input of their
own (the image registry's project): the job runs in the pipeline's project, and no grant is
needed in Google's registry project. A container step zt-pipelines wraps runs in the
pipeline's project too; its own ``project`` / ``location`` inputs say where its code is
pointed — undeclared, that is ZT122 — on the first rewrite and on a rewrite of the rewritten
pipeline alike (the wrapper is recognised by its shape, see
``zt_pipelines.spec.launcher.wrapper_code_inputs``).
"""

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import GCPC_CORPUS, require_shared
from kfp import compiler, dsl

from zt_pipelines.errors import TemplateError
from zt_pipelines.model import Need, RewriteResult
from zt_pipelines.policy.requirements import derive_requirements, persistent_resource_name
from zt_pipelines.policy.snapshot import ServiceAccount, Snapshot
from zt_pipelines.resources import ResourceRef
from zt_pipelines.spec import load_template, rewrite_pipeline
from zt_pipelines.spec.launcher import (
    CustomJobSettings,
    custom_job_component,
    is_custom_job_launcher,
    wrapper_code_inputs,
)
from zt_pipelines.verification import check_rewritten

P = "zt-demo"
L = "us-central1"
PIPE = f"pipeline@{P}.iam.gserviceaccount.com"
CRM = "//cloudresourcemanager.googleapis.com/projects/"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
INFER = GCPC_CORPUS / "compiled" / "preview.llm.infer_pipeline.yaml"
INFER_VALUES = {
    "project": P,
    "location": L,
    "large_model_reference": "llama-2-7b",
    "prompt_dataset": "gs://zt-demo-data/prompts.jsonl",
}


@dsl.component(base_image="python:3.11")
def reader(project: str, location: str) -> str:
    return project + location


@dsl.pipeline(name="plain-place")
def plain_place(project: str = "data-lake", location: str = "europe-west4") -> None:
    reader(project=project, location=location)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("place") / "plain.yaml"
    compiler.Compiler().compile(plain_place, str(path))
    return path


def _requirements(result: RewriteResult) -> set[tuple[str, str, str]]:
    return {
        (r.principal, r.resource.name, r.permission)
        for r in derive_requirements(
            result,
            project=P,
            location=L,
            pipeline_service_account=PIPE,
            pipeline_root=None,
            submitter=None,
        )
    }


def _zt122(result: RewriteResult, **fields: Any) -> list[str]:
    steps = tuple(replace(s, **fields) for s in result.steps)
    emails = [PIPE, *(s.service_account for s in steps if s.service_account)]
    report = check_rewritten(
        RewriteResult(spec={}, pipeline_name="p", steps=steps),
        project=P,
        location=L,
        pipeline_service_account=PIPE,
        snapshot=Snapshot(service_accounts={e: ServiceAccount(e, P) for e in emails}),
        now=NOW,
    )
    return [f.message for f in report.findings if f.code == "ZT122"]


@pytest.mark.shared
def test_googles_llm_inference_job_runs_in_the_pipelines_project() -> None:
    template = require_shared(INFER)
    first = rewrite_pipeline(template, project=P, parameter_values=INFER_VALUES)
    step = next(s for s in first.steps if s.task == "infer-preprocessor")
    # --project/--location are the running pipeline's; its `project: vertex-ai-restricted`
    # input is where Google's code finds its images, not where the job runs
    assert (step.job_project, step.job_location) == (None, None)
    assert (step.code_project, step.code_location) == (None, None)
    assert not any("vertex-ai-restricted" in r for _, r, _ in _requirements(first))
    assert _zt122(first) == []
    again = rewrite_pipeline(
        (first.spec, first.platform_docs), project=P, parameter_values=INFER_VALUES
    )
    places = [(s.task, s.job_project, s.job_location, s.code_project) for s in again.steps]
    assert places == [(s.task, s.job_project, s.job_location, s.code_project) for s in first.steps]


def test_a_container_steps_project_input_points_its_code_not_its_job(plain: Path) -> None:
    first = rewrite_pipeline(plain, project=P)
    (step,) = first.steps
    assert (step.job_project, step.job_location) == (None, None)
    assert (step.code_project, step.code_location) == ("data-lake", "europe-west4")
    # the wrapper CustomJob is created in the pipeline's project: nothing to grant elsewhere
    assert not any(r.startswith(CRM + "data-lake") for _, r, _ in _requirements(first))
    on_demand = replace(step, job=replace(step.job, persistent_resource_id="warm-pool"))
    assert persistent_resource_name(on_demand, P, L) == (
        f"projects/{P}/locations/{L}/persistentResources/warm-pool"
    )
    # the code's place is still a surprise to declare, on the first rewrite and on the second
    again = rewrite_pipeline((first.spec, first.platform_docs), project=P)
    # (as tests/test_gcpc_corpus_rewrite.py compares: a second rewrite reads a GCPC custom job)
    same = [replace(s, already_custom_job=False, source="derived") for s in again.steps]
    assert same == list(first.steps)
    for result in (first, again):
        found = _zt122(result)
        messages = " / ".join(found)
        assert len(found) == 2, messages
        assert "code is pointed at project data-lake (its project input)" in messages
        assert "code is pointed at europe-west4 (its location input)" in messages
    declared = (Need(ResourceRef(CRM + "data-lake"), ("bigquery.jobs.create",)),)
    assert len(_zt122(again, needs=declared)) == 1  # only the region is left


def _wrapper(**inputs: Any) -> dict[str, Any]:
    component = {
        "executorLabel": "exec-x",
        "inputDefinitions": {"parameters": {k: {"parameterType": "STRING"} for k in inputs}},
    }
    settings = CustomJobSettings(
        display_name="x",
        service_account=f"x@{P}.iam.gserviceaccount.com",
        machine_type="n1-standard-4",
        replica_count=1,
        accelerator_type="",
        accelerator_count=0,
        boot_disk_type="pd-ssd",
        boot_disk_size_gb=100,
        network="",
        encryption_spec_key_name="",
        enable_web_access=False,
    )
    container = {"image": "python:3.11", "command": ["python"], "args": ["-c", "pass"]}
    _, executor = custom_job_component(component, container, settings, executor_label="", where="t")
    return dict(executor["container"])


def test_the_wrapper_is_recognised_by_its_shape_and_lookalikes_are_not() -> None:
    assert wrapper_code_inputs(_wrapper(project="p", location="l")) == {"project", "location"}
    # a component with a clashing identity input too: its value is a literal in the payload
    assert wrapper_code_inputs(_wrapper(project="p", service_account="s")) == {"project"}
    # no clash: the launcher is GCPC's own shape, whose inputs default to the pipeline's place
    assert wrapper_code_inputs(_wrapper(data="d")) == frozenset()
    tampered = _wrapper(project="p")
    at = tampered["args"].index("--payload") + 1
    tampered["args"][at] = tampered["args"][at].replace('"labels"', '"labels2"')
    assert wrapper_code_inputs(tampered) == frozenset()
    odd = _wrapper(project="p")
    odd["args"][odd["args"].index("--location") + 1] = "{{$.pipeline_google_cloud_project_id}}"
    assert wrapper_code_inputs(odd) == frozenset()
    other_image = {**_wrapper(project="p"), "image": "python:3.11"}
    assert wrapper_code_inputs(other_image) == frozenset()


@pytest.mark.shared
def test_googles_inline_custom_job_is_not_taken_for_a_wrapper() -> None:
    spec, _ = load_template(require_shared(INFER))
    container = spec["deploymentSpec"]["executors"]["exec-infer-preprocessor"]["container"]
    assert "{{$.pipeline_google_cloud_project_id}}" in container["args"]
    assert wrapper_code_inputs(container) == frozenset()


@pytest.mark.shared
@pytest.mark.parametrize(
    "value", ["{{$.pipeline_task_name}}", "{{$.pipeline_google_cloud_location}}", "x-{{$.x}}"]
)
def test_a_launcher_place_that_is_another_placeholder_is_refused(value: str) -> None:
    spec, docs = load_template(require_shared(INFER))
    args = spec["deploymentSpec"]["executors"]["exec-infer-preprocessor"]["container"]["args"]
    args[args.index("--project") + 1] = value
    with pytest.raises(TemplateError, match="cannot pin"):
        rewrite_pipeline((spec, docs), project=P, parameter_values=INFER_VALUES)


@pytest.mark.shared
def test_monitoring_and_the_run_read_the_identity_pinned_in_an_automl_concat_payload() -> None:
    """AutoML's custom jobs build their payload with ``Concat``: the rewrite pins the step's
    identity there, escaped. What monitoring expects a run's job to run as, and the actAs the
    emulated run checks, are that identity — not the component's empty ``service_account``
    input (an empty identity is the Custom Code Service Agent)."""
    from zt_pipelines.emulator.runs import step_launches
    from zt_pipelines.monitor.expect import expected_tasks

    template = require_shared(
        GCPC_CORPUS / "shipped" / "v1.automl.tabular.automl_tabular_pipeline.yaml"
    )
    values = {"project": P, "location": L, "root_dir": "gs://zt-demo-pipeline-root/a"}
    result = rewrite_pipeline(template, project=P, parameter_values=values)
    executors = result.spec["deploymentSpec"]["executors"]
    containers = {s.task: executors[s.executor]["container"] for s in result.steps}
    concat = {
        s.task: s.service_account
        for s in result.steps
        if is_custom_job_launcher(containers[s.task])
        and '{"Concat"' in str(containers[s.task]["args"])
    }
    assert len(concat) >= 5, concat
    expected = expected_tasks(result.spec, values)
    assert {t: expected[t].service_account for t in concat} == concat
    launches = {
        launch.task: launch.service_account
        for launch in step_launches({"pipelineSpec": result.spec})
    }
    leaf = {t.rsplit("/", 1)[-1]: sa for t, sa in concat.items()}
    assert {t: launches[t] for t in leaf} == leaf


@pytest.mark.shared
@pytest.mark.parametrize(
    "extra",
    [
        ["--project", "evil-proj"],  # argparse keeps the last of two
        ["--project=evil-proj"],
        ["--proj", "evil-proj"],  # a unique abbreviation
        ["--loc=europe-west4"],
        ["--location", "europe-west4"],
    ],
)
def test_a_wrapped_launcher_given_its_place_twice_or_abbreviated_is_refused(
    extra: list[str],
) -> None:
    """A wrapped GCPC launcher (BigQuery here) runs as the step's identity with arguments that
    are not a fixed set: its place must be read as its argparse reads it, or refused."""
    template = GCPC_CORPUS / "shipped" / "v1.automl.forecasting.bqml_arima_train_pipeline.yaml"
    spec, docs = load_template(require_shared(template))
    values = {"project": P, "location": L, "root_dir": "gs://zt-demo-pipeline-root/a"}
    assert rewrite_pipeline((spec, docs), project=P, parameter_values=values).steps
    spec["deploymentSpec"]["executors"]["exec-bigquery-create-model-job"]["container"]["args"] += (
        extra
    )
    with pytest.raises(TemplateError, match="zt-pipelines reads exactly one"):
        rewrite_pipeline((spec, docs), project=P, parameter_values=values)
