"""The Vertex endpoints read (aiplatform ``EndpointService``): what each endpoint message says
about where it answers, and the list through the real client against the emulator (pages, IAM).
"""

from __future__ import annotations

import copy

import segmentation_world as sw
from google.cloud import aiplatform_v1

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import RetryPolicy
from zt_pipelines.gcp.vertex_endpoints import VertexEndpointsAdapter, endpoint_entries
from zt_pipelines.policy.snapshot_file import load_snapshot

NAME = "projects/123/locations/us-central1/endpoints/9"
NET = "projects/123/global/networks/ml-vpc"


def _deployed(*uris: str) -> list[aiplatform_v1.DeployedModel]:
    return [
        aiplatform_v1.DeployedModel(
            id=str(i), private_endpoints=aiplatform_v1.PrivateEndpoints(predict_http_uri=uri)
        )
        for i, uri in enumerate(uris)
    ]


def test_a_private_endpoint_answers_at_its_models_addresses() -> None:
    pb = aiplatform_v1.Endpoint(
        name=NAME,
        network=NET,
        deployed_models=_deployed(
            "http://10.30.0.5:8080/v1/models/1:predict", "https://10.30.0.6/v1/models/2:predict"
        ),
    )
    assert endpoint_entries(pb) == [
        {"name": NAME, "network": NET, "ranges": ["10.30.0.5/32", "10.30.0.6/32"], "via": "peering"}
    ]


def test_without_an_address_the_range_is_unknown() -> None:
    """No model, or a URI naming a host: ``None`` — the reader puts it anywhere in the
    network's private services access ranges (fail closed)."""
    for models in ([], _deployed("http://model.internal:8080/v1/models/1:predict")):
        pb = aiplatform_v1.Endpoint(name=NAME, network=NET, deployed_models=models)
        assert endpoint_entries(pb)[0]["ranges"] is None


def test_psc_endpoints_and_public_ones() -> None:
    config = aiplatform_v1.PrivateServiceConnectConfig(
        enable_private_service_connect=True,
        psc_automation_configs=[
            aiplatform_v1.PSCAutomationConfig(
                project_id="zt-demo",
                network="projects/zt-demo/global/networks/a",
                ip_address="10.1.2.3",
            ),
            # not created yet: answers nowhere
            aiplatform_v1.PSCAutomationConfig(
                project_id="zt-demo", network="projects/zt-demo/global/networks/b"
            ),
        ],
    )
    pb = aiplatform_v1.Endpoint(name=NAME, private_service_connect_config=config)
    assert endpoint_entries(pb) == [
        {
            "name": NAME,
            "network": "projects/zt-demo/global/networks/a",
            "ranges": ["10.1.2.3/32"],
            "via": "psc",
        }
    ]
    assert endpoint_entries(aiplatform_v1.Endpoint(name=NAME)) == []  # public: on no VPC


def test_the_list_pages_through_the_real_client() -> None:
    world = sw.clean()
    world["segmentation"]["endpoints"] = [
        {
            "name": f"projects/zt-demo/locations/us-central1/endpoints/{i}",
            "network": sw.NETWORK,
            "ranges": [f"10.30.0.{i}/32"],
            **({"via": "psc"} if i % 2 else {}),
        }
        for i in range(1, 6)
    ] + [  # another location: not listed
        {"name": "projects/zt-demo/locations/europe-west4/endpoints/7", "network": sw.NETWORK}
    ]
    with Emulator(load_snapshot(copy.deepcopy(world))) as emu:
        factory = ClientFactory(emulator_credentials(sw.SUBMITTER), emulator_host=emu.address)
        adapter = VertexEndpointsAdapter(factory, RetryPolicy(max_attempts=1), page_size=2)
        found = adapter.endpoints("zt-demo", "us-central1")
        pages = [r for r in emu.request_log if r.method == "aiplatform.endpoints.list"]
    assert sorted(e["ranges"][0] for e in found) == [f"10.30.0.{i}/32" for i in range(1, 6)]
    assert {e["via"] for e in found} == {"psc", "peering"}
    assert len(pages) == 3  # 5 endpoints, 2 a page
    assert all(e["name"].startswith(f"projects/{sw.NUMBER}/") for e in found)  # Vertex's form
