"""From what a live fetch read to a :class:`Snapshot`: the decisions, kept out of the IO.

:mod:`zt_pipelines.gcp.fetch` only schedules and performs reads and records each answer (or
failure) in :class:`Reads`. Everything that *decides* what the answers mean lives here, pure:
a direct read is authoritative over the asset index, a failed direct read is never replaced by
the index, a failed account listing makes an account unknown rather than absent, a NOT_FOUND
proven by a successful listing is not a failure, a principal's bindings are complete only when
every root was searched, a failed inventory dump leaves the project's policy unreadable.

Pure: no IO, no clock.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from zt_pipelines.policy.lending import LENDING_PERMISSIONS
from zt_pipelines.policy.reach import CONNECTION_PERMISSIONS, EDGE_PERMISSIONS
from zt_pipelines.policy.role_catalogue import catalogue_role
from zt_pipelines.policy.snapshot import (
    ASSET_TYPES,
    AllowPolicy,
    DenyPolicy,
    Entitlement,
    Node,
    NodeKind,
    Role,
    ServiceAccount,
    Snapshot,
    Unreadable,
)
from zt_pipelines.resources import APIKEYS, BIGQUERY, BQCONNECTION, CRM, IAM, STORAGE

_ASSET_KINDS: dict[str, NodeKind] = {t: kind for kind, t in ASSET_TYPES.items()}


@dataclass
class Reads:
    """Everything a live fetch read, as it came back (the fetch fills it; :func:`assemble`
    decides what it means)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    policies: dict[str, AllowPolicy] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    deny: dict[str, DenyPolicy] = field(default_factory=dict)
    accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # project id -> account email -> access ids of its HMAC keys (projects listed successfully)
    hmac: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # project id -> account email -> uids of the API keys bound to it (projects listed)
    apikeys: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # hierarchy node -> its Privileged Access Manager entitlements (nodes listed)
    entitlements: dict[str, list[Entitlement]] = field(default_factory=dict)
    listed_projects: set[str] = field(default_factory=set)
    # projects read because a search found an edge grant on them (reach_projects): their
    # listed accounts are kept in the snapshot, as a file holds every account
    reach_projects: set[str] = field(default_factory=set)
    # project id -> BigQuery location -> the accounts its connections act as (listed there)
    connections: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    connection_projects: set[str] = field(default_factory=set)  # projects whose were asked
    # service accounts an identity can become through a grant on the account itself, found
    # in a search hit (reached_accounts): searched like the identities
    reached_accounts: set[str] = field(default_factory=set)
    numbers: dict[str, str] = field(default_factory=dict)  # project number -> id
    hits: list[Any] = field(default_factory=list)
    # principal (an email, or a principal set containing one) -> roots searched for it
    searched: dict[str, set[str]] = field(default_factory=dict)
    roots: set[str] = field(default_factory=set)  # fresh hierarchy roots (org or project)
    unreadable: list[Unreadable] = field(default_factory=list)
    failed_keys: set[tuple[str, ...]] = field(default_factory=set)
    pending_buckets: dict[str, str] = field(default_factory=dict)  # bucket -> project number
    uniform_access: dict[str, bool] = field(default_factory=dict)  # bucket -> UBLA on
    # bucket -> (bucket ACL, default object ACL) as buckets.get?projection=full answered
    acls: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # inventory strategy: per-project policy dumps and key searches
    dump_hits: list[Any] = field(default_factory=list)
    dumped: set[str] = field(default_factory=set)  # project ids whose dump succeeded
    key_hits: list[Any] = field(default_factory=list)
    keys_searched: set[str] = field(default_factory=set)  # roots whose key search succeeded


def _copy(reads: Reads) -> Reads:
    """A copy deep enough that assembling never changes what was read."""
    return copy.copy(
        replace(
            reads,
            **{
                f: copy.copy(getattr(reads, f))
                for f in reads.__dataclass_fields__
                if isinstance(getattr(reads, f), (dict, list, set))
            },
        )
    )


