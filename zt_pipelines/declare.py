"""Declarations: who runs a step and what it needs, written next to the component.

Three ways to declare, one result (:class:`~zt_pipelines.model.StepDeclaration`):

* ``@zt.step(SA, needs=...)`` stacked **above** ``@dsl.component`` / ``@dsl.container_component``
  (or ``zt.step(component, service_account=..., needs=...)`` on a component loaded from YAML);
* ``zt.step.on(task, service_account=..., needs=...)`` on one task, when two tasks of one
  component need different identities;
* a manifest file keyed by task name (:func:`load_manifest`), for templates compiled elsewhere.

The decorator and the task form write the declaration into the task's ``platform_config`` under
our own key :data:`PLATFORM_KEY` (read-modify-write of our key only, as kfp-kubernetes does).
KFP's compiler copies it verbatim to ``platforms.<PLATFORM_KEY>.deploymentSpec.executors.<label>``
in the PlatformSpec document, so a compiled template alone carries it; the rewrite reads it and
strips it. See ``docs/declarations.md`` for why this route and not component metadata.

kfp is never imported here: components and tasks are recognised by their attributes, so
``import zt_pipelines`` stays cheap.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import linecache
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from zt_pipelines.errors import DeclarationError, ManifestError
from zt_pipelines.identity import require_user_managed
from zt_pipelines.model import JobFields, Need, StepDeclaration
from zt_pipelines.policy.role_catalogue import validate_permission
from zt_pipelines.policy.wording import noun
from zt_pipelines.resources import ResourceRef, normalize_resource

PLATFORM_KEY = "zt_pipelines"
"""Our key in ``task.platform_config`` and in the compiled PlatformSpec's ``platforms``."""

DECLARATION_ATTR = "zt_declaration"
"""Attribute holding the :class:`StepDeclaration` on a declared component (inspectable)."""

