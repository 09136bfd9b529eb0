"""GCPC steps under the rewrite: every step, and every job it launches, runs as its own identity.

Pipelines are compiled with kfp from the installed GCPC components (a test dependency). Per job
kind, the identity the rewrite pins must sit exactly where GCPC itself puts it when a user
passes ``service_account=`` (or the kind's equivalent) to the component.
"""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

from zt_pipelines.errors import (
    DeclarationError,
    DefaultIdentityError,
    ManifestError,
    TemplateError,
)
from zt_pipelines.identity import classify_identity
from zt_pipelines.spec import load_template, rewrite_pipeline
from zt_pipelines.spec.launcher import LAUNCHER_IMAGE, is_custom_job_launcher

gcpc = pytest.importorskip("google_cloud_pipeline_components")
from google_cloud_pipeline_components.v1 import (  # noqa: E402
    batch_predict_job,
    bigquery,
    custom_job,
    dataflow,
    dataproc,
    endpoint,
    hyperparameter_tuning_job,
    model,
)

PROJECT = "zt-test-project"
SA = "job-runner@zt-test-project.iam.gserviceaccount.com"
SERVING = "serving@zt-test-project.iam.gserviceaccount.com"
POOLS = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": "python:3.11", "command": ["echo", "hi"]},
    }
]


def _compile(tmp_path: Path, pipeline: Any, name: str) -> dict[str, Any]:
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    ir, _ = load_template(path)
    return ir


def _task(spec: dict[str, Any], name: str) -> dict[str, Any]:
    stack = [spec["root"]]
    while stack:
        component = stack.pop()
        for task_name, task in component.get("dag", {}).get("tasks", {}).items():
            if task_name == name:
                return task  # type: ignore[no-any-return]
            child = spec["components"][task["componentRef"]["name"]]
            if "dag" in child:
                stack.append(child)
    raise KeyError(name)


def _container(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]  # type: ignore[no-any-return]


def _manifest(task: str, sa: str = SA) -> dict[str, Any]:
    return {"steps": {task: {"service_account": sa}}}


# ------------------------------------------------------------------ pinned where GCPC puts it


def _gcpc_cases() -> list[tuple[str, Any, str, str]]:
    """(kind, factory(with_identity) -> pipeline, task name, the component's identity input)."""

    def custom(with_sa: bool) -> Any:
        @dsl.pipeline(name="cj")
        def p() -> None:
            extra = {"service_account": SA} if with_sa else {}
            custom_job.CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS, **extra)

        return p

    def hpt(with_sa: bool) -> Any:
        @dsl.pipeline(name="hpt")
        def p() -> None:
            extra = {"service_account": SA} if with_sa else {}
            hyperparameter_tuning_job.HyperparameterTuningJobRunOp(
                display_name="h",
                base_output_directory="gs://b/o",
                worker_pool_specs=POOLS,
                study_spec_metrics=[{"metric_id": "m", "goal": "MAXIMIZE"}],
                study_spec_parameters=[],
                max_trial_count=2,
                parallel_trial_count=1,
                **extra,
            )

        return p

    def batch(with_sa: bool) -> Any:
        @dsl.pipeline(name="bp")
        def p() -> None:
            extra = {"service_account": SA} if with_sa else {}
            batch_predict_job.ModelBatchPredictOp(
                job_display_name="b",
                gcs_source_uris=["gs://b/in"],
                gcs_destination_output_uri_prefix="gs://b/out",
                **extra,
            )

        return p

    def dataproc_batch(with_sa: bool) -> Any:
        @dsl.pipeline(name="dp")
        def p() -> None:
            extra = {"service_account": SA} if with_sa else {}
            dataproc.DataprocPySparkBatchOp(main_python_file_uri="gs://b/main.py", **extra)

        return p

    def flex(with_sa: bool) -> Any:
        @dsl.pipeline(name="flex")
        def p() -> None:
            extra = {"service_account_email": SA} if with_sa else {}
            dataflow.DataflowFlexTemplateJobOp(
                container_spec_gcs_path="gs://b/spec.json", location="us-central1", **extra
            )

        return p

    return [
        ("CustomJob", custom, "custom-training-job", "service_account"),
        ("HyperparameterTuningJob", hpt, "hyperparameter-tuning-job", "service_account"),
        ("BatchPredictionJob", batch, "model-batch-predict", "service_account"),
        (
            "DataprocPySparkBatch",
            dataproc_batch,
            "dataproc-create-pyspark-batch",
            "service_account",
        ),
        (
            "DataflowFlexTemplateJob",
            flex,
            "dataflow-flex-template",
            "service_account_email",
        ),
    ]


