"""The documentation site builds in strict mode (broken links and nav entries fail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    page = (ROOT / "docs" / "dependencies.md").read_text()
    names = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    for spec in names:
        name = spec.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
        assert f"`{name}" in page, f"docs/dependencies.md does not explain {name}"


def test_api_reference_is_generated_from_the_docstrings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    page = (site / "api" / "index.html").read_text()
    for name in ("rewrite_pipeline", "PipelineJob", "ZeroTrustViolation", "load_manifest"):
        assert name in page
    assert "pipeline_service_account" in page  # signatures, not just names


def test_docs_speak_of_the_project_only() -> None:
    """Docs describe the product: no tracker issues, no sibling folders of a checkout, no
    design files that do not ship."""
    import re

    pages = [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    bad = re.compile(r"\.\./shared|\bDESIGN\.md\b|\bthe issue\b|\bissue #?\d+|\(issue", re.I)
    for page in pages:
        for number, line in enumerate(page.read_text().splitlines(), start=1):
            assert not bad.search(line), f"{page.name}:{number}: {line.strip()}"


def test_policy_file_examples_load(tmp_path: Path) -> None:
    """Every YAML and TOML example of docs/policy-file.md is a policy the loader accepts."""
    import re

    from zt_pipelines.policy.orgpolicy import load_policy

    page = (ROOT / "docs" / "policy-file.md").read_text()
    examples = re.findall(r"```(yaml|toml)\n(.*?)```", page, re.S)
    assert examples
    for index, (kind, text) in enumerate(examples):
        if kind == "yaml":
            path = tmp_path / f"zt-policy-{index}.yaml"
            path.write_text(text)
        else:
            folder = tmp_path / f"toml-{index}"
            folder.mkdir()
            path = folder / "pyproject.toml"
            path.write_text(text)
        policy = load_policy(path)
        assert policy is not None, f"example {index} ({kind})"


def _doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_snippets(text: str) -> list[str]:
    """Fenced blocks (lines joined at ``\\`` continuations) and inline code spans."""
    import re

    fenced = re.compile(r"```[^\n]*\n(.*?)```", re.S)
    lines = [
        line for block in fenced.findall(text) for line in block.replace("\\\n", " ").splitlines()
    ]
    return lines + re.findall(r"`([^`\n]+)`", fenced.sub("", text))


def test_every_cli_command_and_option_shown_exists() -> None:
    """`zt-pipelines VERB --option` in README or docs is a command a reader can type."""
    import re

    import click

    from zt_pipelines.cli import SUBCOMMANDS, _LazyGroup

    # at the start of a command line (after `$ `, `&&`, `|`, `(`, a venv's bin/), not in prose
    call = re.compile(
        r"(?:^|&&|[|;(]|\$ |/bin/)\s*zt-pipelines\s+([a-z][\w-]*)(.*?)(?=$|[|;&]|zt-pipelines)"
    )
    wrong = []
    for page in _doc_pages():
        for snippet in _code_snippets(page.read_text()):
            for match in call.finditer(snippet):
                verb, rest = match.group(1), match.group(2)
                if verb not in SUBCOMMANDS:
                    wrong.append(f"{page.name}: no subcommand {verb!r}: {snippet.strip()}")
                    continue
                command = _LazyGroup._load(verb)
                assert command is not None, verb
                words = rest.split()
                if isinstance(command, click.Group) and words and words[0] in command.commands:
                    command = command.commands[words[0]]
                names = {"--help"} | {
                    o for p in command.params for o in (*p.opts, *p.secondary_opts)
                }
                for option in re.findall(r"(?:^|[\s[(])(--?[a-zA-Z][\w-]*)", rest):
                    if option not in names:
                        wrong.append(f"{page.name}: {verb} has no {option}: {snippet.strip()}")
    assert not wrong, "\n".join(wrong)


def test_every_finding_code_named_exists() -> None:
    import re

    from zt_pipelines.policy.report import CODES

    wrong = []
    for page in _doc_pages():
        # "ZT510–ZT599" names a range, not a code
        text = re.sub(r"ZT\d{3}\s*[–-]\s*ZT\d{3}", "", page.read_text())
        wrong += [f"{page.name}: {c}" for c in re.findall(r"\bZT\d{3}\b", text) if c not in CODES]
    assert not wrong, wrong


def test_every_python_import_shown_resolves() -> None:
    """`from zt_pipelines.X import a, b` in a Python example names things that exist."""
    import importlib
    import re

    wrong = []
    for page in _doc_pages():
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            for module, names in re.findall(r"from (zt_pipelines[\w.]*) import ([^\n]+)", block):
                mod = importlib.import_module(module)
                for name in re.findall(r"\w+", names.split("#")[0].replace(" as ", " # ")):
                    if not hasattr(mod, name):
                        wrong.append(f"{page.name}: {module} has no {name}")
    assert not wrong, wrong


def test_every_zt_pipelines_name_shown_exists() -> None:
    """`zt_pipelines.a.b` named in README or docs is a module or attribute that exists."""
    import importlib
    import re

    def resolves(name: str) -> bool:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for part in parts[cut:]:
                if not hasattr(obj, part):
                    return False
                obj = getattr(obj, part)
            return True
        return False

    wrong = []
    for page in _doc_pages():
        names = set(re.findall(r"\bzt_pipelines(?:\.[A-Za-z_]\w*)+", page.read_text()))
        wrong += [f"{page.name}: {name}" for name in sorted(names) if not resolves(name)]
    assert not wrong, wrong


def test_every_policy_key_shown_is_in_the_schema() -> None:
    """`section.key` of the policy file (e.g. `segmentation.allowedReach`) is a key the loader
    accepts."""
    import json
    import re

    schema = json.loads((ROOT / "zt_pipelines" / "schemas" / "policy.schema.json").read_text())
    sections = {
        name: set((spec.get("properties") or {}).keys())
        for name, spec in schema["properties"].items()
        if isinstance(spec, dict) and spec.get("properties")
    }
    wrong = []
    for page in _doc_pages():
        if page.name in ("emulator.md", "snapshot.md", "live-mode.md"):
            continue  # these speak of the snapshot's sections, which share some names
        for section, key in set(re.findall(r"`([a-zA-Z]+)\.([a-zA-Z]+)`", page.read_text())):
            if section in sections and key not in sections[section]:
                wrong.append(f"{page.name}: {section}.{key}")
    assert not wrong, wrong


def test_cli_page_lists_only_options_of_its_subcommand() -> None:
    """In docs/cli.md's section of a subcommand, every `--option` named belongs to it."""
    import re

    import click

    from zt_pipelines.cli import SUBCOMMANDS, _LazyGroup

    page = (ROOT / "docs" / "cli.md").read_text()
    wrong = []
    for section in re.split(r"\n## ", page)[1:]:
        head, _, body = section.partition("\n")
        verbs = re.findall(r"zt-pipelines ([a-z-]+)", head)
        if not verbs:
            continue
        names = {"--help"}
        for verb in verbs:
            command = _LazyGroup._load(verb)
            assert command is not None, verb
            group = list(command.commands.values()) if isinstance(command, click.Group) else []
            for each in (command, *group):
                names |= {o for p in each.params for o in (*p.opts, *p.secondary_opts)}
        for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", body, flags=re.S)):
            first = span.split()[0]
            if first in SUBCOMMANDS and first not in verbs:
                continue  # `check --snapshot FILE` names another subcommand's option
            for option in re.findall(r"(?:^|[\s[(])(--?[a-z][\w-]*)", span):
                if option not in names:
                    wrong.append(f"{verbs}: {option}")
    assert not wrong, wrong


