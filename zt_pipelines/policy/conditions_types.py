"""A static type check of IAM condition expressions, as CEL's checker does before evaluation.

IAM refuses a condition that does not type-check (CEL is statically typed: ``1 ? a : b``,
``true || "x"``, ``"a" in ["a", 1]``, ``false ? 1 : true`` have no matching overload), so such a
binding never grants and a deny rule carrying one never evaluates to false. The evaluator in
:mod:`zt_pipelines.policy.conditions` decides values three-valued and would otherwise let a
definite branch or operand decide an ill-typed whole.

Types are inferred bottom-up over the parsed tree. Every attribute and function IAM Conditions
documents has its documented type (``api.getAttribute("iam.googleapis.com/modifiedGrantsByRole",
[])`` is a list of strings, ``request.auth.access_levels`` too, ``destination.port`` an integer
...). What IAM does not document (``resource.labels``, ``lowerAscii()``, an unknown
``getAttribute`` key) cannot be typed: it is ``dyn`` here, so the load never refuses a condition
Google may accept, but :func:`check_boolean` names it and the evaluator then never decides the
condition (a definite ``|| true`` beside it proves nothing: IAM may refuse the whole). Only a
definite clash between types we know is an error.

Pure: no IO.
"""

from __future__ import annotations

from typing import Any

#: a CEL type: a primitive name, ``("list", elem)``, ``("map", key, value)`` or ``("msg", name)``
CelType = str | tuple[Any, ...]

DYN = "dyn"
_NUMERIC = frozenset({"int", "uint", "double"})
_ORDERED = _NUMERIC | {"string", "bytes", "bool", "timestamp", "duration"}
_SCALARS = _ORDERED | {"null"}
_LITERALS = {
    "INT_LIT": "int",
    "UINT_LIT": "uint",
    "FLOAT_LIT": "double",
    "STRING_LIT": "string",
    "MLSTRING_LIT": "string",
    "BYTES_LIT": "bytes",
    "BOOL_LIT": "bool",
    "NULL_LIT": "null",
}
_STRINGS: CelType = ("list", "string")
#: the attributes IAM documents with a fixed type (IAM Conditions attribute reference)
_FIELDS: dict[str, dict[str, CelType]] = {
    "resource": {"name": "string", "type": "string", "service": "string"},
    "request": {"time": "timestamp", "host": "string", "path": "string", "auth": ("msg", "auth")},
    "auth": {"access_levels": _STRINGS},
    "destination": {"ip": "string", "port": "int"},
    "api": {},
    "compute": {},
}
#: the root variables a condition may name (``auth`` only as ``request.auth``)
_ROOTS = frozenset(_FIELDS) - {"auth"}
#: ``api.getAttribute(KEY, default)`` keys IAM documents, with their types
_API_ATTRIBUTES: dict[str, CelType] = {
    "iam.googleapis.com/modifiedGrantsByRole": _STRINGS,
    "storage.googleapis.com/objectListPrefix": "string",
}
#: documented functions of a root variable: (root, name) -> (argument types, result)
_ROOT_METHODS: dict[tuple[str, str], tuple[tuple[CelType, ...], CelType]] = {
    ("resource", "matchTag"): (("string", "string"), "bool"),
    ("resource", "matchTagId"): (("string", "string"), "bool"),
    ("resource", "hasTagKey"): (("string",), "bool"),
    ("resource", "hasTagKeyId"): (("string",), "bool"),
    ("compute", "isForwardingRuleCreationOperation"): ((), "bool"),
    ("compute", "matchLoadBalancingSchemes"): ((_STRINGS,), "bool"),
}
#: ``target.method(args)`` on a string: argument types -> result
_STRING_METHODS: dict[str, tuple[tuple[str, ...], CelType]] = {
    "startsWith": (("string",), "bool"),
    "endsWith": (("string",), "bool"),
    "contains": (("string",), "bool"),
    "matches": (("string",), "bool"),
    "extract": (("string",), "string"),
}
#: the accessors of a timestamp (the CEL standard library; IAM documents them all)
TIME_METHODS = frozenset(
    {
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getMonth",
        "getSeconds",
    }
)
#: accessors a duration has too
_DURATION_METHODS = frozenset({"getHours", "getMilliseconds", "getMinutes", "getSeconds"})
#: global conversion/constructor functions: argument types each accepts -> result
_FUNCTIONS: dict[str, tuple[frozenset[str], CelType]] = {
    "timestamp": (frozenset({"string", "timestamp", "int"}), "timestamp"),
    "duration": (frozenset({"string", "duration"}), "duration"),
    "int": (frozenset({"int", "uint", "double", "string", "timestamp", "bool"}), "int"),
    "uint": (frozenset({"int", "uint", "double", "string"}), "uint"),
    "double": (frozenset({"int", "uint", "double", "string"}), "double"),
    "string": (_SCALARS - {"null"}, "string"),
    "bytes": (frozenset({"string", "bytes"}), "bytes"),
    "bool": (frozenset({"string", "bool"}), "bool"),
}
_MACROS_BOOL = frozenset({"all", "exists", "exists_one"})
_SKIP = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication"}
    | {"unary", "member", "primary", "paren_expr"}
)


