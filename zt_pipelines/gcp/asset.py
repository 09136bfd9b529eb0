"""Cloud Asset adapter: ``SearchAllIamPolicies`` for every binding that names a principal."""

from __future__ import annotations

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.gcp.convert import policy_from_proto
from zt_pipelines.gcp.interface import PolicySearchHit


class AssetAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.PolicySearcher`."""

    def search_policies(self, scope: str, query: str) -> list[PolicySearchHit]:
        """Every policy in ``scope`` matching ``query`` (all pages)."""
        client = self.factory.asset()
        request = {"scope": scope, "query": query, "page_size": 500}
        return self.call(
            lambda: [
                PolicySearchHit(
                    resource=str(hit.resource),
                    asset_type=str(hit.asset_type),
                    project=str(hit.project or ""),
                    folders=tuple(str(f) for f in hit.folders),
                    organization=str(hit.organization or ""),
                    policy=policy_from_proto(hit.policy),
                )
                for hit in client.search_all_iam_policies(request=request, **self.gapic_kwargs())
            ],
            what="searchAllIamPolicies",
            target=f"{scope} ({query})",
        )
