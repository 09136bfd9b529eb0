"""The gRPC half of the emulator: IAM admin, Resource Manager, IAM v2 deny policies, Cloud Asset
and Policy Troubleshooter, built from the official proto-plus request/response types.

Each method is a plain function ``(world, request, caller) -> response`` that raises
:class:`EmulatorError` for Google error statuses; :func:`build_handlers` wraps them with the
shared latency/fault/log gate and turns errors into real gRPC status codes.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc
from google.cloud import asset_v1, iam_admin_v1, iam_v2, policytroubleshooter_v1, resourcemanager_v3
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.type import expr_pb2

from zt_pipelines.emulator import asset_query, permissions, policies
from zt_pipelines.emulator.gate import Gate, Outcome
from zt_pipelines.emulator.routing import GrpcMethod, Impl
from zt_pipelines.emulator.world import EmulatorError, World, etag_bytes, page
from zt_pipelines.policy.snapshot import (
    ASSET_TYPES,
    AllowPolicy,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
)
from zt_pipelines.resources import CRM, IAM

# bytes no protobuf parser accepts: field 1, length-delimited, with an impossible length
MALFORMED_BYTES = b"\x0a\xff\xff\xff\xff\x0f\x00"


def _deserializer(kind: Any) -> Callable[[bytes], Any]:
    if hasattr(kind, "FromString"):
        return kind.FromString  # type: ignore[no-any-return]
    return kind.deserialize  # type: ignore[no-any-return]


def _serializer(kind: Any) -> Callable[[Any], bytes]:
    def serialize(message: Any) -> bytes:
        if isinstance(message, bytes):
            return message  # an injected malformed body
        if hasattr(message, "SerializeToString"):
            return message.SerializeToString()  # type: ignore[no-any-return]
        return kind.serialize(message)  # type: ignore[no-any-return]

    return serialize


def caller_from_metadata(context: grpc.ServicerContext) -> str | None:
    """The caller named by the ``authorization`` metadata, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return _caller(str(value))
    return None


@functools.lru_cache(maxsize=256)
def _caller(header: str) -> str | None:
    """:func:`caller_from_authorization`, remembered (a client sends the same token on
    every call)."""
    from zt_pipelines.gcp.emulator_tokens import caller_from_authorization

    return caller_from_authorization(header)


def build_handlers(
    world: World, gate: Gate, reset_peer: Callable[[str], None]
) -> list[grpc.GenericRpcHandler]:
    """Generic handlers for every served method, grouped by service."""
    from zt_pipelines.emulator.bq_connection_api import METHODS as BQ_CONNECTION_METHODS
    from zt_pipelines.emulator.logging_api import METHODS as LOGGING_METHODS
    from zt_pipelines.emulator.pam_api import METHODS as PAM_METHODS
    from zt_pipelines.emulator.segmentation_api import METHODS as SEGMENTATION_METHODS

    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for method in (
        *METHODS,
        *SEGMENTATION_METHODS,
        *LOGGING_METHODS,
        *PAM_METHODS,
        *BQ_CONNECTION_METHODS,
    ):
        by_service.setdefault(method.service, {})[method.name] = (
            grpc.unary_unary_rpc_method_handler(
                _wrap(method, world, gate, reset_peer),
                request_deserializer=_deserializer(method.request_type),
                response_serializer=_serializer(method.response_type),
            )
        )
    return [grpc.method_handlers_generic_handler(s, h) for s, h in by_service.items()]


_CODES = {code.name: code for code in grpc.StatusCode}


def _wrap(
    method: GrpcMethod, world: World, gate: Gate, reset_peer: Callable[[str], None]
) -> Callable[[Any, grpc.ServicerContext], Any]:
    full = f"{method.service}/{method.name}"

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        caller = caller_from_metadata(context)
        try:
            target = method.target(request)
        except Exception:  # a target we cannot name must not hide the call from the log
            target = ""
        outcome: Outcome = gate.call(
            api=method.api,
            method=full,
            target=target,
            caller=caller,
            write=method.write,
            run=lambda: method.impl(world, request, caller),
        )
        if outcome.reset:
            reset_peer(context.peer())
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset by peer")
        if outcome.malformed:
            return MALFORMED_BYTES
        if outcome.error is not None:
            context.abort(_CODES[outcome.error.code], outcome.error.message)
        return outcome.value

    return handler


# -- IAM admin ---------------------------------------------------------------------------------

_SA_NAME = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")


