"""The report's findings are levelled, deduplicated and sorted in one pass when the policy has
no suppression: the result must be what the three steps give one after the other (the same
findings, the same survivor of each duplicate, the same order)."""

from __future__ import annotations

import random

import pytest

from zt_pipelines.policy.findings import _levelled, _levelled_sorted
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES, STRICT, OrgPolicy
from zt_pipelines.policy.report import Evidence, Finding, Severity, sort_findings

CODES = ("ZT200", "ZT201", "ZT210", "ZT215", "ZT103", "ZT400")


def _raw(rng: random.Random) -> list[Finding]:
    out: list[Finding] = []
    for i in range(rng.randint(0, 60)):
        if out and rng.random() < 0.3:  # a duplicate (other evidence, maybe another severity)
            f = rng.choice(out)
            out.append(
                Finding(
                    f.code,
                    rng.choice(list(Severity)),
                    f.message,
                    f.step,
                    f.principal,
                    f.resource,
                    f.permission,
                    (Evidence("binding", detail=f"dup {i}"),),
                )
            )
            continue
        out.append(
            Finding(
                rng.choice(CODES),
                rng.choice(list(Severity)),
                rng.choice(("m", "n", "a longer message")),
                rng.choice((None, "", "s1", "s2")),  # None and "" sort alike, are not alike
                rng.choice((None, "", "serviceAccount:a@p.iam.gserviceaccount.com")),
                rng.choice((None, "//r1", "//r2")),
                rng.choice((None, "", "storage.objects.get")),
                (Evidence("binding", detail=f"first {i}"),),
            )
        )
    return out


@pytest.mark.parametrize("seed", range(300))
def test_one_pass_equals_level_dedupe_then_sort(seed: int) -> None:
    rng = random.Random(seed)
    raw = _raw(rng)
    policy = STRICT
    if rng.random() < 0.5:
        severities = dict(DEFAULT_SEVERITIES)
        for code in rng.sample(CODES, 3):
            severities[code] = rng.choice(list(Severity))
        policy = OrgPolicy(severities=severities)
    expected = sort_findings(_levelled(raw, policy))
    got = _levelled_sorted(raw, policy)
    assert got == expected
    # the same survivor of every duplicate (its evidence tells which one it was)
    assert [f.evidence for f in got] == [f.evidence for f in expected]
    assert [f.severity for f in got] == [policy.severity(f.code) for f in got]
