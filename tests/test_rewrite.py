"""The rewrite on real kfp compiles: control flow, reuse, sub-pipelines, GCPC jobs, job fields,
platform documents, purity and idempotence.

No `from __future__ import annotations`: KFP reads component annotations at decoration time.
"""

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

import zt_pipelines as zt
from zt_pipelines.errors import DeclarationError, IdentityError
from zt_pipelines.model import JobFields
from zt_pipelines.spec import (
    dump_template,
    load_template,
    parse_template_text,
    rewrite,
    rewrite_pipeline,
)
from zt_pipelines.spec.launcher import is_custom_job_launcher

PROJECT = "zt-test-project"
PIPELINE_SA = f"pipeline-runner@{PROJECT}.iam.gserviceaccount.com"


def sa(name: str) -> str:
    return f"{name}@{PROJECT}.iam.gserviceaccount.com"


@dsl.component(base_image="python:3.11")
def flip(seed: int) -> str:
    return "heads" if seed % 2 else "tails"


@dsl.component(base_image="python:3.11")
def say(msg: str) -> str:
    return msg


@dsl.component(base_image="python:3.11")
def produce(data: Output[Dataset]) -> None:
    with open(data.path, "w") as fh:
        fh.write("x")


@dsl.component(base_image="python:3.11")
def consume(data: Input[Dataset]) -> str:
    with open(data.path) as fh:
        return fh.read()


@dsl.pipeline(name="inner")
def inner(msg: str) -> str:
    return say(msg=msg).output


@dsl.pipeline(name="control-flow")
def control_flow(seed: int = 3, items: list = [1, 2]) -> None:  # noqa: B006
    cleanup = say(msg="bye")
    with dsl.ExitHandler(cleanup):
        coin = flip(seed=seed).set_retry(num_retries=2).set_caching_options(False)
        with dsl.If(coin.output == "heads"):
            say(msg="heads").set_cpu_limit("16").set_memory_limit("64G")
        with dsl.Elif(coin.output == "tails"):
            say(msg="tails").set_accelerator_type("NVIDIA_TESLA_T4").set_accelerator_limit(1)
        with dsl.Else():
            say(msg="edge")
        with dsl.ParallelFor(items, parallelism=2):
            say(msg="loop")
        inner(msg="one")
        inner(msg="two")
        imported = dsl.importer(
            artifact_uri="gs://bucket/data.csv", artifact_class=Dataset, reimport=False
        )
        consume(data=imported.output)
        consume(data=produce().outputs["data"])


@pytest.fixture(scope="module")
def control_flow_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cf") / "control_flow.yaml"
    compiler.Compiler().compile(control_flow, str(path))
    return path


def _all_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    stack: list[tuple[str, dict[str, Any]]] = [("", spec["root"])]
    while stack:
        prefix, component = stack.pop()
        for name, task in component.get("dag", {}).get("tasks", {}).items():
            out[prefix + name] = task
            child = spec["components"][task["componentRef"]["name"]]
            if "dag" in child:
                stack.append((prefix + name + "/", child))
    return out


def test_rewrite_is_pure_and_idempotent_on_control_flow(control_flow_path: Path) -> None:
    spec, _ = load_template(control_flow_path)
    frozen = copy.deepcopy(spec)
    result = rewrite_pipeline(spec, project=PROJECT)
    assert spec == frozen  # never mutates its input
    assert rewrite(spec, project=PROJECT) == result.spec
    again = rewrite_pipeline(result.spec, project=PROJECT)
    assert again.spec == result.spec
    assert [(s.task, s.service_account, s.image, s.job) for s in again.steps] == [
        (s.task, s.service_account, s.image, s.job) for s in result.steps
    ]
    assert all(s.already_custom_job for s in again.steps)
    # the output is not aliased to the input either
    result.spec["root"]["dag"]["tasks"].clear()
    assert spec == frozen


