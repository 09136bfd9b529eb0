"""Read and write snapshot files (YAML or JSON), strictly.

The format is documented in ``docs/snapshot.md`` and by the JSON Schema shipped at
``zt_pipelines/schemas/snapshot.schema.json``. Loading validates the schema first, then what a
schema cannot say (member and principal formats, CEL syntax, v2 deny permissions, service
account emails, duplicates). Every problem raises :class:`~zt_pipelines.errors.SnapshotError`
naming the file and the JSON path (``snap.yaml: $.nodes[2].policy.bindings[0].members[1]``).

``dump_snapshot`` is the inverse: ``load_snapshot(dump_snapshot(s)) == s``.

This module reads files (IO) but decides nothing about IAM.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from zt_pipelines.errors import IdentityError, InputError, SnapshotError
from zt_pipelines.identity import classify_identity
from zt_pipelines.loaders import check_plain_data, load_file
from zt_pipelines.policy.catalogue import roles_from_catalogue
from zt_pipelines.policy.conditions import ConditionError, ConditionEvaluator
from zt_pipelines.policy.deny import V2_PERMISSION, normalize_attachment_point
from zt_pipelines.policy.snapshot import (
    AclEntry,
    AllowPolicy,
    Binding,
    Condition,
    DenyPolicy,
    DenyRule,
    Entitlement,
    EntitlementRole,
    Node,
    PersistentResource,
    Role,
    ServiceAccount,
    Snapshot,
    Unreadable,
)
from zt_pipelines.policy.wording import plural
from zt_pipelines.resources import CRM

__all__ = [
    "SnapshotError",
    "dump_snapshot",
    "load_catalogue_file",
    "load_snapshot",
    "read_document",
    "roles_from_catalogue",
    "with_roles",
]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "snapshot.schema.json"

_EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_MEMBER = re.compile(
    rf"^(?:allUsers|allAuthenticatedUsers"
    rf"|(?:user|serviceAccount|group):{_EMAIL}"
    # GKE Workload Identity: a Kubernetes service account (never matches a Google one)
    r"|serviceAccount:[a-z0-9.:-]+\.svc\.id\.goog\[[^\]/\s]+/[^\]/\s]+\]"
    rf"|domain:[A-Za-z0-9.-]+\.[A-Za-z]{{2,}}"
    rf"|deleted:(?:user|serviceAccount|group):{_EMAIL}(?:\?uid=[0-9]+)?"
    rf"|(?:projectOwner|projectEditor|projectViewer):[a-z][a-z0-9.:-]+"
    rf"|(?:deleted:)?principal(?:Set)?://\S+)$"
)
_DENY_PRINCIPAL = re.compile(r"^(?:deleted:)?principal(?:Set)?://[^\s]+$")
_PERMISSION = re.compile(
    r"^(?:[a-z][a-z0-9]*(?:\.[a-zA-Z][a-zA-Z0-9_]*){2,}|[a-z0-9.-]+\.[a-z]{2,}/[A-Za-z0-9_.]+)$"
)
_ROLE = re.compile(
    r"^(?:roles/[A-Za-z0-9_.]+|(?:projects|organizations)/[a-z0-9.:-]+/roles/[A-Za-z0-9_.]+)$"
)


def read_document(
    path: str | Path, error: type[InputError] = SnapshotError, *, kind: str = "snapshot"
) -> Any:
    """Read one YAML or JSON document (``.gz`` allowed) with the strict, bounded loader
    (:mod:`zt_pipelines.loaders`); raise ``error`` naming the file, line and column."""
    documents = load_file(path, kind=kind, error=error)
    if len(documents) > 1:
        raise error(f"expected one document, found {len(documents)}", where=str(path))
    return documents[0] if documents else None


@lru_cache(maxsize=4)
def _validator(path: str) -> Any:
    import jsonschema

    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def json_path(parts: Any) -> str:
    """``["nodes", 2, "kind"]`` → ``$.nodes[2].kind``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