def assemble(
    reads: Reads,
    names: list[str],
    *,
    declared: list[str],
    principals: list[str],
    inventory: bool,
) -> Snapshot:
    s = _copy(reads)  # the reads stay as fetched: assembling decides, it does not mutate
    if inventory:
        _assemble_inventory(s, declared, principals)
    nodes = dict(s.nodes)
    unreadable = list(s.unreadable)
    for name, policy in s.policies.items():
        node = nodes.get(name) or Node(name, kind_of(name), parent=parent_guess(name))
        nodes[name] = replace(node, policy=policy)
    for bucket, number in s.pending_buckets.items():  # project never resolved
        unreadable.append(
            Unreadable(STORAGE + bucket, "getAncestry", f"project number {number} unresolved")
        )
    # search hits: filtered bindings on nodes we did not read directly
    unreadable = _connection_listings(s, unreadable)
    failed = {u.target for u in unreadable}
    # a project read only for whom its grants reach: a failed read must not lose the grant the
    # search found (the project is then unlisted: reach cannot settle the edge, ZT217)
    reached = {CRM + "projects/" + p for p in s.reach_projects}
    reached |= {CRM + "projects/" + s.numbers[p] for p in s.reach_projects if p in s.numbers}
    for name in sorted(reached):
        ref = name.rsplit("/", 1)[1]
        failed_listing = ("serviceAccounts.list", ref) in s.failed_keys  # unreadable already
        if ref not in s.listed_projects and ref not in s.numbers and not failed_listing:
            unreadable.append(
                Unreadable(name, "serviceAccounts.list", "its service accounts were not listed")
            )
    unreadable.extend(_unlisted_folders(s))
    for hit in s.hits:
        # Cloud Asset names projects by number and accounts by unique id: use our keys
        name = dump_name(hit, s)
        # a direct read is authoritative; when it failed, the index must not stand in for it
        if name in s.policies or (name in failed and name not in reached):
            continue
        existing = nodes.get(name)
        merged = merge_policies(existing.policy if existing else None, hit.policy)
        if existing is not None:
            nodes[name] = replace(existing, policy=merged)
            continue
        kind = _ASSET_KINDS.get(hit.asset_type, "other")
        parent = None
        number = hit.project.removeprefix("projects/")
        if number in s.numbers and kind != "project":
            parent = CRM + "projects/" + s.numbers[number]
        nodes[name] = Node(name, kind, parent, merged)
    accounts: dict[str, ServiceAccount] = {}
    for email, sa in s.accounts.items():
        if email in principals or any(n.endswith("/serviceAccounts/" + email) for n in names):
            hmac = s.hmac.get(sa.project_id, {}).get(email, ())
            bound = s.apikeys.get(sa.project_id, {}).get(email, ())
            accounts[email] = replace(
                sa, user_managed_keys=s.keys.get(email, ()), hmac_keys=hmac, api_keys=bound
            )
    for email in principals:  # a failed listing: the account is unknown, not absent
        project = sa_project(email)
        if project and ("serviceAccounts.list", project) in s.failed_keys:
            unreadable.append(
                Unreadable(
                    f"{IAM}projects/{project}/serviceAccounts/{email}",
                    "serviceAccounts.get",
                    f"listing the service accounts of {project} failed",
                )
            )
    missing_keys = [e for e in accounts if e not in s.keys]
    unreadable = [u for u in unreadable if not _absent_account_noise(u, s, accounts)]
    for email in missing_keys:
        if not any(u.target.endswith("/serviceAccounts/" + email) for u in unreadable):
            unreadable.append(
                Unreadable(IAM + f"serviceAccounts/{email}", "serviceAccountKeys.list", "")
            )
    for email, sa in accounts.items():  # HMAC keys never listed: unknown, never "none"
        if sa.project_id not in s.hmac and not any(
            u.what == "storage.hmacKeys.list" and f"/projects/{sa.project_id}/" in u.target
            for u in unreadable
        ):
            unreadable.append(
                Unreadable(
                    f"{STORAGE}projects/{sa.project_id}/hmacKeys",
                    "storage.hmacKeys.list",
                    f"the HMAC keys of {email} were not listed",
                )
            )
    for email, sa in accounts.items():  # bound API keys never listed: unknown, never "none"
        if sa.project_id not in s.apikeys and not any(
            u.what == "apikeys.keys.list" and f"/projects/{sa.project_id}/" in u.target
            for u in unreadable
        ):
            unreadable.append(
                Unreadable(
                    f"{APIKEYS}projects/{sa.project_id}/locations/global/keys",
                    "apikeys.keys.list",
                    f"the API keys bound to {email} were not listed",
                )
            )
    for email, sa in s.accounts.items():
        # whom an edge grant on a project reaches: its accounts (keys not read: not identities)
        if email not in accounts and sa.project_id in s.reach_projects:
            accounts[email] = sa
    complete = frozenset(
        f"serviceAccount:{email}"
        for email, roots in s.searched.items()
        if "@" in email and s.roots and s.roots <= roots and _sets_searched(s, email)
    )
    return Snapshot(
        nodes=nodes,
        roles=dict(s.roles),
        deny_policies=tuple(s.deny[k] for k in sorted(s.deny)),
        service_accounts=accounts,
        unreadable=tuple(sorted(set(unreadable), key=lambda u: (u.target, u.what))),
        complete_bindings_for=complete,
        entitlements=tuple(e for node in sorted(s.entitlements) for e in s.entitlements[node]),
        live=True,
    )


