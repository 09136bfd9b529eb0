"""usage's fast paths decide exactly as the plain ones.

1. Pages of ``entries.list`` are read column-wise when their structure allows (one list per
   field, no object per entry): the accesses must be those the official ``LogEntry`` parse gives,
   entry by entry, in order — for every page shape (no / several authorization checks, refused
   checks, empty fields, other payloads, zero nanos), random ones included.
2. Column-wise batches are decided without a row per access when they yield no finding: the
   report and the proposal must be byte-identical to deciding every access one by one.
"""

from __future__ import annotations

import datetime
from typing import Any

from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2.types import log_entry
from google.cloud.logging_v2.types import logging as logging_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zt_pipelines.gcp.audit_logs import accesses_of, read_page
from zt_pipelines.model import Need
from zt_pipelines.monitor.usage import (
    Access,
    AccessBatch,
    Accesses,
    StepWindow,
    evaluate_usage,
)
from zt_pipelines.resources import ResourceRef

_LogEntry = log_entry.LogEntry.pb()
_Response = logging_types.ListLogEntriesResponse.pb()
SA = "ingest-sa@p.iam.gserviceaccount.com"
OTHER_SA = "train-sa@p.iam.gserviceaccount.com"
BASE = 1_795_000_000


def _entry(
    *,
    seconds: int = BASE,
    nanos: int = 123_456_000,
    principal: str = SA,
    checks: tuple[tuple[str, str, bool], ...] = (
        ("projects/_/buckets/raw/objects/a.csv", "storage.objects.get", True),
    ),
    method: str = "storage.objects.get",
    resource_name: str = "projects/_/buckets/raw/objects/a.csv",
    payload: str = "audit",
    insert_id: str = "id-1",
    log_name: str = "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
) -> Any:
    audit = audit_log_pb2.AuditLog(
        service_name="storage.googleapis.com", method_name=method, resource_name=resource_name
    )
    audit.authentication_info.principal_email = principal
    for resource, permission, granted in checks:
        info = audit.authorization_info.add()
        info.resource, info.permission, info.granted = resource, permission, granted
    entry = _LogEntry(log_name=log_name, insert_id=insert_id)
    if payload == "audit":
        entry.proto_payload.Pack(audit)
    elif payload == "renamed":  # an AuditLog's bytes under another type
        entry.proto_payload.Pack(audit)
        entry.proto_payload.type_url = "type.googleapis.com/google.cloud.audit.NotAuditLog"
    elif payload == "other":
        entry.proto_payload.type_url = "type.googleapis.com/google.protobuf.Struct"
    else:
        entry.text_payload = "not an audit log"
    entry.timestamp.seconds, entry.timestamp.nanos = seconds, nanos
    entry.resource.type = "audited_resource"
    entry.resource.labels["project_id"] = "p"
    return entry


def _page(entries: list[Any], token: str = "") -> bytes:
    page = _Response(next_page_token=token)
    page.entries.extend(entries)
    return bytes(page.SerializeToString())


def _official(data: bytes) -> list[Access]:
    """The reference: the official LogEntry parse, entry by entry."""
    out: list[Access] = []
    for entry in _Response.FromString(data).entries:
        accesses_of(entry, out)
    return out


def _read(data: bytes) -> tuple[Accesses, str]:
    out = Accesses()
    token = read_page(data, out)
    return out, token


def test_a_common_page_is_read_column_wise_and_as_the_official_parse() -> None:
    entries = [
        _entry(
            nanos=1000 * (i + 1),
            checks=((f"projects/_/buckets/raw/objects/{i}.csv", "storage.objects.get", True),),
            insert_id=f"id-{i}",
        )
        for i in range(50)
    ]
    data = _page(entries, token="next")
    out, token = _read(data)
    assert token == "next"
    assert [type(p) for p in out.parts()] == [AccessBatch]
    assert list(out) == _official(data)
    assert len(out) == 50 and out[7] == _official(data)[7] and out[-1] == list(out)[-1]


