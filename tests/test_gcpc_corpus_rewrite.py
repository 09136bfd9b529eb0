"""All 41 first-party GCPC 2.22 pipelines rewrite: every step and every job it launches under a
constant, non-default identity of its own; GCPC's launchers keep their payloads except for the
identity field; rewriting twice equals rewriting once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2

from zt_pipelines.identity import classify_identity
from zt_pipelines.spec import dump_template, load_template, rewrite_pipeline
from zt_pipelines.spec.gcpc import by_name, identify_launcher
from zt_pipelines.spec.jobs import input_placeholder
from zt_pipelines.spec.launcher import is_custom_job_launcher
from zt_pipelines.spec.payload import field_at, parse_payload

PROJECT = "zt-test-project"
VALUES = {"project": PROJECT, "location": "us-central1", "root_dir": "gs://zt-bucket/root"}


def _files(gcpc_corpus_dir: Path) -> list[Path]:
    files = sorted(gcpc_corpus_dir.glob("*/*.yaml"))
    assert len(files) == 41, f"expected the 41 GCPC pipelines, found {len(files)}"
    return files


def _values(ir: dict[str, Any]) -> dict[str, Any]:
    params = (ir["root"].get("inputDefinitions") or {}).get("parameters") or {}
    return {k: v for k, v in VALUES.items() if k in params}


def _bindings_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task bindings by component name (every task reachable from root)."""
    out: dict[str, dict[str, Any]] = {}
    stack = [spec["root"]]
    while stack:
        for task in stack.pop().get("dag", {}).get("tasks", {}).values():
            name = task["componentRef"]["name"]
            out[name] = (task.get("inputs") or {}).get("parameters") or {}
            if "dag" in spec["components"][name]:
                stack.append(spec["components"][name])
    return out


def _comparable(step: Any) -> Any:
    return dataclasses.replace(step, already_custom_job=False, source="derived")


def test_all_gcpc_pipelines_rewrite(gcpc_corpus_dir: Path, tmp_path: Path) -> None:
    kinds: set[str] = set()
    for path in _files(gcpc_corpus_dir):
        where = path.name
        original, _ = load_template(path)
        values = _values(original)
        result = rewrite_pipeline(path, project=PROJECT, parameter_values=values)
        spec = result.spec
        out = tmp_path / path.name
        text = dump_template(result)
        out.write_text(text)
        components.load_component_from_file(str(out))
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())

        executors = spec["deploymentSpec"]["executors"]
        bindings = _bindings_of(spec)
        identities = [s.service_account for s in result.steps]
        assert len(identities) == len(set(identities)), f"{where}: a shared step identity"
        for step in result.steps:
            kinds.add(step.job_kind)
            for sa in (step.service_account, step.launched_service_account):
                if sa is not None:
                    assert not classify_identity(sa).is_default, where
            assert step.service_account is not None, where
            if step.serving_service_account is not None:
                assert not classify_identity(step.serving_service_account).is_default
            container = executors[step.executor]["container"]
            kind = by_name(step.job_kind)
            if is_custom_job_launcher(container) or step.wrapped_launcher:
                assert is_custom_job_launcher(container), f"{where}: {step.task}"
            else:
                assert identify_launcher(container) is kind and not kind.wrap, where
            # the identity sits in the launcher's identity field, as a constant
            args = container["args"]
            payload = args[args.index("--payload") + 1]
            step_bindings = bindings[step.component]
            parsed = parse_payload(payload, lambda name: True)
            node = field_at(parsed.tree, ("job_spec", "service_account"))
            if kind.name != "CustomJob" and not step.wrapped_launcher:
                node = field_at(parsed.tree, kind.identity.payload_path)
            name = input_placeholder(node)
            if name is None:
                assert node == step.service_account, f"{where}: {step.task}"
            elif name in step_bindings:
                assert step_bindings[name] == {"runtimeValue": {"constant": step.service_account}}
            else:
                defaults = spec["components"][step.component]["inputDefinitions"]["parameters"]
                assert defaults[name]["defaultValue"] == step.service_account, where
            # a job-identity input of the component never stays empty
            for identity_input in ("service_account", "dataflow_service_account"):
                if identity_input in step_bindings and identity_input != name:
                    constant = step_bindings[identity_input]["runtimeValue"]["constant"]
                    assert not classify_identity(constant).is_default, f"{where}: {step.task}"

        again = rewrite_pipeline(
            (spec, result.platform_docs), project=PROJECT, parameter_values=values
        )
        assert again.spec == spec, where
        assert dump_template(again) == text, where
        assert [_comparable(s) for s in again.steps] == [_comparable(s) for s in result.steps]
    assert {"CustomJob", "BatchPredictionJob", "UploadModel", "BigqueryQueryJob"} <= kinds


def test_gcpc_launchers_keep_their_payload_except_the_identity(gcpc_corpus_dir: Path) -> None:
    """Launchers left in place (they run as the pipeline SA): image, command and every argument
    are GCPC's; the payload differs at most by the identity member the rewrite added."""
    checked = 0
    for path in _files(gcpc_corpus_dir):
        original, _ = load_template(path)
        result = rewrite_pipeline(path, project=PROJECT, parameter_values=_values(original))
        before = original["deploymentSpec"]["executors"]
        after = result.spec["deploymentSpec"]["executors"]
        for step in result.steps:
            if step.wrapped_launcher or step.executor not in before:
                continue
            old, new = before[step.executor]["container"], after[step.executor]["container"]
            kind = identify_launcher(old)
            if kind is None or kind.wrap:
                continue
            at = old["args"].index("--payload") + 1
            assert {k: v for k, v in old.items() if k != "args"} == {
                k: v for k, v in new.items() if k != "args"
            }
            assert (
                old["args"][:at] + old["args"][at + 1 :] == new["args"][:at] + new["args"][at + 1 :]
            )
            old_payload, new_payload = old["args"][at], new["args"][at]
            if old_payload != new_payload:
                member = json.dumps(f'"service_account": "{step.service_account}", ')[1:-1]
                plain = f'"service_account": "{step.service_account}", '
                assert old_payload in (
                    new_payload.replace(member, "", 1),
                    new_payload.replace(plain, "", 1),
                ), f"{path.name}: {step.task}"
            checked += 1
    assert checked > 100
