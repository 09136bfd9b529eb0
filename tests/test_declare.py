"""Declarations: the decorator, the call form, the task form and manifests — through real kfp
compiles and the rewrite that reads them back.

No `from __future__ import annotations`: KFP reads component annotations at decoration time.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler, components, dsl

import zt_pipelines as zt
from zt_pipelines.declare import DECLARATION_ATTR, PLATFORM_KEY, load_manifest
from zt_pipelines.errors import (
    DeclarationError,
    DefaultIdentityError,
    IdentityError,
    ManifestError,
    PermissionFormatError,
    ResourceError,
)
from zt_pipelines.resources import ResourceRef
from zt_pipelines.spec import dump_template, load_template, rewrite_pipeline

PROJECT = "zt-test-project"
TRAIN_SA = f"train-runner@{PROJECT}.iam.gserviceaccount.com"
EVAL_SA = f"eval-runner@{PROJECT}.iam.gserviceaccount.com"
PARAM_SA = f"param-runner@{PROJECT}.iam.gserviceaccount.com"


def compile_to(pipeline: Any, path: Path) -> Path:
    """Compile with a plain kfp Compiler (no zt involvement)."""
    compiler.Compiler().compile(pipeline, str(path))
    return path


@zt.step(
    TRAIN_SA,
    needs={"gs://raw-data/train": ["storage.objects.get", "storage.objects.list"]},
    machine_type="n1-standard-8",
)
@dsl.component(base_image="python:3.11")
def train(x: int) -> int:
    return x + 1


@dsl.component(base_image="python:3.11")
def evaluate(x: int) -> int:
    return x


CONTAINER_YAML = """
name: echo
inputs:
- {name: msg, type: String}
implementation:
  container:
    image: alpine:3.19
    command: [echo, {inputValue: msg}]
