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
    "IDENTITY_KEY",
    "SAFE_SYSTEM_PLACEHOLDERS",
    "SERVICE_ACCOUNT_KEY",
    "Verdict",
    "check_default_root",
    "check_launcher_container",
    "check_pipeline_root",
    "identity_option",
    "identity_spots",
    "inert_json",
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
IDENTITY_KEY = re.compile(r"service[\W_]*account|impersonat", re.IGNORECASE)
"""Keys (and option names) that choose an identity: a service account, or one to impersonate."""
_IDENTITY_OPTION = re.compile(
    r"^\s*-{1,2}[A-Za-z0-9_.-]*(?:service[\W_]*account|impersonat)", re.IGNORECASE
)
_SA_EMAIL = re.compile(r"@[A-Za-z0-9.-]*gserviceaccount\.com", re.IGNORECASE)

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
    if not isinstance(root, str) or not _ROOT.fullmatch(root):
        raise TemplateError(
            f"pipeline root {root!r} is not a gs:// URI zt-pipelines can prove safe: "
            "{{$.pipeline_root}} is pasted into launcher payloads, where a quote, backslash or "
            "brace could rewrite the job",
            where="pipeline_root",
            fix="use gs://BUCKET/PATH without quotes, backslashes, braces or control characters",
        )
    return root


_ROOT_UNSAFE = re.compile(r"[\"\\{}\x00-\x1f\x7f]")