class CelTypeError(ValueError):
    """The expression does not type-check (the message says where)."""


def check_boolean(tree: Any) -> str:
    """Raise :class:`CelTypeError` unless ``tree`` (cel-python's parse tree) is a well-typed
    expression whose type is ``bool`` (or not known); return ``""``, or what it names that IAM
    Conditions does not document (then its value is never decided)."""
    types = _Types()
    got = types.of(tree)
    if got not in ("bool", DYN):
        raise CelTypeError(f"the condition is {_show(got)}, not a boolean")
    if types.unmodelled:
        return (
            f"the condition uses {types.unmodelled[0]}, which IAM Conditions does not document "
            "(IAM may refuse the condition: it is never taken as true or false)"
        )
    return ""


def _show(t: CelType) -> str:
    if isinstance(t, tuple):
        if t[0] == "list":
            return f"list({_show(t[1])})"
        if t[0] == "map":
            return f"map({_show(t[1])}, {_show(t[2])})"
        return str(t[1])
    return t


def _join(a: CelType, b: CelType) -> CelType | None:
    """The common type of two values that must have one type (list elements, ``?:``
    branches), ``None`` when they have none."""
    if a == b:
        return a
    if a == DYN or b == DYN:
        return DYN
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] and a[0] in ("list", "map"):
        parts = [_join(x, y) for x, y in zip(a[1:], b[1:], strict=True)]
        if any(p is None for p in parts):
            return None
        return (a[0], *parts)
    return None


def _comparable(a: CelType, b: CelType) -> bool:
    """Whether ``a == b`` type-checks (numbers of different kinds compare in newer CEL)."""
    if _join(a, b) is not None:
        return True
    if a in _NUMERIC and b in _NUMERIC:
        return True
    if "null" in (a, b):
        other = b if a == "null" else a
        return isinstance(other, tuple) and other[0] == "msg"
    return False


