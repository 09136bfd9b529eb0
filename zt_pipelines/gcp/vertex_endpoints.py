"""Vertex AI endpoints adapter (``google-cloud-aiplatform`` ``EndpointService``) — fetch only.

Lists the endpoints of a project and location and returns each place one is reachable on a VPC
network, in the snapshot's ``segmentation.endpoints`` form (see docs/segmentation.md):

* a private endpoint over private services access (``Endpoint.network`` set): on that network,
  at the addresses of its deployed models' ``privateEndpoints`` URIs — with no address yet,
  ``ranges`` is ``None`` and the caller substitutes the network's private services access
  ranges, where Vertex places it (fail closed: anywhere it may answer);
* a Private Service Connect endpoint: on every network of its ``pscAutomationConfigs``, at the
  address the automation created there (one not created yet answers nowhere).

A public endpoint is on no VPC network and is not listed. Failures raise
:class:`~zt_pipelines.errors.ApiError` after retries (the caller fails closed).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from zt_pipelines.gcp._base import Adapter

#: the largest page ``endpoints.list`` serves
PAGE_SIZE = 100


def _address(uri: str) -> str | None:
    """The IPv4 address a private endpoint URI names, if it names one."""
    try:
        host = urlsplit(uri).hostname or ""
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return None


def endpoint_entries(endpoint: Any) -> list[dict[str, Any]]:
    """Where one ``Endpoint`` message is reachable: ``{name, network, ranges, via}`` entries."""
    name = str(endpoint.name)
    out: list[dict[str, Any]] = []
    if endpoint.network:
        found = sorted(
            {
                address
                for model in endpoint.deployed_models
                for uri in (
                    model.private_endpoints.predict_http_uri,
                    model.private_endpoints.explain_http_uri,
                    model.private_endpoints.health_http_uri,
                )
                if uri and (address := _address(uri)) is not None
            }
        )
        out.append(
            {
                "name": name,
                "network": str(endpoint.network),
                "ranges": [f"{a}/32" for a in found] or None,
                "via": "peering",
            }
        )
    config = endpoint.private_service_connect_config
    if config and config.enable_private_service_connect:
        for auto in config.psc_automation_configs:
            if not auto.network or not auto.ip_address:
                continue  # not created (yet): nothing answers in that network
            out.append(
                {
                    "name": name,
                    "network": str(auto.network),
                    "ranges": [f"{auto.ip_address}/32"],
                    "via": "psc",
                }
            )
    return out


class VertexEndpointsAdapter(Adapter):
    """Reads the Vertex AI endpoints segmentation checks reach against."""

    def _client(self, location: str) -> Any:
        from google.cloud import aiplatform_v1

        def build() -> Any:
            if self.factory.emulator_host:
                return aiplatform_v1.EndpointServiceClient(
                    credentials=self.factory.credentials,
                    transport="rest",
                    client_options={"api_endpoint": self.factory.http_endpoint},
                )
            return aiplatform_v1.EndpointServiceClient(
                credentials=self.factory.credentials,
                client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"},
            )

        return self.factory._get(f"vertex-endpoints-{location}", build)

    def endpoints(self, project: str, location: str) -> list[dict[str, Any]]:
        """Every VPC placement of the endpoints in ``project`` / ``location`` (all pages)."""
        client = self._client(location)
        parent = f"projects/{project}/locations/{location}"

        def read() -> list[dict[str, Any]]:
            pager = client.list_endpoints(
                request={"parent": parent, "page_size": self.page(PAGE_SIZE)},
                **self.gapic_kwargs(),
            )
            return [entry for endpoint in pager for entry in endpoint_entries(endpoint)]

        return self.call(read, what="aiplatform.endpoints.list", target=parent)
