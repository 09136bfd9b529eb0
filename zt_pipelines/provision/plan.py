"""The provisioning plan: which identities, roles and bindings a pipeline needs, as a diff.

Input: the requirements of a rewritten pipeline (who needs which permissions on which
resource — declared and implicit, see :mod:`zt_pipelines.provision.requirements`) and the
current state (a :class:`~zt_pipelines.policy.snapshot.Snapshot`, or nothing for an empty
project). Output: a :class:`Plan` — service accounts to create, custom roles to create or
correct, bindings to add and (with ``prune``) bindings to remove.

Rules (docs/provisioning.md):

- every grant comes from a requirement, on that requirement's resource, to that
  requirement's principal: nothing on undeclared resources, never a basic role;
- declared needs may not ask for escalation-capable permissions (the catalogue in
  :mod:`zt_pipelines.policy.catalogue`); the only ones granted are those the pipeline itself
  needs (``roles/iam.serviceAccountUser`` for the pipeline SA *on each step SA*, and the
  orchestration permissions of the pipeline SA);
- needs on an object prefix become conditional bindings on the bucket; permissions that are
  authorised on the bucket rather than on objects (``storage.buckets.*``,
  ``storage.objects.list``) are granted on the bucket without a condition, because a
  ``resource.name`` condition on the prefix can never match them;
- ``prune`` removes bindings that name one of the plan's *step* identities and that the plan
  does not need — only that member, never the pipeline SA (which other pipelines may share);
  and, on a step identity's *own* allow policy, other principals' bindings the plan does not
  need: who may act as a step identity is part of it, and only the pipeline SA may. A deputy
  service agent's binding there is kept — one of the state's own projects' agents that acts
  as the account only for callers its service checked, as the check accepts it
  (:func:`zt_pipelines.policy.inbound.deputy_binding`); another project's agent, or one that
  runs callers' code, is removed like any other principal's.

Pure: no IO, no clock.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from zt_pipelines.errors import ApiError, CustomRoleSupportError, InputError
from zt_pipelines.identity import (
    home_project,
    in_projects,
    require_user_managed,
    submitter_member,
)
from zt_pipelines.policy.catalogue import escalation_reason, is_basic_role
from zt_pipelines.policy.inbound import deputy_binding, known_numbers
from zt_pipelines.policy.members import Match, MemberResolver, normalize_principal
from zt_pipelines.policy.role_catalogue import (
    catalogue_role,
    predefined_roles,
    validate_permissions,
)
from zt_pipelines.policy.snapshot import AllowPolicy, Condition, Snapshot
from zt_pipelines.provision.cover import Cover, find_cover, permission_index
from zt_pipelines.provision.custom_roles import CustomRole, custom_role_for
from zt_pipelines.provision.model import (
    ACT_AS,
    PIPELINE_STEP,
    SERVICE_ACCOUNT_USER,
    SUBMITTER_STEP,
    AccountSpec,
    ForeignIdentity,
    Grant,
    HeldBack,
    Plan,
    ProvisioningRefused,
    RoleMode,
    RoleSpec,
    StepCover,
    UnsupportedResourceError,
    Want,
    want_order,
)
from zt_pipelines.provision.support import assess
from zt_pipelines.resources import (
    BIGQUERY,
    CRM,
    IAM,
    STORAGE,
    display_uri,
    service_account_resource,
)

__all__ = [  # the plan's data lives in .model; re-exported where callers have always found it
    "ACT_AS",
    "PIPELINE_STEP",
    "SERVICE_ACCOUNT_USER",
    "SUBMITTER_STEP",
    "AccountSpec",
    "Grant",
    "HeldBack",
    "Plan",
    "ProvisioningRefused",
    "RoleMode",
    "RoleSpec",
    "StepCover",
    "UnsupportedResourceError",
    "Want",
    "build_plan",
    "check_plan",
    "check_submitter",
    "escalating_permissions",
    "want_order",
]


def build_plan(
    wants: Sequence[Want],
    *,
    project: str,
    pipeline_service_account: str,
    pipeline_name: str = "",
    step_accounts: Mapping[str, Sequence[str]] | None = None,
    roles: RoleMode = "custom",
    snapshot: Snapshot | None = None,
    prune: bool = False,
    organization: str | None = None,
    catalogue: Mapping[str, frozenset[str]] | None = None,
    support_levels: Mapping[str, str] | None = None,
    support_source: str = "",
    identity_projects: Iterable[str] = (),
) -> Plan:
    """Compute the plan for ``wants`` against ``snapshot`` (an empty project when ``None``).

    Args:
        wants: the requirements (see :func:`zt_pipelines.provision.requirements.wants_for`).
        project: the project the pipeline runs in (custom roles live here).
        pipeline_service_account: the pipeline identity.
        pipeline_name: for display.
        step_accounts: step SA email → the tasks it runs (accounts to create if missing).
        roles: ``custom`` (hash-named custom roles) or ``predefined`` (set cover).
        snapshot: the current state; ``None`` plans against an empty project.
        prune: also remove bindings on step identities that the plan does not need.
        organization: an organisation number to hold the custom roles instead of the project.
        catalogue: predefined role → permissions (``predefined`` mode); defaults to the
            shipped catalogue, overridden by the ``roles/...`` definitions of the snapshot.
        support_levels: permission → custom-role support level read live for the roles'
            parent (``custom`` mode; authoritative); ``None`` uses the catalogue's levels.
        support_source: where ``support_levels`` came from (``live: projects/P``).
        identity_projects: projects besides ``project`` whose service accounts may be
            pipeline identities; an identity living anywhere else is held back whole
            (``Plan.foreign_identities``): its administrators there can become it.

    Raises:
        ProvisioningRefused: a role chosen for a need would be basic/escalating. (A declared
            escalation-capable need is not an error: it is held back, ``Plan.held_back``.)
        CustomRoleSupportError: ``custom`` mode and a needed permission cannot be in a custom
            role (``NOT_SUPPORTED`` / not testable on the parent); every such permission is
            named with its reason.
        UnsupportedResourceError: a need names a resource we cannot grant on.
        CoverError: ``predefined`` mode and no allowed role grants a permission.
    """
    if roles not in ("custom", "predefined"):
        raise InputError(f"roles must be 'custom' or 'predefined', not {roles!r}", where="--roles")
    pipeline_sa = require_user_managed(pipeline_service_account, where="pipeline service account")
    state = snapshot or Snapshot()
    parent = f"organizations/{organization}" if organization else f"projects/{project}"
    for want in wants:  # a misspelt permission would become a role IAM refuses
        validate_permissions(want.permissions, where=f"step {want.step!r}")
    allowed = _identity_projects(project, identity_projects, state)
    foreign = _foreign_identities(wants, pipeline_sa, step_accounts, (project, *allowed))
    wants, held_foreign = _hold_back_foreign(wants, foreign, project)
    if foreign:  # no account, no grant, no actAs for them: nothing of theirs is provisioned
        step_accounts = {e: t for e, t in (step_accounts or {}).items() if e.lower() not in foreign}
    wants, held = _hold_back_escalating_needs(wants)
    held = (*held_foreign, *held)
    # with --prune the step accounts' unneeded bindings go: they do not make acting as one risky
    pruned = {
        email
        for email, tasks in _accounts_by_step(wants, pipeline_sa, step_accounts).items()
        if prune and tasks != (PIPELINE_STEP,)
    }
    wants, held_actas = _hold_back_actas_on_privileged(wants, state, pruned)
    held = tuple(
        sorted((*held, *held_actas), key=lambda h: (h.step, h.member, h.resource, h.permission))
    )
    groups = _group(wants)

    role_specs: dict[str, CustomRole] = {}
    grants: list[Grant] = []
    covers: list[StepCover] = []
    role_table = _catalogue(catalogue, state) if roles == "predefined" else {}
    cover_cache: dict[frozenset[str], Cover] = {}
    index = permission_index(role_table) if role_table else {}
    escalating = escalating_permissions(role_table) if role_table else {}
    via_groups: list[Grant] = []
    unsupported: list[CustomRoleSupportError] = []
    resolver = MemberResolver(state)
    for (member, resource, expression), (needed, served) in sorted(groups.items()):
        step = ", ".join(sorted(served))
        condition = _prefix_condition(resource, expression) if expression else None
        found = _granted_via_groups(state, resolver, resource, member, condition, needed)
        via_groups += (dataclasses.replace(g, step=step) for g in found)
        perms = needed - {p for g in found for p in g.permissions}
        if not perms:
            continue  # a group the member provably belongs to grants all of it already
        if perms == {ACT_AS} and resource.startswith(IAM) and roles == "predefined":
            # The one escalation the pipeline needs: act as its step SAs, bound on each SA —
            # with the role's other permissions disclosed as excess (custom mode grants a
            # custom role of exactly actAs instead, so its check has nothing to report)
            extra = role_table.get(SERVICE_ACCOUNT_USER, frozenset({ACT_AS})) - {ACT_AS}
            grants.append(
                Grant(
                    resource,
                    SERVICE_ACCOUNT_USER,
                    member,
                    None,
                    step,
                    (ACT_AS,),
                    tuple(sorted(extra)),
                )
            )
            continue
        reused = _equivalent_binding(state, resource, member, condition, perms)
        if reused is not None:
            # already granted exactly this set by an existing role: keep it, add nothing
            grants.append(Grant(resource, reused, member, condition, step, tuple(sorted(perms))))
            continue
        if roles == "custom":
            if not organization:
                _check_role_scope(resource, project, state, step)
            try:
                role = custom_role_for(
                    perms, parent=parent, support=support_levels, support_source=support_source
                )
            except CustomRoleSupportError as exc:  # name them all at once, then refuse
                needed_by = f" (needed by {step} on {display_uri(resource)})"
                unsupported.append(
                    CustomRoleSupportError(
                        exc.what + needed_by, fix=exc.fix, permissions=exc.permissions
                    )
                )
                continue
            role_specs[role.name] = role
            grants.append(Grant(resource, role.name, member, condition, step, role.permissions))
            continue
        need = frozenset(perms)
        cover = cover_cache.get(need)
        if cover is None:  # identical sets recur across steps: solve each once
            where = f"{step} on {display_uri(resource)}"
            cover = find_cover(
                need,
                role_table,
                allowed=_allowed_predefined(need, escalating),
                where=where,
                index=index,
            )
            cover_cache[need] = cover
        covers.append(StepCover(step, member, resource, expression, cover))
        for name in cover.roles:
            role_perms = role_table[name]
            grants.append(
                Grant(
                    resource,
                    name,
                    member,
                    condition,
                    step,
                    tuple(sorted(role_perms & perms)),
                    tuple(sorted(role_perms - perms)),
                )
            )
    if unsupported:
        permissions = tuple(sorted({p for exc in unsupported for p in exc.permissions}))
        raise CustomRoleSupportError(
            "; ".join(exc.what for exc in unsupported),
            where="plan --roles custom",
            fix=unsupported[0].fix,
            permissions=permissions,
        )
    support = assess(
        ((name, role.permissions) for name, role in sorted(role_specs.items())),
        support_levels,
        source=support_source,
    )
    grants = _merge_same_binding(grants)
    known = {name: r.permissions for name, r in state.roles.items() if not r.deleted}
    _refuse_unsafe_grants(grants, wants, role_specs, {**known, **role_table})

    steps_by_account = _accounts_by_step(wants, pipeline_sa, step_accounts)
    for email in foreign:
        steps_by_account.pop(email, None)
    _require_readable(state, grants, role_specs, steps_by_account)
    present = _present_keys(state)
    additions = tuple(g for g in grants if g.key not in present)
    ours = {
        f"serviceaccount:{email}"
        for email, steps in steps_by_account.items()
        if steps != (PIPELINE_STEP,)
    }
    wanted = {g.key for g in grants}
    extras = tuple(
        sorted(
            {
                *_extras(state, ours, wanted, steps_by_account),
                *_inbound_extras(state, ours, wanted, steps_by_account, pipeline_sa),
            },
            key=lambda g: g.key,
        )
    )
    # the pipeline identity's bindings this pipeline does not need: never pruned (another
    # pipeline may use the same identity), but disclosed — check reports what they give
    pipeline_extras = tuple(
        _extras(state, {f"serviceaccount:{pipeline_sa}"}, wanted, steps_by_account)
    )
    specs = tuple(_role_specs(role_specs, state))
    # an unknown level matters only where IAM will judge it: a role to create or update
    written = {spec.role.name for spec in specs if spec.state != "exists"}
    support = tuple(
        i for i in support if i.level != "UNKNOWN" or any(r in written for r in i.roles)
    )
    return Plan(
        project=project,
        pipeline_name=pipeline_name,
        pipeline_service_account=pipeline_sa,
        roles_mode=roles,
        prune=prune,
        against_state=snapshot is not None,
        accounts=tuple(_account_specs(steps_by_account, state)),
        custom_roles=specs,
        grants=tuple(grants),
        additions=additions,
        extras=extras,
        removals=extras if prune else (),
        covers=tuple(covers),
        wants=tuple(sorted(wants, key=want_order)),
        held_back=held,
        via_groups=tuple(via_groups),
        custom_role_support=support,
        pipeline_extras=pipeline_extras,
        foreign_identities=tuple(foreign.values()),
        identity_projects=allowed,
    )


# -- identities of other projects ------------------------------------------------------------

_PROJECT_ID = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def _identity_projects(project: str, extra: Iterable[str], state: Snapshot) -> tuple[str, ...]:
    """The allow-list, checked, plus the project's id when ``project`` is its number."""
    if isinstance(extra, str):
        extra = (extra,)
    found: list[str] = []
    for entry in extra:
        if not isinstance(entry, str) or not _PROJECT_ID.match(entry):
            raise InputError(
                f"{entry!r} is not a project id",
                where="allowed identity projects",
                fix="list project ids (no wildcards): e.g. ml-shared-identities",
            )
        found.append(entry)
    if project.isdigit():  # identities' emails name the project id, never its number
        found += (
            name.rsplit("/", 1)[1]
            for name, node in state.nodes.items()
            if node.kind == "project" and node.project_number == project
        )
    return tuple(sorted(set(found) - {project}))


