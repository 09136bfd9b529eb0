"""A ZT102 waiver for a step pasting a pipeline input artifact covers the artifact reviewed
(red team in_22).

Vertex pastes an input artifact's metadata (``resourceName``) into a launcher payload unescaped;
whoever can create an artifact in Vertex ML Metadata chooses that text. A pasted pipeline
parameter's value is part of the upstream digest; now the artifact id a run is given is too —
from the drop-in (``PipelineJob(input_artifacts=...)``), ``check(input_artifacts=...)`` and
``check --input-artifact NAME=ID`` alike, so a waiver printed by one matches in the others.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml
from google_cloud_pipeline_components.types import artifact_types
from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
from kfp import compiler, dsl
from kfp.dsl import Input

import zt_pipelines as zt
from zt_pipelines.cli import main
from zt_pipelines.errors import TemplateError
from zt_pipelines.policy.report import Report
from zt_pipelines.spec import rewrite_pipeline

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "examples" / "world.yaml"
P = "zt-demo"
PIPELINE_SA = f"pipeline-sa@{P}.iam.gserviceaccount.com"
UPLOAD_SA = f"upload-sa@{P}.iam.gserviceaccount.com"
RELAXED = {"ZT210": "warning", "ZT212": "warning", "ZT216": "warning", "ZT103": "warning"}


@dsl.component(base_image="python:3.11")
def describe(model: Input[artifact_types.VertexModel]) -> str:
    return model.metadata.get("resourceName", "")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    @dsl.pipeline(name="ia", pipeline_root="gs://zt-demo-pipeline-root/ia")
    def ia(model: Input[artifact_types.VertexModel]) -> None:
        ModelBatchPredictOp(
            job_display_name="bp",
            model=model,
            gcs_source_uris=["gs://zt-demo-raw-data/in.jsonl"],
            gcs_destination_output_uri_prefix="gs://zt-demo-models/out",
            instances_format="jsonl",
            predictions_format="jsonl",
            service_account=UPLOAD_SA,
        )

    path = tmp_path_factory.mktemp("ia") / "ia.yaml"
    compiler.Compiler().compile(ia, str(path))
    return path


def _zt102(report: Report) -> Any:
    (finding,) = [
        f for f in (*report.findings, *(s.finding for s in report.suppressed)) if f.code == "ZT102"
    ]
    return finding


def _upstream(report: Report) -> str:
    (digest,) = [e.detail for e in _zt102(report).evidence if e.kind == "upstream"]
    return str(digest)


def _verify(template: Path, tmp_path: Path, ids: dict[str, str] | None, policy: Any = None) -> Any:
    job = zt.PipelineJob(
        display_name="ia",
        template_path=str(template),
        project=P,
        location="us-central1",
        snapshot=WORLD,
        input_artifacts=ids,
        policy=policy,
        audit_log=str(tmp_path / "audit.jsonl"),
    )
    return job.verify(service_account=PIPELINE_SA)


def _check(template: Path, ids: dict[str, str] | None, policy: Any = None) -> Report:
    return zt.check(
        template,
        project=P,
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=WORLD,
        input_artifacts=ids,
        policy=policy,
    )


def _waiver(digest: str) -> dict[str, Any]:
    return {
        "severities": RELAXED,
        "suppressions": [
            {
                "code": "ZT102",
                "step": "model-batch-predict",
                "upstream": digest,
                "justification": "model 111 is Google's, reviewed (SEC-40)",
                "expires": "2099-01-31",
            }
        ],
    }


def test_the_artifact_a_run_is_given_is_in_the_digest(template: Path, tmp_path: Path) -> None:
    digests = {
        str(ids): _upstream(_verify(template, tmp_path, ids))
        for ids in ({"model": "111"}, {"model": "999"}, None)
    }
    assert len(set(digests.values())) == 3
    # the same artifact: the same digest, from the drop-in and from check()
    again = _upstream(_verify(template, tmp_path, {"model": "111"}))
    assert again == digests[str({"model": "111"})]
    assert _upstream(_check(template, {"model": "111"})) == again
    assert _upstream(_check(template, None)) == digests["None"]
    assert (
        "the pipeline's input artifact 'model' (artifact 111)"
        in _zt102(_check(template, {"model": "111"})).message
    )


def test_a_waiver_reviewed_for_one_artifact_does_not_cover_another(
    template: Path, tmp_path: Path
) -> None:
    digest = _upstream(_check(template, {"model": "111"}))
    reviewed = _verify(template, tmp_path, {"model": "111"}, policy=_waiver(digest))
    assert [s.finding.code for s in reviewed.suppressed] == ["ZT102"]
    other = _verify(template, tmp_path, {"model": "999"}, policy=_waiver(digest))
    assert not other.suppressed and not other.allowed
    assert f"was for upstream {digest}" in _zt102(other).message


def test_cli_input_artifact_prints_the_waiver_the_drop_in_matches(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["check", str(template), "--project", P, "--pipeline-sa", PIPELINE_SA]
    args += ["--snapshot", str(WORLD), "--print-waivers", "--input-artifact", "model=111"]
    with pytest.raises(SystemExit):
        main(args)
    (entry,) = yaml.safe_load(capsys.readouterr().out)["suppressions"]
    assert entry["upstream"] == _upstream(_verify(template, tmp_path, {"model": "111"}))
    for bad in ("model", "=1", "model=", "other=1", "model=a b"):
        with pytest.raises(SystemExit) as info:
            main([*args[:-1], bad])
        assert info.value.code == 2, bad
    capsys.readouterr()


def test_input_artifacts_are_named_and_well_formed(template: Path) -> None:
    with pytest.raises(TemplateError, match="no input artifact 'modle'") as info:
        rewrite_pipeline(str(template), project=P, input_artifacts={"modle": "111"})
    assert info.value.where == "input_artifacts['modle']" and "model" in (info.value.fix or "")
    for bad in ("", "a/b", 'x", "service_account": "y', "projects/p/artifacts/1", 7):
        with pytest.raises(TemplateError, match="artifact id"):
            rewrite_pipeline(str(template), project=P, input_artifacts={"model": bad})  # type: ignore[dict-item]


def test_an_artifact_a_producer_reads_is_bound_too(tmp_path: Path) -> None:
    """Whoever may create an artifact writes its metadata, and a reviewed producer may pass
    it through (red team round 6, in_06 (b)): the artifact id is bound wherever it feeds the
    pasted value."""
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

    @dsl.pipeline(name="rd")
    def rd(model: Input[artifact_types.VertexModel]) -> None:
        src = describe(model=model)
        zt.step.on(src, "ingest-sa@zt-demo.iam.gserviceaccount.com")
        pools = [
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {"image_uri": "python:3.11"},
            }
        ]
        train = CustomTrainingJobOp(
            display_name="t", worker_pool_specs=pools, tensorboard=src.output
        )
        zt.step.on(train, "train-sa@zt-demo.iam.gserviceaccount.com")

    path = tmp_path / "rd.yaml"
    compiler.Compiler().compile(rd, str(path))

    def digest(ids: dict[str, str]) -> str:
        steps = rewrite_pipeline(str(path), project=P, input_artifacts=ids).steps
        (step,) = [s for s in steps if s.unescaped_payload_inputs]
        return step.upstream_digest

    assert len({digest({"model": "111"}), digest({"model": "999"}), digest({})}) == 3


def test_rewrite_cli_prints_the_digest_for_the_artifact(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`zt-pipelines rewrite --input-artifact` prints the upstream digest `check` and the
    drop-in compute for that artifact."""
    import re

    out = tmp_path / "rewritten.yaml"
    base = ["rewrite", str(template), "-o", str(out), "--project", P]
    printed = {}
    for ids in ([], ["--input-artifact", "model=111"]):
        with pytest.raises(SystemExit) as info:
            main([*base, *ids])
        assert info.value.code in (0, None)
        found = re.search(r"upstream ([0-9a-f]{24})", capsys.readouterr().err)
        assert found is not None
        printed[bool(ids)] = found.group(1)
    assert printed[True] == _upstream(_check(template, {"model": "111"}))
    assert printed[False] == _upstream(_check(template, None))
