"""Pipeline-wide step defaults: ``step_defaults=`` on ``zt.PipelineJob``, ``zt.check`` and
``zt.plan``, and the CLI's step-default flags (``--persistent-resource-id``) on every verb that
rewrites — one seam, :class:`~zt_pipelines.model.JobFields`, under each step's own declaration.

The persistent resource is the case here: a pipeline default puts every step without its own on
a Vertex persistent resource, and ``check`` judges it (ZT120 when the resource does not allow
custom service accounts, ZT121 when unknown) exactly as a per-step declaration.
"""

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google.cloud.aiplatform import initializer
from test_emulator_world import PIPELINE_SA, STEP_SA, world

import zt_pipelines as zt
from zt_pipelines.cli import cli, main
from zt_pipelines.cli.options import STEP_DEFAULT_FLAGS
from zt_pipelines.declare import step_defaults
from zt_pipelines.errors import DeclarationError, InputError
from zt_pipelines.model import JobFields
from zt_pipelines.policy.snapshot import PersistentResource, Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot
from zt_pipelines.spec import rewrite_pipeline

PROJECT = "proj-alpha"
LOCATION = "us-central1"
POOLS = f"projects/{PROJECT}/locations/{LOCATION}/persistentResources/"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
OTHER_SA = f"step-two@{PROJECT}.iam.gserviceaccount.com"


