"""IAM Admin v1 adapter (gRPC only): service accounts, keys, their policies, roles."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter, Page, Started
from zt_pipelines.gcp.convert import policy_from_proto
from zt_pipelines.policy.snapshot import AllowPolicy, Role, ServiceAccount
from zt_pipelines.resources import service_account_resource


def _raw(message: Any) -> Any:
    """The protobuf under a proto-plus wrapper (field access on it is many times cheaper:
    listings return hundreds of accounts, roles thousands of permissions)."""
    unwrap = getattr(type(message), "pb", None)
    return unwrap(message) if unwrap is not None else message


def _account(wrapped: Any) -> ServiceAccount:
    proto = _raw(wrapped)
    if not proto.email:
        raise ValueError("service account without an email")
    return ServiceAccount(
        email=str(proto.email).lower(),
        project_id=str(proto.project_id),
        unique_id=str(proto.unique_id or ""),
        disabled=bool(proto.disabled),
        display_name=str(proto.display_name or ""),
    )


def _role(wrapped: Any) -> Role:
    proto = _raw(wrapped)
    if not proto.name:
        raise ValueError("role without a name")
    stage = _stage_name(proto.stage)
    return Role(
        name=str(proto.name),
        permissions=frozenset(str(p) for p in proto.included_permissions),
        title=str(proto.title or ""),
        stage=stage,
        deleted=bool(proto.deleted),
    )


def _stage_name(stage: Any) -> str:
    """A launch stage as its name (``GA``), from the enum or the raw number."""
    if hasattr(stage, "name"):
        return str(stage.name)
    from google.cloud import iam_admin_v1

    try:
        return str(iam_admin_v1.Role.RoleLaunchStage(stage).name)
    except ValueError:
        return str(stage)


def _keys_request(email: str) -> Any:
    from google.cloud import iam_admin_v1

    return iam_admin_v1.ListServiceAccountKeysRequest(
        name=f"projects/-/serviceAccounts/{email}",
        key_types=[iam_admin_v1.ListServiceAccountKeysRequest.KeyType.USER_MANAGED],
    )


def _key_names(response: Any) -> tuple[str, ...]:
    from google.cloud import iam_admin_v1

    system = int(iam_admin_v1.ListServiceAccountKeysRequest.KeyType.SYSTEM_MANAGED)
    # proto-plus answers carry the enum, raw protobuf ones its number: compare numbers
    return tuple(sorted(str(key.name) for key in response.keys if int(key.key_type) != system))


def _policy_request(email: str) -> Any:
    from google.iam.v1 import iam_policy_pb2, options_pb2

    return iam_policy_pb2.GetIamPolicyRequest(
        resource=f"projects/-/serviceAccounts/{email}",
        options=options_pb2.GetPolicyOptions(requested_policy_version=3),
    )


class IamAdminAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.IamAdminReader`."""

    def list_service_accounts(self, project: str) -> list[ServiceAccount]:
        """Every service account of ``project`` (all pages)."""
        return self.list_service_accounts_after(project, "")

    def start_list_service_accounts(self, project: str) -> Started[Page[ServiceAccount]] | None:
        """The first page of :meth:`list_service_accounts`, without waiting (``None``: use the
        blocking method; a next page: :meth:`list_service_accounts_after`)."""
        from google.cloud import iam_admin_v1

        name = f"projects/{project}"
        return self.start(
            self.factory.iam_admin(),
            "/google.iam.admin.v1.IAM/ListServiceAccounts",
            iam_admin_v1.ListServiceAccountsRequest.pb()(name=name, page_size=self.page(100)),
            iam_admin_v1.ListServiceAccountsResponse.pb(),
            lambda response: Page(
                [_account(sa) for sa in response.accounts], str(response.next_page_token)
            ),
            what="serviceAccounts.list",
            target=f"//cloudresourcemanager.googleapis.com/projects/{project}",
            routing=(("name", name),),
        )

    def list_service_accounts_after(self, project: str, token: str) -> list[ServiceAccount]:
        """:meth:`list_service_accounts` from the page ``token`` names on (``""``: all)."""
        client = self.factory.iam_admin()
        request: dict[str, Any] = {"name": f"projects/{project}", "page_size": self.page(100)}
        if token:
            request["page_token"] = token
        return self.call(
            lambda: [
                _account(sa)
                for sa in client.list_service_accounts(request=request, **self.gapic_kwargs())
            ],
            what="serviceAccounts.list",
            target=f"//cloudresourcemanager.googleapis.com/projects/{project}",
        )

    def get_service_account(self, email: str) -> ServiceAccount:
        """One service account."""
        client = self.factory.iam_admin()
        return self.call(
            lambda: _account(
                client.get_service_account(
                    name=f"projects/-/serviceAccounts/{email}", **self.gapic_kwargs()
                )
            ),
            what="serviceAccounts.get",
            target=service_account_resource(email),
        )

    def list_user_managed_keys(self, email: str) -> tuple[str, ...]:
        """Names of the account's user-managed keys."""
        client = self.factory.iam_admin()
        request = _keys_request(email)
        return self.call(
            lambda: _key_names(
                client.list_service_account_keys(request=request, **self.gapic_kwargs())
            ),
            what="serviceAccountKeys.list",
            target=service_account_resource(email),
        )

    def start_list_user_managed_keys(self, email: str) -> Started[tuple[str, ...]] | None:
        """:meth:`list_user_managed_keys`'s first attempt, without waiting (``None``: the
        transport cannot; use the blocking method)."""
        from google.cloud import iam_admin_v1

        kinds = iam_admin_v1.ListServiceAccountKeysRequest
        request = kinds.pb()(
            name=f"projects/-/serviceAccounts/{email}",
            key_types=[int(kinds.KeyType.USER_MANAGED)],
        )
        return self.start(
            self.factory.iam_admin(),
            "/google.iam.admin.v1.IAM/ListServiceAccountKeys",
            request,
            iam_admin_v1.ListServiceAccountKeysResponse.pb(),
            _key_names,
            what="serviceAccountKeys.list",
            target=service_account_resource(email),
            routing=(("name", request.name),),
        )

    def get_service_account_policy(self, email: str) -> AllowPolicy:
        """The allow policy on the service account as a resource."""
        client = self.factory.iam_admin()
        request = _policy_request(email)
        return self.call(
            lambda: policy_from_proto(
                client.get_iam_policy(request=request, **self.gapic_kwargs())
            ),
            what="serviceAccounts.getIamPolicy",
            target=service_account_resource(email),
        )

    def start_service_account_policy(self, email: str) -> Started[AllowPolicy] | None:
        """:meth:`get_service_account_policy`'s first attempt, without waiting (``None``: the
        transport cannot; use the blocking method)."""
        from google.iam.v1 import policy_pb2

        request = _policy_request(email)
        return self.start(
            self.factory.iam_admin(),
            "/google.iam.admin.v1.IAM/GetIamPolicy",
            request,
            policy_pb2.Policy,
            policy_from_proto,
            what="serviceAccounts.getIamPolicy",
            target=service_account_resource(email),
            routing=(("resource", request.resource),),
        )

    def get_role(self, name: str) -> Role:
        """A predefined or custom role with its permissions."""
        client = self.factory.iam_admin()
        return self.call(
            lambda: _role(client.get_role(request={"name": name}, **self.gapic_kwargs())),
            what="roles.get",
            target=name,
        )

    def start_get_role(self, name: str) -> Started[Role] | None:
        """:meth:`get_role`'s first attempt, without waiting (``None``: use the blocking
        method)."""
        from google.cloud import iam_admin_v1

        return self.start(
            self.factory.iam_admin(),
            "/google.iam.admin.v1.IAM/GetRole",
            iam_admin_v1.GetRoleRequest.pb()(name=name),
            iam_admin_v1.Role.pb(),
            _role,
            what="roles.get",
            target=name,
            routing=(("name", name),),
        )

    def list_custom_roles(self, parent: str) -> list[Role]:
        """Every custom role of ``projects/P`` or ``organizations/O`` (FULL view, all pages)."""
        from google.cloud import iam_admin_v1

        client = self.factory.iam_admin()
        request = {
            "parent": parent,
            "view": iam_admin_v1.RoleView.FULL,
            "page_size": self.page(1000),
        }
        return self.call(
            lambda: [_role(r) for r in client.list_roles(request=request, **self.gapic_kwargs())],
            what="roles.list",
            target=parent,
        )

    def query_testable_permissions(self, full_resource_name: str) -> dict[str, str]:
        """Permission → custom-role support level (``SUPPORTED``, ``TESTING``,
        ``NOT_SUPPORTED``) for every permission testable on ``full_resource_name`` (a
        ``//cloudresourcemanager.googleapis.com/projects/P`` or ``.../organizations/O``): what
        a custom role created there may contain (all pages)."""
        from google.cloud import iam_admin_v1

        client = self.factory.iam_admin()
        levels = iam_admin_v1.Permission.CustomRolesSupportLevel
        request = {"full_resource_name": full_resource_name, "page_size": self.page(1000)}
        return self.call(
            lambda: {
                # proto3: an absent level reads SUPPORTED, as IAM documents for the field
                str(p.name): levels(p.custom_roles_support_level).name
                for p in client.query_testable_permissions(request=request, **self.gapic_kwargs())
            },
            what="permissions.queryTestablePermissions",
            target=full_resource_name,
        )
