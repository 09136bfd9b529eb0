"""Provisioning end to end against the emulator, through the real Google client libraries.

empty project → plan → apply → check allowed → apply again (no writes) → a step's needs
shrink → plan --prune removes exactly the unneeded grant. Plus 20 concurrent applies on one
bucket policy with injected etag conflicts: no binding lost.

(No ``from __future__ import annotations`` here: KFP reads the component annotations.)
"""

import dataclasses
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import cli
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Node,
    Role,
    Snapshot,
)
from zt_pipelines.provision import Grant, ProvisioningRefused, Want, build_plan
from zt_pipelines.provision.apply import apply_plan
from zt_pipelines.provision.render import render_table
from zt_pipelines.resources import ResourceRef

PROJECT = "zt-e2e-proj"
LOCATION = "us-central1"
CRM = "//cloudresourcemanager.googleapis.com/projects/"
ROOT = "gs://zt-e2e-root/runs"
PIPE_SA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
PREP_SA = f"prep-sa@{PROJECT}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{PROJECT}.iam.gserviceaccount.com"
ADMIN = "user:admin@example.com"
BYSTANDER = "user:bob@example.com"
TABLE = f"//bigquery.googleapis.com/projects/{PROJECT}/datasets/features/tables/rows"
ADMIN_ROLE = f"projects/{PROJECT}/roles/provisioner"
SA_USER = "roles/iam.serviceAccountUser"
SA_USER_PERMISSIONS = frozenset(
    {
        "iam.serviceAccounts.actAs",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.list",
        "resourcemanager.projects.get",
        "resourcemanager.projects.list",
    }
)
ADMIN_PERMISSIONS = frozenset(
    {
        "iam.serviceAccounts.create",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.list",
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccounts.setIamPolicy",
        "iam.serviceAccountKeys.list",
        "iam.roles.create",
        "iam.roles.get",
        "iam.roles.list",
        "iam.roles.update",
        "iam.roles.undelete",
        "iam.denypolicies.get",
        "iam.denypolicies.list",
        "resourcemanager.projects.get",
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.projects.setIamPolicy",
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "storage.buckets.setIamPolicy",
        "bigquery.datasets.get",
        "bigquery.datasets.update",
        "bigquery.tables.getIamPolicy",
        "bigquery.tables.setIamPolicy",
        "cloudasset.assets.searchAllIamPolicies",
    }
)


@dsl.component(base_image="python:3.11-slim")
def prep(source: str) -> str:
    return source


@dsl.component(base_image="python:3.11-slim")
def train(data: str) -> str:
    return data


@dsl.component(base_image="python:3.11-slim")
def evaluate(model: str) -> str:
    return model


@dsl.pipeline(name="zt-e2e", pipeline_root=ROOT)
def e2e_pipeline(source: str = "gs://zt-e2e-raw/2026/") -> None:
    data = prep(source=source)
    model = train(data=data.output)
    evaluate(model=model.output)


FULL_NEEDS = {
    "steps": {
        "prep": {
            "service_account": PREP_SA,
            "needs": {
                "gs://zt-e2e-raw": ["storage.objects.get", "storage.objects.list"],
                f"bq://{PROJECT}.features": ["bigquery.tables.list"],
            },
        },
        "train": {
            "service_account": TRAIN_SA,
            "needs": {
                "gs://zt-e2e-raw": ["storage.objects.get"],
                "gs://zt-e2e-models/train": ["storage.objects.create"],
                f"bq://{PROJECT}.features.rows": ["bigquery.tables.getData"],
            },
        },
        # evaluate: no declaration, so it gets a derived identity that provisioning creates
    }
}
SHRUNK_NEEDS = json.loads(json.dumps(FULL_NEEDS))
del SHRUNK_NEEDS["steps"]["train"]["needs"]["gs://zt-e2e-models/train"]


