"""The audit log's hash chain and redaction: pure, no IO, no clock.

One decision is one line of canonical JSON (sorted keys, no spaces, UTF-8). Each line carries

- ``seq``: its position (0, 1, 2, ...), so a dropped or reordered line is named by number;
- ``prev``: the sha256 of the previous line's bytes (``GENESIS`` for the first line), so an
  edited line breaks the link to the line after it;
- ``hash``: the sha256 of the line's own body without ``hash``, so a naive edit of any line,
  including the last one, is caught on that very line.

A writer that rewrites the whole tail consistently is only caught with an external anchor: the
head hash (:func:`verify_chain` takes ``expect_head``) or the Cloud Logging mirror.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from zt_pipelines.credentials import SHAPES, credential_kinds

GENESIS = "0" * 64
FORMAT_VERSION = 1

# Secrets that must never reach a record or a log line, whatever a caller puts into one.
_SECRET_PATTERNS = (
    # the shapes a pipeline spec is refused for (ZT410)
    *(pattern for _kind, _markers, pattern in SHAPES),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
    # signed-URL credentials (GCS V2/V4, S3, Azure SAS) in a query string, e.g. a template URL
    re.compile(
        r"(?i)(?<=[?&])(?:x-goog-signature|x-goog-credential|x-amz-signature|x-amz-credential|signature|sig)=[^&#\s\"']*"
    ),
)
_SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "private_key",
        "private_key_id",
        "client_secret",
        "token",
        "authorization",
        "password",
    }
)
REDACTED = "[REDACTED]"


def redact(value: Any) -> Any:
    """Return ``value`` with every secret-looking string replaced by ``[REDACTED]``.

    Strings are scanned for private keys, bearer/access/refresh/ID tokens and API keys (a
    string still holding one escaped or encoded, which no pattern can cut out, is replaced
    whole); mapping entries whose key names a secret (``private_key``, ``access_token`` ...)
    are dropped to ``[REDACTED]`` whatever their value.
    """
    if isinstance(value, str):
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(REDACTED, value)
        # escaped or encoded (a key file's base64, a token behind JSON or URL escapes): the
        # shapes cannot cut it out of the text, so the whole text goes
        return REDACTED if credential_kinds(value) else value
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if str(k).lower() in _SECRET_KEYS else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8 (no ASCII escaping)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def seal(body: Mapping[str, Any], *, prev: str, seq: int) -> bytes:
    """Return the line (without newline) for ``body`` chained after a line hashing to ``prev``.

    ``body`` is redacted first; the keys ``seq``, ``prev``, ``hash`` and ``v`` are reserved.
    """
    clean = redact(dict(body))
    for reserved in ("seq", "prev", "hash", "v"):
        clean.pop(reserved, None)
    clean.update({"seq": seq, "prev": prev, "v": FORMAT_VERSION})
    clean["hash"] = sha256_hex(canonical(clean))
    return canonical(clean)


ProblemKind = Literal["malformed", "edited", "dropped", "reordered", "truncated", "head"]


@dataclass(frozen=True)
class ChainProblem:
    """One thing wrong with an audit log.

    Attributes:
        line: 1-based line number in the file where the problem shows.
        kind: what happened to the log.
        message: a sentence naming the line(s) and the evidence.
    """

    line: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`.

    Attributes:
        records: how many lines were read.
        head: the sha256 of the last line (``GENESIS`` for an empty log): keep it elsewhere
            (a ticket, Cloud Logging) to detect a rewritten tail later.
        problems: everything that is wrong, in file order; empty means the chain is intact.
        anchored: whether the head was compared with one kept elsewhere (``expect_head``).
            Without an anchor, an intact chain only proves the lines agree with each other:
            whoever can write the file can rewrite the whole tail consistently.
    """

    records: int
    head: str
    problems: tuple[ChainProblem, ...]
    anchored: bool = False

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _record(raw: bytes) -> dict[str, Any] | None:
    """The line as a JSON object, parsed strictly and bounded; None when it is not one."""
    from zt_pipelines.errors import InputError
    from zt_pipelines.loaders import decode, parse_json

    try:
        text = decode(raw, where="audit line", error=InputError)
        value = parse_json(text, where="audit line", kind="audit line", error=InputError)
    except InputError:
        return None
    return value if isinstance(value, dict) else None


