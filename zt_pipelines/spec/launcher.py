"""Build GCPC custom-job launcher components, exactly as GCPC would (pure, no kfp import).

:func:`custom_job_component` reproduces what
``google_cloud_pipeline_components.v1.custom_job.utils.create_custom_training_job_from_component``
produces for a component's IR and the same job fields, once that component is compiled into a
pipeline: the container moves into the ``worker_pool_specs`` input default (``{{$}}`` becomes
``{{$.json_escape[1]}}``), job fields become input defaults (``None`` removes the default, as
GCPC does), the component's own inputs and outputs are merged over the launcher's, a
``gcp_resources`` output is added and the executor becomes the launcher. GCPC itself is only a
test dependency; ``tests/test_gcpc_equivalence.py`` compiles both ways and compares.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from zt_pipelines.errors import TemplateError
from zt_pipelines.model import JobFields
from zt_pipelines.spec._gcpc import (
    CUSTOM_JOB_INPUTS,
    CUSTOM_JOB_OUTPUTS,
    GCPC_VERSION,
    LAUNCHER_ARGS,
    LAUNCHER_COMMAND,
    LAUNCHER_IMAGE,
)
from zt_pipelines.spec.payload import PayloadError, field_at, parse_payload

__all__ = [
    "CUSTOM_JOB_INPUT_NAMES",
    "GCPC_DEFAULTS",
    "GCPC_VERSION",
    "LAUNCHER_IMAGE",
    "PIPELINE_PLACE",
    "CustomJobSettings",
    "custom_job_component",
    "is_custom_job_launcher",
    "launcher_executor",
    "pinned_payload_account",
    "worker_pool_specs",
    "wrapper_code_inputs",
]

CUSTOM_JOB_INPUT_NAMES = frozenset(CUSTOM_JOB_INPUTS)
_LAUNCHER_MODULE = "google_cloud_pipeline_components.container.v1.custom_job.launcher"
_GCPC_IMAGE = re.compile(
    r"^gcr\.io/ml-pipeline/google-cloud-pipeline-components(?::[0-9][0-9A-Za-z.+-]*)?$"
)
# launcher inputs the payload interpolates *inside JSON quotes*: a value holding a quote, a
# backslash or a nested placeholder could rewrite the payload (e.g. its service account).
QUOTED_PAYLOAD_INPUTS = (
    "display_name",
    "timeout",
    "strategy",
    "max_wait_duration",
    "service_account",
    "tensorboard",
    "network",
    "base_output_directory",
    "persistent_resource_id",
    "encryption_spec_key_name",
)
# launcher inputs the payload interpolates *unquoted*, as JSON values of these types
RAW_PAYLOAD_INPUTS: dict[str, type] = {
    "worker_pool_specs": list,
    "restart_job_on_worker_restart": bool,
    "enable_web_access": bool,
    "reserved_ip_ranges": list,
    "psc_interface_config": dict,
    "labels": dict,
}
_SYSTEM_PLACEHOLDER = re.compile(r"^\{\{\$\.pipeline_[a-z_]+\}\}$")
_EXECUTOR_INPUT = "{{$}}"
_EXECUTOR_INPUT_ESCAPED = "{{$.json_escape[1]}}"

GCPC_DEFAULTS = JobFields(
    machine_type="n1-standard-4",
    accelerator_type="",
    accelerator_count=1,
    replica_count=1,
    boot_disk_type="pd-ssd",
    boot_disk_size_gb=100,
    network="",
    encryption_spec_key_name="",
    enable_web_access=False,
)
"""GCPC's keyword defaults for ``create_custom_training_job_from_component``."""

_CONTAINER_KEYS = {"image", "command", "args", "env", "resources"}
_COMPONENT_KEYS = {"executorLabel", "inputDefinitions", "outputDefinitions"}