def _foreign_identities(
    wants: Sequence[Want],
    pipeline_sa: str,
    step_accounts: Mapping[str, Sequence[str]] | None,
    allowed: Sequence[str],
) -> dict[str, ForeignIdentity]:
    """Pipeline identities (the pipeline SA, step, launched and serving accounts) that live
    in none of ``allowed`` (lower-cased email → what it serves). A submitter is no pipeline
    identity: who submits is its own decision (``--submitter``)."""
    steps: dict[str, set[str]] = defaultdict(set)
    steps[pipeline_sa.lower()].add(PIPELINE_STEP)
    for email, tasks in (step_accounts or {}).items():
        steps[email.lower()].update(tasks)
    for want in wants:
        kind, _, email = want.member.partition(":")
        if kind == "serviceAccount" and want.step != SUBMITTER_STEP:
            steps[email.lower()].add(want.step)
    return {
        email: ForeignIdentity(email, home_project(email) or "?", tuple(sorted(tasks)))
        for email, tasks in sorted(steps.items())
        if home_project(email) is not None and not in_projects(email, allowed)
    }


def _foreign_reason(identity: ForeignIdentity, project: str) -> str:
    return (
        f"{identity.email} lives in project {identity.project}, not {project}: whoever "
        f"administers {identity.project} can become it (provision it only after review: "
        f"--allow-identity-project {identity.project})"
    )