def _sa_lookup(world: World, name: str) -> tuple[str, ServiceAccount | None]:
    match = _SA_NAME.match(name)
    if not match:
        raise EmulatorError("INVALID_ARGUMENT", f"invalid service account name {name!r}")
    key = match.group(2).lower()
    with world.lock:
        sa = world.service_accounts.get(key)
        if sa is None and "@" not in key:  # by unique id
            sa = next((s for s in world.service_accounts.values() if s.unique_id == key), None)
    project = sa.project_id if sa else match.group(1)
    email = sa.email if sa else match.group(2)
    if project == "-":  # unknown account named with "-": its project is in its email
        domain = email.partition("@")[2]
        project = domain.split(".", 1)[0] if domain.endswith(".iam.gserviceaccount.com") else "-"
    return f"{IAM}projects/{project}/serviceAccounts/{email}", sa


def _sa_existing(world: World, name: str, caller: str | None, permission: str) -> ServiceAccount:
    """The account ``name`` once ``permission`` on it is allowed (checked first), else NOT_FOUND."""
    full, sa = _sa_lookup(world, name)
    world.authorize(caller, permission, full, parent=CRM + "projects/" + full.split("/")[4])
    if sa is None:
        raise EmulatorError("NOT_FOUND", f"Unknown service account {name}")
    return sa


def _sa_message(sa: ServiceAccount, *, raw: bool = False) -> Any:
    """The account's message (``raw``: the protobuf, cheaper to build for a listing)."""
    kind = iam_admin_v1.ServiceAccount.pb() if raw else iam_admin_v1.ServiceAccount
    return kind(
        name=f"projects/{sa.project_id}/serviceAccounts/{sa.email}",
        project_id=sa.project_id,
        unique_id=sa.unique_id,
        email=sa.email,
        display_name=sa.display_name,
        oauth2_client_id=sa.unique_id,
        disabled=sa.disabled,
    )


def _project_of(world: World, ref: str) -> str:
    project = world.project_id(ref)
    if project is None:
        raise EmulatorError("NOT_FOUND", f"project {ref!r} not found")
    return project


def get_service_account(world: World, request: Any, caller: str | None) -> Any:
    """GetServiceAccount."""
    sa = _sa_existing(world, request.name, caller, "iam.serviceAccounts.get")
    return _sa_message(sa)


def list_service_accounts(world: World, request: Any, caller: str | None) -> Any:
    """ListServiceAccounts (paginated, default 20 per page)."""
    ref = request.name.removeprefix("projects/")
    project = _project_of(world, ref)
    world.authorize(caller, "iam.serviceAccounts.list", CRM + "projects/" + project)
    with world.lock:
        accounts = sorted(
            (s for s in world.service_accounts.values() if s.project_id == project),
            key=lambda s: s.email,
        )
    items, token = page(accounts, request.page_size, request.page_token, 20)
    return iam_admin_v1.ListServiceAccountsResponse.pb()(
        accounts=[_sa_message(s, raw=True) for s in items], next_page_token=token
    )


