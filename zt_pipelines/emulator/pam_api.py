"""The emulator's Privileged Access Manager: ``ListEntitlements`` from the world's
``entitlements``, with the real request/response types (``privilegedaccessmanager_v1``)."""

from __future__ import annotations

import datetime
from typing import Any

from google.cloud import privilegedaccessmanager_v1 as pam

from zt_pipelines.emulator.routing import GrpcMethod
from zt_pipelines.emulator.world import EmulatorError, World, page
from zt_pipelines.policy.snapshot import Entitlement
from zt_pipelines.resources import CRM

_KINDS = ("projects", "folders", "organizations")


def _node(world: World, parent: str) -> tuple[str, str]:
    """(the node's full resource name, the location) of ``KIND/ID/locations/L``."""
    kind, _, rest = parent.partition("/")
    ident, _, tail = rest.partition("/")
    location = tail.removeprefix("locations/")
    if kind not in _KINDS or not ident or not tail.startswith("locations/") or "/" in location:
        raise EmulatorError("INVALID_ARGUMENT", f"parent {parent!r} is not KIND/ID/locations/L")
    if kind == "projects":
        ident = world.project_id(ident) or ident  # a project named by its number
    return f"{CRM}{kind}/{ident}", location


def _message(e: Entitlement) -> Any:
    access = pam.PrivilegedAccess.GcpIamAccess(
        resource_type=("cloudresourcemanager.googleapis.com/" + _type(e.node)),
        resource=e.node,
        role_bindings=[
            pam.PrivilegedAccess.GcpIamAccess.RoleBinding(
                role=r.role, condition_expression=r.condition
            )
            for r in e.roles
        ],
    )
    seconds = int(e.max_duration.removesuffix("s") or 0) if e.max_duration else 3600
    message = pam.Entitlement(
        name=e.name,
        eligible_users=[pam.AccessControlEntry(principals=list(e.eligible))],
        privileged_access=pam.PrivilegedAccess(gcp_iam_access=access),
        max_request_duration=datetime.timedelta(seconds=seconds),
        state=getattr(pam.Entitlement.State, e.state),
    )
    if e.approval_required:
        message.approval_workflow = pam.ApprovalWorkflow(
            manual_approvals=pam.ManualApprovals(
                steps=[
                    pam.ManualApprovals.Step(
                        approvers=[pam.AccessControlEntry(principals=["group:approvers@zt.test"])],
                        approvals_needed=1,
                    )
                ]
            )
        )
    return message


def _type(node: str) -> str:
    kind = node.removeprefix(CRM).split("/", 1)[0]
    return {"projects": "Project", "folders": "Folder", "organizations": "Organization"}[kind]


def list_entitlements(world: World, request: Any, caller: str | None) -> Any:
    """ListEntitlements: the entitlements on the parent's node in its location, paginated;
    needs ``privilegedaccessmanager.entitlements.list`` on the node."""
    node, location = _node(world, str(request.parent))
    world.authorize(caller, "privilegedaccessmanager.entitlements.list", node)
    if world.node(node) is None:
        raise EmulatorError("NOT_FOUND", f"{node} not found")
    with world.lock:
        found = [
            e
            for e in world.snapshot().entitlements
            if e.node == node and e.name.split("/locations/", 1)[1].startswith(location + "/")
        ]
    items, token = page(found, request.page_size, request.page_token, 1000)
    return pam.ListEntitlementsResponse(
        entitlements=[_message(e) for e in items], next_page_token=token
    )


METHODS: tuple[GrpcMethod, ...] = (
    GrpcMethod(
        "google.cloud.privilegedaccessmanager.v1.PrivilegedAccessManager",
        "ListEntitlements",
        pam.ListEntitlementsRequest,
        pam.ListEntitlementsResponse,
        lambda r: str(r.parent),
        False,
        list_entitlements,
        "privilegedaccessmanager",
    ),
)
