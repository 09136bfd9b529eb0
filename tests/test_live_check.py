"""Live checks end to end: ``check`` reading the emulator through our adapters, the
``snapshot`` command, and the round trip ``check --live`` == ``check --snapshot FILE``."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from zt_pipelines.cli import cli
from zt_pipelines.emulator import Emulator, Fault
from zt_pipelines.policy.report import Report
from zt_pipelines.policy.snapshot import ServiceAccount, Snapshot
from zt_pipelines.policy.snapshot_file import integrity_digest, load_snapshot
from zt_pipelines.verification import check

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "zt_examples_pipeline", ROOT / "examples/pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EX = _examples()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example pipelines, compiled with the real kfp compiler."""
    out = tmp_path_factory.mktemp("templates")
    return {name: EX.compile_pipeline(name, str(out / f"{name}.yaml")) for name in EX.PIPELINES}


def example_world() -> Snapshot:
    """The demo world (examples/world.yaml)."""
    return load_snapshot(ROOT / "examples/world.yaml")


@pytest.fixture()
def live(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulator]:
    """The emulator over the demo world, with ZT_EMULATOR_HOST/CALLER set as a user would."""
    with Emulator(example_world()) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        yield emu


def run_check(
    template: str, snapshot: object = None, *, pipeline_root: str | None = EX.PIPELINE_ROOT
) -> Report:
    """``check`` of an example template (live when ``snapshot`` is None)."""
    return check(
        template,
        project=EX.PROJECT,
        location=EX.LOCATION,
        pipeline_service_account=EX.PIPELINE_SA,
        pipeline_root=pipeline_root,
        submitter=EX.SUBMITTER,
        snapshot=snapshot,  # type: ignore[arg-type]
        now=NOW,
    )


def essence(report: Report) -> list[tuple[object, ...]]:
    """Findings without evidence text (etags differ between reads), and without ZT401 (a note
    about the world *file*: the live read has no file)."""
    return sorted(
        tuple(str(x) for x in (f.code, f.severity, f.step, f.principal, f.resource, f.permission))
        for f in report.findings
        if f.code != "ZT401"
    )


def codes(report: Report) -> set[str]:
    """The finding codes of a report."""
    return {f.code for f in report.findings}


@pytest.mark.parametrize("name", ["training", "missing-permission", "editor"])
def test_live_check_equals_offline_check_of_the_same_world(
    live: Emulator, templates: dict[str, str], name: str
) -> None:
    live_report = run_check(templates[name])
    offline = run_check(templates[name], example_world())
    assert essence(live_report) == essence(offline)
    assert live.counts()  # it really read the emulator
    assert not live.writes()


def test_live_check_finds_what_the_examples_promise(
    live: Emulator, templates: dict[str, str]
) -> None:
    assert "ZT200" in codes(run_check(templates["missing-permission"]))
    assert "ZT211" in codes(run_check(templates["editor"]))


