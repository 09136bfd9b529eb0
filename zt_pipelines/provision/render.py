"""Render a :class:`~zt_pipelines.provision.plan.Plan`: table, JSON, Terraform HCL, gcloud script.

Terraform describes the *desired state* (every account, custom role and binding the pipeline
needs; accounts that already exist get an ``import`` block so ``terraform apply`` adopts them
instead of failing); removals under ``prune`` are listed as comments, because a binding
Terraform never managed cannot be removed by deleting it from the configuration. The gcloud
script applies the *changes* (creates, additions, and removals when pruning).

Pure: no IO.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from zt_pipelines.errors import InputError
from zt_pipelines.policy.render import plural
from zt_pipelines.policy.snapshot import Condition
from zt_pipelines.provision.model import AccountSpec, Grant, HeldBack, Plan
from zt_pipelines.resources import BIGQUERY, CRM, IAM, STORAGE, display_uri

_SECRETS = "//secretmanager.googleapis.com/"
_ARTIFACTS = "//artifactregistry.googleapis.com/"
_KMS = "//cloudkms.googleapis.com/"
_TERRAFORM_HEADER = """terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}"""


# -- table ----------------------------------------------------------------------------------


def _columns(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Aligned columns, one line per row (rich lays them out; nothing wraps, so a row stays
    greppable), indented by two spaces."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style=None)
    for name in header:
        table.add_column(name, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: "[prefix]" is not markup
    console = Console(
        file=io.StringIO(), width=100_000, color_system=None, no_color=True, highlight=False
    )
    console.print(table)
    out = str(console.file.getvalue())  # type: ignore[attr-defined]
    return [("  " + line).rstrip() for line in out.rstrip("\n").splitlines()]


def render_table(plan: Plan) -> str:
    """A human-readable summary of the plan."""
    lines = [
        f"Provisioning plan for pipeline {plan.pipeline_name or '?'} in project {plan.project}"
        f" (roles: {plan.roles_mode}{', prune' if plan.prune else ''})",
    ]
    if not plan.against_state:
        lines.append("  no snapshot given: planned against an empty project")
    # check and submit need it: say it even when plan derived it
    lines.append(
        f"  pipeline identity {plan.pipeline_service_account} "
        f"(check/submit with --pipeline-sa {plan.pipeline_service_account})"
    )
    lines.append("")
    lines.append("Service accounts:")
    for acct in plan.accounts:
        lines.append(f"  {_mark(acct.state)} {acct.email}  [{', '.join(acct.steps)}]")
    if plan.custom_roles:
        lines.append("Custom roles:")
        for spec in plan.custom_roles:
            lines.append(
                f"  {_mark(spec.state)} {spec.role.name}  ({', '.join(spec.role.permissions)})"
            )
    lines.append("Bindings:")
    added = {g.key for g in plan.additions}
    rows = [
        (
            "+" if g.key in added else "=",
            g.step,
            g.member,
            _short(g.resource) + (" [prefix]" if g.condition else ""),
            g.role,
            str(len(g.excess)),  # permissions the role grants beyond the need (custom: 0)
        )
        for g in plan.grants
    ]
    rows += [
        ("-" if plan.prune else "?", g.step, g.member, _short(g.resource), g.role, "all")
        for g in plan.extras
    ]
    lines.extend(_columns(("", "step", "member", "resource", "role", "excess"), rows))
    if plan.covers:
        lines.append("Predefined-role covers:")
        for c in plan.covers:
            lines.append(
                f"  {c.step} on {display_uri(c.resource)}: {', '.join(c.cover.roles)} — "
                f"{plural(len(c.cover.excess), 'excess permission')}, {c.cover.method}"
            )
        lines.append("Excess permissions by step (granted beyond the needs):")
        for step, count in plan.excess_by_step().items():
            lines.append(f"  {step}: {count}")
    if plan.extras and not plan.prune:
        lines.append(
            f"{plural(len(plan.extras), 'binding')} marked '?' "
            f"{'is' if len(plan.extras) == 1 else 'are'} not needed; re-plan with --prune "
            "to remove them"
        )
    summary = (
        f"{plural(sum(a.state == 'create' for a in plan.accounts), 'account')} to create, "
        f"{plural(sum(r.state != 'exists' for r in plan.custom_roles), 'role')} to "
        f"create/update, {plural(len(plan.additions), 'binding')} to add, "
        f"{len(plan.removals)} to remove"
    )
    if plan.via_groups:
        lines.append("Already granted through groups of known membership (not duplicated):")
        for g in plan.via_groups:
            lines.append(
                f"  = {g.member} {g.role} on {_short(g.resource)}  [{g.step}]: "
                + ", ".join(g.permissions)
            )
    if plan.pipeline_extras:
        lines.append(
            "Not needed by this pipeline, kept (the pipeline identity may serve other "
            "pipelines; check reports what they give):"
        )
        for g in plan.pipeline_extras:
            lines.append(f"  ? {g.member} {g.role} on {_short(g.resource)}")
    if plan.foreign_identities:
        lines.append(
            f"Held back: identities of another project than {plan.project} (whoever "
            "administers that project can become them; no account, grant or actAs is "
            "provisioned for them):"
        )
        for f in plan.foreign_identities:
            lines.append(f"  ! {f.email}  project {f.project}  [{', '.join(f.steps)}]")
    held = [h for h in plan.held_back if _foreign_of(h, plan) is None]
    for f in plan.foreign_identities:
        for h in plan.held_back:
            if _foreign_of(h, plan) == f.email:
                lines.append(f"      {h.member} {h.permission} on {h.uri}  [{h.step}]")
    if held:
        lines.append("Held back for review (escalation-capable, never provisioned):")
        for h in held:
            lines.append(f"  ! {h.member} {h.permission} on {h.uri}  [{h.step}]: {h.reason}")
    lines += _support_lines(plan)
    lines.append("")
    lines.append("No changes." if plan.is_noop else f"Plan: {summary}.")
    if held:
        lines.append(
            f"Review needed: {plural(len(held), 'declared permission')} held back; "
            "grant by "
            "hand after review if truly needed (exit code 3)."
        )
    if plan.foreign_identities:
        projects = sorted({f.project for f in plan.foreign_identities})
        lines.append(
            f"Review needed: {len(plan.foreign_identities)} of the pipeline's identities "
            f"live in {', '.join(projects)}, not {plan.project}; after review, re-plan with "
            + " ".join(f"--allow-identity-project {p}" for p in projects)
            + " (exit code 3)."
        )
    seg = plan.segmentation
    if seg is not None and not seg.is_noop:
        lines.append(
            f"Segmentation (not applied; see --format terraform/gcloud): "
            f"{'perimeter changes, ' if seg.perimeter else ''}"
            f"{plural(len(seg.firewalls), 'firewall rule')}, "
            f"{plural(len(seg.attachments), 'network attachment')} to add"
        )
    return "\n".join(lines)


def _support_lines(plan: Plan, *, ours: bool = True) -> list[str]:
    """Custom-role support levels: TESTING as warnings, UNKNOWN said once (never silent).

    ``ours``: the plan is carried out by ``zt-pipelines apply`` (which verifies live), not by
    Terraform or a gcloud script (which must be told how to verify)."""
    lines = [f"Warning: {text}" for text in plan.support_warnings]
    unknown = plan.support_unverified
    if unknown:
        source = next(i.source for i in plan.custom_role_support if i.level == "UNKNOWN")
        head = (
            f"Custom-role support of {plural(len(unknown), 'permission')} is not known offline "
            f"({source}); "
        )
        if ours:
            tail = (
                "apply reads it live (queryTestablePermissions) and refuses before writing "
                "anything IAM would reject."
            )
        else:
            parents = sorted({r.role.parent for r in plan.custom_roles if r.state != "exists"})
            tail = "verify before applying: " + "; ".join(
                f"gcloud iam list-testable-permissions //cloudresourcemanager.googleapis.com/{p} "
                "--filter='customRolesSupportLevel:*'"
                for p in parents
            )
        lines.append(head + tail)
    return lines


def _short(resource: str) -> str:
    """The resource as users write it; service accounts as ``sa:EMAIL``."""
    if resource.startswith(IAM) and "/serviceAccounts/" in resource:
        return "sa:" + resource.rsplit("/", 1)[1]
    return display_uri(resource)


def _foreign_of(held: HeldBack, plan: Plan) -> str | None:
    """The foreign identity a held-back need was held back for (``None``: another reason)."""
    emails = {f.email for f in plan.foreign_identities}
    for email in (
        held.member.partition(":")[2].lower(),
        held.resource.rpartition("/serviceAccounts/")[2].lower(),
    ):
        if email in emails and held.reason.startswith(email + " lives in project"):
            return email
    return None


def _mark(state: str) -> str:
    return {"create": "+", "exists": "=", "update": "~", "disabled": "!"}.get(state, "?")


# -- JSON -----------------------------------------------------------------------------------


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain data."""
    return {
        "project": plan.project,
        "pipeline": plan.pipeline_name,
        "pipeline_service_account": plan.pipeline_service_account,
        "roles": plan.roles_mode,
        "prune": plan.prune,
        "against_state": plan.against_state,
        "noop": plan.is_noop,
        "service_accounts": [
            {"email": a.email, "project": a.project, "steps": list(a.steps), "state": a.state}
            for a in plan.accounts
        ],
        "custom_roles": [
            {
                "name": r.role.name,
                "title": r.role.title,
                "permissions": list(r.role.permissions),
                "state": r.state,
            }
            for r in plan.custom_roles
        ],
        "grants": [_grant_dict(g) for g in plan.grants],
        "additions": [_grant_dict(g) for g in plan.additions],
        "extras": [_grant_dict(g) for g in plan.extras],
        "removals": [_grant_dict(g) for g in plan.removals],
        "via_groups": [_grant_dict(g) for g in plan.via_groups],
        "pipeline_extras": [_grant_dict(g) for g in plan.pipeline_extras],
        "custom_role_support": [
            {
                "permission": i.permission,
                "level": i.level,
                "roles": list(i.roles),
                "source": i.source,
                "reason": i.reason,
            }
            for i in plan.custom_role_support
        ],
        "identity_projects": list(plan.identity_projects),
        "foreign_identities": [
            {"email": f.email, "project": f.project, "steps": list(f.steps)}
            for f in plan.foreign_identities
        ],
        "held_back": [
            {
                "member": h.member,
                "resource": h.resource,
                "uri": h.uri,
                "permission": h.permission,
                "step": h.step,
                "reason": h.reason,
            }
            for h in plan.held_back
        ],
        "covers": [
            {
                "step": c.step,
                "member": c.member,
                "resource": c.resource,
                "roles": list(c.cover.roles),
                "excess": sorted(c.cover.excess),
                "method": c.cover.method,
                "bound": c.cover.bound,
            }
            for c in plan.covers
        ],
        **(
            {"segmentation": _segmentation_dict(plan.segmentation)}
            if plan.segmentation is not None
            else {}
        ),
    }


