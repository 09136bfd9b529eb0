"""Drift: approvals re-evaluated against today's IAM (snapshot files and live, through the
emulator with the real clients), with the posture baseline kept in the audit log."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from monitor_world import (
    AUDITOR,
    EXAMPLES,
    LEGACY_SA,
    LOCATION,
    PIPELINE_SA,
    PROJECT,
    PROJECT_NODE,
    SUBMITTER,
    TRAIN_SA,
    monitor_world,
    new_job_id,
)

from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.job import PipelineJob
from zt_pipelines.monitor.service import drift
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    DenyPolicy,
    DenyRule,
    Node,
    Snapshot,
    Unreadable,
)

DENY = DenyPolicy(
    name="policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fzt-demo/denypolicies/no-delete",
    attachment_point=f"cloudresourcemanager.googleapis.com/projects/{PROJECT}",
    rules=(
        DenyRule(
            denied_principals=(
                f"principal://iam.googleapis.com/projects/-/serviceAccounts/{TRAIN_SA}",
            ),
            denied_permissions=("storage.googleapis.com/objects.delete",),
        ),
    ),
)


def with_binding(world: Snapshot, node: str, role: str, member: str) -> Snapshot:
    nodes = dict(world.nodes)
    current = nodes.get(node) or Node(node, "serviceAccount", parent=PROJECT_NODE)
    policy = current.policy or AllowPolicy()
    nodes[node] = dataclasses.replace(
        current,
        policy=dataclasses.replace(policy, bindings=(*policy.bindings, Binding(role, (member,)))),
    )
    return dataclasses.replace(world, nodes=nodes)


def with_account(world: Snapshot, email: str, **changes: object) -> Snapshot:
    accounts = dict(world.service_accounts)
    accounts[email] = dataclasses.replace(accounts[email], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(world, service_accounts=accounts)


@pytest.fixture(scope="module")
def approved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An audit log holding one approval: the example pipeline submitted through zt."""
    out = tmp_path_factory.mktemp("drift")
    template = EXAMPLES.compile_pipeline("training", str(out / "training.yaml"))
    log = out / "approved.jsonl"
    config = initializer.global_config
    saved = dict(vars(config))
    with Emulator(monitor_world()) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("STORAGE_EMULATOR_HOST", f"http://{emu.address}")
        config.__init__()  # type: ignore[misc]
        aiplatform.init(project=PROJECT, location=LOCATION)
        try:
            PipelineJob(
                display_name="training",
                template_path=template,
                job_id=new_job_id(),
                pipeline_root=EXAMPLES.PIPELINE_ROOT,
                credentials=emulator_credentials(SUBMITTER),
                audit_log=AuditLog(log),
            ).submit(service_account=PIPELINE_SA)
        finally:
            vars(config).clear()
            vars(config).update(saved)
    yield log


@pytest.fixture()
def audit(approved: Path, tmp_path: Path) -> AuditLog:
    copy = tmp_path / "audit.jsonl"
    copy.write_bytes(approved.read_bytes())
    return AuditLog(copy)


def codes(verdicts: list[object]) -> set[str]:
    return {c for v in verdicts for c in v.report.codes()}  # type: ignore[attr-defined]


def errors(verdicts: list[object]) -> set[str]:
    return {f.code for v in verdicts for f in v.report.errors}  # type: ignore[attr-defined]


def test_no_drift_when_nothing_changed_and_the_baseline_is_recorded(audit: AuditLog) -> None:
    world = monitor_world()
    [first] = drift(audit, snapshot=world)
    assert not first.drifted, first.report
    assert first.report.by_code("ZT629")  # posture notes: the baseline
    assert audit.records()[-1]["action"] == "drift"
    [second] = drift(audit, snapshot=world)
    assert not second.drifted, second.report


def test_an_added_grant_is_drift(audit: AuditLog) -> None:
    world = monitor_world()
    drift(audit, snapshot=world)  # baseline
    bucket = "//storage.googleapis.com/zt-demo-raw-data"
    changed = with_binding(
        world, bucket, "roles/storage.objectViewer", f"serviceAccount:{TRAIN_SA}"
    )
    [verdict] = drift(audit, snapshot=changed)
    assert verdict.drifted
    [grant] = [f for f in verdict.report.by_code("ZT620") if f.resource == bucket]
    assert TRAIN_SA in grant.message and "roles/storage.objectViewer" in grant.message


def test_a_basic_role_granted_before_any_baseline_is_drift(audit: AuditLog) -> None:
    changed = with_binding(
        monitor_world(), PROJECT_NODE, "roles/editor", f"serviceAccount:{TRAIN_SA}"
    )
    [verdict] = drift(audit, snapshot=changed)
    assert verdict.drifted and "ZT620" in verdict.report.codes()


