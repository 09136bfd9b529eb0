"""Rewrite a compiled pipeline so every container step runs as its own service account.

Pure: takes IR (and PlatformSpec documents), returns a new IR; never mutates its input, does no
IO. The walk goes down the DAG tree from ``root`` carrying what every DAG input is bound to
(:mod:`zt_pipelines.spec.resolve`), so a task inside a loop, a condition or a sub-pipeline
resolves its identity against the pipeline's own parameters. Each container task's component is
replaced by a GCPC custom-job launcher component (:mod:`zt_pipelines.spec.launcher`); existing
GCPC custom jobs are read and checked instead; importers are left alone.

Components are *interned by content*: a rewritten component keeps its name when it is the first
(or only) version of that component, and a task whose rewritten component differs (another
identity, other job fields) gets a clone named ``comp-x-2``, ``exec-x-2`` ... . The same holds for
DAG components, so a sub-pipeline used twice with different inner identities is split too. See
``docs/rewrite.md``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from zt_pipelines.declare import (
    PLATFORM_KEY,
    from_struct,
    load_manifest,
    merge,
    parse_job_fields,
)
from zt_pipelines.errors import (
    DeclarationError,
    IdentityError,
    ManifestError,
    PipelineIdentityReuseError,
    TemplateError,
    UnpinnedIdentityError,
)
from zt_pipelines.identity import (
    DEFAULT_NAME_TEMPLATE,
    classify_identity,
    derive_account_id,
    require_user_managed,
    service_account_email,
)
from zt_pipelines.model import (
    IdentitySource,
    JobFields,
    RewriteResult,
    StepDeclaration,
    StepIdentity,
)
from zt_pipelines.spec.launcher import (
    CUSTOM_JOB_INPUT_NAMES,
    QUOTED_PAYLOAD_INPUTS,
    RAW_PAYLOAD_INPUTS,
    _copy,
    custom_job_component,
    is_custom_job_launcher,
    is_safe_payload_string,
    launcher_executor,
    reads_service_account_input,
)
from zt_pipelines.spec.resolve import (
    Bound,
    Env,
    bind,
    child_env,
    derivation_keys,
    job_settings,
    resolve_identity_binding,
    root_env,
)
from zt_pipelines.spec.template import check_pipeline, load_template

__all__ = ["rewrite", "rewrite_pipeline"]

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_MAX_DEPTH = 100
# CustomJob inputs a declaration may set on an existing GCPC custom-job task.
_GCPC_TASK_FIELDS = (
    "network",
    "encryption_spec_key_name",
    "enable_web_access",
    "reserved_ip_ranges",
    "labels",
    "psc_interface_config",
)
_GCPC_MACHINE_FIELDS = (
    "machine_type",
    "accelerator_type",
    "accelerator_count",
    "replica_count",
    "boot_disk_type",
    "boot_disk_size_gb",
)

Manifest = str | os.PathLike[str] | Mapping[str, Any]


def rewrite(
    spec: Any,
    *,
    parameter_values: Mapping[str, Any] | None = None,
    manifest: Manifest | None = None,
    project: str | None = None,
    location: str | None = None,
    pipeline_service_account: str | None = None,
    naming_template: str = DEFAULT_NAME_TEMPLATE,
    defaults: JobFields | None = None,
    platform_docs: tuple[dict[str, Any], ...] | list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Rewrite ``spec`` and return only the new IR; the arguments are
    :func:`rewrite_pipeline`'s (spelled out so ``help()`` and IDEs show them)."""
    return rewrite_pipeline(
        spec,
        parameter_values=parameter_values,
        manifest=manifest,
        project=project,
        location=location,
        pipeline_service_account=pipeline_service_account,
        naming_template=naming_template,
        defaults=defaults,
        platform_docs=platform_docs,
    ).spec