_ACCOUNT_ID = re.compile(r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$")


def create_service_account(world: World, request: Any, caller: str | None) -> Any:
    """CreateServiceAccount (a write)."""
    ref = request.name.removeprefix("projects/")
    project = _project_of(world, ref)
    world.authorize(caller, "iam.serviceAccounts.create", CRM + "projects/" + project)
    if not _ACCOUNT_ID.match(request.account_id):
        raise EmulatorError("INVALID_ARGUMENT", f"invalid account id {request.account_id!r}")
    email = f"{request.account_id}@{project}.iam.gserviceaccount.com"
    with world.lock:
        if email in world.service_accounts:
            raise EmulatorError("ALREADY_EXISTS", f"Service account {email} already exists")
        number = 100_000_000_000_000_000_000 + len(world.service_accounts) + 1
        sa = ServiceAccount(
            email=email,
            project_id=project,
            unique_id=str(number),
            display_name=request.service_account.display_name,
        )
        world.service_accounts[email] = sa
        world.add_node(
            Node(
                name=f"{IAM}projects/{project}/serviceAccounts/{email}",
                kind="serviceAccount",
                parent=CRM + "projects/" + project,
                policy=AllowPolicy(etag=world.new_etag()),
            )
        )
    return _sa_message(sa)


def list_service_account_keys(world: World, request: Any, caller: str | None) -> Any:
    """ListServiceAccountKeys: the user-managed keys the snapshot records."""
    sa = _sa_existing(world, request.name, caller, "iam.serviceAccountKeys.list")
    wanted = set(request.key_types) or {_USER_MANAGED, _SYSTEM_MANAGED}
    keys = []
    if _USER_MANAGED in wanted:
        for key_id in sa.user_managed_keys:
            keys.append(
                _KEY(
                    name=f"projects/{sa.project_id}/serviceAccounts/{sa.email}/keys/{key_id}",
                    key_type=_USER_MANAGED,
                )
            )
    return _KEYS(keys=keys)


_USER_MANAGED = int(iam_admin_v1.ListServiceAccountKeysRequest.KeyType.USER_MANAGED)
_SYSTEM_MANAGED = int(iam_admin_v1.ListServiceAccountKeysRequest.KeyType.SYSTEM_MANAGED)
_KEY = iam_admin_v1.ServiceAccountKey.pb()
_KEYS = iam_admin_v1.ListServiceAccountKeysResponse.pb()


_STAGES: dict[str, Any] = {
    name: getattr(iam_admin_v1.Role.RoleLaunchStage, name)
    for name in iam_admin_v1.Role.RoleLaunchStage.__members__
}


def _role_message(role: Role, *, full: bool = True) -> iam_admin_v1.Role:
    return iam_admin_v1.Role(
        name=role.name,
        title=role.title,
        included_permissions=sorted(role.permissions) if full else [],
        stage=_STAGES.get(role.stage, iam_admin_v1.Role.RoleLaunchStage.GA),
        deleted=role.deleted,
        etag=etag_bytes("zt" + str(len(role.permissions))),
    )


def _role_parent(name: str) -> str | None:
    """The full resource name a custom role lives under (None for predefined roles)."""
    if name.startswith("roles/"):
        return None
    match = re.match(r"^(projects|organizations)/([^/]+)/roles/[^/]+$", name)
    if not match:
        raise EmulatorError("INVALID_ARGUMENT", f"invalid role name {name!r}")
    return f"{CRM}{match.group(1)}/{match.group(2)}"


def get_role(world: World, request: Any, caller: str | None) -> Any:
    """GetRole: predefined roles need no permission; custom roles need iam.roles.get."""
    parent = _role_parent(request.name)
    if parent is not None:
        world.authorize(caller, "iam.roles.get", parent)
    else:
        world.authenticate(caller)
    with world.lock:
        role = world.roles.get(request.name)
    if role is None:
        raise EmulatorError("NOT_FOUND", f"The role named {request.name} was not found.")
    return _role_message(role)


def list_roles(world: World, request: Any, caller: str | None) -> Any:
    """ListRoles (predefined when parent is empty; custom under projects/ or organizations/)."""
    parent = request.parent
    if parent:
        world.authorize(caller, "iam.roles.list", CRM + parent)
        prefix = parent + "/roles/"
    else:
        world.authenticate(caller)
        prefix = "roles/"
    with world.lock:
        roles = sorted(
            (
                r
                for r in world.roles.values()
                if r.name.startswith(prefix) and (request.show_deleted or not r.deleted)
            ),
            key=lambda r: r.name,
        )
    items, token = page(roles, request.page_size, request.page_token, 300)
    full = request.view == iam_admin_v1.RoleView.FULL
    return iam_admin_v1.ListRolesResponse(
        roles=[_role_message(r, full=full) for r in items], next_page_token=token
    )


def create_role(world: World, request: Any, caller: str | None) -> Any:
    """CreateRole (a write)."""
    if not re.match(r"^(projects|organizations)/[^/]+$", request.parent):
        raise EmulatorError("INVALID_ARGUMENT", f"invalid parent {request.parent!r}")
    world.authorize(caller, "iam.roles.create", CRM + request.parent)
    if not re.match(r"^[a-zA-Z0-9_.]{3,64}$", request.role_id):
        raise EmulatorError("INVALID_ARGUMENT", f"invalid role id {request.role_id!r}")
    name = f"{request.parent}/roles/{request.role_id}"
    permissions.check_custom_role(world, request.parent, request.role.included_permissions)
    stage = iam_admin_v1.Role.RoleLaunchStage(request.role.stage).name
    role = Role(
        name=name,
        permissions=frozenset(request.role.included_permissions),
        title=request.role.title,
        stage=stage,
    )
    with world.lock:
        if name in world.roles:
            raise EmulatorError("ALREADY_EXISTS", f"A role named {request.role_id} already exists")
        world.roles[name] = role
        world.changed()
    return _role_message(role)


def update_role(world: World, request: Any, caller: str | None) -> Any:
    """UpdateRole (a write): title, stage and included_permissions, honouring update_mask."""
    parent = _role_parent(request.name)
    if parent is None:
        raise EmulatorError("INVALID_ARGUMENT", "predefined roles cannot be updated")
    world.authorize(caller, "iam.roles.update", parent)
    paths = set(request.update_mask.paths) or {"title", "included_permissions", "stage"}
    with world.lock:
        role = world.roles.get(request.name)
        if role is None:
            raise EmulatorError("NOT_FOUND", f"The role named {request.name} was not found.")
        if "title" in paths:
            role = replace(role, title=request.role.title)
        if "included_permissions" in paths:
            permissions.check_custom_role(
                world, parent.removeprefix(CRM), request.role.included_permissions
            )
            role = replace(role, permissions=frozenset(request.role.included_permissions))
        if "stage" in paths:
            role = replace(role, stage=iam_admin_v1.Role.RoleLaunchStage(request.role.stage).name)
        world.roles[request.name] = role
        world.changed()
    return _role_message(role)


def _policy_reader(
    permission: str, to_full: Callable[[World, str], tuple[str, str | None]]
) -> Impl:
    def read(world: World, request: Any, caller: str | None) -> Any:
        full, parent = to_full(world, request.resource)
        version = request.options.requested_policy_version
        policies.check_requested_version(version)
        world.authorize(caller, permission, full, parent=parent)
        message = policies.to_proto(world.policy_of(full), version)
        if full.startswith(CRM):  # auditConfigs (Data Access logs) of a project, folder, org
            short = full.removeprefix(CRM)
            key = short.rsplit("/", 1)[1] if short.startswith("projects/") else short
            configs = world.log_store.audit_configs.get(key, {})
            for service, log_types in sorted(configs.items()):
                config = message.audit_configs.add(service=service)
                exempted: dict[str, list[str]] = {}
                for log_type in log_types:  # "DATA_READ exempts serviceAccount:E": exemptedMembers
                    kind, _, member = log_type.partition(" exempts ")
                    exempted.setdefault(kind, []).extend([member] if member else [])
                for kind, members in exempted.items():
                    config.audit_log_configs.add(
                        log_type=kind,  # type: ignore[arg-type]
                        exempted_members=members,
                    )
        return message

    return read


def _policy_writer(
    permission: str, to_full: Callable[[World, str], tuple[str, str | None]]
) -> Impl:
    def write(world: World, request: Any, caller: str | None) -> Any:
        full, parent = to_full(world, request.resource)
        world.authorize(caller, permission, full, parent=parent)
        policy = policies.from_proto(request.policy)
        policies.check_writable(policy, request.policy.version)
        with world.lock:
            current = world.policy_of(full)
            sent = request.policy.etag
            matches = not sent or sent == etag_bytes(current.etag)
            stored = world.set_policy(full, policy, etag_matches=matches)
        return policies.to_proto(stored)

    return write


def _permission_tester(to_full: Callable[[World, str], tuple[str, str | None]]) -> Impl:
    def test(world: World, request: Any, caller: str | None) -> Any:
        full, _parent = to_full(world, request.resource)
        world.authenticate(caller)
        held = [
            p for p in request.permissions if caller and world.decide(caller, full, p) == "granted"
        ]
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=held)

    return test


