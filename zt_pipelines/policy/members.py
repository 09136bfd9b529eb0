"""Does a binding member (or a deny principal) cover a principal? Yes, no, or unknown.

Allow-policy members (``user:``, ``serviceAccount:``, ``group:``, ``domain:``, ``allUsers``,
``allAuthenticatedUsers``, ``deleted:...``, ``principal://``, ``principalSet://``, and the
legacy ``projectOwner:/projectEditor:/projectViewer:`` convenience values) and IAM v2 deny
principals are answered three ways. *Unknown* — a group whose membership the snapshot does not
hold, a principal set we cannot enumerate — never proves a grant (fail closed), and for a deny
rule it makes the grant unverifiable.

Pure: reads only the snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from zt_pipelines.policy.snapshot import Node, Snapshot, read_hides
from zt_pipelines.policy.wording import noun
from zt_pipelines.resources import CRM


class Match(Enum):
    """Three-valued membership."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MemberMatch:
    """A membership answer with the reason (e.g. the group path that matched)."""

    match: Match
    reason: str = ""


_NO = MemberMatch(Match.NO)
# workforce / workload identity pool principals and sets: federated identities only.
# group 1: the pool (``locations/global/workforcePools/P`` or
# ``projects/N/locations/global/workloadIdentityPools/P``), group 2: the rest of the path
_POOL = re.compile(
    r"^principal(?:Set)?://iam\.googleapis\.com/"
    r"(locations/global/workforcePools/[^/]+|projects/[^/]+/locations/global/workloadIdentityPools/[^/]+)"
    r"/(.+)$"
)
#: GKE Workload Identity: ``serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]`` is a Kubernetes
#: service account, a federated identity; never a Google service account
_GKE_KSA = re.compile(r"^serviceAccount:[a-z0-9.:-]+\.svc\.id\.goog\[[^\]/\s]+/[^\]/\s]+\]$")
#: ``principalSet://cloudresourcemanager.googleapis.com/{projects|folders|organizations}/ID/type/ServiceAccount``
_SA_SET = "principalSet://cloudresourcemanager.googleapis.com/"
_NUMBER = re.compile(r"^[1-9][0-9]*$")
_PUBLIC = frozenset({"allUsers", "allAuthenticatedUsers"})
#: the members :func:`is_public_member` is true for
PUBLIC_MEMBERS = _PUBLIC | {"principalSet://goog/public:all"}
_CONVENIENCE = {
    "projectOwner": "roles/owner",
    "projectEditor": "roles/editor",
    "projectViewer": "roles/viewer",
}


def normalize_principal(principal: str) -> str:
    """Lower-case the email of ``user:``/``serviceAccount:``/``group:`` principals; an IAM v2
    service-account or Google-account identifier becomes its v1 form (the same account)."""
    # a slice, not str.startswith (its argument parsing costs more): one call per member entry
    v1 = v2_to_v1_principal(principal) if principal[:12] == "principal://" else None
    if v1 is not None and "@" in v1:
        return v1  # principal://goog/subject/EMAIL is user:EMAIL
    kind, sep, rest = principal.partition(":")
    if sep and kind in ("user", "serviceAccount", "group", "domain") and "//" not in rest:
        return f"{kind}:{rest.lower()}"
    return principal


def is_gke_workload_identity(principal: str) -> bool:
    """True for a GKE Kubernetes service account (``serviceAccount:P.svc.id.goog[NS/KSA]``)."""
    return _GKE_KSA.match(principal) is not None


def is_google_account(principal: str) -> bool:
    """True for principals ``allAuthenticatedUsers`` covers: Google accounts (``user:``) and
    Google service accounts. Federated identities (workforce / workload identity pools, GKE
    Kubernetes service accounts) are not included (IAM principal-identifiers docs)."""
    if principal.startswith("user:"):
        return "@" in principal
    if principal.startswith("serviceAccount:"):
        return "@" in principal and not is_gke_workload_identity(principal)
    return False


def is_public_member(member: str) -> bool:
    """True for ``allUsers`` / ``allAuthenticatedUsers`` (and their v2 deny form)."""
    return member in PUBLIC_MEMBERS


