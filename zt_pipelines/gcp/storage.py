"""Cloud Storage adapter (JSON API): bucket ownership and bucket IAM policies."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.gcp.convert import policy_from_json
from zt_pipelines.policy.snapshot import AllowPolicy
from zt_pipelines.resources import STORAGE


class StorageAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.StorageReader`."""

    def get_bucket_project_number(self, bucket: str) -> str:
        """The number of the project that owns ``bucket``."""
        client = self.factory.storage()

        def run() -> str:
            meta: Any = client.get_bucket(bucket, retry=None, timeout=self.timeout)
            number = meta.project_number
            if not number:
                raise ValueError("bucket metadata without projectNumber")
            return str(number)

        return self.call(run, what="storage.buckets.get", target=STORAGE + bucket)

    def get_bucket_policy(self, bucket: str) -> AllowPolicy:
        """The bucket's allow policy (version 3, with conditions)."""
        client = self.factory.storage()

        def run() -> AllowPolicy:
            policy: Any = client.bucket(bucket).get_iam_policy(
                requested_policy_version=3, retry=None, timeout=self.timeout
            )
            return policy_from_json(policy.bindings, policy.etag or "", policy.version or 1)

        return self.call(run, what="storage.buckets.getIamPolicy", target=STORAGE + bucket)