#: what a grant must carry for its project's accounts and lent agents to matter to reach
_REACHING = frozenset(EDGE_PERMISSIONS) | LENDING_PERMISSIONS


def _role(s: Reads, name: str) -> Role | None:
    """A role as the engine will know it: read, else (predefined) the shipped catalogue's."""
    found = s.roles.get(name)
    if found is None and name.startswith("roles/"):
        return catalogue_role(name)
    return found


def _unlisted_folders(s: Reads) -> list[Unreadable]:
    """Folders and organisations known only from a search hit that carries a grant able to
    make an edge: the projects below them (and so their accounts and lent agents) are not
    read, so whom the grant reaches is unknown — an unverifiable edge, never none."""
    out = []
    known = {*s.nodes, *s.policies, *s.roots, *(u.target for u in s.unreadable)}
    for hit in s.hits:
        name = hit.resource
        if not name.startswith((CRM + "folders/", CRM + "organizations/")) or name in known:
            continue
        if any(
            (role := _role(s, b.role)) is None or not role.permissions.isdisjoint(_REACHING)
            for b in hit.policy.bindings
        ):
            why = "the projects below it (and their service accounts) are not listed live"
            out.append(Unreadable(name, "serviceAccounts.list", why))
            known.add(name)
    return out


def reached_accounts(s: Reads, principals: Collection[str]) -> set[str]:
    """Service accounts an identity — or an account reached so far — can become through an
    edge grant on the account itself (an impersonation permission, or a role of unknown
    definition) that the fetch read: what they hold anywhere must be searched, as a snapshot
    file holds it, for the reach check to judge them (ZT216). The identities themselves are
    searched already."""
    mine = {e.lower() for e in principals}
    sources = mine | s.reached_accounts
    out: set[str] = set()
    policies = [*s.policies.items(), *((dump_name(h, s), h.policy) for h in s.hits)]
    for name, policy in policies:
        if not name.startswith(IAM) or "/serviceAccounts/" not in name:
            continue
        email = name.rsplit("/", 1)[1].lower()
        if email in sources or "@" not in email:
            continue
        for binding in policy.bindings:
            role = _role(s, binding.role)
            if role is not None and role.permissions.isdisjoint(EDGE_PERMISSIONS):
                continue
            if any(
                m.startswith(_OPEN)
                or (m.startswith("serviceAccount:") and m[15:].lower() in sources)
                for m in binding.members
            ):
                out.add(email)
                break
    return out


