"""What an approval saw, recorded with it for the checks after submission (pure).

The drop-in job computes this when it approves and writes it into the approval's audit record
(the ``baseline`` key, covered by the hash chain):

- ``posture``: for every approved identity, its grants, keys, state, deny policies and the
  identities it can become — in the IAM state the decision was taken on. Drift compares
  today's posture with it, so a grant added between the approval and the first drift check is
  caught even when it does not make the approval fail (docs/monitoring.md).
- ``nodes``: the resources that state held (drift compares grants on those, plus any node
  today's needs reach that the approval did not see).
- ``complete``: the identities the state held every grant of (a complete binding search):
  for them drift compares grants on every node read today, not only on ``nodes``.
- ``pipeline_root``: drift re-evaluates the pipeline root's implicit needs too.
- ``runtime``: a sha256 per part of the request's runtime config (each parameter value, the
  pipeline root, failure policy, each user label, network, reserved ranges, CMEK key) and
  ``runtime_sha256`` over them. ``verify-run`` recomputes the parts from the run Vertex holds
  and names each one that differs (ZT615). Values are hashed, never stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from zt_pipelines.fingerprint import DECISION_LABELS, SPEC_LABELS, VERIFIED_LABEL
from zt_pipelines.monitor.drift import Posture, posture_of
from zt_pipelines.policy.engine import Evaluator
from zt_pipelines.policy.snapshot import Snapshot

BASELINE_VERSION = 2
#: PipelineJob fields not hashed as ``request FIELD``: output-only, or compared on their own
#: (spec hash, service account, runtime config, labels, network, ranges, key); every other
#: field the request sets — ``psc_interface_config``, ``template_uri``, a field added to the
#: API later — is covered by default
_NOT_REQUEST_PARTS = frozenset(
    {
        "name",
        "display_name",
        "create_time",
        "start_time",
        "end_time",
        "update_time",
        "state",
        "job_detail",
        "error",
        "template_metadata",
        "schedule_name",
        "satisfies_pzs",
        "satisfies_pzi",
        "pipeline_spec",
        "service_account",
        "runtime_config",
        "labels",
        "network",
        "reserved_ip_ranges",
        "encryption_spec",
    }
)
#: parts whose names start so: hashed from baseline version 2 on
REQUEST_PART = "request "
#: labels that say nothing about what runs: ours (they carry the hashes themselves) and the
#: ones Vertex sets on its own (billing ids on every pipeline run)
_IGNORED_LABELS = frozenset((*SPEC_LABELS, *DECISION_LABELS, VERIFIED_LABEL))
_SYSTEM_LABEL_PREFIXES = ("vertex-ai-pipelines-", "goog-")


def _sha(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def runtime_parts(
    runtime_config: Mapping[str, Any],
    *,
    labels: Mapping[str, str],
    network: str = "",
    reserved_ip_ranges: Iterable[str] = (),
    kms_key: str = "",
    request: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """A sha256 per part of what a run is started with, besides its spec and identity.

    Args:
        runtime_config: the ``RuntimeConfig`` as JSON with proto field names
            (``parameter_values``, ``gcs_output_directory``, ``failure_policy`` ...).
        labels: the job's labels (zt-pipelines' own and Vertex's system labels are left out).
        network: the job's VPC network.
        reserved_ip_ranges: the job's reserved IP ranges.
        kms_key: the job's CMEK key.
        request: the whole ``PipelineJob`` as JSON with proto field names: every field it
            sets that is not output-only or compared above (e.g. ``psc_interface_config``)
            becomes a ``request FIELD`` part.
    """
    parts: dict[str, str] = {}
    for key, value in runtime_config.items():
        if key == "parameter_values" and isinstance(value, Mapping):
            for name, parameter in value.items():
                parts[f"parameter {name}"] = _sha(parameter)
        elif value not in (None, "", [], {}):
            parts[f"runtime {key}"] = _sha(value)
    for key, value in labels.items():
        if key in _IGNORED_LABELS or key.startswith(_SYSTEM_LABEL_PREFIXES):
            continue
        parts[f"label {key}"] = _sha(value)
    for name, value in (
        ("network", network),
        ("reserved_ip_ranges", sorted(reserved_ip_ranges)),
        ("kms_key", kms_key),
    ):
        if value:
            parts[name] = _sha(value)
    for key, value in (request or {}).items():
        if key not in _NOT_REQUEST_PARTS and value not in (None, "", [], {}, False):
            parts[f"{REQUEST_PART}{key}"] = _sha(value)
    return parts


def comparable(baseline: Mapping[str, Any], observed: dict[str, str]) -> dict[str, str]:
    """``observed`` without the ``request`` parts when the approval's baseline predates them
    (version 1): such an approval says nothing about those fields."""
    version = baseline.get("version")
    if isinstance(version, int) and version >= 2:
        return observed
    return {k: v for k, v in observed.items() if not k.startswith(REQUEST_PART)}


def request_fields(job: Any) -> dict[str, Any]:
    """The fields of a ``PipelineJob`` protobuf (raw or proto-plus) that :func:`runtime_parts`
    hashes as ``request`` parts, as JSON with proto field names (the spec and task details are
    never converted: only the fields set outside :data:`_NOT_REQUEST_PARTS`)."""
    from google.protobuf import json_format
    from google.protobuf.descriptor import FieldDescriptor

    raw = job if hasattr(job, "ListFields") else type(job).pb(job)
    out: dict[str, Any] = {}
    for descriptor, value in raw.ListFields():
        if descriptor.name in _NOT_REQUEST_PARTS:
            continue
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            if descriptor.label == FieldDescriptor.LABEL_REPEATED:
                out[descriptor.name] = [
                    json_format.MessageToDict(v, preserving_proto_field_name=True) for v in value
                ]
            else:
                out[descriptor.name] = json_format.MessageToDict(
                    value, preserving_proto_field_name=True
                )
        elif descriptor.label == FieldDescriptor.LABEL_REPEATED:
            out[descriptor.name] = list(value)
        else:
            out[descriptor.name] = value
    return out


def runtime_sha256(parts: Mapping[str, str]) -> str:
    """One sha256 over :func:`runtime_parts`."""
    return _sha(dict(parts))


def runtime_differences(approved: Mapping[str, Any], observed: Mapping[str, str]) -> list[str]:
    """What differs between the approved and the observed parts, one phrase each."""
    out = []
    for part in sorted(set(approved) | set(observed)):
        if part not in observed:
            out.append(f"{part} was approved but is not set")
        elif part not in approved:
            out.append(f"{part} is set but was not approved")
        elif approved[part] != observed[part]:
            out.append(f"{part} differs")
    return out


def approval_baseline(
    snapshot: Snapshot,
    identities: Iterable[str],
    *,
    now: datetime,
    pipeline_root: str | None,
    runtime: Mapping[str, str],
    source: str,
) -> dict[str, Any]:
    """The ``baseline`` of an approval record.

    Args:
        snapshot: the IAM state the approval was decided on.
        identities: the pipeline and step service accounts.
        now: the decision's time (conditions are evaluated at it).
        pipeline_root: the run's pipeline root (``None``: none).
        runtime: :func:`runtime_parts` of the approved request.
        source: ``live`` or ``snapshot`` (where the IAM state came from).
    """
    evaluator = Evaluator(snapshot)
    emails = sorted({e.lower() for e in identities if e})
    return {
        "version": BASELINE_VERSION,
        "source": source,
        "pipeline_root": pipeline_root or "",
        "nodes": sorted(snapshot.nodes),
        # identities whose every grant that state held (a complete binding search): a grant
        # to them on a node outside ``nodes`` today is new, not merely unread then
        "complete": [e for e in emails if f"serviceAccount:{e}" in snapshot.complete_bindings_for],
        "posture": {e: posture_dict(posture_of(e, evaluator, now=now)) for e in emails},
        "runtime": dict(sorted(runtime.items())),
        "runtime_sha256": runtime_sha256(runtime),
    }


def posture_dict(posture: Posture) -> dict[str, Any]:
    """A posture as the baseline stores it."""
    return {
        "state": posture._state(),
        "keys": list(posture.keys),
        "grants": list(posture.grants),
        "deny": list(posture.deny),
        "act_as": list(posture.can_act_as),
    }


def posture_from(identity: str, data: Any) -> Posture | None:
    """A posture back from the baseline (``None`` when the entry is not one)."""
    if not isinstance(data, Mapping):
        return None

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key) or ()
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    state = str(data.get("state", ""))
    if state not in ("enabled", "disabled", "missing"):
        return None
    return Posture(
        identity,
        exists=state != "missing",
        disabled=state == "disabled",
        keys=strings("keys"),
        grants=strings("grants"),
        deny=strings("deny"),
        can_act_as=strings("act_as"),
    )


def recorded_baseline(record: Mapping[str, Any]) -> tuple[dict[str, Posture] | None, str]:
    """The postures an approval record holds, or ``None`` and why it holds none."""
    baseline = record.get("baseline")
    if baseline is None:
        return None, "the approval record holds no posture baseline (recorded before it was kept)"
    if not isinstance(baseline, Mapping) or not isinstance(baseline.get("posture"), Mapping):
        reason = baseline.get("unavailable") if isinstance(baseline, Mapping) else None
        return None, f"the approval's posture baseline is unavailable ({reason or 'malformed'})"
    out: dict[str, Posture] = {}
    for identity, data in baseline["posture"].items():
        posture = posture_from(str(identity), data)
        if posture is None:
            return None, f"the approval's posture baseline of {identity} is malformed"
        out[str(identity)] = posture
    return out, ""


def completely_searched(record: Mapping[str, Any]) -> frozenset[str]:
    """The identities whose every grant the approval's IAM state held (``complete``)."""
    baseline = record.get("baseline")
    found = baseline.get("complete") if isinstance(baseline, Mapping) else None
    if not isinstance(found, list):
        return frozenset()
    return frozenset(str(e).lower() for e in found if isinstance(e, str))


def restricted(snapshot: Snapshot, nodes: Iterable[str]) -> Snapshot:
    """``snapshot`` with only ``nodes`` and the deny policies attached to them: today's state
    over what the approval saw, so a wider read today is not taken for a wider grant."""
    keep = set(nodes)
    return replace(
        snapshot,
        nodes={k: v for k, v in snapshot.nodes.items() if k in keep},
        deny_policies=tuple(
            p for p in snapshot.deny_policies if _attached_node(p.attachment_point) in keep
        ),
    )


def _attached_node(attachment_point: str) -> str:
    """The node name of a deny policy's attachment point (URL-encoded or not)."""
    from urllib.parse import unquote

    return "//" + unquote(attachment_point).lstrip("/")


def scope(snapshot: Snapshot, resources: Iterable[str]) -> set[str]:
    """``resources`` and every ancestor of them that ``snapshot`` knows."""
    out: set[str] = set()
    for name in resources:
        seen = 0
        current: str | None = name
        while current and current not in out and seen < 64:
            out.add(current)
            node = snapshot.nodes.get(current)
            current = node.parent if node is not None else None
            seen += 1
    return out
