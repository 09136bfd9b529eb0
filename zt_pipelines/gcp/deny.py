"""IAM v2 adapter: deny policies attached to organisations, folders and projects."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter, Page, Started
from zt_pipelines.gcp.convert import deny_parent, deny_policy_from_proto
from zt_pipelines.gcp.interface import DenyPolicyRef
from zt_pipelines.policy.snapshot import DenyPolicy


class DenyAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.DenyReader`."""

    def list_deny_policies(self, attachment_point: str) -> list[DenyPolicyRef]:
        """Deny policies attached to ``attachment_point`` (full resource name); no rules."""
        return self.list_deny_policies_after(attachment_point, "")

    def start_list_deny_policies(
        self, attachment_point: str
    ) -> Started[Page[DenyPolicyRef]] | None:
        """The first page of :meth:`list_deny_policies`, without waiting (``None``: use the
        blocking method; a next page: :meth:`list_deny_policies_after`)."""
        from google.cloud import iam_v2

        parent = deny_parent(attachment_point)
        return self.start(
            self.factory.deny_policies(),
            "/google.iam.v2.Policies/ListPolicies",
            iam_v2.ListPoliciesRequest.pb()(parent=parent, page_size=self.page(1000)),
            iam_v2.ListPoliciesResponse.pb(),
            _deny_page,
            what="denyPolicies.list",
            target=attachment_point,
            routing=(("parent", parent),),
        )

    def list_deny_policies_after(self, attachment_point: str, token: str) -> list[DenyPolicyRef]:
        """:meth:`list_deny_policies` from the page ``token`` names on (``""``: all pages)."""
        client = self.factory.deny_policies()
        request = {"parent": deny_parent(attachment_point), "page_size": self.page(1000)}
        if token:
            request["page_token"] = token
        return self.call(
            lambda: [
                DenyPolicyRef(str(p.name), str(p.etag or ""))
                for p in client.list_policies(request=request, **self.gapic_kwargs())
            ],
            what="denyPolicies.list",
            target=attachment_point,
        )

    def get_deny_policy(self, name: str, attachment_point: str) -> DenyPolicy:
        """One deny policy with its rules (``ListPolicies`` omits them)."""
        client = self.factory.deny_policies()
        return self.call(
            lambda: deny_policy_from_proto(
                client.get_policy(request={"name": name}, **self.gapic_kwargs()), attachment_point
            ),
            what="denyPolicies.get",
            target=name,
        )


def _deny_page(response: Any) -> Page[DenyPolicyRef]:
    return Page(
        [DenyPolicyRef(str(p.name), str(p.etag or "")) for p in response.policies],
        str(response.next_page_token),
    )
