"""Counted nouns in messages: ``1 error``, ``2 errors``, ``1 deny policy``, ``3 deny policies``;
and :func:`shown`, the one way text from a template, a log or an API reaches a terminal.

Every message that counts something spells the plural out (never ``error(s)``); kept free of
imports so the engine, the monitors and segmentation can use it without pulling in rendering.
"""

from __future__ import annotations

import re

#: what a terminal may act on or a reader may be misled by: C0 controls but tab and newline
#: (ESC starts CSI/OSC/DCS sequences: clipboard writes, titles, hidden links; CR overwrites a
#: line), DEL, C1 controls (U+009B is a one-character CSI) and the bidirectional overrides and
#: isolates that reorder what is displayed
_UNSAFE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def shown(text: str) -> str:
    """``text`` as a terminal shows it without acting on it: every control character but tab and
    newline, and every bidirectional override, written as a visible ``\\uXXXX`` escape (the
    same escape in a JSON string reads back as the character).

    Args:
        text: text from a template, an audit log line, an API answer or a user.
    """
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
