"""Carry out a :class:`~zt_pipelines.provision.plan.Plan` through the official Google clients.

This module does IO; every decision was made by :mod:`zt_pipelines.provision.plan`.

- Clients come from :class:`zt_pipelines.gcp.clients.ClientFactory`, so ``ZT_EMULATOR_HOST``
  (or ``emulator_host=``) points every call at the emulator and nothing else changes.
- Transient failures are retried by the adapters' :class:`~zt_pipelines.gcp.retry.RetryPolicy`.
- Each allow policy is changed by read-modify-write with its etag: read (version 3), add the
  plan's members to their bindings and remove the pruned ones, write back with the etag that
  was read. A concurrent writer makes the write fail (gRPC ``ABORTED``, HTTP 409/412); the
  whole read-modify-write is then repeated (bounded, jittered backoff) on fresh state, so the
  other writer's bindings are never lost.
- Idempotent: a policy that already holds every planned binding is not written at all; an
  account or role that already exists is left alone (a hand-edited managed role is corrected).
- Policy version 3 whenever a binding has a condition (required by IAM).
- All or nothing per step: a step's bindings (its own grants and the actAs on its account)
  are written completely or not at all. Policies are still written once per resource (a
  bucket shared by many steps gets one write); when a write fails, the bindings already
  written for every unfinished step are removed again and :class:`ApplyIncomplete` names the
  steps provisioned, the steps rolled back, and anything that could not be undone.
- Every apply writes an audit record when an audit log is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tenacity

from zt_pipelines.errors import ApiError, ZtError
from zt_pipelines.gcp.bigquery import get_dataset_v3, get_table_policy_v3
from zt_pipelines.gcp.convert import DATASET_LEGACY_ROLES
from zt_pipelines.policy.render import plural
from zt_pipelines.provision.model import PIPELINE_STEP, Grant, Plan, UnsupportedResourceError
from zt_pipelines.provision.plan import check_plan
from zt_pipelines.provision.render import render_json
from zt_pipelines.provision.support import assess, refuse_unsupported
from zt_pipelines.provision.support import warnings as support_warnings
from zt_pipelines.resources import BIGQUERY, CRM, IAM, STORAGE, display_uri

T = TypeVar("T")

#: codes a stale etag produces: gRPC ABORTED (HTTP 409) and HTTP 412 Precondition Failed
CONFLICT_CODES = frozenset({"ABORTED", "FAILED_PRECONDITION", "HTTP_412", "HTTP_409"})


@dataclass(frozen=True)
class ApplyResult:
    """What an apply changed.

    Attributes:
        created_accounts: service accounts created.
        created_roles: custom roles created.
        updated_roles: custom roles corrected (drift) or undeleted.
        added: bindings written (member added).
        removed: bindings removed (member removed; ``prune``).
        policies_written: full names of the resources whose allow policy was written.
        conflicts: etag conflicts met and retried.
        warnings: custom-role permissions IAM is still testing (``TESTING``, read live).
    """

    created_accounts: tuple[str, ...] = ()
    created_roles: tuple[str, ...] = ()
    updated_roles: tuple[str, ...] = ()
    added: tuple[Grant, ...] = ()
    removed: tuple[Grant, ...] = ()
    policies_written: tuple[str, ...] = ()
    conflicts: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when anything was written."""
        return bool(
            self.created_accounts
            or self.created_roles
            or self.updated_roles
            or self.added
            or self.removed
        )

    def __str__(self) -> str:
        notes = "".join(f"\nWarning: {w}" for w in self.warnings)
        if not self.changed:
            return "Apply complete: no changes." + notes
        return (
            f"Apply complete: {plural(len(self.created_accounts), 'account')} created, "
            f"{plural(len(self.created_roles) + len(self.updated_roles), 'role')} "
            f"created/updated, {plural(len(self.added), 'binding')} added, "
            f"{len(self.removed)} removed ({plural(len(self.policies_written), 'policy write')}, "
            f"{plural(self.conflicts, 'etag conflict')} retried)."
        ) + notes


@dataclass
class _Binding:
    role: str
    members: list[str]
    condition: dict[str, str] | None = None

    @property
    def expression(self) -> str:
        return (self.condition or {}).get("expression", "")


@dataclass
class _Policy:
    """A policy in a client-neutral shape, with what is needed to write it back."""

    bindings: list[_Binding]
    etag: Any
    version: int
    raw: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Store:
    """Reads and writes the allow policy of one kind of resource."""

    def __init__(self, factory: Any, retry: Any, name: str) -> None:
        self.factory = factory
        self.retry = retry
        self.name = name

    def get(self) -> _Policy:  # pragma: no cover - overridden
        raise NotImplementedError

    def set(self, policy: _Policy) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        return self.retry.call(fn, what=what, target=self.name)


