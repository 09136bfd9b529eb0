"""Cloud Audit Logs adapter: read what identities did (Cloud Logging ``entries.list``) and
whether Data Access logs are on (the project's IAM ``auditConfigs``).

Reads only, through the official ``google-cloud-logging`` gapic client
(``LoggingServiceV2Client.list_log_entries``, gRPC) and ``google-cloud-resource-manager``.
Filtering is server-side (log names, principals, time window); pages of 1000 entries (the
API's largest) are walked to the end. Pages are read from their serialized form into lite,
wire-compatible views that hold only what usage reads: column-wise (one list per field, no
Python object per entry) when the page's structure allows, else entry by entry.
"""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from itertools import chain, repeat
from operator import add, attrgetter, truediv
from typing import Any, TypeVar, overload

from google.cloud.audit import audit_log_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from zt_pipelines.gcp._base import Adapter, _client_info_metadata
from zt_pipelines.identity import JOB_AGENT_DOMAINS
from zt_pipelines.monitor.usage import Access, AccessBatch, Accesses, exemption

ACTIVITY = "cloudaudit.googleapis.com%2Factivity"
DATA_ACCESS = "cloudaudit.googleapis.com%2Fdata_access"
#: principals per query: keeps the filter well under Logging's 20,000-character limit
PRINCIPALS_PER_QUERY = 50
_parse = audit_log_pb2.AuditLog.FromString
T = TypeVar("T")


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


_new = tuple.__new__  # builds the Access named tuples without their Python-level __new__
_LIST_METHOD = "/google.logging.v2.LoggingServiceV2/ListLogEntries"
_AUDIT_LOG = "google.cloud.audit.AuditLog"

# Field numbers of google/logging/v2/log_entry.proto, google/cloud/audit/audit_log.proto,
# google/protobuf/any.proto and timestamp.proto: the lite views below are wire-compatible.
_F = descriptor_pb2.FieldDescriptorProto
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TEXT, _FLAG, _MSG, _I64, _I32 = (
    _F.TYPE_STRING,
    _F.TYPE_BOOL,
    _F.TYPE_MESSAGE,
    _F.TYPE_INT64,
    _F.TYPE_INT32,
)
_Shape = list[tuple[str, int, int, int, str]]

