"""One strict, bounded loader for every file kind zt-pipelines reads.

Templates, manifests, policy files (YAML/JSON and ``[tool.zt-pipelines]`` in pyproject.toml),
snapshots and role catalogues (YAML/JSON, ``.gz`` allowed), audit lines and ``--param`` values
all come through here, so one set of rules holds everywhere:

* **bounded read**: only regular files (a FIFO, ``/dev/zero`` or a directory is refused before
  reading), at most :attr:`Limits.max_bytes` (checked on the size first, then while reading;
  a gzip file is decompressed up to the same bound, so a gzip bomb stops at the limit);
* **text**: UTF-8 only (a UTF-16/32 byte-order mark or a NUL byte is a typed error);
* **structure**: duplicate mapping keys, YAML anchors/aliases/merge keys, YAML tags other than
  the JSON types (``!!binary``, ``!!timestamp``, ``!!set``, ``!!omap`` ...), non-string keys,
  non-finite numbers, integers longer than :attr:`Limits.max_int_digits`, nesting deeper than
  :attr:`Limits.max_depth` and more than :attr:`Limits.max_nodes` values are refused;
* **plain YAML dates stay text**: ``expires: 2026-12-31`` loads as the string ``"2026-12-31"``
  (YAML 1.2 has no timestamp type; an explicit ``!!timestamp`` tag is refused).

YAML is parsed by libyaml's C parser (PyYAML's ``CParser``) into events, and the values are
built here from the events in one loop without recursion: depth, aliases and duplicates are
refused as they are met, before anything is expanded. Every error is the caller's
:class:`~zt_pipelines.errors.InputError` subclass naming the file, line and column.

:func:`dump_yaml` is the inverse for JSON-shaped data (what templates hold): block YAML whose
strings are plain only when that cannot change their type, otherwise double-quoted.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml import events as _ev

from zt_pipelines.errors import InputError

__all__ = [
    "LIMITS",
    "Limits",
    "check_plain_data",
    "dump_yaml",
    "load_file",
    "parse_json",
    "parse_param_value",
    "parse_text",
    "parse_toml",
    "parse_yaml",
    "read_bytes",
    "read_text",
]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The bounds one file kind is read under (see docs/threat-model.md)."""

    max_bytes: int
    max_depth: int = 64
    max_nodes: int = 2_000_000
    max_int_digits: int = 40


#: the limits of each file kind; the keys are the ``kind`` arguments below.
LIMITS: dict[str, Limits] = {
    "template": Limits(max_bytes=32 * MiB, max_depth=100, max_nodes=4_000_000),
    "manifest": Limits(max_bytes=4 * MiB),
    "policy": Limits(max_bytes=1 * MiB),
    "pyproject": Limits(max_bytes=4 * MiB),
    "snapshot": Limits(max_bytes=128 * MiB, max_nodes=16_000_000),
    "catalogue": Limits(max_bytes=64 * MiB, max_nodes=8_000_000),
    "audit line": Limits(max_bytes=1 * MiB),
    "param": Limits(max_bytes=1 * MiB, max_depth=100),
}

_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _limits(kind: str) -> Limits:
    return LIMITS[kind]


def _fail(error: type[InputError], what: str, where: str, fix: str | None = None) -> NoReturn:
    raise error(what, where=where, fix=fix)


# ------------------------------------------------------------------------------- reading


def read_bytes(path: str | os.PathLike[str], *, kind: str, error: type[InputError]) -> bytes:
    """The bytes of a regular file, at most ``LIMITS[kind].max_bytes`` (``.gz``: decompressed).

    Raises:
        error: the file does not exist, is not a regular file (FIFO, device, directory),
            cannot be read, is larger than the limit, or is a broken gzip stream.
    """
    p = Path(path)
    where = str(p)
    limit = _limits(kind).max_bytes
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        _fail(error, f"file {where!r} does not exist", where)
    except OSError as exc:
        _fail(error, f"cannot read the file ({exc.strerror or exc})", where)
    except (ValueError, UnicodeError):  # a NUL byte, or a lone surrogate no file name holds
        _fail(error, f"{where!r} is not a file path (it holds a character no file name can)", where)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            _fail(
                error,
                "not a regular file (a directory, FIFO, socket or device is not read)",
                where,
                fix="pass a file path",
            )
        gz = p.name.endswith(".gz")
        if not gz and info.st_size > limit:
            _fail(error, _too_big(kind, limit), where)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(limit + 1)
            if gz:
                return _gunzip(fh, raw, limit, kind, error, where)
        if len(raw) > limit:  # grew while we read
            _fail(error, _too_big(kind, limit), where)
        return raw
    except OSError as exc:
        _fail(error, f"cannot read the file ({exc.strerror or exc})", where)
    finally:
        os.close(fd)