def _world() -> Snapshot:
    base = world()
    admin = base.roles["roles/zt.admin"]
    readable = frozenset({*admin.permissions, "aiplatform.persistentResources.get"})
    return replace(
        base,
        roles={**base.roles, admin.name: replace(admin, permissions=readable)},
        persistent_resources={
            POOLS + "warm-pool": PersistentResource(POOLS + "warm-pool", True, "RUNNING"),
            POOLS + "fixed-sa-pool": PersistentResource(POOLS + "fixed-sa-pool", False, "RUNNING"),
        },
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two steps: ``fast`` declares its own persistent resource, ``plain`` does not."""
    from kfp import compiler, dsl

    @zt.step(STEP_SA, persistent_resource_id="warm-pool")
    @dsl.component(base_image="python:3.11-slim")
    def fast():  # type: ignore[no-untyped-def]
        pass

    @zt.step(OTHER_SA)
    @dsl.component(base_image="python:3.11-slim")
    def plain():  # type: ignore[no-untyped-def]
        pass

    @dsl.pipeline(name="pools")
    def pools():  # type: ignore[no-untyped-def]
        fast()
        plain()

    path = tmp_path_factory.mktemp("pools") / "pools.yaml"
    compiler.Compiler().compile(pools, str(path))
    return path


@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("world") / "world.json"
    path.write_text(json.dumps(dump_snapshot(_world())))
    return path


def _pool_findings(report: zt.Report) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for f in report.findings:
        if f.code in ("ZT120", "ZT121"):
            out.setdefault(f.code, set()).add(f.step)
    return out


# -- the one parser ------------------------------------------------------------------------


def test_a_mapping_or_job_fields_are_the_same_defaults() -> None:
    as_map = step_defaults({"persistent_resource_id": "warm-pool"})
    assert as_map == JobFields(persistent_resource_id="warm-pool")
    assert step_defaults(JobFields(persistent_resource_id="warm-pool")) == as_map
    assert step_defaults(None) is None and step_defaults({}) is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ({"persistent_resource_id": "projects/p/locations/l/persistentResources/x"}, "not a"),
        ({"persistent_resource_id": ""}, "non-empty"),
        ({"persitent_resource_id": "warm-pool"}, "did you mean 'persistent_resource_id'"),
        ({"service_account": STEP_SA}, "every step has its own"),
        ({"needs": {}}, "every step has its own"),
        ("warm-pool", "not str"),
    ],
)
def test_bad_defaults_are_a_typed_error_naming_them(value: Any, said: str) -> None:
    with pytest.raises(DeclarationError) as info:
        step_defaults(value)
    assert said in str(info.value) and "step_defaults" in str(info.value)


# -- Python: check, plan, PipelineJob ----------------------------------------------------------


def test_check_puts_steps_without_their_own_on_the_default(template: Path) -> None:
    def check(defaults: Any) -> zt.Report:
        return zt.check(
            template,
            project=PROJECT,
            location=LOCATION,
            pipeline_service_account=PIPELINE_SA,
            snapshot=_world(),
            now=NOW,
            step_defaults=defaults,
        )

    assert _pool_findings(check(None)) == {}
    # the default does not allow custom SAs: only the step that has no pool of its own is hit
    assert _pool_findings(check({"persistent_resource_id": "fixed-sa-pool"})) == {
        "ZT120": {"plain"}
    }
    assert _pool_findings(check(JobFields(persistent_resource_id="gone"))) == {"ZT121": {"plain"}}
    assert _pool_findings(check({"persistent_resource_id": "warm-pool"})) == {}


def test_plan_takes_the_defaults_and_refuses_them_for_a_rewritten_pipeline(
    template: Path,
) -> None:
    kwargs: dict[str, Any] = {"project": PROJECT, "pipeline_service_account": PIPELINE_SA}
    planned = zt.plan(template, step_defaults={"persistent_resource_id": "warm-pool"}, **kwargs)
    assert planned.accounts  # planned through the same rewrite
    rewritten = rewrite_pipeline(template, project=PROJECT)
    with pytest.raises(InputError) as info:
        zt.plan(rewritten, step_defaults={"persistent_resource_id": "warm-pool"}, **kwargs)
    assert "step_defaults" in str(info.value)


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No aiplatform.init, no ADC, no emulator: the job verifies against a snapshot."""
    for name in ("ZT_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    config = initializer.global_config
    saved = dict(vars(config))
    config.__init__()  # type: ignore[misc]
    yield
    vars(config).clear()
    vars(config).update(saved)


def test_pipeline_job_verifies_and_sends_the_default(
    offline: None, template: Path, snapshot_file: Path, tmp_path: Path
) -> None:
    def job(defaults: Any) -> zt.PipelineJob:
        return zt.PipelineJob(
            display_name="pools",
            template_path=str(template),
            project=PROJECT,
            location=LOCATION,
            snapshot=str(snapshot_file),
            audit_log=tmp_path / "audit.jsonl",
            clock=lambda: NOW,
            step_defaults=defaults,
        )

    refused = job({"persistent_resource_id": "fixed-sa-pool"}).verify(service_account=PIPELINE_SA)
    assert _pool_findings(refused) == {"ZT120": {"plain"}}
    warm = job({"persistent_resource_id": "warm-pool"})
    assert _pool_findings(warm.verify(service_account=PIPELINE_SA)) == {}
    clone = warm.clone()
    assert _pool_findings(clone.verify(service_account=PIPELINE_SA)) == {}


def test_pipeline_job_refuses_bad_defaults_before_anything_else(offline: None) -> None:
    with pytest.raises(DeclarationError) as info:
        zt.PipelineJob(
            display_name="x",
            template_path="does-not-exist.yaml",
            project=PROJECT,
            step_defaults={"persistent_resource_id": "Not An Id"},
        )
    assert "step_defaults: persistent_resource_id" in str(info.value)


# -- CLI -------------------------------------------------------------------------------------

VERBS = ("check", "plan", "apply", "submit", "rewrite", "snapshot", "reach")


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_that_rewrites_takes_the_step_default_flags(verb: str) -> None:
    text = CliRunner().invoke(cli, [verb, "--help"], terminal_width=200).output
    for flag in STEP_DEFAULT_FLAGS:
        assert flag.flag in text, f"{verb} --help lacks {flag.flag}"
    assert "ZT_PERSISTENT_RESOURCE_ID" in text


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, str, str]:
    """Run the CLI as the console script does: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _check_cli(template: Path, snapshot_file: Path, *extra: str) -> list[str]:
    return [
        "check",
        str(template),
        "--project",
        PROJECT,
        "--pipeline-sa",
        PIPELINE_SA,
        "--snapshot",
        str(snapshot_file),
        "--now",
        NOW.isoformat(),
        "--format",
        "json",
        *extra,
    ]


def test_check_cli_persistent_resource_flag_and_env(
    template: Path,
    snapshot_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flag = ["--persistent-resource-id", "fixed-sa-pool"]
    code, out, _ = _main(_check_cli(template, snapshot_file, *flag), capsys)
    assert code == 1
    found = {(f["code"], f["step"]) for f in json.loads(out)["findings"]}
    assert ("ZT120", "plain") in found and ("ZT120", "fast") not in found
    monkeypatch.setenv("ZT_PERSISTENT_RESOURCE_ID", "gone")
    code, out, _ = _main(_check_cli(template, snapshot_file), capsys)
    assert ("ZT121", "plain") in {(f["code"], f["step"]) for f in json.loads(out)["findings"]}


def test_a_bad_flag_value_is_exit_2_naming_the_flag(
    template: Path, snapshot_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _check_cli(template, snapshot_file, "--persistent-resource-id", "Warm Pool")
    code, out, err = _main(args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("zt-pipelines: error: --persistent-resource-id")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_rewrite_cli_writes_the_default_into_the_plain_step(template: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    args = ["rewrite", str(template), "-o", str(out), "--project", PROJECT]
    result = CliRunner().invoke(cli, [*args, "--persistent-resource-id", "warm-pool"])
    assert result.exit_code == 0, result.output
    assert _pools(out) == {"comp-fast": "warm-pool", "comp-plain": "warm-pool"}
    plain = CliRunner().invoke(cli, args)
    assert plain.exit_code == 0, plain.output
    # without a default: Vertex's own pipeline-level placeholder (on demand unless set)
    assert _pools(out) == {
        "comp-fast": "warm-pool",
        "comp-plain": "{{$.pipeline_persistent_resource_id}}",
    }


def _pools(path: Path) -> dict[str, str]:
    """Each rewritten component's persistent resource (what its launcher puts in job_spec)."""
    from zt_pipelines.spec import load_template

    ir = load_template(path)[0]
    return {
        name: comp["inputDefinitions"]["parameters"]
        .get("persistent_resource_id", {})
        .get("defaultValue", "")
        for name, comp in ir["components"].items()
    }