def test_a_new_user_managed_key_is_drift(audit: AuditLog) -> None:
    changed = with_account(monitor_world(), TRAIN_SA, user_managed_keys=("keys/abc123",))
    [verdict] = drift(audit, snapshot=changed)
    assert verdict.drifted
    assert any(TRAIN_SA in (f.principal or "") for f in verdict.report.by_code("ZT621"))


def test_a_new_hmac_key_is_drift(audit: AuditLog) -> None:
    """An HMAC key is a Cloud Storage credential of the account like a user-managed key."""
    world = monitor_world()
    drift(audit, snapshot=world)  # baseline
    changed = with_account(world, TRAIN_SA, hmac_keys=("GOOG1EXAMPLEACCESSID",))
    [verdict] = drift(audit, snapshot=changed)
    assert verdict.drifted
    [key] = verdict.report.by_code("ZT621")
    assert TRAIN_SA in (key.principal or "") and "GOOG1EXAMPLEACCESSID" in key.message


def test_a_removed_deny_policy_is_drift(audit: AuditLog) -> None:
    guarded = dataclasses.replace(monitor_world(), deny_policies=(DENY,))
    [baseline] = drift(audit, snapshot=guarded)
    assert not baseline.drifted, baseline.report
    [verdict] = drift(audit, snapshot=monitor_world())
    assert verdict.drifted
    [removed] = verdict.report.by_code("ZT623")
    assert "no-delete" in removed.message and TRAIN_SA in removed.message


def test_a_reenabled_identity_and_a_new_impersonation_path_are_drift(audit: AuditLog) -> None:
    disabled = with_account(monitor_world(), TRAIN_SA, disabled=True)
    [first] = drift(audit, snapshot=disabled)
    assert first.drifted  # the approval would be refused today (ZT110)
    legacy = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{LEGACY_SA}"
    reenabled = with_binding(
        monitor_world(),
        legacy,
        "roles/iam.serviceAccountTokenCreator",
        f"serviceAccount:{TRAIN_SA}",
    )
    [verdict] = drift(audit, snapshot=reenabled)
    assert {"ZT622", "ZT624"} <= verdict.report.codes()


def test_an_unreadable_part_of_iam_is_never_no_drift(audit: AuditLog) -> None:
    world = dataclasses.replace(
        monitor_world(),
        unreadable=(Unreadable(PROJECT_NODE, "allow policy", "PERMISSION_DENIED"),),
    )
    verdicts = drift(audit, snapshot=world)
    assert "ZT626" in errors(verdicts)


def test_old_approvals_are_left_out_and_a_broken_chain_is_refused(audit: AuditLog) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=60)
    assert drift(audit, snapshot=monitor_world(), clock=lambda: later) == []
    lines = audit.path.read_bytes().replace(b'"outcome":"allowed"', b'"outcome":"allowed" ', 1)
    audit.path.write_bytes(lines)
    [verdict] = drift(audit, snapshot=monitor_world(), record=False)
    assert verdict.drifted and "ZT614" in verdict.report.codes()


@pytest.fixture()
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(monitor_world()) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_EMULATOR_CALLER", AUDITOR)
        yield emu


def test_drift_live_through_the_emulator(live: Emulator, audit: AuditLog) -> None:
    [clean] = drift(audit)
    assert not clean.drifted, clean.report
    live.add_fault(Fault("*getIamPolicy*", code="PERMISSION_DENIED"))
    live.add_fault(Fault("*GetIamPolicy*", code="PERMISSION_DENIED"))
    [failed] = drift(audit)
    assert failed.drifted and "ZT626" in failed.report.codes()


def test_drift_cli_exit_codes(audit: AuditLog, tmp_path: Path) -> None:
    from zt_pipelines.policy.snapshot_file import dump_snapshot

    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps(dump_snapshot(monitor_world())))
    keyed = tmp_path / "keyed.json"
    keyed_world = with_account(monitor_world(), TRAIN_SA, user_managed_keys=("keys/k",))
    keyed.write_text(json.dumps(dump_snapshot(keyed_world)))
    with pytest.raises(SystemExit) as ok:
        main(["drift", str(audit.path), "--snapshot", str(clean)])
    assert ok.value.code == 0
    with pytest.raises(SystemExit) as drifted:
        main(["drift", str(audit.path), "--snapshot", str(keyed), "--format", "sarif"])
    assert drifted.value.code == 1
    with pytest.raises(SystemExit) as bad:
        main(["drift", str(audit.path), "--since", "soon"])
    assert bad.value.code == 2