@pytest.mark.parametrize(("kind", "factory", "task", "field"), _gcpc_cases())
def test_pinned_identity_sits_where_gcpc_puts_it(
    tmp_path: Path, kind: str, factory: Any, task: str, field: str
) -> None:
    by_gcpc = _compile(tmp_path, factory(True), "gcpc")
    plain = _compile(tmp_path, factory(False), "plain")
    result = rewrite_pipeline(plain, manifest=_manifest(task), project=PROJECT)
    (step,) = result.steps
    assert step.job_kind == kind and not step.wrapped_launcher
    assert step.service_account == SA
    ours, theirs = _task(result.spec, task), _task(by_gcpc, task)
    # the identity input is bound exactly as GCPC binds service_account=SA ...
    assert ours["inputs"]["parameters"][field] == theirs["inputs"]["parameters"][field]
    assert ours["inputs"]["parameters"][field] == {"runtimeValue": {"constant": SA}}
    # ... and the launcher (image, command, payload) is GCPC's, unchanged
    assert _container(result.spec, ours) == _container(plain, _task(plain, task))
    assert _container(result.spec, ours) == _container(by_gcpc, theirs)
    # idempotent
    again = rewrite_pipeline(result.spec, project=PROJECT)
    assert again.spec == result.spec


def test_dataflow_python_job_worker_identity_is_pinned_in_its_args(tmp_path: Path) -> None:
    """DataflowPythonJobOp runs the user's Beam program: it is wrapped (never the pipeline SA)
    and its worker identity goes where a user puts it, ``--service_account_email`` in args."""

    def make(with_sa: bool) -> Any:
        @dsl.pipeline(name="df")
        def p() -> None:
            args = ["--x", "1", *(["--service_account_email", SA] if with_sa else [])]
            dataflow.DataflowPythonJobOp(
                python_module_path="gs://b/m.py", temp_location="gs://b/tmp", args=args
            )

        return p

    by_gcpc = _compile(tmp_path, make(True), "gcpc")
    plain = _compile(tmp_path, make(False), "plain")
    result = rewrite_pipeline(plain, manifest=_manifest("dataflow-python"), project=PROJECT)
    (step,) = result.steps
    assert step.job_kind == "DataflowPythonJob" and step.wrapped_launcher
    assert step.launched_service_account == SA == step.service_account
    ours = _task(result.spec, "dataflow-python")["inputs"]["parameters"]["args"]
    theirs = _task(by_gcpc, "dataflow-python")["inputs"]["parameters"]["args"]
    assert ours == theirs
    assert is_custom_job_launcher(_container(result.spec, _task(result.spec, "dataflow-python")))


