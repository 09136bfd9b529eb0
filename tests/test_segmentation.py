"""Segmentation end to end: perimeters, networks and firewalls decided by ``check``.

Every case runs twice: from a snapshot file, and live against the emulator with the real
Google clients (Cloud Asset for perimeters, Compute for networks/firewalls).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import segmentation_world as sw

from zt_pipelines.emulator import Emulator, Fault
from zt_pipelines.errors import DeclarationError, PolicyFileError, SnapshotError
from zt_pipelines.policy.orgpolicy import load_policy
from zt_pipelines.policy.report import Report, Severity
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot
from zt_pipelines.verification import check

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
ACM = "//accesscontextmanager.googleapis.com/"
GCE = "//compute.googleapis.com/"


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("seg")
    return {
        v: sw.compile_segmented(str(out / f"{v}.yaml"), variant=v)
        for v in ("segmented", "segmented_open")
    }


def run_file(template: str, world: dict[str, Any], policy: Any = sw.POLICY) -> Report:
    return check(
        template,
        project=sw.PROJECT,
        location=sw.LOCATION,
        pipeline_service_account=sw.PIPELINE_SA,
        submitter=sw.SUBMITTER,
        snapshot=copy.deepcopy(world),
        policy=policy,
        now=NOW,
    )


Runner = Callable[..., Report]


@pytest.fixture(params=["file", "live"])
def run(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Runner:
    """``check`` from a snapshot file, or live against the emulator serving that world."""
    if request.param == "file":
        return run_file

    def live(template: str, world: dict[str, Any], policy: Any = sw.POLICY) -> Report:
        with Emulator(load_snapshot(copy.deepcopy(world))) as emu:
            monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
            monkeypatch.setenv("ZT_EMULATOR_CALLER", sw.SUBMITTER)
            monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
            report = check(
                template,
                project=sw.PROJECT,
                location=sw.LOCATION,
                pipeline_service_account=sw.PIPELINE_SA,
                submitter=sw.SUBMITTER,
                policy=policy,
                now=NOW,
            )
            methods = {r.method for r in emu.request_log}
        if (policy or {}).get("segmentation", {}).get("requirePerimeter"):
            assert "google.cloud.asset.v1.AssetService/ListAssets" in methods
        assert any(m.startswith("compute.") for m in methods)
        assert "aiplatform.endpoints.list" in methods
        return report

    return live


def seg(report: Report) -> set[str]:
    return {f.code for f in report.findings if f.code.startswith("ZT5")}


def test_clean_world_is_allowed(run: Runner, templates: dict[str, str]) -> None:
    report = run(templates["segmented"], sw.clean())
    assert report.allowed, str(report)
    assert seg(report) == set()


def test_data_bucket_outside_perimeter(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["nodes"].append(
        {
            "name": "//cloudresourcemanager.googleapis.com/projects/zt-data",
            "kind": "project",
            "parent": "//cloudresourcemanager.googleapis.com/folders/200",
            "projectNumber": sw.DATA_NUMBER,
        }
    )
    for n in world["nodes"]:
        if n["name"] == "//storage.googleapis.com/zt-demo-raw-data":
            n["parent"] = "//cloudresourcemanager.googleapis.com/projects/zt-data"
    report = run(templates["segmented"], world)
    assert not report.allowed
    (f,) = report.by_code("ZT511")
    assert f.resource == "//storage.googleapis.com/zt-demo-raw-data"
    assert f.evidence[0].node == sw.PERIMETER
    assert f"projects/{sw.DATA_NUMBER}" in f.evidence[0].detail


def test_bridge_joins_the_data_project(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["nodes"].append(
        {
            "name": "//cloudresourcemanager.googleapis.com/projects/zt-data",
            "kind": "project",
            "parent": "//cloudresourcemanager.googleapis.com/folders/200",
            "projectNumber": sw.DATA_NUMBER,
        }
    )
    for n in world["nodes"]:
        if n["name"] == "//storage.googleapis.com/zt-demo-raw-data":
            n["parent"] = "//cloudresourcemanager.googleapis.com/projects/zt-data"
    world["segmentation"]["perimeters"].append(
        {
            "name": "accessPolicies/555/servicePerimeters/ml_data_bridge",
            "perimeterType": "PERIMETER_TYPE_BRIDGE",
            "status": {"resources": [f"projects/{sw.NUMBER}", f"projects/{sw.DATA_NUMBER}"]},
        }
    )
    report = run(templates["segmented"], world)
    assert "ZT511" not in seg(report), str(report)


def test_dry_run_only_perimeter(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    p = world["segmentation"]["perimeters"][0]
    p["spec"] = copy.deepcopy(p["status"])
    p["status"] = {"resources": []}
    p["useExplicitDryRunSpec"] = True
    report = run(templates["segmented"], world)
    (warn,) = report.by_code("ZT512")
    assert warn.severity is Severity.WARNING
    assert warn.evidence[0].node == sw.PERIMETER
    # the policy requires an enforced perimeter: refused, naming the dry-run perimeter
    (err,) = report.by_code("ZT510")
    assert err.severity is Severity.ERROR and err.evidence[0].node == sw.PERIMETER
    # perimeters are verified under requirePerimeter only (live reads them only then, too)
    relaxed = run(templates["segmented"], world, {"segmentation": {"requireIsolation": True}})
    assert relaxed.allowed and seg(relaxed) == set()


def test_aiplatform_not_restricted(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["segmentation"]["perimeters"][0]["status"]["restrictedServices"].remove(
        "aiplatform.googleapis.com"
    )
    report = run(templates["segmented"], world)
    (f,) = report.by_code("ZT513")
    assert "aiplatform.googleapis.com" in f.message and f.resource == ACM + sw.PERIMETER


def test_egress_rule_to_any_project(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["segmentation"]["perimeters"][0]["status"]["egressPolicies"] = [
        {
            "egressFrom": {"identityType": "ANY_IDENTITY"},
            "egressTo": {
                "resources": ["*"],
                "operations": [{"serviceName": "storage.googleapis.com"}],
            },
        }
    ]
    report = run(templates["segmented"], world)
    (f,) = report.by_code("ZT515")
    assert f.resource == ACM + sw.PERIMETER and "egressPolicies[0]" in f.evidence[0].detail
    assert not report.allowed


def test_vpc_accessible_services_open(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    del world["segmentation"]["perimeters"][0]["status"]["vpcAccessibleServices"]
    report = run(templates["segmented"], world)
    assert report.by_code("ZT514")[0].resource == ACM + sw.PERIMETER


def test_ingress_from_any_identity(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["segmentation"]["perimeters"][0]["status"]["ingressPolicies"] = [
        {
            "ingressFrom": {"identityType": "ANY_IDENTITY", "sources": [{"resource": "*"}]},
            "ingressTo": {
                "resources": ["*"],
                "operations": [{"serviceName": "storage.googleapis.com"}],
            },
        }
    ]
    report = run(templates["segmented"], world)
    assert report.by_code("ZT516")[0].resource == ACM + sw.PERIMETER


def test_step_without_network_under_isolation(run: Runner, templates: dict[str, str]) -> None:
    report = run(templates["segmented_open"], sw.clean())
    (f,) = report.by_code("ZT520")
    assert f.step == "train-open"
    assert not report.allowed


def test_firewall_allowing_any_egress_from_the_subnet(
    run: Runner, templates: dict[str, str]
) -> None:
    world = sw.clean()
    sw.add_firewall(
        world,
        "allow-all-egress",
        "EGRESS",
        900,
        allowed=[{"IPProtocol": "all"}],
        destinationRanges=["0.0.0.0/0"],
        sourceRanges=["10.10.0.0/24"],
    )
    report = run(templates["segmented"], world)
    found = report.by_code("ZT522")
    assert {f.step for f in found} == {"ingest", "train", "upload"}
    rule = f"projects/{sw.PROJECT}/global/firewalls/allow-all-egress"
    assert all(f.resource == GCE + rule and f.evidence[0].node == rule for f in found)


def test_implied_allow_egress_without_a_deny_all(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["segmentation"]["firewalls"] = [
        f for f in world["segmentation"]["firewalls"] if f["name"] != "deny-all-egress"
    ]
    report = run(templates["segmented"], world)
    found = report.by_code("ZT522")
    assert found and all("implied allow-egress" in f.message for f in found)


#: the policy that also names the production project whose endpoints a live check lists
PROD_POLICY: dict[str, Any] = {
    "segmentation": {**sw.POLICY["segmentation"], "endpointProjects": ["zt-prod"]}
}


def _allow_to_serving(world: dict[str, Any]) -> None:
    sw.add_firewall(
        world,
        "allow-to-serving",
        "EGRESS",
        1000,
        allowed=[{"IPProtocol": "tcp", "ports": ["443", "8080"]}],
        destinationRanges=["10.30.0.0/16"],
    )


def test_step_reaching_an_undeclared_production_endpoint(
    run: Runner, templates: dict[str, str]
) -> None:
    """Live, the endpoint is read through the aiplatform EndpointService (its deployed model's
    private address); from a file, from the snapshot's ``endpoints``."""
    world = sw.clean()
    _allow_to_serving(world)
    report = run(templates["segmented"], world, PROD_POLICY)
    found = report.by_code("ZT523")
    assert {f.step for f in found} == {"ingest", "train", "upload"}
    for f in found:
        assert f.resource == "//aiplatform.googleapis.com/" + sw.ENDPOINT
        assert f.evidence[0].node == f"projects/{sw.PROJECT}/global/firewalls/allow-to-serving"
        assert "10.30.0.5/32" in f.message
    # the rest of 10.30.0.0/16 is not the endpoint: plain egress beyond reach
    assert report.by_code("ZT522")
    if run is not run_file:  # live lists zt-prod's endpoints only when the policy names it
        assert not run(templates["segmented"], world).by_code("ZT523")


