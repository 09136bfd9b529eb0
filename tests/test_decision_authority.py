"""Who decides a decision's rules and time: every record names the policy (and snapshot file)
it was judged under, an organisation can make its policy file binding, approvals under another
policy are flagged after the fact (ZT642/ZT643), and a time far from the machine's clock is a
what-if (ZT405) that never dates a record (docs/decision-authority.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from google.cloud.aiplatform import initializer
from monitor_world import EXAMPLES

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog, Decision
from zt_pipelines.authority import PolicyBindingError
from zt_pipelines.cli import main
from zt_pipelines.errors import PolicyFileError
from zt_pipelines.monitor.authority import policy_findings
from zt_pipelines.monitor.shadow import JobSummary, find_shadows
from zt_pipelines.policy.orgpolicy import load_policy, policy_identity, rules_sha256

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "examples" / "world.yaml"
PSA = "pipeline-sa@zt-demo.iam.gserviceaccount.com"
ORG_RULES = 'version: 1\nimages:\n  allowedRegistries: ["us-docker.pkg.dev/zt-demo/"]\n'
LAX_RULES = "version: 1\nseverities:\n  ZT500: note\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("authority")
    return str(EXAMPLES.compile_pipeline("training", str(out / "training.yaml")))


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No aiplatform.init, no ADC, no emulator, no policy environment: snapshot verification.
    Yields a directory holding the organisation's file (org.yaml) and a lax one (mine.yaml)."""
    for name in (
        "ZT_EMULATOR_HOST",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "ZT_POLICY",
        "ZT_POLICY_BINDING",
        "ZT_POLICY_SHA256",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    (tmp_path / "org.yaml").write_text(ORG_RULES)
    (tmp_path / "mine.yaml").write_text(LAX_RULES)
    config = initializer.global_config
    saved = dict(vars(config))
    config.__init__()  # type: ignore[misc]
    yield tmp_path
    vars(config).clear()
    vars(config).update(saved)


def verify(template: str, log: Path, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    job = zt.PipelineJob(
        display_name="authority",
        template_path=template,
        project="zt-demo",
        location="us-central1",
        snapshot=str(WORLD),
        audit_log=str(log),
        **kwargs,
    )
    report = job.verify(service_account=PSA)
    return report, json.loads(log.read_text().splitlines()[-1])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the record names the policy


def test_every_record_names_the_policy_it_was_judged_under(
    offline: Path, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, mine = offline / "org.yaml", offline / "mine.yaml"
    monkeypatch.setenv("ZT_POLICY", str(org))
    refused, by_org = verify(template, offline / "a.jsonl")
    assert not refused.allowed and refused.by_code("ZT500")
    assert by_org["policy"]["source"] == str(org.absolute())
    assert by_org["policy"]["sha256"] == sha(org)
    assert by_org["policy"]["rules_sha256"] == rules_sha256(load_policy(org))

    allowed, by_mine = verify(template, offline / "b.jsonl", policy=str(mine))
    assert allowed.allowed  # without a binding the argument still replaces the default ...
    assert by_mine["policy"]["source"] == str(mine)  # ... but the approval says so (absolute)
    assert by_mine["policy"]["sha256"] == sha(mine)

    _, by_dict = verify(template, offline / "c.jsonl", policy={"version": 1})
    assert by_dict["policy"]["source"] == "<policy>"
    assert by_dict["policy"]["rules_sha256"] == rules_sha256(load_policy(None))


def test_the_policy_is_part_of_the_decision_sha256(offline: Path, template: str) -> None:
    lax = offline / "lax.yaml"
    lax.write_text("version: 1\n")
    _, strict = verify(template, offline / "a.jsonl")
    _, relaxed = verify(template, offline / "b.jsonl", policy=str(lax))
    _, again = verify(template, offline / "c.jsonl")
    assert strict["decision_sha256"] == again["decision_sha256"]  # deterministic
    # the same rules from another file: another source, so another decision record
    assert strict["decision_sha256"] != relaxed["decision_sha256"]


def test_a_snapshot_decision_names_the_file_it_was_judged_on(offline: Path, template: str) -> None:
    copy = offline / "world.yaml"
    copy.write_bytes(WORLD.read_bytes() + b"\n# edited\n")
    report, record = verify(template, offline / "a.jsonl", policy={"version": 1})
    assert report.allowed
    assert record["baseline"]["source"] == "snapshot"
    assert record["baseline"]["snapshot"] == {"path": str(WORLD), "sha256": sha(WORLD)}
    job = zt.PipelineJob(
        display_name="authority",
        template_path=template,
        project="zt-demo",
        location="us-central1",
        snapshot=str(copy),
        audit_log=str(offline / "b.jsonl"),
        policy={"version": 1},
    )
    job.verify(service_account=PSA)
    other = json.loads((offline / "b.jsonl").read_text().splitlines()[-1])
    assert other["baseline"]["snapshot"]["sha256"] == sha(copy)
    assert other["decision_sha256"] != record["decision_sha256"]


# ------------------------------------------------------------------ binding


def test_a_binding_file_refuses_another_policy_everywhere(
    offline: Path, template: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    org, mine = offline / "org.yaml", offline / "mine.yaml"
    monkeypatch.setenv("ZT_POLICY", str(org))
    monkeypatch.setenv("ZT_POLICY_BINDING", "1")
    # the drop-in: refused typed, and the refusal is audited
    log = offline / "a.jsonl"
    for other in (str(mine), {"version": 1}, load_policy(mine)):
        with pytest.raises(PolicyBindingError) as info:
            verify(template, log, policy=other)
        assert "binding" in info.value.message
        record = json.loads(log.read_text().splitlines()[-1])
        assert record["outcome"] == "refused" and "binding" in record["reason"]
    # zt.check
    with pytest.raises(PolicyBindingError):
        zt.check(
            template,
            project="zt-demo",
            location="us-central1",
            pipeline_service_account=PSA,
            snapshot=str(WORLD),
            policy={"version": 1},
        )
    # the CLI: exit 2 naming the binding
    argv = ["check", template, "--project", "zt-demo", "--location", "us-central1"]
    argv += ["--pipeline-sa", PSA, "--snapshot", str(WORLD), "--policy", str(mine)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "binding" in capsys.readouterr().err
    # plan/apply's identity projects
    from zt_pipelines.provision import allowed_identity_projects

    with pytest.raises(PolicyBindingError):
        allowed_identity_projects([], policy={"version": 1})


def test_a_binding_file_accepts_the_same_rules(
    offline: Path, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = offline / "org.yaml"
    copy = offline / "copy.yaml"
    copy.write_text("# the org's rules, reformatted\n" + ORG_RULES.replace('"', "'"))
    monkeypatch.setenv("ZT_POLICY", str(org))
    monkeypatch.setenv("ZT_POLICY_BINDING", "1")
    for same in (
        None,
        str(org),
        str(copy),
        {"version": 1, "images": {"allowedRegistries": ["us-docker.pkg.dev/zt-demo/"]}},
    ):
        report, record = verify(template, offline / "a.jsonl", policy=same)
        assert report.by_code("ZT500") and not report.allowed
        assert record["policy"]["source"] == str(org)  # the organisation's file decided


def test_a_pinned_file_must_hash_to_the_pin(
    offline: Path, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = offline / "org.yaml"
    monkeypatch.setenv("ZT_POLICY", str(org))
    monkeypatch.setenv("ZT_POLICY_SHA256", sha(org))
    report, record = verify(template, offline / "a.jsonl")  # the pin implies the binding
    assert record["policy"]["sha256"] == sha(org) and not report.allowed
    with pytest.raises(PolicyBindingError):
        verify(template, offline / "b.jsonl", policy={"version": 1})
    org.write_text(ORG_RULES + "severities:\n  ZT500: note\n")  # edited in place
    with pytest.raises(PolicyBindingError) as info:
        verify(template, offline / "c.jsonl")
    assert "pinned" in info.value.message


@pytest.mark.parametrize(
    ("env", "what"),
    [
        ({"ZT_POLICY_BINDING": "1"}, "names no file"),
        ({"ZT_POLICY_BINDING": "yes please"}, "neither 1 nor 0"),
        ({"ZT_POLICY_SHA256": "abc", "ZT_POLICY": "x.yaml"}, "not a sha256"),
    ],
)
def test_a_misconfigured_binding_is_refused(
    offline: Path, template: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], what: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PolicyFileError) as info:
        verify(template, offline / "a.jsonl")
    assert what in info.value.message


# ------------------------------------------------------------------ approvals after the fact


def test_policy_findings_of_an_approval() -> None:
    strict = policy_identity(load_policy(None))
    approval: dict[str, Any] = {"seq": 3, "policy": strict}
    assert policy_findings(approval, ()) == []  # nothing expected: not checked
    assert policy_findings(approval, (strict["rules_sha256"],)) == []
    assert policy_findings(approval, (strict["sha256"].upper(),)) == []
    [other] = policy_findings(approval, ("0" * 64,), resource="r")
    assert other.code == "ZT642" and other.resource == "r" and "seq 3" in other.message
    for unnamed in ({"seq": 4}, {"policy": "x"}, {"policy": {"source": "a"}}):
        [none] = policy_findings(unnamed, ("0" * 64,))
        assert none.code == "ZT643"


def test_monitor_flags_jobs_and_schedules_approved_under_another_policy() -> None:
    digest = "ab" * 32
    labels = {"zt-spec-sha256-a": digest[:32], "zt-spec-sha256-b": digest[32:]}
    approval = {
        "seq": 1,
        "action": "submit",
        "outcome": "allowed",
        "spec_sha256": digest,
        "project": "p",
        "location": "us-central1",
        "job_id": "j1",
        "identities": [{"role": "pipeline", "task": "", "service_account": PSA, "source": "x"}],
        "policy": {"source": "mine.yaml", "sha256": "1" * 64, "rules_sha256": "2" * 64},
    }
    job = JobSummary(
        name="projects/p/locations/us-central1/pipelineJobs/j1",
        state="PIPELINE_STATE_RUNNING",
        labels=labels,
        spec_sha256=digest,
        service_account=PSA,
    )
    common: dict[str, Any] = {
        "project": "p",
        "location": "us-central1",
        "spec_labels": ("zt-spec-sha256-a", "zt-spec-sha256-b"),
    }
    assert not find_shadows([job], [], [approval], **common).findings
    flagged = find_shadows([job], [], [approval], expect_policy=("3" * 64,), **common)
    assert [f.code for f in flagged.findings] == ["ZT642"]
    assert find_shadows([job], [], [approval], expect_policy=("2" * 64,), **common).findings == ()


def test_drift_flags_an_approval_under_another_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from monitor_world import monitor_world

    from zt_pipelines.monitor.service import drift

    log = tmp_path / "audit.jsonl"
    audit = AuditLog(log)
    world = monitor_world()
    strict = policy_identity(load_policy(None))
    base = {
        "action": "submit",
        "outcome": "allowed",
        "submitter": "user:a@example.com",
        "project": "zt-demo",
        "location": "us-central1",
        "pipeline": "p",
        "spec_sha256": "c" * 64,
        "job_id": "j",
    }
    audit.append(Decision(**base, policy={**strict, "source": "mine.yaml"}))  # type: ignore[arg-type]
    mine = offline_file(tmp_path, LAX_RULES)
    [verdict] = drift(audit, snapshot=world, record=False, expect_policy=[str(mine)])
    assert verdict.report.by_code("ZT642")
    [verdict] = drift(audit, snapshot=world, record=False, expect_policy=[strict["rules_sha256"]])
    assert not verdict.report.by_code("ZT642") and not verdict.report.by_code("ZT643")
    # the binding file is the default expectation
    with monkeypatch.context() as env:
        env.setenv("ZT_POLICY", str(mine))
        env.setenv("ZT_POLICY_BINDING", "1")
        [verdict] = drift(audit, snapshot=world, record=False)
        assert verdict.report.by_code("ZT642")
    assert not drift(audit, snapshot=world, record=False)[0].report.by_code("ZT642")
    audit.append(Decision(**base))  # type: ignore[arg-type]  # a record naming no policy
    [verdict] = drift(audit, snapshot=world, record=False, expect_policy=[strict["sha256"]])
    assert verdict.report.by_code("ZT643")


def offline_file(directory: Path, text: str) -> Path:
    path = directory / "expected.yaml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ time


@pytest.fixture()
def real_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a test suite: a far time is a what-if."""
    monkeypatch.delenv("ZT_TEST_CLOCK", raising=False)


def test_a_past_clock_neither_revives_expired_waivers_nor_backdates_the_record(
    offline: Path, template: str, real_clock: None
) -> None:
    policy = offline / "waivers.yaml"
    policy.write_text(
        ORG_RULES
        + "suppressions:\n"
        + "".join(
            f"  - code: ZT500\n    step: {step}\n    justification: until mid-year\n"
            "    expires: 2026-06-30\n"
            for step in ("ingest", "train", "evaluate-and-upload")
        )
    )
    past = datetime(2026, 6, 1, tzinfo=timezone.utc)
    if datetime.now(timezone.utc) < past + timedelta(days=30):
        pytest.skip("the machine's clock is before the waivers expired")
    report, record = verify(template, offline / "a.jsonl", policy=str(policy), clock=lambda: past)
    assert not report.allowed
    [what_if] = report.by_code("ZT405")
    assert "2026-06-01" in what_if.message and "behind" in what_if.message
    recorded = datetime.fromisoformat(record["time"])
    assert abs(recorded - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert record["judged_at"].startswith("2026-06-01")
    assert record["outcome"] == "refused"


def test_a_clock_within_minutes_is_now(offline: Path, template: str, real_clock: None) -> None:
    near = datetime.now(timezone.utc) - timedelta(minutes=2)
    report, record = verify(
        template, offline / "a.jsonl", policy={"version": 1}, clock=lambda: near
    )
    assert report.allowed and not report.by_code("ZT405")
    assert "judged_at" not in record


def test_check_now_far_off_is_a_what_if(
    offline: Path, template: str, real_clock: None, capsys: Any
) -> None:
    kwargs: dict[str, Any] = {
        "project": "zt-demo",
        "location": "us-central1",
        "pipeline_service_account": PSA,
        "snapshot": str(WORLD),
        "policy": {"version": 1},
    }
    assert zt.check(template, **kwargs).allowed
    future = datetime.now(timezone.utc) + timedelta(days=3)
    report = zt.check(template, now=future, **kwargs)
    assert not report.allowed and report.by_code("ZT405")
    assert "ahead of" in report.by_code("ZT405")[0].message
    argv = [
        "check",
        template,
        "--project",
        "zt-demo",
        "--location",
        "us-central1",
        "--pipeline-sa",
        PSA,
        "--snapshot",
        str(WORLD),
        "--now",
        "2026-01-01T00:00:00Z",
    ]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 1 and "ZT405" in capsys.readouterr().out


def test_zt405_cannot_be_relaxed_or_suppressed() -> None:
    with pytest.raises(PolicyFileError):
        load_policy({"version": 1, "severities": {"ZT405": "note"}})
    with pytest.raises(PolicyFileError):
        load_policy(
            {
                "version": 1,
                "suppressions": [{"code": "ZT405", "justification": "x", "expires": "2099-01-01"}],
            }
        )


def test_an_audit_log_with_a_far_clock_keeps_the_machines_time(
    tmp_path: Path, real_clock: None
) -> None:
    log = AuditLog(tmp_path / "a.jsonl", clock=lambda: datetime(2020, 1, 1, tzinfo=timezone.utc))
    entry = log.append(Decision("verify", "allowed", "unknown", "p", "us-central1", "x"))
    assert entry.record["clock_time"].startswith("2020-01-01")
    assert abs(datetime.fromisoformat(entry.record["time"]) - datetime.now(timezone.utc)) < (
        timedelta(minutes=5)
    )
    assert log.verify().ok


def test_monitoring_verbs_judge_at_the_machines_time(tmp_path: Path, real_clock: None) -> None:
    from monitor_world import monitor_world

    from zt_pipelines.monitor.service import drift

    audit = AuditLog(tmp_path / "audit.jsonl")
    world = monitor_world()
    future = datetime.now(timezone.utc) + timedelta(days=90)  # pushes approvals out of --since
    [empty] = drift(audit, snapshot=world, record=False, clock=lambda: future)
    assert empty.drifted and empty.report.by_code("ZT405")
    audit.append(
        Decision(
            "submit",
            "allowed",
            "user:a@example.com",
            "zt-demo",
            "us-central1",
            "p",
            spec_sha256="c" * 64,
            job_id="j",
        )
    )
    [now] = drift(audit, snapshot=world, record=False)
    assert not now.report.by_code("ZT405")
    near = datetime.now(timezone.utc) + timedelta(minutes=1)
    [skewed] = drift(audit, snapshot=world, record=False, clock=lambda: near)
    assert not skewed.report.by_code("ZT405")
    [past] = drift(audit, snapshot=world, clock=lambda: datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert past.report.by_code("ZT405")
    record = audit.records()[-1]
    assert record["action"] == "drift"  # dated by the log's clock: the machine's
    assert abs(datetime.fromisoformat(record["time"]) - datetime.now(timezone.utc)) < (
        timedelta(minutes=5)
    )
    assert any(f["code"] == "ZT405" for f in record["findings"])


@pytest.fixture()
def emulated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    from zt_pipelines.emulator import Emulator
    from zt_pipelines.policy.snapshot_file import load_snapshot

    for name in ("ZT_POLICY", "ZT_POLICY_BINDING", "ZT_POLICY_SHA256"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "org.yaml").write_text("version: 1\n")
    (tmp_path / "mine.yaml").write_text(LAX_RULES)
    config = initializer.global_config
    saved = dict(vars(config))
    with Emulator(_may_update_schedules(load_snapshot(WORLD))) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emu.address}")
        monkeypatch.setenv("NO_GCE_CHECK", "True")
        try:
            yield emu
        finally:
            vars(config).clear()
            vars(config).update(saved)


def _may_update_schedules(world: Any) -> Any:
    """The example world where alice may also update schedules (schedules.patch)."""
    import dataclasses

    from zt_pipelines.policy.snapshot import Binding, Role

    project = "//cloudresourcemanager.googleapis.com/projects/zt-demo"
    roles = dict(world.roles)
    roles["roles/zt.scheduleUpdater"] = Role(
        "roles/zt.scheduleUpdater", frozenset({"aiplatform.schedules.update"})
    )
    nodes = dict(world.nodes)
    node = nodes[project]
    nodes[project] = dataclasses.replace(
        node,
        policy=dataclasses.replace(
            node.policy,
            bindings=(
                *node.policy.bindings,
                Binding("roles/zt.scheduleUpdater", ("user:alice@example.com",)),
            ),
        ),
    )
    return dataclasses.replace(world, roles=roles, nodes=nodes)


def submit_argv(template: str, log: Path, *extra: str) -> list[str]:
    return [
        "submit",
        template,
        "--project",
        "zt-demo",
        "--location",
        "us-central1",
        "--audit-log",
        str(log),
        "--emulator-principal",
        "user:alice@example.com",
        "--pipeline-sa",
        PSA,
        *extra,
    ]


def test_cli_submit_and_schedule_apply_the_binding_file(
    emulated: Any, template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from google.cloud import aiplatform

    from zt_pipelines.emulator import emulator_credentials

    org, mine = tmp_path / "org.yaml", tmp_path / "mine.yaml"
    monkeypatch.setenv("ZT_POLICY", str(org))
    monkeypatch.setenv("ZT_POLICY_BINDING", "1")
    log = tmp_path / "a.jsonl"
    before = set(emulated.pipeline_jobs)
    with pytest.raises(SystemExit) as info:
        main(submit_argv(template, log, "--policy", str(mine)))
    assert info.value.code == 2 and "binding" in capsys.readouterr().err
    assert set(emulated.pipeline_jobs) == before  # nothing sent
    refused = json.loads(log.read_text().splitlines()[-1])
    assert refused["outcome"] == "refused" and "binding" in refused["reason"]
    with pytest.raises(SystemExit) as info:
        main(submit_argv(template, log))  # --policy defaults to ZT_POLICY: the same file
    assert info.value.code == 0, capsys.readouterr().err
    allowed = json.loads(log.read_text().splitlines()[-1])
    assert allowed["action"] == "cli-submit" and allowed["outcome"] == "allowed"
    assert allowed["policy"]["sha256"] == sha(org)
    assert allowed["baseline"]["source"] == "live" and "snapshot" not in allowed["baseline"]
    # a schedule built in Python with its own policy
    aiplatform.init(project="zt-demo", location="us-central1")
    job = zt.PipelineJob(
        display_name="authority",
        template_path=template,
        credentials=emulator_credentials("user:alice@example.com"),
        audit_log=str(log),
        policy=str(mine),
    )
    with pytest.raises(PolicyBindingError):
        job.create_schedule(cron="0 3 * * *", display_name="nightly", service_account=PSA)
    assert json.loads(log.read_text().splitlines()[-1])["outcome"] == "refused"


def test_a_policy_built_in_python_is_not_named_the_strict_defaults(
    offline: Path, template: str
) -> None:
    from zt_pipelines.policy.orgpolicy import STRICT, OrgPolicy, Severity

    lax = OrgPolicy(severities={**STRICT.severities, "ZT500": Severity.NOTE})
    _, record = verify(template, offline / "a.jsonl", policy=lax)
    assert record["policy"]["source"] == "<OrgPolicy built in Python>"
    _, strict = verify(template, offline / "b.jsonl", policy=OrgPolicy())
    assert strict["policy"]["source"] == "<strict defaults>"
    assert strict["policy"]["rules_sha256"] != record["policy"]["rules_sha256"]


@pytest.mark.parametrize("bad", ["2026-06-01", 1748736000, None])
def test_a_clock_that_is_no_datetime_is_refused_typed(
    offline: Path, template: str, bad: Any
) -> None:
    from zt_pipelines.errors import InputError

    if bad is None:
        with pytest.raises(InputError):
            zt.check(
                template,
                project="zt-demo",
                location="us-central1",
                pipeline_service_account=PSA,
                snapshot=str(WORLD),
                now="yesterday",
            )  # type: ignore[arg-type]
        return
    with pytest.raises(InputError) as info:
        verify(template, offline / "a.jsonl", clock=lambda: bad)
    assert "not a datetime" in info.value.message
    assert json.loads((offline / "a.jsonl").read_text().splitlines()[-1])["outcome"] == "refused"


def test_a_snapshot_file_swapped_while_it_is_judged_is_refused(
    offline: Path, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zt_pipelines.verification as verification
    from zt_pipelines.errors import SnapshotError

    copy = offline / "world.yaml"
    copy.write_bytes(WORLD.read_bytes())
    real = verification.check_rewritten

    def swapping(*args: Any, **kwargs: Any) -> Any:
        report = real(*args, **kwargs)
        copy.write_bytes(WORLD.read_bytes() + b"\n# swapped after the read\n")
        return report

    monkeypatch.setattr(verification, "check_rewritten", swapping)
    job = zt.PipelineJob(
        display_name="authority",
        template_path=template,
        project="zt-demo",
        location="us-central1",
        snapshot=str(copy),
        audit_log=str(offline / "a.jsonl"),
        policy={"version": 1},
    )
    with pytest.raises(SnapshotError) as info:
        job.verify(service_account=PSA)
    assert "changed while it was read" in info.value.message
    assert json.loads((offline / "a.jsonl").read_text().splitlines()[-1])["outcome"] == "refused"


def test_a_bound_schedule_refuses_an_end_time_past_its_judged_window(
    emulated: Any, template: str, tmp_path: Path
) -> None:
    from google.cloud import aiplatform

    from zt_pipelines.emulator import emulator_credentials
    from zt_pipelines.errors import StateChangedError

    aiplatform.init(project="zt-demo", location="us-central1")
    log = tmp_path / "a.jsonl"
    job = zt.PipelineJob(
        display_name="authority",
        template_path=template,
        credentials=emulator_credentials("user:alice@example.com"),
        audit_log=str(log),
        snapshot=str(WORLD),
        policy={"version": 1},
    )
    schedule = job.create_schedule(
        cron="0 3 * * *",
        display_name="until-2027",
        end_time="2027-01-01T00:00:00Z",
        service_account=PSA,
    )
    name = str(schedule.resource_name)
    with pytest.raises(StateChangedError) as info:
        schedule.update(end_time="2027-06-01T00:00:00Z")
    assert "judged until" in info.value.message
    assert emulated.schedules[name].get("endTime", "").startswith("2027-01-01")  # unchanged
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["action"] == "schedule-update" and record["outcome"] == "refused"
    schedule.update(end_time="2026-12-31T00:00:00Z", display_name="shorter")  # inside: sent
    assert emulated.schedules[name]["endTime"].startswith("2026-12-31")
    assert emulated.schedules[name]["displayName"] == "shorter"
