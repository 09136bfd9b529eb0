"""What an approved pipeline spec says each task runs as (pure).

The spec a run was submitted with is, once its sha256 matches the approval, the approved spec;
every GCPC custom-job launcher task in it states the CustomJob it will create: the identity
(``service_account``), the images (``worker_pool_specs``), network, PSC interface, reserved IP
ranges, CMEK key, project and location. Inputs are resolved the way the rewrite resolved them
(:mod:`zt_pipelines.spec.resolve`): constants, pipeline parameters (the run's values, else
their defaults) and DAG inputs; anything known only at run time is reported as unknown, never
guessed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from zt_pipelines.spec.launcher import is_custom_job_launcher, pinned_payload_account
from zt_pipelines.spec.resolve import Bound, bind

TaskKind = Literal["custom_job", "container", "importer", "dag", "other"]

PIPELINE_PROJECT = "{{$.pipeline_google_cloud_project_id}}"
PIPELINE_LOCATION = "{{$.pipeline_google_cloud_location}}"

_FIELDS = (
    "service_account",
    "worker_pool_specs",
    "network",
    "reserved_ip_ranges",
    "psc_interface_config",
    "encryption_spec_key_name",
    "project",
    "location",
)


@dataclass(frozen=True)
class ExpectedTask:
    """One task of an approved spec and what its job must look like.

    Attributes:
        path: the task's path through the DAG (``/``-joined).
        kind: ``custom_job`` (a GCPC launcher: the job below), ``container`` (runs as the
            pipeline SA in ``images``), ``importer``, ``dag`` (a sub-pipeline, loop or
            condition: runs no job of its own) or ``other``.
        service_account: the identity; ``None`` when only known at run time.
        images: the container images.
        network / reserved_ip_ranges / psc_interface_config / kms_key: the job fields.
        project / location: where the job runs (placeholders for the pipeline's own).
        runtime: the fields whose value is only known at run time (not comparable).
    """

    path: str
    kind: TaskKind
    service_account: str | None = None
    images: tuple[str, ...] = ()
    network: str = ""
    reserved_ip_ranges: tuple[str, ...] = ()
    psc_interface_config: Any = None
    kms_key: str = ""
    project: str = PIPELINE_PROJECT
    location: str = PIPELINE_LOCATION
    runtime: tuple[str, ...] = ()


def _images(pools: Any) -> tuple[str, ...]:
    found: list[str] = []
    for pool in pools if isinstance(pools, list) else []:
        if not isinstance(pool, Mapping):
            continue
        container = pool.get("container_spec") or pool.get("containerSpec") or {}
        package = pool.get("python_package_spec") or pool.get("pythonPackageSpec") or {}
        image = (
            (container.get("image_uri") or container.get("imageUri"))
            if isinstance(container, Mapping)
            else None
        ) or (
            (package.get("executor_image_uri") or package.get("executorImageUri"))
            if isinstance(package, Mapping)
            else None
        )
        if isinstance(image, str) and image:
            found.append(image)
    return tuple(found)


def _root_env(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Bound]:
    defs = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    env: dict[str, Bound] = {}
    for name, definition in defs.items() if isinstance(defs, Mapping) else ():
        if name in values:
            env[name] = Bound("constant", values[name], parameter=name)
        elif isinstance(definition, Mapping) and "defaultValue" in definition:
            env[name] = Bound("constant", definition["defaultValue"], parameter=name)
        else:
            env[name] = Bound("unresolved", parameter=name)
    return env


def expected_tasks(
    spec: Mapping[str, Any], parameter_values: Mapping[str, Any] | None = None
) -> dict[str, ExpectedTask]:
    """Every task of ``spec`` by path, with what its job must look like."""
    components = spec.get("components") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    out: dict[str, ExpectedTask] = {}
    root = spec.get("root") or {}
    dag = root.get("dag") if isinstance(root, Mapping) else None
    if isinstance(dag, Mapping):
        env = _root_env(spec, parameter_values or {})
        for path, task, task_env in _walk(dag, env, "", components, depth=0):
            component = components.get((task.get("componentRef") or {}).get("name", "")) or {}
            out[path] = _expected(path, component, task_env, executors)
    return out


def _walk(
    dag: Mapping[str, Any], env: Mapping[str, Bound], prefix: str, components: Any, depth: int
) -> Iterator[tuple[str, Mapping[str, Any], dict[str, Bound]]]:
    if depth > 64:  # a cycle or absurd nesting: stop (the rewrite refuses such specs anyway)
        return
    for name, task in sorted((dag.get("tasks") or {}).items()):
        if not isinstance(task, Mapping):
            continue
        path = f"{prefix}{name}"
        params = (task.get("inputs") or {}).get("parameters") or {}
        task_env = {k: bind(v, env) for k, v in params.items()} if isinstance(params, dict) else {}
        yield path, task, task_env
        component = components.get((task.get("componentRef") or {}).get("name", "")) or {}
        inner = component.get("dag") if isinstance(component, Mapping) else None
        if isinstance(inner, Mapping):
            yield from _walk(inner, task_env, f"{path}/", components, depth + 1)


def _expected(
    path: str, component: Mapping[str, Any], env: Mapping[str, Bound], executors: Any
) -> ExpectedTask:
    if isinstance(component.get("dag"), Mapping):
        return ExpectedTask(path, "dag")
    executor = executors.get(component.get("executorLabel", "")) or {}
    if "importer" in executor:
        return ExpectedTask(path, "importer")
    container = executor.get("container")
    if not isinstance(container, Mapping):
        return ExpectedTask(path, "other")
    if not is_custom_job_launcher(dict(container)):
        image = container.get("image")
        return ExpectedTask(path, "container", images=(str(image),) if image else ())
    defaults = (component.get("inputDefinitions") or {}).get("parameters") or {}
    values: dict[str, Any] = {}
    runtime: list[str] = []
    for name in _FIELDS:
        bound = env.get(name)
        if bound is None:
            definition = defaults.get(name) or {}
            values[name] = definition.get("defaultValue") if isinstance(definition, dict) else None
        elif bound.kind == "constant":
            values[name] = bound.value
        else:
            values[name] = None
            runtime.append(name)
    sa = values["service_account"]
    pinned = _payload_service_account(container.get("args"))
    if pinned is not None:  # the launcher reads the job's identity from its payload
        sa = pinned
        runtime = [r for r in runtime if r != "service_account"]
    return ExpectedTask(
        path,
        "custom_job",
        service_account=str(sa).lower() if isinstance(sa, str) else None,
        images=_images(values["worker_pool_specs"]),
        network=str(values["network"] or ""),
        reserved_ip_ranges=tuple(str(r) for r in values["reserved_ip_ranges"] or ()),
        psc_interface_config=values["psc_interface_config"] or None,
        kms_key=str(values["encryption_spec_key_name"] or ""),
        project=str(values["project"] or PIPELINE_PROJECT),
        location=str(values["location"] or PIPELINE_LOCATION),
        runtime=tuple(runtime),
    )


def _payload_service_account(args: Any) -> str | None:
    """The constant ``service_account`` a custom-job launcher's ``--payload`` names, if any (a
    wrapped GCPC launcher's identity is pinned there while the component keeps GCPC's own
    ``service_account`` input — for ModelDeployOp the serving one; an AutoML ``Concat``
    payload pins it escaped)."""
    return pinned_payload_account(args)
