"""The documentation site builds in strict mode (broken links and nav entries fail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _nav_files(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    return []


def test_mkdocs_strict_build(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert (site / "index.html").exists()
    assert (site / "threat-model" / "index.html").exists()


def test_nav_lists_only_existing_pages_and_the_required_ones() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    files = _nav_files(config["nav"])
    for name in files:
        assert (ROOT / "docs" / name).exists(), name
    for required in (
        "index.md",
        "getting-started.md",
        "concepts.md",
        "cli.md",
        "audit.md",
        "threat-model.md",
        "dependencies.md",
    ):
        assert required in files
    # pages missing from the nav only produce an INFO line in mkdocs (omitted_files: info), so
    # a page added late by another part never breaks the build; the nav owner adds it.


def test_cli_page_documents_every_subcommand() -> None:
    from zt_pipelines.cli import SUBCOMMANDS

    page = (ROOT / "docs" / "cli.md").read_text()
    for name in SUBCOMMANDS:
        assert f"zt-pipelines {name}" in page, f"docs/cli.md does not document {name}"


def test_dependencies_page_explains_every_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    page = (ROOT / "docs" / "dependencies.md").read_text()
    names = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    for spec in names:
        name = spec.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
        assert f"`{name}" in page, f"docs/dependencies.md does not explain {name}"
