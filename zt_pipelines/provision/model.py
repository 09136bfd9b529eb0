"""The provisioning plan as data: what :func:`~zt_pipelines.provision.plan.build_plan` computes
and what :mod:`~zt_pipelines.provision.render` and :mod:`~zt_pipelines.provision.apply` consume.

Data only — no rendering, no IO — so the modules that consume a plan depend on this one and
nothing here depends on them (no import circle).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from zt_pipelines.errors import InputError, ZtError
from zt_pipelines.policy.snapshot import Condition
from zt_pipelines.provision.cover import Cover
from zt_pipelines.provision.custom_roles import CustomRole
from zt_pipelines.provision.support import SupportIssue, warnings
from zt_pipelines.resources import ResourceRef, display_uri

if TYPE_CHECKING:
    from zt_pipelines.segmentation.plan import SegmentationPlan

RoleMode = Literal["custom", "predefined"]
#: exit code of ``plan``/``apply`` when the plan held a declared need back for review
REVIEW_EXIT_CODE = 3
SERVICE_ACCOUNT_USER = "roles/iam.serviceAccountUser"
ACT_AS = "iam.serviceAccounts.actAs"
PIPELINE_STEP = "(pipeline)"
SUBMITTER_STEP = "(submitter)"


class ProvisioningRefused(ZtError):
    """The plan would grant something zero trust forbids (basic role, escalation, undeclared
    resource). Exit code 1: refused."""

    exit_code = 1


class UnsupportedResourceError(InputError):
    """A need names a resource kind that provisioning cannot grant on."""


@dataclass(frozen=True)
class Want:
    """One principal's need on one resource (a requirement, as provisioning sees it).

    Attributes:
        member: the IAM member (``serviceAccount:EMAIL``, ``user:EMAIL`` ...).
        resource: the resource and optional object prefix.
        permissions: sorted, de-duplicated permissions.
        step: the task path, or ``(pipeline)`` / ``(submitter)``.
        declared: True for a user's declaration, False for an implicit need we derived.
    """

    member: str
    resource: ResourceRef
    permissions: tuple[str, ...]
    step: str
    declared: bool = True


def want_order(want: Want) -> tuple[str, str, str, tuple[str, ...], str]:
    """A total order on wants (ResourceRef's own order fails on a ``None`` prefix)."""
    return (
        want.member,
        want.resource.name,
        want.resource.prefix or "",
        want.permissions,
        want.step,
    )


@dataclass(frozen=True)
class HeldBack:
    """A declared need the plan does not grant, and why: an escalation-capable permission is
    never provisioned; a person reviews it and grants it by hand if it is truly needed.

    Attributes:
        member: who needs it.
        resource: where (full resource name; ``uri`` for display).
        permission: the escalation-capable permission.
        step: the task that declared it.
        reason: what the permission lets its holder do.
    """

    member: str
    resource: str
    permission: str
    step: str
    reason: str

    @property
    def uri(self) -> str:
        """The resource in the short form users write."""
        return display_uri(self.resource)


@dataclass(frozen=True)
class ForeignIdentity:
    """A pipeline identity that lives in another project than the pipeline's and in no
    project of the allow-list: the plan provisions nothing for it (no account, no grant, no
    actAs on it), because whoever administers that project can become it at any time.

    Attributes:
        email: the service account.
        project: the project it lives in (as its email names it).
        steps: the tasks it serves (``(pipeline)`` for the pipeline identity).
    """

    email: str
    project: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """One role granted to one member on one resource, optionally under a condition.

    Attributes:
        resource: full resource name of the node whose allow policy holds the binding.
        role: ``roles/...`` or a custom role name.
        member: ``serviceAccount:EMAIL`` etc.
        condition: the IAM condition, for prefix-scoped needs.
        step: the task path (or ``(pipeline)`` / ``(submitter)``) the grant serves.
        permissions: the needed permissions this grant provides.
        excess: permissions the role grants beyond them (predefined roles only).
    """

    resource: str
    role: str
    member: str
    condition: Condition | None = None
    step: str = ""
    permissions: tuple[str, ...] = ()
    excess: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity of the binding: (resource, role, lower-cased member, condition expression)."""
        expression = self.condition.expression if self.condition else ""
        return (self.resource, self.role, self.member.lower(), expression)

    @property
    def uri(self) -> str:
        """The resource in the short form users write."""
        return display_uri(self.resource)


@dataclass(frozen=True)
class AccountSpec:
    """A service account the pipeline uses.

    Attributes:
        email: the account.
        account_id: the part before ``@``.
        project: the project that owns it.
        steps: the tasks it runs (``(pipeline)`` for the pipeline SA).
        state: ``create`` (missing), ``exists``, or ``disabled`` (exists but disabled; we do
            not re-enable accounts: that is someone's deliberate decision).
    """

    email: str
    account_id: str
    project: str
    steps: tuple[str, ...]
    state: Literal["create", "exists", "disabled"] = "create"

    @property
    def display_name(self) -> str:
        """A display name that says who created the account and for what."""
        steps = ", ".join(self.steps)
        text = f"zt-pipelines: {steps}"
        return text if len(text) <= 100 else text[:97] + "..."


@dataclass(frozen=True)
class RoleSpec:
    """A custom role the plan uses and what must happen to it: create, exists or update."""

    role: CustomRole
    state: Literal["create", "exists", "update"] = "create"


@dataclass(frozen=True)
class StepCover:
    """The predefined-role cover chosen for one grant group (``--roles predefined``)."""

    step: str
    member: str
    resource: str
    condition: str
    cover: Cover


@dataclass(frozen=True)
class Plan:
    """What provisioning will do, as data. Render it with the functions of
    :mod:`~zt_pipelines.provision.render` (``render_table``, ``render_json``,
    ``render_terraform``, ``render_gcloud``); carry it out with
    :func:`~zt_pipelines.provision.apply.apply_plan`.

    Attributes:
        project: the project the pipeline runs in.
        pipeline_name: ``pipelineInfo.name``.
        pipeline_service_account: the pipeline (launcher) identity.
        roles_mode: ``custom`` or ``predefined``.
        prune: whether ``removals`` will be applied.
        against_state: False when no snapshot was given (everything is planned as new).
        accounts: every service account the pipeline uses (to create or existing).
        custom_roles: custom roles the grants use.
        grants: every binding the pipeline needs (present or not).
        additions: grants missing from the current state.
        extras: bindings on step identities that the plan does not need.
        removals: ``extras`` when ``prune`` is set, else empty.
        covers: predefined-role covers (``--roles predefined`` only).
        wants: the requirements the plan was computed from (held-back needs excluded).
        held_back: declared escalation-capable needs the plan does not grant, with why.
        via_groups: existing bindings to groups the member provably belongs to that already
            grant a need (not duplicated by a direct grant).
        foreign_identities: pipeline identities of another project than ``project`` that no
            allow-list entry names: held back whole (their needs are in ``held_back``).
        identity_projects: the projects besides ``project`` whose identities may be
            provisioned (the allow-list this plan was made with).
        pipeline_extras: bindings naming the pipeline identity that this pipeline does not
            need; never pruned (other pipelines may use the identity), listed so that what
            ``check`` reports about them is disclosed.
        custom_role_support: permissions of the plan's custom roles whose support level is
            ``TESTING`` (a warning) or ``UNKNOWN`` offline (apply verifies them live before
            writing); refused levels never reach a plan.
    """

    project: str
    pipeline_name: str
    pipeline_service_account: str
    roles_mode: RoleMode
    prune: bool
    against_state: bool
    accounts: tuple[AccountSpec, ...]
    custom_roles: tuple[RoleSpec, ...]
    grants: tuple[Grant, ...]
    additions: tuple[Grant, ...]
    extras: tuple[Grant, ...]
    removals: tuple[Grant, ...]
    covers: tuple[StepCover, ...] = ()
    wants: tuple[Want, ...] = field(default=(), repr=False)
    held_back: tuple[HeldBack, ...] = ()
    via_groups: tuple[Grant, ...] = ()
    custom_role_support: tuple[SupportIssue, ...] = ()
    pipeline_extras: tuple[Grant, ...] = ()
    foreign_identities: tuple[ForeignIdentity, ...] = ()
    identity_projects: tuple[str, ...] = ()

    @property
    def support_warnings(self) -> tuple[str, ...]:
        """One line per custom-role permission IAM is still testing (``TESTING``)."""
        return warnings(self.custom_role_support)

    @property
    def support_unverified(self) -> tuple[str, ...]:
        """Custom-role permissions whose support level is unknown offline (sorted)."""
        return tuple(i.permission for i in self.custom_role_support if i.level == "UNKNOWN")

    @property
    def needs_review(self) -> bool:
        """True when something was held back (an escalation-capable need, an identity of
        another project): the rest is planned, a person decides about these (the CLI exits
        with :data:`REVIEW_EXIT_CODE`)."""
        return bool(self.held_back or self.foreign_identities)

    # the missing perimeter / firewall / PSC pieces (zt_pipelines.segmentation.plan); rendered,
    # never applied
    segmentation: SegmentationPlan | None = None

    @property
    def is_noop(self) -> bool:
        """True when applying would change nothing."""
        return not (
            self.additions
            or self.removals
            or any(a.state == "create" for a in self.accounts)
            or any(r.state != "exists" for r in self.custom_roles)
        )

    @property
    def step_accounts(self) -> tuple[AccountSpec, ...]:
        """The accounts of the steps (not the pipeline SA)."""
        return tuple(a for a in self.accounts if a.steps != (PIPELINE_STEP,))

    def excess_by_step(self) -> dict[str, int]:
        """Per step, how many permissions the chosen roles grant beyond the needs."""
        counts: dict[str, int] = defaultdict(int)
        for grant in self.grants:
            counts[grant.step] += len(grant.excess)
        return dict(sorted(counts.items()))
