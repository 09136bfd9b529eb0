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
    DefaultIdentityError,
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
from zt_pipelines.spec.gcpc import (
    JOB_IDENTITY_INPUTS,
    LauncherKind,
    identify_launcher,
    is_gcpc_launcher_module,
    launcher_module,
    launcher_type,
)
from zt_pipelines.spec.jobs import (
    IDENTITY_KEY,
    SAFE_SYSTEM_PLACEHOLDERS,
    check_default_root,
    check_launcher_container,
    check_pipeline_root,
    identity_option,
    identity_spots,
    inert_json,
    input_binding,
    input_placeholder,
    nested_inputs,
    payload_slot_verdicts,
    payload_value,
    runtime_nested,
    trusted_launcher_image,
)
from zt_pipelines.spec.launcher import (
    CUSTOM_JOB_INPUT_NAMES,
    PIPELINE_PLACE,
    _copy,
    custom_job_component,
    is_safe_payload_string,
    wrapper_code_inputs,
)
from zt_pipelines.spec.payload import (
    ParsedPayload,
    PayloadError,
    Raw,
    field_at,
    insert_field,
    keys_named,
    parse_payload,
)
from zt_pipelines.spec.provenance import payload_provenance
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
from zt_pipelines.spec.template import load_template_job
from zt_pipelines.spec.vertex_rules import check_parameter_types

__all__ = ["rewrite", "rewrite_pipeline"]

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_MAX_DEPTH = 100
_SA = IDENTITY_KEY  # keys a value inlined into a wrapped launcher may not add
_UNSAFE_NAME = re.compile(r'["\\{}\x00-\x1f\x7f]')
# values of an identity input that leave the job to a default: GCPC's '' (a service agent) and
# the pipeline's own SA (what Google's StarryNet passes for its Dataflow workers)
_UNSET = (None, "", "{{$.pipeline_service_account}}")
# CustomJob inputs a declaration may set on an existing GCPC custom-job task.
_GCPC_TASK_FIELDS = (
    "persistent_resource_id",
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
    pipeline_root: str | None = None,
    input_artifacts: Mapping[str, str] | None = None,
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
        pipeline_root=pipeline_root,
        input_artifacts=input_artifacts,
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
    pipeline_root: str | None = None,
    input_artifacts: Mapping[str, str] | None = None,
) -> RewriteResult:
    """Rewrite every container step of a pipeline into a CustomJob under its own identity.

    Args:
        spec: the pipeline IR (dict), a PipelineJob dict with ``pipelineSpec``, a path to a
            template, or the ``(ir, platform_docs)`` pair :func:`load_template` returns.
        parameter_values: pipeline parameter values; an identity taken from a parameter is
            resolved from them (or the parameter's default) and pinned as a constant. A
            PipelineJob template's ``runtimeConfig`` values are used under them (Vertex
            substitutes those too); pass the complete values that will be sent.
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
        pipeline_root: the verified pipeline root Vertex substitutes for
            ``{{$.pipeline_root}}`` (``None``: Vertex's default root). It lands inside launcher
            payloads, so it must be a ``gs://`` URI without quotes, backslashes or braces.
        input_artifacts: the pipeline's input artifacts the run is given (name -> Vertex ML
            Metadata artifact id, as ``PipelineJob(input_artifacts=...)`` takes them); a step
            that pastes one has its id in the ZT102 ``upstream`` digest.

    Raises:
        TemplateError: the template is not a pipeline, or a step cannot become a CustomJob.
        DeclarationError: malformed or conflicting declarations; ManifestError for the
            manifest.
        IdentityError / DefaultIdentityError: an identity that is malformed, a default one,
            the pipeline SA, or not known before submission — naming the task.
    """
    del location  # the launcher reads {{$.pipeline_google_cloud_location}} at run time
    check_pipeline_root(pipeline_root)
    ir, docs, template_values, default_roots = _split_input(spec, platform_docs)
    if pipeline_root is None:  # a root the template names may be the one Vertex pastes
        for root in default_roots:
            check_default_root(root)
    if template_values:  # a PipelineJob's runtimeConfig: Vertex substitutes these values
        parameter_values = {**template_values, **dict(parameter_values or {})}
    if parameter_values is not None:  # aiplatform drops None: the spec's default then runs
        parameter_values = {k: v for k, v in parameter_values.items() if v is not None}
        _refuse_credentials(parameter_values)
    if parameter_values:  # schema 2.0.0 and older: aiplatform takes values of three types only
        check_parameter_types(ir, list(parameter_values), where="parameter_values")
    artifacts = _input_artifacts(ir, input_artifacts)
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
    steps = payload_provenance(  # what a ZT102 waiver of each pasting step must cover
        new_spec,
        walker.steps,
        parameter_values={k: b.value for k, b in walker.env.items() if b.kind == "constant"},
        identities=(pipeline_sa,),
        input_artifacts=artifacts,
    )
    return RewriteResult(
        spec=new_spec,
        pipeline_name=walker.pipeline_name,
        steps=tuple(steps),
        platform_docs=new_docs,
    )


# ------------------------------------------------------------------------------ inputs


def _input_artifacts(ir: dict[str, Any], given: Mapping[str, str] | None) -> dict[str, str]:
    """The run's input artifact ids, each naming an input artifact the pipeline declares."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise TemplateError(
            f"input_artifacts is a {type(given).__name__}, not a mapping",
            where="input_artifacts",
            fix='pass {"artifact name": "artifact id"}',
        )
    declared = _root_artifacts(ir.get("root") or {})
    out: dict[str, str] = {}
    for name, artifact_id in given.items():
        where = f"input_artifacts[{name!r}]"
        if name not in declared:
            known = ", ".join(sorted(declared)) or "(none)"
            raise TemplateError(
                f"pipeline {ir['pipelineInfo']['name']!r} has no input artifact {name!r}",
                where=where,
                fix=f"its input artifacts: {known}",
            )
        if not isinstance(artifact_id, str) or not _ARTIFACT_ID.fullmatch(artifact_id):
            raise TemplateError(
                f"artifact id {artifact_id!r} is not a Vertex ML Metadata artifact id",
                where=where,
                fix="pass the artifact's id (the last part of its resource name)",
            )
        out[str(name)] = artifact_id
    return out


_ARTIFACT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")  # Vertex ML Metadata's artifact ids


def _refuse_credentials(values: Mapping[str, Any]) -> None:
    """A parameter value holding a key or a token: the step would act as whoever it belongs
    to, and Vertex stores the value for every reader of the job."""
    from zt_pipelines.credentials import credential_paths

    found = credential_paths(dict(values))
    if found:
        path, kind = found[0]
        raise TemplateError(
            f"parameter {path.split('.')[0].split('[')[0]!r} holds {kind} (value not shown)",
            where="parameter values",
            fix="give the step an identity of its own that holds the access instead; pass "
            "secrets through Secret Manager, never as parameter values",
        )


def _split_input(
    spec: Any, platform_docs: Any
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...], dict[str, Any], tuple[str, ...]]:
    if isinstance(spec, (str, os.PathLike)):
        ir, docs, values, roots = load_template_job(Path(spec))
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], Mapping):
        ir, docs, values, roots = load_template_job(spec[0])
        docs = tuple(spec[1])
    elif isinstance(spec, Mapping):
        ir, docs, values, roots = load_template_job(spec)
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
    # ``ir`` passed check_pipeline in load_template_job: once, it walks every task
    return ir, tuple(docs), values, roots


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
        self.explicit_parameters = frozenset(parameter_values or {})
        self._runtime_placement: tuple[str, ...] = ()
        self._siblings: dict[str, Any] = {}
        # input artifacts of the DAG being walked: True when surely provided, else unknown
        self._artifacts: dict[str, bool] = _root_artifacts(ir.get("root") or {})
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
        # per original component name: [content key (None until compared), final name,
        # final label, (component, executor, label) as emitted]
        self._versions: dict[str, list[list[Any]]] = {}
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
            if _UNSAFE_NAME.search(name):
                raise TemplateError(
                    "the task name holds a quote, backslash, brace or control character; "
                    "Vertex pastes it into launcher payloads ({{$.pipeline_task_name}}), where "
                    "it could rewrite the job",
                    where=where,
                    fix="recompile the pipeline (kfp writes task names of [a-z0-9-])",
                )
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
        out: dict[str, Any] = {}
        for k, v in self.ir.items():
            if k in ("components", "root"):
                continue
            if k == "deploymentSpec" and type(v) is dict:  # its executors are rebuilt below
                out[k] = {d: None if d == "executors" else _copy(e) for d, e in v.items()}
            else:
                out[k] = _copy(v)
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
        outer, self._siblings = self._siblings, component["dag"].get("tasks") or {}
        for name, task in sorted((component["dag"].get("tasks") or {}).items()):
            tasks[name] = self._task(task, prefix + name, env)
        self._siblings = outer
        dag["tasks"] = tasks
        new["dag"] = dag
        return new

    def _task(self, task: dict[str, Any], path: str, env: Env) -> dict[str, Any]:
        where = f"task {path!r}"
        ref = task["componentRef"]["name"]
        child = self.components[ref]
        new_task: dict[str, Any] = _copy(task)
        if "dag" in child:
            outer, self._artifacts = self._artifacts, _child_artifacts(task, self._artifacts)
            rewritten = self._dag(child, path + "/", child_env(task, env, child))
            self._artifacts = outer
            new_task["componentRef"]["name"] = self._emit(ref, rewritten, None, None)
            return new_task
        label, executor = self._executor(child, where)
        container = executor.get("container")
        if not isinstance(container, dict):  # an importer: left alone (others refused on load)
            name = self._emit(ref, _copy(child), label, _copy(executor))
            new_task["componentRef"]["name"] = name
            return new_task
        decl = self._declaration(path, label)
        kind = self._kind(container, where, decl)
        if kind is not None and not kind.wrap:
            return self._launcher_task(new_task, path, ref, child, label, executor, env, decl, kind)
        params: dict[str, Any] = (child.get("inputDefinitions") or {}).get("parameters") or {}
        bindings: dict[str, Any] = dict((task.get("inputs") or {}).get("parameters") or {})
        before = dict(bindings)
        steering = sorted((set(bindings) & CUSTOM_JOB_INPUT_NAMES) - set(params))
        if steering:
            raise TemplateError(
                f"the task passes {steering[0]!r}, which its component does not declare; as a "
                "CustomJob it would steer the job (its identity, network, project ...)",
                where=where,
                fix="remove the argument from the task",
            )
        sa, source = self._identity(path, decl, env)
        launched, launched_field, serving = self._job_identity_inputs(
            bindings,
            params,
            env,
            path,
            sa,
            kind,
            skip=None,
            serving_declared=decl.serving_service_account,
        )
        if kind is not None and kind.identity.kind == "args_flag":
            launched, launched_field = self._pin_args_flag(bindings, params, env, kind, sa, where)
        placed = self._placement(container, bindings, params, env, kind, where)
        settings, job = job_settings(
            display_name=ref.removeprefix("comp-"),
            service_account=sa,
            declared=decl.job,
            defaults=self.defaults,
            resources=container.get("resources"),
            where=where,
        )
        inner = container
        safe = self._safe_artifacts(task)  # artifact fields a GCPC launcher wrote: inert
        if kind is not None:  # a GCPC launcher: what is known now is inlined, escaped
            inner = self._inline_constants(
                container,
                bindings,
                params,
                env,
                kind,
                where,
                _given(task, params, env, self._artifacts),
            )
        component, new_executor = custom_job_component(
            child, inner, settings, executor_label="", where=where
        )
        if bindings != before:
            # `inputs: null` reads as no inputs (the shape check allows it): not a mapping to fill
            new_task["inputs"] = {**(new_task.get("inputs") or {}), "parameters": bindings}
        merged = component["inputDefinitions"]["parameters"]
        runtime_inputs = _raw_payload_inputs(
            merged["worker_pool_specs"]["defaultValue"],
            merged,
            {"inputs": {"parameters": bindings}},
            env,
            safe=safe,
        )
        name = self._emit(ref, component, label, new_executor)
        new_task["componentRef"]["name"] = name
        served = self._elsewhere(kind.name, task) if kind is not None else ((), ())
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
                job_kind=kind.name if kind is not None else "CustomJob",
                launched_service_account=launched,
                launched_identity_field=launched_field,
                serving_service_account=serving,
                wrapped_launcher=kind is not None,
                # a container's CustomJob runs in the pipeline's place; its own project and
                # location inputs say where its code is pointed
                job_project=placed["job_project"] if kind is not None else None,
                job_location=placed["job_location"] if kind is not None else None,
                code_project=placed["job_project"] if kind is None else None,
                code_location=placed["job_location"] if kind is None else None,
                # a container's own `network` input is data for its code: its CustomJob runs
                # on the network and key of its settings (as a second rewrite reads them back)
                job_network=placed["job_network"] if kind is not None else job.network or None,
                job_kms_key=(
                    placed["job_kms_key"]
                    if kind is not None
                    else job.encryption_spec_key_name or None
                ),
                job_runtime_fields=self._runtime_placement,
                # the wrapper CustomJob runs exactly the container's image (as a rewrite of
                # the rewritten spec reads it back from the pool: idempotent)
                job_images=(
                    *((str(container["image"]),) if container.get("image") else ()),
                    *served[0],
                ),
                job_images_unknown=served[1],
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

    def _derive(self, path: str, *, suffix: str = "") -> str:
        where = f"task {path!r}"
        if self.project is None:
            raise IdentityError(
                "the step declares no service account and no project was given to derive one",
                where=where,
                fix="pass project=PROJECT_ID (--project) or declare the step's identity",
            )
        key = self.keys[path] + (f"/{suffix}" if suffix else "")
        account = derive_account_id(self.pipeline_name, key, template=self.naming_template)
        email = service_account_email(account, self.project)
        tag = path + (f"#{suffix}" if suffix else "")
        other = self._derived.get(email)
        if other is not None and other != tag:  # backstop: 24-40 hash bits make it unlikely
            raise IdentityError(
                f"derived identity {email!r} is shared with task {other!r}",
                where=where,
                fix="change naming_template",
            )
        self._derived[email] = tag
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

    # -- GCPC launchers --------------------------------------------------------------------

    def _kind(
        self, container: dict[str, Any], where: str, decl: StepDeclaration
    ) -> LauncherKind | None:
        """The catalogue entry for a container; refuses unknown and unsupported launchers
        (an unknown one declared ``launcher: caller`` in a manifest is wrapped)."""
        kind = identify_launcher(container)
        if kind is not None and decl.launcher is not None:
            raise DeclarationError(
                f"launcher: {decl.launcher} is declared, but zt-pipelines knows this launcher "
                f"({kind.name}): {kind.identity.what}",
                where=where,
                fix="remove `launcher` from the manifest entry",
            )
        if kind is None:
            module = is_gcpc_launcher_module(container)
            if module is not None and decl.launcher != "caller":
                shown = launcher_type(container)
                raise TemplateError(
                    f"unknown GCPC launcher {module}"
                    + (f" --type {shown}" if shown else "")
                    + ": zt-pipelines does not know where its job's identity is set, and will "
                    "not run it as the pipeline's service account",
                    where=where,
                    fix="upgrade zt-pipelines; or, when its job runs as the caller (its API "
                    "calls carry no identity of their own), declare the task in a manifest with "
                    "`launcher: caller` — it then runs in a CustomJob as the step's identity",
                )
            return None
        if not kind.supported:
            raise TemplateError(
                f"{kind.name} ({launcher_module(container)}): {kind.refusal}",
                where=where,
                fix="replace the step (see docs/rewrite.md, Google Cloud Pipeline Components)",
            )
        if not kind.wrap and not trusted_launcher_image(container.get("image")):
            return None  # a look-alike in another image runs as a plain container, wrapped
        return kind

    def _launcher_task(
        self,
        task: dict[str, Any],
        path: str,
        ref: str,
        component: dict[str, Any],
        label: str,
        executor: dict[str, Any],
        env: Env,
        decl: StepDeclaration,
        kind: LauncherKind,
    ) -> dict[str, Any]:
        """A launcher whose job carries its own identity: pin the step's identity there."""
        where = f"task {path!r}"
        container = executor["container"]
        check_launcher_container(container, kind, where)
        params: dict[str, Any] = (component.get("inputDefinitions") or {}).get("parameters") or {}
        bindings: dict[str, Any] = dict((task.get("inputs") or {}).get("parameters") or {})
        before = dict(bindings)
        args: list[str] = list(container["args"])
        at = args.index("--payload") + 1
        parsed = self._parse(args[at], task, params, where, env)
        identity_path = kind.identity.payload_path
        stray = identity_spots(
            parsed,
            bindings,
            params,
            env,
            allowed=identity_path,
            options=kind.name in _OPTION_PAYLOADS,
        )
        if stray:
            raise TemplateError(
                f"the {kind.name} payload names an identity at {stray[0]}, where zt-pipelines "
                f"does not pin one (it pins the job's identity at {'.'.join(identity_path)}, "
                "and verifies no other)",
                where=where,
                fix="rebuild the step with the GCPC component, unmodified, without it: the job "
                "runs as the step's identity (declare that one), and nothing else in the job "
                "may choose or impersonate another",
            )
        node = field_at(parsed.tree, identity_path)
        source: IdentitySource = "gcpc"
        declared = decl.service_account
        identity_input: str | None = None
        if node is None:  # absent: GCPC's job would run as a service agent
            sa, source = self._identity(path, decl, env)
            try:
                args[at] = insert_field(args[at], parsed, identity_path[:-1], identity_path[-1], sa)
            except PayloadError as exc:
                raise TemplateError(
                    f"cannot pin the identity into the {kind.name} payload: {exc}", where=where
                ) from None
        elif isinstance(node, str) and input_placeholder(node) is not None:
            identity_input = input_placeholder(node)
            assert identity_input is not None
            sa, source = self._pinned_input(
                identity_input, bindings, params, env, path, decl, what=kind.identity.what
            )
        elif isinstance(node, str) and "{{" not in node and node:
            sa = self._check(node, where)
        else:
            raise TemplateError(
                f"the {kind.name} payload sets its identity ({'.'.join(identity_path)}) to "
                f"{node!r}, which zt-pipelines cannot pin",
                where=where,
                fix="rebuild the step with the GCPC component, unmodified",
            )
        if declared is not None and declared != sa:
            raise DeclarationError(
                f"declared {declared!r} but the {kind.name} runs as {sa!r}",
                where=where,
                fix="declare the identity in one place",
            )
        if kind.name != "CustomJob":
            self._apply_launcher_fields(bindings, params, parsed, decl, kind, where)
            unreached = self._apply_launcher_defaults(bindings, params, parsed, decl, kind, env)
        else:  # before placement, so the job's network and CMEK key are the ones it runs with
            self._apply_gcpc_fields(bindings, params, parsed, decl, where)
            unreached = self._apply_custom_job_defaults(
                bindings, params, parsed, decl, env, args[at]
            )
        pools = payload_value(parsed, ("job_spec", "worker_pool_specs"), bindings, params, env)
        inner = _inner_kind(pools) if kind.name == "CustomJob" else None
        launched, launched_field, serving = self._job_identity_inputs(
            bindings,
            params,
            env,
            path,
            sa,
            inner,
            skip=identity_input,
            serving_declared=decl.serving_service_account,
        )
        if launched is None and kind.name != "CustomJob":  # the job runs as the step itself
            launched, launched_field = sa, f"payload {'.'.join(identity_path)}"
        # a CustomJob zt-pipelines wrapped around a step (a second rewrite) is placed as the
        # first rewrite placed it: by the wrapped launcher's own flags (in its worker pool), or,
        # for a container, its project/location inputs are where its code is pointed
        ours = wrapper_code_inputs(container) if kind.name == "CustomJob" else frozenset()
        code = bool(ours) and inner is None
        if ours and inner is not None:
            placed = self._placement(_pool_container(pools), bindings, params, env, inner, where)
        else:
            placed = self._placement(
                container, bindings, params, env, None if code else inner or kind, where
            )
        job = JobFields()
        if kind.name == "CustomJob":
            job = _payload_job(parsed, bindings, params, env)
        safe = self._safe_artifacts(task)
        # a constant worker_pool_specs is judged string by string below, as a wrapped step's is
        # (the same names on a second rewrite, which reads the wrapper as a CustomJob)
        pooled = ("job_spec", "worker_pool_specs") if kind.name == "CustomJob" and pools else None
        runtime = self._payload_runtime(parsed, bindings, params, env, kind, where, safe, pooled)
        if kind.name == "CustomJob" and pools is not None:
            runtime = tuple(
                sorted(
                    {
                        *runtime,
                        *_raw_payload_inputs(
                            pools, params, {"inputs": {"parameters": bindings}}, env, safe=safe
                        ),
                    }
                )
            )
        if bindings != before:
            task["inputs"] = {**(task.get("inputs") or {}), "parameters": bindings}
        new_executor = _copy(executor)
        new_executor["container"]["args"] = args
        name = self._emit(ref, _copy(component), label, new_executor)
        task["componentRef"]["name"] = name
        image = _pool_image(pools) if kind.name == "CustomJob" else str(container.get("image", ""))
        own_job = kind.name == "CustomJob" and inner is None  # not a launcher zt wrapped
        # every image the launched job runs (all pools, trial pools), not only pool 0's
        images, unknown_images = _job_images(parsed, kind.name, bindings, params, env)
        if inner is not None:  # a wrapped launcher's job: its serving image, if it has one
            known, elsewhere = self._elsewhere(inner.name, task)
            images, unknown_images = (*images, *known), (*unknown_images, *elsewhere)
        elif kind.name in _MODEL_FIELD:  # a batch prediction: its model's constant container
            served = self._serving_image(kind.name, task, depth=0)
            if served is not None:
                images = tuple(dict.fromkeys((*images, served)))
                unknown_images = tuple(
                    u for u in unknown_images if u != _IMAGES_ELSEWHERE[kind.name]
                )
        self.steps.append(
            StepIdentity(
                task=path,
                component=name,
                executor=self.new_components[name]["executorLabel"],
                service_account=sa,
                source=source,
                needs=decl.needs,
                image=image,
                job=replace(
                    job,
                    reach=decl.job.reach if decl.job.reach is not None else self.defaults.reach,
                ),
                already_custom_job=kind.name == "CustomJob",
                unescaped_payload_inputs=runtime,
                job_kind=inner.name if inner is not None else kind.name,
                launched_service_account=launched,
                launched_identity_field=launched_field,
                serving_service_account=serving,
                wrapped_launcher=inner is not None,
                job_project=None if code else placed["job_project"],
                job_location=None if code else placed["job_location"],
                code_project=placed["job_project"] if code else None,
                code_location=placed["job_location"] if code else None,
                # a custom job's are what its payload says (in zt's wrapper, an input of the
                # container's called `network` is its code's, not the job's)
                job_network=(job.network or None) if own_job else placed["job_network"],
                job_kms_key=(job.encryption_spec_key_name or None)
                if own_job
                else placed["job_kms_key"],
                job_runtime_fields=self._runtime_placement,
                job_images=images,
                job_images_unknown=unknown_images,
                job_opens_to_callers=_opens_to_callers(parsed.tree, bindings, params, env),
                job_defaults_unreached=unreached,
            )
        )
        return task

    def _elsewhere(
        self, kind: str, task: dict[str, Any]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(images, where one is known only at run time) of a wrapped launcher whose job runs
        an image its payload does not name. A model's serving container is known when it is a
        constant: the importer metadata an upload step takes (GCPC's documented pattern,
        ``containerSpec.imageUri``), or that of the upload step a deploy step's model is."""
        if kind not in _IMAGES_ELSEWHERE:
            return (), ()
        image = self._serving_image(kind, task, depth=0)
        if image is not None:
            return (image,), ()
        return (), (_IMAGES_ELSEWHERE[kind],)

    def _serving_image(self, kind: str, task: dict[str, Any], depth: int) -> str | None:
        """The constant serving image of an upload (or deploy) task, else ``None``."""
        if kind == "UploadModel":
            return self._importer_image(
                self._producer(task, "unmanaged_container_model"), whole=False
            )
        if kind in _MODEL_FIELD and depth == 0:
            artifacts = (task.get("inputs") or {}).get("artifacts") or {}
            if kind == "BatchPredictionJob" and "unmanaged_container_model" in artifacts:
                if "model" in artifacts:
                    return None  # both: which one the job serves is not ours to guess
                return self._importer_image(
                    self._producer(task, "unmanaged_container_model"), whole=True
                )
            producer = self._producer(task, "model")
            if producer is None or producer[1] != "model":
                return None
            if self._launcher_kind_of(producer[0]) != "UploadModel":
                return None
            if not self._takes_model_input(task, _MODEL_FIELD[kind]):
                return None  # the payload names another model than the upload's
            return self._serving_image("UploadModel", producer[0], depth + 1)
        return None

    def _importer_image(
        self, producer: tuple[dict[str, Any], str] | None, *, whole: bool
    ) -> str | None:
        """The constant ``containerSpec.imageUri`` of an importer's metadata. GCPC's launchers
        snake-case keys and keep the last of those that collide (``imageUri``/``image_uri``;
        for a batch prediction, ``whole`` metadata: ``containerSpec``/``container_spec``
        too): exactly one of each, or unknown."""
        executor = self._executor_of(producer[0]) if producer else None
        importer = executor.get("importer") if executor else None
        metadata = importer.get("metadata") if isinstance(importer, dict) else None
        if not isinstance(metadata, dict):
            return None
        if whole:
            specs = [v for k, v in metadata.items() if _snake_case(str(k)) == "container_spec"]
            spec = specs[0] if len(specs) == 1 else None
        else:  # the upload reads this one key, as it is spelt
            spec = metadata.get("containerSpec")
        if not isinstance(spec, dict):
            return None
        named = [v for k, v in spec.items() if _snake_case(str(k)) == "image_uri"]
        image = named[0] if len(named) == 1 else None
        ok = isinstance(image, str) and image.strip() == image and "{{" not in image
        return image if ok and image else None

    def _takes_model_input(self, task: dict[str, Any], path: tuple[str, ...]) -> bool:
        """Whether the launcher ``task`` runs (itself, or the one zt's wrapper holds) puts the
        resource name of its ``model`` input artifact at ``path`` of its payload, as GCPC
        writes it — not a literal model or another input's."""
        executor = self._executor_of(task)
        container = executor.get("container") if executor else None
        if not isinstance(container, dict):
            return False
        kind = identify_launcher(container)
        if kind is not None and kind.name == "CustomJob":  # zt's wrapper: the launcher inside
            ref = (task.get("componentRef") or {}).get("name")
            component = self.components.get(ref) if isinstance(ref, str) else None
            params = ((component or {}).get("inputDefinitions") or {}).get("parameters") or {}
            try:
                container = _pool_container((params.get("worker_pool_specs") or {})["defaultValue"])
            except (KeyError, IndexError, TypeError):
                return False
        args = container.get("args")
        if not isinstance(args, list):
            return False
        at = [i + 1 for i, a in enumerate(args[:-1]) if a == "--payload"]
        payload = args[at[0]] if len(at) == 1 else None
        if not isinstance(payload, str):
            return False
        inputs = task.get("inputs") or {}
        given = {*(inputs.get("artifacts") or {}), *(inputs.get("parameters") or {})}
        try:
            parsed = parse_payload(payload, lambda name: name in given)
        except PayloadError:
            return False
        return bool(field_at(parsed.tree, path) == _MODEL_NAME)

    def _producer(self, task: dict[str, Any], name: str) -> tuple[dict[str, Any], str] | None:
        """The sibling task (and its output key) an artifact input of ``task`` comes from."""
        artifacts = (task.get("inputs") or {}).get("artifacts") or {}
        spec = artifacts.get(name) if isinstance(artifacts, dict) else None
        if not isinstance(spec, dict) or len(spec) != 1:
            return None
        output = spec.get("taskOutputArtifact")
        if not isinstance(output, dict):
            return None
        producer = self._siblings.get(str(output.get("producerTask")))
        key = output.get("outputArtifactKey")
        return (producer, key) if isinstance(producer, dict) and isinstance(key, str) else None

    def _executor_of(self, task: dict[str, Any]) -> dict[str, Any] | None:
        ref = (task.get("componentRef") or {}).get("name")
        component = self.components.get(ref) if isinstance(ref, str) else None
        label = component.get("executorLabel") if isinstance(component, dict) else None
        executor = self.executors.get(label) if isinstance(label, str) else None
        return executor if isinstance(executor, dict) else None

    def _launcher_kind_of(self, task: dict[str, Any]) -> str | None:
        """The GCPC launcher kind a task runs — through zt's wrapper on a second rewrite."""
        executor = self._executor_of(task)
        container = executor.get("container") if executor else None
        if not isinstance(container, dict):
            return None
        kind = identify_launcher(container)
        if kind is not None and kind.name == "CustomJob":
            ref = (task.get("componentRef") or {}).get("name")
            component = self.components.get(ref) if isinstance(ref, str) else None
            params = ((component or {}).get("inputDefinitions") or {}).get("parameters") or {}
            pools = (params.get("worker_pool_specs") or {}).get("defaultValue")
            inner = _inner_kind(pools)
            return inner.name if inner is not None else None
        return kind.name if kind is not None else None

    def _parse(
        self, payload: str, task: dict[str, Any], params: dict[str, Any], where: str, env: Env
    ) -> ParsedPayload:
        given, unknown = _given(task, params, env, self._artifacts)

        def present(name: str) -> bool:
            if name in unknown:  # Vertex may take the other branch: it was never verified
                raise PayloadError(_UNKNOWN_PRESENCE.format(name=name))
            return name in given

        try:
            return parse_payload(payload, present)
        except PayloadError as exc:
            raise TemplateError(
                f"the launcher payload cannot be read exactly: {exc}",
                where=where,
                fix="rebuild the step with the GCPC component, unmodified",
            ) from None

    def _pinned_input(
        self,
        name: str,
        bindings: dict[str, Any],
        params: dict[str, Any],
        env: Env,
        path: str,
        decl: StepDeclaration,
        *,
        what: str,
    ) -> tuple[str, IdentitySource]:
        """The step identity held by input ``name`` (pinned as a constant); ``""`` gets the
        declared or derived identity."""
        where = f"task {path!r}"
        bound = input_binding(name, bindings, params, env)
        value: Any = None
        source: IdentitySource = "gcpc"
        if bound is not None:
            try:
                value, parameter = resolve_identity_binding(bound, where=where)
            except UnpinnedIdentityError as exc:
                raise UnpinnedIdentityError(
                    f"{what} (input {name!r}): {exc.what}", where=where, fix=exc.fix
                ) from None
            if parameter is not None and value not in _UNSET:
                source = "parameter"
            if value in ("", None) and self._explicit(name, bindings, parameter):
                raise DefaultIdentityError(
                    f"{what} (input {name!r}) is set explicitly to an empty value: the job "
                    "would run as a Google-managed default identity (a service agent)",
                    where=where,
                    fix=f"leave {name!r} unset (zt-pipelines then pins the step's own "
                    "identity) or set a dedicated service account",
                )
        if value in _UNSET:  # GCPC's '' default: a service agent would run the job
            sa, source = self._identity(path, decl, env)
        else:
            sa = self._check(value, where)
        if bindings.get(name) != {"runtimeValue": {"constant": sa}} and (
            name in bindings or value in _UNSET or source == "parameter"
        ):
            bindings[name] = {"runtimeValue": {"constant": sa}}
        return sa, source

    def _safe_artifacts(self, task: dict[str, Any]) -> frozenset[str]:
        """Artifact placeholders whose values a GCPC launcher wrote from a Google API response
        (an upstream ModelUploadOp's model resource name, an endpoint's): inert in a payload."""
        safe: set[str] = set()
        artifacts = (task.get("inputs") or {}).get("artifacts") or {}
        for name, binding in artifacts.items() if isinstance(artifacts, dict) else ():
            out = binding.get("taskOutputArtifact") if isinstance(binding, dict) else None
            producer = (
                self._siblings.get(str(out.get("producerTask"))) if isinstance(out, dict) else None
            )
            if not isinstance(producer, dict):
                continue
            component = self.components.get(str((producer.get("componentRef") or {}).get("name")))
            label = component.get("executorLabel") if isinstance(component, dict) else None
            executor = self.executors.get(label) if isinstance(label, str) else None
            container = executor.get("container") if isinstance(executor, dict) else None
            if not isinstance(container, dict) or not trusted_launcher_image(
                container.get("image")
            ):
                continue
            kind = identify_launcher(container)
            if kind is not None and kind.name == "CustomJob":
                # a CustomJob's outputs are written by the code it runs: only a GCPC launcher
                # we wrapped (from a Google image) writes them from an API response
                inputs = component.get("inputDefinitions") if isinstance(component, dict) else {}
                params = (inputs or {}).get("parameters") or {}
                pools = (params.get("worker_pool_specs") or {}).get("defaultValue")
                kind = _inner_kind(pools) if trusted_launcher_image(_pool_image(pools)) else None
            if kind is not None:
                safe.add(f"{{{{$.inputs.artifacts['{name}'].metadata['resourceName']}}}}")
                safe.add(f"{{{{$.inputs.artifacts['{name}'].uri}}}}")
        return frozenset(safe)

    def _inline_constants(
        self,
        container: dict[str, Any],
        bindings: dict[str, Any],
        params: dict[str, Any],
        env: Env,
        kind: LauncherKind,
        where: str,
        given: tuple[frozenset[str], frozenset[str]],
    ) -> dict[str, Any]:
        """A wrapped GCPC launcher's container with every input known now written into its
        arguments (escaped as the arguments' own JSON needs) and its top-level IfPresent
        arguments resolved as the task takes them (``given``: the inputs it provides): nothing
        known before submission is pasted into the CustomJob payload at run time. Its payload
        must then still parse.
        """
        values: dict[str, str] = {}
        for name, definition in params.items():
            bound = input_binding(name, bindings, params, env)
            if bound is not None and bound.kind == "constant":
                kind_of = definition.get("parameterType") if isinstance(definition, dict) else None
                values[name] = _render(bound.value, kind_of)
        new: dict[str, Any] = _copy(container)
        for key in ("command", "args"):
            parts = new.get(key)
            if not isinstance(parts, list):
                continue
            parts = _resolve_if_present(parts, given[0])
            inlined = [_inline_text(p, values) if isinstance(p, str) else p for p in parts]
            for before in parts:
                _strict_payload(before, kind, where)
            for before, after in zip(parts, inlined, strict=True):
                if before == after or not _is_json_template(before):
                    continue
                # an IfPresent inside the argument is left to Vertex: check the branches the
                # task takes, and both where presence is known only at run time
                try:  # JSON before (placeholders stood in for), so JSON after
                    parsed = parse_payload(after, (given[0] | given[1]).__contains__)
                    other = parse_payload(after, given[0].__contains__)
                except PayloadError as exc:
                    raise TemplateError(
                        f"with its inputs' values an argument of the {kind.name} launcher is "
                        f"no longer the JSON it was ({exc}): a value would change its "
                        "structure",
                        where=where,
                        fix="pass values without quotes or backslashes where GCPC pastes "
                        "them into a string",
                    ) from None
                allowed = {kind.serving_identity.payload_path} if kind.serving_identity else set()
                before_keys = set(keys_named(parse_payload(before, lambda n: True).tree, _SA))
                found = set(keys_named(parsed.tree, _SA)) | set(keys_named(other.tree, _SA))
                stray = found - before_keys - allowed
                if stray:
                    raise TemplateError(
                        f"with its inputs' values the {kind.name} launcher's argument sets an "
                        f"identity at {'.'.join(map(str, sorted(stray, key=repr)[0]))}: a value "
                        "would change its structure",
                        where=where,
                        fix="pass values without quotes where GCPC pastes them into a string",
                    )
            new[key] = inlined
        return new

    def _pin_args_flag(
        self,
        bindings: dict[str, Any],
        params: dict[str, Any],
        env: Env,
        kind: LauncherKind,
        step_sa: str,
        where: str,
    ) -> tuple[str, str]:
        """Pin the launched job's identity as a flag in a list input (Dataflow python's
        ``--service_account_email`` in ``args``), as a user would pass it to GCPC."""
        name, flag = kind.identity.input, kind.identity.flag
        field = f"input {name} {flag}"
        bound = input_binding(name, bindings, params, env)
        values: Any = [] if bound is None else bound.value
        if bound is not None and bound.kind != "constant":
            raise UnpinnedIdentityError(
                f"input {name!r} holds the {kind.name}'s arguments, including its worker "
                f"identity ({flag}), and comes from {bound.what or 'a run-time value'}",
                where=where,
                fix=f"bind {name!r} to a constant list or a pipeline parameter with a value",
            )
        if isinstance(values, str):
            try:
                values = json.loads(values)
            except ValueError:
                values = None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise TemplateError(
                f"input {name!r} of the {kind.name} is not a list of strings", where=where
            )
        # items holding a pipeline parameter (``args=["--service_account_email", trainer]``)
        # are judged with its value, as the wrapper's arguments will carry it
        known: dict[str, str] = {}
        for nested in nested_inputs(values):
            held = input_binding(nested, bindings, params, env)
            if held is not None and held.kind == "constant":
                known[nested] = _render(held.value, None)
        values = [_replace_inputs(v, known) for v in values]
        found = [
            (values[i + 1] if v == flag and i + 1 < len(values) else v.partition("=")[2])
            for i, v in enumerate(values)
            if v == flag or v.startswith(flag + "=")
        ]
        if len(found) > 1:
            raise TemplateError(f"{flag} is given twice in input {name!r}", where=where)
        other = [
            v for v in values if identity_option(v) and v != flag and not v.startswith(flag + "=")
        ]
        if other:
            raise TemplateError(
                f"input {name!r} of the {kind.name} passes {other[0].split('=')[0]!r}, which "
                f"could run or submit the job as another identity than {flag}",
                where=where,
                fix=f"remove it; set the worker identity with {flag} (or let zt-pipelines pin "
                "the step's own)",
            )
        if found:
            if "{{" in found[0]:
                raise UnpinnedIdentityError(
                    f"the {kind.name}'s worker identity ({flag} in input {name!r}) comes from "
                    f"{runtime_nested(found[0], bindings, params, env) or 'a run-time value'}",
                    where=where,
                    fix=f"pass {flag} a service account or a pipeline parameter with a value",
                )
            return self._check(found[0], where), field
        bindings[name] = {"runtimeValue": {"constant": [*values, flag, step_sa]}}
        return step_sa, field

    def _explicit(self, name: str, bindings: dict[str, Any], parameter: str | None) -> bool:
        """True when a user chose the value: a task constant, or a parameter value passed in
        (a parameter left at its template default is not a choice)."""
        return name in bindings and (parameter is None or parameter in self.explicit_parameters)

    def _job_identity_inputs(
        self,
        bindings: dict[str, Any],
        params: dict[str, Any],
        env: Env,
        path: str,
        step_sa: str,
        kind: LauncherKind | None,
        *,
        skip: str | None,
        serving_declared: str | None = None,
    ) -> tuple[str | None, str, str | None]:
        """Pin inputs that name a launched job's identity (``dataflow_service_account``, ...)
        and a deploy step's serving identity. Returns ``(launched, field, serving)``."""
        where = f"task {path!r}"
        serving_input = (
            kind.serving_identity.input if kind is not None and kind.serving_identity else None
        )
        if serving_declared is not None and serving_input is None:
            raise DeclarationError(
                "serving_service_account is declared, but the step deploys no model",
                where=where,
                fix="declare it on the deploy step (ModelDeployOp)",
            )
        serving: str | None = None
        launched: str | None = None
        field = ""
        for name in sorted(set(params) & set(JOB_IDENTITY_INPUTS)):
            if name == skip:
                continue
            bound = input_binding(name, bindings, params, env)
            value: Any = ""
            if bound is not None:
                try:
                    value, parameter = resolve_identity_binding(bound, where=where)
                except UnpinnedIdentityError as exc:
                    raise UnpinnedIdentityError(
                        f"input {name!r} sets the identity of the job the step launches: "
                        f"{exc.what}",
                        where=where,
                        fix=exc.fix,
                    ) from None
                if value in ("", None) and self._explicit(name, bindings, parameter):
                    whose = (
                        "the deploy step's serving identity"
                        if name == serving_input
                        else "the identity of the job the step launches"
                    )
                    raise DefaultIdentityError(
                        f"{whose} (input {name!r}) is set explicitly to an empty value: it "
                        "would run as a Google-managed default identity (a service agent)",
                        where=where,
                        fix=f"leave {name!r} unset (zt-pipelines then pins "
                        + (
                            "a derived serving identity"
                            if name == serving_input
                            else "the step's own identity"
                        )
                        + ") or set a dedicated service account",
                    )
            if name == serving_input:
                declared = serving_declared
                if declared is not None and value not in _UNSET and value != declared:
                    raise DeclarationError(
                        f"declared serving identity {declared!r} but the deploy step passes "
                        f"{value!r}",
                        where=where,
                        fix="declare the serving identity in one place",
                    )
                if declared is not None:
                    value = declared
                serving = (
                    self._check(value, where)
                    if value not in _UNSET
                    else self._derive(path, suffix="serving")
                )
                if serving == step_sa:
                    raise IdentityError(
                        f"the serving identity {serving!r} is the deploying step's own identity",
                        where=where,
                        fix="give the deployed model its own service account",
                    )
                bindings[name] = {"runtimeValue": {"constant": serving}}
                continue
            sa = self._check(value, where) if value not in _UNSET else step_sa
            bindings[name] = {"runtimeValue": {"constant": sa}}
            if launched is None or sa != step_sa:
                launched, field = sa, f"input {name}"
        return launched, field, serving

    def _placement(
        self,
        container: dict[str, Any],
        bindings: dict[str, Any],
        params: dict[str, Any],
        env: Env,
        kind: LauncherKind | None,
        where: str,
    ) -> dict[str, str | None]:
        """Resolve (and pin) what steers where the job runs: project, location, network, CMEK.

        A constant or a pipeline parameter's value is pinned as a constant (the component
        receives exactly the value it received before); a value known only at run time is
        refused, because it would move the job somewhere nobody verified.
        """
        found: dict[str, str | None] = {
            "job_project": None,
            "job_location": None,
            "job_network": None,
            "job_kms_key": None,
        }
        names: dict[str, tuple[str, ...]] = {
            "job_project": ("project",),
            "job_location": ("location",),
            "job_network": kind.network_inputs[:1] if kind else ("network",),
            "job_kms_key": kind.cmek_inputs if kind else ("encryption_spec_key_name",),
        }
        if kind is not None:  # the launcher's own --project/--location arguments say which
            args = container.get("args") or []
            for key, flag in (("job_project", "--project"), ("job_location", "--location")):
                at = _flag_value_at(args, flag, where)
                if at is not None:
                    value = args[at]
                    name = input_placeholder(value)
                    if name is not None:
                        names[key] = (name,)
                    elif value == PIPELINE_PLACE[flag[2:]]:
                        # the running pipeline's: an input of that name is data for the job's
                        # code (Google's LLM components pass their image registry's project)
                        names[key] = ()
                    elif isinstance(value, str) and "{{" not in value:
                        # empty: the launcher reads its place from the resource (a deploy:
                        # the endpoint's) — the inputs below say which
                        if value:
                            found[key] = value
                    else:
                        # another placeholder, or text around one: the place is known only
                        # when Vertex fills it
                        raise TemplateError(
                            f"the launcher's {flag} is {value!r}, which zt-pipelines cannot pin",
                            where=where,
                            fix="rebuild the step with the GCPC component, unmodified",
                        )
        runtime: list[str] = []
        for key, candidates in names.items():
            for name in candidates:
                if name not in params and name not in bindings:
                    continue
                bound = input_binding(name, bindings, params, env)
                if bound is None:
                    continue
                what = key.removeprefix("job_").replace("kms_key", "CMEK key")
                if bound.kind == "constant":  # a constant holding an upstream value's placeholder
                    hidden = runtime_nested(bound.value, bindings, params, env)
                    if hidden is not None:
                        bound = Bound("runtime", what=f"{hidden}, nested in a constant")
                if bound.kind != "constant":
                    if (
                        kind is not None
                        and key in ("job_project", "job_network")
                        and bound.kind == "runtime"
                    ):
                        raise UnpinnedIdentityError(
                            f"input {name!r} sets the {what} of the job the step's launcher "
                            f"creates, and comes from {bound.what or 'a run-time value'}; a "
                            "value known only at run time would move the job where nobody "
                            "verified it",
                            where=where,
                            fix=f"bind {name!r} to a constant or a pipeline parameter with a value",
                        )
                    runtime.append(what)  # reported: IAM still bounds the step's calls
                    continue
                value = bound.value
                if bound.parameter is not None and name in bindings:
                    bindings[name] = {"runtimeValue": {"constant": value}}
                own = isinstance(value, str) and value and not value.startswith("{{$.pipeline_")
                if own and found[key] is None:
                    found[key] = value
        self._runtime_placement = tuple(sorted(set(runtime)))
        return found

    def _payload_runtime(
        self,
        parsed: ParsedPayload,
        bindings: dict[str, Any],
        params: dict[str, Any],
        env: Env,
        kind: LauncherKind,
        where: str,
        safe: frozenset[str] = frozenset(),
        pooled: tuple[str, ...] | None = None,
    ) -> tuple[str, ...]:
        """Refuse values that would change the payload's structure; return the run-time ones
        (a raw slot at ``pooled`` is left to :func:`_raw_payload_inputs`)."""
        identity = kind.identity.payload_path
        runtime: set[str] = set()
        for verdict in payload_slot_verdicts(parsed, bindings, params, env, safe=safe):
            if verdict.path == pooled and not _quoted_slot(parsed, verdict.path):
                continue
            spot = ".".join(map(str, verdict.path)) or "(root)"
            if verdict.verdict == "unsafe":
                raise TemplateError(
                    f"the {kind.name} payload's {spot} gets {verdict.name!r} = {verdict.detail}; "
                    "pasted into the payload it could change the job's structure, down to its "
                    "identity",
                    where=where,
                    fix="pass a value without quotes, backslashes or placeholders (a list or "
                    "mapping only where GCPC pastes one unquoted)",
                )
            if verdict.verdict == "runtime":
                if verdict.path[: len(identity)] == identity:
                    raise UnpinnedIdentityError(
                        f"the {kind.name} identity comes from {verdict.name!r}, known only at "
                        "run time",
                        where=where,
                        fix="an identity must be known before submission",
                    )
                runtime.add(verdict.name)
        return tuple(sorted(runtime))

    def _apply_gcpc_fields(
        self,
        bindings: dict[str, Any],
        params: dict[str, Any],
        parsed: ParsedPayload,
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
            if value is not None:
                _bind_declared(bindings, params, parsed, name, name, value, "custom job", where)

    def _apply_launcher_fields(
        self,
        bindings: dict[str, Any],
        params: dict[str, Any],
        parsed: ParsedPayload,
        decl: StepDeclaration,
        kind: LauncherKind,
        where: str,
    ) -> None:
        """Every job field declared for a GCPC launcher left in place that is not a CustomJob
        (Dataproc, batch prediction, Dataflow flex, tuning) goes into the input of the kind
        that carries it (:data:`_LAUNCHER_JOB_INPUTS`), or is refused: never dropped."""
        inputs = _LAUNCHER_JOB_INPUTS.get(kind.name, {})
        for name in JobFields.__dataclass_fields__:
            value = getattr(decl.job, name)
            if value is None or name == "reach":  # reach is verified, never sent
                continue
            input_name = inputs.get(name)
            if input_name is None:
                takes = ", ".join(sorted(inputs)) or "none"
                raise DeclarationError(
                    f"{name} is declared, but a {kind.name} job has no such field "
                    f"(the fields a declaration can set on it: {takes})",
                    where=where,
                    fix="remove it from the declaration, or set what the job has on the GCPC "
                    "component itself",
                )
            _bind_declared(bindings, params, parsed, name, input_name, value, kind.name, where)

    def _apply_launcher_defaults(
        self,
        bindings: dict[str, Any],
        params: dict[str, Any],
        parsed: ParsedPayload,
        decl: StepDeclaration,
        kind: LauncherKind,
        env: Env,
    ) -> tuple[str, ...]:
        """The pipeline-wide step defaults (``--step-network``, ``step_defaults=``, the ZT_
        variables) for a GCPC launcher left in place that is not a CustomJob: each one the
        step does not set itself goes into the kind's input that carries it
        (:data:`_LAUNCHER_JOB_INPUTS`); the names of those it cannot reach are returned, for
        the report to say so (a default is no declaration of this step: never an error)."""
        inputs = _LAUNCHER_JOB_INPUTS.get(kind.name, {})
        used = {input_placeholder(s.placeholder) for s in parsed.slots}
        own_network = any(_input_set(n, bindings, params, env) for n in kind.network_inputs)
        unreached: list[str] = []
        for name in JobFields.__dataclass_fields__:
            value = getattr(self.defaults, name)
            if value is None or name == "reach" or getattr(decl.job, name) is not None:
                continue  # unset, verified only, or the step's own declaration wins
            input_name = inputs.get(name)
            if input_name is None or input_name not in params or input_name not in used:
                unreached.append(name)
                continue
            if _input_set(input_name, bindings, params, env):
                continue  # the task sets it: the step's own value wins
            if name == "network" and own_network:
                continue  # the step has its own network (a subnetwork, tags ...)
            value = list(value) if isinstance(value, tuple) else value
            bindings[input_name] = {"runtimeValue": {"constant": value}}
        return tuple(unreached)

    def _apply_custom_job_defaults(
        self,
        bindings: dict[str, Any],
        params: dict[str, Any],
        parsed: ParsedPayload,
        decl: StepDeclaration,
        env: Env,
        payload: str,
    ) -> tuple[str, ...]:
        """The pipeline-wide step defaults for a CustomJob launcher left in place (GCPC's
        ``CustomTrainingJobOp``, ``create_custom_training_job_from_component``, Google's own
        jobs): each one the step does not set itself is bound to the input whose placeholder
        is the whole value of that job field in the payload (:data:`_JOB_PATHS`); the names
        of those the payload has no such input for are returned, for the report to say so
        (Google's AutoML payloads have no network). Machine shape is never a default here: a
        CustomJob's worker pools always set their own."""
        own = {
            name: _set_in_payload(parsed, _JOB_PATHS[name], bindings, params, env)
            for name in _JOB_PATHS
        }
        # a step with its own network or PSC interface keeps its whole network placement
        own_network = own["network"] or own["psc_interface_config"]
        unreached: list[str] = []
        for name in JobFields.__dataclass_fields__:
            value = getattr(self.defaults, name)
            path = _JOB_PATHS.get(name)
            if value is None or path is None or getattr(decl.job, name) is not None:
                continue  # unset, machine shape or reach, or the step's own declaration wins
            if own[name] or (own_network and name in _NETWORK_FIELDS):
                continue  # the step sets it: the step's own value wins
            input_name = _sole_input_at(parsed, path)
            if input_name is None or input_name not in params:
                unreached.append(name)  # a literal, absent, or not the component's input
                continue
            if input_binding(input_name, bindings, params, env) is None and "IfPresent" in payload:
                unreached.append(name)  # providing it could turn an IfPresent branch
                continue
            value = list(value) if isinstance(value, tuple) else value
            bindings[input_name] = {"runtimeValue": {"constant": value}}
        return tuple(unreached)

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
        emitted = (component, executor, label)  # nothing changes them after this call
        versions = self._versions.setdefault(name, [])
        key: str | None = None
        if versions:  # keyed only when compared: most components are used by one task
            key = _content_key(component, executor, label)
            for version in versions:
                if version[0] is None:
                    version[0] = _content_key(*version[3])
                if version[0] == key:
                    return str(version[1])
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
        versions.append([key, new_name, new_label, emitted])
        self.new_components[new_name] = component
        return new_name


_DATAPROC_INPUTS = {
    "network": "network_uri",
    "encryption_spec_key_name": "kms_key",
    "labels": "labels",
}
_LAUNCHER_JOB_INPUTS: dict[str, dict[str, str]] = {
    "HyperparameterTuningJob": {
        "network": "network",
        "encryption_spec_key_name": "encryption_spec_key_name",
    },
    "BatchPredictionJob": {
        "encryption_spec_key_name": "encryption_spec_key_name",
        "labels": "labels",
        "machine_type": "machine_type",
        "accelerator_type": "accelerator_type",
        "accelerator_count": "accelerator_count",
    },
    # Dataflow's `network` is a bare network name, never Vertex's projects/N/global/networks/X
    # form a declaration holds: not translated, refused (set network/subnetwork on the op)
    "DataflowFlexTemplateJob": {
        "encryption_spec_key_name": "kms_key_name",
        "labels": "additional_user_labels",
        "machine_type": "machine_type",
    },
    **{
        name: _DATAPROC_INPUTS
        for name in (
            "DataprocPySparkBatch",
            "DataprocSparkBatch",
            "DataprocSparkRBatch",
            "DataprocSparkSqlBatch",
        )
    },
}
"""For GCPC launchers left in place that are not CustomJobs: which component input carries a
declared job field (:class:`JobFields` name → input). A declared field not listed is refused."""


def _bind_declared(
    bindings: dict[str, Any],
    params: dict[str, Any],
    parsed: ParsedPayload,
    name: str,
    input_name: str,
    value: Any,
    what: str,
    where: str,
) -> None:
    """Bind declared job field ``name`` to component input ``input_name`` as a constant.

    Raises:
        DeclarationError: the payload takes no such input, or the task sets another value.
    """
    used = {input_placeholder(s.placeholder) for s in parsed.slots}
    if input_name not in params or input_name not in used:
        raise DeclarationError(
            f"{name} is declared, but this {what}'s payload takes no {input_name!r} input",
            where=where,
            fix="set it on the GCPC component itself",
        )
    value = list(value) if isinstance(value, tuple) else value
    current = bindings.get(input_name)
    if current is None and (params.get(input_name) or {}).get("defaultValue") == value:
        return  # the component holds it already (zt's own wrapper, on a second rewrite)
    if current is None:
        bindings[input_name] = {"runtimeValue": {"constant": value}}
    elif current != {"runtimeValue": {"constant": value}}:
        raise DeclarationError(
            f"declared {name} {value!r} but the {what} task sets {input_name!r} already",
            where=where,
        )


# launchers whose payload strings are job options (a Dataflow flex launch's parameters,
# launch options, experiments): an option or value there can choose the job's identity too
_OPTION_PAYLOADS = frozenset({"DataflowFlexTemplateJob"})
_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
# an input artifact's uri/path/metadata: the producing step can set its output's URI
_ARTIFACT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.[^}]*\}\}")
_ANY_PLACEHOLDER = re.compile(r"\{\{\$[^{}]*\}\}")
_PIPELINE_PLACEHOLDER = re.compile(r"^\{\{\$\.pipeline_[a-z_]+\}\}$")  # ids Vertex fills
_OUTPUT_PLACEHOLDER = re.compile(
    r"^\{\{\$\.outputs\.(?:parameters\['[^'{}]+'\]\.output_file|"
    r"artifacts\['[^'{}]+'\]\.(?:path|uri))\}\}$"
)


