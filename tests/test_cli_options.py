"""The CLI fits its ecosystem: one spelling per option, defaults from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from zt_pipelines.cli import SUBCOMMANDS, cli
from zt_pipelines.cli.options import gcloud_project

COMMANDS_WITH_PROJECT = ["check", "submit", "plan", "apply", "snapshot", "precommit-check"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith(("ZT_", "CLOUDSDK_", "GOOGLE_CLOUD_")):
            monkeypatch.delenv(name, raising=False)
    gcloud = tmp_path / "gcloud"
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))
    return gcloud


def write_gcloud_config(root: Path, project: str, name: str = "work") -> None:
    (root / "configurations").mkdir(parents=True)
    (root / "active_config").write_text(name + "\n")
    (root / "configurations" / f"config_{name}").write_text(
        f"[core]\naccount = alice@example.com\nproject = {project}\n"
    )


def test_gcloud_configured_project_is_read_from_its_files(clean_env: Path) -> None:
    assert gcloud_project() is None
    write_gcloud_config(clean_env, "from-gcloud")
    assert gcloud_project() == "from-gcloud"


def test_project_falls_back_env_then_gcloud(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    args = ["check", "t.yaml", "--pipeline-sa", "p@x.iam.gserviceaccount.com"]
    missing = runner.invoke(cli, args)
    assert missing.exit_code == 2 and "--project" in missing.output
    write_gcloud_config(clean_env, "from-gcloud")
    seen = runner.invoke(cli, args)  # now fails later: on the template, not on --project
    assert "--project" not in seen.output
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert "--project" not in runner.invoke(cli, args).output


@pytest.mark.parametrize("name", COMMANDS_WITH_PROJECT)
def test_shared_options_are_spelled_and_defaulted_the_same(name: str) -> None:
    command = cli.get_command(None, name)  # type: ignore[arg-type]
    assert command is not None
    options = {p.name: p for p in command.params}
    assert "project" in options and "GOOGLE_CLOUD_PROJECT" in (options["project"].envvar or ())
    assert "--project" in options["project"].opts
    if "location" in options:
        assert options["location"].default == "us-central1"
    if "pipeline_sa" in options:
        assert "--pipeline-sa" in options["pipeline_sa"].opts
    assert "verbose" in options


def test_no_subcommand_spells_the_pipeline_sa_otherwise() -> None:
    for name in SUBCOMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        for param in getattr(command, "params", []):
            assert "--pipeline-service-account" not in getattr(param, "opts", [])


def test_help_shows_the_environment_variables() -> None:
    out = CliRunner().invoke(cli, ["check", "--help"], terminal_width=200).output
    assert "GOOGLE_CLOUD_PROJECT" in out and "ZT_PIPELINE_SA" in out and "us-central1" in out


def test_python_dash_m_is_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "check" in proc.stdout


def test_verbose_logs_go_to_stderr(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", "-vv", "audit", "verify", str(tmp_path / "no")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2  # the missing file; -v on the group parsed fine
    proc = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", "check", "-v", "--help"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "--verbose" in proc.stdout


def test_retries_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from zt_pipelines.gcp.retry import no_wait_policy

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionResetError("reset")
        return "ok"

    with caplog.at_level(logging.INFO, logger="zt_pipelines"):
        assert no_wait_policy().call(flaky, what="projects.getIamPolicy", target="p") == "ok"
    assert "projects.getIamPolicy p: attempt 1 failed (ConnectionResetError)" in caplog.text
