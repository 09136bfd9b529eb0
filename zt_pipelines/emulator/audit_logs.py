"""Cloud Audit Logs the emulator serves through Cloud Logging ``entries.list`` (gRPC).

Entries are ``LogEntry`` messages whose ``protoPayload`` is a ``google.cloud.audit.AuditLog``
(``methodName``, ``resourceName``, ``authenticationInfo.principalEmail``,
``authorizationInfo[].permission/resource/granted``), written to
``projects/P/logs/cloudaudit.googleapis.com%2Factivity`` or ``...%2Fdata_access``.

What is logged:

- every step of a simulated run, during its task's window: by default one access per
  permission its identity is granted directly (each binding naming it, basic roles excepted) —
  what a least-privilege step does with what it was given — minus a :class:`RunScript`'s
  ``omit``, plus its ``accesses``;
- accesses tests add with :meth:`AuditLogStore.log_access` (e.g. a use outside any run), and
  bulk entries (:meth:`AuditLogStore.add_entries`, for benchmarks).

Data Access entries exist only for services whose project ``auditConfigs`` enable
``DATA_READ``/``DATA_WRITE`` (BigQuery's are always on), as on Google; Admin Activity entries
always exist. Filters: the subset of the Logging query language the usage reader writes
(``logName``, ``protoPayload.authenticationInfo.principalEmail``, ``timestamp``; ``=`` with
``OR`` groups, ``>=``/``<=``/``>``/``<``; ``AND``); anything else is INVALID_ARGUMENT.
"""

from __future__ import annotations

import bisect
import datetime
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2.types import log_entry

from zt_pipelines.monitor.usage import is_data_access
from zt_pipelines.policy.conditions import parse_rfc3339

ACTIVITY = "cloudaudit.googleapis.com%2Factivity"
DATA_ACCESS = "cloudaudit.googleapis.com%2Fdata_access"
_LogEntry = log_entry.LogEntry.pb()
_ALWAYS_ON = frozenset({"bigquery.googleapis.com"})
_BASIC = frozenset({"roles/owner", "roles/editor", "roles/viewer"})


@dataclass(frozen=True, order=True)
class StoredEntry:
    """One entry with what filters read, kept sorted by time."""

    timestamp: datetime.datetime
    seq: int
    principal: str
    log_name: str
    entry: Any  # the LogEntry protobuf


def service_of(resource: str) -> str:
    """The API service of a full resource name (``//storage.googleapis.com/b`` → storage)."""
    if resource.startswith("//"):
        return resource[2:].split("/", 1)[0]
    return ""


def log_resource(resource: str) -> str:
    """The resource name an audit log shows for a full resource name."""
    service = service_of(resource)
    rest = resource[2 + len(service) + 1 :] if service else resource
    if service == "storage.googleapis.com":
        bucket, _, obj = rest.partition("/")
        return f"projects/_/buckets/{bucket}" + (f"/objects/{obj}" if obj else "")
    return rest


def build_entry(
    *,
    project: str,
    principal: str,
    permission: str,
    resource: str,
    at: datetime.datetime,
    granted: bool = True,
) -> tuple[str, Any]:
    """(log name, LogEntry) for ``principal`` using ``permission`` on ``resource``."""
    service = service_of(resource) or permission.split(".", 1)[0] + ".googleapis.com"
    name = log_resource(resource)
    kind = DATA_ACCESS if is_data_access(permission) else ACTIVITY
    payload = audit_log_pb2.AuditLog(
        service_name=service,
        method_name=permission,
        resource_name=name,
    )
    payload.authentication_info.principal_email = principal
    info = payload.authorization_info.add()
    info.resource = name
    info.permission = permission
    info.granted = granted
    entry = _LogEntry(
        log_name=f"projects/{project}/logs/{kind}",
        insert_id=uuid.uuid4().hex[:16],
    )
    entry.proto_payload.Pack(payload)
    entry.timestamp.FromDatetime(at.astimezone(datetime.timezone.utc).replace(tzinfo=None))
    entry.resource.type = "audited_resource"
    entry.resource.labels["service"] = service
    entry.resource.labels["project_id"] = project
    return entry.log_name, entry


