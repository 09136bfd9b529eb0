"""Privileged Access Manager adapter: the entitlements on an organisation, folder or project."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter, Page, Started
from zt_pipelines.policy.snapshot import Entitlement, EntitlementRole
from zt_pipelines.resources import CRM, PAM

#: the API's largest page
_PAGE = 1000


def entitlements_parent(node: str) -> str:
    """``{projects|folders|organizations}/ID/locations/global`` for a node's full name.

    Entitlements of a node live in location ``global`` (regional ones are not listed here)."""
    return node.removeprefix(CRM) + "/locations/global"


def _duration(value: Any) -> str:
    """A protobuf ``Duration`` (proto-plus gives a ``timedelta``) as Google writes it."""
    seconds = getattr(value, "total_seconds", None)
    if seconds is not None:
        total = seconds()
        return f"{int(total)}s" if total else ""
    secs = int(getattr(value, "seconds", 0) or 0)
    return f"{secs}s" if secs else ""


def entitlement_from_proto(message: Any, node: str) -> Entitlement:
    """An entitlement (proto-plus ``Entitlement``) on ``node`` as the snapshot holds it."""
    name = str(message.name)
    if not name:
        raise ValueError("entitlement without a name")
    eligible = tuple(str(p) for entry in message.eligible_users for p in entry.principals)
    gcp = message.privileged_access.gcp_iam_access
    roles = tuple(
        EntitlementRole(str(b.role), str(b.condition_expression or "")) for b in gcp.role_bindings
    )
    # an approval workflow with steps is an approval; none (the default) grants at once
    approval = bool(message.approval_workflow.manual_approvals.steps)
    state = type(message).State(message.state).name if message.state else "AVAILABLE"
    return Entitlement(
        name=name,
        node=node,
        eligible=eligible,
        roles=roles,
        approval_required=approval,
        max_duration=_duration(message.max_request_duration),
        state=state if state != "STATE_UNSPECIFIED" else "AVAILABLE",
    )


class PamAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.PamReader`."""

    def list_entitlements(self, node: str) -> list[Entitlement]:
        """Every entitlement on ``node`` (an organisation, folder or project full name), all
        pages, location ``global``."""
        return self.list_entitlements_after(node, "")

    def start_list_entitlements(self, node: str) -> Started[Page[Entitlement]] | None:
        """The first page of :meth:`list_entitlements`, without waiting (``None``: use the
        blocking method; a next page: :meth:`list_entitlements_after`)."""
        from google.cloud import privilegedaccessmanager_v1 as pam

        parent = entitlements_parent(node)
        wrap = pam.Entitlement.wrap

        def page(response: Any) -> Page[Entitlement]:
            found = [entitlement_from_proto(wrap(e), node) for e in response.entitlements]
            return Page(found, str(response.next_page_token))

        return self.start(
            self.factory.pam(),
            "/google.cloud.privilegedaccessmanager.v1.PrivilegedAccessManager/ListEntitlements",
            pam.ListEntitlementsRequest.pb()(parent=parent, page_size=self.page(_PAGE)),
            pam.ListEntitlementsResponse.pb(),
            page,
            what="privilegedaccessmanager.entitlements.list",
            target=PAM + parent,
            routing=(("parent", parent),),
        )

    def list_entitlements_after(self, node: str, token: str) -> list[Entitlement]:
        """:meth:`list_entitlements` from the page ``token`` names on (``""``: all pages)."""
        client = self.factory.pam()
        parent = entitlements_parent(node)
        request: dict[str, Any] = {"parent": parent, "page_size": self.page(_PAGE)}
        if token:
            request["page_token"] = token
        return self.call(
            lambda: [
                entitlement_from_proto(e, node)
                for e in client.list_entitlements(request=request, **self.gapic_kwargs())
            ],
            what="privilegedaccessmanager.entitlements.list",
            target=PAM + parent,
        )