# ---------------------------------------------------------------- the baseline at approval

NARROW = "//storage.googleapis.com/zt-demo-raw-data"


def approval_of(audit: AuditLog) -> dict[str, object]:
    [record] = [r for r in audit.records() if r["action"] == "submit"]
    return record


def test_the_approval_records_the_posture_it_was_decided_on(audit: AuditLog) -> None:
    baseline = approval_of(audit)["baseline"]
    assert isinstance(baseline, dict) and baseline["source"] == "live"
    posture = baseline["posture"]
    assert {PIPELINE_SA, TRAIN_SA} <= set(posture)
    assert posture[TRAIN_SA]["state"] == "enabled" and posture[TRAIN_SA]["keys"] == []
    root_grant = "projects/zt-demo/roles/artifactReadWrite on //storage.googleapis.com/"
    assert root_grant + "zt-demo-pipeline-root" in posture[TRAIN_SA]["grants"]
    assert NARROW in baseline["nodes"] and PROJECT_NODE in baseline["nodes"]
    assert baseline["pipeline_root"] == EXAMPLES.PIPELINE_ROOT
    assert (
        len(baseline["runtime_sha256"]) == 64
        and "runtime gcs_output_directory" in (baseline["runtime"])
    )


def test_a_narrow_grant_before_the_first_drift_check_is_caught(audit: AuditLog) -> None:
    changed = with_binding(
        monitor_world(), NARROW, "roles/storage.objectViewer", f"serviceAccount:{TRAIN_SA}"
    )
    [verdict] = drift(audit, snapshot=changed)  # the first check: no drift record before it
    assert verdict.drifted
    [grant] = [f for f in verdict.report.by_code("ZT620") if f.resource == NARROW]
    assert "since the approval" in grant.message and "roles/storage.objectViewer" in grant.message
    # it is the baseline that catches it: re-evaluating the approval alone does not
    bare = {k: v for k, v in approval_of(audit).items() if k != "baseline"}
    [without] = drift(audit, snapshot=changed, approvals=[bare], record=False)
    assert not [f for f in without.report.by_code("ZT620") if f.resource == NARROW]
    [said] = [f for f in without.report.by_code("ZT629") if f.principal is None]
    assert "holds no posture baseline" in said.message
    # and it stays drift on every later check: the approval is the baseline, not the last check
    [again] = drift(audit, snapshot=changed)
    assert [f for f in again.report.by_code("ZT620") if f.resource == NARROW]


def test_a_key_and_an_impersonation_path_before_the_first_check_are_caught(
    audit: AuditLog,
) -> None:
    keyed = with_account(monitor_world(), TRAIN_SA, user_managed_keys=("keys/k1",))
    changed = with_binding(
        keyed,
        f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{PIPELINE_SA}",
        "roles/iam.serviceAccountTokenCreator",
        f"serviceAccount:{TRAIN_SA}",
    )
    [verdict] = drift(audit, snapshot=changed)
    assert any("keys/k1 since the approval" in f.message for f in verdict.report.by_code("ZT621"))
    [path] = verdict.report.by_code("ZT624")
    assert PIPELINE_SA in path.message and "at the approval" in path.message


def test_an_unreadable_baseline_is_said(audit: AuditLog) -> None:
    broken = dict(approval_of(audit), baseline={"unavailable": "KeyError: x"})
    [verdict] = drift(audit, snapshot=monitor_world(), approvals=[broken], record=False)
    [said] = [f for f in verdict.report.by_code("ZT629") if f.principal is None]
    assert "unavailable (KeyError: x)" in said.message
    malformed = dict(approval_of(audit), baseline={"posture": {TRAIN_SA: {"state": "odd"}}})
    [verdict] = drift(audit, snapshot=monitor_world(), approvals=[malformed], record=False)
    assert any("malformed" in f.message for f in verdict.report.by_code("ZT629"))


