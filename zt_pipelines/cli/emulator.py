"""``zt-pipelines emulator --snapshot FILE``: serve a snapshot as Google's APIs on one local port.

Prints ``ZT_EMULATOR_HOST=HOST:PORT`` as its first line, then serves until interrupted
(Ctrl-C or SIGTERM), and exits 0 after a clean stop.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
from pathlib import Path
from typing import Any

import click

from zt_pipelines.cli import require_writable
from zt_pipelines.errors import InputError


def _support_levels(pairs: tuple[str, ...]) -> dict[str, str]:
    from zt_pipelines.policy.role_catalogue import SUPPORT_LEVELS, validate_permission

    levels: dict[str, str] = {}
    for pair in pairs:
        permission, sep, level = pair.partition("=")
        if not sep or level not in SUPPORT_LEVELS:
            raise InputError(
                f"--permission-support {pair!r} is not PERMISSION=LEVEL",
                where="--permission-support",
                fix=f"LEVEL is one of {', '.join(SUPPORT_LEVELS)}, e.g. "
                "--permission-support storage.objects.list=NOT_SUPPORTED",
            )
        # a misspelt name would serve a level for a permission no role has: refused, with
        # the closest known names
        levels[validate_permission(permission, where="--permission-support")] = level
    return levels


def _project_numbers(pairs: tuple[str, ...]) -> dict[str, str]:
    numbers: dict[str, str] = {}
    for pair in pairs:
        project, sep, number = pair.partition("=")
        if not sep or not project or not number.isdigit():
            raise InputError(
                f"--project-number {pair!r} is not PROJECT_ID=NUMBER",
                where="--project-number",
                fix="e.g. --project-number my-proj=123456789012",
            )
        numbers[project] = number
    return numbers


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("emulator")
@click.option(
    "--snapshot",
    "snapshot_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Snapshot file (YAML/JSON) with the IAM world to serve.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option(
    "--latency-ms", default=0, type=click.IntRange(0, None), help="Latency added to every call."
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="METHOD=KIND[,times=N][,p=P][,seed=S][,delay_ms=MS]",
    help="Scripted fault; KIND is a status code (UNAVAILABLE...), malformed, reset or delay.",
)
@click.option(
    "--project-number",
    "project_numbers",
    multiple=True,
    metavar="PROJECT_ID=NUMBER",
    help="Project numbers the snapshot does not record.",
)
@click.option(
    "--permission-support",
    "permission_support",
    multiple=True,
    metavar="PERMISSION=LEVEL",
    help="Custom-role support level to serve (SUPPORTED, TESTING, NOT_SUPPORTED).",
)
@click.option(
    "--request-log",
    "request_log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="On exit, write every call as JSON lines (api, method, target, caller, status, write).",
)
@click.option(
    "--dump-state",
    "dump_state",
    type=click.Path(path_type=Path, dir_okay=False),
    help="On exit, write the served world (writes applied) as a snapshot file (JSON).",
)
@click.option(
    "--simulate-runs",
    is_flag=True,
    help="Fail pipeline jobs whose run-as SA could not run them (pipeline root, step actAs).",
)
@click.option(
    "--no-enforce-iam",
    is_flag=True,
    help="Do not check callers' permissions (tokens become optional).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host (anyone who reaches it can claim any identity).",
)
def command(
    snapshot_path: Path,
    host: str,
    port: int,
    latency_ms: int,
    faults: tuple[str, ...],
    project_numbers: tuple[str, ...],
    permission_support: tuple[str, ...],
    request_log: Path | None,
    dump_state: Path | None,
    simulate_runs: bool,
    no_enforce_iam: bool,
    allow_remote: bool,
) -> int:
    """Serve a snapshot as the Google APIs zt-pipelines uses (gRPC and HTTP on one port)."""
    from zt_pipelines.emulator import Emulator, Fault
    from zt_pipelines.policy.snapshot_file import load_snapshot
    from zt_pipelines.policy.wording import plural

    # an unwritable output is bad input now, not after a whole session has been served
    if request_log is not None:
        require_writable(request_log, option="--request-log")
    if dump_state is not None:
        require_writable(dump_state, option="--dump-state")
    parsed = [Fault.parse(spec) for spec in faults]
    numbers = _project_numbers(project_numbers)
    levels = _support_levels(permission_support)
    if not snapshot_path.is_file():
        raise InputError(
            f"snapshot file {str(snapshot_path)!r} does not exist",
            where="--snapshot",
            fix="write one with `zt-pipelines snapshot` or by hand (see docs/emulator.md)",
        )
    if not _is_loopback(host) and not allow_remote:
        # the bearer token *is* the identity: on a shared network anyone could act as anyone
        raise InputError(
            f"refusing to bind {host}: the emulator has no real authentication",
            where="--host",
            fix="bind 127.0.0.1 (the default), or pass --allow-remote on a network you trust",
        )
    snapshot = load_snapshot(snapshot_path)
    if not _is_loopback(host):
        click.echo(
            f"zt-pipelines: warning: binding {host}: the emulator has no real authentication",
            err=True,
        )
    emulator = Emulator(
        snapshot,
        host=host,
        port=port,
        latency_ms=latency_ms,
        enforce_iam=not no_enforce_iam,
        project_numbers=numbers,
        simulate_runs=simulate_runs,
        permission_support=levels,
    )
    for fault in parsed:
        emulator.add_fault(fault)
    try:
        emulator.start()
    except OSError as exc:
        raise InputError(
            f"cannot bind {host}:{port}: {exc.strerror or exc}",
            where="--host/--port",
            fix="choose another port, or --port 0 for any free one",
        ) from exc
    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    click.echo(f"ZT_EMULATOR_HOST={emulator.address}")
    click.echo(
        f"serving {plural(len(snapshot.nodes), 'resource')}, "
        f"{plural(len(snapshot.service_accounts), 'service account')}, "
        f"{plural(len(snapshot.roles), 'role')}; Ctrl-C to stop",
        err=True,
    )
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        signal.signal(signal.SIGTERM, previous)
    _write_outputs(emulator, request_log, dump_state)
    counts = emulator.counts()
    click.echo(f"stopped after {plural(sum(counts.values()), 'call')}", err=True)
    return 0


def _write_outputs(emulator: Any, request_log: Path | None, dump_state: Path | None) -> None:
    """The request log (JSON lines) and the final world (snapshot JSON), when asked for."""
    import dataclasses
    import json

    from zt_pipelines.policy.role_catalogue import with_catalogue_roles
    from zt_pipelines.policy.snapshot_file import dump_snapshot

    try:
        if request_log is not None:
            lines = (json.dumps(dataclasses.asdict(r)) + "\n" for r in emulator.request_log)
            request_log.write_text("".join(lines), encoding="utf-8")
        if dump_state is not None:
            dump_state.write_text(
                json.dumps(
                    # the definitions of every predefined role bound in the world: the dump
                    # re-checks offline without ZT201 "definition not in the snapshot"
                    dump_snapshot(with_catalogue_roles(emulator.state)),
                    indent=2,
                    sort_keys=True,
                )
                + "\n",
                encoding="utf-8",
            )
    except OSError as exc:
        raise InputError(
            f"cannot write {exc.filename}: {exc.strerror}",
            where="--request-log/--dump-state",
            fix="choose a writable path",
        ) from exc
