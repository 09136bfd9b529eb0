"""The public seam other checks use to apply the organisation policy to their findings."""

from __future__ import annotations

from datetime import datetime, timezone

from zt_pipelines.policy.findings import apply_policy
from zt_pipelines.policy.orgpolicy import load_policy
from zt_pipelines.policy.report import Finding, Severity

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def test_severities_suppressions_and_duplicates() -> None:
    policy = load_policy(
        {
            "severities": {"ZT514": "warning"},
            "suppressions": [
                {
                    "code": "ZT522",
                    "step": "train",
                    "justification": "egress proxy migration",
                    "expires": "2026-12-31",
                },
            ],
        }
    )
    zt522 = Finding("ZT522", Severity.ERROR, "egress beyond reach", step="train")
    findings = [
        Finding("ZT514", Severity.ERROR, "vpc services open", resource="//acm/p"),
        Finding("ZT514", Severity.ERROR, "vpc services open", resource="//acm/p"),
        zt522,
        Finding("ZT522", Severity.ERROR, "egress beyond reach", step="ingest"),
        Finding("ZT530", Severity.ERROR, "unreadable"),
    ]
    active, suppressed = apply_policy(findings, policy, now=NOW)
    assert [(f.code, f.severity, f.step) for f in active] == [
        ("ZT514", Severity.WARNING, None),
        ("ZT522", Severity.ERROR, "ingest"),
        ("ZT530", Severity.ERROR, None),
    ]
    assert [s.finding for s in suppressed] == [zt522]
    assert suppressed[0].justification == "egress proxy migration"
    # an expired suppression suppresses nothing
    active, suppressed = apply_policy(
        findings, policy, now=datetime(2027, 1, 2, tzinfo=timezone.utc)
    )
    assert not suppressed and len(active) == 4
