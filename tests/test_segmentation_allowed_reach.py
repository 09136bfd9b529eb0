"""``segmentation.allowedReach`` covers a declared entry only when it covers every address,
protocol and port of it (an all-ports declaration is not inside a one-port allowance)."""

import copy
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kfp import compiler, dsl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import segmentation_world as sw

import zt_pipelines as zt
from zt_pipelines.segmentation.evaluate import _reach_allowed
from zt_pipelines.segmentation.model import parse_reach

ENDPOINT = "projects/zt-demo/locations/us-central1/endpoints/1"


@pytest.mark.parametrize(
    ("declared", "allowed", "ok"),
    [
        ("10.20.0.0/16", "10.20.0.0/16 tcp:5432", False),  # every port vs one
        ("10.20.0.0/16 tcp", "10.20.0.0/16 tcp:5432", False),  # every tcp port vs one
        ("10.20.0.0/16 tcp:5000-6000", "10.20.0.0/16 tcp:5432", False),
        ("10.20.0.0/16 udp:5432", "10.20.0.0/16 tcp:5432", False),  # another protocol
        ("10.20.1.0/24 tcp:5432", "10.20.0.0/16 tcp:5432", True),
        ("10.20.1.0/24 tcp:5432", "10.20.0.0/16", True),
        ("10.20.1.0/24 tcp:5432,5433", "10.20.0.0/16 tcp:5430-5440", True),
        ("host:db=10.20.1.5 tcp:5432", "10.20.0.0/16 tcp:5432", True),
        ("host:db=10.20.1.5", "10.20.0.0/16 tcp:5432", False),
        (f"{ENDPOINT} tcp:443", "projects/zt-demo/locations/us-central1/endpoints/*", True),
        (ENDPOINT, "projects/zt-demo/locations/us-central1/endpoints/* tcp:443", False),
    ],
)
def test_allowed_reach_compares_ports(declared: str, allowed: str, ok: bool) -> None:
    (entry,) = parse_reach([declared], where="reach")
    assert _reach_allowed(entry, parse_reach([allowed], where="allowedReach")) is ok


@zt.step(
    sw.INGEST_SA,
    needs={"gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]},
    psc_interface_config={"network_attachment": sw.ATTACHMENT},
    reach=["storage.googleapis.com", "aiplatform.googleapis.com", "10.20.0.0/16"],
)
@dsl.component(base_image=sw.IMAGE)
def ingest(source: str) -> str:
    """Read raw data."""
    return source


@dsl.pipeline(name="zt-segmented", pipeline_root=sw.PIPELINE_ROOT)
def all_ports(source: str = "gs://zt-demo-raw-data/x/") -> None:
    data = ingest(source=source)
    model = sw.train(data=data.output)
    sw.upload(model=model.output)


def _compiled() -> Path:
    path = Path(tempfile.mkdtemp()) / "p.yaml"
    compiler.Compiler().compile(all_ports, package_path=str(path))
    return path


def test_an_all_ports_declaration_under_a_one_port_policy_is_refused() -> None:
    world = sw.clean()
    sw.firewall(world, "allow-db")["allowed"] = [{"IPProtocol": "all"}]  # every port
    path = str(_compiled())
    report = zt.check(
        path,
        project=sw.PROJECT,
        location=sw.LOCATION,
        pipeline_service_account=sw.PIPELINE_SA,
        submitter=sw.SUBMITTER,
        snapshot=copy.deepcopy(world),
        policy={
            "segmentation": {
                "requirePerimeter": True,
                "requireIsolation": True,
                "allowedReach": [
                    "storage.googleapis.com",
                    "aiplatform.googleapis.com",
                    "10.20.0.0/16 tcp:5432",
                ],
            }
        },
        now=datetime(2026, 6, 1, tzinfo=timezone.utc),
    )
    assert not report.allowed
    assert any(f.code == "ZT524" and "10.20.0.0/16" in f.message for f in report.findings)


def test_an_isolation_check_says_which_firewall_layers_it_did_not_read() -> None:
    """Hierarchical and network firewall policies come before VPC rules: not read, said."""
    report = zt.check(
        str(_compiled()),
        project=sw.PROJECT,
        location=sw.LOCATION,
        pipeline_service_account=sw.PIPELINE_SA,
        submitter=sw.SUBMITTER,
        snapshot=copy.deepcopy(sw.clean()),
        policy={"segmentation": {"requireIsolation": True}},
        now=datetime(2026, 6, 1, tzinfo=timezone.utc),
    )
    assert any("hierarchical" in n and "not read" in n for n in report.notes)
