"""Options every subcommand spells the same way, with their defaults from the environment.

One spelling per option (``--pipeline-sa`` everywhere), one default per option (``--location``
defaults to ``us-central1`` everywhere, as ``aiplatform.init`` does), and the environment
variables a Google Cloud user already has: ``--project`` falls back to ``ZT_PROJECT``, then
``GOOGLE_CLOUD_PROJECT`` / ``CLOUDSDK_CORE_PROJECT``, then gcloud's configured project.
Every other shared option reads ``ZT_<OPTION>``. ``--help`` shows each variable.
"""

from __future__ import annotations

import configparser
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

_F = TypeVar("_F", bound=Callable[..., Any])

DEFAULT_LOCATION = "us-central1"
"""aiplatform's default region (``initializer.global_config.location``)."""

PROJECT_ENVVARS = ("ZT_PROJECT", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
LOCATION_ENVVARS = ("ZT_LOCATION", "GOOGLE_CLOUD_REGION", "CLOUDSDK_AI_REGION")


EMULATOR_ENVIRONMENT = (
    "Environment: ZT_EMULATOR_HOST=HOST:PORT sends every Google call (ours and aiplatform's) "
    "to the zt-pipelines emulator; ZT_EMULATOR_CALLER=MEMBER (user:EMAIL or "
    "serviceAccount:EMAIL) is who calls it."
)
"""The ``--help`` epilog of every command that calls Google (templates, runs, logs)."""

LIVE_ENVIRONMENT = (
    EMULATOR_ENVIRONMENT + " ZT_LIVE_STRATEGY=direct|inventory: how live IAM state is read "
    "(default: direct, every policy from its own API; inventory: Cloud Asset in bulk, "
    "eventually consistent)."
)
"""The ``--help`` epilog of every command that reads IAM state live."""


def say(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print human-readable text whose parts may come from a template, a log or an API: what a
    terminal would act on (escape sequences, carriage returns, bidirectional overrides) is
    shown as ``\\uXXXX`` (:func:`~zt_pipelines.policy.wording.shown`). Data (JSON, YAML) is
    printed as it is: it carries its own escapes."""
    from zt_pipelines.policy.wording import shown

    click.echo(shown(text), err=err, nl=nl)


def gcloud_project() -> str | None:
    """The project in gcloud's active configuration (``gcloud config set project``), if any.

    Read from the files gcloud writes (``$CLOUDSDK_CONFIG`` or ``~/.config/gcloud``); gcloud
    itself is never run.
    """
    root = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    try:
        active = (root / "active_config").read_text(encoding="utf-8").strip() or "default"
    except (OSError, UnicodeDecodeError):
        active = "default"
    if not active.replace("-", "").replace("_", "").isalnum():
        return None  # not a configuration name: never read outside gcloud's folder
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(root / "configurations" / f"config_{active}", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    value = parser.get("core", "project", fallback="").strip()
    return value or None


def _default_project() -> str | None:
    return gcloud_project()


def project_option(
    *, required: bool = True, help: str = "Project the pipeline runs in."
) -> Callable[[_F], _F]:
    """``--project`` with the environment and gcloud's configuration as defaults."""

    def need(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        # click takes a callable default's None as a value, so "required" is checked here
        if required and not value:
            raise click.MissingParameter(
                ctx=ctx,
                param=param,
                message="pass --project, set GOOGLE_CLOUD_PROJECT, or `gcloud config set project`",
            )
        return value

    option: Callable[[_F], _F] = click.option(
        "--project",
        envvar=list(PROJECT_ENVVARS),
        show_envvar=True,
        default=_default_project,
        show_default="gcloud's configured project",
        callback=need,
        help=help,
    )
    return option


def location_option(help: str = "Vertex AI region.") -> Callable[[_F], _F]:
    """``--location``, default ``us-central1`` (as aiplatform), from the environment."""
    option: Callable[[_F], _F] = click.option(
        "--location",
        envvar=list(LOCATION_ENVVARS),
        show_envvar=True,
        default=DEFAULT_LOCATION,
        show_default=True,
        help=help,
    )
    return option


def pipeline_sa_option(
    *, required: bool = True, help: str = "The pipeline service account (it launches the steps)."
) -> Callable[[_F], _F]:
    """``--pipeline-sa`` (``ZT_PIPELINE_SA``)."""
    option: Callable[[_F], _F] = click.option(
        "--pipeline-sa",
        "pipeline_sa",
        required=required,
        envvar="ZT_PIPELINE_SA",
        show_envvar=True,
        help=help,
    )
    return option


def snapshot_option(
    *, required: bool = False, exists: bool = False, help: str | None = None
) -> Callable[[_F], _F]:
    """``--snapshot FILE`` (``ZT_SNAPSHOT``): verify offline against an IAM snapshot."""
    option: Callable[[_F], _F] = click.option(
        "--snapshot",
        required=required,
        envvar="ZT_SNAPSHOT",
        show_envvar=True,
        type=click.Path(path_type=Path, dir_okay=False, exists=exists),
        help=help or "IAM snapshot file (YAML/JSON). Without it, live IAM state is read.",
    )
    return option


def policy_option() -> Callable[[_F], _F]:
    """``--policy FILE`` (``ZT_POLICY``): the organisation policy file."""
    option: Callable[[_F], _F] = click.option(
        "--policy",
        envvar="ZT_POLICY",
        show_envvar=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="zt-policy.yaml or pyproject.toml. ZT_POLICY_BINDING=1 or ZT_POLICY_SHA256 (the "
        "file's pinned sha256) make the ZT_POLICY file binding: another policy is refused.",
    )
    return option


def expect_policy_option() -> Callable[[_F], _F]:
    """``--expect-policy FILE|SHA256`` (repeatable): the policy approvals must name."""
    option: Callable[[_F], _F] = click.option(
        "--expect-policy",
        "expect_policy",
        multiple=True,
        metavar="FILE|SHA256",
        help="The organisation policy approvals must have been judged under: a policy file or "
        "a sha256 of one (repeatable). An approval under another policy is ZT642, one naming "
        "none ZT643. Default: the file ZT_POLICY names when ZT_POLICY_BINDING or "
        "ZT_POLICY_SHA256 makes it binding, else not checked.",
    )
    return option


def output_option(
    *, required: bool = False, help: str = "Write the output here."
) -> Callable[[_F], _F]:
    """``-o/--output FILE``."""
    option: Callable[[_F], _F] = click.option(
        "-o", "--output", required=required, type=click.Path(path_type=Path), help=help
    )
    return option


@contextmanager
def live_progress(what: str = "reading IAM state") -> Iterator[None]:
    """A transient progress bar on stderr for the live reads made inside the block, when
    stderr is a terminal; nothing otherwise (CI logs stay clean), nor before the first read (an
    offline check against a snapshot file shows none)."""
    from zt_pipelines.gcp.progress import reporting

    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        tasks: list[Any] = []  # the bar appears with the first read: offline, never
        lock = threading.Lock()  # reads report from the fetch's threads

        def progress(done: int, total: int) -> None:
            with lock:
                if not tasks:
                    tasks.append(bar.add_task(what, total=None))
            bar.update(tasks[0], completed=done, total=total)

        with reporting(progress):
            yield


@dataclass(frozen=True)
class StepDefaultFlag:
    """One CLI flag that sets a pipeline-wide step default (a :class:`JobFields` field).

    Attributes:
        flag: the option as typed (``--persistent-resource-id``).
        dest: the click parameter name (never seen by the command).
        metavar: the value's name in ``--help``.
        help: the ``--help`` text.
        field: the JobFields field it sets, unless ``convert`` builds the fields.
        envvar: the environment variable it also reads, if any.
        multiple: repeatable; the value is the tuple of every occurrence.
        convert: the flag's value → JobFields keyword arguments (default ``{field: value}``).
    """

    flag: str
    dest: str
    metavar: str
    help: str
    field: str = ""
    envvar: str | None = None
    multiple: bool = False
    convert: Callable[[Any], dict[str, Any]] | None = None


STEP_DEFAULT_FLAGS: tuple[StepDefaultFlag, ...] = (
    StepDefaultFlag(
        "--persistent-resource-id",
        "step_persistent_resource_id",
        "ID",
        "Run every step without its own persistent_resource_id on this Vertex persistent "
        "resource (same project and location; it must allow custom service accounts).",
        field="persistent_resource_id",
        envvar="ZT_PERSISTENT_RESOURCE_ID",
    ),
    StepDefaultFlag(
        "--step-network",
        "step_network",
        "NETWORK",
        "Peer every step without its own network or PSC interface with this VPC "
        "(projects/PROJECT_NUMBER/global/networks/NAME).",
        field="network",
        envvar="ZT_STEP_NETWORK",
    ),
    StepDefaultFlag(
        "--step-psc-attachment",
        "step_psc_attachment",
        "ATTACHMENT",
        "Give every step without its own network or PSC interface a PSC interface through this "
        "network attachment (projects/P/regions/R/networkAttachments/NAME).",
        envvar="ZT_STEP_PSC_ATTACHMENT",
        convert=lambda value: {"psc_interface_config": {"network_attachment": value}},
    ),
    StepDefaultFlag(
        "--step-reserved-ip-range",
        "step_reserved_ip_ranges",
        "NAME",
        "A private services access range every peered step without its own may use (repeatable).",
        field="reserved_ip_ranges",
        multiple=True,
        convert=lambda value: {"reserved_ip_ranges": list(value)},
    ),
    StepDefaultFlag(
        "--step-reach",
        "step_reach",
        "ENTRY",
        "What every step without its own reach may reach (repeatable), e.g. "
        "storage.googleapis.com or '10.20.0.0/16 tcp:5432'; see docs/segmentation.md.",
        field="reach",
        multiple=True,
        convert=lambda value: {"reach": list(value)},
    ),
)
"""Every step-default flag, in ``--help`` order; a new one is one entry here."""


def step_defaults_options() -> Callable[[_F], _F]:
    """The step-default flags (:data:`STEP_DEFAULT_FLAGS`), folded into ONE keyword argument
    of the command, ``step_defaults``: a validated
    :class:`~zt_pipelines.model.JobFields`, or ``None`` when no flag is given.

    Each flag is validated on its own (errors name the flag), then together (a network with a
    PSC interface is refused naming both).
    """
    import functools

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs["step_defaults"] = _fold_step_defaults(
                {flag.dest: kwargs.pop(flag.dest, None) for flag in STEP_DEFAULT_FLAGS}
            )
            return fn(*args, **kwargs)

        for flag in reversed(STEP_DEFAULT_FLAGS):
            command = click.option(
                flag.flag,
                flag.dest,
                metavar=flag.metavar,
                multiple=flag.multiple,
                envvar=flag.envvar,
                show_envvar=flag.envvar is not None,
                help=flag.help,
            )(command)
        return command  # type: ignore[return-value]

    return decorate


def _fold_step_defaults(raw: dict[str, Any]) -> Any:
    from zt_pipelines.declare import step_defaults

    values: dict[str, Any] = {}
    given: list[str] = []
    for flag in STEP_DEFAULT_FLAGS:
        value = raw.get(flag.dest)
        if value is None or (flag.multiple and not value):
            continue
        fields = flag.convert(value) if flag.convert else {flag.field: value}
        step_defaults(fields, where=flag.flag)  # each flag's own error names it
        values.update(fields)
        given.append(flag.flag)
    return step_defaults(values, where=" / ".join(given)) if values else None