def _raw_payload_inputs(
    pools: Any,
    definitions: dict[str, Any],
    task: dict[str, Any],
    env: Env,
    *,
    safe: frozenset[str] = frozenset(),
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
            if "{{$" not in item:  # every placeholder starts so: most strings hold none
                continue
            names.update(_INPUT_PLACEHOLDER.findall(item))
            runtime += [  # a run-time value, unless a GCPC launcher wrote it (``safe``)
                m.group(1) for m in _ARTIFACT_PLACEHOLDER.finditer(item) if m.group(0) not in safe
            ]
            runtime += [  # any other placeholder Vertex may fill: not proven inert either
                p
                for p in _ANY_PLACEHOLDER.findall(item)
                if not _INPUT_PLACEHOLDER.fullmatch(p)
                and not _ARTIFACT_PLACEHOLDER.fullmatch(p)
                and p not in SAFE_SYSTEM_PLACEHOLDERS
                and not _PIPELINE_PLACEHOLDER.match(p)
                and not _OUTPUT_PLACEHOLDER.match(p)
                and p != "{{$}}"
            ]
        elif isinstance(item, dict):
            stack.extend(item.keys())  # a key is pasted as text too
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
        if not is_safe_payload_string(value) and not inert_json(value):
            runtime.append(name)  # holds a quote or backslash: not proven safe either
    return tuple(sorted(set(runtime)))


def _quoted_slot(parsed: ParsedPayload, path: tuple[str | int, ...]) -> bool:
    return any(slot.quoted for slot in parsed.slots if slot.path == path)


def _content_key(component: Any, executor: Any, label: str | None) -> str:
    """What makes two rewritten versions of one component the same (JSON: 1, 1.0 and true
    differ)."""
    return json.dumps([component, executor, label], sort_keys=True, default=repr)


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


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None  # a run-time placeholder


def _inner_kind(pools: Any) -> LauncherKind | None:
    """The GCPC launcher a CustomJob wraps (from its first worker pool), if it is one the
    rewrite wraps: a second rewrite then reports the same job kind as the first."""
    try:
        spec = pools[0]["container_spec"]
        container = {"command": spec.get("command") or [], "args": spec.get("args") or []}
    except (TypeError, KeyError, IndexError, AttributeError):
        return None
    kind = identify_launcher(container)
    return kind if kind is not None and kind.wrap and kind.supported else None


# where a launched job kind takes its container images; kinds that run an image the payload
# does not name (a model's serving container, a Dataflow template) are in _IMAGES_ELSEWHERE
_POOL_PATHS: dict[str, tuple[str, ...]] = {
    "CustomJob": ("job_spec", "worker_pool_specs"),
    "HyperparameterTuningJob": ("trial_job_spec", "worker_pool_specs"),
}
# where a launcher's payload names the model it serves: GCPC writes its model input there
_MODEL_FIELD: dict[str, tuple[str, ...]] = {
    "DeployModel": ("deployed_model", "model"),
    "BatchPredictionJob": ("model",),
}
_MODEL_NAME = "{{$.inputs.artifacts['model'].metadata['resourceName']}}"
_IMAGES_ELSEWHERE: dict[str, str] = {
    "BatchPredictionJob": "the model's serving container (an artifact read at run time)",
    "DataflowFlexTemplateJob": "the flex template's container (in the template file)",
    "UploadModel": "the uploaded model's serving container (an artifact read at run time)",
    "DeployModel": "the deployed model's serving container (the model's, read at run time)",
    "DataflowPythonJob": "the Dataflow workers' SDK container (chosen by Beam at run time)",
}


def _job_images(
    parsed: ParsedPayload, kind: str, bindings: dict[str, Any], params: dict[str, Any], env: Env
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every image the launched job runs, known now; where it runs one known only later).

    Three sources, for every kind: the kind's worker pools (:data:`_POOL_PATHS`), an image the
    job takes from elsewhere (:data:`_IMAGES_ELSEWHERE`), and every image-named field anywhere
    in the payload (:func:`_payload_images`: a Dataproc batch's ``runtime_config.
    container_image``, a flex template's ``sdk_container_image`` or inline ``container_spec.
    image``, a field a new GCPC version adds) — so no image field of any payload goes unjudged.
    """
    path = _POOL_PATHS.get(kind)
    images, unknown = _payload_images(parsed.tree, bindings, params, env, skip=path)
    if kind in _IMAGES_ELSEWHERE:
        unknown.append(_IMAGES_ELSEWHERE[kind])
    if path is None:
        return tuple(dict.fromkeys(images)), tuple(dict.fromkeys(unknown))
    pools = payload_value(parsed, path, bindings, params, env)
    where = ".".join(path)
    if not isinstance(pools, list) or not pools:
        return tuple(dict.fromkeys(images)), (*unknown, f"{where} (known only at run time)")
    # any other image-named field of a pool (``containerSpec.imageUri``, a new spec kind)
    more, more_unknown = _payload_images(pools, bindings, params, env, skip=None, at=path)
    images += more
    unknown += more_unknown
    for i, pool in enumerate(pools):
        if not isinstance(pool, dict):
            unknown.append(f"{where}[{i}] (known only at run time)")
            continue
        found = False
        for spec_key, image_key in (
            ("container_spec", "image_uri"),
            ("python_package_spec", "executor_image_uri"),
        ):
            spec = pool.get(spec_key)
            if spec is None:
                continue
            found = True
            image = spec.get(image_key) if isinstance(spec, dict) else None
            if isinstance(image, str) and image and "{{" not in image:
                images.append(image)
            else:
                unknown.append(f"{where}[{i}].{spec_key}.{image_key} (known only at run time)")
        if not found and pool:  # an empty {} pool is GCPC's placeholder for "no pool here"
            unknown.append(f"{where}[{i}] (no container_spec or python_package_spec)")
    return tuple(dict.fromkeys(images)), tuple(dict.fromkeys(unknown))


_IMAGE_KEY = re.compile(r"(?i)image(_?uri)?$")
"""A payload key naming a container image, in either spelling the launchers' protobuf
parsers accept (``container_image``/``containerImage``, ``image_uri``, ``image``,
``executor_image_uri``, ``sdk_container_image``, ``worker_harness_container_image``)."""

_MAX_FIELD_WALK = 20_000  # payload nodes visited (constants included) before giving up
_RUNTIME = object()  # a field's value is known only when the pipeline runs


def _payload_fields(
    tree: Any,
    key: re.Pattern[str],
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    skip: tuple[str, ...] | None = None,
    at: tuple[str | int, ...] = (),
) -> list[tuple[str, Any]]:
    """Every field of a (parsed) launcher payload ``tree`` (found at path ``at``) whose key
    matches ``key``, at any depth and through constant inputs, as ``(where, value)``; the value
    is ``_RUNTIME`` when it is known only at run time. ``skip``: a path read separately."""
    found: list[tuple[str, Any]] = []
    todo: list[tuple[tuple[str | int, ...], Any, bool]] = [(at, tree, False)]
    seen = 0
    while todo:
        path, node, hit = todo.pop()
        seen += 1
        if seen > _MAX_FIELD_WALK:
            found.append(("the payload (too large to read every field)", _RUNTIME))
            break
        if skip is not None and path[: len(skip)] == skip:
            continue
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        placeholder = input_placeholder(node.placeholder if isinstance(node, Raw) else node)
        if placeholder is not None:
            bound = input_binding(placeholder, bindings, params, env)
            if bound is None:
                continue  # an optional input left unset: nothing is pasted
            node = bound.value if bound.kind == "constant" else _RUNTIME
        elif isinstance(node, Raw) or (isinstance(node, str) and "{{" in node):
            node = _RUNTIME
        if hit:
            found.append((where, node))
        elif isinstance(node, dict):
            todo += [
                ((*path, k), v, isinstance(k, str) and bool(key.search(k)))
                for k, v in reversed(node.items())
            ]
        elif isinstance(node, list):
            todo += [((*path, i), v, False) for i, v in reversed(list(enumerate(node)))]
    return found


def _payload_images(
    tree: Any,
    bindings: Mapping[str, Any],
    params: Mapping[str, Any],
    env: Env,
    *,
    skip: tuple[str, ...] | None,
    at: tuple[str | int, ...] = (),
) -> tuple[list[str], list[str]]:
    """Every image-named field of a launcher payload (:func:`_payload_fields`): (images known
    now, where an image is known only at run time). An empty value is the service's default
    image (Google's), judged by no registry rule."""
    images: list[str] = []
    unknown: list[str] = []
    for where, value in _payload_fields(tree, _IMAGE_KEY, bindings, params, env, skip=skip, at=at):
        if value is _RUNTIME:
            unknown.append(f"{where} (known only at run time)")
        elif isinstance(value, str):
            if value:
                images.append(value)
        elif value is not None:
            unknown.append(f"{where} (not an image name)")
    return images, unknown


_OPENS_JOB = re.compile(r"(?i)^enable_?(web|dashboard)_?access$")
"""Payload keys that open a running job to HTTP callers through its ``web_access_uris``:
Vertex's interactive shell (``enable_web_access``) and the chief container's dashboard
(``enable_dashboard_access``: Ray's accepts jobs), in a CustomJob or a tuning job's trial
spec, in either spelling."""


def _opens_to_callers(
    tree: Any, bindings: Mapping[str, Any], params: Mapping[str, Any], env: Env
) -> tuple[str, ...]:
    """The payload fields that open the launched job to callers: set to anything but
    ``false``/empty, or known only at run time (never proven closed)."""
    return tuple(
        where if value is not _RUNTIME else f"{where} (known only at run time)"
        for where, value in _payload_fields(tree, _OPENS_JOB, bindings, params, env)
        if value is _RUNTIME or value not in (False, None, "", "false")
    )


def _snake_case(key: str) -> str:
    """A payload key as GCPC's launchers snake-case it (``json_util``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _flag_value_at(args: list[Any], flag: str, where: str) -> int | None:
    """Where the value of a launcher's ``flag`` is, read as the launcher's argparse reads it.

    argparse keeps the *last* of two, and takes ``--flag=value`` and unique abbreviations
    (``--proj``): a wrapped launcher (whose arguments are not otherwise GCPC's fixed set) given
    its place twice, or in such a form, would call where the first one does not say — refused.
    """
    found = [
        i
        for i, arg in enumerate(args)
        if isinstance(arg, str)
        and arg.startswith("--")
        and flag.startswith(arg.split("=", 1)[0])
        and len(arg.split("=", 1)[0]) > 2
    ]
    if not found:
        return None
    if len(found) > 1 or args[found[0]] != flag or found[0] + 1 >= len(args):
        raise TemplateError(
            f"the launcher's {flag} is given as "
            + ", ".join(repr(args[i]) for i in found)
            + ": its launcher reads the last one, in any of these forms, and zt-pipelines "
            "reads exactly one",
            where=where,
            fix="rebuild the step with the GCPC component, unmodified",
        )
    return found[0] + 1


def _pool_container(pools: Any) -> dict[str, Any]:
    """The first worker pool's container as a launcher container (command and args)."""
    spec = pools[0]["container_spec"]
    return {"command": spec.get("command") or [], "args": spec.get("args") or []}


def _pool_image(pools: Any) -> str:
    try:
        return str(pools[0]["container_spec"]["image_uri"])
    except (TypeError, KeyError, IndexError):
        return ""


_JOB_PATHS: dict[str, tuple[str, ...]] = {
    "network": ("job_spec", "network"),
    "encryption_spec_key_name": ("encryption_spec", "kms_key_name"),
    "enable_web_access": ("job_spec", "enable_web_access"),
    "reserved_ip_ranges": ("job_spec", "reserved_ip_ranges"),
    "labels": ("labels",),
    "psc_interface_config": ("job_spec", "psc_interface_config"),
    "persistent_resource_id": ("job_spec", "persistent_resource_id"),
}


_NETWORK_FIELDS = frozenset({"network", "psc_interface_config", "reserved_ip_ranges"})


def _set_in_payload(
    parsed: ParsedPayload,
    path: tuple[str, ...],
    bindings: dict[str, Any],
    params: dict[str, Any],
    env: Env,
) -> bool:
    """Whether the payload's job field at ``path`` holds a value of the step's own: a literal
    or an input that is set (empty text, ``{}``, ``[]``, a component's default ``false`` and
    the pipeline's persistent-resource placeholder are "not set"; a value known only at run
    time is the step's own — placement refuses it where it matters)."""
    node = field_at(parsed.tree, path)
    if node is None:
        return False
    name = input_placeholder(node.placeholder if isinstance(node, Raw) else node)
    if name is None:  # a literal, or text around a placeholder (not known: named instead)
        if isinstance(node, str) and "{{" in node and not _pipeline_default(node):
            return False
        return not (node in ("", {}, [], False) or _pipeline_default(node))
    return _input_set(name, bindings, params, env)


def _input_set(name: str, bindings: dict[str, Any], params: dict[str, Any], env: Env) -> bool:
    """Whether input ``name`` holds a value of the step's own, as resolved (a pipeline
    parameter left at ``''`` is not one: the first and a second rewrite must agree)."""
    bound = input_binding(name, bindings, params, env)
    if bound is None:
        return False
    if bound.kind != "constant":
        return True
    value = bound.value
    if value is False:  # set only when the task passes it: GCPC's default is false
        return name in bindings
    return not (value is None or value in ("", {}, []) or _pipeline_default(value))


def _pipeline_default(value: Any) -> bool:
    """A placeholder Vertex fills from the pipeline job (GCPC's persistent resource id)."""
    return isinstance(value, str) and bool(_PIPELINE_PLACEHOLDER.match(value))


def _sole_input_at(parsed: ParsedPayload, path: tuple[str, ...]) -> str | None:
    """The input whose placeholder is the whole value at ``path`` and used nowhere else in
    the payload (a default bound to it changes that job field and nothing else), else
    ``None``."""
    node = field_at(parsed.tree, path)
    if not isinstance(node, (str, Raw)):
        return None
    name = input_placeholder(node.placeholder if isinstance(node, Raw) else node)
    if name is None:
        return None
    for slot in parsed.slots:
        if input_placeholder(slot.placeholder) == name and (
            tuple(slot.path) != path or not slot.whole
        ):
            return None
    return name


def _payload_job(
    parsed: ParsedPayload, bindings: dict[str, Any], params: dict[str, Any], env: Env
) -> JobFields:
    """The job fields of an existing custom job, read from its payload."""
    values: dict[str, Any] = {}
    for name, path in _JOB_PATHS.items():
        value = payload_value(parsed, path, bindings, params, env)
        node = field_at(parsed.tree, path)
        literal = input_placeholder(node.placeholder if isinstance(node, Raw) else node) is None
        if literal and value in ({}, []):
            continue  # our wrap's stand-in for a field the step does not set (see launcher.py)
        if isinstance(value, list):
            value = tuple(value)
        if name == "persistent_resource_id" and (
            not isinstance(value, str) or not value or value.startswith("{{")
        ):
            continue  # the pipeline's persistent resource (or none): on demand
        if isinstance(value, (str, bool, tuple, dict)):
            values[name] = value
    pools = payload_value(parsed, ("job_spec", "worker_pool_specs"), bindings, params, env)
    if isinstance(pools, list) and pools and all(isinstance(p, dict) for p in pools):
        machine = pools[0].get("machine_spec")
        disk = pools[0].get("disk_spec")
        machine = machine if isinstance(machine, dict) else {}
        disk = disk if isinstance(disk, dict) else {}
        values["machine_type"] = machine.get("machine_type")
        values["accelerator_type"] = machine.get("accelerator_type", "")
        values["accelerator_count"] = _int(machine.get("accelerator_count", 1))
        values["replica_count"] = _int(sum(_int(p.get("replica_count", 1)) or 0 for p in pools))
        values["boot_disk_type"] = disk.get("boot_disk_type")
        values["boot_disk_size_gb"] = _int(disk.get("boot_disk_size_gb"))
    values = {k: v for k, v in values.items() if isinstance(v, (str, int, bool, tuple, dict))}
    return JobFields(**values)


def _render(value: Any, parameter_type: Any) -> str:
    """The text Vertex substitutes for an input placeholder holding ``value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if parameter_type == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _inline_text(text: str, values: dict[str, str]) -> str:
    """``text`` with known input placeholders replaced; inside a Concat/IfPresent argument the
    values go into its JSON strings (so they are escaped as that JSON needs)."""
    if text.lstrip().startswith(('{"Concat"', '{"IfPresent"')):
        try:
            tree = json.loads(text)
        except ValueError:
            return text  # not KFP's form: left for the payload reader to refuse
        return json.dumps(_inline_tree(tree, values))
    return _replace_inputs(text, values)


def _inline_tree(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _replace_inputs(node, values)
    if isinstance(node, list):
        return [_inline_tree(v, values) for v in node]
    if isinstance(node, dict):
        return {k: (v if k == "InputName" else _inline_tree(v, values)) for k, v in node.items()}
    return node


def _replace_inputs(text: str, values: dict[str, str]) -> str:
    for _ in range(8):  # a constant may hold placeholders of its own (KFP string concatenation)
        new = _INPUT_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
        if new == text:
            break
        text = new
    return text


_UNKNOWN_PRESENCE = (
    "whether input {name!r} is present is known only at run time (it is bound to a pipeline "
    "parameter that has no value and no default, to a sub-pipeline input its parent leaves "
    "unset, or to an optional input artifact), so the IfPresent branch Vertex takes was "
    "never verified"
)


def _root_artifacts(root: dict[str, Any]) -> dict[str, bool]:
    """The pipeline's input artifacts a run surely provides (the required ones)."""
    declared = (root.get("inputDefinitions") or {}).get("artifacts") or {}
    return {
        name: not (isinstance(d, dict) and d.get("isOptional"))
        for name, d in (declared.items() if isinstance(declared, dict) else ())
    }


def _child_artifacts(task: dict[str, Any], outer: dict[str, bool]) -> dict[str, bool]:
    """A sub-pipeline's input artifacts as the task that runs it provides them."""
    bound = (task.get("inputs") or {}).get("artifacts") or {}
    out: dict[str, bool] = {}
    for name, spec in bound.items() if isinstance(bound, dict) else ():
        if isinstance(spec, dict) and "componentInputArtifact" in spec:
            out[name] = outer.get(str(spec["componentInputArtifact"]), False)
        else:
            out[name] = isinstance(spec, dict)  # an upstream task's output, an importer's
    iterator = task.get("artifactIterator")
    item = iterator.get("itemInput") if isinstance(iterator, dict) else None
    if isinstance(item, str):
        out[item] = True
    return out


def _given(
    task: dict[str, Any],
    params: dict[str, Any],
    env: Env,
    artifacts: Mapping[str, bool] | None = None,
) -> tuple[frozenset[str], frozenset[str]]:
    """The inputs a task provides (bound, or defaulted by the component), and those whose
    presence is unknown before submission: bound to a pipeline parameter with no value and no
    default, which Vertex may leave out at run time, or to a sub-pipeline input its parent
    leaves unset (or that nothing declares)."""
    inputs = task.get("inputs") or {}
    bound = dict(inputs.get("parameters") or {})
    names = set(bound) | set(inputs.get("artifacts") or {})
    unknown = {
        n
        for n, spec in bound.items()
        if bind(spec, env).kind == "unresolved"
        # an enclosing DAG input nobody declared or bound: nothing says it is there
        or (
            isinstance(spec, dict)
            and "componentInputParameter" in spec
            and str(spec["componentInputParameter"]) not in env
        )
    }
    for name, spec in (inputs.get("artifacts") or {}).items():
        source = spec.get("componentInputArtifact") if isinstance(spec, dict) else None
        if source is not None and not (artifacts or {}).get(str(source), False):
            unknown.add(name)  # an enclosing DAG's optional (or unset) input artifact
    defaulted = {n for n, d in params.items() if isinstance(d, dict) and "defaultValue" in d}
    unknown -= defaulted  # absent at run time, the component's default stands in: present
    return frozenset((names | defaulted) - unknown), frozenset(unknown)


def _resolve_if_present(parts: list[Any], provided: frozenset[str]) -> list[Any]:
    """Top-level ``{"IfPresent": ...}`` arguments of a wrapped launcher replaced by the branch
    the task takes (KFP's rule: the input is provided, by a binding or a default; one bound to
    a parameter with no value is not)."""
    out: list[Any] = []
    for part in parts:
        spec: Any = None
        if isinstance(part, str) and part.lstrip().startswith('{"IfPresent"'):
            try:
                spec = json.loads(part).get("IfPresent")
            except (ValueError, AttributeError):
                spec = None
        if not isinstance(spec, dict) or not isinstance(spec.get("InputName"), str):
            out.append(part)
            continue
        # baked in now, so Vertex evaluates no IfPresent here: what is verified is what runs;
        # an input bound to a parameter with no value is absent at run time (the Else branch)
        branch = spec.get("Then" if spec["InputName"] in provided else "Else")
        items = branch if isinstance(branch, list) else ([] if branch is None else [branch])
        for item in items:
            out.append(item if isinstance(item, str) else json.dumps(item))
    return out


#: payload keys that hand a deployed model to what another resource runs as (a deployment
#: resource pool serves every model on it as the pool's own service account)
_SHARED_SERVING = re.compile(r"shared[\W_]*resources", re.IGNORECASE)


def _strict_payload(text: Any, kind: LauncherKind, where: str) -> None:
    """A wrapped launcher's JSON argument, read as GCPC reads it: it must parse exactly (a
    duplicate key — ``json.loads`` keeps the last — or any other ambiguity is refused), and
    it may name an identity only where the rewrite pins one (the serving identity's path),
    never under another spelling (``serviceAccount``) or through a shared resource pool."""
    stripped = text.lstrip() if isinstance(text, str) else ""
    if not stripped.startswith(("{", "[")) or stripped.startswith("{{"):
        return  # a value, not JSON text
    try:
        parsed = parse_payload(text, lambda name: True)
    except PayloadError as exc:
        raise TemplateError(
            f"an argument of the {kind.name} launcher is not the exact JSON GCPC reads ({exc})",
            where=where,
            fix="recompile the step from Google's component; do not edit its payload",
        ) from None
    allowed = {kind.serving_identity.payload_path} if kind.serving_identity else set()
    stray = [p for p in keys_named(parsed.tree, _SA) if p not in allowed]
    pooled = keys_named(parsed.tree, _SHARED_SERVING)
    if stray or pooled:
        path = ".".join(map(str, (stray or pooled)[0]))
        raise TemplateError(
            f"the {kind.name} launcher's payload names "
            + (
                f"an identity at {path}, where the rewrite pins none"
                if stray
                else f"a shared resource pool at {path}: a model there serves as the pool's "
                "account, which nothing verifies"
            ),
            where=where,
            fix="recompile the step from Google's component; declare the serving identity "
            "with serving_service_account",
        )


def _is_json_template(text: Any) -> bool:
    stripped = text.lstrip() if isinstance(text, str) else ""
    if not stripped.startswith(("{", "[")) or stripped.startswith("{{"):
        return False  # not JSON text (a lone placeholder is a value, not a template)
    try:
        parse_payload(text, lambda name: True)
    except PayloadError:
        return False
    return True
