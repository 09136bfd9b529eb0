"""Every pipeline of the shared corpus (113 real KFP compiles) rewrites with derived identities.

``failing/`` holds pipelines that fail at *run* time (a step exits non-zero, several exit
handlers); they compile and must rewrite like any other.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2

from zt_pipelines.declare import PLATFORM_KEY
from zt_pipelines.identity import classify_identity
from zt_pipelines.spec import dump_template, load_template, rewrite_pipeline
from zt_pipelines.spec.launcher import LAUNCHER_IMAGE, is_custom_job_launcher

PROJECT = "zt-corpus-project"


def _corpus(corpus_dir: Path) -> list[Path]:
    files = sorted(corpus_dir.rglob("*.yaml"))
    assert len(files) >= 113, f"expected the 113-file corpus, found {len(files)}"
    return files


def _containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        label: executor["container"]
        for label, executor in spec.get("deploymentSpec", {}).get("executors", {}).items()
        if "container" in executor
    }


def _task_components(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(component name, component) of every task reachable from root, with repetition."""
    out: list[tuple[str, dict[str, Any]]] = []
    stack = [spec["root"]]
    while stack:
        for task in stack.pop().get("dag", {}).get("tasks", {}).values():
            name = task["componentRef"]["name"]
            component = spec["components"][name]
            out.append((name, component))
            if "dag" in component:
                stack.append(component)
    return out


def test_whole_corpus_rewrites_loads_and_is_idempotent(corpus_dir: Path, tmp_path: Path) -> None:
    files = _corpus(corpus_dir)
    for path in files:
        where = str(path.relative_to(corpus_dir))
        original, original_docs = load_template(path)
        before = json.dumps([original, original_docs], sort_keys=True)
        result = rewrite_pipeline(path, project=PROJECT)
        assert json.dumps([original, original_docs], sort_keys=True) == before, where
        spec = result.spec
        out = tmp_path / path.name
        text = dump_template(result)
        out.write_text(text)

        # loads in kfp and parses as a PipelineSpec
        components.load_component_from_file(str(out))
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
        for doc in result.platform_docs:
            json_format.ParseDict(doc, pipeline_spec_pb2.PlatformSpec())
        assert PLATFORM_KEY not in text, where

        # every container executor is now the launcher
        for label, container in _containers(spec).items():
            assert is_custom_job_launcher(container), f"{where}: {label}"
            assert container["image"].startswith(LAUNCHER_IMAGE.split(":")[0]), where

        # every container task runs as a distinct, non-default constant identity
        identities = [s.service_account for s in result.steps]
        assert len(identities) == len(set(identities)), where
        for step in result.steps:
            assert step.service_account is not None
            assert not classify_identity(step.service_account).is_default, where
        assert len(result.steps) == sum(
            1 for _, c in _task_components(spec) if c.get("executorLabel") in _containers(spec)
        ), where
        for name, component in _task_components(spec):
            if component.get("executorLabel") not in _containers(spec):
                continue
            default = component["inputDefinitions"]["parameters"]["service_account"]
            step = next(s for s in result.steps if s.component == name)
            if step.already_custom_job:
                continue
            assert default["defaultValue"] == step.service_account, where

        # each worker pool keeps the original image, command and args
        _assert_worker_pools_keep_containers(original, result, where)

        # rewriting twice equals rewriting once
        again = rewrite_pipeline((spec, result.platform_docs), project=PROJECT)
        assert again.spec == spec, where
        assert again.platform_docs == result.platform_docs, where
        assert dump_template(again) == text, where
        assert [_comparable(s) for s in again.steps] == [_comparable(s) for s in result.steps]


def _comparable(step: Any) -> Any:
    return dataclasses.replace(step, already_custom_job=False, source="derived")


def _components_by_path(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    stack: list[tuple[str, dict[str, Any]]] = [("", spec["root"])]
    while stack:
        prefix, component = stack.pop()
        for name, task in component.get("dag", {}).get("tasks", {}).items():
            child = spec["components"][task["componentRef"]["name"]]
            out[prefix + name] = child
            if "dag" in child:
                stack.append((prefix + name + "/", child))
    return out


def _unescape(parts: list[str]) -> list[str]:
    return ["{{$}}" if part == "{{$.json_escape[1]}}" else part for part in parts]


def _assert_worker_pools_keep_containers(original: dict[str, Any], result: Any, where: str) -> None:
    before = _components_by_path(original)
    executors = original["deploymentSpec"]["executors"]
    for step in result.steps:
        if step.already_custom_job:
            continue
        container = executors[before[step.task]["executorLabel"]]["container"]
        params = result.spec["components"][step.component]["inputDefinitions"]["parameters"]
        pools = params["worker_pool_specs"]["defaultValue"]
        assert len(pools) == (2 if (step.job.replica_count or 1) > 1 else 1)
        for pool in pools:
            spec = pool["container_spec"]
            assert spec["image_uri"] == container["image"] == step.image, f"{where}: {step.task}"
            assert _unescape(spec["command"]) == container.get("command", []), where
            assert _unescape(spec["args"]) == container.get("args", []), where
            assert spec["env"] == container.get("env", []), where


def test_existing_gcpc_custom_job_is_recognised_not_wrapped(corpus_dir: Path) -> None:
    path = corpus_dir / "pipeline_with_condition_dynamic_task_output_custom_training_job.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} is not in this corpus")
    original, _ = load_template(path)
    result = rewrite_pipeline(path, project=PROJECT)
    (job,) = [s for s in result.steps if s.already_custom_job]
    assert job.task == "condition-1/custom-training-job"
    assert job.source == "derived"  # GCPC's '' default means "absent": derived, then pinned
    assert job.image == "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.5.0"
    before = original["deploymentSpec"]["executors"]["exec-custom-training-job"]
    assert result.spec["deploymentSpec"]["executors"]["exec-custom-training-job"] == before
    task = result.spec["components"]["comp-condition-1"]["dag"]["tasks"]["custom-training-job"]
    assert task["inputs"]["parameters"]["service_account"] == {
        "runtimeValue": {"constant": job.service_account}
    }
    assert (
        task["inputs"]["parameters"]["worker_pool_specs"]
        == (
            original["components"]["comp-condition-1"]["dag"]["tasks"]["custom-training-job"][
                "inputs"
            ]["parameters"]["worker_pool_specs"]
        )
    )


def test_kubernetes_platform_config_is_kept_intact(corpus_dir: Path) -> None:
    path = corpus_dir / "pipeline_with_volume.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} is not in this corpus")
    _, docs = load_template(path)
    result = rewrite_pipeline(path, project=PROJECT)
    assert result.platform_docs == docs
    assert "kubernetes" in dump_template(result)
