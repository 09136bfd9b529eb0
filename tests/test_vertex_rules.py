"""What aiplatform's ``PipelineJob`` refuses, ``check`` and ``rewrite`` refuse first.

A template whose ``pipelineInfo.name`` makes an illegal job id, whose ``schemaVersion`` is not
a version, or whose PipelineJob ``runtimeConfig`` aiplatform cannot build used to pass
``check`` (ALLOWED) while the drop-in raised aiplatform's own exception. Now every such field
is a ``TemplateError`` naming the field and the rule, on every path; the drop-in turns what
aiplatform still raises into a typed error with an audit record. The differential test builds
each variant with aiplatform's own ``PipelineJob`` (1.x here, 2.x under ``make test-aip2``):
aiplatform refuses ⇔ zt refuses.
"""

import copy
import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from test_job import audit, emu, emulator, make_job, templates  # noqa: F401 (its fixtures)

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.errors import InputError, TemplateError
from zt_pipelines.spec.template import parse_template_text
from zt_pipelines.spec.vertex_rules import check_vertex_rules, derived_job_id_stem


def base(templates: dict[str, str]) -> dict[str, Any]:  # noqa: F811
    text = Path(templates["training"]).read_text()
    return next(d for d in yaml.safe_load_all(text) if d is not None)


def named(spec: dict[str, Any], name: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out["pipelineInfo"]["name"] = name
    return out


def versioned(spec: dict[str, Any], version: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out["schemaVersion"] = version
    return out


def rootless(spec: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out.pop("defaultPipelineRoot", None)
    return out


def job_form(spec: dict[str, Any], runtime: Any) -> dict[str, Any]:
    return {"pipelineSpec": copy.deepcopy(spec), "runtimeConfig": runtime}


def aiplatform_refuses(document: dict[str, Any], tmp_path: Path) -> str | None:
    """What aiplatform's own constructor raises for ``document`` (``None``: it builds)."""
    path = tmp_path / "aip.json"
    path.write_text(json.dumps(document))
    try:
        aiplatform.PipelineJob(
            display_name="d",
            template_path=str(path),
            project="zt-demo",
            location="us-central1",
            credentials=AnonymousCredentials(),
        )
    except Exception as exc:  # whatever aiplatform raises is the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def zt_refuses(document: dict[str, Any]) -> str | None:
    try:
        parse_template_text(json.dumps(document), where="t.json")
    except TemplateError as exc:
        return exc.message
    return None


LONG = "a" * 113
PIPE_SA = "pipeline-sa@zt-demo.iam.gserviceaccount.com"
WORLD = str(Path(__file__).resolve().parent.parent / "examples" / "world.yaml")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda s: named(s, "2026-13-45"), "pipelineInfo.name"),  # the red team's seed 61
        (lambda s: named(s, "---"), "pipelineInfo.name"),  # nothing left of it
        (lambda s: named(s, "ééé"), "pipelineInfo.name"),  # nothing left of it either
        (lambda s: named(s, LONG + "b"), "pipelineInfo.name"),  # 114: the id is 129
        (lambda s: named(s, "9" + LONG[:20]), "pipelineInfo.name"),
        (lambda s: named(s, " 1pipeline"), "pipelineInfo.name"),
        (lambda s: versioned(s, "projects/zt-demo"), "schemaVersion"),  # seed 62
        (lambda s: versioned(s, "2.1.0-final-final"), "schemaVersion"),
        (lambda s: versioned(s, 2.1), "schemaVersion"),  # a YAML number
        (lambda s: versioned(s, "v2..1"), "schemaVersion"),
        (lambda s: job_form(s, {"failurePolicy": "fast"}), "runtimeConfig"),
        (lambda s: job_form(s, {"parameterValues": {"nope": 1}}), "runtimeConfig"),
        (lambda s: job_form(rootless(s), {"gcsOutputDirectory": 5}), "runtimeConfig"),
        (
            lambda s: job_form(
                versioned(s, "2.0.0"), {"parameters": {"source": {"intValue": "x"}}}
            ),
            "runtimeConfig",
        ),
        (
            lambda s: job_form(versioned(s, "2.0.0"), {"parameters": {"source": {"v": 1}}}),
            "runtimeConfig",
        ),
        # schema 2.0.0 takes values for INT/DOUBLE/STRING parameters only
        (
            lambda s: job_form(versioned(s, "2.0.0"), {"parameterValues": {"epochs": 2}}),
            "root.inputDefinitions.parameters",
        ),
    ],
)
def test_every_field_aiplatform_refuses_is_a_template_error_naming_it(
    templates: dict[str, str],  # noqa: F811
    tmp_path: Path,
    edit: Any,
    field: str,
) -> None:
    document = edit(base(templates))
    assert aiplatform_refuses(document, tmp_path) is not None
    refused = zt_refuses(document)
    assert refused is not None and f"t.json: {field}" in refused, refused


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: named(s, LONG),  # exactly 113: the id is 128
        lambda s: named(s, "Ä-Training Pipeline"),  # → training-pipeline
        lambda s: named(s, "\u212aelvin"),  # the Kelvin sign lower-cases to an ASCII k
        lambda s: named(s, "--x--"),
        lambda s: named(s, "ünïcödé"),  # -n-c-d- → n-c-d
        lambda s: versioned(s, "2.0.0"),
        lambda s: versioned(s, " 2.1.0 "),  # packaging strips the blanks
        lambda s: versioned(s, "2.1.0.post1"),
        lambda s: job_form(s, {"failurePolicy": "PIPELINE_FAILURE_POLICY_FAIL_FAST"}),
        lambda s: job_form(s, {"parameterValues": {"nope": None}}),  # None is dropped first
        lambda s: job_form(s, {}),
    ],
)
def test_what_aiplatform_accepts_stays_accepted(
    templates: dict[str, str],  # noqa: F811
    tmp_path: Path,
    edit: Any,
) -> None:
    document = edit(base(templates))
    assert aiplatform_refuses(document, tmp_path) is None
    assert zt_refuses(document) is None


