"""Pure helpers for GCPC launcher steps: trusted images, strict launcher arguments, the safety
of every value Vertex pastes into a launcher payload, and job fields read back from a payload.

Used by :mod:`zt_pipelines.spec.rewrite`; no IO.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from zt_pipelines.errors import TemplateError
from zt_pipelines.spec.gcpc import LauncherKind, launcher_module
from zt_pipelines.spec.payload import ParsedPayload, Raw, field_at
from zt_pipelines.spec.resolve import Bound, Env, bind

__all__ = [
    "SAFE_SYSTEM_PLACEHOLDERS",
    "SERVICE_ACCOUNT_KEY",
    "Verdict",
    "check_launcher_container",
    "check_pipeline_root",
    "input_binding",
    "input_placeholder",
    "payload_slot_verdicts",
    "trusted_launcher_image",
]

# Images whose launcher code may run as the pipeline SA: Google's own repositories. The tag
# (GCPC version) plays no part; any repository elsewhere is wrapped like any container.
_GOOGLE_IMAGE = re.compile(
    r"^(?:gcr\.io/ml-pipeline|us-docker\.pkg\.dev/vertex-ai(?:-restricted)?)/[a-z0-9][a-z0-9._/-]*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
SERVICE_ACCOUNT_KEY = re.compile(r"service_?account", re.IGNORECASE)
"""Payload keys that name an identity (``service_account``, ``serviceAccount``, ``..._email``)."""

_INPUT = re.compile(r"^\{\{\$\.inputs\.parameters\['([^'{}]+)'\]\}\}$")
_ANY_INPUT = re.compile(r"\{\{\$\.inputs\.parameters\['([^'{}]+)'\]\}\}")
_PLACEHOLDER = re.compile(r"\{\{\$[^{}]*\}\}")
SAFE_SYSTEM_PLACEHOLDERS = frozenset(
    "{{$." + name + "}}"
    for name in (
        "pipeline_job_name",
        "pipeline_job_uuid",
        "pipeline_task_name",
        "pipeline_task_uuid",
        "pipeline_job_resource_name",
        "pipeline_job_create_time_utc",
        "pipeline_job_schedule_time_utc",
        "pipeline_google_cloud_project_id",
        "pipeline_google_cloud_location",
        "pipeline_persistent_resource_id",
        "pipeline_root",  # checked by check_pipeline_root before the walk
        "json_escape[1]",  # the executor input, JSON-escaped by Vertex
    )
)
"""Placeholders whose values Vertex draws from ``[a-z0-9-]`` ids, resource names, timestamps
or the (checked) pipeline root — safe inside a JSON string."""
_OUTPUT = re.compile(
    r"^\{\{\$\.outputs\.(?:parameters\['[^'{}]+'\]\.output_file|"
    r"artifacts\['[^'{}]+'\]\.(?:path|uri))\}\}$"
)
# a pipeline root Vertex can paste into a JSON string without changing its structure
_ROOT = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](?:/[^\"\\{}\x00-\x1f\x7f]*)?$")
_LAUNCHER_FLAGS = frozenset(
    {
        "--type",
        "--payload",
        "--project",
        "--location",
        "--gcp_resources",
        "--gcp_resource",
        "--executor_input",
        "--execution_metrics",
        "--batch_id",
    }
)


def trusted_launcher_image(image: Any) -> bool:
    """True if launcher code in ``image`` may run as the pipeline SA (a Google repository)."""
    return isinstance(image, str) and _GOOGLE_IMAGE.match(image) is not None


def check_pipeline_root(root: str | None) -> str | None:
    """Return ``root`` if Vertex can paste it into a payload string unchanged.

    Raises:
        TemplateError: not a ``gs://`` URI, or holds a quote, backslash, brace or control
            character (``{{$.pipeline_root}}`` lands inside launcher payloads).
    """
    if root is None:
        return None  # Vertex's default root: gs://<bucket derived from project/location>/
    if not isinstance(root, str) or not _ROOT.match(root):
        raise TemplateError(
            f"pipeline root {root!r} is not a gs:// URI zt-pipelines can prove safe: "
            "{{$.pipeline_root}} is pasted into launcher payloads, where a quote, backslash or "
            "brace could rewrite the job",
            where="pipeline_root",
            fix="use gs://BUCKET/PATH without quotes, backslashes, braces or control characters",
        )
    return root


def check_launcher_container(container: Mapping[str, Any], kind: LauncherKind, where: str) -> None:
    """Refuse a launcher container that could run as the pipeline SA doing anything but GCPC's job.

    The command must be ``python3 -u -m MODULE``; the arguments flag/value pairs of GCPC's
    launcher flags, each at most once (argparse keeps the *last* of two ``--payload`` and
    accepts ``--payload=`` and abbreviations); nothing else on the container.

    Raises:
        TemplateError: naming what is not GCPC's.
    """
    fix = "rebuild the step with the GCPC component, unmodified"
    extra = set(container) - {"image", "command", "args"}
    if extra:
        raise TemplateError(
            f"the {kind.name} launcher container sets {sorted(extra)}", where=where, fix=fix
        )
    module = launcher_module(container)
    if container.get("command") != ["python3", "-u", "-m", module]:
        raise TemplateError(
            f"the {kind.name} launcher's command is not GCPC's `python3 -u -m {module}`",
            where=where,
            fix=fix,
        )
    args = container.get("args")
    if not isinstance(args, list) or len(args) % 2:
        raise TemplateError(
            f"the {kind.name} launcher's arguments are not flag/value pairs", where=where, fix=fix
        )
    seen: set[str] = set()
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag not in _LAUNCHER_FLAGS or flag in seen or not isinstance(value, str):
            raise TemplateError(
                f"the {kind.name} launcher gets argument {flag!r}, which GCPC's launcher does not "
                "take once with a value",
                where=where,
                fix=fix,
            )
        seen.add(flag)
    if kind.payload_flag and kind.payload_flag not in seen:
        raise TemplateError(f"the {kind.name} launcher has no --payload", where=where, fix=fix)


def input_placeholder(value: Any) -> str | None:
    """The input name when ``value`` is exactly ``{{$.inputs.parameters['NAME']}}``."""
    if isinstance(value, str):
        match = _INPUT.match(value)
        if match:
            return match.group(1)
    return None


def input_binding(
    name: str, bindings: Mapping[str, Any], params: Mapping[str, Any], env: Env
) -> Bound | None:
    """What input ``name`` of a task holds: its binding, else the component default."""
    if name in bindings:
        return bind(bindings[name], env)
    definition = params.get(name)
    if isinstance(definition, Mapping) and "defaultValue" in definition:
        return Bound("constant", definition["defaultValue"])
    return None


Verdict = Literal["safe", "runtime", "unsafe"]


@dataclass(frozen=True)
class SlotVerdict:
    """Whether a payload placeholder's value is proven safe there.

    Attributes:
        verdict: ``safe``; ``runtime`` (known only when the pipeline runs: an upstream output,
            an artifact's metadata); ``unsafe`` (a known value that would change the payload).
        name: the input (or placeholder) it concerns.
        path: the JSON path in the payload.
        detail: for ``unsafe``, the value.
    """

    verdict: Verdict
    name: str
    path: tuple[str | int, ...]
    detail: str = ""


def payload_slot_verdicts(
    parsed: ParsedPayload,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    safe: frozenset[str] = frozenset(),
) -> list[SlotVerdict]:
    """A verdict for every placeholder Vertex substitutes into a launcher payload; ``safe``
    placeholders (artifact fields a GCPC launcher wrote) count as safe inside strings."""
    out: list[SlotVerdict] = []
    for slot in parsed.slots:
        if slot.placeholder in safe and slot.quoted:
            out.append(SlotVerdict("safe", slot.placeholder, slot.path))
            continue
        verdict, name, detail = _verdict(
            slot.placeholder, slot.quoted, bindings, params, env, depth=0
        )
        out.append(SlotVerdict(verdict, name, slot.path, detail))
    return out


def _verdict(
    placeholder: str,
    quoted: bool,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    depth: int,
) -> tuple[Verdict, str, str]:
    if placeholder in SAFE_SYSTEM_PLACEHOLDERS or _OUTPUT.match(placeholder):
        return ("safe" if quoted else "unsafe"), placeholder, "" if quoted else "unquoted"
    name = input_placeholder(placeholder)
    if name is None:
        return "runtime", placeholder, ""  # an artifact's uri/metadata, or another run-time value
    bound = input_binding(name, bindings, params, env)
    if bound is None:
        return "safe", name, ""  # an optional input left unset: Vertex pastes nothing
    if bound.kind != "constant":
        return "runtime", name, ""
    return _value_verdict(bound.value, name, quoted, bindings, params, env, depth=depth)


def _value_verdict(
    value: Any,
    name: str,
    quoted: bool,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    depth: int,
) -> tuple[Verdict, str, str]:
    if isinstance(value, bool) or value is None:
        return "safe", name, ""
    if isinstance(value, (int, float)):
        return "safe", name, ""
    if not isinstance(value, str):
        # Vertex pastes a list/struct as JSON text: a whole value unquoted, never in a string
        return ("unsafe" if quoted else "safe"), name, repr(value)[:80]
    if not quoted:
        try:
            json.loads(value)
        except ValueError:
            return "unsafe", name, repr(value)[:80]
        return ("safe" if "{{" not in value else "unsafe"), name, repr(value)[:80]
    rest = value
    if depth < 8:
        for nested in _PLACEHOLDER.findall(value):  # KFP string concatenation nests them
            verdict, _, _ = _verdict(nested, True, bindings, params, env, depth=depth + 1)
            if verdict != "safe":
                return verdict, name, repr(value)[:80]
        rest = _PLACEHOLDER.sub("", value)
    # control characters are text to GCPC's launchers (json.loads(..., strict=False))
    if '"' in rest or "\\" in rest or "{{" in rest or "}}" in rest:
        return "unsafe", name, repr(value)[:80]
    return "safe", name, ""


def payload_value(
    parsed: ParsedPayload,
    path: tuple[str, ...],
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
) -> Any:
    """The value a payload field will hold: a literal, or a constant input; ``None`` if unknown."""
    node = field_at(parsed.tree, path)
    if isinstance(node, Raw):
        name = input_placeholder(node.placeholder)
    elif isinstance(node, str):
        name = input_placeholder(node)
        if name is None:
            return node if "{{" not in node else None
    else:
        return node
    if name is None:
        return None
    bound = input_binding(name, bindings, params, env)
    return bound.value if bound is not None and bound.kind == "constant" else None


def nested_inputs(value: Any) -> list[str]:
    """Input names referenced by placeholders anywhere in ``value``."""
    names: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            names += _ANY_INPUT.findall(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return names