def _segmentation_dict(seg: Any) -> dict[str, Any]:
    """The missing segmentation pieces (never applied), JSON-ready."""
    from dataclasses import asdict

    from zt_pipelines.segmentation.plan import firewall_wire

    return {
        "perimeter": asdict(seg.perimeter) if seg.perimeter is not None else None,
        "firewalls": [firewall_wire(f) for f in seg.firewalls],
        "attachments": [asdict(a) for a in seg.attachments],
        "reviewRules": list(seg.offending),
        "notes": list(seg.notes),
    }


def _grant_dict(grant: Grant) -> dict[str, Any]:
    data: dict[str, Any] = {
        "resource": grant.resource,
        "uri": grant.uri,
        "role": grant.role,
        "member": grant.member,
        "step": grant.step,
        "permissions": list(grant.permissions),
    }
    if grant.condition is not None:
        data["condition"] = {
            "expression": grant.condition.expression,
            "title": grant.condition.title,
            "description": grant.condition.description,
        }
    if grant.excess:
        data["excess"] = list(grant.excess)
    return data


def render_json(plan: Plan) -> str:
    """The plan as indented JSON."""
    return json.dumps(plan_dict(plan), indent=2, sort_keys=True) + "\n"


# -- Terraform ------------------------------------------------------------------------------