"""


def test_decorator_keeps_a_kfp_component_and_is_inspectable() -> None:
    from kfp.dsl import base_component

    assert isinstance(train, base_component.BaseComponent)
    decl = getattr(train, DECLARATION_ATTR)
    assert decl.service_account == TRAIN_SA
    assert decl.job.machine_type == "n1-standard-8"
    assert decl.needs[0].resource == ResourceRef("//storage.googleapis.com/raw-data", "train")
    assert decl.needs[0].permissions == ("storage.objects.get", "storage.objects.list")
    # the function source KFP ships is unaffected by our decorator
    assert train.python_func(x=1) == 2


def test_declaration_survives_plain_compile_and_rewrite_reads_then_strips_it(
    tmp_path: Path,
) -> None:
    @dsl.pipeline(name="declared")
    def pipeline(x: int = 1) -> None:
        t = train(x=x)
        evaluate(x=t.output)

    path = compile_to(pipeline, tmp_path / "p.yaml")
    _ir, docs = load_template(path)
    stored = docs[0]["platforms"][PLATFORM_KEY]["deploymentSpec"]["executors"]["exec-train"]
    assert stored["serviceAccount"] == TRAIN_SA

    result = rewrite_pipeline(path, project=PROJECT)
    steps = {s.task: s for s in result.steps}
    assert steps["train"].service_account == TRAIN_SA
    assert steps["train"].source == "declared"
    assert steps["train"].job.machine_type == "n1-standard-8"
    assert steps["train"].needs == getattr(train, DECLARATION_ATTR).needs
    assert steps["evaluate"].source == "derived"
    text = dump_template(result)
    assert PLATFORM_KEY not in text
    assert "raw-data" not in text  # needs are ours: never submitted
    assert result.platform_docs == ()


def test_call_form_on_a_yaml_component_returns_a_declared_copy(tmp_path: Path) -> None:
    echo = components.load_component_from_text(CONTAINER_YAML)
    declared = zt.step(
        echo, service_account=EVAL_SA, needs={"bq://proj-one.ds": ["bigquery.tables.getData"]}
    )
    assert getattr(echo, DECLARATION_ATTR, None) is None
    assert getattr(declared, DECLARATION_ATTR).service_account == EVAL_SA

    @dsl.pipeline(name="call-form")
    def pipeline() -> None:
        declared(msg="a")
        echo(msg="b")

    result = rewrite_pipeline(compile_to(pipeline, tmp_path / "p.yaml"), project=PROJECT)
    by_task = {s.task: s for s in result.steps}
    assert by_task["echo"].service_account == EVAL_SA
    assert by_task["echo-2"].source == "derived"
    assert by_task["echo"].needs[0].resource.name == (
        "//bigquery.googleapis.com/projects/proj-one/datasets/ds"
    )


def test_task_form_gives_two_tasks_of_one_component_different_identities(tmp_path: Path) -> None:
    @dsl.pipeline(name="two-identities")
    def pipeline() -> None:
        a = evaluate(x=1)
        zt.step.on(a, TRAIN_SA)
        b = evaluate(x=2)
        zt.step.on(b, EVAL_SA, network="projects/123/global/networks/vpc")

    result = rewrite_pipeline(compile_to(pipeline, tmp_path / "p.yaml"), project=PROJECT)
    by_task = {s.task: s for s in result.steps}
    assert by_task["evaluate"].service_account == TRAIN_SA
    assert by_task["evaluate-2"].service_account == EVAL_SA
    assert by_task["evaluate-2"].job.network == "projects/123/global/networks/vpc"
    assert by_task["evaluate"].component != by_task["evaluate-2"].component
    comps = result.spec["components"]
    sa_of = {
        name: c["inputDefinitions"]["parameters"]["service_account"]["defaultValue"]
        for name, c in comps.items()
    }
    assert sa_of[by_task["evaluate"].component] == TRAIN_SA
    assert sa_of[by_task["evaluate-2"].component] == EVAL_SA


def test_task_form_with_a_pipeline_parameter_inside_a_loop_is_resolved_and_pinned(
    tmp_path: Path,
) -> None:
    @dsl.pipeline(name="param-identity")
    def pipeline(sa: str = PARAM_SA) -> None:
        with dsl.ParallelFor([1, 2]) as item:
            t = evaluate(x=item)
            zt.step.on(t, sa)

    path = compile_to(pipeline, tmp_path / "p.yaml")
    result = rewrite_pipeline(path, project=PROJECT)
    (step,) = result.steps
    assert step.task == "for-loop-2/evaluate"
    assert (step.service_account, step.source) == (PARAM_SA, "parameter")
    other = f"other-runner@{PROJECT}.iam.gserviceaccount.com"
    pinned = rewrite_pipeline(path, project=PROJECT, parameter_values={"sa": other})
    assert pinned.steps[0].service_account == other
    params = pinned.spec["components"][pinned.steps[0].component]["inputDefinitions"]
    assert params["parameters"]["service_account"]["defaultValue"] == other
    with pytest.raises(DefaultIdentityError, match="for-loop-2/evaluate"):
        rewrite_pipeline(path, project=PROJECT, parameter_values={"sa": ""})


def test_task_form_refuses_an_identity_from_an_upstream_output() -> None:
    with pytest.raises(DeclarationError, match="output of task"):

        @dsl.pipeline(name="upstream")
        def pipeline() -> None:
            a = evaluate(x=1)
            b = evaluate(x=2)
            zt.step.on(b, a.output)


def test_component_and_task_declarations_merge_or_conflict() -> None:
    with pytest.raises(DeclarationError, match="conflicting service accounts"):

        @dsl.pipeline(name="conflict")
        def conflicting() -> None:
            zt.step.on(train(x=1), EVAL_SA)

    @dsl.pipeline(name="agree")
    def agreeing() -> None:
        zt.step.on(train(x=1), TRAIN_SA, needs={"gs://other-bucket": ["storage.objects.get"]})

    assert agreeing is not None


def test_duplicate_declarations_are_refused() -> None:
    with pytest.raises(DeclarationError, match=r"already has a @zt\.step"):
        zt.step(EVAL_SA)(train)
    with pytest.raises(DeclarationError, match="twice"):

        @dsl.pipeline(name="twice")
        def pipeline() -> None:
            t = evaluate(x=1)
            zt.step.on(t, TRAIN_SA)
            zt.step.on(t, TRAIN_SA)


def test_task_form_twice_on_a_decorated_component_is_refused() -> None:
    with pytest.raises(DeclarationError, match="twice"):

        @dsl.pipeline(name="twice-decorated")
        def pipeline() -> None:
            t = train(x=1)
            zt.step.on(t, TRAIN_SA)
            zt.step.on(t, TRAIN_SA)


def test_a_pipeline_cannot_be_declared_as_a_step() -> None:
    @dsl.pipeline(name="p")
    def sub() -> None:
        evaluate(x=1)

    with pytest.raises(DeclarationError, match="only container components"):
        zt.step(TRAIN_SA)(sub)


def test_decorator_below_dsl_component_is_refused() -> None:
    with pytest.raises(DeclarationError, match="ABOVE"):

        @zt.step(TRAIN_SA)
        def plain(x: int) -> int:
            return x


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"service_account": ""}, DefaultIdentityError, "empty"),
        (
            {"service_account": "123456789-compute@developer.gserviceaccount.com"},
            DefaultIdentityError,
            "Compute Engine default",
        ),
        (
            {"service_account": "trаin-runner@p-123456.iam.gserviceaccount.com"},
            IdentityError,
            r"U\+0430",
        ),
        ({"needs": {"s3://bucket": ["storage.objects.get"]}}, ResourceError, "unknown scheme"),
        ({"needs": {"gs://bucket": ["roles/storage.admin"]}}, PermissionFormatError, "roles"),
        ({"needs": {"gs://bucket": "storage.objects.get"}}, DeclarationError, "list of strings"),
        ({"network": "vpc", "service_account": TRAIN_SA}, DeclarationError, "VPC network"),
        ({"replica_count": 0}, DeclarationError, "positive integer"),
        ({"machine": "n1"}, DeclarationError, "unknown job field"),
        (
            {"network": "projects/1/global/networks/n", "psc_interface_config": {"a": "b"}},
            DeclarationError,
            "both",
        ),
        ({"psc_interface_config": {"a": {1, 2}}}, DeclarationError, "plain JSON"),
        ({"psc_interface_config": {"a": float("nan")}}, DeclarationError, "plain JSON"),
    ],
)
def test_bad_declarations_raise_typed_errors(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        zt.step(**kwargs)
    assert "@zt.step" in str(info.value)


def test_manifest_file_is_loaded_and_applied_by_task_name(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "steps": {
                    "evaluate": {
                        "service_account": EVAL_SA,
                        "needs": {"gs://models": ["storage.objects.create"]},
                        "enable_web_access": False,
                    }
                }
            }
        )
    )
    decls = load_manifest(manifest)
    assert decls["evaluate"].source == "manifest"

    @dsl.pipeline(name="manifested")
    def pipeline() -> None:
        evaluate(x=1)

    result = rewrite_pipeline(
        compile_to(pipeline, tmp_path / "p.yaml"), manifest=manifest, project=PROJECT
    )
    assert (result.steps[0].service_account, result.steps[0].source) == (EVAL_SA, "manifest")


def test_manifest_json_and_strict_validation_name_file_and_key(tmp_path: Path) -> None:
    good = tmp_path / "m.json"
    good.write_text(json.dumps({"steps": {"a": {"service_account": EVAL_SA}}}))
    assert load_manifest(good)["a"].service_account == EVAL_SA
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  train:\n    service_acount: x\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(bad)
    assert "bad.yaml" in str(info.value) and "service_acount" in str(info.value)
    with pytest.raises(ManifestError, match="one key, 'steps'"):
        load_manifest({"train": {}})
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [unclosed\n")
    with pytest.raises(ManifestError, match=r"broken\.yaml"):
        load_manifest(broken)


def test_declarations_inside_a_sub_pipeline_used_twice(tmp_path: Path) -> None:
    @dsl.pipeline(name="sub")
    def sub(x: int, reader: str) -> int:
        scored = train(x=x)  # declared on the component
        checked = evaluate(x=scored.output)
        zt.step.on(checked, reader)  # a parameter of the sub-pipeline
        return checked.output

    @dsl.pipeline(name="outer")
    def outer(first: str = EVAL_SA) -> None:
        sub(x=1, reader=first)
        sub(x=2, reader=PARAM_SA)

    result = rewrite_pipeline(compile_to(outer, tmp_path / "p.yaml"), project=PROJECT)
    by_task = {s.task: (s.service_account, s.source) for s in result.steps}
    assert by_task == {
        "sub/train": (TRAIN_SA, "declared"),
        "sub/evaluate": (EVAL_SA, "parameter"),
        "sub-2/train": (TRAIN_SA, "declared"),
        "sub-2/evaluate": (PARAM_SA, "parameter"),
    }


def test_declare_and_spec_import_neither_kfp_nor_aiplatform() -> None:
    import subprocess
    import sys

    code = (
        "import sys, zt_pipelines as zt, zt_pipelines.declare, zt_pipelines.spec; "
        "zt.step; zt.rewrite; zt.rewrite_pipeline; zt.load_manifest; "
        "bad = [m for m in sys.modules if m == 'kfp' or m.startswith(('kfp.', "
        "'google.cloud.aiplatform', 'google_cloud_pipeline_components'))]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("source", [[1], b"m.yaml", 5])
def test_a_manifest_that_is_neither_a_path_nor_a_mapping_is_a_manifest_error(source: Any) -> None:
    with pytest.raises(ManifestError, match="path or a mapping"):
        load_manifest(source)