#: Entry by entry: each entry a message, its ``protoPayload`` (an ``Any``) read with ``value``
#: typed as the AuditLog fields usage needs (an embedded message and ``bytes`` share one
#: encoding), so a page is parsed once, in C, without the request/response structs entries carry.
_ENTRIES: dict[str, _Shape] = {
    "Authentication": [
        ("principal_email", 1, _TEXT, _ONE, ""),
        ("third_party_principal", 4, _MSG, _ONE, "Nothing"),
        ("service_account_key_name", 5, _TEXT, _ONE, ""),
        ("service_account_delegation_info", 6, _MSG, _MANY, "Delegation"),
    ],
    "Nothing": [],
    "FirstParty": [("principal_email", 1, _TEXT, _ONE, "")],
    "Delegation": [
        ("first_party_principal", 1, _MSG, _ONE, "FirstParty"),
        ("third_party_principal", 2, _MSG, _ONE, "Nothing"),
    ],
    "Authorization": [
        ("resource", 1, _TEXT, _ONE, ""),
        ("permission", 2, _TEXT, _ONE, ""),
        ("granted", 3, _FLAG, _ONE, ""),
    ],
    "AuditLog": [
        ("authentication_info", 3, _MSG, _ONE, "Authentication"),
        ("method_name", 8, _TEXT, _ONE, ""),
        ("authorization_info", 9, _MSG, _MANY, "Authorization"),
        ("resource_name", 11, _TEXT, _ONE, ""),
    ],
    "Payload": [("type_url", 1, _TEXT, _ONE, ""), ("value", 2, _MSG, _ONE, "AuditLog")],
    "Timestamp": [("seconds", 1, _I64, _ONE, ""), ("nanos", 2, _I32, _ONE, "")],
    "LogEntry": [
        ("proto_payload", 2, _MSG, _ONE, "Payload"),
        ("insert_id", 4, _TEXT, _ONE, ""),
        ("timestamp", 9, _MSG, _ONE, "Timestamp"),
        ("log_name", 12, _TEXT, _ONE, ""),
    ],
    "Page": [("entries", 1, _MSG, _MANY, "LogEntry"), ("next_page_token", 2, _TEXT, _ONE, "")],
}
#: Column-wise: the page's entries declared as ONE message, so the parser merges them (as it
#: merges a non-repeated message field that occurs more than once) and every scalar below,
#: declared repeated, becomes one list with one value per entry, in entry order — no Python
#: object per entry or sub-message. Exact only when each entry has each value exactly once:
#: the columns' lengths and :data:`_STRUCTURE` check that, page by page.
_COLUMNS: dict[str, _Shape] = {
    # who really authenticated (a key, a delegation, a federated principal): rare, so a page
    # where any entry has one is read entry by entry (see _append_accesses)
    "CAuthentication": [
        ("principal_email", 1, _TEXT, _MANY, ""),
        ("third_party_principal", 4, _F.TYPE_BYTES, _MANY, ""),
        ("service_account_key_name", 5, _TEXT, _MANY, ""),
        ("service_account_delegation_info", 6, _F.TYPE_BYTES, _MANY, ""),
    ],
    "CAuthorization": [
        ("resource", 1, _TEXT, _MANY, ""),
        ("permission", 2, _TEXT, _MANY, ""),
        ("granted", 3, _FLAG, _MANY, ""),
    ],
    "CAuditLog": [
        ("authentication_info", 3, _MSG, _ONE, "CAuthentication"),
        ("method_name", 8, _TEXT, _MANY, ""),
        ("authorization_info", 9, _MSG, _ONE, "CAuthorization"),
    ],
    "CPayload": [("type_url", 1, _TEXT, _MANY, ""), ("value", 2, _MSG, _ONE, "CAuditLog")],
    "CTimestamp": [("seconds", 1, _I64, _MANY, ""), ("nanos", 2, _I32, _MANY, "")],
    "CLogEntry": [
        ("proto_payload", 2, _MSG, _ONE, "CPayload"),
        ("insert_id", 4, _TEXT, _MANY, ""),
        ("timestamp", 9, _MSG, _ONE, "CTimestamp"),
        ("log_name", 12, _TEXT, _MANY, ""),
    ],
    "CPage": [("entries", 1, _MSG, _ONE, "CLogEntry"), ("next_page_token", 2, _TEXT, _ONE, "")],
}
#: The page's structure, entry by entry, without other content (unknown fields are
#: discarded): each entry's payload type and how many authorization records its AuditLog has.
#: The column view is used only when every entry is an AuditLog with exactly one (equal to
#: :func:`_expected_structure`, compared in C); otherwise a value could belong to another
#: entry. (Encoders write each non-repeated field at most once and leave out empty ones, so
#: there equal column lengths mean one value per entry.)
_STRUCTURE: dict[str, _Shape] = {
    "SNothing": [],
    "SAuditLog": [("authorization_info", 9, _MSG, _MANY, "SNothing")],
    "SPayload": [("type_url", 1, _TEXT, _MANY, ""), ("value", 2, _MSG, _ONE, "SAuditLog")],
    "SLogEntry": [("proto_payload", 2, _MSG, _ONE, "SPayload")],
    "SPage": [("entries", 1, _MSG, _MANY, "SLogEntry")],
}
#: the payload type of Cloud Audit Logs entries
AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"


