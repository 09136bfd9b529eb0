"""A ZT102 waiver covers exactly what was reviewed: the step AND what feeds its pasted values.

The review's case (b3): a waiver naming only ``step: custom-training-job`` — reviewed while
``tensorboard`` came from ``pick-tensorboard`` — also waived the same step once ``tensorboard``
came from ``helper``, whose output closes the payload string and sets ``service_account``.
Now each ZT102 finding carries every pasted input with its origin and an ``upstream`` digest
of the step's upstream closure; a waiver must name that digest, and a swapped or changed
producer, a sub-pipeline input re-fed by its parent, a loop over other items or another
artifact source changes it, and so does a producer's network. What does not change what the
values are (an unrelated step, the identities zt pins, the project, a warm pool) keeps it.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml
from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp
from kfp import compiler, dsl

import zt_pipelines as zt
from zt_pipelines.cli import main
from zt_pipelines.errors import PolicyFileError
from zt_pipelines.model import StepIdentity
from zt_pipelines.policy.orgpolicy import load_policy
from zt_pipelines.policy.report import Report
from zt_pipelines.spec import load_template, rewrite_pipeline

ROOT = Path(__file__).resolve().parent.parent
P = "zt-demo"
INGEST_SA = f"ingest-sa@{P}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{P}.iam.gserviceaccount.com"
PIPELINE_SA = f"pipeline-sa@{P}.iam.gserviceaccount.com"
POOLS = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": "python:3.11"},
    }
]
RELAXED = {"ZT210": "warning", "ZT212": "warning", "ZT216": "warning"}


@dsl.component(base_image="python:3.11")
def pick_tensorboard() -> str:
    return "projects/zt-demo/locations/us-central1/tensorboards/1"


@dsl.component(base_image="python:3.11")
def helper() -> str:
    return '", "service_account": "legacy-sa@zt-demo.iam.gserviceaccount.com'


@dsl.component(base_image="python:3.11")
def tensorboards() -> list:
    return ["projects/zt-demo/locations/us-central1/tensorboards/1"]


@dsl.component(base_image="python:3.11")
def unrelated() -> str:
    return "x"


def _train(tensorboard: Any) -> Any:
    train = CustomTrainingJobOp(display_name="t", worker_pool_specs=POOLS, tensorboard=tensorboard)
    zt.step.on(train, TRAIN_SA)
    return train


def _compile(pipeline: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return path


def _direct(producer: Any, *, extra: bool = False) -> Any:
    @dsl.pipeline(name="tb", pipeline_root="gs://zt-demo-pipeline-root/tb")
    def tb() -> None:
        src = producer()
        zt.step.on(src, INGEST_SA)
        if extra:
            other = unrelated()
            zt.step.on(other, "other-sa@zt-demo.iam.gserviceaccount.com")
        _train(src.output)

    return tb


def _check(path: Path, policy: Any, **kwargs: Any) -> Report:
    return zt.check(
        path,
        project=P,
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        snapshot=ROOT / "examples" / "world.yaml",
        policy=policy,
        **kwargs,
    )


def _policy(upstream: str | None, step: str = "custom-training-job") -> dict[str, Any]:
    waiver: dict[str, Any] = {
        "code": "ZT102",
        "step": step,
        "expires": "2099-06-30",
        "justification": "tensorboard comes from pick-tensorboard, our reviewed step (SEC-12)",
    }
    if upstream is not None:
        waiver["upstream"] = upstream
    return {"severities": RELAXED, "suppressions": [waiver]}


def _pasting(path: Path, **kwargs: Any) -> StepIdentity:
    (step,) = [s for s in rewrite_pipeline(str(path), **kwargs).steps if s.unescaped_payload_inputs]
    return step


def _upstream(report: Report) -> str:
    (finding,) = [
        f for f in (*report.findings, *(s.finding for s in report.suppressed)) if f.code == "ZT102"
    ]
    (digest,) = [e.detail for e in finding.evidence if e.kind == "upstream"]
    return digest


# ---------------------------------------------------------------------------- the review case


def test_the_review_case_a_swapped_producer_no_longer_matches_the_waiver(tmp_path: Path) -> None:
    reviewed = _compile(_direct(pick_tensorboard), tmp_path, "reviewed")
    swapped = _compile(_direct(helper), tmp_path, "swapped")
    first = _check(reviewed, {"severities": RELAXED})
    assert not first.allowed  # a waiver naming the step alone no longer waives anything
    digest = _upstream(first)
    waived = _check(reviewed, _policy(digest))
    assert waived.allowed and [s.finding.code for s in waived.suppressed] == ["ZT102"]
    assert "pick-tensorboard" in waived.suppressed[0].finding.message
    attacked = _check(swapped, _policy(digest))
    assert not attacked.allowed
    (finding,) = [f for f in attacked.errors if f.code == "ZT102"]
    assert "the output 'Output' of task 'helper'" in finding.message
    now = _upstream(attacked)
    assert now != digest
    assert f"was for upstream {digest}, it is now {now}" in finding.message
    assert not attacked.suppressed


def test_a_zt102_suppression_must_name_the_upstream() -> None:
    with pytest.raises(PolicyFileError, match="must name the upstream") as info:
        load_policy(_policy(None))
    assert info.value.where.endswith("suppressions[0].upstream")
    for bad in ("d56dac4d043c", "D56DAC4D043CE4A912BF636A", "x" * 24, "d56dac4d043ce4a912bf636a\n"):
        with pytest.raises(PolicyFileError):
            load_policy(_policy(bad))
    other = {"code": "ZT210", "step": "train", "upstream": "0" * 24}
    other |= {"justification": "accepted folder permissions", "expires": "2099-01-01"}
    with pytest.raises(PolicyFileError, match="upstream"):
        load_policy({"suppressions": [other]})
    assert load_policy(_policy("0" * 24)).suppressions[0].upstream == "0" * 24


# ---------------------------------------------------------------------------- variants


def test_a_changed_producer_component_under_the_same_task_name(tmp_path: Path) -> None:
    @dsl.component(base_image="python:3.12")
    def pick_tensorboard() -> str:  # same name, same task name: another image
        return "projects/zt-demo/locations/us-central1/tensorboards/1"

    one = _pasting(_compile(_direct(globals()["pick_tensorboard"]), tmp_path, "a"), project=P)
    two = _pasting(_compile(_direct(pick_tensorboard), tmp_path, "b"), project=P)
    assert one.task == two.task
    assert one.payload_input_origins == (
        ("tensorboard", "the output 'Output' of task 'pick-tensorboard'"),
    )
    assert one.upstream_digest != two.upstream_digest


def test_a_producer_changed_in_its_own_inputs(tmp_path: Path) -> None:
    @dsl.component(base_image="python:3.11")
    def echo(text: str) -> str:
        return text

    def build(value: str) -> Any:
        @dsl.pipeline(name="tb")
        def tb() -> None:
            src = echo(text=value)
            zt.step.on(src, INGEST_SA)
            _train(src.output)

        return tb

    safe = _pasting(_compile(build("projects/p/tensorboards/1"), tmp_path, "a"), project=P)
    hostile = _pasting(_compile(build('", "service_account": "x'), tmp_path, "b"), project=P)
    assert safe.upstream_digest != hostile.upstream_digest


def _sub_pipeline(producer: Any) -> Any:
    @dsl.pipeline(name="inner")
    def inner(tb: str) -> None:
        _train(tb)

    @dsl.pipeline(name="outer")
    def outer() -> None:
        src = producer()
        zt.step.on(src, INGEST_SA)
        inner(tb=src.output)

    return outer


def test_a_sub_pipeline_input_re_fed_by_its_parent(tmp_path: Path) -> None:
    one = _pasting(_compile(_sub_pipeline(pick_tensorboard), tmp_path, "a"), project=P)
    two = _pasting(_compile(_sub_pipeline(helper), tmp_path, "b"), project=P)
    assert one.task == two.task == "inner/custom-training-job"
    (origin,) = [o for _, o in one.payload_input_origins]
    assert origin == "the output 'Output' of task 'pick-tensorboard'"
    assert one.upstream_digest != two.upstream_digest


def test_a_sub_pipeline_output_is_traced_to_the_task_inside(tmp_path: Path) -> None:
    def build(producer: Any) -> Any:
        @dsl.pipeline(name="make")
        def make() -> str:
            src = producer()
            zt.step.on(src, INGEST_SA)
            return src.output

        @dsl.pipeline(name="outer")
        def outer() -> None:
            _train(make().output)

        return outer

    one = _pasting(_compile(build(pick_tensorboard), tmp_path, "a"), project=P)
    two = _pasting(_compile(build(helper), tmp_path, "b"), project=P)
    assert [o for _, o in one.payload_input_origins] == [
        "the output 'Output' of task 'make/pick-tensorboard'"
    ]
    assert one.upstream_digest != two.upstream_digest


def test_a_loop_item(tmp_path: Path) -> None:
    def build(items: Any) -> Any:
        @dsl.pipeline(name="loop")
        def loop() -> None:
            source: Any = items
            if callable(items):
                task = items()
                zt.step.on(task, INGEST_SA)
                source = task.output
            with dsl.ParallelFor(source) as item:
                _train(item)

        return loop

    listed = _pasting(_compile(build(tensorboards), tmp_path, "a"), project=P)
    (origin,) = [o for _, o in listed.payload_input_origins]
    assert origin == "a loop item over the output 'Output' of task 'tensorboards'"

    # the same loop over another producer's list: another upstream
    @dsl.component(base_image="python:3.11")
    def other_list() -> list:
        return ['", "service_account": "x']

    swapped = _pasting(_compile(build(other_list), tmp_path, "c"), project=P)
    assert swapped.upstream_digest != listed.upstream_digest


def test_an_artifact_uri_from_another_source(tmp_path: Path) -> None:
    @dsl.container_component
    def consume(data: dsl.Input[dsl.Dataset]) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image="python:3.11", command=["cat"], args=[data.uri])

    @dsl.component(base_image="python:3.11")
    def make(data: dsl.Output[dsl.Dataset]) -> None:
        Path(data.path).write_text("x")

    def build(kind: str) -> Any:
        @dsl.pipeline(name="art")
        def art() -> None:
            if kind == "make":
                src = make()
                zt.step.on(src, INGEST_SA)
                out = src.outputs["data"]
            else:
                out = dsl.importer(
                    artifact_uri=f"gs://{kind}/data", artifact_class=dsl.Dataset
                ).output
            zt.step.on(consume(data=out), TRAIN_SA)

        return art

    @dsl.pipeline(name="art")
    def from_parameter(uri: str) -> None:
        out = dsl.importer(artifact_uri=uri, artifact_class=dsl.Dataset).output
        zt.step.on(consume(data=out), TRAIN_SA)

    # an importer passes its URI through: the parameter's value is what is pasted
    path = _compile(from_parameter, tmp_path, "p")
    given = {
        _pasting(path, project=P, parameter_values={"uri": u}).upstream_digest
        for u in ("gs://zt-demo-raw-data/data", 'gs://b/", "service_account": "x')
    }
    assert len(given) == 2

    made = _pasting(_compile(build("make"), tmp_path, "a"), project=P)
    assert made.payload_input_origins == (("data", "the artifact 'data' of task 'make'"),)
    imported = _pasting(_compile(build("zt-demo-raw-data"), tmp_path, "b"), project=P)
    elsewhere = _pasting(_compile(build("attacker-bucket"), tmp_path, "c"), project=P)
    assert len({made.upstream_digest, imported.upstream_digest, elsewhere.upstream_digest}) == 3


def test_a_step_that_starts_pasting_another_input(tmp_path: Path) -> None:
    @dsl.pipeline(name="tb")
    def more() -> None:
        src = pick_tensorboard()
        zt.step.on(src, INGEST_SA)
        train = CustomTrainingJobOp(
            display_name="t",
            worker_pool_specs=POOLS,
            tensorboard=src.output,
            base_output_directory=src.output,
        )
        zt.step.on(train, TRAIN_SA)

    one = _pasting(_compile(_direct(pick_tensorboard), tmp_path, "a"), project=P)
    two = _pasting(_compile(more, tmp_path, "b"), project=P)
    assert len(two.unescaped_payload_inputs) == 2
    assert one.upstream_digest != two.upstream_digest


# --------------------------------------------------------------- what must not change it


def test_what_does_not_feed_the_values_keeps_the_digest(tmp_path: Path) -> None:
    path = _compile(_direct(pick_tensorboard), tmp_path, "a")
    base = _pasting(path, project=P)
    # an unrelated step added elsewhere
    assert (
        _pasting(
            _compile(_direct(pick_tensorboard, extra=True), tmp_path, "b"), project=P
        ).upstream_digest
        == base.upstream_digest
    )
    # another project (derived identities change with it), a warm pool for every step
    from zt_pipelines.model import JobFields

    other = _pasting(path, project="zt-other", defaults=JobFields(persistent_resource_id="warm"))
    assert other.upstream_digest == base.upstream_digest
    elsewhere = JobFields(
        machine_type="n1-highmem-8", labels={"team": "ml"}, enable_web_access=False
    )
    assert _pasting(path, project=P, defaults=elsewhere).upstream_digest == base.upstream_digest
    # a network does decide the values: on another VPC the producer's code reads other hosts
    peered = JobFields(network="projects/123/global/networks/ml")
    assert _pasting(path, project=P, defaults=peered).upstream_digest != base.upstream_digest
    # rewriting the rewritten pipeline (what `rewrite` writes) reports the same
    result = rewrite_pipeline(str(path), project=P)
    again = rewrite_pipeline((result.spec, result.platform_docs), project=P)
    assert [s.upstream_digest for s in again.steps] == [s.upstream_digest for s in result.steps]


# ---------------------------------------------------------------------------- --print-waivers


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_print_waivers_gives_entries_that_load_only_once_filled_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviewed = _compile(_direct(pick_tensorboard), tmp_path, "reviewed")
    swapped = _compile(_direct(helper), tmp_path, "swapped")
    base = [
        "--project",
        P,
        "--pipeline-sa",
        PIPELINE_SA,
        "--snapshot",
        str(ROOT / "examples" / "world.yaml"),
    ]
    relax = tmp_path / "relax.yaml"
    relax.write_text(yaml.safe_dump({"severities": RELAXED}))
    code, out, _ = _run(
        ["check", str(reviewed), *base, "--policy", str(relax), "--print-waivers"], capsys
    )
    assert code == 1  # the check's own verdict: still refused
    printed = yaml.safe_load(out)
    (entry,) = printed["suppressions"]
    assert entry["step"] == "custom-training-job" and len(entry["upstream"]) == 24
    assert "tensorboard" in out and "pick-tensorboard" in out  # inputs and origins, as comments
    policy = tmp_path / "zt-policy.yaml"
    policy.write_text(yaml.safe_dump({"severities": RELAXED, **printed}))
    code, _, err = _run(["check", str(reviewed), *base, "--policy", str(policy)], capsys)
    assert code == 2 and "placeholder" in err  # not before a person writes why
    entry["justification"] = "reviewed pick-tensorboard: returns our TensorBoard (SEC-12)"
    entry["expires"] = "2099-06-30"
    policy.write_text(yaml.safe_dump({"severities": RELAXED, **printed}))
    code, out, _ = _run(["check", str(reviewed), *base, "--policy", str(policy)], capsys)
    assert code == 0, out
    code, out, _ = _run(["check", str(swapped), *base, "--policy", str(policy)], capsys)
    assert code == 1 and "ZT102" in out and "it is now" in out
    # already waived: printed again with its own text (the block can be replaced as a whole)
    code, out, _ = _run(
        ["check", str(reviewed), *base, "--policy", str(policy), "--print-waivers"], capsys
    )
    assert code == 0 and yaml.safe_load(out)["suppressions"] == [entry]


def test_print_waivers_without_zt102_prints_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @dsl.pipeline(name="plain")
    def plain() -> None:
        zt.step.on(pick_tensorboard(), INGEST_SA)

    path = _compile(plain, tmp_path, "plain")
    args = [
        "check",
        str(path),
        "--project",
        P,
        "--pipeline-sa",
        PIPELINE_SA,
        "--snapshot",
        str(ROOT / "examples" / "world.yaml"),
        "--print-waivers",
    ]
    _, out, _ = _run(args, capsys)
    assert yaml.safe_load(out) == {"suppressions": []}


def test_origins_are_shown_in_every_report_format(tmp_path: Path) -> None:
    report = _check(_compile(_direct(helper), tmp_path, "s"), {"severities": RELAXED})
    digest = _upstream(report)
    text = str(report)
    assert "task 'helper'" in text and digest in text
    assert "task 'helper'" in report.to_json() and digest in report.to_json()
    sarif = str(report.to_sarif())
    assert "task 'helper'" in sarif and digest in sarif
    from zt_pipelines.policy.render import render_html

    html = render_html(report)
    assert "helper" in html and digest in html
    from zt_pipelines.policy.waivers import waivers_yaml  # the same from Python

    (entry,) = yaml.safe_load(waivers_yaml(report))["suppressions"]
    assert entry["step"] == "custom-training-job" and entry["upstream"] == digest


# ---------------------------------------------------------------------------- more variants


def test_a_producer_two_hops_up_changed(tmp_path: Path) -> None:
    """The closure is recursive: the producer's own producer is part of what was reviewed."""

    @dsl.component(base_image="python:3.11")
    def fmt(name: str) -> str:
        return f"projects/zt-demo/locations/us-central1/tensorboards/{name}"

    def build(first: Any) -> Any:
        @dsl.pipeline(name="hops")
        def hops() -> None:
            a = first()
            zt.step.on(a, INGEST_SA)
            b = fmt(name=a.output)
            zt.step.on(b, "fmt-sa@zt-demo.iam.gserviceaccount.com")
            _train(b.output)

        return hops

    one = _pasting(_compile(build(unrelated), tmp_path, "a"), project=P)
    two = _pasting(_compile(build(helper), tmp_path, "b"), project=P)
    assert [o for _, o in one.payload_input_origins] == ["the output 'Output' of task 'fmt'"]
    assert one.upstream_digest != two.upstream_digest


