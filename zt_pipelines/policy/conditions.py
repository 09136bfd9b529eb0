"""IAM Conditions: decide CEL on its parsed AST, three-valued, never guessing.

cel-python parses the expression; this module walks the syntax tree itself and models only
what it can decide exactly: ``&&``/``||``/``!``/``?:`` (Kleene logic), comparisons of strings,
integers, booleans and timestamps, ``in`` on list literals, ``startsWith``/``endsWith``/
``contains``/``matches`` (RE2, unanchored) on strings, ``timestamp("RFC 3339")``, and the
request attributes below — written as ``a.b``, ``a["b"]`` or in parentheses alike. Any other
node, function, method or attribute is **unknown**, and unknown never proves a grant (nor rules
out a deny). Before any evaluation the expression is type-checked as IAM does
(:mod:`zt_pipelines.policy.conditions_types`): an ill-typed condition (``1 ? true : true``,
``true || "x"``) is a :class:`ConditionError` — refused in a snapshot file, unknown wherever
else it is evaluated.

A condition is evaluated with the attributes of the *request* the step will make: the accessed
resource's ``resource.name`` / ``resource.type`` / ``resource.service`` and ``request.time``
(the ``now`` passed in). Resource attributes exist only for the services Google lists
(IAM "Resource attributes for IAM Conditions"); on any other service (Vertex AI, IAM, Artifact
Registry, ...) reading one is unknown, never an invented value. Time-of-day/week accessors of
``request.time`` (``getHours`` ...) are unknown: the step runs later than the check. Anything
else a condition may read (``request.host``, tags via ``resource.matchTag``,
``api.getAttribute``, destination IPs, ...) is unknown before the step runs.

Resource names follow the IAM Conditions attribute reference: buckets are
``projects/_/buckets/BUCKET``, objects ``projects/_/buckets/BUCKET/objects/OBJECT``, BigQuery
``projects/P/datasets/D[/tables/T]``. ``storage.objects.list`` is authorised on the *bucket*,
every other ``storage.objects.*`` permission on the object.

A need on an object *prefix* covers objects whose names we do not know: ``resource.name`` is
then a string known to start with the prefix. ``startsWith``/``==``/``contains`` are decided
for every name under the prefix at once where they can be; otherwise an allow condition is
evaluated on probe names and, unless false for all of them, is unknown (it depends on the
object name). A deny condition is never ruled out by probes.

Pure: no IO, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from functools import lru_cache
from typing import Any

from zt_pipelines.policy.conditions_types import TIME_METHODS, CelTypeError, check_boolean
from zt_pipelines.policy.deny import to_v2
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
        unavailable: why the resource attributes are unknown (the service has none), or ``""``.
    """

    name: str | None
    name_prefix: str | None = None
    type: str | None = None
    service: str | None = None
    unavailable: str = ""


class ConditionError(ValueError):
    """A condition expression is not valid CEL."""


_MAX_MEMO = 50_000
_PROBE_SUFFIXES = ("", "zt-probe/zt-probe.bin")
_OBJECT_LEVEL_EXCEPTIONS = frozenset({"storage.objects.list"})


#: services whose requests carry resource attributes (IAM "Resource attributes for IAM
#: Conditions": resource service values); any other service recognises none
ATTRIBUTE_SERVICES = frozenset(
    {
        "apigee.googleapis.com",
        "apihub.googleapis.com",
        "backupdr.googleapis.com",
        "bigquery.googleapis.com",
        "bigqueryreservation.googleapis.com",
        "bigtableadmin.googleapis.com",
        "binaryauthorization.googleapis.com",
        "clouddeploy.googleapis.com",
        "cloudkms.googleapis.com",
        "cloudresourcemanager.googleapis.com",
        "compute.googleapis.com",
        "connectors.googleapis.com",
        "container.googleapis.com",
        "dataform.googleapis.com",
        "firestore.googleapis.com",
        "iap.googleapis.com",
        "integrations.googleapis.com",
        "logging.googleapis.com",
        "pubsublite.googleapis.com",
        "secretmanager.googleapis.com",
        "spanner.googleapis.com",
        "sqladmin.googleapis.com",
        "storage.googleapis.com",
    }
)
#: node kinds whose ``resource.name`` format we model exactly (the full name's path): BigQuery
#: datasets/tables and KMS keys; others (projects, secrets, ...) have a name we do not model
_PATH_NAMED = frozenset({"dataset", "table", "cryptoKey"})


