"""A run-time value nested inside a list or mapping constant that a launcher pastes into its
payload is a run-time value like any other: reported (ZT102) or, when known now and unsafe,
refused — for every launcher kind, every nesting and every way the value gets there.

KFP compiles ``args=[task.output]`` as a *constant* list holding the placeholder of a
``pipelinechannel--`` input; Vertex pastes the list as JSON text and then the upstream value
into it, unescaped. Each case also rewrites twice: the second rewrite reports the same.
"""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

from zt_pipelines.errors import TemplateError, UnpinnedIdentityError
from zt_pipelines.spec import load_template, rewrite_pipeline
from zt_pipelines.spec.jobs import payload_slot_verdicts
from zt_pipelines.spec.payload import parse_payload

pytest.importorskip("google_cloud_pipeline_components")
from google_cloud_pipeline_components.v1 import (
    batch_predict_job,
    bigquery,
    custom_job,
    dataflow,
    dataproc,
)

PROJECT = "zt-test-project"
EVIL = '"], "environment_config": {"execution_config": {"service_account": "x"}}}'


@dsl.component(base_image="python:3.11-slim")
def prod() -> str:
    return EVIL


@dsl.component(base_image="python:3.11-slim")
def prod_list() -> list:  # type: ignore[type-arg]
    return []


def _pools(args: Any) -> list[dict[str, Any]]:
    return [
        {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "container_spec": {"image_uri": "python:3.11", "command": ["echo"], "args": args},
        }
    ]


def _rewrite(tmp_path: Path, pipeline: Any, **kwargs: Any) -> dict[str, tuple[str, ...]]:
    """Compile, rewrite twice; the non-producer steps' reported inputs (same both times)."""
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    ir, platform = load_template(path)
    first = rewrite_pipeline((ir, platform), project=PROJECT, **kwargs)
    again = rewrite_pipeline((first.spec, first.platform_docs), project=PROJECT, **kwargs)
    assert again.spec == first.spec
    reported = {s.task: s.unescaped_payload_inputs for s in first.steps}
    assert {s.task: s.unescaped_payload_inputs for s in again.steps} == reported
    return {t: r for t, r in reported.items() if not t.startswith("prod")}


def test_the_review_case_dataproc_args_list(tmp_path: Path) -> None:
    @dsl.pipeline(name="nested")
    def p() -> None:
        made = prod()
        dataproc.DataprocPySparkBatchOp(
            project=PROJECT, main_python_file_uri="gs://b/main.py", args=[made.output]
        )

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported == ("pipelinechannel--prod-Output",)


def test_a_mapping_value_in_a_custom_job_label(tmp_path: Path) -> None:
    @dsl.pipeline(name="labels")
    def p() -> None:
        made = prod()
        custom_job.CustomTrainingJobOp(
            display_name="t", worker_pool_specs=_pools(["x"]), labels={"team": made.output}
        )

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported == ("pipelinechannel--prod-Output",)


def test_a_mapping_key_from_an_upstream_output(tmp_path: Path) -> None:
    """KFP does not compile a placeholder as a key; a hand-edited template can."""

    @dsl.pipeline(name="keys")
    def p() -> None:
        made = prod()
        dataflow.DataflowFlexTemplateJobOp(
            container_spec_gcs_path="gs://b/spec.json",
            location="us-central1",
            additional_user_labels={"k": made.output},
        )

    path = tmp_path / "keys.yaml"
    compiler.Compiler().compile(p, str(path))
    ir, _ = load_template(path)
    task = ir["root"]["dag"]["tasks"]["dataflow-flex-template"]
    binding = task["inputs"]["parameters"]["additional_user_labels"]["runtimeValue"]
    binding["constant"] = {"{{$.inputs.parameters['pipelinechannel--prod-Output']}}": "v"}
    result = rewrite_pipeline(ir, project=PROJECT)
    (step,) = [s for s in result.steps if s.task != "prod"]
    assert step.unescaped_payload_inputs == ("pipelinechannel--prod-Output",)


