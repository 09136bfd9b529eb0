"""``jobs.allowWebAccess: false`` refuses every way a launched job is opened to HTTP callers.

A GCPC CustomJob's payload can open the running job through its web access URIs in two ways —
the interactive shell (``enable_web_access``) and the chief container's dashboard
(``enable_dashboard_access``, Ray's accepts jobs) — and a tuning job's trial spec the same.
Each one, set or known only at run time, is ZT500 under the strict default (red team in_26).
"""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import zt_pipelines as zt

pytest.importorskip("google_cloud_pipeline_components")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PSA = "gcpc-pipeline@zt-demo.iam.gserviceaccount.com"
OPENED = "the job the step launches is opened to HTTP callers"


def _docs() -> list[Any]:
    return list(yaml.safe_load_all((EXAMPLES / "gcpc_pipeline.yaml").read_text()))


def _edit_payload(docs: list[Any], old: str, new: str) -> list[Any]:
    docs = copy.deepcopy(docs)
    args = docs[0]["deploymentSpec"]["executors"]["exec-custom-training-job"]["container"]["args"]
    at = args.index("--payload") + 1
    assert old in args[at]
    args[at] = args[at].replace(old, new, 1)
    return docs


def _check(docs: list[Any], tmp_path: Path, policy: Any = None, **params: Any) -> zt.Report:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return zt.check(
        path,
        project="zt-demo",
        location="us-central1",
        pipeline_service_account=PSA,
        snapshot=EXAMPLES / "world.yaml",
        policy=policy,
        parameter_values=params or None,
    )


def _opened(report: zt.Report) -> list[str]:
    return [f.message for f in report.findings if f.code == "ZT500" and OPENED in f.message]


WEB = "\"enable_web_access\": {{$.inputs.parameters['enable_web_access']}}"


@pytest.mark.parametrize(
    ("new", "field"),
    [
        ('"enable_dashboard_access": true, ' + WEB, "job_spec.enable_dashboard_access"),
        ('"enableDashboardAccess": true, ' + WEB, "job_spec.enableDashboardAccess"),
        ('"enable_dashboard_access": "yes", ' + WEB, "job_spec.enable_dashboard_access"),
    ],
    ids=["dashboard", "camel-case", "truthy-text"],
)
def test_a_dashboard_opened_in_the_payload_is_refused(new: str, field: str, tmp_path: Path) -> None:
    report = _check(_edit_payload(_docs(), WEB, new), tmp_path)
    assert _opened(report) == [f"{OPENED}: {field}"]
    assert any(OPENED in f.message for f in report.errors)
    # the organisation may allow web access: then nothing is refused for it
    allowed = _check(_edit_payload(_docs(), WEB, new), tmp_path, {"jobs": {"allowWebAccess": True}})
    assert _opened(allowed) == []


def test_a_dashboard_left_closed_passes(tmp_path: Path) -> None:
    report = _check(
        _edit_payload(_docs(), WEB, '"enable_dashboard_access": false, ' + WEB), tmp_path
    )
    base = _check(_docs(), tmp_path)
    assert _opened(report) == [] and _opened(base) == []
    assert report.codes() == base.codes()


def _task(docs: list[Any]) -> dict[str, Any]:
    tasks = docs[0]["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    return tasks["custom-training-job"]  # type: ignore[no-any-return]


def test_the_shell_opened_through_an_input_is_reported_once(tmp_path: Path) -> None:
    docs = _docs()
    _task(docs)["inputs"]["parameters"]["enable_web_access"] = {"runtimeValue": {"constant": True}}
    report = _check(docs, tmp_path)
    web = [f.message for f in report.findings if f.code == "ZT500" and "web access" in f.message]
    assert web == ["the step enables interactive web access"] and _opened(report) == []


def _dashboard_input(binding: dict[str, Any]) -> list[Any]:
    docs = _edit_payload(
        _docs(),
        WEB,
        "\"enable_dashboard_access\": {{$.inputs.parameters['dashboard']}}, " + WEB,
    )
    task = _task(docs)
    component = docs[0]["components"][task["componentRef"]["name"]]
    component["inputDefinitions"]["parameters"]["dashboard"] = {"parameterType": "BOOLEAN"}
    task["inputs"]["parameters"]["dashboard"] = binding
    return docs


def test_a_dashboard_from_a_pipeline_parameter_is_judged_with_its_value(tmp_path: Path) -> None:
    docs = _dashboard_input({"componentInputParameter": "pipelinechannel--dashboard"})
    handler = docs[0]["components"]["comp-exit-handler-1"]["inputDefinitions"]["parameters"]
    handler["pipelinechannel--dashboard"] = {"parameterType": "BOOLEAN"}
    docs[0]["root"]["dag"]["tasks"]["exit-handler-1"]["inputs"]["parameters"][
        "pipelinechannel--dashboard"
    ] = {"componentInputParameter": "dashboard"}
    docs[0]["root"]["inputDefinitions"]["parameters"]["dashboard"] = {"parameterType": "BOOLEAN"}
    assert _opened(_check(docs, tmp_path, dashboard=False)) == []
    assert _opened(_check(docs, tmp_path, dashboard=True)) == [
        f"{OPENED}: job_spec.enable_dashboard_access"
    ]


def test_a_dashboard_known_only_at_run_time_is_never_proven_closed(tmp_path: Path) -> None:
    docs = _dashboard_input(
        {"taskOutputParameter": {"producerTask": "preprocess", "outputParameterKey": "open"}}
    )
    docs[0]["components"]["comp-preprocess"]["outputDefinitions"]["parameters"] = {
        "open": {"parameterType": "BOOLEAN"}
    }
    assert _opened(_check(docs, tmp_path)) == [
        f"{OPENED}: job_spec.enable_dashboard_access (known only at run time)"
    ]


def test_a_tuning_trials_web_access_and_dashboard_are_refused(tmp_path: Path) -> None:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt
    from google_cloud_pipeline_components.v1.hyperparameter_tuning_job import (
        HyperparameterTuningJobRunOp,
        serialize_metrics,
        serialize_parameters,
    )
    from kfp import compiler, dsl

    @dsl.pipeline(name="tuning", pipeline_root="gs://zt-demo-pipeline-root/x")
    def tuning():  # type: ignore[no-untyped-def]
        run = HyperparameterTuningJobRunOp(
            display_name="t",
            base_output_directory="gs://zt-demo-pipeline-root/hpt",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11"},
                }
            ],
            study_spec_metrics=serialize_metrics({"acc": "maximize"}),
            study_spec_parameters=serialize_parameters(
                {"lr": hpt.DoubleParameterSpec(min=0.001, max=0.1, scale="log")}
            ),
            max_trial_count=2,
            parallel_trial_count=1,
        )
        zt.step.on(run, "gcpc-tune@zt-demo.iam.gserviceaccount.com")

    path = tmp_path / "t.yaml"
    compiler.Compiler().compile(tuning, str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    (executor,) = docs[0]["deploymentSpec"]["executors"].values()
    args = executor["container"]["args"]
    at = args.index("--payload") + 1
    payload = json.loads(args[at])
    parts = payload["Concat"]
    (i,) = [n for n, p in enumerate(parts) if '"trial_job_spec": {' in p]
    parts[i] = parts[i].replace(
        '"trial_job_spec": {',
        '"trial_job_spec": {"enable_web_access": true, "enable_dashboard_access": true, ',
        1,
    )
    args[at] = json.dumps(payload)
    report = _check(docs, tmp_path)
    assert _opened(report) == [
        f"{OPENED}: trial_job_spec.enable_web_access, trial_job_spec.enable_dashboard_access"
    ]
