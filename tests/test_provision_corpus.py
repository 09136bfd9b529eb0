"""Every real compiled pipeline of the corpus plans: one derived SA per step, sane outputs."""

from __future__ import annotations

from pathlib import Path

import hcl2
import pytest

import zt_pipelines as zt
from zt_pipelines.provision.render import render_terraform

PROJECT = "corpus-proj"
PIPE_SA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"


@pytest.mark.shared
def test_every_corpus_pipeline_plans(corpus_dir: Path) -> None:
    files = sorted(corpus_dir.rglob("*.yaml"))
    assert len(files) >= 100
    steps_seen = 0
    for index, path in enumerate(files):
        plan = zt.plan(
            path,
            project=PROJECT,
            pipeline_service_account=PIPE_SA,
            pipeline_root="gs://corpus-root/runs",
        )
        step_accounts = plan.step_accounts
        steps = [s for a in step_accounts for s in a.steps]
        assert len(steps) == len(set(steps)), path  # no step in two accounts
        assert all(a.state == "create" for a in plan.accounts), path
        for account in step_accounts:
            # artifacts under the root, and the pipeline SA may act as it — on the SA itself
            mine = [g for g in plan.grants if g.member == f"serviceAccount:{account.email}"]
            assert mine and all(g.resource == "//storage.googleapis.com/corpus-root" for g in mine)
            assert any(
                g.permissions == ("iam.serviceAccounts.actAs",)
                and g.member == f"serviceAccount:{PIPE_SA}"
                and g.resource.endswith(f"/serviceAccounts/{account.email}")
                for g in plan.grants
            ), path
        steps_seen += len(steps)
        if index % 10 == 0:  # parsing HCL is the slow part: a sample is enough here
            assert hcl2.loads(render_terraform(plan))
    print(f"\n{len(files)} corpus pipelines planned, {steps_seen} step identities")
