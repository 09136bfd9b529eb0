"""The ONE place that says which roles are basic and which permissions can escalate privilege.

Escalation-capable means: holding the permission lets a principal gain permissions it was not
granted — by impersonating another identity, minting credentials, changing an allow policy, or
redefining a role. The list follows the public GCP privilege-escalation research (Rhino
Security Labs' "GCP IAM privilege escalation", Google's "Service account impersonation" and
"Best practices for using service accounts" pages). Review it here, not elsewhere; the engine,
the reports and the docs (docs/findings.md, ZT212) all read it from this module.

Pure data and predicates: no IO.
"""

from __future__ import annotations

import re
from functools import lru_cache

from zt_pipelines.policy.snapshot import ROLE_STAGES, Role

#: Basic (primitive) roles: each grants thousands of permissions across every service (ZT211).
BASIC_ROLES: frozenset[str] = frozenset({"roles/owner", "roles/editor", "roles/viewer"})

#: Exact permissions that escalate, with why (ZT212).
ESCALATION_PERMISSIONS: dict[str, str] = {
    "iam.serviceAccounts.actAs": "run workloads as another service account",
    "iam.serviceAccounts.getAccessToken": "mint OAuth access tokens for another service account",
    "iam.serviceAccounts.getOpenIdToken": "mint OIDC identity tokens for another service account",
    "iam.serviceAccounts.signBlob": "sign blobs as another service account (self-signed tokens)",
    "iam.serviceAccounts.signJwt": "sign JWTs as another service account",
    "iam.serviceAccounts.implicitDelegation": "chain impersonation through another account",
    "iam.serviceAccountKeys.create": "create long-lived keys for a service account",
    "iam.serviceAccounts.update": "change a service account (e.g. re-enable it)",
    "iam.serviceAccounts.enable": "re-enable a disabled service account",
    "iam.serviceAccountKeys.enable": "re-enable a disabled service-account key",
    "iam.roles.create": "define a new role with arbitrary permissions",
    "iam.roles.update": "add permissions to an existing custom role",
    "iam.roles.undelete": "bring back a deleted role",
    "deploymentmanager.deployments.create": "deploy resources as the Deployment Manager agent",
    "cloudbuild.builds.create": "run builds as the Cloud Build service account",
    "cloudfunctions.functions.create": "deploy code that runs as a chosen service account",
    "cloudfunctions.functions.update": "change code that runs as a service account",
    "run.services.create": "deploy code that runs as a chosen service account",
    "run.services.update": "change code that runs as a service account",
    "compute.instances.setServiceAccount": "attach a service account to a VM",
    "compute.instances.setMetadata": "inject SSH keys / startup scripts into a VM",
    "compute.projects.setCommonInstanceMetadata": "inject SSH keys into every VM",
    "container.clusters.impersonate": "impersonate Kubernetes users and groups",
    "container.roles.create": "define Kubernetes RBAC roles",
    "container.roles.update": "change Kubernetes RBAC roles",
    "container.roles.escalate": "grant Kubernetes RBAC beyond one's own",
    "container.roles.bind": "bind Kubernetes RBAC roles",
    "container.clusterRoles.escalate": "grant Kubernetes RBAC beyond one's own",
    "container.clusterRoles.bind": "bind Kubernetes cluster roles",
    "orgpolicy.policy.set": "disable organisation policy constraints",
    "orgpolicy.policies.create": "override organisation policy constraints (Org Policy v2)",
    "orgpolicy.policies.update": "relax organisation policy constraints (Org Policy v2)",
    "orgpolicy.policies.delete": "remove organisation policy constraints (Org Policy v2)",
    "iam.denypolicies.update": "weaken a deny policy that limits what may be granted",
    "iam.denypolicies.delete": "remove a deny policy that limits what may be granted",
    "iam.googleapis.com/workloadIdentityPoolProviders.create": "trust outside identities",
    "iam.googleapis.com/workloadIdentityPoolProviders.update": "trust outside identities",
    "resourcemanager.projects.setIamPolicy": "grant any role on the project",
    "storage.hmacKeys.create": "create HMAC keys for a service account",
    "storage.hmacKeys.update": "re-activate an inactive HMAC key of a service account",
    # a key bound to the account is a static string its requests run as (Vertex AI takes it)
    "iam.serviceAccountApiKeyBindings.create": "bind an API key to a service account",
    # the string of a key bound to an account is that account's credential (Vertex AI)
    "apikeys.keys.getKeyString": "read API key strings, including keys bound to service accounts",
    "aiplatform.customJobs.create": "run code as a chosen service account (with actAs)",
    # Google runs caller-chosen code as ANOTHER identity, with no actAs check on the caller
    "dataproc.jobs.create": "run code on a Dataproc cluster as the cluster's service account",
    "dataproc.workflowTemplates.instantiateInline": (
        "run Dataproc jobs as a cluster's service account"
    ),
    "container.pods.exec": "run commands in a pod as its Kubernetes/node identity",
    "container.pods.attach": "attach to a running pod's processes (its identity)",
    "container.serviceAccounts.createToken": "mint tokens for a Kubernetes service account",
    "run.jobs.runWithOverrides": "run a Cloud Run job's identity with a changed command",
    "run.jobs.create": "deploy code that runs as a chosen service account",
    "run.jobs.update": "change code that runs as a Cloud Run job's service account",
    "deploymentmanager.deployments.update": "deploy resources as the Deployment Manager agent",
    "composer.environments.update": (
        "change a Composer environment's packages and settings (code as its service account)"
    ),
    "cloudbuild.builds.update": "change builds that run as the Cloud Build service account",
    # BigLake / external tables and remote functions reach data as the connection's account
    "bigquery.connections.use": "read Cloud Storage and call services as a BigQuery "
    "connection's service account",
    "bigquery.connections.delegate": "attach a BigQuery connection's service account to "
    "tables and routines",
}