def _from_pb(policy: Any) -> list[_Binding]:
    bindings = []
    for b in policy.bindings:
        cond = None
        if b.HasField("condition") and b.condition.expression:
            cond = {
                "expression": b.condition.expression,
                "title": b.condition.title,
                "description": b.condition.description,
            }
        bindings.append(_Binding(b.role, list(b.members), cond))
    return bindings


def _to_pb(policy: _Policy) -> Any:
    from google.iam.v1 import policy_pb2
    from google.type import expr_pb2

    out = policy_pb2.Policy()
    if policy.raw is not None:
        out.CopyFrom(policy.raw)
    del out.bindings[:]
    for b in policy.bindings:
        pb = out.bindings.add(role=b.role, members=sorted(b.members))
        if b.condition:
            pb.condition.CopyFrom(expr_pb2.Expr(**b.condition))
    out.version = policy.version
    out.etag = policy.etag
    return out


class _GapicStore(_Store):
    """Projects (resourcemanager_v3) and service accounts (iam_admin_v1): protobuf policies."""

    def __init__(self, factory: Any, retry: Any, name: str, client: Any, resource: str) -> None:
        super().__init__(factory, retry, name)
        self.client = client
        self.resource = resource

    def get(self) -> _Policy:
        raw = self.call(
            lambda: self.client.get_iam_policy(
                request={"resource": self.resource, "options": {"requested_policy_version": 3}}
            ),
            "getIamPolicy",
        )
        return _Policy(_from_pb(raw), raw.etag, raw.version, raw)

    def set(self, policy: _Policy) -> None:
        pb = _to_pb(policy)
        self.call(
            lambda: self.client.set_iam_policy(request={"resource": self.resource, "policy": pb}),
            "setIamPolicy",
        )


class _JsonPolicyStore(_Store):
    """Policies the JSON/HTTP clients return as ``google.api_core.iam.Policy`` objects."""

    def _read(self, raw: Any) -> _Policy:
        bindings = [
            _Binding(
                b["role"],
                sorted(b.get("members", ())),
                dict(b["condition"]) if b.get("condition") else None,
            )
            for b in raw.bindings
        ]
        return _Policy(bindings, raw.etag, raw.version or 1, raw)

    @staticmethod
    def _raw(policy: _Policy) -> Any:
        raw = policy.raw
        raw.version = policy.version
        raw.bindings = [
            {
                "role": b.role,
                "members": set(b.members),
                **({"condition": b.condition} if b.condition else {}),
            }
            for b in policy.bindings
        ]
        return raw


class _BucketStore(_JsonPolicyStore):
    """Cloud Storage bucket policies (JSON API via google-cloud-storage)."""

    def __init__(self, factory: Any, retry: Any, name: str) -> None:
        super().__init__(factory, retry, name)
        self.bucket = factory.storage().bucket(name[len(STORAGE) :])

    def get(self) -> _Policy:
        return self._read(
            self.call(
                lambda: self.bucket.get_iam_policy(requested_policy_version=3, retry=None),
                "storage.buckets.getIamPolicy",
            )
        )

    def set(self, policy: _Policy) -> None:
        raw = self._raw(policy)
        self.call(
            lambda: self.bucket.set_iam_policy(raw, retry=None),
            "storage.buckets.setIamPolicy",
        )


class _TableStore(_JsonPolicyStore):
    """BigQuery table policies."""

    def __init__(self, factory: Any, retry: Any, name: str) -> None:
        super().__init__(factory, retry, name)
        parts = name[len(BIGQUERY) :].split("/")
        self.table = f"{parts[1]}.{parts[3]}.{parts[5]}"
        self.client = factory.bigquery()

    def get(self) -> _Policy:
        return self._read(
            self.call(
                lambda: get_table_policy_v3(self.client, self.table),
                "bigquery.tables.getIamPolicy",
            )
        )

    def set(self, policy: _Policy) -> None:
        raw = self._raw(policy)
        self.call(
            lambda: self.client.set_iam_policy(self.table, raw, retry=None),
            "bigquery.tables.setIamPolicy",
        )