@dataclass(frozen=True)
class CustomJobSettings:
    """Everything the launcher payload needs for one step (after defaults are applied).

    ``accelerator_count`` may be a string when KFP recorded a runtime placeholder.
    """

    display_name: str
    service_account: str
    machine_type: str
    replica_count: int
    accelerator_type: str
    accelerator_count: int | str
    boot_disk_type: str
    boot_disk_size_gb: int
    network: str
    encryption_spec_key_name: str
    enable_web_access: bool
    reserved_ip_ranges: tuple[str, ...] | None = None
    labels: dict[str, str] | None = None
    psc_interface_config: dict[str, Any] | None = None
    persistent_resource_id: str | None = None


def is_custom_job_launcher(container: dict[str, Any]) -> bool:
    """True if an executor container is GCPC's custom-job launcher (any GCPC version).

    The image must be GCPC's own: the launcher runs as the *pipeline* SA, so a look-alike
    command in another image must be wrapped like any other container, never trusted.
    """
    command = container.get("command") or []
    args = container.get("args") or []
    image = container.get("image")
    return (
        isinstance(image, str)
        and _GCPC_IMAGE.match(image) is not None
        and _LAUNCHER_MODULE in command
        and "CustomJob" in args
    )


def reads_service_account_input(container: dict[str, Any]) -> bool:
    """True if a launcher runs its CustomJob as the component's ``service_account`` input.

    Strict, because the template may come from anyone: the command and every argument but
    the payload must be GCPC's own (argparse takes the *last* ``--payload``, and accepts
    ``--payload=...`` and abbreviations), nothing else may be set on the container, and the
    payload must parse — placeholders stood in for — as JSON without duplicate keys whose
    one ``service_account`` is ``job_spec.service_account`` and is exactly that input
    (JSON parsers keep the last of two equal keys, so a second ``job_spec`` or
    ``service_account`` would silently replace the one we check).
    """
    args = container.get("args")
    if set(container) - {"image", "command", "args"} or not isinstance(args, list):
        return False
    if container.get("command") != list(LAUNCHER_COMMAND) or len(args) != len(LAUNCHER_ARGS):
        return False
    at = LAUNCHER_ARGS.index("--payload") + 1
    if [a for i, a in enumerate(args) if i != at] != [
        a for i, a in enumerate(LAUNCHER_ARGS) if i != at
    ]:
        return False
    payload = args[at]
    return isinstance(payload, str) and _runs_as_service_account_input(payload)


def pinned_payload_account(args: Any) -> str | None:
    """The constant ``job_spec.service_account`` a custom-job launcher's ``--payload`` pins —
    plain JSON or a ``Concat`` (GCPC's AutoML launchers), where the rewrite pins it escaped —
    or ``None`` when it takes the ``service_account`` input, holds a placeholder, is empty or
    does not parse. The launcher (argparse) reads the last ``--payload``."""
    if not isinstance(args, list):
        return None
    payloads = [v for f, v in itertools.pairwise(args) if f == "--payload"]
    if not payloads or not isinstance(payloads[-1], str):
        return None
    try:
        parsed = parse_payload(payloads[-1], lambda name: True)
    except PayloadError:
        return None
    node = field_at(parsed.tree, ("job_spec", "service_account"))
    return node if isinstance(node, str) and node and "{{" not in node else None


_QUOTED_INPUT = re.compile(r"\"\{\{\$\.inputs\.parameters\['([a-z_]+)'\]\}\}\"")
_RAW_INPUT = re.compile(r"\{\{\$\.inputs\.parameters\['([a-z_]+)'\]\}\}")