def request_attributes(
    full_name: str, prefix: str | None, permission: str, kind: str | None = None
) -> RequestAttributes:
    """The attributes of a request for ``permission`` on a resource (and object prefix).

    The request belongs to the permission's service (``aiplatform.customJobs.create`` checked
    on a project is a Vertex AI request): when that service has no resource attributes they
    are unavailable; when it is not the resource's own service, type and name are unknown.
    """
    service, _, path = full_name[2:].partition("/")
    request_service = to_v2(permission).partition("/")[0]
    if request_service not in ATTRIBUTE_SERVICES:
        return RequestAttributes(
            None,
            unavailable=(
                f"{request_service} requests carry no resource attributes in IAM Conditions"
            ),
        )
    if request_service != service:
        return RequestAttributes(None, None, None, request_service)
    collection = permission.split(".")[1] if permission.count(".") >= 2 else ""
    if service == "storage.googleapis.com":
        bucket = f"projects/_/buckets/{path}"
        if collection == "objects" and permission not in _OBJECT_LEVEL_EXCEPTIONS:
            return RequestAttributes(
                None, f"{bucket}/objects/{prefix or ''}", "storage.googleapis.com/Object", service
            )
        if collection in ("buckets", "objects"):
            return RequestAttributes(bucket, None, "storage.googleapis.com/Bucket", service)
        # managed folders, folders, ...: a resource under the bucket we do not model
        return RequestAttributes(None, None, None, service)
    if kind == "dataset" and collection == "tables":
        if permission in ("bigquery.tables.list", "bigquery.tables.create"):
            return RequestAttributes(None, None, None, service)  # not modelled: unknown
        # a need on a dataset's tables: every table request, named under the dataset
        return RequestAttributes(None, f"{path}/tables/", "bigquery.googleapis.com/Table", service)
    if _COLLECTIONS.get(kind or "") != collection:
        # the request is on another kind of resource than the node (a secret version under
        # a secret, a key version under a key): its type and name are not the node's
        return RequestAttributes(None, None, None, service)
    rtype = _TYPES.get(kind or "")
    if rtype is not None and not rtype.startswith(service + "/"):
        rtype = None  # a kind that does not match the name's service: do not guess
    name = path if kind in _PATH_NAMED else None
    return RequestAttributes(name, None, rtype, service)


#: the permission collection (``bigquery.datasets.get`` → ``datasets``) of requests on each kind
_COLLECTIONS: dict[str, str] = {
    "organization": "organizations",
    "folder": "folders",
    "project": "projects",
    "dataset": "datasets",
    "table": "tables",
    "secret": "secrets",
    "cryptoKey": "cryptoKeys",
}


# bucket left out as before: storage names are answered above, by name not kind
_TYPES: dict[str, str] = {
    kind: t for kind, t in ASSET_TYPES.items() if kind not in ("bucket", "folder", "organization")
}