class _DatasetStore(_Store):
    """BigQuery dataset access entries (PATCH with the dataset's etag)."""

    def __init__(self, factory: Any, retry: Any, name: str) -> None:
        super().__init__(factory, retry, name)
        parts = name[len(BIGQUERY) :].split("/")
        self.dataset = f"{parts[1]}.{parts[3]}"
        self.project_dataset = (parts[1], parts[3])
        self.client = factory.bigquery()

    def get(self) -> _Policy:
        raw = self.call(
            lambda: get_dataset_v3(self.client, *self.project_dataset), "bigquery.datasets.get"
        )
        bindings: list[_Binding] = []
        others = []
        for entry in raw.access_entries:
            member = _dataset_member(entry)
            if member is None:
                others.append(entry)  # views, routines, special groups: kept verbatim
                continue
            if "withcond" in str(entry.role or "") or "_with_conditionalbinding_" in str(
                entry.role or ""
            ):
                # BigQuery hides an entry's condition from a version-1 read: never rewrite it blind
                raise UnsupportedResourceError(
                    f"the access entry {entry.role} of {member} was read without its condition",
                    where=self.name,
                    fix="grant this dataset access with plan --format gcloud or terraform",
                )
            # legacy names as the snapshot shows them, so planned removals match
            role = DATASET_LEGACY_ROLES.get(entry.role, entry.role)
            # the entry's IAM condition travels with it: a rewrite must never widen it
            bindings.append(_Binding(role, [member], _entry_condition(entry)))
        version = 3 if any(b.condition for b in bindings) else 1
        return _Policy(bindings, raw.etag, version, raw, {"others": others})

    def set(self, policy: _Policy) -> None:
        from google.cloud.bigquery import AccessEntry
        from google.cloud.bigquery.dataset import Condition

        entries = list(policy.extra["others"])
        for b in policy.bindings:
            cond = None
            if b.condition:
                cond = Condition(
                    b.condition["expression"],
                    b.condition.get("title") or None,
                    b.condition.get("description") or None,
                )
            for member in sorted(b.members):
                kind, _, email = member.partition(":")
                if kind in ("user", "serviceAccount"):
                    entry = AccessEntry(b.role, "userByEmail", email)
                elif kind == "group":
                    entry = AccessEntry(b.role, "groupByEmail", email)
                else:
                    entry = AccessEntry(b.role, "iamMember", member)
                if cond is not None:
                    entry.condition = cond
                entries.append(entry)
        raw = policy.raw
        raw.access_entries = entries
        self.call(
            lambda: self.client.update_dataset(raw, ["access_entries"], retry=None),
            "bigquery.datasets.update",
        )


def _entry_condition(entry: Any) -> dict[str, str] | None:
    """A dataset access entry's IAM condition as a binding condition (``None``: none)."""
    cond = getattr(entry, "condition", None)
    expression = getattr(cond, "expression", None)
    if not expression:
        return None
    out = {"expression": str(expression), "title": str(getattr(cond, "title", "") or "")}
    description = getattr(cond, "description", None)
    if description:
        out["description"] = str(description)
    return out


def _dataset_member(entry: Any) -> str | None:
    kind, ident = entry.entity_type, entry.entity_id
    if kind == "userByEmail":
        email = str(ident).lower()
        return (
            f"serviceAccount:{email}" if email.endswith("gserviceaccount.com") else f"user:{email}"
        )
    if kind == "groupByEmail":
        return f"group:{str(ident).lower()}"
    if kind == "iamMember":
        return str(ident)
    return None


def _store_for(factory: Any, retry: Any, name: str) -> _Store:
    if name.startswith(STORAGE):
        return _BucketStore(factory, retry, name)
    if name.startswith(CRM + "projects/"):
        return _GapicStore(factory, retry, name, factory.projects(), name[len(CRM) :])
    if name.startswith(IAM + "projects/"):
        return _GapicStore(factory, retry, name, factory.iam_admin(), name[len(IAM) :])
    if name.startswith(BIGQUERY):
        if "/tables/" in name:
            return _TableStore(factory, retry, name)
        return _DatasetStore(factory, retry, name)
    raise UnsupportedResourceError(
        f"apply cannot write the policy of {name}",
        where="apply",
        fix="use plan --format terraform or --format gcloud for this resource",
    )


def _supported(name: str) -> bool:
    return name.startswith((STORAGE, CRM + "projects/", IAM + "projects/", BIGQUERY))


# -- the read-modify-write -----------------------------------------------------------------


def _same_role(a: str, b: str) -> bool:
    """Role names equal, reading BigQuery's legacy dataset names (READER...) as their roles."""
    return DATASET_LEGACY_ROLES.get(a, a) == DATASET_LEGACY_ROLES.get(b, b)


