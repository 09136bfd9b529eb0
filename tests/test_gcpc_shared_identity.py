"""ZT103 for a user-set identity that the jobs of several GCPC steps run as.

A GCPC component such as ``ModelEvaluationClassificationOp`` starts a Dataflow job under its
``dataflow_service_account`` input; Google's AutoML pipelines feed one pipeline parameter of
that name into every such component. Set by the user, that one identity runs every one of those
jobs — the same loss of per-step isolation as two steps sharing a service account, reported the
same way (and relaxed the same way, ``identities.allowShared``).
"""

from pathlib import Path
from typing import Any

import pytest

import zt_pipelines as zt

PROJECT = "zt-demo"
LOCATION = "us-central1"
PIPELINE_SA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
WORLD = Path(__file__).resolve().parent.parent / "examples" / "world.yaml"


def sa(name: str) -> str:
    return f"{name}@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two evaluation steps whose Dataflow jobs take one pipeline parameter as identity, and a
    training step declared with an identity of its own."""
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
    from google_cloud_pipeline_components.v1.model_evaluation import (
        ModelEvaluationClassificationOp,
    )
    from kfp import compiler, dsl

    @dsl.pipeline(name="two-evaluations", pipeline_root="gs://zt-demo-pipeline-root/eval")
    def two_evaluations(dataflow_sa: str = "", trainer: str = ""):  # type: ignore[no-untyped-def]
        train = CustomTrainingJobOp(
            display_name="train",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": "python:3.11"},
                }
            ],
            service_account=trainer,
        )
        for name in ("eval-a", "eval-b"):
            evaluation = ModelEvaluationClassificationOp(
                target_field_name="label",
                ground_truth_gcs_source=["gs://zt-demo-raw-data/truth.jsonl"],
                dataflow_service_account=dataflow_sa,
            ).after(train)
            evaluation.set_display_name(name)
            zt.step.on(evaluation, sa(name))

    path = tmp_path_factory.mktemp("shared") / "two-evaluations.yaml"
    compiler.Compiler().compile(two_evaluations, str(path))
    return path


def _check(template: Path, params: dict[str, Any], policy: Any = None) -> zt.Report:
    return zt.check(
        template,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        parameter_values=params,
        snapshot=WORLD,
        policy=policy,
    )


def _zt103(report: zt.Report) -> list[zt.Finding]:
    return [f for f in report.findings if f.code == "ZT103"]


def test_one_dataflow_identity_set_for_two_steps_jobs_is_zt103(evaluations: Path) -> None:
    report = _check(evaluations, {"dataflow_sa": sa("dataflow-runner")})
    (finding,) = _zt103(report)
    assert finding in report.errors and not report.allowed
    assert finding.principal == f"serviceAccount:{sa('dataflow-runner')}"
    assert finding.step == "model-evaluation-classification"
    assert "the jobs of 2 steps" in finding.message
    assert "input dataflow_service_account" in finding.message  # where it is set: the fix
    details = [e.detail for e in finding.evidence]
    assert len(details) == 2 and all(
        d.startswith("used by the job ") and d.endswith("(input dataflow_service_account)")
        for d in details
    )


def test_left_empty_each_job_runs_as_its_steps_own_identity(evaluations: Path) -> None:
    assert _zt103(_check(evaluations, {"dataflow_sa": ""})) == []


def test_a_launched_identity_that_is_also_a_steps_own_is_shared(evaluations: Path) -> None:
    """The training step runs as the identity the evaluations' Dataflow jobs run as."""
    shared = sa("dataflow-runner")
    (finding,) = _zt103(_check(evaluations, {"dataflow_sa": shared, "trainer": shared}))
    assert "3 steps and launched jobs" in finding.message
    assert finding.evidence[0].detail == "used by custom-training-job"


def test_policy_allow_shared_relaxes_it_as_for_plain_steps(evaluations: Path) -> None:
    report = _check(
        evaluations,
        {"dataflow_sa": sa("dataflow-runner")},
        policy={"identities": {"allowShared": True}},
    )
    assert _zt103(report) == []


def test_the_text_report_names_who_shares_and_how_to_fix(evaluations: Path) -> None:
    text = str(_check(evaluations, {"dataflow_sa": sa("dataflow-runner")}))
    assert "ZT103" in text and "leave it empty" in text


def test_automl_tabular_with_one_dataflow_service_account(gcpc_corpus_dir: Path) -> None:
    """Google's AutoML Tabular pipeline: its ``dataflow_service_account`` parameter feeds nine
    components; set, one ZT103 names them all (four in the message, all in the evidence)."""
    template = gcpc_corpus_dir / "shipped" / "v1.automl.tabular.automl_tabular_pipeline.yaml"
    params = {
        "project": PROJECT,
        "location": LOCATION,
        "root_dir": "gs://zt-demo-pipeline-root/automl",
    }
    shared = _zt103(_check(template, {**params, "dataflow_service_account": sa("dataflow-sa")}))
    assert len(shared) == 1
    assert len(shared[0].evidence) == 9 and "and 5 more" in shared[0].message
    assert _zt103(_check(template, {**params, "dataflow_service_account": ""})) == []


def test_the_text_report_heads_each_step_with_its_own_identity(evaluations: Path) -> None:
    """A ZT103 about the Dataflow identity sits under the step, which is headed by the step's
    OWN identity (text and HTML), not by the finding's principal."""
    from zt_pipelines.policy.render import render_html, render_text

    report = _check(evaluations, {"dataflow_sa": sa("dataflow-runner")})
    text = render_text(report, width=200)
    header = next(
        line
        for line in text.splitlines()
        if line.startswith("step model-evaluation-classification ")
    )
    assert header.endswith(f"serviceAccount:{sa('eval-a')}") or header.endswith(
        f"serviceAccount:{sa('eval-b')}"
    ), header
    assert "dataflow-runner" not in header
    assert f"serviceAccount:{sa('dataflow-runner')}" not in render_html(report).split("ZT103")[0]


def test_one_serving_identity_for_two_deployed_models_is_shared() -> None:
    """Two endpoints' model servers (user code answering requests) under one identity share
    its grants: ZT103, as for steps and launched jobs (and a launched job joining them)."""
    from zt_pipelines.model import StepIdentity
    from zt_pipelines.policy.gcpc_checks import launched_identity_uses

    shared = "shared-runner@zt-demo.iam.gserviceaccount.com"
    steps = (
        StepIdentity(
            task="deploy-a",
            component="comp-deploy-a",
            executor="exec-a",
            source="gcpc",
            service_account="deploy-a@zt-demo.iam.gserviceaccount.com",
            serving_service_account=shared,
        ),
        StepIdentity(
            task="deploy-b",
            component="comp-deploy-b",
            executor="exec-b",
            source="gcpc",
            service_account="deploy-b@zt-demo.iam.gserviceaccount.com",
            serving_service_account=shared,
        ),
        StepIdentity(
            task="deploy-c",
            component="comp-deploy-c",
            executor="exec-c",
            source="gcpc",
            service_account="deploy-c@zt-demo.iam.gserviceaccount.com",
            serving_service_account="deploy-c@zt-demo.iam.gserviceaccount.com",  # its own
        ),
    )
    uses = launched_identity_uses(steps)
    assert sorted(t for t, _ in uses[shared]) == ["deploy-a", "deploy-b"]
    assert "deploy-c@zt-demo.iam.gserviceaccount.com" not in uses
