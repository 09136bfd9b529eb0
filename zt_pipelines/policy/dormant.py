"""Dormant grants (ZT225): bindings that grant nothing now but come back without any change to
an allow policy.

* A custom role at stage ``DISABLED``: IAM inactivates its bindings; setting the stage back
  re-activates them (``iam.roles.update``).
* A deleted custom role: its bindings stay in the policies and become active again when the
  role is undeleted within 7 days (``iam.roles.undelete``).
* A deleted principal (``deleted:serviceAccount:EMAIL?uid=N``, ``deleted:user:…``,
  ``deleted:group:…``): when it is undeleted (a service account within 30 days, by
  ``iam.serviceAccounts.undelete``; a user or group by its directory's administrators) the
  member reverts to ``serviceAccount:EMAIL`` and keeps its role.

The engine never counts them as granting (a dormant role carries no permission; a ``deleted:``
member matches nobody), so the findings here are what a woken grant would be: another principal
that could become one of the pipeline's identities (what ZT220 says of an active grant) and a
role a pipeline identity holds that would give it permissions back (ZT210–ZT212's). Each names
who can wake it, so the fix is one of: remove the binding, or keep the role (or account) gone.

Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.catalogue import escalation_rank, escalation_reason
from zt_pipelines.policy.inbound import IMPERSONATION_PERMISSIONS, identities_of
from zt_pipelines.policy.members import normalize_principal
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.reach import EDGE_PERMISSIONS
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import CheckContext
from zt_pipelines.policy.snapshot import Binding, Node, Role
from zt_pipelines.policy.wording import plural
from zt_pipelines.resources import CRM, display_uri, service_account_resource

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator

_MAX_LISTED = 5
_ACT_AS = frozenset({"iam.serviceAccounts.actAs"})
#: what lets a holder become (or administer) a service account: ZT220's permissions
_OVER_ACCOUNT = frozenset(EDGE_PERMISSIONS) | IMPERSONATION_PERMISSIONS


def _listed(items: Iterable[str]) -> str:
    shown = sorted(set(items))
    head = ", ".join(shown[:_MAX_LISTED])
    return head + (f" and {len(shown) - _MAX_LISTED} more" if len(shown) > _MAX_LISTED else "")


def _dormant(role: Role | None) -> str:
    """Why ``role``'s bindings are inactive now, or ``""`` (active, or not known)."""
    if role is None:
        return ""
    if role.deleted:
        return "deleted"
    if role.stage == "DISABLED":
        return "disabled"
    return ""


def _applies(role: str, chain: tuple[Node, ...]) -> bool:
    """Whether a binding of custom ``role`` on ``chain[0]`` is one IAM accepts (a project's role
    only in that project, an organisation's inside it)."""
    kind, _, rest = role.partition("/")
    if kind not in ("projects", "organizations"):
        return True
    owner = f"{CRM}{kind}/{rest.split('/', 1)[0]}"
    return any(n.name == owner for n in chain)


class _Wakers:
    """Who can wake a dormant role or a deleted account (memoised per owner and permission)."""

    def __init__(self, ev: Evaluator) -> None:
        self.ev = ev
        self._seen: dict[tuple[str, str], tuple[str, ...]] = {}

    def holders(self, owner: str, permission: str) -> tuple[str, ...]:
        key = (owner, permission)
        found = self._seen.get(key)
        if found is None:
            members: set[str] = set()
            for node in self.ev.chain(owner)[0]:
                for b in node.policy.bindings if node.policy else ():
                    perms = self.ev.role_permissions(b.role)
                    if perms is not None and permission in perms:
                        members.update(m for m in b.members if not m.startswith("deleted:"))
            found = self._seen[key] = tuple(sorted(members))
        return found

    def of_role(self, role: str, why: str) -> str:
        """How the role comes back and who can do it."""
        kind, _, rest = role.partition("/")
        owner = f"{CRM}{kind}/{rest.split('/', 1)[0]}"
        if why == "disabled":
            how, permission = "re-enabling the role", "iam.roles.update"
        else:
            how, permission = (
                "undeleting the role (within 7 days of its deletion)",
                ("iam.roles.undelete"),
            )
        who = self.holders(owner, permission)
        return f"{how} revives it — {permission} on {display_uri(owner)}: " + (
            _listed(who) if who else f"nobody {self.ev.snapshot.held}"
        )

    def of_member(self, member: str) -> str:
        """How a deleted principal comes back and who can do it."""
        kind, _, rest = member.removeprefix("deleted:").partition(":")
        email = rest.partition("?")[0]
        if kind == "serviceAccount" and email.endswith(".iam.gserviceaccount.com"):
            project = email.partition("@")[2].split(".", 1)[0]
            owner = f"{CRM}projects/{project}"
            who = self.holders(owner, "iam.serviceAccounts.undelete")
            return (
                f"undeleting {email} (within 30 days of its deletion) revives it as "
                f"serviceAccount:{email} — iam.serviceAccounts.undelete on "
                f"{display_uri(owner)}: "
                + (_listed(who) if who else f"nobody {self.ev.snapshot.held}")
            )
        return (
            f"restoring {email} revives it as {kind}:{email} — its directory's (Cloud Identity "
            "or Google Workspace) administrators can"
        )