def test_snapshot_page_round_trip_holds_with_every_predefined_role() -> None:
    """docs/snapshot.md: `load_snapshot(dump_snapshot(snap)) == snap` with the real catalogue
    (whose permissions include names like `networkservices.route_views.get`)."""
    from conftest import ROLES_FILE, require_shared

    from zt_pipelines.policy.snapshot_file import dump_snapshot, load_catalogue_file, load_snapshot

    catalogue = require_shared(ROLES_FILE)
    page = (ROOT / "docs" / "snapshot.md").read_text()
    assert "assert load_snapshot(dump_snapshot(snap)) == snap" in page
    snap = load_snapshot(ROOT / "examples" / "world.yaml", roles=load_catalogue_file(catalogue))
    assert load_snapshot(dump_snapshot(snap)) == snap


def test_findings_table_severities_are_the_defaults() -> None:
    """docs/findings.md's severity column, docs/policy-file.md's defaults row and the SARIF
    rules' default level all state the default severity the policy applies."""
    import re

    from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
    from zt_pipelines.policy.report import CODES, Report

    table = re.findall(
        r"^\| \[(ZT\d{3})\]\(#zt\d{3}\) \| (\w+) \|",
        (ROOT / "docs" / "findings.md").read_text(),
        re.M,
    )
    assert sorted(code for code, _ in table) == sorted(CODES)
    wrong = [(c, s) for c, s in table if DEFAULT_SEVERITIES[c].value != s]
    assert not wrong, f"findings.md severity differs from the default: {wrong}"
    rules = Report(findings=()).to_sarif()["runs"][0]["tool"]["driver"]["rules"]
    sarif = {r["id"]: r["defaultConfiguration"]["level"] for r in rules}
    assert {c: sarif[c] for c in CODES if c in sarif} == {
        c: DEFAULT_SEVERITIES[c].value for c in CODES if c in sarif
    }
    row = next(
        line
        for line in (ROOT / "docs" / "policy-file.md").read_text().splitlines()
        if line.startswith("| severities |")
    )
    named = set(re.findall(r"ZT\d{3}", row))
    assert named == {c for c in CODES if DEFAULT_SEVERITIES[c].value != "error"}, row


