"""BigQuery adapter (REST): dataset access entries and table IAM policies."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.gcp.convert import dataset_access_policy, policy_from_json
from zt_pipelines.policy.snapshot import AllowPolicy
from zt_pipelines.resources import BIGQUERY


def get_dataset_v3(client: Any, project: str, dataset: str, *, timeout: Any = None) -> Any:
    """``datasets.get`` with ``accessPolicyVersion=3`` as the library's ``Dataset``: below 3,
    BigQuery renames a conditional access entry's role and drops its condition (the library's
    ``get_dataset`` has no argument for the version, so the same call is made with it)."""
    from google.cloud.bigquery import Dataset, DatasetReference

    path = DatasetReference(project, dataset).path
    body = client._call_api(
        None,
        span_name="BigQuery.getDataset",
        span_attributes={"path": path},
        method="GET",
        path=path,
        timeout=timeout,
        query_params={"accessPolicyVersion": 3},
    )
    return Dataset.from_api_repr(body)


def get_table_policy_v3(client: Any, table: str, *, timeout: Any = None) -> Any:
    """``tables.getIamPolicy`` at ``requestedPolicyVersion=3`` as an ``api_core`` ``Policy``
    (``table``: ``PROJECT.DATASET.TABLE``): the library's ``get_iam_policy`` only asks version
    1, where IAM renames a conditional binding's role and hides its condition."""
    from google.api_core.iam import Policy
    from google.cloud.bigquery import TableReference

    path = TableReference.from_string(table).path + ":getIamPolicy"
    body = client._call_api(
        None,
        span_name="BigQuery.getIamPolicy",
        span_attributes={"path": path},
        method="POST",
        path=path,
        data={"options": {"requestedPolicyVersion": 3}},
        timeout=timeout,
    )
    return Policy.from_api_repr(body)  # type: ignore[no-untyped-call]


class BigQueryAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.BigQueryReader`."""

    def get_dataset_policy(self, project: str, dataset: str) -> AllowPolicy:
        """The dataset's access entries as an allow policy."""
        client = self.factory.bigquery()

        def run() -> AllowPolicy:
            meta: Any = get_dataset_v3(client, project, dataset, timeout=self.timeout)
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
            policy: Any = get_table_policy_v3(
                client, f"{project}.{dataset}.{table}", timeout=self.timeout
            )
            return policy_from_json(policy.bindings, policy.etag or "", policy.version or 1)

        return self.call(
            run,
            what="bigquery.tables.getIamPolicy",
            target=f"{BIGQUERY}projects/{project}/datasets/{dataset}/tables/{table}",
        )