def test_declared_endpoint_is_reach_not_a_finding(run: Runner, templates: dict[str, str]) -> None:
    """A step that declares the endpoint may reach it; the others may not."""
    world = sw.clean()
    sw.add_firewall(
        world,
        "allow-to-endpoint",
        "EGRESS",
        1000,
        allowed=[{"IPProtocol": "tcp", "ports": ["8080"]}],
        destinationRanges=["10.30.0.5/32"],
        targetServiceAccounts=[sw.INGEST_SA],
    )
    report = run(templates["segmented"], world, PROD_POLICY)
    assert {f.step for f in report.by_code("ZT523")} == {"ingest"}
    world_ = copy.deepcopy(world)
    for f in world_["segmentation"]["firewalls"]:
        if f["name"] == "allow-to-endpoint":
            f["targetServiceAccounts"] = [sw.TRAIN_SA]
    # train declares nothing of the endpoint either: refused for train, not for ingest
    report = run(templates["segmented"], world_, PROD_POLICY)
    assert {f.step for f in report.by_code("ZT523")} == {"train"}


def test_psc_endpoint_in_the_step_network(run: Runner, templates: dict[str, str]) -> None:
    """A Private Service Connect endpoint (automation config into ml-vpc) is found too."""
    world = sw.clean()
    world["segmentation"]["endpoints"] = [
        {"name": sw.ENDPOINT, "network": sw.NETWORK, "ranges": ["10.30.7.7/32"], "via": "psc"}
    ]
    _allow_to_serving(world)
    report = run(templates["segmented"], world, PROD_POLICY)
    found = report.by_code("ZT523")
    assert found and all("10.30.7.7/32" in f.message for f in found)