def _hold_back_foreign(
    wants: Sequence[Want], foreign: Mapping[str, ForeignIdentity], project: str
) -> tuple[list[Want], tuple[HeldBack, ...]]:
    """Every need of a foreign identity, and every actAs on one, is held back."""
    if not foreign:
        return list(wants), ()
    kept: list[Want] = []
    held: list[HeldBack] = []
    for want in wants:
        kind, _, email = want.member.partition(":")
        who = foreign.get(email.lower()) if kind == "serviceAccount" else None
        if who is None or want.step == SUBMITTER_STEP:
            who = foreign.get(_sa_email(want.resource.name) or "")
        if who is None:
            kept.append(want)
            continue
        reason = _foreign_reason(who, project)
        held += (
            HeldBack(want.member, want.resource.name, p, want.step, reason)
            for p in want.permissions
        )
    return kept, tuple(held)


# -- grouping -------------------------------------------------------------------------------

_GroupKey = tuple[str, str, str]  # member, resource name, condition prefix


def _group(wants: Iterable[Want]) -> dict[_GroupKey, tuple[set[str], set[str]]]:
    """Union permissions (and the steps they serve) per (member, resource, prefix condition).

    One binding per identity per resource: steps that share an identity share its grant.
    """
    groups: dict[_GroupKey, tuple[set[str], set[str]]] = {}
    for want in wants:
        _check_supported(want)
        for perm in want.permissions:
            prefix = want.resource.prefix
            scoped = prefix is not None and _object_level(want.resource.name, perm)
            key = (want.member, want.resource.name, prefix if scoped and prefix else "")
            perms, steps = groups.setdefault(key, (set(), set()))
            perms.add(perm)
            steps.add(want.step)
    # a permission granted unconditionally on a resource needs no prefix-scoped copy
    for (member, name, expression), (perms, _steps) in list(groups.items()):
        if expression:
            perms -= groups.get((member, name, ""), (set(), set()))[0]
            if not perms:
                del groups[(member, name, expression)]
    return groups


