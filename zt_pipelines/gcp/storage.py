"""Cloud Storage adapter (JSON API): bucket ownership and bucket IAM policies."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

from zt_pipelines.errors import ApiError
from zt_pipelines.gcp._base import Adapter, Started
from zt_pipelines.gcp.convert import policy_from_json
from zt_pipelines.policy.snapshot import AclEntry, AllowPolicy
from zt_pipelines.resources import STORAGE

#: Google's bound on the calls in one batch request of the JSON API
BATCH_LIMIT = 100
_LOG = logging.getLogger("zt_pipelines.gcp")


def _project_number(meta: Any) -> str:
    number = meta.get("projectNumber") if isinstance(meta, dict) else None
    if not number:
        raise ValueError("bucket metadata without projectNumber")
    return str(number)


def _uniform_access(meta: Any) -> bool:
    """``iamConfiguration.uniformBucketLevelAccess.enabled``; absent is off (fail closed: its
    ACLs are not proven off)."""
    config = meta.get("iamConfiguration") if isinstance(meta, dict) else None
    ubla = config.get("uniformBucketLevelAccess") if isinstance(config, dict) else None
    return isinstance(ubla, dict) and ubla.get("enabled") is True


def _acl(meta: Any, key: str) -> tuple[AclEntry, ...] | None:
    """The ACL entries under ``key`` (``acl`` / ``defaultObjectAcl``; ``projection=full``);
    ``None`` when the answer has none (not readable), never "no entries"."""
    raw = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(raw, list):
        return None
    out = []
    for entry in raw:
        if not isinstance(entry, dict) or not entry.get("entity") or not entry.get("role"):
            raise ValueError(f"bucket {key} entry without entity or role")
        out.append(AclEntry(str(entry["entity"]), str(entry["role"])))
    return tuple(out)


#: (project number, uniform bucket-level access on, bucket ACL, default object ACL)
BucketMeta = tuple[str, bool, "tuple[AclEntry, ...] | None", "tuple[AclEntry, ...] | None"]


def _bucket_meta(meta: Any) -> BucketMeta:
    uniform = _uniform_access(meta)
    if uniform:  # ACLs are off: Google sends none, and none would grant anything
        return _project_number(meta), True, None, None
    return _project_number(meta), False, _acl(meta, "acl"), _acl(meta, "defaultObjectAcl")


def _policy(body: Any) -> AllowPolicy:
    from google.api_core.iam import Policy

    if not isinstance(body, dict):
        raise ValueError("bucket IAM policy is not a JSON object")
    policy: Any = Policy.from_api_repr(body)  # type: ignore[no-untyped-call]
    return policy_from_json(policy.bindings, policy.etag or "", policy.version or 1)


def _answer(response: Any) -> Any:
    """The JSON body of one part of a batch response; an error status raises as the library's
    own exception for it (so it is classified like the blocking read's)."""
    from google.api_core import exceptions

    if not 200 <= response.status_code < 300:
        raise exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
    return response.json()


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

    def get_bucket_meta(self, bucket: str) -> BucketMeta:
        """The number of the project that owns ``bucket``, whether uniform bucket-level
        access is on, and — when it is off — its ACL and default object ACL (the same
        ``buckets.get``, ``projection=full``)."""
        client = self.factory.storage()

        def run() -> BucketMeta:
            meta: Any = client.bucket(bucket)
            meta.reload(projection="full", retry=None, timeout=self.timeout)
            return _bucket_meta(meta._properties)

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

    def list_hmac_keys(self, project: str) -> dict[str, tuple[str, ...]]:
        """Service-account email (lower case) → access ids of its HMAC keys in ``project``
        that are not deleted (ACTIVE or INACTIVE: an inactive key can be re-activated).

        One listing per project (``projects.hmacKeys.list`` without ``serviceAccountEmail``,
        every page), filtered by account here: one call however many identities live there.
        """
        client = self.factory.storage()

        def run() -> dict[str, tuple[str, ...]]:
            found: dict[str, list[str]] = {}
            keys: Any = client.list_hmac_keys(
                project_id=project, show_deleted_keys=False, retry=None, timeout=self.timeout
            )
            for key in keys:
                email, access_id = key.service_account_email, key.access_id
                if not email or not access_id:
                    raise ValueError("HMAC key metadata without serviceAccountEmail or accessId")
                if key.state == "DELETED":  # gone for good; every other state can sign again
                    continue
                found.setdefault(str(email).lower(), []).append(str(access_id))
            return {email: tuple(sorted(ids)) for email, ids in found.items()}

        return self.call(
            run, what="storage.hmacKeys.list", target=f"{STORAGE}projects/{project}/hmacKeys"
        )

    def new_batch(self) -> StorageBatch:
        """Reads to send together through the JSON API's batch endpoint (see
        :class:`StorageBatch`)."""
        return StorageBatch(self)


class StorageBatch:
    """Bucket reads asked in one HTTP request: the JSON API's batch endpoint
    (``POST /batch/storage/v1``, ``multipart/mixed``, at most :data:`BATCH_LIMIT` calls), sent
    by the storage library's own ``Client.batch``.

    Each call in it is still its own read with its own answer (the same ``buckets.get`` /
    ``buckets.getIamPolicy`` the blocking methods make, authorised one by one), so nothing is
    less authoritative; what is saved is an HTTP request per read in both processes. Each read
    is a :class:`~zt_pipelines.gcp._base.Started` first attempt: a part that fails transiently
    — or a batch that fails as a whole — is retried by the blocking method with the attempts
    left, a part refused for good is that read's failure.
    """

    def __init__(self, adapter: StorageAdapter) -> None:
        self._adapter = adapter
        self._lock = threading.Lock()
        self._parts: list[tuple[str, dict[str, str], Future[Any]]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._parts)

    @property
    def full(self) -> bool:
        """Whether another read would exceed :data:`BATCH_LIMIT`."""
        return len(self) >= BATCH_LIMIT

    def _add(
        self, path: str, query: dict[str, str], convert: Any, what: str, bucket: str
    ) -> Started[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if len(self._parts) >= BATCH_LIMIT:
                raise ValueError(f"a storage batch holds at most {BATCH_LIMIT} calls")
            self._parts.append((path, query, future))
        _LOG.debug("call %s %s (in a batch request)", what, STORAGE + bucket)
        return Started(
            future, lambda response: convert(_answer(response)), what=what, target=STORAGE + bucket
        )

    def start_bucket_project_number(self, bucket: str) -> Started[str]:
        """:meth:`StorageAdapter.get_bucket_project_number` as a part of this batch."""
        return self._add(
            f"/b/{bucket}", {"projection": "noAcl"}, _project_number, "storage.buckets.get", bucket
        )

    def start_bucket_meta(self, bucket: str) -> Started[BucketMeta]:
        """:meth:`StorageAdapter.get_bucket_meta` as a part of this batch."""
        return self._add(
            f"/b/{bucket}", {"projection": "full"}, _bucket_meta, "storage.buckets.get", bucket
        )

    def start_bucket_policy(self, bucket: str) -> Started[AllowPolicy]:
        """:meth:`StorageAdapter.get_bucket_policy` as a part of this batch."""
        return self._add(
            f"/b/{bucket}/iam",
            {"optionsRequestedPolicyVersion": "3"},
            _policy,
            "storage.buckets.getIamPolicy",
            bucket,
        )

    def send(self) -> None:
        """Send the batch and settle every part's read; never raises (a failure of the
        whole request is every part's transient failure)."""
        with self._lock:
            parts, self._parts = self._parts, []
        if not parts:
            return
        _LOG.debug("storage batch request: %d calls", len(parts))
        try:
            responses = self._exchange(parts)
        except BaseException as exc:  # every part must settle, whatever happened
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            for path, _, future in parts:
                future.set_exception(
                    ApiError(
                        f"storage batch request failed: {reason}",
                        where=STORAGE + path.split("/")[2],
                        code="BATCH_FAILED",
                        transient=True,
                    )
                )
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), response in zip(parts, responses, strict=True):
            future.set_result(response)

    def _exchange(self, parts: list[tuple[str, dict[str, str], Future[Any]]]) -> list[Any]:
        client = self._adapter.factory.storage()
        timeout = self._adapter.timeout
        with client.batch(raise_exception=False) as batch:
            for path, query, _ in parts:
                client._get_resource(path, query_params=dict(query), timeout=timeout, retry=None)
        responses = list(getattr(batch, "_responses", None) or ())
        if len(responses) != len(parts):
            raise ValueError(f"the batch answered {len(responses)} of {len(parts)} calls")
        return responses
