"""``plan --prune`` and the paths other principals hold onto the step identities.

Who may act as a step identity is part of that identity: only the pipeline identity may (its
actAs, which the plan grants). With ``--prune`` the plan removes, from each step identity's own
allow policy, every other principal's binding it does not need — a previous pipeline identity's
actAs, a person's token creator — so ``check`` has no such path left to refuse (ZT220). Never
removed: the plan's pipeline identity's bindings (other pipelines may share it), a deputy
service agent's of the project's own (its service acts through it for callers it checked — what
``check`` accepts there), and grants on the project or elsewhere (they reach every account
there: ``check`` keeps naming them, and the docs say how to remove them). An agent that runs
callers' code, or another project's agent, is removed like anyone's: ``check`` calls it ZT220.
"""

from dataclasses import replace
from pathlib import Path

import pytest
from kfp import compiler, dsl
from test_gcpc_corpus_plan import ADMIN, PROJECT, empty_project

import zt_pipelines as zt
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, ServiceAccount, Snapshot
from zt_pipelines.provision.apply import apply_plan
from zt_pipelines.provision.model import Grant, ProvisioningRefused
from zt_pipelines.provision.plan import check_plan
from zt_pipelines.spec import rewrite_pipeline

LOCATION = "us-central1"
PIPELINE = f"new-pipeline@{PROJECT}.iam.gserviceaccount.com"
OLD = f"serviceAccount:old-pipeline@{PROJECT}.iam.gserviceaccount.com"
BOB, CAROL = "user:bob@example.com", "user:carol@example.com"
AGENT = "serviceAccount:service-777000777000@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
DEPUTY = "serviceAccount:service-777000777000@gcp-sa-aiplatform.iam.gserviceaccount.com"
FOREIGN = "serviceAccount:service-999999999999@gcp-sa-aiplatform.iam.gserviceaccount.com"
ACT_AS, TOKENS = f"projects/{PROJECT}/roles/actAs", f"projects/{PROJECT}/roles/tokens"
CRM = "//cloudresourcemanager.googleapis.com/projects/"


@dsl.component(base_image="python:3.11")
def work() -> str:
    return "done"


@dsl.pipeline(name="inbound")
def inbound_pipeline() -> None:
    work()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inbound") / "inbound.yaml"
    compiler.Compiler().compile(inbound_pipeline, str(path))
    return path


def _world(step: str) -> Snapshot:
    """The step identity exists already, and others may act as it: on its own policy the old
    pipeline identity (actAs), bob (token creator), the project's own Vertex AI Service Agent
    (a deputy), its Custom Code agent and another project's Vertex agent; on the project,
    carol."""
    snap = empty_project()
    node = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{step}"
    policy = AllowPolicy(
        (Binding(ACT_AS, (OLD, AGENT, DEPUTY, FOREIGN)), Binding(TOKENS, (BOB,))),
        etag="s0",
    )
    nodes = {**snap.nodes, node: Node(node, "serviceAccount", CRM + PROJECT, policy)}
    project = nodes[CRM + PROJECT]
    assert project.policy is not None
    bindings = (*project.policy.bindings, Binding(ACT_AS, (CAROL,)))
    nodes[CRM + PROJECT] = replace(project, policy=replace(project.policy, bindings=bindings))
    roles = {
        **snap.roles,
        ACT_AS: Role(ACT_AS, frozenset({"iam.serviceAccounts.actAs"}), "act as"),
        TOKENS: Role(TOKENS, frozenset({"iam.serviceAccounts.getAccessToken"}), "tokens"),
    }
    accounts = {step: ServiceAccount(step, PROJECT), **snap.service_accounts}
    return replace(snap, nodes=nodes, roles=roles, service_accounts=accounts)


def _zt220(report: zt.Report) -> list[str]:
    return [f.message for f in report.findings if f.code == "ZT220"]


def test_prune_removes_other_principals_paths_onto_a_step_identity(
    template: Path, tmp_path: Path
) -> None:
    (step,) = rewrite_pipeline(template, project=PROJECT).steps
    sa = step.service_account
    assert sa is not None
    kw = dict(project=PROJECT, location=LOCATION, pipeline_service_account=PIPELINE)
    with Emulator(_world(sa)) as emu:
        before = _zt220(zt.check(template, snapshot=emu.state, **kw))  # type: ignore[arg-type]
        assert any("old-pipeline@" in m for m in before) and any("bob@" in m for m in before)

        listed = zt.plan(template, snapshot=emu.state, **kw)  # type: ignore[arg-type]
        inbound = {(g.member, g.role) for g in listed.extras if sa in g.resource}
        paths = {(OLD, ACT_AS), (BOB, TOKENS), (AGENT, ACT_AS), (FOREIGN, ACT_AS)}
        assert inbound == paths  # disclosed, kept without --prune
        assert listed.removals == ()
        # what prune removes is what check calls a path onto the identity (ZT220)
        assert all(any(m.split(":")[1] in z for z in before) for m, _ in paths - {(OLD, ACT_AS)})
        assert not any(DEPUTY.split(":")[1] in z for z in before)

        planned = zt.plan(template, snapshot=emu.state, prune=True, **kw)  # type: ignore[arg-type]
        removed = {(g.member, g.role) for g in planned.removals}
        assert removed == paths  # never the deputy, never carol's
        factory = ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address)
        try:
            apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
        finally:
            factory.close()
        node = emu.state.nodes[f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{sa}"]
        assert node.policy is not None
        members = {m for b in node.policy.bindings for m in b.members}
        assert DEPUTY in members and f"serviceAccount:{PIPELINE}" in members
        assert not members & {OLD, BOB, AGENT, FOREIGN}

        after = _zt220(zt.check(template, snapshot=emu.state, **kw))  # type: ignore[arg-type]
        assert not any("old-pipeline@" in m or "bob@" in m for m in after), after
        assert not any("service-" in m for m in after), after
        # a project-wide grant reaches every account of the project: named, never pruned
        assert any("carol@" in m for m in after), after
        assert zt.plan(template, snapshot=emu.state, prune=True, **kw).is_noop  # type: ignore[arg-type]


def test_a_plan_may_not_remove_other_principals_elsewhere(template: Path) -> None:
    (step,) = rewrite_pipeline(template, project=PROJECT).steps
    assert step.service_account is not None
    kw = dict(project=PROJECT, location=LOCATION, pipeline_service_account=PIPELINE)
    planned = zt.plan(template, snapshot=_world(step.service_account), prune=True, **kw)  # type: ignore[arg-type]
    check_plan(planned)
    node = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{step.service_account}"
    forged = [
        Grant(CRM + PROJECT, ACT_AS, CAROL, step=step.task),  # not a step identity's policy
        Grant(node, ACT_AS, f"serviceAccount:{PIPELINE}", step=step.task),  # the pipeline SA
    ]
    for grant in forged:
        bad = replace(planned, removals=(*planned.removals, grant))
        with pytest.raises(ProvisioningRefused, match="refusing to remove"):
            check_plan(bad)