def _modify(
    policy: _Policy, adds: Sequence[Grant], removes: Sequence[Grant]
) -> tuple[list[Grant], list[Grant]]:
    """Apply the changes to ``policy`` in place; return what actually changed."""
    added: list[Grant] = []
    removed: list[Grant] = []
    for grant in removes:
        expr = grant.condition.expression if grant.condition else ""
        for b in policy.bindings:
            if _same_role(b.role, grant.role) and b.expression == expr:
                kept = [m for m in b.members if m.lower() != grant.member.lower()]
                if len(kept) != len(b.members):
                    b.members = kept
                    removed.append(grant)
    policy.bindings = [b for b in policy.bindings if b.members]
    for grant in adds:
        expr = grant.condition.expression if grant.condition else ""
        match = next(
            (b for b in policy.bindings if _same_role(b.role, grant.role) and b.expression == expr),
            None,
        )
        if match is not None and any(m.lower() == grant.member.lower() for m in match.members):
            continue
        if match is None:
            cond = None
            if grant.condition is not None:
                cond = {"expression": grant.condition.expression, "title": grant.condition.title}
                if grant.condition.description:
                    cond["description"] = grant.condition.description
            match = _Binding(grant.role, [], cond)
            policy.bindings.append(match)
        match.members.append(grant.member)
        added.append(grant)
    if any(b.condition for b in policy.bindings):
        policy.version = 3  # IAM requires version 3 for conditional bindings
    return added, removed


@dataclass
class _Conflicts:
    count: int = 0


def _read_modify_write(
    store: _Store,
    adds: Sequence[Grant],
    removes: Sequence[Grant],
    *,
    attempts: int,
    sleep: Callable[[float], None],
    rng: random.Random,
    conflicts: _Conflicts,
) -> tuple[list[Grant], list[Grant], bool]:
    outcome: tuple[list[Grant], list[Grant], bool] = ([], [], False)

    def conflicted(state: tenacity.RetryCallState) -> None:
        conflicts.count += 1

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        # someone wrote in between: back off (full jitter) and redo on fresh state
        wait=lambda state: rng.uniform(0, min(2.0, 0.05 * 2 ** min(state.attempt_number, 6))),
        retry=tenacity.retry_if_exception(
            lambda exc: isinstance(exc, ApiError) and exc.code in CONFLICT_CODES
        ),
        sleep=sleep,
        before_sleep=conflicted,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            policy = store.get()
            added, removed = _modify(policy, adds, removes)
            if not added and not removed:
                outcome = ([], [], False)  # already as planned: no write (idempotent)
            else:
                store.set(policy)
                outcome = (added, removed, True)
    return outcome


# -- accounts and roles ----------------------------------------------------------------------


def _exists(retry: Any, fn: Callable[[], Any], what: str, target: str) -> Any | None:
    """Read first, so re-applying a stale plan makes no write at all; ``None`` if absent."""
    try:
        return retry.call(fn, what=what, target=target)
    except ApiError as exc:
        if exc.code == "NOT_FOUND":
            return None
        raise


