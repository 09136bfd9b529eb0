"""The ZT102 upstream digest masks a value only where the rewrite wrote it (red team in_18 (b)).

A pinned identity or a pipeline parameter value is masked out of the digest so the waivers a team
reviewed hold in its dev and prod projects. Masking by value anywhere let a producer's image (or a
whole command, argument or environment value) that equals a parameter's value be swapped together
with that value under the same waiver. Now values are masked only at the places the rewrite writes
them: an input it pins (identity, project, location, network, CMEK key), the identity field of a
launcher's payload, and the arguments of a GCPC launcher it wrapped, for the parameters that feed
that task. Everything else a producer runs is hashed as it is.
"""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google_cloud_pipeline_components.v1.bigquery import BigqueryQueryJobOp
from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
from google_cloud_pipeline_components.v1.dataflow import DataflowPythonJobOp
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.spec import load_template, rewrite_pipeline

P = "zt-demo"
INGEST_SA = f"ingest-sa@{P}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{P}.iam.gserviceaccount.com"
POOLS = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": "python:3.11"},
    }
]
IMAGE = "python:3.11-slim"
EVIL = "docker.io/evil/tb-injector:1"


def _compile(pipeline: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _edited(path: Path, tmp_path: Path, name: str, edit: Any) -> Path:
    """The compiled file with ``edit(ir)`` applied (a hand edit of the template)."""
    docs = list(yaml.safe_load_all(path.read_text()))
    ir = copy.deepcopy(docs[0])
    edit(ir)
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump_all([ir, *docs[1:]], sort_keys=False))
    return out


def _digest(path: Path, values: dict[str, Any] | None = None, project: str = P) -> str:
    steps = rewrite_pipeline(str(path), project=project, parameter_values=values).steps
    (step,) = [s for s in steps if s.unescaped_payload_inputs]
    assert step.upstream_digest
    return step.upstream_digest


def _train(tensorboard: Any) -> Any:
    train = CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS, tensorboard=tensorboard)
    zt.step.on(train, TRAIN_SA)
    return train


@dsl.component(base_image=IMAGE)
def make_tb() -> str:
    return "projects/zt-demo/locations/us-central1/tensorboards/1"


def _plain(tmp_path: Path) -> Path:
    """A plain producer and a pipeline parameter that may equal anything in its container."""

    @dsl.pipeline(name="tb")
    def tb(runtime_image: str = IMAGE, tag: str = "x") -> None:
        src = make_tb()
        zt.step.on(src, INGEST_SA)
        _train(src.output)

    return _compile(tb, tmp_path, "plain")


