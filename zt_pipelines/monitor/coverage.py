"""Which projects' Cloud Audit Logs can show what approved identities did (pure).

Cloud Audit Logs are kept by the project that owns the resource used (a bucket's project, a
dataset's project, a service account's project for its keys and tokens), not by the project a
pipeline ran in. ``usage`` therefore reads the logs of every project an approval names: its own
project, its step identities' home projects, the projects of every resource its declared needs,
pipeline root and (from the approval's baseline) its identities' grants name. Buckets do not
name their project: the caller resolves them (``storage.buckets.get``) and says which it could
not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_STORAGE = "//storage.googleapis.com/"
_SA_DOMAIN = ".iam.gserviceaccount.com"


def projects_named(resource: str) -> list[str]:
    """The project ids (or numbers) a full resource name names (``.../projects/P/...``)."""
    parts = resource.split("/")
    return [
        parts[i + 1]
        for i, p in enumerate(parts[:-1])
        if p == "projects" and parts[i + 1] not in ("", "_", "-")  # "-": any project
    ]


def bucket_named(resource: str) -> str | None:
    """The bucket a full resource name (``//storage.googleapis.com/B[/...]``) or a ``gs://``
    URI names, else ``None``."""
    for prefix in (_STORAGE, "gs://"):
        if resource.startswith(prefix):
            bucket = resource[len(prefix) :].split("/", 1)[0]
            return bucket or None
    return None


def identity_project(email: str) -> str | None:
    """The project a user-managed service account lives in (``sa@P.iam.gserviceaccount.com``)."""
    name, _, domain = email.lower().partition("@")
    if name and domain.endswith(_SA_DOMAIN):
        return domain[: -len(_SA_DOMAIN)] or None
    return None


@dataclass(frozen=True)
class UsageScope:
    """Where to read: each project (id, or number until resolved) and each bucket whose
    project must be looked up, with what named it (for the report)."""

    projects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    buckets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: grants on folders or organisations: they reach projects no approval names
    wide: tuple[str, ...] = ()


def _grant_nodes(baseline: Any) -> Iterable[tuple[str, str]]:
    """(identity, node) of every grant an approval's baseline records."""
    if not isinstance(baseline, Mapping) or not isinstance(baseline.get("posture"), Mapping):
        return
    for identity, data in baseline["posture"].items():
        grants = data.get("grants") if isinstance(data, Mapping) else None
        for grant in grants if isinstance(grants, list) else ():
            _role, sep, rest = str(grant).partition(" on ")
            if sep:
                yield str(identity), rest.split(" if ", 1)[0].strip()


def usage_scope(
    project: str,
    approvals: Iterable[Mapping[str, Any]],
    *,
    pipeline_roots: Iterable[str] = (),
) -> UsageScope:
    """The projects and buckets whose owners' audit logs ``usage`` must read.

    Args:
        project: the project usage was asked about (always read).
        approvals: the approval records whose runs are compared.
        pipeline_roots: the runs' pipeline roots (``gs://`` URIs).
    """
    projects: dict[str, list[str]] = {project: ["the project asked about"]}
    buckets: dict[str, list[str]] = {}
    wide: list[str] = []

    def add(resource: str, why: str) -> None:
        bucket = bucket_named(resource)
        if bucket is not None:
            buckets.setdefault(bucket, []).append(why)
            return
        for named in projects_named(resource)[:1]:
            projects.setdefault(named, []).append(why)

    for approval in approvals:
        if approval.get("project"):
            projects.setdefault(str(approval["project"]), []).append("an approved run's project")
        for ident in approval.get("identities") or ():
            if not isinstance(ident, Mapping):
                continue
            email = str(ident.get("service_account") or "")
            home = identity_project(email)
            if home:
                projects.setdefault(home, []).append(f"the home of {email.lower()}")
            for line in ident.get("needs") or ():
                where = str(line).rpartition(" ")[0].split(" (objects ", 1)[0]
                add(where, f"a need of task {ident.get('task', '')!s}")
        baseline = approval.get("baseline")
        if isinstance(baseline, Mapping) and baseline.get("pipeline_root"):
            add(str(baseline["pipeline_root"]), "the pipeline root")
        for identity, node in _grant_nodes(baseline):
            if "/folders/" in node or "/organizations/" in node:
                wide.append(node)
            add(node, f"a grant to {identity}")
    for root in pipeline_roots:
        if root:
            add(root, "the pipeline root")

    def unique(values: list[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(values))

    return UsageScope(
        projects={k: unique(v) for k, v in sorted(projects.items())},
        buckets={k: unique(v) for k, v in sorted(buckets.items())},
        wide=tuple(sorted(set(wide))),
    )


def owner_of(resource: str, bucket_projects: Mapping[str, str], default: str) -> str | None:
    """The project whose audit logs record a use of ``resource``: a bucket's resolved owner
    (``None`` when it could not be resolved), else the project its name names, else
    ``default``."""
    bucket = bucket_named(resource)
    if bucket is not None:
        return bucket_projects.get(bucket)
    named = projects_named(resource)
    return named[0] if named else default


@dataclass(frozen=True)
class SinkInfo:
    """A Log Router sink as read (``exclusions``: the filters of its enabled exclusions)."""

    parent: str
    name: str
    destination: str
    filter: str = ""
    include_children: bool = False
    disabled: bool = False
    exclusions: tuple[str, ...] = ()


_AUDIT_TERMS = (
    (re.compile(r'^logName:\s*"?cloudaudit\.googleapis\.com"?$'), {"activity", "data_access"}),
    (re.compile(r'^log_id\("cloudaudit\.googleapis\.com/(activity|data_access)"\)$'), None),
    (re.compile(r'^logName:\s*"?cloudaudit\.googleapis\.com%2F(activity|data_access)"?$'), None),
)


def routes_audit_logs(text: str) -> bool:
    """Whether a sink filter certainly lets both audit logs (Admin Activity and Data Access)
    through: empty, or an ``OR`` of terms that each select them. Anything else (an ``AND``, a
    ``NOT``, another field) is not proven, so it is not taken as routing."""
    text = text.strip()
    if not text:
        return True
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    kinds: set[str] = set()
    for term in re.split(r"\s+OR\s+", text):
        term = term.strip()
        for pattern, covers in _AUDIT_TERMS:
            match = pattern.match(term)
            if match is not None:
                kinds |= covers if covers is not None else {match.group(1)}
                break
        else:
            return False
    return {"activity", "data_access"} <= kinds


def routing_sink(
    project: str, ancestry: Iterable[str], sinks: Mapping[str, Iterable[SinkInfo]], bucket: str
) -> tuple[SinkInfo | None, str]:
    """The sink that provably routes ``project``'s audit logs into the log bucket ``bucket``
    (``projects/P/locations/L/buckets/B``), or ``None`` and why none does.

    Args:
        project: the project id.
        ancestry: its ancestors, nearest first (``folders/F`` ..., ``organizations/O``).
        sinks: the sinks read, by parent (a parent missing here was not read).
        bucket: the log bucket the view reads.
    """
    destination = f"logging.googleapis.com/{bucket}"
    why = f"no enabled sink on projects/{project} or its ancestors routes into {bucket}"
    unread: list[str] = []
    for index, parent in enumerate([f"projects/{project}", *ancestry]):
        if parent not in sinks:
            unread.append(parent)
            continue
        for sink in sinks[parent]:
            if sink.destination != destination or sink.disabled:
                continue
            if index and not sink.include_children:
                why = f"sink {sink.name} on {parent} does not include children"
                continue
            if sink.exclusions:
                why = f"sink {sink.name} on {parent} has exclusions"
                continue
            if not routes_audit_logs(sink.filter):
                why = f"sink {sink.name} on {parent} has a filter not proven to keep audit logs"
                continue
            return sink, ""
    if unread:
        return None, f"the sinks of {', '.join(unread)} could not be read"
    return None, why