def _sa_full(world: World, resource: str) -> tuple[str, str | None]:
    full, _sa = _sa_lookup(world, resource)
    return full, CRM + "projects/" + full.split("/")[4]


def _crm_full(kind: str) -> Callable[[World, str], tuple[str, str | None]]:
    def to_full(world: World, resource: str) -> tuple[str, str | None]:
        prefix = kind + "/"
        if not resource.startswith(prefix) or "/" in resource[len(prefix) :]:
            raise EmulatorError("INVALID_ARGUMENT", f"invalid resource name {resource!r}")
        ident = resource[len(prefix) :]
        if kind == "projects":
            ident = world.project_id(ident) or ident
        full = f"{CRM}{kind}/{ident}"
        if world.node(full) is None:
            # Google answers PERMISSION_DENIED (not NOT_FOUND) for unknown containers
            raise EmulatorError(
                "PERMISSION_DENIED",
                f"The caller does not have permission on {resource} (or it does not exist)",
            )
        return full, None

    return to_full


# -- Resource Manager --------------------------------------------------------------------------


def _short(full: str | None) -> str:
    return full[len(CRM) :] if full and full.startswith(CRM) else ""


def _crm_get(world: World, request: Any, caller: str | None, kind: str) -> tuple[str, Node]:
    """The container ``request.name`` names, once ``resourcemanager.KIND.get`` is allowed."""
    full, _ = _crm_full(kind)(world, request.name)
    world.authorize(caller, f"resourcemanager.{kind}.get", full)
    node = world.node(full)
    assert node is not None
    return full, node