def _progress(plan: Plan, resources: list[str]) -> Callable[[], None]:
    """A tick per write unit (account, custom role, resource policy) for the progress reporter
    the CLI installed (:mod:`zt_pipelines.gcp.progress`), if any."""
    from zt_pipelines.gcp.progress import current

    report = current()
    total = (
        sum(1 for a in plan.accounts if a.state == "create")
        + sum(1 for r in plan.custom_roles if r.state != "exists")
        + len(resources)
    )
    done = 0
    if report is not None:
        report(0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        if report is not None:
            report(done, total)

    return tick


def _ticked(items: Sequence[T], tick: Callable[[], None]) -> Iterator[T]:
    """``items``, ticking after the loop body finished with each (``continue`` included)."""
    for item in items:
        yield item
        tick()


def _create_accounts(
    plan: Plan, factory: Any, retry: Any, tick: Callable[[], None] = lambda: None
) -> list[str]:
    created: list[str] = []
    todo = [acct for acct in plan.accounts if acct.state == "create"]
    client: Any = factory.iam_admin() if todo else None
    for acct in _ticked(todo, tick):
        name = f"projects/{acct.project}/serviceAccounts/{acct.email}"
        found = _exists(
            retry,
            functools.partial(client.get_service_account, request={"name": name}),
            "iam.serviceAccounts.get",
            acct.email,
        )
        if found is not None:
            continue  # created since the plan was made
        request = {
            "name": f"projects/{acct.project}",
            "account_id": acct.account_id,
            "service_account": {"display_name": acct.display_name},
        }
        try:
            retry.call(
                lambda r=request: client.create_service_account(request=r),
                what="iam.serviceAccounts.create",
                target=acct.email,
            )
        except ApiError as exc:
            if exc.code != "ALREADY_EXISTS":
                raise
            continue  # a concurrent apply created it: fine
        created.append(acct.email)
    return created


def _sync_roles(
    plan: Plan, factory: Any, retry: Any, tick: Callable[[], None] = lambda: None
) -> tuple[list[str], list[str]]:
    created: list[str] = []
    updated: list[str] = []
    todo = [spec for spec in plan.custom_roles if spec.state != "exists"]
    client: Any = factory.iam_admin() if todo else None
    for spec in _ticked(todo, tick):
        role = spec.role
        body = {
            "title": role.title,
            "description": role.description,
            "included_permissions": list(role.permissions),
            "stage": "GA",
        }
        current = _exists(
            retry,
            functools.partial(client.get_role, request={"name": role.name}),
            "iam.roles.get",
            role.name,
        )
        if current is None:
            try:
                retry.call(
                    lambda b=body, r=role: client.create_role(
                        request={"parent": r.parent, "role_id": r.role_id, "role": b}
                    ),
                    what="iam.roles.create",
                    target=role.name,
                )
                created.append(role.name)
                continue
            except ApiError as exc:
                if exc.code != "ALREADY_EXISTS":
                    raise
            current = retry.call(
                lambda r=role: client.get_role(request={"name": r.name}),
                what="iam.roles.get",
                target=role.name,
            )
        if set(current.included_permissions) == set(role.permissions) and not current.deleted:
            continue  # as planned (identical sets share the role; concurrent applies agree)
        if current.deleted:
            retry.call(
                lambda r=role: client.undelete_role(request={"name": r.name}),
                what="iam.roles.undelete",
                target=role.name,
            )
        retry.call(
            lambda b=body, r=role: client.update_role(
                request={
                    "name": r.name,
                    "role": b,
                    "update_mask": {"paths": ["title", "description", "included_permissions"]},
                }
            ),
            what="iam.roles.update",
            target=role.name,
        )
        updated.append(role.name)
    return created, updated


# -- entry point ------------------------------------------------------------------------------


def apply_plan(
    plan: Plan,
    *,
    factory: Any = None,
    credentials: Any = None,
    emulator_host: str | None = None,
    retry: Any = None,
    conflict_attempts: int = 40,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    audit_log: Any = None,
    submitter: str | None = None,
    location: str = "",
) -> ApplyResult:
    """Create the plan's accounts and roles and write its bindings, idempotently.

    Args:
        plan: the plan to carry out.
        factory: a :class:`zt_pipelines.gcp.clients.ClientFactory`; built from
            ``credentials``/``emulator_host`` (or ``ZT_EMULATOR_HOST``) when omitted.
        retry: a :class:`zt_pipelines.gcp.retry.RetryPolicy` for transient errors.
        conflict_attempts: read-modify-write attempts per policy on etag conflicts.
        sleep, rng: backoff between conflict retries (injectable for tests).
        audit_log: an :class:`zt_pipelines.audit.AuditLog` or a path for the record of this
            apply; ``None`` uses the same trail as submissions (``$ZT_AUDIT_LOG``, else
            ``~/.local/state/zt-pipelines/audit.jsonl``); ``False`` writes none.
        submitter: who applies, for the record (default: the credentials' principal).
        location: recorded in the audit record.

    Raises:
        ProvisioningRefused: the plan grants or removes something planning would refuse
            (:func:`~zt_pipelines.provision.plan.check_plan`; before any write happens).
        CustomRoleSupportError: a custom role to create or update holds a permission IAM
            does not allow in custom roles (read live; before any write happens).
        UnsupportedResourceError: a grant is on a resource apply cannot write (before any
            write happens).
        ApplyIncomplete: a write failed after retries: all or nothing per step — the
            bindings this apply wrote for every step not finished are rolled back (named,
            with any that could not be), the finished steps stay; a re-run continues where it
            stopped, because every step is idempotent. An :class:`ApiError`.
    """
    from zt_pipelines.gcp.clients import ClientFactory
    from zt_pipelines.gcp.retry import RetryPolicy

    factory = factory or ClientFactory(
        credentials, emulator_host=emulator_host, project=plan.project
    )
    retry = retry or RetryPolicy()
    rng = rng or random.Random()
    if audit_log is None or submitter is None:
        from zt_pipelines.audit import default_audit_log
        from zt_pipelines.gcp.submitter import submitter_of

        audit_log = default_audit_log() if audit_log is None else audit_log
        submitter = submitter or submitter_of(factory.credentials)
    _require_audit_writable(audit_log)  # no grant may be written without its record
    try:
        _refuse_before_writing(plan)
        warnings = _verify_support(plan, factory, retry)
    except ZtError as exc:  # a refused apply is a decision too: recorded like a refused submit
        _audit(plan, audit_log, submitter or "unknown", location, None, str(exc))
        raise
    conflicts = _Conflicts()
    resources = sorted({g.resource for g in (*plan.grants, *plan.removals)})
    tick = _progress(plan, resources)
    try:
        try:
            accounts = _create_accounts(plan, factory, retry, tick)
            roles_created, roles_updated = _sync_roles(plan, factory, retry, tick)
        except ZtError as exc:  # before any binding: no step is half provisioned
            raise ApplyIncomplete(
                f"{exc.what}; no binding was written (accounts and roles created before "
                "it stay: they grant nothing); re-run apply to continue",
                where=exc.where,
                fix=exc.fix,
                code=getattr(exc, "code", None),
                failed_steps=tuple(_unit_label(plan, u) for u in sorted(_units(plan))),
            ) from exc
        done: list[tuple[str, list[Grant], list[Grant]]] = []
        for name in _ticked(resources, tick):
            store = _store_for(factory, retry, name)
            adds = [g for g in plan.grants if g.resource == name]
            removes = [g for g in plan.removals if g.resource == name]
            try:
                a, r, _wrote = _read_modify_write(
                    store,
                    adds,
                    removes,
                    attempts=conflict_attempts,
                    sleep=sleep,
                    rng=rng,
                    conflicts=conflicts,
                )
            except ZtError as exc:  # all or nothing per step: undo the unfinished steps
                partial = _roll_back(
                    plan, exc, name, done, factory, retry, conflict_attempts, sleep, rng
                )
                partial.result = dataclasses.replace(
                    partial.result,
                    created_accounts=tuple(accounts),
                    created_roles=tuple(roles_created),
                    updated_roles=tuple(roles_updated),
                    conflicts=conflicts.count,
                    warnings=warnings,
                )
                raise partial from exc
            if a or r:
                done.append((name, a, r))
        result = ApplyResult(
            tuple(accounts),
            tuple(roles_created),
            tuple(roles_updated),
            tuple(g for _, a, _ in done for g in a),
            tuple(g for _, _, r in done for g in r),
            tuple(name for name, _, _ in done),
            conflicts.count,
            warnings,
        )
    except ApplyIncomplete as exc:
        _audit(plan, audit_log, submitter or "unknown", location, exc.result, str(exc), exc)
        raise
    except Exception as exc:
        _audit(plan, audit_log, submitter or "unknown", location, None, str(exc))
        raise
    _audit(plan, audit_log, submitter or "unknown", location, result, str(result))
    return result


class ApplyIncomplete(ApiError):
    """A write failed part-way: every step whose bindings were not all written had the ones
    this apply wrote for it undone (all or nothing per step); the steps finished before the
    failure stay provisioned. Re-running apply continues (every write is idempotent).

    Attributes:
        result: what stays written (the finished steps' bindings, accounts, roles).
        completed_steps: the steps (identities) fully provisioned.
        failed_steps: the steps not provisioned (their bindings undone or never written).
        rolled_back: the bindings written (or removed) for a failed step and undone again.
        not_rolled_back: bindings that could not be undone (named in the message: remove
            them by hand).
    """

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        code: str | None = None,
        result: ApplyResult | None = None,
        completed_steps: tuple[str, ...] = (),
        failed_steps: tuple[str, ...] = (),
        rolled_back: tuple[Grant, ...] = (),
        not_rolled_back: tuple[Grant, ...] = (),
    ) -> None:
        self.result = result or ApplyResult()
        self.completed_steps = completed_steps
        self.failed_steps = failed_steps
        self.rolled_back = rolled_back
        self.not_rolled_back = not_rolled_back
        super().__init__(what, where=where, fix=fix, code=code)