def write_snapshot(template: str, out: Path, *extra: str) -> None:
    """``zt-pipelines snapshot`` of one example template into ``out``."""
    args = ["snapshot", "--project", EX.PROJECT, "--template", template]
    args += ["--pipeline-sa", EX.PIPELINE_SA, "-o", str(out), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def test_snapshot_command_round_trip(
    live: Emulator, templates: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "snap.json"
    for name in ("training", "editor"):
        write_snapshot(templates[name], out, "--pipeline-root", EX.PIPELINE_ROOT)
        data = json.loads(out.read_text())
        assert data["nodes"]
        # every section present (absent = unknown) and sealed with the digest check verifies
        assert {"denyPolicies", "unreadable", "groups", "roles"} <= set(data)
        assert data["integrity"]["sha256"] == integrity_digest(data)
        from_file = run_check(templates[name], out)
        assert "ZT401" not in {f.code for f in from_file.findings}
        assert essence(from_file) == essence(run_check(templates[name]))
    as_yaml = tmp_path / "snap.yaml"
    write_snapshot(templates["training"], as_yaml, "--pipeline-root", EX.PIPELINE_ROOT)
    assert "ZT401" not in {f.code for f in run_check(templates["training"], as_yaml).findings}


def test_unreadable_state_refuses_with_zt201_or_zt400(
    live: Emulator, templates: dict[str, str]
) -> None:
    live.add_fault(Fault(method="storage.buckets.getIamPolicy", code="PERMISSION_DENIED"))
    report = run_check(templates["training"])
    assert codes(report) & {"ZT201", "ZT400"}
    assert any(f.severity == "error" for f in report.findings)


def test_keys_and_missing_accounts_are_seen_live(templates: dict[str, str]) -> None:
    world = example_world()
    accounts = dict(world.service_accounts)
    train = EX.TRAIN_SA
    accounts[train] = replace(accounts[train], user_managed_keys=("k-123",))
    del accounts[EX.INGEST_SA]
    changed = replace(world, service_accounts=accounts)
    with Emulator(changed) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        report = run_check(templates["training"])
    found = {(f.code, f.principal) for f in report.findings}
    assert ("ZT111", f"serviceAccount:{train}") in found
    assert ("ZT110", f"serviceAccount:{EX.INGEST_SA}") in found


def test_service_account_type_is_the_shared_one() -> None:
    assert ServiceAccount  # the adapters fill the shared dataclass, nothing of their own


def test_snapshot_command_needs_the_pipeline_sa_with_a_template(
    templates: dict[str, str], tmp_path: Path
) -> None:
    from zt_pipelines.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "snapshot",
                "--project",
                EX.PROJECT,
                "--template",
                templates["training"],
                "-o",
                str(tmp_path / "s.json"),
            ]
        )
    assert exit_info.value.code == 2
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("strategy", ["direct", "inventory"])
def test_check_cli_live_equals_check_cli_with_the_snapshot_file(
    live: Emulator,
    templates: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    strategy: str,
) -> None:
    monkeypatch.setenv("ZT_LIVE_STRATEGY", strategy)
    common = [
        "--project",
        EX.PROJECT,
        "--pipeline-sa",
        EX.PIPELINE_SA,
        "--pipeline-root",
        EX.PIPELINE_ROOT,
    ]
    check_args = [
        "check",
        templates["editor"],
        "--location",
        EX.LOCATION,
        "--submitter",
        EX.SUBMITTER,
        "--now",
        NOW.isoformat(),
        "--format",
        "json",
        *common,
    ]
    runner = CliRunner()
    live_run = runner.invoke(cli, check_args, standalone_mode=False)
    snap = tmp_path / "snap.yaml"
    made = runner.invoke(
        cli, ["snapshot", "--template", templates["editor"], "-o", str(snap), *common]
    )
    assert made.exit_code == 0, made.output
    file_run = runner.invoke(cli, [*check_args, "--snapshot", str(snap)], standalone_mode=False)
    # both refuse (exit code 1): legacy-sa holds roles/editor
    assert live_run.return_value == file_run.return_value == 1, live_run.output
    live_findings = json.loads(live_run.output)["findings"]
    file_findings = json.loads(file_run.output)["findings"]
    keys = ("code", "severity", "step", "principal", "resource", "permission")
    assert [tuple(f.get(k) for k in keys) for f in live_findings] == [
        tuple(f.get(k) for k in keys) for f in file_findings
    ]
    assert any(f["code"] == "ZT211" for f in live_findings)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--project", "ml-prod", "-o", "/nonexistent-dir/snap.json"], "--output"),
        (["--project", "ML_PROD", "-o", "snap.json"], "--project"),
        (["--project", "ml-prod", "--resource", "s3://x", "-o", "snap.json"], "--resource"),
        (["--project", "ml-prod", "--param", "novalue", "-o", "snap.json"], "--param"),
    ],
)
def test_snapshot_command_bad_input_exits_2_before_reading_anything(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zt_pipelines.cli import main

    args = [str(tmp_path / a) if a == "snap.json" else a for a in args]
    with pytest.raises(SystemExit) as info:
        main(["snapshot", *args])
    err = capsys.readouterr().err
    assert info.value.code == 2 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "snap.json").exists()


