"""IAM v2 adapter: deny policies attached to organisations, folders and projects."""

from __future__ import annotations

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.gcp.convert import deny_parent, deny_policy_from_proto
from zt_pipelines.gcp.interface import DenyPolicyRef
from zt_pipelines.policy.snapshot import DenyPolicy


class DenyAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.DenyReader`."""

    def list_deny_policies(self, attachment_point: str) -> list[DenyPolicyRef]:
        """Deny policies attached to ``attachment_point`` (full resource name); no rules."""
        client = self.factory.deny_policies()
        request = {"parent": deny_parent(attachment_point), "page_size": self.page(1000)}
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
