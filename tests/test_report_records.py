"""The report's records (Evidence, Finding, Grant, SuppressedFinding, the engine's Decision,
scope's BroadGrant) are slotted frozen dataclasses with a faster ``__init__``: they must keep
every dataclass behaviour callers rely on."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from zt_pipelines.policy.engine import Decision
from zt_pipelines.policy.report import (
    Evidence,
    Finding,
    Grant,
    Severity,
    SuppressedFinding,
    new_evidence,
    new_finding,
    new_grant,
)
from zt_pipelines.policy.scope import BroadGrant

RECORDS = (Evidence, Finding, Grant, SuppressedFinding, Decision, BroadGrant)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_signature_matches_the_fields(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.default == (
            inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        )


def test_records_stay_frozen_comparable_and_hashable() -> None:
    ev = Evidence("binding", node="//n", role="roles/x", detail="named directly")
    f = Finding("ZT210", Severity.WARNING, "m", step="s", evidence=(ev,))
    assert not hasattr(f, "__dict__")  # slotted
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.message = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.node = "x"  # type: ignore[misc]
    same = Finding("ZT210", Severity.WARNING, "m", "s", None, None, None, (ev,))
    assert f == same and hash(f) == hash(same) and len({f, same}) == 1
    assert f.principal is None and f.resource is None and f.permission is None
    moved = dataclasses.replace(f, severity=Severity.ERROR)
    assert moved.severity is Severity.ERROR and moved.evidence == (ev,)
    assert repr(ev) == (
        "Evidence(kind='binding', node='//n', role='roles/x', member='', condition='', "
        "deny_policy='', detail='named directly')"
    )
    assert ev.to_dict() == {
        "kind": "binding",
        "node": "//n",
        "role": "roles/x",
        "detail": "named directly",
    }
    g = Grant("serviceAccount:a@p.iam.gserviceaccount.com", "gs://b", "storage.objects.get")
    assert g.step is None and g.evidence == ()
    with pytest.raises(TypeError):
        Finding("ZT210", Severity.WARNING)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Evidence("binding", nod="x")  # type: ignore[call-arg]


MAKERS = ((new_evidence, Evidence), (new_finding, Finding), (new_grant, Grant))


@pytest.mark.parametrize(("make", "cls"), MAKERS, ids=lambda x: getattr(x, "__name__", ""))
def test_makers_have_the_class_signature(make: object, cls: type) -> None:
    assert inspect.signature(make).parameters.keys() == inspect.signature(cls).parameters.keys()
    for p, q in zip(
        inspect.signature(make).parameters.values(),
        inspect.signature(cls).parameters.values(),
        strict=True,
    ):
        assert p.default == q.default and p.kind == q.kind


def test_made_records_are_the_class_records() -> None:
    ev = new_evidence("binding", "//n", "roles/x", detail="named directly")
    assert type(ev) is Evidence and ev == Evidence(
        "binding", node="//n", role="roles/x", detail="named directly"
    )
    f = new_finding("ZT210", Severity.WARNING, "m", step="s", evidence=(ev,))
    made = Finding("ZT210", Severity.WARNING, "m", step="s", evidence=(ev,))
    assert type(f) is Finding and f == made and hash(f) == hash(made) and repr(f) == repr(made)
    assert f.to_dict() == made.to_dict() and not hasattr(f, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.message = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.node = "x"  # type: ignore[misc]
    assert dataclasses.replace(f, message="n").message == "n" and f.message == "m"
    assert pickle.loads(pickle.dumps(f)) == f
    g = new_grant("serviceAccount:a@p.iam.gserviceaccount.com", "gs://b", "storage.objects.get")
    assert type(g) is Grant and g == Grant(g.principal, g.resource, g.permission)
    assert g.step is None and g.evidence == ()
    with pytest.raises(TypeError):
        new_finding("ZT210", Severity.WARNING)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        new_evidence("binding", nod="x")  # type: ignore[call-arg]
