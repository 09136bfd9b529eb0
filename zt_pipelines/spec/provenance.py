"""Where the run-time values a step pastes into its payload come from, and a digest of it.

A ZT102 waiver records a reviewer's judgement that the values a step pastes unescaped into its
job payload are safe. That judgement is about the step *and* everything that can influence those
values: the task that produces each one (through sub-pipelines, loops and ``dsl.OneOf``), that
task's component and bindings, and, recursively, whatever feeds those. This module traces each
pasted input of a rewritten step to its origin and condenses that upstream closure into a short
digest (:func:`payload_provenance`); a waiver pins the digest, so swapping a producer, changing
its component or re-feeding a sub-pipeline input no longer matches the old waiver.

Pure: reads the *rewritten* IR (so a second rewrite, which returns the same IR, gives the same
digest). It masks a pinned identity or a parameter value only at the places the rewrite writes
one — a task input it pins (identity, project, location, CMEK key), the identity field of
a launcher's ``--payload``, the arguments of a GCPC launcher it wrapped (where it inlines the
task's known inputs) — never a producer's image, code, command, arguments, environment or
network: those are what a reviewer reviewed. See ``docs/policy-file.md``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from zt_pipelines.model import StepIdentity
from zt_pipelines.spec.gcpc import CATALOGUE, JOB_IDENTITY_INPUTS, identify_launcher
from zt_pipelines.spec.launcher import is_custom_job_launcher
from zt_pipelines.spec.payload import PayloadError, parse_payload

__all__ = ["DIGEST_LENGTH", "payload_provenance"]

DIGEST_LENGTH = 24  # hex characters: 96 bits, beyond a second-preimage search
_PLACEHOLDER = re.compile(r"^\{\{\$[^{}]*\}\}$")
_INTEGRAL_FLOAT = re.compile(r"[0-9]\.0[,}\]]")  # how json writes 25.0 (a string may match)
_INPUT_FORM = re.compile(r"^\{\{\$\.inputs\.(parameters|artifacts)\['([^']+)'\][^{}]*\}\}$")
_IDENTITY_MASK = "\0identity\0"
_MIN_MASKED = 4  # shorter parameter values would mask common text (digits, "true")
_MAX_TEXT = 400  # an origin's description (nested dsl.OneOf could grow it without bound)


def payload_provenance(
    ir: Mapping[str, Any],
    steps: Iterable[StepIdentity],
    *,
    parameter_values: Mapping[str, Any],
    identities: Iterable[str | None] = (),
    input_artifacts: Mapping[str, str] | None = None,
) -> list[StepIdentity]:
    """``steps`` with ``payload_input_origins`` and ``upstream_digest`` set for every step that
    pastes run-time values (``unescaped_payload_inputs``); the others unchanged.

    Args:
        ir: the rewritten pipeline IR the steps belong to.
        steps: the rewrite's steps.
        parameter_values: the pipeline parameters' known values (a value pasted directly is
            part of what was reviewed; one that only feeds a producer is not).
        identities: the identities the rewrite pinned, masked out of every fingerprint.
        input_artifacts: the pipeline's input artifacts a run is given (name -> Vertex ML
            Metadata artifact id); an artifact pasted as it is is part of what was reviewed.
    """
    steps = list(steps)
    if not any(s.unescaped_payload_inputs for s in steps):
        return steps
    masked = {e for e in identities if e}
    masked.update(
        e
        for s in steps
        for e in (s.service_account, s.launched_service_account, s.serving_service_account)
        if e
    )
    tracer = _Tracer(ir, parameter_values, masked, input_artifacts or {})
    return [tracer.step(s) if s.unescaped_payload_inputs else s for s in steps]


class _Tracer:
    """One pass over a rewritten IR: task index, memoised producer closures."""

    def __init__(
        self,
        ir: Mapping[str, Any],
        values: Mapping[str, Any],
        masked: set[str],
        artifacts: Mapping[str, str],
    ) -> None:
        self.components: Mapping[str, Any] = ir.get("components") or {}
        self.executors: Mapping[str, Any] = (ir.get("deploymentSpec") or {}).get("executors") or {}
        self.values = values
        self.artifacts = artifacts
        # A pinned identity or a string parameter value the rewrite pinned or inlined into a
        # producer (a project, a location) is masked, so a run in another project reviews the
        # same closure — but only where the rewrite writes such values (see _pinned_input,
        # _component_fingerprint), never wherever the text occurs: an image, code or argument
        # that equals a parameter value is what was reviewed, and swapping it together with the
        # value must change the digest. Tokens hold a NUL, which JSON text never does.
        self.tokens: dict[str, str] = {}
        for name in sorted(values, reverse=True):  # the first name wins a shared value
            value = values[name]
            if isinstance(value, str) and len(value) >= _MIN_MASKED:
                self.tokens[value] = f"\0p:{name}\0"
        self.identities = _Masks({email: _IDENTITY_MASK for email in masked}, _IDENTITY_KEYS)
        self._masks: dict[frozenset[str], _Masks] = {}
        self.fingerprints: dict[tuple[str, frozenset[str], frozenset[str]], str] = {}
        self.launcher_settings: dict[str, frozenset[str]] = {}
        self.task_settings: dict[int, frozenset[str]] = {}  # by id(): self.tasks holds each
        self.tasks: dict[str, tuple[dict[str, Any], str]] = {}  # path -> (task, its DAG path)
        self.dags: dict[str, Mapping[str, Any]] = {"": ir.get("root") or {}}
        self.closures: dict[str, str] = {}
        self.outputs: dict[tuple[str, str, str], tuple[str, Any, frozenset[str]]] = {}
        self._index(ir.get("root") or {}, "")

    def _index(self, dag: Mapping[str, Any], at: str) -> None:
        stack = [(dag, at)]
        while stack:
            component, prefix = stack.pop()
            tasks = (component.get("dag") or {}).get("tasks") or {}
            for name, task in tasks.items() if isinstance(tasks, dict) else ():
                path = f"{prefix}/{name}" if prefix else name
                self.tasks[path] = (task, prefix)
                child = self._component_of(task)
                if "dag" in child:
                    self.dags[path] = child
                    stack.append((child, path))

    def _component_of(self, task: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = (task.get("componentRef") or {}).get("name")
        found = self.components.get(ref) if isinstance(ref, str) else None
        return found if isinstance(found, dict) else {}

    # -- a step ---------------------------------------------------------------------------

    def step(self, step: StepIdentity) -> StepIdentity:
        entry = self.tasks.get(step.task)
        if entry is None:  # not in this IR (a hand-built result): nothing to trace
            return step
        task, dag = entry
        origins: list[tuple[str, str]] = []
        pasted: dict[str, Any] = {}
        producers: set[str] = set()
        for name in step.unescaped_payload_inputs:
            text, key = self._task_input(task, dag, name, producers, direct=True)
            origins.append((name, text))
            pasted[name] = key
        self._close(producers)
        document = {
            "step": self._fingerprint(task, dag),
            "pasted": pasted,
            "upstream": {p: self.closures[p] for p in sorted(producers)},
        }
        return replace(
            step, payload_input_origins=tuple(origins), upstream_digest=self._digest(document)
        )

    # -- tracing bindings -----------------------------------------------------------------

    def _task_input(
        self,
        task: Mapping[str, Any],
        dag: str,
        name: str,
        producers: set[str],
        *,
        direct: bool,
    ) -> tuple[str, Any]:
        inputs = task.get("inputs") or {}
        found = [
            self._binding(bindings[name], dag, kind, producers, direct=direct)
            for kind in ("parameters", "artifacts")
            if isinstance(bindings := inputs.get(kind) or {}, dict) and name in bindings
        ]
        if len(found) == 1:
            return found[0]
        if found:  # bound as a parameter AND an artifact (never KFP's): both are traced
            return " and ".join(t for t, _ in found), {"both": [k for _, k in found]}
        definitions = (self._component_of(task).get("inputDefinitions") or {}).get(
            "parameters"
        ) or {}
        definition = definitions.get(name) if isinstance(definitions, dict) else None
        if isinstance(definition, dict) and "defaultValue" in definition:
            return "the component's default", {"constant": definition["defaultValue"]}
        inner = _INPUT_FORM.match(name)
        if inner and inner.group(2) != name:  # another form of an input (``.uri``, escaped)
            text, key = self._task_input(task, dag, inner.group(2), producers, direct=direct)
            return text, {"form": name, "of": key}
        if _PLACEHOLDER.match(name):
            return "a value Vertex fills in at run time", {"placeholder": name}
        return "nothing bound", {"unbound": name}

    def _binding(
        self, spec: Any, dag: str, kind: str, producers: set[str], *, direct: bool
    ) -> tuple[str, Any]:
        if not isinstance(spec, dict):
            return "a malformed binding", {"malformed": repr(spec)}
        text, key = self._bound(spec, dag, kind, producers, direct=direct)
        selector = spec.get("parameterExpressionSelector")
        if selector:
            text += f" (field {selector})"
            key = {"select": selector, "of": key}
        return text, key

    def _bound(
        self, spec: Mapping[str, Any], dag: str, kind: str, producers: set[str], *, direct: bool
    ) -> tuple[str, Any]:
        runtime = spec.get("runtimeValue")
        if isinstance(runtime, dict) and "constant" in runtime:
            return "a constant", {"constant": runtime["constant"]}
        for field in ("componentInputParameter", "componentInputArtifact"):
            if field in spec:
                return self._dag_input(dag, str(spec[field]), kind, producers, direct=direct)
        for field, key_name in (
            ("taskOutputParameter", "outputParameterKey"),
            ("taskOutputArtifact", "outputArtifactKey"),
        ):
            out = spec.get(field)
            if isinstance(out, dict):
                return self._output(
                    dag, str(out.get("producerTask")), str(out.get(key_name)), kind, producers
                )
        status = spec.get("taskFinalStatus")
        if isinstance(status, dict):
            path = _join(dag, str(status.get("producerTask")))
            producers.add(path)
            return f"the final status of task {path!r}", {"final_status": path}
        return "a value computed at run time", {"other": _plain(spec)}

    def _dag_input(
        self, dag: str, name: str, kind: str, producers: set[str], *, direct: bool
    ) -> tuple[str, Any]:
        if dag == "" or dag not in self.tasks:
            if kind == "artifacts":
                artifact: dict[str, Any] = {"pipeline_artifact": name}
                text = f"the pipeline's input artifact {name!r}"
                # whoever may create an artifact writes its metadata: no code reviewed for one
                # artifact covers another, pasted as it is or read by a producer
                if name in self.artifacts:
                    artifact["artifact_id"] = self.artifacts[name]
                    text += f" (artifact {self.artifacts[name]})"
                return text, artifact
            key: dict[str, Any] = {"parameter": name}
            # the value pasted as it is is part of the review; one feeding a producer is too
            # when it could change the structure of JSON it lands in (a quote, a backslash, a
            # control character): the code reviewed with a tag "1" may pass it through
            if name in self.values and (direct or not _inert(self.values[name])):
                key["value"] = hashlib.sha256(  # hashed: never masked away as a token
                    json.dumps(self.values[name], sort_keys=True, default=repr).encode()
                ).hexdigest()
            return f"pipeline parameter {name!r}", key
        task, parent = self.tasks[dag]
        for iterator_field, items_field in (
            ("parameterIterator", "inputParameter"),
            ("artifactIterator", "inputArtifact"),
        ):
            iterator = task.get(iterator_field)
            if isinstance(iterator, dict) and iterator.get("itemInput") == name:
                items = iterator.get("items") or {}
                if isinstance(items, dict) and items_field in items:
                    inner_text, inner = self._task_input(
                        task, parent, str(items[items_field]), producers, direct=direct
                    )
                else:
                    inner_text, inner = "a constant list", {"constant": _plain(items)}
                return f"a loop item over {inner_text}", {"loop_item": inner}
        bindings = (task.get("inputs") or {}).get(kind) or {}
        if isinstance(bindings, dict) and name in bindings:
            return self._binding(bindings[name], parent, kind, producers, direct=direct)
        declared = ((self.dags[dag].get("inputDefinitions") or {}).get(kind) or {}).get(name)
        if isinstance(declared, dict) and "defaultValue" in declared:
            return f"the default of sub-pipeline {dag!r}", {"constant": declared["defaultValue"]}
        return f"sub-pipeline {dag!r}'s input {name!r}, left unset", {"unset": [dag, name]}

    def _output(
        self, dag: str, producer: str, key: str, kind: str, producers: set[str]
    ) -> tuple[str, Any]:
        """An output of a task in ``dag``, traced into sub-pipelines (memoised: nested
        ``dsl.OneOf`` selectors must not multiply)."""
        memo = (_join(dag, producer), key, kind)
        found = self.outputs.get(memo)
        if found is None:
            mine: set[str] = set()
            text, traced = self._traced_output(dag, producer, key, kind, mine)
            found = self.outputs[memo] = (text, traced, frozenset(mine))
        producers.update(found[2])
        return found[0], found[1]

    def _traced_output(
        self, dag: str, producer: str, key: str, kind: str, producers: set[str]
    ) -> tuple[str, Any]:
        path = _join(dag, producer)
        entry = self.tasks.get(path)
        child = self._component_of(entry[0]) if entry else {}
        if "dag" not in child:
            producers.add(path)
            noun = "artifact" if kind == "artifacts" else "output"
            return f"the {noun} {key!r} of task {path!r}", {"task": path, "output": key}
        outputs = _dict(_dict(_dict(child.get("dag")).get("outputs")).get(kind))
        spec = outputs.get(key) if isinstance(outputs, dict) else None
        selectors: list[tuple[str, str]] = []
        if isinstance(spec, dict):
            one = spec.get("valueFromParameter")
            if isinstance(one, dict):
                selectors.append(
                    (str(one.get("producerSubtask")), str(one.get("outputParameterKey")))
                )
            oneof = spec.get("valueFromOneof")
            chosen = _list(oneof.get("parameterSelectors")) if isinstance(oneof, dict) else []
            chosen = [*chosen, *_list(spec.get("artifactSelectors"))]
            for sel in chosen:
                if isinstance(sel, dict):
                    sub_key = sel.get("outputParameterKey", sel.get("outputArtifactKey"))
                    selectors.append((str(sel.get("producerSubtask")), str(sub_key)))
        if not selectors:
            return f"sub-pipeline {path!r}'s output {key!r}", {"dag_output": [path, key]}
        traced = [self._output(path, sub, sub_key, kind, producers) for sub, sub_key in selectors]
        if len(traced) == 1:
            return traced[0]
        text = "one of " + "; ".join(t for t, _ in traced)
        if len(text) > _MAX_TEXT:
            text = text[: _MAX_TEXT - 1] + "…"
        return text, {"one_of": [self._digest(k) for _, k in traced]}

    # -- producer closures ----------------------------------------------------------------

    def _close(self, roots: set[str]) -> None:
        """Closure digests of ``roots`` and everything upstream of them (iterative: a long
        chain of producers cannot exhaust the stack)."""
        stack = [(p, False) for p in sorted(roots) if p not in self.closures]
        traced: dict[str, tuple[dict[str, Any], set[str]]] = {}
        visiting: set[str] = set()
        while stack:
            path, ready = stack.pop()
            if path in self.closures:
                continue
            if not ready:
                if path in visiting:  # a cycle (never valid KFP): stop here, fail-safe
                    self.closures[path] = self._digest({"cycle": path})
                    continue
                visiting.add(path)
                traced[path] = self._producer_inputs(path)
                stack.append((path, True))
                stack.extend((d, False) for d in sorted(traced[path][1]) if d not in self.closures)
                continue
            inputs, deps = traced[path]
            entry = self.tasks.get(path)
            self.closures[path] = self._digest(
                {
                    "task": path,
                    "component": self._fingerprint(*entry, producer=True) if entry else None,
                    "inputs": inputs,
                    "upstream": {d: self.closures.get(d, "") for d in sorted(deps)},
                }
            )
            visiting.discard(path)

    def _producer_inputs(self, path: str) -> tuple[dict[str, Any], set[str]]:
        entry = self.tasks.get(path)
        deps: set[str] = set()
        if entry is None:
            return {"missing": path}, deps
        task, dag = entry
        inputs: dict[str, Any] = {}
        # an importer's output IS its URI input: a parameter feeding it is pasted as it is
        label = self._component_of(task).get("executorLabel")
        importer = "importer" in _dict(
            self.executors.get(label) if isinstance(label, str) else None
        )
        settings = self._settings(task, dag, producer=True)
        for kind in ("parameters", "artifacts"):
            bindings = (task.get("inputs") or {}).get(kind) or {}
            for name in sorted(bindings) if isinstance(bindings, dict) else ():
                if kind == "parameters" and name in settings:
                    continue  # where and how the job runs (a warm pool, its machine) is not
                    # what it produces: changing it needs no new review
                # a network from a pipeline parameter: its value (what the job is peered with)
                network = kind == "parameters" and name in _NETWORK_INPUTS
                _, key = self._binding(bindings[name], dag, kind, deps, direct=importer or network)
                if name == "worker_pool_specs" and isinstance(key, dict) and "constant" in key:
                    key = {"constant": _workload(key["constant"])}
                if kind == "parameters" and isinstance(key, dict) and set(key) == {"constant"}:
                    key = {"constant": self._pinned_input(name, key["constant"])}
                inputs[f"{kind}:{name}"] = key
        return inputs, deps

    def _pinned_input(self, name: str, value: Any) -> Any:
        """A producer's input constant, masked where the rewrite pins one: an identity input
        (the step's or its job's identity), a placement input (a project, location or CMEK key
        taken from a pipeline parameter), a worker identity flag in a list input. Never its
        network: which host a private address its code reads names depends on it."""
        if name in _IDENTITY_INPUTS:
            return self.identities.whole(value)
        if name in _PLACEMENT_INPUTS and name not in _NETWORK_INPUTS and isinstance(value, str):
            return self.tokens.get(value, value)
        if name in _FLAG_INPUTS and isinstance(value, list):
            return [
                self.identities.whole(v) if i and value[i - 1] in _FLAG_INPUTS[name] else v
                for i, v in enumerate(value)
            ]
        return value

    def _fingerprint(self, task: Mapping[str, Any], dag: str, *, producer: bool = False) -> str:
        """What a task runs: its component (without its name) and executor; the parameter
        values the task receives masked where the rewrite inlined them (a ``producer``'s
        network is part of what it runs: see :meth:`_settings`)."""
        ref = str((task.get("componentRef") or {}).get("name"))
        fed = self._fed_values(task, dag)
        settings = self._settings(task, dag, producer=producer)
        found = self.fingerprints.get((ref, fed, settings))
        if found is None:
            found = self._component_fingerprint(task, fed, settings)
            self.fingerprints[(ref, fed, settings)] = found
        return found

    def _settings(
        self, task: Mapping[str, Any], dag: str, *, producer: bool = False
    ) -> frozenset[str]:
        """The task's inputs that only set where and how its launcher's job runs (network,
        labels, timeouts, a warm pool ...): each fills, as a whole value, the member of that
        name in the launcher's ``--payload`` and nothing else — not the job's code (its worker
        pools), not another input. An input of that name that a component's own code reads is
        what it produces, and is hashed. For a ``producer``, its network placement is hashed
        too: a private address its code reads (an NFS share, ``http://10.0.0.5``) names
        another host on another network — unlike the waived step's own network."""
        found = self._all_settings(task)
        if not producer or not found & _NETWORK_INPUTS:
            return found
        # only a network that is set: waivers of producers on no network stay as they were
        bindings = _dict(_dict(task.get("inputs")).get("parameters"))
        definitions = _dict(
            _dict(self._component_of(task).get("inputDefinitions")).get("parameters")
        )
        placed = set()
        for name in found & _NETWORK_INPUTS:
            if name in bindings:
                value = self._resolved(bindings[name], dag)
            else:
                value = _dict(definitions.get(name)).get("defaultValue")
            if value is _RUNTIME or value not in _NO_NETWORK:
                placed.add(name)
        return found - placed

    def _resolved(self, spec: Any, dag: str) -> Any:
        """The constant a binding holds, through enclosing sub-pipelines to a pipeline
        parameter's value or a default; ``_RUNTIME`` for anything else."""
        for _ in range(len(self.dags) + 1):
            spec = _dict(spec)
            runtime = _dict(spec.get("runtimeValue"))
            if "constant" in runtime:
                return runtime["constant"]
            name = spec.get("componentInputParameter")
            if not isinstance(name, str):
                return _RUNTIME
            if dag == "" or dag not in self.tasks:
                if name in self.values:
                    return self.values[name]
                root = _dict(_dict(self.dags[""].get("inputDefinitions")).get("parameters"))
                return _dict(root.get(name)).get("defaultValue", _RUNTIME)
            task, parent = self.tasks[dag]
            bound = _dict(_dict(task.get("inputs")).get("parameters"))
            if name not in bound:
                declared = _dict(_dict(self.dags[dag].get("inputDefinitions")).get("parameters"))
                return _dict(declared.get(name)).get("defaultValue", _RUNTIME)
            spec, dag = bound[name], parent
        return _RUNTIME

    def _all_settings(self, task: Mapping[str, Any]) -> frozenset[str]:
        found = self.task_settings.get(id(task))
        if found is not None:
            return found
        ref = str((task.get("componentRef") or {}).get("name"))
        candidates = self.launcher_settings.get(ref)
        if candidates is None:
            candidates = self.launcher_settings[ref] = self._launcher_settings(task)
        found = candidates
        if candidates:
            bindings = _dict(_dict(task.get("inputs")).get("parameters"))
            text = {k: json.dumps(v, sort_keys=True) for k, v in bindings.items()}
            found = frozenset(
                name
                for name in candidates
                if not any(_placeholder(name) in t for k, t in text.items() if k != name)
            )
        self.task_settings[id(task)] = found
        return found

    def _launcher_settings(self, task: Mapping[str, Any]) -> frozenset[str]:
        component = self._component_of(task)
        label = component.get("executorLabel")
        container = _dict(
            _dict(self.executors.get(label) if isinstance(label, str) else None).get("container")
        )
        args = container.get("args")
        if identify_launcher(container) is None or not isinstance(args, list):
            return frozenset()
        at = [i + 1 for i, a in enumerate(args[:-1]) if a == "--payload"]
        if len(at) != 1 or not isinstance(args[at[0]], str):
            return frozenset()
        candidates = _payload_settings(args[at[0]])
        if not candidates:
            return candidates
        rest = json.dumps(
            [component, container.get("command"), [a for i, a in enumerate(args) if i != at[0]]],
            sort_keys=True,
        )
        return frozenset(name for name in candidates if _placeholder(name) not in rest)

    def _fed_values(self, task: Mapping[str, Any], dag: str) -> frozenset[str]:
        """The masked values a task's inputs carry: a pipeline parameter bound (through
        enclosing sub-pipelines) by name, a placement constant the rewrite pinned from one, an
        identity it pinned. Only these can the rewrite have inlined into the task's launcher."""
        fed: set[str] = set()
        bindings = _dict(_dict(task.get("inputs")).get("parameters"))
        for name, spec in bindings.items():
            if not isinstance(spec, dict):
                continue
            constant = _dict(spec.get("runtimeValue")).get("constant")
            values: list[Any] = []
            if "componentInputParameter" in spec:
                root = self._root_parameter(dag, str(spec["componentInputParameter"]))
                values.append(self.values.get(root) if root is not None else None)
            elif name in _PLACEMENT_INPUTS:
                values.append(constant)
            if name in _IDENTITY_INPUTS:
                values.append(constant)
            elif name in _FLAG_INPUTS and isinstance(constant, list):
                values += [
                    v for i, v in enumerate(constant) if i and constant[i - 1] in _FLAG_INPUTS[name]
                ]
            fed.update(
                v
                for v in values
                if isinstance(v, str) and (v in self.tokens or v in self.identities.tokens)
            )
        return frozenset(fed)

    def _root_parameter(self, dag: str, name: str) -> str | None:
        """The pipeline parameter a DAG input is bound to, through enclosing sub-pipelines
        (``None``: a constant, a loop item, an upstream output)."""
        for _ in range(len(self.dags) + 1):
            if dag == "" or dag not in self.tasks:
                return name
            task, parent = self.tasks[dag]
            spec = _dict(_dict(task.get("inputs")).get("parameters")).get(name)
            if not isinstance(spec, dict) or "componentInputParameter" not in spec:
                return None
            dag, name = parent, str(spec["componentInputParameter"])
        return None

    def _component_fingerprint(
        self, task: Mapping[str, Any], fed: frozenset[str], settings: frozenset[str]
    ) -> str:
        component = self._component_of(task)
        label = component.get("executorLabel")
        executor = self.executors.get(label) if isinstance(label, str) else None
        body = {k: v for k, v in component.items() if k != "executorLabel"}
        definitions = (body.get("inputDefinitions") or {}).get("parameters")
        if isinstance(definitions, dict):  # where and how the job runs is not what it makes
            kept = {name: d for name, d in definitions.items() if name not in settings}
            for name in _IDENTITY_INPUTS & set(kept):  # a pinned identity as the default
                if isinstance(kept[name], dict) and "defaultValue" in kept[name]:
                    default = self.identities.whole(kept[name]["defaultValue"])
                    kept[name] = {**kept[name], "defaultValue": default}
            pools = kept.get("worker_pool_specs")
            if isinstance(pools, dict) and "defaultValue" in pools:
                # the worker pool of a CustomJob launcher's component: where the rewrite puts
                # the container (or GCPC launcher) it wraps
                wrapper = is_custom_job_launcher(_dict(_dict(executor).get("container")))
                workload = _workload(pools["defaultValue"])
                kept["worker_pool_specs"] = {
                    **pools,
                    "defaultValue": self._wrapped(workload, fed) if wrapper else workload,
                }
            body["inputDefinitions"] = {**body["inputDefinitions"], "parameters": kept}
        return self._digest({"component": body, "executor": self._launcher(executor)})

    def _launcher(self, executor: Any) -> Any:
        """An executor with the identity the rewrite pinned into its launcher's ``--payload``
        masked (any other identity there is refused by the rewrite)."""
        container = _dict(_dict(executor).get("container"))
        args = container.get("args")
        if not isinstance(args, list) or "--payload" not in args[:-1]:
            return executor
        masked = [
            self.identities.written(v) if i and args[i - 1] == "--payload" else v
            for i, v in enumerate(args)
        ]
        return {**_dict(executor), "container": {**container, "args": masked}}

    def _wrapped(self, pools: Any, fed: frozenset[str]) -> Any:
        """A wrapper's worker pools with the values the rewrite inlined into a GCPC launcher
        it wrapped (its command and arguments; the task's parameter values and pinned
        identities) masked. Any other pool — a container's image, code, arguments or
        environment — is hashed as it is."""
        if not isinstance(pools, list):
            return pools
        out: list[Any] = []
        for pool in pools:
            spec = _dict(pool).get("container_spec")
            kind = identify_launcher(spec) if isinstance(spec, dict) else None
            if kind is None or not kind.wrap or not isinstance(spec, dict):
                out.append(pool)
                continue
            masks = self._masks_for(fed)
            spec = dict(spec)
            for key in ("command", "args"):
                if isinstance(spec.get(key), list):
                    spec[key] = [masks.written(v) for v in spec[key]]
            out.append({**pool, "container_spec": spec})
        return out

    def _masks_for(self, fed: frozenset[str]) -> _Masks:
        found = self._masks.get(fed)
        if found is None:
            tokens = {v: self.tokens[v] for v in fed if v in self.tokens}
            tokens.update({v: _IDENTITY_MASK for v in fed if v in self.identities.tokens})
            found = self._masks[fed] = _Masks(tokens)
        return found

    def _digest(self, document: Any) -> str:
        """A short SHA-256 of canonical JSON (numbers as aiplatform's Struct sends them)."""
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        if _INTEGRAL_FLOAT.search(text):  # aiplatform's protobuf Struct turns 25 into 25.0
            document = json.loads(text, parse_float=_number)
            text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


class _Masks:
    """Tokens for values at a place the rewrite writes them: as a whole string, and inside JSON
    text it wrote into (a launcher's payload, often Concat fragments that are no JSON on their
    own) as a quoted JSON string literal."""

    def __init__(self, tokens: Mapping[str, str], keys: Iterable[str] = ()) -> None:
        self.tokens = dict(tokens)
        escaped = {json.dumps(v, ensure_ascii=True)[1:-1]: t for v, t in self.tokens.items()}
        self.literal_tokens = escaped
        ordered = sorted(escaped, key=lambda e: (-len(e), e))  # longest first: none hides
        # with ``keys``: a literal only as the value of one of those members
        member = '("(?:' + "|".join(map(re.escape, sorted(keys))) + r')"\s*:\s*)' if keys else "()"
        self.literals = (
            re.compile(member + '"(' + "|".join(map(re.escape, ordered)) + ')"')
            if ordered
            else None
        )

    def whole(self, value: Any) -> Any:
        """``value`` replaced by its token when it IS one of the values."""
        return self.tokens.get(value, value) if isinstance(value, str) else value

    def written(self, value: Any) -> Any:
        """``value`` (an argument the rewrite wrote into) with each of the values masked as a
        whole string, inside its JSON text, or as a quoted JSON literal; other text is kept."""
        if isinstance(value, str):
            token = self.tokens.get(value)
            if token is not None:
                return token
            if value[:1] in ("{", "[") and value[-1:] in ("}", "]"):
                try:
                    inner = json.loads(value)
                except ValueError:
                    inner = None
                if isinstance(inner, (dict, list)):
                    masked = self.written(inner)
                    if masked != inner:
                        return "\0json\0" + json.dumps(
                            masked, sort_keys=True, separators=(",", ":"), ensure_ascii=True
                        )
                    return value
            if self.literals is not None:
                return self.literals.sub(
                    lambda m: m.group(1) + '"' + self.literal_tokens[m.group(2)] + '"', value
                )
            return value
        if isinstance(value, dict):
            return {k: self.written(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.written(v) for v in value]
        return value


# CustomJob settings of where and how a job runs (the wrapper's defaults, GCPC's job inputs)
_JOB_SETTINGS = frozenset(
    {
        "service_account",
        "persistent_resource_id",
        "network",
        "reserved_ip_ranges",
        "labels",
        "encryption_spec_key_name",
        "enable_web_access",
        "psc_interface_config",
        "timeout",
        "restart_job_on_worker_restart",
        "strategy",
        "max_wait_duration",
    }
)
# the payload member a job setting fills when it is not its own name
_SETTING_MEMBERS = {"encryption_spec_key_name": "kms_key_name"}
# what shape a worker pool runs on; everything else of a pool (its container or package, the
# NFS shares its code reads, a field added later) decides what it runs and is hashed
_POOL_SHAPE = frozenset({"machine_spec", "replica_count", "disk_spec"})
# task inputs the rewrite pins a value into (spec/rewrite.py _pinned_input, _job_identity_inputs,
# _pin_args_flag, _placement): only there is a binding constant masked
_IDENTITY_INPUTS = frozenset(
    {*JOB_IDENTITY_INPUTS}
    | {k.identity.input for k in CATALOGUE if k.identity.input and k.identity.kind == "payload"}
    | {k.serving_identity.input for k in CATALOGUE if k.serving_identity is not None}
) - {""}
_FLAG_INPUTS: dict[str, frozenset[str]] = {
    name: frozenset(
        k.identity.flag
        for k in CATALOGUE
        if k.identity.kind == "args_flag" and k.identity.input == name
    )
    for name in {k.identity.input for k in CATALOGUE if k.identity.kind == "args_flag"} - {""}
}
# payload members the rewrite pins an identity into (a launcher's job, a deployed model's)
_IDENTITY_KEYS = frozenset(
    path[-1]
    for k in CATALOGUE
    for path in (
        k.identity.payload_path,
        k.serving_identity.payload_path if k.serving_identity else (),
    )
    if path
)
_PLACEMENT_INPUTS = frozenset(
    {"project", "location", "network", "encryption_spec_key_name"}
    | {
        name
        for k in CATALOGUE
        for name in (*k.project_inputs, *k.location_inputs, *k.network_inputs, *k.cmek_inputs)
    }
)


# what decides which network a job is on: there the same private address is another host, so
# a producer's is hashed (never masked), however it was set — a default, a parameter, a constant
_NETWORK_INPUTS = frozenset(
    {"network", "psc_interface_config", "subnetwork", "network_uri", "subnetwork_uri"}
)
_NO_NETWORK: tuple[Any, ...] = (None, "", {}, [])
_RUNTIME = object()  # a binding known only at run time


def _workload(value: Any) -> Any:
    """A worker pool list without machines, replicas and boot disks: what each pool runs and
    reads (its container or package, NFS shares), not the shape it runs on."""
    if not isinstance(value, list):
        return value
    return [
        {k: v for k, v in pool.items() if k not in _POOL_SHAPE} if isinstance(pool, dict) else pool
        for pool in value
    ]


def _inert(value: Any) -> bool:
    """True when no string in ``value`` can leave a JSON string it is pasted into."""
    if isinstance(value, str):
        return _BREAKS_JSON.search(value) is None
    if isinstance(value, dict):
        return all(_inert(k) and _inert(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_inert(v) for v in value)
    return True


_BREAKS_JSON = re.compile(r'["\\\x00-\x1f]')


@functools.lru_cache(maxsize=256)  # zt's wrapper payload is one text for every wrapped step
def _payload_settings(payload: str) -> frozenset[str]:
    """Job settings whose input fills, as a whole value, exactly one payload member of its
    name (an unreadable payload has none)."""
    try:
        parsed = parse_payload(payload, lambda name: True)
    except PayloadError:
        return frozenset()  # unreadable: nothing is taken for a mere setting
    found = set()
    for name in _JOB_SETTINGS:
        slots = [s for s in parsed.slots if s.placeholder == _placeholder(name)]
        if (
            len(slots) == 1
            and slots[0].whole
            and slots[0].path[-1:] == (_SETTING_MEMBERS.get(name, name),)
        ):
            found.add(name)
    return frozenset(found)


def _placeholder(name: str) -> str:
    return "{{$.inputs.parameters['" + name + "']}}"


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _join(dag: str, name: str) -> str:
    return f"{dag}/{name}" if dag else name


def _plain(value: Any) -> Any:
    """A JSON-able copy (anything else as its repr)."""
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        return repr(value)
