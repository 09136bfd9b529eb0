"""The CLI as a new user meets it: every command that takes a template takes it from where
aiplatform takes it, and the emulator without a caller says so instead of "access denied"."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from zt_pipelines.cli import SUBCOMMANDS, _LazyGroup, main
from zt_pipelines.emulator import Emulator
from zt_pipelines.policy.snapshot_file import load_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_job import EXAMPLES, PIPELINE_SA, WORLD

ALICE = "user:alice@example.com"  # the world lets her read gs://zt-demo-restricted

# every command taking a template, with what else it needs to get as far as reading it
TEMPLATE_COMMANDS: dict[str, list[str]] = {
    "rewrite": ["-o", "{tmp}/r.yaml", "--project", "zt-demo"],
    "check": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "--snapshot", str(WORLD)],
    "snapshot": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "-o", "{tmp}/s.yaml"],
    "submit": [
        "--project",
        "zt-demo",
        "--pipeline-sa",
        PIPELINE_SA,
        "--audit-log",
        "{tmp}/a.jsonl",
        "--snapshot",
        str(WORLD),
    ],
    "plan": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "--snapshot", str(WORLD)],
    "apply": ["--project", "zt-demo", "--pipeline-sa", PIPELINE_SA, "--snapshot", str(WORLD)],
    "reach": ["--project", "zt-demo", "--snapshot", str(WORLD)],
}


def _commands_taking_a_template() -> set[str]:
    found = set()
    for verb in SUBCOMMANDS:
        command = _LazyGroup._load(verb)
        assert command is not None, verb
        each = command.commands.values() if isinstance(command, click.Group) else [command]
        for sub in each:
            if any(p.name in ("template", "templates") for p in sub.params):
                found.add(verb)
    return found


def test_the_list_below_is_every_command_that_takes_a_template() -> None:
    assert _commands_taking_a_template() == set(TEMPLATE_COMMANDS)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_snapshot(WORLD)) as emu:
        yield emu


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("fh-templates")
    return Path(EXAMPLES.compile_pipeline("editor", str(out / "editor.yaml"))).read_bytes()


@pytest.mark.parametrize("verb", sorted(TEMPLATE_COMMANDS))
def test_every_template_command_reads_gs_and_artifact_registry(
    verb: str,
    emulator: Emulator,
    template: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    monkeypatch.setenv("ZT_EMULATOR_CALLER", ALICE)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n" * 4))  # apply asks before writing
    name = f"templates/{uuid.uuid4().hex}.yaml"
    with emulator._world.lock:
        emulator._world.objects[("zt-demo-restricted", name)] = (template, "text/yaml")
    package = f"p{uuid.uuid4().hex[:8]}"
    registry = emulator.add_kfp_template(
        template, project="zt-demo", repository="pipelines", package=package, tags=("v1",)
    )
    for uri, key in ((f"gs://zt-demo-restricted/{name}", name[10:]), (registry, package)):
        rest = [a.replace("{tmp}", str(tmp_path)) for a in TEMPLATE_COMMANDS[verb]]
        argv = [verb, "--template", uri, *rest] if verb == "snapshot" else [verb, uri, *rest]
        emulator.clear_log()
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert "does not exist" not in err and uri.replace("//", "/") not in err, err
        reads = [r for r in emulator.request_log if r.caller == ALICE and r.status == "OK"]
        assert any(key in r.target for r in reads), (uri, err)


def test_a_check_against_the_emulator_without_a_caller_says_so(
    emulator: Emulator, tmp_path: Path
) -> None:
    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml"))
    env = {k: v for k, v in os.environ.items() if k != "ZT_EMULATOR_CALLER"}
    env["ZT_EMULATOR_HOST"] = emulator.address
    argv = ["check", template, "--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    run = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", *argv],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 1, run.stderr
    head = " ".join(run.stdout.split("\n\n")[0].splitlines()[1:])  # under the verdict
    assert "without credentials" in head and "ZT_EMULATOR_CALLER=" in head, run.stdout[:600]


def test_the_top_level_help_imports_neither_aiplatform_nor_grpc() -> None:
    """docs/cli.md: subcommands load lazily, so `zt-pipelines --help` stays fast."""
    code = (
        "import sys\nfrom zt_pipelines.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('google.cloud.aiplatform', 'grpc', 'kfp', 'google.cloud.storage')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "check" in run.stdout and "LOADED []" in run.stdout, run.stdout[-400:]


def test_shell_completion_as_documented_completes_verbs_and_options() -> None:
    """docs/cli.md's completion line (`_ZT_PIPELINES_COMPLETE=bash_source zt-pipelines`) emits a
    script, and the completion it drives offers the verbs and a verb's options."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    for shell in ("bash", "zsh", "fish"):
        assert f"_ZT_PIPELINES_COMPLETE={shell}_source zt-pipelines" in page
    cli = [sys.executable, "-m", "zt_pipelines"]
    env = dict(os.environ, _ZT_PIPELINES_COMPLETE="bash_source")
    script = subprocess.run(cli, env=env, capture_output=True, text=True)
    assert "complete " in script.stdout and "_ZT_PIPELINES_COMPLETE" in script.stdout

    def complete(words: str) -> list[str]:
        env = dict(
            os.environ,
            _ZT_PIPELINES_COMPLETE="bash_complete",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - 1),
        )
        run = subprocess.run(cli, env=env, capture_output=True, text=True)
        return [line.split(",", 1)[1] for line in run.stdout.splitlines() if "," in line]

    assert "check" in complete("zt-pipelines ch")
    assert "--pipeline-sa" in complete("zt-pipelines check --pipeline")