def test_caller_jobs_are_wrapped_and_their_inputs_reach_the_component(tmp_path: Path) -> None:
    """BigQuery / model / endpoint launchers run as the caller: wrapped in a CustomJob under the
    step's identity. Their ``project``/``location``/``encryption_spec_key_name``/``labels``
    inputs (named like the CustomJob launcher's) are not refused: the component still receives
    exactly its values, and the CustomJob uses its own."""

    @dsl.pipeline(name="bq")
    def p(project: str, location: str = "EU") -> None:
        bigquery.BigqueryQueryJobOp(
            query="SELECT 1",
            project=project,
            location=location,
            encryption_spec_key_name="projects/k/locations/eu/keyRings/r/cryptoKeys/c",
            labels={"team": "ml"},
        )

    spec = _compile(tmp_path, p, "bq")
    result = rewrite_pipeline(spec, project=PROJECT, parameter_values={"project": "data-project"})
    (step,) = result.steps
    assert step.job_kind == "BigqueryQueryJob" and step.wrapped_launcher
    assert step.job_project == "data-project" and step.job_location == "EU"
    assert step.job_kms_key == "projects/k/locations/eu/keyRings/r/cryptoKeys/c"
    task = _task(result.spec, "bigquery-query-job")
    bindings = task["inputs"]["parameters"]
    # the parameter-bound project is resolved and pinned: the component gets the same value
    assert bindings["project"] == {"runtimeValue": {"constant": "data-project"}}
    assert bindings["labels"] == {"runtimeValue": {"constant": {"team": "ml"}}}
    outer = _container(result.spec, task)
    assert outer["image"] == LAUNCHER_IMAGE
    # the CustomJob runs in the pipeline's project/location, as the step's own identity
    args = outer["args"]
    assert args[args.index("--project") + 1] == "{{$.pipeline_google_cloud_project_id}}"
    assert args[args.index("--location") + 1] == "{{$.pipeline_google_cloud_location}}"
    payload = args[args.index("--payload") + 1]
    # the component has no service_account of its own: the launcher input's default is the
    # step's identity (as GCPC's wrap writes it); labels/CMEK are the CustomJob's own, literal
    params = result.spec["components"][task["componentRef"]["name"]]["inputDefinitions"][
        "parameters"
    ]
    assert params["service_account"]["defaultValue"] == step.service_account
    assert "service_account" not in bindings
    assert '"labels": {}' in payload and '"kms_key_name": ""' in payload
    assert not classify_identity(step.service_account).is_default
    # the BigQuery launcher runs inside the worker pool, unchanged
    pools = result.spec["components"][task["componentRef"]["name"]]["inputDefinitions"][
        "parameters"
    ]["worker_pool_specs"]["defaultValue"]
    inner = _container(spec, _task(spec, "bigquery-query-job"))
    assert pools[0]["container_spec"]["command"] == inner["command"]
    assert rewrite_pipeline(result.spec, project=PROJECT).spec == result.spec


def _deploy_pipeline(**deploy: Any) -> Any:
    @dsl.pipeline(name="deploy")
    def p() -> None:
        upload = model.ModelUploadOp(display_name="m", project=PROJECT, location="us-central1")
        ep = endpoint.EndpointCreateOp(display_name="e", project=PROJECT, location="us-central1")
        endpoint.ModelDeployOp(
            model=upload.outputs["model"],
            endpoint=ep.outputs["endpoint"],
            dedicated_resources_machine_type="n1-standard-4",
            dedicated_resources_min_replica_count=1,
            **deploy,
        )

    return p


def test_deploy_serving_identity_sits_where_gcpc_puts_it(tmp_path: Path) -> None:
    by_gcpc = _compile(tmp_path, _deploy_pipeline(service_account=SERVING), "gcpc")
    plain = _compile(tmp_path, _deploy_pipeline(), "plain")
    result = rewrite_pipeline(plain, project=PROJECT)
    steps = {s.task: s for s in result.steps}
    deploy = steps["model-deploy"]
    assert deploy.job_kind == "DeployModel" and deploy.wrapped_launcher
    assert deploy.serving_service_account is not None
    assert deploy.serving_service_account != deploy.service_account
    assert not classify_identity(deploy.serving_service_account).is_default
    ours = _task(result.spec, "model-deploy")["inputs"]["parameters"]["service_account"]
    assert ours == {"runtimeValue": {"constant": deploy.serving_service_account}}
    theirs = _task(by_gcpc, "model-deploy")["inputs"]["parameters"]["service_account"]
    assert set(ours) == set(theirs) == {"runtimeValue"}
    # a serving identity passed by the user is kept, pinned, reported
    declared = rewrite_pipeline(by_gcpc, project=PROJECT)
    assert {s.task: s for s in declared.steps}["model-deploy"].serving_service_account == SERVING
    assert {s.job_kind for s in result.steps} == {"UploadModel", "CreateEndpoint", "DeployModel"}
    assert all(s.wrapped_launcher for s in result.steps)
    assert len({s.service_account for s in result.steps}) == 3
    again = rewrite_pipeline(result.spec, project=PROJECT)
    assert again.spec == result.spec
    assert [s.serving_service_account for s in again.steps] == [
        s.serving_service_account for s in result.steps
    ]