def test_policy_page_names_exactly_the_unrelaxable_codes() -> None:
    import re

    from zt_pipelines.policy.orgpolicy import UNRELAXABLE

    page = (ROOT / "docs" / "policy-file.md").read_text()
    section = page.split("## What no policy can relax", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"\*\*(ZT\d{3})\*\*", section)) == set(UNRELAXABLE)


def test_snapshot_and_manifest_examples_load() -> None:
    """The YAML fragments of docs/snapshot.md (with the `segmentation` section of
    docs/segmentation.md) form a snapshot the loader accepts; docs/declarations.md's manifests
    load."""
    import re

    from zt_pipelines.declare import load_manifest
    from zt_pipelines.policy.snapshot_file import load_snapshot

    def blocks(name: str) -> list[object]:
        text = (ROOT / "docs" / name).read_text()
        return [yaml.safe_load(b) for b in re.findall(r"```ya?ml\n(.*?)```", text, re.S)]

    document: dict[str, object] = {"version": 1}
    for block in blocks("snapshot.md") + blocks("segmentation.md"):
        assert isinstance(block, dict)
        document.update(block)
    assert {"nodes", "roles", "denyPolicies", "segmentation"} <= set(document)
    load_snapshot(document)
    manifests = [b for b in blocks("declarations.md") if isinstance(b, dict) and "steps" in b]
    assert manifests
    for manifest in manifests:
        load_manifest(manifest)


def test_every_repository_path_named_exists() -> None:
    """`examples/...`, `tests/...`, `bench/...`, `notebooks/...`, `zt_pipelines/...` and
    `docs/...` named in README or docs exist (a module path named relative to the package,
    e.g. `gcp/retry.py`, too)."""
    import re

    top = r"(?:examples|tests|bench|notebooks|zt_pipelines|docs)/[\w./-]*\w"
    package = r"(?:cli|gcp|policy|provision|spec|monitor|segmentation|audit|emulator)/\w+\.py"
    wrong = []
    for page in _doc_pages():
        for span in _code_snippets(page.read_text()):
            for path in re.findall(rf"(?<![\w./-])({top}|{package})(?![\w/])", span):
                if not ((ROOT / path).exists() or (ROOT / "zt_pipelines" / path).exists()):
                    wrong.append(f"{page.name}: {path}")
    assert not wrong, sorted(set(wrong))


def test_every_environment_variable_named_is_read_and_every_one_read_is_named() -> None:
    """`ZT_...` in README or docs is a variable the code reads, and the docs name every one."""
    import re

    source = "\n".join(p.read_text() for p in (ROOT / "zt_pipelines").rglob("*.py"))
    in_code = set(re.findall(r"[\"'](ZT_[A-Z_]*[A-Z])[\"']", source))
    in_docs = {
        v for page in _doc_pages() for v in re.findall(r"\bZT_[A-Z_]*[A-Z]\b", page.read_text())
    }
    assert in_docs - in_code == set(), "named in the docs, read nowhere"
    assert in_code - in_docs == set(), "read by the code, named in no doc"