class ConditionEvaluator:
    """Parses each expression once and evaluates its AST three-valued."""

    def __init__(self) -> None:
        self._programs: dict[str, Any] = {}
        #: expression -> why it is never decided (it names what IAM does not document), or ""
        self._undecided: dict[str, str] = {}
        self._results: dict[tuple[str, RequestAttributes, datetime, bool], ConditionResult] = {}
        self._somewhere: dict[tuple[str, RequestAttributes, datetime], ConditionResult] = {}
        self._time_points: dict[str, tuple[bool, tuple[datetime, ...]]] = {}
        self._env: Any = None

    def check_syntax(self, expression: str) -> None:
        """Raise :class:`ConditionError` when ``expression`` does not parse as CEL."""
        self._program(expression)

    def time_points(self, expression: str) -> tuple[bool, tuple[datetime, ...]]:
        """Whether ``expression`` reads ``request.time`` (in any spelling: ``request.time``,
        ``request["time"]``, parenthesised ...) and every timestamp value it names (literals
        decoded as CEL decodes them, sums with durations where modelled), read from the
        parsed expression, never from its text. An expression that does not parse reads
        nothing (it is unknown wherever it is evaluated)."""
        found = self._time_points.get(expression)
        if found is not None:
            return found
        try:
            tree = self._program(expression)
        except ConditionError:
            found = (False, ())
        else:
            found = _time_points(tree)
        self._time_points[expression] = found
        return found

    def expressions_seen(self) -> tuple[str, ...]:
        """Every expression this evaluator has parsed so far (each once), in no order: the
        conditions its decisions depended on."""
        return tuple(self._programs)

    def _program(self, expression: str) -> Any:
        program = self._programs.get(expression)
        if program is None:
            import celpy  # imported lazily: the grammar takes a moment to build

            if self._env is None:
                self._env = celpy.Environment()
            if len(expression) > MAX_EXPRESSION:
                raise ConditionError(
                    f"the condition is {len(expression)} characters long "
                    f"(IAM allows {MAX_EXPRESSION})"
                )
            try:
                program = self._env.compile(expression)
            except RecursionError:
                raise ConditionError("the condition is nested too deeply") from None
            except Exception as exc:  # celpy raises CELParseError and lark errors
                raise ConditionError(f"invalid CEL: {exc}".splitlines()[0]) from exc
            try:
                # IAM type-checks before it evaluates: so do we
                self._undecided[expression] = check_boolean(program)
            except RecursionError:
                raise ConditionError("the condition is nested too deeply") from None
            except CelTypeError as exc:
                raise ConditionError(str(exc)) from None
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
        try:
            tree = self._program(expression)
        except ConditionError as exc:
            return ConditionResult(Tri.UNKNOWN, str(exc))
        if self._undecided[expression]:
            return ConditionResult(Tri.UNKNOWN, self._undecided[expression])
        when = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
        result = _run(tree, attrs, when)
        if (
            result.value is Tri.UNKNOWN
            and not deny
            and attrs.name is None
            and attrs.name_prefix is not None
        ):
            # objects whose names make the allow condition false: not every object is granted
            probes = [
                _run(tree, replace(attrs, name=attrs.name_prefix + s, name_prefix=None), when)
                for s in _PROBE_SUFFIXES
            ]
            if all(p.value is Tri.FALSE for p in probes):
                return ConditionResult(Tri.FALSE)
        return result

    def holds_somewhere(
        self, condition: Condition, attrs: RequestAttributes, now: datetime
    ) -> ConditionResult:
        """Whether ``condition`` is true for SOME request with ``attrs`` at ``now``.

        The existential twin of :meth:`evaluate` (which asks "true for every object under the
        prefix?"): TRUE when it holds for every such request or for a probe object name, FALSE
        only when it is false for every name under the prefix, UNKNOWN otherwise. Used to ask
        whether a conditional grant also reaches resources outside a step's needs.
        """
        key = (condition.expression, attrs, now)
        cached = self._somewhere.get(key)
        if cached is not None:
            return cached
        try:
            tree = self._program(condition.expression)
        except ConditionError as exc:
            return ConditionResult(Tri.UNKNOWN, str(exc))
        if self._undecided[condition.expression]:
            return ConditionResult(Tri.UNKNOWN, self._undecided[condition.expression])
        when = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
        result = _run(tree, attrs, when)
        if result.value is Tri.UNKNOWN and attrs.name is None and attrs.name_prefix is not None:
            for s in _PROBE_SUFFIXES:
                name = attrs.name_prefix + s
                probe = _run(tree, replace(attrs, name=name, name_prefix=None), when)
                if probe.value is Tri.TRUE:
                    result = ConditionResult(Tri.TRUE, f"true for {name}")
                    break
        if len(self._somewhere) >= _MAX_MEMO:
            self._somewhere.clear()
        self._somewhere[key] = result
        return result


# -- the AST walk ---------------------------------------------------------------------------

#: IAM's limit on a condition expression (characters)
MAX_EXPRESSION = 12_800
_NAME_DEPENDS = (
    "the condition depends on the object name, not known for every object under the prefix"
)


class _Unknown:
    """A value we cannot know before the step runs (or do not model exactly), with why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass(frozen=True)
class _Time:
    """A timestamp; ``request`` marks ``request.time`` (whose time-of-day accessors vary)."""

    value: datetime
    request: bool = False


@dataclass(frozen=True)
class _Prefixed:
    """``resource.name`` of an object under a prefix: some string starting with ``prefix``."""

    prefix: str


@dataclass(frozen=True)
class _Root:
    """The ``resource`` or ``request`` variable itself."""

    name: str


_Value = Any  # bool | int | str | _Time | _Prefixed | _Root | tuple | _Unknown
_TIME_ACCESSORS = TIME_METHODS  # one list with the type check
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")


def _iso(text: str) -> str:
    """An RFC 3339 time as every supported Python's ``fromisoformat`` reads it: ``Z`` as
    ``+00:00`` and the fraction as six digits (CEL allows nine; 3.10 reads only 3 or 6)."""
    text = text.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time (``Z`` or an offset, up to nine fractional digits) on every
    supported Python (3.10's ``fromisoformat`` reads neither ``Z`` nor 4-5 or 7-9 digits).

    Raises:
        ValueError: not such a time.
    """
    return datetime.fromisoformat(_iso(text.strip()))


