"""Allow policies between the snapshot model and the two wire forms (iam.v1 protobuf, JSON)."""

from __future__ import annotations

import hashlib
from typing import Any

from google.iam.v1 import policy_pb2
from google.type import expr_pb2

from zt_pipelines.emulator.world import EmulatorError, etag_bytes
from zt_pipelines.policy.conditions import ConditionError, ConditionEvaluator
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Condition


def _version(policy: AllowPolicy) -> int:
    if any(b.condition is not None for b in policy.bindings):
        return 3
    return policy.version or 1


def check_requested_version(version: int) -> None:
    """Only policy versions 0, 1 and 3 exist.

    Raises:
        EmulatorError: INVALID_ARGUMENT for any other version.
    """
    if version not in (0, 1, 3):
        raise EmulatorError(
            "INVALID_ARGUMENT", f"invalid policy version {version}: valid values are 0, 1 and 3"
        )


_CEL = ConditionEvaluator()


def check_conditions(policy: AllowPolicy) -> None:
    """IAM refuses a policy whose condition does not parse or type-check as a boolean CEL
    expression (such a binding is never stored, so it never grants).

    Raises:
        EmulatorError: INVALID_ARGUMENT naming the binding's role and why.
    """
    for binding in policy.bindings:
        if binding.condition is None:
            continue
        try:
            _CEL.check_syntax(binding.condition.expression)
        except ConditionError as exc:
            raise EmulatorError(
                "INVALID_ARGUMENT",
                f"Condition for role {binding.role} is invalid: {exc}",
            ) from None


def check_writable(policy: AllowPolicy, version: int) -> None:
    """IAM refuses conditional bindings in a policy written with a version below 3, and
    conditions that are not valid CEL (:func:`check_conditions`).

    Raises:
        EmulatorError: INVALID_ARGUMENT.
    """
    check_requested_version(version)
    check_conditions(policy)
    if version < 3 and any(b.condition is not None for b in policy.bindings):
        raise EmulatorError(
            "INVALID_ARGUMENT",
            "a policy with conditional role bindings must be set with version 3",
        )


def as_dataset_version_1(policy: AllowPolicy) -> AllowPolicy:
    """What a BigQuery ``datasets.get`` below ``accessPolicyVersion=3`` returns: each
    conditional entry's role gets ``_with_conditionalbinding_<hash>``, its condition hidden."""
    bindings = []
    for binding in policy.bindings:
        if binding.condition is None:
            bindings.append(binding)
            continue
        seed = f"{binding.condition.expression}\n{binding.condition.title}".encode()
        digest = hashlib.sha256(seed).hexdigest()[:10]
        bindings.append(
            Binding(f"{binding.role}_with_conditionalbinding_{digest}", binding.members)
        )
    return AllowPolicy(bindings=tuple(bindings), etag=policy.etag, version=1)


def as_version_1(policy: AllowPolicy) -> AllowPolicy:
    """What a version-1 reader sees: each conditional binding's role gets IAM's
    ``_withcond_<hash>`` suffix and its condition is hidden."""
    bindings = []
    for binding in policy.bindings:
        if binding.condition is None:
            bindings.append(binding)
            continue
        seed = f"{binding.condition.expression}\n{binding.condition.title}".encode()
        digest = hashlib.sha256(seed).hexdigest()[:20]
        bindings.append(Binding(f"{binding.role}_withcond_{digest}", binding.members))
    return AllowPolicy(bindings=tuple(bindings), etag=policy.etag, version=1)


def to_proto(policy: AllowPolicy, requested_version: int = 3) -> policy_pb2.Policy:
    """The ``google.iam.v1.Policy`` message for ``policy`` as a reader asking for
    ``requested_version`` sees it (conditions need version 3)."""
    if requested_version < 3:
        policy = as_version_1(policy)
    message = policy_pb2.Policy(version=_version(policy), etag=etag_bytes(policy.etag))
    for binding in policy.bindings:
        entry = message.bindings.add(role=binding.role, members=list(binding.members))
        if binding.condition is not None:
            entry.condition.CopyFrom(
                expr_pb2.Expr(
                    expression=binding.condition.expression,
                    title=binding.condition.title,
                    description=binding.condition.description,
                )
            )
    return message


def from_proto(message: policy_pb2.Policy) -> AllowPolicy:
    """The snapshot form of a ``google.iam.v1.Policy`` a client sent."""
    bindings = []
    for entry in message.bindings:
        condition = None
        if entry.HasField("condition"):
            condition = Condition(
                expression=entry.condition.expression,
                title=entry.condition.title,
                description=entry.condition.description,
            )
        bindings.append(Binding(role=entry.role, members=tuple(entry.members), condition=condition))
    return AllowPolicy(bindings=tuple(bindings), version=message.version or 1)


def to_json(policy: AllowPolicy) -> dict[str, Any]:
    """The JSON form (Storage, BigQuery and other REST APIs)."""
    bindings: list[dict[str, Any]] = []
    for binding in policy.bindings:
        entry: dict[str, Any] = {"role": binding.role, "members": list(binding.members)}
        if binding.condition is not None:
            entry["condition"] = {
                "expression": binding.condition.expression,
                "title": binding.condition.title,
                "description": binding.condition.description,
            }
        bindings.append(entry)
    return {"version": _version(policy), "etag": policy.etag, "bindings": bindings}


def from_json(body: Any, where: str) -> AllowPolicy:
    """The snapshot form of a JSON policy a client sent.

    Raises:
        EmulatorError: INVALID_ARGUMENT when the body is not a policy.
    """
    if not isinstance(body, dict):
        raise EmulatorError("INVALID_ARGUMENT", f"{where}: the policy must be a JSON object")
    bindings = []
    for entry in body.get("bindings") or []:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("role"), str)
            or not isinstance(entry.get("members", []), list)
        ):
            raise EmulatorError("INVALID_ARGUMENT", f"{where}: malformed binding {entry!r}")
        condition = None
        raw = entry.get("condition")
        if isinstance(raw, dict):
            condition = Condition(
                expression=str(raw.get("expression", "")),
                title=str(raw.get("title", "")),
                description=str(raw.get("description", "")),
            )
        members = tuple(str(m) for m in entry.get("members", []))
        if members:
            bindings.append(Binding(role=entry["role"], members=members, condition=condition))
    version = body.get("version", 1)
    return AllowPolicy(bindings=tuple(bindings), version=int(version) if version else 1)