class _Types:
    def __init__(self) -> None:
        self.unmodelled: list[str] = []  # what cannot be typed: named, in order
        self.bound: set[str] = set()  # a macro's variables, while its body is typed

    def _unknown(self, what: str) -> CelType:
        self.unmodelled.append(what)
        return DYN

    def of(self, node: Any) -> CelType:
        from lark import Token

        if isinstance(node, Token):
            return DYN
        kids = node.children
        rule = node.data
        if rule in _SKIP and len(kids) == 1:
            return self.of(kids[0])
        handler = getattr(self, "_" + rule, None)
        if handler is None:
            for kid in kids:  # still check what is inside
                self.of(kid)
            return self._unknown(rule.replace("_", " "))
        result: CelType = handler(kids)
        return result

    def _fail(self, what: str) -> CelTypeError:
        return CelTypeError(f"ill-typed condition: {what}")

    # logic
    def _expr(self, kids: list[Any]) -> CelType:
        cond, a, b = (self.of(k) for k in kids)
        if cond not in ("bool", DYN):
            raise self._fail(f"the test of '?:' is {_show(cond)}, not a boolean")
        joined = _join(a, b)
        if joined is None:
            raise self._fail(f"the branches of '?:' are {_show(a)} and {_show(b)}")
        return joined

    def _logic(self, kids: list[Any], op: str) -> CelType:
        for kid in kids:
            got = self.of(kid)
            if got not in ("bool", DYN):
                raise self._fail(f"an operand of {op!r} is {_show(got)}, not a boolean")
        return "bool"

    def _conditionalor(self, kids: list[Any]) -> CelType:
        return self._logic(kids, "||")

    def _conditionaland(self, kids: list[Any]) -> CelType:
        return self._logic(kids, "&&")

    def _unary(self, kids: list[Any]) -> CelType:
        op = kids[0].data if len(kids) == 2 else ""
        got = self.of(kids[-1])
        if op == "unary_not":
            if got not in ("bool", DYN):
                raise self._fail(f"'!' on {_show(got)}")
            return "bool"
        if got not in ("int", "double", "duration", DYN):
            raise self._fail(f"'-' on {_show(got)}")
        return got

    # operators
    def _relation(self, kids: list[Any]) -> CelType:
        op = kids[0].data
        left, right = self.of(kids[0].children[0]), self.of(kids[1])
        if op == "relation_in":
            if right == DYN:
                return "bool"
            if not isinstance(right, tuple) or right[0] not in ("list", "map"):
                raise self._fail(f"'in' on {_show(right)}, not a list or a map")
            if not _comparable(left, right[1]):
                raise self._fail(f"'in' tests {_show(left)} in {_show(right)}")
            return "bool"
        if op in ("relation_eq", "relation_ne"):
            if not _comparable(left, right):
                raise self._fail(f"'==' / '!=' compare {_show(left)} with {_show(right)}")
            return "bool"
        if DYN in (left, right):
            if left in _ORDERED or right in _ORDERED or DYN == left == right:
                return "bool"
        elif left in _ORDERED and (left == right or {left, right} <= _NUMERIC):
            return "bool"
        raise self._fail(f"ordering {_show(left)} against {_show(right)}")

    def _arith(self, kids: list[Any]) -> CelType:
        op = kids[0].data
        left, right = self.of(kids[0].children[0]), self.of(kids[1])
        pair = (left, right)
        if op == "addition_add":
            if left == right and (left in _NUMERIC | {"string", "bytes", "duration"}):
                return left
            if isinstance(left, tuple) and isinstance(right, tuple) and left[0] == "list":
                joined = _join(left, right)
                if joined is not None:
                    return joined
            if pair in (("timestamp", "duration"), ("duration", "timestamp")):
                return "timestamp"
        elif op == "addition_sub":
            if left == right and left in _NUMERIC | {"duration"}:
                return left
            if pair == ("timestamp", "timestamp"):
                return "duration"
            if pair == ("timestamp", "duration"):
                return "timestamp"
        elif op == "multiplication_mod":
            if left == right and left in ("int", "uint"):
                return left
        elif left == right and left in _NUMERIC:
            return left
        if DYN in pair:
            other = right if left == DYN else left
            if other == DYN or other in _NUMERIC | {"string", "bytes", "duration", "timestamp"}:
                return DYN
            if isinstance(other, tuple) and other[0] == "list" and op == "addition_add":
                return DYN
        raise self._fail(f"{op.split('_')[1]} of {_show(left)} and {_show(right)}")

    _addition = _arith
    _multiplication = _arith

    # members and calls
    def _member_dot(self, kids: list[Any]) -> CelType:
        return self._field(self.of(kids[0]), str(kids[1].value))

    def _field(self, target: CelType, name: str) -> CelType:
        if target == DYN:
            return DYN
        if isinstance(target, tuple) and target[0] == "msg":
            got = _FIELDS.get(target[1], {}).get(name)
            if got is None:
                return self._unknown(f"{target[1]}.{name}")
            return got
        if isinstance(target, tuple) and target[0] == "map":
            return _part(target, 2)
        raise self._fail(f"the field {name!r} of {_show(target)}")

    def _member_index(self, kids: list[Any]) -> CelType:
        target, key = self.of(kids[0]), self.of(kids[1])
        if target == DYN:
            return DYN
        if isinstance(target, tuple) and target[0] == "msg":
            if key not in ("string", DYN):
                raise self._fail(f"{target[1]}[{_show(key)}]")
            literal = _string_literal(kids[1])
            if literal is None:
                return self._unknown(f"{target[1]}[...]")
            return self._field(target, literal)
        if isinstance(target, tuple) and target[0] == "list":
            if key not in ("int", "uint", DYN):
                raise self._fail(f"a list indexed by {_show(key)}")
            return _part(target, 1)
        if isinstance(target, tuple) and target[0] == "map":
            if not _comparable(key, target[1]):
                raise self._fail(f"a {_show(target)} indexed by {_show(key)}")
            return _part(target, 2)
        raise self._fail(f"indexing {_show(target)}")

    def _args(self, kids: list[Any], at: int) -> list[CelType]:
        return [self.of(k) for k in kids[at].children] if len(kids) > at else []

    def _member_dot_arg(self, kids: list[Any]) -> CelType:
        method = str(kids[1].value)
        if method in _MACROS_BOOL or method in ("map", "filter"):
            self.of(kids[0])
            body = kids[2].children if len(kids) > 2 else []
            name = _ident_name(body[0]) if body else None
            if len(body) < 2 or name is None or name in _FIELDS:  # not a macro IAM can take
                return self._unknown(f"{method}()")
            outer = set(self.bound)
            self.bound.add(name)  # the macro's variable: some element, of no known type
            try:
                for b in body[1:]:
                    got = self.of(b)
                    if method in _MACROS_BOOL | {"filter"} and got not in ("bool", DYN):
                        raise self._fail(f"the predicate of {method}() is {_show(got)}")
            finally:
                self.bound = outer
            return "bool" if method in _MACROS_BOOL else ("list", DYN)
        target = self.of(kids[0])
        args = self._args(kids, 2)
        if target == ("msg", "api") and method == "getAttribute":
            key = _string_literal(kids[2].children[0]) if len(kids) > 2 else None
            if len(args) != 2 or args[0] not in ("string", DYN):
                raise self._fail(f"api.getAttribute({', '.join(_show(a) for a in args)})")
            typed = _API_ATTRIBUTES.get(key or "")
            if typed is None:
                return self._unknown(f"api.getAttribute({key!r})" if key else "api.getAttribute")
            if _join(args[1], typed) is None:
                raise self._fail(
                    f"api.getAttribute({key!r}) is {_show(typed)}, its default {_show(args[1])}"
                )
            return typed
        return self._method(target, method, args)

    def _method(self, target: CelType, method: str, args: list[CelType]) -> CelType:
        where = f"{_show(target)}.{method}({', '.join(_show(a) for a in args)})"
        if method in _STRING_METHODS:
            want, result = _STRING_METHODS[method]
            if target not in ("string", DYN) or len(args) != len(want):
                if target == DYN and method == "extract":
                    return DYN
                raise self._fail(where)
            if any(a not in (w, DYN) for a, w in zip(args, want, strict=True)):
                raise self._fail(where)
            return result
        if method in TIME_METHODS:
            ok = target in ("timestamp", DYN) or (
                target == "duration" and method in _DURATION_METHODS and not args
            )
            if not ok or len(args) > 1 or any(a not in ("string", DYN) for a in args):
                raise self._fail(where)
            return "int"
        if method == "size":
            if args or not _sized(target):
                raise self._fail(where)
            return "int"
        if method == "hasOnly" and (target == DYN or _is_list(target)):
            if len(args) != 1 or not (args[0] == DYN or _is_list(args[0])):
                raise self._fail(where)
            if target != DYN and args[0] != DYN and _join(target, args[0]) is None:
                raise self._fail(where)
            return "bool"
        if isinstance(target, tuple) and target[0] == "msg":
            return self._root_method(target[1], method, args, where)
        return self._unknown(f"{method}()")  # not ours to refuse: never decided either

    def _root_method(self, root: str, method: str, args: list[CelType], where: str) -> CelType:
        if root == "api" and method == "getAttribute":
            return DYN  # typed by _member_dot_arg, which sees the key
        found = _ROOT_METHODS.get((root, method))
        if found is None:
            return self._unknown(f"{root}.{method}()")
        want, result = found
        if len(args) != len(want) or any(
            a != DYN and _join(a, w) is None for a, w in zip(args, want, strict=True)
        ):
            raise self._fail(where)
        return result

    def _ident_arg(self, kids: list[Any]) -> CelType:
        func = str(kids[0].value)
        if func == "has":
            return "bool"  # a macro over a field path, not a value
        args = self._args(kids, 1)
        where = f"{func}({', '.join(_show(a) for a in args)})"
        if func in _FUNCTIONS:
            accepted, result = _FUNCTIONS[func]
            if len(args) != 1 or (args[0] != DYN and args[0] not in accepted):
                raise self._fail(where)
            return result
        if func == "size":
            if len(args) != 1 or not _sized(args[0]):
                raise self._fail(where)
            return "int"
        if func == "matches":
            if len(args) != 2 or any(a not in ("string", DYN) for a in args):
                raise self._fail(where)
            return "bool"
        return self._unknown(f"{func}()")

    def _ident(self, kids: list[Any]) -> CelType:
        name = str(kids[0].value)
        if name in self.bound:
            return DYN
        if name in _ROOTS:
            return ("msg", name)
        return self._unknown(name)

    def _literal(self, kids: list[Any]) -> CelType:
        return _LITERALS.get(kids[0].type, DYN)

    def _list_lit(self, kids: list[Any]) -> CelType:
        elem: CelType | None = None
        for kid in kids[0].children if kids else ():
            got = self.of(kid)
            joined = got if elem is None else _join(elem, got)
            if joined is None:
                raise self._fail(f"a list of {_show(elem or DYN)} and {_show(got)}")
            elem = joined
        return ("list", elem or DYN)

    def _map_lit(self, kids: list[Any]) -> CelType:
        key: CelType | None = None
        value: CelType | None = None
        items = kids[0].children if kids else []
        for i in range(0, len(items) - 1, 2):
            k, v = self.of(items[i]), self.of(items[i + 1])
            nk = k if key is None else _join(key, k)
            nv = v if value is None else _join(value, v)
            if nk is None or nv is None:
                raise self._fail("a map whose keys or values are of different types")
            key, value = nk, nv
        return ("map", key or DYN, value or DYN)


def _part(t: tuple[Any, ...], i: int) -> CelType:
    """The element (1) or value (2) type of a list or map type."""
    got: CelType = t[i]
    return got


def _is_list(t: CelType) -> bool:
    return isinstance(t, tuple) and t[0] == "list"


def _sized(t: CelType) -> bool:
    return t in ("string", "bytes", DYN) or (isinstance(t, tuple) and t[0] in ("list", "map"))


def _ident_name(node: Any) -> str | None:
    """The name of ``node`` when it is one bare identifier."""
    from lark import Tree

    while isinstance(node, Tree) and len(node.children) == 1 and node.data != "ident":
        node = node.children[0]
    if isinstance(node, Tree) and node.data == "ident":
        return str(getattr(node.children[0], "value", ""))
    return None


def _string_literal(node: Any) -> str | None:
    """The value of ``node`` when it is one plain string literal."""
    from lark import Token, Tree

    while isinstance(node, Tree) and len(node.children) == 1 and node.data != "literal":
        node = node.children[0]
    if isinstance(node, Tree) and node.data == "literal":
        token = node.children[0]
        if isinstance(token, Token) and token.type in ("STRING_LIT", "MLSTRING_LIT"):
            from celpy.evaluation import celstr

            return str(celstr(token))
    return None