def test_endpoint_without_an_address_is_anywhere_in_its_range(
    run: Runner, templates: dict[str, str]
) -> None:
    """A private endpoint with no deployed model yet has no address: live, it counts as
    anywhere in the network's private services access ranges (fail closed)."""
    world = sw.clean()
    world["segmentation"]["allocatedRanges"] = [
        {"name": "psa", "network": sw.NETWORK, "range": "10.30.0.0/16"}
    ]
    world["segmentation"]["endpoints"] = [
        {"name": sw.ENDPOINT, "network": sw.NETWORK, "ranges": ["10.30.0.0/16"]}
    ]
    _allow_to_serving(world)
    report = run(templates["segmented"], world, PROD_POLICY)
    assert {f.step for f in report.by_code("ZT523")} == {"ingest", "train", "upload"}
    assert not report.by_code("ZT522")  # all of 10.30.0.0/16 is the endpoint's


def test_endpoint_list_denied_is_unverifiable(
    templates: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Live: a project whose endpoints cannot be listed leaves the step's reach unknown."""
    world = sw.clean()
    with Emulator(load_snapshot(copy.deepcopy(world))) as emu:
        emu.add_fault(Fault(method="aiplatform.endpoints.list", code="PERMISSION_DENIED"))
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_EMULATOR_CALLER", sw.SUBMITTER)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        report = check(
            templates["segmented"],
            project=sw.PROJECT,
            location=sw.LOCATION,
            pipeline_service_account=sw.PIPELINE_SA,
            submitter=sw.SUBMITTER,
            policy=PROD_POLICY,
            now=NOW,
        )
    assert not report.allowed
    assert any("aiplatform.endpoints.list" in f.message for f in report.by_code("ZT530"))


