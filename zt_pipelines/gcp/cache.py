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

A cached role or deny policy decides grants, so the cache is only trusted when nobody else could
have written it: every entry is read only if the entry file and its directories (up to the
namespace directory) belong to the current user and are not group/world-writable. Anything else
is a miss (fail closed: a fresh read). Directories are created ``0700``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zt_pipelines.policy.snapshot import Condition, DenyPolicy, DenyRule, Role

DEFAULT_TTL = 7 * 24 * 3600.0


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/zt-pipelines`` or ``~/.cache/zt-pipelines``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zt-pipelines"


class DiskCache:
    """A small JSON key-value store with a TTL, safe for concurrent processes.

    Args:
        directory: where entries live (created on first write).
        namespace: separates endpoints (``google`` or ``emulator-127.0.0.1-8085``).
        ttl: seconds an entry stays fresh.
        clock: wall clock (injectable for tests).
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        namespace: str = "google",
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in namespace)
        self.directory = Path(directory or default_cache_dir()) / safe
        self.ttl = ttl
        self.clock = clock

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
        have been written by someone else)."""
        path = self._path(kind, key)
        if not self._trusted(path):
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                entry = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        stored = entry.get("stored")
        if not isinstance(stored, int | float) or self.clock() - stored > self.ttl:
            return None
        return entry.get("value")

    def put(self, kind: str, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable); failures to write are ignored (it is a cache)."""
        path = self._path(kind, key)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"key": key, "stored": self.clock(), "value": value}, fh)
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
