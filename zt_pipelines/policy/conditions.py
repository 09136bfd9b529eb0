"""IAM Conditions: evaluate CEL with cel-python, three-valued, never guessing.

A condition is evaluated with the attributes of the *request* the step will make: the accessed
resource's ``resource.name`` / ``resource.type`` / ``resource.service`` and ``request.time``
(the ``now`` passed in). Anything else a condition may read (``request.host``, tags via
``resource.matchTag``, ``api.getAttribute``, destination IPs, ...) is unknown before the step
runs, so such a condition is **unknown** — which can never prove a grant.

Resource names follow the IAM Conditions attribute reference: buckets are
``projects/_/buckets/BUCKET``, objects ``projects/_/buckets/BUCKET/objects/OBJECT``, BigQuery
``projects/P/datasets/D[/tables/T]``. ``storage.objects.list`` is authorised on the *bucket*,
every other ``storage.objects.*`` permission on the object.

A need on an object *prefix* covers objects whose names we do not know. For every
``resource.name.startsWith("L")`` we decide the call for all names under the prefix at once;
any other use of ``resource.name`` is evaluated on probe names and, unless false for all of
them, is unknown (it depends on the object name).

Pure: no IO, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from zt_pipelines.policy.snapshot import ASSET_TYPES, Condition


class Tri(Enum):
    """Three-valued truth."""

    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ConditionResult:
    """The value of a condition and, when unknown, why."""

    value: Tri
    reason: str = ""


@dataclass(frozen=True)
class RequestAttributes:
    """The request attributes a condition may read.

    Attributes:
        name: ``resource.name`` when it is one known string.
        name_prefix: when the accessed resources are every object under a prefix, that
            prefix of ``resource.name`` (``name`` is then ``None``).
        type: ``resource.type`` (``None`` when unknown: reading it is then unknown).
        service: ``resource.service``.
    """

    name: str | None
    name_prefix: str | None = None
    type: str | None = None
    service: str | None = None


class ConditionError(ValueError):
    """A condition expression is not valid CEL."""


_STARTS_WITH = re.compile(r"""resource\.name\.startsWith\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)""")
_MAX_MEMO = 50_000
_SCHEDULE = re.compile(r"request\.time\.get[A-Z]")
_PROBE_SUFFIXES = ("", "zt-probe/zt-probe.bin")
_OBJECT_LEVEL_EXCEPTIONS = frozenset({"storage.objects.list"})


def request_attributes(
    full_name: str, prefix: str | None, permission: str, kind: str | None = None
) -> RequestAttributes:
    """The attributes of a request for ``permission`` on a resource (and object prefix)."""
    service, _, path = full_name[2:].partition("/")
    if service == "storage.googleapis.com":
        bucket = f"projects/_/buckets/{path}"
        if permission.startswith("storage.objects.") and permission not in (
            _OBJECT_LEVEL_EXCEPTIONS
        ):
            return RequestAttributes(
                None, f"{bucket}/objects/{prefix or ''}", "storage.googleapis.com/Object", service
            )
        return RequestAttributes(bucket, None, "storage.googleapis.com/Bucket", service)
    rtype = _TYPES.get(kind or "") or _type_from_path(service, path)
    return RequestAttributes(path, None, rtype, service)


# bucket left out as before: storage names are answered above, by name not kind
_TYPES: dict[str, str] = {kind: t for kind, t in ASSET_TYPES.items() if kind != "bucket"}


def _type_from_path(service: str, path: str) -> str | None:
    parts = path.split("/")
    if len(parts) >= 2 and len(parts) % 2 == 0:
        collection = parts[-2]
        singular = collection[:-1] if collection.endswith("s") else collection
        return f"{service}/{singular[:1].upper()}{singular[1:]}"
    return None


class ConditionEvaluator:
    """Compiles each expression once and evaluates it three-valued."""

    def __init__(self) -> None:
        self._programs: dict[str, Any] = {}
        self._results: dict[tuple[str, RequestAttributes, datetime, bool], ConditionResult] = {}
        self._env: Any = None

    def check_syntax(self, expression: str) -> None:
        """Raise :class:`ConditionError` when ``expression`` does not parse as CEL."""
        self._program(expression)

    def _program(self, expression: str) -> Any:
        program = self._programs.get(expression)
        if program is None:
            import celpy  # imported lazily: the grammar takes a moment to build

            if self._env is None:
                self._env = celpy.Environment()
            try:
                ast = self._env.compile(expression)
            except Exception as exc:  # celpy raises CELParseError and lark errors
                raise ConditionError(f"invalid CEL: {exc}".splitlines()[0]) from exc
            program = self._env.program(ast)
            self._programs[expression] = program
        return program

    def evaluate(
        self, condition: Condition, attrs: RequestAttributes, now: datetime, *, deny: bool = False
    ) -> ConditionResult:
        """Evaluate ``condition`` for a request with ``attrs`` at ``now``.

        ``deny``: the condition guards a deny rule. Probing object names can show that an allow
        condition fails for *some* object under a prefix (so the need is not granted), but never
        that a deny condition fails for *every* object: that is unknown instead.
        """
        key = (condition.expression, attrs, now, deny)
        cached = self._results.get(key)
        if cached is None:
            cached = self._evaluate(condition.expression, attrs, now, deny)
            if len(self._results) >= _MAX_MEMO:
                self._results.clear()  # bounded: a long-lived evaluator sees ever-new times
            self._results[key] = cached
        return cached

    def _evaluate(
        self, expression: str, attrs: RequestAttributes, now: datetime, deny: bool
    ) -> ConditionResult:
        if _SCHEDULE.search(expression):
            # time-of-day/weekday rules hold at check time but not necessarily when steps run
            return ConditionResult(
                Tri.UNKNOWN, "the condition depends on when the step runs (time of day/week)"
            )
        if attrs.name is None and attrs.name_prefix is not None:
            prefix = attrs.name_prefix
            expression = _STARTS_WITH.sub(lambda m: _starts_with(prefix, m), expression)
            if "resource.name" in expression:
                values = [
                    self._run(expression, _activation(prefix + s, attrs, now))
                    for s in _PROBE_SUFFIXES
                ]
                if not deny and all(v.value is Tri.FALSE for v in values):
                    return ConditionResult(Tri.FALSE)
                return ConditionResult(
                    Tri.UNKNOWN,
                    "the condition depends on the object name, which is not known for every "
                    f"object under {prefix!r}",
                )
            return self._run(expression, _activation(prefix, attrs, now))
        return self._run(expression, _activation(attrs.name, attrs, now))

    def _run(self, expression: str, activation: dict[str, Any]) -> ConditionResult:
        try:
            program = self._program(expression)
        except ConditionError as exc:
            return ConditionResult(Tri.UNKNOWN, str(exc))
        from celpy.evaluation import CELEvalError

        try:
            value = program.evaluate(activation)
        except CELEvalError as exc:
            return ConditionResult(Tri.UNKNOWN, _eval_reason(exc))
        except Exception as exc:  # any library failure: never a grant
            return ConditionResult(Tri.UNKNOWN, f"could not evaluate: {type(exc).__name__}")
        if isinstance(value, CELEvalError):
            return ConditionResult(Tri.UNKNOWN, _eval_reason(value))
        from celpy import celtypes

        if isinstance(value, (bool, celtypes.BoolType)):
            return ConditionResult(Tri.TRUE if bool(value) else Tri.FALSE)
        return ConditionResult(
            Tri.UNKNOWN, f"the condition is not boolean ({type(value).__name__})"
        )


def _starts_with(prefix: str, match: re.Match[str]) -> str:
    literal = match.group(1) if match.group(1) is not None else match.group(2)
    if prefix.startswith(literal):
        return "true"
    if not literal.startswith(prefix):
        return "false"
    return match.group(0)  # depends on the rest of the object name


def _eval_reason(exc: Any) -> str:
    args = getattr(exc, "args", ())
    text = str(args[0]) if args else str(exc)
    if "undeclared reference to" in text:
        ref = text.split("undeclared reference to", 1)[1].split("(", 1)[0].strip()
        return f"the condition uses {ref}, which is not known before the step runs"
    if "no such member" in text or "KeyError" in text:
        return "the condition reads an attribute that is not known before the step runs"
    return "the condition could not be evaluated: " + text.splitlines()[0][:200]


def _activation(name: str | None, attrs: RequestAttributes, now: datetime) -> dict[str, Any]:
    from celpy import celtypes

    resource: dict[Any, Any] = {}
    if name is not None:
        resource[celtypes.StringType("name")] = celtypes.StringType(name)
    if attrs.type is not None:
        resource[celtypes.StringType("type")] = celtypes.StringType(attrs.type)
    if attrs.service is not None:
        resource[celtypes.StringType("service")] = celtypes.StringType(attrs.service)
    when = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
    request = {celtypes.StringType("time"): celtypes.TimestampType(when)}
    return {
        "resource": celtypes.MapType(resource),
        "request": celtypes.MapType(request),
    }
