"""On-disk caches for what rarely changes: predefined roles, hierarchy shape, deny policy bodies.

* Predefined role definitions (``roles/...``) are cached for ``ttl`` seconds. Custom roles are
  never cached: they are listed fresh per check.
* The hierarchy shape (project → folder → organisation, project numbers) is cached only to
  *prefetch* ancestors in the first wave; every parent the snapshot records comes from a fresh
  read, so a stale entry costs a round trip, never a wrong answer.
* Deny policy bodies are cached by (name, etag): ``ListPolicies`` returns the etag, and an
  unchanged etag means an unchanged policy.

Entries are JSON files written to a temporary file and moved into place with ``os.replace``,
so concurrent processes never read half an entry. A corrupt or unreadable entry is a miss.
The cache is namespaced by endpoint (Google or an emulator address), so worlds never mix.

A cached role or deny policy decides grants, so a cache entry is evidence only when it is bound
to what this user fetched:

* every entry carries an HMAC-SHA256 over (namespace, kind, key, time stored, value), keyed by a
  per-user secret kept *outside* the cache directory (``$XDG_CONFIG_HOME/zt-pipelines/cache.key``,
  created ``0600`` on first use). An entry written by anyone without the secret — a file
  committed into a repository the cache was pointed at, an entry copied between kinds or
  namespaces, an edited permission list — fails the check and is a miss (a fresh read);
* the secret is used only if it belongs to this user, is readable by nobody else, and does not
  lie inside the cache directory or a git checkout; otherwise the cache is off;
* a cache directory inside a git checkout (any parent holds ``.git``) is never used: a checkout
  is writable by whoever can push to it;
* entries and their directories must belong to this user and not be group/world-writable.

Anything else is a miss (fail closed: a fresh read). Directories are created ``0700``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs

from zt_pipelines.policy.snapshot import Condition, DenyPolicy, DenyRule, Role

DEFAULT_TTL = 7 * 24 * 3600.0
_LOG = logging.getLogger("zt_pipelines.gcp")
APP_NAME = "zt-pipelines"


def default_cache_dir() -> Path:
    """The platform's user cache directory (platformdirs: ``$XDG_CACHE_HOME/zt-pipelines`` or
    ``~/.cache/zt-pipelines`` on Linux, ``~/Library/Caches/zt-pipelines`` on macOS)."""
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def default_key_path() -> Path:
    """``cache.key`` in the platform's user config directory (``$XDG_CONFIG_HOME/zt-pipelines``
    or ``~/.config/zt-pipelines`` on Linux): outside the cache directory."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "cache.key"