SHAPES: dict[str, dict[str, Any]] = {
    "no authorization check": {"checks": ()},
    "two authorization checks": {
        "checks": (("r1", "storage.objects.get", True), ("r2", "storage.objects.create", True))
    },
    "a refused check": {"checks": (("r1", "storage.objects.get", False),)},
    "a check without a resource": {"checks": (("", "storage.objects.get", True),)},
    "a check without a permission": {"checks": (("r1", "", True),)},
    "zero nanos": {"nanos": 0},
    "no principal": {"principal": ""},
    "no method": {"method": ""},
    "no insert id": {"insert_id": ""},
    "another payload type": {"payload": "other"},
    "AuditLog bytes under another type": {"payload": "renamed"},
    "no payload": {"payload": "text"},
}


def test_every_other_page_shape_reads_as_the_official_parse() -> None:
    """One odd entry among common ones: the page is read entry by entry (or, for several
    checks in an entry, column-wise with that entry's fields repeated), never misaligned."""
    for name, odd in SHAPES.items():
        entries = [_entry(insert_id=f"a{i}") for i in range(3)]
        entries.insert(1, _entry(**{"insert_id": "odd", **odd}))
        data = _page(entries)
        out, _token = _read(data)
        assert list(out) == _official(data), name
        column_wise = any(isinstance(p, AccessBatch) for p in out.parts())
        assert column_wise is (name == "two authorization checks"), name


def test_entries_with_several_checks_are_read_column_wise() -> None:
    entries = [
        _entry(
            principal=SA if i % 3 else OTHER_SA,
            checks=tuple((f"r{i}/{j}", f"p.q.{j}", True) for j in range(1 + i % 3)),
            insert_id=f"i{i}",
        )
        for i in range(30)
    ]
    data = _page(entries)
    out, _token = _read(data)
    assert [type(p) for p in out.parts()] == [AccessBatch]
    assert list(out) == _official(data) and len(out) == 60


def test_a_page_with_no_check_and_two_checks_is_not_misaligned() -> None:
    """As many checks as entries, but not one each: columns would give one entry's check to
    another identity."""
    entries = [
        _entry(principal=OTHER_SA, checks=(), method="google.iam.v1.SetIamPolicy"),
        _entry(checks=(("r1", "storage.objects.get", True), ("r2", "storage.objects.get", True))),
    ]
    data = _page(entries)
    out, _token = _read(data)
    assert list(out) == _official(data)
    assert [a.principal for a in out] == [OTHER_SA, SA, SA]


_TEXT = st.sampled_from(["", "a", "projects/_/buckets/raw/objects/x", "storage.objects.get"])


@st.composite
def _entries(draw: Any) -> Any:
    if draw(st.booleans()):  # the common shape, so that whole pages go column-wise too
        return _entry(
            seconds=draw(st.integers(BASE, BASE + 5)),
            nanos=draw(st.integers(1, 999_999_999)),
            principal=draw(st.sampled_from([SA, OTHER_SA])),
            checks=((draw(st.sampled_from(["r1", "r2/x"])), draw(_TEXT) or "p.q.r", True),),
            insert_id=draw(st.sampled_from(["i1", "i2"])),
        )
    checks = draw(
        st.lists(st.tuples(_TEXT, _TEXT, st.booleans()), max_size=3).map(tuple)  # type: ignore[arg-type]
    )
    return _entry(
        seconds=draw(st.integers(0, BASE)),
        nanos=draw(st.sampled_from([0, 1, 999_999_999])),
        principal=draw(st.sampled_from(["", SA, OTHER_SA])),
        checks=checks,
        method=draw(_TEXT),
        resource_name=draw(_TEXT),
        payload=draw(st.sampled_from(["audit", "audit", "other", "renamed", "text"])),
        insert_id=draw(_TEXT),
        log_name=draw(_TEXT),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entries(), max_size=12), st.sampled_from(["", "t"]))
def test_random_pages_read_as_the_official_parse(entries: list[Any], token: str) -> None:
    data = _page(entries, token)
    out, next_token = _read(data)
    assert next_token == token
    assert list(out) == _official(data)
    assert len(out) == len(_official(data))