def reach_projects(s: Reads, planned: Collection[str]) -> list[str]:
    """Projects (id, or number when the id is not known) on which a principal search found a
    grant that can make an edge — an impersonation or lending permission, or a role of
    unknown definition — and that the fetch has not read. Whom such a grant reaches is every
    service account and lent agent of the project, so its number, parent and accounts must be
    read, as a snapshot file holds them; a search hit alone names none of them."""
    out: set[str] = set()
    for hit in s.hits:
        if not hit.resource.startswith(CRM + "projects/"):
            continue
        ref = dump_name(hit, s).rsplit("/", 1)[1]
        if ref in planned or ref in out or CRM + "projects/" + ref in s.nodes:
            continue
        for binding in hit.policy.bindings:
            role = _role(s, binding.role)
            if role is None or not role.permissions.isdisjoint(_REACHING):
                out.add(ref)
                break
    return sorted(out)


def _connection_listings(s: Reads, unreadable: list[Unreadable]) -> list[Unreadable]:
    """One unreadable entry per project whose BigQuery connections could not all be listed
    (against the project: whom a grant of ``bigquery.connections.use`` there lends is then
    unknown), instead of one per location."""
    out: list[Unreadable] = []
    failed: dict[str, str] = {}
    for u in unreadable:
        if u.what != "bigquery.connections.list":
            out.append(u)
            continue
        project = u.target.removeprefix(BQCONNECTION).split("/")[1]
        failed.setdefault(project, u.reason)
    for project in sorted(failed):
        reason = f"the BigQuery connections could not be listed ({failed[project]})"
        out.append(Unreadable(CRM + "projects/" + project, "bigquery.connections.list", reason))
    return out


def connection_projects(s: Reads, principals: Collection[str]) -> list[str]:
    """Projects (ids) whose BigQuery connections must be listed, not yet asked: where a grant
    of ``bigquery.connections.use`` / ``delegate`` (or a role of unknown definition) that may
    reach an identity was read — naming it, or a principal set, group, domain or everyone —
    on the project, on a connection in it, or on a folder or organisation above it. Whoever
    holds it acts as every connection's own service account, which no binding names until the
    connections are listed. An account an identity can become (:func:`reached_accounts`)
    counts as an identity here."""
    mine = {e.lower() for e in principals} | s.reached_accounts
    projects = {n.name.rsplit("/", 1)[1]: n for n in s.nodes.values() if n.kind == "project"}
    out: set[str] = set()
    policies = [*s.policies.items(), *((dump_name(h, s), h.policy) for h in s.hits)]
    for name, policy in policies:
        for binding in policy.bindings:
            role = _role(s, binding.role)
            if role is not None and role.permissions.isdisjoint(CONNECTION_PERMISSIONS):
                continue
            if not any(
                m.startswith(_OPEN) or (m.startswith("serviceAccount:") and m[15:].lower() in mine)
                for m in binding.members
            ):
                continue
            out.update(_projects_at(name, projects, s))
    return sorted(out - s.connection_projects)


#: members whose membership may include an identity without naming it
_OPEN = ("principalSet://", "group:", "domain:", "allUsers", "allAuthenticatedUsers")


def _projects_at(name: str, projects: Mapping[str, Node], s: Reads) -> list[str]:
    """The known projects at or below ``name`` (a project, folder, organisation or a
    connection)."""
    if name.startswith(BQCONNECTION):
        return [name.removeprefix(BQCONNECTION).split("/")[1]]
    if name.startswith(CRM + "projects/"):
        ref = name.rsplit("/", 1)[1]
        return [s.numbers.get(ref, ref)]
    if not name.startswith(CRM):
        return []
    out = []
    for ident, node in projects.items():
        seen: set[str] = set()
        current: Node | None = node
        while current is not None and current.parent and current.parent not in seen:
            if current.parent == name:
                out.append(ident)
                break
            seen.add(current.parent)
            current = s.nodes.get(current.parent)
            if current is None and name.startswith(CRM + "organizations/"):
                break
    return out


def _sets_searched(s: Reads, email: str) -> bool:
    """Were the principal sets that contain ``email`` searched at every root? Grants to them
    name no email, so the email's own search cannot find them."""
    sets = containing_sets(email, s.nodes)
    return sets is not None and all(s.roots <= s.searched.get(one, set()) for one in sets)


