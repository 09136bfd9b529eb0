"""Persistent resources: declared per step (or as a pipeline default), read live through the
REAL aiplatform_v1 client from the emulator, carried by snapshots, and judged (ZT120/ZT121)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1
from test_emulator_world import ADMIN, NO_ACT_AS, PIPELINE_SA, STEP_SA, world

from zt_pipelines.declare import declaration, load_manifest
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.errors import DeclarationError, ManifestError, SnapshotError
from zt_pipelines.gcp import fetch_snapshot
from zt_pipelines.model import JobFields, RewriteResult, StepIdentity
from zt_pipelines.policy.requirements import needed_nodes
from zt_pipelines.policy.snapshot import PersistentResource, Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot
from zt_pipelines.verification import check_rewritten

LOCATION = "us-central1"
OPEN = "projects/proj-alpha/locations/us-central1/persistentResources/warm-pool"
CLOSED = "projects/proj-alpha/locations/us-central1/persistentResources/fixed-sa-pool"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _world() -> Snapshot:
    base = world()
    admin = base.roles["roles/zt.admin"]
    readable = frozenset({*admin.permissions, "aiplatform.persistentResources.get"})
    return replace(
        base,
        roles={**base.roles, admin.name: replace(admin, permissions=readable)},
        persistent_resources={
            OPEN: PersistentResource(OPEN, True, "RUNNING"),
            CLOSED: PersistentResource(CLOSED, False, "RUNNING"),
        },
    )


def _step(task: str, resource_id: str | None, sa: str = STEP_SA) -> StepIdentity:
    return StepIdentity(
        task=task,
        component=f"comp-{task}",
        executor=f"exec-{task}",
        service_account=sa,
        source="declared",
        job=JobFields(persistent_resource_id=resource_id),
    )


def _codes(snapshot: Any, *steps: StepIdentity) -> dict[str, set[str]]:
    result = RewriteResult(spec={}, pipeline_name="p", steps=steps)
    report = check_rewritten(
        result,
        project="proj-alpha",
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        snapshot=snapshot,
        now=NOW,
    )
    out: dict[str, set[str]] = {}
    for f in report.findings:
        out.setdefault(f.code, set()).add(f.step or "")
    return out


# -- declarations ---------------------------------------------------------------------------


def test_declared_everywhere_a_job_field_is() -> None:
    decl = declaration(STEP_SA, persistent_resource_id="warm-pool")
    assert decl.job.persistent_resource_id == "warm-pool"
    manifest = load_manifest(
        {"steps": {"train": {"service_account": STEP_SA, "persistent_resource_id": "warm-pool"}}}
    )
    assert manifest["train"].job.persistent_resource_id == "warm-pool"
    # a pipeline default fills steps that do not declare one
    assert JobFields().merged_over(JobFields(persistent_resource_id="p")).persistent_resource_id
    assert JobFields(persistent_resource_id="x").merged_over(
        JobFields(persistent_resource_id="p")
    ) == JobFields(persistent_resource_id="x")


@pytest.mark.parametrize("bad", [OPEN, "Warm-Pool", "pool_1", "-pool", "pool-", "", " pool", 7])
def test_a_malformed_persistent_resource_id_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(DeclarationError) as err:
        declaration(STEP_SA, persistent_resource_id=bad)
    assert "persistent_resource_id" in str(err.value)
    with pytest.raises((DeclarationError, ManifestError)):
        load_manifest({"steps": {"t": {"persistent_resource_id": bad}}})


# -- snapshot files -------------------------------------------------------------------------


def test_snapshot_file_round_trip_keeps_persistent_resources() -> None:
    snap = _world()
    again = load_snapshot(dump_snapshot(snap))
    assert again.persistent_resources == snap.persistent_resources


def test_snapshot_file_refuses_a_malformed_persistent_resource(tmp_path: Path) -> None:
    data = dump_snapshot(_world())
    data["persistentResources"] = [{"name": "warm-pool", "enableCustomServiceAccount": True}]
    with pytest.raises(SnapshotError) as err:
        load_snapshot(data)
    assert "persistentResources" in str(err.value)
    data["persistentResources"] = [{"name": OPEN}, {"name": OPEN}]
    with pytest.raises(SnapshotError, match="appears twice"):
        load_snapshot(data)


# -- the check ------------------------------------------------------------------------------


def test_check_judges_each_step_on_its_persistent_resource() -> None:
    codes = _codes(
        _world(),
        _step("open", "warm-pool"),
        _step("closed", "fixed-sa-pool", sa="step-two@proj-alpha.iam.gserviceaccount.com"),
        _step("absent", "no-such-pool", sa="step-three@proj-alpha.iam.gserviceaccount.com"),
        _step("on-demand", None, sa="step-four@proj-alpha.iam.gserviceaccount.com"),
    )
    assert codes.get("ZT120") == {"closed"}
    assert codes.get("ZT121") == {"absent"}


def test_a_failed_read_is_zt400_not_a_pass() -> None:
    data = dump_snapshot(_world())
    data["persistentResources"] = []
    data["unreadable"] = [
        {"target": OPEN, "what": "persistentResources.get", "reason": "PERMISSION_DENIED: no"}
    ]
    codes = _codes(data, _step("open", "warm-pool"))
    assert "ZT400" in codes
    assert "ZT121" not in codes  # reported once, as the failed read


def test_needed_nodes_lists_the_resources_in_the_pipelines_project_and_location() -> None:
    steps = (_step("a", "warm-pool"), _step("b", None))
    needs = needed_nodes((), steps=steps, project="proj-alpha", location=LOCATION)
    assert needs.persistent_resources == (OPEN,)
    # a custom-job step that pins its own region runs on a resource there
    pinned = replace(_step("c", "warm-pool"), job_kind="CustomJob", job_location="europe-west4")
    wrapped = replace(pinned, task="d", wrapped_launcher=True)  # its CustomJob: the pipeline's
    names = needed_nodes((), steps=(pinned, wrapped), project="proj-alpha", location=LOCATION)
    assert names.persistent_resources == (
        OPEN.replace(LOCATION, "europe-west4"),
        OPEN,
    )
    assert needed_nodes((), steps=steps).persistent_resources == ()


# -- live, against the emulator with the real client ------------------------------------------


@pytest.fixture()
def emu() -> Any:
    with Emulator(_world()) as running:
        yield running


def test_live_fetch_reads_persistent_resources_through_vertex(emu: Emulator) -> None:
    missing = "projects/proj-alpha/locations/us-central1/persistentResources/gone"
    snap = fetch_snapshot(
        resources=(),
        service_accounts=(),
        credentials=emulator_credentials(ADMIN),
        emulator_host=emu.address,
        use_cache=False,
        persistent_resources=(OPEN, CLOSED, missing),
    )
    assert snap.persistent_resources[OPEN].enable_custom_service_account is True
    assert snap.persistent_resources[OPEN].state == "RUNNING"
    assert snap.persistent_resources[CLOSED].enable_custom_service_account is False
    assert missing not in snap.persistent_resources  # absent: the check says unknown (ZT121)
    assert not [u for u in snap.unreadable if "persistentResources" in u.target]
    served = [r for r in emu.request_log if r.method == "aiplatform.persistentResources.get"]
    assert len(served) == 3


def test_live_fetch_without_permission_is_unreadable(emu: Emulator) -> None:
    snap = fetch_snapshot(
        resources=(),
        service_accounts=(),
        credentials=emulator_credentials(NO_ACT_AS),
        emulator_host=emu.address,
        use_cache=False,
        persistent_resources=(OPEN,),
    )
    assert OPEN not in snap.persistent_resources
    assert [(u.target, u.what) for u in snap.unreadable if u.target == OPEN] == [
        (OPEN, "persistentResources.get")
    ]


def _jobs(emu: Emulator, member: str) -> Any:
    return aiplatform_v1.JobServiceClient(
        credentials=emulator_credentials(member),
        transport="rest",
        client_options={"api_endpoint": f"http://{emu.address}"},
    )


def test_emulator_refuses_a_custom_sa_job_on_a_resource_that_does_not_allow_it(
    emu: Emulator,
) -> None:
    client = _jobs(emu, ADMIN)
    parent = f"projects/proj-alpha/locations/{LOCATION}"

    def job(resource_id: str) -> aiplatform_v1.CustomJob:
        return aiplatform_v1.CustomJob(
            display_name="t",
            job_spec=aiplatform_v1.CustomJobSpec(
                worker_pool_specs=[
                    aiplatform_v1.WorkerPoolSpec(
                        container_spec=aiplatform_v1.ContainerSpec(image_uri="python:3.11"),
                        machine_spec=aiplatform_v1.MachineSpec(machine_type="n1-standard-4"),
                        replica_count=1,
                    )
                ],
                service_account=STEP_SA,
                persistent_resource_id=resource_id,
            ),
        )

    created = client.create_custom_job(parent=parent, custom_job=job("warm-pool"))
    assert created.job_spec.service_account == STEP_SA
    with pytest.raises(gexc.BadRequest, match="custom service accounts"):
        client.create_custom_job(parent=parent, custom_job=job("fixed-sa-pool"))
    with pytest.raises(gexc.NotFound):
        client.create_custom_job(parent=parent, custom_job=job("gone"))


# -- through a real compile and the rewrite ---------------------------------------------------


def test_a_declared_persistent_resource_reaches_the_payload_and_the_check(tmp_path: Path) -> None:
    from kfp import compiler, dsl

    import zt_pipelines as zt
    from zt_pipelines.spec import rewrite_pipeline

    @zt.step(STEP_SA, persistent_resource_id="warm-pool")
    @dsl.component(base_image="python:3.11-slim")
    def fast():  # type: ignore[no-untyped-def]  # kfp reads annotations; this file defers them
        pass

    @zt.step("step-two@proj-alpha.iam.gserviceaccount.com")
    @dsl.component(base_image="python:3.11-slim")
    def default_pool():  # type: ignore[no-untyped-def]
        pass

    @dsl.pipeline(name="warm")
    def warm():  # type: ignore[no-untyped-def]
        fast()
        default_pool()

    path = tmp_path / "warm.yaml"
    compiler.Compiler().compile(warm, str(path))
    kwargs: dict[str, Any] = {
        "project": "proj-alpha",
        "location": LOCATION,
        "pipeline_service_account": PIPELINE_SA,
    }
    result = rewrite_pipeline(path, **kwargs)
    steps = {s.task: s for s in result.steps}
    assert steps["fast"].job.persistent_resource_id == "warm-pool"
    # the pipeline default applies to the steps that do not declare their own
    with_default = rewrite_pipeline(
        path, defaults=JobFields(persistent_resource_id="fixed-sa-pool"), **kwargs
    )
    chosen = {s.task: s.job.persistent_resource_id for s in with_default.steps}
    assert chosen == {"fast": "warm-pool", "default-pool": "fixed-sa-pool"}
    component = result.spec["components"]["comp-fast"]
    default = component["inputDefinitions"]["parameters"]["persistent_resource_id"]
    assert default["defaultValue"] == "warm-pool"  # what the launcher puts in job_spec

    def codes(snapshot: Any) -> set[str]:
        report = zt.check(path, snapshot=snapshot, now=NOW, **kwargs)
        return {f.code for f in report.findings}

    assert not {"ZT120", "ZT121"} & codes(_world())
    assert "ZT121" in codes(replace(_world(), persistent_resources={}))
    closed = {OPEN: PersistentResource(OPEN, False)}
    assert "ZT120" in codes(replace(_world(), persistent_resources=closed))
