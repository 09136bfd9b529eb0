"""Grants with a ``request.time`` condition are judged over the window the identities use them
in (ZT223), not at the check's instant: a run (its timeout, by default seven days), a
schedule (until its end time; open-ended = for ever). Offline, live through the drop-in
job's ``submit`` / ``create_schedule`` against the emulator, and on the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform import initializer
from test_live_check import EX, NOW, example_world, run_check, templates

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.job import PipelineJob
from zt_pipelines.policy.snapshot import (
    Binding,
    Condition,
    DenyPolicy,
    DenyRule,
    Snapshot,
)
from zt_pipelines.policy.snapshot_file import dump_snapshot
from zt_pipelines.policy.timewindow import parse_window, schedule_window
from zt_pipelines.resources import CRM

__all__ = ["templates"]  # the module fixture, shared with test_live_check


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiring(world: Snapshot, email: str, until: datetime) -> Snapshot:
    """``world`` where every grant to ``email`` holds only while ``request.time < until``."""
    member = f"serviceAccount:{email}"
    condition = Condition(f'request.time < timestamp("{_ts(until)}")', "temporary")
    nodes = {}
    for name, node in world.nodes.items():
        if node.policy is None or not any(member in b.members for b in node.policy.bindings):
            nodes[name] = node
            continue
        bindings: list[Binding] = []
        for b in node.policy.bindings:
            if member not in b.members:
                bindings.append(b)
                continue
            rest = tuple(m for m in b.members if m != member)
            if rest:
                bindings.append(replace(b, members=rest))
            bindings.append(Binding(b.role, (member,), condition))
        nodes[name] = replace(
            node, policy=replace(node.policy, bindings=tuple(bindings), version=3)
        )
    return replace(world, nodes=nodes)


def zt223(report: object) -> list[str]:
    return [f.message for f in report.findings if f.code == "ZT223"]  # type: ignore[attr-defined]


def test_a_grant_expiring_minutes_after_the_check_is_not_proven_for_the_run(
    templates: dict[str, str],
) -> None:
    world = expiring(example_world(), EX.TRAIN_SA, NOW + timedelta(minutes=5))
    report = run_check(templates["training"], world)
    messages = zt223(report)
    assert messages and all("expires" in m for m in messages), messages
    assert any(EX.TRAIN_SA in m and _ts(NOW + timedelta(minutes=5)) in m for m in messages)
    assert not report.allowed
    # far enough: the default window (7 days) ends before the expiry
    later = expiring(example_world(), EX.TRAIN_SA, NOW + timedelta(days=30))
    assert not zt223(run_check(templates["training"], later))


def test_the_window_follows_the_run_or_schedule(templates: dict[str, str]) -> None:
    world = expiring(example_world(), EX.TRAIN_SA, NOW + timedelta(days=30))

    def check(window: object) -> list[str]:
        return zt223(
            zt.check(
                templates["training"],
                project=EX.PROJECT,
                location=EX.LOCATION,
                pipeline_service_account=EX.PIPELINE_SA,
                pipeline_root=EX.PIPELINE_ROOT,
                submitter=EX.SUBMITTER,
                snapshot=world,
                now=NOW,
                run_window=window,  # type: ignore[arg-type]
            )
        )

    assert check(schedule_window(None))  # open-ended: must hold for ever
    assert any("open-ended" in m for m in check(schedule_window(None)))
    assert check(schedule_window(NOW + timedelta(days=60)))
    assert not check(schedule_window(NOW + timedelta(days=20)))
    assert check(parse_window("40d", NOW))
    assert not check(parse_window("12h", NOW))


def test_a_deny_rule_that_starts_inside_the_window_lapses_the_grant(
    templates: dict[str, str],
) -> None:
    starts = NOW + timedelta(hours=2)
    deny = DenyPolicy(
        name="policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fzt-demo/denypolicies/later",
        attachment_point=f"{CRM}projects/{EX.PROJECT}",
        rules=(
            DenyRule(
                denied_principals=(
                    f"principal://iam.googleapis.com/projects/-/serviceAccounts/{EX.TRAIN_SA}",
                ),
                denied_permissions=("storage.googleapis.com/objects.get",),
                denial_condition=Condition(f'request.time > timestamp("{_ts(starts)}")'),
            ),
        ),
    )
    world = replace(example_world(), deny_policies=(*example_world().deny_policies, deny))
    report = run_check(templates["training"], world)
    assert any("objects.get" in m and EX.TRAIN_SA in m for m in zt223(report)), zt223(report)


@pytest.mark.parametrize(
    "expression",
    [
        'request["time"] < timestamp("{t}")',
        '(request).time < timestamp("{t}")',
        'request.time < timestamp("{tz}")',
        'request.time < timestamp("{t}") || request.time > timestamp("{later}")',
    ],
)
def test_every_spelling_of_the_time_and_of_a_timestamp_is_read(
    templates: dict[str, str], expression: str
) -> None:
    """Read from the parsed condition, not its text: ``request["time"]``, parentheses, an
    escaped ``Z``, a gap inside the window."""
    t = NOW + timedelta(hours=1)
    text = expression.format(
        t=_ts(t), tz=_ts(t).replace("Z", "\\u005A"), later=_ts(NOW + timedelta(days=2))
    )
    member = f"serviceAccount:{EX.TRAIN_SA}"
    nodes = {}
    for name, node in example_world().nodes.items():
        if node.policy is not None and any(member in b.members for b in node.policy.bindings):
            bindings = []
            for b in node.policy.bindings:
                if member in b.members:
                    rest = tuple(m for m in b.members if m != member)
                    if rest:
                        bindings.append(replace(b, members=rest))
                    bindings.append(Binding(b.role, (member,), Condition(text)))
                else:
                    bindings.append(b)
            node = replace(node, policy=replace(node.policy, bindings=tuple(bindings), version=3))
        nodes[name] = node
    report = run_check(templates["training"], replace(example_world(), nodes=nodes))
    assert zt223(report), (text, sorted(f.code for f in report.findings))


def test_a_naive_check_time_is_no_traceback(templates: dict[str, str]) -> None:
    world = expiring(example_world(), EX.TRAIN_SA, NOW + timedelta(minutes=5))
    report = zt.check(
        templates["training"],
        project=EX.PROJECT,
        location=EX.LOCATION,
        pipeline_service_account=EX.PIPELINE_SA,
        pipeline_root=EX.PIPELINE_ROOT,
        submitter=EX.SUBMITTER,
        snapshot=world,
        now=NOW.replace(tzinfo=None),
    )
    assert zt223(report)


def test_a_broad_grant_that_starts_inside_the_window_is_zt214(templates: dict[str, str]) -> None:
    """The mirror of a lapse: an organisation-wide grant false at the check but true an hour
    into the run reaches every bucket of the organisation from then (ZT214, naming when)."""
    org = f"{CRM}organizations/100"
    starts = NOW + timedelta(hours=1)
    nodes = dict(example_world().nodes)
    policy = nodes[org].policy
    assert policy is not None
    grant = Binding(
        "roles/storage.objectViewer",
        (f"serviceAccount:{EX.TRAIN_SA}",),
        Condition(f'request.time > timestamp("{_ts(starts)}")', "later"),
    )
    nodes[org] = replace(
        nodes[org], policy=replace(policy, bindings=(*policy.bindings, grant), version=3)
    )
    report = run_check(templates["training"], replace(example_world(), nodes=nodes))
    broad = [f.message for f in report.findings if f.code == "ZT214" and EX.TRAIN_SA in f.message]
    assert any("inside the run's window" in m for m in broad), sorted(
        (f.code, f.message[:80]) for f in report.findings
    )
    # starting after the window (the default 7 days) it is not reported as broad
    later = replace(
        grant, condition=Condition(f'request.time > timestamp("{_ts(NOW + timedelta(days=30))}")')
    )
    nodes[org] = replace(
        nodes[org], policy=replace(policy, bindings=(*policy.bindings, later), version=3)
    )
    report = run_check(templates["training"], replace(example_world(), nodes=nodes))
    assert not [f for f in report.findings if f.code == "ZT214" and "objectViewer" in f.message], [
        f.message for f in report.findings if f.code == "ZT214"
    ]


def test_without_time_conditions_nothing_is_probed(templates: dict[str, str]) -> None:
    assert not zt223(run_check(templates["training"], example_world()))


def test_the_cli_option(
    templates: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from zt_pipelines.cli import main

    def run(*argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as info:
            main(list(argv))
        out, err = capsys.readouterr()
        return int(info.value.code or 0), out + err

    world = expiring(example_world(), EX.TRAIN_SA, NOW + timedelta(days=30))
    snap = tmp_path / "w.json"
    snap.write_text(json.dumps(dump_snapshot(world)))
    base = [
        "check",
        templates["training"],
        "--project",
        EX.PROJECT,
        "--location",
        EX.LOCATION,
        "--pipeline-sa",
        EX.PIPELINE_SA,
        "--pipeline-root",
        EX.PIPELINE_ROOT,
        "--submitter",
        EX.SUBMITTER,
        "--snapshot",
        str(snap),
        "--now",
        NOW.isoformat(),
        "--format",
        "json",
    ]
    code, out = run(*base, "--holds-until", "forever")
    assert code == 1 and "ZT223" in out, out
    code, out = run(*base, "--holds-until", "3d")
    assert "ZT223" not in out, out
    code, out = run(*base, "--holds-until", "next tuesday")
    assert code == 2 and "--holds-until" in out, out


@pytest.fixture()
def expiring_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The demo world where train-sa's grants expire in 30 days (of the real clock), with
    aiplatform pointed at the emulator."""
    world = expiring(example_world(), EX.TRAIN_SA, datetime.now(timezone.utc) + timedelta(days=30))
    with Emulator(world) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emu.address}")
        config = initializer.global_config
        saved = dict(vars(config))
        config.__init__()  # type: ignore[misc]
        aiplatform.init(project=EX.PROJECT, location=EX.LOCATION)
        try:
            yield emu
        finally:
            vars(config).clear()
            vars(config).update(saved)