def _label(prefix: str, *parts: str) -> str:
    """A stable, valid Terraform resource label."""
    slug = re.sub(r"[^a-z0-9]+", "_", parts[0].lower()).strip("_")[:40]
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]
    return f"{prefix}_{slug}_{digest}" if slug else f"{prefix}_{digest}"


def _hcl_string(value: str) -> str:
    """A quoted HCL string; ``${`` and ``%{`` are escaped so nothing is interpolated."""
    escaped = json.dumps(value)[1:-1]
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


def _hcl_list(values: Iterable[str], indent: str) -> str:
    items = list(values)
    if not items:
        return "[]"
    inner = "".join(f"{indent}  {_hcl_string(v)},\n" for v in items)
    return "[\n" + inner + indent + "]"


class _Block:
    """Builds one aligned HCL block (``terraform fmt`` aligns ``=`` in consecutive lines)."""

    def __init__(self, header: str) -> None:
        self.header = header
        self.attrs: list[tuple[str, str]] = []
        self.children: list[tuple[str, list[tuple[str, str]]]] = []

    def attr(self, name: str, raw_value: str) -> _Block:
        self.attrs.append((name, raw_value))
        return self

    def child(self, name: str, attrs: list[tuple[str, str]]) -> _Block:
        self.children.append((name, attrs))
        return self

    def render(self) -> str:
        out = [self.header + " {"]
        out.extend(_aligned(self.attrs, "  "))
        for name, attrs in self.children:
            out.append("")
            out.append(f"  {name} {{")
            out.extend(_aligned(attrs, "    "))
            out.append("  }")
        out.append("}")
        return "\n".join(out)