def _public_callables() -> dict[str, list[object]]:
    """Every public function, class and method of the package, by name."""
    import importlib
    import inspect
    import pkgutil

    import zt_pipelines

    index: dict[str, list[object]] = {}
    for info in pkgutil.walk_packages(zt_pipelines.__path__, "zt_pipelines."):
        if ".examples" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not getattr(obj, "__module__", "").startswith(
                "zt_pipelines"
            ):
                continue
            if inspect.isclass(obj):
                index.setdefault(name, []).append(obj)
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and callable(value):
                        index.setdefault(attr, []).append(getattr(obj, attr))
            elif inspect.isfunction(obj):
                index.setdefault(name, []).append(obj)
    for name in zt_pipelines.__all__:
        index.setdefault(name, []).append(getattr(zt_pipelines, name))
    return index


def _keywords(function: object) -> set[str] | None:
    """The keyword names ``function`` takes; ``None`` when it takes any (or has no signature)."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def test_every_keyword_shown_in_a_python_example_is_taken() -> None:
    """`PipelineJob(..., step_defaults=...)`, `job.verify(service_account=...)`, a lone
    `snapshot=` in prose: every keyword argument the docs show is one a function of that name
    (a zt_pipelines function, class or method) accepts."""
    import ast
    import re

    index = _public_callables()

    def accepted(name: str, keyword: str) -> bool:
        takes = [_keywords(f) for f in index[name]]
        return any(t is None or keyword in t for t in takes)

    wrong, checked = [], 0
    prose = re.compile(r"```.*?```", re.S)
    call = re.compile(r"(?:^|[\s.(])([A-Za-z_]\w*)\(([^()`]*)\)")
    every_keyword = {k for fs in index.values() for f in fs for k in (_keywords(f) or ())}
    for page in _doc_pages():
        text = page.read_text()
        for block in re.findall(r"```python\n(.*?)```", text, re.S):
            for node in ast.walk(ast.parse(block.replace("(...)", "()"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name not in index:
                    continue  # kfp, aiplatform, the standard library
                for kw in node.keywords:
                    checked += 1
                    if kw.arg and not accepted(name, kw.arg):
                        wrong.append(f"{page.name}: {name}(..., {kw.arg}=)")
        for span in re.findall(r"`([^`\n]+)`", prose.sub("", text)):
            for name, args in call.findall(span):
                for keyword in re.findall(r"(?:^|[,\s])([a-z_]\w*)=", args):
                    if name in index:
                        checked += 1
                        if not accepted(name, keyword):
                            wrong.append(f"{page.name}: {name}(..., {keyword}=) in `{span}`")
            lone = re.fullmatch(r"([a-z_]\w*)=", span.strip())
            if lone and lone.group(1) not in every_keyword:
                wrong.append(f"{page.name}: no function takes `{span}`")
    assert checked > 50
    assert not wrong, "\n".join(wrong)


def test_cli_page_option_defaults_are_the_options_environment_variables() -> None:
    """docs/cli.md's shared-options table names, per option, exactly the environment variables
    the option reads, and every step-default flag is taken by every subcommand it lists."""
    import re

    import click

    from zt_pipelines.cli import SUBCOMMANDS, _LazyGroup

    page = (ROOT / "docs" / "cli.md").read_text()
    shared = page.split("## Options every subcommand shares", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[\w-]+)[^|]*(\|.*)$", shared, re.M)
    assert len(rows) >= 10, rows
    commands = {verb: _LazyGroup._load(verb) for verb in SUBCOMMANDS}
    wrong = []
    for option, default in rows:
        documented = set(re.findall(r"\b((?:ZT|GOOGLE|CLOUDSDK)_[A-Z_]+)\b", default))
        for verb, command in commands.items():
            each = command.commands.values() if isinstance(command, click.Group) else [command]
            for sub in each:
                for param in sub.params:
                    if option in param.opts and (verb, option) != ("emulator", "--snapshot"):
                        envvar = param.envvar or ()
                        actual = {envvar} if isinstance(envvar, str) else set(envvar)
                        if actual != documented:
                            wrong.append(
                                f"{verb} {option}: {sorted(actual)} != {sorted(documented)}"
                            )
    assert not wrong, "\n".join(sorted(set(wrong)))
    listed = re.search(r"takes the same flags", shared)
    assert listed
    verbs = re.findall(r"`([a-z-]+)`", shared[shared.index("**Step defaults.**") : listed.end()])
    flags = [o for o, _ in rows if o.startswith("--step-") or o == "--persistent-resource-id"]
    assert verbs and flags
    for verb in verbs:
        names = {o for p in commands[verb].params for o in p.opts}
        assert set(flags) <= names, (verb, set(flags) - names)


def test_the_default_paths_the_docs_name_are_the_code_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~/.local/state/zt-pipelines/audit.jsonl`, `~/.cache/zt-pipelines`,
    `~/.config/zt-pipelines/cache.key` (on Linux, no XDG overrides) are where the code looks."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the docs name the Linux paths")
    from zt_pipelines.audit.log import default_audit_log
    from zt_pipelines.gcp.cache import default_cache_dir, default_key_path

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    text = "\n".join(page.read_text() for page in _doc_pages())
    for path in (default_audit_log(), default_cache_dir(), default_key_path().parent):
        shown = "~/" + str(path.relative_to(tmp_path))
        assert shown in text or shown.replace("/zt-pipelines", "/...") in text, shown
    assert "~/.local/state/zt-pipelines/audit.jsonl" in text


def test_the_architecture_page_names_every_top_level_module() -> None:
    """docs/architecture.md's layout lists every module and package of zt_pipelines."""
    import re

    page = (ROOT / "docs" / "architecture.md").read_text()
    layout = page.split("```", 2)[1]
    named = set(re.findall(r"^  ([\w.]+)/?\s", layout, re.M))
    package = ROOT / "zt_pipelines"
    present = {
        p.name
        for p in package.iterdir()
        if not p.name.startswith("_") and p.name != "py.typed" and p.name != "__pycache__"
    }
    assert present - named == set(), "not in the architecture page's layout"
    assert named - present == set(), "named in the layout, not in the package"


