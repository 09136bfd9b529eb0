"""The subset of Cloud Asset's search query language the emulator understands (pure).

``SearchAllIamPolicies`` compares its query with each binding of each allow policy. Supported:
terms joined by whitespace or ``AND``; ``field:value`` (a word of the field), ``field=value``
(the whole value), ``field:(v1 OR v2 ...)``, quoted values, ``prefix*`` wildcards and free text.
Fields: ``policy`` (members, role, condition), ``roles``, ``memberTypes``, ``resource`` and
``policy.role.permissions``. Anything else is refused rather than guessed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from zt_pipelines.policy.snapshot import Binding, Role

_TOKEN = re.compile(r'\(|\)|"[^"]*"|[^\s()"]+')
_FIELD = re.compile(r"^(policy\.role\.permissions|policy|roles|memberTypes|resource)([:=])(.*)$")
_SPLIT = re.compile(r"[\s:/@.,()'\"=!<>&|]+")


class QueryError(ValueError):
    """The query uses syntax the emulator does not understand."""


@dataclass(frozen=True)
class Clause:
    """One AND-ed term: a field (``""`` for free text), ``:``/``=``, and OR-ed values."""

    field: str
    operator: str
    values: tuple[str, ...]


def parse(query: str) -> tuple[Clause, ...]:
    """The clauses of ``query`` (empty: everything matches).

    Raises:
        QueryError: unsupported syntax.
    """
    tokens = _TOKEN.findall(query)
    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "AND":
            continue
        if token in ("OR", "NOT", "(", ")") or token.startswith("-"):
            raise QueryError(f"unsupported query syntax near {token!r}")
        match = _FIELD.match(token)
        if match is None:
            if ":" in token or "=" in token:
                raise QueryError(f"unsupported field in {token!r}")
            clauses.append(Clause("", ":", (_unquote(token),)))
            continue
        field, operator, rest = match.groups()
        if rest:
            clauses.append(Clause(field, operator, (_unquote(rest),)))
            continue
        if i >= len(tokens):
            raise QueryError(f"{token!r} has no value")
        if tokens[i] != "(":
            clauses.append(Clause(field, operator, (_unquote(tokens[i]),)))
            i += 1
            continue
        values: list[str] = []
        i += 1
        expect_value = True
        while i < len(tokens) and tokens[i] != ")":
            if expect_value:
                values.append(_unquote(tokens[i]))
            elif tokens[i] != "OR":
                raise QueryError(f"expected OR between values, got {tokens[i]!r}")
            expect_value = not expect_value
            i += 1
        if i >= len(tokens) or not values or expect_value:
            raise QueryError(f"unbalanced or empty group after {token!r}")
        i += 1
        clauses.append(Clause(field, operator, tuple(values)))
    return tuple(clauses)


def _unquote(value: str) -> str:
    value = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if not value:
        raise QueryError("empty value in query")
    return value.lower()


def _words(texts: list[str]) -> frozenset[str]:
    return _words_of(tuple(texts))


@functools.lru_cache(maxsize=65536)
def _words_of(texts: tuple[str, ...]) -> frozenset[str]:
    # cached: a query with N OR-ed values would otherwise split every binding N times
    words = {t.lower() for t in texts if t}
    for text in texts:
        words.update(w for w in _SPLIT.split(text.lower()) if w)
        if ":" in text:
            words.add(text.split(":", 1)[1].lower())
    return frozenset(words)


def _hit(value: str, words: AbstractSet[str]) -> bool:
    if value.endswith("*"):
        stem = value[:-1]
        return any(w.startswith(stem) for w in words)
    return value in words


def binding_matches(
    clauses: tuple[Clause, ...],
    resource: str,
    binding: Binding,
    role_of: Callable[[str], Role | None],
) -> bool:
    """Whether ``binding`` (on ``resource``) satisfies every clause."""
    for clause in clauses:
        if clause.field == "policy" and _exact(clause):
            # exact words: one set intersection instead of one test per OR-ed value
            if _words(_policy_texts(binding)).isdisjoint(clause.values):
                return False
            continue
        if not any(_value_matches(clause, v, resource, binding, role_of) for v in clause.values):
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _exact(clause: Clause) -> bool:
    return not any(v.endswith("*") for v in clause.values)


def _policy_texts(binding: Binding) -> list[str]:
    texts = [*binding.members, binding.role]
    if binding.condition is not None:
        condition = binding.condition
        texts += [condition.expression, condition.title, condition.description]
    return texts


def _value_matches(
    clause: Clause,
    value: str,
    resource: str,
    binding: Binding,
    role_of: Callable[[str], Role | None],
) -> bool:
    condition = binding.condition
    policy_texts = [*binding.members, binding.role]
    if condition is not None:
        policy_texts += [condition.expression, condition.title, condition.description]
    if clause.field == "policy":
        words = _words(policy_texts)
        return value in words if clause.operator == "=" else _hit(value, words)
    if clause.field == "roles":
        return _hit(value, {binding.role.lower()})
    if clause.field == "memberTypes":
        kinds = {m.split(":", 1)[0].lower() for m in binding.members}
        return value in kinds
    if clause.field == "resource":
        if clause.operator == "=":
            return value == resource.lower()
        return value in resource.lower() or _hit(value, _words([resource]))
    if clause.field == "policy.role.permissions":
        role = role_of(binding.role)
        return role is not None and _hit(value, {p.lower() for p in role.permissions})
    return _hit(value, _words([*policy_texts, resource]))  # free text
