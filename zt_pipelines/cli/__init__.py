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
        return command if isinstance(command, click.Command) else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zt-pipelines")
def cli() -> None:
    """Zero trust for Vertex AI Pipelines: one minimal service account per step, verified
    before anything is submitted."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI, turning package errors into one line and an exit code."""
    try:
        rv = cli.main(args=argv, prog_name="zt-pipelines", standalone_mode=False)
    except ZtError as exc:
        click.echo(f"zt-pipelines: error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
