"""Tamper-evident audit trail: one hash-chained JSON line per decision.

- :mod:`zt_pipelines.audit.chain` — pure: sealing, redaction, chain verification.
- :mod:`zt_pipelines.audit.log` — IO: the locked, append-only file.
- :mod:`zt_pipelines.audit.mirror` — optional second sinks (Cloud Logging, in-memory).
"""

from __future__ import annotations

from zt_pipelines.audit.chain import (
    GENESIS,
    REDACTED,
    ChainProblem,
    ChainReport,
    redact,
    verify_chain,
)
from zt_pipelines.audit.log import (
    AUDIT_ENV,
    AuditEntry,
    AuditIdentity,
    AuditLog,
    Decision,
    default_audit_log,
    identities_from,
    utc_now,
)
from zt_pipelines.audit.mirror import AuditMirror, CloudLoggingMirror, InMemoryMirror

__all__ = [
    "AUDIT_ENV",
    "GENESIS",
    "REDACTED",
    "AuditEntry",
    "AuditIdentity",
    "AuditLog",
    "AuditMirror",
    "ChainProblem",
    "ChainReport",
    "CloudLoggingMirror",
    "Decision",
    "InMemoryMirror",
    "default_audit_log",
    "identities_from",
    "redact",
    "utc_now",
    "verify_chain",
]