_SKIP = frozenset({"expr", "conditionalor", "conditionaland", "relation", "addition"})
_SKIP |= {"multiplication", "unary", "member", "primary", "paren_expr"}


def _run(tree: Any, attrs: RequestAttributes, now: datetime) -> ConditionResult:
    try:
        value = _Walk(attrs, now).eval(tree)
    except RecursionError:
        return ConditionResult(Tri.UNKNOWN, "the condition is nested too deeply")
    except Exception as exc:  # anything unforeseen in a hostile expression: never a decision
        return ConditionResult(Tri.UNKNOWN, f"could not evaluate: {type(exc).__name__}")
    if isinstance(value, _Unknown):
        return ConditionResult(Tri.UNKNOWN, value.reason)
    if isinstance(value, bool):
        return ConditionResult(Tri.TRUE if value else Tri.FALSE)
    return ConditionResult(Tri.UNKNOWN, "the condition is not boolean")


_PROBE_NOW = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _time_points(tree: Any) -> tuple[bool, tuple[datetime, ...]]:
    """Every subexpression of ``tree`` evaluated on its own: a ``request.time`` value marks
    the read, any other timestamp value is collected (branches a decision may skip too)."""
    walk = _Walk(RequestAttributes(None, unavailable="probing for times"), _PROBE_NOW)
    reads = False
    stamps: set[datetime] = set()
    try:
        subtrees = list(tree.iter_subtrees())
    except RecursionError:
        return True, ()  # too deep to read: assume it reads the time (probe the window's end)
    for sub in subtrees:
        try:
            value = walk.eval(sub)
        except Exception:  # RecursionError or a shape the walk does not expect
            continue
        if isinstance(value, _Time):
            if value.request:
                reads = True
            else:
                stamps.add(value.value)
    return reads, tuple(sorted(stamps))