def test_random_names_and_versions_agree_with_aiplatform(
    templates: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Differential: 300 random pipeline names and schema versions, aiplatform's verdict."""
    rng = random.Random(9)
    spec = base(templates)
    alphabet = string.ascii_letters + string.digits + "-_. /ÄéK\u212a\u0130"
    disagree = []
    for i in range(300):
        if i % 2:
            length = rng.choice([0, 1, 2, 5, 40, 112, 113, 114, 120])
            name = "".join(rng.choice(alphabet) for _ in range(length))
            document = named(spec, name)
        else:
            version = rng.choice(["2", "2.1", "2.1.0", "1!2.0", "2.0.0rc1", "x", "2.1.0+l"])
            version += rng.choice(["", "", ".dev0", "-", "a", " ", "..", "_1"])
            document = versioned(spec, version)
        theirs = aiplatform_refuses(document, tmp_path) is not None
        ours = zt_refuses(document) is not None
        if theirs != ours:
            disagree.append((document["pipelineInfo"]["name"], document["schemaVersion"], theirs))
    assert not disagree, disagree[:5]


def test_the_derived_stem_is_aiplatforms_expression() -> None:
    assert derived_job_id_stem("My Pipeline_v2") == "my-pipeline-v2"
    assert derived_job_id_stem("--a..b--") == "a-b"


def test_check_and_rewrite_refuse_with_exit_2(
    templates: dict[str, str],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(named(base(templates), "2026-13-45")))
    check = ["check", "--snapshot", WORLD, "--pipeline-sa", PIPE_SA]
    for verb in (check, ["rewrite", "-o", str(tmp_path / "out.yaml")]):
        with pytest.raises(SystemExit) as ended:
            main([*verb[:1], str(path), "--project", "zt-demo", *verb[1:]])
        assert ended.value.code == 2, verb
        err = capsys.readouterr().err
        assert "pipelineInfo.name" in err and "[a-z][-a-z0-9]{0,127}" in err
        assert "Traceback" not in err
    # the Python API too (a dict template)
    with pytest.raises(TemplateError, match="schemaVersion"):
        zt.rewrite(versioned(base(templates), "projects/x"), project="zt-demo")


def test_an_explicit_job_id_is_checked_instead_of_the_derived_one(
    templates: dict[str, str],  # noqa: F811
) -> None:
    spec = named(base(templates), "2026-13-45")
    check_vertex_rules(spec, job_id="run-1")  # aiplatform does not derive one then
    with pytest.raises(InputError, match="job id"):
        check_vertex_rules(base(templates), job_id="1-run")
    with pytest.raises(InputError, match="job id"):
        check_vertex_rules(base(templates), job_id="run\n")


# -- the drop-in: typed errors and an audit record, never aiplatform's exception -------------


def test_drop_in_refuses_the_template_with_a_typed_error_and_a_record(
    emu: Emulator,  # noqa: F811
    templates: dict[str, str],  # noqa: F811
    audit: AuditLog,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(versioned(base(templates), "projects/zt-demo")))
    with pytest.raises(TemplateError, match="schemaVersion"):
        make_job(str(path), audit, job_id=None)
    [record] = audit.records()
    assert (record["action"], record["outcome"]) == ("build", "refused")
    assert "schemaVersion" in record["reason"] and audit.verify().ok


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"job_id": "1-starts-with-a-digit"}, "job id"),
        ({"display_name": "d" * 129}, "Display name"),  # aiplatform's own check, wrapped
        ({"labels": {"team": 7}}, "labels"),
        ({"failure_policy": "sometimes"}, "failure_policy"),
    ],
)
def test_drop_in_wraps_what_aiplatform_raises_for_its_arguments(
    emu: Emulator,  # noqa: F811
    templates: dict[str, str],  # noqa: F811
    audit: AuditLog,  # noqa: F811
    extra: dict[str, Any],
    said: str,
) -> None:
    arguments: dict[str, Any] = {"display_name": "demo", "job_id": "t-args", **extra}
    with pytest.raises(InputError, match=said) as info:
        zt.PipelineJob(
            template_path=templates["training"],
            credentials=emulator_credentials("user:alice@example.com"),
            audit_log=audit,
            **arguments,
        )
    assert type(info.value).__module__.startswith("zt_pipelines")
    [record] = audit.records()
    assert (record["action"], record["outcome"]) == ("build", "refused")
    assert said.lower() in record["reason"].lower()


