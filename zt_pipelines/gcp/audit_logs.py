"""Cloud Audit Logs adapter: read what identities did (Cloud Logging ``entries.list``) and
whether Data Access logs are on (the project's IAM ``auditConfigs``).

Reads only, through the official ``google-cloud-logging`` gapic client
(``LoggingServiceV2Client.list_log_entries``, gRPC) and ``google-cloud-resource-manager``.
Filtering is server-side (log names, principals, time window); pages of 1000 entries (the
API's largest) are walked to the end. Entries are read from the raw protobuf pages (no
per-entry wrapper objects), and each ``AuditLog`` payload is parsed once.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from google.cloud.audit import audit_log_pb2

from zt_pipelines.gcp._base import Adapter, _client_info_metadata
from zt_pipelines.monitor.usage import Access

ACTIVITY = "cloudaudit.googleapis.com%2Factivity"
DATA_ACCESS = "cloudaudit.googleapis.com%2Fdata_access"
#: principals per query: keeps the filter well under Logging's 20,000-character limit
PRINCIPALS_PER_QUERY = 50
_parse = audit_log_pb2.AuditLog.FromString


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def audit_filter(
    project: str | None, principals: Iterable[str], start: datetime, end: datetime
) -> str:
    """The server-side filter: both audit logs (of ``project``; ``None``: of every project,
    for a log view), these principals, this window."""
    if project is None:
        logs = '(log_id("cloudaudit.googleapis.com/activity") OR ' + (
            'log_id("cloudaudit.googleapis.com/data_access"))'
        )
    else:
        names = (f'"projects/{project}/logs/{name}"' for name in (ACTIVITY, DATA_ACCESS))
        logs = f"logName=({' OR '.join(names)})"
    who = " OR ".join(f'"{p}"' for p in principals)
    return (
        f"{logs} AND protoPayload.authenticationInfo.principalEmail=({who}) "
        f'AND timestamp>="{_stamp(start)}" AND timestamp<="{_stamp(end)}"'
    )


_DONE = object()
_new = tuple.__new__  # builds the Access named tuples without their Python-level __new__
_LIST_METHOD = "/google.logging.v2.LoggingServiceV2/ListLogEntries"


def _lite_page_type() -> Any:
    """A ``ListLogEntriesResponse`` reader that keeps only what usage reads.

    Wire-compatible views of the real messages: each entry's ``protoPayload`` (an ``Any``) is
    read with its ``value`` typed as the ``AuditLog`` fields usage needs (an embedded message
    and ``bytes`` share one encoding), so a page is parsed once, in C, without the request,
    response and metadata structs real entries carry. Field numbers are those of
    ``google/logging/v2/log_entry.proto`` and ``google/cloud/audit/audit_log.proto``.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    one, many = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    text, flag, msg = field.TYPE_STRING, field.TYPE_BOOL, field.TYPE_MESSAGE
    i64, i32 = field.TYPE_INT64, field.TYPE_INT32
    shapes: dict[str, list[tuple[str, int, int, int, str]]] = {
        "Authentication": [("principal_email", 1, text, one, "")],
        "Authorization": [
            ("resource", 1, text, one, ""),
            ("permission", 2, text, one, ""),
            ("granted", 3, flag, one, ""),
        ],
        "AuditLog": [
            ("authentication_info", 3, msg, one, "Authentication"),
            ("method_name", 8, text, one, ""),
            ("authorization_info", 9, msg, many, "Authorization"),
            ("resource_name", 11, text, one, ""),
        ],
        "Payload": [("type_url", 1, text, one, ""), ("value", 2, msg, one, "AuditLog")],
        "Timestamp": [("seconds", 1, i64, one, ""), ("nanos", 2, i32, one, "")],
        "LogEntry": [
            ("proto_payload", 2, msg, one, "Payload"),
            ("insert_id", 4, text, one, ""),
            ("timestamp", 9, msg, one, "Timestamp"),
            ("log_name", 12, text, one, ""),
        ],
        "Page": [("entries", 1, msg, many, "LogEntry"), ("next_page_token", 2, text, one, "")],
    }
    file = descriptor_pb2.FileDescriptorProto(
        name="zt_pipelines/audit_log_page.proto", package="zt_pipelines.lite", syntax="proto3"
    )
    for name, fields in shapes.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            entry = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = f".zt_pipelines.lite.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("zt_pipelines.lite.Page"))


_Page = _lite_page_type()


def lite_accesses_of(entry: Any, out: list[Access]) -> list[Access]:
    """:func:`accesses_of` for an entry of a lite page (its payload already parsed). Hot."""
    payload = entry.proto_payload
    if payload.type_url.endswith("google.cloud.audit.AuditLog"):
        _append_accesses(entry, payload.value, out)
    return out


def accesses_of(entry: Any, out: list[Access] | None = None) -> list[Access]:
    """The accesses one raw ``LogEntry`` records (one per authorization check), appended to
    ``out`` (a new list when ``None``). Hot: called once per entry read."""
    found: list[Access] = [] if out is None else out
    payload = entry.proto_payload
    if payload.type_url.endswith("google.cloud.audit.AuditLog"):
        _append_accesses(entry, _parse(payload.value), found)
    return found


