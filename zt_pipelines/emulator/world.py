"""The emulator's mutable world: a snapshot that writes change, behind one lock.

Everything the served APIs read or write goes through :class:`World`, so every call sees a
consistent state, and :meth:`World.snapshot` hands out frozen copies (rebuilt only after a
write). Authorization of the emulator's own callers is one hook (:data:`Authorizer`) fed with
that frozen snapshot.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from zt_pipelines.emulator.audit_logs import AuditLogStore
from zt_pipelines.emulator.run_details import RunScripts, StepRun
from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.snapshot import AllowPolicy, Node, Role, ServiceAccount, Snapshot
from zt_pipelines.resources import CRM, IAM

T = TypeVar("T")

# (member, full resource name, permission, snapshot, object name) -> granted?
Authorizer = Callable[[str, str, str, Snapshot, "str | None"], bool]


# engine decision state -> Policy Troubleshooter AccessState
_ACCESS_STATES = {
    "granted": "GRANTED",
    "not_granted": "NOT_GRANTED",
    "denied": "NOT_GRANTED",
    "unverifiable": "UNKNOWN_CONDITIONAL",
}


class EmulatorError(Exception):
    """A Google error status the emulator answers with.

    Args:
        code: the google.rpc.Code name (``NOT_FOUND``, ``PERMISSION_DENIED``, ...).
        message: the error message the client will see.
        http_status: overrides the HTTP status derived from ``code`` (e.g. 412 for storage etags).
    """

    def __init__(self, code: str, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def etag_bytes(etag: str) -> bytes:
    """The bytes a gRPC client sees for a stored (base64 text) etag."""
    try:
        raw = base64.b64decode(etag, validate=True)
    except ValueError:
        return etag.encode()
    return raw if base64.b64encode(raw).decode() == etag else etag.encode()


def page(items: Sequence[T], page_size: int, page_token: str, default: int) -> tuple[list[T], str]:
    """One page of ``items`` and the token of the next page (``""`` on the last page).

    Raises:
        EmulatorError: INVALID_ARGUMENT for a token this emulator did not issue.
    """
    size = page_size if page_size > 0 else default
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise EmulatorError("INVALID_ARGUMENT", f"invalid page token {page_token!r}") from exc
        if start < 0 or start > len(items):
            raise EmulatorError("INVALID_ARGUMENT", f"invalid page token {page_token!r}")
    end = start + size
    token = base64.urlsafe_b64encode(f"o:{end}".encode()).decode() if end < len(items) else ""
    return list(items[start:end]), token


def fake_project_number(project_id: str) -> str:
    """A stable 12-digit number for a project whose number the snapshot does not record."""
    digest = hashlib.sha256(project_id.encode()).hexdigest()
    return str(100_000_000_000 + int(digest[:12], 16) % 900_000_000_000)


class World:
    """The current IAM world plus the objects and jobs clients created (thread-safe)."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        project_numbers: dict[str, str] | None = None,
        authorizer: Authorizer | None = None,
        enforce_iam: bool = True,
        simulate_runs: bool = False,
        permission_support: Mapping[str, str] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        # permission -> custom-role support level (queryTestablePermissions; SUPPORTED unless
        # named): the catalogue's known levels, overridden by the emulator's owner
        from zt_pipelines.policy.role_catalogue import support_levels

        self.permission_support: dict[str, str] = {
            **support_levels(),
            **(permission_support or {}),
        }
        self.enforce_iam = enforce_iam
        self.simulate_runs = simulate_runs
        self._authorizer = authorizer
        self._etags = itertools.count(1)
        self.nodes: dict[str, Node] = dict(snapshot.nodes)
        self.roles: dict[str, Role] = dict(snapshot.roles)
        self.deny_policies = list(snapshot.deny_policies)
        self.service_accounts: dict[str, ServiceAccount] = {
            k.lower(): v for k, v in snapshot.service_accounts.items()
        }
        self._base = snapshot
        self.project_numbers: dict[str, str] = {}
        for node in snapshot.nodes.values():
            if node.kind == "project" and node.project_number:
                self.project_numbers[node.name.rsplit("/", 1)[1]] = node.project_number
        self.project_numbers.update(project_numbers or {})
        # stored objects: (bucket, object name) -> (bytes, content type)
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.pipeline_jobs: dict[str, dict[str, Any]] = {}  # as sent by the client
        self.served_jobs: dict[str, dict[str, Any]] = {}  # as served (with name, state)
        self.custom_jobs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        # simulated runs: scripted deviations and the step jobs they ran (for audit logs)
        self.run_scripts = RunScripts()
        self.step_runs: list[StepRun] = []
        self.log_store = AuditLogStore()  # Cloud Audit Logs and project auditConfigs
        self.log_store.ancestors = self._ancestors  # auditConfigs are inherited, as on Google
        # dataset access entries that are not IAM members (views, routines): kept verbatim
        self.dataset_extras: dict[str, list[dict[str, Any]]] = {}
        self._frozen: Snapshot | None = None
        self._evaluator: Evaluator | None = None
        # decisions of the current world when none can depend on the time (no condition)
        self._decided: dict[tuple[str, str, str, str | None], str] | None = None
        #: Cloud Asset searches' matches for one frozen world: (that snapshot, (scope, query)
        #: -> matches); a new snapshot (after any write) starts afresh
        self.search_memo: tuple[Snapshot | None, dict[tuple[str, str], list[Any]]] = (None, {})
        for name, node in list(self.nodes.items()):
            if node.policy is not None and not node.policy.etag:
                self.nodes[name] = replace(node, policy=replace(node.policy, etag=self.new_etag()))
        # the emulator is the whole world: a service account it knows has a (maybe empty)
        # policy and sits under its project, so permissions on it can be decided
        for sa in self.service_accounts.values():
            name = f"{IAM}projects/{sa.project_id}/serviceAccounts/{sa.email}"
            if name not in self.nodes:
                self.nodes[name] = Node(
                    name=name,
                    kind="serviceAccount",
                    parent=f"{CRM}projects/{sa.project_id}",
                    policy=AllowPolicy(etag=self.new_etag()),
                )

    # -- snapshots and writes ------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A frozen copy of the current world."""
        with self.lock:
            if self._frozen is None:
                self._frozen = replace(
                    self._base,
                    nodes=dict(self.nodes),
                    roles=dict(self.roles),
                    deny_policies=tuple(self.deny_policies),
                    service_accounts=dict(self.service_accounts),
                )
            return self._frozen

    def changed(self) -> None:
        """Call after every write (under the lock): the next snapshot is rebuilt."""
        self._frozen = None
        self._evaluator = None
        self._decided = None

    def new_etag(self) -> str:
        """A fresh etag (base64 text, as Google's JSON APIs show them)."""
        serial = next(self._etags)
        return base64.b64encode(b"zt" + serial.to_bytes(6, "big")).decode()

    # -- names -------------------------------------------------------------------------------

    def _ancestors(self, project: str) -> list[str]:
        """``folders/F`` ... ``organizations/O`` above a project, nearest first."""
        out: list[str] = []
        node = self.node(f"{CRM}projects/{project}")
        while node is not None and node.parent and len(out) < 64:
            out.append(node.parent.removeprefix(CRM))
            node = self.node(node.parent)
        return out

    def project_id(self, ref: str) -> str | None:
        """The project id for ``ref`` (an id or a number), if the project is known."""
        with self.lock:
            if f"{CRM}projects/{ref}" in self.nodes:
                return ref
            for project_id, number in self.project_numbers.items():
                if number == ref:
                    return project_id
        return None

    def project_number(self, project_id: str) -> str:
        """The project's number (a stable made-up one if the snapshot has none)."""
        with self.lock:
            return self.project_numbers.get(project_id) or fake_project_number(project_id)

    def node(self, name: str) -> Node | None:
        """The node with this full resource name, if any."""
        with self.lock:
            return self.nodes.get(name)

    def policy_of(self, name: str) -> AllowPolicy:
        """The allow policy of an existing node (an empty one if it has none).

        Raises:
            EmulatorError: NOT_FOUND when the node does not exist.
        """
        with self.lock:
            node = self.nodes.get(name)
            if node is None:
                raise EmulatorError("NOT_FOUND", f"resource {name} not found")
            if node.policy is None:
                node = replace(node, policy=AllowPolicy(etag=self.new_etag()))
                self.nodes[name] = node
                self.changed()
            assert node.policy is not None
            return node.policy

    def set_policy(self, name: str, policy: AllowPolicy, *, etag_matches: bool) -> AllowPolicy:
        """Replace a node's allow policy; the caller compared etags (``etag_matches``).

        Raises:
            EmulatorError: NOT_FOUND, or ABORTED when the etag is stale.
        """
        with self.lock:
            node = self.nodes.get(name)
            if node is None:
                raise EmulatorError("NOT_FOUND", f"resource {name} not found")
            if not etag_matches:
                raise EmulatorError(
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole "
                    "read-modify-write with exponential backoff.",
                )
            stored = replace(policy, etag=self.new_etag())
            self.nodes[name] = replace(node, policy=stored)
            self.changed()
            return stored

    def add_node(self, node: Node) -> None:
        """Create a node (bucket, service account, ...)."""
        with self.lock:
            self.nodes[node.name] = node
            self.changed()

    # -- authorization -----------------------------------------------------------------------

    def authenticate(self, caller: str | None) -> None:
        """Refuse a call without a caller when IAM is enforced.

        Raises:
            EmulatorError: UNAUTHENTICATED.
        """
        if self.enforce_iam and not caller:
            raise EmulatorError(
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. "
                "Expected an emulator bearer token (see emulator_credentials).",
            )

    def access(
        self, member: str, resource: str, permission: str, *, object_name: str | None = None
    ) -> str:
        """Troubleshooter access: ``GRANTED``, ``NOT_GRANTED`` or ``UNKNOWN_CONDITIONAL``."""
        state = self.decide(member, resource, permission, object_name=object_name)
        return _ACCESS_STATES.get(state, "UNKNOWN_CONDITIONAL")

    def decide(
        self, member: str, resource: str, permission: str, *, object_name: str | None = None
    ) -> str:
        """Our engine's decision state (``granted``, ``not_granted``, ``unverifiable``,
        ``denied``) for the current world."""
        key = (member, resource, permission, object_name)
        with self.lock:
            snapshot = self.snapshot()
            if self._evaluator is None:
                self._evaluator = Evaluator(snapshot)
                self._decided = {} if _timeless(snapshot) else None
            evaluator, decided = self._evaluator, self._decided
            if decided is not None and key in decided:
                return decided[key]
        now = datetime.datetime.now(datetime.timezone.utc)
        decision = evaluator.decide(member, resource, permission, now=now, object_name=object_name)
        state = str(decision.state)
        if decided is not None:
            with self.lock:
                if self._decided is decided:  # the world has not changed meanwhile
                    decided[key] = state
        return state

    def authorize(
        self,
        caller: str | None,
        permission: str,
        resource: str,
        *,
        object_name: str | None = None,
        parent: str | None = None,
    ) -> None:
        """Refuse unless ``caller`` holds ``permission`` on ``resource``.

        A resource that does not exist is checked on its ``parent`` instead, so a caller with
        rights on the project learns NOT_FOUND rather than PERMISSION_DENIED, as on Google.

        Raises:
            EmulatorError: UNAUTHENTICATED without a caller, PERMISSION_DENIED when not granted.
        """
        if not self.enforce_iam:
            return
        self.authenticate(caller)
        assert caller is not None
        target = resource
        if parent is not None and self.node(resource) is None:
            target = parent
        if self._authorizer is not None:
            granted = self._authorizer(caller, target, permission, self.snapshot(), object_name)
        else:
            state = self.decide(caller, target, permission, object_name=object_name)
            granted = state == "granted"  # only a proven grant counts: fail closed
        if not granted:
            raise EmulatorError(
                "PERMISSION_DENIED",
                f"Permission '{permission}' denied on resource '{resource}' for {caller} "
                "(or it may not exist).",
            )


def _timeless(snapshot: Snapshot) -> bool:
    """Whether no decision in ``snapshot`` can depend on the time: no allow binding and no
    deny rule has a condition (the engine's only use of the clock). Then a decision holds
    until the world changes, and the emulator answers repeated checks of its callers from
    memory (it authorises every call it serves: a live check makes hundreds)."""
    for node in snapshot.nodes.values():
        if node.policy is not None and any(b.condition for b in node.policy.bindings):
            return False
    return not any(r.denial_condition for p in snapshot.deny_policies for r in p.rules)


def deep_copy_json(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON object (what clients sent is kept untouched)."""
    return copy.deepcopy(value)