def _gunzip(
    fh: Any, first: bytes, limit: int, kind: str, error: type[InputError], where: str
) -> bytes:
    """Decompress a gzip stream (possibly several members) to at most ``limit`` bytes."""
    out = bytearray()
    pending = first
    decomp = zlib.decompressobj(wbits=31)
    compressed = len(first)
    try:
        while True:
            while pending:
                out += decomp.decompress(pending, limit + 1 - len(out))
                if len(out) > limit:
                    _fail(error, _too_big(kind, limit, decompressed=True), where)
                if decomp.unconsumed_tail:
                    pending = decomp.unconsumed_tail
                    continue
                if decomp.eof and decomp.unused_data:  # the next gzip member
                    pending = decomp.unused_data
                    decomp = zlib.decompressobj(wbits=31)
                    continue
                pending = b""
            if compressed > limit:
                _fail(error, _too_big(kind, limit), where)
            pending = fh.read(1024 * 1024)
            compressed += len(pending)
            if not pending:
                break
    except zlib.error as exc:
        _fail(error, f"not a valid gzip file ({exc})", where)
    if not decomp.eof:
        _fail(error, "not a valid gzip file (truncated)", where)
    return bytes(out)


def _too_big(kind: str, limit: int, *, decompressed: bool = False) -> str:
    what = "decompresses to more than" if decompressed else "is larger than"
    return f"the {kind} file {what} the {limit // MiB} MiB limit"


