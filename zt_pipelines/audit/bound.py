"""How big one audit record may be, and how a large decision is made to fit: pure, no IO.

A record is one line. Its readers refuse a line over the ``audit line`` limit (1 MiB), and a
Cloud Logging entry holds at most 256 KB, so a record is bounded before it is written:

- up to :data:`RECORD_BUDGET` bytes a record is written whole;
- above it, findings are left out — notes first, then warnings, then errors, the last of each
  first — until it fits. Findings later checks read back (:data:`KEPT_CODES`) are never left
  out. What was left out is summarised under ``findings_omitted``: how many, how many of each
  code, and the sha256 of the canonical JSON of ``{"findings": [the whole list, redacted]}``,
  so a re-run of the same check can be proven to be the decision recorded;
- a record still over :data:`RECORD_LIMIT` (its identities and baseline alone, thousands of
  steps) cannot be written: :class:`RecordTooLarge`, and nothing is submitted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from zt_pipelines.audit.chain import GENESIS, canonical, redact, seal, sha256_hex
from zt_pipelines.loaders import LIMITS

#: a record up to this many bytes is written whole (a Cloud Logging entry holds 256 KB).
RECORD_BUDGET = 192 * 1024
#: no record is written above this: the largest line the log's readers accept.
RECORD_LIMIT = LIMITS["audit line"].max_bytes - 1
#: findings that later checks read back from a record (ZT613: a run not yet ended, so
#: monitor keeps it unverified; ZT629: the posture the next drift check compares with).
KEPT_CODES = frozenset({"ZT613", "ZT629"})
_DROP_ORDER = ("note", "warning", "error")
_SEQ_ROOM = 20  # digits a seq may grow to


class RecordTooLarge(ValueError):
    """A record that is over :data:`RECORD_LIMIT` with every droppable finding left out."""

    def __init__(self, size: int, identities: int) -> None:
        super().__init__(
            f"the decision record is {size:,} bytes with {identities:,} identities, over the "
            f"audit log's {RECORD_LIMIT + 1:,}-byte line limit even without its findings"
        )
        self.size = size


def sealed_size(body: Mapping[str, Any]) -> int:
    """The length of ``body``'s line once chained (the longest ``seq`` allowed for)."""
    return len(seal(body, prev=GENESIS, seq=10**_SEQ_ROOM - 1))


def bound(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` made to fit (see the module docstring); unchanged when it fits already.

    Raises:
        RecordTooLarge: even without every droppable finding it is over the limit.
    """
    out = dict(body)
    size = sealed_size(out)
    if size <= RECORD_BUDGET:
        return out
    findings = [f for f in out.get("findings") or () if isinstance(f, Mapping)]
    cost = [len(canonical(f)) + 1 for f in findings]
    dropped: set[int] = set()
    excess = size - RECORD_BUDGET + 512  # room for the summary
    for severity in _DROP_ORDER:
        for i in range(len(findings) - 1, -1, -1):
            if excess <= 0:
                break
            f = findings[i]
            if f.get("severity") == severity and f.get("code") not in KEPT_CODES:
                dropped.add(i)
                excess -= cost[i]
    if dropped:
        out["findings"] = [f for i, f in enumerate(findings) if i not in dropped]
        out["findings_omitted"] = {
            "count": len(dropped),
            "of": len(findings),
            "by_code": dict(sorted(Counter(str(findings[i].get("code")) for i in dropped).items())),
            "sha256": sha256_hex(canonical({"findings": redact(findings)})),
        }
    size = sealed_size(out)
    if size > RECORD_LIMIT:
        raise RecordTooLarge(size, len(out.get("identities") or ()))
    return out
