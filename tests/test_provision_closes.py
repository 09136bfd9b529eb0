"""plan → apply → check closes the loop, over every pipeline of the Kubeflow corpus, against
the emulator through the real Google clients: custom mode ends ALLOWED with zero findings,
predefined mode with only the excess the plan itself disclosed, and a second apply writes
nothing.

(No ``from __future__ import annotations`` here: KFP reads the component annotations.)
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_provision_apply import ADMIN, ADMIN_PERMISSIONS, ADMIN_ROLE

import zt_pipelines as zt
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, Snapshot
from zt_pipelines.provision.apply import apply_plan

PROJECT = "zt-corpus-proj"
ROOT = "gs://zt-corpus-root/runs"
CRM = "//cloudresourcemanager.googleapis.com/"


def world() -> Snapshot:
    org = CRM + "organizations/4242"
    project = CRM + "projects/" + PROJECT
    role = ADMIN_ROLE.replace("zt-e2e-proj", PROJECT)
    nodes = [
        Node(org, "organization", None, AllowPolicy(etag="o0")),
        Node(
            project,
            "project",
            org,
            project_number="4242424242",
            policy=AllowPolicy((Binding(role, (ADMIN,)),), etag="p0"),
        ),
        Node("//storage.googleapis.com/zt-corpus-root", "bucket", project, AllowPolicy()),
    ]
    return Snapshot(nodes={n.name: n for n in nodes}, roles={role: Role(role, ADMIN_PERMISSIONS)})


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    with Emulator(world()) as emu:
        yield emu


def _loop(emu: Emulator, path: Path, index: int, roles: str) -> tuple[zt.Plan, zt.Report]:
    pipeline_sa = f"pl-{index:03d}-{roles[:4]}@{PROJECT}.iam.gserviceaccount.com"
    factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
    try:
        kw = dict(project=PROJECT, pipeline_service_account=pipeline_sa, pipeline_root=ROOT)
        planned = zt.plan(path, snapshot=emu.state, roles=roles, **kw)  # type: ignore[arg-type]
        apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
        report = zt.check(path, location="us-central1", snapshot=emu.state, **kw)
        again = zt.plan(path, snapshot=emu.state, roles=roles, **kw)  # type: ignore[arg-type]
        assert again.is_noop, (path, again.additions)
        writes = len(emu.writes())
        assert not apply_plan(
            again, factory=factory, retry=no_wait_policy(), audit_log=False
        ).changed
        assert len(emu.writes()) == writes, path  # the second apply writes nothing
    finally:
        factory.close()
    return planned, report


@pytest.mark.shared
def test_every_corpus_pipeline_checks_clean_after_plan_and_apply_custom(
    corpus_dir: Path, emulator: Emulator
) -> None:
    files = sorted(corpus_dir.rglob("*.yaml"))
    assert len(files) >= 100
    payload_risks = 0
    for index, path in enumerate(files):
        _planned, report = _loop(emulator, path, index, "custom")
        # The only finding no grant can fix: a step pasting a run-time input unescaped into
        # its CustomJob payload (ZT102, a property of the pipeline's code, not of IAM).
        iam = [f for f in report.findings if not _payload_risk(f)]
        assert iam == [], (path, [f.message for f in iam])
        payload_risks += len(report.findings) - len(iam)
        assert report.allowed or payload_risks, path
    print(f"\n{len(files)} pipelines: 0 IAM findings; {payload_risks} payload-injection ZT102")


def _payload_risk(finding: zt.Finding) -> bool:
    return finding.code == "ZT102" and "unescaped into its CustomJob payload" in finding.message


@pytest.mark.shared
def test_corpus_predefined_mode_reports_only_the_disclosed_excess(
    corpus_dir: Path, emulator: Emulator
) -> None:
    files = sorted(corpus_dir.rglob("*.yaml"))[::7]  # every 7th: the cover search is the cost
    for index, path in enumerate(files):
        planned, report = _loop(emulator, path, index, "predefined")
        disclosed = {(g.resource, g.role, g.member.lower()) for g in planned.grants if g.excess}
        assert report.allowed or any(_payload_risk(f) for f in report.findings), path
        for f in (f for f in report.findings if not _payload_risk(f)):
            role = f.evidence[0].role
            assert f.code == "ZT210", (path, f)
            assert (f.resource, role, (f.principal or "").lower()) in disclosed, (path, f)
