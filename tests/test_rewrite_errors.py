"""Bad input to the rewrite: every case raises a typed error whose message names where.

One base pipeline is compiled once (a plain step in a sub-DAG, a step reading a pipeline
parameter, an existing GCPC custom job); each case changes one thing.

No `from __future__ import annotations`: KFP reads component annotations at decoration time.
"""

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler, dsl

from zt_pipelines.declare import PLATFORM_KEY
from zt_pipelines.errors import (
    DeclarationError,
    DefaultIdentityError,
    IdentityError,
    InputError,
    ManifestError,
    PermissionFormatError,
    ResourceError,
    TemplateError,
    UnpinnedIdentityError,
)
from zt_pipelines.model import JobFields
from zt_pipelines.spec import load_template, rewrite_pipeline

PROJECT = "zt-test-project"
GOOD = f"good-runner@{PROJECT}.iam.gserviceaccount.com"


@dsl.component(base_image="python:3.11")
def step(msg: str) -> str:
    return msg


@dsl.pipeline(name="bad-inputs")
def base_pipeline(unset_sa: str, sa: str = GOOD, required_sa: str = "") -> None:
    from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

    first = step(msg="a")
    with dsl.If(first.output == "a"):
        step(msg="b")
    CustomTrainingJobOp(display_name="job", worker_pool_specs=[], service_account=sa)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], tuple[Any, ...]]:
    pytest.importorskip("google_cloud_pipeline_components")
    path = tmp_path_factory.mktemp("bad") / "base.yaml"
    compiler.Compiler().compile(base_pipeline, str(path))
    return load_template(path)


Case = Callable[[dict[str, Any], Path], dict[str, Any]]