def test_one_of_two_branches_swapped(tmp_path: Path) -> None:
    @dsl.component(base_image="python:3.11")
    def flip() -> str:
        return "heads"

    def build(other: Any) -> Any:
        @dsl.pipeline(name="oneof")
        def oneof() -> None:
            coin = flip()
            zt.step.on(coin, "flip-sa@zt-demo.iam.gserviceaccount.com")
            with dsl.If(coin.output == "heads"):
                a = pick_tensorboard()
                zt.step.on(a, INGEST_SA)
            with dsl.Else():
                b = other()
                zt.step.on(b, "other-sa@zt-demo.iam.gserviceaccount.com")
            _train(dsl.OneOf(a.output, b.output))

        return oneof

    one = _pasting(_compile(build(unrelated), tmp_path, "a"), project=P)
    two = _pasting(_compile(build(helper), tmp_path, "b"), project=P)
    ((_, origin),) = one.payload_input_origins
    assert origin.startswith("one of ") and "pick-tensorboard" in origin and "unrelated" in origin
    assert one.upstream_digest != two.upstream_digest


def test_a_renamed_producer_task(tmp_path: Path) -> None:
    def build(name: str) -> Any:
        @dsl.pipeline(name="tb")
        def tb() -> None:
            src = pick_tensorboard().set_display_name(name)
            zt.step.on(src, INGEST_SA)
            _train(src.output)

        return tb

    # the display name is the component's business, not the value's: same task, same digest
    same = {_pasting(_compile(build(n), tmp_path, n), project=P).upstream_digest for n in "ab"}
    assert len(same) == 1