def _aligned(attrs: list[tuple[str, str]], indent: str) -> list[str]:
    # terraform fmt aligns '=' across runs of single-line attributes; multi-line values break runs
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(n) for n, _ in run), default=0)
        lines.extend(f"{indent}{n.ljust(width)} = {v}" for n, v in run)
        run.clear()

    for name, value in attrs:
        if "\n" in value:
            run.append((name, value))
            flush()
        else:
            run.append((name, value))
    flush()
    return lines


def render_terraform(plan: Plan) -> str:
    """The pipeline's desired IAM state as Terraform for the ``hashicorp/google`` provider."""
    blocks: list[str] = [
        "# Generated by zt-pipelines: one minimal service account per pipeline step.\n"
        f"# pipeline: {plan.pipeline_name or '?'}  project: {plan.project}  "
        f"roles: {plan.roles_mode}"
        + "".join(f"\n# {line}" for line in _support_lines(plan, ours=False)),
        _TERRAFORM_HEADER,
    ]
    accounts = {a.email: a for a in plan.accounts}
    for acct in plan.accounts:
        label = _sa_label(acct)
        blocks.append(
            _Block(f'resource "google_service_account" "{label}"')
            .attr("project", _hcl_string(acct.project))
            .attr("account_id", _hcl_string(acct.account_id))
            .attr("display_name", _hcl_string(acct.display_name))
            .render()
        )
        if acct.state != "create":
            blocks.append(
                _Block("import")
                .attr("to", f"google_service_account.{label}")
                .attr(
                    "id",
                    _hcl_string(f"projects/{acct.project}/serviceAccounts/{acct.email}"),
                )
                .render()
            )
    role_refs: dict[str, str] = {}
    for spec in plan.custom_roles:
        role = spec.role
        kind, _, ident = role.parent.partition("/")
        if kind == "organizations":
            rtype, scope = "google_organization_iam_custom_role", ("org_id", ident)
        else:
            rtype, scope = "google_project_iam_custom_role", ("project", ident)
        label = f"role_{role.role_id.lower()}"
        role_refs[role.name] = f"{rtype}.{label}.name"
        blocks.append(
            _Block(f'resource "{rtype}" "{label}"')
            .attr(scope[0], _hcl_string(scope[1]))
            .attr("role_id", _hcl_string(role.role_id))
            .attr("title", _hcl_string(role.title))
            .attr("description", _hcl_string(role.description))
            .attr("stage", _hcl_string("GA"))
            .attr("permissions", _hcl_list(role.permissions, "  "))
            .render()
        )
    for grant in plan.grants:
        blocks.append(_grant_block(grant, accounts, role_refs))
    if plan.removals:
        lines = ["# Bindings to remove (--prune); Terraform did not create them, so remove with:"]
        lines += [f"#   {cmd}" for cmd in (_binding_command(g, "remove") for g in plan.removals)]
        blocks.append("\n".join(lines))
    if plan.segmentation is not None:
        from zt_pipelines.segmentation.plan import render_terraform as segmentation_terraform

        blocks.append(segmentation_terraform(plan.segmentation).rstrip("\n"))
    return "\n\n".join(blocks) + "\n"