def manifest(entry: dict[str, Any], task: str = "step") -> Case:
    def make(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
        return {"spec": spec, "manifest": {"steps": {task: entry}}}

    return make


def edited(change: Callable[[dict[str, Any]], None], **kwargs: Any) -> Case:
    def make(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
        change(spec)
        return {"spec": spec, **kwargs}

    return make


def file_with(text: str, name: str = "t.yaml") -> Case:
    def make(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
        path = tmp / name
        path.write_text(text)
        return {"spec": path}

    return make


def job_task(spec: dict[str, Any]) -> dict[str, Any]:
    task: dict[str, Any] = spec["root"]["dag"]["tasks"]["custom-training-job"]
    return task


def set_job_sa(binding: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        job_task(spec)["inputs"]["parameters"]["service_account"] = binding

    return change


def smuggle_sa(spec: dict[str, Any]) -> None:
    spec["root"]["dag"]["tasks"]["step"]["inputs"]["parameters"]["service_account"] = {
        "taskOutputParameter": {"producerTask": "x", "outputParameterKey": "y"}
    }


def set_job_input(name: str, binding: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        job_task(spec)["inputs"]["parameters"][name] = binding

    return change


EVIL = "evil-runner@zt-test-project.iam.gserviceaccount.com"


def tamper_launcher(how: str) -> Callable[[dict[str, Any]], None]:
    """Edit the existing GCPC custom job's launcher the way a hostile template could."""

    def change(spec: dict[str, Any]) -> None:
        container = spec["deploymentSpec"]["executors"]["exec-custom-training-job"]["container"]
        args = container["args"]
        at = args.index("--payload") + 1
        payload = args[at]
        if how == "second-job-spec":  # JSON keeps the last job_spec
            args[at] = payload[:-1] + f', "job_spec": {{"service_account": "{EVIL}"}}}}'
        elif how == "second-service-account":  # ... and the last service_account
            args[at] = payload.replace(
                '"tensorboard"', f'"service_account": "{EVIL}", "tensorboard"'
            )
        elif how == "nested-service-account":
            args[at] = payload.replace(
                '"labels": ', f'"x": {{"service_account": "{EVIL}"}}, "labels": '
            )
        elif how == "second-payload-arg":  # argparse keeps the last --payload
            args += [
                "--payload",
                payload.replace("{{$.inputs.parameters['service_account']}}", EVIL),
            ]
        elif how == "payload-equals-form":
            args[at - 1 : at + 1] = ["--payload=" + payload]
        elif how == "abbreviated-payload":
            args[at - 1] = "--pay"
        elif how == "env":
            container["env"] = [{"name": "PYTHONPATH", "value": "/tmp"}]
        elif how == "command":
            container["command"] = ["sh", "-c", "python3 -m " + container["command"][-1]]
        else:
            raise AssertionError(how)

    return change


def quote_in_component_name(spec: dict[str, Any]) -> None:
    evil = 'comp-x", "service_account": "evil'
    spec["components"][evil] = spec["components"].pop("comp-step")
    spec["root"]["dag"]["tasks"]["step"]["componentRef"]["name"] = evil


def drop_component(spec: dict[str, Any]) -> None:
    del spec["components"]["comp-step"]


def drop_executor(spec: dict[str, Any]) -> None:
    del spec["deploymentSpec"]["executors"]["exec-step"]


def cycle(spec: dict[str, Any]) -> None:
    name = next(n for n, c in spec["components"].items() if "dag" in c)
    first = next(iter(spec["components"][name]["dag"]["tasks"].values()))
    first["componentRef"]["name"] = name


def big_accelerator(spec: dict[str, Any]) -> None:
    container = spec["deploymentSpec"]["executors"]["exec-step"]["container"]
    container["resources"] = {"accelerator": {"resourceType": "NVIDIA_A100", "resourceCount": "1"}}


def lifecycle(spec: dict[str, Any]) -> None:
    spec["deploymentSpec"]["executors"]["exec-step"]["container"]["lifecycle"] = {
        "preCacheCheck": {}
    }


def our_platform(struct: Any) -> Case:
    def make(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
        doc = {
            "platforms": {PLATFORM_KEY: {"deploymentSpec": {"executors": {"exec-step": struct}}}}
        }
        return {"spec": (spec, (doc,))}

    return make


def with_kwargs(**kwargs: Any) -> Case:
    def make(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
        return {"spec": spec, **kwargs}

    return make


TAMPERED = [
    "second-job-spec",
    "second-service-account",
    "nested-service-account",
    "second-payload-arg",
    "payload-equals-form",
    "abbreviated-payload",
    "env",
]

CASES: list[tuple[str, Case, type[Exception], tuple[str, ...]]] = [
    *(
        (
            f"gcpc-launcher-{how}",
            edited(tamper_launcher(how)),
            TemplateError,
            # refused, never trusted to run as the pipeline SA (another *command* is no launcher
            # at all: it is wrapped like any container, see test_rewrite.py)
            ("task 'custom-training-job'", "rebuild the step with the GCPC component"),
        )
        for how in TAMPERED
    ),
    # templates
    ("malformed-yaml", file_with("a: [b\n"), TemplateError, ("t.yaml", "malformed")),
    ("empty-file", file_with(""), TemplateError, ("t.yaml", "empty")),
    (
        "not-a-pipeline",
        file_with("name: x\nimplementation: {}\n"),
        TemplateError,
        ("t.yaml", "pipelineInfo"),
    ),
    ("list-document", file_with("- a\n- b\n"), TemplateError, ("t.yaml", "not a mapping")),
    (
        "json-pipelinejob-bad",
        file_with('{"pipelineSpec": [1]}', "j.json"),
        TemplateError,
        ("j.json",),
    ),
    (
        "third-doc-not-platform",
        file_with("pipelineInfo: {name: x}\nroot: {dag: {tasks: {}}}\n---\nfoo: 1\n"),
        TemplateError,
        ("t.yaml", "PlatformSpec"),
    ),
    ("missing-component", edited(drop_component), TemplateError, ("task 'step'", "comp-step")),
    ("missing-executor", edited(drop_executor), TemplateError, ("task 'step'", "exec-step")),
    ("dag-cycle", edited(cycle), TemplateError, ("contains itself",)),
    ("task-smuggles-launcher-input", edited(smuggle_sa), TemplateError, ("task 'step'", "steer")),
    (
        "payload-injection-constant",
        edited(
            set_job_input("network", {"runtimeValue": {"constant": 'x", "service_account": "evil'}})
        ),
        TemplateError,
        ("task 'custom-training-job'", "network"),
    ),
    (
        "payload-injection-unquoted-string-constant",
        edited(
            set_job_input(
                "labels",
                {
                    "runtimeValue": {
                        "constant": f'{{}}, "job_spec": {{"service_account": "{EVIL}"}}'
                    }
                },
            )
        ),
        TemplateError,
        ("task 'custom-training-job'", "labels", "change the job's structure"),
    ),
    (
        "payload-injection-unquoted-bool-slot",
        edited(
            set_job_input(
                "enable_web_access",
                {"runtimeValue": {"constant": f'true, "service_account": "{EVIL}"'}},
            )
        ),
        TemplateError,
        ("task 'custom-training-job'", "enable_web_access", "change the job's structure"),
    ),
    (
        "payload-injection-name",
        edited(quote_in_component_name),
        TemplateError,
        ("task 'step'", "display_name"),
    ),
    (
        "declaration-for-unknown-executor",
        lambda s, t: {
            "spec": (
                s,
                (
                    {
                        "platforms": {
                            PLATFORM_KEY: {
                                "deploymentSpec": {
                                    "executors": {"exec-nope": {"serviceAccount": GOOD}}
                                }
                            }
                        }
                    },
                ),
            )
        },
        DeclarationError,
        ("exec-nope",),
    ),
    (
        "bad-defaults",
        with_kwargs(defaults=JobFields(network="default")),
        DeclarationError,
        ("defaults", "network"),
    ),
    ("container-lifecycle", edited(lifecycle), TemplateError, ("task 'step'", "lifecycle")),
    (
        "big-gpu-no-machine",
        edited(big_accelerator),
        DeclarationError,
        ("task 'step'", "machine_type"),
    ),
    # manifests
    (
        "manifest-unknown-task",
        manifest({"service_account": GOOD}, task="nope"),
        ManifestError,
        ("nope", "not a task"),
    ),
    (
        "manifest-duplicate-entry",
        lambda s, t: {"spec": s, "manifest": {"steps": {"step-2": {}, "condition-1/step-2": {}}}},
        ManifestError,
        ("two manifest entries",),
    ),
    (
        "manifest-unknown-key",
        manifest({"serviceAccount": GOOD}),
        ManifestError,
        ("steps['step']", "serviceAccount"),
    ),
    (
        "manifest-bad-uri",
        manifest({"needs": {"gs://UPPER": ["storage.objects.get"]}}),
        ResourceError,
        ("steps['step']", "UPPER"),
    ),
    (
        "manifest-bad-permission",
        manifest({"needs": {"gs://bucket-a": ["storage.objects"]}}),
        PermissionFormatError,
        ("steps['step']",),
    ),
    (
        "manifest-role-not-permission",
        manifest({"needs": {"gs://bucket-a": ["roles/viewer"]}}),
        PermissionFormatError,
        ("roles/viewer",),
    ),
    (
        "manifest-bad-network",
        manifest({"network": "default"}),
        DeclarationError,
        ("steps['step']", "network"),
    ),
    # default and malformed identities, all through the one helper
    (
        "compute-default",
        manifest({"service_account": "123456789012-compute@developer.gserviceaccount.com"}),
        DefaultIdentityError,
        ("steps['step']", "Compute Engine"),
    ),
    (
        "appengine-default",
        manifest({"service_account": f"{PROJECT}@appspot.gserviceaccount.com"}),
        DefaultIdentityError,
        ("App Engine",),
    ),
    (
        "custom-code-agent",
        manifest({"service_account": "service-123@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"}),
        DefaultIdentityError,
        ("Custom Code",),
    ),
    (
        "vertex-agent",
        manifest({"service_account": "service-123@gcp-sa-aiplatform.iam.gserviceaccount.com"}),
        DefaultIdentityError,
        ("Vertex AI Service Agent",),
    ),
    (
        "other-service-agent",
        manifest({"service_account": "service-123@gcp-sa-bigquery.iam.gserviceaccount.com"}),
        DefaultIdentityError,
        ("service agent",),
    ),
    (
        "cloudservices",
        manifest({"service_account": "123@cloudservices.gserviceaccount.com"}),
        DefaultIdentityError,
        ("Google APIs",),
    ),
    (
        "cloudbuild",
        manifest({"service_account": "123@cloudbuild.gserviceaccount.com"}),
        DefaultIdentityError,
        ("Cloud Build",),
    ),
    (
        "explicit-empty",
        manifest({"service_account": ""}),
        DefaultIdentityError,
        ("steps['step']", "empty"),
    ),
    (
        "homoglyph",
        manifest({"service_account": f"gооd-runner@{PROJECT}.iam.gserviceaccount.com"}),
        IdentityError,
        ("U+043E",),
    ),
    ("whitespace", manifest({"service_account": f" {GOOD}"}), IdentityError, ("whitespace",)),
    ("trailing-dot", manifest({"service_account": GOOD + "."}), IdentityError, ("stray dot",)),
    (
        "wrong-domain",
        manifest({"service_account": "someone@gmail.com"}),
        IdentityError,
        ("not a service-account",),
    ),
    (
        "upper-case",
        manifest({"service_account": GOOD.replace("good", "Good")}),
        IdentityError,
        ("upper-case",),
    ),
    # identities that are not constants
    (
        "sa-from-upstream-output",
        edited(
            set_job_sa(
                {"taskOutputParameter": {"producerTask": "step", "outputParameterKey": "Output"}}
            )
        ),
        UnpinnedIdentityError,
        ("task 'custom-training-job'", "'step'"),
    ),
    (
        "sa-from-unset-parameter",
        edited(set_job_sa({"componentInputParameter": "missing"})),
        UnpinnedIdentityError,
        ("task 'custom-training-job'",),
    ),
    (
        "sa-parameter-explicitly-empty",
        with_kwargs(parameter_values={"sa": ""}),
        DefaultIdentityError,
        ("task 'custom-training-job'", "empty"),
    ),
    (
        "sa-constant-empty",
        edited(set_job_sa({"runtimeValue": {"constant": ""}})),
        DefaultIdentityError,
        ("task 'custom-training-job'",),
    ),
    (
        "unknown-parameter-value",
        with_kwargs(parameter_values={"nope": 1}),
        TemplateError,
        ("parameter_values", "nope"),
    ),
    (
        "declared-from-upstream",
        our_platform({"serviceAccount": {"taskOutputParameter": {"producerTask": "x"}}}),
        DeclarationError,
        ("exec-step", "upstream"),
    ),
    (
        "declared-unset-parameter",
        our_platform({"serviceAccount": {"componentInputParameter": "required_sa"}}),
        DefaultIdentityError,
        ("task 'step'",),
    ),
    (
        "declared-parameter-without-value",
        our_platform({"serviceAccount": {"componentInputParameter": "unset_sa"}}),
        UnpinnedIdentityError,
        ("task 'step'", "no value"),
    ),
    (
        "our-config-unknown-key",
        our_platform({"serviceAcount": GOOD}),
        DeclarationError,
        ("exec-step", "serviceAcount"),
    ),
    (
        "conflicting-declarations",
        lambda s, t: {
            **our_platform({"serviceAccount": GOOD})(s, t),
            "manifest": {
                "steps": {
                    "step": {"service_account": f"other-runner@{PROJECT}.iam.gserviceaccount.com"}
                }
            },
        },
        DeclarationError,
        ("task 'step'", "conflicting"),
    ),
    (
        "machine-on-gcpc-job",
        manifest({"machine_type": "n1-standard-8"}, task="custom-training-job"),
        DeclarationError,
        ("custom-training-job", "machine_type"),
    ),
    (
        "pipeline-sa-reused",
        with_kwargs(pipeline_service_account=GOOD),
        IdentityError,
        ("task 'custom-training-job'", "pipeline's own"),
    ),
    ("no-project", with_kwargs(project=None), IdentityError, ("task '", "project")),
    ("bad-project", with_kwargs(project="X"), IdentityError, ("project",)),
    (
        "bad-naming-template",
        with_kwargs(naming_template="{nope}"),
        IdentityError,
        ("naming template",),
    ),
]


@pytest.mark.parametrize(
    ("case", "error", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises_a_typed_error_naming_where(
    base: tuple[dict[str, Any], tuple[Any, ...]],
    tmp_path: Path,
    case: Case,
    error: type[Exception],
    needles: tuple[str, ...],
) -> None:
    spec, _docs = copy.deepcopy(base)
    kwargs = case(spec, tmp_path)
    kwargs.setdefault("project", PROJECT)
    target = kwargs.pop("spec")
    with pytest.raises(error) as info:
        rewrite_pipeline(target, **kwargs)
    assert isinstance(info.value, InputError)  # exit code 2 in the CLI
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert info.value.where, "every error names where"


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


JUNK: tuple[Any, ...] = (None, 1, 1.5, True, "x", [], {}, [1], {"a": 1}, "", {"runtimeValue": 1})


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*path, index))
    return out


def _mutate(document: Any, rng: random.Random) -> None:
    """Replace (or delete) one to three values anywhere in ``document``."""
    candidates = _paths(document)[1:]
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(candidates)
        node = document
        try:
            for key in path[:-1]:
                node = node[key]
            if isinstance(node, dict) and rng.random() < 0.3:
                del node[path[-1]]
            else:
                node[path[-1]] = copy.deepcopy(rng.choice(JUNK))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path


@pytest.mark.parametrize("seed", range(4))
def test_malformed_ir_and_platform_docs_never_raise_anything_but_input_errors(
    base: tuple[dict[str, Any], tuple[Any, ...]], seed: int
) -> None:
    rng = random.Random(seed)
    ours = {
        "version": 1,
        "serviceAccount": GOOD,
        "needs": {"gs://bucket/p": ["storage.objects.get"]},
        "job": {"machine_type": "n1-standard-8"},
    }
    for _ in range(150):
        spec, docs = copy.deepcopy(base)
        platform = {"platforms": {PLATFORM_KEY: {"deploymentSpec": {"executors": {}}}}}
        platform["platforms"][PLATFORM_KEY]["deploymentSpec"]["executors"]["exec-step"] = ours
        documents = [*copy.deepcopy(docs), copy.deepcopy(platform)]
        _mutate(documents if rng.random() < 0.3 else spec, rng)
        try:
            rewrite_pipeline((spec, tuple(documents)), project=PROJECT)
        except InputError as exc:
            assert exc.where, exc


def test_unquoted_launcher_inputs_known_only_at_run_time_are_reported(
    base: tuple[dict[str, Any], tuple[Any, ...]],
) -> None:
    spec, docs = copy.deepcopy(base)
    upstream = {"taskOutputParameter": {"producerTask": "step", "outputParameterKey": "Output"}}
    for name in ("labels", "worker_pool_specs"):
        set_job_input(name, upstream)(spec)
    result = rewrite_pipeline((spec, docs), project=PROJECT)
    (job,) = [s for s in result.steps if s.already_custom_job]
    # the policy engine refuses them (ZT102): their text is pasted into the payload as is
    assert set(job.unescaped_payload_inputs) >= {"labels", "worker_pool_specs"}


# ------------------------------------------------------------------ GCPC steps
# Pipelines compiled from the installed GCPC components (a test dependency).

GCPC_SA = "job-runner@zt-test-project.iam.gserviceaccount.com"


def _gcpc(module: str) -> Any:
    return pytest.importorskip(f"google_cloud_pipeline_components.{module}")


def _gcpc_compile(tmp_path: Path, pipeline: Any, name: str) -> dict[str, Any]:
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    ir, _ = load_template(path)
    return ir


def _gcpc_task(spec: dict[str, Any], name: str) -> dict[str, Any]:
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


def _gcpc_container(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]  # type: ignore[no-any-return]


def _deploy_pipeline(**deploy: Any) -> Any:
    endpoint = pytest.importorskip("google_cloud_pipeline_components.v1.endpoint")
    model = pytest.importorskip("google_cloud_pipeline_components.v1.model")

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


def test_empty_serving_identity_is_refused(tmp_path: Path) -> None:
    spec = _gcpc_compile(tmp_path, _deploy_pipeline(service_account=""), "empty")
    with pytest.raises(DefaultIdentityError, match="serving identity") as info:
        rewrite_pipeline(spec, project=PROJECT)
    assert "model-deploy" in str(info.value)


def test_unknown_gcpc_launcher_is_refused_naming_its_module(tmp_path: Path) -> None:
    spec = _gcpc_compile(tmp_path, _deploy_pipeline(), "unknown")
    task = _gcpc_task(spec, "model-deploy")
    container = _gcpc_container(spec, task)
    container["command"][-1] = "google_cloud_pipeline_components.container.v2.endpoint.new.launcher"
    with pytest.raises(TemplateError) as info:
        rewrite_pipeline(spec, project=PROJECT)
    message = str(info.value)
    assert "google_cloud_pipeline_components.container.v2.endpoint.new.launcher" in message
    assert "manifest" in message and "model-deploy" in message


def test_dynamic_project_of_a_launcher_is_refused(tmp_path: Path) -> None:
    @dsl.component
    def pick() -> str:
        return "other-project"

    @dsl.pipeline(name="dyn")
    def p() -> None:
        chosen = pick()
        _gcpc("v1.batch_predict_job").ModelBatchPredictOp(
            job_display_name="b",
            gcs_source_uris=["gs://b/in"],
            gcs_destination_output_uri_prefix="gs://b/out",
            project=chosen.output,
        )

    spec = _gcpc_compile(tmp_path, p, "dyn")
    with pytest.raises(UnpinnedIdentityError, match="project") as info:
        rewrite_pipeline(spec, project=PROJECT)
    assert "model-batch-predict" in str(info.value) and "run time" in str(info.value)


def test_concat_payload_identity_from_an_upstream_output_is_refused(tmp_path: Path) -> None:
    @dsl.component
    def pick() -> str:
        return ""

    @dsl.pipeline(name="dynsa")
    def p() -> None:
        chosen = pick()
        _gcpc("v1.batch_predict_job").ModelBatchPredictOp(
            job_display_name="b",
            gcs_source_uris=["gs://b/in"],
            gcs_destination_output_uri_prefix="gs://b/out",
            service_account=chosen.output,
        )

    spec = _gcpc_compile(tmp_path, p, "dynsa")
    with pytest.raises(UnpinnedIdentityError, match="service_account") as info:
        rewrite_pipeline(spec, project=PROJECT)
    assert "model-batch-predict" in str(info.value)


def test_unsupported_job_kinds_are_refused_with_a_reason(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.v1.automl import training_job

    @dsl.pipeline(name="automl")
    def p() -> None:
        ds = dsl.importer(
            artifact_uri="gs://b/ds",
            artifact_class=_gcpc("types.artifact_types").VertexDataset,
            metadata={},
        )
        training_job.AutoMLTabularTrainingJobRunOp(
            display_name="a",
            optimization_prediction_type="regression",
            dataset=ds.output,
            target_column="y",
            project=PROJECT,
        )

    spec = _gcpc_compile(tmp_path, p, "automl")
    with pytest.raises(TemplateError, match="Service Agent"):
        rewrite_pipeline(spec, project=PROJECT)


def test_gcpc_mutations_never_raise_anything_but_input_errors(gcpc_corpus_dir: Path) -> None:
    """Random edits of real GCPC pipelines — values anywhere, and text spliced into launcher
    payloads (quotes, braces, placeholders, Concat/IfPresent fragments) — give typed errors."""
    rng = random.Random(7)
    names = ("starry_net", "bqml_arima_predict", "FeatureAttributionGraph", "infer_pipeline")
    bases = [
        load_template(path)
        for path in sorted(gcpc_corpus_dir.glob("*/*.yaml"))
        if any(n in path.name for n in names)
    ]
    snippets = [
        '"',
        "\\",
        "{",
        "}",
        "{{",
        "{{$.inputs.parameters['x']}}",
        ', "service_account": ""',
    ]
    for _ in range(120):
        spec, docs = copy.deepcopy(rng.choice(bases))
        if rng.random() < 0.5:
            texts = [p for p in _paths(spec) if p and isinstance(_at(spec, p), str)]
            texts = [p for p in texts if len(_at(spec, p)) > 30] or texts
            path = rng.choice(texts)
            text = _at(spec, path)
            i = rng.randint(0, len(text))
            _at(spec, path[:-1])[path[-1]] = text[:i] + rng.choice(snippets) + text[i + 2 :]
        else:
            _mutate(spec, rng)
        try:
            rewrite_pipeline((spec, docs), project=PROJECT)
        except InputError as exc:
            assert exc.where, exc


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@pytest.mark.parametrize(
    "name",
    [
        "sub/ingest",
        "/x",
        "a/",
        "a//b",
        "",
        # joined into lists too: "train,evil" would borrow train's per-step waiver (r3-14)
        "custom-training-job,evil",
        ",",
        "Ingest",
        "a_b",
        "a b",
        "-a",
        "a-",
        "ingest\n",
        "\u0456ngest",  # a Cyrillic look-alike of "ingest"
    ],
)
def test_a_task_name_that_could_collide_with_a_task_path_is_refused(
    tmp_path: Path, name: str
) -> None:
    """Task paths join names with "/": a root task named "sub/ingest" would take the manifest
    entry (and identity) meant for the sub-pipeline's step (red-team finding rt07)."""

    @dsl.component(base_image="python:3.11")
    def ingest() -> None:
        pass

    @dsl.pipeline(name="collide")
    def collide() -> None:
        ingest()

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(collide, str(path))
    ir, _ = load_template(path)
    tasks = ir["root"]["dag"]["tasks"]
    tasks[name] = tasks.pop("ingest")
    with pytest.raises(TemplateError, match="must be KFP's form"):
        rewrite_pipeline(ir, project="zt-test-project")
