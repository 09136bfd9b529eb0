"""The shape every reader of an audit record relies on (pure).

The hash chain proves that nobody edited a record after it was written; it does not prove the
writer was zt-pipelines — whoever can write the file can append a well-chained record of any
shape. Every reader (``audit show``, ``verify-run``, ``drift``, ``usage``, ``monitor``) asks
:func:`record_problem` first and treats a record of another shape as untrusted input: a typed
answer, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: top-level fields that are text when present
TEXT_FIELDS = (
    "time",
    "action",
    "outcome",
    "submitter",
    "project",
    "location",
    "pipeline",
    "spec_sha256",
    "job_id",
    "reason",
    "decision_sha256",
    "judged_at",
    "clock_time",
)
_POLICY_TEXT = ("source", "sha256", "rules_sha256")
_IDENTITY_TEXT = ("role", "task", "service_account", "source")
_FINDING_TEXT = ("code", "severity", "step", "principal", "resource", "permission", "message")
_BASELINE_TEXT = ("source", "pipeline_root", "runtime_sha256", "unavailable")
_SNAPSHOT_TEXT = ("path", "sha256", "kind")
_POSTURE_LISTS = ("keys", "grants", "deny", "act_as")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _text(data: Mapping[str, Any], names: tuple[str, ...], *, none: bool = False) -> str:
    """The first of ``names`` present and not text (``none``: ``null`` is allowed too)."""
    for name in names:
        if name in data and not isinstance(data[name], str):
            if none and data[name] is None:
                continue
            return f"{name} is not a string"
    return ""


def _identity_problem(ident: Any) -> str:
    if not isinstance(ident, Mapping):
        return "an identity is not an object"
    problem = _text(ident, _IDENTITY_TEXT)
    if problem:
        return f"an identity's {problem}"
    if not _strings(ident.get("needs", [])):
        return "an identity's needs are not a list of strings"
    if "job" in ident:
        job = ident["job"]
        if not isinstance(job, Mapping):
            return "an identity's job is not an object"
        problem = _text(job, ("kind", "project", "location"))
        if problem or not isinstance(job.get("wrapped", False), bool):
            return f"an identity's job {problem or 'wrapped is not a boolean'}"
    return ""


def _finding_problem(finding: Any) -> str:
    if not isinstance(finding, Mapping):
        return "a finding is not an object"
    problem = _text(finding, _FINDING_TEXT, none=True)
    return f"a finding's {problem}" if problem else ""


def _baseline_problem(baseline: Any) -> str:
    if not isinstance(baseline, Mapping):
        return "baseline is not an object"
    problem = _text(baseline, _BASELINE_TEXT)
    if problem:
        return f"baseline.{problem}"
    if "version" in baseline and (
        not isinstance(baseline["version"], int) or isinstance(baseline["version"], bool)
    ):
        return "baseline.version is not an integer"
    if not _strings(baseline.get("nodes", [])):
        return "baseline.nodes is not a list of strings"
    if not _strings(baseline.get("complete", [])):
        return "baseline.complete is not a list of strings"
    snapshot = baseline.get("snapshot", {})
    if not isinstance(snapshot, Mapping):
        return "baseline.snapshot is not an object"
    problem = _text(snapshot, _SNAPSHOT_TEXT)
    if problem:
        return f"baseline.snapshot.{problem}"
    runtime = baseline.get("runtime", {})
    if not isinstance(runtime, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in runtime.items()
    ):
        return "baseline.runtime is not an object of strings"
    posture = baseline.get("posture", {})
    if not isinstance(posture, Mapping):
        return "baseline.posture is not an object"
    for identity, data in posture.items():
        if not isinstance(data, Mapping):
            return f"baseline.posture[{identity!r}] is not an object"
        if not isinstance(data.get("state", ""), str):
            return f"baseline.posture[{identity!r}].state is not a string"
        for name in _POSTURE_LISTS:
            if not _strings(data.get(name, [])):
                return f"baseline.posture[{identity!r}].{name} is not a list of strings"
    return ""


def record_problem(record: Any) -> str:
    """Why ``record`` is not of the shape zt-pipelines writes (empty when it is).

    Fields a reader does not know are allowed (a newer writer may add some); the fields it
    reads must have the writer's types, all the way down.
    """
    if not isinstance(record, Mapping):
        return "not an object"
    problem = _text(record, TEXT_FIELDS)
    if problem:
        return problem
    if "seq" in record and (not isinstance(record["seq"], int) or isinstance(record["seq"], bool)):
        return "seq is not an integer"
    identities = record.get("identities", [])
    if not isinstance(identities, list):
        return "identities is not a list"
    for ident in identities:
        problem = _identity_problem(ident)
        if problem:
            return problem
    findings = record.get("findings", [])
    if not isinstance(findings, list):
        return "findings is not a list"
    for finding in findings:
        problem = _finding_problem(finding)
        if problem:
            return problem
    if "window" in record:
        window = record["window"]
        if not isinstance(window, Mapping) or not isinstance(window.get("until", ""), str):
            return "window is not an object with a text until"
    if "policy" in record:
        policy = record["policy"]
        if not isinstance(policy, Mapping):
            return "policy is not an object"
        problem = _text(policy, _POLICY_TEXT)
        if problem:
            return f"policy.{problem}"
    if "baseline" in record:
        return _baseline_problem(record["baseline"])
    return ""