def test_a_pipeline_parameter_pasted_as_it_is_keeps_its_value_in_the_digest(
    tmp_path: Path,
) -> None:
    """A value pasted directly is part of the review: a waiver for tb='...safe...' does not
    cover another value; a parameter with no value is traced by name."""

    @dsl.container_component
    def show(tb: str) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image="python:3.11", command=["echo"], args=[tb])

    @dsl.pipeline(name="param")
    def param(tb: str) -> None:
        zt.step.on(show(tb=tb), TRAIN_SA)

    path = _compile(param, tmp_path, "p")
    unset = _pasting(path, project=P)
    assert unset.payload_input_origins == (("tb", "pipeline parameter 'tb'"),)
    quoted = [
        _pasting(path, project=P, parameter_values={"tb": v}).upstream_digest
        for v in ('say "one"', 'say "two"')
    ]
    assert len({unset.upstream_digest, *quoted}) == 3


def test_the_producer_identity_and_numbers_as_aiplatform_sends_them_keep_the_digest(
    tmp_path: Path,
) -> None:
    """zt.PipelineJob hands the spec over through aiplatform's protobuf Struct (25 -> 25.0);
    the producer's declared identity is verified on its own."""
    import json

    @dsl.component(base_image="python:3.11")
    def counted(n: int = 25) -> str:
        return str(n)

    def build(sa: str) -> Any:
        @dsl.pipeline(name="num")
        def num() -> None:
            src = counted()
            zt.step.on(src, sa)
            _train(src.output)

        return num

    path = _compile(build(INGEST_SA), tmp_path, "a")
    base = _pasting(path, project=P)
    other = _pasting(_compile(build("other-sa@zt-demo.iam.gserviceaccount.com"), tmp_path, "b"))
    assert other.upstream_digest == base.upstream_digest
    spec, docs = load_template(path)
    as_struct = json.loads(json.dumps(spec), parse_int=float)  # every number a float
    steps = rewrite_pipeline((as_struct, docs)).steps
    (step,) = [s for s in steps if s.unescaped_payload_inputs]
    assert step.upstream_digest == base.upstream_digest