#: above this many list entries, a valid document is confirmed by a compiled validator first
FAST_VALIDATION_ENTRIES = 2000


@lru_cache(maxsize=4)
def _fast_validator(path: str) -> Any:
    """The schema compiled to Python by fastjsonschema (None when it is not installed).

    Our schemas use only keywords with the same meaning in draft 7 and 2020-12 (type, enum,
    const, pattern, minLength, minItems, items, properties, required, additionalProperties,
    propertyNames, $ref): a document it accepts, jsonschema accepts
    (tests/test_fuzz_parsers.py checks the two agree on mutated snapshots and policies).
    """
    try:
        import fastjsonschema
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    schema.pop("$schema", None)  # draft-7 code generation for the same keywords
    return fastjsonschema.compile(schema)


def _entries(data: Any) -> int:
    if not isinstance(data, dict):
        return 0
    return sum(len(v) for v in data.values() if isinstance(v, (list, dict)))


def validate_schema(data: Any, schema_path: Path, source: str, error: Any) -> None:
    """Validate ``data`` against a JSON Schema; raise ``error`` naming source and JSON path.

    A large document (a 10,000-node hierarchy took 10 s in jsonschema) is first checked by
    the compiled validator; jsonschema then runs only to name what is wrong.
    """
    if _entries(data) > FAST_VALIDATION_ENTRIES:
        fast = _fast_validator(str(schema_path))
        if fast is not None:
            import fastjsonschema

            try:
                fast(data)
                return
            except fastjsonschema.JsonSchemaException:
                pass  # jsonschema below names the problem and its JSON path
    errors = sorted(
        _validator(str(schema_path)).iter_errors(data), key=lambda e: list(e.absolute_path)
    )
    if errors:
        best = errors[0]
        raise error(
            f"{best.message}"
            + (f" (and {plural(len(errors) - 1, 'more problem')})" if len(errors) > 1 else ""),
            where=f"{source}: {json_path(best.absolute_path)}",
            fix=_did_you_mean(best) + f"see the schema {schema_path.name}",
        )


def _did_you_mean(error: Any) -> str:
    """For a key the schema does not allow, the allowed key closest to it (a typo's fix)."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return ""
    allowed = list((error.schema.get("properties") or {}).keys())
    for key in error.instance:
        if isinstance(key, str) and key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            if close:
                return f"did you mean {close[0]!r} instead of {key!r}? "
    return ""


def load_snapshot(
    path_or_dict: str | Path | dict[str, Any], *, roles: dict[str, Role] | None = None
) -> Snapshot:
    """Load and validate a snapshot from a YAML/JSON file or an already-parsed dict.

    ``roles`` (e.g. from :func:`roles_from_catalogue` on the predefined catalogue) are added
    under the file's own role definitions (the file wins on a name clash).

    Raises:
        SnapshotError: naming the file (or ``<snapshot>``) and the JSON path.
    """
    from_file = not isinstance(path_or_dict, dict)
    if isinstance(path_or_dict, dict):
        data: Any = path_or_dict
        source = "<snapshot>"
        check_plain_data(data, where=source, kind="snapshot", error=SnapshotError)
    else:
        source = str(path_or_dict)
        data = read_document(path_or_dict)
    if not isinstance(data, dict):
        raise SnapshotError("a snapshot must be a mapping at the top level", where=f"{source}: $")
    check_integrity(data, source)  # first: a cut file is named as cut, not by what broke
    validate_schema(data, SCHEMA_PATH, source, SnapshotError)
    snapshot = _build(data, source)
    if from_file:  # a file can be cut or hand-written: say what it does not prove
        snapshot = _file_caveats(snapshot, data, source)
    return with_roles(snapshot, roles) if roles else snapshot


#: the key of the integrity digest ``zt-pipelines snapshot`` writes into a snapshot file
INTEGRITY = "integrity"


def integrity_digest(data: dict[str, Any]) -> str:
    """sha256 of the snapshot's canonical JSON (sorted keys, no spaces), ``integrity`` left out.

    The same for the YAML and the JSON form of one snapshot.
    """
    import hashlib

    body = {k: v for k, v in data.items() if k != INTEGRITY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its integrity digest (what ``zt-pipelines snapshot`` writes)."""
    body = {k: v for k, v in data.items() if k != INTEGRITY}
    return {**body, INTEGRITY: {"sha256": integrity_digest(body)}}


