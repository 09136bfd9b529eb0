"""Seeded mutational fuzzing of every parser: templates, manifests, policy files (YAML and
pyproject.toml), snapshots (YAML and JSON), audit lines and ``--param`` values.

Each target starts from valid inputs, applies random byte- and token-level mutations (flips,
cuts, duplicated and swapped lines, YAML/JSON hostile tokens, deep nesting, huge numbers,
encodings) and feeds them through the public loader. A run passes when every input either loads
or raises a :class:`~zt_pipelines.errors.ZtError` (an ``InputError`` for these kinds), and each
input finishes within its time bound. The budget is fixed (``RUNS`` per target, fixed seeds), so
the suite is deterministic; set ``ZT_FUZZ_RUNS`` for a longer campaign.
"""

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_worlds import WORLD_FILE

from zt_pipelines.audit import AuditLog, Decision, verify_chain
from zt_pipelines.cli import parse_parameters
from zt_pipelines.declare import load_manifest
from zt_pipelines.errors import InputError, ZtError
from zt_pipelines.policy.orgpolicy import load_policy
from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.spec import parse_template_text, rewrite_pipeline

RUNS = int(os.environ.get("ZT_FUZZ_RUNS", "250"))
#: seconds one input may take (generous: the machine is shared; real runs take milliseconds)
TIME_BOUND = 5.0

SA = "train-sa@zt-demo.iam.gserviceaccount.com"

TEMPLATE = """\
components:
  comp-train:
    executorLabel: exec-train
    inputDefinitions:
      parameters:
        lr: {parameterType: NUMBER_DOUBLE}
deploymentSpec:
  executors:
    exec-train:
      container:
        args: [--lr, "{{$.inputs.parameters['lr']}}"]
        command: [python, train.py]
        image: python:3.11
pipelineInfo: {name: fuzz}
root:
  dag:
    tasks:
      train:
        componentRef: {name: comp-train}
        inputs:
          parameters:
            lr: {componentInputParameter: lr}
        taskInfo: {name: train}
  inputDefinitions:
    parameters:
      lr: {defaultValue: 0.1, parameterType: NUMBER_DOUBLE}
schemaVersion: 2.1.0
sdkVersion: kfp-2.7.0
---
platforms:
  kubernetes: {deploymentSpec: {executors: {}}}
"""

MANIFEST = f"""\
steps:
  train:
    service_account: {SA}
    needs:
      gs://zt-features: [storage.objects.get, storage.objects.list]
    network: projects/123/global/networks/prod
    labels: {{team: ml}}
"""

POLICY = """\
version: 1
severities: {ZT210: warning, ZT213: note}
excessThreshold: 2
network: {required: 'projects/[0-9]+/global/networks/prod-.*', requirePsc: false}
cmek: {keyPattern: 'projects/.+/cryptoKeys/.+'}
regions: [us-central1]
images: {allowedRegistries: [us-docker.pkg.dev/my-proj], requireDigest: true}
suppressions:
  - code: ZT210
    step: train
    justification: reviewed by the platform team
    expires: '2027-01-31'
"""

PYPROJECT = """\
[project]
name = "x"

[tool.zt-pipelines]
excessThreshold = 1
regions = ["us-central1"]

[tool.zt-pipelines.severities]
ZT210 = "note"

[[tool.zt-pipelines.suppressions]]
code = "ZT210"
step = "train"
justification = "reviewed by the platform team"
expires = 2027-01-31
"""