def test_declared_reach_blocked_is_a_warning(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["segmentation"]["firewalls"] = [
        f for f in world["segmentation"]["firewalls"] if f["name"] != "allow-db"
    ]
    report = run(templates["segmented"], world)
    (f,) = report.by_code("ZT525")
    assert f.step == "ingest" and f.severity is Severity.WARNING and report.allowed


def test_missing_attachment(run: Runner, templates: dict[str, str]) -> None:
    world = sw.clean()
    world["segmentation"]["networkAttachments"] = []
    report = run(templates["segmented"], world)
    assert {f.resource for f in report.by_code("ZT521")} == {GCE + sw.ATTACHMENT}


def test_absent_section_is_unverifiable(templates: dict[str, str]) -> None:
    world = sw.clean()
    del world["segmentation"]
    report = run_file(templates["segmented"], world)
    assert "ZT530" in seg(report) and not report.allowed
    # without a segmentation policy, a step's declared reach still needs networks to verify
    assert "ZT530" in seg(run_file(templates["segmented"], world, None))


def test_unread_perimeters_are_unverifiable(templates: dict[str, str]) -> None:
    world = sw.clean()
    del world["segmentation"]["perimeters"]
    report = run_file(templates["segmented"], world)
    (f,) = report.by_code("ZT530")
    assert "perimeter" in f.message


def test_unverifiable_cannot_be_relaxed() -> None:
    with pytest.raises(PolicyFileError):
        load_policy({"severities": {"ZT530": "warning"}})


def test_network_required_with_psc(templates: dict[str, str]) -> None:
    """network.required + requirePsc: a PSC step is matched through its attachment's network
    (it used to be impossible: @zt.step refuses network + PSC together)."""
    good = {"network": {"required": r"projects/zt-demo/global/networks/ml-.*", "requirePsc": True}}
    report = run_file(templates["segmented"], sw.clean(), good)
    assert report.allowed, str(report)
    bad = {"network": {"required": r"projects/zt-demo/global/networks/other", "requirePsc": True}}
    report = run_file(templates["segmented"], sw.clean(), bad)
    assert {f.step for f in report.by_code("ZT500")} == {"ingest", "train", "upload"}


def test_allowed_reach(templates: dict[str, str]) -> None:
    policy = {
        "segmentation": {
            "requireIsolation": True,
            "allowedReach": ["storage.googleapis.com", "aiplatform.googleapis.com", "10.0.0.0/8"],
        }
    }
    assert run_file(templates["segmented"], sw.clean(), policy).allowed
    policy["segmentation"]["allowedReach"] = ["storage.googleapis.com", "aiplatform.googleapis.com"]
    report = run_file(templates["segmented"], sw.clean(), policy)
    (f,) = report.by_code("ZT524")
    assert f.step == "ingest" and "10.20.0.0/16" in f.message
    with pytest.raises(PolicyFileError):
        load_policy({"segmentation": {"allowedReach": ["not a reach"]}})


def test_suppression_applies_to_segmentation(templates: dict[str, str]) -> None:
    world = sw.clean()
    world["segmentation"]["perimeters"][0]["status"]["restrictedServices"].remove(
        "aiplatform.googleapis.com"
    )
    policy = {
        **sw.POLICY,
        "suppressions": [
            {
                "code": "ZT513",
                "resource": ACM + sw.PERIMETER,
                "justification": "rollout of aiplatform restriction in progress",
                "expires": "2026-12-31",
            }
        ],
    }
    report = run_file(templates["segmented"], world, policy)
    assert report.allowed and report.suppressed[0].finding.code == "ZT513"


def test_snapshot_section_round_trip() -> None:
    snap = load_snapshot(sw.clean())
    again = load_snapshot(dump_snapshot(snap))
    assert again.segmentation == snap.segmentation


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda s: s["firewalls"][0].update(direction="SIDEWAYS"), "firewalls"),
        (lambda s: s["firewalls"][0].update(allowed=[{"IPProtocol": "tcp"}]), "firewalls[0]"),
        (lambda s: s["subnetworks"][0].update(ipCidrRange="10.0.0.300/24"), "subnetworks[0]"),
        (lambda s: s["perimeters"][0].update(name="perimeters/x"), "perimeters"),
        (lambda s: s.update(unknownKey=1), "segmentation"),
    ],
)
def test_malformed_section(mutate: Callable[[dict[str, Any]], None], where: str) -> None:
    world = sw.clean()
    mutate(world["segmentation"])
    with pytest.raises(SnapshotError) as info:
        load_snapshot(world)
    assert "segmentation" in str(info.value.where)