def inside_checkout(path: Path) -> bool:
    """True when ``path`` or a parent directory holds ``.git`` (a repository checkout)."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return True  # cannot tell: treat as untrusted
    return any((p / ".git").exists() for p in (resolved, *resolved.parents))


def _private(path: Path, *, secret: bool) -> bool:
    """Only this user owns ``path``; a secret is readable by nobody else either."""
    if not hasattr(os, "getuid"):  # pragma: no cover - no POSIX ownership to check
        return True
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & (0o077 if secret else 0o022)


class DiskCache:
    """A small JSON key-value store with a TTL, safe for concurrent processes.

    Args:
        directory: where entries live (created on first write).
        namespace: separates endpoints (``google`` or ``emulator-127.0.0.1-8085``).
        ttl: seconds an entry stays fresh.
        clock: wall clock (injectable for tests).
        key_path: the per-user secret that authenticates entries (default
            :func:`default_key_path`); it must lie outside ``directory``.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        namespace: str = "google",
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        key_path: Path | str | None = None,
    ) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in namespace)
        self.namespace = namespace
        self.directory = Path(directory or default_cache_dir()) / safe
        self.ttl = ttl
        self.clock = clock
        self.key_path = Path(key_path) if key_path is not None else default_key_path()
        self._secret: bytes | None = None
        #: why the cache is off (``""`` while it is usable); set on first use
        self.disabled = ""
        self._checked = False

    def _key(self) -> bytes | None:
        """The per-user secret, created on first use; ``None`` (cache off) when untrusted."""
        if self._checked:
            return self._secret
        self._checked = True
        root = self.directory.parent
        key = self.key_path
        try:
            rkey, rroot = key.resolve(), root.resolve()
        except (OSError, RuntimeError):
            self._off("the cache paths cannot be resolved")
            return None
        if rkey == rroot or rroot in rkey.parents:
            self._off(f"the cache key {key} lies inside the cache directory {root}")
        elif inside_checkout(root):
            self._off(f"the cache directory {root} lies inside a git checkout")
        elif inside_checkout(key.parent):
            self._off(f"the cache key {key} lies inside a git checkout")
        if self.disabled:
            return None
        try:
            if not key.exists():
                key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # written whole, then linked into place: a concurrent process never reads half
                # a key, and the first one to link wins
                fd, tmp = tempfile.mkstemp(dir=key.parent, prefix=".cache-key-")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(secrets.token_bytes(32))
                    with contextlib.suppress(FileExistsError):
                        os.link(tmp, key)
                finally:
                    os.unlink(tmp)
            if not (_private(key, secret=True) and _private(key.parent, secret=False)):
                self._off(f"the cache key {key} could be read or written by others")
                return None
            data = key.read_bytes()
        except OSError as exc:
            self._off(f"the cache key {key} cannot be used: {exc.strerror or exc}")
            return None
        if len(data) < 32:
            self._off(f"the cache key {key} is too short")
            return None
        self._secret = data
        return data

    def _off(self, why: str) -> None:
        """Turn the cache off for this process, and say why (once)."""
        self.disabled = why
        _LOG.warning("zt-pipelines cache off (every read goes to the API): %s", why)

    def _mac(self, secret: bytes, kind: str, key: str, stored: Any, value: Any) -> str:
        body = json.dumps(
            [self.namespace, kind, key, stored, value], sort_keys=True, separators=(",", ":")
        )
        return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()

    def _path(self, kind: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.directory / kind / f"{digest}.json"

    def _trusted(self, path: Path) -> bool:
        """Only this user can have written ``path`` (POSIX owner and mode checks)."""
        if not hasattr(os, "getuid"):  # pragma: no cover - no POSIX ownership to check
            return True
        uid = os.getuid()
        for item in (path, path.parent, self.directory):
            try:
                st = item.stat()
            except OSError:
                return False
            if st.st_uid != uid or st.st_mode & 0o022:
                return False
        return True

    def get(self, kind: str, key: str) -> Any:
        """The fresh value stored under ``(kind, key)``, or ``None`` (also when the entry could
        have been written by someone else). Each lookup is logged at INFO (``-v``): a hit, or
        a miss and why."""
        value, miss = self._lookup(kind, key)
        if miss:
            _LOG.info("cache miss (%s): %s %s", miss, kind, key)
        else:
            _LOG.info("cache hit: %s %s", kind, key)
        return value

    def _lookup(self, kind: str, key: str) -> tuple[Any, str]:
        """``(value, "")`` for a fresh entry of ours, else ``(None, why not)``."""
        secret = self._key()
        if secret is None:
            return None, "cache off"
        path = self._path(kind, key)
        if not self._trusted(path):
            return None, "entry not private to this user" if path.exists() else "not cached"
        try:
            with open(path, encoding="utf-8") as fh:
                entry = json.load(fh)
        except FileNotFoundError:
            return None, "not cached"
        except (OSError, ValueError, RecursionError):
            return None, "unreadable entry"
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None, "unreadable entry"
        stored, value, mac = entry.get("stored"), entry.get("value"), entry.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(
            mac, self._mac(secret, kind, key, stored, value)
        ):
            return None, "not written by us"  # or edited since: never evidence
        if not isinstance(stored, int | float) or not 0 <= self.clock() - stored <= self.ttl:
            return None, "expired"
        return value, ""

    def put(self, kind: str, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable); failures to write are ignored (it is a cache)."""
        secret = self._key()
        if secret is None:
            return
        path = self._path(kind, key)
        stored = self.clock()
        try:
            mac = self._mac(secret, kind, key, stored, value)
        except (TypeError, ValueError):
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"key": key, "stored": stored, "value": value, "mac": mac}, fh)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            return

    # -- typed helpers -------------------------------------------------------------------------

    def get_role(self, name: str) -> Role | None:
        """A cached predefined role."""
        value = self.get("roles", name)
        try:
            return Role(
                name=value["name"],
                permissions=frozenset(value["permissions"]),
                title=value.get("title", ""),
                stage=value.get("stage", "GA"),
                deleted=bool(value.get("deleted", False)),
            )
        except (TypeError, KeyError):
            return None

    def put_role(self, role: Role) -> None:
        """Cache a predefined role (custom roles are refused: they are per-tenant and mutable)."""
        if not role.name.startswith("roles/"):
            return
        self.put(
            "roles",
            role.name,
            {
                "name": role.name,
                "permissions": sorted(role.permissions),
                "title": role.title,
                "stage": role.stage,
                "deleted": role.deleted,
            },
        )

    def get_parent(self, name: str) -> tuple[str | None, str | None] | None:
        """Cached ``(parent, project_number)`` of a hierarchy node (prefetch hint only)."""
        value = self.get("hierarchy", name)
        if not isinstance(value, list) or len(value) != 2:
            return None
        return value[0], value[1]

    def put_parent(self, name: str, parent: str | None, number: str | None) -> None:
        """Remember a node's parent and project number."""
        self.put("hierarchy", name, [parent, number])

    def get_deny(self, name: str, etag: str) -> DenyPolicy | None:
        """A cached deny policy body, if its etag is still ``etag``."""
        if not etag:
            return None
        value = self.get("deny", f"{name}@{etag}")
        try:
            return DenyPolicy(
                name=value["name"],
                attachment_point=value["attachment_point"],
                etag=value["etag"],
                rules=tuple(
                    DenyRule(
                        denied_principals=tuple(r["denied_principals"]),
                        denied_permissions=tuple(r["denied_permissions"]),
                        exception_principals=tuple(r["exception_principals"]),
                        exception_permissions=tuple(r["exception_permissions"]),
                        denial_condition=Condition(**r["condition"]) if r["condition"] else None,
                    )
                    for r in value["rules"]
                ),
            )
        except (TypeError, KeyError):
            return None

    def put_deny(self, policy: DenyPolicy) -> None:
        """Cache a deny policy body under its etag."""
        if not policy.etag:
            return
        rules = [
            {
                "denied_principals": list(r.denied_principals),
                "denied_permissions": list(r.denied_permissions),
                "exception_principals": list(r.exception_principals),
                "exception_permissions": list(r.exception_permissions),
                "condition": (
                    {
                        "expression": r.denial_condition.expression,
                        "title": r.denial_condition.title,
                        "description": r.denial_condition.description,
                    }
                    if r.denial_condition
                    else None
                ),
            }
            for r in policy.rules
        ]
        self.put(
            "deny",
            f"{policy.name}@{policy.etag}",
            {
                "name": policy.name,
                "attachment_point": policy.attachment_point,
                "etag": policy.etag,
                "rules": rules,
            },
        )
