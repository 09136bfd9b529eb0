"""Cloud Audit Logs adapter: read what identities did (Cloud Logging ``entries.list``) and
whether Data Access logs are on (the project's IAM ``auditConfigs``).

Reads only, through the official ``google-cloud-logging`` gapic client
(``LoggingServiceV2Client.list_log_entries``, gRPC) and ``google-cloud-resource-manager``.
Filtering is server-side (log names, principals, time window); pages of 1000 entries (the
API's largest) are walked to the end. Entries are read from the raw protobuf pages (no
per-entry wrapper objects), and each ``AuditLog`` payload is parsed once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from google.cloud.audit import audit_log_pb2

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.monitor.usage import Access

ACTIVITY = "cloudaudit.googleapis.com%2Factivity"
DATA_ACCESS = "cloudaudit.googleapis.com%2Fdata_access"
#: principals per query: keeps the filter well under Logging's 20,000-character limit
PRINCIPALS_PER_QUERY = 50
_AUDIT_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def audit_filter(project: str, principals: Iterable[str], start: datetime, end: datetime) -> str:
    """The server-side filter: both audit logs, these principals, this window."""
    logs = " OR ".join(f'"projects/{project}/logs/{name}"' for name in (ACTIVITY, DATA_ACCESS))
    who = " OR ".join(f'"{p}"' for p in principals)
    return (
        f"logName=({logs}) AND protoPayload.authenticationInfo.principalEmail=({who}) "
        f'AND timestamp>="{_stamp(start)}" AND timestamp<="{_stamp(end)}"'
    )


def accesses_of(entry: Any) -> list[Access]:
    """The accesses one raw ``LogEntry`` records (one per authorization check)."""
    payload = entry.proto_payload
    if not payload.type_url.endswith("google.cloud.audit.AuditLog"):
        return []
    audit = audit_log_pb2.AuditLog.FromString(payload.value)
    when = datetime.fromtimestamp(
        entry.timestamp.seconds + entry.timestamp.nanos / 1e9, tz=timezone.utc
    )
    principal = audit.authentication_info.principal_email
    infos = audit.authorization_info
    if not infos:
        return [
            Access(
                when,
                principal,
                audit.method_name,
                audit.resource_name,
                audit.method_name,
                True,
                entry.insert_id,
                entry.log_name,
            )
        ]
    return [
        Access(
            when,
            principal,
            info.permission,
            info.resource or audit.resource_name,
            audit.method_name,
            info.granted,
            entry.insert_id,
            entry.log_name,
        )
        for info in infos
    ]


class AuditLogsAdapter(Adapter):
    """Reads Cloud Audit Logs entries and project audit configs."""

    def _logging(self) -> Any:
        from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

        return self.factory._get("logging", lambda: self.factory._gapic(LoggingServiceV2Client))

    def accesses(
        self, project: str, principals: Iterable[str], start: datetime, end: datetime
    ) -> list[Access]:
        """Every access by ``principals`` in ``project`` between ``start`` and ``end``."""
        wanted = sorted({p.lower() for p in principals})
        out: list[Access] = []
        for index in range(0, len(wanted), PRINCIPALS_PER_QUERY):
            batch = wanted[index : index + PRINCIPALS_PER_QUERY]
            out.extend(self._read(project, audit_filter(project, batch, start, end)))
        return out

    def _read(self, project: str, text: str) -> list[Access]:
        client = self._logging()
        request = {
            "resource_names": [f"projects/{project}"],
            "filter": text,
            "order_by": "timestamp asc",
            "page_size": self.page(1000),
        }

        def run() -> list[Access]:
            found: list[Access] = []
            pager = client.list_log_entries(request=request, **self.gapic_kwargs())
            for page in pager.pages:
                for entry in type(page).pb(page).entries:
                    found.extend(accesses_of(entry))
            return found

        return self.call(run, what="entries.list", target=f"projects/{project}")

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
