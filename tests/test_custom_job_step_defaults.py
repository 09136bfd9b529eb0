"""Pipeline-wide step defaults reach the GCPC CustomJob launchers left in place, or are named.

`--step-network`, `--step-psc-attachment`, `--persistent-resource-id` (their ZT_ variables,
`step_defaults=`) are "for every step that does not set its own". A GCPC CustomJob launcher
(`CustomTrainingJobOp`, `create_custom_training_job_from_component`, Google's own jobs) is not
wrapped: a default goes into the payload input that is the whole value of that job field,
unless the step sets the field itself; a payload with no such input (Google's AutoML jobs
write theirs without a network) is named in the report's notes and on `rewrite`'s stderr.
Through real GCPC compiles and over Google's GCPC pipelines.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml

from zt_pipelines.model import JobFields
from zt_pipelines.spec import dump_template, load_template, rewrite_pipeline
from zt_pipelines.spec.jobs import input_placeholder
from zt_pipelines.spec.payload import Raw, field_at, parse_payload

pytest.importorskip("google_cloud_pipeline_components")

PROJECT = "zt-demo"
PSA = f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com"
NET = "projects/123456789012/global/networks/ml-vpc"
OWN = "projects/123456789012/global/networks/own-vpc"
ATT = "projects/zt-demo/regions/us-central1/networkAttachments/ml-attach"
KEY = "projects/ml-kms/locations/us-central1/keyRings/ml/cryptoKeys/k1"
POOLS = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": "python:3.11"},
    }
]


def _pipeline() -> Any:
    from google_cloud_pipeline_components.v1.custom_job import (
        CustomTrainingJobOp,
        create_custom_training_job_from_component,
    )
    from kfp import dsl

    @dsl.component(base_image="python:3.11-slim")
    def train():  # type: ignore[no-untyped-def]  # kfp reads no string annotations
        pass

    bare = create_custom_training_job_from_component(train, display_name="bare")
    peered = create_custom_training_job_from_component(train, display_name="own", network=OWN)
    psc = create_custom_training_job_from_component(
        train, display_name="psc", psc_interface_config={"network_attachment": ATT}
    )

    @dsl.pipeline(name="cj-defaults", pipeline_root="gs://zt-demo-pipeline-root/x")
    def pipeline():  # type: ignore[no-untyped-def]
        CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS).set_display_name("op")
        bare().set_display_name("bare")
        peered().set_display_name("peered")
        psc().set_display_name("psc")
        CustomTrainingJobOp(
            display_name="t2", worker_pool_specs=POOLS, network=OWN, persistent_resource_id="mine"
        ).set_display_name("op-own")

    return pipeline


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> str:
    from kfp import compiler

    path = tmp_path_factory.mktemp("cj") / "p.yaml"
    compiler.Compiler().compile(_pipeline(), str(path))
    return str(path)


def _rewrite(spec: Any, defaults: JobFields, **kw: Any) -> Any:
    return rewrite_pipeline(
        spec,
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PSA,
        defaults=defaults,
        **kw,
    )


def _steps(result: Any) -> dict[str, Any]:
    return {s.task: s for s in result.steps}


def _payload_field(result: Any, task: str, path: tuple[str, ...]) -> Any:
    """The value the rewritten task's payload will hold at ``path`` (its input resolved)."""
    spec = result.spec
    t = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][t["componentRef"]["name"]]
    args = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]["args"]
    parsed = parse_payload(args[args.index("--payload") + 1], lambda _: True)
    node = field_at(parsed.tree, path)
    name = input_placeholder(node.placeholder if isinstance(node, Raw) else node)
    if name is None:
        return node
    bound = (t.get("inputs") or {}).get("parameters", {}).get(name)
    if bound is not None:
        return bound["runtimeValue"]["constant"]
    return component["inputDefinitions"]["parameters"][name].get("defaultValue")


def test_a_gcpc_custom_job_left_in_place_takes_network_and_persistent_resource(
    template: str,
) -> None:
    result = _rewrite(template, JobFields(network=NET, persistent_resource_id="pool"))
    steps = _steps(result)
    for task in ("custom-training-job", "train"):
        step = steps[task]
        assert step.already_custom_job and step.job_kind == "CustomJob"
        assert _payload_field(result, task, ("job_spec", "network")) == NET
        assert _payload_field(result, task, ("job_spec", "persistent_resource_id")) == "pool"
        assert step.job.network == NET and step.job_network == NET
        assert step.job.persistent_resource_id == "pool"
        assert step.job_defaults_unreached == ()
    # a step's own network (task input or component default) wins; its PSC keeps it unpeered
    assert steps["train-2"].job.network == OWN
    assert steps["train-2"].job.persistent_resource_id == "pool"
    assert not steps["train-3"].job.network
    assert steps["train-3"].job.psc_interface_config == {"network_attachment": ATT}
    assert steps["custom-training-job-2"].job.network == OWN
    assert steps["custom-training-job-2"].job.persistent_resource_id == "mine"
    assert all(s.job_defaults_unreached == () for s in result.steps)


