"""The audit log file: append one hash-chained JSON line per decision (IO).

Appends are serialised with an exclusive ``flock`` on the log file itself, so several processes
(a notebook, a CI job, the CLI) can share one log: each appender reads the current last line
under the lock, chains after it and fsyncs before releasing. The clock is passed in.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from zt_pipelines.audit.bound import RecordTooLarge, bound
from zt_pipelines.audit.chain import (
    GENESIS,
    ChainReport,
    redact,
    seal,
    sha256_hex,
    verify_chain,
)
from zt_pipelines.audit.mirror import AuditMirror
from zt_pipelines.errors import ApiError, InputError

AUDIT_ENV = "ZT_AUDIT_LOG"


def default_audit_log() -> Path:
    """``$ZT_AUDIT_LOG``, else ``audit.jsonl`` in the platform's user state directory
    (platformdirs: ``$XDG_STATE_HOME/zt-pipelines`` or ``~/.local/state/zt-pipelines`` on
    Linux)."""
    configured = os.environ.get(AUDIT_ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_state_dir("zt-pipelines", appauthor=False)) / "audit.jsonl"


_LOG = logging.getLogger("zt_pipelines.audit")

Outcome = Literal["allowed", "refused"]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The system clock in UTC (the default clock at the IO edge)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class AuditIdentity:
    """Who runs one part of the pipeline.

    Attributes:
        role: ``"pipeline"`` for the pipeline service account, ``"step"`` for a step's own,
            ``"launched"`` for the identity a step's launched job (CustomJob, Dataflow,
            batch prediction ...) runs as when it is not the step's own, ``"serving"`` for a
            deploy step's serving identity (both with the step's ``task``, never ``needs``).
        task: the task path for steps (empty for the pipeline).
        service_account: the email (empty when none was resolved).
        source: where the identity came from (``declared``, ``derived``, ``argument`` ...).
        needs: the step's declared needs that were judged, as ``RESOURCE PERM,PERM`` lines
            (written only when there are some).
        job_kind / wrapped_launcher / job_project / job_location: for a GCPC step, its
            launcher kind, whether it was wrapped in a CustomJob, and where its job runs
            (written as ``job`` when there is a kind): drift re-derives the step's implicit
            needs from them as the check did.
        code_project / code_location: for a wrapped container step, where its own
            ``project`` / ``location`` inputs point its code (its job runs in the pipeline's
            place); written in ``job`` only when set.
    """

    role: Literal["pipeline", "step", "launched", "serving"]
    service_account: str
    task: str = ""
    source: str = ""
    needs: tuple[str, ...] = ()
    job_kind: str = ""
    wrapped_launcher: bool = False
    job_project: str = ""
    job_location: str = ""
    code_project: str = ""
    code_location: str = ""


@dataclass(frozen=True)
class Decision:
    """One decision to record: everything an auditor needs, nothing secret.

    Attributes:
        action: what was attempted (``submit``, ``schedule``, ``verify``, ``cli-submit`` ...).
        outcome: ``allowed`` or ``refused``.
        submitter: the principal that asked (``user:...``, ``serviceAccount:...``, or
            ``unknown``).
        project: the Vertex project.
        location: the Vertex region.
        pipeline: ``pipelineInfo.name``.
        spec_sha256: sha256 of the exact spec bytes that were verified (and, if allowed,
            submitted); empty when the refusal came before a spec existed.
        identities: the pipeline identity and every step identity.
        findings: the report's findings as plain mappings (code, severity, step, ...).
        job_id: the Vertex job or schedule id, when one was (or would have been) created.
        reason: a one-line summary (the error for refusals before verification).
        decision_sha256: sha256 of everything that was judged — the request as it is (or
            would be) sent (spec, runtime config, service account, network, labels, ...) and
            every step's identity and needs (see docs/audit.md); written when set.
        baseline: what an approval saw, for the checks after submission (docs/monitoring.md):
            the posture of every approved identity, the nodes read, and hashes of the runtime
            config's parts; written when set.
        policy: the organisation policy the decision was judged under (``source``,
            ``sha256``, ``rules_sha256``, :func:`~zt_pipelines.policy.orgpolicy.policy_identity`);
            written when set.
        judged_at: the time the decision was judged at when it was not the record's own
            (a what-if, ZT405); written when set.
        window: until when a schedule's grants were judged to hold (``until``: its end
            time, ``""`` for ever); written for schedule and export decisions.
    """

    action: str
    outcome: Outcome
    submitter: str
    project: str
    location: str
    pipeline: str
    spec_sha256: str = ""
    identities: tuple[AuditIdentity, ...] = ()
    findings: tuple[Mapping[str, Any], ...] = ()
    job_id: str = ""
    reason: str = ""
    decision_sha256: str = ""
    baseline: Mapping[str, Any] | None = None
    policy: Mapping[str, str] | None = None
    judged_at: str = ""
    window: Mapping[str, str] | None = None

    def to_body(self, time: datetime) -> dict[str, Any]:
        """The record body (before chaining) for a decision taken at ``time``."""
        body: dict[str, Any] = {
            "time": time.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
            "action": self.action,
            "outcome": self.outcome,
            "submitter": self.submitter,
            "project": self.project,
            "location": self.location,
            "pipeline": self.pipeline,
            "spec_sha256": self.spec_sha256,
            "identities": [
                {
                    "role": i.role,
                    "task": i.task,
                    "service_account": i.service_account,
                    "source": i.source,
                    **({"needs": list(i.needs)} if i.needs else {}),
                    **(
                        {
                            "job": {
                                "kind": i.job_kind,
                                "wrapped": i.wrapped_launcher,
                                "project": i.job_project,
                                "location": i.job_location,
                                **_code_place(i),
                            }
                        }
                        if i.job_kind
                        else {}
                    ),
                }
                for i in self.identities
            ],
            "findings": [dict(f) for f in self.findings],
            "job_id": self.job_id,
            "reason": self.reason,
        }
        if self.decision_sha256:
            body["decision_sha256"] = self.decision_sha256
        if self.baseline is not None:
            body["baseline"] = dict(self.baseline)
        if self.policy is not None:
            body["policy"] = dict(self.policy)
        if self.judged_at:
            body["judged_at"] = self.judged_at
        if self.window is not None:
            body["window"] = dict(self.window)
        return body


def _code_place(identity: AuditIdentity) -> dict[str, str]:
    """Where a wrapped step's code is pointed, for its record's ``job`` (only what is set, so
    the records of other steps stay as they were)."""
    out = {}
    if identity.code_project:
        out["code_project"] = identity.code_project
    if identity.code_location:
        out["code_location"] = identity.code_location
    return out


@dataclass(frozen=True)
class AuditEntry:
    """A record as written: its position, its line's sha256, and the record itself."""

    seq: int
    line_sha256: str
    record: dict[str, Any] = field(hash=False, compare=False)