def check_default_root(root: str) -> str:
    """Refuse a pipeline root the template names (``defaultPipelineRoot``, a PipelineJob's
    ``gcsOutputDirectory``) that could change a launcher payload's structure if a submission
    without an explicit root used it.

    Any other scheme passes here (Vertex refuses a root that is not on Cloud Storage, and an
    explicit root is judged by :func:`check_pipeline_root`); only characters that could close
    a JSON string or open a placeholder are refused.

    Raises:
        TemplateError: the root holds a quote, backslash, brace or control character.
    """
    if _ROOT_UNSAFE.search(root):
        raise TemplateError(
            f"the template's pipeline root {root!r} holds a quote, backslash, brace or control "
            "character: {{$.pipeline_root}} is pasted into launcher payloads, where it could "
            "rewrite the job",
            where="defaultPipelineRoot",
            fix="recompile with pipeline_root='gs://BUCKET/PATH', or pass a safe pipeline_root",
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
        match = _INPUT.fullmatch(value)
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
        verdict, name, detail = _verdict(
            slot.placeholder, slot.quoted, bindings, params, env, safe=safe, depth=0
        )
        out.append(SlotVerdict(verdict, name, slot.path, detail))
    return out


_RANK: dict[Verdict, int] = {"safe": 0, "runtime": 1, "unsafe": 2}
_MAX_NESTED = 8  # placeholders inside constants inside constants ...: deeper is refused
_MAX_NODES = 100_000  # a constant pasted into a payload is walked at most this far


def _verdict(
    placeholder: str,
    quoted: bool,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    safe: frozenset[str],
    depth: int,
) -> tuple[Verdict, str, str]:
    if placeholder in safe and quoted:
        return "safe", placeholder, ""
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
    return _value_verdict(bound.value, name, quoted, bindings, params, env, safe=safe, depth=depth)


def _value_verdict(
    value: Any,
    name: str,
    quoted: bool,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    safe: frozenset[str],
    depth: int,
) -> tuple[Verdict, str, str]:
    if isinstance(value, bool) or value is None:
        return "safe", name, ""
    if isinstance(value, (int, float)):
        return "safe", name, ""
    shown = repr(value)[:80]
    if not isinstance(value, str):
        if quoted:  # Vertex pastes a list/struct as JSON text: its quotes end the string
            return ("safe" if inert_json(value) else "unsafe"), name, shown
        # pasted whole as JSON text (its own strings escaped), then every placeholder nested in
        # those strings (KFP compiles ``args=[task.output]`` so) is substituted there as text,
        # unescaped: each is judged as if quoted, and reported under its own name (the name a
        # second rewrite, reading the pasted text, finds too)
        worst: tuple[Verdict, str, str] = ("safe", name, "")
        for text in _strings(value):
            found = _nested_verdict(
                text, bindings, params, env, safe=safe, depth=depth, opener="{{$"
            )
            if _RANK[found[0]] > _RANK[worst[0]]:
                worst = found
        return worst
    if not quoted:
        try:
            json.loads(value)
        except (ValueError, RecursionError):
            return "unsafe", name, shown
        return ("safe" if "{{" not in value else "unsafe"), name, shown
    verdict, _, _ = _nested_verdict(value, bindings, params, env, safe=safe, depth=depth)
    if verdict == "safe":
        rest = _PLACEHOLDER.sub("", value) if depth < _MAX_NESTED else value
        # control characters are text to GCPC's launchers (json.loads(..., strict=False))
        if '"' in rest or "\\" in rest:
            verdict = "unsafe"
    return verdict, name, ("" if verdict == "safe" else shown)


def _nested_verdict(
    text: str,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    safe: frozenset[str],
    depth: int,
    opener: str = "{{",
) -> tuple[Verdict, str, str]:
    """The worst verdict of the placeholders in ``text`` (pasted inside a JSON string), with
    the name it concerns; text outside placeholders that could start one (``opener``, or a
    closing ``}}`` in a bare string) is unsafe."""
    worst: tuple[Verdict, str, str] = ("safe", "", "")
    rest = text
    if depth < _MAX_NESTED:
        for nested in _PLACEHOLDER.findall(text):  # KFP string concatenation nests them
            found = _verdict(nested, True, bindings, params, env, safe=safe, depth=depth + 1)
            if _RANK[found[0]] > _RANK[worst[0]]:
                worst = found
        rest = _PLACEHOLDER.sub("", text)
    if opener in rest or (opener == "{{" and "}}" in rest):
        return "unsafe", text[:80], repr(text)[:80]
    return worst


def _strings(value: Any) -> list[str]:
    """Every string (keys included) in a list/struct constant that may hold a placeholder.

    Serialised as JSON each sits between quotes, so a placeholder can only form inside one."""
    found: list[str] = []
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            return ["{{$"]  # too large to walk: not proven safe
        if isinstance(item, str):
            if "{{$" in item:
                found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def inert_json(value: Any) -> bool:
    """True for a list (of lists) of numbers, booleans and nulls: its JSON text holds no quote,
    backslash or brace, so pasted inside a JSON string it stays text (``[]``, ``[0.1, 0.5]``)."""
    stack, seen = [value], 0
    if not isinstance(value, list):
        return False
    while stack:
        item = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            return False
        if isinstance(item, list):
            stack.extend(item)
        elif not (item is None or isinstance(item, (bool, int, float))):
            return False
    return True


def identity_option(text: str) -> bool:
    """True for a command-line option that chooses an identity (``--serviceAccount=x``,
    ``--service_account_email``, ``--impersonate_service_account``, any prefix or case)."""
    return _IDENTITY_OPTION.match(text) is not None


def identity_spots(
    parsed: ParsedPayload,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    allowed: tuple[str, ...],
    options: bool,
) -> list[str]:
    """Where a launcher payload names an identity anywhere but at ``allowed`` (the field the
    rewrite pins): a key naming a service account or impersonation, in the payload's own text or
    in a constant Vertex pastes into it (a mapping, a list, JSON text). With ``options`` (the
    payload's strings are job options, as in a Dataflow flex launch) also an option string that
    chooses an identity or a value holding a service-account email. Each spot as text.
    """
    found: list[str] = []
    stack: list[tuple[tuple[str | int, ...], Any, str]] = [((), parsed.tree, "")]
    walked = 0
    while stack and len(found) < 8:
        path, node, via = stack.pop()
        walked += 1
        if walked > _MAX_NODES:
            return [*found, "(a constant too large to check)"]
        spot = ".".join(map(str, path)) or "(root)"
        where = f"{spot}{via}"
        if isinstance(node, Raw):
            name = input_placeholder(node.placeholder)
            bound = input_binding(name, bindings, params, env) if name is not None else None
            if bound is not None and bound.kind == "constant":
                value = bound.value
                if isinstance(value, str):
                    try:  # JSON text pasted as a value
                        value = json.loads(value)
                    except (ValueError, RecursionError):
                        continue
                stack.append((path, value, f" (input {name!r})"))
            continue
        if isinstance(node, dict):
            for key, value in node.items():
                child = (*path, key)
                if child != allowed and isinstance(key, str) and IDENTITY_KEY.search(key):
                    found.append(f"{'.'.join(map(str, child))}{via}")
                elif child != allowed:
                    stack.append((child, value, via))
        elif isinstance(node, list):
            stack.extend(((*path, i), v, via) for i, v in enumerate(node))
        elif isinstance(node, str) and options:
            texts = [node]
            for nested in _ANY_INPUT.findall(node):  # a constant pasted into this string
                bound = input_binding(nested, bindings, params, env)
                if bound is not None and bound.kind == "constant":
                    texts.append(
                        json.dumps(bound.value) if not isinstance(bound.value, str) else bound.value
                    )
            if any(identity_option(t) or _SA_EMAIL.search(t) for t in texts):
                found.append(where)
    return sorted(set(found))


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


def runtime_nested(
    value: Any, bindings: Mapping[str, Any], params: Mapping[str, Any], env: Env
) -> str | None:
    """What makes a constant known only at run time: the first input placeholder nested in it
    (at any depth of constants holding placeholders) that is bound to a run-time value."""
    todo, seen = [value], 0
    while todo:
        seen += 1
        if seen > _MAX_NESTED * 8:
            return "a placeholder nested too deeply"
        for name in nested_inputs(todo.pop()):
            bound = input_binding(name, bindings, params, env)
            if bound is None:
                continue  # an optional input left unset: Vertex pastes nothing
            if bound.kind != "constant":
                return bound.what or f"input {name!r}"
            todo.append(bound.value)
    return None


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