def rewrite_pipeline(
    spec: Any,
    *,
    parameter_values: Mapping[str, Any] | None = None,
    manifest: Manifest | None = None,
    project: str | None = None,
    location: str | None = None,
    pipeline_service_account: str | None = None,
    naming_template: str = DEFAULT_NAME_TEMPLATE,
    defaults: JobFields | None = None,
    platform_docs: tuple[dict[str, Any], ...] | list[dict[str, Any]] | None = None,
) -> RewriteResult:
    """Rewrite every container step of a pipeline into a CustomJob under its own identity.

    Args:
        spec: the pipeline IR (dict), a PipelineJob dict with ``pipelineSpec``, a path to a
            template, or the ``(ir, platform_docs)`` pair :func:`load_template` returns.
        parameter_values: pipeline parameter values; an identity taken from a parameter is
            resolved from them (or the parameter's default) and pinned as a constant.
        manifest: a manifest path/mapping (see :func:`zt_pipelines.declare.load_manifest`) or
            an already loaded ``{task: StepDeclaration}``.
        project: the project derived identities live in (required when a step has no
            declared identity).
        location: accepted for symmetry with ``PipelineJob``; the launcher takes the
            location from the running pipeline.
        pipeline_service_account: the pipeline's own SA; a step may not run as it.
        naming_template: template of derived account ids (``{pipeline}``, ``{task}``).
        defaults: CustomJob fields for every step that does not declare its own.
        platform_docs: PlatformSpec documents of the template, when ``spec`` is a dict.

    Raises:
        TemplateError: the template is not a pipeline, or a step cannot become a CustomJob.
        DeclarationError: malformed or conflicting declarations; ManifestError for the
            manifest.
        IdentityError / DefaultIdentityError: an identity that is malformed, a default one,
            the pipeline SA, or not known before submission — naming the task.
    """
    del location  # the launcher reads {{$.pipeline_google_cloud_location}} at run time
    ir, docs = _split_input(spec, platform_docs)
    declarations, kept_docs = _read_platform_docs(docs)
    decls = _manifest_declarations(manifest)
    pipeline_sa = _pipeline_sa(pipeline_service_account)
    if project is not None and not _PROJECT_ID.match(project):
        raise IdentityError(
            f"project {project!r} is not a valid project id",
            where="project",
            fix="project ids are 6-30 lowercase letters, digits and hyphens",
        )
    try:
        derive_account_id("pipeline", "task", template=naming_template)
    except IdentityError as exc:
        raise IdentityError(exc.what, where="naming_template", fix=exc.fix) from exc
    walker = _Walker(
        ir,
        declarations=declarations,
        parameter_values=parameter_values,
        project=project,
        pipeline_sa=pipeline_sa,
        naming_template=naming_template,
        defaults=_checked_defaults(defaults),
    )
    walker.match_manifest(decls)
    new_spec = walker.run()
    stale = sorted(set(declarations) - walker.used_declarations)
    if stale:
        raise DeclarationError(
            f"a declaration names executor {stale[0]!r}, which no container task of pipeline "
            f"{walker.pipeline_name!r} uses",
            where=f"PlatformSpec {PLATFORM_KEY}",
            fix="recompile the pipeline, or remove the stale declaration",
        )
    new_docs = _rebuild_platform_docs(kept_docs, walker.executor_origin)
    return RewriteResult(
        spec=new_spec,
        pipeline_name=walker.pipeline_name,
        steps=tuple(walker.steps),
        platform_docs=new_docs,
    )


# ------------------------------------------------------------------------------ inputs


def _split_input(
    spec: Any, platform_docs: Any
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    if isinstance(spec, (str, os.PathLike)):
        ir, docs = load_template(Path(spec))
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], Mapping):
        ir, docs = load_template(spec[0])
        docs = tuple(spec[1])
    elif isinstance(spec, Mapping):
        ir, docs = load_template(spec)
    else:
        raise TemplateError(
            f"cannot rewrite a {type(spec).__name__}",
            where="spec",
            fix="pass the compiled IR as a dict, a path, or load_template()'s result",
        )
    if platform_docs:
        docs = (*docs, *platform_docs)
    for index, doc in enumerate(docs, start=2):
        if not isinstance(doc, Mapping) or set(doc) - {"platforms"}:
            raise TemplateError(f"document {index} is not a PlatformSpec", where="platform_docs")
    check_pipeline(ir)
    return ir, tuple(docs)