TOKENS = [
    "&a ",
    "*a",
    "!!binary ",
    "!!set ",
    "!!timestamp ",
    "!!python/object:os.system ",
    "<<: ",
    "? ",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    '"',
    "'",
    "\t",
    "~",
    "null",
    "NaN",
    "1e999",
    ".inf",
    "9" * 60,
    "0x" + "f" * 50,
    "\x00",
    "\ufeff",
    "\u2028",
    "\x85",
    "é",
    "#",
    "\\u0000",
    "2026-12-31",
    "[" * 300,
    "{" * 300,
    '{"a":' * 150,
    "\n" + " " * 200 + "x: 1\n",
    "\n",
    ",",
    "\r\n",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random mutations of ``data``."""
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(9)
        n = len(data)
        at = rng.randint(0, n)
        if choice == 0 and n:  # flip a byte
            i = rng.randrange(n)
            data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
        elif choice == 1:  # insert a hostile token
            data = data[:at] + rng.choice(TOKENS).encode() + data[at:]
        elif choice == 2 and n:  # delete a range
            end = min(n, at + rng.randint(1, 64))
            data = data[:at] + data[end:]
        elif choice == 3:  # truncate (a cut file)
            data = data[:at]
        elif choice in (4, 5):  # duplicate a line (duplicate keys) or swap two lines
            lines = data.split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if choice == 4:
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif choice == 6:  # an encoding change
            try:
                data = data.decode("utf-8").encode(rng.choice(["utf-16", "utf-32", "latin-1"]))
            except (UnicodeDecodeError, UnicodeEncodeError):
                data = data[::-1]
        elif choice == 7:  # repeat a chunk (size and depth)
            chunk = data[at : at + rng.randint(1, 40)]
            data = data[:at] + chunk * rng.randint(2, 400) + data[at:]
        else:  # splice random bytes
            data = data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]
    return data


def campaign(
    seed: int, seeds: list[bytes], run: Callable[[bytes], Any], allowed: tuple[type, ...]
) -> dict[str, int]:
    """Run ``RUNS`` mutated inputs through ``run``; fail on an untyped exception or a slow run."""
    rng = random.Random(seed)
    outcome = {"loaded": 0, "refused": 0}
    for i in range(RUNS):
        data = mutate(rng, rng.choice(seeds))
        start = time.perf_counter()
        try:
            run(data)
            outcome["loaded"] += 1
        except allowed:
            outcome["refused"] += 1
        except Exception as exc:  # pragma: no cover - the failure we look for
            raise AssertionError(
                f"run {i} (seed {seed}): untyped {type(exc).__name__}: {exc!s:.300} "
                f"on input {data[:300]!r}"
            ) from exc
        elapsed = time.perf_counter() - start
        assert elapsed < TIME_BOUND, f"run {i} took {elapsed:.1f}s on {data[:200]!r}"
    return outcome


def as_file(tmp_path: Path, name: str) -> Callable[[bytes], Path]:
    path = tmp_path / name

    def write(data: bytes) -> Path:
        path.write_bytes(data)
        return path

    return write


def test_the_seeds_are_valid(tmp_path: Path) -> None:
    parse_template_text(TEMPLATE)
    load_manifest(as_file(tmp_path, "m.yaml")(MANIFEST.encode()))
    load_policy(as_file(tmp_path, "p.yaml")(POLICY.encode()))
    load_policy(as_file(tmp_path, "pyproject.toml")(PYPROJECT.encode()))


def test_fuzz_templates() -> None:
    json_seed = json.dumps(yaml.safe_load_all(TEMPLATE).__next__(), indent="\t").encode()

    def run(data: bytes) -> None:
        spec, docs = parse_template_text(data.decode("utf-8"), where="fuzz.yaml")
        rewrite_pipeline((spec, docs), project="zt-demo")

    def decoded(data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return  # bytes that are not text never reach the text parser (the file reader refuses)
        run(text.encode())

    outcome = campaign(1, [TEMPLATE.encode(), json_seed], decoded, (ZtError,))
    assert outcome["refused"] and outcome["loaded"]  # the mutations reach both sides


def test_fuzz_manifests(tmp_path: Path) -> None:
    write = as_file(tmp_path, "m.yaml")
    json_seed = json.dumps(yaml.safe_load(MANIFEST)).encode()
    outcome = campaign(
        2, [MANIFEST.encode(), json_seed], lambda d: load_manifest(write(d)), (InputError,)
    )
    assert outcome["refused"]


def test_fuzz_policies(tmp_path: Path) -> None:
    write = as_file(tmp_path, "zt-policy.yaml")
    outcome = campaign(3, [POLICY.encode()], lambda d: load_policy(write(d)), (InputError,))
    assert outcome["refused"]


def test_fuzz_pyproject_policies(tmp_path: Path) -> None:
    write = as_file(tmp_path, "pyproject.toml")
    outcome = campaign(4, [PYPROJECT.encode()], lambda d: load_policy(write(d)), (InputError,))
    assert outcome["refused"]


def test_fuzz_snapshots(tmp_path: Path) -> None:
    world = WORLD_FILE.read_bytes()
    as_json = json.dumps(yaml.safe_load(world), indent=1).encode()
    write_yaml = as_file(tmp_path, "s.yaml")
    write_json = as_file(tmp_path, "s.json")
    outcome = campaign(5, [world], lambda d: load_snapshot(write_yaml(d)), (InputError,))
    outcome_json = campaign(6, [as_json], lambda d: load_snapshot(write_json(d)), (InputError,))
    assert outcome["refused"] and outcome_json["refused"]


def test_fuzz_audit_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    for n in range(3):
        log.append(
            Decision(
                action="submit",
                outcome="allowed",
                submitter="user:a@example.com",
                project="p",
                location="us-central1",
                pipeline=f"p{n}",
                spec_sha256=f"{n:064x}",
            )
        )
    text = (tmp_path / "log.jsonl").read_bytes()

    def run(data: bytes) -> None:
        report = verify_chain(data.split(b"\n"))  # never raises: problems are findings
        assert report.ok or report.problems

    campaign(7, [text], run, ())


def test_fuzz_param_values() -> None:
    seeds = [b'{"a": [1, 2.5, "x"], "b": {"c": null}}', b"[1, 2, 3]", b"12", b"plain text"]

    def run(data: bytes) -> None:
        parse_parameters((f"k={data.decode('utf-8', 'replace')}",))

    campaign(8, seeds, run, (InputError,))


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_yaml_documents_round_trip(seed: int) -> None:
    """Whatever the strict loader accepts, the block YAML writer writes back the same."""
    from zt_pipelines.loaders import dump_yaml, parse_text

    def run(data: bytes) -> None:
        docs = parse_text(
            data.decode("utf-8", "replace"), where="f", kind="template", error=InputError
        )
        docs = [d for d in docs if d is not None]
        if docs:
            again = parse_text(dump_yaml(docs), where="f", kind="template", error=InputError)
            assert again == docs
            assert list(yaml.safe_load_all(dump_yaml(docs))) == docs  # PyYAML agrees

    campaign(10 + seed, [TEMPLATE.encode(), MANIFEST.encode(), POLICY.encode()], run, (InputError,))


# ------------------------------------------------------------------ the YAML writer, property


def _json_values() -> Any:
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**30), max_value=10**30)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
        | st.sampled_from(["yes", "on", "~", "null", "1e5", "0x1f", "1:30", "<<", "- a", "#x"])
    )
    keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=20) | st.sampled_from(
        ["on", "y", "1", "true", "<<", "", " a", "a: b", "? x", "-", "2026-12-31"]
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=40,
    )


def test_dump_yaml_round_trips_any_json_data() -> None:
    """What the block YAML writer writes reads back equal, with our loader and with PyYAML's
    (what aiplatform and kfp read templates with)."""
    from hypothesis import HealthCheck, given, seed, settings

    from zt_pipelines.loaders import dump_yaml, parse_yaml

    @seed(20261129)
    @settings(
        max_examples=int(os.environ.get("ZT_FUZZ_RUNS", "150")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(_json_values())
    def check(value: Any) -> None:
        text = dump_yaml([value])
        assert parse_yaml(text, where="w", kind="template", error=InputError) == [value]
        assert list(yaml.load_all(text, Loader=yaml.CSafeLoader)) == [value]

    check()


@pytest.mark.shared
def test_the_strict_loader_and_writer_agree_with_pyyaml_on_the_whole_corpus(
    corpus_dir: Path, gcpc_corpus_dir: Path
) -> None:
    """Every real template (113 kfp + 41 GCPC): the strict loader reads what PyYAML's C loader
    reads, and the block YAML writer's text reads back equal with both."""
    from zt_pipelines.loaders import dump_yaml, parse_text

    files = sorted([*corpus_dir.rglob("*.yaml"), *gcpc_corpus_dir.rglob("*.yaml")])
    assert len(files) >= 154
    for path in files:
        text = path.read_text()
        ours = parse_text(text, where=str(path), kind="template", error=InputError)
        docs = [d for d in ours if d is not None]
        assert docs == [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
        written = dump_yaml(docs)
        assert list(yaml.load_all(written, Loader=yaml.CSafeLoader)) == docs, path
        assert parse_text(written, where="w", kind="template", error=InputError) == docs, path


@pytest.mark.parametrize("schema", ["snapshot", "policy"])
def test_the_compiled_schema_validator_agrees_with_jsonschema(schema: str) -> None:
    """The fast path for large snapshots must never accept what jsonschema refuses."""
    import fastjsonschema

    from zt_pipelines.loaders import parse_text
    from zt_pipelines.policy import orgpolicy, snapshot_file
    from zt_pipelines.policy.snapshot_file import _fast_validator, _validator

    path = str(snapshot_file.SCHEMA_PATH if schema == "snapshot" else orgpolicy.SCHEMA_PATH)
    fast, slow = _fast_validator(path), _validator(path)
    seed_text = (
        json.dumps(yaml.safe_load(WORLD_FILE.read_bytes())) if schema == "snapshot" else POLICY
    )
    rng = random.Random(42)
    compared = 0
    for _ in range(RUNS * 2):
        data = mutate(rng, seed_text.encode())
        try:
            docs = parse_text(data.decode("utf-8"), where="f", kind="snapshot", error=InputError)
        except (InputError, UnicodeDecodeError):
            continue
        for doc in docs:
            try:
                fast(doc)
                fast_ok = True
            except fastjsonschema.JsonSchemaException:
                fast_ok = False
            assert fast_ok == slow.is_valid(doc), doc
            compared += 1
    assert compared > RUNS / 4