def test_a_loop_over_a_constant_list_or_a_parameter(tmp_path: Path) -> None:
    def build(items: list[str]) -> Any:
        @dsl.pipeline(name="loop")
        def loop() -> None:
            with dsl.ParallelFor(items) as item:
                _train(item)

        return loop

    one = _pasting(_compile(build(["a"]), tmp_path, "a"), project=P)
    two = _pasting(_compile(build(['", "service_account": "x']), tmp_path, "b"), project=P)
    assert [o for _, o in one.payload_input_origins] == ["a loop item over a constant list"]
    assert one.upstream_digest != two.upstream_digest

    @dsl.pipeline(name="loop")
    def over(boards: list) -> None:
        with dsl.ParallelFor(boards) as item:
            _train(item)

    path = _compile(over, tmp_path, "c")
    unset = _pasting(path, project=P)
    assert [o for _, o in unset.payload_input_origins] == [
        "a loop item over pipeline parameter 'boards'"
    ]
    given = _pasting(path, project=P, parameter_values={"boards": ["x"]})
    assert given.upstream_digest != unset.upstream_digest  # the list is pasted item by item


def test_hostile_bindings_never_break_the_trace(tmp_path: Path) -> None:
    """Structural fuzzing of what the trace reads (task bindings, DAG outputs, iterators,
    selectors) in pipelines that paste run-time values: every mutant rewrites or is refused
    with a typed error; never a traceback."""
    import copy
    import json
    import os
    import random

    from zt_pipelines.errors import ZtError

    @dsl.pipeline(name="make")
    def make() -> str:
        src = pick_tensorboard()
        zt.step.on(src, INGEST_SA)
        return src.output

    @dsl.pipeline(name="mix")
    def mix(boards: list = ["a"]) -> None:  # noqa: B006 - KFP's default form
        _train(make().output)
        with dsl.ParallelFor(boards) as item:
            _train(item)

    seed, docs = load_template(_compile(mix, tmp_path, "mix"))
    junk: list[Any] = [None, 7, "x", [], {}, ["y"], {"producerTask": 3}, {"constant": '"'}]
    rng = random.Random(1402)

    def nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [path]
        items = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for key, child in items:
            out += nodes(child, (*path, key))
        return out

    def targets(spec: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            p
            for p in nodes(spec)
            if len(p) > 2 and any(k in p for k in ("inputs", "outputs", "parameterIterator"))
        ]

    reached = 0
    for _ in range(int(os.environ.get("ZT_FUZZ_RUNS", "150"))):
        spec = copy.deepcopy(seed)
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(targets(spec))
            parent = spec
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = copy.deepcopy(rng.choice(junk))
        try:
            steps = rewrite_pipeline((json.loads(json.dumps(spec)), docs), project=P).steps
        except ZtError:
            continue
        reached += any(s.upstream_digest for s in steps)
    assert reached  # mutants get through to the trace