def decode(raw: bytes, *, where: str, error: type[InputError]) -> str:
    """UTF-8 text of ``raw``; a UTF-8 byte-order mark is dropped, anything else is refused.

    Raises:
        error: UTF-16/32, a NUL byte, or invalid UTF-8 (naming the byte offset).
    """
    for bom, name in _BOMS:
        if raw.startswith(bom):
            _fail(error, f"the file is {name}, not UTF-8", where, fix="save it as UTF-8")
    nul = raw.find(b"\x00")
    if nul >= 0:
        _fail(
            error,
            f"the file holds a NUL byte at offset {nul} (UTF-16? binary?)",
            where,
            fix="save it as UTF-8 text",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(error, f"not UTF-8 text (byte offset {exc.start})", where, fix="save it as UTF-8")
    return text.removeprefix("\ufeff")


def read_text(path: str | os.PathLike[str], *, kind: str, error: type[InputError]) -> str:
    """:func:`read_bytes` then :func:`decode`."""
    return decode(read_bytes(path, kind=kind, error=error), where=str(path), error=error)


# ---------------------------------------------------------------------------------- JSON


class _Refused(Exception):
    """Raised inside json hooks; turned into the caller's error with the position."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r}")
            seen.add(key)
    return out


def _json_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number JSON allows")


def _int_parser(limits: Limits) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if len(text.lstrip("-")) > limits.max_int_digits:
            raise _Refused(f"an integer of {len(text)} digits (more than {limits.max_int_digits})")
        return int(text)

    return parse


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:40]!r} is not a finite number")
    return value


def parse_json(text: str, *, where: str, kind: str, error: type[InputError]) -> Any:
    """Parse one JSON document strictly (see the module doc).

    Raises:
        error: naming ``where``, line and column.
    """
    limits = _limits(kind)
    _check_size(text, limits, kind, where, error)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_json_constant,
            parse_int=_int_parser(limits),
            parse_float=_float,
        )
    except json.JSONDecodeError as exc:
        _fail(error, f"malformed JSON: {exc.msg}", f"{where}: line {exc.lineno} column {exc.colno}")
    except _Refused as exc:
        _fail(error, f"refused JSON: {exc.what}", where)
    except RecursionError:
        _fail(error, f"nested deeper than {limits.max_depth} levels", where)
    except ValueError as exc:  # e.g. int() limits of the interpreter
        _fail(error, f"refused JSON: {exc}", where)
    check_plain_data(value, where=where, kind=kind, error=error)
    return value


def check_plain_data(
    value: Any, *, where: str, kind: str, error: type[InputError], json_only: bool = False
) -> None:
    """Refuse data nested deeper than the kind's limit, holding more values than it allows,
    integers beyond the digit limit or non-finite floats (TOML and Python-built data).
    ``json_only``: also refuse what is not JSON data — a mapping key that is not text, a value
    that is not text, a number, a boolean, ``None``, a list or a mapping (bytes, dates, sets:
    aiplatform cannot send them as a protobuf ``Struct``).

    Works without recursion, so it is safe on any input (also dicts built in Python).
    """
    limits = _limits(kind)
    max_bits = limits.max_int_digits * 3.33

    def scalar(node: Any) -> None:  # one value that is neither a mapping nor a list
        if json_only and not isinstance(node, (str, int, float, type(None))):
            shown = _shown(repr(node)[:40])
            _fail(error, f"{shown} ({type(node).__name__}) is not JSON data", where)
        if type(node) is str and _SURROGATE.search(node):
            # a lone UTF-16 surrogate (JSON "\ud800", a Python string): no API can send it
            _fail(error, f"the text {_shown(node)} is not valid Unicode text", where)
        if type(node) is int and node.bit_length() > max_bits:
            _fail(error, f"an integer longer than {limits.max_int_digits} digits", where)
        if type(node) is float and not math.isfinite(node):
            _fail(error, f"{node!r} is not a finite number", where)

    if not isinstance(value, (dict, list)):
        scalar(value)
        return
    # level by level (the containers at one depth): a container's children are sorted by
    # type in C, and the texts of a level are searched for surrogates in one pass
    level: list[Any] = [value]
    depth, count = 1, 1
    while level:
        if depth > limits.max_depth:
            _fail(error, f"nested deeper than {limits.max_depth} levels", where)
        below: list[Any] = []
        keys: list[str] = []
        texts: list[str] = []
        for node in level:
            if isinstance(node, dict):
                key_types = set(map(type, node))
                if key_types == _TEXT_ONLY:
                    keys += node
                elif key_types:
                    for key in node:
                        if json_only and not isinstance(key, str):
                            _fail(error, f"the mapping key {_shown(repr(key))} is not text", where)
                        if type(key) is str:
                            keys.append(key)
                children: list[Any] = list(node.values())
            else:
                children = node
            count += len(children)
            if count > limits.max_nodes:
                _fail(error, f"more than {limits.max_nodes} values", where)
            types = set(map(type, children))
            if types == _TEXT_ONLY:
                texts += children
                continue
            if str in types:
                texts += [c for c in children if type(c) is str]
            if not types <= _PLAIN_TYPES:  # containers, numbers or anything else
                for child in children:
                    if isinstance(child, (dict, list)):
                        below.append(child)
                    elif type(child) is not str:
                        scalar(child)
        if _SURROGATE.search("".join(keys)):
            key = next(k for k in keys if _SURROGATE.search(k))
            _fail(error, f"the key {_shown(key)} is not valid Unicode text", where)
        if _SURROGATE.search("".join(texts)):
            scalar(next(t for t in texts if _SURROGATE.search(t)))
        level = below
        depth += 1


_TEXT_ONLY = {str}
_PLAIN_TYPES = {str, bool, type(None)}  # values that need no check beyond surrogates


#: lone UTF-16 surrogates: JSON escapes and Python strings can hold them, UTF-8 cannot
_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(text: str) -> str:
    """``text`` as a short, printable literal for an error message."""
    return ascii(text[:40] + ("…" if len(text) > 40 else ""))


def _check_size(
    text: str | bytes, limits: Limits, kind: str, where: str, error: type[InputError]
) -> None:
    if len(text) > limits.max_bytes:
        _fail(error, _too_big(kind, limits.max_bytes), where)


# ---------------------------------------------------------------------------------- YAML

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})

# PyYAML's YAML 1.1 implicit resolvers for the JSON types only (no timestamp, merge, value):
# a plain scalar the resolver does not type is a string.
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _first, _resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items():
    kept = [(tag, rx) for tag, rx in _resolvers if tag in _SCALAR_TAGS]
    if kept:
        _IMPLICIT[_first or ""] = kept
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
# first characters of plain scalars that need the resolver (or are refused: ``<<``, empty)
_SLOW_FIRST = frozenset(_IMPLICIT) | {"<", ""}


class _YamlRefused(Exception):
    def __init__(self, what: str, mark: Any) -> None:
        super().__init__(what)
        self.what = what
        self.mark = mark


def _resolve_plain(value: str) -> str:
    """The tag PyYAML's SafeLoader gives a plain scalar, among the JSON types."""
    for tag, rx in _IMPLICIT.get(value[:1], ()):
        if rx.match(value):
            return tag
    return _STR


def _typed(tag: str, value: str, limits: Limits, mark: Any) -> Any:
    if tag == _STR:
        return value
    node = yaml.ScalarNode(tag, value)
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return _CONSTRUCTOR.construct_yaml_bool(node)
    if tag == _INT:
        if len(value) > limits.max_int_digits:
            raise _YamlRefused(
                f"an integer of {len(value)} characters (more than {limits.max_int_digits})",
                mark,
            )
        try:
            return _CONSTRUCTOR.construct_yaml_int(node)
        except ValueError:
            raise _YamlRefused(f"{value[:40]!r} is not an integer", mark) from None
    # float
    if len(value) > 400:
        raise _YamlRefused(f"a number of {len(value)} characters", mark)
    try:
        number = _CONSTRUCTOR.construct_yaml_float(node)
    except ValueError:
        raise _YamlRefused(f"{value[:40]!r} is not a number", mark) from None
    if not math.isfinite(number):
        raise _YamlRefused(f"{value[:40]!r} is not a finite number", mark)
    return number


def _scalar(event: Any, limits: Limits, key: bool) -> Any:
    tag = event.tag
    value: str = event.value
    if tag is None or tag == "!":
        if not event.implicit[0]:  # quoted
            return value
        if value == "<<":
            raise _YamlRefused("YAML merge keys (<<) are not accepted", event.start_mark)
        if key:  # plain keys are text as written (YAML 1.1 would make `on:` a boolean)
            return value
        tag = _resolve_plain(value)
        if tag == _NULL and value == "":
            return None
    elif tag not in _SCALAR_TAGS:
        raise _YamlRefused(f"the YAML tag {tag!r} is not accepted", event.start_mark)
    elif tag != _STR and _resolve_plain(value) != tag and not (tag == _NULL and value == ""):
        kind = tag.rsplit(":", 1)[-1]
        raise _YamlRefused(f"{value[:40]!r} is not a valid {kind}", event.start_mark)
    if key and tag != _STR:
        raise _YamlRefused(f"a mapping key tagged {tag!r} is not a string", event.start_mark)
    return _typed(tag, value, limits, event.start_mark)


_NOKEY = object()


def _yaml_documents(text: str, limits: Limits) -> list[Any]:
    """Build every document of ``text`` from libyaml events (iteratively, strictly)."""
    from yaml._yaml import CParser  # type: ignore[import-not-found]

    parser = CParser(text)
    documents: list[Any] = []
    # the open container (None at the top), whether it is a list, and a mapping's pending
    # key; the enclosing ones wait on the stack (their pending key is always consumed)
    container: Any = None
    is_list = False
    key: Any = _NOKEY
    stack: list[tuple[Any, bool]] = []
    root: Any = _NOKEY
    count = 0
    max_nodes = limits.max_nodes
    max_depth = limits.max_depth
    scalar_cls = _ev.ScalarEvent
    mapping_start = _ev.MappingStartEvent
    sequence_start = _ev.SequenceStartEvent
    slow_first = _SLOW_FIRST
    plain: dict[str, Any] = {}  # plain scalar text -> its value (typed like PyYAML's)
    get_event = parser.get_event
    try:
        while True:
            event: Any = get_event()
            cls = type(event)
            count += 1
            if count > max_nodes:
                raise _YamlRefused(f"more than {max_nodes} values", event.start_mark)
            if cls is scalar_cls:
                if event.anchor is not None:
                    raise _YamlRefused(
                        "YAML anchors and aliases (&x / *x) are not accepted", event.start_mark
                    )
                value = event.value
                # slow path: tagged, or plain with a first character a resolver may type
                if event.tag is not None or (event.implicit[0] and value[:1] in slow_first):
                    is_key = not is_list and key is _NOKEY and container is not None
                    if event.tag is not None:
                        value = _scalar(event, limits, is_key)
                    elif is_key:  # a plain key is text as written; "<<" is refused there
                        if value == "<<":
                            _scalar(event, limits, is_key)
                    else:  # a plain value: typed by its text alone (once per text)
                        typed = plain.get(value, _NOKEY)
                        if typed is _NOKEY:
                            typed = plain[value] = _scalar(event, limits, False)
                        value = typed
                if is_list:
                    container.append(value)
                elif container is None:
                    root = value
                elif key is _NOKEY:
                    if value in container:
                        raise _YamlRefused(f"duplicate key {value!r}", event.start_mark)
                    key = value
                else:
                    container[key] = value
                    key = _NOKEY
                continue
            if cls is mapping_start or cls is sequence_start:
                if event.anchor is not None:
                    raise _YamlRefused(
                        "YAML anchors and aliases (&x / *x) are not accepted", event.start_mark
                    )
                is_map = cls is mapping_start
                if event.tag not in (None, "!", _MAP if is_map else _SEQ):
                    raise _YamlRefused(
                        f"the YAML tag {event.tag!r} is not accepted", event.start_mark
                    )
                new: Any = {} if is_map else []
                if is_list:
                    container.append(new)
                elif container is None:
                    root = new
                elif key is _NOKEY:
                    raise _YamlRefused(
                        "a mapping key must be a string, not a mapping or a list",
                        event.start_mark,
                    )
                else:
                    container[key] = new
                    key = _NOKEY
                if len(stack) >= max_depth:
                    raise _YamlRefused(f"nested deeper than {max_depth} levels", event.start_mark)
                stack.append((container, is_list))
                container = new
                is_list = not is_map
                continue
            if cls is _ev.MappingEndEvent or cls is _ev.SequenceEndEvent:
                container, is_list = stack.pop()
                continue
            if cls is _ev.AliasEvent:
                raise _YamlRefused(
                    "YAML anchors and aliases (&x / *x) are not accepted", event.start_mark
                )
            if cls is _ev.DocumentEndEvent:
                documents.append(None if root is _NOKEY else root)
                root = _NOKEY
                continue
            if cls is _ev.StreamEndEvent:
                return documents
    finally:
        parser.dispose()


def parse_yaml(text: str, *, where: str, kind: str, error: type[InputError]) -> list[Any]:
    """Every document of a YAML text, strictly (see the module doc); empty documents are None.

    Raises:
        error: naming ``where``, line and column.
    """
    limits = _limits(kind)
    _check_size(text, limits, kind, where, error)
    try:
        return _yaml_documents(text, limits)
    except _YamlRefused as exc:
        _fail(error, exc.what, _at(where, exc.mark))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        _fail(error, f"malformed YAML: {problem}", _at(where, mark))
    except (RecursionError, MemoryError, ValueError) as exc:  # pragma: no cover - defensive
        _fail(error, f"malformed YAML ({type(exc).__name__})", where)


def _at(where: str, mark: Any) -> str:
    return f"{where}: line {mark.line + 1} column {mark.column + 1}" if mark else where


def parse_text(
    text: str, *, where: str, kind: str, error: type[InputError], fmt: str = "auto"
) -> list[Any]:
    """Documents of a YAML or JSON text. ``fmt="json"`` is JSON only; ``"auto"`` tries JSON
    first when the text starts with ``{`` (JSON is YAML, but libyaml refuses some valid JSON
    such as tab indentation), then YAML."""
    if fmt == "json":
        return [parse_json(text, where=where, kind=kind, error=error)]
    if fmt == "auto" and text.lstrip(" \t\r\n").startswith("{"):
        _check_size(text, _limits(kind), kind, where, error)
        try:
            return [parse_json(text, where=where, kind=kind, error=error)]
        except error as exc:
            if not exc.what.startswith("malformed JSON"):
                raise  # a duplicate key, a depth or number bound: the same in YAML
    return parse_yaml(text, where=where, kind=kind, error=error)


_PYTHON_FIX = {
    "manifest": "write the declarations as YAML keyed by task (docs/declarations.md), or "
    "declare them in the pipeline's Python with @zt.step / zt.step.on",
    "policy": "write the rules in zt-policy.yaml (docs/policy-file.md)",
    "snapshot": "take a snapshot with `zt-pipelines snapshot` (docs/snapshot.md)",
}


def load_file(path: str | os.PathLike[str], *, kind: str, error: type[InputError]) -> list[Any]:
    """Read and parse a file: ``.json``/``.json.gz`` as JSON, anything else as YAML/JSON.

    Raises:
        error: unreadable, too large, malformed, or Python source (named, with the fix).
    """
    name = Path(path).name.removesuffix(".gz")
    if name.endswith(".py"):  # a YAML error about line 6 of a script helps nobody
        raise error(
            f"this is Python source, not a {kind} file (YAML or JSON)",
            where=str(path),
            fix=_PYTHON_FIX.get(kind, f"pass the {kind} file itself"),
        )
    text = read_text(path, kind=kind, error=error)
    fmt = "json" if name.endswith(".json") else "auto"
    return parse_text(text, where=str(path), kind=kind, error=error, fmt=fmt)


# ---------------------------------------------------------------------------------- TOML


def parse_toml(raw: bytes, *, where: str, kind: str, error: type[InputError]) -> dict[str, Any]:
    """A TOML document (pyproject.toml), bounded like the other kinds.

    Raises:
        error: not UTF-8, not TOML, too deep, or too large.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found]

    limits = _limits(kind)
    _check_size(raw, limits, kind, where, error)
    text = decode(raw, where=where, error=error)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        _fail(error, f"not valid TOML: {exc}", where)
    except RecursionError:
        _fail(error, f"nested deeper than {limits.max_depth} levels", where)
    except ValueError as exc:  # e.g. an integer beyond the interpreter's digit limit
        _fail(error, f"not valid TOML: {exc}", where)
    check_plain_data(data, where=where, kind=kind, error=error)
    return dict(data)


# ------------------------------------------------------------------------------ --param


def parse_param_value(raw: str, *, where: str, error: type[InputError]) -> Any:
    """A ``--param`` VALUE: JSON when it parses as JSON (strictly), else the text itself.

    Text that is not JSON stays text (``--param msg=[wip] run``); JSON the strict parser
    refuses (duplicate keys, depth, huge integers, NaN) is an error, never silently a string.
    """
    limits = _limits("param")
    _check_size(raw, limits, "param", where, error)
    if _SURROGATE.search(raw):  # a non-UTF-8 byte of argv (PEP 383): no API can send it
        _fail(error, f"the text {_shown(raw)} is not valid Unicode text", where)
    try:
        return parse_json(raw, where=where, kind="param", error=error)
    except InputError as exc:
        if exc.what.startswith("malformed JSON"):
            return raw
        raise


# --------------------------------------------------------------------------------- dump

_PLAIN_SAFE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+-]*\Z")
# what libyaml reads as a line break or refuses inside a double-quoted scalar
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


# json.dumps(x, ensure_ascii=False) / json.dumps(x, sort_keys=True, ensure_ascii=False), without
# building an encoder per call
_JSON_STRING: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
_JSON_SORTED = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


def _quote(text: str) -> str:
    out = _JSON_STRING(text)
    if _YAML_UNSAFE.search(out):
        out = _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)
    return out


def _key(text: str) -> str:
    if _PLAIN_SAFE.match(text) and _resolve_plain(text) == _STR:
        return text
    return _quote(text)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        if _PLAIN_SAFE.match(value) and _resolve_plain(value) == _STR:
            return value
        return _quote(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "." not in text and "e" in text:  # YAML 1.1 floats need a dot: 1e-05 -> 1.0e-05
            text = text.replace("e", ".0e", 1)
        return text
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


_FLOW_SCALARS = (str, int, bool, type(None))


def _flow(value: dict[str, Any] | list[Any]) -> str | None:
    """A small collection of plain scalars as one JSON flow line (JSON is YAML), else None.

    Floats are left to the block writer (JSON's ``1e-05`` is a string to a YAML 1.1 reader).
    """
    if len(value) > 16:
        return None
    items = value.values() if type(value) is dict else value
    for item in items:
        if type(item) not in _FLOW_SCALARS or (type(item) is str and len(item) > 200):
            return None
    if type(value) is dict and any(type(k) is not str or len(k) > 200 for k in value):
        return None
    text = _JSON_SORTED(value)
    if _YAML_UNSAFE.search(text):
        text = _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


class _Emitter:
    """Writes block YAML lines; renders of keys, short strings and flow lines are cached per
    dump (a rewritten template repeats the same small mappings in every step)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.keys: dict[str, str] = {}
        self.strings: dict[str, str] = {}
        self.flows: dict[tuple[Any, ...], str | None] = {}

    def flow(self, value: dict[str, Any] | list[Any]) -> str | None:
        """:func:`_flow`, cached by content: the cache key holds every key and value and their
        types (``True == 1`` and ``1 == 1.0`` in Python, not in YAML): equal keys, equal text."""
        if len(value) > 16:
            return None
        if type(value) is dict:
            values = tuple(value.values())
            types = tuple(map(type, values))
            if dict in types or list in types:  # never a flow line (and not hashable)
                return None
            names = tuple(value)
            key: tuple[Any, ...] = (names, values, types, tuple(map(type, names)))
        else:
            types = tuple(map(type, value))
            if dict in types or list in types:
                return None
            key = (tuple(value), types)
        try:
            text = self.flows.get(key, _NOKEY)
        except TypeError:  # another unhashable item (a set ...): never a flow line either
            return None
        if text is _NOKEY:
            text = self.flows[key] = _flow(value)
        return text  # type: ignore[return-value]

    def key(self, key: Any) -> str:
        """``key:``, or ``?key`` for a key longer than libyaml reads as an implicit key (1024
        characters): it is written in the explicit ``? key`` form."""
        text = self.keys.get(key)
        if text is None:
            if type(key) is not str:
                raise TypeError(f"cannot write a {type(key).__name__} mapping key as YAML")
            text = _key(key)
            text = self.keys[key] = f"?{text}" if len(text) > 1000 else f"{text}:"
        return text

    def scalar(self, value: Any) -> str:
        kind = type(value)
        if kind is str:
            text = self.strings.get(value)
            if text is None:
                text = _scalar_text(value)
                if len(value) < 65536:
                    self.strings[value] = text
            return text
        if kind is dict:
            return "{}"
        if kind is list:
            return "[]"
        return _scalar_text(value)

    def emit(self, value: Any, indent: int, prefix: str) -> None:
        """Append the lines of ``value`` at ``indent``; ``prefix`` starts its first line."""
        out = self.out
        keys = self.keys
        strings = self.strings
        pad = " " * indent
        if type(value) is dict and value:
            inner = indent + 2
            inner_pad = " " * inner
            lead = prefix
            for key in sorted(value):
                written = keys.get(key) or self.key(key)  # "key:"
                if written[0] == "?":  # a rendered key never starts so: a long one
                    out.append(f"{lead}? {written[1:]}")
                    lead, written = pad, ":"
                child = value[key]
                kind = type(child)
                if kind is str:
                    out.append(f"{lead}{written} {strings.get(child) or self.scalar(child)}")
                elif (kind is dict or kind is list) and child:
                    flow = self.flow(child)
                    if flow is None:
                        out.append(lead + written)
                        self.emit(child, inner, inner_pad)
                    else:
                        out.append(f"{lead}{written} {flow}")
                else:
                    out.append(f"{lead}{written} {self.scalar(child)}")
                lead = pad
        elif type(value) is list and value:
            lead = prefix + "- "
            item_lead = pad + "- "
            for item in value:
                kind = type(item)
                if kind is str:
                    out.append(lead + (strings.get(item) or self.scalar(item)))
                elif (kind is dict or kind is list) and item:
                    self.emit(item, indent + 2, lead)
                else:
                    out.append(lead + self.scalar(item))
                lead = item_lead
        elif isinstance(value, (dict, list)) and value:  # subclasses: as their base type
            self.emit(dict(value) if isinstance(value, dict) else list(value), indent, prefix)
        else:
            out.append(prefix + self.scalar(value))


def dump_yaml(documents: list[Any]) -> str:
    """Block YAML for JSON-shaped documents: sorted keys, no anchors, ``---`` between them.

    Strings are written plain only when a YAML 1.1 reader cannot take them for another type;
    otherwise double-quoted with JSON escapes (which are YAML escapes too). Reading the text
    back with :func:`parse_yaml` (or PyYAML's safe loader) gives the documents back.

    Raises:
        TypeError: a value that is not JSON data (bytes, a set, a non-string key).
    """
    parts: list[str] = []
    emitter = _Emitter()
    for doc in documents:
        emitter.out = []
        emitter.emit(doc, 0, "")
        parts.append("\n".join(emitter.out) + "\n")
    return "---\n".join(parts)
