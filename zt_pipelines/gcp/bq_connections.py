"""BigQuery Connection API adapter: the service accounts of a project's BigQuery connections.

A BigQuery connection (BigLake and object tables, remote functions, remote models) reaches
Cloud Storage, Cloud Run / Functions and Vertex AI as its own Google-created service account
(``bqcx-NUMBER-XXXX@gcp-sa-bigquery-condel``, one per connection): whoever holds
``bigquery.connections.use`` on it acts as that account. Connections live per location and the
API has no project-wide listing, so a project's connections are listed location by location
(:data:`BIGQUERY_LOCATIONS`).
"""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter, Page, Started
from zt_pipelines.resources import BQCONNECTION

#: the API's largest page
_PAGE = 100
SERVICE = "google.cloud.bigquery.connection.v1.ConnectionService"

#: every location BigQuery serves (BigQuery's locations page): the two multi-regions and the
#: regions. BigQuery Omni locations (aws-*, azure-*) are left out: their connections act as
#: an AWS role or an Azure application, not as a Google service account.
BIGQUERY_LOCATIONS: tuple[str, ...] = (
    "us",
    "eu",
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
)


def connection_accounts(connection: Any) -> list[str]:
    """The Google service accounts a connection (proto-plus or raw ``Connection``) acts as:
    a Cloud resource, Cloud SQL or Spark connection's ``service_account_id``."""
    found = []
    for kind in ("cloud_resource", "cloud_sql", "spark"):
        if _has(connection, kind):
            email = str(getattr(connection, kind).service_account_id or "").strip().lower()
            if "@" in email:
                found.append(email)
    return found


def _has(message: Any, field: str) -> bool:
    pb = getattr(type(message), "pb", None)
    raw = pb(message) if pb is not None else message
    return bool(raw.HasField(field))


class BigQueryConnectionAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.ConnectionReader`."""

    def list_connection_accounts(self, project: str, location: str) -> list[str]:
        """The service accounts of every connection of ``project`` in ``location`` (all
        pages)."""
        return self.list_connection_accounts_after(project, location, "")

    def start_list_connection_accounts(
        self, project: str, location: str
    ) -> Started[Page[str]] | None:
        """The first page of :meth:`list_connection_accounts`, without waiting (``None``: use
        the blocking method; a next page: :meth:`list_connection_accounts_after`)."""
        from google.cloud import bigquery_connection_v1 as bqc

        parent = f"projects/{project}/locations/{location}"

        def page(response: Any) -> Page[str]:
            found = [e for c in response.connections for e in connection_accounts(c)]
            return Page(found, str(response.next_page_token))

        return self.start(
            self.factory.bigquery_connection(),
            f"/{SERVICE}/ListConnections",
            bqc.ListConnectionsRequest.pb()(parent=parent, page_size=self.page(_PAGE)),
            bqc.ListConnectionsResponse.pb(),
            page,
            what="bigquery.connections.list",
            target=BQCONNECTION + parent,
            routing=(("parent", parent),),
        )

    def list_connection_accounts_after(self, project: str, location: str, token: str) -> list[str]:
        """:meth:`list_connection_accounts` from the page ``token`` names on (``""``: all)."""
        client = self.factory.bigquery_connection()
        parent = f"projects/{project}/locations/{location}"
        request: dict[str, Any] = {"parent": parent, "page_size": self.page(_PAGE)}
        if token:
            request["page_token"] = token
        return self.call(
            lambda: [
                e
                for c in client.list_connections(request=request, **self.gapic_kwargs())
                for e in connection_accounts(c)
            ],
            what="bigquery.connections.list",
            target=BQCONNECTION + parent,
        )
