"""Cloud Asset adapter: ``SearchAllIamPolicies`` for every binding that names a principal."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter, Page, Started
from zt_pipelines.gcp.convert import policy_from_proto
from zt_pipelines.gcp.interface import KeyHit, PolicySearchHit

KEY_ASSET_TYPE = "iam.googleapis.com/ServiceAccountKey"


def _policy_hit(hit: Any) -> PolicySearchHit:
    # the protobuf under the proto-plus wrapper: a search returns hundreds of hits, and each
    # wrapped field access costs more than the whole conversion of the raw message
    unwrap = getattr(type(hit), "pb", None)
    raw = unwrap(hit) if unwrap is not None else hit
    return PolicySearchHit(
        resource=str(raw.resource),
        asset_type=str(raw.asset_type),
        project=str(raw.project or ""),
        folders=tuple(str(f) for f in raw.folders),
        organization=str(raw.organization or ""),
        policy=policy_from_proto(raw.policy),
    )


class AssetAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.PolicySearcher`."""

    def search_policies(self, scope: str, query: str) -> list[PolicySearchHit]:
        """Every policy in ``scope`` matching ``query`` (all pages)."""
        return self.search_policies_after(scope, query, "")

    def start_search_policies(
        self, scope: str, query: str
    ) -> Started[Page[PolicySearchHit]] | None:
        """The first page of :meth:`search_policies`, without waiting (``None``: use the
        blocking method; a next page: :meth:`search_policies_after`)."""
        from google.cloud import asset_v1

        return self.start(
            self.factory.asset(),
            "/google.cloud.asset.v1.AssetService/SearchAllIamPolicies",
            asset_v1.SearchAllIamPoliciesRequest.pb()(
                scope=scope, query=query, page_size=self.page(500)
            ),
            asset_v1.SearchAllIamPoliciesResponse.pb(),
            lambda response: Page(
                [_policy_hit(hit) for hit in response.results], str(response.next_page_token)
            ),
            what="searchAllIamPolicies",
            target=f"{scope} ({query})",
            routing=(("scope", scope),),
        )

    def search_policies_after(self, scope: str, query: str, token: str) -> list[PolicySearchHit]:
        """:meth:`search_policies` from the page ``token`` names on (``""``: all pages)."""
        client = self.factory.asset()
        request: dict[str, Any] = {"scope": scope, "query": query, "page_size": self.page(500)}
        if token:
            request["page_token"] = token
        return self.call(
            lambda: [
                _policy_hit(hit)
                for hit in client.search_all_iam_policies(request=request, **self.gapic_kwargs())
            ],
            what="searchAllIamPolicies",
            target=f"{scope} ({query})",
        )

    def search_keys(self, scope: str) -> list[KeyHit]:
        """Every service-account key in ``scope`` (``SearchAllResources``, all pages)."""
        client = self.factory.asset()
        request = {"scope": scope, "asset_types": [KEY_ASSET_TYPE], "page_size": self.page(500)}

        def run() -> list[KeyHit]:
            out = []
            for hit in client.search_all_resources(request=request, **self.gapic_kwargs()):
                name = str(hit.name)
                head, sep, _key = name.rpartition("/keys/")
                if not sep or "/serviceAccounts/" not in head:
                    raise ValueError(f"unexpected key name {name!r}")
                attributes = dict(hit.additional_attributes or {})
                key_type = str(attributes.get("keyType", "") or "")
                # the IAM API's own key name (projects/P/serviceAccounts/A/keys/ID)
                iam_name = name.removeprefix("//iam.googleapis.com/")
                out.append(KeyHit(iam_name, head.rsplit("/", 1)[1].lower(), key_type))
            return out

        return self.call(run, what="searchAllResources(keys)", target=scope)