def verify_chain(lines: Sequence[bytes], *, expect_head: str | None = None) -> ChainReport:
    """Check a log's lines (without newlines) and say which are edited, dropped or reordered.

    The work is bounded by the number and size of the lines, whatever ``seq`` values they hold
    (a line claiming ``seq`` 10**9 is reported as one gap, not walked through).
    """
    problems: list[ChainProblem] = []
    by_seq: dict[int, tuple[int, str]] = {}  # seq -> (line number, sha256 of the line)
    parsed: list[tuple[int, int, str] | None] = []  # per line: (seq, line number, prev)
    highest = -1
    for index, raw in enumerate(lines):
        number = index + 1
        if not raw.strip():
            problems.append(
                ChainProblem(number, "malformed", f"line {number} is blank (a line was inserted)")
            )
            parsed.append(None)
            continue
        record = _record(raw)
        if record is None:
            problems.append(
                ChainProblem(number, "malformed", f"line {number} is not a JSON record (edited)")
            )
            parsed.append(None)
            continue
        seq = record.get("seq")
        body = {k: v for k, v in record.items() if k != "hash"}
        if type(seq) is not int or seq < 0 or record.get("hash") != sha256_hex(canonical(body)):
            problems.append(
                ChainProblem(
                    number,
                    "edited",
                    f"line {number} (seq {str(seq)[:30]}) was edited: its content no longer "
                    "matches its own hash",
                )
            )
            parsed.append(None)
            continue
        if raw != canonical(record):  # same JSON, other bytes: the successor's prev would differ
            problems.append(
                ChainProblem(
                    number,
                    "edited",
                    f"line {number} (seq {seq}) was edited: it is not in the exact form it was "
                    "written in (whitespace, key order or escaping changed)",
                )
            )
            parsed.append(None)
            continue
        if seq in by_seq:
            problems.append(
                ChainProblem(
                    number,
                    "reordered",
                    f"line {number} repeats seq {seq} (first at line {by_seq[seq][0]}): "
                    "duplicated line",
                )
            )
        elif seq < highest:
            problems.append(
                ChainProblem(
                    number,
                    "reordered",
                    f"line {number} holds seq {seq} after seq {highest}: lines reordered",
                )
            )
        by_seq.setdefault(seq, (number, sha256_hex(raw)))
        highest = max(highest, seq)
        parsed.append((seq, number, str(record.get("prev"))))
    problems += _gaps(by_seq, parsed)
    for entry in parsed:
        if entry is None:
            continue
        seq, number, prev = entry
        expected = GENESIS if seq == 0 else by_seq.get(seq - 1, (0, None))[1]
        if expected is not None and prev != expected:
            earlier = "the genesis" if seq == 0 else f"line {by_seq[seq - 1][0]}"
            problems.append(
                ChainProblem(
                    number,
                    "edited",
                    f"{earlier} (seq {seq - 1}) was changed after line {number} (seq {seq}) "
                    "was written: the hash recorded for it no longer matches",
                )
            )
    head = sha256_hex(lines[-1]) if lines else GENESIS
    if expect_head is not None and expect_head != head:
        problems.append(
            ChainProblem(
                len(lines),
                "head",
                f"the last line hashes to {head[:12]}…, not the expected head "
                f"{expect_head[:12]}…: the tail was dropped or rewritten",
            )
        )
    problems.sort(key=lambda p: p.line)
    return ChainReport(
        records=len(lines), head=head, problems=tuple(problems), anchored=expect_head is not None
    )


def _gaps(
    by_seq: Mapping[int, tuple[int, str]], parsed: Sequence[tuple[int, int, str] | None]
) -> list[ChainProblem]:
    """One problem per missing seq, or per run of missing seqs (in time linear in the lines)."""
    out: list[ChainProblem] = []
    expected = 0
    after = 0  # the last line number among the seqs below ``expected``
    for seq in sorted(by_seq):
        if seq - expected > 64:
            out.append(
                ChainProblem(
                    after + 1,
                    "dropped",
                    f"seq {expected} to {seq - 1} are missing ({seq - expected} records "
                    f"after line {after}): records dropped or a seq was forged",
                )
            )
        else:
            out += [
                ChainProblem(
                    after + 1,
                    "dropped",
                    f"seq {s} is missing (it belonged after line {after}): record dropped",
                )
                for s in range(expected, seq)
                if not _malformed_in_place(parsed, s)
            ]
        expected = seq + 1
        after = max(after, by_seq[seq][0])
    return out


def _malformed_in_place(parsed: Sequence[tuple[int, int, str] | None], seq: int) -> bool:
    """Whether a malformed/edited line sits where ``seq`` should be (already reported)."""
    return 0 <= seq < len(parsed) and parsed[seq] is None