def _assemble_inventory(s: Reads, declared: list[str], principals: list[str]) -> None:
    """Turn dump hits into policies and nodes, key hits into key lists (on ``s``, a copy)."""
    for hit in s.dump_hits:
        name = dump_name(hit, s)
        if name in s.policies:
            continue  # a direct read (fallback) wins
        s.policies[name] = hit.policy
        if name not in s.nodes:
            kind = _ASSET_KINDS.get(hit.asset_type, kind_of(name))
            parent = parent_guess(name)
            number = hit.project.removeprefix("projects/")
            if kind not in ("project", "table") and number in s.numbers:
                parent = CRM + "projects/" + s.numbers[number]
            if kind == "serviceAccount":
                owner = name.split("/")[4]
                parent = CRM + "projects/" + owner if owner != "-" else None
            if kind != "project":
                s.nodes[name] = Node(name, kind, parent=parent)
    # declared things a successful dump did not return carry no policy at all
    for wanted in [*declared, *principals]:
        project: str | None = None
        if "@" in wanted and not wanted.startswith("//"):
            project = sa_project(wanted)
            name = f"{IAM}projects/{project or '-'}/serviceAccounts/{wanted}"
        else:
            name, project = wanted, project_of_name(wanted)
        if name in s.policies or project is None or project not in s.dumped:
            continue
        if name.startswith(CRM):
            continue
        s.policies[name] = AllowPolicy()
        s.nodes.setdefault(name, Node(name, kind_of(name), parent=parent_guess(name)))
        if name.startswith(IAM):
            s.nodes[name] = Node(name, "serviceAccount", parent=CRM + "projects/" + project)
    for project in s.dumped:  # a project without bindings is not in its own dump
        s.policies.setdefault(CRM + "projects/" + project, AllowPolicy())
    for project in project_dumps_failed(s):
        if CRM + "projects/" + project not in s.policies:
            s.unreadable.append(
                Unreadable(CRM + "projects/" + project, "getIamPolicy", "dump failed")
            )
    keys: dict[str, list[str]] = {}
    uid = {sa.unique_id: e for e, sa in s.accounts.items() if sa.unique_id}
    for key in s.key_hits:
        if key.key_type == "SYSTEM_MANAGED":
            continue
        email = key.account if "@" in key.account else uid.get(key.account, key.account)
        keys.setdefault(email, []).append(key.name)
    declared_accounts = [
        n.rsplit("/", 1)[1].lower()
        for n in declared
        if n.startswith(IAM) and "/serviceAccounts/" in n
    ]
    for email in {*principals, *declared_accounts}:
        if email in s.keys:
            continue  # read directly (fallback)
        root = root_of(s, sa_project(email))
        if root is not None and root in s.keys_searched:
            s.keys[email] = tuple(sorted(keys.get(email, ())))


def root_of(s: Reads, project: str | None) -> str | None:
    """The fresh root above ``project`` (following parents read in this fetch)."""
    if project is None:
        return None
    name: str | None = CRM + "projects/" + project
    seen: set[str] = set()
    while name is not None and name not in seen:
        seen.add(name)
        node = s.nodes.get(name)
        if node is None:
            return None
        if node.parent is None:
            return name if name in s.roots else None
        if node.parent.startswith(CRM + "organizations/"):
            return node.parent if node.parent in s.roots else None
        name = node.parent
    return None


def dump_name(hit: Any, s: Reads) -> str:
    """The snapshot key of a dumped resource (Cloud Asset names projects and accounts by
    number / unique id; the snapshot by id / email)."""
    name: str = hit.resource
    if name.startswith(CRM + "projects/"):
        ref = name.rsplit("/", 1)[1]
        return CRM + "projects/" + s.numbers.get(ref, ref)
    if name.startswith(IAM) and "/serviceAccounts/" in name:
        head, _, account = name.rpartition("/")
        if "@" not in account:
            for sa in s.accounts.values():
                if sa.unique_id and sa.unique_id == account:
                    return f"{head}/{sa.email}"
        return f"{head}/{account.lower()}"
    return name


