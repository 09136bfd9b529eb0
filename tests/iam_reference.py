"""A small, independent IAM evaluator written from Google's IAM documentation.

It shares no code with ``zt_pipelines`` (no imports from it): the differential test
(``test_engine_differential.py``) compares the engine with it on generated worlds. Its model
is deliberately tiny — one organisation, folders, projects, buckets, Cloud Storage
permissions — and every answer is three-valued: ``True``, ``False`` or ``None`` (cannot be
known before the request runs, or from what the world says).

What it encodes, with the documentation it comes from:

* Policy evaluation (IAM "Policy evaluation", "Deny policies"): a request is denied when any
  deny rule on the resource's ancestry applies (deny is checked first); otherwise allowed when
  an allow binding on the resource or an ancestor grants a role holding the permission.
* A deny rule applies when the principal is among ``deniedPrincipals``, not among
  ``exceptionPrincipals``, the permission matches ``deniedPermissions`` (``*`` wildcards in
  the v2 form ``SERVICE/RESOURCE.VERB``), not ``exceptionPermissions``, and the denial
  condition holds. Deny policies attach to organisations, folders and projects (by id or
  number) and apply to every descendant.
* Principals ("Principal identifiers"): ``allUsers`` is everyone; ``allAuthenticatedUsers`` is
  every Google account and service account, not federated identities; ``domain:D`` holds the
  Google accounts of D (not service accounts); groups hold their members transitively;
  ``principalSet://cloudresourcemanager.googleapis.com/{projects|folders|organizations}/N/
  type/ServiceAccount`` holds the service accounts of projects in (or under) N.
* Conditions ("Resource attributes for IAM Conditions", "Date/time attributes"): Cloud Storage
  requests carry ``resource.name`` (``projects/_/buckets/B`` or ``.../objects/O``),
  ``resource.type`` and ``resource.service``; ``request.time`` is the time of the request. The
  time of day, tags and request host are not known before the request runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Tri = bool | None  # True / False / None (unknown)

NOW_EPOCH = 1_796_126_400  # 2026-12-01T12:00:00Z, the time of the checked request
PAST, FUTURE = NOW_EPOCH - 86_400, NOW_EPOCH + 86_400


def t_or(values: list[Tri]) -> Tri:
    """Kleene disjunction."""
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def t_and(values: list[Tri]) -> Tri:
    """Kleene conjunction."""
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def t_not(value: Tri) -> Tri:
    """Kleene negation."""
    return None if value is None else not value


@dataclass
class Project:
    """A project: its id, its number (``None``: not known), its parent (``None``: unknown)."""

    pid: str
    number: str | None
    parent: str | None  # "org" / "folder:N" / None


@dataclass
class Binding:
    """An allow binding on a node."""

    node: str  # "org" / "folder:N" / "project:ID" / "bucket:NAME"
    role: str
    members: list[str]
    condition: Any = None


@dataclass
class Rule:
    """One deny rule."""

    denied: list[str]
    permissions: list[str]
    exception_principals: list[str] = field(default_factory=list)
    exception_permissions: list[str] = field(default_factory=list)
    condition: Any = None


@dataclass
class Deny:
    """A deny policy at ``node`` ("org", "folder:N", "project:ID" or "number:N")."""

    node: str
    rules: list[Rule]


@dataclass
class World:
    """Everything the reference knows."""

    org: str
    folders: dict[str, str]  # folder number -> parent ("org" / "folder:N")
    projects: dict[str, Project]
    buckets: dict[str, str]  # bucket -> project id
    service_accounts: dict[str, str]  # email -> project id
    groups: dict[str, list[str]]  # known groups only
    roles: dict[str, set[str]]  # known roles only (a deleted or disabled role: empty)
    bindings: list[Binding]
    denies: list[Deny]
    sa_unique_ids: dict[str, str] = field(default_factory=dict)  # email -> unique id
    unreadable_allow: set[str] = field(default_factory=set)  # nodes
    unreadable_deny: set[str] = field(default_factory=set)  # nodes


# -- the resource hierarchy ------------------------------------------------------------------


def ancestry(world: World, resource: str) -> tuple[list[str], bool]:
    """(the resource and its ancestors as far as known, whether the chain is complete).

    ``resource`` is a bucket name or ``sa:EMAIL`` (a service account, a resource of its
    project)."""
    if resource.startswith("sa:"):
        project = world.service_accounts[resource[3:]]
        chain = [resource, f"project:{project}"]
    else:
        project = world.buckets[resource]
        chain = [f"bucket:{resource}", f"project:{project}"]
    parent = world.projects[project].parent
    while parent is not None:
        chain.append(parent)
        if parent == "org":
            return chain, True
        parent = world.folders.get(parent.split(":", 1)[1])
    return chain, False


# -- principals --------------------------------------------------------------------------------


def _email(principal: str) -> str:
    return principal.split(":", 1)[1].lower()


def in_group(world: World, principal: str, group: str, seen: frozenset[str] = frozenset()) -> Tri:
    """Is ``principal`` a transitive member of ``group``?"""
    if group in seen:
        return False
    members = world.groups.get(group)
    if members is None:
        return None  # membership not known
    answers: list[Tri] = []
    for m in members:
        if m.startswith("group:"):
            answers.append(in_group(world, principal, _email(m), seen | {group}))
        else:
            answers.append(m.lower() == principal.lower())
    return t_or(answers)


def _sa_in_node(world: World, principal: str, kind: str, ident: str) -> Tri:
    """Is the service account ``principal`` in a project that is / lies under the node?"""
    if not principal.startswith("serviceAccount:"):
        return False
    pid = world.service_accounts.get(_email(principal))
    if pid is None:
        return None
    project = world.projects[pid]
    if kind == "projects":
        if ident == pid or ident == project.number:
            return True
        if project.number is None and ident.isdigit():
            known = {p.number for p in world.projects.values() if p.number}
            return False if ident in known else None
        return False
    parent, answers = project.parent, []
    while parent is not None:
        if parent == "org":
            return kind == "organizations" and ident == world.org
        if kind == "folders" and parent == f"folder:{ident}":
            return True
        parent = world.folders.get(parent.split(":", 1)[1])
        answers.append(False)
    return None  # the project cannot be placed


def allow_member(world: World, member: str, principal: str) -> Tri:
    """Does an allow-policy member cover ``principal``?"""
    google_account = principal.startswith(("user:", "serviceAccount:"))
    if member.startswith("deleted:"):
        return False  # a deleted account's bindings never apply to a re-created one
    if member == "allUsers":
        return True
    if member == "allAuthenticatedUsers":
        return google_account
    if member.startswith("domain:"):
        return principal.startswith("user:") and _email(principal).endswith(
            "@" + member.split(":", 1)[1].lower()
        )
    if member.startswith("group:"):
        return in_group(world, principal, _email(member))
    if member.startswith("principalSet://cloudresourcemanager.googleapis.com/"):
        kind, ident = member.split("/")[3:5]
        return _sa_in_node(world, principal, kind, ident)
    if member.startswith(("user:", "serviceAccount:")):
        return member.lower() == principal.lower()
    return member == principal


def deny_member(world: World, member: str, principal: str) -> Tri:
    """Does an IAM v2 deny principal cover ``principal``?"""
    if member == "principalSet://goog/public:all":
        return True
    sa = "principal://iam.googleapis.com/projects/-/serviceAccounts/"
    if member.startswith(sa):
        ident = member[len(sa) :]
        if "@" not in ident:  # the account's unique id
            email = _email(principal) if principal.startswith("serviceAccount:") else ""
            return world.sa_unique_ids.get(email) == ident
        return principal.lower() == "serviceaccount:" + ident.lower()
    if member.startswith("principalSet://goog/cloudIdentityCustomerId/"):
        # the users and groups of a Cloud Identity / Workspace account: never a service account
        # or a federated identity; whether a user belongs is not in the world
        return None if principal.startswith("user:") else False
    if member.startswith("principal://goog/subject/"):
        return principal.lower() == "user:" + member.split("/")[-1].lower()
    if member.startswith("principalSet://goog/group/"):
        return in_group(world, principal, member.split("/")[-1].lower())
    if member.startswith("principalSet://cloudresourcemanager.googleapis.com/"):
        kind, ident = member.split("/")[3:5]
        return _sa_in_node(world, principal, kind, ident)
    return member == principal


# -- permissions ---------------------------------------------------------------------------------


def v2_matches(pattern: str, permission: str) -> bool:
    """Does a v2 deny permission (``storage.googleapis.com/objects.*``) cover ``permission``
    (``storage.objects.get``)?"""
    if pattern == "*":
        return True
    service, rest = pattern.split("/", 1)
    p_service, p_rest = permission.split(".", 1)
    if service != f"{p_service}.googleapis.com":
        return False
    if rest == "*":
        return True
    want, have = rest.split("."), p_rest.split(".")
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


# -- conditions ----------------------------------------------------------------------------------


def request_attributes(resource: str, permission: str, obj: str) -> dict[str, str] | None:
    """The resource attributes of a request: Cloud Storage has them; IAM (service accounts) is
    not among the services that do, so a condition cannot read them there (``None``)."""
    if not permission.startswith("storage."):
        return None
    if permission.startswith("storage.objects.") and permission != "storage.objects.list":
        return {
            "name": f"projects/_/buckets/{resource}/objects/{obj}",
            "type": "storage.googleapis.com/Object",
            "service": "storage.googleapis.com",
        }
    return {
        "name": f"projects/_/buckets/{resource}",
        "type": "storage.googleapis.com/Bucket",
        "service": "storage.googleapis.com",
    }


def condition(cond: Any, attrs: dict[str, str] | None) -> Tri:
    """Evaluate a condition AST (tuples, see the test's generator)."""
    op = cond[0]
    if attrs is None and op in ("eq", "starts", "ends"):
        return None  # a resource attribute the request does not carry
    if op == "not":
        return t_not(condition(cond[1], attrs))
    if op == "and":
        return t_and([condition(cond[1], attrs), condition(cond[2], attrs)])
    if op == "or":
        return t_or([condition(cond[1], attrs), condition(cond[2], attrs)])
    if op == "eq":
        return attrs[cond[1]] == cond[2]
    if op == "starts":
        return attrs["name"].startswith(cond[1])
    if op == "ends":
        return attrs["name"].endswith(cond[1])
    if op == "before":
        return cond[1] > NOW_EPOCH
    return None  # time of day, tags, request host: unknown before the request runs


# -- the decision --------------------------------------------------------------------------------


def decide(world: World, principal: str, resource: str, permission: str, obj: str) -> str:
    """``denied`` / ``granted`` / ``not_granted`` / ``unknown`` for one request on a bucket
    (its name) or a service account (``sa:EMAIL``)."""
    chain, complete = ancestry(world, resource)
    attrs = request_attributes(resource, permission, obj)
    numbers = {p.number: pid for pid, p in world.projects.items() if p.number}

    denied: list[Tri] = [] if complete else [None]  # unseen ancestors may hold deny policies
    for node in chain:
        if node in world.unreadable_deny and not node.startswith(("bucket:", "sa:")):
            denied.append(None)
    for policy in world.denies:
        where: Tri
        if policy.node.startswith("number:"):
            number = policy.node.split(":", 1)[1]
            if number in numbers:
                where = f"project:{numbers[number]}" in chain
            else:  # a project whose number we do not know may be that project
                unknown = [
                    n
                    for n in chain
                    if n.startswith("project:") and world.projects[n[8:]].number is None
                ]
                where = None if unknown else False
        else:
            where = policy.node in chain
        if where is False:
            continue
        for rule in policy.rules:
            applies = t_and(
                [
                    where,
                    t_or([deny_member(world, m, principal) for m in rule.denied]),
                    t_not(
                        t_or([deny_member(world, m, principal) for m in rule.exception_principals])
                    ),
                    any(v2_matches(p, permission) for p in rule.permissions),
                    not any(v2_matches(p, permission) for p in rule.exception_permissions),
                    True if rule.condition is None else condition(rule.condition, attrs),
                ]
            )
            denied.append(applies)
    deny = t_or(denied)
    if deny is True:
        return "denied"

    allowed: list[Tri] = [None for n in chain if n in world.unreadable_allow]
    if not complete:
        allowed.append(None)
    for b in world.bindings:
        if b.node not in chain:
            continue
        perms = world.roles.get(b.role)
        allowed.append(
            t_and(
                [
                    t_or([allow_member(world, m, principal) for m in b.members]),
                    None if perms is None else permission in perms,
                    True if b.condition is None else condition(b.condition, attrs),
                ]
            )
        )
    allow = t_or(allowed)
    if deny is None:
        return "unknown"
    return {True: "granted", False: "not_granted", None: "unknown"}[allow]
