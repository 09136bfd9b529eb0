"""Concurrent applies read the custom-role support levels of a project once, not each.

Twenty applies through one client each reading ~14,000 permissions over 14 pages made the
emulator (and, in the cloud, IAM's quota) time out under load. The levels decide only
whether a role may be written (IAM refuses the rest anyway), never what is granted: one read
per client factory and parent is shared; a failed read is never kept.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_provision_apply import ADMIN, PIPE_SA, PROJECT, empty_project

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.errors import ApiError
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.provision import Want, build_plan
from zt_pipelines.provision.apply import apply_plan
from zt_pipelines.resources import ResourceRef

QUERY = "google.iam.admin.v1.IAM/QueryTestablePermissions"
BUCKET = "//storage.googleapis.com/zt-e2e-models"
PERMS = ["storage.objects.get", "storage.objects.list", "storage.objects.create"]


def plan_for(i: int) -> object:
    member = f"serviceAccount:step-{i:02d}-sa@{PROJECT}.iam.gserviceaccount.com"
    # a distinct permission set per plan: each plan creates its own custom role
    perms = tuple(p for k, p in enumerate(PERMS) if (i >> k) & 1) or ("storage.objects.get",)
    wants = [Want(member, ResourceRef(BUCKET, f"run-{i}"), perms, f"step-{i}")]
    return build_plan(wants, project=PROJECT, pipeline_service_account=PIPE_SA)


def first_pages(emu: Emulator) -> int:
    return len([r for r in emu.request_log if r.method == QUERY])


def test_twenty_concurrent_applies_share_one_support_level_read() -> None:
    with Emulator(empty_project()) as emu:
        factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
        try:
            one = apply_plan(plan_for(1), factory=factory, retry=no_wait_policy(), audit_log=False)
            assert one.added
            pages_of_one_read = first_pages(emu)
            assert pages_of_one_read >= 1
            start = threading.Barrier(20)

            def run(i: int) -> None:
                start.wait()
                apply_plan(plan_for(i), factory=factory, retry=no_wait_policy(), audit_log=False)

            with ThreadPoolExecutor(max_workers=20) as pool:
                list(pool.map(run, range(2, 22)))
            assert first_pages(emu) == pages_of_one_read  # no second read by anyone
        finally:
            factory.close()


def test_a_failed_read_is_not_kept_and_another_client_reads_again() -> None:
    with Emulator(empty_project()) as emu:
        emu.add_fault(Fault(method=QUERY, code="PERMISSION_DENIED", times=1))
        factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
        try:
            with pytest.raises(ApiError, match="support levels"):
                apply_plan(plan_for(1), factory=factory, retry=no_wait_policy(), audit_log=False)
            before = first_pages(emu)
            # the failure was not cached: the next apply reads and writes
            assert apply_plan(
                plan_for(1), factory=factory, retry=no_wait_policy(), audit_log=False
            ).added
            assert first_pages(emu) > before
        finally:
            factory.close()
        # a new client (another endpoint or caller) never borrows the old one's levels
        other = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
        try:
            seen = first_pages(emu)
            apply_plan(plan_for(2), factory=other, retry=no_wait_policy(), audit_log=False)
            assert first_pages(emu) > seen
        finally:
            other.close()
