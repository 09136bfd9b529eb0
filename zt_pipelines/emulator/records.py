"""The emulator's request log: one frozen record per call, read by tests and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    """One call the emulator answered (or refused, or failed on purpose).

    Attributes:
        api: the API family (``iam``, ``cloudresourcemanager``, ``storage``, ``aiplatform``, ...).
        method: the full method name, e.g. ``google.iam.admin.v1.IAM/GetServiceAccount`` (gRPC)
            or ``storage.buckets.getIamPolicy`` / ``aiplatform.pipelineJobs.create`` (HTTP).
        target: the resource the call was about, as the client named it.
        caller: the member the bearer token names (``serviceAccount:...``), ``""`` if none.
        status: ``OK`` or the Google status code name (``PERMISSION_DENIED``, ``ABORTED``, ...);
            ``RESET`` for an injected connection reset, ``MALFORMED`` for an injected bad body.
        write: whether the method changes state (marked by method, whether or not it succeeded).
        batched: the call came as a part of a batch request (Cloud Storage's batch endpoint).
    """

    api: str
    method: str
    target: str
    caller: str
    status: str
    write: bool
    batched: bool = False


class RequestLog:
    """A thread-safe, append-only list of :class:`RequestRecord`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        """Add one record."""
        with self._lock:
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        """A copy of every record, oldest first."""
        with self._lock:
            return list(self._records)

    def counts(self) -> dict[str, int]:
        """Method name → number of calls."""
        with self._lock:
            return dict(Counter(r.method for r in self._records))

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()