def test_psc_labels_and_key_defaults_reach_a_custom_job(template: str) -> None:
    result = _rewrite(
        template,
        JobFields(
            psc_interface_config={"network_attachment": ATT},
            labels={"team": "ml"},
            encryption_spec_key_name=KEY,
        ),
    )
    step = _steps(result)["custom-training-job"]
    assert step.job.psc_interface_config == {"network_attachment": ATT}
    assert step.job.labels == {"team": "ml"}
    assert step.job.encryption_spec_key_name == KEY and step.job_kms_key == KEY
    # a peered step keeps its whole placement: no PSC interface mixed in
    assert not _steps(result)["custom-training-job-2"].job.psc_interface_config


def test_a_declaration_wins_over_a_default_on_a_custom_job(template: str) -> None:
    result = _rewrite(
        template,
        JobFields(network=NET),
        manifest={"steps": {"custom-training-job": {"network": OWN}}},
    )
    assert _steps(result)["custom-training-job"].job.network == OWN


def test_rewriting_twice_places_the_custom_jobs_as_once(template: str, tmp_path: Path) -> None:
    defaults = JobFields(network=NET, persistent_resource_id="pool")
    first = _rewrite(template, defaults)
    out = tmp_path / "o.yaml"
    out.write_text(dump_template(first))
    second = _rewrite(str(out), defaults)

    def placed(result: Any) -> dict[str, Any]:
        return {
            s.task: (s.job.network, s.job.persistent_resource_id, s.job_defaults_unreached)
            for s in result.steps
        }

    assert placed(first) == placed(second)


def _edited(template: str, tmp_path: Path, edit: Any) -> str:
    """The template with ``CustomTrainingJobOp``'s payload text passed through ``edit``."""
    docs = list(yaml.safe_load_all(Path(template).read_text()))
    ir = docs[0]
    label = ir["components"]["comp-custom-training-job"]["executorLabel"]
    args = ir["deploymentSpec"]["executors"][label]["container"]["args"]
    at = args.index("--payload") + 1
    args[at] = edit(args[at])
    out = tmp_path / "edited.yaml"
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(out)


NETWORK_SLOT = '"network": "{{$.inputs.parameters[\'network\']}}"'


@pytest.mark.parametrize(
    "edit",
    [
        # the job field written as a literal: nothing a default could be bound to
        lambda p: p.replace(NETWORK_SLOT, '"network": ""'),
        # the field absent (as in Google's AutoML payloads)
        lambda p: p.replace(NETWORK_SLOT + ", ", ""),
        # the input also pasted elsewhere: binding it would change more than the network
        lambda p: p.replace(
            '"display_name": "{{$.inputs.parameters[\'display_name\']}}"',
            '"display_name": "{{$.inputs.parameters[\'network\']}}"',
        ),
        # text around the placeholder: the field is not the input
        lambda p: p.replace(NETWORK_SLOT, '"network": "x{{$.inputs.parameters[\'network\']}}"'),
    ],
    ids=["literal", "absent", "input-used-twice", "text-around"],
)
def test_a_default_the_payload_has_no_input_for_is_named(
    template: str, tmp_path: Path, edit: Any
) -> None:
    edited = _edited(template, tmp_path, edit)
    original = Path(template).read_text()
    assert Path(edited).read_text() != original
    result = _rewrite(edited, JobFields(network=NET, persistent_resource_id="pool"))
    step = _steps(result)["custom-training-job"]
    assert step.job_defaults_unreached == ("network",)
    assert step.job.network != NET
    assert step.job.persistent_resource_id == "pool"  # the field that has an input is applied


def test_check_and_rewrite_name_a_custom_job_the_defaults_do_not_reach(
    template: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    import zt_pipelines as zt
    from zt_pipelines.cli import main

    edited = _edited(template, tmp_path, lambda p: p.replace(NETWORK_SLOT + ", ", ""))
    monkeypatch.setenv("ZT_STEP_NETWORK", NET)  # the variable, as the CLI flag reads it
    report = zt.check(
        edited,
        project=PROJECT,
        location="us-central1",
        pipeline_service_account=PSA,
        snapshot=Path(__file__).resolve().parent.parent / "examples" / "world.yaml",
    )
    named = [n for n in report.notes if "do not reach custom-training-job:" in n]
    assert len(named) == 1 and "network" in named[0] and "CustomJob" in named[0]
    assert not [n for n in report.notes if "do not reach train" in n]
    monkeypatch.delenv("ZT_STEP_NETWORK")
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "rewrite",
                edited,
                "--project",
                PROJECT,
                "--pipeline-sa",
                PSA,
                "--step-network",
                NET,
                "-o",
                str(tmp_path / "o.yaml"),
            ]
        )
    assert exited.value.code in (0, None)
    err = capsys.readouterr().err
    assert "the step defaults network do not reach task 'custom-training-job'" in err
    assert NET in (tmp_path / "o.yaml").read_text()  # the other custom job took it