def check_integrity(data: dict[str, Any], source: str) -> None:
    """Refuse a snapshot whose integrity digest does not match its content.

    The digest catches a file cut at a line boundary or edited by hand after
    ``zt-pipelines snapshot`` wrote it. It is a checksum, not a signature: whoever can write
    the file can also write a new digest (keep snapshots where only CI writes).

    Raises:
        SnapshotError: naming ``$.integrity.sha256``.
    """
    seal_ = data.get(INTEGRITY)
    if not isinstance(seal_, dict) or not isinstance(seal_.get("sha256"), str):
        return  # absent (a hand-written world), or malformed: the schema names it
    if seal_["sha256"] != integrity_digest(data):
        raise SnapshotError(
            "the snapshot does not match its integrity digest: it was cut or edited after "
            "zt-pipelines snapshot wrote it",
            where=f"{source}: $.{INTEGRITY}.sha256",
            fix="take the snapshot again (zt-pipelines snapshot -o FILE)",
        )


def _file_caveats(snapshot: Snapshot, data: dict[str, Any], source: str) -> Snapshot:
    """Absent sections are unknown, never empty; an unsealed file is noted (ZT401)."""
    notes = list(snapshot.notes)
    if INTEGRITY not in data:
        notes.append(
            (
                "ZT401",
                f"the snapshot {source} carries no integrity digest (hand-written or edited): "
                "that it is complete and uncut is not proven; take snapshots with "
                "zt-pipelines snapshot",
            )
        )
    extra: list[Unreadable] = []
    if "denyPolicies" not in data:
        why = (
            "the snapshot file has no denyPolicies section: the deny policies are unknown "
            "(write denyPolicies: [] when there are none)"
        )
        extra += [
            Unreadable(node.name, "denyPolicies", why)
            for node in snapshot.nodes.values()
            if node.kind in ("organization", "folder", "project")
        ]
    if "unreadable" not in data:
        why = (
            "the snapshot file has no unreadable section: which reads failed is unknown "
            "(write unreadable: [] when every read succeeded)"
        )
        extra += [Unreadable(name, "snapshot", why) for name in snapshot.nodes]
    if not extra and len(notes) == len(snapshot.notes):
        return snapshot
    return replace(snapshot, unreadable=(*snapshot.unreadable, *extra), notes=tuple(notes))


def with_roles(snapshot: Snapshot, roles: dict[str, Role]) -> Snapshot:
    """A copy of ``snapshot`` with ``roles`` added (the snapshot's own definitions win)."""
    return replace(snapshot, roles={**roles, **snapshot.roles})


