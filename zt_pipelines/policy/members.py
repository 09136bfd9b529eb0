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

from zt_pipelines.policy.snapshot import Snapshot
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
# workforce / workload identity pool principals: federated identities only
_FEDERATED = re.compile(
    r"^principal(?:Set)?://iam\.googleapis\.com/"
    r"(?:locations/global/workforcePools/|projects/[^/]+/locations/global/workloadIdentityPools/)"
)
_PUBLIC = frozenset({"allUsers", "allAuthenticatedUsers"})
_CONVENIENCE = {
    "projectOwner": "roles/owner",
    "projectEditor": "roles/editor",
    "projectViewer": "roles/viewer",
}


def normalize_principal(principal: str) -> str:
    """Lower-case the email of ``user:``/``serviceAccount:``/``group:`` principals."""
    kind, sep, rest = principal.partition(":")
    if sep and kind in ("user", "serviceAccount", "group", "domain") and "//" not in rest:
        return f"{kind}:{rest.lower()}"
    return principal


def is_public_member(member: str) -> bool:
    """True for ``allUsers`` / ``allAuthenticatedUsers`` (and their v2 deny form)."""
    return member in _PUBLIC or member == "principalSet://goog/public:all"


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
            return MemberMatch(Match.UNKNOWN, f"membership of group(s) {names} is unknown")
        return _NO

    def matches(self, member: str, principal: str) -> MemberMatch:
        """Does the allow-policy ``member`` cover ``principal`` (already normalised)?"""
        if member == principal:
            return MemberMatch(Match.YES, "named directly")
        if member == "allUsers":
            return MemberMatch(Match.YES, "allUsers (public)")
        if member == "allAuthenticatedUsers":
            return MemberMatch(Match.YES, "allAuthenticatedUsers (public)")
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
        if member.startswith("principalSet://"):
            return self._principal_set(member, principal)
        if normalize_principal(member) == principal:
            return MemberMatch(Match.YES, "named directly")
        return _NO

    def _convenience(self, role: str, project: str, principal: str) -> MemberMatch:
        node = self._snapshot.nodes.get(f"{CRM}projects/{project}")
        if node is None:
            return MemberMatch(Match.UNKNOWN, f"project {project} is not in the snapshot")
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
        if not principal.startswith("principal://"):
            return _NO  # workload/workforce pool sets hold federated identities only
        base = member.removeprefix("principalSet://").rsplit("/", 1)[0]
        target = principal.removeprefix("principal://")
        if target.startswith(base + "/"):
            return MemberMatch(Match.UNKNOWN, f"{member} membership cannot be enumerated")
        return _NO

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
            if principal.startswith("serviceAccount:"):
                return _NO  # service accounts are not Cloud Identity account members
            return MemberMatch(Match.UNKNOWN, f"{deny_principal} cannot be enumerated")
        if deny_principal.startswith("principalSet://cloudresourcemanager.googleapis.com/"):
            return self._sa_set(deny_principal, principal)
        if deny_principal == principal:
            return MemberMatch(Match.YES, "named directly")
        if _FEDERATED.match(deny_principal):
            if deny_principal.startswith("principalSet://"):
                return self._principal_set(deny_principal, principal)
            return _NO  # one federated identity: not a Google account or service account
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

    def _sa_set(self, deny_principal: str, principal: str) -> MemberMatch:
        # principalSet://cloudresourcemanager.googleapis.com/{projects|folders|organizations}/ID/type/ServiceAccount
        path = deny_principal.removeprefix("principalSet://cloudresourcemanager.googleapis.com/")
        parts = path.split("/")
        if len(parts) != 4 or parts[2] != "type" or parts[3] != "ServiceAccount":
            return MemberMatch(Match.UNKNOWN, f"{deny_principal} is not understood")
        if not principal.startswith("serviceAccount:"):
            return _NO
        sa = self._snapshot.service_accounts.get(principal[len("serviceAccount:") :])
        if sa is None:
            return MemberMatch(Match.UNKNOWN, f"{principal} is not in the snapshot")
        project = self._snapshot.nodes.get(f"{CRM}projects/{sa.project_id}")
        if project is None:
            return MemberMatch(Match.UNKNOWN, f"project {sa.project_id} is not in the snapshot")
        kind, ident = parts[0], parts[1]
        for node in self._snapshot.ancestors(project.name):
            if kind == "projects" and node.kind == "project":
                if ident in (node.project_number, sa.project_id):
                    return MemberMatch(Match.YES, f"service account in project {ident}")
            elif node.name == f"{CRM}{kind}/{ident}":
                return MemberMatch(Match.YES, f"service account under {kind}/{ident}")
        return _NO


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
