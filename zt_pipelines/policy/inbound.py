"""Who else can become a pipeline's identities (ZT220, and a note on administrators) — pure.

A step identity is minimal only if nobody else can use it: a principal that can act as,
mint tokens for, sign as, or create keys for a step's service account holds everything that
step holds. The reach checks (ZT216–ZT218) walk *outward* from the pipeline's identities; this
one looks *inward*, at every binding on each identity's own service account and on its
project, folder and organisation that carries an impersonation permission.

Expected, and not reported: the pipeline identity on the step identities it launches and on
the jobs they launch, a step identity on the jobs it launches as itself, the submitter on the
pipeline identity, each identity on itself, Google's service agents, and the other identities
of the same pipeline (what they can become is judged by ZT216/ZT217). Everything else is:

- **ZT220** (error) — an impersonation role (Service Account User / Token Creator / Key Admin,
  a custom role with those permissions ...) held by another principal on the identity or an
  ancestor, including through a group, a domain or a principal set; on the identity itself
  any grant carrying one of them (a basic role, a policy rewrite) counts;
- a report note — administrators: a basic role (owner, editor) or a policy-rewriting
  permission on an ancestor (project / folder / organisation): whoever administers the project
  can always become its service accounts; disclosed on every report, not refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.catalogue import is_basic_role
from zt_pipelines.policy.members import is_public_member, normalize_principal
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.reach import EDGE_PERMISSIONS
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import CheckContext, sa_member
from zt_pipelines.resources import display_uri, service_account_resource

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator

#: policy rewrites: whoever holds them can grant themselves any of the others
_ADMIN_PERMISSIONS = frozenset(p for p in EDGE_PERMISSIONS if p.endswith(".setIamPolicy"))
#: permissions that let their holder become a service account directly
IMPERSONATION_PERMISSIONS = frozenset(EDGE_PERMISSIONS) - _ADMIN_PERMISSIONS
_MAX_LISTED = 5
_ACT_AS = frozenset({"iam.serviceAccounts.actAs"})


def _home(member: str) -> str | None:
    """The project a user-managed service account lives in (``None`` for other members)."""
    domain = member.partition("@")[2]
    if not member.startswith("serviceAccount:") or not domain.endswith(".iam.gserviceaccount.com"):
        return None
    return domain.removesuffix(".iam.gserviceaccount.com")


def _service_agent(member: str) -> bool:
    """Google-managed service agents (``service-N@gcp-sa-*.iam.gserviceaccount.com`` ...)."""
    email = member.partition(":")[2]
    domain = email.partition("@")[2]
    return member.startswith("serviceAccount:") and (
        domain.startswith("gcp-sa-") or domain.endswith(".gcp-sa.iam.gserviceaccount.com")
    )


def _identities(
    steps: Iterable[StepIdentity], ctx: CheckContext
) -> dict[str, tuple[set[str], set[str]]]:
    """member -> (the tasks it serves, the members expected to become it)."""
    pipeline = sa_member(ctx.pipeline_service_account)
    out: dict[str, tuple[set[str], set[str]]] = {}

    def add(member: str, task: str | None, *expected: str) -> None:
        tasks, allowed = out.setdefault(member, (set(), {member}))
        if task:
            tasks.add(task)
        allowed.update(e for e in expected if e)

    add(pipeline, None, normalize_principal(ctx.submitter) if ctx.submitter else "")
    for step in steps:
        if not step.service_account:
            continue
        own = sa_member(step.service_account)
        add(own, step.task, pipeline)
        for other in (step.launched_service_account, step.serving_service_account):
            if other:
                add(sa_member(other), step.task, own, pipeline)
    return out


def inbound_findings(
    steps: tuple[StepIdentity, ...], ev: Evaluator, ctx: CheckContext
) -> tuple[list[Finding], list[str]]:
    """ZT220 for every principal, other than the expected ones, that can become one of the
    pipeline's identities (see the module docstring): one finding per binding, naming every
    identity it reaches; and a note naming the administrators above them."""
    identities = _identities(steps, ctx)
    ours = set(identities)
    pipeline = sa_member(ctx.pipeline_service_account)
    # (code, node, role, member, condition) -> the identities it can become
    reached: dict[tuple[str, str, str, str, str], list[str]] = {}
    permission_of: dict[tuple[str, str, str, str, str], str] = {}
    for identity in sorted(identities):
        allowed = identities[identity][1]
        email = identity.partition(":")[2]
        nodes, _gap = ev.chain(service_account_resource(email))
        for depth, node in enumerate(nodes):
            for binding in node.policy.bindings if node.policy else ():
                perms = ev.role_permissions(binding.role)
                if not perms:
                    continue
                impersonate = perms & IMPERSONATION_PERMISSIONS
                administer = perms & _ADMIN_PERMISSIONS
                if not impersonate and not administer:
                    continue
                # on the account itself any of them is ZT220; above it, an impersonation role
                # proper is ZT220, a basic role or a policy rewrite is administration (a note)
                admin = depth > 0 and (is_basic_role(binding.role) or not impersonate)
                code = "admin" if admin else "ZT220"
                condition = binding.condition.expression if binding.condition else ""
                beyond_act_as = bool(impersonate - _ACT_AS) or bool(administer)
                for raw in binding.members:
                    member = normalize_principal(raw)
                    if member.startswith("deleted:") or member == identity:
                        continue
                    # the launcher / the submitter may act as it — nothing more (keys, tokens,
                    # a policy rewrite would outlive the run); the pipeline's other identities'
                    # reach is judged by ZT216/ZT217
                    if (member in allowed or member in ours) and not beyond_act_as:
                        continue
                    if _service_agent(member):
                        continue
                    # actAs alone attaches the identity to what its holder creates: another
                    # service account (another pipeline, automation) or, with the submitter
                    # unknown, whoever may submit as the pipeline identity — named in a note;
                    # a person or an outside principal that can run as it — ZT220
                    kind = code
                    if (
                        kind == "ZT220"
                        and not beyond_act_as
                        and (
                            member.startswith("serviceAccount:")
                            or (not ctx.submitter and identity == pipeline)
                        )
                    ):
                        kind = "act-as"
                    key = (kind, node.name, binding.role, raw, condition)
                    reached.setdefault(key, []).append(identity)
                    permission_of[key] = min((impersonate - _ACT_AS) or impersonate or administer)
    out: list[Finding] = []
    admins: dict[str, list[str]] = {}  # node -> "member (role)" of its administrators
    act_as: dict[str, list[str]] = {}  # identity -> the others that may run as it (actAs)
    for key, targets in sorted(reached.items()):
        code, where, role, member, condition = key
        if code == "admin":
            admins.setdefault(where, []).append(f"{member} ({role})")
            continue
        if code == "act-as":
            for target in targets:
                act_as.setdefault(target, []).append(member)
            continue
        tasks = sorted({t for target in targets for t in identities[target][0]})
        names = ", ".join(t.partition(":")[2] for t in targets[:_MAX_LISTED]) + (
            f" and {len(targets) - _MAX_LISTED} more" if len(targets) > _MAX_LISTED else ""
        )
        who = "anyone" if is_public_member(member) else member
        when = " (when its condition holds)" if condition else ""
        out.append(
            Finding(
                code,
                DEFAULT_SEVERITIES[code],
                f"{who} can become {names}: it holds {permission_of[key]} through {role} on "
                f"{display_uri(where)}{when}",
                step=",".join(tasks) or None,
                principal=member,
                resource=where,
                permission=permission_of[key],
                evidence=(
                    Evidence("binding", node=where, role=role, member=member, condition=condition),
                    *(Evidence("identity", detail=t) for t in targets[:20]),
                ),
            )
        )
    notes = [
        f"administrators of {display_uri(where)} can become the pipeline's identities below it "
        f"(a basic role or a policy rewrite): {', '.join(who[:_MAX_LISTED])}"
        + (f" and {len(who) - _MAX_LISTED} more" if len(who) > _MAX_LISTED else "")
        for where, who in sorted(admins.items())
    ]
    foreign = sorted(
        i.partition(":")[2]
        for i in identities
        if ctx.project and _home(i) not in (None, ctx.project)
    )
    if foreign:  # whoever administers their projects can become them; not under this review
        notes.append(
            f"{len(foreign)} of the pipeline's identities live in another project than "
            f"{ctx.project} (their administrators there can become them): "
            + ", ".join(foreign[:_MAX_LISTED])
            + (f" and {len(foreign) - _MAX_LISTED} more" if len(foreign) > _MAX_LISTED else "")
        )
    notes += [
        f"{', '.join(sorted(set(who))[:_MAX_LISTED])}"
        + (f" and {len(set(who)) - _MAX_LISTED} more" if len(set(who)) > _MAX_LISTED else "")
        + f" may run as {target.partition(':')[2]} (actAs: attach it to what they create)"
        for target, who in sorted(act_as.items())
    ]
    return out, notes