def test_what_the_cli_plan_apply_and_the_drop_in_print_has_real_plurals() -> None:
    """ "1 error(s)", "(1 permissions)", "deny policy(ies)": counts in every message of the
    package — findings, monitoring, segmentation, plan, apply, the CLI, the drop-in job — are
    spelt out (``policy.wording.plural``), never with "(s)", "(es)" or "(ies)"."""
    import ast

    package = Path(__file__).resolve().parent.parent / "zt_pipelines"
    files = sorted(package.rglob("*.py"))
    docstrings = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    wrong = []
    for path in files:
        tree = ast.parse(path.read_text())
        skip = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, docstrings)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
                and any(mark in node.value for mark in ("(s)", "(es)", "(ies)"))
            ):
                wrong.append(f"{path.relative_to(package)}:{node.lineno}: {node.value.strip()}")
    assert not wrong, "\n".join(wrong)


# counts that are never 1 where they are printed (a limit exceeded, a basic role's thousands of
# permissions, an identity shared by several steps, a debug line)
_NEVER_ONE = {
    ("loaders.py", " characters"),
    ("loaders.py", " digits"),
    ("policy/conditions.py", " characters"),
    ("segmentation/model.py", " entries"),
    ("policy/findings.py", " steps"),
    ("policy/findings.py", " permissions"),
    ("policy/reach.py", " permissions"),
    ("provision/custom_roles.py", " services"),
    ("gcp/storage.py", " calls"),
    ("policy/report.py", " warnings"),
    ("policy/findings.py", " accounts"),
    ("monitor/service.py", " approvals"),
}
# sizes in "is N characters (at most M)": only ever printed for a value over a limit
_LIMITS = {"characters", "digits", "bytes"}
_NOT_NOUNS = {"is", "was", "has", "this", "its", "as", "us", "does", "across", "less", "unless"}


