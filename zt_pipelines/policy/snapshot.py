"""The snapshot: the IAM world the engine evaluates, as frozen data.

A snapshot is filled either from a file (:mod:`zt_pipelines.policy.snapshot_file`) or from the
live Google APIs (:mod:`zt_pipelines.gcp`), and served by the emulator. The engine never reads
anything else. Keys are Cloud Asset full resource names (see :mod:`zt_pipelines.resources`).

Reads that failed are part of the snapshot (``unreadable``): the engine turns them into
ZT201/ZT400 findings instead of treating a missing policy as an empty one. Fail closed.

Resource identities are normalised once, here, whoever builds the snapshot (file, live fetch,
emulator): a project named by its number (``//cloudresourcemanager.googleapis.com/projects/
123``, as Cloud Asset and IAM v2 attachment points write it) becomes the project's id-based name
wherever the number is known — node names and parents, deny attachment points (also
``%2F``-encoded ones), unreadable targets, service accounts' projects and the service-account
principal sets of allow bindings and deny rules. A deny policy attached
to a project nobody in the snapshot has under that name stays as it is: the engine treats a
number as possibly attached to every project whose number is unknown, and an id as possibly
attached to every project known only by its number (unverifiable), never as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from zt_pipelines.segmentation.model import SegmentationState

from zt_pipelines.policy.deny import normalize_attachment_point

_CRM = "//cloudresourcemanager.googleapis.com/"
_PROJECT_NUMBER = re.compile(r"^//cloudresourcemanager\.googleapis\.com/projects/([0-9]+)$")
_PROJECTS = _CRM + "projects/"
_SA_SET_PROJECTS = "principalSet://cloudresourcemanager.googleapis.com/projects/"
_SA_SET_NUMBER = re.compile(
    r"^principalSet://cloudresourcemanager\.googleapis\.com/projects/([0-9]+)/type/ServiceAccount$"
)

NodeKind = Literal[
    "organization",
    "folder",
    "project",
    "bucket",
    "dataset",
    "table",
    "serviceAccount",
    "secret",
    "repository",
    "cryptoKey",
    "other",
]

#: the Cloud Asset Inventory asset type of each node kind (``other`` has none)
ASSET_TYPES: dict[NodeKind, str] = {
    "organization": "cloudresourcemanager.googleapis.com/Organization",
    "folder": "cloudresourcemanager.googleapis.com/Folder",
    "project": "cloudresourcemanager.googleapis.com/Project",
    "bucket": "storage.googleapis.com/Bucket",
    "dataset": "bigquery.googleapis.com/Dataset",
    "table": "bigquery.googleapis.com/Table",
    "serviceAccount": "iam.googleapis.com/ServiceAccount",
    "secret": "secretmanager.googleapis.com/Secret",
    "repository": "artifactregistry.googleapis.com/Repository",
    "cryptoKey": "cloudkms.googleapis.com/CryptoKey",
}


@dataclass(frozen=True)
class Condition:
    """An IAM condition (allow binding or deny rule): a CEL expression with a title."""

    expression: str
    title: str = ""
    description: str = ""


@dataclass(frozen=True)
class Binding:
    """One allow-policy binding: a role granted to members, optionally under a condition."""

    role: str
    members: tuple[str, ...]
    condition: Condition | None = None


@dataclass(frozen=True)
class AllowPolicy:
    """An allow (IAM) policy attached to one node."""

    bindings: tuple[Binding, ...] = ()
    etag: str = ""
    version: int = 1


@dataclass(frozen=True)
class DenyRule:
    """One rule of an IAM v2 deny policy.

    Principals use the IAM v2 principal identifiers
    (``principal://iam.googleapis.com/projects/-/serviceAccounts/EMAIL``,
    ``principalSet://goog/public:all``, ``principalSet://goog/group/EMAIL``, ...).
    Permissions use the v2 form ``SERVICE.googleapis.com/RESOURCE.VERB``.
    """

    denied_principals: tuple[str, ...]
    denied_permissions: tuple[str, ...]
    exception_principals: tuple[str, ...] = ()
    exception_permissions: tuple[str, ...] = ()
    denial_condition: Condition | None = None


@dataclass(frozen=True)
class DenyPolicy:
    """An IAM v2 deny policy attached to an organisation, folder or project."""

    name: str
    attachment_point: str
    rules: tuple[DenyRule, ...]
    etag: str = ""


@dataclass(frozen=True)
class Role:
    """A role definition (predefined ``roles/...`` or custom ``projects/P/roles/R`` /
    ``organizations/O/roles/R``) with the permissions it includes."""

    name: str
    permissions: frozenset[str]
    title: str = ""
    stage: str = "GA"
    deleted: bool = False


@dataclass(frozen=True)
class AclEntry:
    """One Cloud Storage ACL entry: ``entity`` (``allUsers``, ``allAuthenticatedUsers``,
    ``user-EMAIL`` — service accounts too —, ``group-EMAIL``, ``domain-DOMAIN``,
    ``project-owners|editors|viewers-NUMBER``) holds ``role`` (``OWNER``, ``WRITER``,
    ``READER``)."""

    entity: str
    role: str


@dataclass(frozen=True)
class Node:
    """A resource in the hierarchy.

    Attributes:
        name: full resource name.
        kind: what it is.
        parent: the full resource name of its parent (``None`` for an organisation, or when the
            ancestry is unknown — which the engine treats as unverifiable, not as "no ancestors").
        policy: its allow policy; ``None`` when it has none recorded.
        project_number: for projects, the project number.
        display_name: optional.
        uniform_bucket_level_access: for buckets, whether uniform bucket-level access is on
            (only then are its ACLs off); ``None`` when unknown.
        acl: for buckets without uniform access, the bucket ACL; ``None`` when not read.
        default_object_acl: for the same buckets, the ACL new objects get; ``None`` when not
            read.
    """

    name: str
    kind: NodeKind
    parent: str | None = None
    policy: AllowPolicy | None = None
    project_number: str | None = None
    display_name: str = ""
    uniform_bucket_level_access: bool | None = None
    acl: tuple[AclEntry, ...] | None = None
    default_object_acl: tuple[AclEntry, ...] | None = None


@dataclass(frozen=True)
class ServiceAccount:
    """A service account as the IAM API describes it."""

    email: str
    project_id: str
    unique_id: str = ""
    disabled: bool = False
    user_managed_keys: tuple[str, ...] = ()
    display_name: str = ""
    #: access ids of its Cloud Storage HMAC keys (ACTIVE or INACTIVE: an inactive key can be
    #: re-activated), a credential separate from the user-managed keys
    hmac_keys: tuple[str, ...] = ()
    #: ids (``uid``) of API keys bound to it (API Keys ``serviceAccountEmail``): a static
    #: string whose requests run as the account (Vertex AI accepts them)
    api_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class PersistentResource:
    """A Vertex AI persistent resource, as ``persistentResources.get`` describes it.

    Attributes:
        name: ``projects/PROJECT/locations/LOCATION/persistentResources/ID`` (project id as
            the job names it; Vertex answers with the number, the adapter keeps the asked name).
        enable_custom_service_account:
            ``resourceRuntimeSpec.serviceAccountSpec.enableCustomServiceAccount``: only then
            does a job on it run as the job's own service account.
        state: the resource's state (``RUNNING``, ``PROVISIONING``, ...), for messages.
    """

    name: str
    enable_custom_service_account: bool = False
    state: str = ""


@dataclass(frozen=True)
class EntitlementRole:
    """One role a Privileged Access Manager entitlement grants, with its optional condition."""

    role: str
    condition: str = ""


@dataclass(frozen=True)
class Entitlement:
    """A Privileged Access Manager entitlement: who may ask for which roles on a node.

    An eligible principal that requests a grant gets the roles on ``node`` (and so on
    everything below it) for up to ``max_duration``; without an approval workflow the grant
    is immediate. Requesters need no PAM permission of their own.

    Attributes:
        name: ``{projects|folders|organizations}/ID/locations/L/entitlements/E``.
        node: the full resource name of the organisation, folder or project it is on.
        eligible: the principals (allow-policy identifiers) who may request it.
        roles: what a grant gives on ``node``.
        approval_required: whether a grant needs an approval (an approval workflow is set).
        max_duration: the longest grant, as Google writes durations (``3600s``).
        state: ``AVAILABLE``, ``CREATING``, ``UPDATING``, ``DELETING`` or ``DELETED``.
    """

    name: str
    node: str
    eligible: tuple[str, ...]
    roles: tuple[EntitlementRole, ...]
    approval_required: bool = False
    max_duration: str = ""
    state: str = "AVAILABLE"


#: What a failed read hides from the engine: the allow policy of its target, the deny policies
#: attached to it, or its place in the hierarchy (hence every ancestor's policies).
ReadHides = Literal["allow", "deny", "ancestry"]

#: Google's role launch stages (``Role.stage``), exactly as the IAM API spells them.
ROLE_STAGES: tuple[str, ...] = ("ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP")

_ALLOW: frozenset[ReadHides] = frozenset({"allow"})
_DENY: frozenset[ReadHides] = frozenset({"deny"})
_ANCESTRY: frozenset[ReadHides] = frozenset({"ancestry"})
_NOTHING: frozenset[ReadHides] = frozenset()
_EVERYTHING: frozenset[ReadHides] = frozenset({"allow", "deny", "ancestry"})

#: Every ``Unreadable.what`` value the adapters emit (and snapshot files may use), with what a
#: failure of that read hides on its target. "Nothing" reads (role definitions, key listings,
#: searches) still refuse as ZT400; their effect reaches the engine by other fields (an unknown
#: role, ``complete_bindings_for``). Shared by :mod:`zt_pipelines.gcp.fetch` and the engine.
UNREADABLE_WHAT: dict[str, frozenset[ReadHides]] = {
    # allow policies
    "getIamPolicy": _ALLOW,
    "crm.getIamPolicy": _ALLOW,
    "projects.getIamPolicy": _ALLOW,
    "folders.getIamPolicy": _ALLOW,
    "organizations.getIamPolicy": _ALLOW,
    "storage.buckets.getIamPolicy": _ALLOW,
    "bigquery.datasets.getIamPolicy": _ALLOW,
    "bigquery.tables.getIamPolicy": _ALLOW,
    "serviceAccounts.getIamPolicy": _ALLOW,
    # deny policies
    "denyPolicies": _DENY,
    "denyPolicies.list": _DENY,
    "denyPolicies.get": _DENY,
    "listPolicies": _DENY,
    "listPolicies(deny)": _DENY,
    # the node's parent
    "getAncestry": _ANCESTRY,
    "getProject": _ANCESTRY,
    "getFolder": _ANCESTRY,
    "projects.get": _ANCESTRY,
    "folders.get": _ANCESTRY,
    "organizations.get": _ANCESTRY,
    "storage.buckets.get": _ANCESTRY,
    "bigquery.datasets.get": _ANCESTRY,
    "serviceAccounts.get": _ANCESTRY,
    "unknown-parent": _ANCESTRY,
    # nothing on the target's chain
    "roles.get": _NOTHING,
    "roles.list": _NOTHING,
    "serviceAccounts.list": _NOTHING,
    "serviceAccountKeys.list": _NOTHING,
    "storage.hmacKeys.list": _NOTHING,
    "apikeys.keys.list": _NOTHING,
    "privilegedaccessmanager.entitlements.list": _NOTHING,
    "bigquery.connections.list": _NOTHING,
    "searchAllIamPolicies": _NOTHING,
    "searchAllIamPolicies(dump)": _NOTHING,
    "searchAllResources(keys)": _NOTHING,
    "persistentResources.get": _NOTHING,
    "unsupported": _NOTHING,
}


def read_hides(what: str) -> frozenset[ReadHides]:
    """What a failed ``what`` read hides; an unknown value hides everything (fail closed)."""
    return UNREADABLE_WHAT.get(what, _EVERYTHING)


@dataclass(frozen=True)
class Unreadable:
    """Something the snapshot could not read: the engine refuses to guess about it.

    Attributes:
        target: the full resource name (or ``roles/...``, ``group:...``) that could not be read.
        what: which read failed (``getIamPolicy``, ``getAncestry``, ``roles.get``, ...): a key
            of :data:`UNREADABLE_WHAT`; any other value is taken to hide everything.
        reason: the error, as the adapter reported it.
    """

    target: str
    what: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """Everything the engine may know about the IAM world.

    Attributes:
        nodes: every known resource by full resource name.
        roles: role definitions by role name.
        deny_policies: every deny policy, at any attachment point.
        service_accounts: by lower-cased email.
        groups: group email → direct members (``user:``, ``serviceAccount:``, ``group:``...).
            A group not listed here has unknown membership.
        unreadable: reads that failed.
        complete_bindings_for: principals (``serviceAccount:EMAIL``) for which *every* binding
            anywhere is known to be in the snapshot (e.g. from Cloud Asset
            ``SearchAllIamPolicies``); excess-privilege checks are complete only for these.
        segmentation: perimeters and networks (:mod:`zt_pipelines.segmentation`); ``None``
            when not read (unknown).
        persistent_resources: Vertex persistent resources by name
            (``projects/P/locations/L/persistentResources/ID``); one a step runs on that is
            not here is unknown, so unverifiable.
        entitlements: Privileged Access Manager entitlements on the nodes read (eligibility
            to grants on request); a failed listing is in ``unreadable``.
        notes: ``(code, message)`` findings about the snapshot itself that every report
            carries (e.g. ZT401: a snapshot file without an integrity digest).
    """

    nodes: dict[str, Node] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    deny_policies: tuple[DenyPolicy, ...] = ()
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unreadable: tuple[Unreadable, ...] = ()
    complete_bindings_for: frozenset[str] = frozenset()
    segmentation: SegmentationState | None = None
    persistent_resources: dict[str, PersistentResource] = field(default_factory=dict)
    entitlements: tuple[Entitlement, ...] = ()
    notes: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # provenance only
    #: read live (Google or the emulator), not loaded from a file: what is absent then was not
    #: found or could not be read, and messages say so (:meth:`absent`, :attr:`held`)
    live: bool = field(default=False, compare=False)

    _project_names: dict[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _normalise_identities(self)

    def absent(self, name: str) -> str:
        """Why ``name`` is not among what the snapshot knows, in the words of where the state
        came from: ``is not in the snapshot`` (a file), ``was not found`` or ``could not be read
        (READ)`` (read live; from the failed read of ``name``, if any)."""
        if not self.live:
            return "is not in the snapshot"
        failed = [u for u in self.unreadable if u.target == name]
        if not failed or any(u.reason.startswith("NOT_FOUND") for u in failed):
            return "was not found"
        return f"could not be read ({failed[0].what})"

    @property
    def held(self) -> str:
        """``in the snapshot`` (a file) or ``read`` (live): where a message says the state's
        bindings and policies come from ("covers only the bindings read")."""
        return "read" if self.live else "in the snapshot"

    def canonical(self, name: str) -> str:
        """The snapshot's name for a resource: a project number becomes the project's id-based
        name when the number is known; anything else is returned as it is."""
        match = _PROJECT_NUMBER.match(name)
        if match is None:
            return name
        return self._project_names.get(match.group(1), name)

    def may_be(self, point: str, project: Node) -> str:
        """Why the project ``point`` (not in the snapshot under that name) may be ``project``,
        or ``""``: a number may be a project whose number is unknown; an id may be a project
        the snapshot knows only by its number."""
        if point in self.nodes or not point.startswith(_PROJECTS) or project.kind != "project":
            return ""
        if self.unplaced_number(point) is not None:
            if project.project_number:
                return ""
            return f"the number of {project.name} is unknown, so it may be that project"
        if _is_number_name(point) or not _is_number_name(project.name):
            return ""  # a known number is placed by canonical(); a known id is not this one
        return f"{project.name} is known here by its number only, so it may be that project"

    def unplaced_number(self, point: str) -> str | None:
        """The project number of ``point`` when it names a project by a number no project in
        the snapshot has (it may be any project whose number is unknown), else ``None``."""
        match = _PROJECT_NUMBER.match(point)
        if match is None or point in self.nodes:
            return None
        return match.group(1) if match.group(1) not in self._project_names else None

    def ancestors(self, name: str) -> list[Node]:
        """The node itself, then its parents up to the root, as far as they are known."""
        chain: list[Node] = []
        seen: set[str] = set()
        current = self.nodes.get(name)
        while current is not None and current.name not in seen:
            chain.append(current)
            seen.add(current.name)
            current = self.nodes.get(current.parent) if current.parent else None
        return chain

    def project_by_number(self, number: str) -> Node | None:
        """The project node with this number, if known."""
        name = self._project_names.get(number)
        if name is not None:
            return self.nodes.get(name)
        node = self.nodes.get(f"{_CRM}projects/{number}")
        return node if node is not None and node.kind == "project" else None


def _merge(a: Node, b: Node) -> Node:
    """One project known under its id (``a``) and its number (``b``): one node."""
    policy = a.policy
    if b.policy is not None:
        bindings = (a.policy.bindings if a.policy else ()) + b.policy.bindings
        policy = AllowPolicy(bindings, a.policy.etag if a.policy else b.policy.etag)
    parent = a.parent
    if b.parent is not None and parent is not None and b.parent != parent:
        parent = None  # the two say different things: the ancestry is unknown (fail closed)
    elif parent is None:
        parent = b.parent
    return replace(a, policy=policy, parent=parent, display_name=a.display_name or b.display_name)


def _normalise_identities(snap: Snapshot) -> None:
    """Rewrite project numbers to id-based names everywhere in ``snap`` (in place, once)."""
    names: dict[str, str] = {}
    for name, node in snap.nodes.items():
        if node.kind == "project" and node.project_number and not _is_number_name(name):
            names.setdefault(node.project_number, name)
    object.__setattr__(snap, "_project_names", names)

    def canon(name: str | None) -> str | None:
        return snap.canonical(name) if name is not None and _is_number_name(name) else name

    nodes: dict[str, Node] = {}
    changed = False
    for key, node in snap.nodes.items():
        original = node
        if node.kind == "project" and node.project_number is None and _is_number_name(node.name):
            node = replace(node, project_number=node.name[len(_PROJECTS) :])  # names itself
        name, parent = canon(node.name) or node.name, canon(node.parent)
        if name != node.name or parent != node.parent:
            node = replace(node, name=name, parent=parent)
        if names and node.policy is not None:
            node = _with_sa_sets(node, names)
        if node is not original or key != name:
            changed = True
        if name in nodes:
            first, second = (nodes[name], node) if key != name else (node, nodes[name])
            node = _merge(first, second)
            changed = True
        nodes[name] = node
    if changed:
        object.__setattr__(snap, "nodes", nodes)

    denies = []
    for dp in snap.deny_policies:
        point = snap.canonical(normalize_attachment_point(dp.attachment_point))
        if point != dp.attachment_point:
            dp = replace(dp, attachment_point=point)
        denies.append(_deny_sa_sets(dp, names) if names else dp)
    object.__setattr__(snap, "deny_policies", tuple(denies))

    if names:
        unreadable = tuple(
            replace(u, target=t) if (t := snap.canonical(u.target)) != u.target else u
            for u in snap.unreadable
        )
        object.__setattr__(snap, "unreadable", unreadable)
        sas = {}
        for email, sa in snap.service_accounts.items():
            pid = sa.project_id
            if pid.isdigit() and pid in names:
                sa = replace(sa, project_id=names[pid].rsplit("/", 1)[1])
            sas[email] = sa
        object.__setattr__(snap, "service_accounts", sas)


def _is_number_name(name: str) -> bool:
    tail = name[len(_PROJECTS) :]
    return name.startswith(_PROJECTS) and tail.isdigit() and tail.isascii()


def _sa_set(member: str, names: dict[str, str]) -> str:
    """``principalSet://.../projects/NUMBER/type/ServiceAccount`` → the project id, if known."""
    if not member.startswith(_SA_SET_PROJECTS):
        return member
    match = _SA_SET_NUMBER.match(member)
    if match is None or match.group(1) not in names:
        return member
    pid = names[match.group(1)].rsplit("/", 1)[1]
    return f"{_SA_SET_PROJECTS}{pid}/type/ServiceAccount"


def _sa_sets(members: tuple[str, ...], names: dict[str, str]) -> tuple[str, ...]:
    return tuple(_sa_set(m, names) for m in members)


def _with_sa_sets(node: Node, names: dict[str, str]) -> Node:
    """A node whose bindings name service-account sets by project id, not number."""
    assert node.policy is not None
    bindings = node.policy.bindings
    if not any(m.startswith(_SA_SET_PROJECTS) for b in bindings for m in b.members):
        return node
    fixed = tuple(replace(b, members=_sa_sets(b.members, names)) for b in bindings)
    return replace(node, policy=replace(node.policy, bindings=fixed))


def _deny_sa_sets(dp: DenyPolicy, names: dict[str, str]) -> DenyPolicy:
    """A deny policy whose rules name service-account sets by project id, not number."""
    if not any(
        m.startswith(_SA_SET_PROJECTS)
        for r in dp.rules
        for m in r.denied_principals + r.exception_principals
    ):
        return dp
    rules = tuple(
        replace(
            r,
            denied_principals=_sa_sets(r.denied_principals, names),
            exception_principals=_sa_sets(r.exception_principals, names),
        )
        for r in dp.rules
    )
    return replace(dp, rules=rules)