def test_a_batch_prediction_key_left_to_a_blank_parameter_takes_the_default(
    tmp_path: Path,
) -> None:
    """A pipeline parameter left at '' is not the step's own value — on the first rewrite as
    on a second (which reads it pinned as a constant)."""
    from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
    from kfp import compiler, dsl

    @dsl.pipeline(name="bp", pipeline_root="gs://zt-demo-pipeline-root/x")
    def bp(encryption_spec_key_name: str = ""):  # type: ignore[no-untyped-def]
        ModelBatchPredictOp(
            job_display_name="bp",
            gcs_source_uris=["gs://zt-demo-raw-data/in.jsonl"],
            gcs_destination_output_uri_prefix="gs://zt-demo-models/out",
            instances_format="jsonl",
            encryption_spec_key_name=encryption_spec_key_name,
        )

    path = tmp_path / "bp.yaml"
    compiler.Compiler().compile(bp, str(path))
    first = _rewrite(str(path), JobFields(encryption_spec_key_name=KEY))
    out = tmp_path / "o.yaml"
    out.write_text(dump_template(first))
    second = _rewrite(str(out), JobFields(encryption_spec_key_name=KEY))
    assert first.steps[0].job_kms_key == second.steps[0].job_kms_key == KEY
    given = _rewrite(
        str(path),
        JobFields(encryption_spec_key_name=KEY),
        parameter_values={
            "encryption_spec_key_name": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/own"
        },
    )
    assert given.steps[0].job_kms_key.endswith("/own")


def test_googles_custom_jobs_take_the_defaults_or_are_named(
    gcpc_corpus_dir: Path, tmp_path: Path
) -> None:
    """Over Google's GCPC pipelines: every CustomJob launcher left in place either runs with
    each default (its payload input bound), sets the field itself, or is named; a second
    rewrite places every step as the first."""
    values_all = {"project": "zt-test-project", "location": "us-central1", "root_dir": "gs://b/r"}
    defaults = JobFields(network=NET, persistent_resource_id="pool")
    reached = named = own = 0
    files = sorted(gcpc_corpus_dir.glob("*/*.yaml"))
    assert len(files) == 41
    for path in files:
        ir, _ = load_template(path)
        params = (ir["root"].get("inputDefinitions") or {}).get("parameters") or {}
        values = {k: v for k, v in values_all.items() if k in params}
        bare = rewrite_pipeline(path, project="zt-test-project", parameter_values=values)
        result = rewrite_pipeline(
            path, project="zt-test-project", parameter_values=values, defaults=defaults
        )
        before = _steps(bare)
        for step in result.steps:
            if not (step.already_custom_job and step.job_kind == "CustomJob"):
                continue
            for name, value in (("network", NET), ("persistent_resource_id", "pool")):
                mine = getattr(before[step.task].job, name)
                if mine:  # the step's own: kept
                    assert getattr(step.job, name) == mine, (path.name, step.task)
                    own += 1
                elif name in step.job_defaults_unreached:
                    assert getattr(step.job, name) is None, (path.name, step.task)
                    named += 1
                else:
                    assert getattr(step.job, name) == value, (path.name, step.task, name)
                    reached += 1
        out = tmp_path / path.name
        out.write_text(dump_template(result))
        again = rewrite_pipeline(
            out, project="zt-test-project", parameter_values=values, defaults=defaults
        )
        assert {
            s.task: (s.job.network, s.job.persistent_resource_id, s.job_defaults_unreached)
            for s in again.steps
        } == {
            s.task: (s.job.network, s.job.persistent_resource_id, s.job_defaults_unreached)
            for s in result.steps
        }, path.name
    # Google's LLM / model-evaluation jobs take them; AutoML's payloads have no such input
    assert reached >= 6 and named >= 90, (reached, named, own)


def test_a_wrapped_steps_job_network_is_its_jobs_not_its_codes_input(tmp_path: Path) -> None:
    """A container step with an input called `network` (data for its code): its CustomJob runs
    on the step default's network and key, on the first rewrite and on a second alike."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim")
    def probe(network: str) -> str:
        return network

    @dsl.pipeline(name="probe", pipeline_root="gs://zt-demo-pipeline-root/x")
    def pipeline():  # type: ignore[no-untyped-def]
        probe(network="projects/9/global/networks/the-codes-target")

    path = tmp_path / "probe.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    defaults = JobFields(network=NET, encryption_spec_key_name=KEY)
    first = _rewrite(str(path), defaults)
    again = _rewrite((first.spec, first.platform_docs), defaults)
    for result in (first, again):
        (step,) = result.steps
        assert (step.job_network, step.job_kms_key) == (NET, KEY)
        assert step.job.network == NET