def test_a_counted_noun_agrees_with_its_count() -> None:
    """ "wrote t.yaml (1 steps)", "serving 1 roles": an f-string that prints ``{len(x)}``
    followed by a plural noun reads wrong for one; such counts go through ``plural()``."""
    import ast

    from zt_pipelines.policy.gcpc_checks import key_summary
    from zt_pipelines.policy.snapshot import ServiceAccount
    from zt_pipelines.policy.wording import noun, plural

    assert [plural(n, "step") for n in (1, 2, 0)] == ["1 step", "2 steps", "0 steps"]
    assert plural(1, "deny policy", "deny policies") == "1 deny policy"
    assert plural(3, "deny policy", "deny policies") == "3 deny policies"
    assert (noun(1, "key"), noun(2, "key")) == ("key", "keys")
    one = ServiceAccount("a@p.iam.gserviceaccount.com", "p", user_managed_keys=("k1",))
    assert key_summary(one) == "1 user-managed key: k1"

    package = Path(__file__).resolve().parent.parent / "zt_pipelines"
    wrong = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        if where.startswith("emulator/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.JoinedStr):
                continue
            for value, after in zip(node.values, node.values[1:], strict=False):
                if not (
                    isinstance(value, ast.FormattedValue)
                    and ast.unparse(value.value).startswith("len(")
                    and isinstance(after, ast.Constant)
                    and isinstance(after.value, str)
                ):
                    continue
                # the counted noun: the first plural-looking word among the next three
                words = after.value.split(" ")[1:4]
                noun = next(
                    (w for w in words if re.fullmatch(r"[a-z][a-z-]*s", w) and w not in _NOT_NOUNS),
                    None,
                )
                word = re.match(rf" (?:\S+ ){{0,2}}?{noun}\b", after.value) if noun else None
                if word and noun not in _LIMITS and (where, " " + noun) not in _NEVER_ONE:
                    shown = f"{{{ast.unparse(value.value)}}}{word.group()}"
                    wrong.append(f"{where}:{node.lineno}: {shown}")
    assert not wrong, "\n".join(wrong)


def test_verbose_says_where_the_state_came_from_what_was_read_and_the_decision(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`-v` (docs/cli.md: "logs what zt-pipelines does"): the endpoint, the caller, what was
    read and the decision, on stderr; stdout is the report alone."""
    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml"))
    env = dict(os.environ, ZT_EMULATOR_HOST=emulator.address, ZT_EMULATOR_CALLER=ALICE)
    argv = ["check", template, "-v", "--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    run = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", *argv], capture_output=True, text=True, env=env
    )
    assert f"read live from the emulator at {emulator.address}" in run.stderr, run.stderr
    assert f"submitter {ALICE}" in run.stderr
    assert re.search(r"IAM state: \d+ resources, \d+ service accounts", run.stderr)
    assert re.search(r"(allowed|refused): \d+ of \d+ requirements granted", run.stderr)
    assert "INFO" not in run.stdout


def test_a_live_check_by_an_identity_that_cannot_read_iam_gets_one_headline(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The checking identity exists but holds no read permission: one line under the verdict
    says so and where the read permissions are listed, before the many failed reads."""
    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml"))
    nobody = "serviceAccount:nobody@zt-demo.iam.gserviceaccount.com"
    env = dict(os.environ, ZT_EMULATOR_HOST=emulator.address, ZT_EMULATOR_CALLER=nobody)
    argv = ["check", template, "--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    run = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", *argv], capture_output=True, text=True, env=env
    )
    assert run.returncode == 1, run.stderr
    head = " ".join(run.stdout.split("\n\n")[0].splitlines()[1:])
    assert "the checking identity lacks read access" in head, run.stdout[:600]
    assert "READ_PERMISSIONS" in head and "docs/live-mode.md" in head


def test_submit_prints_only_the_report_on_stdout(emulator: Emulator, tmp_path: Path) -> None:
    """`submit --format json` is parseable: aiplatform's own lines ("Creating PipelineJob",
    the console link) go to stderr with ours, not into the report."""
    import json

    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml"))
    env = dict(os.environ, ZT_EMULATOR_HOST=emulator.address, ZT_EMULATOR_CALLER=ALICE)
    argv = ["submit", template, "--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    argv += ["--audit-log", str(tmp_path / "a.jsonl"), "--format", "json"]
    run = subprocess.run(
        [sys.executable, "-m", "zt_pipelines", *argv], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-800:]
    assert json.loads(run.stdout)["allowed"] is True
    assert "Creating PipelineJob" in run.stderr and "submitted projects/" in run.stderr


def _stderr_on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run ``argv`` with stderr on a pseudo-terminal; what it drew there."""
    import pty

    main, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    proc.communicate(timeout=300)
    return b"".join(chunks).decode(errors="replace")


def test_a_live_check_on_a_terminal_shows_progress_and_in_a_pipe_does_not(
    tmp_path: Path,
) -> None:
    """Progress on live `check`, `plan`, `apply` and `submit`: stderr on a terminal gets a
    progress bar while IAM state is read (and while apply writes); a pipe (CI logs) gets none."""
    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml"))
    argv = [sys.executable, "-m", "zt_pipelines"]
    common = [template, "--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    runs = {
        "check": (["check", *common], ["reading IAM state"]),
        "plan": (["plan", *common], ["reading IAM state"]),
        "apply": (
            ["apply", *common, "--yes", "--audit-log", str(tmp_path / "apply.jsonl")],
            ["reading IAM state", "applying changes"],
        ),
        "submit": (
            ["submit", *common, "--audit-log", str(tmp_path / "submit.jsonl")],
            ["reading IAM state"],
        ),
    }
    for verb, (args, bars) in runs.items():
        # a fresh world each time (apply and submit write), slow enough for the bar to be drawn
        with Emulator(load_snapshot(WORLD), latency_ms=20) as emu:
            caller = "user:platform@example.com" if verb == "apply" else ALICE
            env = dict(
                os.environ, ZT_EMULATOR_HOST=emu.address, ZT_EMULATOR_CALLER=caller, TERM="xterm"
            )
            drawn = _stderr_on_a_terminal([*argv, *args], env)
            for bar in bars:
                assert bar in drawn, (verb, bar, drawn[-2000:])
        with Emulator(load_snapshot(WORLD)) as emu:
            env = dict(os.environ, ZT_EMULATOR_HOST=emu.address, ZT_EMULATOR_CALLER=caller)
            piped = subprocess.run([*argv, *args], capture_output=True, text=True, env=env)
            assert not any(bar in piped.stderr for bar in bars), (verb, piped.stderr)


def _every_command() -> Iterator[tuple[str, click.Command]]:
    for verb in SUBCOMMANDS:
        command = _LazyGroup._load(verb)
        assert command is not None, verb
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield f"{verb} {name}", sub
        else:
            yield verb, command


def test_every_verbs_help_shows_the_environment_it_reads() -> None:
    """`--help` of every verb names each environment variable that changes what it does: every
    option's variable, the audit log's default, and — where Google is called — the emulator
    switch and its caller, and the live strategy where IAM is read live."""
    import ast

    shown_anywhere: set[str] = set()
    for verb, command in _every_command():
        text = CliRunnerLike.help(verb)
        shown_anywhere |= set(re.findall(r"ZT_[A-Z_]+", text))
        names = {p.name for p in command.params}
        for option in command.params:
            if isinstance(option, click.Option) and option.envvar:
                variables = [option.envvar] if isinstance(option.envvar, str) else option.envvar
                assert option.show_envvar, (verb, option.name)
                assert all(v in text for v in variables), (verb, option.name, text)
        if verb in ("demo", "emulator"):
            continue  # they start their own emulator and keep their own log
        if "audit_log" in names:
            assert "$ZT_AUDIT_LOG" in text, verb
        snapshot = next((p for p in command.params if p.name == "snapshot"), None)
        # without --snapshot (or always, for `snapshot` itself) IAM state is read live
        live = verb == "snapshot" or (snapshot is not None and not snapshot.required)
        assert ("ZT_LIVE_STRATEGY=direct|inventory" in text) == live, verb
        if live or names & {"template", "job"}:
            assert "ZT_EMULATOR_HOST=HOST:PORT" in text and "ZT_EMULATOR_CALLER" in text, verb
    package = Path(__file__).resolve().parent.parent / "zt_pipelines"
    read = {
        node.value
        for path in package.rglob("*.py")
        if "emulator" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"ZT_[A-Z_]+", node.value)
    }
    assert read - shown_anywhere == set(), "read but in no --help"


class CliRunnerLike:
    """``zt-pipelines VERB --help`` at a fixed width, in process."""

    @staticmethod
    def help(verb: str) -> str:
        from click.testing import CliRunner

        from zt_pipelines.cli import cli

        run = CliRunner().invoke(cli, [*verb.split(), "--help"], terminal_width=200)
        assert run.exit_code == 0, run.output
        return run.output


def test_the_readmes_ci_block_runs_as_written(emulator: Emulator, tmp_path: Path) -> None:
    """README's "In CI" commands, run as written (my-proj is the example world's zt-demo):
    `snapshot` with credentials (the emulator), the offline SARIF `check`, the `plan`. It once
    lacked the --pipeline-sa `snapshot --template` requires (exit 2)."""
    import json
    import shlex

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("## In CI", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [
        re.sub(r"\s+#.*$", "", line).strip()
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip()
    ]
    assert [c.split()[1] for c in commands] == ["snapshot", "check", "plan"]
    EXAMPLES.compile_pipeline("training", str(tmp_path / "pipeline.yaml"))
    live = dict(os.environ, ZT_EMULATOR_HOST=emulator.address, ZT_EMULATOR_CALLER=ALICE)
    offline = {k: v for k, v in os.environ.items() if not k.startswith("ZT_EMULATOR")}
    for command in commands:
        argv = shlex.split(command.replace("my-proj", "zt-demo"))
        assert argv[0] == "zt-pipelines"
        run = subprocess.run(
            [sys.executable, "-m", "zt_pipelines", *argv[1:]],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=offline if "--snapshot" in argv else live,
        )
        assert run.returncode in (0, 3), (command, run.returncode, run.stderr[-2000:])
    assert json.loads((tmp_path / "zt.sarif").read_text())["version"] == "2.1.0"
    assert "google_service_account" in run.stdout or "resource " in run.stdout


def test_every_command_a_message_tells_to_run_exists() -> None:
    """A fix, an error or a help text saying "run `zt-pipelines VERB --option`" names a verb
    and options that exist (docs are checked by tests/test_docs.py; this is the messages)."""
    import ast

    call = re.compile(r"zt-pipelines\s+([a-z][\w-]*)((?:\s+(?:--?[a-zA-Z][\w-]*|[A-Z_./]+))*)")
    package = Path(__file__).resolve().parent.parent / "zt_pipelines"
    wrong, checked = [], 0
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            for match in call.finditer(node.value):
                verb, rest = match.group(1), match.group(2)
                if verb not in SUBCOMMANDS:
                    continue  # prose: "what zt-pipelines does"
                checked += 1
                command = _LazyGroup._load(verb)
                assert command is not None, verb
                words = rest.split()
                if isinstance(command, click.Group) and words and words[0] in command.commands:
                    command = command.commands[words[0]]
                names = {"--help"}
                names |= {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
                for option in re.findall(r"(?:^|\s)(--?[a-zA-Z][\w-]*)", rest):
                    if option not in names:
                        wrong.append(f"{path.relative_to(package)}:{node.lineno}: {verb} {option}")
    assert checked > 20
    assert not wrong, "\n".join(wrong)


def test_an_offline_check_on_a_terminal_draws_no_reading_bar(tmp_path: Path) -> None:
    """Against a snapshot file nothing is read live: no "reading IAM state" bar flashes."""
    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "t.yaml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZT_EMULATOR")}
    env["TERM"] = "xterm"
    args = ["check", template, "--project", "zt-demo", "--pipeline-sa", PIPELINE_SA]
    drawn = _stderr_on_a_terminal(
        [sys.executable, "-m", "zt_pipelines", *args, "--snapshot", str(WORLD)], env
    )
    assert "reading IAM state" not in drawn, drawn[-2000:]