def test_live_check_resolves_the_submitter_from_the_credentials(
    live: Emulator, templates: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def live_check() -> Report:
        return check(
            templates["training"],
            project=EX.PROJECT,
            location=EX.LOCATION,
            pipeline_service_account=EX.PIPELINE_SA,
            pipeline_root=EX.PIPELINE_ROOT,
            now=NOW,
        )

    report = live_check()  # ZT_EMULATOR_CALLER is the example's submitter
    assert not any("submitter unknown" in n for n in report.notes)
    assert any(g.principal == EX.SUBMITTER for g in report.granted)
    # another caller is checked as the submitter: nothing proves mallory may submit
    monkeypatch.setenv("ZT_EMULATOR_CALLER", "user:mallory@example.com")
    refused = live_check()
    assert not refused.allowed
    assert not any(g.principal == "user:mallory@example.com" for g in refused.granted)
    assert any(
        f.principal == "user:mallory@example.com" and f.code in ("ZT300", "ZT201")
        for f in refused.findings
    ), str(refused)


def test_snapshot_command_reads_the_template_default_pipeline_root(
    live: Emulator, templates: dict[str, str], tmp_path: Path
) -> None:
    # no --pipeline-root: check() uses the template's defaultPipelineRoot, so must the snapshot
    out = tmp_path / "snap.json"
    write_snapshot(templates["training"], out)
    root_bucket = "//storage.googleapis.com/" + EX.PIPELINE_ROOT.removeprefix("gs://").split("/")[0]
    assert root_bucket in json.dumps(json.loads(out.read_text())["nodes"])
    from_file = run_check(templates["training"], out, pipeline_root=None)
    assert essence(from_file) == essence(run_check(templates["training"], pipeline_root=None))
    assert from_file.allowed, str(from_file)


def test_who_can_become_an_account_that_may_run_as_a_step_identity_is_read_live(
    templates: dict[str, str],
) -> None:
    """ci-runner may act as the train identity; mallory can mint ci-runner's tokens: the live
    check reads ci-runner's policy too (it is no pipeline identity) and refuses, as offline."""
    from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node

    world = example_world()
    ci = f"ci-runner@{EX.PROJECT}.iam.gserviceaccount.com"
    project_node = f"//cloudresourcemanager.googleapis.com/projects/{EX.PROJECT}"
    ci_node = f"//iam.googleapis.com/projects/{EX.PROJECT}/serviceAccounts/{ci}"
    train_node = f"//iam.googleapis.com/projects/{EX.PROJECT}/serviceAccounts/{EX.TRAIN_SA}"
    nodes = dict(world.nodes)
    nodes[ci_node] = Node(
        ci_node,
        "serviceAccount",
        parent=project_node,
        policy=AllowPolicy(
            (Binding("roles/iam.serviceAccountTokenCreator", ("user:mallory@example.com",)),)
        ),
    )
    train = nodes.get(train_node) or Node(train_node, "serviceAccount", parent=project_node)
    bindings = (train.policy.bindings if train.policy else ()) + (
        Binding("roles/iam.serviceAccountUser", (f"serviceAccount:{ci}",)),
    )
    nodes[train_node] = replace(train, policy=AllowPolicy(bindings))
    accounts = dict(world.service_accounts)
    accounts[ci] = ServiceAccount(ci, EX.PROJECT, unique_id="4242")
    changed = replace(world, nodes=nodes, service_accounts=accounts)
    with Emulator(changed) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        report = run_check(templates["training"])
    [f] = [f for f in report.by_code("ZT220") if f.principal == "user:mallory@example.com"]
    assert f"through {ci}" in f.message and EX.TRAIN_SA in f.message and not report.allowed
    assert essence(report) == essence(run_check(templates["training"], changed))


def test_what_the_custom_code_agent_holds_is_searched_live(templates: dict[str, str]) -> None:
    """The pipeline identity can create a CustomJob without an account, which runs as the
    project's Custom Code Service Agent: its grants on any resource are searched live, as a
    snapshot file would hold them (red team round 5 #21)."""
    from zt_pipelines.policy.snapshot import AllowPolicy, Binding

    world = example_world()
    [number] = [n.project_number for n in world.nodes.values() if n.kind == "project"][:1]
    agent = f"serviceAccount:service-{number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    bucket = "//storage.googleapis.com/zt-demo-restricted"  # not one the training pipeline uses
    nodes = dict(world.nodes)
    node = nodes[bucket]
    bindings = (node.policy.bindings if node.policy else ()) + (
        Binding("roles/storage.objectAdmin", (agent,)),
    )
    nodes[bucket] = replace(node, policy=AllowPolicy(bindings))
    changed = replace(world, nodes=nodes)
    with Emulator(changed) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        report = run_check(templates["training"])
    offline = run_check(templates["training"], changed)
    assert [f for f in offline.by_code("ZT216") if "gcp-sa-aiplatform-cc" in f.message]
    assert sorted(f.message for f in report.by_code("ZT216")) == sorted(
        f.message for f in offline.by_code("ZT216")
    )


@pytest.mark.parametrize(
    ("role", "account"),
    [
        ("roles/deploymentmanager.editor", "{number}@cloudservices.gserviceaccount.com"),
        ("roles/cloudbuild.builds.editor", "{number}@cloudbuild.gserviceaccount.com"),
    ],
)
def test_what_a_lent_identity_holds_is_searched_live(
    templates: dict[str, str], role: str, account: str
) -> None:
    """A step that can make a Google service act as its own identity (a deployment as the
    Google APIs Service Agent, a build as the legacy Cloud Build account) reaches what that
    identity holds anywhere: searched live as a snapshot file holds it (policy/lending.py)."""
    from zt_pipelines.policy.snapshot import AllowPolicy, Binding

    world = example_world()
    [number] = [n.project_number for n in world.nodes.values() if n.kind == "project"][:1]
    agent = "serviceAccount:" + account.format(number=number)
    bucket = "//storage.googleapis.com/zt-demo-restricted"  # not one the training pipeline uses
    project = f"//cloudresourcemanager.googleapis.com/projects/{EX.PROJECT}"
    nodes = dict(world.nodes)
    for name, binding in (
        (bucket, Binding("roles/storage.objectAdmin", (agent,))),
        (project, Binding(role, (f"serviceAccount:{EX.TRAIN_SA}",))),
    ):
        node = nodes[name]
        nodes[name] = replace(
            node, policy=AllowPolicy((node.policy.bindings if node.policy else ()) + (binding,))
        )
    changed = replace(world, nodes=nodes)
    with Emulator(changed) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        report = run_check(templates["training"])
    offline = run_check(templates["training"], changed)
    assert [f for f in offline.by_code("ZT216") if agent[15:] in f.message], str(offline)
    assert sorted(f.message for f in report.by_code("ZT216")) == sorted(
        f.message for f in offline.by_code("ZT216")
    )