def _executor(ir: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = ir["deploymentSpec"]["executors"]["exec-make-tb"]["container"]
    return container


# ------------------------------------------------------------------ red team in_18 (b)


def test_a_producer_image_swapped_with_a_parameter_of_the_same_value(tmp_path: Path) -> None:
    reviewed = _plain(tmp_path)
    attacked = _edited(reviewed, tmp_path, "evil", lambda ir: _executor(ir).update(image=EVIL))
    assert _digest(reviewed, {"runtime_image": IMAGE}) != _digest(attacked, {"runtime_image": EVIL})


@pytest.mark.parametrize(
    "where",
    ["image", "command[2]", "command[-1]", "args[0]", "env"],
)
def test_any_one_character_change_in_a_producer_container_changes_the_digest(
    tmp_path: Path, where: str
) -> None:
    """Metamorphic: whatever the parameter values — here each equal to the very string that
    changes — an edit of the producer's image,
    command, arguments or environment changes the digest."""
    base = _plain(tmp_path)

    def put(ir: dict[str, Any], text: str) -> None:
        container = _executor(ir)
        if where == "image":
            container["image"] = text
        elif where == "env":
            container["env"] = [{"name": "TAG", "value": text}]
        else:
            key, index = where[:-1].split("[")
            container[key][int(index)] = text

    def original(ir: dict[str, Any]) -> str:
        container = _executor(ir)
        if where == "image":
            return str(container["image"])
        if where == "env":
            return "zt-demo-tag"
        key, index = where[:-1].split("[")
        return str(container[key][int(index)])

    ir, _ = load_template(base)
    before = original(ir)
    after = before[:-1] + ("x" if before[-1:] != "x" else "y")
    one = _edited(base, tmp_path, "one", lambda ir: put(ir, before))
    two = _edited(base, tmp_path, "two", lambda ir: put(ir, after))
    assert _digest(one, {"tag": before}) != _digest(two, {"tag": after})
    assert _digest(one, {"runtime_image": before}) != _digest(two, {"runtime_image": after})


def test_a_launcher_producer_pool_image_equal_to_a_parameter(tmp_path: Path) -> None:
    """A CustomTrainingJobOp producer (a launcher left in place): its worker pool image, a
    constant of its task, is what it runs — never masked as a parameter's value."""

    def build(image: str) -> Any:
        @dsl.pipeline(name="pool")
        def pool(train_image: str = image) -> None:
            pools = copy.deepcopy(POOLS)
            pools[0]["container_spec"]["image_uri"] = image
            first = CustomTrainingJobOp(display_name="first", worker_pool_specs=pools)
            zt.step.on(first, INGEST_SA)
            _train(first.outputs["gcp_resources"])

        return pool

    reviewed = _compile(build("us-docker.pkg.dev/zt-demo/train/img:1"), tmp_path, "a")
    attacked = _compile(build("docker.io/evil/img:1"), tmp_path, "b")
    one = _digest(reviewed, {"train_image": "us-docker.pkg.dev/zt-demo/train/img:1"})
    two = _digest(attacked, {"train_image": "docker.io/evil/img:1"})
    assert one != two


def test_an_identity_written_in_a_producer_is_code(tmp_path: Path) -> None:
    """Only the identities the rewrite pins are masked: one named in a producer's container
    (an argument, an environment value) is what the producer runs as or calls."""
    base = _plain(tmp_path)
    digests = set()
    for sa in (TRAIN_SA, INGEST_SA):  # both pinned by the rewrite, elsewhere

        def env(ir: dict[str, Any], sa: str = sa) -> None:
            _executor(ir)["env"] = [{"name": "IMPERSONATE", "value": sa}]

        digests.add(_digest(_edited(base, tmp_path, sa[:5], env)))
    assert len(digests) == 2


def test_pinned_identities_and_projects_are_still_masked(tmp_path: Path) -> None:
    """What the rewrite writes keeps the digest: a derived identity and the project a run
    goes to (the same waivers hold in dev and prod)."""

    @dsl.pipeline(name="tb")
    def tb(project: str) -> None:
        src = make_tb()  # no declared identity: derived from the project
        _train(src.output)

    path = _compile(tb, tmp_path, "derived")
    dev = _digest(path, {"project": "zt-dev-project"}, "zt-dev-project")
    assert dev == _digest(path, {"project": "zt-prod-project"}, "zt-prod-project")


# ------------------------------------------------------------------ wrapped GCPC launchers


def _bq(tmp_path: Path, name: str, *, nested: bool = False, label: str = "reviewed") -> Path:
    """A BigQuery query job (a launcher the rewrite wraps, inlining its known inputs) whose
    table a container pastes."""

    def query(project: str, sql: str) -> Any:
        job = BigqueryQueryJobOp(project=project, location="US", query=sql, labels={"team": label})
        zt.step.on(job, INGEST_SA)
        return job

    @dsl.pipeline(name="inner")
    def inner(project: str, sql: str) -> None:
        _train(query(project, sql).outputs["gcp_resources"])

    @dsl.pipeline(name="bq")
    def bq(project: str, sql: str = "SELECT 1", other: str = "reviewed") -> None:
        if nested:
            inner(project=project, sql=sql)
        else:
            _train(query(project, sql).outputs["gcp_resources"])

    return _compile(bq, tmp_path, name)


@pytest.mark.parametrize("nested", [False, True])
def test_a_wrapped_launcher_holds_across_projects(tmp_path: Path, nested: bool) -> None:
    """The project (pinned) and a parameter feeding the launcher (inlined into its payload)
    are masked where the rewrite wrote them, directly and through a sub-pipeline's inputs."""
    path = _bq(tmp_path, "bq", nested=nested)
    dev = _digest(path, {"project": "zt-dev-project"}, "zt-dev-project")
    prod = _digest(path, {"project": "zt-prod-project"}, "zt-prod-project")
    assert dev == prod


def test_a_wrapped_launcher_literal_equal_to_an_unfed_parameter_is_code(tmp_path: Path) -> None:
    """A value written into the launcher by its author (a label here) that equals a parameter
    which does not feed the task is not masked: editing it with the parameter changes the
    digest."""
    one = _bq(tmp_path, "a", label="reviewed")
    two = _bq(tmp_path, "b", label="changed")
    one_values = {"project": P, "other": "reviewed"}
    assert _digest(one, one_values) != _digest(two, {"project": P, "other": "changed"})


def test_a_wrapped_launcher_producer_edited_in_its_arguments(tmp_path: Path) -> None:
    """Any argument of the wrapped launcher that the rewrite did not write is hashed: an edit
    of its payload text outside the inlined values changes the digest."""
    path = _bq(tmp_path, "a")

    def edit(ir: dict[str, Any]) -> None:
        (label,) = [k for k, e in ir["deploymentSpec"]["executors"].items() if "bigquery" in k]
        args = ir["deploymentSpec"]["executors"][label]["container"]["args"]
        at = args.index("--payload") + 1
        args[at] = args[at].replace("configuration", "configuration ", 1)

    edited = _edited(path, tmp_path, "b", edit)
    assert _digest(path, {"project": P}) != _digest(edited, {"project": P})


def test_dataflow_python_worker_identity_pinned_in_args_is_masked(tmp_path: Path) -> None:
    """The worker identity the rewrite appends to a Dataflow job's ``args`` list is verified
    on its own: a derived one (which changes with the project) keeps the digest; another item
    of the list is code."""

    def build(extra: str) -> Any:
        @dsl.pipeline(name="df")
        def df(project: str) -> None:
            job = DataflowPythonJobOp(
                project=project,
                location="us-central1",
                python_module_path="gs://zt-demo-code/main.py",
                temp_location="gs://zt-demo-tmp/df",
                args=["--mode", extra],
            )
            _train(job.outputs["gcp_resources"])

        return df

    path = _compile(build("safe"), tmp_path, "a")
    dev = _digest(path, {"project": "zt-dev-project"}, "zt-dev-project")
    prod = _digest(path, {"project": "zt-prod-project"}, "zt-prod-project")
    assert dev == prod
    other = _compile(build("other"), tmp_path, "b")
    assert _digest(other, {"project": "zt-dev-project"}, "zt-dev-project") != dev


def test_a_rewritten_template_gives_the_same_digests(tmp_path: Path) -> None:
    """The digest reads the rewritten IR only: rewriting what `rewrite` wrote (wrapped
    launchers with their values inlined) reports the same digests."""
    for nested in (False, True):
        path = _bq(tmp_path, f"r{nested}", nested=nested)
        values = {"project": P, "sql": "SELECT 2"}
        result = rewrite_pipeline(str(path), project=P, parameter_values=values)
        again = rewrite_pipeline(
            (json.loads(json.dumps(result.spec)), result.platform_docs),
            project=P,
            parameter_values=values,
        )
        assert [s.upstream_digest for s in again.steps] == [s.upstream_digest for s in result.steps]
        assert any(s.upstream_digest for s in result.steps)


def test_an_identity_elsewhere_in_a_launcher_producer_is_not_masked(tmp_path: Path) -> None:
    """A pinned identity is masked only in the member the rewrite pins it into: the same
    e-mail as another input of a launcher (a left-in-place job's display name, a wrapped
    BigQuery job's query text, inlined into its payload) is what the job runs with."""

    def launcher(name: str) -> Any:
        @dsl.pipeline(name="pool")
        def pool(project: str) -> None:
            first = CustomTrainingJobOp(display_name=name, worker_pool_specs=POOLS)
            zt.step.on(first, INGEST_SA)
            _train(first.outputs["gcp_resources"])

        return pool

    def wrapped(name: str) -> Any:
        @dsl.pipeline(name="bq")
        def bq(project: str) -> None:
            job = BigqueryQueryJobOp(project=project, location="US", query=name)
            zt.step.on(job, INGEST_SA)
            _train(job.outputs["gcp_resources"])

        return bq

    for i, build in enumerate((launcher, wrapped)):
        one = _compile(build(TRAIN_SA), tmp_path, f"a{i}")
        two = _compile(build(INGEST_SA), tmp_path, f"b{i}")
        assert _digest(one, {"project": P}) != _digest(two, {"project": P}), build.__name__


# ------------------------------------------------------------------ red team round 6


def test_a_parameter_feeding_a_producer_is_in_the_digest_when_it_could_break_json(
    tmp_path: Path,
) -> None:
    """in_06: a producer reviewed with ``tag=1`` may pass its input through into the pasted
    value. A value that cannot leave a JSON string (ids, regions, URIs, tags) keeps the
    digest, so the waiver holds for the next run; one holding a quote, a backslash or a
    control character is part of the digest, so no waiver reviewed for another value covers
    it."""

    @dsl.component(base_image=IMAGE)
    def tagged(tag: str) -> str:
        return f"projects/zt-demo/locations/us-central1/tensorboards/{tag}"

    @dsl.pipeline(name="tb")
    def tb(tag: str = "1") -> None:
        src = tagged(tag=tag)
        zt.step.on(src, INGEST_SA)
        _train(src.output)

    path = _compile(tb, tmp_path, "tagged")
    reviewed = _digest(path, {"tag": "1"})
    assert _digest(path, {"tag": "2"}) == reviewed
    injections = (
        '1", "service_account": "legacy-sa@zt-demo.iam.gserviceaccount.com", "a": "',
        "1\\u0022",
        "1\n",
        "1\\",
    )
    digests = {_digest(path, {"tag": value}) for value in injections}
    assert reviewed not in digests and len(digests) == len(injections)


@pytest.mark.parametrize(
    "name",
    [
        "network",
        "timeout",
        "labels",
        "encryption_spec_key_name",
        "persistent_resource_id",
        "strategy",
        "reserved_ip_ranges",
    ],
)
def test_a_user_input_named_like_a_job_setting_is_hashed(tmp_path: Path, name: str) -> None:
    """in_07: only a launcher's own job settings (the input fills the payload member of its
    name and nothing else) leave the digest alone; a user component's input of that name is
    data its code turns into the pasted value, whatever it is called — as a task constant and
    as the component's default."""
    import importlib.util

    module = tmp_path / f"comp_{name}.py"  # kfp reads a component's source from its file
    module.write_text(
        "from kfp import dsl\n\n\n@dsl.component(base_image='python:3.11-slim')\n"
        f"def make(text: str, {name}: str = 'zt-demo') -> str:\n"
        f"    return f'projects/{{{name}}}/locations/us-central1/tensorboards/1'\n"
    )
    spec = importlib.util.spec_from_file_location(f"comp_{name}", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    make = loaded.make

    def build(value: str | None) -> Any:
        @dsl.pipeline(name="tb")
        def tb() -> None:
            src = make(text="x") if value is None else make(text="x", **{name: value})
            zt.step.on(src, INGEST_SA)
            _train(src.output)

        return tb

    evil = 'zt-demo/locations/x/tensorboards/1", "service_account": "legacy-sa@zt-demo'
    given = {
        _digest(_compile(build(v), tmp_path, f"v{i}"))
        for i, v in enumerate(("zt-demo", "zt-other", evil))
    }
    assert len(given) == 3
    default = _compile(build(None), tmp_path, "default")

    def other_default(ir: dict[str, Any]) -> None:
        ir["components"]["comp-make"]["inputDefinitions"]["parameters"][name]["defaultValue"] = evil

    assert _digest(default) != _digest(_edited(default, tmp_path, "evil-default", other_default))


# ------------------------------------------------------------------ Google's pipelines


def _executor_of(ir: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The container executor of the task at ``path`` (``a/b/c``) in a compiled IR."""
    component: dict[str, Any] = ir["root"]
    for name in path.split("/"):
        task = component.get("dag", {}).get("tasks", {}).get(name)
        if task is None:
            return None
        component = ir["components"][task["componentRef"]["name"]]
    label = component.get("executorLabel")
    container = ir["deploymentSpec"]["executors"].get(label, {}).get("container")
    return container if isinstance(container, dict) else None


@pytest.mark.shared
def test_googles_pipelines_any_producer_edit_changes_the_digest(
    gcpc_corpus_dir: Path, tmp_path: Path
) -> None:
    """Metamorphic, over every GCPC pipeline that pastes run-time values: the first producer
    feeding each pasting step gets a one-character edit of its image and of its last argument,
    and a new pipeline parameter carries the text before and after (what masking by value used
    to hide): the digest changes every time."""
    import re

    from zt_pipelines.errors import ZtError

    tried = 0
    for path in sorted(gcpc_corpus_dir.glob("*/*.yaml")):
        ir, docs = load_template(path)
        declared = ir["root"].get("inputDefinitions", {}).get("parameters", {})
        values = {
            k: v for k, v in {"project": P, "location": "us-central1"}.items() if k in declared
        }
        try:
            steps = rewrite_pipeline((ir, docs), project=P, parameter_values=values).steps
        except ZtError:  # refused for other reasons: not this test's
            continue
        traced = [s for s in steps if s.upstream_digest and s.payload_input_origins]
        for step in traced[:2]:
            producers = re.findall(
                r"task '([^']+)'", " ".join(o for _, o in step.payload_input_origins)
            )
            container = next((c for p in producers if (c := _executor_of(ir, p))), None)
            if container is None:
                continue
            for field in ("image", "args"):
                if field == "args" and not container.get("args"):
                    continue
                before = container["image"] if field == "image" else container["args"][-1]
                after = before + "x"
                edited = copy.deepcopy(ir)
                target = _executor_of(edited, next(p for p in producers if _executor_of(ir, p)))
                assert target is not None
                if field == "image":
                    target["image"] = after
                else:
                    target["args"][-1] = after
                digests = []
                for spec, text in ((ir, before), (edited, after)):
                    spec = copy.deepcopy(spec)
                    spec["root"].setdefault("inputDefinitions", {}).setdefault("parameters", {})[
                        "zt_probe"
                    ] = {"parameterType": "STRING"}
                    given = {**values, "zt_probe": text}
                    again = rewrite_pipeline((spec, docs), project=P, parameter_values=given)
                    (mine,) = [s for s in again.steps if s.task == step.task]
                    digests.append(mine.upstream_digest)
                assert digests[0] != digests[1], (path.name, step.task, field)
                tried += 1
        break_after = tried >= 40
        if break_after:
            break
    assert tried >= 10, tried


def test_a_producer_worker_pool_nfs_share_is_in_the_digest(tmp_path: Path) -> None:
    """in_13 (round 6): what a CustomJob producer's code reads from its pool's NFS share is what
    it produces; another server or path changes the digest, another machine does not."""
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    def build(server: str, machine: str) -> Any:
        job = create_custom_training_job_from_component(
            make_tb,
            machine_type=machine,
            nfs_mounts=[{"server": server, "path": "/reviewed", "mount_point": "cfg"}],
        )

        @dsl.pipeline(name="nfs")
        def nfs() -> None:
            src = job()
            zt.step.on(src, INGEST_SA)
            _train(src.outputs["Output"])

        return nfs

    reviewed = _digest(_compile(build("10.0.0.5", "n1-standard-4"), tmp_path, "a"))
    assert _digest(_compile(build("203.0.113.9", "n1-standard-4"), tmp_path, "b")) != reviewed
    assert _digest(_compile(build("10.0.0.5", "n1-highmem-8"), tmp_path, "c")) == reviewed
