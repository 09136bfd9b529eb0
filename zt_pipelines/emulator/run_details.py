"""What a simulated run leaves behind: task details and the CustomJobs its steps ran as.

When runs are simulated (``simulate_runs=True``), a job that succeeds gets
``jobDetail.taskDetails`` as Vertex reports them — a root task, one task per DAG task, each
GCPC launcher task naming the CustomJob it created in ``execution.metadata
["output:gcp_resources"]`` (what the launcher writes), each plain container task its job in
``executorDetail.containerDetail.mainJob`` — and the CustomJobs themselves, with the identity,
images, network, PSC, reserved ranges and CMEK key the spec states. Tests script deviations
with :class:`RunScript` (a step that ran as another SA, another image, an extra task).
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from zt_pipelines.monitor.expect import PIPELINE_LOCATION, ExpectedTask, expected_tasks
from zt_pipelines.policy.conditions import parse_rfc3339


@dataclass(frozen=True)
class RunScript:
    """A scripted deviation of simulated runs (applies to every run until cleared).

    Attributes:
        task: the task path (or its last segment) it applies to.
        service_account: run the task's job as this identity instead.
        image: run this container image instead.
        network: use this network instead.
        kms_key: use this CMEK key instead.
        extra_task: add ``task`` as a task the spec does not contain (runs as
            ``service_account`` with ``image``).
        accesses: extra ``(permission, full resource name)`` accesses the task makes (in the
            synthesised Cloud Audit Logs).
        omit: permissions the task does not use (left out of its default accesses).
    """

    task: str
    service_account: str | None = None
    image: str | None = None
    network: str | None = None
    kms_key: str | None = None
    extra_task: bool = False
    accesses: tuple[tuple[str, str], ...] = ()
    omit: tuple[str, ...] = ()


class RunScripts:
    """The scripts in force (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[RunScript] = []

    def add(self, script: RunScript) -> None:
        """Put ``script`` in force."""
        with self._lock:
            self._scripts.append(script)

    def clear(self) -> None:
        """Remove every script."""
        with self._lock:
            self._scripts.clear()

    def all(self) -> list[RunScript]:
        """The scripts in force, oldest first."""
        with self._lock:
            return list(self._scripts)


@dataclass(frozen=True)
class StepRun:
    """One step job a simulated run created: for synthesised audit log entries."""

    task: str
    service_account: str
    job_name: str
    start: datetime.datetime
    end: datetime.datetime


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _applies(script: RunScript, path: str) -> bool:
    return not script.extra_task and script.task in (path, path.rsplit("/", 1)[-1])


def record_run(
    job: dict[str, Any],
    *,
    parent: str,
    runner: str,
    scripts: list[RunScript],
    custom_jobs: dict[str, dict[str, Any]],
    succeeded: bool,
) -> list[StepRun]:
    """Fill ``job["jobDetail"]`` and add the step jobs to ``custom_jobs`` (caller holds the
    world lock); return the step runs for the audit log."""
    location = parent.split("/")[3]
    spec = job.get("pipelineSpec") or {}
    values = (job.get("runtimeConfig") or {}).get("parameterValues") or {}
    # the run started when it was created: its steps' times (and their audit log entries) lie
    # between then and now, not in the future of whoever reads them right after
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        start = min(_parse_time(str(job.get("createTime") or "")), now)
    except ValueError:
        start = now
    root_state = "SUCCEEDED" if succeeded else "FAILED"
    details: list[dict[str, Any]] = [
        {
            "taskId": "1",
            "taskName": str((spec.get("pipelineInfo") or {}).get("name", "pipeline")),
            "state": root_state,
            "createTime": _stamp(start),
            "startTime": _stamp(start),
        }
    ]
    steps: list[StepRun] = []
    ids: dict[str, str] = {}
    if not succeeded:
        details[0]["endTime"] = _stamp(start)
        job["jobDetail"] = {"taskDetails": details}
        return steps
    try:
        expected = expected_tasks(spec, values)
    except Exception:  # a spec the emulator cannot walk: the run has only its root task
        expected = {}
    planned: list[tuple[str, str, ExpectedTask | None]] = [
        (path, exp.kind, exp) for path, exp in expected.items()
    ]
    planned += [(s.task, "extra", None) for s in scripts if s.extra_task]
    for index, (path, kind, exp) in enumerate(planned):
        task_id = str(index + 2)
        ids[path] = task_id
        parent_path = path.rsplit("/", 1)[0] if "/" in path else ""
        moment = start + datetime.timedelta(milliseconds=index + 1)
        detail: dict[str, Any] = {
            "taskId": task_id,
            "parentTaskId": ids.get(parent_path, "1"),
            "taskName": path.rsplit("/", 1)[-1],
            "state": "SUCCEEDED",
            "createTime": _stamp(moment),
            "startTime": _stamp(moment),
            "endTime": _stamp(moment + datetime.timedelta(milliseconds=1)),
        }
        details.append(detail)
        if kind in ("dag", "importer", "other"):
            continue
        fields: dict[str, Any] = {
            "service_account": runner,
            "images": list(exp.images) if exp else [],
            "network": "",
            "kms_key": "",
            "ranges": [],
            "psc": None,
            "location": location,
        }
        if exp is not None and kind == "custom_job":
            fields.update(
                service_account=exp.service_account or "",
                network=exp.network,
                kms_key=exp.kms_key,
                ranges=list(exp.reserved_ip_ranges),
                psc=exp.psc_interface_config,
                location=location if exp.location == PIPELINE_LOCATION else exp.location,
            )
        for script in scripts:
            if _applies(script, path) or (script.extra_task and script.task == path):
                if script.service_account is not None:
                    fields["service_account"] = script.service_account
                if script.image is not None:
                    fields["images"] = [script.image]
                if script.network is not None:
                    fields["network"] = script.network
                if script.kms_key is not None:
                    fields["kms_key"] = script.kms_key
        job_parent = parent.rsplit("/", 1)[0] + "/" + fields["location"]
        name = f"{job_parent}/customJobs/{uuid.uuid4().int % 10**19}"
        custom_jobs[name] = _custom_job(name, path, fields, moment)
        if kind == "container":
            detail["executorDetail"] = {"containerDetail": {"mainJob": name}}
        else:
            uri = f"https://{location}-aiplatform.googleapis.com/v1/{name}"
            resources = {"resources": [{"resourceType": "CustomJob", "resourceUri": uri}]}
            detail["execution"] = {"metadata": {"output:gcp_resources": json.dumps(resources)}}
        steps.append(
            StepRun(
                path,
                str(fields["service_account"]),
                name,
                moment,
                moment + datetime.timedelta(milliseconds=1),
            )
        )
    details[0]["endTime"] = _stamp(start + datetime.timedelta(milliseconds=len(planned) + 2))
    job.update(endTime=details[0]["endTime"], updateTime=details[0]["endTime"])
    job["jobDetail"] = {"taskDetails": details}
    return steps


def _custom_job(
    name: str, path: str, fields: dict[str, Any], moment: datetime.datetime
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "workerPoolSpecs": [
            {
                "machineSpec": {"machineType": "n1-standard-4"},
                "replicaCount": "1",
                "containerSpec": {"imageUri": image},
            }
            for image in fields["images"]
        ],
        "serviceAccount": fields["service_account"],
    }
    if fields["network"]:
        spec["network"] = fields["network"]
    if fields["ranges"]:
        spec["reservedIpRanges"] = fields["ranges"]
    if fields["psc"]:
        spec["pscInterfaceConfig"] = fields["psc"]
    job: dict[str, Any] = {
        "name": name,
        "displayName": path.replace("/", "-"),
        "jobSpec": spec,
        "state": "JOB_STATE_SUCCEEDED",
        "createTime": _stamp(moment),
        "startTime": _stamp(moment),
        "endTime": _stamp(moment + datetime.timedelta(milliseconds=1)),
        "updateTime": _stamp(moment + datetime.timedelta(milliseconds=1)),
    }
    if fields["kms_key"]:
        job["encryptionSpec"] = {"kmsKeyName": fields["kms_key"]}
    return job


_TIME_TERM = re.compile(r'^\s*create_time\s*(>=|<=|>|<)\s*"([^"]+)"\s*$')


def create_time_filter(text: str) -> Any:
    """A predicate over served jobs for a ``create_time`` filter (``AND``-joined comparisons,
    as the customJobs.list filter writes them); ``None`` for an empty filter.

    Raises:
        ValueError: any other filter (the emulator does not pretend to apply it).
    """
    if not text.strip():
        return None
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TIME_TERM.match(part)
        if match is None:
            raise ValueError(f"unsupported filter term {part!r}")
        terms.append((match.group(1), _parse_time(match.group(2))))

    def keep(job: dict[str, Any]) -> bool:
        created = _parse_time(str(job.get("createTime") or "1970-01-01T00:00:00Z"))
        for op, bound in terms:
            if op == ">=" and not created >= bound:
                return False
            if op == "<=" and not created <= bound:
                return False
            if op == ">" and not created > bound:
                return False
            if op == "<" and not created < bound:
                return False
        return True

    return keep


_SCHEDULE_TERM = re.compile(r'^\s*schedule_name\s*=\s*"?([^"\s]+)"?\s*$')


def pipeline_job_filter(text: str) -> Any:
    """A predicate over served pipeline jobs for a pipelineJobs.list filter: ``schedule_name=``
    (quoted or not, as aiplatform writes it) and ``create_time`` comparisons, ``AND``-joined;
    ``None`` for an empty filter.

    Raises:
        ValueError: any other filter (the emulator does not pretend to apply it).
    """
    if not text.strip():
        return None
    schedules: list[str] = []
    times: list[str] = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _SCHEDULE_TERM.match(part)
        if match is not None:
            schedules.append(match.group(1))
        else:
            times.append(part)
    by_time = create_time_filter(" AND ".join(times)) if times else None

    def keep(job: dict[str, Any]) -> bool:
        if any(job.get("scheduleName") != s for s in schedules):
            return False
        return by_time is None or bool(by_time(job))

    return keep


def _parse_time(text: str) -> datetime.datetime:
    moment = parse_rfc3339(text)  # one reader of RFC 3339 for every supported Python
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment
