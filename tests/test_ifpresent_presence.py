"""An IfPresent in a launcher payload is verified only for the branch Vertex will take, so its
input's presence must be a fact before submission, at every nesting level: an input bound to a
sub-pipeline input its parent leaves unset, or to an optional input artifact, is refused like one
bound to a pipeline parameter without a value (red-team r3-18, session 2's rt10 one level down).
Inputs surely there (a constant, a default, an upstream output, a loop item, a required
artifact) take the Then branch and are accepted."""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import json
from pathlib import Path
from typing import Any, Optional

import pytest
from kfp import compiler, dsl

from zt_pipelines.errors import TemplateError
from zt_pipelines.spec import load_template, rewrite_pipeline

pytest.importorskip("google_cloud_pipeline_components")
from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

PROJECT = "zt-test-project"
OTHER = "other-sa@zt-test-project.iam.gserviceaccount.com"
POOLS = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": "python:3.11", "command": ["echo"]},
    }
]
ELSE = {
    "Concat": [
        '{"display_name": "t", "job_spec": {"worker_pool_specs": [], "service_account": "'
        + OTHER
        + '"}}'
    ]
}
ARTIFACT = {
    "artifactType": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"},
    "isOptional": True,
}


@dsl.component(base_image="python:3.11-slim")
def prod() -> str:
    return "x"


@dsl.component(base_image="python:3.11-slim")
def items() -> list:  # type: ignore[type-arg]
    return ["a"]


def _guard(ir: dict[str, Any], owner: dict[str, Any], binding: dict[str, Any], kind: str) -> None:
    """Make the custom job's payload an IfPresent on a new input ``x`` bound by ``binding``."""
    (task_name,) = [n for n, t in owner["dag"]["tasks"].items() if "custom" in n]
    task = owner["dag"]["tasks"][task_name]
    component = ir["components"][task["componentRef"]["name"]]
    if kind == "parameters":
        component["inputDefinitions"]["parameters"]["x"] = {
            "parameterType": "STRING",
            "isOptional": True,
        }
    else:
        component["inputDefinitions"].setdefault("artifacts", {})["x"] = dict(ARTIFACT)
    task.setdefault("inputs", {}).setdefault(kind, {})["x"] = binding
    args = ir["deploymentSpec"]["executors"][component["executorLabel"]]["container"]["args"]
    at = args.index("--payload") + 1
    text = args[at]
    then = json.loads(text) if text.lstrip().startswith('{"Concat"') else {"Concat": [text]}
    guarded = {"IfPresent": {"InputName": "x", "Then": then, "Else": ELSE}}
    args[at] = json.dumps({"Concat": [guarded]})


def _then_branch(result: Any) -> None:
    """Accepted: the input is surely present, so the Then branch (pinned) is what runs."""
    (step,) = [s for s in result.steps if "custom" in s.task]
    assert step.service_account not in (None, OTHER)


def _compile(tmp_path: Path, pipeline: Any) -> dict[str, Any]:
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    ir, _ = load_template(path)
    return ir


def _sub_pipeline(tmp_path: Path, passed: bool, default: bool = False) -> dict[str, Any]:
    if default:

        @dsl.pipeline(name="inner")
        def inner(opt: str = "d") -> None:
            CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS)

    else:

        @dsl.pipeline(name="inner")
        def inner(opt: Optional[str] = None) -> None:  # type: ignore[no-redef]  # noqa: UP045
            CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS)

    @dsl.pipeline(name="outer")
    def outer() -> None:
        if passed:
            inner(opt="given")
        else:
            inner()

    ir = _compile(tmp_path, outer)
    _guard(ir, ir["components"]["comp-inner"], {"componentInputParameter": "opt"}, "parameters")
    return ir


def test_the_review_case_an_unset_sub_pipeline_input(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="sub-pipeline input its parent leaves"):
        rewrite_pipeline(_sub_pipeline(tmp_path, passed=False), project=PROJECT)


