"""Resolve what a task's inputs hold before submission, and the CustomJob fields of a step.

Pure decisions on IR fragments:

* :class:`Bound` — what a DAG input is bound to, traced up to the pipeline's root: a constant,
  a pipeline parameter (value from ``parameter_values`` or its default), or something known only
  at run time (an upstream output, a loop item, a task's final status).
* :func:`job_settings` — the effective CustomJob settings of a step from the task's recorded
  resource settings, its declaration and the pipeline defaults.
* :func:`derivation_keys` — the stable per-task key a derived identity is computed from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from zt_pipelines.errors import DeclarationError, TemplateError, UnpinnedIdentityError
from zt_pipelines.model import JobFields
from zt_pipelines.spec.launcher import GCPC_DEFAULTS, CustomJobSettings, is_placeholder

BoundKind = Literal["constant", "runtime", "unresolved"]


@dataclass(frozen=True)
class Bound:
    """What an input is bound to.

    Attributes:
        kind: ``constant`` (value known now), ``runtime`` (known only when the pipeline
            runs), ``unresolved`` (a pipeline parameter without a value or default).
        value: the constant value.
        parameter: the root pipeline parameter the value came from, if any.
        what: a human description for errors (``"the output 'x' of task 'a'"``).
    """

    kind: BoundKind
    value: Any = None
    parameter: str | None = None
    what: str = ""


Env = Mapping[str, Bound]


def root_env(spec: dict[str, Any], parameter_values: Mapping[str, Any] | None) -> dict[str, Bound]:
    """Bindings of the pipeline's own parameters from ``parameter_values`` or defaults.

    Raises:
        TemplateError: ``parameter_values`` names a parameter the pipeline does not have.
    """
    defs = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    values = dict(parameter_values or {})
    unknown = sorted(set(values) - set(defs))
    if unknown:
        raise TemplateError(
            f"parameter_values names {unknown[0]!r}, which the pipeline does not have",
            where="parameter_values",
            fix="known parameters: " + (", ".join(sorted(defs)) or "(none)"),
        )
    env: dict[str, Bound] = {}
    for name, definition in defs.items():
        if name in values:
            env[name] = Bound("constant", values[name], parameter=name)
        elif isinstance(definition, dict) and "defaultValue" in definition:
            env[name] = Bound("constant", definition["defaultValue"], parameter=name)
        else:
            env[name] = Bound("unresolved", parameter=name, what=f"pipeline parameter {name!r}")
    return env


def bind(value_spec: Any, env: Env) -> Bound:
    """What a task input (``inputs.parameters[x]`` of a task) is bound to."""
    if not isinstance(value_spec, dict):
        return Bound("runtime", what="a malformed input binding")
    if "runtimeValue" in value_spec:
        runtime = value_spec["runtimeValue"]
        if isinstance(runtime, dict) and "constant" in runtime:
            return Bound("constant", runtime["constant"])
        return Bound("runtime", what="a runtime value")
    if "componentInputParameter" in value_spec:
        name = value_spec["componentInputParameter"]
        found = env.get(name)
        if found is not None:
            return found
        return Bound("runtime", what=f"the enclosing DAG's input {name!r} (e.g. a loop item)")
    if "taskOutputParameter" in value_spec:
        out = value_spec["taskOutputParameter"] or {}
        return Bound(
            "runtime",
            what=f"the output {out.get('outputParameterKey')!r} of task "
            f"{out.get('producerTask')!r}",
        )
    if "taskFinalStatus" in value_spec:
        return Bound("runtime", what="an upstream task's final status")
    return Bound("runtime", what="a value computed at run time")


def child_env(
    task: dict[str, Any], env: Env, child: Mapping[str, Any] | None = None
) -> dict[str, Bound]:
    """Bindings of a DAG component's inputs as seen through the task that runs it.

    With the DAG component ``child``: a loop's item input is a run-time value, and an input
    it declares that the task leaves unset holds its default, else nothing
    (``unresolved``: whether it is present is not a constant fact).
    """
    params = (task.get("inputs") or {}).get("parameters") or {}
    env_out = {name: bind(spec, env) for name, spec in params.items()}
    iterator = task.get("parameterIterator")
    item = iterator.get("itemInput") if isinstance(iterator, Mapping) else None
    if isinstance(item, str):
        env_out[item] = Bound("runtime", what="a loop item")
    declared = ((child or {}).get("inputDefinitions") or {}).get("parameters") or {}
    for name, definition in declared.items() if isinstance(declared, Mapping) else ():
        if name in env_out:
            continue
        if isinstance(definition, Mapping) and "defaultValue" in definition:
            env_out[name] = Bound("constant", definition["defaultValue"])
        elif not name.startswith("pipelinechannel--loop-item"):
            env_out[name] = Bound(
                "unresolved",
                what=f"the sub-pipeline's input {name!r}, which its parent leaves unset",
            )
    return env_out


def resolve_identity_binding(bound: Bound, *, where: str) -> tuple[Any, str | None]:
    """Return ``(value, parameter)`` for an identity binding, or raise if not a constant.

    Raises:
        UnpinnedIdentityError: the identity comes from an upstream output / run-time value,
            or from a pipeline parameter that has no value.
    """
    if bound.kind == "constant":
        return bound.value, bound.parameter
    if bound.kind == "unresolved":
        raise UnpinnedIdentityError(
            f"the service account comes from {bound.what}, which has no value",
            where=where,
            fix=f"pass parameter_values={{{bound.parameter!r}: 'SA_EMAIL'}} (it is then "
            "pinned) or declare a constant",
        )
    raise UnpinnedIdentityError(
        f"the service account comes from {bound.what}, known only at run time",
        where=where,
        fix="an identity must be known before submission: use a constant or a pipeline parameter",
    )


# --------------------------------------------------------------------------- job fields

# (name, vCPUs, memory GB) in the order we prefer them: n1 machines take T4/V100/P100/P4 GPUs
# and n1-standard-4 is GCPC's default, so small requests keep GCPC's choice.
_MACHINES: tuple[tuple[str, int, float], ...] = (
    ("n1-standard-4", 4, 15.0),
    ("n1-standard-8", 8, 30.0),
    ("n1-highmem-8", 8, 52.0),
    ("n1-standard-16", 16, 60.0),
    ("n1-highmem-16", 16, 104.0),
    ("n1-standard-32", 32, 120.0),
    ("n1-highmem-32", 32, 208.0),
    ("n1-standard-64", 64, 240.0),
    ("n1-highmem-64", 64, 416.0),
    ("n1-standard-96", 96, 360.0),
    ("n1-highmem-96", 96, 624.0),
)
# accelerators that do not attach to n1 machines: the machine type must be declared.
_NON_N1_ACCELERATORS = re.compile(r"^(?:NVIDIA_(?:A100|H100|H200|L4|B200|GB200)|TPU_)")
_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTP]i?|[kmgtpe]?)?$")
_MEMORY_UNITS = {
    "": 1e-9,
    "K": 1e-6,
    "k": 1e-6,
    "M": 1e-3,
    "m": 1e-12,
    "G": 1.0,
    "T": 1e3,
    "P": 1e6,
    "Ki": 1024 / 1e9,
    "Mi": 1024**2 / 1e9,
    "Gi": 1024**3 / 1e9,
    "Ti": 1024**4 / 1e9,
    "Pi": 1024**5 / 1e9,
}


def job_settings(
    *,
    display_name: str,
    service_account: str,
    declared: JobFields,
    defaults: JobFields,
    resources: Mapping[str, Any] | None,
    where: str,
) -> tuple[CustomJobSettings, JobFields]:
    """Effective CustomJob settings for a step, plus the :class:`JobFields` that were written.

    Precedence: accelerators recorded by KFP on the task (``set_accelerator_type/limit``) —
    a declaration may not contradict them; machine type declared on the step, else chosen
    from the task's CPU/memory limits, else the pipeline defaults, else GCPC's defaults.

    Raises:
        DeclarationError: a declaration contradicts the task's recorded accelerators, or an
            accelerator needs a machine type nobody declared.
    """
    recorded = _recorded(resources or {}, where=where)
    for name in ("accelerator_type", "accelerator_count"):
        mine = getattr(declared, name)
        if name in recorded and mine is not None and mine != recorded[name]:
            raise DeclarationError(
                f"declared {name} {mine!r} contradicts the task's resource setting "
                f"{recorded[name]!r}",
                where=where,
                fix="declare it in one place",
            )
    step = declared.under_defaults(defaults)
    machine = declared.machine_type
    if machine is None and ("cpu" in recorded or "memory" in recorded):
        machine = _machine_for(recorded.get("cpu", 0.0), recorded.get("memory", 0.0))
        if machine is None:
            raise DeclarationError(
                f"no n1 machine has {recorded.get('cpu', 0)} vCPUs and "
                f"{recorded.get('memory', 0):g} GB, as the task's resource limits ask",
                where=where,
                fix="declare machine_type for this step",
            )
    if machine is None:
        machine = defaults.machine_type
    accelerator = recorded.get("accelerator_type", step.accelerator_type)
    if (
        machine is None
        and isinstance(accelerator, str)
        and _NON_N1_ACCELERATORS.search(accelerator)
    ):
        raise DeclarationError(
            f"accelerator {accelerator!r} does not attach to GCPC's default n1 machine",
            where=where,
            fix="declare machine_type (e.g. a2-highgpu-1g, g2-standard-8)",
        )
    final = JobFields(
        machine_type=machine,
        accelerator_type=accelerator,
        accelerator_count=recorded.get("accelerator_count", step.accelerator_count),
        replica_count=step.replica_count,
        boot_disk_type=step.boot_disk_type,
        boot_disk_size_gb=step.boot_disk_size_gb,
        network=step.network,
        psc_interface_config=step.psc_interface_config,
        reserved_ip_ranges=step.reserved_ip_ranges,
        encryption_spec_key_name=step.encryption_spec_key_name,
        enable_web_access=step.enable_web_access,
        labels=step.labels,
        persistent_resource_id=step.persistent_resource_id,
        reach=step.reach,
    ).merged_over(GCPC_DEFAULTS)
    count = final.accelerator_count
    if final.network and final.psc_interface_config:
        raise DeclarationError(
            "network and psc_interface_config cannot both be set (after pipeline defaults)",
            where=where,
        )
    settings = CustomJobSettings(
        display_name=display_name,
        service_account=service_account,
        machine_type=str(final.machine_type),
        replica_count=int(final.replica_count or 1),
        accelerator_type=str(final.accelerator_type or ""),
        accelerator_count=count or 1,
        boot_disk_type=str(final.boot_disk_type or ""),
        boot_disk_size_gb=int(final.boot_disk_size_gb or 100),
        network=str(final.network or ""),
        encryption_spec_key_name=str(final.encryption_spec_key_name or ""),
        enable_web_access=bool(final.enable_web_access),
        reserved_ip_ranges=final.reserved_ip_ranges,
        labels=final.labels,
        psc_interface_config=final.psc_interface_config,
        persistent_resource_id=final.persistent_resource_id,
    )
    if not isinstance(count, int):  # a run-time placeholder: not a number we can report
        final = replace(final, accelerator_count=None)
    return settings, final


def _recorded(resources: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """The resource settings KFP recorded on an executor container (placeholders kept)."""
    out: dict[str, Any] = {}
    accelerator = resources.get("accelerator") or {}
    if isinstance(accelerator, Mapping):
        kind = accelerator.get("resourceType") or accelerator.get("type")
        count = accelerator.get("resourceCount") or accelerator.get("count")
        if kind:
            out["accelerator_type"] = str(kind)
        if count is not None:
            out["accelerator_count"] = _count(count, where=where)
    cpu = _max(_cpu(resources.get(k)) for k in ("cpuLimit", "cpuRequest", "resourceCpuLimit"))
    memory = _max(
        _memory(resources.get(k))
        for k in ("memoryLimit", "memoryRequest", "resourceMemoryLimit", "resourceMemoryRequest")
    )
    if cpu:
        out["cpu"] = cpu
    if memory:
        out["memory"] = memory
    return out


def _count(value: Any, *, where: str) -> int | str:
    if is_placeholder(value):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TemplateError(f"accelerator count {value!r} is not a number", where=where) from None
    if not math.isfinite(number) or number < 1 or not number.is_integer():
        raise TemplateError(f"accelerator count {value!r} is not a positive integer", where=where)
    return int(number)


def _max(values: Any) -> float:
    return max((v for v in values if v), default=0.0)


def _cpu(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and (m := _CPU.match(value)):
        return float(m.group(1)) / (1000 if m.group(2) else 1)
    return 0.0  # absent or a run-time placeholder: nothing to size from


def _memory(value: Any) -> float:
    """Memory in GB (KFP's ``memoryLimit`` is already GB; strings carry units)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and (m := _MEMORY.match(value)):
        return float(m.group(1)) * _MEMORY_UNITS.get(m.group(2) or "", 1e-9)
    return 0.0


def _machine_for(cpu: float, memory: float) -> str | None:
    for name, cpus, mem in _MACHINES:
        if cpus >= cpu and mem >= memory:
            return name
    return None


# --------------------------------------------------------------------------- derivation

_CONTROL_FLOW = re.compile(r"^(?:for-loop|condition|condition-branches|exit-handler)-[0-9]+$")


def derivation_keys(paths: list[str]) -> dict[str, str]:
    """The key each task's derived identity is computed from.

    Control-flow groups KFP numbers itself (``for-loop-2``, ``condition-3``, ``exit-handler-1``)
    are dropped from the path, so adding a loop elsewhere does not rename every identity; when
    two tasks would share a key, both keep their full path.
    """
    short = {p: "/".join(s for s in p.split("/")[:-1] if not _CONTROL_FLOW.match(s)) for p in paths}
    keys = {p: (f"{short[p]}/" if short[p] else "") + p.rsplit("/", 1)[-1] for p in paths}
    counts: dict[str, int] = {}
    for key in keys.values():
        counts[key] = counts.get(key, 0) + 1
    return {p: (k if counts[k] == 1 else p) for p, k in keys.items()}