def test_lists_in_lists_and_formatted_strings(tmp_path: Path) -> None:
    @dsl.pipeline(name="deep")
    def p() -> None:
        made = prod()
        dataproc.DataprocPySparkBatchOp(
            project=PROJECT,
            main_python_file_uri="gs://b/main.py",
            args=["--a", f"--in={made.output}"],
            file_uris=["gs://b/f", "gs://b/g"],
        )

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported == ("pipelinechannel--prod-Output",)


def test_custom_job_worker_pool_args_from_an_upstream_output(tmp_path: Path) -> None:
    @dsl.pipeline(name="pools")
    def p() -> None:
        made = prod()
        custom_job.CustomTrainingJobOp(display_name="t", worker_pool_specs=_pools([made.output]))

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported == ("pipelinechannel--prod-Output",)


def test_batch_prediction_source_list(tmp_path: Path) -> None:
    @dsl.pipeline(name="bp")
    def p() -> None:
        made = prod()
        batch_predict_job.ModelBatchPredictOp(
            job_display_name="b",
            gcs_source_uris=["gs://b/in", made.output],
            gcs_destination_output_uri_prefix="gs://b/out",
        )

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported == ("pipelinechannel--prod-Output",)


def test_a_wrapped_launcher_list_input(tmp_path: Path) -> None:
    """BigQuery runs as its caller: wrapped in a CustomJob whose payload carries the list."""

    @dsl.pipeline(name="bq")
    def p() -> None:
        made = prod()
        bigquery.BigqueryQueryJobOp(
            project=PROJECT,
            location="US",
            query="SELECT 1",
            query_parameters=[{"name": "x", "parameterValue": {"value": made.output}}],
        )

    (reported,) = _rewrite(tmp_path, p).values()
    assert "pipelinechannel--prod-Output" in reported


def test_a_plain_container_list_input(tmp_path: Path) -> None:
    @dsl.container_component
    def echo(items: list) -> dsl.ContainerSpec:  # type: ignore[type-arg]
        return dsl.ContainerSpec(image="python:3.11", command=["echo"], args=[items])

    @dsl.pipeline(name="plain")
    def p() -> None:
        made = prod()
        echo(items=[made.output])

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported  # pasted into the CustomJob's worker pool args


def test_through_a_sub_pipeline(tmp_path: Path) -> None:
    @dsl.pipeline(name="inner")
    def inner(value: str) -> None:
        dataproc.DataprocPySparkBatchOp(
            project=PROJECT, main_python_file_uri="gs://b/main.py", args=[value]
        )

    @dsl.pipeline(name="outer")
    def p() -> None:
        made = prod()
        inner(value=made.output)

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported == ("pipelinechannel--value",)


def test_a_loop_item(tmp_path: Path) -> None:
    @dsl.pipeline(name="loop")
    def p() -> None:
        made = prod_list()
        with dsl.ParallelFor(made.output) as item:
            dataproc.DataprocPySparkBatchOp(
                project=PROJECT, main_python_file_uri="gs://b/main.py", args=[item]
            )

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported


@pytest.fixture
def parameterised(tmp_path: Path) -> Path:
    @dsl.pipeline(name="param")
    def p(value: str) -> None:
        dataproc.DataprocPySparkBatchOp(
            project=PROJECT, main_python_file_uri="gs://b/main.py", args=["--x", value]
        )

    path = tmp_path / "param.yaml"
    compiler.Compiler().compile(p, str(path))
    return path


def test_a_pipeline_parameter_value_in_a_list(parameterised: Path) -> None:
    """Known now: a safe value passes, a value that would close the string is refused, and
    one with no value is a run-time value."""
    result = rewrite_pipeline(parameterised, project=PROJECT, parameter_values={"value": "ok"})
    assert result.steps[0].unescaped_payload_inputs == ()
    for bad in (EVIL, "a\\", "{{$.pipeline_root", "x}}"):
        with pytest.raises(TemplateError, match="change the job's structure"):
            rewrite_pipeline(parameterised, project=PROJECT, parameter_values={"value": bad})
    result = rewrite_pipeline(parameterised, project=PROJECT)
    assert result.steps[0].unescaped_payload_inputs == ("pipelinechannel--value",)