class AuditLog:
    """An append-only, hash-chained JSON Lines decision log.

    Args:
        path: the log file (created with its parent directories, mode 0600).
        clock: returns the current time (tests pass a fixed clock; outside a test suite a
            time more than five minutes from the machine's is kept as ``clock_time`` and the
            record carries the machine's time).
        mirror: optional second sink (e.g. :class:`~zt_pipelines.audit.mirror.CloudLoggingMirror`)
            that receives every record after it is written; a mirror failure is an
            :class:`ApiError`, so a caller that requires the mirror fails closed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = utc_now,
        mirror: AuditMirror | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.mirror = mirror

    def append(self, decision: Decision) -> AuditEntry:
        """Append ``decision`` as the next line of the chain and return what was written.

        Raises:
            ApiError: the file (or the mirror) could not be written.
        """
        try:
            body = bound(_stamped(decision, self.clock()))
        except RecordTooLarge as exc:  # checked before anything is written
            raise ApiError(
                f"cannot write the audit record: {exc}",
                where=str(self.path),
                fix="split the pipeline into smaller ones; nothing is submitted without its "
                "audit record",
            ) from None
        try:
            with self._locked() as fd:
                prev, seq = _last_link(fd)
                line = seal(body, prev=prev, seq=seq)
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, line + b"\n")
                os.fsync(fd)
        except _BrokenTail as exc:
            raise ApiError(
                f"cannot append to the audit log: {exc}",
                where=str(self.path),
                fix=f"run `zt-pipelines audit verify {self.path}` to see what happened to it; "
                "keep the file as evidence and start a new log (ZT_AUDIT_LOG or audit_log=)",
            ) from None
        except OSError as exc:
            raise ApiError(
                f"cannot append to the audit log ({exc.strerror or exc})",
                where=str(self.path),
                fix="make the audit log writable; nothing is submitted without an audit record",
            ) from exc
        record = json.loads(line)  # our own canonical line: no limits to apply
        entry = AuditEntry(seq=seq, line_sha256=sha256_hex(line), record=record)
        _LOG.info(
            "audit seq=%d outcome=%s pipeline=%s spec=%s",
            seq,
            decision.outcome,
            redact(decision.pipeline),
            decision.spec_sha256[:12],
        )
        if self.mirror is not None:
            try:
                self.mirror.emit(entry.record)
            except Exception as exc:  # any sink failure: the caller decides; we never hide it
                raise ApiError(
                    f"cannot mirror the audit record ({type(exc).__name__}: {redact(str(exc))})",
                    where=type(self.mirror).__name__,
                    fix="check the mirror's destination and permissions",
                ) from exc
        return entry

    def records(self) -> list[dict[str, Any]]:
        """Every record in file order (unverified; use :meth:`verify` first)."""
        return [_loads(line) for line in self.lines()]

    def lines(self) -> list[bytes]:
        """The raw lines, without newlines; an absent file is an empty log."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InputError(
                f"cannot read audit log ({exc.strerror or exc})", where=str(self.path)
            ) from exc
        # a blank line is kept (verify reports it); only the final newline ends the last line
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return lines

    def verify(self, *, expect_head: str | None = None) -> ChainReport:
        """Verify the whole chain (see :func:`~zt_pipelines.audit.chain.verify_chain`)."""
        return verify_chain(self.lines(), expect_head=expect_head)

    @contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock


def _stamped(decision: Decision, clock_time: datetime) -> dict[str, Any]:
    """The record body at the machine's time: a clock far from it (outside a test suite,
    :mod:`zt_pipelines.clock`) cannot date a record — its time is kept beside, as
    ``clock_time``, so the record says what the caller claimed."""
    from zt_pipelines.clock import decision_time, machine_now

    if not isinstance(clock_time, datetime):  # the record of a refusal must still be written
        body = decision.to_body(machine_now())
        body["clock_time"] = f"(not a time: a {type(clock_time).__name__})"
        return body
    when = decision_time(clock_time)
    if not when.what_if:
        return decision.to_body(when.judged_at)
    body = decision.to_body(when.machine)
    body["clock_time"] = when.judged_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return body


class _BrokenTail(OSError):
    """The log's last line is not a record this chain can continue after."""


def _last_link(fd: int) -> tuple[str, int]:
    """(sha256 of the last line, next seq) read from an open, locked log."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return GENESIS, 0
    chunk = 4096
    data = b""
    pos = size
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        os.lseek(fd, pos, os.SEEK_SET)
        data = os.read(fd, step) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped or pos == 0:
            last = stripped.rsplit(b"\n", 1)[-1]
            break
        chunk *= 2
    try:
        seq = int(_loads(last).get("seq", -1)) + 1
    except (ValueError, TypeError):
        seq = -1
    if seq <= 0:
        raise _BrokenTail(
            f"its last line ({len(last):,} bytes) is not a chained record: {last[:60]!r}"
        )
    return sha256_hex(last), seq


def _loads(line: bytes) -> dict[str, Any]:
    from zt_pipelines.errors import InputError
    from zt_pipelines.loaders import decode, parse_json

    try:
        value = parse_json(
            decode(line, where="audit line", error=InputError),
            where="audit line",
            kind="audit line",
            error=InputError,
        )
    except InputError as exc:
        raise ValueError(exc.message) from None
    if not isinstance(value, dict):
        raise ValueError("audit line is not a JSON object")
    return value


def identities_from(
    pipeline_service_account: str | None, steps: Sequence[Any], *, pipeline_source: str = ""
) -> tuple[AuditIdentity, ...]:
    """Audit identities from a pipeline SA and :class:`~zt_pipelines.model.StepIdentity` steps."""
    found = [AuditIdentity("pipeline", pipeline_service_account or "", source=pipeline_source)]
    for step in steps:
        found.append(
            AuditIdentity(
                "step",
                getattr(step, "service_account", None) or "",
                task=str(getattr(step, "task", "")),
                source=str(getattr(step, "source", "")),
                needs=tuple(_need_line(n) for n in getattr(step, "needs", ())),
                job_kind=str(getattr(step, "job_kind", "") or ""),
                wrapped_launcher=bool(getattr(step, "wrapped_launcher", False)),
                job_project=str(getattr(step, "job_project", None) or ""),
                job_location=str(getattr(step, "job_location", None) or ""),
                code_project=str(getattr(step, "code_project", None) or ""),
                code_location=str(getattr(step, "code_location", None) or ""),
            )
        )
        own = (getattr(step, "service_account", None) or "").lower()
        for role, attribute in (
            ("launched", "launched_service_account"),
            ("serving", "serving_service_account"),
        ):
            other = getattr(step, attribute, None) or ""
            if other and other.lower() != own:  # drift and usage follow it too
                found.append(
                    AuditIdentity(
                        role,  # type: ignore[arg-type]
                        other,
                        task=str(getattr(step, "task", "")),
                        source=str(getattr(step, "launched_identity_field", "") or role)
                        if role == "launched"
                        else "serving",
                    )
                )
    return tuple(found)


def _need_line(need: Any) -> str:
    """``RESOURCE[/PREFIX] perm,perm`` for one :class:`~zt_pipelines.model.Need`."""
    ref = need.resource
    where = str(getattr(ref, "name", ref))
    prefix = getattr(ref, "prefix", None)
    if prefix:
        where += f" (objects {prefix}*)"
    return f"{where} {','.join(need.permissions)}"
