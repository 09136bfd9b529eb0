"""The seam between the fetch plan and Google: one Protocol per capability.

Each adapter module implements one of these with an official client library and returns the
shared snapshot dataclasses (:mod:`zt_pipelines.policy.snapshot`). Every method either returns
what Google said or raises :class:`zt_pipelines.errors.ApiError` (after retries); nothing else
escapes an adapter, and no adapter ever turns a failed read into an empty answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zt_pipelines.policy.snapshot import (
    AclEntry,
    AllowPolicy,
    DenyPolicy,
    Entitlement,
    Node,
    Role,
    ServiceAccount,
)


@dataclass(frozen=True)
class DenyPolicyRef:
    """A deny policy as ``ListPolicies`` describes it: name and etag, never its rules."""

    name: str
    etag: str


@dataclass(frozen=True)
class PolicySearchHit:
    """One Cloud Asset ``SearchAllIamPolicies`` result.

    Attributes:
        resource: full resource name the policy is attached to.
        asset_type: e.g. ``storage.googleapis.com/Bucket``.
        project: ``projects/NUMBER`` of the resource, if any.
        folders: ``folders/ID`` ancestors, nearest first.
        organization: ``organizations/ID``, if any.
        policy: the bindings that matched the query (Cloud Asset filters them).
    """

    resource: str
    asset_type: str
    project: str
    folders: tuple[str, ...]
    organization: str
    policy: AllowPolicy


@dataclass(frozen=True)
class KeyHit:
    """One service-account key from Cloud Asset ``SearchAllResources``.

    Attributes:
        name: ``//iam.googleapis.com/projects/P/serviceAccounts/ACCOUNT/keys/ID``.
        account: the account segment (an email, or the account's unique id).
        key_type: ``USER_MANAGED`` / ``SYSTEM_MANAGED`` when the index says, else ``""``.
    """

    name: str
    account: str
    key_type: str = ""


class HierarchyReader(Protocol):
    """Organisations, folders and projects (Resource Manager v3)."""

    def get_project(self, project: str) -> Node:
        """The project (id or number) with its parent and number; ``policy`` not filled."""
        ...

    def get_folder(self, folder_id: str) -> Node:
        """The folder with its parent."""
        ...

    def get_organization(self, org_id: str) -> Node:
        """The organisation."""
        ...

    def get_iam_policy(self, name: str) -> AllowPolicy:
        """The allow policy of an organisation, folder or project (full resource name)."""
        ...


class IamAdminReader(Protocol):
    """Service accounts, their keys and IAM policies, and roles (IAM Admin v1)."""

    def list_service_accounts(self, project: str) -> list[ServiceAccount]:
        """Every service account of ``project`` (all pages)."""
        ...

    def get_service_account(self, email: str) -> ServiceAccount:
        """One service account."""
        ...

    def list_user_managed_keys(self, email: str) -> tuple[str, ...]:
        """Names of the account's user-managed keys."""
        ...

    def get_service_account_policy(self, email: str) -> AllowPolicy:
        """The allow policy on the service account as a resource."""
        ...

    def get_role(self, name: str) -> Role:
        """A predefined or custom role with its permissions."""
        ...

    def list_custom_roles(self, parent: str) -> list[Role]:
        """Every custom role of ``projects/P`` or ``organizations/O``, with permissions."""
        ...

    def query_testable_permissions(self, full_resource_name: str) -> dict[str, str]:
        """Permission → custom-role support level, for every permission testable on the
        resource (``queryTestablePermissions``; all pages)."""
        ...


class StorageReader(Protocol):
    """Cloud Storage buckets (JSON API)."""

    def get_bucket_project_number(self, bucket: str) -> str:
        """The number of the project that owns ``bucket``."""
        ...

    def get_bucket_meta(
        self, bucket: str
    ) -> tuple[str, bool, tuple[AclEntry, ...] | None, tuple[AclEntry, ...] | None]:
        """The owning project's number, whether uniform bucket-level access is on, and when
        it is off the bucket ACL and default object ACL (``None``: not in the answer); one
        ``buckets.get`` with ``projection=full``."""
        ...

    def get_bucket_policy(self, bucket: str) -> AllowPolicy:
        """The bucket's allow policy (version 3, with conditions)."""
        ...

    def list_hmac_keys(self, project: str) -> dict[str, tuple[str, ...]]:
        """Service-account email (lower case) → access ids of its HMAC keys in ``project``
        that are not deleted (ACTIVE or INACTIVE; all pages)."""
        ...


class ApiKeysReader(Protocol):
    """API Keys (v2): keys bound to a service account."""

    def list_bound_keys(self, project: str) -> dict[str, tuple[str, ...]]:
        """Service-account email (lower case) → uids of the API keys of ``project`` bound to
        it (``serviceAccountEmail``; deleted keys excluded; all pages)."""
        ...


class PamReader(Protocol):
    """Privileged Access Manager: who may request which roles on a node."""

    def list_entitlements(self, node: str) -> list[Entitlement]:
        """Every entitlement on ``node`` (an organisation, folder or project full resource
        name; location ``global``; all pages)."""
        ...


class BigQueryReader(Protocol):
    """BigQuery datasets (access entries) and tables (IAM)."""

    def get_dataset_policy(self, project: str, dataset: str) -> AllowPolicy:
        """The dataset's access entries as an allow policy."""
        ...

    def get_table_policy(self, project: str, dataset: str, table: str) -> AllowPolicy:
        """The table's allow policy."""
        ...


class ConnectionReader(Protocol):
    """BigQuery connections: the service accounts they act as."""

    def list_connection_accounts(self, project: str, location: str) -> list[str]:
        """The service accounts of every connection of ``project`` in ``location``."""
        ...


class DenyReader(Protocol):
    """IAM v2 deny policies."""

    def list_deny_policies(self, attachment_point: str) -> list[DenyPolicyRef]:
        """Deny policies attached to an org/folder/project (full resource name); no rules."""
        ...

    def get_deny_policy(self, name: str, attachment_point: str) -> DenyPolicy:
        """One deny policy with its rules."""
        ...


class PolicySearcher(Protocol):
    """Cloud Asset Inventory IAM policy search."""

    def search_policies(self, scope: str, query: str) -> list[PolicySearchHit]:
        """Every policy in ``scope`` (``organizations/O``, ``folders/F``, ``projects/P``)
        matching ``query`` (all pages)."""
        ...

    def search_keys(self, scope: str) -> list[KeyHit]:
        """Every service-account key in ``scope`` (all pages)."""
        ...


class AccessTroubleshooter(Protocol):
    """Policy Troubleshooter: Google's own answer for one (principal, resource, permission)."""

    def troubleshoot(self, principal: str, resource: str, permission: str) -> str:
        """``GRANTED``, ``NOT_GRANTED``, ``UNKNOWN_CONDITIONAL`` or ``UNKNOWN_INFO_DENIED``."""
        ...


@dataclass(frozen=True)
class Adapters:
    """One implementation of every capability: what the fetch plan reads through."""

    hierarchy: HierarchyReader
    iam: IamAdminReader
    storage: StorageReader
    bigquery: BigQueryReader
    deny: DenyReader
    search: PolicySearcher
    troubleshooter: AccessTroubleshooter | None = None
    #: API keys bound to service accounts; ``None``: not readable (every listing unreadable)
    apikeys: ApiKeysReader | None = None
    #: Privileged Access Manager; ``None``: not readable (every listing unreadable)
    pam: PamReader | None = None
    #: BigQuery connections' accounts; ``None``: not readable (every listing unreadable)
    connections: ConnectionReader | None = None


# Every permission live mode exercises on the resources it reads: the role to give the identity
# that runs `zt-pipelines check` / `snapshot` (the emulator enforces exactly these).
READ_PERMISSIONS: frozenset[str] = frozenset(
    {
        "resourcemanager.projects.get",
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.folders.get",
        "resourcemanager.folders.getIamPolicy",
        "resourcemanager.organizations.get",
        "resourcemanager.organizations.getIamPolicy",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.list",
        # only when an identity holds bigquery.connections.use / delegate (lending.py)
        "bigquery.connections.list",
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccountKeys.list",
        "iam.roles.get",
        "iam.roles.list",
        "iam.denypolicies.get",
        "iam.denypolicies.list",
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "storage.hmacKeys.list",
        "apikeys.keys.list",
        "privilegedaccessmanager.entitlements.list",
        "bigquery.datasets.get",
        "bigquery.tables.getIamPolicy",
        "cloudasset.assets.searchAllIamPolicies",
        "cloudasset.assets.searchAllResources",
        # only when a step runs on a persistent resource
        "aiplatform.persistentResources.get",
        # segmentation: perimeters under requirePerimeter, networks of steps that have one
        "cloudasset.assets.listAccessPolicy",
        "compute.networks.get",
        "compute.subnetworks.get",
        "compute.networkAttachments.get",
        "compute.firewalls.list",
        "compute.globalAddresses.list",
        "aiplatform.endpoints.list",
    }
)


__all__: Sequence[str] = (
    "READ_PERMISSIONS",
    "AccessTroubleshooter",
    "Adapters",
    "ApiKeysReader",
    "BigQueryReader",
    "DenyPolicyRef",
    "DenyReader",
    "HierarchyReader",
    "IamAdminReader",
    "KeyHit",
    "PamReader",
    "PolicySearchHit",
    "PolicySearcher",
    "StorageReader",
)
