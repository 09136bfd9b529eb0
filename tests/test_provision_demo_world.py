"""plan → emulator apply → check closes on the demo world (examples/world.yaml) for every
example pipeline — the four Kubeflow ones of the demo and the GCPC one — through the real
Google clients:

- custom mode (the default): ALLOWED with zero findings; the one exception is the pipeline
  built to show a segmentation refusal, whose only finding is that firewall rule — which the
  plan itself lists (segmentation is planned, never applied);
- predefined mode: only the excess the plan disclosed for the roles it chose, or a typed
  refusal naming ``--roles custom`` where no predefined role may grant a need;
- with the submitter: what remains is the submitter's reach through the demo's *other*
  pipeline identity (pre-existing world grants no plan of this pipeline touches), as warnings;
- the demo's previous pipeline identity (pipeline-sa, which alice may act as) held actAs on the
  Kubeflow pipelines' step accounts: ``--prune`` removes those bindings from the step accounts'
  own policies (who may act as a step identity is the plan's), so no path onto them is left;
- a second plan is a no-op and a second apply writes nothing.

Each run uses the default flow: a dedicated pipeline identity derived per pipeline, ``--prune``
(the demo world hands legacy-sa ``roles/editor``; the editor pipeline's plan removes it), and
the world sealed as ``zt-pipelines snapshot`` would write it (so no ZT401 note).

(No ``from __future__ import annotations`` here: KFP reads the component annotations.)
"""

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
import yaml

import zt_pipelines as zt
from zt_pipelines.demo import EXAMPLES_DIR, load_examples
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.snapshot_file import load_snapshot, seal
from zt_pipelines.provision import CoverError
from zt_pipelines.provision.apply import apply_plan

PLATFORM = "user:platform@example.com"  # holds the world's custom `provisioner` role
SEGMENTATION_DEMO = "open-egress"


def _gcpc_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "zt_demo_world_gcpc", EXAMPLES_DIR / "gcpc_pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def examples() -> ModuleType:
    return load_examples()