_STRUCT_VERSION = 1
JOB_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(JobFields))
_INT_FIELDS = {"accelerator_count", "replica_count", "boot_disk_size_gb"}
_STR_FIELDS = {"network", "encryption_spec_key_name", "machine_type", "accelerator_type"}
_STR_FIELDS |= {"boot_disk_type", "persistent_resource_id"}
_KMS_KEY = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$")
# a PersistentResource ID (Vertex: 1-63 chars, lower-case letters, digits and hyphens)
_PERSISTENT_RESOURCE_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_NETWORK = re.compile(r"^projects/[^/\s]+/global/networks/[^/\s]+$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


# --------------------------------------------------------------------------- parsing


def parse_needs(needs: Any, *, where: str) -> tuple[Need, ...]:
    """Validate and normalise a ``needs`` mapping ``{resource URI: [permission, ...]}``.

    Two URIs naming the same resource are merged (union of permissions).

    Raises:
        DeclarationError: ``needs`` is not a mapping of strings to lists of strings.
        ResourceError: a resource URI is malformed.
        PermissionFormatError: a permission is not ``service.resource.verb``.
        UnknownPermissionError: a permission no predefined role includes (with suggestions).
    """
    if needs is None:
        return ()
    if not isinstance(needs, Mapping):
        raise DeclarationError(
            f"needs must be a mapping of resource URI to permissions, not {type(needs).__name__}",
            where=where,
            fix='write needs={"gs://bucket": ["storage.objects.get"]}',
        )
    merged: dict[ResourceRef, set[str]] = {}
    for uri, perms in needs.items():
        at = f"{where}: needs[{uri!r}]"
        ref = normalize_resource(uri, where=at)
        if isinstance(perms, str) or not isinstance(perms, (list, tuple, set, frozenset)):
            raise DeclarationError(
                f"permissions must be a list of strings, not {perms!r}",
                where=at,
                fix='write ["storage.objects.get", ...]',
            )
        if not perms:
            raise DeclarationError("the permission list is empty", where=at)
        merged.setdefault(ref, set()).update(validate_permission(p, where=at) for p in perms)
    return tuple(sorted(Need(ref, tuple(sorted(p))) for ref, p in merged.items()))


def parse_job_fields(values: Mapping[str, Any], *, where: str) -> JobFields:
    """Validate CustomJob fields (names as in :class:`~zt_pipelines.model.JobFields`).

    Raises:
        DeclarationError: an unknown field, a wrong type, or ``network`` together with
            ``psc_interface_config`` (GCPC refuses that combination too).
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        at = f"{where}: {name}"
        if name not in JOB_FIELD_NAMES:
            known = ("needs", "service_account", *JOB_FIELD_NAMES)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DeclarationError(
                f"unknown job field {name!r}",
                where=where,
                fix=hint + "known fields: " + ", ".join(known),
            )
        if value is None:
            continue
        out[name] = _job_value(name, value, at)
    if out.get("network") and out.get("psc_interface_config"):
        raise DeclarationError(
            "network and psc_interface_config cannot both be set",
            where=where,
            fix="use VPC peering (network) or PSC interface, not both",
        )
    return JobFields(**out)


def step_defaults(value: Any, *, where: str = "step_defaults") -> JobFields | None:
    """Validate pipeline-wide CustomJob fields for every step that does not set its own
    (``zt.PipelineJob(step_defaults=)``, ``zt.check``, ``zt.plan``, the CLI's step options).

    Args:
        value: a :class:`~zt_pipelines.model.JobFields`, a mapping with its field names (e.g.
            ``{"persistent_resource_id": "train-pool"}``), or ``None``.
        where: what to name in errors.

    Returns:
        The fields, or ``None`` when nothing is set.

    Raises:
        DeclarationError: not a JobFields or mapping, an unknown or malformed field, or an
            identity (``service_account``/``needs`` are per step, never pipeline-wide).
    """
    if value is None:
        return None
    if isinstance(value, JobFields):
        values: dict[Any, Any] = {name: getattr(value, name) for name in JOB_FIELD_NAMES}
    elif isinstance(value, Mapping):
        values = dict(value)
    else:
        raise DeclarationError(
            f"step defaults must be a JobFields or a mapping of its fields, not "
            f"{type(value).__name__}",
            where=where,
            fix="e.g. step_defaults={'persistent_resource_id': 'train-pool'}",
        )
    for name in ("service_account", "needs"):
        if name in values:
            raise DeclarationError(
                f"{name!r} cannot be a pipeline-wide default: every step has its own",
                where=where,
                fix=f"declare {name} per step (@zt.step, zt.step.on or a manifest)",
            )
    parsed = parse_job_fields(values, where=where)
    return None if parsed == JobFields() else parsed


#: the environment's step defaults (the CLI's --persistent-resource-id, --step-network and
#: --step-psc-attachment read the same variables): every entry point applies them
STEP_DEFAULT_VARIABLES: tuple[tuple[str, str], ...] = (
    ("ZT_PERSISTENT_RESOURCE_ID", "persistent_resource_id"),
    ("ZT_STEP_NETWORK", "network"),
    ("ZT_STEP_PSC_ATTACHMENT", "psc_interface_config"),
)


def resolve_step_defaults(value: Any, *, where: str = "step_defaults") -> JobFields | None:
    """:func:`step_defaults` with the environment's defaults filling the fields the caller
    left unset — as the CLI's flags read them — so ``zt.check``, ``zt.plan``, the drop-in job
    and the CLI judge and run the same placement.

    Raises:
        DeclarationError: as :func:`step_defaults`, naming the variable when its value is bad.
    """
    given = step_defaults(value, where=where)
    fields: dict[str, Any] = {}
    for variable, name in STEP_DEFAULT_VARIABLES:
        raw = os.environ.get(variable, "").strip()
        if not raw:
            continue
        item = {"network_attachment": raw} if name == "psc_interface_config" else raw
        step_defaults({name: item}, where=f"${variable}")  # its own error names it
        fields[name] = item
    if not fields:
        return given
    if given is not None:
        fields.update(
            {n: getattr(given, n) for n in JOB_FIELD_NAMES if getattr(given, n) is not None}
        )
    return step_defaults(fields, where=where if given is not None else "the ZT_ step defaults")


def _job_value(name: str, value: Any, at: str) -> Any:
    if name in _INT_FIELDS:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # protobuf Struct turns ints into floats
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeclarationError(f"{value!r} is not a positive integer", where=at)
        return value
    if name == "enable_web_access":
        if not isinstance(value, bool):
            raise DeclarationError(f"{value!r} is not true/false", where=at)
        return value
    if name in _STR_FIELDS:
        if not isinstance(value, str) or not value or value != value.strip():
            raise DeclarationError(f"{value!r} is not a non-empty string", where=at)
        if name == "encryption_spec_key_name" and not _KMS_KEY.match(value):
            raise DeclarationError(
                f"{value!r} is not a Cloud KMS key name",
                where=at,
                fix="projects/P/locations/L/keyRings/R/cryptoKeys/K",
            )
        if name == "persistent_resource_id" and not _PERSISTENT_RESOURCE_ID.match(value):
            raise DeclarationError(
                f"{value!r} is not a persistent resource ID",
                where=at,
                fix="the ID of a PersistentResource in the job's project and location "
                "(lower-case letters, digits and hyphens), not its full name",
            )
        if name == "network" and not _NETWORK.match(value):
            raise DeclarationError(
                f"{value!r} is not a VPC network name",
                where=at,
                fix="projects/PROJECT_NUMBER/global/networks/NETWORK",
            )
        return value
    if name == "reach":
        from zt_pipelines.segmentation.model import parse_reach

        return tuple(e.text for e in parse_reach(value, where=at))
    if name == "reserved_ip_ranges":
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise DeclarationError(f"{value!r} is not a list of range names", where=at)
        if not all(isinstance(v, str) and v for v in value):
            raise DeclarationError(f"{value!r} holds a non-string or empty name", where=at)
        return tuple(value)
    if name == "labels":
        if not isinstance(value, Mapping):
            raise DeclarationError(f"{value!r} is not a mapping", where=at)
        for key, val in value.items():
            if not isinstance(key, str) or not _LABEL_KEY.match(key):
                raise DeclarationError(f"label key {key!r} is invalid", where=at)
            if not isinstance(val, str) or not _LABEL_VALUE.match(val):
                raise DeclarationError(f"label value {val!r} is invalid", where=at)
        return dict(value)
    # psc_interface_config: a free-form struct passed through to the CustomJob
    if not isinstance(value, Mapping) or not value:
        raise DeclarationError(f"{value!r} is not a non-empty mapping", where=at)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:  # sets, bytes, NaN ...: not what a CustomJob holds
        raise DeclarationError(f"{value!r} is not plain JSON data ({exc})", where=at) from exc


def parse_service_account(value: Any, *, where: str) -> str | None:
    """Validate a declared service account; ``None`` means "derive one".

    Raises:
        DefaultIdentityError: a default identity or an explicitly empty string.
        IdentityError: a malformed email.
    """
    if value is None:
        return None
    return require_user_managed(value, where=where)


def declaration(
    service_account: str | None = None,
    *,
    needs: Mapping[str, Any] | None = None,
    source: str = "decorator",
    where: str = "@zt.step",
    **job: Any,
) -> StepDeclaration:
    """Build a validated :class:`StepDeclaration` from keyword arguments.

    Raises:
        DeclarationError: (or a subclass) naming ``where``.
    """
    return StepDeclaration(
        service_account=parse_service_account(service_account, where=where),
        needs=parse_needs(needs, where=where),
        job=parse_job_fields(job, where=where),
        source=source,
    )


# ------------------------------------------------------------- struct (platform config)


def to_struct(decl: StepDeclaration) -> dict[str, Any]:
    """Serialise a declaration to the JSON-compatible form stored under :data:`PLATFORM_KEY`."""
    out: dict[str, Any] = {"version": _STRUCT_VERSION, "source": decl.source}
    if decl.service_account is not None:
        out["serviceAccount"] = decl.service_account
    if decl.service_account_parameter is not None:
        out["serviceAccount"] = {"componentInputParameter": decl.service_account_parameter}
    if decl.serving_service_account is not None:
        out["servingServiceAccount"] = decl.serving_service_account
    if decl.needs:
        out["needs"] = {_canonical_uri(n.resource): list(n.permissions) for n in decl.needs}
    job = {
        name: list(v) if isinstance(v, tuple) else v
        for name in JOB_FIELD_NAMES
        if (v := getattr(decl.job, name)) is not None
    }
    if job:
        out["job"] = job
    return out


def from_struct(data: Any, *, where: str) -> StepDeclaration:
    """Parse the form written by :func:`to_struct` (e.g. read back from a compiled template).

    Raises:
        DeclarationError: the struct is malformed (strict: unknown keys are refused).
    """
    if not isinstance(data, Mapping):
        raise DeclarationError(f"{PLATFORM_KEY} declaration is not a mapping", where=where)
    unknown = set(data) - {
        "version",
        "source",
        "serviceAccount",
        "servingServiceAccount",
        "needs",
        "job",
    }
    if unknown:
        raise DeclarationError(
            f"unknown {noun(len(unknown), 'key')} {sorted(unknown)} in the {PLATFORM_KEY} "
            "declaration",
            where=where,
        )
    version = data.get("version", _STRUCT_VERSION)
    if version not in (_STRUCT_VERSION, float(_STRUCT_VERSION)):
        raise DeclarationError(
            f"declaration version {version!r} is not supported",
            where=where,
            fix="recompile with this version of zt-pipelines",
        )
    source = data.get("source", "decorator")
    if not isinstance(source, str):
        raise DeclarationError(f"source {source!r} is not a string", where=where)
    sa = data.get("serviceAccount")
    parameter: str | None = None
    if isinstance(sa, Mapping):
        parameter = _parameter_reference(sa, where=where)
        sa = None
    job = data.get("job") or {}
    if not isinstance(job, Mapping):
        raise DeclarationError("job fields are not a mapping", where=where)
    return StepDeclaration(
        service_account=parse_service_account(sa, where=where),
        needs=parse_needs(data.get("needs"), where=where),
        job=parse_job_fields(job, where=where),
        source=source,
        service_account_parameter=parameter,
        serving_service_account=parse_service_account(
            data.get("servingServiceAccount"), where=f"{where}: servingServiceAccount"
        ),
    )


def _parameter_reference(sa: Mapping[str, Any], *, where: str) -> str:
    if set(sa) == {"componentInputParameter"} and isinstance(sa["componentInputParameter"], str):
        return str(sa["componentInputParameter"])
    if "taskOutputParameter" in sa or "taskOutputArtifact" in sa:
        raise DeclarationError(
            "the service account comes from an upstream task's output",
            where=where,
            fix="an identity must be known before submission: use a constant or a "
            "pipeline parameter",
        )
    raise DeclarationError(f"service account {dict(sa)!r} is not a constant", where=where)


def _canonical_uri(ref: ResourceRef) -> str:
    if ref.prefix is not None:
        return f"{ref.name}/objects/{ref.prefix}"
    return ref.name


def merge(first: StepDeclaration, second: StepDeclaration, *, where: str) -> StepDeclaration:
    """Combine two declarations for one task; a field set differently in both is an error.

    Needs are unioned. ``source`` records both origins (``"decorator+task"``).

    Raises:
        DeclarationError: conflicting service accounts or job fields, naming both sources.
    """

    def clash(what: str, a: Any, b: Any) -> DeclarationError:
        return DeclarationError(
            f"conflicting {what}: {a!r} ({first.source}) vs {b!r} ({second.source})",
            where=where,
            fix="declare it once (component, task or manifest), or make them agree",
        )

    sa_a = first.service_account or first.service_account_parameter
    sa_b = second.service_account or second.service_account_parameter
    if sa_a is not None and sa_b is not None and sa_a != sa_b:
        raise clash("service accounts", sa_a, sa_b)
    job: dict[str, Any] = {}
    for name in JOB_FIELD_NAMES:
        a, b = getattr(first.job, name), getattr(second.job, name)
        if a is not None and b is not None and a != b:
            raise clash(f"job field {name}", a, b)
        job[name] = a if a is not None else b
    needs: dict[ResourceRef, set[str]] = {}
    for need in (*first.needs, *second.needs):
        needs.setdefault(need.resource, set()).update(need.permissions)
    for name in ("serving_service_account", "launcher"):
        a, b = getattr(first, name), getattr(second, name)
        if a is not None and b is not None and a != b:
            raise clash(name, a, b)
    sources = [s for s in (first.source, second.source) if s]
    return StepDeclaration(
        service_account=first.service_account or second.service_account,
        needs=tuple(sorted(Need(r, tuple(sorted(p))) for r, p in needs.items())),
        job=JobFields(**job),
        source="+".join(dict.fromkeys("+".join(sources).split("+"))),
        service_account_parameter=(
            first.service_account_parameter or second.service_account_parameter
        ),
        serving_service_account=first.serving_service_account or second.serving_service_account,
        launcher=first.launcher or second.launcher,
    )


# ------------------------------------------------------------------ decorator / task form


def _is_component(obj: Any) -> bool:
    return callable(obj) and hasattr(obj, "component_spec") and hasattr(obj, "name")


def _attach(task: Any, decl: StepDeclaration, *, where: str) -> None:
    """Read-modify-write of our key in ``task.platform_config``."""
    config = getattr(task, "platform_config", None)
    if not isinstance(config, dict):
        raise DeclarationError(
            f"{task!r} is not a KFP pipeline task",
            where=where,
            fix="call zt.step.on(task, ...) with the task a component call returned",
        )
    if getattr(task, "container_spec", None) is None:
        raise DeclarationError(
            "identities can only be declared on container tasks, not on a pipeline or importer",
            where=where,
            fix="declare the steps inside the sub-pipeline instead",
        )
    existing = config.get(PLATFORM_KEY)
    if existing is not None:
        previous = from_struct(existing, where=where)
        if decl.source == "task" and "task" in previous.source.split("+"):
            raise DeclarationError(
                "zt.step.on() was called twice on the same task",
                where=where,
                fix="pass everything in one call",
            )
        decl = merge(previous, decl, where=where)
    config[PLATFORM_KEY] = to_struct(decl)


def _task_where(task: Any) -> str:
    return f"task {getattr(task, 'name', '?')!r}"


_SUBCLASSES: dict[type, type] = {}


def _declared_component(component: Any, decl: StepDeclaration) -> Any:
    """A shallow copy of ``component`` whose calls attach ``decl`` to every task they create.

    We subclass the component's own class (so ``isinstance`` checks, ``.component_spec`` and
    GCPC's helpers keep working) and override ``__call__`` only.
    """
    implementation = getattr(component.component_spec, "implementation", None)
    if getattr(implementation, "container", None) is None:
        raise DeclarationError(
            "only container components run as a step; this is a pipeline or an importer",
            where=f"component {component.name!r}",
            fix="declare the steps inside the pipeline instead",
        )
    if getattr(component, DECLARATION_ATTR, None) is not None:
        raise DeclarationError(
            "the component already has a @zt.step declaration",
            where=f"component {component.name!r}",
            fix="stack @zt.step once; use zt.step.on(task, ...) for one task",
        )
    base = type(component)
    sub = _SUBCLASSES.get(base)
    if sub is None:

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            task = base.__call__(self, *args, **kwargs)
            _attach(task, getattr(self, DECLARATION_ATTR), where=_task_where(task))
            return task

        sub = type(f"ZtDeclared{base.__name__}", (base,), {"__call__": call})
        sub.__module__ = base.__module__
        _SUBCLASSES[base] = sub
    new = copy.copy(component)
    new.__class__ = sub
    setattr(new, DECLARATION_ATTR, decl)
    return new


class _Step:
    """The ``zt.step`` entry point (decorator, call form and ``.on`` task form)."""

    def __call__(
        self, service_account: Any = None, /, *, needs: Mapping[str, Any] | None = None, **job: Any
    ) -> Any:
        """Declare a component's identity, needs and job fields.

        ``@zt.step("sa@p.iam.gserviceaccount.com", needs={...}, network=...)`` above
        ``@dsl.component``; or ``zt.step(component, service_account=..., needs=...)`` for a
        component loaded from YAML (returns a declared copy; the original is unchanged).

        Raises:
            DeclarationError: (or a subclass) for a malformed or duplicate declaration.
        """
        if _is_component(service_account):
            component = service_account
            sa = job.pop("service_account", None)
            where = f"zt.step({component.name!r})"
            return _declared_component(component, declaration(sa, needs=needs, where=where, **job))
        if "service_account" in job:
            if service_account is not None:
                raise DeclarationError(
                    "service_account given twice", where="@zt.step", fix="pass it once"
                )
            service_account = job.pop("service_account")
        if callable(service_account) and not isinstance(service_account, str):
            raise DeclarationError(
                f"@zt.step got {service_account!r}, which is not a KFP component",
                where="@zt.step",
                fix="stack @zt.step ABOVE @dsl.component / @dsl.container_component",
            )
        decl = declaration(service_account, needs=needs, where=_decorator_site(), **job)

        def decorate(component: Any) -> Any:
            if not _is_component(component):
                raise DeclarationError(
                    f"@zt.step decorates {component!r}, which is not a KFP component",
                    where="@zt.step",
                    fix="stack @zt.step ABOVE @dsl.component / @dsl.container_component",
                )
            return _declared_component(component, decl)

        return decorate

    def on(
        self,
        task: Any,
        service_account: Any = None,
        *,
        needs: Mapping[str, Any] | None = None,
        serving_service_account: str | None = None,
        **job: Any,
    ) -> Any:
        """Declare the identity of one task (returns the task, for chaining).

        ``service_account`` may be a constant or a pipeline parameter (resolved from
        ``parameter_values`` at rewrite time and pinned); an upstream task output is refused.
        ``serving_service_account`` is, for a GCPC deploy task (``ModelDeployOp``), the
        identity its deployed model serves as.

        Raises:
            DeclarationError: (or a subclass) for a malformed, duplicate or conflicting
                declaration.
        """
        where = _task_where(task)
        parameter: str | None = None
        service_account_channel = service_account
        if service_account is not None and not isinstance(service_account, str):
            parameter = _channel_parameter(service_account, where=where)
            service_account = None
        decl = declaration(service_account, needs=needs, source="task", where=where, **job)
        if parameter is not None:
            decl = StepDeclaration(
                needs=decl.needs, job=decl.job, source="task", service_account_parameter=parameter
            )
            # KFP surfaces registered channels through enclosing DAGs (loops, conditions) and
            # rewrites our componentInputParameter reference to the surfaced name.
            register = getattr(task, "register_pipeline_channels", None)
            if callable(register):
                register([service_account_channel])
        if serving_service_account is not None:
            decl = replace(
                decl,
                serving_service_account=parse_service_account(
                    serving_service_account, where=f"{where}: serving_service_account"
                ),
            )
        _attach(task, decl, where=where)
        return task


def _decorator_site() -> str:
    """``@zt.step`` plus the component it sits above and its file:line, for error messages.

    The decorator's arguments are checked before Python hands it the component, so the
    component is found in the caller's source: the first ``def`` after the decorator line.
    """
    frame = sys._getframe(2)  # _decorator_site <- _Step.__call__ <- the user's module
    filename, line = frame.f_code.co_filename, frame.f_lineno
    del frame
    site = f"{os.path.basename(filename)}:{line}"
    for offset in range(0, 40):
        text = linecache.getline(filename, line + offset)
        if not text:
            break
        match = _DEF.match(text)
        if match:
            return f"@zt.step on component {match.group(1)!r} ({site})"
    return f"@zt.step ({site})"


_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _channel_parameter(value: Any, *, where: str) -> str:
    """The pipeline-parameter name behind a KFP channel, or raise for anything else."""
    name = getattr(value, "name", None)
    if not hasattr(value, "channel_type") or not isinstance(name, str):
        raise DeclarationError(
            f"service account {value!r} is neither a string nor a pipeline parameter",
            where=where,
        )
    if getattr(value, "task_name", None):
        raise DeclarationError(
            f"the service account comes from the output of task {value.task_name!r}",
            where=where,
            fix="an identity must be known before submission: use a constant or a "
            "pipeline parameter",
        )
    return name


def _job_signature(*leading: inspect.Parameter) -> inspect.Signature:
    """What ``help()`` and IDEs show for ``zt.step`` / ``zt.step.on``: every job field as a
    keyword (the functions take ``**job`` only so that a misspelt one gets "did you mean")."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    job = [
        inspect.Parameter(f.name, keyword, default=None, annotation=f.type)
        for f in fields(JobFields)
    ]
    return inspect.Signature([*leading, *job], return_annotation="Any")


_POSITIONAL = inspect.Parameter.POSITIONAL_ONLY
_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_Step.__call__.__signature__ = _job_signature(  # type: ignore[attr-defined]
    inspect.Parameter("self", _POSITIONAL),
    # a component in the call form (then service_account= names the identity), else the identity
    inspect.Parameter(
        "service_account", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation="Any"
    ),
    inspect.Parameter("needs", _KEYWORD, default=None, annotation="Mapping[str, Any] | None"),
)
_Step.on.__signature__ = _job_signature(  # type: ignore[attr-defined]
    inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Any"),
    inspect.Parameter(
        "service_account", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation="Any"
    ),
    inspect.Parameter("needs", _KEYWORD, default=None, annotation="Mapping[str, Any] | None"),
    inspect.Parameter("serving_service_account", _KEYWORD, default=None, annotation="str | None"),
)

step = _Step()
"""Declare per-step identities; see :class:`_Step` (``@zt.step``, ``zt.step(c)``,
``zt.step.on(task)``)."""


# ------------------------------------------------------------------------------ manifest

_MANIFEST_ENTRY_KEYS = {
    "service_account",
    "needs",
    "serving_service_account",
    "launcher",
    *JOB_FIELD_NAMES,
}


def load_manifest(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, StepDeclaration]:
    """Load a manifest: ``{"steps": {TASK: {service_account, needs, <job fields>}}}``.

    ``TASK`` is a task name, or a ``/``-joined task path when the name is ambiguous. The file
    may be YAML or JSON. Validation is strict: unknown keys are refused, naming the file and
    the key.

    Raises:
        ManifestError: unreadable/malformed file, wrong shape, unknown keys.
        DeclarationError: (subclasses) a malformed identity, resource or permission.
    """
    if isinstance(source, Mapping):
        data: Any = source
        label = "manifest"
    elif not isinstance(source, (str, os.PathLike)):
        raise ManifestError(
            f"a manifest is a path or a mapping, not {type(source).__name__}",
            where="manifest",
            fix="pass the manifest file's path, or {'steps': {...}}",
        )
    else:
        path = Path(source)
        label = str(path)
        from zt_pipelines import loaders  # strict and bounded, as for every file kind

        documents = loaders.load_file(path, kind="manifest", error=ManifestError)
        if len(documents) > 1:
            raise ManifestError(
                f"a manifest is one YAML/JSON document, not {len(documents)}", where=label
            )
        data = documents[0] if documents else None
    if not isinstance(data, Mapping) or set(data) != {"steps"}:
        raise ManifestError(
            "a manifest is a mapping with one key, 'steps'",
            where=label,
            fix="write steps: {TASK_NAME: {service_account: ..., needs: {...}}}",
        )
    steps = data["steps"]
    if not isinstance(steps, Mapping):
        raise ManifestError("'steps' is not a mapping of task name to entry", where=label)
    out: dict[str, StepDeclaration] = {}
    for task, entry in steps.items():
        where = f"{label}: steps[{task!r}]"
        if not isinstance(task, str) or not task:
            raise ManifestError(f"task name {task!r} is not a string", where=label)
        if not isinstance(entry, Mapping):
            raise ManifestError("the entry is not a mapping", where=where)
        unknown = sorted(set(entry) - _MANIFEST_ENTRY_KEYS)
        if unknown:
            raise ManifestError(
                f"unknown key {unknown[0]!r}",
                where=where,
                fix="known keys: service_account, needs, serving_service_account, launcher, "
                + ", ".join(JOB_FIELD_NAMES),
            )
        nulls = sorted(k for k, v in entry.items() if v is None)
        if nulls:  # `needs: null` is not "no needs": a value was cut or mistyped
            raise ManifestError(
                f"{nulls[0]!r} is null",
                where=where,
                fix="give a value, or leave the key out",
            )
        job = {k: v for k, v in entry.items() if k in JOB_FIELD_NAMES}
        decl = declaration(
            entry.get("service_account"),
            needs=entry.get("needs"),
            source="manifest",
            where=where,
            **job,
        )
        launcher = entry.get("launcher")
        if launcher is not None and launcher != "caller":
            raise ManifestError(
                f"launcher {launcher!r} is not 'caller'",
                where=where,
                fix="write launcher: caller for a GCPC launcher whose job runs as the caller",
            )
        serving = entry.get("serving_service_account")
        if serving is not None:
            serving = parse_service_account(serving, where=f"{where}.serving_service_account")
        out[task] = replace(decl, serving_service_account=serving, launcher=launcher)
    return out