@pytest.mark.parametrize(("passed", "default"), [(True, False), (False, True)])
def test_a_sub_pipeline_input_that_is_given_or_defaulted_is_present(
    tmp_path: Path, passed: bool, default: bool
) -> None:
    result = rewrite_pipeline(_sub_pipeline(tmp_path, passed, default), project=PROJECT)
    _then_branch(result)


def test_two_levels_down(tmp_path: Path) -> None:
    @dsl.pipeline(name="leaf")
    def leaf(opt: Optional[str] = None) -> None:  # noqa: UP045
        CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS)

    @dsl.pipeline(name="middle")
    def middle(opt: Optional[str] = None) -> None:  # noqa: UP045
        leaf(opt=opt)

    @dsl.pipeline(name="top")
    def top() -> None:
        middle()

    ir = _compile(tmp_path, top)
    _guard(ir, ir["components"]["comp-leaf"], {"componentInputParameter": "opt"}, "parameters")
    with pytest.raises(TemplateError, match="IfPresent branch"):
        rewrite_pipeline(ir, project=PROJECT)


def test_an_input_nothing_declares_is_not_present(tmp_path: Path) -> None:
    ir = _sub_pipeline(tmp_path, passed=True)
    task = ir["components"]["comp-inner"]["dag"]["tasks"]["custom-training-job"]
    task["inputs"]["parameters"]["x"] = {"componentInputParameter": "nobody-declares-this"}
    with pytest.raises(TemplateError, match="IfPresent branch"):
        rewrite_pipeline(ir, project=PROJECT)


def test_an_upstream_output_and_a_loop_item_are_present(tmp_path: Path) -> None:
    @dsl.pipeline(name="present")
    def p() -> None:
        made = prod()
        CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS).after(made)

    ir = _compile(tmp_path, p)
    _guard(
        ir,
        ir["root"],
        {"taskOutputParameter": {"producerTask": "prod", "outputParameterKey": "Output"}},
        "parameters",
    )
    _then_branch(rewrite_pipeline(ir, project=PROJECT))

    @dsl.pipeline(name="loop")
    def q() -> None:
        listed = items()
        with dsl.ParallelFor(listed.output) as item:
            CustomTrainingJobOp(display_name=item, worker_pool_specs=POOLS)

    ir = _compile(tmp_path, q)
    (loop,) = [c for n, c in ir["components"].items() if n.startswith("comp-for-loop")]
    (item_name,) = [n for n in loop["inputDefinitions"]["parameters"] if "loop-item" in n]
    _guard(ir, loop, {"componentInputParameter": item_name}, "parameters")
    _then_branch(rewrite_pipeline(ir, project=PROJECT))


@pytest.mark.parametrize("optional", [True, False])
def test_a_pipeline_input_artifact(tmp_path: Path, optional: bool) -> None:
    """The review's artifact variant: an optional pipeline input artifact may not be provided."""

    @dsl.pipeline(name="ifpa")
    def p() -> None:
        CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS)

    ir = _compile(tmp_path, p)
    declared = {**ARTIFACT, "isOptional": optional}
    ir["root"].setdefault("inputDefinitions", {}).setdefault("artifacts", {})["art"] = declared
    _guard(ir, ir["root"], {"componentInputArtifact": "art"}, "artifacts")
    if optional:
        with pytest.raises(TemplateError, match="optional input artifact"):
            rewrite_pipeline(ir, project=PROJECT)
    else:
        _then_branch(rewrite_pipeline(ir, project=PROJECT))


def test_an_artifact_a_sub_pipeline_is_not_given(tmp_path: Path) -> None:
    @dsl.pipeline(name="inner")
    def inner() -> None:
        CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS)

    @dsl.pipeline(name="outer")
    def outer() -> None:
        inner()

    ir = _compile(tmp_path, outer)
    inner_dag = ir["components"]["comp-inner"]
    inner_dag.setdefault("inputDefinitions", {}).setdefault("artifacts", {})["art"] = ARTIFACT
    _guard(ir, inner_dag, {"componentInputArtifact": "art"}, "artifacts")
    with pytest.raises(TemplateError, match="IfPresent branch"):
        rewrite_pipeline(ir, project=PROJECT)