class MemberResolver:
    """Answers membership questions against one snapshot, caching group closures."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._groups = {k.lower(): v for k, v in snapshot.groups.items()}
        self._unreadable_groups = {
            u.target.lower().removeprefix("group:")
            for u in snapshot.unreadable
            if u.target.startswith("group:")
        }
        self._closure: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._ancestry_unreadable = {
            u.target for u in snapshot.unreadable if "ancestry" in read_hides(u.what)
        }

    def group_closure(self, group: str) -> tuple[frozenset[str], frozenset[str]]:
        """(every non-group member reachable, every reachable group with unknown membership)."""
        group = group.lower()
        cached = self._closure.get(group)
        if cached is not None:
            return cached
        members: set[str] = set()
        unknown: set[str] = set()
        seen: set[str] = set()
        stack = [group]
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            seen.add(g)
            direct = self._groups.get(g)
            if direct is None or g in self._unreadable_groups:
                unknown.add(g)
                continue
            for m in direct:
                m = normalize_principal(m)
                if m.startswith("group:"):
                    stack.append(m[len("group:") :])
                else:
                    members.add(m)
        result = (frozenset(members), frozenset(unknown))
        self._closure[group] = result
        return result

    def in_group(self, principal: str, group: str) -> MemberMatch:
        """Is ``principal`` a (transitive) member of ``group``?"""
        members, unknown = self.group_closure(group)
        if principal in members:
            return MemberMatch(Match.YES, f"member of group:{group}")
        if unknown:
            names = ", ".join(sorted(unknown))
            groups = f"{noun(len(unknown), 'group')} {names}"
            return MemberMatch(Match.UNKNOWN, f"membership of {groups} is unknown")
        return _NO

    def matches(self, member: str, principal: str) -> MemberMatch:
        """Does the allow-policy ``member`` cover ``principal`` (already normalised)?"""
        if member == principal:
            return MemberMatch(Match.YES, "named directly")
        if member == "allUsers":
            return MemberMatch(Match.YES, "allUsers (public)")
        if member == "allAuthenticatedUsers":
            # Google accounts and service accounts only: never a federated identity
            if is_google_account(principal):
                return MemberMatch(Match.YES, "allAuthenticatedUsers (public)")
            if principal.startswith(("principal://", "serviceAccount:")):
                return _NO  # a workforce/workload pool identity or a GKE KSA
            return MemberMatch(Match.UNKNOWN, f"{principal} is not a principal kind we know")
        kind, _, rest = member.partition(":")
        if kind == "deleted":
            return _NO  # a deleted principal's bindings never apply to a re-created one
        if kind == "group":
            return self.in_group(principal, rest.lower())
        if kind == "domain":
            # Workspace/Cloud Identity domains contain users and groups, never service accounts.
            if principal.startswith("user:") and principal.endswith("@" + rest.lower()):
                return MemberMatch(Match.YES, f"user in domain {rest}")
            return _NO
        if kind in _CONVENIENCE:
            return self._convenience(_CONVENIENCE[kind], rest, principal)
        if member.startswith(_SA_SET):
            return self._sa_set(member, principal)
        if member.startswith("principalSet://"):
            return self._principal_set(member, principal)
        if normalize_principal(member) == principal:
            return MemberMatch(Match.YES, "named directly")
        return _NO

    def _convenience(self, role: str, project: str, principal: str) -> MemberMatch:
        node = self._snapshot.nodes.get(self._snapshot.canonical(f"{CRM}projects/{project}"))
        if node is None:
            absent = self._snapshot.absent(f"{CRM}projects/{project}")
            return MemberMatch(Match.UNKNOWN, f"project {project} {absent}")
        if node.policy is None:
            return _NO
        unknown = ""
        for b in node.policy.bindings:
            if b.role != role or b.condition is not None:
                continue
            for m in b.members:
                if m.split(":", 1)[0] in _CONVENIENCE:
                    continue  # no recursion through convenience values
                r = self.matches(normalize_principal(m), principal)
                if r.match is Match.YES:
                    return MemberMatch(Match.YES, f"holds {role} on project {project}")
                if r.match is Match.UNKNOWN:
                    unknown = r.reason
        return MemberMatch(Match.UNKNOWN, unknown) if unknown else _NO

    def _principal_set(self, member: str, principal: str) -> MemberMatch:
        """A workforce / workload identity pool set: ``.../POOL/*`` holds every identity of
        the pool; a group or attribute set holds some we cannot enumerate."""
        pool = _POOL.match(member)
        if pool is None:
            return MemberMatch(Match.UNKNOWN, f"{member} is not a principal set we understand")
        mine = _POOL.match(principal)
        if mine is None:
            if is_gke_workload_identity(principal) and "/workloadIdentityPools/" in pool.group(1):
                # a GKE KSA is an identity of its project's PROJECT.svc.id.goog pool
                return MemberMatch(Match.UNKNOWN, f"{principal} may be in {member}")
            return _NO  # pool sets hold federated identities only
        if mine.group(1) != pool.group(1):
            return _NO
        if pool.group(2) == "*":
            return MemberMatch(Match.YES, f"every identity of {pool.group(1)}")
        return MemberMatch(Match.UNKNOWN, f"{member} membership cannot be enumerated")

    def deny_matches(self, deny_principal: str, principal: str) -> MemberMatch:
        """Does the IAM v2 deny ``deny_principal`` cover ``principal``?"""
        if deny_principal.startswith("deleted:"):
            return _NO
        if deny_principal == "principalSet://goog/public:all":
            return MemberMatch(Match.YES, "all principals")
        v1 = v2_to_v1_principal(deny_principal)
        if v1 is not None:
            if v1.startswith("group:"):
                return self.in_group(principal, v1[len("group:") :])
            if v1.startswith("serviceAccount:") and "@" not in v1:
                return self._sa_by_unique_id(v1[len("serviceAccount:") :], principal)
            return MemberMatch(Match.YES, "named directly") if v1 == principal else _NO
        if deny_principal.startswith("principalSet://goog/cloudIdentityCustomerId/"):
            if principal.startswith(("serviceAccount:", "principal://")):
                return _NO  # service accounts and federated identities are not account members
            return MemberMatch(Match.UNKNOWN, f"{deny_principal} cannot be enumerated")
        if deny_principal.startswith(_SA_SET):
            return self._sa_set(deny_principal, principal)
        if deny_principal == principal:
            return MemberMatch(Match.YES, "named directly")
        if _POOL.match(deny_principal):
            if deny_principal.startswith("principalSet://"):
                return self._principal_set(deny_principal, principal)
            return _NO  # one federated identity, and not ``principal`` (checked above)
        # a form we do not understand might name this principal: the deny may apply
        return MemberMatch(Match.UNKNOWN, f"{deny_principal} is not an identifier we understand")

    def _sa_by_unique_id(self, unique_id: str, principal: str) -> MemberMatch:
        # a service account named by its unique id: only the snapshot can tell whose it is
        if not principal.startswith("serviceAccount:"):
            return _NO
        sa = self._snapshot.service_accounts.get(principal[len("serviceAccount:") :])
        if sa is None or not sa.unique_id:
            return MemberMatch(Match.UNKNOWN, f"the unique id of {principal} is not known")
        return MemberMatch(Match.YES, "named by unique id") if sa.unique_id == unique_id else _NO

    def _sa_set(self, member: str, principal: str) -> MemberMatch:
        """``principalSet://cloudresourcemanager.googleapis.com/{projects|folders|organizations}/
        ID/type/ServiceAccount``: every service account in a project, or in any project under a
        folder / organisation. Needs the account's project placed in a complete hierarchy."""
        path = member.removeprefix(_SA_SET)
        parts = path.split("/")
        if (
            len(parts) != 4
            or parts[0] not in ("projects", "folders", "organizations")
            or not parts[1]
            or parts[2] != "type"
            or parts[3] != "ServiceAccount"
        ):
            return MemberMatch(Match.UNKNOWN, f"{member} is not understood")
        if not principal.startswith("serviceAccount:") or is_gke_workload_identity(principal):
            return _NO
        sa = self._snapshot.service_accounts.get(principal[len("serviceAccount:") :])
        if sa is None:
            return MemberMatch(Match.UNKNOWN, f"{principal} {self._snapshot.absent(principal)}")
        project = self._snapshot.nodes.get(f"{CRM}projects/{sa.project_id}")
        if project is None:
            absent = self._snapshot.absent(f"{CRM}projects/{sa.project_id}")
            return MemberMatch(Match.UNKNOWN, f"project {sa.project_id} {absent}")
        kind, ident = parts[0], parts[1]
        if (kind != "projects" or ident.isdigit()) and not _NUMBER.match(ident):
            # folders and organisations are numbers; "0200" or "２００" is no name we can place
            return MemberMatch(Match.UNKNOWN, f"{member} does not name a node in a canonical form")
        if kind == "projects":
            if ident == sa.project_id or (
                project.project_number and ident == project.project_number
            ):
                return MemberMatch(Match.YES, f"service account in project {ident}")
            if project.project_number is None and ident.isdigit():
                other = self._snapshot.project_by_number(ident)
                if other is not None and other.name != project.name:
                    return _NO  # that number is another project's
                return MemberMatch(
                    Match.UNKNOWN,
                    f"the number of project {sa.project_id} is not known: it may be {ident}",
                )
            return _NO
        chain = self._snapshot.ancestors(project.name)
        for node in chain:
            if node.name == f"{CRM}{kind}/{ident}":
                return MemberMatch(Match.YES, f"service account under {kind}/{ident}")
        gap = self._hierarchy_gap(chain)
        if gap:
            return MemberMatch(
                Match.UNKNOWN, f"project {sa.project_id} cannot be placed in the hierarchy: {gap}"
            )
        return _NO

    def _hierarchy_gap(self, chain: list[Node]) -> str:
        """Why ``chain`` (a node and its known ancestors) may not reach the real root, or ``""``."""
        top = chain[-1]
        if top.parent is None and top.kind != "organization":
            return f"the ancestry of {top.name} is unknown"  # "" marks a known root
        if top.parent and top.parent not in self._snapshot.nodes:
            return f"{top.parent} (parent of {top.name}) {self._snapshot.absent(top.parent)}"
        elif top.parent:
            return f"the ancestry of {chain[0].name} loops through {top.parent}"
        for node in chain:
            if node.name in self._ancestry_unreadable:
                return f"the ancestry of {node.name} could not be read"
        return ""


def v2_to_v1_principal(principal: str) -> str | None:
    """Map an IAM v2 principal identifier to its v1 member form, when there is one."""
    sa_prefix = "principal://iam.googleapis.com/projects/-/serviceAccounts/"
    if principal.startswith(sa_prefix):
        return "serviceAccount:" + principal[len(sa_prefix) :].lower()
    if principal.startswith("principal://goog/subject/"):
        return "user:" + principal[len("principal://goog/subject/") :].lower()
    if principal.startswith("principalSet://goog/group/"):
        return "group:" + principal[len("principalSet://goog/group/") :].lower()
    return None
