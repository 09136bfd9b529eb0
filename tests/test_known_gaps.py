"""Known gaps found by our own red team and not closed yet, as strict expected failures.

Each test states the behaviour we want. While the gap is open the test fails and is reported
as "xfailed"; the day a change closes it, the test passes, ``strict=True`` turns that into a
failure, and whoever closed it removes the marker (and the entry in docs/threat-model.md).
"""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import json
from pathlib import Path

import pytest
from kfp import compiler, dsl

from zt_pipelines.errors import ZtError
from zt_pipelines.spec import load_template, rewrite_pipeline

pytest.importorskip("google_cloud_pipeline_components")

PROJECT = "zt-test-project"
OTHER = "other-step@zt-test-project.iam.gserviceaccount.com"


@pytest.mark.xfail(
    strict=True,
    reason="a run-time value nested in a list/dict constant pasted unquoted into a launcher "
    "payload (KFP compiles args=[task.output] so) is not reported as ZT102 "
    "(spec/jobs._value_verdict); reporting it must keep rewrite idempotent",
)
def test_a_run_time_value_nested_in_a_list_constant_is_reported(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.dataproc import DataprocPySparkBatchOp

    @dsl.component(base_image="python:3.11-slim")
    def prod() -> str:
        return '"], "environment_config": {"execution_config": {"service_account": "x"}}}'

    @dsl.pipeline(name="nested")
    def nested() -> None:
        made = prod()
        DataprocPySparkBatchOp(
            project=PROJECT, main_python_file_uri="gs://b/main.py", args=[made.output]
        )

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(nested, str(path))
    result = rewrite_pipeline(str(path), project=PROJECT)
    (batch,) = [s for s in result.steps if s.task != "prod"]
    assert batch.unescaped_payload_inputs


@pytest.mark.xfail(
    strict=True,
    reason="Dataflow flex template `parameters`/`launch_options` keys naming a service account "
    "are not checked; only environment.service_account_email is pinned",
)
def test_a_flex_template_identity_in_its_parameters_is_refused(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1 import dataflow

    @dsl.pipeline(name="flex")
    def flex() -> None:
        dataflow.DataflowFlexTemplateJobOp(
            container_spec_gcs_path="gs://b/spec.json",
            location="us-central1",
            parameters={"serviceAccount": OTHER, "service_account_email": OTHER},
            launch_options={"service_account_email": OTHER},
        )

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(flex, str(path))
    ir, _ = load_template(path)
    try:
        result = rewrite_pipeline(ir, project=PROJECT)
    except ZtError:
        return  # refused: the gap is closed
    assert OTHER not in json.dumps(result.spec), "another identity rides in the parameters"