def _message_types(*views: dict[str, _Shape]) -> dict[str, Any]:
    """Message classes for the views (one private descriptor pool, built at import)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="zt_pipelines/audit_log_page.proto", package="zt_pipelines.lite", syntax="proto3"
    )
    for view in views:
        for name, fields in view.items():
            message = file.message_type.add(name=name)
            for field_name, number, kind, label, type_name in fields:
                entry = message.field.add(name=field_name, number=number, type=kind, label=label)
                if type_name:
                    entry.type_name = f".zt_pipelines.lite.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"zt_pipelines.lite.{name}")
        )
        for name in ("Page", "CPage", "SPage", "CAuthentication", "Delegation")
    }


_TYPES = _message_types(_ENTRIES, _COLUMNS, _STRUCTURE)
_Page, _ColumnPage, _StructurePage = _TYPES["Page"], _TYPES["CPage"], _TYPES["SPage"]
_Principals = _TYPES["CAuthentication"]
_Delegation = _TYPES["Delegation"]


@functools.lru_cache(maxsize=8)
def _expected_structure(count: int) -> Any:
    """The structure of a page of ``count`` AuditLog entries with one authorization each."""
    page = _StructurePage()
    for _ in range(count):
        payload = page.entries.add().proto_payload
        payload.type_url.append(AUDIT_LOG_TYPE)
        payload.value.authorization_info.add()
    return page


@functools.lru_cache(maxsize=64)
def _one_principal(principal: str, count: int) -> Any:
    """The principal column of ``count`` entries all by ``principal``."""
    return _Principals(principal_email=[principal] * count)


def read_page(data: bytes, out: Accesses) -> str:
    """Append the accesses of one serialized ``ListLogEntriesResponse`` page to ``out``;
    return its next page token.

    Column-wise when the page's structure allows it (one authorization check per AuditLog
    entry, every field present — the common case), else entry by entry: both give the same
    accesses in the same order.
    """
    columns = _ColumnPage.FromString(data)
    _read_page(data, columns, out)
    return str(columns.next_page_token)


def _read_page(data: bytes, columns: Any, out: Accesses) -> None:
    batch = _column_batch(data, columns)
    if batch is not None:
        out.add(batch)
        return
    rows: list[Access] = []
    for entry in _Page.FromString(data).entries:
        lite_accesses_of(entry, rows)
    out.extend(rows)


def _column_batch(data: bytes, page: Any) -> AccessBatch | None:
    """The page's accesses column-wise (see :data:`_COLUMNS`); ``None`` when the page's
    structure does not allow it."""
    structure = _StructurePage.FromString(data)
    count = len(structure.entries)
    structure.DiscardUnknownFields()
    entries = page.entries
    checks_per_entry: list[int] | None = None  # one each
    if structure != _expected_structure(count):
        # entries with several authorization checks (BigQuery's jobs, ...): counted one by
        # one (still no Python object per field); an entry with none is read entry by entry
        checks_per_entry = list(map(len, map(_checks_of, structure.entries)))
        types = entries.proto_payload.type_url
        if 0 in checks_per_entry or len(types) != count:
            return None
        if not all(url.endswith(_AUDIT_LOG) for url in set(types)):
            return None
    audit = entries.proto_payload.value
    checks = audit.authorization_info
    stamps = entries.timestamp
    who = audit.authentication_info
    if who.third_party_principal or who.service_account_key_name:
        return None  # who really used the identity: decided entry by entry
    if who.service_account_delegation_info and not all(
        map(_by_service_agent, set(who.service_account_delegation_info))
    ):
        return None  # only hops through Google service agents (how Vertex runs a job) pass
    per_entry = (
        stamps.seconds,
        stamps.nanos,  # absent when 0 (proto3): such a page is read entry by entry
        who.principal_email,
        audit.method_name,
        entries.insert_id,
        entries.log_name,
    )
    total = count if checks_per_entry is None else sum(checks_per_entry)
    per_check = (checks.permission, checks.resource, checks.granted)
    if any(len(column) != count for column in per_entry):
        return None
    if any(len(column) != total for column in per_check):
        return None
    resources = list(checks.resource)
    if "" in resources:  # an empty check resource means the entry's resourceName
        return None
    page.DiscardUnknownFields()  # the fields not read: the comparison below is of principals
    # no column may refer to the parsed page: its memory (every field of every entry) is
    # freed as soon as this returns
    principals: Sequence[str] = who.principal_email
    if count and who == _one_principal(principals[0], count):
        principals = [principals[0]] * total  # one identity: one string, not one per entry
    elif checks_per_entry is not None:
        principals = _each(principals, checks_per_entry)
    else:
        principals = list(principals)
    granted = [True] * total if all(checks.granted) else list(checks.granted)
    times = list(map(add, stamps.seconds, map(truediv, stamps.nanos, repeat(1e9))))
    methods: Sequence[str]
    insert_ids: Sequence[str]
    log_names: Sequence[str]
    if checks_per_entry is None:
        # the fields only findings read: parsed again from the page when one first does
        evidence = _Evidence(data)
        methods, insert_ids, log_names = (_EvidenceColumn(evidence, i, count) for i in range(3))
    else:  # an entry's fields once for each of its checks
        times = _each(times, checks_per_entry)
        methods = _each(audit.method_name, checks_per_entry)
        insert_ids = _each(entries.insert_id, checks_per_entry)
        log_names = _each(entries.log_name, checks_per_entry)
    return AccessBatch(
        times,
        principals,
        list(checks.permission),
        resources,
        methods,
        granted,
        insert_ids,
        log_names,
    )


#: Google-managed service agents a job's attached identity is used through
#: (``service-NUMBER@gcp-sa-aiplatform-cc...``): an allow-list of Google's own domains, so a
#: look-alike ``service-1@any-project...`` (a legal account id anywhere) is never one
_SERVICE_AGENT = re.compile(
    r"^service-\d+@(?:"
    + "|".join(map(re.escape, sorted(JOB_AGENT_DOMAINS)))
    + r")\.iam\.gserviceaccount\.com$"
)


@functools.lru_cache(maxsize=256)
def _by_service_agent(hop: bytes) -> bool:
    """Whether a serialized delegation hop is by a Google service agent."""
    parsed = _Delegation.FromString(hop)
    email = parsed.first_party_principal.principal_email
    return parsed.HasField("first_party_principal") and bool(_SERVICE_AGENT.match(email.lower()))


def credential_of(auth: Any) -> str:
    """How an entry's identity authenticated when that is NOT how a Vertex job runs it (the
    attached identity's short-lived credentials, perhaps through a Google service agent): a
    user-managed key, a delegation by anyone else, a federated principal; ``""`` otherwise.
    ``auth`` is the entry's ``authenticationInfo`` (full or lite message)."""
    why: list[str] = []
    key = auth.service_account_key_name
    if key:
        why.append(f"with the user-managed key {key}")
    if auth.HasField("third_party_principal"):
        why.append("as a third-party (federated) principal")
    for hop in auth.service_account_delegation_info:
        if hop.HasField("first_party_principal"):
            email = hop.first_party_principal.principal_email
            if not _SERVICE_AGENT.match(email.lower()):
                why.append(f"delegated by {email or 'an unnamed principal'}")
        elif hop.HasField("third_party_principal"):
            why.append("delegated by a third-party (federated) principal")
    return "; ".join(why)


