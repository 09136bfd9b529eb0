"""``Evaluator.decide_many`` (what ``evaluate()`` decides requirements with: a granted answer
as its evidence alone, found without a Decision where that is provably the answer) must give
exactly what ``decide()`` gives, on the differential test's random worlds: with and without
deny policies and unreadable reads, with principals indexed (the fast path) and not."""

from __future__ import annotations

import dataclasses
import random

from test_engine_differential import (
    BUCKETS,
    NOW,
    PERMISSIONS,
    SA_PERMISSIONS,
    USERS,
    WORKFORCE,
    Draw,
    _full,
    worlds,
)

from zt_pipelines.policy.engine import Decision, Evaluator
from zt_pipelines.resources import ResourceRef

WORLDS = 300


def test_decide_many_answers_as_decide_does() -> None:
    fast = 0
    for seed in range(WORLDS):
        world, snapshot = worlds(Draw(seed))
        if seed % 2:  # half the worlds without deny policies or unreadable reads: fast path
            snapshot = dataclasses.replace(snapshot, deny_policies=(), unreadable=())
        rng = random.Random(seed)
        principals = [f"serviceAccount:{e}" for e in world.service_accounts]
        principals += [f"user:{u}" for u in USERS] + [WORKFORCE]
        names = [_full(f"bucket:{b}", world) for b in BUCKETS]
        names += [_full(f"project:{p}", world) for p in world.projects]
        names += [_full(f"sa:{e}", world) for e in world.service_accounts]
        names.append("//storage.googleapis.com/not-in-the-snapshot")
        questions = [
            (
                rng.choice(principals),
                ResourceRef(name, rng.choice([None, "data/", "tmp/y.tmp"]))
                if "storage" in name
                else ResourceRef(name),
                rng.choice(PERMISSIONS + SA_PERMISSIONS),
            )
            for name in rng.choices(names, k=12)
        ]
        questions += questions[:3]  # a repeated question is answered the same
        evaluator = Evaluator(snapshot)
        for principal in principals[: len(principals) // 2 + 1]:
            evaluator.member_bindings(principal)  # as evaluate() does for requirement principals
        answers = evaluator.decide_many(questions, now=NOW)
        assert len(answers) == len(questions)
        for (member, resource, permission), got in zip(questions, answers, strict=True):
            want = Evaluator(snapshot).decide(member, resource, permission, now=NOW)
            if want.state == "granted":
                assert got == want.evidence, (seed, member, resource, permission)
                fast += 1
            else:
                assert isinstance(got, Decision) and got == want, (seed, member, resource)
    assert fast > 100  # the worlds do grant: the granted path was exercised
