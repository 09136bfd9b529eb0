"""Custom-role support levels: which permissions a custom role may hold. Pure.

IAM marks each permission's use in custom roles (``customRolesSupportLevel``, returned by
``permissions.queryTestablePermissions`` for the project or organisation a role lives in):

- ``SUPPORTED`` — fine;
- ``TESTING`` — allowed, but IAM may behave unexpectedly: a **warning** in the plan and apply;
- ``NOT_SUPPORTED`` — IAM refuses the role: **refused** with the reason, before any write;
- not testable on the role's parent at all (an organisation-level permission in a project
  role, or a permission whose service is unknown there) — IAM refuses it too: **refused**.

Where the levels come from, in order: a live read of the role's parent (``plan`` against live
state, and always ``apply`` right before it creates or updates a role); otherwise the shipped
catalogue (:func:`zt_pipelines.policy.role_catalogue.support_level`), which knows only what
public data states. A permission the catalogue has no level for is ``UNKNOWN`` offline: the
plan lists it (never silently), and ``apply`` verifies it live and refuses before writing if
IAM would — so a role IAM rejects is never half-applied. See docs/provisioning.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from zt_pipelines.errors import CustomRoleSupportError
from zt_pipelines.policy.render import plural
from zt_pipelines.policy.role_catalogue import catalogue_info, support_level

Level = Literal["SUPPORTED", "TESTING", "NOT_SUPPORTED", "NOT_TESTABLE", "UNKNOWN"]
REFUSED: frozenset[str] = frozenset({"NOT_SUPPORTED", "NOT_TESTABLE"})


@dataclass(frozen=True)
class SupportIssue:
    """One permission of a planned custom role whose support level is not plainly SUPPORTED.

    Attributes:
        permission: the permission.
        level: ``TESTING`` (warning), ``UNKNOWN`` (not verified offline), ``NOT_SUPPORTED`` or
            ``NOT_TESTABLE`` (refused).
        roles: the custom roles (full names) that hold it.
        source: where the level comes from (``live: projects/P``, or the shipped catalogue
            with the date of its public levels).
    """

    permission: str
    level: Level
    roles: tuple[str, ...]
    source: str

    @property
    def reason(self) -> str:
        """Why the level matters, in one clause."""
        if self.level == "NOT_SUPPORTED":
            return "IAM does not support it in custom roles (customRolesSupportLevel NOT_SUPPORTED)"
        if self.level == "NOT_TESTABLE":
            parent = self.roles[0].split("/roles/", 1)[0] if self.roles else "the role's parent"
            return (
                f"it cannot be used in a custom role of {parent} (not among its testable "
                "permissions: organisation-level only, or its service is not available there)"
            )
        if self.level == "TESTING":
            return (
                "IAM is still testing it in custom roles (customRolesSupportLevel TESTING): "
                "it may behave unexpectedly; not recommended for production"
            )
        return "its custom-role support level is not known offline; apply verifies it live"


def catalogue_source() -> str:
    """How the offline levels are named in plans."""
    info = catalogue_info()
    return f"shipped catalogue, public levels as of {info.support_date or info.date}"


def assess(
    roles: Iterable[tuple[str, Iterable[str]]],
    levels: Mapping[str, str] | None = None,
    *,
    source: str = "",
) -> tuple[SupportIssue, ...]:
    """Every permission of ``roles`` (``(role name, permissions)``) that is not SUPPORTED.

    Args:
        roles: the custom roles to check.
        levels: permission → level read live for the roles' parent (authoritative: a
            permission it does not list is ``NOT_TESTABLE``); ``None`` uses the catalogue.
        source: names where ``levels`` came from (``live: projects/P``).
    """
    holders: dict[str, list[str]] = {}
    for name, permissions in roles:
        for permission in permissions:
            holders.setdefault(permission, []).append(name)
    found: list[SupportIssue] = []
    for permission in sorted(holders):
        level: str
        if levels is not None:
            level = levels.get(permission, "NOT_TESTABLE")
            where = source or "live"
        else:
            level = support_level(permission)
            where = catalogue_source()
        if level != "SUPPORTED":
            found.append(
                SupportIssue(permission, level, tuple(sorted(set(holders[permission]))), where)  # type: ignore[arg-type]
            )
    return tuple(found)


def refuse_unsupported(issues: Iterable[SupportIssue], *, where: str = "custom role") -> None:
    """Raise when any issue is refused (``NOT_SUPPORTED`` / ``NOT_TESTABLE``).

    Raises:
        CustomRoleSupportError: naming every refused permission, its reason and source.
    """
    refused = [i for i in issues if i.level in REFUSED]
    if not refused:
        return
    detail = "; ".join(f"{i.permission}: {i.reason} [{i.source}]" for i in refused)
    raise CustomRoleSupportError(
        f"{plural(len(refused), 'permission')} cannot be granted through a custom role: {detail}",
        where=where,
        fix="grant them with --roles predefined (a predefined role may include them), or "
        "remove them from the step's declared needs",
        permissions=tuple(i.permission for i in refused),
    )


def warnings(issues: Iterable[SupportIssue]) -> tuple[str, ...]:
    """One line per ``TESTING`` permission (what the plan and apply print as warnings)."""
    return tuple(
        f"{i.permission} in {', '.join(i.roles)}: {i.reason} [{i.source}]"
        for i in issues
        if i.level == "TESTING"
    )
