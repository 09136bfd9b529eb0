"""``plan`` emits the missing segmentation pieces (Terraform and gcloud), never applies them,
and what it emits is what makes the check pass."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import segmentation_world as sw

from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.provision import plan
from zt_pipelines.provision.render import (
    render_gcloud,
    render_json,
    render_table,
    render_terraform,
)
from zt_pipelines.segmentation.plan import firewall_wire
from zt_pipelines.verification import check

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sw.compile_segmented(str(tmp_path_factory.mktemp("p") / "p.yaml"))


def broken() -> dict[str, Any]:
    """A data project outside the perimeter, aiplatform unrestricted, VPC services open, no
    deny-all egress, and the database not allowed."""
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
    status = world["segmentation"]["perimeters"][0]["status"]
    status["restrictedServices"].remove("aiplatform.googleapis.com")
    del status["vpcAccessibleServices"]
    world["segmentation"]["firewalls"] = [
        f
        for f in world["segmentation"]["firewalls"]
        if f["name"] not in ("deny-all-egress", "allow-db")
    ]
    return world


def run_check(template: str, world: dict[str, Any]) -> set[str]:
    report = check(
        template,
        project=sw.PROJECT,
        location=sw.LOCATION,
        pipeline_service_account=sw.PIPELINE_SA,
        submitter=sw.SUBMITTER,
        snapshot=copy.deepcopy(world),
        policy=sw.POLICY,
        now=NOW,
    )
    return {f.code for f in report.findings if f.code.startswith("ZT5")}


def test_plan_emits_what_the_check_misses_and_it_suffices(template: str) -> None:
    world = broken()
    assert run_check(template, world) >= {"ZT511", "ZT513", "ZT514", "ZT522", "ZT523"}
    result = plan(
        template,
        project=sw.PROJECT,
        pipeline_service_account=sw.PIPELINE_SA,
        snapshot=load_snapshot(copy.deepcopy(world)),
    )
    seg = result.segmentation
    assert seg is not None and seg.perimeter is not None
    assert seg.perimeter.perimeter == sw.PERIMETER
    assert seg.perimeter.add_resources == (f"projects/{sw.DATA_NUMBER}",)
    assert seg.perimeter.add_restricted_services == ("aiplatform.googleapis.com",)
    assert seg.perimeter.enable_vpc_restriction
    # apply the emitted pieces to the world: the check passes
    fixed = copy.deepcopy(world)
    status = fixed["segmentation"]["perimeters"][0]["status"]
    status["resources"] += list(seg.perimeter.add_resources)
    status["restrictedServices"] += list(seg.perimeter.add_restricted_services)
    status["vpcAccessibleServices"] = {
        "enableRestriction": True,
        "allowedServices": ["RESTRICTED-SERVICES"],
    }
    fixed["segmentation"]["firewalls"] += [firewall_wire(f) for f in seg.firewalls]
    assert run_check(template, fixed) == set()

    terraform = render_terraform(result)
    assert 'resource "google_access_context_manager_service_perimeter_resource"' in terraform
    assert "REVIEW: perimeter changes are never applied" in terraform
    assert terraform.count('resource "google_compute_firewall"') == len(seg.firewalls)
    assert 'direction = "EGRESS"' in terraform and "deny {" in terraform
    gcloud = render_gcloud(result)
    # the perimeter command is commented out: never run by a script
    assert "\n# gcloud access-context-manager perimeters update ml --policy=555" in gcloud
    assert "--add-restricted-services=aiplatform.googleapis.com" in gcloud
    assert "gcloud compute firewall-rules create zt-deny-all-egress-" in gcloud
    assert "--rules=tcp:5432" in gcloud
    assert "Segmentation (not applied" in render_table(result)
    data = json.loads(render_json(result))["segmentation"]
    assert data["perimeter"]["add_resources"] == [f"projects/{sw.DATA_NUMBER}"]
    assert len(data["firewalls"]) == len(seg.firewalls)


def test_an_open_rule_is_named_for_review(template: str) -> None:
    world = sw.clean()
    sw.add_firewall(
        world,
        "allow-all",
        "EGRESS",
        500,
        allowed=[{"IPProtocol": "all"}],
        destinationRanges=["0.0.0.0/0"],
    )
    result = plan(
        template,
        project=sw.PROJECT,
        pipeline_service_account=sw.PIPELINE_SA,
        snapshot=load_snapshot(world),
    )
    assert result.segmentation is not None
    assert result.segmentation.offending == (f"projects/{sw.PROJECT}/global/firewalls/allow-all",)
    assert "--disabled" in render_gcloud(result)


def test_missing_attachment_is_emitted(template: str, tmp_path: Path) -> None:
    world = sw.clean()
    world["segmentation"]["networkAttachments"] = []
    result = plan(
        template,
        project=sw.PROJECT,
        pipeline_service_account=sw.PIPELINE_SA,
        snapshot=load_snapshot(world),
    )
    assert result.segmentation is not None
    assert {a.name for a in result.segmentation.attachments} == {sw.ATTACHMENT}
    assert 'resource "google_compute_network_attachment" "ml_attach"' in render_terraform(result)
    assert "gcloud compute network-attachments create ml-attach" in render_gcloud(result)


def test_clean_world_plans_no_segmentation(template: str) -> None:
    result = plan(
        template,
        project=sw.PROJECT,
        pipeline_service_account=sw.PIPELINE_SA,
        snapshot=load_snapshot(sw.clean()),
    )
    assert result.segmentation is not None and result.segmentation.is_noop
    assert "segmentation: nothing missing" in render_gcloud(result)