def test_a_name_bound_as_parameter_and_artifact_traces_both() -> None:
    """Never KFP's output, but a hand-edited IR could bind one name twice: both producers are
    in the digest, whichever Vertex pastes."""
    from zt_pipelines.spec.provenance import payload_provenance

    def ir(image: str) -> dict[str, Any]:
        def comp(name: str) -> dict[str, Any]:
            return {"executorLabel": f"exec-{name}"}

        out = {"producerTask": "p2", "outputArtifactKey": "out"}
        return {
            "components": {"comp-p1": comp("p1"), "comp-p2": comp("p2"), "comp-c": comp("c")},
            "deploymentSpec": {
                "executors": {
                    "exec-p1": {"container": {"image": "python:3.11"}},
                    "exec-p2": {"container": {"image": image}},
                    "exec-c": {"container": {"image": "python:3.11"}},
                }
            },
            "root": {
                "dag": {
                    "tasks": {
                        "p1": {"componentRef": {"name": "comp-p1"}},
                        "p2": {"componentRef": {"name": "comp-p2"}},
                        "c": {
                            "componentRef": {"name": "comp-c"},
                            "inputs": {
                                "parameters": {
                                    "x": {
                                        "taskOutputParameter": {
                                            "producerTask": "p1",
                                            "outputParameterKey": "Output",
                                        }
                                    }
                                },
                                "artifacts": {"x": {"taskOutputArtifact": out}},
                            },
                        },
                    }
                }
            },
        }

    step = StepIdentity(
        "c", "comp-c", "exec-c", TRAIN_SA, "declared", unescaped_payload_inputs=("x",)
    )
    (one,) = payload_provenance(ir("python:3.11"), [step], parameter_values={})
    (two,) = payload_provenance(ir("evil:1"), [step], parameter_values={})
    assert "task 'p1'" in one.payload_input_origins[0][1]
    assert "task 'p2'" in one.payload_input_origins[0][1]
    assert one.upstream_digest != two.upstream_digest