def get_project(world: World, request: Any, caller: str | None) -> Any:
    """Projects.GetProject (by id or number); the name is returned as projects/NUMBER."""
    full, node = _crm_get(world, request, caller, "projects")
    project_id = full.rsplit("/", 1)[1]
    return resourcemanager_v3.Project(
        name=f"projects/{world.project_number(project_id)}",
        parent=_short(node.parent),
        project_id=project_id,
        state=resourcemanager_v3.Project.State.ACTIVE,
        display_name=node.display_name or project_id,
    )


def get_folder(world: World, request: Any, caller: str | None) -> Any:
    """Folders.GetFolder."""
    _full, node = _crm_get(world, request, caller, "folders")
    return resourcemanager_v3.Folder(
        name=request.name,
        parent=_short(node.parent),
        display_name=node.display_name,
        state=resourcemanager_v3.Folder.State.ACTIVE,
    )


def get_organization(world: World, request: Any, caller: str | None) -> Any:
    """Organizations.GetOrganization."""
    _full, node = _crm_get(world, request, caller, "organizations")
    return resourcemanager_v3.Organization(
        name=request.name,
        display_name=node.display_name,
        state=resourcemanager_v3.Organization.State.ACTIVE,
    )


# -- IAM v2 deny policies ------------------------------------------------------------------------


def _attachment(world: World, encoded: str) -> str:
    point = urllib.parse.unquote(encoded)
    if not point.startswith("//"):
        point = "//" + point
    if point.startswith(CRM + "projects/"):
        ref = point.rsplit("/", 1)[1]
        point = CRM + "projects/" + (world.project_id(ref) or ref)
    return point


def _normal_point(point: str) -> str:
    return point if point.startswith("//") else "//" + point


def _point_of(world: World, policy: Any) -> str:
    """A stored policy's attachment point as requests name it (a project number -> its id)."""
    return _attachment(world, urllib.parse.quote(_normal_point(policy.attachment_point)[2:]))


def _deny_message(world: World, policy: Any) -> iam_v2.Policy:
    point = _normal_point(policy.attachment_point)
    encoded = urllib.parse.quote(point[2:], safe="")
    policy_id = policy.name.rsplit("/", 1)[-1]
    rules = []
    for rule in policy.rules:
        deny = iam_v2.DenyRule(
            denied_principals=list(rule.denied_principals),
            exception_principals=list(rule.exception_principals),
            denied_permissions=list(rule.denied_permissions),
            exception_permissions=list(rule.exception_permissions),
        )
        if rule.denial_condition is not None:
            deny.denial_condition = expr_pb2.Expr(
                expression=rule.denial_condition.expression,
                title=rule.denial_condition.title,
                description=rule.denial_condition.description,
            )
        rules.append(iam_v2.PolicyRule(deny_rule=deny))
    return iam_v2.Policy(
        name=f"policies/{encoded}/denypolicies/{policy_id}",
        uid=policy_id,
        kind="DenyPolicy",
        etag=policy.etag or "zt",
        rules=rules,
    )


def _deny_parent(world: World, parent: str) -> str:
    match = re.match(r"^policies/([^/]+)/denypolicies$", parent)
    if not match:
        raise EmulatorError(
            "INVALID_ARGUMENT",
            f"invalid parent {parent!r}: expected policies/ATTACHMENT_POINT/denypolicies "
            "with the attachment point URL-encoded",
        )
    return _attachment(world, match.group(1))


def list_policies(world: World, request: Any, caller: str | None) -> Any:
    """Policies.ListPolicies for one attachment point (paginated, default 1000)."""
    point = _deny_parent(world, request.parent)
    world.authorize(caller, "iam.denypolicies.list", point)
    with world.lock:
        found = [p for p in world.deny_policies if _point_of(world, p) == point]
    items, token = page(found, request.page_size, request.page_token, 1000)
    return iam_v2.ListPoliciesResponse(
        policies=[_deny_message(world, p) for p in items], next_page_token=token
    )


def get_policy(world: World, request: Any, caller: str | None) -> Any:
    """Policies.GetPolicy."""
    parent, _, policy_id = request.name.rpartition("/")
    point = _deny_parent(world, parent)
    world.authorize(caller, "iam.denypolicies.get", point)
    with world.lock:
        for policy in world.deny_policies:
            if _point_of(world, policy) == point and policy.name.rsplit("/", 1)[-1] == policy_id:
                return _deny_message(world, policy)
    raise EmulatorError("NOT_FOUND", f"policy {request.name} not found")


# -- Cloud Asset ---------------------------------------------------------------------------------