def load_catalogue_file(path: str | Path) -> dict[str, Role]:
    """Read a predefined-role catalogue file (``gcp-predefined-roles.json.gz`` shape)."""
    data = read_document(path, kind="catalogue")
    if not isinstance(data, dict):
        raise SnapshotError("a role catalogue must be a mapping", where=f"{path}: $")
    try:
        roles = roles_from_catalogue(data)
    except SnapshotError as exc:
        raise SnapshotError(exc.what, where=f"{path}: {exc.where}") from None
    custom = sorted(name for name in roles if not name.startswith("roles/"))
    if custom:
        # custom roles are per tenant and mutable: only the snapshot (or a live read) knows them
        raise SnapshotError(
            f"{custom[0]!r} is not a predefined role",
            where=f"{path}: $.roles[{custom[0]!r}]",
            fix="a catalogue holds predefined roles/... only; custom roles belong in the snapshot",
        )
    return roles


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.cel = ConditionEvaluator()

    def fail(self, what: str, path: str, fix: str | None = None) -> SnapshotError:
        return SnapshotError(what, where=f"{self.source}: {path}", fix=fix)

    def condition(self, raw: dict[str, Any] | None, path: str) -> Condition | None:
        if raw is None:
            return None
        try:
            self.cel.check_syntax(raw["expression"])
        except ConditionError as exc:
            raise self.fail(str(exc), path + ".expression") from None
        return Condition(raw["expression"], raw.get("title", ""), raw.get("description", ""))

    def member(self, m: str, path: str) -> str:
        if not _MEMBER.match(m):
            raise self.fail(
                f"{m!r} is not an IAM member",
                path,
                "use user:/serviceAccount:/group:/domain:EMAIL, allUsers, "
                "allAuthenticatedUsers, deleted:..., principal:// or principalSet://",
            )
        return m

    def permission(self, p: str, path: str) -> str:
        if not _PERMISSION.match(p):
            raise self.fail(f"{p!r} is not an IAM permission", path, "write service.resource.verb")
        return p