def test_python_built_templates_and_values_must_be_json_data(
    templates: dict[str, str],  # noqa: F811
) -> None:
    """A dict template or parameter value aiplatform cannot turn into a protobuf Struct."""
    spec = base(templates)
    keyed = copy.deepcopy(spec)
    keyed["pipelineInfo"][1] = "x"
    with pytest.raises(TemplateError, match="is not text"):
        zt.rewrite(keyed, project="zt-demo")
    raw = copy.deepcopy(spec)
    raw["pipelineInfo"]["description"] = b"bytes"
    with pytest.raises(TemplateError, match="not JSON data"):
        zt.rewrite(raw, project="zt-demo")
    with pytest.raises(InputError, match="not JSON data"):
        zt.check(
            spec,
            project="zt-demo",
            location="us-central1",
            pipeline_service_account=PIPE_SA,
            snapshot=WORLD,
            parameter_values={"source": {"gs://x"}},
        )


def test_drop_in_hands_aiplatform_floats_its_yaml_reader_keeps_as_numbers(
    emu: Emulator,  # noqa: F811
    templates: dict[str, str],  # noqa: F811
    audit: AuditLog,  # noqa: F811
    tmp_path: Path,
) -> None:
    """aiplatform reads the template with PyYAML (YAML 1.1), which takes ``1e-05`` for text:
    a 0.00001 default must reach the request as the number it is."""
    spec = base(templates)
    params = spec["root"]["inputDefinitions"]["parameters"]
    params["lr"] = {"parameterType": "NUMBER_DOUBLE", "defaultValue": 1e-05, "isOptional": True}
    path = tmp_path / "lr.json"
    path.write_text(json.dumps(spec))
    job = make_job(str(path), audit)
    sent = job._gca_resource.pipeline_spec["root"]["inputDefinitions"]["parameters"]["lr"]
    assert sent["defaultValue"] == 1e-05 and isinstance(sent["defaultValue"], float)