class AuditLogStore:
    """The audit log entries and audit configs the emulator serves (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[StoredEntry] = []
        self._seq = 0
        self._selected: dict[tuple[str, str], tuple[int, list[Any]]] = {}
        #: project id -> service -> enabled log types (``DATA_READ``, ``DATA_WRITE``, ...)
        self.audit_configs: dict[str, dict[str, tuple[str, ...]]] = {}
        #: the ancestors (``folders/F``, ``organizations/O``) of a project: their auditConfigs
        #: apply to it too
        self.ancestors: Callable[[str], list[str]] = lambda _project: []
        #: Log Router sinks by parent, and log views by name (organisation-scale reads)
        self.sinks: dict[str, list[Any]] = {}
        self.views: dict[str, Any] = {}

    def set_audit_configs(self, project: str, configs: dict[str, tuple[str, ...]]) -> None:
        """Set the ``auditConfigs`` of a project (by id) or of a folder or organisation
        (``folders/F``, ``organizations/O``: inherited by every project below): service (or
        ``allServices``) → log types."""
        with self._lock:
            self.audit_configs[project] = dict(configs)

    def add_sink(self, parent: str, sink: Any) -> None:
        """Add a Log Router sink (a ``LogSink`` protobuf) on ``parent`` (``organizations/O``,
        ``folders/F`` or ``projects/P``)."""
        for text in (sink.filter, *(e.filter for e in sink.exclusions)):
            if text.strip():
                parse_filter(text)  # only filters this emulator can apply
        with self._lock:
            self.sinks.setdefault(parent, []).append(sink)
            self._selected.clear()

    def add_view(self, view: Any) -> None:
        """Add a log view (a ``LogView`` protobuf named ``projects/P/locations/L/buckets/B/
        views/V``) over its bucket's entries."""
        if view.filter.strip():
            parse_filter(view.filter)
        with self._lock:
            self.views[view.name] = view
            self._selected.clear()

    def routed(
        self, bucket: str, projects: Iterable[str], ancestry: Callable[[str], list[str]]
    ) -> list[tuple[str, list[Any]]]:
        """(project id, the sinks that route it) for each of ``projects`` whose entries reach
        the log bucket ``bucket`` through an enabled sink on it or (``includeChildren``) on an
        ancestor; ``ancestry(project)`` lists its ancestors (``folders/F``, ``organizations/O``)."""
        destination = f"logging.googleapis.com/{bucket}"
        with self._lock:
            sinks = {k: list(v) for k, v in self.sinks.items()}
        out = []
        for project in projects:
            chain = [f"projects/{project}", *ancestry(project)]
            routing = [
                sink
                for index, parent in enumerate(chain)
                for sink in sinks.get(parent, ())
                if sink.destination == destination
                and not sink.disabled
                and (index == 0 or sink.include_children)
            ]
            if routing:
                out.append((project, routing))
        return out

    def data_access_on(
        self, project: str, service: str, permission: str, principal: str = ""
    ) -> bool:
        """Whether Data Access logs record ``principal`` using ``permission`` on ``service``
        in ``project`` (a log type entry ``"DATA_READ exempts serviceAccount:E"`` exempts E
        at any level, as ``exemptedMembers`` does)."""
        if service in _ALWAYS_ON:
            return True
        wanted = "DATA_READ" if permission.endswith((".get", ".list")) else "DATA_WRITE"
        exempt = f"{wanted} exempts serviceAccount:{principal}".lower()
        enabled = False
        for where in (project, *self.ancestors(project)):
            configs = self.audit_configs.get(where, {})
            types = {
                t.lower() for t in (*configs.get(service, ()), *configs.get("allServices", ()))
            }
            if exempt in types:
                return False
            enabled = enabled or wanted.lower() in types
        return enabled

    def log_access(
        self,
        *,
        project: str,
        principal: str,
        permission: str,
        resource: str,
        at: datetime.datetime,
        granted: bool = True,
    ) -> None:
        """Log one access (whether the project's audit configs would record it is checked)."""
        service = service_of(resource) or permission.split(".", 1)[0] + ".googleapis.com"
        if is_data_access(permission) and not self.data_access_on(
            project, service, permission, principal
        ):
            return
        log_name, entry = build_entry(
            project=project,
            principal=principal,
            permission=permission,
            resource=resource,
            at=at,
            granted=granted,
        )
        self._add(at, principal, log_name, entry)

    def add_entries(self, entries: Iterable[tuple[datetime.datetime, str, str, Any]]) -> None:
        """Add prepared entries: (timestamp, principal email, log name, LogEntry)."""
        for at, principal, log_name, entry in entries:
            self._add(at, principal, log_name, entry)

    def _add(self, at: datetime.datetime, principal: str, log_name: str, entry: Any) -> None:
        with self._lock:
            self._seq += 1
            bisect.insort(self._entries, StoredEntry(at, self._seq, principal, log_name, entry))

    def select_stored(self, project: str, keep: Callable[[StoredEntry], bool]) -> list[StoredEntry]:
        """The project's stored entries ``keep`` accepts, oldest first (log view reads)."""
        prefix = f"projects/{project}/logs/"
        with self._lock:
            entries = list(self._entries)
        return [s for s in entries if s.log_name.startswith(prefix) and keep(s)]

    def select(
        self, project: str, keep: Callable[[StoredEntry], bool], *, key: str = ""
    ) -> list[Any]:
        """The project's entries ``keep`` accepts, oldest first. With a ``key`` (the filter
        text) the result is kept until the next write, so paging through it is cheap."""
        prefix = f"projects/{project}/logs/"
        with self._lock:
            cached = self._selected.get((project, key)) if key else None
            if cached is not None and cached[0] == self._seq:
                return cached[1]
            entries = list(self._entries)
            seq = self._seq
        found = [s.entry for s in entries if s.log_name.startswith(prefix) and keep(s)]
        if key:
            with self._lock:
                self._selected[(project, key)] = (seq, found)
        return found


