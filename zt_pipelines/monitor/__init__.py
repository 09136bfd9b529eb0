"""Continuous verification: after submission, and ever after (issue #12).

Same shape as the pre-submit check: pure models and evaluators here (no IO, the clock passed
in), adapters behind :mod:`zt_pipelines.gcp` (``vertex_jobs``, ``audit_logs``), the IO
orchestration in :mod:`zt_pipelines.monitor.service`, and CLI verbs in
:mod:`zt_pipelines.cli.monitor`.

- :mod:`~zt_pipelines.monitor.expect` — what an approved spec says each task runs as (pure).
- :mod:`~zt_pipelines.monitor.model` — what was observed: a run, its tasks, their jobs (data).
- :mod:`~zt_pipelines.monitor.runs` — compare a run with its approval (pure evaluator).
"""

from __future__ import annotations

from zt_pipelines.monitor.expect import ExpectedTask, expected_tasks
from zt_pipelines.monitor.model import ObservedJob, ObservedRun, ObservedTask
from zt_pipelines.monitor.runs import approvals_for, evaluate_run

__all__ = [
    "ExpectedTask",
    "ObservedJob",
    "ObservedRun",
    "ObservedTask",
    "approvals_for",
    "evaluate_run",
    "expected_tasks",
]
