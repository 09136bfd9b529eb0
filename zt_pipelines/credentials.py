"""Credential material in text a pipeline carries — pure.

A pipeline spec is stored by Vertex and readable by anyone with ``pipelineJobs.get`` or
``customJobs.get``; a step that carries another identity's key or token acts as that identity,
which nobody verified. So a spec (or a parameter value) holding a private key, an OAuth access
or refresh token, a JWT, an API key, an OAuth client secret or a signed-URL signature is
refused. One list of shapes, shared with the audit log's redaction.

The scan is cheap on the common path: each shape has a literal marker, and the regular
expressions run only when a marker occurs in the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: (what it is, a literal every match contains, the pattern)
SHAPES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    (
        "a private key",
        ("PRIVATE KEY-----",),
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
    ),
    ("an OAuth access token", ("ya29.",), re.compile(r"\bya29\.[A-Za-z0-9._-]+")),
    ("an OAuth refresh token", ("1//",), re.compile(r"\b1//[A-Za-z0-9._-]{20,}")),
    (
        "a JWT or ID token",
        ("eyJ",),
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    ),
    ("an API key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("an OAuth client secret", ("GOCSPX-",), re.compile(r"\bGOCSPX-[0-9A-Za-z_-]{20,}")),
    (
        "a signed-URL signature",
        ("ignature=", "redential=", "IGNATURE=", "REDENTIAL="),
        re.compile(
            r"(?i)(?<=[?&])(?:x-goog-signature|x-goog-credential|x-amz-signature|"
            r"x-amz-credential)=[^&#\s\"']*"
        ),
    ),
)


def credential_kinds(text: str) -> list[str]:
    """What kinds of credential ``text`` holds (``[]``: none)."""
    return [
        kind
        for kind, markers, pattern in SHAPES
        if any(m in text for m in markers) and pattern.search(text)
    ]


def credential_paths(value: Any, path: str = "") -> list[tuple[str, str]]:
    """``(path, kind)`` of every string in ``value`` (mappings and lists, keys included) that
    holds a credential; paths like ``deploymentSpec.executors.exec-train.container.env[0].value``.
    Walks everything: call it once :func:`credential_kinds` found something."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, str):
            out += [(at or "(value)", kind) for kind in credential_kinds(item)]
        elif isinstance(item, Mapping):
            for key, child in item.items():
                key = str(key)
                out += [(f"{at}.{key}".lstrip(".") + " (a key)", k) for k in credential_kinds(key)]
                stack.append((f"{at}.{key}".lstrip("."), child))
        elif isinstance(item, (list, tuple)):
            stack += [(f"{at}[{i}]", child) for i, child in enumerate(item)]
    return sorted(out)
