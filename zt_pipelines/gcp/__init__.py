"""Live mode: the only place that talks to Google (or to the zt-pipelines emulator).

``fetch_snapshot`` reads the IAM state a check needs through the official client libraries and
returns a :class:`~zt_pipelines.policy.snapshot.Snapshot`; ``resolve_submitter`` says who the
credentials belong to. Point everything at the emulator with ``ZT_EMULATOR_HOST=HOST:PORT``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from zt_pipelines.errors import InputError
from zt_pipelines.gcp.apikeys import ApiKeysAdapter
from zt_pipelines.gcp.asset import AssetAdapter
from zt_pipelines.gcp.bigquery import BigQueryAdapter
from zt_pipelines.gcp.bq_connections import BigQueryConnectionAdapter
from zt_pipelines.gcp.cache import DEFAULT_TTL, DiskCache
from zt_pipelines.gcp.clients import (
    ClientFactory,
    emulator_aiplatform_init_kwargs,
    shared_factory,
)
from zt_pipelines.gcp.deny import DenyAdapter
from zt_pipelines.gcp.fetch import DEFAULT_SEARCH_BATCH, STRATEGIES, FetchPlan, Progress
from zt_pipelines.gcp.iam_admin import IamAdminAdapter
from zt_pipelines.gcp.interface import Adapters
from zt_pipelines.gcp.pam import PamAdapter
from zt_pipelines.gcp.progress import current as current_progress
from zt_pipelines.gcp.resourcemanager import ResourceManagerAdapter
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.gcp.storage import StorageAdapter
from zt_pipelines.gcp.submitter import Submitter, describe_submitter, resolve_submitter
from zt_pipelines.gcp.troubleshooter import TroubleshooterAdapter
from zt_pipelines.gcp.vertex import VertexAdapter, read_persistent_resources
from zt_pipelines.policy.snapshot import Snapshot

#: Environment variable choosing the live-mode strategy (``direct`` or ``inventory``).
STRATEGY_ENV = "ZT_LIVE_STRATEGY"

__all__ = [
    "Adapters",
    "ClientFactory",
    "DiskCache",
    "RetryPolicy",
    "Submitter",
    "build_adapters",
    "describe_submitter",
    "emulator_aiplatform_init_kwargs",
    "fetch_snapshot",
    "resolve_submitter",
]


def build_adapters(
    factory: ClientFactory, retry: RetryPolicy | None = None, *, page_size: int | None = None
) -> Adapters:
    """The official-client implementation of every capability, sharing one retry policy.

    ``page_size`` caps list/search pages (default: each API's largest); tests use small pages
    to exercise pagination.
    """
    policy = retry or RetryPolicy()
    kw = {"page_size": page_size}
    return Adapters(
        hierarchy=ResourceManagerAdapter(factory, policy, **kw),
        iam=IamAdminAdapter(factory, policy, **kw),
        storage=StorageAdapter(factory, policy, **kw),
        bigquery=BigQueryAdapter(factory, policy, **kw),
        deny=DenyAdapter(factory, policy, **kw),
        search=AssetAdapter(factory, policy, **kw),
        troubleshooter=TroubleshooterAdapter(factory, policy, **kw),
        apikeys=ApiKeysAdapter(factory, policy, **kw),
        pam=PamAdapter(factory, policy, **kw),
        connections=BigQueryConnectionAdapter(factory, policy, **kw),
    )


def fetch_snapshot(
    *,
    resources: Iterable[str],
    service_accounts: Iterable[str],
    principals: Iterable[str] = (),
    projects: Iterable[str] = (),
    credentials: Any = None,
    emulator_host: str | None = None,
    cache_dir: str | Path | None = None,
    cache_ttl: float = DEFAULT_TTL,
    use_cache: bool = True,
    max_workers: int = 128,
    retry: RetryPolicy | None = None,
    progress: Progress | None = None,
    adapters: Adapters | None = None,
    strategy: str | None = None,
    search_batch: int | None = None,
    persistent_resources: Iterable[str] = (),
) -> Snapshot:
    """Read, live, everything a check of these resources and identities needs.

    Args:
        resources: Cloud Asset full resource names (see :mod:`zt_pipelines.resources`).
        service_accounts: emails of the step and pipeline service accounts.
        principals: other members involved (the submitter); their grants are read from the
            nodes fetched for the resources and accounts.
        projects: projects to read even if no resource names them (the job's project).
        credentials: google-auth credentials (ADC when ``None``).
        emulator_host: ``HOST:PORT`` of the emulator (default ``$ZT_EMULATOR_HOST``).
        cache_dir: where the role/hierarchy cache lives (default ``~/.cache/zt-pipelines``;
            against the emulator there is no cache unless a directory is given).
        cache_ttl: seconds a cached predefined role stays fresh.
        use_cache: ``False`` reads everything fresh and writes nothing.
        max_workers: concurrent reads.
        retry: retry policy for every call (default: 5 attempts, 30 s).
        progress: called with ``(done, scheduled)`` after each read (default: the reporter
            installed by :func:`zt_pipelines.gcp.progress.reporting`, if any).
        adapters: use these instead of the official clients (tests of the plan itself).
        strategy: ``"direct"`` (default; every policy from its own API, authoritative) or
            ``"inventory"`` (the declared projects' policies and all keys from Cloud Asset in
            bulk: a few calls instead of several per identity, eventually consistent). Default
            from ``$ZT_LIVE_STRATEGY``.
        search_batch: principals per Cloud Asset ``policy:(a OR b ...)`` query (default: all
            of them, up to 1000; a query Google refuses with INVALID_ARGUMENT is halved, up to
            three times, before the search counts as unreadable).
        persistent_resources: Vertex persistent resources steps run on
            (``projects/P/locations/L/persistentResources/ID``), read through Vertex AI.

    Returns:
        The snapshot; reads that failed after retries are in ``Snapshot.unreadable``.
    """
    # connections and clients outlive one check (a second check reuses them); reads do not
    factory = shared_factory(credentials, emulator_host=emulator_host)
    chosen = adapters or build_adapters(factory, retry)
    cache = None
    # an emulator's world lives as long as its process: cache it only where asked to
    if use_cache and (cache_dir is not None or not factory.emulator_host):
        namespace = f"emulator-{factory.emulator_host}" if factory.emulator_host else "google"
        cache = DiskCache(cache_dir, namespace=namespace, ttl=cache_ttl)
    chosen_strategy = strategy or os.environ.get(STRATEGY_ENV) or "direct"
    if chosen_strategy not in STRATEGIES:
        raise InputError(
            f"unknown live-mode strategy {chosen_strategy!r}",
            where=STRATEGY_ENV if strategy is None else "strategy",
            fix="use direct or inventory",
        )
    plan = FetchPlan(
        chosen,
        cache=cache,
        max_workers=max_workers,
        progress=progress or current_progress(),
        strategy=chosen_strategy,
        search_batch=search_batch or DEFAULT_SEARCH_BATCH,
    )
    from zt_pipelines.policy.role_catalogue import with_catalogue_roles

    snapshot = plan.run(
        resources=resources,
        service_accounts=service_accounts,
        principals=principals,
        projects=projects,
    )
    wanted = tuple(persistent_resources)
    if wanted:
        found, failed = read_persistent_resources(VertexAdapter(factory, retry), wanted)
        snapshot = replace(
            snapshot,
            persistent_resources={**snapshot.persistent_resources, **found},
            unreadable=(*snapshot.unreadable, *failed),
        )
    # live definitions win; predefined roles a read could not return come from the
    # shipped catalogue instead of refusing as unreadable
    return with_catalogue_roles(snapshot)
