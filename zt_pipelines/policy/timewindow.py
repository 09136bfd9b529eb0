"""Grants that stop holding while the run or schedule still needs them (ZT223) — pure.

A condition on ``request.time`` is evaluated by Google when the step makes its request, not
when the pipeline is checked: a step runs after submission (queueing, upstream steps, hours of
training) and a schedule keeps creating runs until its end time. A need is proven only if its
grant holds over the whole window the identity will use it in:

- a run: from the check to the check plus the run's timeout — by default
  :data:`DEFAULT_RUN_WINDOW` (seven days, the default timeout of the Vertex AI custom jobs
  each step runs as);
- a schedule: until its end time; an open-ended schedule must hold for ever.

Every requirement granted at the check time is decided again at probe times inside the window
(each timestamp a time condition of the snapshot names, a second either side, and the end of
the window); the first probe where it is no longer granted — an expiring allow binding, a deny
rule that starts, ... — is a ZT223 error naming when it lapses. Only checks whose decisions
depended on a time condition pay for the probes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from zt_pipelines.policy.conditions import parse_rfc3339
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.requirements import Requirement, RunWindow
from zt_pipelines.resources import display_uri

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Decision, Evaluator

#: the window of a run whose timeout is not known: Vertex AI's default custom-job timeout
DEFAULT_RUN_WINDOW = timedelta(days=7)
#: "for ever" as a probe: the last time a timestamp can name
_FOREVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)


def default_window(now: datetime) -> RunWindow:
    """The window of a run whose timeout is not known (:data:`DEFAULT_RUN_WINDOW`)."""
    return RunWindow(now + DEFAULT_RUN_WINDOW, "a run (default window: 7 days)")


def schedule_window(end_time: str | datetime | None) -> RunWindow:
    """The window of a schedule: until ``end_time`` (RFC 3339 text or a datetime), or for
    ever when it has none. An end time that does not parse is taken as none (fail closed)."""
    if isinstance(end_time, datetime):
        end: datetime | None = end_time
    elif end_time:
        try:
            end = parse_rfc3339(str(end_time))
        except ValueError:
            end = None
    else:
        end = None
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    if end is None:
        return RunWindow(None, "an open-ended schedule (its runs need the grant for ever)")
    return RunWindow(end, f"the schedule, until its end time {_iso(end)}")


_DURATION = re.compile(r"^([0-9]{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_window(text: str, now: datetime) -> RunWindow:
    """The window ``--holds-until`` names: ``forever`` (an open-ended schedule), a duration
    from ``now`` (``12h``, ``3d``: a run's timeout) or an ISO 8601 time (a run's or a
    schedule's end).

    Raises:
        ValueError: none of these.
    """
    value = text.strip()
    if value.lower() == "forever":
        return schedule_window(None)
    match = _DURATION.match(value)
    if match is not None:
        span = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return RunWindow(now + span, f"the run (up to {value} from the check)")
    try:
        end = parse_rfc3339(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither 'forever', a duration (12h, 3d) nor an ISO 8601 time"
        ) from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return RunWindow(end, f"the run or schedule, until {_iso(end)}")


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def probe_times(ev: Evaluator, now: datetime, window: RunWindow) -> list[datetime]:
    """The times inside ``(now, end]`` at which a condition the decisions depended on and that
    reads ``request.time`` can change its answer (each timestamp it names, a second either
    side), and the end; empty when no such condition was evaluated. Read from the parsed
    conditions (any spelling of ``request.time``, escaped timestamp text), never their text."""
    if now.tzinfo is None:  # as the condition evaluator reads a naive time: UTC
        now = now.replace(tzinfo=timezone.utc)
    end = window.until or _FOREVER
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    found: set[datetime] = set()
    any_time = False
    for expression in ev.conditions.expressions_seen():
        reads, stamps = ev.conditions.time_points(expression)
        if not reads:
            continue
        any_time = True
        for t in stamps:
            found.update(x for x in (t - _SECOND, t, t + _SECOND) if now < x <= end)
    if not any_time:
        return []
    found.add(end)
    return sorted(found)


def later_times(
    ev: Evaluator, expression: str, now: datetime, window: RunWindow | None
) -> list[datetime]:
    """The times inside the window after ``now`` at which ``expression`` (one condition) can
    change its answer: each timestamp it names (±1 s) and the window's end; empty when it does
    not read ``request.time``. Used to judge a grant that STARTS inside the window (ZT214)."""
    reads, stamps = ev.conditions.time_points(expression)
    if not reads:
        return []
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    window = window or default_window(now)
    end = window.until or _FOREVER
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    found = {x for t in stamps for x in (t - _SECOND, t, t + _SECOND) if now < x <= end}
    found.add(end)
    return sorted(found)


def lapse_findings(
    requirements: Sequence[Requirement],
    decisions: Sequence[tuple[Evidence, ...] | Decision],
    ev: Evaluator,
    *,
    now: datetime,
    window: RunWindow | None,
) -> list[Finding]:
    """ZT223 for every requirement granted at ``now`` that is not granted at some time of the
    window (the earliest such time named).

    Args:
        requirements: the pipeline's requirements.
        decisions: their decisions at ``now`` (a granted one is its evidence tuple).
        ev: the evaluator over the snapshot.
        now: the check time.
        window: until when the grants must hold (``None``: :func:`default_window`).
    """
    if now.tzinfo is None:  # as the condition evaluator reads a naive time: UTC
        now = now.replace(tzinfo=timezone.utc)
    window = window or default_window(now)
    probes = probe_times(ev, now, window)
    if not probes:
        return []
    todo = [
        (r, d)
        for r, d in zip(requirements, decisions, strict=True)
        if isinstance(d, tuple) and r.kind != "submit"  # submitting happens at the check
    ]
    if not todo:
        return []
    lapsed: dict[int, datetime] = {}
    for t in probes:
        open_ = [i for i in range(len(todo)) if i not in lapsed]
        if not open_:
            break
        later = ev.decide_many(
            [(todo[i][0].principal, todo[i][0].resource, todo[i][0].permission) for i in open_],
            now=t,
        )
        for i, got in zip(open_, later, strict=True):
            if not isinstance(got, tuple):
                lapsed[i] = t
    out: list[Finding] = []
    horizon = "for ever" if window.until is None else f"until {_iso(window.until)}"
    for i, t in sorted(lapsed.items()):
        r, evidence = todo[i]
        assert isinstance(evidence, tuple)
        conditions = [e.condition for e in evidence if e.condition]
        where = display_uri(r.resource.name, r.resource.prefix)
        out.append(
            Finding(
                "ZT223",
                DEFAULT_SEVERITIES["ZT223"],
                f"{r.principal} holds {r.permission} on {where} now, but the grant expires "
                f"(no longer granted at {_iso(t)}) while {window.why} still needs it "
                f"({horizon}): not proven for the run"
                + (f"; condition: {conditions[0]}" if conditions else ""),
                step=r.step,
                principal=r.principal,
                resource=r.resource.name,
                permission=r.permission,
                evidence=(
                    *evidence,
                    Evidence("condition", detail=f"not granted at {_iso(t)} ({window.why})"),
                ),
            )
        )
    return out