@pytest.mark.parametrize(
    "insert",
    [
        ', "service_account": "legacy-sa@zt-test-project.iam.gserviceaccount.com"',  # a second
        ', "serviceAccount": "legacy-sa@zt-test-project.iam.gserviceaccount.com"',  # camelCase
        ', "shared_resources": "projects/p/locations/l/deploymentResourcePools/pool"',
    ],
    ids=["duplicate", "camelCase", "shared-pool"],
)
def test_a_wrapped_launchers_payload_names_no_identity_but_the_pinned_one(
    tmp_path: Path, insert: str
) -> None:
    """GCPC's deploy launcher json.loads its payload (the last key wins) and POSTs it: every
    JSON argument of a wrapped launcher is read strictly, as for launchers left in place."""
    spec = _compile(tmp_path, _deploy_pipeline(), "plain")
    executor = spec["deploymentSpec"]["executors"]
    [label] = [k for k in executor if "model-deploy" in k]
    args = executor[label]["container"]["args"]
    i = args.index("--payload") + 1
    payload = json.loads(args[i])
    parts = payload["Concat"]
    at = next(n for n, part in enumerate(parts) if isinstance(part, str) and part.endswith("}"))
    parts[at] = parts[at][:-1] + insert + "}"
    args[i] = json.dumps(payload)
    with pytest.raises(TemplateError, match="DeployModel launcher"):
        rewrite_pipeline(spec, project=PROJECT)


# ------------------------------------------------------------- payload hardening (#10.1)

EVIL = 'x", "service_account": "'