def _runs_as_service_account_input(payload: str) -> bool:
    # quoted placeholders become marker strings, bare ones (JSON values) marker objects
    text = _QUOTED_INPUT.sub(lambda m: f'"@zt-input:{m.group(1)}"', payload)
    text = _RAW_INPUT.sub(lambda m: f'{{"@zt-raw": "{m.group(1)}"}}', text)
    if "{{" in text:
        return False  # a placeholder inside a longer string, or an unknown one

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)

    try:
        job = json.loads(text, object_pairs_hook=unique)
    except ValueError:
        return False
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), job)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            found += [path] if "service_account" in node else []
            stack += [((*path, k), v) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [((*path, i), v) for i, v in enumerate(node)]
    return (
        found == [("job_spec",)]
        and job["job_spec"]["service_account"] == "@zt-input:service_account"
    )


def launcher_executor(literals: dict[str, Any] | None = None) -> dict[str, Any]:
    """The launcher executor, as GCPC's component compiles it.

    ``literals`` maps launcher inputs the *component* also declares (``project``,
    ``location``, ``service_account``, ...) to the value the CustomJob itself must use: the
    payload carries that value as a literal instead of the input placeholder, and ``--project``
    / ``--location`` name the running pipeline's, so the component's own input reaches the
    component unchanged and never steers the CustomJob that wraps it.
    """
    args = list(LAUNCHER_ARGS)
    for name, value in sorted((literals or {}).items()):
        placeholder = f"{{{{$.inputs.parameters['{name}']}}}}"
        if name in PIPELINE_PLACE:
            args = [PIPELINE_PLACE[name] if a == placeholder else a for a in args]
            continue
        at = args.index("--payload") + 1
        args[at] = (
            args[at]
            .replace(f'"{placeholder}"', json.dumps(value))
            .replace(placeholder, json.dumps(value))
        )
    return {
        "container": {
            "image": LAUNCHER_IMAGE,
            "command": list(LAUNCHER_COMMAND),
            "args": args,
        }
    }


PIPELINE_PLACE = {
    "project": "{{$.pipeline_google_cloud_project_id}}",
    "location": "{{$.pipeline_google_cloud_location}}",
}
"""What :func:`launcher_executor` passes as ``--project`` / ``--location`` for a component
that declares an input of that name: the running pipeline's."""


def wrapper_code_inputs(container: dict[str, Any]) -> frozenset[str]:
    """The inputs (``project``, ``location``) a CustomJob launcher built by
    :func:`custom_job_component` left to the wrapped component's code.

    Such a launcher (ours: zt-pipelines wrapped a container step) runs its CustomJob in the
    running pipeline's project and location and hands the component's own ``project`` /
    ``location`` inputs to its code unchanged: they say where the step's code calls, not where
    the job runs. A launcher GCPC built itself takes its place from ``--project`` /
    ``--location``; one whose flags name the running pipeline's and whose payload is not the
    standard custom-job payload (Google's LLM components: the worker pool inline) hands its
    inputs to Google's code, which is told nothing about where the job runs. Empty when the
    container is not such a wrapper — or when the wrapped component declared neither input,
    where the two cannot be told apart and both run the job in the pipeline's place.
    """
    args = container.get("args")
    if (
        not is_custom_job_launcher(container)
        or container.get("command") != list(LAUNCHER_COMMAND)
        or not isinstance(args, list)
        or len(args) != len(LAUNCHER_ARGS)
    ):
        return frozenset()
    at = LAUNCHER_ARGS.index("--payload") + 1
    found: set[str] = set()
    for i, (arg, standard) in enumerate(zip(args, LAUNCHER_ARGS, strict=True)):
        if i == at or arg == standard:
            continue
        flag = LAUNCHER_ARGS[i - 1].removeprefix("--")
        if PIPELINE_PLACE.get(flag) != arg:
            return frozenset()
        found.add(flag)
    if not found or not _standard_payload(args[at]):
        return frozenset()
    return frozenset(found)


_MARKER = "@zt-input"


def _marked(payload: str) -> Any:
    """The payload as JSON, every input placeholder (quoted or bare) a marker; ``None`` when
    it does not parse."""
    text = _QUOTED_INPUT.sub(f'"{_MARKER}"', payload)
    text = _RAW_INPUT.sub(f'"{_MARKER}"', text)
    try:  # a placeholder left bare does not parse; one inside a string literal is text
        return json.loads(text)
    except ValueError:
        return None


def _standard_payload(payload: Any) -> bool:
    """True when ``payload`` is GCPC's standard custom-job payload, some inputs written in as
    literals (as :func:`launcher_executor` writes a component's clashing inputs)."""
    if not isinstance(payload, str):
        return False
    standard = _marked(LAUNCHER_ARGS[LAUNCHER_ARGS.index("--payload") + 1])
    actual = _marked(payload)
    return actual is not None and _same_shape(standard, actual)


def _same_shape(standard: Any, actual: Any) -> bool:
    if standard == _MARKER:  # an input: its placeholder, or a literal in its place
        return True
    if isinstance(standard, dict):
        return (
            isinstance(actual, dict)
            and list(actual) == list(standard)
            and all(_same_shape(standard[k], actual[k]) for k in standard)
        )
    if isinstance(standard, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(standard)
            and all(_same_shape(s, a) for s, a in zip(standard, actual, strict=True))
        )
    return bool(standard == actual)


def _escape(parts: list[Any]) -> list[Any]:
    return [_EXECUTOR_INPUT_ESCAPED if p == _EXECUTOR_INPUT else p for p in parts]


def _number(value: int | str) -> float | str:
    # the IR stores numbers in protobuf Structs: GCPC's compiled defaults hold floats
    return float(value) if isinstance(value, int) else value


def worker_pool_specs(container: dict[str, Any], settings: CustomJobSettings) -> list[Any]:
    """``worker_pool_specs`` as GCPC builds it from a container and job settings."""
    machine: dict[str, Any] = {"machine_type": settings.machine_type}
    if settings.accelerator_type:
        machine["accelerator_type"] = settings.accelerator_type
        machine["accelerator_count"] = _number(settings.accelerator_count)
    pool: dict[str, Any] = {
        "machine_spec": machine,
        "replica_count": 1.0,
        "container_spec": {
            "image_uri": container["image"],
            "command": _escape(list(container.get("command") or [])),
            "args": _escape(list(container.get("args") or [])),
            "env": [dict(e) for e in container.get("env") or []],
        },
    }
    if settings.boot_disk_type:
        pool["disk_spec"] = {
            "boot_disk_type": settings.boot_disk_type,
            "boot_disk_size_gb": float(settings.boot_disk_size_gb),
        }
    pools = [pool]
    if settings.replica_count > 1:
        extra = _copy(pool)
        extra["replica_count"] = float(settings.replica_count - 1)
        pools.append(extra)
    return pools


# GCPC's reloaded component drops the launcher's input and output descriptions
_INPUT_DEFINITIONS = {
    name: {k: v for k, v in definition.items() if k != "description"}
    for name, definition in CUSTOM_JOB_INPUTS.items()
}
_OUTPUT_DEFINITIONS = {
    name: {k: v for k, v in definition.items() if k != "description"}
    for name, definition in CUSTOM_JOB_OUTPUTS.items()
}


def custom_job_component(
    component: dict[str, Any],
    container: dict[str, Any],
    settings: CustomJobSettings,
    *,
    executor_label: str,
    where: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The launcher component replacing ``component`` (whose executor is ``container``), and
    the launcher executor.

    A component parameter with the name of a launcher input (``project``, ``location``,
    ``service_account``, ... as GCPC's own components have) keeps its definition and reaches
    the component unchanged; the CustomJob uses its own value for that field, written into the
    launcher's payload as a literal (see :func:`launcher_executor`).

    Raises:
        TemplateError: the container uses a field a CustomJob cannot carry, or a job value
            could rewrite the payload.
    """
    unknown = set(container) - _CONTAINER_KEYS
    if unknown:
        raise TemplateError(
            f"the container sets {sorted(unknown)}, which a CustomJob cannot carry",
            where=where,
            fix="remove those settings from the component",
        )
    extra = set(component) - _COMPONENT_KEYS
    if extra:
        raise TemplateError(
            f"the component sets {sorted(extra)}, which the launcher cannot carry", where=where
        )
    user_in = (component.get("inputDefinitions") or {}).get("parameters") or {}
    user_out = (component.get("outputDefinitions") or {}).get("parameters") or {}
    defaults: dict[str, Any] = {
        "display_name": settings.display_name,
        "worker_pool_specs": worker_pool_specs(container, settings),
        "timeout": "604800s",
        "restart_job_on_worker_restart": False,
        "strategy": "STANDARD",
        "max_wait_duration": "86400s",
        "service_account": settings.service_account,
        "tensorboard": "",
        "enable_web_access": settings.enable_web_access,
        "network": settings.network,
        "reserved_ip_ranges": (
            list(settings.reserved_ip_ranges) if settings.reserved_ip_ranges is not None else None
        ),
        "base_output_directory": "",
        "labels": dict(settings.labels) if settings.labels is not None else None,
        "encryption_spec_key_name": settings.encryption_spec_key_name,
        "psc_interface_config": (
            _copy(settings.psc_interface_config)
            if settings.psc_interface_config is not None
            else None
        ),
    }
    if settings.persistent_resource_id is not None:
        defaults["persistent_resource_id"] = settings.persistent_resource_id
    for name in QUOTED_PAYLOAD_INPUTS:
        if name in defaults and not is_safe_payload_string(defaults[name]):
            raise TemplateError(
                f"{name} {defaults[name]!r} holds a quote, a backslash or a placeholder; pasted "
                "into the launcher payload it could rewrite the job",
                where=where,
            )
    params: dict[str, Any] = {}
    for name, definition in _INPUT_DEFINITIONS.items():
        param = dict(definition)
        if type(param.get("defaultValue")) in (dict, list):
            param["defaultValue"] = _copy(param["defaultValue"])
        if name in defaults:
            if defaults[name] is None:
                param.pop("defaultValue", None)
            else:
                param["defaultValue"] = defaults[name]
        if "defaultValue" in param:
            param["isOptional"] = True  # KFP marks inputs with a default optional on load
        params[name] = param
    clash = sorted(set(user_in) & CUSTOM_JOB_INPUT_NAMES)
    literals = {name: _literal(name, defaults, params) for name in clash}
    params.update(_copy(user_in))
    outputs: dict[str, Any] = {name: dict(d) for name, d in _OUTPUT_DEFINITIONS.items()}
    outputs.update(_copy(user_out))
    inputs_def: dict[str, Any] = {"parameters": params}
    outputs_def: dict[str, Any] = {"parameters": outputs}
    in_artifacts = (component.get("inputDefinitions") or {}).get("artifacts")
    out_artifacts = (component.get("outputDefinitions") or {}).get("artifacts")
    if in_artifacts:
        inputs_def["artifacts"] = _copy(in_artifacts)
    if out_artifacts:
        outputs_def["artifacts"] = _copy(out_artifacts)
    new_component = {
        "executorLabel": executor_label,
        "inputDefinitions": inputs_def,
        "outputDefinitions": outputs_def,
    }
    return new_component, launcher_executor(literals)


_EMPTY_RAW: dict[str, Any] = {
    "reserved_ip_ranges": [],
    "labels": {},
    "psc_interface_config": {},
    "worker_pool_specs": [],
}


def _literal(name: str, defaults: dict[str, Any], params: dict[str, Any]) -> Any:
    """The CustomJob's own value for a launcher input the component also declares."""
    value = defaults.get(name)
    if value is None:
        value = (params.get(name) or {}).get("defaultValue")
    if value is None:
        value = _EMPTY_RAW.get(name, "")
    return value


_PLACEHOLDER = re.compile(r"^\{\{\$\.[^{}]+\}\}$")


def is_safe_payload_string(value: Any) -> bool:
    """True if a value can be interpolated inside the payload's JSON quotes unchanged."""
    if isinstance(value, (bool, int, float)):
        return True
    if not isinstance(value, str):
        return False
    if _SYSTEM_PLACEHOLDER.fullmatch(value):
        return True  # resolved by Vertex to a project id / location / resource id
    return '"' not in value and "\\" not in value and "{{" not in value


def is_placeholder(value: Any) -> bool:
    """True for a runtime placeholder string such as ``{{$.inputs.parameters['x']}}``."""
    return isinstance(value, str) and bool(_PLACEHOLDER.match(value))


def _copy(value: Any) -> Any:
    """Deep copy of JSON-like data (much faster than :func:`copy.deepcopy`)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