def _append_accesses(entry: Any, audit: Any, out: list[Access]) -> None:
    """One :class:`Access` per authorization check of ``audit`` (the entry's parsed AuditLog);
    an entry without any records the method itself, granted."""
    stamp = entry.timestamp
    ts = stamp.seconds + stamp.nanos / 1e9
    principal = audit.authentication_info.principal_email
    method = audit.method_name
    insert_id, log_name = entry.insert_id, entry.log_name
    infos = audit.authorization_info
    count = len(infos)
    if not count:
        resource = audit.resource_name
        out.append(
            _new(Access, (ts, principal, method, resource, method, True, insert_id, log_name))
        )
        return
    # the common case is one check: indexing is much cheaper than iterating a repeated field
    for info in (infos[0],) if count == 1 else infos:
        out.append(
            _new(
                Access,
                (
                    ts,
                    principal,
                    info.permission,
                    info.resource or audit.resource_name,
                    method,
                    info.granted,
                    insert_id,
                    log_name,
                ),
            )
        )


class AuditLogsAdapter(Adapter):
    """Reads Cloud Audit Logs entries and project audit configs."""

    def _logging(self) -> Any:
        from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

        return self.factory._get("logging", lambda: self.factory._gapic(LoggingServiceV2Client))

    def accesses(
        self,
        project: str,
        principals: Iterable[str],
        start: datetime,
        end: datetime,
        *,
        view: str | None = None,
    ) -> list[Access]:
        """Every access by ``principals`` in ``project`` between ``start`` and ``end`` — or,
        with ``view`` (``projects/P/locations/L/buckets/B/views/V``), in every project whose
        audit logs the log view holds."""
        wanted = sorted({p.lower() for p in principals})
        out: list[Access] = []
        for index in range(0, len(wanted), PRINCIPALS_PER_QUERY):
            batch = wanted[index : index + PRINCIPALS_PER_QUERY]
            if view is not None:
                out.extend(self._read(view, audit_filter(None, batch, start, end)))
            else:
                out.extend(
                    self._read(f"projects/{project}", audit_filter(project, batch, start, end))
                )
        return out

    def _read(self, resource: str, text: str) -> list[Access]:
        client = self._logging()
        request = {
            "resource_names": [resource],
            "filter": text,
            "order_by": "timestamp asc",
            "page_size": self.page(1000),
        }

        def run() -> list[Access]:
            # the next page is fetched while this one is parsed (a reader thread): reading
            # waits on the network, parsing on the CPU
            found: list[Access] = []
            pages: queue.Queue[Any] = queue.Queue(maxsize=4)

            channel = getattr(getattr(client, "transport", None), "grpc_channel", None)

            def fetch() -> None:
                try:
                    if channel is None:  # not gRPC: the client's own pager
                        pager = client.list_log_entries(request=request, **self.gapic_kwargs())
                        for page in pager.pages:
                            pages.put((accesses_of, type(page).pb(page).entries))
                    else:  # the client's channel, each page read into the lite view
                        for entries in self._lite_pages(channel, request):
                            pages.put((lite_accesses_of, entries))
                    pages.put(_DONE)
                except BaseException as exc:  # handed to the parsing thread, raised there
                    pages.put(exc)

            reader = threading.Thread(target=fetch, name="zt-audit-log-pages", daemon=True)
            reader.start()
            # hundreds of thousands of small acyclic tuples: the cyclic collector would scan
            # the whole heap again and again for nothing while they are built
            collecting = gc.isenabled()
            gc.disable()
            try:
                while True:
                    item = pages.get()
                    if item is _DONE:
                        return found
                    if isinstance(item, BaseException):
                        raise item
                    read, entries = item
                    for entry in entries:
                        read(entry, found)
            finally:
                if collecting:
                    gc.enable()
                while reader.is_alive():  # let a failed parse not leave the reader blocked
                    with contextlib.suppress(queue.Empty):
                        pages.get(timeout=0.05)
                reader.join()

        return self.call(run, what="entries.list", target=resource)

    def _lite_pages(self, channel: Any, request: dict[str, Any]) -> Iterator[Any]:
        """Every page of ``entries.list`` through the Logging client's gRPC channel, each
        read into the lite view (the same request and method the gapic pager sends)."""
        from google.cloud.logging_v2.types import ListLogEntriesRequest

        call = channel.unary_unary(
            _LIST_METHOD,
            request_serializer=ListLogEntriesRequest.serialize,
            response_deserializer=_Page.FromString,
        )
        metadata = _client_info_metadata()
        token = ""
        while True:
            page = call(
                ListLogEntriesRequest(**request, page_token=token),
                timeout=self.timeout,
                metadata=metadata,
            )
            yield page.entries
            token = page.next_page_token
            if not token:
                return

    def audit_configs(self, project: str) -> dict[str, set[str]]:
        """The project's ``auditConfigs``: service (or ``allServices``) → enabled log types."""
        client = self.factory.projects()
        request = {"resource": f"projects/{project}", "options": {"requested_policy_version": 3}}
        policy = self.call(
            lambda: client.get_iam_policy(request=request, **self.gapic_kwargs()),
            what="projects.getIamPolicy (auditConfigs)",
            target=f"//cloudresourcemanager.googleapis.com/projects/{project}",
        )
        from google.iam.v1 import policy_pb2

        out: dict[str, set[str]] = {}
        for config in policy.audit_configs:
            types = out.setdefault(str(config.service), set())
            for log in config.audit_log_configs:
                kind = log.log_type
                name = getattr(kind, "name", None) or policy_pb2.AuditLogConfig.LogType.Name(kind)
                types.add(str(name))
        return out
