"""The verification engine: pure IAM evaluation over a snapshot (no IO, no clock).

* :mod:`~zt_pipelines.policy.snapshot` — the snapshot data model;
  :mod:`~zt_pipelines.policy.snapshot_file` — read/write snapshot files.
* :mod:`~zt_pipelines.policy.engine` — ``decide`` (one question) and ``evaluate`` (a report).
* :mod:`~zt_pipelines.policy.requirements` — what every identity of a pipeline must hold.
* :mod:`~zt_pipelines.policy.catalogue` — basic roles and escalation-capable permissions.
* :mod:`~zt_pipelines.policy.orgpolicy` — the organisation policy file.
* :mod:`~zt_pipelines.policy.report` — findings and their renderings (text, JSON, SARIF, HTML).
"""