#: Permission suffixes/patterns that escalate wherever they appear, with why.
ESCALATION_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\.setIamPolicy$"), "change who holds which role on the resource"),
    (re.compile(r"\.generateAccessToken$"), "mint access tokens"),
    (re.compile(r"\.impersonate[A-Za-z]*$"), "impersonate another principal"),
    (re.compile(r"\.actAs[A-Za-z]*$"), "act as another identity"),
    # a workload object makes the cluster run caller-chosen containers as any Kubernetes SA of
    # the namespace (and, through Workload Identity or the node, a Google identity)
    (
        re.compile(
            r"^container\.(pods|deployments|daemonSets|statefulSets|jobs|cronJobs|replicaSets"
            r"|replicationControllers)\.(create|update)$"
        ),
        "run containers in a cluster as its workload identities",
    ),
)


@lru_cache(maxsize=65536)
def escalation_reason(permission: str) -> str | None:
    """Why ``permission`` is escalation-capable, or ``None`` when it is not."""
    reason = ESCALATION_PERMISSIONS.get(permission)
    if reason is not None:
        return reason
    for pattern, why in ESCALATION_PATTERNS:
        if pattern.search(permission):
            return why
    return None


def is_basic_role(role: str) -> bool:
    """True for roles/owner, roles/editor and roles/viewer."""
    return role in BASIC_ROLES


def roles_from_catalogue(data: dict[str, object]) -> dict[str, Role]:
    """Turn a predefined-role catalogue into :class:`Role` objects.

    Accepts ``{"roles": {NAME: {"title", "stage", "includedPermissions"}}}`` (the shape of
    ``gcp-predefined-roles.json.gz`` and of the live adapters' cache) or the inner mapping,
    or a list of ``gcloud iam roles describe`` objects (``{"name", "includedPermissions"}``).
    """
    from zt_pipelines.errors import SnapshotError

    body: object = data.get("roles", data) if isinstance(data, dict) else data
    items: list[tuple[str, object]]
    if isinstance(body, dict):
        items = list(body.items())
    elif isinstance(body, list):
        items = [(str(r.get("name", "")) if isinstance(r, dict) else "", r) for r in body]
    else:
        raise SnapshotError("role catalogue is neither a mapping nor a list", where="$.roles")
    roles: dict[str, Role] = {}
    for name, spec in items:
        where = f"$.roles[{name!r}]"
        if not isinstance(spec, dict) or not isinstance(name, str) or not name:
            raise SnapshotError("role entry is not an object with a name", where=where)
        perms = spec.get("includedPermissions", [])
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise SnapshotError("includedPermissions must be a list of strings", where=where)
        stage = spec.get("stage", "GA")
        if stage not in ROLE_STAGES:  # never coerced: "disabled" or "DISABLED " is not a stage
            raise SnapshotError(
                f"stage {stage!r} is not one of {', '.join(ROLE_STAGES)}", where=where + ".stage"
            )
        deleted = spec.get("deleted", False)
        if not isinstance(deleted, bool):
            raise SnapshotError(f"deleted {deleted!r} is not true or false", where=where)
        roles[name] = Role(
            name=name,
            permissions=frozenset(perms),
            title=str(spec.get("title", "")),
            stage=stage,
            deleted=deleted,
        )
    return roles


def escalation_rank(permission: str) -> tuple[int, str]:
    """Sort key: the catalogue's order (most direct escalation first), then by name."""
    order = list(ESCALATION_PERMISSIONS)
    if permission in ESCALATION_PERMISSIONS:
        return (order.index(permission), permission)
    return (len(order), permission)
