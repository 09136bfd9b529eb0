"""What Vertex would find when it *runs* a pipeline job (opt-in: ``simulate_runs=True``).

Creating a pipeline job only checks the submitter; the run-as (pipeline) service account is
exercised later, while the job runs: it writes the pipeline root, and every step rewritten to a
GCPC CustomJob is launched *by the pipeline SA*, which needs ``aiplatform.customJobs.create``
and ``iam.serviceAccounts.actAs`` on the step's service account. This module replays those
checks against the emulator's world so a job that Vertex would fail minutes in fails here too,
with the step named. Decisions come from the caller's ``decide`` (our engine); no IO.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from zt_pipelines.resources import CRM, STORAGE, service_account_resource
from zt_pipelines.spec.launcher import pinned_payload_account

_LAUNCHER = "google_cloud_pipeline_components.container.v1.custom_job.launcher"

# (member, full resource name, permission, object name) -> engine decision state
Decide = Callable[[str, str, str, "str | None"], str]


@dataclass(frozen=True)
class StepLaunch:
    """One GCPC CustomJob step the pipeline SA would launch."""

    task: str
    service_account: str | None  # None: could not be resolved before the run
    unresolved_reason: str = ""


@dataclass(frozen=True)
class RunResult:
    """The simulated outcome: the final state, an error message, the steps launched."""

    state: str
    error: str
    launches: tuple[StepLaunch, ...]


def _dags(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    root = spec.get("root") or {}
    if isinstance(root.get("dag"), dict):
        yield root["dag"]
    for component in (spec.get("components") or {}).values():
        if isinstance(component, dict) and isinstance(component.get("dag"), dict):
            yield component["dag"]


def _launcher_components(spec: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str | None]]:
    """Custom-job launcher components, each with the service account its payload names: a
    constant (``None`` when the payload takes it from the ``service_account`` input)."""
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    launchers: dict[str, str | None] = {}
    for label, executor in executors.items():
        container = executor.get("container") or {}
        if _LAUNCHER not in " ".join(str(c) for c in container.get("command") or []):
            continue
        launchers[label] = _payload_account(container.get("args") or [])
    return {
        name: (component, launchers[component["executorLabel"]])
        for name, component in (spec.get("components") or {}).items()
        if isinstance(component, dict) and component.get("executorLabel") in launchers
    }


def _payload_account(args: list[Any]) -> str | None:
    # the launcher reads job_spec.service_account from its --payload (plain or a Concat): a
    # pinned constant there is what the CustomJob runs as, whatever the component's inputs say
    return pinned_payload_account(args)


def step_launches(job: dict[str, Any]) -> list[StepLaunch]:
    """Every GCPC CustomJob step of a PipelineJob (JSON, as sent) with its service account."""
    spec = job.get("pipelineSpec") or {}
    values = (job.get("runtimeConfig") or {}).get("parameterValues") or {}
    root_inputs = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    components = _launcher_components(spec)
    launches: list[StepLaunch] = []
    for dag in _dags(spec):
        for task_name, task in sorted((dag.get("tasks") or {}).items()):
            found = components.get((task.get("componentRef") or {}).get("name", ""))
            if found is None:
                continue
            component, pinned = found
            if pinned is not None and "{{" not in pinned:
                launches.append(StepLaunch(task_name, pinned))
                continue
            declared = (component.get("inputDefinitions") or {}).get("parameters") or {}
            default = (declared.get("service_account") or {}).get("defaultValue", "")
            given = ((task.get("inputs") or {}).get("parameters") or {}).get("service_account")
            if given is None:
                launches.append(StepLaunch(task_name, str(default)))
            elif "runtimeValue" in given:
                launches.append(
                    StepLaunch(task_name, str(given["runtimeValue"].get("constant", "")))
                )
            elif "componentInputParameter" in given:
                name = given["componentInputParameter"]
                if name in values:
                    launches.append(StepLaunch(task_name, str(values[name])))
                elif "defaultValue" in (root_inputs.get(name) or {}):
                    launches.append(StepLaunch(task_name, str(root_inputs[name]["defaultValue"])))
                else:
                    launches.append(
                        StepLaunch(task_name, None, f"pipeline parameter {name!r} has no value")
                    )
            else:
                launches.append(
                    StepLaunch(task_name, None, "service_account comes from another task's output")
                )
    return launches


def simulate_run(job: dict[str, Any], project_id: str, runner: str, decide: Decide) -> RunResult:
    """Replay the run-time permission checks of ``job`` run as ``runner`` (an email)."""
    member = f"serviceAccount:{runner}"
    problems: list[str] = []
    root = str((job.get("runtimeConfig") or {}).get("gcsOutputDirectory") or "")
    if root.startswith("gs://"):
        bucket, _, prefix = root[len("gs://") :].partition("/")
        probe = (prefix.rstrip("/") + "/" if prefix else "") + "zt-run/executor_output.json"
        for permission in ("storage.objects.create", "storage.objects.get"):
            if decide(member, STORAGE + bucket, permission, probe) != "granted":
                problems.append(
                    f"service account {runner} does not have {permission} on the pipeline "
                    f"root gs://{bucket}"
                )
    launches = step_launches(job)
    project = CRM + "projects/" + project_id
    for launch in launches:
        where = f"task {launch.task!r}"
        if launch.service_account is None:
            problems.append(f"{where}: {launch.unresolved_reason}")
            continue
        if decide(member, project, "aiplatform.customJobs.create", None) != "granted":
            problems.append(
                f"{where}: {runner} cannot create CustomJobs in {project_id} "
                "(aiplatform.customJobs.create)"
            )
        step_sa = launch.service_account
        if step_sa:
            target = service_account_resource(step_sa)
            if decide(member, target, "iam.serviceAccounts.actAs", None) != "granted":
                problems.append(
                    f"{where}: {runner} cannot act as {step_sa} (iam.serviceAccounts.actAs)"
                )
    if problems:
        return RunResult("PIPELINE_STATE_FAILED", "; ".join(problems), tuple(launches))
    return RunResult("PIPELINE_STATE_SUCCEEDED", "", tuple(launches))