def _object_level(resource: str, permission: str) -> bool:
    """Authorised on the object (so a prefix condition can match it), not on the bucket."""
    return (
        resource.startswith(STORAGE)
        and permission.startswith("storage.objects.")
        and permission != "storage.objects.list"
    )


def _prefix_condition(resource: str, prefix: str) -> Condition:
    bucket = resource[len(STORAGE) :]
    escaped = f"projects/_/buckets/{bucket}/objects/{prefix}".replace("\\", "\\\\").replace(
        '"', '\\"'
    )
    title = f"zt prefix {prefix}"
    return Condition(
        expression=f'resource.name.startsWith("{escaped}")',
        title=title if len(title) <= 100 else title[:97] + "...",
        description=f"objects under gs://{bucket}/{prefix}"[:256],
    )


# the resource shapes render and apply know how to bind on (one IAM policy each); a need on
# anything else — a key ring, a secret version, a bare dataset project — is refused, not guessed
_SEGMENT = "[^/]+"
_GRANTABLE = tuple(
    re.compile("^" + re.escape(service) + path.replace("*", _SEGMENT) + "$")
    for service, path in (
        (STORAGE, "*"),
        (BIGQUERY, "projects/*/datasets/*"),
        (BIGQUERY, "projects/*/datasets/*/tables/*"),
        (CRM, "projects/*"),
        (IAM, "projects/*/serviceAccounts/*"),
        ("//secretmanager.googleapis.com/", "projects/*/secrets/*"),
        ("//artifactregistry.googleapis.com/", "projects/*/locations/*/repositories/*"),
        ("//cloudkms.googleapis.com/", "projects/*/locations/*/keyRings/*/cryptoKeys/*"),
    )
)


def _resource_project(resource: str, state: Snapshot) -> str | None:
    """The project that owns ``resource``, when the name or the snapshot says."""
    for prefix in (CRM + "projects/", BIGQUERY + "projects/", IAM + "projects/"):
        if resource.startswith(prefix):
            return resource[len(prefix) :].split("/", 1)[0]
    for node in state.ancestors(resource)[1:]:
        if node.kind == "project":
            return node.name.rsplit("/", 1)[1]
    return None  # unknown (e.g. a bucket not in the snapshot): IAM will say at apply time


def _check_role_scope(resource: str, project: str, state: Snapshot, step: str) -> None:
    """Project-level custom roles can only be granted within their project."""
    owner = _resource_project(resource, state)
    if owner is None or owner in (project, "-"):
        return
    home = state.nodes.get(CRM + "projects/" + project)
    if home is not None and home.project_number == owner:
        return  # the same project, named by number
    raise InputError(
        f"{display_uri(resource)} is in project {owner!r}, where custom roles of project "
        f"{project!r} cannot be granted",
        where=f"step {step!r}",
        fix="pass --organization ORG_NUMBER to create the roles in the organisation, "
        "or use --roles predefined",
    )


def _check_supported(want: Want) -> None:
    name = want.resource.name
    if any(shape.match(name) for shape in _GRANTABLE):
        if want.resource.prefix and not name.startswith(STORAGE):
            raise UnsupportedResourceError(
                f"{want.resource.uri}: only Cloud Storage needs may name an object prefix",
                where=f"step {want.step!r}",
            )
        return
    raise UnsupportedResourceError(
        f"cannot provision grants on {want.resource.uri}",
        where=f"step {want.step!r}",
        fix="provisioning grants on buckets, BigQuery datasets/tables, projects, service "
        "accounts, secrets (not versions), Artifact Registry repositories and KMS crypto keys; "
        "declare one of those, or grant this one by hand",
    )


def _merge_same_binding(grants: list[Grant]) -> list[Grant]:
    """One grant per binding key (several steps can share an identity)."""
    merged: dict[tuple[str, str, str, str], Grant] = {}
    for grant in grants:
        seen = merged.get(grant.key)
        if seen is None:
            merged[grant.key] = grant
            continue
        steps = ", ".join(sorted({*seen.step.split(", "), grant.step}))
        perms = tuple(sorted({*seen.permissions, *grant.permissions}))
        excess = tuple(sorted(set(seen.excess) | set(grant.excess)))
        merged[grant.key] = dataclasses.replace(seen, step=steps, permissions=perms, excess=excess)
    return sorted(merged.values(), key=lambda g: (g.member.lower(), g.resource, g.role, g.key))


def _granted_via_groups(
    state: Snapshot,
    resolver: MemberResolver,
    resource: str,
    member: str,
    condition: Condition | None,
    wanted: set[str],
) -> list[Grant]:
    """Existing bindings on ``resource`` itself (same condition) to a group ``member`` provably
    belongs to (membership known in the snapshot) that grant some of ``wanted``: a direct grant
    of the same would duplicate them. Unknown membership never counts (fail closed: the plan
    then grants directly)."""
    node = state.nodes.get(resource)
    if node is None or node.policy is None:
        return []
    found: list[Grant] = []
    for binding in node.policy.bindings:
        if _expr(binding.condition) != _expr(condition) or is_basic_role(binding.role):
            continue
        role = state.roles.get(binding.role) or catalogue_role(binding.role)
        if role is None or role.deleted or role.stage == "DISABLED":
            continue
        covered = tuple(sorted(wanted & role.permissions))
        if not covered:
            continue
        for group in binding.members:
            if group.startswith("group:") and resolver.matches(group, member).match is Match.YES:
                found.append(Grant(resource, binding.role, group, binding.condition, "", covered))
                break
    return found


def _equivalent_binding(
    state: Snapshot,
    resource: str,
    member: str,
    condition: Condition | None,
    perms: set[str],
) -> str | None:
    """An existing role bound to ``member`` on ``resource`` (same condition) whose permissions
    are exactly ``perms`` — reusing it avoids churn (a new role, an add and a prune)."""
    node = state.nodes.get(resource)
    if node is None or node.policy is None:
        return None
    expression = _expr(condition)
    wanted = frozenset(perms)
    for binding in sorted(node.policy.bindings, key=lambda b: b.role):
        if _expr(binding.condition) != expression or is_basic_role(binding.role):
            continue
        if member.lower() not in {m.lower() for m in binding.members}:
            continue
        role = state.roles.get(binding.role)
        if role is not None and not role.deleted and role.permissions == wanted:
            return binding.role
    return None


# -- refusals -------------------------------------------------------------------------------


def check_submitter(submitter: str) -> str:
    """The IAM member of the principal that submits the pipeline, validated.

    Provisioning grants this member actAs on the pipeline SA, so the one rule of
    :func:`zt_pipelines.identity.submitter_member` applies: one user or one user-managed
    service account, never a group, a domain, ``allUsers`` or a default identity.

    Raises:
        IdentityError: (or a subclass) naming ``submitter``.
    """
    return submitter_member(submitter, where="submitter")


def _hold_back_escalating_needs(
    wants: Sequence[Want],
) -> tuple[list[Want], tuple[HeldBack, ...]]:
    """Split declared escalation-capable permissions off: never provisioned, listed for review
    (the rest of the plan goes ahead). Implicit needs are the pipeline's own (actAs on its step
    SAs, launching) and stay."""
    kept: list[Want] = []
    held: list[HeldBack] = []
    for want in wants:
        if not want.declared:
            kept.append(want)
            continue
        risky = {p: r for p in want.permissions if (r := escalation_reason(p)) is not None}
        held += (
            HeldBack(want.member, want.resource.name, p, want.step, r) for p, r in risky.items()
        )
        rest = tuple(p for p in want.permissions if p not in risky)
        if rest:
            kept.append(dataclasses.replace(want, permissions=rest))
    return kept, tuple(sorted(held, key=lambda h: (h.step, h.member, h.resource, h.permission)))


def _sa_email(resource: str) -> str | None:
    """The account a service-account resource name names (``None``: not one)."""
    head, sep, email = resource.rpartition("/serviceAccounts/")
    return email.lower() if sep and head.startswith(IAM + "projects/") and email else None


def _hold_back_actas_on_privileged(
    wants: Sequence[Want], state: Snapshot, pruned: set[str]
) -> tuple[list[Want], tuple[HeldBack, ...]]:
    """Hold back an implicit actAs on an EXISTING account that holds a basic role, an
    escalation-capable permission the plan does not need there, or something we cannot see
    (a role of unknown definition, a group of unknown membership): acting as it would hand
    its holder that privilege. A person reviews it; nothing else of the plan changes. Direct
    bindings of the accounts in ``pruned`` (lower-cased emails) are being removed: not counted."""
    planned: dict[tuple[str, str], set[str]] = defaultdict(set)
    for w in wants:  # what the plan itself asks for, where: never a reason to hold back
        planned[(w.member.lower(), w.resource.name)].update(w.permissions)
    resolver = MemberResolver(state)
    posture: dict[str, str | None] = {}
    kept: list[Want] = []
    held: list[HeldBack] = []
    for want in wants:
        email = _sa_email(want.resource.name)
        if want.declared or ACT_AS not in want.permissions or email is None:
            kept.append(want)
            continue
        exists = email in state.service_accounts or want.resource.name in state.nodes
        if email not in posture:
            posture[email] = (
                _privileged(email, state, resolver, planned, email in pruned) if exists else None
            )
        reason = posture[email]
        if reason is None:
            kept.append(want)
            continue
        held.append(
            HeldBack(
                want.member,
                want.resource.name,
                ACT_AS,
                want.step,
                f"acting as {email} gives {want.member} what it holds: {reason}",
            )
        )
        rest = tuple(p for p in want.permissions if p != ACT_AS)
        if rest:
            kept.append(dataclasses.replace(want, permissions=rest))
    return kept, tuple(held)


def _privileged(
    email: str,
    state: Snapshot,
    resolver: MemberResolver,
    planned: Mapping[tuple[str, str], set[str]],
    pruning: bool,
) -> str | None:
    """Why the existing account ``email`` is privileged (``None``: provably it is not);
    ``pruning``: its direct bindings are being removed, so only the others count."""
    principal = f"serviceAccount:{email}"
    for name in sorted(state.nodes):
        policy = state.nodes[name].policy
        if policy is None:
            continue
        for binding in policy.bindings:
            members = [normalize_principal(m) for m in binding.members]
            if pruning:
                members = [m for m in members if m != principal]
            matched = [resolver.matches(m, principal) for m in members]
            if not any(m.match is not Match.NO for m in matched):
                continue
            unsure = all(m.match is not Match.YES for m in matched)
            via = " through a group of unknown membership" if unsure else ""
            where = display_uri(name)
            if is_basic_role(binding.role):
                return f"the basic role {binding.role} on {where}{via}"
            role = state.roles.get(binding.role) or catalogue_role(binding.role)
            if role is None or role.deleted:
                return f"{binding.role} on {where}, whose definition is unknown{via}"
            needed = planned.get((principal.lower(), name), set())
            risky = sorted(
                p for p in role.permissions if p not in needed and escalation_reason(p) is not None
            )
            if risky:
                return f"{binding.role} on {where}{via}, with {', '.join(risky[:3])}" + (
                    " …" if len(risky) > 3 else ""
                )
    return None


