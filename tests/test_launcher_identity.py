"""A GCPC launcher left in place runs as the pipeline's service account, which can act as every
step identity: nothing in its payload but the one field the rewrite pins may choose or
impersonate an identity — not a stray key in a constant mapping the launcher pastes, not a
Dataflow launch option, not an option string in a list, not JSON text in a string input.
"""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import json
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

from zt_pipelines.errors import TemplateError, UnpinnedIdentityError
from zt_pipelines.spec import load_template, rewrite_pipeline

pytest.importorskip("google_cloud_pipeline_components")
from google_cloud_pipeline_components.v1 import (
    batch_predict_job,
    custom_job,
    dataflow,
    dataproc,
)

PROJECT = "zt-test-project"
OTHER = "other-step@zt-test-project.iam.gserviceaccount.com"
SA = "flex-worker@zt-test-project.iam.gserviceaccount.com"


def _compile(tmp_path: Path, pipeline: Any) -> dict[str, Any]:
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    ir, _ = load_template(path)
    return ir


def _flex(**kwargs: Any) -> Any:
    @dsl.pipeline(name="flex")
    def p() -> None:
        dataflow.DataflowFlexTemplateJobOp(
            container_spec_gcs_path="gs://b/spec.json", location="us-central1", **kwargs
        )

    return p


@pytest.mark.parametrize(
    "kwargs",
    [
        # the review's case
        {
            "parameters": {"serviceAccount": OTHER, "service_account_email": OTHER},
            "launch_options": {"service_account_email": OTHER},
        },
        {"parameters": {"serviceAccount": OTHER}},
        {"parameters": {"impersonateServiceAccount": OTHER}},
        {"parameters": {"SERVICE_ACCOUNT": OTHER}},
        {"parameters": {"service-account": "x"}},  # any separator, any value
        {"parameters": {"worker.service.account": "x"}},
        {"launch_options": {"impersonate_service_account": OTHER}},
        # a value naming a service account under an innocent key
        {"parameters": {"workerIdentity": OTHER}},
        {"parameters": {"options": f"--runner=x --service_account_email={OTHER}"}},
        # option strings in a list the launch passes on
        {"additional_experiments": [f"--serviceAccount={OTHER}"]},
        {"additional_experiments": ["--impersonate_service_account", "x"]},
        # even the pinned identity: one field chooses it, no other
        {"parameters": {"serviceAccount": SA}, "service_account_email": SA},
    ],
)
def test_a_flex_launch_naming_another_identity_is_refused(
    tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    ir = _compile(tmp_path, _flex(**kwargs))
    with pytest.raises(TemplateError, match="names an identity"):
        rewrite_pipeline(ir, project=PROJECT)


def test_a_flex_launch_from_a_pipeline_parameter_is_checked_with_its_value(
    tmp_path: Path,
) -> None:
    @dsl.pipeline(name="flex-param")
    def p(options: dict) -> None:  # type: ignore[type-arg]
        dataflow.DataflowFlexTemplateJobOp(
            container_spec_gcs_path="gs://b/spec.json", location="us-central1", parameters=options
        )

    ir = _compile(tmp_path, p)
    ok = rewrite_pipeline(ir, project=PROJECT, parameter_values={"options": {"input": "gs://b"}})
    assert ok.steps[0].launched_service_account is not None
    with pytest.raises(TemplateError, match="names an identity"):
        rewrite_pipeline(
            ir, project=PROJECT, parameter_values={"options": {"serviceAccount": OTHER}}
        )
    with pytest.raises(TemplateError, match="names an identity"):  # JSON text, pasted raw
        rewrite_pipeline(
            ir, project=PROJECT, parameter_values={"options": json.dumps({"x": OTHER})}
        )


def test_a_flex_launch_with_ordinary_options_is_accepted(tmp_path: Path) -> None:
    ir = _compile(
        tmp_path,
        _flex(
            parameters={"input": "gs://b/in", "output": "gs://b/out"},
            launch_options={"x": "y"},
            additional_experiments=["use_runner_v2"],
            service_account_email=SA,
        ),
    )
    (step,) = rewrite_pipeline(ir, project=PROJECT).steps
    assert step.launched_service_account == SA


def test_a_hand_edited_flex_payload_option_list_is_refused(tmp_path: Path) -> None:
    """``additional_pipeline_options`` (a newer Dataflow field) written into the payload text."""
    ir = _compile(tmp_path, _flex())
    (executor,) = ir["deploymentSpec"]["executors"].values()
    args = executor["container"]["args"]
    at = args.index("--payload") + 1
    concat = json.loads(args[at])
    assert concat["Concat"][-1] == "}"
    concat["Concat"][-1] = f', "additional_pipeline_options": ["--serviceAccount={OTHER}"]}}'
    args[at] = json.dumps(concat)
    with pytest.raises(TemplateError, match="names an identity"):
        rewrite_pipeline(ir, project=PROJECT)


@pytest.mark.parametrize(
    "factory",
    [
        # Dataproc: a Spark property naming a service account, in a constant mapping
        lambda: dataproc.DataprocPySparkBatchOp(
            project=PROJECT,
            main_python_file_uri="gs://b/main.py",
            runtime_config_properties={"spark.x.serviceAccountName": OTHER},
        ),
        # the GCS connector's impersonation property: Spark's storage calls as another SA
        lambda: dataproc.DataprocPySparkBatchOp(
            project=PROJECT,
            main_python_file_uri="gs://b/main.py",
            runtime_config_properties={
                "spark.hadoop.fs.gs.auth.impersonation.service.account": OTHER
            },
        ),
        # a CustomJob whose constant worker pools smuggle an identity key
        lambda: custom_job.CustomTrainingJobOp(
            display_name="t",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11", "command": ["echo"]},
                    "service_account": OTHER,
                }
            ],
        ),
        # a batch prediction's model parameters
        lambda: batch_predict_job.ModelBatchPredictOp(
            job_display_name="b",
            gcs_source_uris=["gs://b/in"],
            gcs_destination_output_uri_prefix="gs://b/out",
            model_parameters={"impersonate": OTHER},
        ),
    ],
)
def test_identity_keys_in_constants_of_any_launcher_are_refused(
    tmp_path: Path, factory: Any
) -> None:
    @dsl.pipeline(name="stray")
    def p() -> None:
        factory()

    ir = _compile(tmp_path, p)
    with pytest.raises(TemplateError, match="names an identity"):
        rewrite_pipeline(ir, project=PROJECT)


