"""Counted nouns in messages: ``1 error``, ``2 errors``, ``1 deny policy``, ``3 deny policies``.

Every message that counts something spells the plural out (never ``error(s)``); kept free of
imports so the engine, the monitors and segmentation can use it without pulling in rendering.
"""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 error``, ``2 errors``, ``0 steps``; ``many`` for an irregular plural
    (``plural(2, "deny policy", "deny policies")``).

    Args:
        count: how many.
        noun: the singular.
        many: the plural when it is not ``noun + "s"``.
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many if many is not None else noun + 's'}"


def noun(count: int, singular: str, many: str | None = None) -> str:
    """The noun alone, agreeing with ``count``: ``step`` for 1, ``steps`` otherwise.

    Args:
        count: how many.
        singular: the singular.
        many: the plural when it is not ``singular + "s"``.
    """
    if count == 1:
        return singular
    return many if many is not None else singular + "s"