class _Walk:
    """One evaluation of a parsed expression (lark tree from cel-python's grammar)."""

    def __init__(self, attrs: RequestAttributes, now: datetime) -> None:
        self.attrs = attrs
        self.now = now

    def eval(self, node: Any) -> _Value:
        from lark import Token

        if isinstance(node, Token):
            return _Unknown(f"unexpected token {node.value!r}")
        kids = node.children
        rule = node.data
        if rule in _SKIP and len(kids) == 1:
            return self.eval(kids[0])
        handler = getattr(self, "_" + rule, None)
        if handler is None:
            return _Unknown(f"the condition uses {rule.replace('_', ' ')}, which is not modelled")
        result: _Value = handler(kids)
        return result

    # logic
    def _expr(self, kids: list[Any]) -> _Value:  # cond ? a : b
        if len(kids) != 3:
            return _Unknown("malformed conditional")
        cond = self.eval(kids[0])
        if cond is True:
            return self.eval(kids[1])
        if cond is False:
            return self.eval(kids[2])
        # an unknown test may be an error at run time, which no branch value hides
        return cond if isinstance(cond, _Unknown) else _Unknown("the test of ?: is not boolean")

    def _conditionalor(self, kids: list[Any]) -> _Value:
        return _kleene(self.eval(kids[0]), self.eval(kids[1]), absorbing=True)

    def _conditionaland(self, kids: list[Any]) -> _Value:
        return _kleene(self.eval(kids[0]), self.eval(kids[1]), absorbing=False)

    def _unary(self, kids: list[Any]) -> _Value:
        op = kids[0].data if len(kids) == 2 else ""
        value = self.eval(kids[-1])
        if isinstance(value, _Unknown):
            return value
        if op == "unary_not" and isinstance(value, bool):
            return not value
        if op == "unary_neg" and isinstance(value, int) and not isinstance(value, bool):
            return -value
        return _Unknown(f"{op or 'unary'} on a value it does not apply to")

    # comparisons
    def _relation(self, kids: list[Any]) -> _Value:
        op = kids[0].data
        left = self.eval(kids[0].children[0])
        right = self.eval(kids[1])
        return _compare(op, left, right)

    def _addition(self, kids: list[Any]) -> _Value:
        op = kids[0].data
        left, right = self.eval(kids[0].children[0]), self.eval(kids[1])
        for v in (left, right):
            if isinstance(v, _Unknown):
                return v
        if op == "addition_add" and isinstance(left, str) and isinstance(right, str):
            return left + right
        if op == "addition_add" and isinstance(left, _Prefixed) and isinstance(right, str):
            return _Prefixed(left.prefix)  # still starts with the prefix
        return _Unknown(f"{op.replace('_', ' ')} is not modelled")

    # members and calls
    def _member_dot(self, kids: list[Any]) -> _Value:
        return self._attribute(self.eval(kids[0]), str(kids[1].value))

    def _member_index(self, kids: list[Any]) -> _Value:
        target = self.eval(kids[0])
        key = self.eval(kids[1])
        if isinstance(target, _Unknown):
            return target
        if isinstance(target, _Root) and isinstance(key, str):
            return self._attribute(target, key)
        if isinstance(key, _Unknown):
            return key
        return _Unknown("indexing is not modelled here")

    def _attribute(self, target: _Value, name: str) -> _Value:
        if isinstance(target, _Unknown):
            return target
        if not isinstance(target, _Root):
            return _Unknown(f"the field {name!r} is not modelled")
        if target.name == "request":
            if name == "time":
                return _Time(self.now, request=True)
            return _Unknown(f"the condition uses request.{name}, not known before the step runs")
        a = self.attrs
        if a.unavailable:
            return _Unknown(f"resource.{name}: {a.unavailable}")
        if name == "name":
            if a.name is not None:
                return a.name
            if a.name_prefix is not None:
                return _Prefixed(a.name_prefix)
            return _Unknown("resource.name of this resource is not modelled")
        if name == "type":
            return a.type if a.type is not None else _Unknown("resource.type is not known here")
        if name == "service":
            if a.service is not None:
                return a.service
            return _Unknown("resource.service is not known here")
        return _Unknown(f"the condition uses resource.{name}, not known before the step runs")

    def _member_dot_arg(self, kids: list[Any]) -> _Value:
        target = self.eval(kids[0])
        method = str(kids[1].value)
        args = [self.eval(k) for k in kids[2].children] if len(kids) > 2 else []
        if isinstance(target, _Root):
            return _Unknown(f"the condition uses {target.name}.{method}(), which is not modelled")
        if isinstance(target, _Time) and method in _TIME_ACCESSORS:
            return _Unknown("the condition depends on when the step runs (time of day/week)")
        if isinstance(target, _Unknown):
            return target
        for arg in args:
            if isinstance(arg, _Unknown):
                return arg
        if method in ("startsWith", "endsWith", "contains") and len(args) == 1:
            return _string_test(method, target, args[0])
        if method == "matches" and len(args) == 1:
            return _matches(target, args[0])
        return _Unknown(f"the method {method}() is not modelled")

    def _ident_arg(self, kids: list[Any]) -> _Value:
        func = str(kids[0].value)
        args = [self.eval(k) for k in kids[1].children] if len(kids) > 1 else []
        if func == "timestamp" and len(args) == 1 and isinstance(args[0], str):
            if not _RFC3339.match(args[0]):
                return _Unknown(f"timestamp({args[0]!r}) is not an RFC 3339 time")
            try:
                parsed = datetime.fromisoformat(_iso(args[0]))
            except ValueError:
                return _Unknown(f"timestamp({args[0]!r}) is not a valid time")
            return _Time(parsed)
        for arg in args:
            if isinstance(arg, _Unknown):
                return arg
        return _Unknown(f"the function {func}() is not modelled")

    def _ident(self, kids: list[Any]) -> _Value:
        name = str(kids[0].value)
        if name in ("resource", "request"):
            return _Root(name)
        return _Unknown(f"the condition uses {name}, which is not known before the step runs")

    def _literal(self, kids: list[Any]) -> _Value:
        token = kids[0]
        kind, text = token.type, str(token.value)
        if kind in ("STRING_LIT", "MLSTRING_LIT"):
            from celpy.evaluation import celstr

            return str(celstr(token))
        if kind == "INT_LIT" and len(text) < 40:
            try:
                return int(text, 0)
            except ValueError:
                return _Unknown(f"integer literal {text!r} is not modelled")
        if kind == "BOOL_LIT":
            return text == "true"
        return _Unknown(f"{kind.lower().replace('_lit', '')} literals are not modelled")

    def _list_lit(self, kids: list[Any]) -> _Value:
        return tuple(self.eval(k) for k in kids[0].children) if kids else ()