def test_control_flow_tasks_keep_triggers_retries_and_caching(control_flow_path: Path) -> None:
    spec, _ = load_template(control_flow_path)
    result = rewrite_pipeline(spec, project=PROJECT)
    before, after = _all_tasks(spec), _all_tasks(result.spec)
    assert set(before) == set(after)
    for path, task in before.items():
        rewritten = {k: v for k, v in after[path].items() if k != "componentRef"}
        assert rewritten == {k: v for k, v in task.items() if k != "componentRef"}, path
    paths = {s.task for s in result.steps}
    assert "say" in paths  # the exit task
    assert "exit-handler-1/flip" in paths
    assert any(p.startswith("exit-handler-1/condition-branches-") for p in paths)
    assert "exit-handler-1/inner/say" in paths and "exit-handler-1/inner-2/say" in paths
    # importer left alone: its executor is still an importer
    executors = result.spec["deploymentSpec"]["executors"]
    assert sum(1 for e in executors.values() if "importer" in e) == 1
    assert all(
        is_custom_job_launcher(e["container"]) for e in executors.values() if "container" in e
    )
    # the pipeline's inputs and other top-level data are unchanged
    assert result.spec["root"]["inputDefinitions"] == spec["root"]["inputDefinitions"]
    assert result.spec["pipelineInfo"] == spec["pipelineInfo"]


def test_resource_settings_become_machine_fields(control_flow_path: Path) -> None:
    result = rewrite_pipeline(control_flow_path, project=PROJECT)
    by_msg: dict[str, Any] = {}
    tasks = _all_tasks(result.spec)
    for step in result.steps:
        msg = tasks[step.task].get("inputs", {}).get("parameters", {}).get("msg", {})
        by_msg[json.dumps(msg)] = step
    heads = next(s for k, s in by_msg.items() if '"heads"' in k)
    tails = next(s for k, s in by_msg.items() if '"tails"' in k)
    edge = next(s for k, s in by_msg.items() if '"edge"' in k)
    assert heads.job.machine_type == "n1-highmem-16"  # 16 vCPU and 64 GB
    assert (tails.job.accelerator_type, tails.job.accelerator_count) == ("NVIDIA_TESLA_T4", 1)
    assert edge.job.machine_type == "n1-standard-4"  # GCPC's default
    pools = result.spec["components"][tails.component]["inputDefinitions"]["parameters"][
        "worker_pool_specs"
    ]["defaultValue"]
    assert pools[0]["machine_spec"] == {
        "machine_type": "n1-standard-4",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1.0,
    }


def test_pipeline_defaults_apply_and_declarations_override(control_flow_path: Path) -> None:
    defaults = JobFields(
        network="projects/42/global/networks/shared", enable_web_access=False, replica_count=1
    )
    manifest = {
        "steps": {
            "exit-handler-1/flip": {
                "service_account": sa("flip-runner"),
                "network": "projects/42/global/networks/isolated",
                "machine_type": "e2-standard-8",
            }
        }
    }
    result = rewrite_pipeline(
        control_flow_path, project=PROJECT, manifest=manifest, defaults=defaults
    )
    steps = {s.task: s for s in result.steps}
    assert steps["exit-handler-1/flip"].job.network == "projects/42/global/networks/isolated"
    assert steps["exit-handler-1/flip"].job.machine_type == "e2-standard-8"
    assert steps["exit-handler-1/flip"].service_account == sa("flip-runner")
    assert steps["say"].job.network == "projects/42/global/networks/shared"
    assert steps["say"].job.enable_web_access is False