def _read_platform_docs(
    docs: tuple[dict[str, Any], ...],
) -> tuple[dict[str, StepDeclaration], list[dict[str, Any]]]:
    """Our declarations by executor label, and copies of the documents without our key."""
    declarations: dict[str, StepDeclaration] = {}
    kept: list[dict[str, Any]] = []
    for doc in docs:
        platforms = doc.get("platforms") or {}
        if not isinstance(platforms, Mapping):
            raise TemplateError("platforms is not a mapping", where="PlatformSpec")
        ours = platforms.get(PLATFORM_KEY)
        if ours is not None:
            deployment = ours.get("deploymentSpec") if isinstance(ours, Mapping) else None
            executors = deployment.get("executors") if isinstance(deployment, Mapping) else None
            if not isinstance(executors, Mapping) or set(ours) != {"deploymentSpec"}:
                raise DeclarationError(
                    f"the {PLATFORM_KEY} platform config is malformed",
                    where="PlatformSpec",
                    fix="recompile the pipeline with zt-pipelines' decorators",
                )
            for label, struct in executors.items():
                where = f"PlatformSpec {PLATFORM_KEY} executor {label!r}"
                if label in declarations:
                    raise DeclarationError("declared twice", where=where)
                declarations[label] = from_struct(struct, where=where)
        rest = {k: _copy(v) for k, v in platforms.items() if k != PLATFORM_KEY}
        for key, config in rest.items():
            if not isinstance(config, dict) or not isinstance(
                config.get("deploymentSpec") or {}, dict
            ):
                raise TemplateError(
                    f"the {key!r} platform config is not a mapping with a deploymentSpec",
                    where="PlatformSpec",
                )
        if rest:
            kept.append({"platforms": rest})
    return declarations, kept


def _rebuild_platform_docs(
    kept: list[dict[str, Any]], executor_origin: dict[str, str]
) -> tuple[dict[str, Any], ...]:
    """Other platforms' per-executor configs follow executors that were renamed or cloned."""
    out: list[dict[str, Any]] = []
    for doc in kept:
        platforms: dict[str, Any] = {}
        for key, config in doc["platforms"].items():
            executors = (config.get("deploymentSpec") or {}).get("executors")
            if isinstance(executors, dict):
                rebuilt = {
                    new: _copy(executors[old])
                    for new, old in sorted(executor_origin.items())
                    if old in executors
                }
                config = dict(config)
                config["deploymentSpec"] = {**config["deploymentSpec"], "executors": rebuilt}
            platforms[key] = config
        out.append({"platforms": platforms})
    return tuple(out)


def _manifest_declarations(manifest: Manifest | None) -> dict[str, StepDeclaration]:
    if manifest is None:
        return {}
    if isinstance(manifest, Mapping) and all(
        isinstance(v, StepDeclaration) for v in manifest.values()
    ):
        return dict(manifest)
    return load_manifest(manifest)


def _checked_defaults(defaults: JobFields | None) -> JobFields:
    """Pipeline-wide job fields get the same validation as declarations."""
    if defaults is None:
        return JobFields()
    if not isinstance(defaults, JobFields):
        raise DeclarationError(
            f"defaults must be a JobFields, not {type(defaults).__name__}", where="defaults"
        )
    values = {name: getattr(defaults, name) for name in defaults.__dataclass_fields__}
    return parse_job_fields(values, where="defaults")


def _pipeline_sa(email: str | None) -> str | None:
    if email is None:
        return None
    return classify_identity(email, where="pipeline_service_account").email or None


# ------------------------------------------------------------------------------- walker


