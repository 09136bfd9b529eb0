"""Provisioning plan time for a large pipeline, against baselines measured in the same run.

The pipeline: 1,000 container tasks compiled by kfp, each with its own service account and five
declared needs (buckets with prefixes, BigQuery datasets/tables, a secret, a repository, a KMS
key; permission sets drawn from what pipeline steps really ask for), declared through a
manifest. Timed, each the median of a few repeats in this process:

* baseline: ``rewrite_pipeline`` of the same template with the same manifest (what every plan
  starts from);
* ``plan`` in ``custom`` mode and in ``predefined`` mode (real role catalogue from
  ``../shared/data``), given the rewritten pipeline, against an empty project — ratio to the
  rewrite;
* the predefined cover without its per-permission-set cache: ``find_cover`` once per grant
  group, as a plan without the cache would — ratio to the cached plan (how much the cache buys).

No ``from __future__ import annotations``: KFP reads the component annotations.
"""

import gzip
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS = 1_000
NEEDS_PER_STEP = 5
REPEATS = 3
PROJECT = "bench-provision"
PIPELINE_SA = f"pipeline-runner@{PROJECT}.iam.gserviceaccount.com"
CATALOGUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gcp-predefined-roles.json.gz"

# (resource template, permissions): realistic step needs; {i} varies the resource
NEED_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gs://raw-{i}/in", ("storage.objects.get", "storage.objects.list")),
    ("gs://models-{i}/out", ("storage.objects.create", "storage.objects.get")),
    ("gs://scratch-{i}", ("storage.objects.create", "storage.objects.delete")),
    (f"bq://{PROJECT}.features_{{i}}", ("bigquery.tables.get", "bigquery.tables.list")),
    (f"bq://{PROJECT}.features_{{i}}.rows", ("bigquery.tables.getData",)),
    (
        f"//secretmanager.googleapis.com/projects/{PROJECT}/secrets/token-{{i}}",
        ("secretmanager.versions.access",),
    ),
    (
        f"//artifactregistry.googleapis.com/projects/{PROJECT}/locations/us/repositories/r{{i}}",
        ("artifactregistry.repositories.downloadArtifacts",),
    ),
    (
        f"//cloudkms.googleapis.com/projects/{PROJECT}/locations/us/keyRings/k/cryptoKeys/c{{i}}",
        ("cloudkms.cryptoKeyVersions.useToDecrypt", "cloudkms.cryptoKeyVersions.useToEncrypt"),
    ),
)


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _compile(path: Path) -> None:
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def step(x: int) -> int:
        return x + 1

    @dsl.pipeline(name="bench-provision")
    def pipeline() -> None:
        for i in range(STEPS):
            step(x=i)

    compiler.Compiler().compile(pipeline, str(path))


def _manifest(task_names: list[str]) -> dict[str, Any]:
    """Five needs per task on 40 resources of each kind, one service account per task."""
    rng = random.Random(7)
    steps: dict[str, Any] = {}
    for index, task in enumerate(sorted(task_names)):
        needs: dict[str, list[str]] = {}
        for kind in rng.sample(NEED_KINDS, NEEDS_PER_STEP):
            uri, perms = kind
            needs[uri.format(i=rng.randrange(40))] = list(perms)
        steps[task] = {
            "service_account": f"step-{index:04d}@{PROJECT}.iam.gserviceaccount.com",
            "needs": needs,
        }
    return {"steps": steps}


def _catalogue() -> dict[str, frozenset[str]] | None:
    if not CATALOGUE.exists():
        return None
    from zt_pipelines.provision import load_catalogue

    with gzip.open(CATALOGUE, "rt") as fh:
        return load_catalogue(json.load(fh))


def run() -> list[str]:
    """Measure and return report lines."""
    from zt_pipelines.provision import plan
    from zt_pipelines.provision.cover import find_cover, permission_index
    from zt_pipelines.provision.plan import _allowed_predefined, escalating_permissions
    from zt_pipelines.spec import load_template, rewrite_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        _compile(path)
        template = load_template(path)
    tasks = list(template[0]["root"]["dag"]["tasks"])
    manifest = _manifest(tasks)

    def rewrite() -> Any:
        return rewrite_pipeline(template, project=PROJECT, manifest=manifest)

    rewrite_s = _median_time(rewrite, REPEATS)
    result = rewrite()

    def planned(mode: str, catalogue: Any = None) -> Any:
        return plan(
            result,
            project=PROJECT,
            pipeline_service_account=PIPELINE_SA,
            pipeline_root=f"gs://{PROJECT}-root/runs",
            roles=mode,  # type: ignore[arg-type]
            catalogue=catalogue,
        )

    custom_s = _median_time(lambda: planned("custom"), REPEATS)
    custom = planned("custom")
    lines = [
        f"pipeline: {len(result.steps)} steps x {NEEDS_PER_STEP} needs; rewrite (baseline) "
        f"{rewrite_s * 1000:.0f} ms (median of {REPEATS})",
        f"plan --roles custom: {custom_s * 1000:.0f} ms -> ratio {custom_s / rewrite_s:.2f} vs "
        f"rewrite; {len(custom.grants)} grants, {len(custom.custom_roles)} custom roles",
    ]
    roles = _catalogue()
    if roles is None:
        return [*lines, f"plan --roles predefined: skipped ({CATALOGUE} is missing)"]
    predefined_s = _median_time(lambda: planned("predefined", roles), REPEATS)
    predefined = planned("predefined", roles)
    exact = sum(c.cover.exact for c in predefined.covers)
    excess = sorted(len(c.cover.excess) for c in predefined.covers)

    # the same covers without the per-permission-set cache: one search per grant group
    index = permission_index(roles)
    escalating = escalating_permissions(roles)

    def uncached() -> None:
        for c in predefined.covers:
            need = c.cover.needed
            find_cover(need, roles, allowed=_allowed_predefined(need, escalating), index=index)

    uncached_s = _median_time(uncached, REPEATS)
    return [
        *lines,
        f"plan --roles predefined: {predefined_s * 1000:.0f} ms -> ratio "
        f"{predefined_s / rewrite_s:.2f} vs rewrite; {len(predefined.covers)} covers "
        f"({len({c.cover.needed for c in predefined.covers})} distinct needs), {exact} exact, "
        f"excess median {statistics.median(excess)} / max {excess[-1]}",
        f"covers without the cache: {uncached_s * 1000:.0f} ms -> ratio "
        f"{uncached_s / predefined_s:.2f} vs the cached predefined plan",
    ]


if __name__ == "__main__":
    print("\n".join(run()))
