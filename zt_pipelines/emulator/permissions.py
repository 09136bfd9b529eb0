"""IAM's ``permissions.queryTestablePermissions`` and the custom-role support levels the
emulator enforces when a custom role is created or updated.

What is testable where (the emulator's model, see docs/emulator.md): every permission the
shipped role catalogue knows, plus every permission of a role in the world; on a *project*,
the permissions of organisation and folder resources (``resourcemanager.organizations.*``,
``resourcemanager.folders.*``) are not (IAM keeps organisation-level permissions out of
project-level custom roles). Each permission's level is the world's
(:attr:`World.permission_support`: the catalogue's known levels, overridden per emulator), and
``SUPPORTED`` when nothing says otherwise. ``CreateRole``/``UpdateRole`` refuse a
``NOT_SUPPORTED`` permission, or one not testable on the role's parent, with
``INVALID_ARGUMENT`` — as IAM does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from google.cloud import iam_admin_v1

from zt_pipelines.emulator.world import EmulatorError, World, page

_NOT_ON_PROJECTS = ("resourcemanager.organizations.", "resourcemanager.folders.")
_LEVELS = iam_admin_v1.Permission.CustomRolesSupportLevel


def testable(world: World, full_resource_name: str) -> dict[str, str]:
    """Permission → support level for every permission testable on the resource.

    Raises:
        EmulatorError: INVALID_ARGUMENT for a name that is not a project or organisation,
            NOT_FOUND for one the world does not hold.
    """
    match = re.match(
        r"^//cloudresourcemanager\.googleapis\.com/(projects|organizations)/[^/]+$",
        full_resource_name,
    )
    if not match:
        raise EmulatorError(
            "INVALID_ARGUMENT",
            f"{full_resource_name!r}: the emulator serves testable permissions of projects and "
            "organizations (//cloudresourcemanager.googleapis.com/...)",
        )
    if world.node(full_resource_name) is None:
        raise EmulatorError("NOT_FOUND", f"resource {full_resource_name} not found")
    return _levels(world, projects=match.group(1) == "projects")


def _levels(world: World, *, projects: bool) -> dict[str, str]:
    from zt_pipelines.policy.role_catalogue import known_permissions

    with world.lock:
        names = set(known_permissions()) | set(world.permission_support)
        for role in world.roles.values():
            names |= role.permissions
        support = dict(world.permission_support)
    if projects:
        names = {n for n in names if not n.startswith(_NOT_ON_PROJECTS)}
    return {n: support.get(n, "SUPPORTED") for n in sorted(names)}


def query_testable_permissions(world: World, request: Any, caller: str | None) -> Any:
    """QueryTestablePermissions (any authenticated caller; paged, 100 by default, ≤ 1000)."""
    world.authenticate(caller)
    if request.page_size < 0 or request.page_size > 1000:
        raise EmulatorError("INVALID_ARGUMENT", "page_size must be between 0 and 1000")
    levels = testable(world, request.full_resource_name)
    items, token = page(sorted(levels.items()), request.page_size, request.page_token, 100)
    return iam_admin_v1.QueryTestablePermissionsResponse(
        permissions=[
            iam_admin_v1.Permission(
                name=name,
                stage=iam_admin_v1.Permission.PermissionLaunchStage.GA,
                custom_roles_support_level=getattr(_LEVELS, level),
            )
            for name, level in items
        ],
        next_page_token=token,
    )


def check_custom_role(world: World, parent: str, permissions: Iterable[str]) -> None:
    """Refuse a custom role IAM would refuse: a NOT_SUPPORTED permission, or one that cannot
    be tested on ``parent`` (``projects/P`` / ``organizations/O``).

    Raises:
        EmulatorError: INVALID_ARGUMENT naming the permission.
    """
    levels = _levels(world, projects=parent.startswith("projects/"))
    for name in sorted(set(permissions)):
        level = levels.get(name)
        if level == "NOT_SUPPORTED":
            raise EmulatorError(
                "INVALID_ARGUMENT",
                f"Permission {name} is not supported in custom roles "
                "(customRolesSupportLevel NOT_SUPPORTED).",
            )
        if level is None and name.startswith(_NOT_ON_PROJECTS) and parent.startswith("projects/"):
            raise EmulatorError(
                "INVALID_ARGUMENT",
                f"Permission {name} is not valid in a project-level custom role.",
            )
