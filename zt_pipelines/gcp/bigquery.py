"""BigQuery adapter (REST): dataset access entries and table IAM policies."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.gcp.convert import dataset_access_policy, policy_from_json
from zt_pipelines.policy.snapshot import AllowPolicy
from zt_pipelines.resources import BIGQUERY


class BigQueryAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.BigQueryReader`."""

    def get_dataset_policy(self, project: str, dataset: str) -> AllowPolicy:
        """The dataset's access entries as an allow policy."""
        client = self.factory.bigquery()

        def run() -> AllowPolicy:
            meta: Any = client.get_dataset(f"{project}.{dataset}", retry=None, timeout=self.timeout)
            return dataset_access_policy(meta.access_entries, meta.etag or "", project)

        return self.call(
            run,
            what="bigquery.datasets.get",
            target=f"{BIGQUERY}projects/{project}/datasets/{dataset}",
        )

    def get_table_policy(self, project: str, dataset: str, table: str) -> AllowPolicy:
        """The table's allow policy."""
        client = self.factory.bigquery()

        def run() -> AllowPolicy:
            policy: Any = client.get_iam_policy(
                f"{project}.{dataset}.{table}", retry=None, timeout=self.timeout
            )
            return policy_from_json(policy.bindings, policy.etag or "", policy.version or 1)

        return self.call(
            run,
            what="bigquery.tables.getIamPolicy",
            target=f"{BIGQUERY}projects/{project}/datasets/{dataset}/tables/{table}",
        )
