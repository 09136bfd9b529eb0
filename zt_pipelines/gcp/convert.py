"""Pure conversions from the client libraries' response shapes to snapshot dataclasses.

No IO: these take what an adapter already received. Anything that does not have the shape
the API promises raises ``ValueError`` (a malformed response), which the retry layer treats
as transient and, if it persists, as an unreadable read — never as an empty policy.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Condition, DenyPolicy, DenyRule

# BigQuery's legacy dataset roles, as Google documents their IAM equivalents.
DATASET_LEGACY_ROLES = {
    "READER": "roles/bigquery.dataViewer",
    "WRITER": "roles/bigquery.dataEditor",
    "OWNER": "roles/bigquery.dataOwner",
}


def etag_text(etag: bytes | str) -> str:
    """An etag as the JSON APIs show it (base64 text)."""
    if isinstance(etag, bytes):
        return base64.b64encode(etag).decode() if etag else ""
    return str(etag)


def _condition(expr: Any) -> Condition | None:
    if expr is None:
        return None
    if isinstance(expr, Mapping):
        text = str(expr.get("expression") or "")
        if not text:
            return None
        return Condition(text, str(expr.get("title") or ""), str(expr.get("description") or ""))
    text = str(getattr(expr, "expression", "") or "")
    if not text:
        return None
    return Condition(text, str(expr.title or ""), str(expr.description or ""))


def policy_from_proto(policy: Any) -> AllowPolicy:
    """``google.iam.v1.Policy`` (protobuf) → :class:`AllowPolicy`."""
    bindings = []
    for binding in policy.bindings:
        if not binding.role:
            raise ValueError("binding without a role")
        has_condition = binding.HasField("condition")
        bindings.append(
            Binding(
                role=str(binding.role),
                members=tuple(str(m) for m in binding.members),
                condition=_condition(binding.condition) if has_condition else None,
            )
        )
    return AllowPolicy(tuple(bindings), etag_text(policy.etag), int(policy.version or 1))


def policy_from_json(bindings: Iterable[Mapping[str, Any]], etag: str, version: int) -> AllowPolicy:
    """A JSON-API policy (Storage, BigQuery tables via ``api_core.iam.Policy``) → AllowPolicy."""
    out = []
    for binding in bindings:
        role = binding.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError("binding without a role")
        members = binding.get("members") or ()
        out.append(
            Binding(
                role=role,
                members=tuple(sorted(str(m) for m in members)),
                condition=_condition(binding.get("condition")),
            )
        )
    return AllowPolicy(tuple(out), str(etag or ""), int(version or 1))


def dataset_access_policy(
    entries: Iterable[Any], etag: str, project: str | None = None
) -> AllowPolicy:
    """BigQuery dataset access entries → an allow policy with IAM roles and members.

    Authorized views/routines/datasets are not principals and are left out; an entry whose
    kind we do not know is kept under a member that never matches (fail closed for grants).
    With the dataset's ``project`` (id), the special groups ``projectOwners`` /
    ``projectWriters`` / ``projectReaders`` become ``projectOwner:`` / ``projectEditor:`` /
    ``projectViewer:`` members, which the engine resolves through the project's basic roles.
    """
    by_role: dict[tuple[str, Condition | None], list[str]] = {}
    for entry in entries:
        role = entry.role
        if not role:
            continue
        role = DATASET_LEGACY_ROLES.get(role, role)
        kind, ident = entry.entity_type, entry.entity_id
        member = _dataset_member(kind, ident)
        if project and member in _PROJECT_GROUPS:
            member = f"{_PROJECT_GROUPS[member]}:{project}"
        if member is None:
            continue
        condition = _condition(_dataset_condition(entry))
        by_role.setdefault((role, condition), []).append(member)
    bindings = tuple(
        Binding(role, tuple(sorted(members)), condition)
        for (role, condition), members in sorted(by_role.items(), key=lambda kv: kv[0][0])
    )
    return AllowPolicy(bindings, etag or "", 3 if any(b.condition for b in bindings) else 1)


# BigQuery's project special groups: the holders of the enclosing project's basic roles
_PROJECT_GROUPS = {
    "projectOwners": "projectOwner",
    "projectWriters": "projectEditor",
    "projectReaders": "projectViewer",
}


def _dataset_condition(entry: Any) -> Any:
    condition = getattr(entry, "condition", None)
    if condition is None:
        return None
    return {
        "expression": getattr(condition, "expression", ""),
        "title": getattr(condition, "title", "") or "",
        "description": getattr(condition, "description", "") or "",
    }


def _dataset_member(kind: str, ident: Any) -> str | None:
    if kind in ("view", "routine", "dataset"):
        return None
    if kind == "userByEmail":
        email = str(ident)
        return ("serviceAccount:" if email.endswith(".gserviceaccount.com") else "user:") + email
    if kind == "groupByEmail":
        return f"group:{ident}"
    if kind == "domain":
        return f"domain:{ident}"
    if kind == "iamMember":
        return str(ident)
    if kind == "specialGroup":
        special = {
            "allAuthenticatedUsers": "allAuthenticatedUsers",
            "allUsers": "allUsers",
            "projectOwners": "projectOwners",
            "projectReaders": "projectReaders",
            "projectWriters": "projectWriters",
        }
        return special.get(str(ident), f"specialGroup:{ident}")
    return f"unknown:{kind}:{ident}"


def deny_policy_from_proto(policy: Any, attachment_point: str) -> DenyPolicy:
    """``google.iam.v2.Policy`` (proto-plus) → :class:`DenyPolicy`."""
    rules = []
    for rule in policy.rules:
        deny = rule.deny_rule
        condition = None
        if deny is not None and "denial_condition" in deny:
            condition = _condition(deny.denial_condition)
        rules.append(
            DenyRule(
                denied_principals=tuple(deny.denied_principals),
                denied_permissions=tuple(deny.denied_permissions),
                exception_principals=tuple(deny.exception_principals),
                exception_permissions=tuple(deny.exception_permissions),
                denial_condition=condition,
            )
        )
    if not policy.name:
        raise ValueError("deny policy without a name")
    return DenyPolicy(str(policy.name), attachment_point, tuple(rules), str(policy.etag or ""))


def deny_parent(attachment_point: str) -> str:
    """The ``policies/{url-encoded attachment point}/denypolicies`` parent for iam_v2."""
    from urllib.parse import quote

    return f"policies/{quote(attachment_point.removeprefix('//'), safe='')}/denypolicies"