def test_concepts_page_lists_exactly_the_drop_in_extras() -> None:
    """docs/concepts.md: "the same constructor ... plus keyword-only extras: `a=`, `b=` ..."."""
    import inspect
    import re

    from google.cloud import aiplatform

    import zt_pipelines as zt

    page = (ROOT / "docs" / "concepts.md").read_text()
    sentence = page.split("keyword-only extras:", 1)[1].split(". ", 1)[0]
    documented = set(re.findall(r"`(\w+)=`", sentence))
    base = inspect.signature(aiplatform.PipelineJob.__init__).parameters
    ours = inspect.signature(zt.PipelineJob.__init__).parameters
    extras = {n for n, p in ours.items() if n not in base}
    assert documented == extras
    assert all(ours[n].kind is inspect.Parameter.KEYWORD_ONLY for n in extras)


def test_docs_never_tell_to_install_from_an_index_the_package_is_not_on() -> None:
    """zt-pipelines is not published: install from a checkout, never `pip install zt-pipelines`."""
    import re

    wrong = [
        f"{page.name}: {line.strip()}"
        for page in _doc_pages()
        for line in page.read_text().splitlines()
        if re.search(r"pip install\s+['\"]?zt[-_]pipelines\b(?!\S*[/@])", line)
    ]
    assert not wrong, wrong


def test_every_snapshot_and_policy_key_the_schemas_allow_is_documented() -> None:
    """docs/snapshot.md's top-level table is exactly the snapshot schema's keys; every key of the
    policy schema (top level and each section's) appears in docs/policy-file.md."""
    import json
    import re

    schemas = ROOT / "zt_pipelines" / "schemas"
    snapshot = json.loads((schemas / "snapshot.schema.json").read_text())
    page = (ROOT / "docs" / "snapshot.md").read_text()
    table = page.split("## Top level", 1)[1].split("\n\n", 2)[1]
    assert set(re.findall(r"^\| `(\w+)`", table, re.M)) == set(snapshot["properties"])
    policy = json.loads((schemas / "policy.schema.json").read_text())
    page = (ROOT / "docs" / "policy-file.md").read_text()
    missing = [
        f"{top}.{key}" if key else top
        for top, spec in policy["properties"].items()
        for key in ["", *((spec.get("properties") or {}) if isinstance(spec, dict) else {})]
        if not re.search(rf"\b{key or top}\b", page)
    ]
    assert not missing, missing