def _build(data: dict[str, Any], source: str) -> Snapshot:
    b = _Builder(source)
    nodes: dict[str, Node] = {}
    for i, raw in enumerate(data.get("nodes", [])):
        path = f"$.nodes[{i}]"
        name = raw["name"]
        if name in nodes:
            raise b.fail(f"node {name!r} appears twice", path + ".name")
        parent = raw.get("parent")
        if parent not in (None, "") and not re.match(r"^//\S+$", parent):
            raise b.fail(f"parent {parent!r} is not a full resource name", path + ".parent")
        if parent == name:
            raise b.fail("a node cannot be its own parent", path + ".parent")
        policy = None
        if "policy" in raw:
            bindings = []
            for j, rb in enumerate(raw["policy"].get("bindings", [])):
                bpath = f"{path}.policy.bindings[{j}]"
                if not _ROLE.match(rb["role"]):
                    raise b.fail(
                        f"{rb['role']!r} is not a role name",
                        bpath + ".role",
                        "roles/NAME, projects/P/roles/R or organizations/O/roles/R",
                    )
                members = tuple(
                    b.member(m, f"{bpath}.members[{k}]") for k, m in enumerate(rb["members"])
                )
                bindings.append(
                    Binding(
                        rb["role"], members, b.condition(rb.get("condition"), bpath + ".condition")
                    )
                )
            policy = AllowPolicy(
                tuple(bindings), raw["policy"].get("etag", ""), raw["policy"].get("version", 1)
            )
        if raw["kind"] == "project" and "projectNumber" not in raw:
            pass  # allowed: number unknown
        for key in ("uniformBucketLevelAccess", "acl", "defaultObjectAcl"):
            if key in raw and raw["kind"] != "bucket":
                raise b.fail(
                    f"{key} is a bucket setting",
                    f"{path}.{key}",
                    "remove it, or give the node kind: bucket",
                )
        nodes[name] = Node(
            name=name,
            kind=raw["kind"],
            parent=parent,
            policy=policy,
            project_number=raw.get("projectNumber"),
            display_name=raw.get("displayName", ""),
            uniform_bucket_level_access=raw.get("uniformBucketLevelAccess"),
            acl=_acl(raw.get("acl")),
            default_object_acl=_acl(raw.get("defaultObjectAcl")),
        )
    _check_cycles(nodes, b)

    roles: dict[str, Role] = {}
    for i, raw in enumerate(data.get("roles", [])):
        path = f"$.roles[{i}]"
        if raw["name"] in roles:
            raise b.fail(f"role {raw['name']!r} appears twice", path + ".name")
        perms = frozenset(
            b.permission(p, f"{path}.permissions[{k}]") for k, p in enumerate(raw["permissions"])
        )
        roles[raw["name"]] = Role(
            raw["name"],
            perms,
            raw.get("title", ""),
            raw.get("stage", "GA"),
            raw.get("deleted", False),
        )

    denies = []
    for i, raw in enumerate(data.get("denyPolicies", [])):
        path = f"$.denyPolicies[{i}]"
        attach = normalize_attachment_point(raw["attachmentPoint"])
        if not re.match(
            r"^//cloudresourcemanager\.googleapis\.com/(organizations|folders|projects)/[^/\s]+$",
            attach,
        ):
            raise b.fail(
                f"deny policies attach to an organisation, folder or project, not {attach!r}",
                path + ".attachmentPoint",
            )
        rules = []
        for j, rr in enumerate(raw["rules"]):
            rpath = f"{path}.rules[{j}]"
            for key in ("deniedPrincipals", "exceptionPrincipals"):
                for k, p in enumerate(rr.get(key, [])):
                    if not _DENY_PRINCIPAL.match(p):
                        raise b.fail(
                            f"{p!r} is not an IAM v2 principal identifier",
                            f"{rpath}.{key}[{k}]",
                            "deny rules use principal://... or principalSet://... "
                            "(e.g. principal://iam.googleapis.com/projects/-/serviceAccounts/EMAIL)",
                        )
            for key in ("deniedPermissions", "exceptionPermissions"):
                for k, p in enumerate(rr.get(key, [])):
                    if not V2_PERMISSION.match(p):
                        raise b.fail(
                            f"{p!r} is not a v2 permission name",
                            f"{rpath}.{key}[{k}]",
                            "deny rules use SERVICE.googleapis.com/RESOURCE.VERB, "
                            "e.g. storage.googleapis.com/objects.get",
                        )
            rules.append(
                DenyRule(
                    tuple(rr["deniedPrincipals"]),
                    tuple(rr["deniedPermissions"]),
                    tuple(rr.get("exceptionPrincipals", [])),
                    tuple(rr.get("exceptionPermissions", [])),
                    b.condition(rr.get("denialCondition"), rpath + ".denialCondition"),
                )
            )
        denies.append(DenyPolicy(raw["name"], attach, tuple(rules), raw.get("etag", "")))

    sas: dict[str, ServiceAccount] = {}
    for i, raw in enumerate(data.get("serviceAccounts", [])):
        path = f"$.serviceAccounts[{i}]"
        try:
            email = classify_identity(raw["email"], where=path).email
        except IdentityError as exc:
            raise b.fail(exc.what, path + ".email", exc.fix) from None
        if not email:
            raise b.fail("a service account needs an email", path + ".email")
        if email in sas:
            raise b.fail(f"service account {email!r} appears twice", path + ".email")
        sas[email] = ServiceAccount(
            email=email,
            project_id=raw["projectId"],
            unique_id=raw.get("uniqueId", ""),
            disabled=raw.get("disabled", False),
            user_managed_keys=tuple(raw.get("userManagedKeys", [])),
            display_name=raw.get("displayName", ""),
            hmac_keys=tuple(raw.get("hmacKeys", [])),
            api_keys=tuple(raw.get("apiKeys", [])),
        )

    groups: dict[str, tuple[str, ...]] = {}
    spelled: dict[str, str] = {}
    for g, members in data.get("groups", {}).items():
        if not re.match(rf"^{_EMAIL}$", g):
            raise b.fail(
                f"group {g!r} is not an email",
                f"$.groups[{g!r}]",
                "key groups by their email, without the group: prefix",
            )
        if g.lower() in spelled:  # emails are case-insensitive: one would overwrite the other
            raise b.fail(
                f"groups {spelled[g.lower()]!r} and {g!r} are the same group (emails ignore case)",
                f"$.groups[{g!r}]",
                "list the group once, with all its members",
            )
        spelled[g.lower()] = g
        groups[g.lower()] = tuple(
            b.member(m, f"$.groups[{g!r}][{k}]") for k, m in enumerate(members)
        )

    unreadable = tuple(
        Unreadable(u["target"], u["what"], u["reason"]) for u in data.get("unreadable", [])
    )
    persistent: dict[str, PersistentResource] = {}
    for i, raw in enumerate(data.get("persistentResources", [])):
        if raw["name"] in persistent:
            raise b.fail(
                f"persistent resource {raw['name']!r} appears twice", f"$.persistentResources[{i}]"
            )
        persistent[raw["name"]] = PersistentResource(
            raw["name"], raw.get("enableCustomServiceAccount", False), raw.get("state", "")
        )
    entitlements = []
    for i, raw in enumerate(data.get("entitlements", [])):
        where = f"$.entitlements[{i}]"
        entitlements.append(
            Entitlement(
                name=raw["name"],
                node=CRM + raw["name"].split("/locations/", 1)[0],
                eligible=tuple(
                    b.member(m, f"{where}.eligible[{k}]") for k, m in enumerate(raw["eligible"])
                ),
                roles=tuple(
                    EntitlementRole(r["role"], r.get("condition", "")) for r in raw["roles"]
                ),
                approval_required=raw.get("approvalRequired", False),
                max_duration=raw.get("maxDuration", ""),
                state=raw.get("state", "AVAILABLE"),
            )
        )
    complete = frozenset(data.get("completeBindingsFor", []))
    for k, p in enumerate(sorted(complete)):
        b.member(p, f"$.completeBindingsFor[{k}]")
    return Snapshot(
        nodes=nodes,
        roles=roles,
        deny_policies=tuple(denies),
        service_accounts=sas,
        groups=groups,
        unreadable=unreadable,
        complete_bindings_for=complete,
        segmentation=_segmentation(data, source),
        persistent_resources=persistent,
        entitlements=tuple(entitlements),
    )


