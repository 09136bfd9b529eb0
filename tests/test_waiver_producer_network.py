"""A ZT102 waiver's upstream digest holds every PRODUCER's network, never the waived step's own.

A producer's code may read a private address (an NFS share at 10.0.0.5, ``http://10.0.0.5``);
on another VPC that address is another host, so the value pasted downstream comes from
elsewhere: the producer's network (VPC peering, a PSC interface, a subnetwork) is part of
what was reviewed, however it is set — a task constant, a component default, a pipeline
parameter through sub-pipelines, a declaration, a step default. The waived step's own network
decides nothing about the values it pastes and leaves the digest alone; a producer on no
network keeps the digest it had before networks were hashed (red team round 6 in_13 (b)).
"""

from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

from zt_pipelines.model import JobFields
from zt_pipelines.spec import dump_template, rewrite_pipeline

pytest.importorskip("google_cloud_pipeline_components")

P = "zt-demo"
PSA = f"pipeline-sa@{P}.iam.gserviceaccount.com"
VPC = "projects/123456789012/global/networks/ml-vpc"
EVIL = "projects/999999999999/global/networks/attacker-vpc"
ATT = "projects/zt-demo/regions/us-central1/networkAttachments/"
POOLS = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": "python:3.11"},
    }
]


@dsl.component(base_image="python:3.11-slim")
def read_tb() -> str:
    return open("/mnt/nfs/cfg/tb.txt").read()


def _pipeline(producer_kw: dict[str, Any], train_kw: dict[str, Any] | None = None) -> Any:
    from google_cloud_pipeline_components.v1.custom_job import (
        CustomTrainingJobOp,
        create_custom_training_job_from_component,
    )

    producer = create_custom_training_job_from_component(
        read_tb, display_name="read-tb", **producer_kw
    )

    @dsl.pipeline(name="nfs", pipeline_root="gs://zt-demo-pipeline-root/nfs")
    def pipe(net: str = "") -> None:
        tb = producer()
        CustomTrainingJobOp(
            display_name="t",
            worker_pool_specs=POOLS,
            tensorboard=tb.outputs["Output"],
            **(train_kw or {}),
        )

    return pipe


def _digest(pipeline: Any, tmp_path: Path, **kwargs: Any) -> str:
    path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    result = rewrite_pipeline(str(path), project=P, pipeline_service_account=PSA, **kwargs)
    (step,) = [s for s in result.steps if s.unescaped_payload_inputs]
    assert step.task == "custom-training-job"
    digest = step.upstream_digest
    assert digest
    # what `rewrite` writes gives the same digest when checked again
    again = rewrite_pipeline(
        (result.spec, result.platform_docs), project=P, pipeline_service_account=PSA, **kwargs
    )
    (same,) = [s for s in again.steps if s.unescaped_payload_inputs]
    assert same.upstream_digest == digest
    assert dump_template(again)  # still a valid template
    return digest


def test_a_producers_network_is_in_the_digest(tmp_path: Path) -> None:
    none = _digest(_pipeline({}), tmp_path)
    on_vpc = _digest(_pipeline({"network": VPC}), tmp_path)
    on_evil = _digest(_pipeline({"network": EVIL}), tmp_path)
    assert len({none, on_vpc, on_evil}) == 3
    # no network, said either way, is the digest a producer without one always had
    assert _digest(_pipeline({"network": ""}), tmp_path) == none


def test_a_producers_psc_interface_is_in_the_digest(tmp_path: Path) -> None:
    a = _digest(_pipeline({"psc_interface_config": {"network_attachment": ATT + "a"}}), tmp_path)
    b = _digest(_pipeline({"psc_interface_config": {"network_attachment": ATT + "b"}}), tmp_path)
    assert a != b
    assert a != _digest(_pipeline({}), tmp_path)