def test_the_threat_models_limits_table_is_the_loaders_limits() -> None:
    """docs/threat-model.md's "Limits" table (size, depth, values per file kind) and its
    integer-digits sentence state exactly `zt_pipelines.loaders.LIMITS`."""
    import re

    from zt_pipelines.loaders import LIMITS

    page = (ROOT / "docs" / "threat-model.md").read_text()
    section = page.split("### Limits", 1)[1].split("\n#", 1)[0]
    kinds = {
        "template": "template",
        "manifest": "manifest",
        "policy file (YAML/JSON)": "policy",
        "`pyproject.toml`": "pyproject",
        "snapshot (decompressed)": "snapshot",
        "role catalogue (decompressed)": "catalogue",
        "one audit line": "audit line",
        "one `--param` value": "param",
    }
    rows = re.findall(r"^\| ([^|]+?) \| (\d+) MiB \| (\d+) \| ([\d,]+) \|$", section, re.M)
    assert {kinds[r[0]] for r in rows} == set(LIMITS), rows
    for label, mib, depth, values in rows:
        limits = LIMITS[kinds[label]]
        shown = (int(mib) * 2**20, int(depth), int(values.replace(",", "")))
        assert shown == (limits.max_bytes, limits.max_depth, limits.max_nodes), label
    digits = {limits.max_int_digits for limits in LIMITS.values()}
    assert f"at most {digits.pop()} digits everywhere" in section and not digits


def test_findings_intro_names_the_default_non_errors_and_the_unrelaxable_codes() -> None:
    """The opening of docs/findings.md restates the defaults: it must name exactly the codes
    that are not errors by default, the codes no policy can relax and the step-waiver-only one."""
    import re

    from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES, STEP_WAIVER_ONLY, UNRELAXABLE

    page = (ROOT / "docs" / "findings.md").read_text()
    intro = page.split("Severities:", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"ZT\d{3}", intro))
    lenient = {c for c, s in DEFAULT_SEVERITIES.items() if s.value != "error"}
    assert named == lenient | set(UNRELAXABLE) | set(STEP_WAIVER_ONLY), sorted(named)


def test_every_permission_named_in_the_docs_exists() -> None:
    """A permission in backticks (`storage.objects.get`, or the short form
    `aiplatform.customJobs.create/get/cancel`) is one some predefined role includes: a typo in
    a permission the docs tell users to grant is a grant that never works. (emulator.md names
    API methods, `storage.objects.insert`, which are not permissions.)"""
    import re

    from zt_pipelines.policy.role_catalogue import known_permissions

    known = known_permissions()
    services = {p.split(".")[0] for p in known}
    shape = re.compile(r"[a-z][a-zA-Z0-9]*\.[a-zA-Z][a-zA-Z0-9]*\.[a-zA-Z][a-zA-Z0-9/]*[a-zA-Z]")
    unknown, checked = [], 0
    pages = [p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "emulator.md"]
    for page in [*pages, ROOT / "README.md"]:
        text = page.read_text()
        for match in re.finditer(r"`([^`\s]+)`", text):
            token = match.group(1)
            if "googleapis" in token or not shape.fullmatch(token):
                continue
            service, resource, verbs = token.split(".")
            if service not in services:
                continue
            for verb in verbs.split("/"):
                checked += 1
                if f"{service}.{resource}.{verb}" not in known:
                    line = text[: match.start()].count("\n") + 1
                    unknown.append(f"{page.name}:{line}: {service}.{resource}.{verb}")
    assert checked > 100  # the check reads the docs' permissions at all
    assert not unknown, "\n".join(unknown)


