"""Second sinks for audit records: an interface, an in-memory sink and Cloud Logging (IO).

A mirror is the external anchor of the hash chain: a record that reached Cloud Logging
cannot be rewritten by whoever can edit the local file.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

LOG_NAME = "zt-pipelines-audit"


class AuditMirror(abc.ABC):
    """Receives every audit record after it is appended to the file.

    Implementations must not transform the record (it is already redacted and sealed), and
    should raise on failure: :class:`~zt_pipelines.audit.log.AuditLog` turns any exception into
    an :class:`~zt_pipelines.errors.ApiError`.
    """

    @abc.abstractmethod
    def emit(self, record: Mapping[str, Any]) -> None:
        """Deliver one sealed record."""


class InMemoryMirror(AuditMirror):
    """Keeps records in a list: for tests, and for notebooks that want to show them."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: Mapping[str, Any]) -> None:
        """Append a copy of ``record`` to :attr:`records`."""
        self.records.append(dict(record))


class CloudLoggingMirror(AuditMirror):
    """Writes each record as a structured entry to Cloud Logging (``google-cloud-logging``).

    Args:
        project: the project that owns the log.
        log_name: the log id (default ``zt-pipelines-audit``).
        credentials: google-auth credentials (ADC when ``None``).
        client: an existing ``google.cloud.logging.Client`` (takes precedence).
    """

    def __init__(
        self,
        project: str,
        *,
        log_name: str = LOG_NAME,
        credentials: Any = None,
        client: Any = None,
    ) -> None:
        if client is None:
            from google.cloud import logging as cloud_logging  # lazy: only when mirroring

            client = cloud_logging.Client(  # type: ignore[no-untyped-call]
                project=project, credentials=credentials
            )
        self._logger = client.logger(log_name)

    def emit(self, record: Mapping[str, Any]) -> None:
        """Write the record; refusals are logged at WARNING, allowed decisions at NOTICE."""
        severity = "WARNING" if record.get("outcome") == "refused" else "NOTICE"
        labels = {"zt_seq": str(record.get("seq", "")), "zt_outcome": str(record.get("outcome"))}
        self._logger.log_struct(dict(record), severity=severity, labels=labels)
