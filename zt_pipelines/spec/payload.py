"""Read a GCPC launcher's ``--payload`` template: plain JSON text or KFP's Concat / IfPresent.

A payload is JSON text into which Vertex substitutes placeholders (``{{$.inputs.parameters['x']}}``,
``{{$.pipeline_root}}`` ...) as plain text. :func:`parse_payload` expands Concat and the IfPresent
branches a task takes, then parses the text with a small JSON parser that treats a placeholder
as an atomic value outside strings and as opaque text inside them. It refuses what it cannot
read exactly: duplicate keys (JSON parsers keep the last), placeholders in keys, unknown
placeholder forms, malformed JSON. What it returns tells the rewrite where every placeholder
sits (JSON path, quoted or raw) and where each object opens, so an identity can be pinned into
exactly one field (:func:`insert_field`) and nothing else changes.

Pure; no IO.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ParsedPayload",
    "PayloadError",
    "Raw",
    "Slot",
    "field_at",
    "insert_field",
    "keys_named",
    "parse_payload",
]

Path = tuple[str | int, ...]
_PLACEHOLDER = re.compile(r"\{\{\$[^{}]*\}\}")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MAX_VARIANT_DEPTH = 32
_MAX_NESTING = 64


class PayloadError(ValueError):
    """The payload cannot be read exactly; the message says why."""


@dataclass(frozen=True)
class Raw:
    """A placeholder standing where a JSON value goes (unquoted)."""

    placeholder: str


@dataclass(frozen=True)
class Slot:
    """One placeholder occurrence in the payload.

    Attributes:
        placeholder: its text (``{{$.inputs.parameters['x']}}``).
        quoted: inside a JSON string (Vertex pastes the value between the quotes).
        path: the JSON path of the value holding it.
        whole: the value is exactly this placeholder (``"{{...}}"`` or a raw ``{{...}}``).
    """

    placeholder: str
    quoted: bool
    path: Path
    whole: bool


@dataclass(frozen=True)
class ParsedPayload:
    """A payload as the task will send it, placeholders left in place.

    Attributes:
        text: the expanded template text (IfPresent branches resolved for the task).
        tree: the parsed JSON; raw placeholders are :class:`Raw`, quoted ones stay text.
        slots: every placeholder occurrence.
        object_starts: the offset in ``text`` of the ``{`` opening each object, by path.
        concat: the Concat structure (``None`` for a plain payload).
        offsets: for a Concat payload, ``(address, start)`` of each literal part in ``text``.
    """

    text: str
    tree: Any
    slots: tuple[Slot, ...]
    object_starts: Mapping[Path, int]
    concat: Any = None
    offsets: tuple[tuple[tuple[int | str, ...], int, int], ...] = field(default=())


def parse_payload(payload: str, present: Callable[[str], bool]) -> ParsedPayload:
    """Parse a launcher payload; ``present(name)`` says whether the task provides input ``name``.

    Raises:
        PayloadError: anything the payload holds that cannot be read exactly.
    """
    concat: Any = None
    offsets: list[tuple[tuple[int | str, ...], int, int]] = []
    if payload.lstrip().startswith('{"Concat"'):
        try:
            concat = json.loads(payload, object_pairs_hook=_unique)
        except (ValueError, RecursionError) as exc:
            raise PayloadError(f"the Concat payload is not JSON ({exc})") from None
        if not isinstance(concat, dict) or set(concat) != {"Concat"}:
            raise PayloadError("the payload mixes Concat with other keys")
        parts: list[str] = []
        _expand(concat, (), present, parts, offsets, 0)
        text = "".join(parts)
    else:
        text = payload
    parser = _Parser(text)
    tree = parser.document()
    return ParsedPayload(
        text=text,
        tree=tree,
        slots=tuple(parser.slots),
        object_starts=dict(parser.starts),
        concat=concat,
        offsets=tuple(offsets),
    )


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _expand(
    node: Any,
    address: tuple[int | str, ...],
    present: Callable[[str], bool],
    parts: list[str],
    offsets: list[tuple[tuple[int | str, ...], int, int]],
    depth: int,
) -> None:
    if depth > _MAX_VARIANT_DEPTH:
        raise PayloadError("Concat/IfPresent nest too deeply")
    if isinstance(node, str):
        start = sum(len(p) for p in parts)
        offsets.append((address, start, len(node)))
        parts.append(node)
        return
    if isinstance(node, dict) and set(node) == {"Concat"} and isinstance(node["Concat"], list):
        for index, child in enumerate(node["Concat"]):
            _expand(child, (*address, "Concat", index), present, parts, offsets, depth + 1)
        return
    if isinstance(node, dict) and set(node) == {"IfPresent"}:
        spec = node["IfPresent"]
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("InputName"), str)
            or set(spec) - {"InputName", "Then", "Else"}
        ):
            raise PayloadError("an IfPresent in the payload is malformed")
        branch = "Then" if present(spec["InputName"]) else "Else"
        if branch in spec:
            _expand(
                spec[branch],
                (*address, "IfPresent", branch),
                present,
                parts,
                offsets,
                depth + 1,
            )
        return
    raise PayloadError(f"the payload holds a {type(node).__name__} zt-pipelines cannot read")


class _Parser:
    """JSON with placeholders: raw ones are values, quoted ones opaque text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.slots: list[Slot] = []
        self.starts: dict[Path, int] = {}

    def fail(self, what: str) -> PayloadError:
        return PayloadError(f"{what} at offset {self.i} of the payload")

    def ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t\r\n":
            self.i += 1

    def document(self) -> Any:
        value = self.value((), 0)
        self.ws()
        if self.i != len(self.text):
            raise self.fail("text after the JSON value")
        return value

    def value(self, path: Path, depth: int) -> Any:
        if depth > _MAX_NESTING:
            raise self.fail("the payload nests too deeply")
        self.ws()
        text, i = self.text, self.i
        if text.startswith("{{", i):
            match = _PLACEHOLDER.match(text, i)
            if match is None:
                raise self.fail("an unknown placeholder")
            self.slots.append(Slot(match.group(0), quoted=False, path=path, whole=True))
            self.i = match.end()
            return Raw(match.group(0))
        if text.startswith("{", i):
            return self.obj(path, depth)
        if text.startswith("[", i):
            self.i += 1
            items: list[Any] = []
            self.ws()
            if self.text.startswith("]", self.i):
                self.i += 1
                return items
            while True:
                items.append(self.value((*path, len(items)), depth + 1))
                self.ws()
                if self.text.startswith(",", self.i):
                    self.i += 1
                elif self.text.startswith("]", self.i):
                    self.i += 1
                    return items
                else:
                    raise self.fail("expected , or ]")
        if text.startswith('"', i):
            return self.string(path, key=False)
        for literal, result in (("true", True), ("false", False), ("null", None)):
            if text.startswith(literal, i):
                self.i += len(literal)
                return result
        match = _NUMBER.match(text, i)
        if match is None:
            raise self.fail("expected a JSON value")
        self.i = match.end()
        return json.loads(match.group(0))

    def obj(self, path: Path, depth: int) -> dict[str, Any]:
        self.starts[path] = self.i
        self.i += 1
        out: dict[str, Any] = {}
        self.ws()
        if self.text.startswith("}", self.i):
            self.i += 1
            return out
        while True:
            self.ws()
            if not self.text.startswith('"', self.i):
                raise self.fail("expected a key")
            key = self.string(path, key=True)
            if key in out:
                raise self.fail(f"duplicate key {key!r}")
            self.ws()
            if not self.text.startswith(":", self.i):
                raise self.fail("expected :")
            self.i += 1
            out[key] = self.value((*path, key), depth + 1)
            self.ws()
            if self.text.startswith(",", self.i):
                self.i += 1
            elif self.text.startswith("}", self.i):
                self.i += 1
                return out
            else:
                raise self.fail("expected , or }")

    def string(self, path: Path, *, key: bool) -> str:
        start = self.i
        self.i += 1
        text = self.text
        found: list[str] = []
        while True:
            if self.i >= len(text):
                raise self.fail("an unterminated string")
            char = text[self.i]
            if char == '"':
                break
            if char == "\\":
                if self.i + 1 >= len(text) or text[self.i + 1] not in '"\\/bfnrtu':
                    raise self.fail("a bad escape")
                self.i += 6 if text[self.i + 1] == "u" else 2
                continue
            if text.startswith("{{", self.i):
                match = _PLACEHOLDER.match(text, self.i)
                if match is None:
                    raise self.fail("an unknown placeholder")
                if key:
                    raise self.fail("a placeholder in a key")
                found.append(match.group(0))
                self.i = match.end()
                continue
            self.i += 1
        raw = text[start : self.i + 1]
        self.i += 1
        try:  # GCPC's launchers parse with strict=False: control characters are text
            value: str = json.loads(raw, strict=False)
        except ValueError:
            raise self.fail("a bad string") from None
        whole = len(found) == 1 and raw == f'"{found[0]}"'
        self.slots.extend(Slot(p, quoted=True, path=path, whole=whole) for p in found)
        return value


def keys_named(tree: Any, pattern: re.Pattern[str]) -> list[Path]:
    """Paths of every object key matching ``pattern`` anywhere in ``tree``."""
    out: list[Path] = []
    stack: list[tuple[Path, Any]] = [((), tree)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            out += [(*path, k) for k in node if pattern.search(k)]
            stack += [((*path, k), v) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [((*path, i), v) for i, v in enumerate(node)]
    return sorted(out, key=repr)


_MISSING = object()


def field_at(tree: Any, path: Path) -> Any:
    """The value at ``path`` (a :class:`Raw`, text, ...) or ``None`` when absent."""
    node = tree
    for step in path:
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        else:
            return None
    return node


def insert_field(payload: str, parsed: ParsedPayload, parent: Path, key: str, value: str) -> str:
    """``payload`` with ``"key": "value"`` added as the first member of the object at ``parent``.

    Only that text is added; everything else stays byte for byte (a Concat payload is
    re-serialised the way KFP wrote it, which is checked first).

    Raises:
        PayloadError: the object is absent, opens inside an IfPresent branch, or the Concat
            payload was not written the way KFP writes it.
    """
    start = parsed.object_starts.get(parent)
    if start is None:
        raise PayloadError(f"the payload has no object {'.'.join(map(str, parent)) or 'root'}")
    body = parsed.text[start + 1 :].lstrip(" \t\r\n")
    member = json.dumps(key) + ": " + json.dumps(value) + ("" if body.startswith("}") else ", ")
    if parsed.concat is None:
        return payload[: start + 1] + member + payload[start + 1 :]
    if json.dumps(parsed.concat) != payload:
        raise PayloadError("the Concat payload is not in the form KFP writes")
    for address, offset, length in parsed.offsets:
        if offset <= start < offset + length:
            if "IfPresent" in address:
                raise PayloadError("the object opens inside an IfPresent branch")
            concat = json.loads(payload)
            node: Any = concat
            for step in address[:-1]:
                node = node[step]
            text = node[address[-1]]
            at = start - offset + 1
            node[address[-1]] = text[:at] + member + text[at:]
            return json.dumps(concat)
    raise PayloadError("the object's opening brace is not in a literal part")
