"""What identifies a verified request: its canonical bytes, their hashes, and the job labels
that carry them. Pure; shared by the drop-in job (which writes them) and the run monitor (which
checks them), so neither imports the other."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from zt_pipelines.errors import InputError

SPEC_LABELS = ("zt-spec-sha256-a", "zt-spec-sha256-b")
"""Job labels holding the two halves of the verified spec's sha256 (label values max 63 chars)."""
DECISION_LABELS = ("zt-decision-sha256-a", "zt-decision-sha256-b")
"""Job labels holding the two halves of the decision's sha256 (the audit record's
``decision_sha256``: everything that was judged, see :func:`decision_sha256`)."""
VERIFIED_LABEL = "zt-verified"


def canonical_spec_bytes(spec: Mapping[str, Any]) -> bytes:
    """The bytes that are verified, hashed and submitted: canonical JSON of ``spec``.

    Sorted keys, compact separators, UTF-8, and integral floats written as integers — the
    Vertex API carries the spec as a ``google.protobuf.Struct`` whose numbers are doubles, so
    ``3`` and ``3.0`` are the same value there and must hash the same here.
    """
    return json.dumps(
        _normalise_numbers(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def spec_sha256(spec: Mapping[str, Any]) -> str:
    """Hex sha256 of :func:`canonical_spec_bytes`."""
    return hashlib.sha256(canonical_spec_bytes(spec)).hexdigest()


def _normalise_numbers(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): _normalise_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise_numbers(v) for v in value]
    raise InputError(f"pipeline spec holds a {type(value).__name__}, which JSON cannot carry")


def decision_sha256(document: Mapping[str, Any]) -> str:
    """Hex sha256 of a decision document (:func:`zt_pipelines.job.decision_document`), canonical
    JSON."""
    return hashlib.sha256(canonical_spec_bytes(document)).hexdigest()