def search_all_iam_policies(world: World, request: Any, caller: str | None) -> Any:
    """AssetService.SearchAllIamPolicies (query: see :mod:`.asset_query`), pages of 100."""
    kind, _, ident = request.scope.partition("/")
    if kind not in ("projects", "folders", "organizations") or not ident:
        raise EmulatorError("INVALID_ARGUMENT", f"invalid scope {request.scope!r}")
    if kind == "projects":
        ident = _project_of(world, ident)
    scope = f"{CRM}{kind}/{ident}"
    world.authorize(caller, "cloudasset.assets.searchAllIamPolicies", scope)
    try:
        clauses = asset_query.parse(request.query)
    except asset_query.QueryError as exc:
        raise EmulatorError("INVALID_ARGUMENT", f"query {request.query!r}: {exc}") from exc
    snapshot = world.snapshot()
    # the same search of the same world has the same matches (every page of a search, and a
    # live check asks the same one each time): worked out once per world version
    with world.lock:
        held, memo = world.search_memo
        if held is not snapshot:
            memo = {}
            world.search_memo = (snapshot, memo)
        matches = memo.get((scope, request.query))
    if matches is None:
        matches = _search_matches(snapshot, scope, clauses)
        with world.lock:
            memo[(scope, request.query)] = matches
    items, token = page(matches, request.page_size, request.page_token, 100)
    # raw protobuf messages, built for this page only (proto-plus wrappers cost more than
    # the search itself, and the emulator's CPU is shared with the client it serves)
    result_type = asset_v1.IamPolicySearchResult.pb()
    results = []
    for name, node, chain, bindings in items:
        project = next((n for n in chain if n.kind == "project"), None)
        results.append(
            result_type(
                resource=name,
                asset_type=ASSET_TYPES.get(node.kind, ""),
                project=(
                    f"projects/{world.project_number(project.name.rsplit('/', 1)[1])}"
                    if project
                    else ""
                ),
                folders=[_short(n.name) for n in chain if n.kind == "folder"],
                organization=next((_short(n.name) for n in chain if n.kind == "organization"), ""),
                policy=policies.to_proto(
                    AllowPolicy(bindings=tuple(bindings), etag=node.policy.etag)  # type: ignore[union-attr]
                ),
            )
        )
    return asset_v1.SearchAllIamPoliciesResponse.pb()(results=results, next_page_token=token)


def _search_matches(snapshot: Snapshot, scope: str, clauses: Any) -> list[Any]:
    """``(name, node, ancestors, matching bindings)`` of every policy under ``scope``."""
    matches = []
    for name in sorted(snapshot.nodes):
        node = snapshot.nodes[name]
        if node.policy is None:
            continue
        chain = snapshot.ancestors(name)
        if scope not in {n.name for n in chain}:
            continue
        bindings = [
            b
            for b in node.policy.bindings
            if asset_query.binding_matches(clauses, name, b, snapshot.roles.get)
        ]
        if bindings:
            matches.append((name, node, chain, bindings))
    return matches


_KEY_TYPE = "iam.googleapis.com/ServiceAccountKey"


def search_all_resources(world: World, request: Any, caller: str | None) -> Any:
    """AssetService.SearchAllResources for service-account keys (the one type served).

    Added by the live-mode adapters (helper D): keys in bulk, one call per scope instead of
    one ``ListServiceAccountKeys`` per account.
    """
    kind, _, ident = request.scope.partition("/")
    if kind not in ("projects", "folders", "organizations") or not ident:
        raise EmulatorError("INVALID_ARGUMENT", f"invalid scope {request.scope!r}")
    if kind == "projects":
        ident = _project_of(world, ident)
    if list(request.asset_types) != [_KEY_TYPE] or request.query:
        raise EmulatorError(
            "UNIMPLEMENTED",
            f"the emulator searches only asset_types=[{_KEY_TYPE!r}] with an empty query",
        )
    scope = f"{CRM}{kind}/{ident}"
    world.authorize(caller, "cloudasset.assets.searchAllResources", scope)
    snapshot = world.snapshot()
    results = []
    for email in sorted(snapshot.service_accounts):
        sa = snapshot.service_accounts[email]
        project_name = f"{CRM}projects/{sa.project_id}"
        chain = snapshot.ancestors(project_name)
        if scope not in {n.name for n in chain}:
            continue
        parent = f"{IAM}projects/{sa.project_id}/serviceAccounts/{sa.email}"
        for key in sa.user_managed_keys:
            key_id = key.rsplit("/", 1)[-1]
            results.append(
                asset_v1.ResourceSearchResult(
                    name=f"{parent}/keys/{key_id}",
                    asset_type=_KEY_TYPE,
                    project=f"projects/{world.project_number(sa.project_id)}",
                    folders=[_short(n.name) for n in chain if n.kind == "folder"],
                    organization=next(
                        (_short(n.name) for n in chain if n.kind == "organization"), ""
                    ),
                    parent_full_resource_name=parent,
                    parent_asset_type="iam.googleapis.com/ServiceAccount",
                )
            )
    items, token = page(results, request.page_size, request.page_token, 100)
    return asset_v1.SearchAllResourcesResponse(results=items, next_page_token=token)


