"""``zt-pipelines demo``: what ``make demo`` runs (see :mod:`zt_pipelines.demo`)."""

from __future__ import annotations

from pathlib import Path

import click

from zt_pipelines.demo import EXAMPLES_DIR, run_demo


@click.command(name="demo")
@click.option(
    "--examples",
    "examples_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=EXAMPLES_DIR,
    show_default=True,
    help="Directory with pipeline.py and world.yaml.",
)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep the demo's audit log here (default: a temporary file).",
)
def command(examples_dir: Path, audit_log: Path | None) -> int:
    """Start the built-in emulator, submit the example pipeline, then show three refusals.

    Needs no cloud account. Exit 0 when the pipeline was allowed and all three bad attempts
    were refused without a single write reaching the emulator.
    """
    result = run_demo(examples_dir=examples_dir, audit_log=audit_log)
    return 0 if result.ok else 1