class _Evidence:
    """The fields only findings read (method, insert id, log name), one entry each, of one
    serialized page: parsed from it when a finding first reads them (most pages: never)."""

    __slots__ = ("_columns", "_data")

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data
        self._columns: tuple[list[str], list[str], list[str]] | None = None

    def column(self, index: int) -> list[str]:
        """Method names (0), insert ids (1) or log names (2)."""
        if self._columns is None:
            assert self._data is not None
            entries = _ColumnPage.FromString(self._data).entries
            self._columns = (
                list(entries.proto_payload.value.method_name),
                list(entries.insert_id),
                list(entries.log_name),
            )
            self._data = None
        return self._columns[index]


class _EvidenceColumn(Sequence[str]):
    """One column of :class:`_Evidence`, read on demand."""

    __slots__ = ("_count", "_evidence", "_index")

    def __init__(self, evidence: _Evidence, index: int, count: int) -> None:
        self._evidence, self._index, self._count = evidence, index, count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._evidence.column(self._index)[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._evidence.column(self._index))


_checks_of = attrgetter("proto_payload.value.authorization_info")


def _each(column: Iterable[T], times: Iterable[int]) -> list[T]:
    """Each value of ``column`` as many times as ``times`` says, in order."""
    return list(chain.from_iterable(map(repeat, column, times)))


def lite_accesses_of(entry: Any, out: list[Access]) -> list[Access]:
    """:func:`accesses_of` for an entry of a lite page (its payload already parsed). Hot."""
    payload = entry.proto_payload
    if payload.type_url.endswith(_AUDIT_LOG):
        _append_accesses(entry, payload.value, out)
    return out


def accesses_of(entry: Any, out: list[Access] | None = None) -> list[Access]:
    """The accesses one raw ``LogEntry`` records (one per authorization check), appended to
    ``out`` (a new list when ``None``). Hot: called once per entry read."""
    found: list[Access] = [] if out is None else out
    payload = entry.proto_payload
    if payload.type_url.endswith(_AUDIT_LOG):
        _append_accesses(entry, _parse(payload.value), found)
    return found