def _acl(raw: Any) -> tuple[AclEntry, ...] | None:
    """A bucket's ACL entries from the file (absent: not read)."""
    if raw is None:
        return None
    return tuple(AclEntry(e["entity"], e["role"]) for e in raw)


def _segmentation(data: dict[str, Any], source: str) -> Any:
    """The ``segmentation`` section, parsed by its own module (absent: ``None``, unknown)."""
    if "segmentation" not in data:
        return None
    from zt_pipelines.segmentation.snapshot import load_section

    return load_section(data["segmentation"], source)


def _check_cycles(nodes: dict[str, Node], b: _Builder) -> None:
    """Refuse a cycle in the parent links, in time linear in the number of nodes (every node
    is walked once: a 10,000-node chain took ~50 s when each node walked to the root)."""
    done: set[str] = set()  # nodes whose chain up to the root (or an unknown parent) is sound
    index = {name: i for i, name in enumerate(nodes)}
    for start in nodes:
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = start
        while current and current not in done:
            if current in on_path:
                raise b.fail(
                    f"the hierarchy has a cycle through {current!r}",
                    f"$.nodes[{index.get(start, 0)}].parent",
                )
            on_path.add(current)
            path.append(current)
            node = nodes.get(current)
            current = node.parent if node else None
        done.update(path)


def _condition_dict(c: Condition | None) -> dict[str, str] | None:
    if c is None:
        return None
    out = {"expression": c.expression}
    if c.title:
        out["title"] = c.title
    if c.description:
        out["description"] = c.description
    return out