def _batch(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    @dsl.pipeline(name="bp")
    def p(dest: str = "gs://b/out", uris: list = ["gs://b/in"]) -> None:  # noqa: B006
        batch_predict_job.ModelBatchPredictOp(
            job_display_name="b",
            gcs_source_uris=uris,
            gcs_destination_output_uri_prefix=dest,
            **kwargs,
        )

    return _compile(tmp_path, p, "bp")


@pytest.mark.parametrize(
    "values",
    [
        {"dest": EVIL},  # quoted slot, closing the string
        {"dest": "gs://b/\\u0022"},  # a backslash escape
        {"dest": 'gs://b/{{$.pipeline_job_name}}"}'},  # a safe placeholder plus a quote
        {"dest": "gs://b/x}}"},  # a placeholder's end
        {"uris": '[], "service_account": ""'},  # raw list slot fed a string
    ],
)
def test_parameter_values_cannot_change_a_launcher_payload(
    tmp_path: Path, values: dict[str, Any]
) -> None:
    """Values a PipelineJob's runtimeConfig.parameterValues supply land in GCPC payloads."""
    spec = _batch(tmp_path)
    with pytest.raises(TemplateError, match="change the job's structure"):
        rewrite_pipeline(spec, project=PROJECT, parameter_values=values)


def test_safe_values_and_system_placeholders_are_accepted(tmp_path: Path) -> None:
    spec = _batch(tmp_path)
    result = rewrite_pipeline(
        spec,
        project=PROJECT,
        parameter_values={"dest": "gs://b/out/{{$.pipeline_job_name}}-x", "uris": ["gs://a"]},
        pipeline_root="gs://zt-root/pipelines",
    )
    (step,) = result.steps
    assert step.unescaped_payload_inputs == ()


@pytest.mark.parametrize(
    "root",
    ['gs://b/x", "service_account": "', "gs://b/x\\", "gs://b/{{x}}", "/local/path", "gs://b/\n"],
)
def test_a_pipeline_root_that_could_change_a_payload_is_refused(tmp_path: Path, root: str) -> None:
    spec = _batch(tmp_path)
    with pytest.raises(TemplateError, match=r"pipeline_root|pipeline root"):
        rewrite_pipeline(spec, project=PROJECT, pipeline_root=root)


def test_concat_payload_tampering_is_refused(tmp_path: Path) -> None:
    spec = _batch(tmp_path)
    container = _container(spec, _task(spec, "model-batch-predict"))
    at = container["args"].index("--payload") + 1
    concat = json.loads(container["args"][at])
    variants = {
        "second identity": ', "service_account": ""}',
        "nested identity": ', "x": {"service_account": ""}}',
        "raw system placeholder": ', "x": {{$.pipeline_job_name}}}',
    }
    for what, tail in variants.items():
        forged = copy.deepcopy(spec)
        parts = copy.deepcopy(concat)
        assert parts["Concat"][-1] == "}"
        parts["Concat"][-1] = tail
        target = _container(forged, _task(forged, "model-batch-predict"))
        target["args"][at] = json.dumps(parts)
        with pytest.raises(TemplateError):
            rewrite_pipeline(forged, project=PROJECT)
        del what
    # an IfPresent branch is checked as the task takes it
    forged = copy.deepcopy(spec)
    parts = copy.deepcopy(concat)
    parts["Concat"].insert(
        -1,
        {"IfPresent": {"InputName": "labels", "Then": ', "service_account": ""'}},
    )
    _container(forged, _task(forged, "model-batch-predict"))["args"][at] = json.dumps(parts)
    with pytest.raises(TemplateError):
        rewrite_pipeline(forged, project=PROJECT)


def test_run_time_values_in_a_launcher_payload_are_reported(tmp_path: Path) -> None:
    """An upstream output pasted into a payload cannot be proven inert offline: listed for the
    policy engine (ZT102, refused by check unless suppressed) — never silently accepted."""

    @dsl.component
    def where() -> str:
        return "gs://b/out"

    @dsl.pipeline(name="rt")
    def p() -> None:
        dest = where()
        batch_predict_job.ModelBatchPredictOp(
            job_display_name="b",
            gcs_source_uris=["gs://b/in"],
            gcs_destination_output_uri_prefix=dest.output,
        )

    spec = _compile(tmp_path, p, "rt")
    result = rewrite_pipeline(spec, project=PROJECT)
    step = {s.task: s for s in result.steps}["model-batch-predict"]
    assert "gcs_destination_output_uri_prefix" in step.unescaped_payload_inputs


# ------------------------------------------------------------------ manifest declarations


def _deploy(**deploy: Any) -> Any:
    @dsl.pipeline(name="deploy")
    def p() -> None:
        upload = model.ModelUploadOp(display_name="m", project=PROJECT, location="us-central1")
        ep = endpoint.EndpointCreateOp(display_name="e", project=PROJECT, location="us-central1")
        endpoint.ModelDeployOp(
            model=upload.outputs["model"],
            endpoint=ep.outputs["endpoint"],
            dedicated_resources_machine_type="n1-standard-4",
            dedicated_resources_min_replica_count=1,
            **deploy,
        )

    return p


def test_serving_identity_declared_in_a_manifest(tmp_path: Path) -> None:
    spec = _compile(tmp_path, _deploy(), "deploy")
    manifest = {"steps": {"model-deploy": {"serving_service_account": SERVING}}}
    result = rewrite_pipeline(spec, project=PROJECT, manifest=manifest)
    deploy = {s.task: s for s in result.steps}["model-deploy"]
    assert deploy.serving_service_account == SERVING
    bindings = _task(result.spec, "model-deploy")["inputs"]["parameters"]
    assert bindings["service_account"] == {"runtimeValue": {"constant": SERVING}}
    # the same identity passed to the component agrees; another one conflicts
    agreeing = _compile(tmp_path, _deploy(service_account=SERVING), "agree")
    rewrite_pipeline(agreeing, project=PROJECT, manifest=manifest)
    other = _compile(tmp_path, _deploy(service_account=SA), "other")
    with pytest.raises(DeclarationError, match="serving identity"):
        rewrite_pipeline(other, project=PROJECT, manifest=manifest)
    # on a step that deploys nothing
    wrong = {"steps": {"model-upload": {"serving_service_account": SERVING}}}
    with pytest.raises(DeclarationError, match="deploys no model"):
        rewrite_pipeline(spec, project=PROJECT, manifest=wrong)
    # a default identity as serving identity
    default = {"steps": {"model-deploy": {"serving_service_account": ""}}}
    with pytest.raises(DefaultIdentityError):
        rewrite_pipeline(spec, project=PROJECT, manifest=default)


def test_unknown_launcher_declared_as_caller_is_wrapped(tmp_path: Path) -> None:
    spec = _compile(tmp_path, _deploy(), "unknown")
    container = _container(spec, _task(spec, "model-deploy"))
    module = "google_cloud_pipeline_components.container.v2.endpoint.new.launcher"
    container["command"][-1] = module
    manifest = {"steps": {"model-deploy": {"launcher": "caller"}}}
    result = rewrite_pipeline(spec, project=PROJECT, manifest=manifest)
    deploy = {s.task: s for s in result.steps}["model-deploy"]
    outer = _container(result.spec, _task(result.spec, "model-deploy"))
    assert is_custom_job_launcher(outer) and outer["image"] == LAUNCHER_IMAGE
    assert not classify_identity(deploy.service_account).is_default
    # only 'caller' is a launcher declaration, and only for a launcher zt-pipelines does not know
    with pytest.raises(ManifestError, match="caller"):
        rewrite_pipeline(
            spec, project=PROJECT, manifest={"steps": {"model-deploy": {"launcher": "x"}}}
        )
    known = _compile(tmp_path, _deploy(), "known")
    with pytest.raises(DeclarationError, match="knows this launcher"):
        rewrite_pipeline(known, project=PROJECT, manifest=manifest)


@pytest.mark.parametrize(
    "runtime",
    [
        {"parameterValues": {"dest": EVIL}},
        {"parameters": {"dest": {"stringValue": EVIL}}},
    ],
)
def test_a_pipeline_job_templates_own_runtime_values_are_judged(
    tmp_path: Path, runtime: dict[str, Any]
) -> None:
    """A PipelineJob JSON carries runtimeConfig values Vertex substitutes: the rewrite judges
    those, not the spec's defaults (dict and file alike)."""
    job = {"pipelineSpec": _batch(tmp_path), "runtimeConfig": runtime}
    with pytest.raises(TemplateError, match="change the job's structure"):
        rewrite_pipeline(job, project=PROJECT)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    with pytest.raises(TemplateError, match="change the job's structure"):
        rewrite_pipeline(path, project=PROJECT)
    # values passed in override the template's (job.py passes the merged, complete values)
    fine = rewrite_pipeline(path, project=PROJECT, parameter_values={"dest": "gs://b/ok"})
    assert fine.steps[0].unescaped_payload_inputs == ()


@pytest.mark.parametrize("bad", ['b", "service_account": "', "b\\\\", "b{{x}}", "b\n"])
def test_a_task_name_pasted_into_payloads_must_be_inert(tmp_path: Path, bad: str) -> None:
    """``{{$.pipeline_task_name}}`` is a task's name from the IR: a hand-written name holding a
    quote would close a payload string where GCPC pastes it."""
    spec = _batch(tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    tasks[bad] = tasks.pop("model-batch-predict")
    with pytest.raises(TemplateError, match="task name"):
        rewrite_pipeline(spec, project=PROJECT)


def _pool_args(spec: dict[str, Any], task_name: str) -> list[str]:
    task = _task(spec, task_name)
    params = spec["components"][task["componentRef"]["name"]]["inputDefinitions"]["parameters"]
    return params["worker_pool_specs"]["defaultValue"][0]["container_spec"]["args"]  # type: ignore[no-any-return]


def test_a_wrapped_launcher_gets_its_known_values_inlined_and_escaped(tmp_path: Path) -> None:
    """Nothing known before submission is pasted into a CustomJob payload at run time: a
    wrapped GCPC launcher's constant inputs are written into its arguments, escaped as their
    JSON needs; its absent IfPresent arguments are resolved away."""

    @dsl.pipeline(name="bq")
    def p(query: str = "SELECT 1") -> None:
        bigquery.BigqueryQueryJobOp(query=query, labels={"team": "ml"}, project=PROJECT)

    spec = _compile(tmp_path, p, "bq")
    result = rewrite_pipeline(spec, project=PROJECT)
    (step,) = result.steps
    assert step.unescaped_payload_inputs == ()
    args = _pool_args(result.spec, "bigquery-query-job")
    text = json.dumps(args)
    assert "{{$.inputs.parameters[" not in text  # every input was known: all inlined
    payload = json.loads(args[args.index("--payload") + 1])
    assert "".join(p for p in payload["Concat"] if isinstance(p, str)).count('"team": "ml"') == 1
    assert rewrite_pipeline(result.spec, project=PROJECT).spec == result.spec
    # a value that would break the launcher's own payload string is refused
    with pytest.raises(TemplateError, match="structure"):
        rewrite_pipeline(
            spec, project=PROJECT, parameter_values={"query": 'SELECT "x", "service_account"'}
        )


def test_artifacts_a_gcpc_launcher_wrote_are_inert_others_are_reported(tmp_path: Path) -> None:
    result = rewrite_pipeline(_compile(tmp_path, _deploy(), "deploy"), project=PROJECT)
    assert all(s.unescaped_payload_inputs == () for s in result.steps)

    @dsl.component
    def fake_model(model: dsl.Output[dsl.Artifact]) -> None:
        model.metadata["resourceName"] = "x"

    @dsl.pipeline(name="fake")
    def p() -> None:
        made = fake_model()
        batch_predict_job.ModelBatchPredictOp(
            job_display_name="b",
            model=made.outputs["model"],
            gcs_source_uris=["gs://b/in"],
            gcs_destination_output_uri_prefix="gs://b/out",
        )

    fake = rewrite_pipeline(_compile(tmp_path, p, "fake"), project=PROJECT)
    step = {s.task: s for s in fake.steps}["model-batch-predict"]
    assert any("model" in name for name in step.unescaped_payload_inputs)


def test_the_rewrite_cli_shows_launched_and_serving_identities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zt_pipelines.cli import main

    path = tmp_path / "deploy.yaml"
    compiler.Compiler().compile(_deploy(), str(path))
    out = tmp_path / "out.yaml"
    args = ["rewrite", str(path), "-o", str(out), "--project", PROJECT]
    with pytest.raises(SystemExit) as info:
        main([*args, "--pipeline-root", "gs://zt-root/p"])
    assert info.value.code == 0
    lines = {line.split("\t")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "DeployModel (wrapped in a CustomJob)" in lines["model-deploy"]
    assert "\tserves as " in lines["model-deploy"]
    assert "UploadModel (wrapped in a CustomJob)" in lines["model-upload"]
    batch = tmp_path / "bp.yaml"
    compiler.Compiler().compile(_batch_pipeline(), str(batch))
    with pytest.raises(SystemExit) as info:
        main(["rewrite", str(batch), "-o", str(out), "--project", PROJECT])
    assert info.value.code == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("model-batch")]
    assert "BatchPredictionJob (launched)\tjob runs as " in line
    assert "[payload service_account]" in line


def _batch_pipeline() -> Any:
    @dsl.pipeline(name="bp")
    def p() -> None:
        batch_predict_job.ModelBatchPredictOp(
            job_display_name="b",
            gcs_source_uris=["gs://b/in"],
            gcs_destination_output_uri_prefix="gs://b/out",
        )

    return p


@pytest.mark.parametrize(
    "display",
    [
        'x", "service_account": "',  # a second serving identity (a duplicate key)
        'x", "y": {"service_account": ""}, "z": "',  # an identity where GCPC sets none
        'x\\", "a": "',  # a backslash
    ],
)
def test_values_inlined_into_a_wrapped_launcher_cannot_add_an_identity(
    tmp_path: Path, display: str
) -> None:
    @dsl.pipeline(name="deploy")
    def p() -> None:
        upload = model.ModelUploadOp(display_name="m", project=PROJECT, location="us-central1")
        ep = endpoint.EndpointCreateOp(display_name="e", project=PROJECT, location="us-central1")
        endpoint.ModelDeployOp(
            model=upload.outputs["model"],
            endpoint=ep.outputs["endpoint"],
            dedicated_resources_machine_type=display,  # pasted between quotes by GCPC
            dedicated_resources_min_replica_count=1,
        )

    spec = _compile(tmp_path, p, "deploy")
    with pytest.raises(TemplateError, match="structure"):
        rewrite_pipeline(spec, project=PROJECT)


def test_serving_identity_declared_on_the_deploy_task(tmp_path: Path) -> None:
    import zt_pipelines as zt

    @dsl.pipeline(name="deploy")
    def p() -> None:
        upload = model.ModelUploadOp(display_name="m", project=PROJECT, location="us-central1")
        ep = endpoint.EndpointCreateOp(display_name="e", project=PROJECT, location="us-central1")
        deploy = endpoint.ModelDeployOp(
            model=upload.outputs["model"],
            endpoint=ep.outputs["endpoint"],
            dedicated_resources_machine_type="n1-standard-4",
            dedicated_resources_min_replica_count=1,
        )
        zt.step.on(deploy, SA, serving_service_account=SERVING)

    path = tmp_path / "deploy.yaml"
    compiler.Compiler().compile(p, str(path))
    result = rewrite_pipeline(path, project=PROJECT)
    deploy = {s.task: s for s in result.steps}["model-deploy"]
    assert (deploy.service_account, deploy.serving_service_account) == (SA, SERVING)
    assert "servingServiceAccount" not in json.dumps(result.spec)  # our key is stripped
    with pytest.raises(DefaultIdentityError):

        @dsl.pipeline(name="bad")
        def bad() -> None:
            zt.step.on(
                model.ModelUploadOp(display_name="m", project=PROJECT),
                serving_service_account="",
            )

        compiler.Compiler().compile(bad, str(tmp_path / "bad.yaml"))


def test_an_ifpresent_branch_whose_presence_is_known_only_at_run_time_is_refused(
    tmp_path: Path,
) -> None:
    """A CustomJob payload written as IfPresent on an input bound to a pipeline parameter with
    no value: Vertex may take the Else branch, which would then run unverified (red-team
    finding rt10: the Else branch ran the job as another identity)."""
    import json as _json
    from typing import Optional

    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

    from zt_pipelines.errors import TemplateError
    from zt_pipelines.spec import load_template

    other = "other-sa@zt-test-project.iam.gserviceaccount.com"

    @dsl.pipeline(name="ifp")
    def ifp(opt: Optional[str] = None) -> None:  # noqa: UP045 (kfp reads the annotation)
        CustomTrainingJobOp(
            display_name="t",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11", "command": ["echo"]},
                }
            ],
        )

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(ifp, str(path))
    ir, _ = load_template(path)
    component = next(c for c in ir["components"].values() if "executorLabel" in c)
    component["inputDefinitions"]["parameters"]["x"] = {
        "parameterType": "STRING",
        "isOptional": True,
    }
    (task,) = ir["root"]["dag"]["tasks"].values()
    task["inputs"]["parameters"]["x"] = {"componentInputParameter": "opt"}
    args = next(iter(ir["deploymentSpec"]["executors"].values()))["container"]["args"]
    at = args.index("--payload") + 1
    then = (
        _json.loads(args[at])
        if args[at].lstrip().startswith('{"Concat"')
        else {"Concat": [args[at]]}
    )
    evil = {
        "Concat": [
            '{"display_name": "t", "job_spec": {"worker_pool_specs": [], '
            f'"service_account": "{other}"}}}}'
        ]
    }
    args[at] = _json.dumps(
        {"Concat": [{"IfPresent": {"InputName": "x", "Then": then, "Else": evil}}]}
    )
    with pytest.raises(TemplateError, match="known only at run time"):
        rewrite_pipeline(ir, project="zt-test-project")  # no value for `opt`
    # with a value the branch is known: Then, the verified one
    result = rewrite_pipeline(ir, project="zt-test-project", parameter_values={"opt": "v"})
    assert other not in _json.dumps(result.steps[0].__dict__, default=str)