# -- deciding batches column-wise -------------------------------------------------------------

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
T0 = START.timestamp()
NEEDS = (
    Need(ResourceRef("//storage.googleapis.com/raw", None), ("storage.objects.get",)),
    Need(ResourceRef("//storage.googleapis.com/pre", "2026/"), ("storage.objects.list",)),
    Need(ResourceRef("//storage.googleapis.com/pre", "2026/"), ("storage.objects.get",)),
    Need(ResourceRef("//bigquery.googleapis.com/projects/p/datasets/d", None), ("x.y.z",)),
)
RESOURCES = [
    "projects/_/buckets/raw",
    "projects/_/buckets/raw/objects/a.csv",
    "projects/_/buckets/rawer/objects/a.csv",
    "projects/_/buckets/pre",
    "projects/_/buckets/pre/objects/2026/a",
    "projects/_/buckets/pre/objects/2025/a",
    "projects/p/datasets/d",
    "projects/p/datasets/d/tables/t",
    "projects/p/datasets/dd",
]
PERMISSIONS = ["storage.objects.get", "storage.objects.list", "x.y.z", "other.p.q"]


#: (permission, resource) pairs some need covers (batches of them are settled column-wise)
COVERED = [
    ("storage.objects.get", "projects/_/buckets/raw"),
    ("storage.objects.get", "projects/_/buckets/raw/objects/a.csv"),
    ("storage.objects.list", "projects/_/buckets/pre"),
    ("storage.objects.list", "projects/_/buckets/pre/objects/2026/a"),
    ("storage.objects.get", "projects/_/buckets/pre/objects/2026/a"),
    ("x.y.z", "projects/p/datasets/d/tables/t"),
]


@st.composite
def _windows(draw: Any) -> list[StepWindow]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        start = draw(st.sampled_from([0, 10, 30, draw(st.integers(0, 60))]))
        length = draw(st.sampled_from([0, 20, 70, draw(st.integers(0, 60))]))
        needs = draw(st.sampled_from([NEEDS, draw(st.lists(st.sampled_from(NEEDS), unique=True))]))
        out.append(
            StepWindow(
                run=f"run-{draw(st.integers(0, 1))}",
                task=f"task-{i % 2}",
                service_account=draw(st.sampled_from([SA, SA, OTHER_SA, SA.upper()])),
                start=START + datetime.timedelta(seconds=start),
                end=START + datetime.timedelta(seconds=start + length),
                needs=tuple(needs),
                pipeline_root=draw(st.sampled_from([None, "gs://pre/2026/root"])),
            )
        )
    return out


@st.composite
def _rows(draw: Any) -> list[Access]:
    uniform = draw(st.booleans())  # mostly settled batches: one identity, permission, place
    principal = draw(st.sampled_from([SA, OTHER_SA, SA.upper()]))
    permission, resource = draw(
        st.sampled_from([*COVERED, (draw(st.sampled_from(PERMISSIONS)), "projects/p/x")])
    )
    other_permission, other_resource = draw(st.sampled_from(COVERED))
    at = draw(st.integers(0, 130))
    rows = []
    for i in range(draw(st.integers(0, 8))):
        if uniform:
            mixed = draw(st.integers(0, 5)) == 0  # now and then another need, or a stray
            rows.append(
                Access(
                    T0 + (at + draw(st.integers(0, 4))) / 2,
                    principal,
                    other_permission if mixed else permission,
                    (other_resource if mixed else resource) + draw(st.sampled_from(["", "/x"])),
                    "m",
                    draw(st.integers(0, 20)) > 0,
                    f"i{i}",
                    "log",
                )
            )
            continue
        rows.append(
            Access(
                T0 + draw(st.integers(0, 130)) / 2,
                draw(st.sampled_from([SA, OTHER_SA])),
                draw(st.sampled_from(PERMISSIONS)),
                draw(st.sampled_from(RESOURCES)),
                "m",
                draw(st.booleans()),
                f"i{i}",
                "log",
            )
        )
    return rows


