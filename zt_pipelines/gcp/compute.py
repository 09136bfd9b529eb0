"""Compute Engine adapter (``google-cloud-compute``, REST): networks, subnetworks, firewall
rules, PSC network attachments and private services access ranges — fetch only.

Each method returns the Compute resource in the snapshot's ``segmentation`` section form
(Compute JSON field names, see docs/segmentation.md), so a live read and a snapshot file share
one parser. Failures raise :class:`~zt_pipelines.errors.ApiError` (after retries); a NOT_FOUND
on a ``get`` is an answer (``None``: the resource does not exist), never an empty success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from zt_pipelines.errors import ApiError
from zt_pipelines.gcp._base import Adapter

T = TypeVar("T")


def _short(url: str) -> str:
    """``projects/...`` from a Compute self link (or the name itself)."""
    marker = "/projects/"
    return "projects/" + url.split(marker, 1)[1] if marker in url else url


class ComputeAdapter(Adapter):
    """Reads the Compute resources segmentation needs."""

    def _client(self, name: str) -> Any:
        from google.cloud import compute_v1

        def build() -> Any:
            cls = getattr(compute_v1, name)
            creds = self.factory.credentials
            if self.factory.http_endpoint:
                return cls(
                    credentials=creds, client_options={"api_endpoint": self.factory.http_endpoint}
                )
            return cls(credentials=creds)

        return self.factory._get(f"compute.{name}", build)

    def call(self, fn: Callable[[], T], *, what: str, target: str) -> T:
        """As :meth:`Adapter.call`; a body that is not Compute JSON counts as malformed
        (transient), like any other client's bad body."""
        from google.protobuf import json_format

        def parsed() -> T:
            try:
                return fn()
            except json_format.ParseError as exc:
                raise ValueError(f"malformed Compute response: {exc}") from exc

        return super().call(parsed, what=what, target=target)

    def _get(self, fn: Any, *, what: str, target: str) -> Any:
        try:
            return self.call(fn, what=what, target=target)
        except ApiError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise

    def network(self, project: str, name: str) -> dict[str, Any] | None:
        """The network with its ACTIVE peerings, or ``None`` when it does not exist."""
        client = self._client("NetworksClient")
        found = self._get(
            lambda: client.get(project=project, network=name, **self.gapic_kwargs()),
            what="compute.networks.get",
            target=f"projects/{project}/global/networks/{name}",
        )
        if found is None:
            return None
        return {
            "name": f"projects/{project}/global/networks/{found.name}",
            "peerings": [
                _short(p.network) for p in found.peerings if str(p.state or "ACTIVE") == "ACTIVE"
            ],
        }

    def subnetwork(self, project: str, region: str, name: str) -> dict[str, Any] | None:
        """The subnetwork with its primary and secondary ranges, or ``None``."""
        client = self._client("SubnetworksClient")
        found = self._get(
            lambda: client.get(
                project=project, region=region, subnetwork=name, **self.gapic_kwargs()
            ),
            what="compute.subnetworks.get",
            target=f"projects/{project}/regions/{region}/subnetworks/{name}",
        )
        if found is None:
            return None
        if not found.ip_cidr_range:
            raise ApiError(
                f"subnetwork {name} has no ipCidrRange", code="MALFORMED", where="compute"
            )
        return {
            "name": f"projects/{project}/regions/{region}/subnetworks/{found.name}",
            "network": _short(found.network),
            "ipCidrRange": found.ip_cidr_range,
            "secondaryRanges": [r.ip_cidr_range for r in found.secondary_ip_ranges],
            "privateIpGoogleAccess": bool(found.private_ip_google_access),
        }

    def network_attachment(self, project: str, region: str, name: str) -> dict[str, Any] | None:
        """The PSC network attachment, or ``None``."""
        client = self._client("NetworkAttachmentsClient")
        found = self._get(
            lambda: client.get(
                project=project, region=region, network_attachment=name, **self.gapic_kwargs()
            ),
            what="compute.networkAttachments.get",
            target=f"projects/{project}/regions/{region}/networkAttachments/{name}",
        )
        if found is None:
            return None
        return {
            "name": f"projects/{project}/regions/{region}/networkAttachments/{found.name}",
            "network": _short(found.network),
            "subnetworks": [_short(s) for s in found.subnetworks],
            "connectionPreference": str(found.connection_preference or "ACCEPT_MANUAL"),
        }

    def firewalls(self, project: str) -> list[dict[str, Any]]:
        """Every VPC firewall rule of the project (all pages)."""
        client = self._client("FirewallsClient")

        def run() -> list[dict[str, Any]]:
            out = []
            request = {"project": project, "max_results": self.page(500)}
            for rule in client.list(request=request, **self.gapic_kwargs()):
                raw: dict[str, Any] = {
                    "name": f"projects/{project}/global/firewalls/{rule.name}",
                    "network": _short(rule.network),
                    "direction": str(rule.direction or "INGRESS"),
                    "priority": int(rule.priority if rule.priority is not None else 1000),
                    "disabled": bool(rule.disabled),
                }
                key = "allowed" if rule.allowed else "denied"
                entries = rule.allowed or rule.denied
                if not entries:
                    raise ValueError(f"firewall rule {rule.name} has no allowed/denied entry")
                raw[key] = [
                    {"IPProtocol": e.I_p_protocol, **({"ports": list(e.ports)} if e.ports else {})}
                    for e in entries
                ]
                for field, attr in (
                    ("sourceRanges", "source_ranges"),
                    ("destinationRanges", "destination_ranges"),
                    ("sourceTags", "source_tags"),
                    ("targetTags", "target_tags"),
                    ("sourceServiceAccounts", "source_service_accounts"),
                    ("targetServiceAccounts", "target_service_accounts"),
                ):
                    values = list(getattr(rule, attr))
                    if values:
                        raw[field] = values
                out.append(raw)
            return out

        return self.call(run, what="compute.firewalls.list", target=f"projects/{project}")

    def allocated_ranges(self, project: str) -> list[dict[str, Any]]:
        """The project's private services access ranges (global addresses, VPC_PEERING)."""
        client = self._client("GlobalAddressesClient")

        def run() -> list[dict[str, Any]]:
            out = []
            request = {"project": project, "max_results": self.page(500)}
            for a in client.list(request=request, **self.gapic_kwargs()):
                if str(a.purpose) != "VPC_PEERING":
                    continue
                out.append(
                    {
                        "name": f"projects/{project}/global/addresses/{a.name}",
                        "network": _short(a.network),
                        "range": f"{a.address}/{a.prefix_length}",
                    }
                )
            return out

        return self.call(run, what="compute.globalAddresses.list", target=f"projects/{project}")