def dormant_findings(
    steps: tuple[StepIdentity, ...], ev: Evaluator, ctx: CheckContext
) -> list[Finding]:
    """ZT225 for every dormant binding that would let another principal become one of the
    pipeline's identities, or would give one of them permissions, if it woke."""
    snapshot = ev.snapshot
    dormant_roles = {  # the catalogue's every role: the test inline, _dormant() only for hits
        name: _dormant(r)
        for name, r in snapshot.roles.items()
        if r is not None and (r.deleted or r.stage == "DISABLED")
    }
    # node -> its bindings with a dormant role or a deleted member (usually none)
    dormant_at: dict[str, list[tuple[Binding, str, list[str]]]] = {}

    def marked(node: Node) -> list[tuple[Binding, str, list[str]]]:
        found = dormant_at.get(node.name)
        if found is None:  # once per node: the project's bindings serve every account
            found = dormant_at[node.name] = [
                (b, dormant_roles.get(b.role, ""), deleted)
                for b in (node.policy.bindings if node.policy else ())
                if (deleted := [m for m in b.members if m.startswith("deleted:")])
                or b.role in dormant_roles
            ]
        return found

    if not dormant_roles and not ev.names_deleted_member():
        return []  # the common case: nothing is dormant
    identities = identities_of(steps, ctx)
    wakers = _Wakers(ev)
    out: list[Finding] = []
    seen: set[tuple[str, str, str, str]] = set()

    def tasks_of(identity: str) -> str | None:
        return ",".join(sorted(identities[identity][0])) or None

    # 1. over each identity: its account and every ancestor
    for identity in sorted(identities):
        email = identity.partition(":")[2]
        allowed = identities[identity][1]
        account = service_account_resource(email)
        chain = ev.chain(account)[0]
        if not chain:
            continue  # not in the IAM state: ZT220 says who can become it is not known
        for depth, node in enumerate(chain):
            for b, why_role, deleted in marked(node):
                role = snapshot.roles.get(b.role)
                if why_role and role is not None:
                    if not _applies(b.role, chain[depth:]):
                        continue
                    perms = role.permissions
                else:
                    perms = ev.role_permissions(b.role) or frozenset()
                over = perms & _OVER_ACCOUNT
                if not over:
                    continue
                candidates = b.members if why_role else deleted
                for raw in candidates:
                    member = raw if raw.startswith("deleted:") else normalize_principal(raw)
                    if member in identities or (member in allowed and over <= _ACT_AS):
                        continue  # the pipeline's own identities: what they hold is part 2
                    key = (node.name, b.role, raw, identity)
                    if key in seen:
                        continue
                    seen.add(key)
                    wake = []
                    if why_role:
                        wake.append(wakers.of_role(b.role, why_role))
                    if raw.startswith("deleted:"):
                        wake.append(wakers.of_member(raw))
                    state = " and ".join(
                        w
                        for w in (
                            f"a {why_role} role" if why_role else "",
                            "a deleted principal" if raw.startswith("deleted:") else "",
                        )
                        if w
                    )
                    permission = min(over - _ACT_AS or over)
                    out.append(
                        Finding(
                            "ZT225",
                            DEFAULT_SEVERITIES["ZT225"],
                            f"{raw} could become {email} if its grant woke: it holds "
                            f"{permission} through {b.role} on {display_uri(node.name)} "
                            f"({state}): it grants nothing now, but " + "; ".join(wake),
                            step=tasks_of(identity),
                            principal=raw,
                            resource=node.name,
                            permission=permission,
                            evidence=(
                                Evidence(
                                    "binding",
                                    node=node.name,
                                    role=b.role,
                                    member=raw,
                                    condition=b.condition.expression if b.condition else "",
                                    detail=f"the role is {why_role}" if why_role else "",
                                ),
                                Evidence("identity", detail=identity),
                            ),
                        )
                    )

    # 2. held by each identity: a dormant role anywhere in the IAM state
    if dormant_roles:
        accounts = {service_account_resource(i.partition(":")[2]): i for i in identities}
        for node in snapshot.nodes.values():
            for b in node.policy.bindings if node.policy else ():
                why_role = dormant_roles.get(b.role, "")
                if not why_role:
                    continue
                holders = [
                    m for m in (normalize_principal(raw) for raw in b.members) if m in identities
                ]
                if not holders:
                    continue
                chain = ev.chain(node.name)[0]
                if not _applies(b.role, chain or (node,)):
                    continue
                role = snapshot.roles[b.role]
                risky = sorted(
                    (p for p in role.permissions if escalation_reason(p)), key=escalation_rank
                )
                if not risky:
                    continue  # woken it would be excess (ZT210), not an escalation: not said
                what = f"{plural(len(risky), 'escalation-capable permission')} ({_listed(risky)})"
                # the account the binding is on, when it is one of the pipeline's identities
                on = accounts.get(node.name)
                for identity in holders:
                    if (
                        on is not None
                        and identity in identities[on][1]
                        and (role.permissions <= _ACT_AS)
                    ):
                        continue  # expected even when woken: the launcher acting as a step
                    email = identity.partition(":")[2]
                    out.append(
                        Finding(
                            "ZT225",
                            DEFAULT_SEVERITIES["ZT225"],
                            f"{email} holds {b.role} on {display_uri(node.name)}, a {why_role} "
                            f"role: it grants nothing now, but it would give {what} back — "
                            + wakers.of_role(b.role, why_role),
                            step=tasks_of(identity),
                            principal=identity,
                            resource=node.name,
                            permission=risky[0],
                            evidence=(
                                Evidence(
                                    "binding",
                                    node=node.name,
                                    role=b.role,
                                    member=identity,
                                    condition=b.condition.expression if b.condition else "",
                                    detail=f"the role is {why_role}",
                                ),
                            ),
                        )
                    )
    return out
