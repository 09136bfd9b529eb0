"""The batch classifier (:class:`IdentityKinds`, used by the check of thousands of step
identities) answers exactly as :func:`classify_identity`: the same default kind, the same
error for every malformed email, whatever was asked before (its per-domain memo)."""

from __future__ import annotations

import random

import pytest

from zt_pipelines.errors import IdentityError
from zt_pipelines.identity import IdentityKinds, classify_identity, identity_kind

_LOCALS = [
    "step-0001",
    "train-sa",
    "1234-compute",
    "service-123",
    "service-org-5",
    "service-folder-9",
    "servicex-12",
    "Service-1",
    "abc",
    "a" * 31,
    "ab.cdef",
    "abcdef.",
    "1abcdef",
    "abcdef-",
    "abcdef\n",
    "AbcDef",
    "a b-cdef",
    "é-acct1",
]
_DOMAINS = [
    "bench-proj.iam.gserviceaccount.com",
    "ex.com.proj-x1.iam.gserviceaccount.com",
    "a..b.proj-x1.iam.gserviceaccount.com",
    "developer.gserviceaccount.com",
    "appspot.gserviceaccount.com",
    "cloudbuild.gserviceaccount.com",
    "gcp-sa-aiplatform.iam.gserviceaccount.com",
    "gcp-sa-aiplatform-cc.iam.gserviceaccount.com",
    "gcp-sa-bigquery.iam.gserviceaccount.com",
    "Proj-x1.iam.gserviceaccount.com",
    "proj.iam.gserviceaccount.com.",
    "p.iam.gserviceaccount.com",
    "example.com",
]


def _answer(fn, email: str) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    try:
        return "ok", fn(email, where="task 'x'")
    except IdentityError as exc:
        return "error", str(exc)


def test_identity_kinds_answers_as_classify_identity() -> None:
    emails = [f"{loc}@{dom}" for loc in _LOCALS for dom in _DOMAINS] + ["noat", "a@b@c"]
    random.Random(7).shuffle(emails)
    kinds = IdentityKinds()
    seen = set()
    for email in emails * 2:  # asked again: the memo changes nothing
        expected = _answer(lambda e, where: classify_identity(e, where=where).default_kind, email)
        assert _answer(identity_kind, email) == expected, email
        assert _answer(kinds, email) == expected, email
        seen.add(expected[0] if expected[0] == "error" else expected[1])
    # the table covers user-managed accounts, default identities and errors
    assert {None, "error", "compute-default", "service-agent", "vertex-agent"} <= seen


@pytest.mark.parametrize(
    ("email", "kind"),
    [
        ("step-1x@bench-proj.iam.gserviceaccount.com", None),
        ("service-123@bench-proj.iam.gserviceaccount.com", "service-agent"),
        ("1234-compute@developer.gserviceaccount.com", "compute-default"),
    ],
)
def test_identity_kinds_of_common_accounts(email: str, kind: str | None) -> None:
    assert IdentityKinds()(email) == kind


def test_identity_kinds_error_names_where() -> None:
    with pytest.raises(IdentityError, match="task 't1'"):
        IdentityKinds()("Abcdef@proj-x1.iam.gserviceaccount.com", where="task 't1'")