def _job(template: str, tmp_path: Path) -> PipelineJob:
    return PipelineJob(
        display_name="demo",
        template_path=template,
        job_id=f"t-{uuid.uuid4().hex[:12]}",
        credentials=emulator_credentials(EX.SUBMITTER),
        audit_log=AuditLog(tmp_path / "audit.jsonl"),
    )


def test_the_drop_in_judges_a_schedule_until_its_end_and_a_run_for_its_window(
    expiring_emulator: Emulator, templates: dict[str, str], tmp_path: Path
) -> None:
    template = templates["training"]
    # an open-ended schedule needs the grant for ever: refused, nothing created
    with pytest.raises(zt.ZeroTrustViolation) as info:
        _job(template, tmp_path).create_schedule(
            cron="0 * * * *", display_name="hourly", service_account=EX.PIPELINE_SA
        )
    assert "ZT223" in {f.code for f in info.value.report.errors}
    assert not expiring_emulator.schedules
    # ending before the grant expires: created
    end = _ts(datetime.now(timezone.utc) + timedelta(days=10))
    _job(template, tmp_path).create_schedule(
        cron="0 * * * *",
        display_name="hourly",
        end_time=end,
        service_account=EX.PIPELINE_SA,
    )
    assert len(expiring_emulator.schedules) == 1
    # a run: the default window (7 days) ends before the expiry
    report = _job(template, tmp_path).verify(service_account=EX.PIPELINE_SA)
    assert "ZT223" not in report.codes()