def _append_accesses(entry: Any, audit: Any, out: list[Access]) -> None:
    """One :class:`Access` per authorization check of ``audit`` (the entry's parsed AuditLog);
    an entry without any records the method itself, granted."""
    stamp = entry.timestamp
    ts = stamp.seconds + stamp.nanos / 1e9
    auth = audit.authentication_info
    principal = auth.principal_email
    # more than the principal (its tag and length take at most 3 bytes): read who else
    via = credential_of(auth) if auth.ByteSize() > len(principal.encode()) + 3 else ""
    method = audit.method_name
    insert_id, log_name = entry.insert_id, entry.log_name
    infos = audit.authorization_info
    count = len(infos)
    if not count:
        resource = audit.resource_name
        out.append(
            _new(Access, (ts, principal, method, resource, method, True, insert_id, log_name, via))
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
                    via,
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
    ) -> Accesses:
        """Every access by ``principals`` in ``project`` between ``start`` and ``end`` — or,
        with ``view`` (``projects/P/locations/L/buckets/B/views/V``), in every project whose
        audit logs the log view holds."""
        wanted = sorted({p.lower() for p in principals})
        out = Accesses()
        for index in range(0, len(wanted), PRINCIPALS_PER_QUERY):
            batch = wanted[index : index + PRINCIPALS_PER_QUERY]
            if view is not None:
                out.extend(self._read(view, audit_filter(None, batch, start, end)))
            else:
                out.extend(
                    self._read(f"projects/{project}", audit_filter(project, batch, start, end))
                )
        return out

    def _read(self, resource: str, text: str) -> Accesses:
        client = self._logging()
        request = {
            "resource_names": [resource],
            "filter": text,
            "order_by": "timestamp asc",
            "page_size": self.page(1000),
        }

        def run() -> Accesses:
            found = Accesses()
            # hundreds of thousands of small acyclic tuples: the cyclic collector would scan
            # the whole heap again and again for nothing while they are built
            collecting = gc.isenabled()
            gc.disable()
            try:
                channel = getattr(getattr(client, "transport", None), "grpc_channel", None)
                if channel is None:  # not gRPC: the client's own pager
                    pager = client.list_log_entries(request=request, **self.gapic_kwargs())
                    rows: list[Access] = []
                    for page in pager.pages:
                        for entry in type(page).pb(page).entries:
                            accesses_of(entry, rows)
                    found.extend(rows)
                else:
                    self._read_pages(channel, request, found)
            finally:
                if collecting:
                    gc.enable()
            return found

        return self.call(run, what="entries.list", target=resource)

    def _read_pages(self, channel: Any, request: dict[str, Any], out: Accesses) -> None:
        """Every page of ``entries.list`` through the Logging client's gRPC channel (the same
        request and method the gapic pager sends), each page read by :func:`read_page`. The
        next page is requested before this one is read (a gRPC future, no thread of ours):
        the server works on it while this one is parsed."""
        from google.cloud.logging_v2.types import ListLogEntriesRequest

        call = channel.unary_unary(
            _LIST_METHOD,
            request_serializer=ListLogEntriesRequest.serialize,
            response_deserializer=None,  # the serialized page: read_page parses it
        )
        metadata = _client_info_metadata()

        def start(token: str) -> Any:
            return call.future(
                ListLogEntriesRequest(**request, page_token=token),
                timeout=self.timeout,
                metadata=metadata,
            )

        pending = start("")
        try:
            while pending is not None:
                data = pending.result()
                columns = _ColumnPage.FromString(data)
                token = str(columns.next_page_token)
                pending = start(token) if token else None
                _read_page(data, columns, out)
        finally:
            if pending is not None:  # a failed read: do not leave the next page in flight
                pending.cancel()

    def audit_configs(self, project: str) -> dict[str, set[str]]:
        """The project's ``auditConfigs`` (see :meth:`audit_configs_of`)."""
        return self.audit_configs_of(f"projects/{project}")

    def audit_configs_of(self, name: str) -> dict[str, set[str]]:
        """The ``auditConfigs`` of ``projects/P``, ``folders/F`` or ``organizations/O``:
        service (or ``allServices``) → enabled log types, and an :func:`exemption` entry for
        each of a type's ``exemptedMembers``."""
        kind = name.split("/", 1)[0]
        client = {
            "projects": self.factory.projects,
            "folders": self.factory.folders,
            "organizations": self.factory.organizations,
        }[kind]()
        request = {"resource": name, "options": {"requested_policy_version": 3}}
        policy = self.call(
            lambda: client.get_iam_policy(request=request, **self.gapic_kwargs()),
            what=f"{kind}.getIamPolicy (auditConfigs)",
            target=f"//cloudresourcemanager.googleapis.com/{name}",
        )
        from google.iam.v1 import policy_pb2

        out: dict[str, set[str]] = {}
        for config in policy.audit_configs:
            types = out.setdefault(str(config.service), set())
            for log in config.audit_log_configs:
                kind = log.log_type
                name = getattr(kind, "name", None) or policy_pb2.AuditLogConfig.LogType.Name(kind)
                types.add(str(name))
                # identities that do not cause logging of this type: kept, usage decides
                types.update(exemption(str(name), str(m)) for m in log.exempted_members)
        return out
