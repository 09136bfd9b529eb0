"""A segmented world for the segmentation tests: the demo IAM world plus one enforced
perimeter, a VPC with a PSC network attachment, a tight firewall and a production endpoint.

``clean()`` is ALLOWED for :func:`compile_segmented`'s pipeline under :data:`POLICY`; each test
mutates one thing and expects the finding that names it.
"""

# no `from __future__ import annotations`: KFP reads the annotations as types
import copy
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler, dsl

import zt_pipelines as zt

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "zt-demo"
NUMBER = "123456789012"
DATA_PROJECT = "zt-data"
DATA_NUMBER = "222222222222"
LOCATION = "us-central1"
PIPELINE_SA = "pipeline-sa@zt-demo.iam.gserviceaccount.com"
INGEST_SA = "ingest-sa@zt-demo.iam.gserviceaccount.com"
TRAIN_SA = "train-sa@zt-demo.iam.gserviceaccount.com"
UPLOAD_SA = "upload-sa@zt-demo.iam.gserviceaccount.com"
SUBMITTER = "user:alice@example.com"
PIPELINE_ROOT = "gs://zt-demo-pipeline-root/runs"
NETWORK = f"projects/{PROJECT}/global/networks/ml-vpc"
PROD_NETWORK = "projects/zt-prod/global/networks/prod-vpc"
ATTACHMENT = f"projects/{PROJECT}/regions/{LOCATION}/networkAttachments/ml-attach"
SUBNET = f"projects/{PROJECT}/regions/{LOCATION}/subnetworks/ml-psc"
PERIMETER = "accessPolicies/555/servicePerimeters/ml"
ENDPOINT = "projects/zt-prod/locations/us-central1/endpoints/9001"
REACH = ["storage.googleapis.com", "aiplatform.googleapis.com", "10.20.0.0/16 tcp:5432"]
POLICY: dict[str, Any] = {
    "segmentation": {"requirePerimeter": True, "requireIsolation": True},
}
IMAGE = "python:3.11-slim"


@zt.step(
    INGEST_SA,
    needs={"gs://zt-demo-raw-data": ["storage.objects.get", "storage.objects.list"]},
    psc_interface_config={"network_attachment": ATTACHMENT},
    reach=REACH,
)
@dsl.component(base_image=IMAGE)
def ingest(source: str) -> str:
    """Read raw data."""
    return source


@zt.step(
    TRAIN_SA,
    psc_interface_config={"network_attachment": ATTACHMENT},
    reach=["storage.googleapis.com", "aiplatform.googleapis.com"],
)
@dsl.component(base_image=IMAGE)
def train(data: str) -> str:
    """Train from the ingested data."""
    return data


@zt.step(
    UPLOAD_SA,
    needs={
        "gs://zt-demo-models": ["storage.objects.create"],
        f"projects/{PROJECT}": ["aiplatform.models.upload"],
    },
    psc_interface_config={"network_attachment": ATTACHMENT},
    reach=["storage.googleapis.com", "aiplatform.googleapis.com"],
)
@dsl.component(base_image=IMAGE)
def upload(model: str) -> str:
    """Write the model and upload it to Vertex AI."""
    return model


@dsl.pipeline(name="zt-segmented", pipeline_root=PIPELINE_ROOT)
def segmented(source: str = "gs://zt-demo-raw-data/x/") -> None:
    """ingest -> train -> upload, every step on the PSC interface."""
    data = ingest(source=source)
    model = train(data=data.output)
    upload(model=model.output)


@zt.step(TRAIN_SA, reach=["storage.googleapis.com"])
@dsl.component(base_image=IMAGE)
def train_open(data: str) -> str:
    """Train on Google's network (no VPC)."""
    return data


@dsl.pipeline(name="zt-segmented-open", pipeline_root=PIPELINE_ROOT)
def segmented_open(source: str = "gs://zt-demo-raw-data/x/") -> None:
    """Like :func:`segmented`, but train has no network."""
    data = ingest(source=source)
    model = train_open(data=data.output)
    upload(model=model.output)


