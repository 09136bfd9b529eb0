"""A GCPC launcher whose ``--project`` / ``--location`` are the pipeline's own placeholders runs
its job where the pipeline runs, whatever its inputs named ``project`` / ``location`` hold:
Google's LLM pipelines pass ``project: vertex-ai-restricted`` (their image registry) to steps
that launch in the pipeline's project, and the check used to demand launch rights in Google's
project (ZT122, ZT201) and `plan` to grant roles there."""

from __future__ import annotations

from pathlib import Path

import pytest

from zt_pipelines.spec import rewrite_pipeline

PARAMS = {
    "project": "zt-demo",
    "location": "us-central1",
    "large_model_reference": "t5-small",
    "model_checkpoint": "gs://zt-demo-models/ckpt",
    "prompt_dataset": "gs://zt-demo-raw-data/prompts.jsonl",
}


@pytest.mark.parametrize("name", ["preview.llm.infer_pipeline.yaml"])
def test_a_launcher_at_the_pipelines_place_runs_the_job_there(
    gcpc_corpus_dir: Path, name: str
) -> None:
    spec = str(gcpc_corpus_dir / "compiled" / name)
    result = rewrite_pipeline(spec, project="zt-demo", parameter_values=PARAMS)
    steps = {s.task: s for s in result.steps}
    preprocessor = steps["infer-preprocessor"]  # inputs: project=vertex-ai-restricted, location=us
    assert preprocessor.job_project in (None, "zt-demo")
    assert preprocessor.job_location in (None, "us-central1")
    assert not any(s.job_project == "vertex-ai-restricted" for s in result.steps)
