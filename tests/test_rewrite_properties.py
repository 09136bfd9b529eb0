"""Property test: random DAG shapes with shared containers and shared sub-DAGs.

KFP itself gives each task its own component; templates from other tools may share them, and
the rewrite's content interning must then split exactly where identities differ.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zt_pipelines.identity import classify_identity
from zt_pipelines.spec import rewrite_pipeline
from zt_pipelines.spec.launcher import is_custom_job_launcher

PROJECT = "zt-prop-project"


@st.composite
def pipelines(draw: st.DrawFn) -> dict[str, Any]:
    n_containers = draw(st.integers(1, 4))
    n_dags = draw(st.integers(0, 3))
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    for i in range(n_containers):
        components[f"comp-c{i}"] = {
            "executorLabel": f"exec-c{i}",
            "inputDefinitions": {"parameters": {"msg": {"parameterType": "STRING"}}},
        }
        executors[f"exec-c{i}"] = {
            "container": {
                "image": f"registry.example.com/img{i}:1",
                "command": ["echo"],
                "args": ["{{$.inputs.parameters['msg']}}", "{{$}}"],
            }
        }

    def tasks(allowed_dags: list[str]) -> dict[str, Any]:
        refs = [f"comp-c{i}" for i in range(n_containers)] + allowed_dags
        chosen = draw(st.lists(st.sampled_from(refs), min_size=1, max_size=4))
        out = {}
        for index, ref in enumerate(chosen):
            task: dict[str, Any] = {
                "componentRef": {"name": ref},
                "taskInfo": {"name": f"t{index}"},
            }
            if ref.startswith("comp-c"):
                task["inputs"] = {"parameters": {"msg": {"runtimeValue": {"constant": "hi"}}}}
            out[f"t{index}"] = task
        return out

    dag_names: list[str] = []
    for j in range(n_dags):
        components[f"comp-d{j}"] = {"dag": {"tasks": tasks(list(dag_names))}}
        dag_names.append(f"comp-d{j}")
    return {
        "pipelineInfo": {"name": "prop"},
        "root": {"dag": {"tasks": tasks(dag_names)}},
        "components": components,
        "deploymentSpec": {"executors": executors},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.17.3",
    }


def _container_paths(spec: dict[str, Any], component: dict[str, Any], prefix: str) -> list[str]:
    out = []
    for name, task in component["dag"]["tasks"].items():
        child = spec["components"][task["componentRef"]["name"]]
        if "dag" in child:
            out += _container_paths(spec, child, f"{prefix}{name}/")
        else:
            out.append(prefix + name)
    return out


@settings(max_examples=60, deadline=None)
@given(spec=pipelines())
def test_random_shapes_rewrite_purely_idempotently_and_split_where_needed(
    spec: dict[str, Any],
) -> None:
    frozen = copy.deepcopy(spec)
    result = rewrite_pipeline(spec, project=PROJECT)
    assert spec == frozen
    out = result.spec
    paths = _container_paths(frozen, frozen["root"], "")
    assert sorted(s.task for s in result.steps) == sorted(paths)
    assert sorted(_container_paths(out, out["root"], "")) == sorted(paths)
    emails = [s.service_account for s in result.steps]
    assert len(set(emails)) == len(emails)
    assert all(e and not classify_identity(e).is_default for e in emails)
    for executor in out["deploymentSpec"]["executors"].values():
        assert is_custom_job_launcher(executor["container"])
    for step in result.steps:
        component = out["components"][step.component]
        assert component["executorLabel"] == step.executor
        params = component["inputDefinitions"]["parameters"]
        assert params["service_account"]["defaultValue"] == step.service_account
    # every referenced component exists, and nothing unreferenced is left behind
    referenced = set()
    stack = [out["root"]]
    while stack:
        for task in stack.pop()["dag"]["tasks"].values():
            referenced.add(task["componentRef"]["name"])
            child = out["components"][task["componentRef"]["name"]]
            if "dag" in child:
                stack.append(child)
    assert referenced == set(out["components"])
    again = rewrite_pipeline(out, project=PROJECT)
    assert again.spec == out
