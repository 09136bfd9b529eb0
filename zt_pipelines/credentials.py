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

import itertools
import re
from collections.abc import Mapping
from typing import Any

#: (what it is, a literal every match contains, the pattern)
SHAPES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    (  # spaces may be a form body's "+"
        "a private key",
        ("PRIVATE KEY-----", "PRIVATE+KEY-----"),
        re.compile(
            r"-----BEGIN[ +][A-Z +]*PRIVATE[ +]KEY-----.*?"
            r"(?:-----END[ +][A-Z +]*PRIVATE[ +]KEY-----|$)",
            re.S,
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
    # a Cloud Storage HMAC key's access id (61 characters for a service account's, 24 for a
    # user's): its 40-character secret has no shape of its own, and beside it the pair signs
    # requests as the key's account (boto/gsutil interoperability variables)
    ("a Cloud Storage HMAC key", ("GOOG",), re.compile(r"\bGOOG[0-9A-Z]{20,}\b")),
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
    """What kinds of credential ``text`` holds (``[]``: none), in clear or encoded the ways key
    files and tokens travel: base64 or base64url (what IAM's ``keys.create`` returns as
    ``privateKeyData``, Terraform's key output, a CI secret), hex, either of them wrapped in
    lines or holding gzip/zlib data, up to :data:`_MAX_LAYERS` encodings deep (see
    :func:`_encoded_kinds` for the bounds) — and behind the escapes a reader undoes before it
    uses the text (:func:`unescaped`: JSON's ``\\uXXXX`` and ``\\/``, ``\\xXX``, URL and
    form percent-encoding)."""
    found = _clear_kinds(text)
    if not found:
        budget = _Budget()
        found = _encoded_kinds(text, budget, 1)
        if not found:
            plain = unescaped(text)
            if plain != text:
                found = _clear_kinds(plain) or _encoded_kinds(plain, budget, 1)
    return found


# a reversible escape a program undoes before it uses the text: JSON's \uXXXX and \/ (behind
# any number of backslashes: a JSON dump of the spec doubles them; PHP's and Java's JSON
# writers escape every /), \xXX (YAML double quotes, Python, a shell's $'...'), and URL / form
# percent-encoding (%XX: how a refresh token travels to Google's token endpoint)
_ESCAPED = re.compile(r"\\+(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|(/))|%([0-9a-fA-F]{2})")
_ESCAPE_MARKS = ("\\u", "\\x", "\\/", "%")
_MAX_UNESCAPES = 3  # %252F (encoded twice) is read; deeper nesting is not looked for


def _unescape_one(m: re.Match[str]) -> str:
    code = m.group(1) or m.group(2) or m.group(4)
    return chr(int(code, 16)) if code else "/"


def unescaped(text: str) -> str:
    """``text`` with every escape of :data:`_ESCAPED` undone, up to :data:`_MAX_UNESCAPES`
    times (``text`` itself when it holds none)."""
    for _ in range(_MAX_UNESCAPES):
        if not any(mark in text for mark in _ESCAPE_MARKS):
            break
        plain = _ESCAPED.sub(_unescape_one, text)
        if plain == text:
            break
        text = plain
    return text


def _clear_kinds(text: str) -> list[str]:
    return [
        kind
        for kind, markers, pattern in SHAPES
        if any(m in text for m in markers) and pattern.search(text)
    ]


# encoded candidates: runs of the base64/base64url alphabet (hex is a subset), found with a
# byte table (a regular expression costs 5x more on a large spec); a line wrap inside a run —
# a real one, or the two-character escape of a JSON dump of the spec — is removed first
_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_RUNS = bytes(c if c in _ALPHABET else 0x20 for c in range(256))
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{46,}")
_MIN_BASE64 = 32  # the shortest shape (a refresh token, 23 characters) encoded
_MAX_LAYERS = 3  # base64(gzip(base64(key))) is found; deeper nesting is not looked for
_MAX_CANDIDATES = 1 << 16  # decodes per scanned text, over all layers
_MAX_DECODED = 16 << 20  # bytes decoded or inflated per scanned text
TOO_MUCH = "more encoded text than can be scanned for credentials"
"""The kind reported when a text holds more encoded candidates than the bounds allow: what
was not decoded is not proven free of a key (fail closed)."""


class _Budget:
    """What one scan may still decode (candidates, bytes), shared by every layer."""

    def __init__(self) -> None:
        self.candidates = _MAX_CANDIDATES
        self.bytes = _MAX_DECODED

    def take(self, size: int) -> bool:
        self.candidates -= 1
        self.bytes -= size
        return self.candidates >= 0 and self.bytes >= 0


def _encoded_kinds(text: str, budget: _Budget, layer: int) -> list[str]:
    """Credential kinds found by decoding every base64/base64url/hex candidate of ``text``
    (a run of at least :data:`_MIN_BASE64` characters, read from its first character) and
    scanning what decodes to UTF-8 text, after inflating gzip/zlib data. Bytes that are no
    text hold no key file or token in a form a program reads back without its own cipher."""
    import base64
    import binascii

    if len(text) < _MIN_BASE64:
        return []
    unwrapped = text.replace("\\n", "").replace("\\r", "")
    runs = unwrapped.encode("utf-8", "surrogatepass").translate(_RUNS, b"\r\n").split()
    pieces = sorted({r for r in runs if len(r) >= _MIN_BASE64})
    found: list[str] = []
    for piece in pieces:
        candidates: list[tuple[str, bytes]] = []
        for hexed in _HEX_RUN.finditer(piece):
            digits = hexed.group(0)
            candidates.append(("hex", binascii.unhexlify(digits[: len(digits) // 2 * 2])))
        body = piece.replace(b"-", b"+").replace(b"_", b"/")
        body = body[: len(body) - 1] if len(body) % 4 == 1 else body  # one char: no byte
        candidates.append(("base64", base64.b64decode(body + b"=" * (-len(body) % 4))))
        for how, data in candidates:
            if not budget.take(len(data)):
                return [TOO_MUCH]
            inflated, how = _inflated(data, how, budget)
            if inflated is None:
                return [TOO_MUCH]
            try:
                decoded = inflated.decode("utf-8")
            except UnicodeDecodeError:
                der = _der_key(inflated)  # a binary key file: PKCS#12, PKCS#8, PKCS#1
                if der:
                    found.append(f"{der} ({how}-encoded)")
                continue
            inner = _clear_kinds(decoded) or _clear_kinds(unescaped(decoded))
            if not inner and layer < _MAX_LAYERS:
                inner = _encoded_kinds(decoded, budget, layer + 1)
            found += [k if k == TOO_MUCH else f"{k} ({how}-encoded)" for k in inner]
        if found:
            return list(dict.fromkeys(found))
    return found


_PKCS7_DATA = bytes.fromhex("06092a864886f70d0107")  # the OID arc of PKCS#7 data / signedData
_KEY_ALGORITHMS = (
    bytes.fromhex("06092a864886f70d010101"),  # rsaEncryption
    bytes.fromhex("06072a8648ce3d0201"),  # id-ecPublicKey
    bytes.fromhex("06032b6570"),  # Ed25519
)


def _der_key(data: bytes) -> str:
    """What binary key file ``data`` is, by its DER header (``""``: none): a PKCS#12 file
    (what IAM's ``keys.create`` returns for ``TYPE_PKCS12_FILE``), a PKCS#8 or PKCS#1 private
    key (a PEM's body without its armour). Fixed bytes at fixed places: random data never
    matches."""
    if len(data) < 32 or data[0] != 0x30:
        return ""
    head = data[:48]
    if b"\x02\x01\x03\x30" in head[:12] and _PKCS7_DATA in head:
        return "a private key (a PKCS#12 key file)"
    if b"\x02\x01\x00\x30" in head[:12] and any(a in head for a in _KEY_ALGORITHMS):
        return "a private key (PKCS#8)"
    if b"\x02\x01\x00\x02\x82" in head[:12]:
        return "a private key (PKCS#1)"
    return ""


def _inflated(data: bytes, how: str, budget: _Budget) -> tuple[bytes | None, str]:
    """gzip or zlib data inflated within the budget (``None``: over it), else ``data``."""
    import zlib

    if data[:2] == b"\x1f\x8b":
        wbits, name = 16 + zlib.MAX_WBITS, "gzip"
    elif len(data) > 1 and data[0] == 0x78 and (data[0] << 8 | data[1]) % 31 == 0:
        wbits, name = zlib.MAX_WBITS, "zlib"
    else:
        return data, how
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, max(budget.bytes, 0) + 1)
    except zlib.error:
        return data, how  # not compressed after all: scan it as it is
    if not budget.take(len(out)) or inflater.unconsumed_tail:
        return None, how
    return out, f"{name}, {how}"


def may_hold_credentials(dump: str) -> bool:
    """Whether the JSON dump of a spec may hold a credential: :func:`credential_kinds` of it,
    or of its lists' strings joined (``"ya29", ".a0…"`` a shell joins back with ``$0$1``).
    Cheap; when it says yes, :func:`credential_paths` says where."""
    if credential_kinds(dump):
        return True
    joined = dump.replace('", "', "")
    # a marker that only the joining forms (a shape's word boundary may be glued away too)
    return any(joined.count(m) > dump.count(m) for _, markers, _ in SHAPES for m in markers)


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
            parts = [c for c in item if isinstance(c, str)]
            if len(parts) > 1:  # a command's or a Concat's elements, joined by whoever runs it
                alone = {k for p in parts for k in credential_kinds(p)}
                joined = {  # all of them, and each neighbouring pair (a word before it)
                    k
                    for text in ("".join(parts), *map("".join, itertools.pairwise(parts)))
                    for k in credential_kinds(text)
                }
                out += [(f"{at or '(value)'} (elements joined)", k) for k in sorted(joined - alone)]
    return sorted(out)
