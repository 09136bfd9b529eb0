"""Mutation property over Google's GCPC pipelines and the Kubeflow corpus: plant an upstream
value's placeholder inside any constant (string, list, mapping value or key) that a step pastes
into its container's arguments — every launcher kind, wrapped or not, every nesting the corpus
has — and the rewrite either refuses the step or reports it (ZT102). Seeded; a fixed budget."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from zt_pipelines.errors import ZtError
from zt_pipelines.spec import load_template, rewrite_pipeline

PROJECT = "zt-test-project"
VALUES = {"project": PROJECT, "location": "us-central1", "root_dir": "gs://zt-bucket/root"}
CHANNEL = "pipelinechannel--zt-planted"
PLANTED = "{{$.inputs.parameters['" + CHANNEL + "']}}"
BUDGET = 60


def _leaf_tasks(
    ir: dict[str, Any],
) -> list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    out = []
    stack: list[tuple[str, dict[str, Any]]] = [("", ir["root"])]
    while stack:
        prefix, component = stack.pop()
        for name, task in (component.get("dag") or {}).get("tasks", {}).items():
            child = ir["components"][task["componentRef"]["name"]]
            if "dag" in child:
                stack.append((prefix + name + "/", child))
            else:
                out.append((prefix + name, task, child, component))
    return out


def _plant(value: Any, rng: random.Random) -> Any:
    if isinstance(value, list):
        return [*value, PLANTED]
    if isinstance(value, dict):
        return {**value, PLANTED: "v"} if rng.random() < 0.3 else {**value, "zt": PLANTED}
    if isinstance(value, str):
        return value + PLANTED
    return None


def _values(ir: dict[str, Any]) -> dict[str, Any]:
    params = (ir["root"].get("inputDefinitions") or {}).get("parameters") or {}
    return {k: v for k, v in VALUES.items() if k in params}


@pytest.mark.shared
@pytest.mark.parametrize("corpus", ["gcpc", "kfp"])
def test_a_planted_run_time_value_is_refused_or_reported(
    corpus: str, gcpc_corpus_dir: Path, corpus_dir: Path
) -> None:
    rng = random.Random(20261129)
    root = gcpc_corpus_dir if corpus == "gcpc" else corpus_dir
    files = sorted(root.rglob("*.yaml"))
    done = refused = 0
    while done < BUDGET:
        path = rng.choice(files)
        try:
            ir, platform = load_template(path)
        except ZtError:
            continue  # the Kubeflow corpus holds a few templates zt-pipelines refuses as is
        candidates = []
        for task_path, task, child, parent in _leaf_tasks(ir):
            executor = ir["deploymentSpec"]["executors"].get(child.get("executorLabel"), {})
            text = json.dumps(executor.get("container") or {})
            for name, binding in ((task.get("inputs") or {}).get("parameters") or {}).items():
                pasted = "{{$.inputs.parameters['" + name + "']}}" in text.replace('\\"', '"')
                if pasted and isinstance(binding, dict) and "runtimeValue" in binding:
                    candidates.append((task_path, task, parent, name))
        if not candidates:
            continue
        task_path, task, parent, name = rng.choice(candidates)
        planted = _plant(task["inputs"]["parameters"][name]["runtimeValue"].get("constant"), rng)
        producers = [n for n, t in parent["dag"]["tasks"].items() if t is not task]
        if planted is None or not producers:
            continue
        task["inputs"]["parameters"][name] = {"runtimeValue": {"constant": planted}}
        task["inputs"]["parameters"][CHANNEL] = {
            "taskOutputParameter": {"producerTask": producers[0], "outputParameterKey": "Output"}
        }
        done += 1
        try:
            result = rewrite_pipeline((ir, platform), project=PROJECT, parameter_values=_values(ir))
        except ZtError:
            refused += 1
            continue
        (step,) = [s for s in result.steps if s.task == task_path]
        reported = step.unescaped_payload_inputs
        where = f"{path.name}: {task_path} input {name!r}"
        # under its own name (nested in a list/mapping) or its holder's (nested in a string)
        assert CHANNEL in reported or name in reported, where
    assert refused < BUDGET