def _units(plan: Plan) -> dict[str, list[Grant]]:
    """The plan's grants and removals by the identity they provision: a step account's own
    bindings and the actAs on it are one unit (all or nothing); the pipeline identity's and
    the submitter's are units of their own."""
    steps = {a.email.lower() for a in plan.step_accounts}
    units: dict[str, list[Grant]] = {}
    for grant in (*plan.grants, *plan.removals):
        units.setdefault(_unit_of(grant, steps, plan), []).append(grant)
    return units


def _unit_of(grant: Grant, steps: set[str], plan: Plan) -> str:
    kind, _, email = grant.member.partition(":")
    if kind == "serviceAccount" and email.lower() in steps:
        return email.lower()
    head, sep, target = grant.resource.rpartition("/serviceAccounts/")
    if sep and head.startswith(IAM) and target.lower() in steps:
        return target.lower()
    if grant.member.lower() == f"serviceaccount:{plan.pipeline_service_account.lower()}":
        return PIPELINE_STEP
    return grant.member.lower()


def _unit_label(plan: Plan, unit: str) -> str:
    for account in plan.accounts:
        if account.email.lower() == unit:
            return f"{', '.join(account.steps)} ({account.email})"
    return unit


def _roll_back(
    plan: Plan,
    exc: ZtError,
    failed_at: str,
    done: Sequence[tuple[str, list[Grant], list[Grant]]],
    factory: Any,
    retry: Any,
    attempts: int,
    sleep: Callable[[float], None],
    rng: random.Random,
) -> ApplyIncomplete:
    """Undo what was written for every unit that is not complete, and say what happened."""
    units = _units(plan)
    steps = {a.email.lower() for a in plan.step_accounts}
    written = {name for name, _, _ in done}
    failed = sorted(
        unit for unit, grants in units.items() if any(g.resource not in written for g in grants)
    )
    rolled: list[Grant] = []
    stuck: list[Grant] = []
    kept_added: list[Grant] = []
    kept_removed: list[Grant] = []
    kept_written: list[str] = []
    for name, added, removed in reversed(done):
        undo_add = [g for g in added if _unit_of(g, steps, plan) in failed]
        undo_remove = [g for g in removed if _unit_of(g, steps, plan) in failed]
        kept_added += (g for g in added if g not in undo_add)
        kept_removed += (g for g in removed if g not in undo_remove)
        if len(undo_add) + len(undo_remove) < len(added) + len(removed):
            kept_written.append(name)
        if not undo_add and not undo_remove:
            continue
        try:  # the inverse change: re-add what was removed, remove what was added
            _read_modify_write(
                _store_for(factory, retry, name),
                undo_remove,
                undo_add,
                attempts=attempts,
                sleep=sleep,
                rng=rng,
                conflicts=_Conflicts(),
            )
            rolled += (*undo_add, *undo_remove)
        except ZtError:
            stuck += (*undo_add, *undo_remove)
    failed_labels = tuple(_unit_label(plan, u) for u in failed)
    completed = tuple(_unit_label(plan, u) for u in sorted(units) if u not in failed)
    what = (
        f"apply stopped at {display_uri(failed_at)} ({exc.what}): "
        f"not provisioned: {'; '.join(failed_labels)}"
        + (
            f" — {plural(len(rolled), 'binding')} written for them in this apply rolled back"
            if rolled
            else " — nothing had been written for them"
        )
        + (f"; provisioned completely: {'; '.join(completed)}" if completed else "")
    )
    if stuck:
        what += "; COULD NOT ROLL BACK (remove by hand): " + "; ".join(
            f"{g.member} {g.role} on {g.uri}" for g in stuck
        )
    return ApplyIncomplete(
        what,
        where="apply",
        fix=exc.fix or "fix the cause and re-run apply: it continues where it stopped",
        code=getattr(exc, "code", None),
        result=ApplyResult(
            added=tuple(reversed(kept_added)),
            removed=tuple(reversed(kept_removed)),
            policies_written=tuple(reversed(kept_written)),
        ),
        completed_steps=completed,
        failed_steps=failed_labels,
        rolled_back=tuple(rolled),
        not_rolled_back=tuple(stuck),
    )