def escalating_permissions(roles: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Role → its escalation-capable permissions (computed once per catalogue)."""
    memo: dict[str, bool] = {}

    def escalates(perm: str) -> bool:
        found = memo.get(perm)
        if found is None:
            found = memo[perm] = escalation_reason(perm) is not None
        return found

    return {name: frozenset(p for p in perms if escalates(p)) for name, perms in roles.items()}


def _allowed_predefined(
    needed: frozenset[str], escalating: Mapping[str, frozenset[str]] | None = None
) -> Callable[[str, frozenset[str]], bool]:
    """Which predefined roles a cover of ``needed`` may use (see docs/provisioning.md)."""

    def allowed(name: str, perms: frozenset[str]) -> bool:
        if is_basic_role(name) or name.endswith(("serviceAgent", "ServiceAgent")):
            return False
        # a role may carry an escalation permission only when the need asks for exactly it
        if escalating is not None and name in escalating:
            return escalating[name] <= needed
        return all(p in needed or escalation_reason(p) is None for p in perms)

    return allowed


def _catalogue(
    catalogue: Mapping[str, frozenset[str]] | None, state: Snapshot
) -> dict[str, frozenset[str]]:
    if catalogue is not None:
        return dict(catalogue)
    # the shipped catalogue, with the snapshot's own (live or file) definitions winning
    roles = {**predefined_roles(), **state.roles}
    return {
        name: role.permissions
        for name, role in roles.items()
        if name.startswith("roles/")
        and not role.deleted
        and role.stage not in ("DEPRECATED", "DISABLED", "ALPHA")
    }


def check_plan(plan: Plan) -> None:
    """Re-check a plan right before it is carried out: it may have been built, replaced or
    edited by other code than :func:`build_plan`.

    The same last line of defence as planning (no basic role, no grant on a resource or to a
    member no requirement names, no escalation beyond the need, ``serviceAccountUser`` only as
    the pipeline SA's actAs on a step SA), plus: removals name only the plan's step identities.
    A plan without its ``wants`` therefore grants nothing.

    Raises:
        ProvisioningRefused: naming the offending grant.
    """
    custom = {spec.role.name: spec.role for spec in plan.custom_roles}
    granted: dict[str, frozenset[str]] = {}
    for grant in plan.grants:
        if grant.role not in custom:  # a predefined or reused role: what the plan says it grants
            granted[grant.role] = granted.get(grant.role, frozenset()) | {
                *grant.permissions,
                *grant.excess,
            }
    _refuse_unsafe_grants(plan.grants, plan.wants, custom, granted)
    _refuse_foreign(plan)
    ours = {f"serviceaccount:{account.email.lower()}" for account in plan.step_accounts}
    # a step identity's own policy: who may act as it is the plan's (never the pipeline SA's)
    own = {service_account_resource(account.email.lower()) for account in plan.step_accounts}
    pipeline = f"serviceaccount:{plan.pipeline_service_account.lower()}"
    for grant in plan.removals:
        member = grant.member.lower()
        inbound = grant.resource in own and member != pipeline
        if member not in ours and not inbound:
            raise ProvisioningRefused(
                f"refusing to remove {grant.member} from {grant.uri}: prune only removes the "
                "plan's own step identities' bindings, and other principals' bindings on "
                "those identities",
                where=f"step {grant.step!r}",
            )


def _refuse_foreign(plan: Plan) -> None:
    """No account, grant or actAs for an identity outside the plan's projects (the plan's
    own and its allow-list): whoever administers another project can become its accounts."""
    allowed = (plan.project, *plan.identity_projects)
    listed = ", ".join(plan.identity_projects) or "empty"
    submitters = {w.member.lower() for w in plan.wants if w.step == SUBMITTER_STEP}

    def outside(email: str | None) -> bool:
        return (
            bool(email)
            and home_project(email or "") is not None
            and not in_projects(email or "", allowed)
        )

    for account in plan.accounts:
        if outside(account.email):
            raise ProvisioningRefused(
                f"refusing to provision {account.email}: it lives in another project than "
                f"{plan.project} and the allow-list ({listed})",
                where=f"identity of {', '.join(account.steps)}",
            )
    for grant in plan.grants:
        kind, _, email = grant.member.partition(":")
        member = (
            email if kind == "serviceAccount" and grant.member.lower() not in submitters else None
        )
        for who in (member, _sa_email(grant.resource)):
            if outside(who):
                raise ProvisioningRefused(
                    f"refusing {grant.role} for {grant.member} on {grant.uri}: {who} lives in "
                    f"another project than {plan.project} and the allow-list ({listed})",
                    where=f"step {grant.step!r}",
                )


def _refuse_unsafe_grants(
    grants: Iterable[Grant],
    wants: Iterable[Want],
    custom: Mapping[str, CustomRole],
    predefined: Mapping[str, frozenset[str]],
) -> None:
    """Last line of defence: re-check every grant independently of how it was built."""
    allowed_targets = {(w.member, w.resource.name) for w in wants}
    implicit_actas = {
        (w.member, w.resource.name) for w in wants if not w.declared and ACT_AS in w.permissions
    }
    for grant in grants:
        where = f"step {grant.step!r}"
        if is_basic_role(grant.role):
            raise ProvisioningRefused(f"refusing basic role {grant.role}", where=where)
        if (grant.member, grant.resource) not in allowed_targets:
            raise ProvisioningRefused(
                f"refusing a grant on {grant.uri}, which the pipeline did not declare",
                where=where,
            )
        if grant.role == SERVICE_ACCOUNT_USER:
            if (grant.member, grant.resource) not in implicit_actas:
                raise ProvisioningRefused(
                    f"refusing {SERVICE_ACCOUNT_USER} on {grant.uri}: only the pipeline SA's "
                    "actAs on its step SAs is provisioned",
                    where=where,
                )
            continue
        perms = (
            custom[grant.role].permissions
            if grant.role in custom
            else predefined.get(grant.role, frozenset())
        )
        needed = set(grant.permissions)
        for perm in perms:
            if perm not in needed and escalation_reason(perm) is not None:
                raise ProvisioningRefused(
                    f"refusing {grant.role}: it grants {perm} ({escalation_reason(perm)}) "
                    "which no requirement asks for",
                    where=where,
                )


# -- state diff -----------------------------------------------------------------------------

# reads whose failure leaves the diff unknown (others — deny policies, keys, ancestors, the
# asset search — matter to a check, not to what provisioning must write)
_DIFF_READS = ("getIamPolicy", "serviceAccounts.get", "serviceAccounts.list", "roles.get")
_DIFF_READS_EXACT = ("bigquery.datasets.get",)


def _require_readable(
    state: Snapshot,
    grants: Sequence[Grant],
    roles: Mapping[str, CustomRole],
    accounts: Iterable[str],
) -> None:
    """Fail closed when the state the diff depends on could not be read.

    A plan over an unreadable policy would show grants as missing that may exist and miss
    the bindings ``prune`` must remove. ``NOT_FOUND`` for a service account or a managed role
    means "not there yet" (the plan creates it); for a resource it means the grant cannot be
    made.
    """
    emails = set(accounts)
    targets = {g.resource for g in grants} | set(roles)
    targets |= {service_account_resource(email) for email in emails}
    problems: list[str] = []
    for entry in state.unreadable:
        relevant = entry.target in targets or entry.target in emails
        if not relevant or not (
            entry.what.endswith(_DIFF_READS) or entry.what in _DIFF_READS_EXACT
        ):
            continue
        creatable = entry.target in roles or entry.target.startswith(IAM)
        if entry.reason.startswith("NOT_FOUND") and creatable:
            continue
        reason = entry.reason if len(entry.reason) <= 160 else entry.reason[:159] + "…"
        problems.append(f"{display_uri(entry.target)} ({entry.what}: {reason})")
    if problems:
        raise ApiError(
            f"the current state could not be read, so the plan cannot be a diff: "
            f"{'; '.join(sorted(set(problems))[:5])}",
            where="plan",
            fix="grant the planning identity read access to these policies, or plan with "
            "--snapshot FILE / --empty",
            code="UNREADABLE",
        )


def _binding_keys(name: str, policy: AllowPolicy) -> Iterable[tuple[str, str, str, str]]:
    for binding in policy.bindings:
        expression = binding.condition.expression if binding.condition else ""
        for member in binding.members:
            yield (name, binding.role, member.lower(), expression)


def _present_keys(state: Snapshot) -> set[tuple[str, str, str, str]]:
    present: set[tuple[str, str, str, str]] = set()
    for name, node in state.nodes.items():
        if node.policy is not None:
            present.update(_binding_keys(name, node.policy))
    return present


def _extras(
    state: Snapshot,
    ours: set[str],
    wanted: set[tuple[str, str, str, str]],
    steps_by_account: Mapping[str, tuple[str, ...]],
) -> Iterable[Grant]:
    found: list[Grant] = []
    for name in sorted(state.nodes):
        node = state.nodes[name]
        if node.policy is None:
            continue
        for binding in node.policy.bindings:
            for member in binding.members:
                lowered = member.lower()
                if lowered not in ours:
                    continue  # never touch other principals
                key = (name, binding.role, lowered, _expr(binding.condition))
                if key in wanted:
                    continue
                email = lowered.split(":", 1)[1]
                step = ", ".join(steps_by_account.get(email, ()))
                found.append(Grant(name, binding.role, member, binding.condition, step))
    return sorted(found, key=lambda g: g.key)


def _permissions(state: Snapshot, role: str) -> frozenset[str] | None:
    """What ``role`` carries in ``state`` (else the shipped catalogue); ``None``: unknown."""
    found = state.roles.get(role) or catalogue_role(role)
    return None if found is None or found.deleted else found.permissions


def _inbound_extras(
    state: Snapshot,
    ours: set[str],
    wanted: set[tuple[str, str, str, str]],
    steps_by_account: Mapping[str, tuple[str, ...]],
    pipeline_sa: str,
) -> Iterable[Grant]:
    """Other principals' bindings on a step identity's own allow policy that the plan does not
    need: a previous pipeline identity's actAs, a person's token creator ... — each a path onto
    the step identity (ZT220) that only the pipeline SA's actAs may be."""
    kept = ours | {f"serviceaccount:{pipeline_sa}"}
    numbers = known_numbers(state)
    for email, steps in steps_by_account.items():
        if steps == (PIPELINE_STEP,):
            continue
        name = service_account_resource(email)
        node = state.nodes.get(name)
        if node is None or node.policy is None:
            continue
        for binding in node.policy.bindings:
            perms = _permissions(state, binding.role)
            for member in binding.members:
                lowered = member.lower()
                if lowered in kept or deputy_binding(member, perms, numbers):
                    continue
                key = (name, binding.role, lowered, _expr(binding.condition))
                if key not in wanted:
                    yield Grant(name, binding.role, member, binding.condition, ", ".join(steps))


def _expr(condition: Condition | None) -> str:
    return condition.expression if condition else ""


def _accounts_by_step(
    wants: Iterable[Want], pipeline_sa: str, step_accounts: Mapping[str, Sequence[str]] | None
) -> dict[str, tuple[str, ...]]:
    steps: dict[str, set[str]] = defaultdict(set)
    for email, tasks in (step_accounts or {}).items():
        steps[email.lower()].update(tasks)
    for want in wants:
        kind, _, email = want.member.partition(":")
        if kind == "serviceAccount" and want.step not in (PIPELINE_STEP, SUBMITTER_STEP):
            steps[email.lower()].add(want.step)
    steps.pop(pipeline_sa, None)
    result = {email: tuple(sorted(tasks)) for email, tasks in steps.items()}
    result[pipeline_sa] = (PIPELINE_STEP,)
    return result


def _account_specs(
    steps_by_account: Mapping[str, tuple[str, ...]], state: Snapshot
) -> Iterable[AccountSpec]:
    for email in sorted(steps_by_account):
        validated = require_user_managed(email, where=f"identity of {steps_by_account[email]}")
        account_id, _, domain = validated.partition("@")
        project = domain.removesuffix(".iam.gserviceaccount.com")
        known = state.service_accounts.get(validated)
        status: Literal["create", "exists", "disabled"] = (
            "create" if known is None else "disabled" if known.disabled else "exists"
        )
        yield AccountSpec(validated, account_id, project, steps_by_account[email], status)


def _role_specs(roles: Mapping[str, CustomRole], state: Snapshot) -> Iterable[RoleSpec]:
    for name in sorted(roles):
        role = roles[name]
        known = state.roles.get(name)
        if known is None:
            yield RoleSpec(role, "create")
        elif known.deleted or known.permissions != frozenset(role.permissions):
            yield RoleSpec(role, "update")  # drift: someone edited (or deleted) our role
        else:
            yield RoleSpec(role, "exists")
