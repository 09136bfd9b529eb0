"""``zt-pipelines audit verify FILE`` / ``audit show FILE``: check and read the decision log."""

from __future__ import annotations

import json
from pathlib import Path

import click

from zt_pipelines.audit import AuditLog
from zt_pipelines.audit.shape import record_problem
from zt_pipelines.cli.options import say
from zt_pipelines.errors import InputError


@click.group(name="audit")
def command() -> None:
    """Verify or show a zt-pipelines audit log (hash-chained JSON Lines)."""


@command.command(name="verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--expect-head",
    metavar="SHA256",
    default=None,
    help="The head hash recorded elsewhere earlier; catches a dropped or rewritten tail.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def verify(file: Path, expect_head: str | None, fmt: str) -> int:
    """Check FILE's hash chain: exit 0 intact, 1 with every edited, dropped or reordered line."""
    if not file.exists():
        raise InputError("audit log does not exist", where=str(file))
    report = AuditLog(file).verify(expect_head=expect_head)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "head": report.head,
                    "anchored": report.anchored,
                    "problems": [
                        {"line": p.line, "kind": p.kind, "message": p.message}
                        for p in report.problems
                    ],
                },
                indent=2,
            )
        )
    elif report.ok and report.anchored:
        say(
            f"{file}: {report.records} records, chain intact; head {report.head} matches "
            "the expected head"
        )
    elif report.ok:
        say(f"{file}: {report.records} records, chain intact; head {report.head}")
        say(
            "  no anchor: the lines agree with each other, but whoever can write the file "
            "could have rewritten it consistently; pass --expect-head with a head kept "
            "elsewhere (see docs/audit.md: Anchoring the head)"
        )
    else:
        say(
            f"{file}: {len(report.problems)} problem{'' if len(report.problems) == 1 else 's'} "
            f"in {report.records} records"
        )
        for problem in report.problems:
            say(f"  line {problem.line}: {problem.kind}: {problem.message}")
    return 0 if report.ok else 1


@command.command(name="show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path, exists=True))
@click.option("--last", type=int, default=20, show_default=True, help="How many records.")
def show(file: Path, last: int) -> int:
    """Print the last records of FILE, one line each (unverified: run ``verify`` first).

    Exit 1 when a shown record is not of the shape zt-pipelines writes (each is named).
    """
    try:
        records = AuditLog(file).records()
    except ValueError as exc:
        raise InputError(f"not an audit log ({exc})", where=str(file)) from exc
    malformed = 0
    for record in records[-last:] if last > 0 else records:
        problem = record_problem(record)
        if problem:  # chained, but not what zt-pipelines writes: said, never half-printed
            malformed += 1
            seq = record.get("seq", "?") if isinstance(record, dict) else "?"
            say(f"#{seq} malformed record ({problem}): not written by zt-pipelines")
            continue
        sas = ", ".join(
            f"{i.get('task') or 'pipeline'}"
            + (f" ({i['role']})" if i.get("role") in ("launched", "serving") else "")
            + f"={i.get('service_account') or '-'}"
            for i in record.get("identities", [])
        )
        codes = ",".join(sorted({f.get("code", "") for f in record.get("findings", [])}))
        say(
            f"#{record.get('seq')} {record.get('time')} {record.get('outcome', '?'):8} "
            f"{record.get('action')} {record.get('pipeline')} by {record.get('submitter')} "
            f"[{sas}] codes={codes}"
        )
    return 1 if malformed else 0
