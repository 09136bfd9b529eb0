"""The loader's and writer's fast paths decide and write exactly what the plain versions do.

* The block YAML writer caches flow lines and string renders per dump, keyed by content: a
  cache hit must never write a value another way than the uncached writer (``True``, ``1`` and
  ``1.0`` are equal in Python but not in YAML; a ``str`` subclass is not written as a flow line).
* :func:`~zt_pipelines.loaders.check_plain_data` checks Python-built data level by level, with
  the children of a container sorted by type in C: it must refuse exactly what the obvious
  node-by-node walk refuses (depth, count, surrogates, huge integers, non-finite floats, and
  with ``json_only`` anything that is not JSON data).
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from zt_pipelines import loaders
from zt_pipelines.errors import InputError

RUNS = int(os.environ.get("ZT_FUZZ_RUNS", "150"))


class _Text(str):
    """A ``str`` subclass (an enum value, say): never a flow line, never cached as text."""


class _Uncached(loaders._Emitter):
    """The writer without its caches: every flow line and string rendered afresh."""

    def flow(self, value: dict[str, Any] | list[Any]) -> str | None:
        return loaders._flow(value)

    def scalar(self, value: Any) -> str:
        if type(value) is dict:
            return "{}"
        if type(value) is list:
            return "[]"
        return loaders._scalar_text(value)

    def emit(self, value: Any, indent: int, prefix: str) -> None:
        self.strings.clear()  # the emit loop reads this cache directly
        super().emit(value, indent, prefix)


def _uncached_dump(documents: list[Any]) -> str:
    parts = []
    for doc in documents:
        emitter = _Uncached()
        emitter.emit(doc, 0, "")
        parts.append("\n".join(emitter.out) + "\n")
    return "---\n".join(parts)


# few distinct values, so the same flow line and string come back in other types and places
_SCALARS = st.sampled_from(
    [True, False, 1, 0, 1.0, 0.0, -0.0, None, "", "a", "true", "1", "x" * 300, _Text("a")]
)
_KEYS = st.sampled_from(["a", "b", "on", "1", "k" * 1100])


def _values() -> Any:
    return st.recursive(
        _SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
        max_leaves=30,
    )


def test_cached_renders_write_what_the_uncached_writer_writes() -> None:
    @seed(20261130)
    @settings(max_examples=RUNS * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_values(), min_size=1, max_size=3))
    def check(documents: list[Any]) -> None:
        assert loaders.dump_yaml(documents) == _uncached_dump(documents)

    check()


def test_equal_flow_lines_of_other_types_are_written_apart() -> None:
    doc = {
        "a": {"x": True},
        "b": {"x": 1},
        "c": {"x": 1.0},
        "d": [True, 1],
        "e": [1, True],
        "f": {"x": _Text("y")},
        "g": {"x": "y"},
    }
    text = loaders.dump_yaml([doc])
    assert text == _uncached_dump([doc])
    lines = text.splitlines()
    assert 'a: {"x": true}' in lines and 'b: {"x": 1}' in lines
    assert "c:" in lines and "  x: 1.0" in lines  # floats are never flow lines
    assert "d: [true, 1]" in lines and "e: [1, true]" in lines
    assert "f:" in lines and 'g: {"x": "y"}' in lines


# -------------------------------------------------------------- check_plain_data, reference


def _reference_check(value: Any, *, kind: str, json_only: bool) -> str | None:
    """The obvious node-by-node walk (the rules as documented); the refusal's text or None."""
    limits = loaders.LIMITS[kind]
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.max_nodes:
            return "count"
        if isinstance(node, dict):
            for key in node:
                if json_only and not isinstance(key, str):
                    return "key type"
                if type(key) is str and loaders._SURROGATE.search(key):
                    return "key surrogate"
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            if json_only and not isinstance(node, (str, int, float, type(None))):
                return "not json"
            if type(node) is str and loaders._SURROGATE.search(node):
                return "surrogate"
            if type(node) is int and node.bit_length() > limits.max_int_digits * 3.33:
                return "big int"
            if type(node) is float and not math.isfinite(node):
                return "not finite"
            continue
        if depth > limits.max_depth:
            return "depth"
        stack.extend((child, depth + 1) for child in children)
    return None


class _Dict(dict):  # type: ignore[type-arg]
    pass


class _List(list):  # type: ignore[type-arg]
    pass


_ODD = st.sampled_from(
    [
        "a\ud800",
        "\udfff",
        10**45,
        -(10**41),
        2**133,
        2**134,
        float("nan"),
        float("inf"),
        b"bytes",
        (1, 2),
        frozenset({1}),
        _Text("t\ud800"),
        True,
        None,
        1.5,
        "ok",
        7,
    ]
)
_ANY_KEYS = st.sampled_from(["a", "b", "c", "a\ud800", 1, None, 2.5, True, ("t",), _Text("s")])


def _data() -> Any:
    return st.recursive(
        _ODD,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.lists(inner, max_size=3).map(_List)
            | st.dictionaries(_ANY_KEYS, inner, max_size=4)
            | st.dictionaries(_ANY_KEYS, inner, max_size=3).map(_Dict)
        ),
        max_leaves=25,
    )


@pytest.fixture
def tiny_limits() -> Any:
    loaders.LIMITS["tiny test"] = loaders.Limits(max_bytes=100, max_depth=3, max_nodes=12)
    yield "tiny test"
    del loaders.LIMITS["tiny test"]


@pytest.mark.parametrize("json_only", [False, True])
def test_check_plain_data_refuses_what_the_node_walk_refuses(
    json_only: bool, tiny_limits: str
) -> None:
    @seed(20261130)
    @settings(max_examples=RUNS * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_data())
    def check(value: Any) -> None:
        for kind in ("template", tiny_limits):
            expected = _reference_check(value, kind=kind, json_only=json_only)
            try:
                loaders.check_plain_data(
                    value, where="w", kind=kind, error=InputError, json_only=json_only
                )
                refused = None
            except InputError as exc:
                refused = exc.what
            assert (refused is None) == (expected is None), (expected, refused)

    check()


@pytest.mark.parametrize(
    ("depth", "refused"), [(99, False), (100, False), (101, True), (400, True)]
)
def test_check_plain_data_depth_bound_and_cycles(depth: int, refused: bool) -> None:
    value: dict[str, Any] = {}
    inner = value
    for _ in range(depth - 1):
        inner["k"] = {}
        inner = inner["k"]
    inner["leaf"] = "a scalar below the deepest mapping does not count"
    if refused:
        with pytest.raises(InputError, match="deeper than 100"):
            loaders.check_plain_data(value, where="w", kind="template", error=InputError)
    else:
        loaders.check_plain_data(value, where="w", kind="template", error=InputError)
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(InputError, match="deeper than"):
        loaders.check_plain_data(cycle, where="w", kind="template", error=InputError)