class _Walker:
    """One rewrite: walks the DAG tree, interns rewritten components, records steps."""

    def __init__(
        self,
        ir: dict[str, Any],
        *,
        declarations: dict[str, StepDeclaration],
        parameter_values: Mapping[str, Any] | None,
        project: str | None,
        pipeline_sa: str | None,
        naming_template: str,
        defaults: JobFields,
    ) -> None:
        self.ir = ir
        self.pipeline_name: str = ir["pipelineInfo"]["name"]
        self.components: dict[str, Any] = ir.get("components") or {}
        self.executors: dict[str, Any] = (ir.get("deploymentSpec") or {}).get("executors") or {}
        self.declarations = declarations
        self.env = root_env(ir, parameter_values)
        self.project = project
        self.pipeline_sa = pipeline_sa
        self.naming_template = naming_template
        self.defaults = defaults
        self.steps: list[StepIdentity] = []
        self.by_path: dict[str, StepDeclaration] = {}
        self.used_declarations: set[str] = set()
        # interning state
        self.new_components: dict[str, Any] = {}
        self.new_executors: dict[str, Any] = {}
        self.executor_origin: dict[str, str] = {}
        self._versions: dict[str, list[tuple[str, str, str | None]]] = {}
        self._used_components = set(self.components)
        self._used_executors = set(self.executors)
        self._derived: dict[str, str] = {}
        # pre-pass: every container task's path
        self.container_paths: list[str] = []
        self.all_paths: list[str] = []
        self._enumerate(ir["root"], "", (), 0)
        self.keys = derivation_keys(self.container_paths)

    # -- pre-pass -------------------------------------------------------------------------

    def _component(self, name: Any, where: str) -> dict[str, Any]:
        component = self.components.get(name) if isinstance(name, str) else None
        if not isinstance(component, dict):
            raise TemplateError(f"component {name!r} is not defined", where=where)
        return component

    def _executor(self, component: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
        label = component.get("executorLabel")
        executor = self.executors.get(label) if isinstance(label, str) else None
        if not isinstance(executor, dict) or not isinstance(label, str):
            raise TemplateError(f"executor {label!r} is not defined", where=where)
        return label, executor

    def _tasks(self, component: dict[str, Any], where: str) -> dict[str, Any]:
        tasks = (component.get("dag") or {}).get("tasks") or {}
        if not isinstance(tasks, dict):
            raise TemplateError("dag.tasks is not a mapping", where=where)
        for name, task in tasks.items():
            if not isinstance(task, dict) or not isinstance(task.get("componentRef"), dict):
                raise TemplateError(f"task {name!r} has no componentRef", where=where)
        return tasks

    def _enumerate(
        self, component: dict[str, Any], prefix: str, stack: tuple[str, ...], depth: int
    ) -> None:
        if depth > _MAX_DEPTH:
            raise TemplateError("DAGs nest too deeply", where=f"task {prefix.rstrip('/')!r}")
        for name, task in sorted(self._tasks(component, f"DAG {prefix or 'root'}").items()):
            path = prefix + name
            where = f"task {path!r}"
            ref = task["componentRef"].get("name")
            child = self._component(ref, where)
            self.all_paths.append(path)
            if "dag" in child:
                if ref in stack:
                    raise TemplateError(f"component {ref!r} contains itself", where=where)
                self._enumerate(child, path + "/", (*stack, ref), depth + 1)
                continue
            _, executor = self._executor(child, where)
            if "container" in executor:
                self.container_paths.append(path)

    def match_manifest(self, manifest: dict[str, StepDeclaration]) -> None:
        """Attach manifest entries to task paths (full path, derivation key or unique name)."""
        paths = set(self.container_paths)
        by_key = {key: path for path, key in self.keys.items()}
        by_leaf: dict[str, list[str]] = {}
        for path in self.container_paths:
            by_leaf.setdefault(path.rsplit("/", 1)[-1], []).append(path)
        for name, decl in manifest.items():
            where = f"manifest steps[{name!r}]"
            if name in paths:
                path = name
            elif name in by_key:
                path = by_key[name]
            elif len(by_leaf.get(name, ())) == 1:
                path = by_leaf[name][0]
            elif name in by_leaf:
                raise ManifestError(
                    f"task name {name!r} is ambiguous in pipeline {self.pipeline_name!r}",
                    where=where,
                    fix="use the task path: " + " or ".join(sorted(by_leaf[name])),
                )
            else:
                known = ", ".join(sorted(self.container_paths)[:12]) or "(none)"
                kind = "is not a container step" if name in self.all_paths else "is not a task"
                raise ManifestError(
                    f"{name!r} {kind} of pipeline {self.pipeline_name!r}",
                    where=where,
                    fix=f"container steps: {known}",
                )
            if path in self.by_path:
                raise ManifestError(
                    f"two manifest entries name task {path!r}", where=where, fix="keep one"
                )
            self.by_path[path] = decl

    # -- walk -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        out = {k: _copy(v) for k, v in self.ir.items() if k not in ("components", "root")}
        out["root"] = self._dag(self.ir["root"], "", self.env)
        if self.new_components or "components" in self.ir:
            out["components"] = dict(sorted(self.new_components.items()))
        deployment = dict(out.get("deploymentSpec") or {})
        if self.new_executors or "deploymentSpec" in self.ir:
            deployment["executors"] = dict(sorted(self.new_executors.items()))
            out["deploymentSpec"] = deployment
        return out

    def _dag(self, component: dict[str, Any], prefix: str, env: Env) -> dict[str, Any]:
        new = {k: _copy(v) for k, v in component.items() if k != "dag"}
        dag = {k: _copy(v) for k, v in component["dag"].items() if k != "tasks"}
        tasks: dict[str, Any] = {}
        for name, task in sorted((component["dag"].get("tasks") or {}).items()):
            tasks[name] = self._task(task, prefix + name, env)
        dag["tasks"] = tasks
        new["dag"] = dag
        return new

    def _task(self, task: dict[str, Any], path: str, env: Env) -> dict[str, Any]:
        where = f"task {path!r}"
        ref = task["componentRef"]["name"]
        child = self.components[ref]
        new_task: dict[str, Any] = _copy(task)
        if "dag" in child:
            rewritten = self._dag(child, path + "/", child_env(task, env))
            new_task["componentRef"]["name"] = self._emit(ref, rewritten, None, None)
            return new_task
        label, executor = self._executor(child, where)
        container = executor.get("container")
        if not isinstance(container, dict):  # importer, resolver: left alone
            name = self._emit(ref, _copy(child), label, _copy(executor))
            new_task["componentRef"]["name"] = name
            return new_task
        decl = self._declaration(path, label)
        if is_custom_job_launcher(container):
            return self._gcpc_task(new_task, path, ref, child, label, executor, env, decl)
        steering = sorted(
            set((task.get("inputs") or {}).get("parameters") or {}) & CUSTOM_JOB_INPUT_NAMES
        )
        if steering:
            raise TemplateError(
                f"the task passes {steering[0]!r}, which its component does not declare; as a "
                "CustomJob it would steer the job (its identity, network, project ...)",
                where=where,
                fix="remove the argument from the task",
            )
        sa, source = self._identity(path, decl, env)
        settings, job = job_settings(
            display_name=ref.removeprefix("comp-"),
            service_account=sa,
            declared=decl.job,
            defaults=self.defaults,
            resources=container.get("resources"),
            where=where,
        )
        component = custom_job_component(child, container, settings, executor_label="", where=where)
        params = component["inputDefinitions"]["parameters"]
        runtime_inputs = _raw_payload_inputs(
            params["worker_pool_specs"]["defaultValue"], params, task, env
        )
        name = self._emit(ref, component, label, launcher_executor())
        new_task["componentRef"]["name"] = name
        self.steps.append(
            StepIdentity(
                task=path,
                component=name,
                executor=self.new_components[name]["executorLabel"],
                service_account=sa,
                source=source,
                needs=decl.needs,
                image=str(container.get("image", "")),
                job=job,
                unescaped_payload_inputs=runtime_inputs,
            )
        )
        return new_task

    def _declaration(self, path: str, label: str) -> StepDeclaration:
        self.used_declarations.add(label)
        compiled = self.declarations.get(label)
        listed = self.by_path.get(path)
        if compiled is not None and listed is not None:
            return merge(compiled, listed, where=f"task {path!r}")
        return compiled or listed or StepDeclaration(source="")

    def _identity(self, path: str, decl: StepDeclaration, env: Env) -> tuple[str, IdentitySource]:
        where = f"task {path!r}"
        source: IdentitySource
        if decl.service_account is not None:
            value: Any = decl.service_account
            source = "manifest" if decl.source == "manifest" else "declared"
        elif decl.service_account_parameter is not None:
            bound = env.get(decl.service_account_parameter) or Bound(
                "runtime", what=f"the enclosing DAG's input {decl.service_account_parameter!r}"
            )
            value, _ = resolve_identity_binding(bound, where=where)
            source = "parameter"
        else:
            return self._derive(path), "derived"
        return self._check(value, where), source

    def _derive(self, path: str) -> str:
        where = f"task {path!r}"
        if self.project is None:
            raise IdentityError(
                "the step declares no service account and no project was given to derive one",
                where=where,
                fix="pass project=PROJECT_ID (--project) or declare the step's identity",
            )
        account = derive_account_id(
            self.pipeline_name, self.keys[path], template=self.naming_template
        )
        email = service_account_email(account, self.project)
        other = self._derived.get(email)
        if other is not None and other != path:  # backstop: 24-40 hash bits make it unlikely
            raise IdentityError(
                f"derived identity {email!r} is shared with task {other!r}",
                where=where,
                fix="change naming_template",
            )
        self._derived[email] = path
        return self._check(email, where)

    def _check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise IdentityError(f"service account {value!r} is not a string", where=where)
        email = require_user_managed(value, where=where)
        if self.pipeline_sa is not None and email == self.pipeline_sa:
            raise PipelineIdentityReuseError(
                f"{email!r} is the pipeline's own service account",
                where=where,
                fix="give the step a dedicated identity: the pipeline SA can act as every "
                "step SA, so sharing it defeats per-step isolation",
            )
        return email

    # -- existing GCPC custom jobs ---------------------------------------------------------

    def _gcpc_task(
        self,
        task: dict[str, Any],
        path: str,
        ref: str,
        component: dict[str, Any],
        label: str,
        executor: dict[str, Any],
        env: Env,
        decl: StepDeclaration,
    ) -> dict[str, Any]:
        where = f"task {path!r}"
        container = executor["container"]
        params = (component.get("inputDefinitions") or {}).get("parameters") or {}
        if not reads_service_account_input(container) or "service_account" not in params:
            raise TemplateError(
                "this custom job sets its service account in a way zt-pipelines cannot read",
                where=where,
                fix="build it with GCPC's CustomTrainingJobOp or "
                "create_custom_training_job_from_component",
            )
        bindings: dict[str, Any] = dict((task.get("inputs") or {}).get("parameters") or {})
        before = dict(bindings)
        source: IdentitySource = "gcpc"
        found: Any = None
        pin = False
        if "service_account" in bindings:
            value, parameter = resolve_identity_binding(
                bind(bindings["service_account"], env), where=where
            )
            found = value if value is not None else ""
            if parameter is not None:
                source, pin = "parameter", True
        else:
            found = params["service_account"].get("defaultValue") or None
        declared = decl.service_account
        if found is None:  # absent (GCPC's '' default): declared, parameter or derived
            sa, source = self._identity(path, decl, env)
            pin = True
        else:
            sa = self._check(found, where)
            if declared is not None and declared != sa:
                raise DeclarationError(
                    f"declared {declared!r} but the custom job runs as {sa!r}",
                    where=where,
                    fix="declare the identity in one place",
                )
        if pin:
            bindings["service_account"] = {"runtimeValue": {"constant": sa}}
        self._apply_gcpc_fields(bindings, params, decl, where)
        runtime_raw = _check_payload_inputs(bindings, params, env, where)
        if bindings != before:
            task.setdefault("inputs", {})["parameters"] = bindings
        name = self._emit(ref, _copy(component), label, _copy(executor))
        task["componentRef"]["name"] = name
        self.steps.append(
            StepIdentity(
                task=path,
                component=name,
                executor=self.new_components[name]["executorLabel"],
                service_account=sa,
                source=source,
                needs=decl.needs,
                image=_gcpc_image(bindings, params, env),
                job=replace(
                    _gcpc_job(bindings, params, env),
                    reach=decl.job.reach if decl.job.reach is not None else self.defaults.reach,
                ),
                already_custom_job=True,
                unescaped_payload_inputs=tuple(
                    sorted(
                        {
                            *runtime_raw,
                            *_raw_payload_inputs(
                                _constant("worker_pool_specs", bindings, params, env),
                                params,
                                {"inputs": {"parameters": bindings}},
                                env,
                            ),
                        }
                    )
                ),
            )
        )
        return task

    def _apply_gcpc_fields(
        self,
        bindings: dict[str, Any],
        params: dict[str, Any],
        decl: StepDeclaration,
        where: str,
    ) -> None:
        for name in _GCPC_MACHINE_FIELDS:
            if getattr(decl.job, name) is not None:
                raise DeclarationError(
                    f"{name} cannot be declared for an existing custom job",
                    where=where,
                    fix="set it in the custom job's worker_pool_specs",
                )
        for name in _GCPC_TASK_FIELDS:
            value = getattr(decl.job, name)
            if value is None or name not in params:
                continue
            value = list(value) if isinstance(value, tuple) else value
            current = bindings.get(name)
            if current is None:
                bindings[name] = {"runtimeValue": {"constant": value}}
            elif current != {"runtimeValue": {"constant": value}}:
                raise DeclarationError(
                    f"declared {name} {value!r} but the custom job task sets it already",
                    where=where,
                )

    # -- interning ------------------------------------------------------------------------

    def _emit(
        self,
        name: str,
        component: dict[str, Any],
        label: str | None,
        executor: dict[str, Any] | None,
    ) -> str:
        """Add a (possibly rewritten) component; return its final name."""
        component.pop("executorLabel", None)
        key = json.dumps([component, executor, label], sort_keys=True, default=repr)
        versions = self._versions.setdefault(name, [])
        for existing_key, existing_name, _ in versions:
            if existing_key == key:
                return existing_name
        if not versions and name not in self.new_components:
            new_name = name
        else:
            new_name = _unique(name, self._used_components)
        self._used_components.add(new_name)
        new_label: str | None = None
        if label is not None and executor is not None:
            if label not in self.new_executors:
                new_label = label
            else:
                new_label = _unique(label, self._used_executors)
            self._used_executors.add(new_label)
            self.new_executors[new_label] = executor
            self.executor_origin[new_label] = label
            component = {"executorLabel": new_label, **component}
        versions.append((key, new_name, new_label))
        self.new_components[new_name] = component
        return new_name


_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
# an input artifact's uri/path/metadata: the producing step can set its output's URI
_ARTIFACT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.[^}]*\}\}")