def empty_project() -> Snapshot:
    """A project with three buckets and a table, one admin, one bystander, no step SAs."""
    project = CRM + PROJECT
    bystander = AllowPolicy((Binding("roles/storage.objectViewer", (BYSTANDER,)),), etag="b0")
    org = "//cloudresourcemanager.googleapis.com/organizations/777"
    nodes = [
        Node(org, "organization", None, AllowPolicy(etag="o0")),
        Node(
            project,
            "project",
            org,
            project_number="424242424242",
            policy=AllowPolicy((Binding(ADMIN_ROLE, (ADMIN,)),), etag="p0"),
        ),
        Node("//storage.googleapis.com/zt-e2e-raw", "bucket", project, bystander),
        Node("//storage.googleapis.com/zt-e2e-models", "bucket", project, bystander),
        Node("//storage.googleapis.com/zt-e2e-root", "bucket", project, AllowPolicy(etag="r0")),
        Node(TABLE.rsplit("/tables/", 1)[0], "dataset", project, AllowPolicy(etag="d0")),
        Node(TABLE, "table", TABLE.rsplit("/tables/", 1)[0], AllowPolicy(etag="t0")),
    ]
    return Snapshot(
        nodes={n.name: n for n in nodes},
        roles={
            ADMIN_ROLE: Role(ADMIN_ROLE, ADMIN_PERMISSIONS, "provisioner"),
            # the one predefined role provisioning binds (as in the real catalogue)
            SA_USER: Role(SA_USER, SA_USER_PERMISSIONS, "Service Account User"),
        },
    )


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    with Emulator(empty_project()) as emu:
        yield emu


@pytest.fixture()
def factory(emulator: Emulator) -> Iterator[ClientFactory]:
    made = ClientFactory(
        emulator_credentials(ADMIN), emulator_host=emulator.address, project=PROJECT
    )
    yield made
    made.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "pipeline.yaml"
    compiler.Compiler().compile(e2e_pipeline, package_path=str(path))
    return path


def make_plan(template: Path, manifest: dict, state: Snapshot | str, **kw: object) -> zt.Plan:
    return zt.plan(
        template,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPE_SA,
        pipeline_root=ROOT,
        manifest=manifest,
        snapshot=state,
        **kw,
    )


def check(template: Path, manifest: dict, state: Snapshot, **extra: Any) -> "zt.Report":
    return zt.check(
        template,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPE_SA,
        pipeline_root=ROOT,
        manifest=manifest,
        snapshot=state,
        **extra,
    )


def members_of(state: Snapshot, resource: str) -> set[tuple[str, str, str]]:
    node = state.nodes[resource]
    assert node.policy is not None
    return {
        (b.role, m, b.condition.expression if b.condition else "")
        for b in node.policy.bindings
        for m in b.members
    }


