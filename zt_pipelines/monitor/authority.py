"""Whose rules an approval was judged under (pure): ZT642 / ZT643 for approvals that name
another policy than the expected one, or none (docs/decision-authority.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zt_pipelines.policy.report import Finding, Severity


def policy_findings(
    approval: Mapping[str, Any] | None,
    expected: Sequence[str],
    *,
    resource: str = "",
) -> list[Finding]:
    """ZT642 when ``approval`` was judged under a policy none of whose digests (``sha256``,
    ``rules_sha256``) is in ``expected``; ZT643 when it names no policy. Nothing when no policy
    is expected or there is no approval (other findings say so)."""
    if not expected or approval is None:
        return []
    seq = approval.get("seq", "?")
    policy = approval.get("policy")
    if not isinstance(policy, Mapping) or not any(
        isinstance(policy.get(k), str) and policy.get(k) for k in ("sha256", "rules_sha256")
    ):
        return [
            Finding(
                "ZT643",
                Severity.ERROR,
                f"the approval (seq {seq}) names no policy: whose rules approved it cannot be told",
                resource=resource,
            )
        ]
    named = {str(policy.get(k, "")).lower() for k in ("sha256", "rules_sha256")} - {""}
    wanted = {e.lower() for e in expected}
    if named & wanted:
        return []
    rules = str(policy.get("rules_sha256") or policy.get("sha256"))
    return [
        Finding(
            "ZT642",
            Severity.ERROR,
            f"the approval (seq {seq}) was judged under the policy "
            f"{str(policy.get('source') or '(unnamed)')[:200]} (rules {rules[:12]}…), not the "
            f"organisation's ({', '.join(sorted(e[:12] + '…' for e in wanted))})",
            resource=resource,
        )
    ]