def _refuse_before_writing(plan: Plan) -> None:
    """Everything that refuses the whole apply, checked before the first write."""
    check_plan(plan)  # the plan may not come from build_plan: re-check before any write
    for grant in (*plan.grants, *plan.removals):
        if not _supported(grant.resource):
            raise UnsupportedResourceError(
                f"apply cannot write the policy of {grant.uri}",
                where=f"step {grant.step!r}",
                fix="use plan --format terraform or --format gcloud for this resource",
            )


def _verify_support(plan: Plan, factory: Any, retry: Any) -> tuple[str, ...]:
    """Read the custom-role support levels live for every role about to be created or updated
    and refuse, before any write, what IAM would reject; TESTING permissions come back as
    warnings. A read that fails refuses too (fail closed: an unverified role is not written).

    Raises:
        CustomRoleSupportError: a permission is NOT_SUPPORTED or not testable on the parent.
        ApiError: the levels could not be read.
    """
    from zt_pipelines.gcp.iam_admin import IamAdminAdapter

    todo: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for spec in plan.custom_roles:
        if spec.state != "exists":
            todo.setdefault(spec.role.parent, []).append((spec.role.name, spec.role.permissions))
    found: list[str] = []
    adapter = IamAdminAdapter(factory, retry)
    for parent, roles in sorted(todo.items()):
        try:
            levels = _support_levels(factory, parent, adapter.query_testable_permissions)
        except ApiError as exc:
            raise ApiError(
                f"the custom-role support levels of {parent} could not be read ({exc.what}); "
                "no role is written unverified",
                where="apply",
                fix="let the applying identity call permissions.queryTestablePermissions "
                f"on {parent}, or apply with --roles predefined",
                code=exc.code,
            ) from exc
        issues = assess(roles, levels, source=f"live: {parent}")
        refuse_unsupported(issues, where="apply")
        found += support_warnings(issues)
    return tuple(found)