def test_a_grant_added_live_after_the_approval_is_caught(
    audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = with_binding(
        monitor_world(), PROJECT_NODE, "roles/storage.objectViewer", f"serviceAccount:{TRAIN_SA}"
    )
    with Emulator(changed) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_EMULATOR_CALLER", AUDITOR)
        [verdict] = drift(audit)
    assert verdict.drifted
    assert [f for f in verdict.report.by_code("ZT620") if "since the approval" in f.message]


@pytest.mark.parametrize(
    "baseline",
    [
        None,
        "text",
        [],
        {"posture": []},
        {"posture": {TRAIN_SA: None}},
        {"posture": {TRAIN_SA: {"state": "enabled", "grants": "roles/x on y"}}},
        {"posture": {}, "nodes": "//x", "pipeline_root": {"a": 1}},
        {"posture": {}, "nodes": [1, None], "pipeline_root": "s3://elsewhere"},
        {"runtime": [], "runtime_sha256": 5},
    ],
)
def test_a_malformed_baseline_never_breaks_drift_or_passes_silently(
    audit: AuditLog, baseline: object
) -> None:
    record = dict(approval_of(audit), baseline=baseline)
    if baseline is None:
        del record["baseline"]
    [verdict] = drift(audit, snapshot=monitor_world(), approvals=[record], record=False)
    assert not verdict.drifted, verdict.report  # nothing changed: no drift, whatever it holds
    changed = with_account(monitor_world(), TRAIN_SA, user_managed_keys=("keys/k9",))
    [keyed] = drift(audit, snapshot=changed, approvals=[record], record=False)
    assert keyed.drifted and "ZT621" in keyed.report.codes()  # the re-evaluation still sees it


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("identities", True),
        ("identities", [{"role": "step", "needs": "x"}]),
        ("findings", 5),
        ("time", 12),
        ("project", None),
        ("baseline", "x"),
        ("baseline", {"nodes": [{}]}),
        ("baseline", {"posture": {PIPELINE_SA: [1]}}),
        ("baseline", {"posture": {PIPELINE_SA: {"state": "enabled", "grants": "roles/x"}}}),
        ("baseline", {"runtime": {"parameter x": 5}}),
        ("identities", ["x"]),
        ("findings", [[1]]),
        ("findings", [{"code": 5}]),
    ],
)
def test_a_chained_record_of_the_wrong_shape_is_a_finding_never_a_traceback(
    tmp_path: Path, field: str, value: object
) -> None:
    from zt_pipelines.audit.chain import GENESIS, seal

    record = {
        "action": "submit",
        "outcome": "allowed",
        "project": PROJECT,
        "location": LOCATION,
        "job_id": "j1",
        "spec_sha256": "a" * 64,
        "pipeline": "p",
        "submitter": "user:alice@example.com",
        "time": datetime.now(timezone.utc).isoformat(),
        "identities": [{"role": "pipeline", "service_account": PIPELINE_SA}],
        "findings": [],
        "reason": "",
        field: value,
    }
    log = tmp_path / "audit.jsonl"
    log.write_bytes(seal(record, prev=GENESIS, seq=0) + b"\n")
    [verdict] = drift(AuditLog(log), snapshot=monitor_world(), record=False)
    [broken] = verdict.report.by_code("ZT614")
    assert "malformed" in broken.message
    with pytest.raises(SystemExit) as code:
        main(["drift", str(log), "--snapshot", str(EXAMPLES_WORLD), "--no-record"])
    assert code.value.code == 1


EXAMPLES_WORLD = Path(__file__).resolve().parent.parent / "examples" / "world.yaml"


def test_durations_are_bounded() -> None:
    for option in (["drift", "--since", "99999999999d"], ["monitor", "--watch", "9999999h"]):
        with pytest.raises(SystemExit) as code:
            main([*option, "--project", PROJECT] if option[0] == "monitor" else option)
        assert code.value.code == 2


def test_a_grant_outside_what_the_approval_read_is_caught_at_the_first_check(
    audit: AuditLog,
) -> None:
    """The approval searched every grant of its identities: a grant today on a resource it
    did not read was not there then — drift, from the first check on."""
    approval = approval_of(audit)
    baseline = approval["baseline"]
    assert isinstance(baseline, dict)
    other = "//storage.googleapis.com/zt-demo-restricted"
    assert other not in baseline["nodes"]  # the approval never read this bucket
    assert TRAIN_SA in baseline["complete"]
    changed = with_binding(
        monitor_world(), other, "roles/storage.objectViewer", f"serviceAccount:{TRAIN_SA}"
    )
    [verdict] = drift(audit, snapshot=changed, record=False)
    [grant] = [f for f in verdict.report.by_code("ZT620") if f.resource == other]
    assert "since the approval" in grant.message and TRAIN_SA in grant.message
    # without the approval's complete search, it cannot be told from a grant it never read
    partial = dict(approval, baseline={**baseline, "complete": []})
    [unsure] = drift(audit, snapshot=changed, approvals=[partial], record=False)
    assert not [f for f in unsure.report.by_code("ZT620") if f.resource == other]
    # nor when today's state is not a complete search for the identity
    cut = dataclasses.replace(
        changed,
        complete_bindings_for=frozenset(
            m for m in changed.complete_bindings_for if TRAIN_SA not in m
        ),
    )
    [today_partial] = drift(audit, snapshot=cut, record=False)
    assert not [f for f in today_partial.report.by_code("ZT620") if f.resource == other]