def test_end_to_end_plan_apply_check_noop_shrink_prune(
    emulator: Emulator,
    factory: ClientFactory,
    template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audit = tmp_path / "audit.jsonl"
    before = check(template, FULL_NEEDS, emulator.state)
    assert not before.allowed  # empty project: nothing exists yet

    first = make_plan(template, FULL_NEEDS, emulator.state)
    derived = next(a for a in first.accounts if a.steps == ("evaluate",))
    assert {a.state for a in first.accounts} == {"create"}
    assert len(first.accounts) == 4  # pipeline, prep, train, derived evaluate

    applied = apply_plan(first, factory=factory, retry=no_wait_policy(), audit_log=audit)
    assert set(applied.created_accounts) == {PIPE_SA, PREP_SA, TRAIN_SA, derived.email}
    assert set(applied.created_roles) == {s.role.name for s in first.custom_roles}
    assert {g.key for g in applied.added} == {g.key for g in first.grants}

    state = emulator.state
    report = check(template, FULL_NEEDS, state)
    assert report.allowed, str(report)
    # the pipeline SA may act as each step SA — bound on the step SA, not on the project
    for email in (PREP_SA, TRAIN_SA, derived.email):
        node = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{email}"
        held = [r for r, m, _ in members_of(state, node) if m == f"serviceAccount:{PIPE_SA}"]
        assert [state.roles[r].permissions for r in held] == [
            frozenset({"iam.serviceAccounts.actAs"})
        ]
    assert not any(
        "iam.serviceAccounts.actAs" in state.roles[r].permissions
        for r, _, _ in members_of(state, CRM + PROJECT)
        if r in state.roles
    )
    # the bystander's bindings are untouched
    assert ("roles/storage.objectViewer", BYSTANDER, "") in members_of(
        state, "//storage.googleapis.com/zt-e2e-raw"
    )
    dataset = TABLE.rsplit("/tables/", 1)[0]
    assert {m for _, m, _ in members_of(state, dataset)} == {f"serviceAccount:{PREP_SA}"}
    models = state.nodes["//storage.googleapis.com/zt-e2e-models"].policy
    assert models is not None and models.version == 3  # conditional binding → version 3

    # apply again: a fresh plan is empty, and re-applying the old plan writes nothing
    emulator.clear_log()
    again = make_plan(template, FULL_NEEDS, emulator.state)
    assert again.is_noop, str(again)
    # the same answer when the state is read live, through the adapters, from the emulator
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("ZT_EMULATOR_CALLER", ADMIN)
    live = make_plan(template, FULL_NEEDS, "live")
    assert live.against_state and live.is_noop, str(live)
    second = apply_plan(first, factory=factory, retry=no_wait_policy(), audit_log=audit)
    assert not second.changed
    assert emulator.writes() == []

    # train no longer writes models: prune removes exactly that conditional grant
    shrunk = make_plan(template, SHRUNK_NEEDS, emulator.state, prune=True)
    assert not shrunk.additions
    assert [(g.resource, g.member, g.condition is not None) for g in shrunk.removals] == [
        ("//storage.googleapis.com/zt-e2e-models", f"serviceAccount:{TRAIN_SA}", True)
    ]
    before_prune = emulator.state
    pruned = apply_plan(shrunk, factory=factory, retry=no_wait_policy(), audit_log=audit)
    assert [g.key for g in pruned.removed] == [g.key for g in shrunk.removals]
    after = emulator.state
    for name in after.nodes:
        old = members_of(before_prune, name) if before_prune.nodes[name].policy else set()
        new = members_of(after, name) if after.nodes[name].policy else set()
        expected = old - {
            (g.role, g.member, g.condition.expression if g.condition else "")
            for g in shrunk.removals
            if g.resource == name
        }
        assert new == expected, name
    assert check(template, SHRUNK_NEEDS, after).allowed
    assert make_plan(template, SHRUNK_NEEDS, after, prune=True).is_noop

    records = AuditLog(audit).records()
    assert [r["action"] for r in records] == ["provision-apply"] * 3
    assert AuditLog(audit).verify().ok
    assert any(f.get("change") == "binding-removed" for f in records[2]["findings"])


def test_cli_plan_and_apply_against_the_emulator(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(FULL_NEEDS))
    audit = tmp_path / "audit.jsonl"
    args = [
        str(template),
        "--project",
        PROJECT,
        "--pipeline-sa",
        PIPE_SA,
        "--pipeline-root",
        ROOT,
        "--manifest",
        str(manifest),
    ]
    runner = CliRunner()
    # the CLI has no emulator identity to present, so this emulator does not enforce IAM
    with Emulator(empty_project(), enforce_iam=False) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_AUDIT_LOG", str(audit))  # apply writes to the submissions trail
        shown = runner.invoke(cli, ["plan", *args, "--format", "json"], catch_exceptions=False)
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.output)
        assert data["against_state"] and len(data["additions"]) == len(data["grants"])
        assert {a["state"] for a in data["service_accounts"]} == {"create"}
        applied = runner.invoke(cli, ["apply", *args, "--yes"], catch_exceptions=False)
        assert applied.exit_code == 0, applied.output
        assert "Apply complete: 4 accounts created" in applied.output
        emu.clear_log()
        again = runner.invoke(cli, ["apply", *args, "--yes"], catch_exceptions=False)
        assert again.exit_code == 0 and "No changes." in again.output
        assert emu.writes() == []
        assert check(template, FULL_NEEDS, emu.state).allowed
        tf = runner.invoke(cli, ["plan", *args, "--empty", "--format", "terraform"])
        assert tf.exit_code == 0 and "google_storage_bucket_iam_member" in tf.output
        out = tmp_path / "plan.tf"
        written = runner.invoke(
            cli, ["plan", *args, "--empty", "--format", "terraform", "-o", str(out)]
        )
        assert written.exit_code == 0 and written.output == ""
        assert out.read_text() == tf.output
    assert len(AuditLog(audit).records()) == 1