@pytest.mark.shared
def test_googles_automl_waivers_hold_in_another_project(gcpc_corpus_dir: Path) -> None:
    """The rewrite pins a launcher's project from the parameters into the rewritten
    producers; parameter values (like the identities) are masked, so the waivers a team
    reviewed hold in its dev and prod projects alike — and every traced step has its own."""
    template = gcpc_corpus_dir / "shipped" / "v1.automl.tabular.automl_tabular_pipeline.yaml"

    def digests(project: str) -> dict[str, str]:
        values = {"project": project, "location": "us-central1", "root_dir": f"gs://{project}/a"}
        steps = rewrite_pipeline(str(template), project=project, parameter_values=values).steps
        return {s.task: s.upstream_digest for s in steps if s.unescaped_payload_inputs}

    dev = digests("zt-dev-project")
    assert len(dev) >= 20 and all(dev.values())
    assert digests("zt-prod-project") == dev


def test_a_producer_whose_code_holds_a_parameter_value_or_an_identity_changes_the_digest(
    tmp_path: Path,
) -> None:
    """Masking is for the values the rewrite pins (whole values, payload literals): text in a
    producer's code that equals a parameter value or a pinned identity is code, and editing it
    (while passing the edited text as the parameter) changes the digest (red team in_18)."""

    def producer(marker: str) -> Any:
        @dsl.component(base_image="python:3.11")
        def pick_tensorboard(tag: str) -> str:
            return "projects/zt-demo/locations/us-central1/tensorboards/1"

        # the marker sits in the component's code, exactly as the parameter value is passed
        pick_tensorboard.component_spec.implementation.container.command[-1] += f"\n# {marker}"
        return pick_tensorboard

    def build(marker: str) -> Any:
        @dsl.pipeline(name="tb")
        def tb(tag: str) -> None:
            src = producer(marker)(tag=tag)
            zt.step.on(src, INGEST_SA)
            _train(src.output)

        return tb

    digests = []
    for i, marker in enumerate(("zt-demo-tag", 'x", "service_account": "legacy@zt-demo', TRAIN_SA)):
        path = _compile(build(marker), tmp_path, f"m{i}")
        step = _pasting(path, project=P, parameter_values={"tag": marker})
        digests.append(step.upstream_digest)
    assert len(set(digests)) == 3