def _expanded(text: str) -> set[str]:
    """Every permission in backticks in ``text``, the short form `a.b.c/d` expanded."""
    import re

    found = set()
    for token in re.findall(r"`([a-z]+\.[a-zA-Z]+\.[a-zA-Z/]+)`", text):
        service, resource, verbs = token.split(".")
        found |= {f"{service}.{resource}.{verb}" for verb in verbs.split("/")}
    return found


def test_what_the_pipeline_identity_needs_is_the_same_in_the_docs_and_the_check() -> None:
    """concepts.md's "the pipeline SA only launches steps" sentence and provisioning.md's
    pipeline-SA rows name exactly what the check requires of the pipeline identity (it once
    left out the metadata store and the pipeline root)."""
    import re

    from zt_pipelines.policy import requirements as r

    required = {
        *r.LAUNCH_PERMISSIONS,
        *r.PIPELINE_PROJECT_PERMISSIONS,
        *r.PIPELINE_BUCKET_PERMISSIONS,
        *r.PIPELINE_ROOT_PERMISSIONS,
        r.ACT_AS,
    }
    concepts = (ROOT / "docs" / "concepts.md").read_text()
    sentence = re.search(r"After the rewrite the pipeline SA only \*launches\*.*?;", concepts, re.S)
    assert sentence is not None
    said = _expanded(sentence.group(0) + ";" + concepts[sentence.end() :].split(";")[0])
    assert said == required
    rows = [
        line
        for line in (ROOT / "docs" / "provisioning.md").read_text().splitlines()
        if line.startswith("| pipeline SA |")
    ]
    # (the actAs row goes on to name the excess of the predefined role: not a need)
    table = set().union(*(_expanded(row.split("|")[3].split(":")[0]) for row in rows))
    assert table == required


def test_the_checking_identitys_permissions_are_the_ones_live_mode_reads_with() -> None:
    """Every "lacks read access" headline and ZT400 fix sends users to live-mode.md: its
    custom-role command grants exactly READ_PERMISSIONS, and the predefined roles it names
    cover every one of them (the page once named two roles that left ten uncovered)."""
    import re

    from zt_pipelines.gcp.interface import READ_PERMISSIONS
    from zt_pipelines.policy.role_catalogue import catalogue_role

    page = (ROOT / "docs" / "live-mode.md").read_text()
    section = page.split("## The checking identity", 1)[1].split("\n## ", 1)[0]
    command = section.split("```bash", 1)[1].split("```", 1)[0]
    granted = command.split("--permissions=", 1)[1].split("\ngcloud", 1)[0]
    listed = {p.strip(" \\\n") for p in granted.replace("\\\n", "").split(",")}
    assert listed == set(READ_PERMISSIONS)
    predefined = section.split("Predefined roles cover them", 1)[1].split("\n\n", 1)[0]
    roles = re.findall(r"`(roles/[a-zA-Z.]+)`", predefined)
    assert len(roles) >= 2
    covered: set[str] = set()
    for name in roles:
        role = catalogue_role(name)
        assert role is not None, name
        covered |= set(role.permissions)
    assert set(READ_PERMISSIONS) - covered == set()


def test_cli_page_option_defaults_are_the_commands_defaults() -> None:
    """In cli.md, "`--since`, default `30d`" (and "(default `30d`") under a verb's heading is
    that verb's option default."""
    import re

    import click

    from zt_pipelines.cli import _LazyGroup

    page = (ROOT / "docs" / "cli.md").read_text()
    checked = 0
    for section in re.split(r"\n## ", page)[1:]:
        heading = re.match(r"`zt-pipelines ([a-z-]+)", section)
        if heading is None:
            continue
        command = _LazyGroup._load(heading.group(1))
        if command is None or isinstance(command, click.Group):
            continue
        options = {o.opts[-1]: o for o in command.params if isinstance(o, click.Option)}
        for flag, value in re.findall(r"`(--[a-z-]+)`[^`]{0,20}default `([^`$]+)`", section):
            assert flag in options, (heading.group(1), flag)
            assert str(options[flag].default) == value, (heading.group(1), flag)
            checked += 1
    assert checked >= 2