def _raw_payload_inputs(
    pools: Any,
    definitions: dict[str, Any],
    task: dict[str, Any],
    env: Env,
) -> tuple[str, ...]:
    """Inputs pasted verbatim into the payload via the worker pools whose values are not proven
    safe: known only at run time, or constants holding quotes or backslashes (see
    ``StepIdentity.unescaped_payload_inputs``)."""
    names: set[str] = set()
    runtime: list[str] = []
    stack = [pools]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            names.update(_INPUT_PLACEHOLDER.findall(item))
            runtime += _ARTIFACT_PLACEHOLDER.findall(item)  # always a run-time value
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    bindings = (task.get("inputs") or {}).get("parameters") or {}
    todo, seen = sorted(names), set(names)
    while todo:
        name = todo.pop(0)
        if name in bindings:
            bound = bind(bindings[name], env)
        elif "defaultValue" in (definitions.get(name) or {}):
            bound = Bound("constant", definitions[name]["defaultValue"])
        else:
            continue  # an optional input left unset
        if bound.kind != "constant":
            runtime.append(name)
            continue
        value = bound.value
        if isinstance(value, str):
            # KFP's string concatenation nests placeholders in a constant: follow them
            nested = [n for n in _INPUT_PLACEHOLDER.findall(value) if n not in seen]
            seen.update(nested)
            todo.extend(nested)
            value = _INPUT_PLACEHOLDER.sub("", value)
        if not is_safe_payload_string(value):
            runtime.append(name)  # holds a quote or backslash: not proven safe either
    return tuple(sorted(set(runtime)))