# -- Policy Troubleshooter -----------------------------------------------------------------------

_ACCESS = policytroubleshooter_v1.AccessState


def _member_for(principal: str) -> str:
    if ":" in principal:
        return principal
    if principal.endswith(".gserviceaccount.com"):
        return "serviceAccount:" + principal
    return "user:" + principal


def troubleshoot_iam_policy(world: World, request: Any, caller: str | None) -> Any:
    """IamChecker.TroubleshootIamPolicy, answered by our engine (tri-state)."""
    world.authenticate(caller)
    tuple_ = request.access_tuple
    if not tuple_.principal or not tuple_.full_resource_name or not tuple_.permission:
        raise EmulatorError(
            "INVALID_ARGUMENT", "access_tuple needs principal, full_resource_name and permission"
        )
    member = _member_for(tuple_.principal)
    state_name = world.access(member, tuple_.full_resource_name, tuple_.permission)
    snapshot = world.snapshot()
    explained = []
    for node in snapshot.ancestors(tuple_.full_resource_name):
        if node.policy is None:
            continue
        explained.append(
            policytroubleshooter_v1.ExplainedPolicy(
                full_resource_name=node.name,
                policy=policies.to_proto(node.policy),
                access=getattr(_ACCESS, state_name),
            )
        )
    return policytroubleshooter_v1.TroubleshootIamPolicyResponse(
        access=getattr(_ACCESS, state_name), explained_policies=explained
    )


# -- the table of served methods -----------------------------------------------------------------

_IAM = "google.iam.admin.v1.IAM"
_PROJECTS = "google.cloud.resourcemanager.v3.Projects"
_FOLDERS = "google.cloud.resourcemanager.v3.Folders"
_ORGS = "google.cloud.resourcemanager.v3.Organizations"
_GET_POLICY = iam_policy_pb2.GetIamPolicyRequest
_SET_POLICY = iam_policy_pb2.SetIamPolicyRequest
_POLICY = policy_pb2.Policy
_TEST = iam_policy_pb2.TestIamPermissionsRequest
_TESTED = iam_policy_pb2.TestIamPermissionsResponse
t = iam_admin_v1


def _name(r: Any) -> str:
    return str(r.name)


def _resource(r: Any) -> str:
    return str(r.resource)