def dump_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as a dict in the file format (``load_snapshot`` of it gives it back)."""
    nodes = []
    for n in snapshot.nodes.values():
        raw: dict[str, Any] = {"name": n.name, "kind": n.kind}
        if n.parent is not None:
            raw["parent"] = n.parent
        if n.project_number is not None:
            raw["projectNumber"] = n.project_number
        if n.display_name:
            raw["displayName"] = n.display_name
        if n.uniform_bucket_level_access is not None:
            raw["uniformBucketLevelAccess"] = n.uniform_bucket_level_access
        if n.acl is not None:
            raw["acl"] = [{"entity": e.entity, "role": e.role} for e in n.acl]
        if n.default_object_acl is not None:
            raw["defaultObjectAcl"] = [
                {"entity": e.entity, "role": e.role} for e in n.default_object_acl
            ]
        if n.policy is not None:
            bindings = []
            for bnd in n.policy.bindings:
                rb: dict[str, Any] = {"role": bnd.role, "members": list(bnd.members)}
                if bnd.condition is not None:
                    rb["condition"] = _condition_dict(bnd.condition)
                bindings.append(rb)
            raw["policy"] = {
                "bindings": bindings,
                "etag": n.policy.etag,
                "version": n.policy.version,
            }
        nodes.append(raw)
    roles = []
    for r in snapshot.roles.values():
        rr: dict[str, Any] = {"name": r.name, "permissions": sorted(r.permissions)}
        if r.title:
            rr["title"] = r.title
        if r.stage != "GA":
            rr["stage"] = r.stage
        if r.deleted:
            rr["deleted"] = True
        roles.append(rr)
    denies = []
    for d in snapshot.deny_policies:
        rules = []
        for rule in d.rules:
            raw_rule: dict[str, Any] = {
                "deniedPrincipals": list(rule.denied_principals),
                "deniedPermissions": list(rule.denied_permissions),
            }
            if rule.exception_principals:
                raw_rule["exceptionPrincipals"] = list(rule.exception_principals)
            if rule.exception_permissions:
                raw_rule["exceptionPermissions"] = list(rule.exception_permissions)
            if rule.denial_condition is not None:
                raw_rule["denialCondition"] = _condition_dict(rule.denial_condition)
            rules.append(raw_rule)
        denies.append(
            {"name": d.name, "attachmentPoint": d.attachment_point, "rules": rules, "etag": d.etag}
        )
    sas = []
    for sa in snapshot.service_accounts.values():
        raw_sa: dict[str, Any] = {"email": sa.email, "projectId": sa.project_id}
        if sa.unique_id:
            raw_sa["uniqueId"] = sa.unique_id
        if sa.disabled:
            raw_sa["disabled"] = True
        if sa.user_managed_keys:
            raw_sa["userManagedKeys"] = list(sa.user_managed_keys)
        if sa.display_name:
            raw_sa["displayName"] = sa.display_name
        if sa.hmac_keys:
            raw_sa["hmacKeys"] = list(sa.hmac_keys)
        if sa.api_keys:
            raw_sa["apiKeys"] = list(sa.api_keys)
        sas.append(raw_sa)
    out: dict[str, Any] = {
        "version": 1,
        "nodes": nodes,
        "roles": roles,
        "denyPolicies": denies,
        "serviceAccounts": sas,
        "groups": {g: list(m) for g, m in snapshot.groups.items()},
        "unreadable": [
            {"target": u.target, "what": u.what, "reason": u.reason} for u in snapshot.unreadable
        ],
        "completeBindingsFor": sorted(snapshot.complete_bindings_for),
    }
    if snapshot.segmentation is not None:
        from zt_pipelines.segmentation.snapshot import dump_section

        out["segmentation"] = dump_section(snapshot.segmentation)
    if snapshot.persistent_resources:
        out["persistentResources"] = [
            {
                "name": r.name,
                "enableCustomServiceAccount": r.enable_custom_service_account,
                **({"state": r.state} if r.state else {}),
            }
            for r in snapshot.persistent_resources.values()
        ]
    if snapshot.entitlements:
        out["entitlements"] = [
            {
                "name": e.name,
                "eligible": list(e.eligible),
                "roles": [
                    {"role": r.role, **({"condition": r.condition} if r.condition else {})}
                    for r in e.roles
                ],
                "approvalRequired": e.approval_required,
                **({"maxDuration": e.max_duration} if e.max_duration else {}),
                "state": e.state,
            }
            for e in snapshot.entitlements
        ]
    return out