def _kleene(left: _Value, right: _Value, *, absorbing: bool) -> _Value:
    """``||`` (``absorbing`` = True) or ``&&``: a definite absorbing side decides the whole,
    unless the other side is a definite value that is not boolean (ill-typed: never a
    decision)."""
    for v in (left, right):
        if not isinstance(v, (bool, _Unknown)):
            return _Unknown("a logical operator on a value that is not boolean")
    if left is absorbing or right is absorbing:
        return absorbing
    if left is (not absorbing) and right is (not absorbing):
        return not absorbing
    for v in (left, right):
        if isinstance(v, _Unknown):
            return v
    return _Unknown("a logical operator on a value that is not boolean")


def _same_kind(left: _Value, right: _Value) -> bool:
    kinds = (bool, int, str, _Time)
    for kind in kinds:
        if isinstance(left, kind) and isinstance(right, kind):
            return kind is not int or not (isinstance(left, bool) or isinstance(right, bool))
    return False


def _compare(op: str, left: _Value, right: _Value) -> _Value:
    for v in (left, right):
        if isinstance(v, _Unknown):
            return v
    if op == "relation_in":
        if not isinstance(right, tuple):
            return _Unknown("'in' on something other than a list literal is not modelled")
        result: _Value = False
        for item in right:
            result = _kleene(result, _compare("relation_eq", left, item), absorbing=True)
        return result
    if isinstance(left, _Prefixed) or isinstance(right, _Prefixed):
        prefixed, other = (left, right) if isinstance(left, _Prefixed) else (right, left)
        if (
            op in ("relation_eq", "relation_ne")
            and isinstance(other, str)
            and not other.startswith(prefixed.prefix)
        ):
            return op == "relation_ne"
        return _Unknown(_NAME_DEPENDS)
    if not _same_kind(left, right):
        return _Unknown("a comparison of values of different types")
    a = left.value if isinstance(left, _Time) else left
    b = right.value if isinstance(right, _Time) else right
    if op == "relation_eq":
        return bool(a == b)
    if op == "relation_ne":
        return bool(a != b)
    if isinstance(a, bool):
        return _Unknown("ordering booleans is not modelled")
    if op == "relation_lt":
        return bool(a < b)
    if op == "relation_le":
        return bool(a <= b)
    if op == "relation_gt":
        return bool(a > b)
    if op == "relation_ge":
        return bool(a >= b)
    return _Unknown(f"{op} is not modelled")


def _string_test(method: str, target: _Value, arg: _Value) -> _Value:
    if not isinstance(arg, str):
        return _Unknown(f"{method}() with a non-string argument")
    if isinstance(target, _Prefixed):
        if method == "startsWith":
            if target.prefix.startswith(arg):
                return True
            if not arg.startswith(target.prefix):
                return False
        elif method == "contains" and arg in target.prefix:
            return True
        return _Unknown(_NAME_DEPENDS)
    if not isinstance(target, str):
        return _Unknown(f"{method}() on a value that is not a string")
    if method == "startsWith":
        return target.startswith(arg)
    if method == "endsWith":
        return target.endswith(arg)
    return arg in target


def _matches(target: _Value, pattern: _Value) -> _Value:
    """CEL ``matches``: an unanchored RE2 search (linear time), decided on known strings."""
    if isinstance(target, _Prefixed):
        return _Unknown(_NAME_DEPENDS)
    if not isinstance(target, str) or not isinstance(pattern, str):
        return _Unknown("matches() on a value that is not a string")
    compiled = _re2(pattern)
    if compiled is None:
        return _Unknown(f"{pattern[:80]!r} is not an RE2 regular expression we can run")
    return compiled.search(target) is not None


@lru_cache(maxsize=256)
def _re2(pattern: str) -> Any:
    import re2  # type: ignore[import-not-found, import-untyped]

    if len(pattern) > 1000:
        return None
    options = re2.Options()
    options.max_mem = 8 << 20
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None