def _batch(rows: list[Access]) -> AccessBatch:
    columns = [list(column) for column in zip(*rows, strict=True)] or [[] for _ in range(8)]
    return AccessBatch(*columns)


def _verdict(windows: list[StepWindow], accesses: Any) -> tuple[str, Any]:
    verdict = evaluate_usage(
        windows,
        accesses,
        audit_configs={"allServices": {"DATA_READ", "DATA_WRITE"}},
        now=START + datetime.timedelta(hours=1),
        project="p",
        since=START,
    )
    return verdict.report.to_json(), verdict.proposal


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_windows(), st.lists(_rows(), max_size=5), st.lists(st.booleans(), max_size=5))
def test_batches_decide_as_rows_one_by_one(
    windows: list[StepWindow], batches: list[list[Access]], as_rows: list[bool]
) -> None:
    accesses = Accesses()
    for i, rows in enumerate(batches):
        if i < len(as_rows) and as_rows[i]:
            accesses.extend(rows)
        else:
            accesses.add(_batch(rows))
    every = [a for rows in batches for a in rows]
    assert list(accesses) == every and len(accesses) == len(every)
    assert _verdict(windows, accesses) == _verdict(windows, every)


def test_a_settled_batch_marks_its_needs_used_and_an_undeclared_access_is_still_caught() -> None:
    window = StepWindow("r", "t", SA, START, START + datetime.timedelta(hours=1), needs=NEEDS)
    used = [
        Access(T0 + i, SA, "storage.objects.get", f"projects/_/buckets/raw/objects/{i}")
        for i in range(100)
    ]
    report, proposal = _verdict([window], _accesses(used))
    assert '"ZT631"' not in report
    assert proposal["t"]["needs"]["gs://raw"] == ["storage.objects.get"]
    stray = [*used, Access(T0 + 5, SA, "storage.objects.get", "projects/_/buckets/rawer/x")]
    report, _ = _verdict([window], _accesses(stray))
    assert report.count('"ZT631"') == 1 and "rawer/x" in report


def _accesses(rows: list[Access]) -> Accesses:
    out = Accesses()
    out.add(_batch(rows))
    return out


def test_an_access_batch_needs_one_value_per_field() -> None:
    import pytest

    with pytest.raises(ValueError, match="one value per field"):
        AccessBatch([1.0], [SA], [], [], [], [], [], [])


def test_a_batch_partly_inside_another_window_is_decided_row_by_row() -> None:
    """Two steps of one identity: the rows inside the short window use its step's need too."""
    long = StepWindow("r", "t0", SA, START, START + datetime.timedelta(seconds=100), NEEDS[:1])
    short = StepWindow("r", "t1", SA, START, START + datetime.timedelta(seconds=10), NEEDS[:1])
    rows = [
        Access(T0 + 5 + i, SA, "storage.objects.get", "projects/_/buckets/raw") for i in range(10)
    ]
    report, proposal = _verdict([long, short], _accesses(rows))
    assert (report, proposal) == _verdict([long, short], rows)
    assert '"ZT630"' not in report and proposal["t1"]["needs"] == {
        "gs://raw": ["storage.objects.get"]
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_rows(), max_size=4), st.lists(st.booleans(), max_size=4))
def test_where_filters_as_the_rows_and_keeps_batches_column_wise(
    batches: list[list[Access]], as_rows: list[bool]
) -> None:
    accesses = Accesses()
    for i, rows in enumerate(batches):
        if i < len(as_rows) and as_rows[i]:
            accesses.extend(rows)
        else:
            accesses.add(_batch(rows))

    def keep(principal: str, ts: float) -> bool:
        return principal != OTHER_SA or ts > T0 + 30

    kept = accesses.where(keep, "principal", "ts")
    assert list(kept) == [a for a in accesses if keep(a.principal, a.ts)]
    batches_in = sum(
        isinstance(p, AccessBatch) and any(map(keep, p.principal, p.ts)) for p in accesses.parts()
    )
    assert sum(isinstance(p, AccessBatch) for p in kept.parts()) == batches_in
