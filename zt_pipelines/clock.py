"""Whose time a decision is taken at: the machine's (IO edge, see docs/decision-authority.md).

Waiver expiry, condition evaluation and the time an audit record carries all come from one
place. A caller may still pass a time (``clock=`` on the drop-in job, ``now=`` on
:func:`zt_pipelines.check`, ``--now`` on the CLI) — tests need a fixed one and a reviewer may
ask "what if this ran in July?" — but a time more than :data:`TOLERANCE` away from the
machine's clock is a *what-if*: the report refuses (ZT405) and every record keeps the machine's
time beside the one asked for. Only a process that sets ``ZT_TEST_CLOCK=1`` (a test suite)
takes a far time as the decision time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

TOLERANCE = timedelta(minutes=5)
"""How far a given time may be from the machine's and still be "now" (clock skew, a slow run)."""

TEST_CLOCK_ENV = "ZT_TEST_CLOCK"
"""Set to ``1`` by test suites: a given time decides even far from the machine's."""


def machine_now() -> datetime:
    """The machine's clock, in UTC."""
    return datetime.now(timezone.utc)


def is_test_clock() -> bool:
    """Whether this process is a test suite that fixes the time (``ZT_TEST_CLOCK=1``)."""
    return os.environ.get(TEST_CLOCK_ENV, "") == "1"


@dataclass(frozen=True)
class DecisionTime:
    """The time a decision is judged at, and the machine's time when it was read.

    Attributes:
        judged_at: what expiry and conditions are evaluated at (the given time, if any).
        machine: the machine's clock when the decision time was taken.
    """

    judged_at: datetime
    machine: datetime

    @property
    def far(self) -> bool:
        """The given time is more than :data:`TOLERANCE` from the machine's."""
        return abs(self.judged_at - self.machine) > TOLERANCE

    @property
    def what_if(self) -> bool:
        """A far time outside a test suite: the decision never allows (ZT405)."""
        return self.far and not is_test_clock()


def decision_time(given: datetime | None) -> DecisionTime:
    """The decision time for ``given`` (``None``: the machine's clock); a naive time is UTC.

    Raises:
        InputError: ``given`` is not a datetime (a clock returning anything else).
    """
    machine = machine_now()
    if given is None:
        return DecisionTime(machine, machine)
    if not isinstance(given, datetime):
        from zt_pipelines.errors import InputError

        raise InputError(
            f"the time given is a {type(given).__name__}, not a datetime",
            where="clock= / now=",
            fix="pass a timezone-aware datetime (or nothing: the machine's clock)",
        )
    if given.tzinfo is None:
        given = given.replace(tzinfo=timezone.utc)
    return DecisionTime(given, machine)


def what_if_message(judged: DecisionTime, *, what: str) -> str:
    """The ZT405 message for a decision judged far from the machine's clock; ``what`` is
    what was read as of that time."""
    off = judged.judged_at - judged.machine
    direction = "ahead of" if off.total_seconds() > 0 else "behind"
    return (
        f"judged as of {judged.judged_at.isoformat()}, {_span(abs(off))} {direction} the "
        f"machine's clock ({judged.machine.isoformat(timespec='seconds')}): {what} — a "
        "what-if, never an approval"
    )


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def stamp(when: datetime) -> str:
    """A time as the audit log writes it (UTC, milliseconds)."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