def test_shared_components_are_split_per_identity(control_flow_path: Path) -> None:
    spec, _ = load_template(control_flow_path)
    # hand-edit: make both sub-pipeline tasks use ONE DAG component (as a non-KFP tool might)
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    shared = tasks["inner"]["componentRef"]["name"]
    tasks["inner-2"]["componentRef"]["name"] = shared
    result = rewrite_pipeline(spec, project=PROJECT)
    new_tasks = result.spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert new_tasks["inner"]["componentRef"]["name"] == shared
    assert new_tasks["inner-2"]["componentRef"]["name"] == f"{shared}-2" or (
        new_tasks["inner-2"]["componentRef"]["name"] != shared
    )
    steps = {s.task: s for s in result.steps}
    one, two = steps["exit-handler-1/inner/say"], steps["exit-handler-1/inner-2/say"]
    assert one.service_account != two.service_account
    assert one.component != two.component and one.executor != two.executor
    # the same declared identity on both tasks needs no split
    same = {
        "steps": {
            "exit-handler-1/inner/say": {"service_account": sa("say-runner")},
            "exit-handler-1/inner-2/say": {"service_account": sa("say-runner")},
        }
    }
    merged = rewrite_pipeline(spec, project=PROJECT, manifest=same)
    tasks_after = merged.spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert tasks_after["inner"]["componentRef"] == tasks_after["inner-2"]["componentRef"]
    assert rewrite_pipeline(merged.spec, project=PROJECT).spec == merged.spec


def test_platform_configs_follow_cloned_executors(tmp_path: Path) -> None:
    spec = {
        "pipelineInfo": {"name": "shared-executor"},
        "root": {
            "dag": {
                "tasks": {
                    "a": {"componentRef": {"name": "comp-echo"}, "taskInfo": {"name": "a"}},
                    "b": {"componentRef": {"name": "comp-echo"}, "taskInfo": {"name": "b"}},
                }
            }
        },
        "components": {"comp-echo": {"executorLabel": "exec-echo"}},
        "deploymentSpec": {
            "executors": {"exec-echo": {"container": {"image": "alpine", "command": ["true"]}}}
        },
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.17.3",
    }
    k8s = {
        "platforms": {
            "kubernetes": {
                "deploymentSpec": {"executors": {"exec-echo": {"secretAsEnv": [{"x": 1}]}}}
            }
        }
    }
    result = rewrite_pipeline((spec, (k8s,)), project=PROJECT)
    labels = sorted(s.executor for s in result.steps)
    assert labels == ["exec-echo", "exec-echo-2"]
    executors = result.platform_docs[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == labels
    assert executors["exec-echo-2"] == {"secretAsEnv": [{"x": 1}]}
    text = dump_template(result)
    assert text.count("\n---\n") == 1
    path = tmp_path / "out.yaml"
    path.write_text(text)
    assert load_template(path) == (result.spec, result.platform_docs)


def test_gcpc_custom_job_identity_is_read_pinned_and_checked(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

    @dsl.pipeline(name="gcpc")
    def pipeline(job_sa: str = sa("job-runner")) -> None:
        CustomTrainingJobOp(display_name="one", worker_pool_specs=[], service_account=job_sa)
        CustomTrainingJobOp(
            display_name="two", worker_pool_specs=[], service_account=sa("fixed-runner")
        )
        CustomTrainingJobOp(display_name="three", worker_pool_specs=[])

    path = tmp_path / "gcpc.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    result = rewrite_pipeline(
        path, project=PROJECT, parameter_values={"job_sa": sa("other-runner")}
    )
    steps = {s.task: s for s in result.steps}
    assert all(s.already_custom_job for s in steps.values())
    assert (steps["custom-training-job"].service_account, steps["custom-training-job"].source) == (
        sa("other-runner"),
        "parameter",
    )
    assert steps["custom-training-job-2"].service_account == sa("fixed-runner")
    assert steps["custom-training-job-3"].source == "derived"
    tasks = result.spec["root"]["dag"]["tasks"]
    assert tasks["custom-training-job"]["inputs"]["parameters"]["service_account"] == {
        "runtimeValue": {"constant": sa("other-runner")}
    }
    # not wrapped twice: the executors are GCPC's own
    original, _ = load_template(path)
    assert result.spec["deploymentSpec"] == original["deploymentSpec"]
    with pytest.raises(DeclarationError, match="custom-training-job-2"):
        rewrite_pipeline(
            path,
            project=PROJECT,
            manifest={"steps": {"custom-training-job-2": {"service_account": sa("else-runner")}}},
        )


def test_step_may_not_run_as_the_pipeline_sa(control_flow_path: Path) -> None:
    manifest = {"steps": {"exit-handler-1/flip": {"service_account": PIPELINE_SA}}}
    with pytest.raises(IdentityError, match="exit-handler-1/flip") as info:
        rewrite_pipeline(
            control_flow_path,
            project=PROJECT,
            manifest=manifest,
            pipeline_service_account=PIPELINE_SA,
        )
    assert "pipeline's own service account" in str(info.value)


def test_derived_identities_need_a_project(control_flow_path: Path) -> None:
    with pytest.raises(IdentityError, match="project") as info:
        rewrite_pipeline(control_flow_path)
    assert "task '" in str(info.value)


def test_derived_identities_are_stable_and_follow_the_naming_template(
    control_flow_path: Path,
) -> None:
    first = rewrite_pipeline(
        control_flow_path, project=PROJECT, naming_template="{task}-{pipeline}"
    )
    second = rewrite_pipeline(
        control_flow_path, project=PROJECT, naming_template="{task}-{pipeline}"
    )
    assert [s.service_account for s in first.steps] == [s.service_account for s in second.steps]
    flip_step = next(s for s in first.steps if s.task == "exit-handler-1/flip")
    # control-flow groups KFP numbers itself are not part of the derivation key
    account = (flip_step.service_account or "").split("@")[0]
    assert re.fullmatch(r"flip-control-flow-[0-9a-f]{6}", account), account


def test_pipeline_job_json_is_accepted(control_flow_path: Path, tmp_path: Path) -> None:
    spec, _ = load_template(control_flow_path)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"displayName": "x", "pipelineSpec": spec, "runtimeConfig": {}}))
    assert rewrite(job, project=PROJECT) == rewrite(spec, project=PROJECT)