class FilterError(ValueError):
    """A Logging filter the emulator does not understand (answered with INVALID_ARGUMENT)."""


_TERM = re.compile(
    r"^\s*(logName|protoPayload\.authenticationInfo\.principalEmail|timestamp)\s*"
    r'(>=|<=|=|>|<|:)\s*(\(.*\)|"[^"]*")\s*$'
)


def parse_filter(text: str) -> Callable[[StoredEntry], bool]:
    """A predicate for the supported subset of the Logging query language.

    Raises:
        FilterError: anything else (never silently ignored; INVALID_ARGUMENT on the wire).
    """

    checks: list[Callable[[StoredEntry], bool]] = []
    for part in _split_and(text):
        ids = _log_ids(part)
        if ids is not None:
            checks.append(_log_id_check(ids))
            continue
        match = _TERM.match(part)
        if match is None:
            raise FilterError(f"unsupported filter term {part!r}")
        field, op, raw = match.groups()
        values = [v for v in re.findall(r'"([^"]*)"', raw)]
        if raw.startswith("(") and not re.fullmatch(r'\(\s*"[^"]*"(\s+OR\s+"[^"]*")*\s*\)', raw):
            raise FilterError(f"unsupported value group {raw!r}")
        checks.append(_check(field, op, values))
    return lambda stored: all(check(stored) for check in checks)


_LOG_ID = r'log_id\(\s*"([^"]*)"\s*\)'
_LOG_IDS = re.compile(rf"^\s*\(?\s*{_LOG_ID}(\s+OR\s+{_LOG_ID})*\s*\)?\s*$")


def _log_ids(part: str) -> frozenset[str] | None:
    """The log ids of a ``log_id("...")`` term (or an ``OR`` group of them), else ``None``."""
    if _LOG_IDS.match(part) is None:
        return None
    return frozenset(re.findall(_LOG_ID, part))


def _log_id_check(ids: frozenset[str]) -> Callable[[StoredEntry], bool]:
    return lambda s: unquote(s.log_name.partition("/logs/")[2]) in ids


