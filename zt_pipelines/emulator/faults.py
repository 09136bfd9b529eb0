"""Scripted faults: make chosen emulator methods fail the way Google's APIs fail.

A :class:`Fault` names a method (exact, or a ``fnmatch`` pattern such as ``storage.*``) and what
goes wrong: a status code, a delay, a malformed response body or a connection reset — for the
first ``times`` matching calls, or at random with ``probability`` and a ``seed``.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass

from zt_pipelines.errors import InputError

# Google status code names the emulator can return (google.rpc.Code).
STATUS_CODES = (
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


class FaultSpecError(InputError):
    """A ``--fault`` specification or a :class:`Fault` is malformed."""


@dataclass(frozen=True)
class Fault:
    """One scripted failure.

    Attributes:
        method: the method it applies to (``google.iam.admin.v1.IAM/GetServiceAccount``,
            ``storage.buckets.getIamPolicy``, ...) or an ``fnmatch`` pattern (``*`` = every call).
        code: a Google status code name to answer with (``UNAVAILABLE``, ``RESOURCE_EXHAUSTED``,
            ``PERMISSION_DENIED``, ...); over HTTP it becomes the matching HTTP status.
        times: fail only the first ``times`` matching calls (``None``: no limit).
        probability: fail each matching call with this probability (``None``: always).
        seed: seed for ``probability`` so a run is reproducible.
        delay_ms: wait this long before answering (alone: a slow but correct answer).
        malformed: answer with a body the client cannot parse.
        reset: drop the connection (TCP reset) instead of answering.
    """

    method: str
    code: str | None = None
    times: int | None = None
    probability: float | None = None
    seed: int | None = None
    delay_ms: int = 0
    malformed: bool = False
    reset: bool = False

    def __post_init__(self) -> None:
        where = f"fault for {self.method!r}"
        if not self.method:
            raise FaultSpecError("a fault needs a method name or pattern", where="fault")
        if self.code is not None and self.code not in STATUS_CODES:
            raise FaultSpecError(
                f"unknown status code {self.code!r}",
                where=where,
                fix="use a google.rpc.Code name: " + ", ".join(STATUS_CODES),
            )
        if self.times is not None and self.times < 1:
            raise FaultSpecError("times must be at least 1", where=where)
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise FaultSpecError("probability must be between 0 and 1", where=where)
        if self.delay_ms < 0:
            raise FaultSpecError("delay_ms must not be negative", where=where)
        kinds = (self.code is not None) + self.malformed + self.reset
        if kinds > 1:
            raise FaultSpecError(
                "choose one of code, malformed, reset", where=where, fix="split it in two faults"
            )
        if kinds == 0 and self.delay_ms == 0:
            raise FaultSpecError(
                "the fault does nothing", where=where, fix="set code, delay_ms, malformed or reset"
            )

    def matches(self, method: str) -> bool:
        """Whether this fault applies to ``method``."""
        return self.method == method or fnmatch.fnmatchcase(method, self.method)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse the CLI form ``METHOD=KIND[,times=N][,p=0.3][,seed=1][,delay_ms=N]``.

        ``KIND`` is a status code name, ``malformed``, ``reset`` or ``delay`` (with delay_ms).
        Example: ``google.iam.admin.v1.IAM/GetServiceAccount=UNAVAILABLE,times=2``.
        """
        method, sep, rest = spec.partition("=")  # method names never contain "="
        if not sep or not method or not rest:
            raise FaultSpecError(
                f"cannot parse fault {spec!r}",
                where="--fault",
                fix="write METHOD=KIND[,times=N][,p=P][,seed=S][,delay_ms=MS], "
                "e.g. storage.buckets.get=UNAVAILABLE,times=2",
            )
        kind, *options = rest.split(",")
        fields: dict[str, object] = {}
        if kind == "malformed":
            fields["malformed"] = True
        elif kind == "reset":
            fields["reset"] = True
        elif kind != "delay":
            fields["code"] = kind
        for option in options:
            key, _, value = option.partition("=")
            try:
                if key == "times":
                    fields["times"] = int(value)
                elif key in ("p", "probability"):
                    fields["probability"] = float(value)
                elif key == "seed":
                    fields["seed"] = int(value)
                elif key == "delay_ms":
                    fields["delay_ms"] = int(value)
                else:
                    raise FaultSpecError(f"unknown fault option {key!r}", where=f"--fault {spec}")
            except ValueError as exc:
                raise FaultSpecError(
                    f"fault option {key!r} has a bad value {value!r}", where=f"--fault {spec}"
                ) from exc
        return cls(method=method, **fields)  # type: ignore[arg-type]


class FaultPlan:
    """The faults in force and how often each has fired (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._fired: list[int] = []
        self._rngs: list[random.Random] = []

    def add(self, fault: Fault) -> None:
        """Put ``fault`` in force, after the ones already there."""
        with self._lock:
            self._faults.append(fault)
            self._fired.append(0)
            self._rngs.append(random.Random(fault.seed))

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()
            self._fired.clear()
            self._rngs.clear()

    def __bool__(self) -> bool:
        """Whether any fault is in force."""
        return bool(self._faults)

    def draw(self, method: str) -> Fault | None:
        """The fault that fires for this call of ``method``, if any (first match wins)."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if not fault.matches(method):
                    continue
                if fault.times is not None and self._fired[index] >= fault.times:
                    continue
                if fault.probability is not None and (
                    self._rngs[index].random() >= fault.probability
                ):
                    continue
                self._fired[index] += 1
                return fault
            return None