def test_the_waived_steps_own_network_leaves_the_digest_alone(tmp_path: Path) -> None:
    base = _digest(_pipeline({"network": VPC}), tmp_path)
    for own in (VPC, EVIL):
        assert _digest(_pipeline({"network": VPC}, {"network": own}), tmp_path) == base


def test_a_producers_network_from_a_pipeline_parameter_is_hashed_by_value(
    tmp_path: Path,
) -> None:
    from google_cloud_pipeline_components.v1.custom_job import (
        CustomTrainingJobOp,
        create_custom_training_job_from_component,
    )

    producer = create_custom_training_job_from_component(read_tb, display_name="read-tb")

    @dsl.pipeline(name="inner")
    def inner(net: str = "") -> str:
        return producer(network=net).outputs["Output"]  # type: ignore[no-any-return]

    @dsl.pipeline(name="nfs", pipeline_root="gs://zt-demo-pipeline-root/nfs")
    def pipe(net: str = "") -> None:
        tb = inner(net=net)
        CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS, tensorboard=tb.output)

    dev = _digest(pipe, tmp_path, parameter_values={"net": VPC})
    prod = _digest(pipe, tmp_path, parameter_values={"net": EVIL})
    unset = _digest(pipe, tmp_path, parameter_values={"net": ""})
    assert len({dev, prod, unset}) == 3
    assert _digest(pipe, tmp_path) == unset  # the default '' is no network either


def test_a_network_declared_or_defaulted_for_a_producer_is_in_the_digest(tmp_path: Path) -> None:
    """A plain producer, wrapped by zt-pipelines: its declared network or a step default."""
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

    @dsl.pipeline(name="plain", pipeline_root="gs://zt-demo-pipeline-root/nfs")
    def plain() -> None:
        tb = read_tb()
        CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS, tensorboard=tb.output)

    base = _digest(plain, tmp_path)
    declared = _digest(plain, tmp_path, manifest={"steps": {"read-tb": {"network": VPC}}})
    defaulted = _digest(plain, tmp_path, defaults=JobFields(network=EVIL))
    assert len({base, declared, defaulted}) == 3
    assert _digest(plain, tmp_path, defaults=JobFields(network=VPC)) == declared
    # a warm pool or labels for every step are still no part of it
    assert _digest(plain, tmp_path, defaults=JobFields(persistent_resource_id="warm")) == base


def test_a_waived_step_that_also_produces_is_hashed_per_role(tmp_path: Path) -> None:
    """A → B → C, where B pastes A's output and C pastes B's: B's network is no part of B's
    own digest, and part of C's (B is C's producer)."""
    from google_cloud_pipeline_components.v1.custom_job import (
        CustomTrainingJobOp,
        create_custom_training_job_from_component,
    )

    def chain(network: str) -> Any:
        first = create_custom_training_job_from_component(read_tb, display_name="a")

        @dsl.pipeline(name="chain", pipeline_root="gs://zt-demo-pipeline-root/nfs")
        def pipe() -> None:
            a = first()
            b = CustomTrainingJobOp(
                display_name="b",
                worker_pool_specs=POOLS,
                tensorboard=a.outputs["Output"],
                network=network,
            )
            CustomTrainingJobOp(
                display_name="c", worker_pool_specs=POOLS, tensorboard=b.outputs["gcp_resources"]
            )

        return pipe

    def digests(network: str) -> dict[str, str]:
        path = tmp_path / f"c{len(list(tmp_path.iterdir()))}.yaml"
        compiler.Compiler().compile(chain(network), str(path))
        result = rewrite_pipeline(str(path), project=P, pipeline_service_account=PSA)
        return {s.task: s.upstream_digest for s in result.steps if s.upstream_digest}

    on_vpc, on_evil = digests(VPC), digests(EVIL)
    assert set(on_vpc) == {"custom-training-job", "custom-training-job-2"}, on_vpc
    assert on_vpc["custom-training-job"] == on_evil["custom-training-job"]  # its own network
    assert on_vpc["custom-training-job-2"] != on_evil["custom-training-job-2"]  # its producer's