METHODS: tuple[GrpcMethod, ...] = (
    *(
        GrpcMethod(service, "TestIamPermissions", _TEST, _TESTED, _resource, False, impl, api)
        for service, impl, api in (
            (_IAM, _permission_tester(_sa_full), "iam"),
            (_PROJECTS, _permission_tester(_crm_full("projects")), "cloudresourcemanager"),
            (_FOLDERS, _permission_tester(_crm_full("folders")), "cloudresourcemanager"),
            (_ORGS, _permission_tester(_crm_full("organizations")), "cloudresourcemanager"),
        )
    ),
    GrpcMethod(
        _IAM,
        "GetServiceAccount",
        t.GetServiceAccountRequest,
        t.ServiceAccount,
        _name,
        False,
        get_service_account,
        "iam",
    ),
    GrpcMethod(
        _IAM,
        "ListServiceAccounts",
        t.ListServiceAccountsRequest,
        t.ListServiceAccountsResponse,
        _name,
        False,
        list_service_accounts,
        "iam",
    ),
    GrpcMethod(
        _IAM,
        "CreateServiceAccount",
        t.CreateServiceAccountRequest,
        t.ServiceAccount,
        _name,
        True,
        create_service_account,
        "iam",
    ),
    GrpcMethod(
        _IAM,
        "ListServiceAccountKeys",
        t.ListServiceAccountKeysRequest.pb(),  # raw: a key list is asked once per identity
        t.ListServiceAccountKeysResponse,
        _name,
        False,
        list_service_account_keys,
        "iam",
    ),
    GrpcMethod(_IAM, "GetRole", t.GetRoleRequest, t.Role, _name, False, get_role, "iam"),
    GrpcMethod(
        _IAM,
        "ListRoles",
        t.ListRolesRequest,
        t.ListRolesResponse,
        lambda r: str(r.parent),
        False,
        list_roles,
        "iam",
    ),
    GrpcMethod(
        _IAM,
        "CreateRole",
        t.CreateRoleRequest,
        t.Role,
        lambda r: f"{r.parent}/roles/{r.role_id}",
        True,
        create_role,
        "iam",
    ),
    GrpcMethod(_IAM, "UpdateRole", t.UpdateRoleRequest, t.Role, _name, True, update_role, "iam"),
    GrpcMethod(
        _IAM,
        "QueryTestablePermissions",
        t.QueryTestablePermissionsRequest,
        t.QueryTestablePermissionsResponse,
        lambda r: str(r.full_resource_name),
        False,
        permissions.query_testable_permissions,
        "iam",
    ),
    GrpcMethod(
        _IAM,
        "GetIamPolicy",
        _GET_POLICY,
        _POLICY,
        _resource,
        False,
        _policy_reader("iam.serviceAccounts.getIamPolicy", _sa_full),
        "iam",
    ),
    GrpcMethod(
        _IAM,
        "SetIamPolicy",
        _SET_POLICY,
        _POLICY,
        _resource,
        True,
        _policy_writer("iam.serviceAccounts.setIamPolicy", _sa_full),
        "iam",
    ),
    GrpcMethod(
        _PROJECTS,
        "GetProject",
        resourcemanager_v3.GetProjectRequest,
        resourcemanager_v3.Project,
        _name,
        False,
        get_project,
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _PROJECTS,
        "GetIamPolicy",
        _GET_POLICY,
        _POLICY,
        _resource,
        False,
        _policy_reader("resourcemanager.projects.getIamPolicy", _crm_full("projects")),
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _PROJECTS,
        "SetIamPolicy",
        _SET_POLICY,
        _POLICY,
        _resource,
        True,
        _policy_writer("resourcemanager.projects.setIamPolicy", _crm_full("projects")),
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _FOLDERS,
        "GetFolder",
        resourcemanager_v3.GetFolderRequest,
        resourcemanager_v3.Folder,
        _name,
        False,
        get_folder,
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _FOLDERS,
        "GetIamPolicy",
        _GET_POLICY,
        _POLICY,
        _resource,
        False,
        _policy_reader("resourcemanager.folders.getIamPolicy", _crm_full("folders")),
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _FOLDERS,
        "SetIamPolicy",
        _SET_POLICY,
        _POLICY,
        _resource,
        True,
        _policy_writer("resourcemanager.folders.setIamPolicy", _crm_full("folders")),
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _ORGS,
        "GetOrganization",
        resourcemanager_v3.GetOrganizationRequest,
        resourcemanager_v3.Organization,
        _name,
        False,
        get_organization,
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _ORGS,
        "GetIamPolicy",
        _GET_POLICY,
        _POLICY,
        _resource,
        False,
        _policy_reader("resourcemanager.organizations.getIamPolicy", _crm_full("organizations")),
        "cloudresourcemanager",
    ),
    GrpcMethod(
        _ORGS,
        "SetIamPolicy",
        _SET_POLICY,
        _POLICY,
        _resource,
        True,
        _policy_writer("resourcemanager.organizations.setIamPolicy", _crm_full("organizations")),
        "cloudresourcemanager",
    ),
    GrpcMethod(
        "google.iam.v2.Policies",
        "ListPolicies",
        iam_v2.ListPoliciesRequest,
        iam_v2.ListPoliciesResponse,
        lambda r: str(r.parent),
        False,
        list_policies,
        "iam",
    ),
    GrpcMethod(
        "google.iam.v2.Policies",
        "GetPolicy",
        iam_v2.GetPolicyRequest,
        iam_v2.Policy,
        _name,
        False,
        get_policy,
        "iam",
    ),
    GrpcMethod(
        "google.cloud.asset.v1.AssetService",
        "SearchAllResources",
        asset_v1.SearchAllResourcesRequest,
        asset_v1.SearchAllResourcesResponse,
        lambda r: str(r.scope),
        False,
        search_all_resources,
        "cloudasset",
    ),
    GrpcMethod(
        "google.cloud.asset.v1.AssetService",
        "SearchAllIamPolicies",
        asset_v1.SearchAllIamPoliciesRequest,
        asset_v1.SearchAllIamPoliciesResponse,
        lambda r: str(r.scope),
        False,
        search_all_iam_policies,
        "cloudasset",
    ),
    GrpcMethod(
        "google.cloud.policytroubleshooter.v1.IamChecker",
        "TroubleshootIamPolicy",
        policytroubleshooter_v1.TroubleshootIamPolicyRequest,
        policytroubleshooter_v1.TroubleshootIamPolicyResponse,
        lambda r: str(r.access_tuple.full_resource_name),
        False,
        troubleshoot_iam_policy,
        "policytroubleshooter",
    ),
)

__all__ = ["METHODS", "GrpcMethod", "build_handlers"]
