"""What a new user meets first: errors that say what, where and how to fix (issue 14)."""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import subprocess
import sys
from pathlib import Path

import pytest
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.errors import DeclarationError, DefaultIdentityError, TemplateError
from zt_pipelines.spec import load_template, rewrite_pipeline

SA = "train-sa@ml-prod.iam.gserviceaccount.com"


def run_module(tmp_path: Path, body: str) -> str:
    """Run a user's pipeline module in a fresh interpreter; return the last stderr line."""
    path = tmp_path / "my_pipeline.py"
    path.write_text("from kfp import dsl\nimport zt_pipelines as zt\n\n" + body)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True)
    assert proc.returncode != 0
    return proc.stderr.strip().splitlines()[-1]


def test_a_default_identity_in_the_decorator_names_the_component_and_line(
    tmp_path: Path,
) -> None:
    line = run_module(
        tmp_path,
        '@zt.step("123456789012-compute@developer.gserviceaccount.com")\n'
        "@dsl.component\ndef train_model():\n    pass\n",
    )
    assert "DefaultIdentityError" in line
    assert "component 'train_model' (my_pipeline.py:4)" in line


def test_an_unknown_keyword_suggests_the_nearest_one() -> None:
    with pytest.raises(DeclarationError, match="did you mean 'needs'") as info:
        zt.step(SA, need={"gs://b": ["storage.objects.get"]})
    assert "test_first_hour.py" in str(info.value)  # where: the decorator's file:line
    with pytest.raises(DeclarationError, match="did you mean 'machine_type'"):
        zt.step(SA, machinetype="n1-standard-4")


def test_decorator_errors_are_still_typed_in_the_call_form() -> None:
    with pytest.raises(DefaultIdentityError, match=r"@zt\.step"):
        zt.step("123456789012-compute@developer.gserviceaccount.com")


@pytest.mark.parametrize("name", ["pipeline.py", "pipeline.yaml"])
def test_python_source_given_as_a_template_says_compile_it_first(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("from kfp import dsl\n\n@dsl.pipeline\ndef p():\n    pass\n")
    with pytest.raises(TemplateError, match="Python source") as info:
        load_template(path)
    assert "compile it first" in str(info.value)


@zt.step(SA, needs={"gs://zt-features/runs/": ["storage.objects.get", "storage.objects.list"]})
@dsl.component(base_image="python:3.11")
def reader():
    pass


@dsl.pipeline(name="slash")
def slash():
    reader()


def test_a_prefix_with_a_trailing_slash_survives_compile_and_rewrite(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(slash, str(out))
    result = rewrite_pipeline(str(out), project="ml-prod")
    (need,) = result.steps[0].needs
    assert need.resource.uri == "gs://zt-features/runs/"
    again = rewrite_pipeline(result.spec, project="ml-prod", platform_docs=result.platform_docs)
    assert again.steps[0].service_account == SA


def test_a_prefix_with_a_trailing_slash_is_checked_and_planned(tmp_path: Path) -> None:
    from policy_worlds import NOW, PIPELINE_SA, WORLD_FILE

    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(slash, str(out))
    report = zt.check(
        str(out),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=WORLD_FILE,
        now=NOW,
    )
    assert not [f for f in report.findings if f.code in ("ZT200", "ZT201")], str(report)
    assert any(g.permission == "storage.objects.list" for g in report.granted)


def test_default_paths_are_the_platforms_user_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cache, cache key and audit log live where platformdirs says (XDG on Linux)."""
    import platformdirs

    from zt_pipelines.audit.log import default_audit_log
    from zt_pipelines.gcp.cache import default_cache_dir, default_key_path

    monkeypatch.delenv("ZT_AUDIT_LOG", raising=False)
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name))
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("zt-pipelines", False))
    assert default_cache_dir().is_relative_to(tmp_path / "XDG_CACHE_HOME")
    assert default_key_path().is_relative_to(tmp_path / "XDG_CONFIG_HOME")
    assert default_audit_log() == tmp_path / "XDG_STATE_HOME" / "zt-pipelines" / "audit.jsonl"


@pytest.mark.parametrize(
    ("kind", "text", "suggestion"),
    [
        ("policy", "version: 1\nregion: [us-central1]\n", "did you mean 'regions'"),
        ("policy", "version: 1\nimages:\n  requireDigests: true\n", "did you mean 'requireDigest'"),
        ("snapshot", "version: 1\nnode: []\n", "did you mean 'nodes'"),
    ],
)
def test_a_mistyped_key_in_a_file_suggests_the_nearest_one(
    tmp_path: Path, kind: str, text: str, suggestion: str
) -> None:
    from zt_pipelines.errors import PolicyFileError, SnapshotError
    from zt_pipelines.policy.orgpolicy import load_policy
    from zt_pipelines.policy.snapshot_file import load_snapshot

    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    load, error = (
        (load_policy, PolicyFileError) if kind == "policy" else (load_snapshot, SnapshotError)
    )
    with pytest.raises(error) as info:
        load(path)
    assert suggestion in str(info.value), str(info.value)


def test_help_shows_every_job_field_of_the_decorator_and_the_task_form() -> None:
    """`help(zt.step)` / IDE tooltips list every keyword (not `**job`), while a misspelt one
    still gets "did you mean"."""
    import dataclasses
    import inspect

    from zt_pipelines.model import JobFields

    job = {f.name for f in dataclasses.fields(JobFields)}
    for function in (zt.step, zt.step.on):
        parameters = inspect.signature(function).parameters
        assert job | {"needs", "service_account"} <= set(parameters), function
        assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    page = (Path(__file__).resolve().parent.parent / "docs" / "declarations.md").read_text()
    table = page.split("Keyword arguments (all optional):", 1)[1].split("\n\n", 2)[1]
    assert all(f"`{name}`" in table for name in job), "docs/declarations.md's table"
    with pytest.raises(DeclarationError, match="did you mean 'reach'"):
        zt.step(SA, reahc=["storage.googleapis.com"])


@pytest.mark.parametrize("kind", ["manifest", "policy", "snapshot"])
def test_python_source_given_as_a_manifest_policy_or_snapshot_says_what_to_pass(
    tmp_path: Path, kind: str
) -> None:
    """Like a template: a `.py` is named as Python source with the fix, not as malformed YAML."""
    from zt_pipelines.errors import InputError
    from zt_pipelines.policy.orgpolicy import load_policy
    from zt_pipelines.policy.snapshot_file import load_snapshot

    path = tmp_path / "my_pipeline.py"
    path.write_text("from kfp import dsl\nx = {'a': 1}\n")
    load = {"manifest": zt.load_manifest, "policy": load_policy, "snapshot": load_snapshot}[kind]
    with pytest.raises(InputError) as info:
        load(path)
    assert "Python source" in str(info.value) and "docs/" in str(info.value), str(info.value)
