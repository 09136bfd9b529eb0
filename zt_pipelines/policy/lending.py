"""Identities Google services lend their callers (pure data, one table).

Some Google services act on a caller's request with an identity of their own — a service agent
or a default service account — and ask the caller for no ``actAs`` on it. Whoever holds the
permission that makes the request then uses that identity: all of what it holds (a job whose
code runs as it, a deployment it carries out), or only some (the reads Vertex AI makes to
upload a model). :data:`LENDERS` is the one table of them; the reach graph (ZT216/ZT224:
what a pipeline identity reaches through them), the inbound check (ZT220: who can drive an
identity that can become a pipeline identity) and the live fetch (which accounts to search)
all read it.

Each entry is checked against Google's documentation (``source``). Pure: no IO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

__all__ = [
    "LENDERS",
    "RESOURCE_PREFIXES",
    "REVIEWED",
    "Lender",
    "lender_of",
    "lent_accounts",
    "lent_permissions",
    "lent_reads_only",
    "on_resource",
]


@dataclass(frozen=True, slots=True)
class Lender:
    """A Google service that acts for its caller as its own identity.

    Attributes:
        permissions: the permissions whose holder (on a project, or above it) makes the
            service act; held on a project, they lend that project's identity.
        account: the lent account's email, ``{number}`` standing for the project number; a
            regular expression (``re:``) for accounts created per resource (a BigQuery
            connection's), matched against the accounts the IAM state names.
        label: the edge's name in a path (``a CustomJob without a service account``).
        what: the lent identity, for messages.
        lends: the permissions of the identity the caller uses (``None``: everything it holds —
            the caller's code or declarations run as it).
        source: the Google documentation the entry is written from.
        writes: the lent part writes where the caller says (refused like a full lend, ZT216);
            reads and calls only are a warning (ZT224).
        labels: (permission, edge name) where a permission makes the service act in another
            way than ``label`` says (a function deploy builds as the default build account).
    """

    permissions: frozenset[str]
    account: str
    label: str
    what: str
    lends: frozenset[str] | None = None
    source: str = ""
    writes: bool = False
    labels: tuple[tuple[str, str], ...] = ()

    def label_for(self, granted: frozenset[str] | set[str]) -> str:
        """The edge's name when ``granted`` (some of :attr:`permissions`) is what is held."""
        if not self.labels:
            return self.label
        other = [label for permission, label in self.labels if permission in granted]
        own = any(p in granted for p in self.permissions if p not in dict(self.labels))
        return self.label if own or not other else other[0]

    def email(self, number: str) -> str | None:
        """The lent account of project ``number`` (``None``: one per resource, see
        :meth:`matches`)."""
        return None if self.account.startswith("re:") else self.account.format(number=number)

    def matches(self, email: str, number: str) -> bool:
        """``email`` is an account this service lends in project ``number``."""
        if not self.account.startswith("re:"):
            return email == self.account.format(number=number)
        return re.fullmatch(self.account[3:].format(number=re.escape(number)), email) is not None


_STORAGE_READ = frozenset({"storage.objects.get", "storage.objects.list"})

#: who makes a build run as the project's default build account. A function deploy
#: (https://cloud.google.com/functions/docs/securing/build-custom-sa: "By default, Cloud Run
#: functions uses the default Cloud Build service account as the principal when performing
#: your build") and a Cloud Run source deploy (a service's BuildConfig without a build
#: service account: https://cloud.google.com/run/docs/configuring/services/build-service-account)
#: check the deployer's actAs on the runtime account only; the build runs the deployer's
#: source (install scripts, buildpacks) as the default build account, started by the
#: service's agent. ``cloudfunctions.functions.sourceCodeSet`` only uploads source (no build).
_DEFAULT_BUILD_LABELS: tuple[tuple[str, str], ...] = (
    ("cloudfunctions.functions.create", "a function deploy (its build)"),
    ("cloudfunctions.functions.update", "a function deploy (its build)"),
    ("run.services.create", "a Cloud Run source deploy (its build)"),
    ("run.services.update", "a Cloud Run source deploy (its build)"),
)
_DEFAULT_BUILD = frozenset({"cloudbuild.builds.create"} | {p for p, _ in _DEFAULT_BUILD_LABELS})

#: permission -> the identity a Google service lends its holder (see :class:`Lender`)
LENDERS: tuple[Lender, ...] = (
    Lender(
        frozenset(
            {
                "aiplatform.customJobs.create",
                "aiplatform.hyperparameterTuningJobs.create",
                "aiplatform.trainingPipelines.create",
                # a NAS job's trials are CustomJobs (CustomJobSpec without serviceAccount)
                "aiplatform.nasJobs.create",
                # ServiceAccountSpec.enableCustomServiceAccount false: workloads (Ray) run as it
                "aiplatform.persistentResources.create",
            }
        ),
        "service-{number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com",
        "a CustomJob without a service account",
        "the Vertex AI Custom Code Service Agent",
        source="https://cloud.google.com/vertex-ai/docs/general/custom-service-account",
    ),
    Lender(
        # without strict act-as mode (a repository flag the IAM state does not hold) a
        # repository's workflows run as the Dataform service agent, no actAs asked
        frozenset(
            {
                "dataform.repositories.create",
                "dataform.repositories.update",
                "dataform.workflowConfigs.create",
                "dataform.workflowConfigs.update",
                "dataform.workflowInvocations.create",
                "dataform.releaseConfigs.update",
            }
        ),
        "service-{number}@gcp-sa-dataform.iam.gserviceaccount.com",
        "a Dataform workflow",
        "the Dataform service agent",
        source="https://cloud.google.com/dataform/docs/strict-act-as-mode",
    ),
    Lender(
        frozenset({"aiplatform.reasoningEngines.create", "aiplatform.reasoningEngines.update"}),
        "service-{number}@gcp-sa-aiplatform-re.iam.gserviceaccount.com",
        "an Agent Engine without a service account",
        "the Vertex AI Reasoning Engine Service Agent",
        source="https://cloud.google.com/vertex-ai/docs/reference/rest/v1/"
        "projects.locations.reasoningEngines",
    ),
    Lender(
        # a deployment creates whatever it declares (keys, bindings, VMs) as this account,
        # which Google grants roles/editor on the project
        frozenset({"deploymentmanager.deployments.create", "deploymentmanager.deployments.update"}),
        "{number}@cloudservices.gserviceaccount.com",
        "a Deployment Manager deployment",
        "the Google APIs Service Agent",
        source="https://cloud.google.com/iam/docs/service-agents",
    ),
    Lender(
        # a build without a service account runs as one of the two, by organisation settings
        _DEFAULT_BUILD,
        "{number}@cloudbuild.gserviceaccount.com",
        "a build without a service account",
        "the legacy Cloud Build service account",
        source="https://cloud.google.com/build/docs/cloud-build-service-account",
        labels=_DEFAULT_BUILD_LABELS,
    ),
    Lender(
        _DEFAULT_BUILD,
        "{number}-compute@developer.gserviceaccount.com",
        "a build without a service account",
        "the Compute Engine default service account (Cloud Build's default by organisation "
        "settings)",
        source="https://cloud.google.com/build/docs/cloud-build-service-account",
        labels=_DEFAULT_BUILD_LABELS,
    ),
    Lender(
        # UploadModelRequest.serviceAccount empty (GCPC's upload never sets it): the agent
        # reads the artifact URI the caller names, and the serving image
        frozenset({"aiplatform.models.upload"}),
        "service-{number}@gcp-sa-aiplatform.iam.gserviceaccount.com",
        "a model upload",
        "the Vertex AI Service Agent",
        lends=_STORAGE_READ | {"artifactregistry.repositories.downloadArtifacts"},
        source="https://cloud.google.com/vertex-ai/docs/reference/rest/v1/"
        "projects.locations.models/upload",
    ),
    Lender(
        # a BigQuery or Cloud Storage subscription without serviceAccountEmail writes as the
        # Pub/Sub service agent, into the table or bucket the caller names
        frozenset({"pubsub.subscriptions.create", "pubsub.subscriptions.update"}),
        "service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com",
        "a BigQuery or Cloud Storage subscription",
        "the Pub/Sub service agent",
        lends=frozenset(
            {
                "bigquery.tables.get",
                "bigquery.tables.updateData",
                "storage.buckets.get",
                "storage.objects.create",
            }
        ),
        source="https://cloud.google.com/pubsub/docs/bigquery",
        writes=True,
    ),
    Lender(
        # a transfer job copies between the buckets its creator names as the project's Storage
        # Transfer agent (which, not the caller, needs access to them): reads and writes
        frozenset({"storagetransfer.jobs.create", "storagetransfer.jobs.update"}),
        "project-{number}@storage-transfer-service.iam.gserviceaccount.com",
        "a Storage Transfer job",
        "the Storage Transfer Service agent",
        lends=_STORAGE_READ
        | {"storage.buckets.get", "storage.objects.create", "storage.objects.delete"},
        source="https://cloud.google.com/storage-transfer/docs/sink-cloud-storage",
        writes=True,
    ),
    Lender(
        # BigLake / external tables, remote functions and remote models reach Cloud Storage,
        # Cloud Run / Functions and Vertex AI as the connection's account
        frozenset({"bigquery.connections.use", "bigquery.connections.delegate"}),
        r"re:(?:bqcx-{number}-[a-z0-9]+@gcp-sa-bigquery-condel"
        r"|service-{number}@gcp-sa-bigquery-cloudresource)\.iam\.gserviceaccount\.com",
        "a BigQuery connection",
        "a BigQuery connection's service account",
        lends=_STORAGE_READ
        | {
            "aiplatform.endpoints.predict",
            "cloudfunctions.functions.invoke",
            "run.routes.invoke",
        },
        source="https://cloud.google.com/bigquery/docs/create-cloud-resource-connection",
    ),
)

#: creates that start workloads, reviewed and found to lend no identity (or not yet decided:
#: "open"): permission -> why. tests/test_lending.py walks every Vertex AI one of the
#: predefined-role catalogue against LENDERS and this list, so a new one is reviewed; the
#: others are the neighbours of a lender looked at once.
REVIEWED: dict[str, str] = {
    "cloudfunctions.functions.sourceCodeSet": "uploads a function's source (generateUploadUrl); "
    "only a create or update builds it",
    "clouddeploy.releases.create": "render and deploy run as the execution service account "
    "(the Compute Engine default by default), and the caller needs actAs on it "
    "(https://cloud.google.com/deploy/docs/cloud-deploy-service-account)",
    "clouddeploy.rollouts.create": "as clouddeploy.releases.create",
    "appengine.versions.create": "open: a deploy asks actAs on the version's runtime account; "
    "which account runs its build is not verified",
    "aiplatform.batchPredictionJobs.create": "the container runs as the serviceAccount named, "
    "else a system-generated account with minimal permissions (BatchPredictionJob)",
    "aiplatform.dataLabelingJobs.create": "human labelers; no caller code",
    "aiplatform.notebookExecutionJobs.create": "runs as the serviceAccount or the end user named "
    "(NotebookExecutionJob: one of them is required)",
    "aiplatform.pipelineJobs.create": "open: without a serviceAccount a run uses the Compute "
    "Engine default account; whether Vertex asks actAs on it is not documented (zt-pipelines "
    "refuses its own submissions under a default identity, ZT100)",
    "aiplatform.tuningJobs.create": "open: Google's tuning code reads the caller's dataset as "
    "the tuning service agent unless serviceAccount is set (a read lend, not modelled)",
    "aiplatform.edgeDeploymentJobs.create": "open: not reviewed against Google's docs",
    "aiplatform.featureMonitorJobs.create": "open: Google's code reads BigQuery as the Vertex "
    "AI Service Agent (a read lend, not modelled)",
    "aiplatform.modelDeploymentMonitoringJobs.create": "open: Google's code reads the "
    "endpoint's logged requests as the Vertex AI Service Agent (a read lend, not modelled)",
    "aiplatform.modelMonitoringJobs.create": "open: as modelDeploymentMonitoringJobs",
}

#: every permission that lends an identity
LENDING_PERMISSIONS: frozenset[str] = frozenset(p for lender in LENDERS for p in lender.permissions)

#: resources below a project whose own allow policy can grant a lending permission (Google's
#: per-resource sharing: a Cloud Run service, a function, a Dataform repository, a BigQuery
#: connection, a Pub/Sub subscription, a deployment): full-name prefix -> the permission
#: prefix that applies there
_RESOURCE_SERVICES: dict[str, str] = {
    "//run.googleapis.com/": "run.services.",
    "//cloudfunctions.googleapis.com/": "cloudfunctions.functions.",
    "//dataform.googleapis.com/": "dataform.",
    "//bigqueryconnection.googleapis.com/": "bigquery.connections.",
    "//pubsub.googleapis.com/": "pubsub.subscriptions.",
    "//deploymentmanager.googleapis.com/": "deploymentmanager.deployments.",
}
RESOURCE_PREFIXES: tuple[str, ...] = tuple(_RESOURCE_SERVICES)


@lru_cache(maxsize=64)
def _restricted(lender: Lender, permissions: frozenset[str]) -> Lender:
    return replace(lender, permissions=lender.permissions & permissions)


def on_resource(name: str) -> list[Lender]:
    """The lenders a grant on resource ``name`` (below a project) can make act, each reduced to
    the lending permissions that apply on that resource (empty: none)."""
    for prefix, permission_prefix in _RESOURCE_SERVICES.items():
        if name.startswith(prefix):
            applies = frozenset(p for p in LENDING_PERMISSIONS if p.startswith(permission_prefix))
            return [
                _restricted(lender, applies)
                for lender in LENDERS
                if not lender.permissions.isdisjoint(applies)
            ]
    return []


_NUMBER = re.compile(r"(?:service-|bqcx-|project-)?([0-9]+)(?:-compute|-[a-z0-9]+)?@")


def lent_accounts(number: str) -> list[tuple[str, Lender]]:
    """The fixed-name accounts project ``number`` lends (per-resource ones are not named)."""
    return [(email, lender) for lender in LENDERS if (email := lender.email(number)) is not None]


@lru_cache(maxsize=4096)
def lender_of(email: str) -> tuple[str, Lender] | None:
    """(project number, lender) of an account a Google service lends (``None``: not one)."""
    m = _NUMBER.match(email)
    if m is None:
        return None
    number = m.group(1)
    for lender in LENDERS:
        if lender.matches(email, number):
            return number, lender
    return None


def lent_permissions(email: str) -> frozenset[str] | None:
    """What a caller uses of ``email``'s permissions when a service lends it: only these
    (``None``: all of them, or not a lent account)."""
    found = lender_of(email)
    return found[1].lends if found else None


def lent_reads_only(email: str) -> bool:
    """``email`` is lent only for reads and calls (ZT224, a warning), not in full nor to
    write where the caller says (ZT216)."""
    found = lender_of(email)
    return found is not None and found[1].lends is not None and not found[1].writes