def compile_segmented(path: str, *, variant: str = "segmented") -> str:
    """Compile the segmented pipeline (or ``segmented_open``) with the real kfp compiler."""
    pipeline = segmented if variant == "segmented" else segmented_open
    compiler.Compiler().compile(pipeline, package_path=path)
    return path


def _fw(name: str, direction: str, priority: int, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "network": f"https://www.googleapis.com/compute/v1/{NETWORK}",
        "direction": direction,
        "priority": priority,
        **kw,
    }


SECTION: dict[str, Any] = {
    "projectNumbers": {PROJECT: NUMBER, DATA_PROJECT: DATA_NUMBER, "zt-prod": "333333333333"},
    "perimeters": [
        {
            "name": PERIMETER,
            "title": "ml",
            "perimeterType": "PERIMETER_TYPE_REGULAR",
            "status": {
                "resources": [f"projects/{NUMBER}"],
                "restrictedServices": [
                    "aiplatform.googleapis.com",
                    "storage.googleapis.com",
                    "bigquery.googleapis.com",
                ],
                "vpcAccessibleServices": {
                    "enableRestriction": True,
                    "allowedServices": ["RESTRICTED-SERVICES"],
                },
            },
        }
    ],
    "networks": [{"name": NETWORK}, {"name": PROD_NETWORK}],
    "subnetworks": [
        {
            "name": SUBNET,
            "network": NETWORK,
            "ipCidrRange": "10.10.0.0/24",
            "privateIpGoogleAccess": True,
        }
    ],
    "networkAttachments": [
        {"name": ATTACHMENT, "network": NETWORK, "subnetworks": [SUBNET]},
    ],
    "firewalls": [
        _fw(
            "deny-all-egress",
            "EGRESS",
            65000,
            denied=[{"IPProtocol": "all"}],
            destinationRanges=["0.0.0.0/0"],
        ),
        _fw(
            "allow-google-apis",
            "EGRESS",
            1000,
            allowed=[{"IPProtocol": "tcp", "ports": ["443"]}],
            destinationRanges=["199.36.153.4/30"],
        ),
        _fw(
            "allow-db",
            "EGRESS",
            1000,
            allowed=[{"IPProtocol": "tcp", "ports": ["5432"]}],
            destinationRanges=["10.20.0.0/16"],
            targetServiceAccounts=[INGEST_SA],
        ),
        _fw(
            "allow-ssh-in",
            "INGRESS",
            1000,
            allowed=[{"IPProtocol": "tcp", "ports": ["22"]}],
            sourceRanges=["35.235.240.0/20"],
        ),
    ],
    # a production private endpoint (project zt-prod) peered into ml-vpc: its deployed model
    # answers on 10.30.0.5
    "endpoints": [{"name": ENDPOINT, "network": NETWORK, "ranges": ["10.30.0.5/32"]}],
}
#: the production project whose endpoints a live check lists (segmentation.endpointProjects)
PROD_PROJECT = {
    "name": "//cloudresourcemanager.googleapis.com/projects/zt-prod",
    "kind": "project",
    "parent": "//cloudresourcemanager.googleapis.com/folders/200",
    "projectNumber": "333333333333",
}


def clean() -> dict[str, Any]:
    """The demo world with the segmentation section (a fresh, mutable copy)."""
    world = yaml.safe_load((ROOT / "examples" / "world.yaml").read_text())
    world.pop("segmentation", None)
    world["segmentation"] = copy.deepcopy(SECTION)
    world["nodes"].append(copy.deepcopy(PROD_PROJECT))
    return world


def firewall(world: dict[str, Any], name: str) -> dict[str, Any]:
    """The firewall rule ``name`` of a world dict (for mutation)."""
    for f in world["segmentation"]["firewalls"]:
        if f["name"] == name:
            return f  # type: ignore[no-any-return]
    raise KeyError(name)


def add_firewall(
    world: dict[str, Any], name: str, direction: str, priority: int, **kw: Any
) -> None:
    """Add a firewall rule on the ML network."""
    world["segmentation"]["firewalls"].append(_fw(name, direction, priority, **kw))
