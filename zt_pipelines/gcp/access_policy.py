"""VPC Service Controls adapter: the organisation's service perimeters, read through Cloud
Asset Inventory's ``ListAssets`` with content type ``ACCESS_POLICY`` — fetch only.

Perimeters come back in the Access Context Manager JSON wire form (``json_format`` of the
``ServicePerimeter`` message), the form the snapshot's ``segmentation.perimeters`` uses.
"""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter

PERIMETER_ASSET_TYPE = "accesscontextmanager.googleapis.com/ServicePerimeter"


class AccessPolicyAdapter(Adapter):
    """Reads service perimeters (all pages); raises ApiError when it cannot."""

    def perimeters(self, organization: str) -> list[dict[str, Any]]:
        """Every service perimeter of ``organizations/ID``'s access policies."""
        from google.cloud import asset_v1
        from google.protobuf import json_format

        client = self.factory.asset()
        request = {
            "parent": organization,
            "content_type": asset_v1.ContentType.ACCESS_POLICY,
            "asset_types": [PERIMETER_ASSET_TYPE],
            "page_size": self.page(1000),
        }

        def run() -> list[dict[str, Any]]:
            out = []
            for asset in client.list_assets(request=request, **self.gapic_kwargs()):
                perimeter = asset.service_perimeter
                if not perimeter.name:
                    raise ValueError(f"asset {asset.name} holds no service perimeter")
                out.append(json_format.MessageToDict(perimeter))
            return out

        return self.call(run, what="listAssets(ACCESS_POLICY)", target=organization)