def test_the_derived_identity_examples_are_what_the_code_derives() -> None:
    """declarations.md shows derived account ids "for task T of pipeline P": each is
    ``derive_account_id(P, T)`` (a change of the naming scheme must change the page)."""
    import re

    from zt_pipelines.identity import derive_account_id

    page = (ROOT / "docs" / "declarations.md").read_text().replace("\n", " ")
    examples = re.findall(r"`(zt-[a-z0-9-]+)` for task `([^`]+)` of pipeline `([^`]+)`", page)
    assert len(examples) >= 2
    for shown, task, pipeline in examples:
        assert derive_account_id(pipeline, task) == shown, (pipeline, task)


def test_every_docs_page_a_message_points_to_exists() -> None:
    """A message that says "see docs/X.md#anchor" (fixes, errors, help texts) points at a page
    and a heading that exist: a user who follows it finds it."""
    import re

    headings: dict[str, set[str]] = {}
    for page in (ROOT / "docs").glob("*.md"):
        slugs = set()
        for line in page.read_text().splitlines():
            if line.startswith("#"):
                text = line.lstrip("#").strip().lower()
                slugs.add(re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-"))
        headings[page.name] = slugs
    missing = []
    for path in sorted((ROOT / "zt_pipelines").rglob("*.py")):
        for page, anchor in re.findall(r"docs/([a-z-]+\.md)(?:#([a-z0-9_-]+))?", path.read_text()):
            if page not in headings or (anchor and anchor not in headings[page]):
                missing.append(f"{path.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not missing, "\n".join(missing)


def test_every_finding_code_has_its_section_where_sarif_links_to() -> None:
    """SARIF's helpUri and every fallback fix point at docs/findings.md#ztNNN: each code of
    ``CODES`` has its ``## ZTNNN`` section, in numeric order, and no section names a code the
    package does not have."""
    import re

    from zt_pipelines.policy.report import CODES

    sections = re.findall(r"^## (ZT\d{3})$", (ROOT / "docs" / "findings.md").read_text(), re.M)
    assert sorted(sections) == sorted(CODES)
    assert sections == sorted(sections)


def test_cli_page_names_exactly_the_verbs_with_an_output_file() -> None:
    """cli.md's `-o/--output` sentence lists the verbs where it is optional (instead of stdout)
    and those that require it, as the commands define it."""
    import re

    import click

    from zt_pipelines.cli import SUBCOMMANDS, _LazyGroup

    optional, required = set(), set()
    for verb in SUBCOMMANDS:
        command = _LazyGroup._load(verb)
        if command is None or isinstance(command, click.Group):
            continue
        for p in command.params:
            if p.name == "output":
                (required if p.required else optional).add(verb)
    page = (ROOT / "docs" / "cli.md").read_text()
    sentence = page.split("`-o/--output FILE` writes", 1)[1].split("\n\n", 1)[0]
    instead, _, need = sentence.partition(";")
    assert "require it" in need
    assert set(re.findall(r"`([a-z-]+)`", instead)) == optional
    assert set(re.findall(r"`([a-z-]+)`", need)) == required


def test_audit_page_names_every_action_the_package_records() -> None:
    """audit.md's "`action` is ..." sentence names every action a record can carry: the
    drop-in's decisions, the CLI's `cli-` form, `build`, `provision-apply` and the monitors'."""
    import re

    package = ROOT / "zt_pipelines"
    source = "\n".join(p.read_text() for p in package.rglob("*.py"))
    constants = dict(re.findall(r"^([A-Z_]+_ACTION) = \"([a-z-]+)\"", source, re.M))
    written = set(re.findall(r"_decide\(\"([a-z-]+)\"", source))
    written |= set(re.findall(r"\baction=\"([a-z-]+)\"", source))
    written |= {constants[n] for n in re.findall(r"\baction=([A-Z_]+_ACTION)\b", source)}
    written.add("cli-submit")  # the CLI's prefix on the drop-in's submit
    assert {"submit", "verify", "build", "verify-run", "drift"} <= written
    page = (ROOT / "docs" / "audit.md").read_text()
    sentence = page.split("`action` is ", 1)[1].split("\n\n", 1)[0].split(". ", 1)[0]
    named = set(re.findall(r"`([a-z-]+)`", sentence))
    assert written <= named, sorted(written - named)
