"""The rewrite produces exactly what GCPC's create_custom_training_job_from_component produces.

Each case compiles one pipeline twice with a plain ``kfp.compiler.Compiler``: once with the
components wrapped by GCPC (installed in the test environment only) and the job fields given
to GCPC, once plain with the same job fields declared through ``zt.step``; then the plain one
is rewritten. Components, executors (the launcher and its ``--payload``) and tasks must be equal.

No `from __future__ import annotations`: KFP reads component annotations at decoration time.
"""

from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

import zt_pipelines as zt
from zt_pipelines.spec import load_template, rewrite_pipeline
from zt_pipelines.spec._gcpc import (
    CUSTOM_JOB_INPUTS,
    CUSTOM_JOB_OUTPUTS,
    GCPC_VERSION,
    LAUNCHER_ARGS,
    LAUNCHER_COMMAND,
    LAUNCHER_IMAGE,
)

gcpc_utils = pytest.importorskip("google_cloud_pipeline_components.v1.custom_job.utils")

SA = "step-runner@zt-test-project.iam.gserviceaccount.com"


@dsl.component(base_image="python:3.11")
def train(x: int, msg: str = "hi") -> str:
    return f"{msg}{x}"


@dsl.component(base_image="python:3.11", packages_to_install=["pandas"])
def make_data(rows: int, data: Output[Dataset]) -> None:
    with open(data.path, "w") as fh:
        fh.write(str(rows))


@dsl.container_component
def consume(data: Input[Dataset], label: str, out: dsl.OutputPath(str)):  # type: ignore[no-untyped-def]
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c", 'cat "$0" > "$2"; echo "$1"'],
        args=[data.path, label, out],
    )


FIELD_CASES: list[dict[str, Any]] = [
    {},
    {
        "machine_type": "n1-standard-16",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 2,
        "replica_count": 3,
        "boot_disk_type": "pd-standard",
        "boot_disk_size_gb": 200,
        "network": "projects/123456/global/networks/private-vpc",
        "reserved_ip_ranges": ["range-a", "range-b"],
        "encryption_spec_key_name": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
        "enable_web_access": True,
        "labels": {"team": "ml", "cost-center": "42"},
    },
    {"psc_interface_config": {"network_attachment": "projects/p/regions/r/networkAttachments/a"}},
]


def _compile(pipeline: Any, path: Path) -> dict[str, Any]:
    compiler.Compiler().compile(pipeline, str(path))
    ir, _ = load_template(path)
    return ir


def _gcpc_kwargs(fields: dict[str, Any]) -> dict[str, Any]:
    return {"service_account": SA, **fields}


@pytest.mark.parametrize("fields", FIELD_CASES, ids=["defaults", "all-fields", "psc"])
def test_rewrite_equals_gcpc_wrapping(tmp_path: Path, fields: dict[str, Any]) -> None:
    wrap = gcpc_utils.create_custom_training_job_from_component
    g_train = wrap(train, **_gcpc_kwargs(fields))
    g_make = wrap(make_data, **_gcpc_kwargs(fields))
    g_consume = wrap(consume, **_gcpc_kwargs(fields))

    @dsl.pipeline(name="equivalence")
    def with_gcpc(n: int = 3) -> None:
        t = g_train(x=n)
        d = g_make(rows=n)
        g_consume(data=d.outputs["data"], label=t.outputs["Output"])

    z_train = zt.step(train, service_account=SA, **fields)
    z_make = zt.step(make_data, service_account=SA, **fields)
    z_consume = zt.step(consume, service_account=SA, **fields)

    @dsl.pipeline(name="equivalence")
    def plain(n: int = 3) -> None:
        t = z_train(x=n)
        d = z_make(rows=n)
        z_consume(data=d.outputs["data"], label=t.output)

    expected = _compile(with_gcpc, tmp_path / "gcpc.yaml")
    result = rewrite_pipeline(_plain(plain, tmp_path))
    got = result.spec

    assert got["deploymentSpec"] == expected["deploymentSpec"]
    assert got["components"] == expected["components"]
    # the tasks are untouched: same inputs, same references
    assert set(got["root"]["dag"]["tasks"]) == set(expected["root"]["dag"]["tasks"])
    for name, task in expected["root"]["dag"]["tasks"].items():
        assert got["root"]["dag"]["tasks"][name] == task, name
    assert {s.service_account for s in result.steps} == {SA}


def _plain(pipeline: Any, tmp_path: Path) -> Path:
    path = tmp_path / "plain.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def test_env_variables_move_into_the_worker_pool_like_gcpc_env(tmp_path: Path) -> None:
    env = [{"name": "MODE", "value": "fast"}]
    g_train = gcpc_utils.create_custom_training_job_from_component(
        train, service_account=SA, env=env
    )

    @dsl.pipeline(name="env")
    def with_gcpc() -> None:
        g_train(x=1)

    @dsl.pipeline(name="env")
    def plain() -> None:
        zt.step.on(train(x=1).set_env_variable("MODE", "fast"), SA)

    expected = _compile(with_gcpc, tmp_path / "gcpc.yaml")
    got = rewrite_pipeline(_plain(plain, tmp_path)).spec
    assert got["components"] == expected["components"]
    assert got["deploymentSpec"] == expected["deploymentSpec"]


def test_embedded_launcher_constants_match_installed_gcpc() -> None:
    from google.protobuf import json_format
    from google_cloud_pipeline_components import version
    from google_cloud_pipeline_components.v1.custom_job import component

    spec = json_format.MessageToDict(component.custom_training_job.pipeline_spec)
    comp = spec["components"]["comp-custom-training-job"]
    container = spec["deploymentSpec"]["executors"]["exec-custom-training-job"]["container"]
    assert version.__version__ == GCPC_VERSION
    assert container["image"] == LAUNCHER_IMAGE
    assert tuple(container["command"]) == LAUNCHER_COMMAND
    assert tuple(container["args"]) == LAUNCHER_ARGS
    assert comp["inputDefinitions"]["parameters"] == CUSTOM_JOB_INPUTS
    assert comp["outputDefinitions"]["parameters"] == CUSTOM_JOB_OUTPUTS
