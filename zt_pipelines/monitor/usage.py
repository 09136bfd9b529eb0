"""Usage from Cloud Audit Logs: what step identities did, against what they declared (pure).

Inputs are data: the approved steps with their declared needs and their runs' time windows
(:class:`StepWindow`), the audit log entries read for those identities (:class:`Access`), the
project's Data Access audit configuration and the reads that failed. Findings:

- ZT630 a declared permission no step window ever used (the tighter needs are proposed);
- ZT631 an access during a run outside the step's declared (and implicit) needs — an anomaly,
  with the log entry as evidence;
- ZT632 a step identity used outside every approved run window, or at any time with a
  user-managed key, a delegation or a federated principal (never how a job runs it) —
  possible credential misuse;
- ZT633 Data Access logs are off for a service the steps use, or exempt a step identity —
  usage cannot be verified there (its permissions are then never called unused);
- ZT634 the logs could not be read — nothing is verified (fail closed);
- ZT635 an access the step tried and IAM refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from itertools import chain, compress, repeat
from operator import or_
from typing import Any, NamedTuple, overload

from zt_pipelines.model import Need
from zt_pipelines.policy.report import Evidence, Finding, Report, Severity, sort_findings
from zt_pipelines.policy.requirements import STEP_ARTIFACT_PERMISSIONS
from zt_pipelines.policy.wording import plural

_ADMIN_VERBS = re.compile(r"(IamPolicy|\.create|\.delete|\.update|\.patch|\.upload|\.deploy)$")
#: permissions a step uses on the pipeline root's artifacts (implicit needs, as the engine has)
ARTIFACT_PERMISSIONS = STEP_ARTIFACT_PERMISSIONS


def is_data_access(permission: str) -> bool:
    """Whether Cloud Audit Logs record ``permission`` as Data Access (reads and writes of data;
    off unless enabled) rather than Admin Activity (configuration changes; always on)."""
    return _ADMIN_VERBS.search(permission) is None or permission.startswith("storage.objects.")


def service_of(resource: str) -> str:
    """The API service of a full resource name (``//storage.googleapis.com/b`` → storage)."""
    return resource[2:].split("/", 1)[0] if resource.startswith("//") else ""


def permission_service(permission: str) -> str:
    """The service whose audit logs record ``permission`` (``storage.objects.get`` → storage)."""
    return permission.split(".", 1)[0] + ".googleapis.com"


@dataclass(frozen=True)
class StepWindow:
    """One step of one approved run: who ran it, when, and what it declared."""

    run: str
    task: str
    service_account: str
    start: datetime
    end: datetime
    needs: tuple[Need, ...] = ()
    pipeline_root: str | None = None


class Access(NamedTuple):
    """One audit log entry's access: who used which permission on what, when (``ts``: POSIX
    seconds). A named tuple: usage reads hundreds of thousands of them."""

    ts: float
    principal: str
    permission: str
    resource: str
    method: str = ""
    granted: bool = True
    insert_id: str = ""
    log_name: str = ""
    #: how the identity authenticated when a Vertex job never does so (a user-managed key, a
    #: delegation, a federated principal); "" for a job's own credentials
    via: str = ""

    @property
    def time(self) -> datetime:
        """When, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts, tz=timezone.utc)

    def evidence(self) -> Evidence:
        """The log entry as evidence."""
        return Evidence(
            "log",
            node=self.resource,
            member=self.principal,
            detail=f"{self.time.isoformat()} {self.method or self.permission} "
            f"insertId={self.insert_id} {self.log_name}".strip()
            + (f" ({self.via})" if self.via else ""),
        )


_make_access = partial(tuple.__new__, Access)  # an Access from a row, without Python calls


class AccessBatch:
    """Accesses read column-wise (e.g. one page of log entries): one sequence per
    :class:`Access` field, one value per access, in order. Usage reads hundreds of thousands
    of accesses; a Python object per access costs more than deciding on it, so a batch is
    decided column-wise where it can be (see :func:`evaluate_usage`) and yields
    :class:`Access` rows only where it cannot."""

    __slots__ = Access._fields

    def __init__(
        self,
        ts: Sequence[float],
        principal: Sequence[str],
        permission: Sequence[str],
        resource: Sequence[str],
        method: Sequence[str],
        granted: Sequence[bool],
        insert_id: Sequence[str],
        log_name: Sequence[str],
        via: Sequence[str] | None = None,
    ) -> None:
        self.ts, self.principal, self.permission, self.resource = (
            ts,
            principal,
            permission,
            resource,
        )
        self.method, self.granted, self.insert_id, self.log_name = (
            method,
            granted,
            insert_id,
            log_name,
        )
        self.via: Sequence[str] = [""] * len(ts) if via is None else via
        if any(len(getattr(self, name)) != len(ts) for name in Access._fields):
            raise ValueError("an access batch needs one value per field for every access")

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self) -> Iterator[Access]:
        return map(_make_access, zip(*(getattr(self, f) for f in Access._fields), strict=True))


class Accesses(Sequence[Access]):
    """The accesses read, in order: column-wise batches and single accesses.

    A :class:`~collections.abc.Sequence` of :class:`Access` (rows are made on demand);
    :func:`evaluate_usage` decides its batches column-wise."""

    __slots__ = ("_count", "_parts")

    def __init__(self, accesses: Iterable[Access] = ()) -> None:
        self._parts: list[AccessBatch | list[Access]] = []
        self._count = 0
        self.extend(accesses)

    def add(self, batch: AccessBatch) -> None:
        """Append a batch."""
        if len(batch):
            self._parts.append(batch)
            self._count += len(batch)

    def extend(self, accesses: Iterable[Access]) -> None:
        """Append accesses (another :class:`Accesses` keeps its batches)."""
        if isinstance(accesses, Accesses):
            self._parts.extend(accesses._parts)
            self._count += accesses._count
            return
        rows = list(accesses)
        if rows:
            self._parts.append(rows)
            self._count += len(rows)

    def where(self, keep: Callable[..., bool], *fields: str) -> Accesses:
        """The accesses for which ``keep(*values of fields)`` is true, in order (batches stay
        column-wise: ``keep`` is mapped over their columns)."""
        if not fields or any(f not in Access._fields for f in fields):
            raise ValueError(f"fields must name Access fields: {fields!r}")
        out = Accesses()
        for part in self._parts:
            if isinstance(part, AccessBatch):
                flags = list(map(keep, *(getattr(part, f) for f in fields)))
                if all(flags):
                    out.add(part)
                elif any(flags):
                    columns = (list(compress(getattr(part, f), flags)) for f in Access._fields)
                    out.add(AccessBatch(*columns))
            else:
                out.extend(a for a in part if keep(*(getattr(a, f) for f in fields)))
        return out

    def parts(self) -> tuple[AccessBatch | list[Access], ...]:
        """The batches and lists of single accesses, in order."""
        return tuple(self._parts)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Access]:
        return chain.from_iterable(self._parts)

    @overload
    def __getitem__(self, index: int) -> Access: ...

    @overload
    def __getitem__(self, index: slice) -> list[Access]: ...

    def __getitem__(self, index: int | slice) -> Access | list[Access]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("access index out of range")
        for part in self._parts:
            if index < len(part):
                if isinstance(part, AccessBatch):
                    return _make_access(tuple(getattr(part, f)[index] for f in Access._fields))
                return part[index]
            index -= len(part)
        raise IndexError("access index out of range")  # pragma: no cover - counted above


def _log_form(full: str, prefix: str | None) -> tuple[str, ...]:
    """Resource names an audit log shows for a need's resource (any of them covers)."""
    service = service_of(full)
    rest = full[2 + len(service) + 1 :] if service else full
    if service == "storage.googleapis.com":
        bucket = rest.partition("/")[0]
        base = f"projects/_/buckets/{bucket}"
        if prefix is not None:
            return (f"{base}/objects/{prefix}",)
        return (base,)
    return (rest,)


class _Matcher:
    """A need compiled once: which permissions, which log resource names it covers."""

    __slots__ = ("bucket", "exact", "need", "permissions", "prefix")

    def __init__(self, need: Need) -> None:
        self.need = need
        self.permissions = frozenset(need.permissions)
        [form] = _log_form(need.resource.name, need.resource.prefix)
        self.prefix = need.resource.prefix is not None
        self.exact = form
        self.bucket = form.split("/objects/", 1)[0] if self.prefix else ""

    def covers(self, permission: str, resource: str) -> bool:
        """Whether the need covers ``permission`` used on ``resource`` (log form)."""
        if permission not in self.permissions:
            return False
        if self.prefix:
            if resource.startswith(self.exact):
                return True
            return resource == self.bucket and permission == "storage.objects.list"
        return resource == self.exact or resource.startswith(self.exact.rstrip("/") + "/")


_LIST = "storage.objects.list"
_Rule = tuple[bool, str, str, tuple[str, str, str]]


def _rules(task: str, matchers: Sequence[_Matcher]) -> dict[str, list[_Rule]]:
    """:meth:`_Matcher.covers` for every need of a window, by permission (same decisions)."""
    out: dict[str, list[_Rule]] = {}
    for m in matchers:
        key = m.need.resource.name + (m.need.resource.prefix or "")
        for permission in m.permissions:
            rule = (
                (True, m.exact, m.bucket, (task, key, permission))
                if m.prefix
                else (False, m.exact, m.exact.rstrip("/") + "/", (task, key, permission))
            )
            out.setdefault(permission, []).append(rule)
    return out


#: a batch with more distinct permissions than this is decided row by row
_BATCH_PERMISSIONS = 16
_Compiled = Mapping[str, list[tuple[float, float, StepWindow, dict[str, list[_Rule]]]]]


def _settled(batch: AccessBatch, compiled: _Compiled, used: set[tuple[str, str, str]]) -> bool:
    """Decide ``batch`` column-wise when it yields no finding: one identity, every access
    inside the same run windows of its step(s), granted, and covered by a declared need in each
    of them. Then the needs it used are added to ``used`` — exactly what the row-by-row loop of
    :func:`evaluate_usage` adds — and ``True`` is returned; otherwise nothing is added (the
    batch is then decided row by row, findings and all)."""
    if not len(batch):
        return True
    principals = set(batch.principal)
    if len(principals) != 1:
        return False
    [principal] = principals
    mine = compiled.get(principal)
    if mine is None:
        mine = compiled.get(principal.lower(), [])
    first, last = min(batch.ts), max(batch.ts)
    inside: list[dict[str, list[_Rule]]] = []
    for start, end, _w, rules in mine:
        if start <= first and last <= end:
            inside.append(rules)
        elif not (last < start or first > end):
            return False  # some of the batch inside this window, some not
    if not inside or not all(batch.granted) or any(batch.via):
        return False
    permissions = set(batch.permission)
    if len(permissions) > _BATCH_PERMISSIONS:
        return False
    keys: set[tuple[str, str, str]] = set()
    for permission in permissions:
        resources: Sequence[str] = (
            batch.resource
            if len(permissions) == 1
            else list(compress(batch.resource, map(permission.__eq__, batch.permission)))
        )
        # every string between the least and the greatest starts with what both start with
        low, high = min(resources), max(resources)
        for rules in inside:
            covered: list[bool] | None = None
            for is_prefix, name, other, key in rules.get(permission, ()):
                head = name if is_prefix else other
                if low.startswith(head) and high.startswith(head):
                    keys.add(key)  # the row loop's test holds for every access
                    covered = [True]
                    continue
                # the row loop's test, one column at a time
                hits = list(map(str.startswith, resources, repeat(head)))
                if is_prefix:
                    if permission == _LIST:
                        hits = list(map(or_, hits, map(other.__eq__, resources)))
                else:
                    hits = list(map(or_, hits, map(name.__eq__, resources)))
                if any(hits):
                    keys.add(key)
                if covered != [True]:
                    covered = hits if covered is None else list(map(or_, covered, hits))
            if covered is None or not all(covered):
                return False  # an undeclared access: a finding
    used.update(keys)
    return True


def covers(need: Need, permission: str, resource: str) -> bool:
    """Whether a declared need covers ``permission`` used on ``resource`` (log form)."""
    return _Matcher(need).covers(permission, resource)


def _root_need(root: str | None) -> Need | None:
    if not root or not root.startswith("gs://"):
        return None
    from zt_pipelines.errors import ResourceError
    from zt_pipelines.policy.requirements import pipeline_root_ref

    try:
        return Need(pipeline_root_ref(root), ARTIFACT_PERMISSIONS)  # the root as a folder
    except ResourceError:
        return None


@dataclass(frozen=True)
class UsageVerdict:
    """The usage report and the tighter needs it proposes (task → resource → permissions)."""

    report: Report
    proposal: Mapping[str, Mapping[str, Any]]

    @property
    def clean(self) -> bool:
        """True when no error was found (a read that failed counts)."""
        return self.report.allowed


def evaluate_usage(
    windows: Sequence[StepWindow],
    accesses: Sequence[Access],
    *,
    audit_configs: Mapping[str, set[str]] | None,
    now: datetime,
    project: str,
    unreadable: Sequence[str] = (),
    since: datetime | None = None,
    project_configs: Mapping[str, Mapping[str, set[str]] | None] | None = None,
    owners: Mapping[str, str | None] | None = None,
) -> UsageVerdict:
    """Compare what the step identities did with what they declared, run by run.

    Args:
        windows: the approved steps of the runs read, with their time windows and needs.
        accesses: the audit log entries read for their identities.
        audit_configs: ``project``'s ``auditConfigs`` (``None``: the read failed).
        now: the time of the check.
        project: the project usage was asked about.
        unreadable: reads that failed (each a ZT634: nothing is verified).
        since: the start of the window read.
        project_configs: the ``auditConfigs`` of every other project read (``None``: failed).
        owners: the project whose logs record a use of each need's resource (``None``: not
            known; its Data Access use is then never called unused). Missing: ``project``.
    """
    findings: list[Finding] = []
    notes: list[str] = []
    for what in unreadable:
        findings.append(
            Finding("ZT634", Severity.ERROR, f"cannot read {what}: usage is not verified")
        )
    by_identity: dict[str, list[tuple[float, float, StepWindow, list[_Matcher]]]] = {}
    for w in windows:
        matchers = [_Matcher(n) for n in w.needs]
        root = _root_need(w.pipeline_root)
        implicit = [_Matcher(root)] if root is not None else []
        by_identity.setdefault(w.service_account.lower(), []).append(
            (w.start.timestamp(), w.end.timestamp(), w, matchers + implicit)
        )
    configs: dict[str, Mapping[str, set[str]] | None] = dict(project_configs or {})
    configs[project] = audit_configs
    owner = dict(owners or {})

    def owner_of(resource: str) -> str | None:
        return owner.get(resource, project)

    logged_on = _logged_services(windows, configs, owner_of, findings)
    used: set[tuple[str, str, str]] = set()  # (task, need resource, permission)
    # each window's needs compiled to permission → (is prefix, name, child/bucket, used key):
    # the loop below runs once per log entry and must not call or allocate per need
    compiled = {
        identity: [(start, end, w, _rules(w.task, matchers)) for start, end, w, matchers in ws]
        for identity, ws in by_identity.items()
    }

    def decide(rows: Iterable[Access]) -> None:
        for access in rows:  # hot: once per entry read (where a batch was not settled)
            ts, principal, permission, resource = access[0], access[1], access[2], access[3]
            if access[8]:  # a key, a delegation: never a run's own use, wherever it falls
                findings.append(_misused(access))
                continue
            mine = compiled.get(principal)
            if mine is None:
                mine = compiled.get(principal.lower(), [])
            inside = False
            for start, end, w, rules in mine:
                if ts < start or ts > end:
                    continue
                inside = True
                if not access[5]:  # granted
                    findings.append(_refused(w, access))
                    continue
                matched = False
                for is_prefix, name, other, used_key in rules.get(permission, ()):
                    if is_prefix:
                        hit = resource.startswith(name) or (
                            resource == other and permission == _LIST
                        )
                    else:
                        hit = resource == name or resource.startswith(other)
                    if hit:
                        matched = True
                        if used_key not in used:
                            used.add(used_key)
                if not matched:
                    findings.append(_undeclared(w, access))
            if not inside:
                findings.append(_out_of_run(access))

    parts = accesses.parts() if isinstance(accesses, Accesses) else (accesses,)
    for part in parts:
        if not isinstance(part, AccessBatch) or not _settled(part, compiled, used):
            decide(part)

    proposal: dict[str, dict[str, Any]] = {}
    seen_tasks: set[str] = set()
    for w in windows:
        if w.task in seen_tasks:
            continue
        seen_tasks.add(w.task)
        kept: dict[str, list[str]] = {}
        for need in w.needs:
            key = need.resource.name + (need.resource.prefix or "")
            for permission in need.permissions:
                service = permission_service(permission)
                where = owner_of(need.resource.name)
                observable = (
                    not is_data_access(permission)
                    or (where, service, w.service_account.lower()) in logged_on
                )
                if (w.task, key, permission) in used or not observable:
                    kept.setdefault(_user_form(need), []).append(permission)
                    continue
                findings.append(
                    Finding(
                        "ZT630",
                        Severity.WARNING,
                        f"task {w.task!r} declared {permission} on {_user_form(need)} and "
                        "never used it in the runs read",
                        step=w.task,
                        principal=f"serviceAccount:{w.service_account}",
                        resource=need.resource.name,
                        permission=permission,
                    )
                )
        proposal[w.task] = {
            "service_account": w.service_account,
            "needs": {k: sorted(set(v)) for k, v in sorted(kept.items())},
        }
    runs = sorted({w.run for w in windows})
    notes.append(
        f"{plural(len(accesses), 'audit log entry', 'audit log entries')} read for "
        f"{plural(len(by_identity), 'step identity', 'step identities')} over "
        f"{plural(len(runs), 'run')}" + (f" since {since.isoformat()}" if since else "")
    )
    report = Report(
        findings=sort_findings(findings),
        pipeline="usage",
        project=project,
        checked_at=now.isoformat(),
        notes=tuple(notes),
    )
    return UsageVerdict(report, proposal)


def _out_of_run(access: Access) -> Finding:
    return _zt632(
        access, ", outside every approved run of the steps it runs: possible credential misuse"
    )


def _misused(access: Access) -> Finding:
    return _zt632(
        access,
        f" authenticated {access.via}: a Vertex job runs with its attached identity's "
        "short-lived credentials, never so — possible credential misuse",
    )


def _zt632(access: Access, how: str) -> Finding:
    """A use of a step identity that was not its run's (``how``: the message after its time)."""
    return Finding(
        "ZT632",
        Severity.ERROR,
        f"{access.principal} used {access.permission} on {access.resource} at "
        f"{access.time.isoformat()}{how}",
        principal=f"serviceAccount:{access.principal}",
        resource=access.resource,
        permission=access.permission,
        evidence=(access.evidence(),),
    )


def _refused(w: StepWindow, access: Access) -> Finding:
    return Finding(
        "ZT635",
        Severity.WARNING,
        f"task {w.task!r} (run {w.run}) tried {access.permission} on {access.resource} and "
        "was refused",
        step=w.task,
        principal=f"serviceAccount:{access.principal}",
        resource=access.resource,
        permission=access.permission,
        evidence=(access.evidence(),),
    )


def _undeclared(w: StepWindow, access: Access) -> Finding:
    return Finding(
        "ZT631",
        Severity.ERROR,
        f"task {w.task!r} (run {w.run}) used {access.permission} on {access.resource}, which "
        "it did not declare",
        step=w.task,
        principal=f"serviceAccount:{access.principal}",
        resource=access.resource,
        permission=access.permission,
        evidence=(access.evidence(),),
    )


_EXEMPTS = " exempts "
#: members that may contain a step identity without naming it (membership is not read)
_GROUPS = ("group:", "domain:", "principalset:", "principal:")


def exemption(log_type: str, member: str) -> str:
    """The audit config entry saying ``member`` does not cause logging of ``log_type``
    (an ``exemptedMembers`` entry), kept among the enabled log types of a service."""
    return f"{log_type}{_EXEMPTS}{member}"


def _exempting(types: Iterable[str], identity: str | None) -> list[str]:
    """The exemptions among ``types`` that may cover ``identity`` (``None``: unknown, any
    does): the identity itself, or a group, domain or principal set it may belong to."""
    out = []
    for entry in types:
        kind, found, member = entry.partition(_EXEMPTS)
        if not found or kind not in ("DATA_READ", "DATA_WRITE"):
            continue
        low = member.lower()
        if identity is None or low == f"serviceaccount:{identity}" or low.startswith(_GROUPS):
            out.append(entry)
    return sorted(out)


def _logged_services(
    windows: Sequence[StepWindow],
    configs: Mapping[str, Mapping[str, set[str]] | None],
    owner_of: Callable[[str], str | None],
    findings: list[Finding],
) -> set[tuple[str, str, str]]:
    """(project, service, step identity) triples whose Data Access logs are on (the
    identity not exempted); a ZT633 for each used one that is off. A project whose configs
    could not be read (or a resource whose project is unknown) has none on: ZT634 says why,
    and nothing there is called unused."""
    used: dict[tuple[str | None, str], set[str | None]] = {}
    for w in windows:
        # the identity (lower case); a window without one: any exemption may cover it
        who = getattr(w, "service_account", None)
        identity = who.lower() if isinstance(who, str) else None
        for n in w.needs:
            for p in n.permissions:
                used.setdefault((owner_of(n.resource.name), permission_service(p)), set()).add(
                    identity
                )
        root = _root_need(w.pipeline_root)
        if root is not None:
            key = (owner_of(root.resource.name), "storage.googleapis.com")
            used.setdefault(key, set()).add(identity)
    always = {"bigquery.googleapis.com"}  # BigQuery's Data Access logs cannot be turned off
    on: set[tuple[str, str, str]] = set()
    for (where, service), identities in sorted(
        used.items(), key=lambda u: (u[0][0] or "", u[0][1])
    ):
        config = configs.get(where) if where is not None else None
        if where is None or config is None:
            continue  # unknown: the read failed (ZT634 says so)
        types = set(config.get(service, set())) | set(config.get("allServices", set()))
        if not ({"DATA_READ", "DATA_WRITE"} <= types or service in always):
            missing = sorted({"DATA_READ", "DATA_WRITE"} - types)
            findings.append(
                Finding(
                    "ZT633",
                    Severity.WARNING,
                    f"Data Access audit logs ({', '.join(missing)}) are off for {service} "
                    f"in project {where}: what the steps did there cannot be verified",
                    resource=service,
                )
            )
            continue
        for identity in sorted(identities, key=lambda i: i or ""):
            exempting = [] if service in always else _exempting(types, identity)
            if not exempting:
                if identity is not None:
                    on.add((where, service, identity))
                continue
            whom = f"serviceAccount:{identity}" if identity else "a step identity"
            findings.append(
                Finding(
                    "ZT633",
                    Severity.WARNING,
                    f"Data Access audit logs for {service} in project {where} exempt "
                    f"{whom} ({'; '.join(exempting)}): what it did there cannot be verified",
                    principal=f"serviceAccount:{identity}" if identity else None,
                    resource=service,
                )
            )
    return on


def _user_form(need: Need) -> str:
    name = need.resource.name
    if name.startswith("//storage.googleapis.com/"):
        return (
            "gs://"
            + name[len("//storage.googleapis.com/") :]
            + ("/" + need.resource.prefix if need.resource.prefix else "")
        )
    return name + (f" (objects {need.resource.prefix}*)" if need.resource.prefix else "")
