"""The ``zt-pipelines`` command line.

Subcommands live in their own modules and are imported only when invoked, so ``--help`` and
quick commands stay fast. Every subcommand module exposes ``command: click.Command``.

Exit codes everywhere: 0 allowed / success, 1 refused (or verification could not complete),
2 bad input. A :class:`~zt_pipelines.errors.ZtError` is printed as one line on stderr; no
traceback reaches the user.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from zt_pipelines.errors import ZtError

# subcommand name -> module under zt_pipelines.cli
SUBCOMMANDS = {
    "rewrite": "rewrite",
    "check": "check",
    "snapshot": "snapshot",
    "emulator": "emulator",
    "submit": "submit",
    "audit": "audit",
    "demo": "demo",
    "plan": "provision",
    "apply": "provision",
    "precommit-check": "precommit",
    "reach": "reach",
    "verify-run": "monitor",
    "drift": "monitor",
    "usage": "monitor",
    "monitor": "monitor",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in SUBCOMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        module = SUBCOMMANDS.get(name)
        if module is None:
            return None
        try:
            mod = importlib.import_module(f"zt_pipelines.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"zt_pipelines.cli.{module}":
                return None  # subcommand not shipped in this build
            raise
        command = getattr(mod, "commands", {}).get(name) or getattr(mod, "command", None)
        if not isinstance(command, click.Command):
            return None
        if not any(p.name == "verbose" for p in command.params):
            command.params.append(_verbose_option())  # `zt-pipelines check -v ...` too
        return command


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    """``-v``: what zt-pipelines does (endpoints, retries, cache); ``-vv``: debug detail;
    ``-vvv``: the Google client libraries' logs as well. Logs go to stderr."""
    if not value:
        return
    import logging

    level = logging.INFO if value == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("zt_pipelines", *(("google", "grpc", "urllib3") if value >= 3 else ())):
        logger = logging.getLogger(name)
        if not any(getattr(h, "_zt_cli", False) for h in logger.handlers):
            handler._zt_cli = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.setLevel(min(level, logger.level or logging.WARNING))


def _verbose_option() -> click.Option:
    return click.Option(
        ["-v", "--verbose"],
        count=True,
        expose_value=False,
        is_eager=True,
        callback=_set_verbosity,
        help="Log what happens to stderr (-v: info, -vv: debug, -vvv: client libraries too).",
    )


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zt-pipelines")
@click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    is_eager=True,
    callback=_set_verbosity,
    help="Log what happens to stderr (-v: info, -vv: debug, -vvv: client libraries too).",
)
def cli() -> None:
    """Zero trust for Vertex AI Pipelines: one minimal service account per step, verified
    before anything is submitted."""


def parse_parameters(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--param KEY=VALUE`` pairs; a VALUE that parses as JSON (number, bool, list...) is typed.

    Raises:
        InputError: a pair without ``=`` or key, a key given twice, or a JSON-shaped VALUE
            the strict loader refuses (exit 2).
    """
    from zt_pipelines.errors import InputError
    from zt_pipelines.loaders import parse_param_value

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(
                f"--param {pair!r} is not KEY=VALUE", where="--param", fix="e.g. --param sa=x"
            )
        if key in values:
            raise InputError(f"--param {key!r} is given twice", where="--param")
        parse_param_value(key, where="--param (a name)", error=InputError)  # valid text
        # strict and bounded like every input: duplicate keys, depth, huge integers refused
        values[key] = parse_param_value(raw, where=f"--param {key}", error=InputError)
    return values


def parse_input_artifacts(pairs: tuple[str, ...]) -> dict[str, str] | None:
    """``--input-artifact NAME=ID`` pairs (``None`` when none is given).

    Raises:
        InputError: a pair without ``=``, name or id, or a name given twice (exit 2).
    """
    from zt_pipelines.errors import InputError

    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, artifact_id = pair.partition("=")
        if not sep or not name or not artifact_id:
            raise InputError(
                f"--input-artifact {pair!r} is not NAME=ID",
                where="--input-artifact",
                fix="e.g. --input-artifact model=4567",
            )
        if name in out:
            raise InputError(f"--input-artifact {name!r} is given twice", where="--input-artifact")
        out[name] = artifact_id
    return out


def require_writable(path: str | Path, *, option: str = "--output") -> Path:
    """Refuse an output path whose directory does not exist (checked before slow work).

    Raises:
        InputError: naming the option (exit 2).
    """
    from zt_pipelines.errors import InputError

    out = Path(path)
    if out.is_dir() or not out.parent.is_dir():
        why = "is a directory" if out.is_dir() else "is in a directory that does not exist"
        raise InputError(f"{str(out)!r} {why}", where=option, fix="choose a writable file path")
    return out


def write_output(path: str | Path, text: str, *, option: str = "--output") -> None:
    """Write a CLI output file; an unwritable path is bad input (exit 2), not a traceback."""
    from zt_pipelines.errors import InputError

    out = require_writable(path, option=option)
    try:
        out.write_text(text, encoding="utf-8")
    except (OSError, ValueError, UnicodeError) as exc:  # ValueError: a NUL byte in the path
        why = getattr(exc, "strerror", None) or "not a file path"
        raise InputError(
            f"cannot write {str(out)!r}: {why}", where=option, fix="choose a writable path"
        ) from None


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI, turning package errors into one line and an exit code."""
    try:
        rv = cli.main(args=argv, prog_name="zt-pipelines", standalone_mode=False)
    except ZtError as exc:
        from zt_pipelines.cli.options import say

        say(f"zt-pipelines: error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