@pytest.fixture(scope="module")
def sealed_world(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    data = yaml.safe_load((EXAMPLES_DIR / "world.yaml").read_text(encoding="utf-8"))
    path = tmp_path_factory.mktemp("world") / "world.yaml"
    path.write_text(yaml.safe_dump(seal(data)), encoding="utf-8")
    world = load_snapshot(path)
    assert not world.notes  # sealed: nothing to note about the file
    return world


@pytest.fixture(scope="module")
def pipelines(examples: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("demo-pipelines")
    compiled = {
        name: examples.compile_pipeline(name, str(out / f"{name}.yaml"))
        for name in examples.PIPELINES
    }
    compiled["gcpc"] = str(EXAMPLES_DIR / "gcpc_pipeline.yaml")
    assert len(compiled) >= 5
    return compiled


@pytest.fixture()
def emulator(sealed_world: Snapshot) -> Iterator[Emulator]:
    with Emulator(sealed_world) as emu:
        yield emu


def _loop(
    emu: Emulator, path: str, project: str, location: str, roles: str, submitter: str | None
) -> tuple[zt.Plan, zt.Report]:
    factory = ClientFactory(emulator_credentials(PLATFORM), emulator_host=emu.address)
    kw = dict(project=project, location=location, submitter=submitter)
    try:
        planned = zt.plan(path, snapshot=emu.state, roles=roles, prune=True, **kw)  # type: ignore[arg-type]
        apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
        report = zt.check(
            path,
            snapshot=emu.state,
            pipeline_service_account=planned.pipeline_service_account,
            **kw,  # type: ignore[arg-type]
        )
        again = zt.plan(path, snapshot=emu.state, roles=roles, prune=True, **kw)  # type: ignore[arg-type]
        assert again.is_noop, (path, again.additions, again.removals)
        writes = len(emu.writes())
        second = apply_plan(again, factory=factory, retry=no_wait_policy(), audit_log=False)
        assert not second.changed
        assert len(emu.writes()) == writes, path  # the second apply writes nothing
    finally:
        factory.close()
    return planned, report


def _leftover_paths(report: zt.Report) -> list[zt.Finding]:
    """ZT220 for the demo world's previous pipeline identity: pipeline-sa held actAs on the
    step accounts, and alice may act as pipeline-sa — check would name that path (who can
    become a step identity is followed through other service accounts), had prune left it."""
    return [f for f in report.findings if f.code == "ZT220" and "through pipeline-sa@" in f.message]


def _pruned_inbound(planned: zt.Plan, examples: ModuleType) -> list[str]:
    """The previous pipeline identity's bindings the plan removed from step accounts."""
    return [
        g.resource
        for g in planned.removals
        if g.member == f"serviceAccount:{examples.PIPELINE_SA}"
        and "/serviceAccounts/" in g.resource
    ]


def _where(examples: ModuleType, name: str) -> tuple[str, str]:
    if name == "gcpc":
        gcpc = _gcpc_module()
        return gcpc.PROJECT, gcpc.LOCATION
    return examples.PROJECT, examples.LOCATION


def _segmentation_disclosed(planned: zt.Plan, finding: zt.Finding) -> bool:
    seg = planned.segmentation
    return (
        finding.code == "ZT522"
        and seg is not None
        and any(rule in finding.message for rule in seg.offending)
    )


@pytest.mark.parametrize(
    "name", ["training", "missing-permission", "editor", SEGMENTATION_DEMO, "gcpc"]
)
def test_demo_world_custom_mode_closes_with_zero_findings(
    emulator: Emulator, examples: ModuleType, pipelines: dict[str, str], name: str
) -> None:
    project, location = _where(examples, name)
    planned, report = _loop(emulator, pipelines[name], project, location, "custom", None)
    assert _leftover_paths(report) == []
    if name != "gcpc":  # the demo world's previous pipeline identity's actAs: pruned
        assert _pruned_inbound(planned, examples), planned.removals
    if name == SEGMENTATION_DEMO:
        # the firewall rule is segmentation, which the plan lists but never applies
        assert [f.code for f in report.findings] == ["ZT522"], str(report)
        assert _segmentation_disclosed(planned, report.findings[0]), planned.segmentation
        return
    assert report.findings == (), [f.message for f in report.findings]
    if name == "editor":  # legacy-sa's roles/editor on the project was pruned
        assert any(g.role == "roles/editor" for g in planned.removals)


@pytest.mark.parametrize("name", ["training", "missing-permission", SEGMENTATION_DEMO])
def test_demo_world_predefined_mode_reports_only_the_disclosed_excess(
    emulator: Emulator, examples: ModuleType, pipelines: dict[str, str], name: str
) -> None:
    project, location = _where(examples, name)
    planned, report = _loop(emulator, pipelines[name], project, location, "predefined", None)
    disclosed = {(g.resource, g.role, g.member.lower()) for g in planned.grants if g.excess}
    assert disclosed  # predefined roles carry excess, and the plan says which
    assert _leftover_paths(report) == [] and _pruned_inbound(planned, examples)
    for f in report.findings:
        if _segmentation_disclosed(planned, f):
            continue
        assert f.code == "ZT210" and f.severity.value == "warning", (name, f)
        assert (f.resource, f.evidence[0].role, (f.principal or "").lower()) in disclosed, f


@pytest.mark.parametrize("name", ["editor", "gcpc"])
def test_demo_world_predefined_mode_refuses_what_no_predefined_role_may_grant(
    emulator: Emulator, examples: ModuleType, pipelines: dict[str, str], name: str
) -> None:
    # model upload / endpoint deploy come only in roles that also carry unneeded
    # escalation-capable permissions: refused (typed, with the fix), nothing written
    project, location = _where(examples, name)
    with pytest.raises(CoverError, match="--roles custom"):
        zt.plan(
            pipelines[name],
            project=project,
            location=location,
            snapshot=emulator.state,
            roles="predefined",
            prune=True,
        )
    assert emulator.writes() == []


def test_demo_world_with_the_submitter_leaves_only_its_preexisting_reach(
    emulator: Emulator, examples: ModuleType, pipelines: dict[str, str]
) -> None:
    shared = f"serviceAccount:{examples.PIPELINE_SA}"  # the demo's own pipeline identity
    planned, report = _loop(
        emulator,
        pipelines["gcpc"],
        *_where(examples, "gcpc"),
        "custom",
        examples.SUBMITTER,
    )
    assert report.allowed, str(report)
    assert planned.pipeline_service_account != examples.PIPELINE_SA
    for f in report.findings:
        # alice may act as the demo's pipeline-sa (a world grant for the Kubeflow demo, which
        # this plan neither made nor may remove): a warning about the submitter, not the plan
        assert f.code == "ZT218" and f.severity.value == "warning", f
        assert f.principal == examples.SUBMITTER
        assert f"actAs → {examples.PIPELINE_SA.split('@')[0]}" in f.message, f
    pipe_policy = emulator.state.nodes[
        f"//iam.googleapis.com/projects/{examples.PROJECT}/serviceAccounts/{examples.PIPELINE_SA}"
    ].policy
    assert pipe_policy is not None
    assert any(examples.SUBMITTER in b.members for b in pipe_policy.bindings)  # pre-existing
    assert not any(shared in g.member for g in planned.grants)  # the plan never used it


@pytest.mark.parametrize("name", ["training", "editor"])
def test_demo_world_shared_pipeline_identity_reports_only_what_the_plan_disclosed(
    emulator: Emulator, examples: ModuleType, pipelines: dict[str, str], name: str
) -> None:
    """With the demo's own pipeline identity (shared by its four Kubeflow pipelines), the plan
    never prunes that identity — another pipeline uses it — but lists every binding of it this
    pipeline does not need; after apply, check reports nothing else."""
    factory = ClientFactory(emulator_credentials(PLATFORM), emulator_host=emulator.address)
    kw = dict(
        project=examples.PROJECT,
        location=examples.LOCATION,
        pipeline_service_account=examples.PIPELINE_SA,
    )
    try:
        planned = zt.plan(pipelines[name], snapshot=emulator.state, prune=True, **kw)  # type: ignore[arg-type]
        apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
    finally:
        factory.close()
    report = zt.check(pipelines[name], snapshot=emulator.state, **kw)  # type: ignore[arg-type]
    kept = {(g.resource, g.role) for g in planned.pipeline_extras}
    assert kept and report.findings
    shared = f"serviceAccount:{examples.PIPELINE_SA}"
    assert all(g.member == shared for g in planned.pipeline_extras)
    assert not any(g.member == shared for g in planned.removals)  # never pruned
    for f in report.findings:
        assert f.principal == shared, f
        assert (f.evidence[0].node, f.evidence[0].role) in kept, f
    assert (report.allowed, name) in {(True, "training"), (False, "editor")}