# Support levels read once per client factory (one endpoint, one caller) and parent, shared by
# concurrent applies: they decide only whether a role may be written (IAM refuses the rest
# anyway), never what is granted, so a cached read is no weaker evidence. Failures are not kept.
_SUPPORT_CACHE: weakref.WeakKeyDictionary[Any, dict[str, dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)
_SUPPORT_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_SUPPORT_GUARD = threading.Lock()


def _support_levels(
    factory: Any, parent: str, read: Callable[[str], dict[str, str]]
) -> dict[str, str]:
    """The support levels of ``parent`` through ``factory``: read once, then shared."""
    with _SUPPORT_GUARD:
        lock = _SUPPORT_LOCKS.setdefault((id(factory), parent), threading.Lock())
    with lock:  # concurrent applies wait for the one read instead of each making their own
        with _SUPPORT_GUARD:
            known = _SUPPORT_CACHE.get(factory, {}).get(parent)
        if known is not None:
            return known
        levels = read(CRM + parent)
        # a factory that cannot be weakly referenced is not cached
        with _SUPPORT_GUARD, contextlib.suppress(TypeError):
            _SUPPORT_CACHE.setdefault(factory, {})[parent] = levels
        return levels


def _require_audit_writable(audit_log: Any) -> None:
    """Open the audit log for appending (writing nothing) before any change is made.

    Raises:
        ApiError: the log cannot be appended to.
    """
    if audit_log is False or audit_log is None:
        return
    from zt_pipelines.audit import AuditLog

    path = audit_log.path if isinstance(audit_log, AuditLog) else Path(audit_log)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError as exc:
        raise ApiError(
            f"cannot append to the audit log ({exc.strerror or exc})",
            where=str(path),
            fix="make the audit log writable; nothing is provisioned without an audit record",
        ) from exc


def _audit(
    plan: Plan,
    audit_log: Any,
    submitter: str,
    location: str,
    result: ApplyResult | None,
    reason: str,
    incomplete: ApplyIncomplete | None = None,
) -> None:
    if audit_log is False or audit_log is None:
        return
    from zt_pipelines.audit import AuditIdentity, AuditLog, Decision

    log = audit_log if isinstance(audit_log, AuditLog) else AuditLog(audit_log)
    identities = tuple(
        AuditIdentity(
            "pipeline" if acct.steps == (PIPELINE_STEP,) else "step",
            acct.email,
            "" if acct.steps == (PIPELINE_STEP,) else ", ".join(acct.steps),
            "provisioned",
        )
        for acct in plan.accounts
    )
    changes: list[dict[str, Any]] = []
    if result is not None:
        changes += [_change("account-created", email) for email in result.created_accounts]
        changes += [_change("role-created", name) for name in result.created_roles]
        changes += [_change("role-updated", name) for name in result.updated_roles]
        changes += [_grant_change("binding-added", g) for g in result.added]
        changes += [_grant_change("binding-removed", g) for g in result.removed]
    if incomplete is not None:  # what was undone (and what could not be) is part of the record
        changes += [_grant_change("rolled-back", g) for g in incomplete.rolled_back]
        changes += [_grant_change("rollback-failed", g) for g in incomplete.not_rolled_back]
    log.append(
        Decision(
            action="provision-apply",
            outcome="allowed" if result is not None and incomplete is None else "refused",
            submitter=submitter,
            project=plan.project,
            location=location,
            pipeline=plan.pipeline_name,
            spec_sha256=hashlib.sha256(render_json(plan).encode()).hexdigest(),
            identities=identities,
            findings=tuple(changes),
            reason=reason.splitlines()[0][:500] if reason else "",
        )
    )


def _change(kind: str, target: str) -> dict[str, Any]:
    return {"change": kind, "target": target}


def _grant_change(kind: str, grant: Grant) -> dict[str, Any]:
    data: dict[str, Any] = {
        "change": kind,
        "resource": grant.resource,
        "role": grant.role,
        "member": grant.member,
        "step": grant.step,
    }
    if grant.condition is not None:
        data["condition"] = grant.condition.expression
    return data