@pytest.mark.parametrize(
    "reach",
    ["storage", "10.0.0.0/33", "storage.googleapis.com tcp:80", "10.0.0.0/8 tcp:99999", "::/0"],
)
def test_bad_reach_declarations(reach: str) -> None:
    import zt_pipelines as zt

    with pytest.raises(DeclarationError):
        zt.step(sw.INGEST_SA, reach=[reach])
    with pytest.raises(DeclarationError):
        zt.step(sw.INGEST_SA, reach=reach)  # a string, not a list


def test_reach_is_carried_by_template_and_manifest(
    templates: dict[str, str], tmp_path: Path
) -> None:
    from zt_pipelines.spec import rewrite_pipeline

    result = rewrite_pipeline(templates["segmented"], project=sw.PROJECT)
    by_task = {s.task: s.job.reach for s in result.steps}
    assert by_task["ingest"] == tuple(sw.REACH)
    manifest = tmp_path / "m.yaml"
    manifest.write_text("steps:\n  train-open:\n    reach: ['10.1.0.0/16 tcp:443']\n")
    with pytest.raises(DeclarationError, match="reach"):  # the decorator declared another
        rewrite_pipeline(templates["segmented_open"], project=sw.PROJECT, manifest=manifest)
    manifest.write_text("steps:\n  train-open:\n    reach: [storage.googleapis.com]\n")
    result = rewrite_pipeline(templates["segmented_open"], project=sw.PROJECT, manifest=manifest)
    assert {s.task: s.job.reach for s in result.steps}["train-open"] == ("storage.googleapis.com",)


def test_reach_command_shows_what_each_step_can_reach(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from zt_pipelines.cli import cli

    template = str(tmp_path / "open.yaml")
    sw.compile_segmented(template, variant="segmented_open")
    world = sw.clean()
    sw.add_firewall(
        world,
        "allow-all-https",
        "EGRESS",
        900,
        allowed=[{"IPProtocol": "tcp", "ports": ["443"]}],
        destinationRanges=["0.0.0.0/0"],
    )
    snap = tmp_path / "world.yaml"
    import yaml

    snap.write_text(yaml.safe_dump(world))
    run = CliRunner().invoke(
        cli,
        ["reach", template, "--project", sw.PROJECT, "--snapshot", str(snap)],
        standalone_mode=False,
    )
    assert run.exception is None, run.output
    assert "allows 0.0.0.0/0 tcp:443  (projects/zt-demo/global/firewalls/allow-all-https)" in (
        run.output
    )
    assert "train-open\n  declared reach: storage.googleapis.com\n  egress: no VPC" in run.output
    assert "allows 10.20.0.0/16 tcp:5432" in run.output  # ingest's targeted database rule


def test_ipv6_only_rule_decides_no_ipv4_packet(templates: dict[str, str]) -> None:
    """A deny whose only destination is IPv6 must not be read as deny 0.0.0.0/0."""
    world = sw.clean()
    world["segmentation"]["firewalls"] = [
        f for f in world["segmentation"]["firewalls"] if f["name"] != "deny-all-egress"
    ]
    sw.add_firewall(
        world, "deny-v6", "EGRESS", 100, denied=[{"IPProtocol": "all"}], destinationRanges=["::/0"]
    )
    report = run_file(templates["segmented"], world)
    assert report.by_code("ZT522"), str(report)


def test_reach_is_bounded() -> None:
    import zt_pipelines as zt

    with pytest.raises(DeclarationError, match="at most"):
        zt.step(sw.INGEST_SA, reach=[f"10.0.{i // 256}.{i % 256}" for i in range(300)])