def _absent_account_noise(u: Unreadable, s: Reads, accounts: dict[str, ServiceAccount]) -> bool:
    """A NOT_FOUND on a service account that a successful listing proved does not exist."""
    if "/serviceAccounts/" not in u.target or not u.reason.startswith("NOT_FOUND"):
        return False
    email = u.target.rsplit("/", 1)[1].lower()
    return email not in accounts and sa_project(email) in s.listed_projects


def project_dumps_failed(s: Reads) -> list[str]:
    """Projects whose inventory dump failed (their policies are unreadable unless read)."""
    return sorted(k[1] for k in s.failed_keys if k[0] == "searchAllIamPolicies(dump)")


def merge_policies(existing: AllowPolicy | None, extra: AllowPolicy) -> AllowPolicy:
    if existing is None:
        return extra
    seen = set(existing.bindings)
    return replace(
        existing, bindings=existing.bindings + tuple(b for b in extra.bindings if b not in seen)
    )


_SA_SET = "principalSet://cloudresourcemanager.googleapis.com/{}/{}/type/ServiceAccount"


#: grants to these hold for every service account (searched like its own email)
_PUBLIC_SETS = ("allUsers", "allAuthenticatedUsers")


def containing_sets(email: str, nodes: Mapping[str, Node]) -> tuple[str, ...] | None:
    """The principal sets a service account is a member of — everyone (``allUsers``), every
    Google account (``allAuthenticatedUsers``), and by where it lives "every service account in"
    its project (by id and by number), each folder above it and its organisation — or ``None``
    when its project's chain is not known up to its root (then no search for those sets can be
    complete)."""
    project_id = sa_project(email)
    if project_id is None:
        return None
    node = nodes.get(CRM + "projects/" + project_id)
    if node is None or not node.project_number:
        return None
    sets = [
        *_PUBLIC_SETS,
        _SA_SET.format("projects", project_id),
        _SA_SET.format("projects", node.project_number),
    ]
    parent, seen = node.parent, {node.name}
    while parent is not None:
        kind, _, ident = parent.removeprefix(CRM).partition("/")
        if parent in seen or kind not in ("folders", "organizations"):
            return None
        seen.add(parent)
        sets.append(_SA_SET.format(kind, ident))
        if kind == "organizations":
            break  # a root: nothing above it
        above = nodes.get(parent)
        if above is None:
            return None
        parent = above.parent
    return tuple(sets)


def sa_project(email: str) -> str | None:
    domain = email.partition("@")[2]
    if domain.endswith(".iam.gserviceaccount.com"):
        return domain.removesuffix(".iam.gserviceaccount.com").rsplit(".", 1)[-1]
    return None


def project_of_name(name: str) -> str | None:
    if name.startswith(BIGQUERY + "projects/"):
        return name.removeprefix(BIGQUERY).split("/")[1]
    if name.startswith(CRM + "projects/"):
        return name.removeprefix(CRM).split("/")[1]
    if name.startswith(IAM) and "/serviceAccounts/" in name:
        return sa_project(name.rsplit("/", 1)[1])
    return None


def kind_of(name: str) -> NodeKind:
    if name.startswith(STORAGE):
        return "bucket"
    if name.startswith(IAM):
        return "serviceAccount"
    if name.startswith(BIGQUERY):
        return "table" if "/tables/" in name else "dataset"
    short = name.removeprefix(CRM)
    if short.startswith("projects/"):
        return "project"
    if short.startswith("folders/"):
        return "folder"
    if short.startswith("organizations/"):
        return "organization"
    return "other"


def parent_guess(name: str) -> str | None:
    """Parents we know from the name alone (datasets, tables); otherwise unknown."""
    if name.startswith(BIGQUERY):
        parts = name.removeprefix(BIGQUERY).split("/")
        if len(parts) == 6:
            return BIGQUERY + "/".join(parts[:4])
        return CRM + "projects/" + parts[1]
    return None