def _check_payload_inputs(
    bindings: dict[str, Any], params: dict[str, Any], env: Env, where: str
) -> tuple[str, ...]:
    """Refuse launcher inputs that could rewrite the payload JSON they are pasted into; return
    the unquoted ones known only at run time (for ``unescaped_payload_inputs``).

    Vertex substitutes ``{{$.inputs.parameters['x']}}`` into the ``--payload`` string as is:
    a run-time value, or a constant holding a quote, could add a second ``service_account``
    the launcher's JSON parser would take instead of the one we checked. An unquoted slot
    (``"labels": {{...}}``) holding a *string* constant would be pasted as JSON text, so its
    constant must be a value of the slot's own JSON type.
    """
    runtime: list[str] = []
    for name in (*QUOTED_PAYLOAD_INPUTS, *RAW_PAYLOAD_INPUTS):
        if name in bindings:
            bound = bind(bindings[name], env)
        elif "defaultValue" in (params.get(name) or {}):
            bound = Bound("constant", params[name]["defaultValue"])
        else:
            continue
        if name in RAW_PAYLOAD_INPUTS:
            expected = RAW_PAYLOAD_INPUTS[name]
            if bound.kind != "constant":
                runtime.append(name)
            elif not isinstance(bound.value, expected):
                raise TemplateError(
                    f"the custom job's {name!r} is {bound.value!r}, not a {expected.__name__}; "
                    "pasted unquoted into the launcher payload it could rewrite the job",
                    where=where,
                )
            continue
        if bound.kind != "constant":
            raise UnpinnedIdentityError(
                f"the custom job's {name!r} comes from {bound.what or 'a run-time value'}; it is "
                "pasted into the launcher payload, where a run-time value could change the job's "
                "service account",
                where=where,
                fix=f"bind {name!r} to a constant or a pipeline parameter with a value",
            )
        if not is_safe_payload_string(bound.value):
            raise TemplateError(
                f"the custom job's {name!r} value {bound.value!r} holds a quote, a backslash or "
                "a placeholder; pasted into the launcher payload it could rewrite the job",
                where=where,
            )
    return tuple(runtime)