def test_constants_in_lists_are_escaped_by_serialisation(tmp_path: Path) -> None:
    """Quotes in a list's own strings are escaped when Vertex writes the list as JSON: safe."""

    @dsl.pipeline(name="quotes")
    def p() -> None:
        dataproc.DataprocPySparkBatchOp(
            project=PROJECT,
            main_python_file_uri="gs://b/main.py",
            args=['--sql=SELECT "a"', "back\\slash", "{{not a placeholder}}"],
        )

    (reported,) = _rewrite(tmp_path, p).values()
    assert reported == ()


def test_a_split_placeholder_across_list_items_is_refused() -> None:
    """Two list items that would form a placeholder in the JSON text Vertex writes."""
    parsed = parse_payload("{\"args\": {{$.inputs.parameters['args']}}}", lambda n: True)
    bindings = {
        "args": {"runtimeValue": {"constant": ["{{$.inputs.parameters['a'", "]}}"]}},
    }
    (verdict,) = payload_slot_verdicts(parsed, bindings, {}, {})
    assert verdict.verdict == "unsafe"


def test_a_huge_constant_is_not_walked_forever() -> None:
    parsed = parse_payload("{\"args\": {{$.inputs.parameters['args']}}}", lambda n: True)
    bindings = {"args": {"runtimeValue": {"constant": [["x"] * 10] * 20_000}}}
    (verdict,) = payload_slot_verdicts(parsed, bindings, {}, {})
    assert verdict.verdict == "unsafe"


@pytest.mark.parametrize("field", ["project", "network"])
def test_placement_from_an_upstream_value_nested_in_a_constant_is_refused(
    tmp_path: Path, field: str
) -> None:
    """A launcher's project or network written as a constant that holds an upstream value
    (``f"projects/{task.output}"``) moves the job at run time: refused like the value itself."""

    @dsl.pipeline(name="placement")
    def p() -> None:
        made = prod()
        value = f"projects/p/global/networks/{made.output}" if field == "network" else made.output
        kwargs: dict[str, Any] = {field: value}
        if field == "project":
            kwargs[field] = f"{made.output}-x"
        custom_job.CustomTrainingJobOp(display_name="t", worker_pool_specs=_pools(["x"]), **kwargs)

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(p, str(path))
    with pytest.raises(UnpinnedIdentityError, match="nested in a constant"):
        rewrite_pipeline(path, project=PROJECT)


def test_a_trailing_newline_does_not_pass_as_a_placeholder_or_a_root() -> None:
    """``$`` matches before a final newline: every exact-form check is a full match."""
    from zt_pipelines.spec.jobs import check_pipeline_root, input_placeholder

    assert input_placeholder("{{$.inputs.parameters['x']}}") == "x"
    assert input_placeholder("{{$.inputs.parameters['x']}}\n") is None
    with pytest.raises(TemplateError):
        check_pipeline_root("gs://zt-bucket/runs\n")


@pytest.mark.parametrize(
    "value",
    [
        "{{$.inputs.parameters['project']}}-x",
        "x{{$.pipeline_google_cloud_project_id}}",
        "{{$.inputs.parameters['pipelinechannel--prod-Output']}}",
    ],
)
def test_a_launcher_project_argument_that_cannot_be_pinned_is_refused(
    tmp_path: Path, value: str
) -> None:
    @dsl.pipeline(name="flag")
    def p() -> None:
        prod()
        dataproc.DataprocPySparkBatchOp(project=PROJECT, main_python_file_uri="gs://b/main.py")

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(p, str(path))
    ir, _ = load_template(path)
    for executor in ir["deploymentSpec"]["executors"].values():
        args = executor["container"].get("args") or []
        if "--project" in args:
            args[args.index("--project") + 1] = value
    task = ir["root"]["dag"]["tasks"]["dataproc-create-pyspark-batch"]
    task["inputs"]["parameters"]["pipelinechannel--prod-Output"] = {
        "taskOutputParameter": {"producerTask": "prod", "outputParameterKey": "Output"}
    }
    with pytest.raises((TemplateError, UnpinnedIdentityError)):
        rewrite_pipeline(ir, project=PROJECT)