@pytest.mark.parametrize(
    "extra",
    [
        ["--impersonate_service_account=x@p.iam.gserviceaccount.com"],
        ["--serviceAccount", "x@p.iam.gserviceaccount.com"],
        ["--service_account=x@p.iam.gserviceaccount.com"],  # a prefix of the flag
        ["--SERVICE_ACCOUNT_EMAIL=x@p.iam.gserviceaccount.com"],
        ["--service-account-email=x@p.iam.gserviceaccount.com"],
        ["-impersonate_service_account", "x@p.iam.gserviceaccount.com"],
    ],
)
def test_dataflow_python_args_naming_another_identity_are_refused(
    tmp_path: Path, extra: list[str]
) -> None:
    @dsl.pipeline(name="py")
    def p() -> None:
        dataflow.DataflowPythonJobOp(
            project=PROJECT,
            python_module_path="gs://b/main.py",
            temp_location="gs://b/tmp",
            args=["--runner", "DataflowRunner", *extra],
        )

    ir = _compile(tmp_path, p)
    with pytest.raises(TemplateError, match="another identity"):
        rewrite_pipeline(ir, project=PROJECT)


def test_dataflow_python_identity_from_a_pipeline_parameter_in_args(tmp_path: Path) -> None:
    """``args=["--service_account_email", trainer]`` with ``trainer`` a pipeline parameter: its
    value is the worker identity; without a value it is known only at run time (refused);
    a value that is another identity option is refused like a literal one."""

    @dsl.pipeline(name="py-param")
    def p(trainer: str) -> None:
        dataflow.DataflowPythonJobOp(
            project=PROJECT,
            python_module_path="gs://b/main.py",
            temp_location="gs://b/tmp",
            args=["--service_account_email", trainer],
        )

    ir = _compile(tmp_path, p)
    (step,) = rewrite_pipeline(ir, project=PROJECT, parameter_values={"trainer": SA}).steps
    assert step.launched_service_account == SA
    with pytest.raises(UnpinnedIdentityError):
        rewrite_pipeline(ir, project=PROJECT)

    @dsl.pipeline(name="py-param-2")
    def q(extra: str) -> None:
        dataflow.DataflowPythonJobOp(
            project=PROJECT,
            python_module_path="gs://b/main.py",
            temp_location="gs://b/tmp",
            args=["--runner", "DataflowRunner", extra],
        )

    ir = _compile(tmp_path, q)
    with pytest.raises(TemplateError, match="another identity"):
        rewrite_pipeline(
            ir, project=PROJECT, parameter_values={"extra": "--impersonate_service_account=x"}
        )


@pytest.mark.parametrize(
    "config",
    [
        {"query": {"query": "SELECT 1"}, "impersonateServiceAccount": OTHER},
        {"query": {"query": "SELECT 1", "service-account": OTHER}},
        {"query": {"query": "SELECT 1"}, "impersonate": OTHER},
    ],
)
def test_a_value_inlined_into_a_wrapped_launcher_cannot_add_an_identity(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    """Launchers that run as their caller are wrapped (they run as the step's identity); a value
    inlined into their arguments still may not add a key naming another identity."""
    from google_cloud_pipeline_components.v1 import bigquery

    @dsl.pipeline(name="bq")
    def p() -> None:
        bigquery.BigqueryQueryJobOp(
            project=PROJECT, location="US", query="SELECT 1", job_configuration_query=config
        )

    ir = _compile(tmp_path, p)
    with pytest.raises(TemplateError, match="sets an identity"):
        rewrite_pipeline(ir, project=PROJECT)


def test_a_nested_ifpresent_branch_of_a_wrapped_launcher_is_checked(tmp_path: Path) -> None:
    """A wrapped launcher's arguments keep IfPresent parts nested in a Concat for Vertex to
    resolve: the branch the task takes is checked too, not only the Then branch."""
    from google_cloud_pipeline_components.v1 import bigquery

    @dsl.pipeline(name="bq-else")
    def p() -> None:
        bigquery.BigqueryQueryJobOp(
            project=PROJECT,
            location="US",
            query="SELECT 1",
            job_configuration_query={"impersonate": OTHER},
        )

    ir = _compile(tmp_path, p)
    (executor,) = ir["deploymentSpec"]["executors"].values()
    args = executor["container"]["args"]
    at = args.index("--payload") + 1
    concat = json.loads(args[at])
    # the query configuration moves into the Else branch of an input the task never provides
    concat["Concat"] = [
        "{",
        {
            "IfPresent": {
                "InputName": "never-provided",
                "Then": '"labels": {}',
                "Else": {
                    "Concat": [
                        '"configuration": ',
                        "{{$.inputs.parameters['job_configuration_query']}}",
                    ]
                },
            }
        },
        "}",
    ]
    args[at] = json.dumps(concat)
    with pytest.raises(TemplateError, match="sets an identity"):
        rewrite_pipeline(ir, project=PROJECT)