def test_decorated_pipeline_end_to_end_with_dump(tmp_path: Path) -> None:
    loader = zt.step(
        say, service_account=sa("loader-runner"), needs={"gs://raw": ["storage.objects.get"]}
    )

    @dsl.pipeline(name="e2e")
    def pipeline() -> None:
        loader(msg="x")

    path = tmp_path / "e2e.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    result = rewrite_pipeline(path, project=PROJECT)
    text = dump_template(result)
    assert dump_template(rewrite_pipeline(path, project=PROJECT)) == text  # deterministic
    assert "zt_pipelines" not in text and "storage.objects.get" not in text
    assert sa("loader-runner") in text


def test_rewritten_spec_is_accepted_by_aiplatform_pipeline_job(
    control_flow_path: Path, tmp_path: Path
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    result = rewrite_pipeline(control_flow_path, project=PROJECT)
    path = tmp_path / "rewritten.yaml"
    # aiplatform's loader reads ONE YAML document: submit the spec, not the platform documents
    path.write_text(dump_template(result.spec))
    job = aiplatform.PipelineJob(
        display_name="zt",
        template_path=str(path),
        project=PROJECT,
        location="us-central1",
        credentials=AnonymousCredentials(),
        pipeline_root="gs://zt-test-root/runs",
        parameter_values={"seed": 4},
    )
    body = job.to_dict()
    assert body["pipelineSpec"] == result.spec
    assert body["runtimeConfig"]["parameterValues"] == {"seed": 4}


def test_json_templates_with_tabs_are_read(control_flow_path: Path, tmp_path: Path) -> None:
    spec, _ = load_template(control_flow_path)
    path = tmp_path / "tabs.json"
    path.write_text(json.dumps(spec, indent="\t"))
    assert load_template(path) == (spec, ())


def test_a_look_alike_launcher_in_another_image_is_not_trusted(control_flow_path: Path) -> None:
    result = rewrite_pipeline(control_flow_path, project=PROJECT)
    step = result.steps[0]
    forged = copy.deepcopy(result.spec)
    container = forged["deploymentSpec"]["executors"][step.executor]["container"]
    assert is_custom_job_launcher(container)
    container["image"] = "evil.example.com/launcher:1"  # would run as the pipeline SA
    assert not is_custom_job_launcher(container)
    # treated as a plain container: it is wrapped in a CustomJob (GCPC's own launcher image)
    # and runs there as the step's identity, never as the pipeline SA
    again = rewrite_pipeline(forged, project=PROJECT)
    (wrapped,) = [s for s in again.steps if s.task == step.task]
    outer = again.spec["deploymentSpec"]["executors"][wrapped.executor]["container"]
    assert is_custom_job_launcher(outer) and outer["image"] != container["image"]
    assert wrapped.image == "evil.example.com/launcher:1" and not wrapped.wrapped_launcher
    assert wrapped.service_account == step.service_account
    # the look-alike's own service_account input is pinned to the step's identity too
    (task,) = [
        t
        for t in again.spec["root"]["dag"]["tasks"].values()
        if t["componentRef"]["name"] == wrapped.component
    ] or [None]
    if task is not None:
        pinned = task["inputs"]["parameters"]["service_account"]
        assert pinned == {"runtimeValue": {"constant": step.service_account}}


@dsl.container_component
def shout(text: str, extra: str):  # type: ignore[no-untyped-def]
    return dsl.ContainerSpec(image="alpine:3.19", command=["echo", text, extra])


def test_values_pasted_verbatim_into_the_payload_are_reported(tmp_path: Path) -> None:
    @dsl.pipeline(name="pasted")
    def pipeline(word: str = "plain") -> None:
        upstream = say(msg="x")
        shout(text=upstream.output, extra="safe")  # run-time value
        shout(text='say "hi"', extra=word)  # quotes in a constant; a parameter without any
        shout(text=f"n={upstream.output}", extra="safe")  # nested placeholder in a constant

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    result = rewrite_pipeline(path, project=PROJECT)
    reported = {s.task: s.unescaped_payload_inputs for s in result.steps}
    assert reported["say"] == ()  # a Python component: inputs travel in the escaped executor input
    assert reported["shout"] == ("text",)
    assert reported["shout-2"] == ("text",)
    assert reported["shout-3"] == ("pipelinechannel--say-Output",)
    again = rewrite_pipeline(result.spec, project=PROJECT)
    assert {s.task: s.unescaped_payload_inputs for s in again.steps} == reported


@dsl.container_component
def cat_file(data: Input[Dataset]):  # type: ignore[no-untyped-def]
    return dsl.ContainerSpec(image="alpine:3.19", command=["cat", data.path])


def test_input_artifact_paths_pasted_into_the_payload_are_reported(tmp_path: Path) -> None:
    # the producer sets its output artifact's URI, and the path derives from it: a quote there
    # would land inside the payload JSON of the consumer
    @dsl.pipeline(name="artifact-paths")
    def pipeline() -> None:
        cat_file(data=produce().outputs["data"])

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    result = rewrite_pipeline(path, project=PROJECT)
    reported = {s.task: s.unescaped_payload_inputs for s in result.steps}
    assert reported == {"produce": (), "cat-file": ("data",)}


def test_dumped_templates_never_use_yaml_aliases() -> None:
    # the loader refuses aliases, so what we write must not contain any, even for shared objects
    shared = {"a": 1}
    spec = {
        "pipelineInfo": {"name": "p"},
        "root": {"dag": {"tasks": {}}},
        "schemaVersion": "2.1.0",
        "x": [shared, shared],
    }
    text = dump_template(spec)
    assert "&" not in text and "*" not in text
    assert parse_template_text(text) == (spec, ())