def _sa_label(acct: AccountSpec) -> str:
    return _label("sa", acct.account_id, acct.email)


def _member_ref(member: str, accounts: dict[str, AccountSpec]) -> str:
    kind, _, email = member.partition(":")
    acct = accounts.get(email.lower())
    if kind == "serviceAccount" and acct is not None:
        # reference the account so Terraform creates it before binding it
        return f'"serviceAccount:${{google_service_account.{_sa_label(acct)}.email}}"'
    return _hcl_string(member)


def _grant_block(grant: Grant, accounts: dict[str, AccountSpec], role_refs: dict[str, str]) -> str:
    role = role_refs.get(grant.role) or _hcl_string(grant.role)
    member = _member_ref(grant.member, accounts)
    name = grant.resource
    attrs: list[tuple[str, str]]
    if name.startswith(STORAGE):
        rtype, attrs = (
            "google_storage_bucket_iam_member",
            [("bucket", _hcl_string(name[len(STORAGE) :]))],
        )
    elif name.startswith(BIGQUERY):
        parts = name[len(BIGQUERY) :].split("/")
        attrs = [("project", _hcl_string(parts[1])), ("dataset_id", _hcl_string(parts[3]))]
        if len(parts) >= 6:
            rtype = "google_bigquery_table_iam_member"
            attrs.append(("table_id", _hcl_string(parts[5])))
        else:
            rtype = "google_bigquery_dataset_iam_member"
    elif name.startswith(CRM + "projects/"):
        rtype, attrs = (
            "google_project_iam_member",
            [("project", _hcl_string(name[len(CRM + "projects/") :]))],
        )
    elif name.startswith(IAM):
        email = name.rsplit("/", 1)[1]
        acct = accounts.get(email.lower())
        target = (
            f"google_service_account.{_sa_label(acct)}.name"
            if acct is not None
            else _hcl_string(name[len(IAM) :])
        )
        rtype, attrs = "google_service_account_iam_member", [("service_account_id", target)]
    elif name.startswith(_SECRETS):
        parts = name[len(_SECRETS) :].split("/")
        rtype, attrs = (
            "google_secret_manager_secret_iam_member",
            [
                ("project", _hcl_string(parts[1])),
                ("secret_id", _hcl_string(parts[3])),
            ],
        )
    elif name.startswith(_ARTIFACTS):
        parts = name[len(_ARTIFACTS) :].split("/")
        rtype, attrs = (
            "google_artifact_registry_repository_iam_member",
            [
                ("project", _hcl_string(parts[1])),
                ("location", _hcl_string(parts[3])),
                ("repository", _hcl_string(parts[5])),
            ],
        )
    elif name.startswith(_KMS):
        rtype, attrs = (
            "google_kms_crypto_key_iam_member",
            [("crypto_key_id", _hcl_string(name[len(_KMS) :]))],
        )
    else:  # pragma: no cover - the plan refuses other resources
        raise ValueError(f"no Terraform resource for {name}")
    label = _label("iam", grant.step.split(",")[0] or "grant", *grant.key)
    block = _Block(f'resource "{rtype}" "{label}"')
    for attr in attrs:
        block.attr(*attr)
    block.attr("role", role).attr("member", member)
    if grant.condition is not None:
        block.child("condition", _condition_attrs(grant.condition))
    return block.render()


def _condition_attrs(condition: Condition) -> list[tuple[str, str]]:
    attrs = [("title", _hcl_string(condition.title))]
    if condition.description:
        attrs.append(("description", _hcl_string(condition.description)))
    attrs.append(("expression", _hcl_string(condition.expression)))
    return attrs


# -- gcloud ---------------------------------------------------------------------------------


