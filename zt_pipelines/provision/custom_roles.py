"""Hash-named custom roles: one role per distinct permission set.

A custom role's id is derived from its permissions alone (``zt_`` + 20 hex digits of the
SHA-256 of the sorted, de-duplicated permissions), so

- identical permission sets share one role, whichever step or pipeline needs them;
- re-planning the same needs yields the same role names (stable diffs, stable Terraform);
- a role whose permissions were edited by hand no longer matches its name, which the plan
  reports as drift and corrects.

Role ids satisfy the IAM rule ``[a-zA-Z0-9_.]{3,64}``. Pure: no IO.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zt_pipelines.errors import InputError
from zt_pipelines.policy.role_catalogue import validate_permission
from zt_pipelines.provision.support import assess, refuse_unsupported

ROLE_ID_PREFIX = "zt_"
_ROLE_ID = re.compile(r"^[a-zA-Z0-9_.]{3,64}$")
_PARENT = re.compile(r"^(projects/[a-z][a-z0-9:.-]{4,61}[a-z0-9]|organizations/[0-9]{1,30})$")
#: IAM limits: title 100 characters, description 256.
_TITLE_MAX = 100
_DESCRIPTION_MAX = 256


@dataclass(frozen=True)
class CustomRole:
    """A custom role the plan needs.

    Attributes:
        parent: ``projects/PROJECT_ID`` or ``organizations/ORG_ID``.
        role_id: the hash-derived id (``zt_<hex>``).
        permissions: sorted, de-duplicated permissions.
        title: a short human title.
        description: lists the permissions (truncated to the IAM limit).
    """

    parent: str
    role_id: str
    permissions: tuple[str, ...]
    title: str
    description: str

    @property
    def name(self) -> str:
        """The role's resource name, as used in bindings: ``PARENT/roles/ROLE_ID``."""
        return f"{self.parent}/roles/{self.role_id}"


def role_id_for(permissions: Iterable[str]) -> str:
    """The stable role id for a permission set (order and duplicates do not matter)."""
    perms = sorted(set(permissions))
    if not perms:
        raise InputError("a custom role needs at least one permission")
    digest = hashlib.sha256("\n".join(perms).encode()).hexdigest()[:20]
    role_id = ROLE_ID_PREFIX + digest
    if not _ROLE_ID.match(role_id):  # pragma: no cover - construction guarantees it
        raise InputError(f"derived role id {role_id!r} is invalid")
    return role_id


def custom_role_for(
    permissions: Iterable[str],
    *,
    parent: str,
    support: Mapping[str, str] | None = None,
    support_source: str = "",
) -> CustomRole:
    """Build the hash-named custom role granting exactly ``permissions`` under ``parent``.

    Args:
        permissions: what the role grants.
        parent: ``projects/PROJECT_ID`` or ``organizations/ORG_NUMBER``.
        support: permission → custom-role support level read live for ``parent``
            (authoritative); ``None`` uses the shipped catalogue's levels.
        support_source: names where ``support`` came from, for the error message.

    Raises:
        InputError: ``parent`` is not ``projects/ID`` / ``organizations/NUMBER``.
        PermissionFormatError: a permission is malformed (or, as
            :class:`~zt_pipelines.errors.UnknownPermissionError`, unknown: IAM would refuse
            the role).
        CustomRoleSupportError: a permission IAM does not allow in custom roles
            (``NOT_SUPPORTED``, or not testable on ``parent``), with the reason.
    """
    if not _PARENT.match(parent):
        raise InputError(
            f"{parent!r} cannot hold custom roles",
            where="custom role parent",
            fix="use projects/PROJECT_ID or organizations/ORG_NUMBER",
        )
    perms = tuple(sorted({validate_permission(p, where="custom role") for p in permissions}))
    role_id = role_id_for(perms)
    issues = assess([(f"{parent}/roles/{role_id}", perms)], support, source=support_source)
    refuse_unsupported(issues, where=f"custom role {parent}/roles/{role_id}")
    services = sorted({p.split(".", 1)[0] for p in perms})
    count = f"{len(perms)} permission{'' if len(perms) == 1 else 's'}"
    title = f"zt-pipelines {'/'.join(services)} ({count})"
    if len(title) > _TITLE_MAX:
        title = f"zt-pipelines {len(services)} services ({count})"
    description = "Managed by zt-pipelines; exactly: " + ", ".join(perms)
    if len(description) > _DESCRIPTION_MAX:
        description = description[: _DESCRIPTION_MAX - 3] + "..."
    return CustomRole(parent, role_id, perms, title, description)


def is_managed_role(name: str) -> bool:
    """True for a role name this module would have generated (``.../roles/zt_<hex>``)."""
    _, _, role_id = name.rpartition("/roles/")
    return bool(re.fullmatch(ROLE_ID_PREFIX + "[0-9a-f]{20}", role_id))