def _unique(name: str, used: set[str]) -> str:
    index = 2
    while f"{name}-{index}" in used:
        index += 1
    return f"{name}-{index}"


def _constant(name: str, bindings: dict[str, Any], params: dict[str, Any], env: Env) -> Any:
    if name in bindings:
        bound = bind(bindings[name], env)
        return bound.value if bound.kind == "constant" else None
    return (params.get(name) or {}).get("defaultValue")


def _gcpc_image(bindings: dict[str, Any], params: dict[str, Any], env: Env) -> str:
    pools = _constant("worker_pool_specs", bindings, params, env)
    try:
        return str(pools[0]["container_spec"]["image_uri"])
    except (TypeError, KeyError, IndexError):
        return ""


def _gcpc_job(bindings: dict[str, Any], params: dict[str, Any], env: Env) -> JobFields:
    """The job fields of an existing custom job, read the way the rewrite writes them."""
    values: dict[str, Any] = {}
    for name in _GCPC_TASK_FIELDS:
        value = _constant(name, bindings, params, env)
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, (str, bool, tuple, dict)):
            values[name] = value
    pools = _constant("worker_pool_specs", bindings, params, env)
    if isinstance(pools, list) and pools and all(isinstance(p, dict) for p in pools):
        machine = pools[0].get("machine_spec") or {}
        disk = pools[0].get("disk_spec") or {}
        values["machine_type"] = machine.get("machine_type")
        values["accelerator_type"] = machine.get("accelerator_type", "")
        values["accelerator_count"] = _int(machine.get("accelerator_count", 1))
        values["replica_count"] = _int(sum(_int(p.get("replica_count", 1)) or 0 for p in pools))
        values["boot_disk_type"] = disk.get("boot_disk_type")
        values["boot_disk_size_gb"] = _int(disk.get("boot_disk_size_gb"))
    values = {k: v for k, v in values.items() if isinstance(v, (str, int, bool, tuple, dict))}
    return JobFields(**values)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None  # a run-time placeholder
