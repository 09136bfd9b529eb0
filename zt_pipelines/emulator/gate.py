"""The one path every emulated call takes: latency, scripted faults, the call, the log entry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zt_pipelines.emulator.faults import FaultPlan
from zt_pipelines.emulator.records import RequestLog, RequestRecord
from zt_pipelines.emulator.world import EmulatorError

_LOG = logging.getLogger("zt_pipelines.emulator")


@dataclass(frozen=True)
class Outcome:
    """What the transport must send back: a value, an error, a malformed body or a reset."""

    value: Any = None
    error: EmulatorError | None = None
    malformed: bool = False
    reset: bool = False


class Gate:
    """Applies latency and faults around one call and records it in the request log.

    Args:
        log: where records go.
        faults: the faults in force.
        latency_ms: added to every call.
        stopping: set when the emulator stops, so waits end at once.
    """

    def __init__(
        self, log: RequestLog, faults: FaultPlan, latency_ms: int, stopping: threading.Event
    ) -> None:
        self.log = log
        self.faults = faults
        self.latency_ms = latency_ms
        self._stopping = stopping
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Calls that have arrived and not yet been answered."""
        with self._lock:
            return self._in_flight

    def round_trip(self) -> None:
        """The latency of one request that carries several calls (a batch request)."""
        self._wait(self.latency_ms)

    def _wait(self, ms: int) -> None:
        if ms > 0:
            self._stopping.wait(ms / 1000.0)

    def call(
        self,
        *,
        api: str,
        method: str,
        target: str,
        caller: str | None,
        write: bool,
        run: Callable[[], Any],
        batched: bool = False,
    ) -> Outcome:
        """Run ``run`` under latency and faults; never raises for Google errors.

        ``batched``: a call inside a batch request, whose round trip is the batch's (see
        :meth:`round_trip`); recorded as such.
        """
        with self._lock:
            self._in_flight += 1
        try:
            return self._call(api, method, target, caller, write, run, batched)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _call(
        self,
        api: str,
        method: str,
        target: str,
        caller: str | None,
        write: bool,
        run: Callable[[], Any],
        batched: bool,
    ) -> Outcome:
        # the call is answered on arrival and its answer held for the latency (and a delay
        # fault's time): a network's round trip, as the client sees it. Holding the call
        # first instead would wake every held call at once and answer them one by one: a
        # queue at the end of each wave that Google's servers do not have.
        fault = self.faults.draw(method) if self.faults else None
        outcome: Outcome
        if fault is not None and fault.reset:
            outcome, status = Outcome(reset=True), "RESET"
        elif fault is not None and fault.code is not None:
            error = EmulatorError(fault.code, f"injected fault: {fault.code} for {method}")
            outcome, status = Outcome(error=error), fault.code
        elif fault is not None and fault.malformed:
            outcome, status = Outcome(malformed=True), "MALFORMED"
        else:
            try:
                outcome, status = Outcome(value=run()), "OK"
            except EmulatorError as exc:
                outcome, status = Outcome(error=exc), exc.code
            except Exception as exc:  # an emulator bug: answer INTERNAL, never hang the client
                _LOG.exception("emulator error in %s", method)
                error = EmulatorError("INTERNAL", f"emulator error in {method}: {exc!r}")
                outcome, status = Outcome(error=error), "INTERNAL"
        self._wait((0 if batched else self.latency_ms) + (fault.delay_ms if fault else 0))
        self.log.append(
            RequestRecord(
                api=api,
                method=method,
                target=target,
                caller=caller or "",
                status=status,
                write=write,
                batched=batched,
            )
        )
        return outcome
