"""The live fetch plan: read every distinct thing a check needs, once, concurrently.

The plan is a dependency graph, not a list: each read, when it returns, schedules the reads it
unlocks (a project's parent folder, the roles its bindings name, the organisation's deny
policies ...), so independent chains run side by side on one bounded pool and the wall time is
the longest chain, not the number of reads. Every read has a key and runs at most once.

Cold, the longest chain is three round trips: the project's ancestry (one read naming every
folder and the organisation) → organisation (policy, deny list, custom roles, principal search)
→ the roles those bindings name. With a warm cache the hierarchy shape and predefined roles are
known up front, so everything is asked for in the first wave. Either way the fresh parents that
come back are what the snapshot records (the cached shape or the ancestry only decides what to
prefetch).

This module fetches; it does not decide. Every answer (or failure) is recorded as it came back
in :class:`~zt_pipelines.policy.assembly.Reads`, and the pure
:func:`~zt_pipelines.policy.assembly.assemble` decides what the answers mean.

Fail closed: a read that fails after retries becomes ``Snapshot.unreadable`` — never an empty
policy, never a missing node that looks like "no grants".
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from zt_pipelines.errors import ApiError
from zt_pipelines.gcp._base import Page, Started
from zt_pipelines.gcp.bq_connections import BIGQUERY_LOCATIONS
from zt_pipelines.gcp.cache import DiskCache
from zt_pipelines.gcp.interface import Adapters, DenyPolicyRef, PolicySearchHit
from zt_pipelines.policy.assembly import (
    Reads,
    assemble,
    connection_projects,
    containing_sets,
    dump_name,
    project_dumps_failed,
    project_of_name,
    reach_projects,
    reached_accounts,
    sa_project,
)
from zt_pipelines.policy.lending import lent_accounts
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Entitlement,
    Node,
    NodeKind,
    Role,
    ServiceAccount,
    Snapshot,
    Unreadable,
)
from zt_pipelines.resources import APIKEYS, BIGQUERY, BQCONNECTION, CRM, IAM, PAM, STORAGE

T = TypeVar("T")
_LOG = logging.getLogger("zt_pipelines.gcp")
Progress = Callable[[int, int], None]
STRATEGIES = ("direct", "inventory")
#: how often a refused principal search is halved (1 query -> at most 2**3 = 8 queries)
_MAX_SEARCH_SPLITS = 3
#: principals per Cloud Asset query by default: all of a pipeline's in one (split if refused)
DEFAULT_SEARCH_BATCH = 1000
KEY_ASSET = "iam.googleapis.com/ServiceAccountKey"
#: the parts of the first wave, in the order they go out: the ancestries (the head of the
#: longest chain of a first check), reads started without a thread (quick to issue, the bulk of
#: a check), then the storage batch, then the reads that take a pool thread each (a running
#: thread competes with the planner for the interpreter)
_FIRST, _STARTED, _BATCHED, _POOLED = -1, 0, 1, 2


class FetchPlan:
    """One live fetch: schedule reads, run them on a bounded pool, assemble a Snapshot.

    Args:
        adapters: the capability implementations to read through.
        cache: the on-disk cache (``None``: no caching).
        max_workers: the pool bound.
        progress: called with ``(done, scheduled)`` after every read (CLI progress bar).
        search_batch: principals per Cloud Asset query (``policy:(a OR b ...)``).
        strategy: ``"direct"`` reads every allow policy, key list and account policy from its
            own API (authoritative); ``"inventory"`` reads the declared projects' allow
            policies and every key from Cloud Asset in bulk (a few calls instead of several
            per identity; the index is eventually consistent). Hierarchy, deny policies,
            roles and account existence are read directly either way.
    """

    def __init__(
        self,
        adapters: Adapters,
        *,
        cache: DiskCache | None = None,
        max_workers: int = 128,
        progress: Progress | None = None,
        search_batch: int = DEFAULT_SEARCH_BATCH,
        strategy: str = "direct",
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        self.strategy = strategy
        self.inventory = strategy == "inventory"
        self.a = adapters
        self.search_batch = max(1, search_batch)
        self.cache = cache
        self.max_workers = max(1, max_workers)
        self.progress = progress
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._scheduled: set[tuple[str, ...]] = set()
        self._outstanding = 0
        self._done = 0
        self._pool: ThreadPoolExecutor | None = None
        self._held: list[tuple[int, Callable[[], None]]] | None = None
        self._batch: Any = None  # the storage reads not yet sent (a StorageBatch)
        self._planner = threading.get_ident()
        self._roles_asked: set[str] = set()
        self._projects_planned: set[str] = set()
        self._hints: dict[str, Node] = {}  # hierarchy nodes as the cache or ancestry has them
        self._search_roots: set[str] = set()  # roots searched so far (fresh or prefetched)
        self._first_projects: set[str] = set()  # projects.get asked in the first wave
        self._answered: set[str] = set()  # ... and answered or failed
        self._ancestries: set[str] = set()  # projects whose ancestry is on its way
        self._reach_rounds = 0  # rounds that looked for accounts an identity can become
        self.s = Reads()
        self.principals: list[str] = []
        self._asked: set[tuple[str, str]] = set()  # (root, principal or set) searched
        self.declared: list[str] = []
        self.calls: dict[str, int] = {}

    # -- scheduling ------------------------------------------------------------------------------

    def _claim(self, key: tuple[str, ...]) -> bool:
        """Count ``key`` as scheduled; False when it already was (every read runs once)."""
        with self._lock:
            if key in self._scheduled:
                return False
            self._scheduled.add(key)
            self._outstanding += 1
            self.calls[key[0]] = self.calls.get(key[0], 0) + 1
            return True

    def _submit(self, key: tuple[str, ...], fn: Callable[[], None], order: int = _POOLED) -> None:
        if not self._claim(key):
            return
        self._dispatch(lambda: self._to_pool(key, fn), order)

    def _dispatch(self, begin: Callable[[], None], order: int) -> None:
        """Start a read, or hold it while the first wave is planned (``order``: which part of
        the wave it goes out with, see :data:`_STARTED`)."""
        batched = order == _BATCHED
        if self._held is not None:  # planning the first wave: start it all at once
            self._held.append((order, begin))
            return
        begin()
        if batched and threading.get_ident() != self._planner:
            self._flush()  # the planner flushes when it waits; nobody else would

    def _batched(self, method: str, *args: Any) -> Started[Any] | None:
        """Add a storage read to the batch being filled (``None``: the adapter cannot batch;
        the read runs on its own). A full batch is sent at once."""
        storage = self.a.storage
        with self._lock:
            batch = self._batch
            if batch is None:
                batch = _start(storage, "new_batch")
                if batch is None:
                    return None
                self._batch = batch
            started: Started[Any] = getattr(batch, method)(*args)
            if batch.full:
                self._batch = None
            else:
                batch = None
        if batch is not None:
            self._send(batch)
        return started

    def _flush(self) -> None:
        """Send the batch being filled, if any."""
        with self._lock:
            batch, self._batch = self._batch, None
        if batch is not None:
            self._send(batch)

    def _send(self, batch: Any) -> None:
        assert self._pool is not None
        self._pool.submit(batch.send)  # settles every part's read, whatever happens

    def _to_pool(self, key: tuple[str, ...], fn: Callable[[], None]) -> None:
        assert self._pool is not None
        self._pool.submit(self._run, key, fn)

    def _run(self, key: tuple[str, ...], fn: Callable[[], None]) -> None:
        try:
            self._attempt(key, fn)
        finally:
            self._finish()

    def _attempt(self, key: tuple[str, ...], fn: Callable[[], None]) -> None:
        try:
            fn()
        except ApiError as exc:
            self._fail(key, exc.where or "/".join(key[1:]), key[0], exc)
        except Exception as exc:  # a bug or an unexpected shape: unreadable, never a pass
            self._fail(key, "/".join(key[1:]), key[0], exc)

    def _finish(self) -> None:
        with self._lock:
            self._done += 1
            done, total = self._done, len(self._scheduled)
        try:
            if self.progress is not None:
                self.progress(done, total)
        finally:
            # counted down last: the pool outlives the fetch, so nothing of this read may run
            # after the planner saw it finished
            with self._lock:
                self._outstanding -= 1
                if self._outstanding == 0:
                    self._idle.notify_all()

    def _submit_listing(
        self,
        key: tuple[str, ...],
        start: Callable[[], Started[Page[T]] | None],
        rest: Callable[[str], list[T]],
        handle: Callable[[list[T]], None],
        blocking: Callable[[bool], None],
        refused: Callable[[ApiError], bool] | None = None,
    ) -> None:
        """A paged listing whose first page is started without a thread (as
        :meth:`_submit_started`); the pages after it — rare, the largest page is asked for —
        are read by ``rest(token)`` on the pool, as the same read (its failure is the read's)."""

        def first(page: Page[T]) -> None:
            if not page.next_token:
                handle(page.items)
                return
            token, items = page.next_token, page.items
            raise _Continue(lambda: handle([*items, *rest(token)]))

        self._submit_started(key, start, first, blocking, refused=refused)

    def _submit_started(
        self,
        key: tuple[str, ...],
        start: Callable[[], Started[T] | None],
        handle: Callable[[T], None],
        blocking: Callable[[bool], None],
        *,
        batched: bool = False,
        refused: Callable[[ApiError], bool] | None = None,
    ) -> None:
        """A read whose first attempt holds no thread while it waits (:class:`Started`).

        ``handle`` gets the answer. When the read cannot start that way, ``blocking(False)``
        does it on the pool; when its first attempt fails transiently, ``blocking(True)`` does
        the attempts left. A final failure is unreadable, as with :meth:`_submit`, unless
        ``refused(error)`` says it dealt with it (e.g. split a search Google found too long).
        ``batched``: the first attempt is a part of a batch request (:meth:`_batched`).
        """
        if not self._claim(key):
            return

        def begin() -> None:
            try:
                started = start()
            except Exception:  # e.g. the client cannot be built: the blocking read reports it
                started = None
            if started is None:
                self._to_pool(key, lambda: blocking(False))
            else:
                started.add_done_callback(
                    lambda done: self._landed(key, done, handle, lambda: blocking(True), refused)
                )

        self._dispatch(begin, _BATCHED if batched else _STARTED)

    def _landed(
        self,
        key: tuple[str, ...],
        started: Started[T],
        handle: Callable[[T], None],
        retry: Callable[[], None],
        refused: Callable[[ApiError], bool] | None = None,
    ) -> None:
        try:
            value = started.outcome()
        except ApiError as exc:
            if exc.transient:
                self._to_pool(key, retry)  # the retry's own run finishes the read
                return
            if refused is None or not refused(exc):
                self._fail(key, exc.where or "/".join(key[1:]), key[0], exc)
            self._finish()
            return
        more: Callable[[], None] | None = None
        try:
            self._attempt(key, lambda: handle(value))
        except _Continue as pages:
            more = pages.rest
        finally:
            if more is None:
                self._finish()
        if more is not None:
            self._to_pool(key, more)  # the rest of a listing: its own run finishes the read

    def _fail(self, key: tuple[str, ...], target: str, what: str, exc: BaseException) -> None:
        reason = exc.message if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
        code = exc.code if isinstance(exc, ApiError) else "INTERNAL"
        with self._lock:
            self.s.failed_keys.add(key)
            if key[0] == "projects.get":
                self._answered.add(key[1])
            self.s.unreadable.append(
                Unreadable(target=target, what=what, reason=f"{code}: {reason}")
            )

    def _wait(self) -> None:
        self._flush()
        with self._lock:
            while self._outstanding:
                self._idle.wait()

    # -- the plan --------------------------------------------------------------------------------

    def run(
        self,
        *,
        resources: Iterable[str],
        service_accounts: Iterable[str],
        principals: Iterable[str] = (),
        projects: Iterable[str] = (),
    ) -> Snapshot:
        """Fetch everything for these inputs and return the snapshot (never raises ApiError)."""
        emails = sorted({e.strip().lower() for e in service_accounts if e and e.strip()})
        self.principals = emails
        del principals  # other principals' grants live on nodes we already read
        project_ids = {p for p in projects if p}
        names = sorted(set(resources))
        self.declared = names
        for email in emails:
            project = sa_project(email)
            if project:
                project_ids.add(project)
        for name in names:
            project = project_of_name(name)
            if project:
                project_ids.add(project)
        self._planner = threading.get_ident()
        self._pool = _shared_pool(self.max_workers)
        try:
            self._held = []
            for project in sorted(project_ids):
                self._project(project)
            for name in names:
                if self.inventory and not name.startswith((CRM, IAM)):
                    continue  # from the project dumps; the follow-up round reads what is missing
                self._resource(name)
            for email in emails:
                self._account(email)
            held, self._held = self._held, None
            held.sort(key=lambda item: item[0])  # stable: planned order within each part
            last = max((i for i, (order, _) in enumerate(held) if order == _BATCHED), default=-1)
            for i, (_, begin) in enumerate(held):
                begin()
                if i == last:
                    self._flush()  # the batch leaves as soon as it is complete
            # rounds: drain, then schedule what only the whole picture reveals
            while True:
                self._wait()
                if not self._follow_ups():
                    break
        finally:
            self._wait()  # (after an error too) no read of this fetch is left on the pool
            self._pool = None
        return assemble(
            self.s,
            names,
            declared=self.declared,
            principals=self.principals,
            inventory=self.inventory,
        )

    # -- hierarchy -------------------------------------------------------------------------------

    def _project(self, ref: str) -> None:
        """Projects.get (fresh parent) + policy + deny + custom roles; prefetch cached ancestors.

        Planned once per fetch: every read in it runs once anyway, and an account policy
        naming an account of this project asks again (the cache lookups and principal-set
        work of planning it again cost more than a read)."""
        with self._lock:
            if ref in self._projects_planned:
                return
            self._projects_planned.add(ref)
            if self._held is not None and not ref.isdigit():  # planning the first wave
                self._first_projects.add(ref)
        full = CRM + "projects/" + ref

        def got(node: Node) -> None:
            with self._lock:
                self._answered.add(ref)
                self.s.nodes[node.name] = node
                if node.project_number:
                    self.s.numbers[node.project_number] = node.name.rsplit("/", 1)[1]
            if self.cache is not None:
                self.cache.put_parent(node.name, node.parent, node.project_number)
            self._resolve_buckets()
            if node.name != full:  # fetched by number: the id-keyed reads follow
                ident = node.name.rsplit("/", 1)[1]
                self._project(ident)
                with self._lock:
                    reached = ref in self.s.reach_projects
                if reached:
                    self._reach_project(ident)
            self._parent(node)

        hierarchy = self.a.hierarchy
        self._submit_started(
            ("projects.get", ref),
            lambda: _start(hierarchy, "start_get_project", ref),
            got,
            lambda again: got(_retried(hierarchy, again).get_project(ref)),
        )
        if ref.isdigit():
            return
        if self.inventory:
            self._dump(ref)
        self._crm_node_reads(full, policy=not self.inventory)
        if not self._prefetch_ancestors(full):
            self._ancestry(ref)

    def _prefetch_ancestors(self, name: str) -> bool:
        """Ask the reads of the ancestors the cache remembers above ``name`` now; whether it
        remembered any shape for it."""
        if self.cache is None:
            return False
        seen = {name}
        current, hint = name, self.cache.get_parent(name)
        known = hint is not None
        while hint is not None:
            with self._lock:  # the principal sets these hints name are prefetched too
                self._hints[current] = Node(
                    current,
                    "project" if "/projects/" in current else "folder",
                    parent=hint[0],
                    project_number=hint[1],
                )
            if not hint[0] or hint[0] in seen:
                break
            current = hint[0]
            seen.add(current)
            self._ancestor(current)
            hint = self.cache.get_parent(current)
        return known

    def _ancestry(self, project: str) -> None:
        """A project whose shape nothing remembers (a first check): its ancestors in one read,
        so that their reads go out a round trip after the check starts, not one round trip per
        level as fresh parents come back. The ancestry is a hint like the cache's: the fresh
        parent reads still decide what the snapshot holds, and a failed ancestry read costs
        only that round trip (it is never unreadable, never retried)."""
        read = getattr(self.a.hierarchy, "get_ancestry", None)
        if read is None:
            return

        def ancestry() -> None:
            try:
                chain: tuple[str, ...] = read(project)
            except ApiError as exc:
                _LOG.info("ancestry of %s not read (%s): parents are followed", project, exc.code)
                chain = ()
            with self._lock:
                self._ancestries.discard(project)
                for i, name in enumerate(chain):
                    above = chain[i + 1] if i + 1 < len(chain) else None
                    self._hints.setdefault(name, Node(name, _KINDS[name.split("/")[3]], above))
                roots = sorted(self._search_roots)
            for name in chain[1:]:
                self._ancestor(name)
            for root in roots:  # searches held for this answer (see _principal_searches)
                self._principal_searches(root)

        with self._lock:
            self._ancestries.add(project)
        self._submit(("projects.getAncestry", project), ancestry, _FIRST)

    def _parent(self, node: Node) -> None:
        """Follow a *fresh* parent link; the root it reaches is what searches must cover."""
        root = node.name if node.parent is None else None
        if node.parent is not None and node.parent.startswith(CRM + "organizations/"):
            root = node.parent
        if root is not None:
            with self._lock:
                self.s.roots.add(root)
            self._searches(root)
        if node.parent is not None:
            self._ancestor(node.parent)
        # this node may complete a project's chain (e.g. a prefetched folder landed first):
        # the principal sets it reveals are asked now, not a round trip after the drain (at
        # the roots searched so far, prefetched ones included)
        with self._lock:
            roots = sorted((self.s.roots | self._search_roots) - {root})
        for known in roots:
            self._principal_searches(known)

    def _ancestor(self, name: str) -> None:
        kind, _, ident = name.removeprefix(CRM).partition("/")
        if kind == "folders":

            def got_folder(node: Node) -> None:
                with self._lock:
                    self.s.nodes[node.name] = node
                if self.cache is not None:
                    self.cache.put_parent(node.name, node.parent, None)
                self._parent(node)

            hierarchy = self.a.hierarchy
            self._submit_started(
                ("folders.get", ident),
                lambda: _start(hierarchy, "start_get_folder", ident),
                got_folder,
                lambda again: got_folder(_retried(hierarchy, again).get_folder(ident)),
            )
        elif kind == "organizations":
            # no organizations.get: an organisation has no parent, and its node comes with its
            # policy (a failed policy read leaves the folder's parent missing: fail closed).
            # An organisation is a root: its searches need nothing more than its id (prefetched
            # ones too; only roots reached through fresh parents count for completeness)
            self._searches(name)
        else:
            self._submit(("unknown-parent", name), lambda: _raise_unknown_parent(name))
            return
        self._crm_node_reads(name)

    def _crm_node_reads(self, name: str, *, policy: bool = True) -> None:
        """Allow policy and deny policies of a hierarchy node (custom roles are listed when a
        binding names one: most parents have none, and listing them costs a call each)."""

        hierarchy = self.a.hierarchy
        if policy:
            self._submit_started(
                ("crm.getIamPolicy", name),
                lambda: _start(hierarchy, "start_get_iam_policy", name),
                lambda got: self._store_policy(name, got),
                lambda again: self._store_policy(
                    name, _retried(hierarchy, again).get_iam_policy(name)
                ),
            )
        self._deny(name)
        self._entitlements(name)

    def _entitlements(self, node: str) -> None:
        """The node's Privileged Access Manager entitlements (eligibility to roles on
        request): one listing per hierarchy node, beside its deny listing."""

        def listed(found: list[Entitlement]) -> None:
            with self._lock:
                self.s.entitlements[node] = found

        def list_entitlements(again: bool) -> None:
            reader = self.a.pam
            if reader is None:
                raise ApiError(
                    "no Privileged Access Manager reader",
                    where=PAM + node.removeprefix(CRM) + "/locations/global",
                    code="UNIMPLEMENTED",
                )
            listed(_retried(reader, again).list_entitlements(node))

        pam = self.a.pam
        self._submit_listing(
            ("privilegedaccessmanager.entitlements.list", node),
            lambda: _start(pam, "start_list_entitlements", node),
            lambda token: _after(pam, "list_entitlements_after", node, token),
            listed,
            list_entitlements,
        )

    def _deny(self, point: str) -> None:
        def listed(refs: list[DenyPolicyRef]) -> None:
            for ref in refs:
                cached = self.cache.get_deny(ref.name, ref.etag) if self.cache else None
                if cached is not None:
                    with self._lock:
                        self.s.deny[ref.name] = replace(cached, attachment_point=point)
                    continue
                self._submit(("denyPolicies.get", ref.name), _bind(self._get_deny, ref.name, point))

        deny = self.a.deny
        self._submit_listing(
            ("denyPolicies.list", point),
            lambda: _start(deny, "start_list_deny_policies", point),
            lambda token: _after(deny, "list_deny_policies_after", point, token),
            listed,
            lambda again: listed(_retried(deny, again).list_deny_policies(point)),
        )

    def _get_deny(self, name: str, point: str) -> None:
        try:
            policy = self.a.deny.get_deny_policy(name, point)
        except ApiError as exc:  # the engine looks failures up by the node they hide rules of
            raise ApiError(exc.what, where=point, code=exc.code, transient=exc.transient) from exc
        with self._lock:
            self.s.deny[name] = policy
        if self.cache is not None:
            self.cache.put_deny(policy)

    def _custom_roles(self, parent: str) -> None:
        def list_roles() -> None:
            roles = self.a.iam.list_custom_roles(parent)
            with self._lock:
                for role in roles:
                    self.s.roles.setdefault(role.name, role)

        self._submit(("roles.list", parent), list_roles)

    def _dump(self, project: str) -> None:
        """Inventory: every allow policy in the project, complete (an empty query filters no
        binding), in one paginated ``SearchAllIamPolicies``."""

        def dump() -> None:
            hits = self.a.search.search_policies(f"projects/{project}", "")
            with self._lock:
                self.s.dump_hits.extend(hits)
                self.s.dumped.add(project)
            for hit in hits:
                self._roles_of(hit.policy)

        self._submit(("searchAllIamPolicies(dump)", project), dump)

    def _key_search(self, root: str) -> None:
        def keys() -> None:
            hits = self.a.search.search_keys(root.removeprefix(CRM))
            with self._lock:
                self.s.key_hits.extend(hits)
                self.s.keys_searched.add(root)

        self._submit(("searchAllResources(keys)", root), keys)

    def _searches(self, root: str) -> None:
        """``SearchAllIamPolicies`` at ``root`` for every principal, batched with ``OR``."""
        with self._lock:
            self._search_roots.add(root)
        if self.inventory:
            self._key_search(root)
        self._principal_searches(root)

    def _principal_searches(self, root: str) -> None:
        """Search ``root`` for every identity and for the principal sets ("every service
        account in project / folder / organisation N") that contain an identity whose
        project's chain is known by now — a grant to such a set names no email — each value
        asked once per root, all in as few ``OR`` queries as the batch allows. Sets of chains
        known later are asked in a follow-up round; the assembly counts an identity complete
        only when it and all its sets were searched at every root."""
        with self._lock:
            # fresh nodes decide completeness (the assembly); cached hints only add sets to
            # ask now rather than a round trip later (a wrong hint costs a wasted value)
            nodes = {**self._hints, **self.s.nodes} if self._hints else self.s.nodes
            if self._ancestries or any(
                not (nodes.get(CRM + "projects/" + p) or _NO_NUMBER).project_number
                for p in self._first_projects - self._answered
            ):
                # the chain or number of a project of the first wave (they name principal
                # sets and agents) is not known yet but on its way, within the same round
                # trip: ask when it lands, in one query, rather than now and again then
                return
            # an account's sets depend only on its project: worked out once per project
            by_project: dict[str | None, tuple[str, ...] | None] = {}
            for email in self.principals:
                project = sa_project(email)
                if project not in by_project:
                    by_project[project] = containing_sets(email, nodes)
            sets = {one for found in by_project.values() for one in found or ()}
            # the identities Google services lend their callers (a CustomJob without an account,
            # a deployment, a model upload) in the projects known by now: what they hold is
            # reached by whoever holds the lending permission (policy/lending.py)
            numbers = set(self.s.numbers) | {
                n.project_number for n in nodes.values() if n.kind == "project" and n.project_number
            }
            agents = {email for number in numbers for email, _ in lent_accounts(number)}
            # and the accounts of the BigQuery connections listed (per connection, no fixed name)
            agents.update(
                e for found in self.s.connections.values() for got in found.values() for e in got
            )
            agents.update(self.s.reached_accounts)  # accounts an identity can become
            todo = [
                v
                for v in (*self.principals, *sorted(sets), *sorted(agents))
                if (root, v) not in self._asked
            ]
            self._asked.update((root, v) for v in todo)
        batch = self.search_batch
        for start in range(0, len(todo), batch):
            self._principal_search(root, tuple(todo[start : start + batch]))

    def _principal_search(self, root: str, emails: tuple[str, ...], splits: int = 0) -> None:
        """One ``policy:(a OR b ...)`` search; a query Google refuses (INVALID_ARGUMENT, e.g.
        too long) is split in halves, at most :data:`_MAX_SEARCH_SPLITS` times — a search that
        still fails is unreadable, and its principals' bindings incomplete (fail closed)."""
        scope = root.removeprefix(CRM)
        # a principal set's identifier holds ':' and '/': quoted, as Cloud Asset's syntax wants
        words = [f'"{e}"' if ":" in e else e for e in emails]
        query = "policy:(" + " OR ".join(words) + ")" if len(words) > 1 else f"policy:{words[0]}"

        def split(exc: ApiError) -> bool:
            if exc.code != "INVALID_ARGUMENT" or len(emails) < 2 or splits >= _MAX_SEARCH_SPLITS:
                return False
            half = len(emails) // 2
            self._principal_search(root, emails[:half], splits + 1)
            self._principal_search(root, emails[half:], splits + 1)
            return True

        def found(hits: list[PolicySearchHit]) -> None:
            with self._lock:
                self.s.hits.extend(hits)
                for email in emails:
                    self.s.searched.setdefault(email, set()).add(root)
            for hit in hits:
                self._roles_of(hit.policy)

        def blocking(again: bool) -> None:
            try:
                hits = _retried(searcher, again).search_policies(scope, query)
            except ApiError as exc:
                if split(exc):
                    return
                raise
            found(hits)

        searcher = self.a.search
        self._submit_listing(
            ("searchAllIamPolicies", scope, *emails),
            lambda: _start(searcher, "start_search_policies", scope, query),
            lambda token: _after(searcher, "search_policies_after", scope, query, token),
            found,
            blocking,
            refused=split,
        )

    # -- declared resources --------------------------------------------------------------------

    def _resource(self, name: str) -> None:
        if name.startswith(CRM):
            kind, _, ident = name.removeprefix(CRM).partition("/")
            if kind == "projects":
                self._project(ident)
            else:
                self._ancestor(name)
        elif name.startswith(STORAGE):
            self._bucket(name.removeprefix(STORAGE).split("/", 1)[0])
        elif name.startswith(BIGQUERY + "projects/"):
            self._bigquery(name)
        elif name.startswith(IAM) and "/serviceAccounts/" in name:
            self._account(name.rsplit("/", 1)[1].lower())
        else:
            self._submit(("unsupported", name), lambda: _raise_unsupported(name))

    def _bucket(self, bucket: str) -> None:
        """A bucket's project (never cached: a deleted bucket's name can be taken in another
        project) and its policy; both as parts of one storage batch request when possible."""
        full = STORAGE + bucket

        def meta(got: Any) -> None:
            with self._lock:
                self.s.pending_buckets[bucket] = got[0]
                self.s.uniform_access[bucket] = got[1]
                if len(got) > 3:  # the ACLs of a bucket without uniform access
                    self.s.acls[bucket] = (got[2], got[3])
            self._resolve_buckets()

        def policy(got: AllowPolicy) -> None:
            self._store_policy(full, got)

        storage = self.a.storage
        self._submit_started(
            ("storage.buckets.get", bucket),
            lambda: self._batched("start_bucket_meta", bucket),
            meta,
            lambda again: meta(_retried(storage, again).get_bucket_meta(bucket)),
            batched=True,
        )
        self._submit_started(
            ("storage.buckets.getIamPolicy", bucket),
            lambda: self._batched("start_bucket_policy", bucket),
            policy,
            lambda again: policy(_retried(storage, again).get_bucket_policy(bucket)),
            batched=True,
        )

    def _resolve_buckets(self) -> None:
        """Attach buckets to projects whose number is known (fetched or being fetched)."""
        with self._lock:
            ready = {
                b: self.s.numbers[n]
                for b, n in self.s.pending_buckets.items()
                if n in self.s.numbers
            }
            for bucket, project in ready.items():
                del self.s.pending_buckets[bucket]
                name = STORAGE + bucket
                self.s.nodes[name] = Node(
                    name,
                    "bucket",
                    parent=CRM + "projects/" + project,
                    uniform_bucket_level_access=self.s.uniform_access.get(bucket),
                    acl=self.s.acls.get(bucket, (None, None))[0],
                    default_object_acl=self.s.acls.get(bucket, (None, None))[1],
                )

    def _bigquery(self, name: str) -> None:
        parts = name.removeprefix(BIGQUERY).split("/")
        if len(parts) not in (4, 6):
            self._submit(("unsupported", name), lambda: _raise_unsupported(name))
            return
        project, dataset = parts[1], parts[3]
        dataset_name = f"{BIGQUERY}projects/{project}/datasets/{dataset}"

        def get_dataset() -> None:
            policy = self.a.bigquery.get_dataset_policy(project, dataset)
            with self._lock:
                self.s.nodes[dataset_name] = Node(
                    dataset_name, "dataset", parent=CRM + "projects/" + project
                )
            self._store_policy(dataset_name, policy)

        # a dataset's access entries are its allow policy: name the read so the engine sees it
        self._submit(("bigquery.datasets.getIamPolicy", project, dataset), get_dataset)
        if len(parts) == 6:
            table = parts[5]

            def get_table() -> None:
                policy = self.a.bigquery.get_table_policy(project, dataset, table)
                with self._lock:
                    self.s.nodes[name] = Node(name, "table", parent=dataset_name)
                self._store_policy(name, policy)

            self._submit(("bigquery.tables.getIamPolicy", project, dataset, table), get_table)

    # -- service accounts ------------------------------------------------------------------------

    def _account(self, email: str) -> None:
        project = sa_project(email)
        name = f"{IAM}projects/{project or '-'}/serviceAccounts/{email}"
        if project:
            self._hmac_keys(project)
            self._api_keys(project)
            self._list_accounts(project)
        else:

            def get_account() -> None:
                sa = self.a.iam.get_service_account(email)
                with self._lock:
                    self.s.accounts[sa.email.lower()] = sa
                if sa.project_id:  # its HMAC keys live in the project the account names
                    self._hmac_keys(sa.project_id)
                    self._api_keys(sa.project_id)

            self._submit(("serviceAccounts.get", email), get_account)
        if self.inventory:
            return  # keys from the key search, the account's policy from its project's dump
        self._account_reads(email, name, project)

    def _list_accounts(self, project: str) -> None:
        """The project's service accounts (one listing per project)."""

        def listed(accounts: list[ServiceAccount]) -> None:
            with self._lock:
                self.s.listed_projects.add(project)
                for sa in accounts:
                    self.s.accounts[sa.email.lower()] = sa

        iam = self.a.iam
        self._submit_listing(
            ("serviceAccounts.list", project),
            lambda: _start(iam, "start_list_service_accounts", project),
            lambda token: _after(iam, "list_service_accounts_after", project, token),
            listed,
            lambda again: listed(_retried(iam, again).list_service_accounts(project)),
        )

    def _reach_project(self, ref: str) -> None:
        """A project a search found an edge grant on (:func:`reach_projects`): read like a
        declared one (number, parent, policy) and list its accounts — whom the grant reaches."""
        with self._lock:
            self.s.reach_projects.add(ref)
        self._project(ref)
        if not ref.isdigit():  # by number: listed under its id once projects.get names it
            self._list_accounts(ref)

    def _connections(self, project: str) -> None:
        """The service accounts of the project's BigQuery connections, in every location
        BigQuery serves (the API lists one location at a time): asked only when an identity
        may hold ``bigquery.connections.use`` or ``delegate`` there (:func:`connection_projects`).
        What the accounts found hold is searched with the identities' principals."""
        with self._lock:
            self.s.connection_projects.add(project)
        reader = self.a.connections

        for location in BIGQUERY_LOCATIONS:

            def listed(accounts: list[str], location: str = location) -> None:
                with self._lock:
                    self.s.connections.setdefault(project, {})[location] = accounts
                    roots = sorted(self.s.roots | self._search_roots) if accounts else []
                for root in roots:  # what the connections' accounts hold, anywhere
                    self._principal_searches(root)

            def blocking(again: bool, location: str = location) -> None:
                if reader is None:
                    raise ApiError(
                        "no BigQuery Connection reader",
                        where=f"{BQCONNECTION}projects/{project}/locations/{location}",
                        code="UNIMPLEMENTED",
                    )
                listed(_retried(reader, again).list_connection_accounts(project, location))

            self._submit_listing(
                ("bigquery.connections.list", project, location),
                _bind_start(reader, project, location),
                _bind_after(reader, project, location),
                listed,
                blocking,
            )

    def _hmac_keys(self, project: str) -> None:
        """The project's Cloud Storage HMAC keys: one listing per project (both strategies),
        filtered per account when the snapshot is assembled."""

        def list_keys() -> None:
            found = self.a.storage.list_hmac_keys(project)
            with self._lock:
                self.s.hmac[project] = found

        self._submit(("storage.hmacKeys.list", project), list_keys)

    def _api_keys(self, project: str) -> None:
        """The project's API keys bound to service accounts: one listing per project, in the
        same wave as the account listing (both strategies)."""

        def list_keys() -> None:
            reader = self.a.apikeys
            if reader is None:
                raise ApiError(
                    "no API keys reader",
                    where=f"{APIKEYS}projects/{project}/locations/global/keys",
                    code="UNIMPLEMENTED",
                )
            found = reader.list_bound_keys(project)
            with self._lock:
                self.s.apikeys[project] = found

        self._submit(("apikeys.keys.list", project), list_keys)

    def _account_reads(self, email: str, name: str, project: str | None) -> None:
        """Direct strategy: the account's user-managed keys and its allow policy (one pair per
        identity, the bulk of a check: issued without a thread each)."""

        def keys(found: tuple[str, ...]) -> None:
            with self._lock:
                self.s.keys[email] = found

        iam = self.a.iam
        self._submit_started(
            ("serviceAccountKeys.list", email),
            lambda: _start(iam, "start_list_user_managed_keys", email),
            keys,
            lambda again: keys(_retried(iam, again).list_user_managed_keys(email)),
        )
        self._account_policy(email, name, project, 0)

    def _account_policy(self, email: str, name: str, project: str | None, depth: int) -> None:
        """An account's allow policy. Another user-managed service account named in it may run
        as the account: its own policy (and its project's ancestry) is read too, so that who can
        become *it* is known (followed to the depth the inbound check follows)."""

        def policy(got: AllowPolicy) -> None:
            with self._lock:
                parent = CRM + "projects/" + project if project else None
                self.s.nodes[name] = Node(name, "serviceAccount", parent=parent)
            self._store_policy(name, got)
            if depth >= _UPSTREAM_DEPTH:
                return
            for binding in got.bindings:
                for member in binding.members:
                    other = _user_managed_account(member)
                    if other is None or other == email:
                        continue
                    home = sa_project(other)
                    if home:
                        self._project(home)  # its project's grants reach it too (deduplicated)
                    node = f"{IAM}projects/{home or '-'}/serviceAccounts/{other}"
                    self._account_policy(other, node, home, depth + 1)

        iam = self.a.iam
        self._submit_started(
            ("serviceAccounts.getIamPolicy", email),
            lambda: _start(iam, "start_service_account_policy", email),
            policy,
            lambda again: policy(_retried(iam, again).get_service_account_policy(email)),
        )

    # -- roles -----------------------------------------------------------------------------------

    def _store_policy(self, name: str, policy: AllowPolicy) -> None:
        with self._lock:
            self.s.policies[name] = policy
        self._roles_of(policy)

    def _roles_of(self, policy: AllowPolicy) -> None:
        for binding in policy.bindings:
            role = binding.role
            if role.startswith("roles/"):
                self._predefined_role(role)
            else:
                parent = role.split("/roles/", 1)[0]
                if parent.startswith(("projects/", "organizations/")):
                    self._custom_roles(parent)

    def _predefined_role(self, role: str) -> None:
        with self._lock:
            # every policy names its roles: look each one up (cache, then API) once per fetch
            if role in self.s.roles or role in self._roles_asked:
                return
            self._roles_asked.add(role)
        cached = self.cache.get_role(role) if self.cache else None
        if cached is not None:
            with self._lock:
                self.s.roles.setdefault(role, cached)
            return
        self._role_read(role)

    def _role_read(self, role: str) -> None:
        def got(found: Role) -> None:
            with self._lock:
                self.s.roles[found.name] = found
            if self.cache is not None:
                self.cache.put_role(found)

        iam = self.a.iam
        self._submit_started(
            ("roles.get", role),
            lambda: _start(iam, "start_get_role", role),
            got,
            lambda again: got(_retried(iam, again).get_role(role)),
        )

    def _follow_ups(self) -> bool:
        """After a drain: custom roles a listing did not return (maybe deleted), and buckets
        whose project was not among the known ones. Returns whether anything was scheduled."""
        before = len(self._scheduled)
        with self._lock:
            referenced = {
                b.role
                for p in [*self.s.policies.values(), *(h.policy for h in self.s.hits)]
                for b in p.bindings
                if not b.role.startswith("roles/")
            }
            missing = sorted(r for r in referenced if r not in self.s.roles)
            numbers = sorted(set(self.s.pending_buckets.values()) - set(self.s.numbers))
        for role in missing:
            self._role_read(role)
        for number in numbers:
            self._project(number)
        with self._lock:
            reached = reach_projects(self.s, self._projects_planned)
            listed = connection_projects(self.s, self.principals)
            if self._reach_rounds < _UPSTREAM_DEPTH:
                self._reach_rounds += 1
                self.s.reached_accounts.update(reached_accounts(self.s, self.principals))
        for ref in reached:
            self._reach_project(ref)
        for project in listed:
            self._connections(project)
        with self._lock:
            roots = sorted(self.s.roots | self._search_roots)
        for root in roots:  # sets of chains completed after their root's searches went out
            self._principal_searches(root)
        if self.inventory:
            self._inventory_gaps()
        return len(self._scheduled) > before

    def _inventory_gaps(self) -> None:
        """Declared things the dumps did not settle: read them directly (fail-safe)."""
        with self._lock:
            found = {dump_name(h, self.s) for h in self.s.dump_hits}
            dumped = set(self.s.dumped)
            failed = project_dumps_failed(self.s)
        for failed_project in failed:  # the project's own policy was to come from its dump

            def read_policy(name: str = CRM + "projects/" + failed_project) -> None:
                self._store_policy(name, self.a.hierarchy.get_iam_policy(name))

            self._submit(("crm.getIamPolicy", CRM + "projects/" + failed_project), read_policy)
        for name in self.declared:
            if name in found or name.startswith(CRM):
                continue
            owner = project_of_name(name)
            if owner is not None and owner in dumped:
                continue  # its project's dump succeeded: no policy is set on it
            self._resource(name)  # buckets (project unknown) and undumped projects
        for email in self.principals:
            project = sa_project(email)
            sa_name = f"{IAM}projects/{project or '-'}/serviceAccounts/{email}"
            if sa_name in found or (project is not None and project in dumped):
                continue
            self._account_reads(email, sa_name, project)

    # -- assembly ----------------------------------------------------------------------------


def _start(adapter: Any, method: str, *args: Any) -> Any:
    """``adapter.method(*args)`` when the adapter can start reads without waiting, else
    ``None`` (adapters for tests, REST transports)."""
    begin = getattr(adapter, method, None)
    return begin(*args) if begin is not None else None


def _after(adapter: Any, method: str, *args: Any) -> Any:
    """The pages of a listing after its started first page: only adapters that started it
    (and so have ``method``) get here."""
    return getattr(adapter, method)(*args)


def _retried(adapter: Any, again: bool) -> Any:
    """The adapter for the attempts after a failed first one (``again``), else itself."""
    retried = getattr(adapter, "retried", None) if again else None
    return retried() if retried is not None else adapter


def _bind_start(reader: Any, project: str, location: str) -> Callable[[], Any]:
    return lambda: _start(reader, "start_list_connection_accounts", project, location)


def _bind_after(reader: Any, project: str, location: str) -> Callable[[str], Any]:
    return lambda token: _after(reader, "list_connection_accounts_after", project, location, token)


def _bind(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    return lambda: fn(*args)


def _raise_unsupported(name: str) -> None:
    raise ApiError(
        f"no live adapter reads IAM policies of {name}",
        where=name,
        code="UNIMPLEMENTED",
        fix="check this resource with a snapshot file",
    )


class _Continue(BaseException):  # not an Exception: no handler of a read may swallow it
    """Raised by a listing's first-page handler: the rest of the read runs on the pool."""

    def __init__(self, rest: Callable[[], None]) -> None:
        super().__init__()
        self.rest = rest


_NO_NUMBER = Node("", "project")
_KINDS: dict[str, NodeKind] = {
    "projects": "project",
    "folders": "folder",
    "organizations": "organization",
}
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _shared_pool(workers: int) -> ThreadPoolExecutor:
    """The process's fetch threads of this bound, kept between checks: a check runs about 30
    reads on the pool, and starting a thread for each cost more client CPU than the read.
    Reads never wait for one another on it, so checks at the same time can share it."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="zt-fetch")
        return pool


def _forget_pools() -> None:
    global _POOLS_LOCK
    _POOLS.clear()  # a forked child has none of its parent's threads
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)

#: how many accounts deep the policies of accounts that may run as an identity are read
_UPSTREAM_DEPTH = 6


def _user_managed_account(member: str) -> str | None:
    """The email of a user-managed service account member (``None`` for anything else: people,
    groups, Google's service agents, GKE Kubernetes service accounts)."""
    kind, _, email = member.partition(":")
    email = email.lower()
    domain = email.partition("@")[2]
    if kind != "serviceAccount" or not domain.endswith(".iam.gserviceaccount.com"):
        return None
    return None if domain.startswith("gcp-sa-") else email


def _raise_unknown_parent(name: str) -> None:
    raise ApiError(f"unknown kind of parent {name}", where=name, code="UNIMPLEMENTED")