def render_gcloud(plan: Plan) -> str:
    """A bash script that applies the plan's changes with ``gcloud`` (and ``bq``)."""
    q = shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        f"# Generated by zt-pipelines for pipeline {plan.pipeline_name or '?'} "
        f"in project {plan.project}",
        *(f"# {line}" for line in _support_lines(plan, ours=False)),
        "set -euo pipefail",
        "",
    ]
    for acct in plan.accounts:
        if acct.state == "create":
            lines.append(
                f"gcloud iam service-accounts create {q(acct.account_id)} "
                f"--project={q(acct.project)} --display-name={q(acct.display_name)}"
            )
    for spec in plan.custom_roles:
        if spec.state == "exists":
            continue
        role = spec.role
        verb = "create" if spec.state == "create" else "update"
        kind, _, ident = role.parent.partition("/")
        scope = f"--organization={q(ident)}" if kind == "organizations" else f"--project={q(ident)}"
        lines.append(
            f"gcloud iam roles {verb} {q(role.role_id)} {scope} --title={q(role.title)} "
            f"--description={q(role.description)} --stage=GA "
            f"--permissions={q(','.join(role.permissions))}"
        )
    for grant in plan.additions:
        lines.append(_binding_command(grant, "add"))
    for grant in plan.removals:
        lines.append(_binding_command(grant, "remove"))
    if plan.is_noop:
        lines.append("# nothing to do")
    if plan.segmentation is not None:
        from zt_pipelines.segmentation.plan import render_gcloud as segmentation_gcloud

        lines.append(segmentation_gcloud(plan.segmentation).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _binding_command(grant: Grant, verb: str) -> str:
    q = shlex.quote
    name = grant.resource
    action = f"{verb}-iam-policy-binding"
    tail = f"--member={q(grant.member)} --role={q(grant.role)}"
    if grant.condition is not None:
        tail += " --condition=" + q(_gcloud_condition(grant.condition))
    else:
        tail += " --condition=None"
    if name.startswith(STORAGE):
        return f"gcloud storage buckets {action} {q('gs://' + name[len(STORAGE) :])} {tail}"
    if name.startswith(BIGQUERY):
        parts = name[len(BIGQUERY) :].split("/")
        target = f"{parts[1]}:{parts[3]}" + (f".{parts[5]}" if len(parts) >= 6 else "")
        return f"bq {action} --member={q(grant.member)} --role={q(grant.role)} {q(target)}"
    if name.startswith(CRM + "projects/"):
        return f"gcloud projects {action} {q(name[len(CRM + 'projects/') :])} {tail}"
    if name.startswith(IAM):
        _, project, _, email = name[len(IAM) :].split("/", 3)
        return f"gcloud iam service-accounts {action} {q(email)} --project={q(project)} {tail}"
    if name.startswith(_SECRETS):
        parts = name[len(_SECRETS) :].split("/")
        return f"gcloud secrets {action} {q(parts[3])} --project={q(parts[1])} {tail}"
    if name.startswith(_ARTIFACTS):
        parts = name[len(_ARTIFACTS) :].split("/")
        return (
            f"gcloud artifacts repositories {action} {q(parts[5])} --project={q(parts[1])} "
            f"--location={q(parts[3])} {tail}"
        )
    if name.startswith(_KMS):
        parts = name[len(_KMS) :].split("/")
        return (
            f"gcloud kms keys {action} {q(parts[7])} --keyring={q(parts[5])} "
            f"--location={q(parts[3])} --project={q(parts[1])} {tail}"
        )
    raise ValueError(f"no gcloud command for {name}")  # pragma: no cover


def _gcloud_condition(condition: Condition) -> str:
    fields = [f"expression={condition.expression}", f"title={condition.title}"]
    if condition.description:
        fields.append(f"description={condition.description}")
    if not any("," in f for f in fields):
        return ",".join(fields)
    # gcloud dict flags split on ','; '^D^' switches to a delimiter D no field contains
    for delimiter in "|;~#@!":
        if not any(delimiter in f for f in fields):
            return f"^{delimiter}^" + delimiter.join(fields)
    raise InputError(
        f"the condition {condition.title!r} cannot be written as a gcloud flag",
        where="gcloud script",
        fix="use --format terraform, or a prefix without , | ; ~ # @ !",
    )