def test_twenty_concurrent_applies_on_one_bucket_lose_no_binding(
    emulator: Emulator, factory: ClientFactory, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    bucket = "//storage.googleapis.com/zt-e2e-models"
    plans = []
    for i in range(20):
        member = f"serviceAccount:step-{i:02d}-sa@{PROJECT}.iam.gserviceaccount.com"
        perms = (
            ("storage.objects.get",) if i % 2 else ("storage.objects.get", "storage.objects.list")
        )
        prefix = f"run-{i}" if i % 3 == 0 else None
        wants = [Want(member, ResourceRef(bucket, prefix), tuple(perms), f"step-{i}")]
        plans.append(build_plan(wants, project=PROJECT, pipeline_service_account=PIPE_SA))
    # conflicts on top of the natural ones: the first 15 writes answer ABORTED (409)
    emulator.add_fault(Fault(method="storage.buckets.setIamPolicy", code="ABORTED", times=15))
    start = threading.Barrier(20)

    def run(i: int) -> int:
        start.wait()
        result = apply_plan(
            plans[i],
            factory=factory,
            retry=no_wait_policy(),
            sleep=lambda s: time.sleep(min(s, 0.02)),
            rng=random.Random(i),
            audit_log=audit,
        )
        return result.conflicts

    with ThreadPoolExecutor(max_workers=20) as pool:
        conflicts = list(pool.map(run, range(20)))
    assert sum(conflicts) >= 15
    present = members_of(emulator.state, bucket)
    for p in plans:
        for g in p.grants:
            if g.resource == bucket:
                key = (g.role, g.member, g.condition.expression if g.condition else "")
                assert key in present, key
    assert ("roles/storage.objectViewer", BYSTANDER, "") in present
    log = AuditLog(audit)
    assert len(log.records()) == 20 and log.verify().ok
    assert {r["submitter"] for r in log.records()} == {ADMIN}
    print(f"\n20 concurrent applies: {sum(conflicts)} etag conflicts retried, none lost")


def test_apply_reports_progress_per_write_unit(
    emulator: Emulator, factory: ClientFactory, template: Path
) -> None:
    """The CLI's bar for apply's writes: one tick per account, custom role and resource
    policy, from (0, total) to (total, total), a re-apply's read-only checks included."""
    from zt_pipelines.gcp.progress import reporting

    planned = make_plan(template, FULL_NEEDS, emulator.state)
    units = (
        len([a for a in planned.accounts if a.state == "create"])
        + len([r for r in planned.custom_roles if r.state != "exists"])
        + len({g.resource for g in (*planned.grants, *planned.removals)})
    )
    heard: list[tuple[int, int]] = []
    with reporting(lambda done, total: heard.append((done, total))):
        apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
    assert units >= 8  # four accounts, custom roles, the buckets, table and dataset
    assert heard == [(n, units) for n in range(units + 1)]
    heard.clear()
    emulator.clear_log()
    again = make_plan(template, FULL_NEEDS, emulator.state)
    with reporting(lambda done, total: heard.append((done, total))):
        apply_plan(again, factory=factory, retry=no_wait_policy(), audit_log=False)
    assert emulator.writes() == []
    assert heard[0] == (0, heard[-1][1]) and heard[-1][0] == heard[-1][1]


@pytest.mark.shared
def test_predefined_roles_apply_then_check_is_allowed(
    emulator: Emulator, factory: ClientFactory, template: Path, predefined_roles: dict
) -> None:
    catalogue = {
        name: frozenset(spec["includedPermissions"]) for name, spec in predefined_roles.items()
    }
    planned = make_plan(
        template, FULL_NEEDS, emulator.state, roles="predefined", catalogue=catalogue
    )
    assert not planned.custom_roles
    assert not {"roles/owner", "roles/editor", "roles/viewer"} & {g.role for g in planned.grants}
    apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
    roles = {
        name: Role(name, perms, predefined_roles[name].get("title", ""))
        for name, perms in catalogue.items()
    }
    report = check(template, FULL_NEEDS, emulator.state, roles=roles)
    assert report.allowed, str(report)
    print("\npredefined covers (step: roles, excess):")
    for step, excess in planned.excess_by_step().items():
        print(f"  {step}: excess {excess}")


def test_grpc_policy_conflicts_are_retried_and_transient_errors_recovered(
    emulator: Emulator, factory: ClientFactory, template: Path
) -> None:
    planned = make_plan(template, FULL_NEEDS, emulator.state)
    # etag conflicts on the project and service-account policies (gRPC ABORTED) ...
    emulator.add_fault(
        Fault(
            method="google.cloud.resourcemanager.v3.Projects/SetIamPolicy", code="ABORTED", times=3
        )
    )
    emulator.add_fault(
        Fault(method="google.iam.admin.v1.IAM/SetIamPolicy", code="ABORTED", times=2)
    )
    # ... and a transient failure the adapters' retry policy absorbs
    emulator.add_fault(Fault(method="storage.buckets.getIamPolicy", code="UNAVAILABLE", times=2))
    sleeps: list[float] = []
    result = apply_plan(
        planned, factory=factory, retry=no_wait_policy(), sleep=sleeps.append, audit_log=False
    )
    assert result.conflicts == 5 and len(sleeps) == 5
    assert {g.key for g in result.added} == {g.key for g in planned.grants}
    assert check(template, FULL_NEEDS, emulator.state).allowed


def test_a_conflict_that_never_clears_fails_closed(
    emulator: Emulator, factory: ClientFactory, template: Path, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    planned = make_plan(template, FULL_NEEDS, emulator.state)
    emulator.add_fault(Fault(method="storage.buckets.setIamPolicy", code="ABORTED"))
    with pytest.raises(zt.ApiError) as info:
        apply_plan(
            planned,
            factory=factory,
            retry=no_wait_policy(),
            sleep=lambda _s: None,
            conflict_attempts=4,
            audit_log=audit,
        )
    assert info.value.code == "ABORTED"
    (record,) = AuditLog(audit).records()
    assert record["outcome"] == "refused" and "ABORTED" in record["reason"]


def test_submitter_grants_make_the_submitter_checks_pass(
    emulator: Emulator, factory: ClientFactory, template: Path
) -> None:
    alice = "user:alice@example.com"
    planned = make_plan(template, FULL_NEEDS, emulator.state, submitter=alice)
    mine = [g for g in planned.grants if g.member == alice]
    assert {
        (g.permissions, g.resource.rsplit("/", 1)[1])
        for g in mine
        if "/serviceAccounts/" in g.resource
    } == {
        (("iam.serviceAccounts.actAs",), PIPE_SA)  # actAs on the pipeline SA only
    }
    apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
    report = check(template, FULL_NEEDS, emulator.state, submitter=alice)
    assert report.allowed, str(report)
    assert not [f for f in report.findings if f.code == "ZT300"]


def test_prune_removes_a_legacy_dataset_access_entry_and_keeps_others(template: Path) -> None:
    world = empty_project()
    dataset = TABLE.rsplit("/tables/", 1)[0]
    old = world.nodes[dataset]
    legacy = AllowPolicy((Binding("READER", (f"serviceAccount:{TRAIN_SA}", BYSTANDER)),), etag="d1")
    world.nodes[dataset] = Node(old.name, old.kind, old.parent, legacy)
    with Emulator(world) as emu:
        local = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
        planned = make_plan(template, FULL_NEEDS, emu.state, prune=True)
        assert [(g.role, g.member) for g in planned.removals] == [
            ("READER", f"serviceAccount:{TRAIN_SA}")
        ]
        result = apply_plan(planned, factory=local, retry=no_wait_policy(), audit_log=False)
        assert len(result.removed) == 1
        members = {m for _, m, _ in members_of(emu.state, dataset)}
        assert f"serviceAccount:{TRAIN_SA}" not in members
        assert {BYSTANDER, f"serviceAccount:{PREP_SA}"} <= members
        local.close()


def test_live_plan_refuses_when_a_policy_cannot_be_read(
    emulator: Emulator, template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("ZT_EMULATOR_CALLER", ADMIN)
    emulator.add_fault(Fault(method="storage.buckets.getIamPolicy", code="PERMISSION_DENIED"))
    with pytest.raises(zt.ApiError, match="could not be read"):
        make_plan(template, FULL_NEEDS, "live")


@dsl.pipeline(name="zt-param", pipeline_root=ROOT)
def param_pipeline(runner: str) -> None:
    zt.step.on(prep(source="gs://zt-e2e-raw/x"), service_account=runner)


def test_cli_live_plan_reads_state_with_the_given_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the live read used to rewrite the template again without --param: a step whose identity
    # is a pipeline parameter could not be planned live at all
    template = tmp_path / "param.yaml"
    compiler.Compiler().compile(param_pipeline, package_path=str(template))
    args = [str(template), "--project", PROJECT, "--pipeline-sa", PIPE_SA]
    with Emulator(empty_project(), enforce_iam=False) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        shown = CliRunner().invoke(
            cli, ["plan", *args, "--param", f"runner={PREP_SA}", "--format", "json"]
        )
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["against_state"]
    assert {a["email"]: a["steps"] for a in data["service_accounts"]}[PREP_SA] == ["prep"]


def _tampered(plan: zt.Plan, how: str) -> zt.Plan:
    raw = "//storage.googleapis.com/zt-e2e-raw"
    prep = next(g for g in plan.grants if g.member == f"serviceAccount:{PREP_SA}")
    if how == "basic-role":
        extra = (dataclasses.replace(prep, role="roles/editor"),)
        return dataclasses.replace(plan, grants=plan.grants + extra)
    if how == "undeclared-resource":
        extra = (dataclasses.replace(prep, resource="//storage.googleapis.com/zt-e2e-models"),)
        return dataclasses.replace(plan, grants=plan.grants + extra, additions=extra)
    if how == "act-as-for-a-step":
        target = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{TRAIN_SA}"
        extra = (Grant(target, "roles/iam.serviceAccountUser", f"serviceAccount:{PREP_SA}"),)
        return dataclasses.replace(plan, grants=plan.grants + extra)
    if how == "no-wants":
        return dataclasses.replace(plan, wants=())
    if how == "prune-a-bystander":
        removal = Grant(raw, "roles/storage.objectViewer", BYSTANDER, step="prep")
        return dataclasses.replace(plan, prune=True, removals=(removal,), extras=(removal,))
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["basic-role", "undeclared-resource", "act-as-for-a-step", "no-wants", "prune-a-bystander"],
)
def test_apply_rechecks_a_tampered_plan_before_any_write(
    emulator: Emulator, factory: ClientFactory, template: Path, tmp_path: Path, how: str
) -> None:
    planned = make_plan(template, FULL_NEEDS, emulator.state)
    audit = tmp_path / "audit.jsonl"
    emulator.clear_log()
    with pytest.raises(ProvisioningRefused):
        apply_plan(
            _tampered(planned, how), factory=factory, retry=no_wait_policy(), audit_log=audit
        )
    assert emulator.writes() == []
    (record,) = AuditLog(audit).records()  # the refusal is on the trail
    assert record["action"] == "provision-apply" and record["outcome"] == "refused"


def test_apply_refuses_before_any_write_when_the_audit_log_cannot_be_written(
    emulator: Emulator, factory: ClientFactory, template: Path, tmp_path: Path
) -> None:
    planned = make_plan(template, FULL_NEEDS, emulator.state)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    emulator.clear_log()
    with pytest.raises(zt.ApiError, match="audit log"):
        apply_plan(
            planned, factory=factory, retry=no_wait_policy(), audit_log=blocker / "audit.jsonl"
        )
    assert emulator.writes() == []


def test_escalation_need_is_held_back_the_rest_applied_and_the_exit_code_asks_for_review(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zt_pipelines.cli import main

    needs = json.loads(json.dumps(FULL_NEEDS))
    needs["steps"]["train"]["needs"][f"projects/{PROJECT}"] = ["iam.serviceAccounts.getAccessToken"]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(needs))
    args = [str(template), "--project", PROJECT, "--pipeline-sa", PIPE_SA]
    args += ["--pipeline-root", ROOT, "--manifest", str(manifest)]
    with Emulator(empty_project(), enforce_iam=False) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
        for verb in (["plan"], ["apply", "--yes"]):
            with pytest.raises(SystemExit) as info:
                main([*verb, *args])
            assert info.value.code == 3, verb
        report = check(template, needs, emu.state)
    # everything else is granted; the held-back permission is the only thing missing
    assert {(f.code, f.permission) for f in report.errors} == {
        ("ZT200", "iam.serviceAccounts.getAccessToken")
    }


def test_a_grant_through_a_group_of_known_membership_is_not_duplicated(
    emulator: Emulator, factory: ClientFactory, template: Path
) -> None:
    state = emulator.state
    raw = "//storage.googleapis.com/zt-e2e-raw"
    node = state.nodes[raw]
    assert node.policy is not None
    team = "group:readers@example.com"
    grouped = dataclasses.replace(
        node,
        policy=AllowPolicy((*node.policy.bindings, Binding("roles/storage.objectViewer", (team,)))),
    )
    known = dataclasses.replace(
        state,
        nodes={**state.nodes, raw: grouped},
        groups={"readers@example.com": (f"serviceAccount:{PREP_SA}",)},
    )
    planned = make_plan(template, FULL_NEEDS, known)
    prep_raw = [g for g in planned.grants if g.resource == raw and PREP_SA in g.member]
    assert prep_raw == []  # objects.get/list on gs://zt-e2e-raw come from the group already
    assert [(g.member, g.role) for g in planned.via_groups if g.resource == raw] == [
        (team, "roles/storage.objectViewer")
    ]
    assert "Already granted through groups" in render_table(planned)
    # unknown membership proves nothing: the direct grant is planned
    unknown = dataclasses.replace(known, groups={})
    again = make_plan(template, FULL_NEEDS, unknown)
    assert [g for g in again.grants if g.resource == raw and PREP_SA in g.member]
    assert again.via_groups == ()
