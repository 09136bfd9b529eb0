"""The ZT102 waivers a reviewer would paste into a policy file, from a report.

``zt-pipelines check --print-waivers`` prints them: one suppression per ZT102 step, naming
the step and the ``upstream`` digest of what feeds its pasted values, with the inputs and
their origins as comments. A finding nobody has waived yet gets a placeholder justification
and expiry that the policy loader refuses (:data:`~zt_pipelines.policy.orgpolicy.FILL_IN`),
so nothing is waived until a person writes why; a finding already waived keeps its waiver's
text. Pure: a report in, YAML text out.
"""

from __future__ import annotations

import json

from zt_pipelines.policy.findings import upstream_of
from zt_pipelines.policy.orgpolicy import FILL_IN, STEP_WAIVER_ONLY
from zt_pipelines.policy.report import Finding, Report

__all__ = ["waivers_yaml"]

_ORIGIN = "input "


def waivers_yaml(report: Report) -> str:
    """The ``suppressions:`` entries waiving each ZT102 step of ``report`` as it was checked.

    Args:
        report: a check's report (active and suppressed findings are both listed).

    Returns:
        YAML text for a policy file; empty entries (``suppressions: []``) when no step
        pastes a run-time value.
    """
    rows: list[tuple[Finding, str, str]] = [
        (
            f,
            f"{FILL_IN}: who reviewed these inputs' producers, and why they are safe",
            f"{FILL_IN}: YYYY-MM-DD",
        )
        for f in report.findings
        if f.code in STEP_WAIVER_ONLY
    ]
    rows += [
        (s.finding, s.justification, s.expires)
        for s in report.suppressed
        if s.finding.code in STEP_WAIVER_ONLY
    ]
    lines = [
        f"# ZT102 waivers for pipeline {_comment(report.pipeline)} as checked "
        f"{_comment(report.checked_at)}.",
        "# Review where each step's pasted inputs come from, then fill in the justification and",
        "# expiry: an entry still holding FILL IN does not load. A waiver matches only while the",
        "# step is fed exactly as shown (its upstream digest).",
    ]
    entries = []
    for finding, justification, expires in sorted(rows, key=lambda r: r[0].step or ""):
        upstream = upstream_of(finding)
        entry = [f"  # {_comment(finding.step or '')} pastes:"]
        entry += [
            f"  #   {_comment(e.detail)}"
            for e in finding.evidence
            if e.kind == "identity" and e.detail.startswith(_ORIGIN)
        ]
        if upstream is None:  # untraced: no waiver can match it, say so instead
            entry.append("  #   (its upstream was not traced: it cannot be waived)")
            entries.append("\n".join(entry))
            continue
        entry += [
            "  - code: ZT102",
            f"    step: {json.dumps(finding.step)}",
            f"    upstream: {json.dumps(upstream)}",
            f"    justification: {json.dumps(justification)}",
            f"    expires: {json.dumps(expires)}",
        ]
        entries.append("\n".join(entry))
    if not any("- code:" in e for e in entries):
        lines.append("suppressions: []")
        lines += entries
    else:
        lines.append("suppressions:")
        lines += entries
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    """Text safe on one YAML comment line (a template's names cannot end the comment)."""
    return "".join(c if c.isprintable() else "?" for c in text)