def _split_and(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    tokens = re.split(r"(\s+AND\s+|\(|\)|\"[^\"]*\")", text)
    for token in tokens:
        if token is None or token == "":
            continue
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if depth == 0 and re.fullmatch(r"\s+AND\s+", token):
            parts.append(current)
            current = ""
        else:
            current += token
    if current.strip():
        parts.append(current)
    return parts


def _check(field: str, op: str, values: list[str]) -> Callable[[StoredEntry], bool]:

    if field == "timestamp":
        if len(values) != 1:
            raise FilterError("timestamp takes one value")
        bound = _time(values[0])
        ops: dict[str, Callable[[datetime.datetime], bool]] = {
            ">=": lambda t: t >= bound,
            "<=": lambda t: t <= bound,
            ">": lambda t: t > bound,
            "<": lambda t: t < bound,
            "=": lambda t: t == bound,
        }
        compare = ops[op]
        return lambda s: compare(s.timestamp)
    if op == ":" and field == "logName":  # "has": the log name contains the text
        return lambda s: any(v in s.log_name for v in values)
    if op != "=":
        raise FilterError(f"{field} supports = only")
    allowed = set(values)
    if field == "logName":
        return lambda s: s.log_name in allowed
    return lambda s: s.principal in allowed


def _time(text: str) -> datetime.datetime:

    try:
        value = parse_rfc3339(text)
    except ValueError as exc:
        raise FilterError(f"bad timestamp {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def default_accesses(snapshot: Any, email: str, root: str = "") -> list[tuple[str, str]]:
    """(permission, full resource name) for every permission granted to ``email`` directly;
    object permissions on a bucket name an object (under the pipeline root ``root`` in its
    bucket)."""
    member = f"serviceAccount:{email}"
    root_bucket, _, root_prefix = root.removeprefix("gs://").partition("/")
    out: list[tuple[str, str]] = []
    for node in snapshot.nodes.values():
        if node.policy is None:
            continue
        for binding in node.policy.bindings:
            if member not in binding.members or binding.role in _BASIC:
                continue
            role = snapshot.roles.get(binding.role)
            for permission in sorted(role.permissions if role else ()):
                resource = node.name
                if (
                    node.kind == "bucket"
                    and permission.startswith("storage.objects.")
                    and (permission != "storage.objects.list")
                ):
                    bucket = node.name.rsplit("/", 1)[-1]
                    prefix = root_prefix.rstrip("/") + "/" if bucket == root_bucket else ""
                    resource = f"{node.name}/{prefix}zt-emulated/{email.split('@')[0]}"
                out.append((permission, resource))
    return sorted(set(out))


def owner_project(snapshot: Any, resource: str, default: str) -> str:
    """The id of the project that owns ``resource`` (an object: its bucket), whose Cloud
    Audit Logs record its use as on Google; ``default`` when the snapshot does not say."""
    name = resource
    if service_of(resource) == "storage.googleapis.com":
        name = "/".join(resource.split("/", 4)[:4])  # //storage.googleapis.com/BUCKET
    current: str | None = name
    for _ in range(64):
        node = snapshot.nodes.get(current) if current else None
        if node is None:
            break
        if node.kind == "project":
            return str(node.name).rsplit("/", 1)[-1]
        current = node.parent
    parts = resource.split("/")
    for index, part in enumerate(parts[:-1]):
        if part == "projects" and parts[index + 1] not in ("", "_"):
            return parts[index + 1]
    return default


def log_run(
    store: AuditLogStore,
    snapshot: Any,
    project: str,
    steps: Iterable[Any],
    scripts: list[Any],
    root: str = "",
) -> None:
    """Log what each step of a simulated run did, inside its task's window, in the audit
    logs of the project that owns each resource used (``project``: when none is known)."""
    for step in steps:
        if not step.service_account:
            continue
        leaf = step.task.rsplit("/", 1)[-1]
        mine = [s for s in scripts if s.task in (step.task, leaf)]
        omitted = {p for s in mine for p in s.omit}
        accesses = [
            a for a in default_accesses(snapshot, step.service_account, root) if a[0] not in omitted
        ]
        accesses += [a for s in mine for a in s.accesses]
        span = step.end - step.start
        for index, (permission, resource) in enumerate(accesses):
            at = step.start + span * (index + 1) / (len(accesses) + 1)
            store.log_access(
                project=owner_project(snapshot, resource, project),
                principal=step.service_account,
                permission=permission,
                resource=resource,
                at=at,
            )
