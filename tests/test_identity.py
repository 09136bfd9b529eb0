"""The one place that decides identities (zt_pipelines.identity) and resource URIs
(zt_pipelines.resources): strict parsing, default detection, derived ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zt_pipelines.errors import (
    DefaultIdentityError,
    IdentityError,
    PermissionFormatError,
    ResourceError,
)
from zt_pipelines.identity import (
    DEFAULT_NAME_TEMPLATE,
    classify_identity,
    derive_account_id,
    require_user_managed,
    service_account_email,
    submitter_member,
)
from zt_pipelines.resources import (
    ResourceRef,
    check_permission,
    display_uri,
    normalize_resource,
    project_resource,
    service_account_resource,
)

ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


@pytest.mark.parametrize(
    ("email", "kind"),
    [
        ("123456789012-compute@developer.gserviceaccount.com", "compute-default"),
        ("123456789012-COMPUTE@developer.gserviceaccount.com", "compute-default"),
        ("my-proj-1@appspot.gserviceaccount.com", "appengine-default"),
        ("service-1234@gcp-sa-aiplatform-cc.iam.gserviceaccount.com", "custom-code-agent"),
        ("service-1234@gcp-sa-aiplatform.iam.gserviceaccount.com", "vertex-agent"),
        ("service-1234@gcp-sa-bigquerydatatransfer.iam.gserviceaccount.com", "service-agent"),
        ("service-1234@compute-system.iam.gserviceaccount.com", "service-agent"),
        ("service-org-99@gcp-sa-logging.iam.gserviceaccount.com", "service-agent"),
        ("1234@cloudservices.gserviceaccount.com", "cloudservices"),
        ("1234@cloudbuild.gserviceaccount.com", "cloudbuild"),
        ("", "empty"),
        (None, "empty"),
    ],
)
def test_default_identities_are_classified_and_refused(email: str | None, kind: str) -> None:
    assert classify_identity(email).default_kind == kind
    with pytest.raises(DefaultIdentityError) as info:
        require_user_managed(email, where="task 'x'")
    assert "task 'x'" in str(info.value)


@pytest.mark.parametrize(
    "email",
    [
        "trainer@my-proj-1.iam.gserviceaccount.com",
        "service-reader@my-proj-1.iam.gserviceaccount.com",  # a user account named service-*
        "a23456@my-proj-1.iam.gserviceaccount.com",
    ],
)
def test_user_managed_accounts_pass(email: str) -> None:
    assert require_user_managed(email) == email
    assert not classify_identity(email).is_default


@pytest.mark.parametrize(
    ("email", "needle"),
    [
        ("trаiner@my-proj-1.iam.gserviceaccount.com", "non-ASCII"),  # Cyrillic a
        ("trainer@my-proj-1.iam.gserviceaccount.com.", "stray dot"),
        (" trainer@my-proj-1.iam.gserviceaccount.com", "whitespace"),
        ("trainer@my-proj-1.iam.gserviceaccount.com\n", "whitespace"),
        ("Trainer@my-proj-1.iam.gserviceaccount.com", "upper-case"),
        ("trainer@gmail.com", "not a service-account"),
        ("trainer@@my-proj-1.iam.gserviceaccount.com", "not an email"),
        ("trainer", "not an email"),
        ("abc@my-proj-1.iam.gserviceaccount.com", "6-30"),
        ("trainer@my..proj.iam.gserviceaccount.com", "stray dot"),
    ],
)
def test_malformed_emails_raise_identity_errors(email: str, needle: str) -> None:
    with pytest.raises(IdentityError) as info:
        classify_identity(email, where="manifest")
    assert needle in str(info.value) and "manifest" in str(info.value)
    assert not isinstance(info.value, DefaultIdentityError)


def test_derived_ids_are_valid_stable_and_hash_suffixed() -> None:
    one = derive_account_id("training-pipeline", "train")
    assert one == derive_account_id("training-pipeline", "train")
    assert ACCOUNT_ID.match(one) and one.startswith("zt-training-p-train-")
    long = derive_account_id("a-very-long-pipeline-name-indeed", "and-a-long-task-name")
    assert len(long) <= 30 and ACCOUNT_ID.match(long)
    assert service_account_email(one, "my-proj-1") == f"{one}@my-proj-1.iam.gserviceaccount.com"
    assert derive_account_id("1pipe", "2task").startswith("zt-")


def test_derived_ids_do_not_collide_where_hyphens_meet() -> None:
    # both render "zt-a-b-c" before the hash
    assert derive_account_id("a-b", "c") != derive_account_id("a", "b-c")
    # normalisation would merge these
    assert derive_account_id("p", "a_b") != derive_account_id("p", "a-b")
    # a template without {task} still gives each task its own identity
    assert derive_account_id("p", "a", template="zt-{pipeline}") != derive_account_id(
        "p", "b", template="zt-{pipeline}"
    )


def test_derived_ids_of_a_long_named_pipeline_do_not_collide() -> None:
    # the name is cut before the task shows, so only the hash tells tasks apart: with 6 hex
    # digits these 20,000 tasks shared ids (the first pair after ~3,900 tasks)
    pipeline = "customer-churn-training-pipeline"
    ids = {derive_account_id(pipeline, f"step-{i}") for i in range(20_000)}
    assert len(ids) == 20_000
    short = derive_account_id("short", "t")
    readable, _, digest = short.rpartition("-")
    assert readable == "zt-short-t" and len(digest) == 6  # it fits: a short hash


def test_bad_naming_template_is_an_identity_error() -> None:
    with pytest.raises(IdentityError, match="naming template"):
        derive_account_id("p", "t", template="{project}")


@settings(max_examples=200, deadline=None)
@given(
    pipeline=st.text(min_size=1, max_size=60),
    tasks=st.lists(st.text(min_size=1, max_size=60), min_size=2, max_size=6, unique=True),
)
def test_derived_ids_are_always_valid_and_distinct(pipeline: str, tasks: list[str]) -> None:
    ids = [derive_account_id(pipeline, t, template=DEFAULT_NAME_TEMPLATE) for t in tasks]
    assert all(ACCOUNT_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    for i in ids:
        email = service_account_email(i, "my-proj-1")
        assert require_user_managed(email) == email


@pytest.mark.parametrize(
    ("uri", "name", "prefix"),
    [
        ("gs://raw-data", "//storage.googleapis.com/raw-data", None),
        ("gs://raw-data/train/2024", "//storage.googleapis.com/raw-data", "train/2024"),
        (
            "bq://my-proj-1.features",
            "//bigquery.googleapis.com/projects/my-proj-1/datasets/features",
            None,
        ),
        (
            "bq://my-proj-1.features.daily",
            "//bigquery.googleapis.com/projects/my-proj-1/datasets/features/tables/daily",
            None,
        ),
        ("projects/my-proj-1", "//cloudresourcemanager.googleapis.com/projects/my-proj-1", None),
        ("//storage.googleapis.com/raw-data", "//storage.googleapis.com/raw-data", None),
        (
            "//storage.googleapis.com/projects/_/buckets/raw-data",
            "//storage.googleapis.com/raw-data",
            None,
        ),
        (
            "//storage.googleapis.com/raw-data/objects/p/q",
            "//storage.googleapis.com/raw-data",
            "p/q",
        ),
        (
            "//cloudresourcemanager.googleapis.com/folders/123",
            "//cloudresourcemanager.googleapis.com/folders/123",
            None,
        ),
        (
            "//pubsub.googleapis.com/projects/p/topics/t",
            "//pubsub.googleapis.com/projects/p/topics/t",
            None,
        ),
    ],
)
def test_resource_uris_normalise_to_full_names(uri: str, name: str, prefix: str | None) -> None:
    ref = normalize_resource(uri)
    assert ref == ResourceRef(name, prefix)
    # the short display form parses back to the same resource
    assert normalize_resource(display_uri(ref.name, ref.prefix)) == ref


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket",
        "gs://UPPER",
        "gs://a",
        "gs://bucket/a//b",
        "bq://proj",
        "bq://Bad_Project.ds",
        "bq://my-proj-1.bad-dataset",
        "projects/X",
        "//storage.googleapis.com/",
        "//cloudresourcemanager.googleapis.com/folders/abc",
        "//cloudresourcemanager.googleapis.com/buckets/x",
        " gs://bucket",
        "gs://bücket",
        "",
    ],
)
def test_bad_resource_uris_raise(uri: str) -> None:
    with pytest.raises(ResourceError) as info:
        normalize_resource(uri, where="needs")
    assert "needs" in str(info.value)


@pytest.mark.parametrize(
    "perm", ["storage.objects.get", "bigquery.tables.getData", "iam.serviceAccounts.actAs"]
)
def test_permissions_accept_service_resource_verb(perm: str) -> None:
    assert check_permission(perm) == perm


@pytest.mark.parametrize(
    "perm",
    [
        "roles/viewer",
        "storage.objects",
        "storage",
        "Storage.objects.get",
        "storage.objects.get ",
        "",
    ],
)
def test_bad_permissions_raise(perm: str) -> None:
    with pytest.raises(PermissionFormatError):
        check_permission(perm, where="needs")


def test_resource_helpers() -> None:
    assert (
        project_resource("my-proj-1") == "//cloudresourcemanager.googleapis.com/projects/my-proj-1"
    )
    email = "trainer@my-proj-1.iam.gserviceaccount.com"
    assert (
        service_account_resource(email)
        == f"//iam.googleapis.com/projects/my-proj-1/serviceAccounts/{email}"
    )
    assert ResourceRef("//storage.googleapis.com/b").service == "storage.googleapis.com"


@pytest.mark.parametrize(
    ("submitter", "member"),
    [
        ("Alice@Example.com", "user:alice@example.com"),
        ("user:alice@example.com", "user:alice@example.com"),
        (
            "ci-runner@my-proj-1.iam.gserviceaccount.com",
            "serviceAccount:ci-runner@my-proj-1.iam.gserviceaccount.com",
        ),
        (
            "serviceAccount:ci-runner@my-proj-1.iam.gserviceaccount.com",
            "serviceAccount:ci-runner@my-proj-1.iam.gserviceaccount.com",
        ),
    ],
)
def test_submitter_member_accepts_one_user_or_service_account(submitter: str, member: str) -> None:
    assert submitter_member(submitter) == member


@pytest.mark.parametrize(
    "submitter",
    [
        "bob",
        "allUsers",
        "user:allAuthenticatedUsers",
        "group:eng@example.com",
        "domain:example.com",
        "principalSet://iam.googleapis.com/locations/global/workforcePools/p/*",
        "user:a@b@example.com",
        "user:ålice@example.com",
        "123456789-compute@developer.gserviceaccount.com",
    ],
)
def test_submitter_member_refuses_anything_else(submitter: str) -> None:
    with pytest.raises(IdentityError) as info:
        submitter_member(submitter, where="--submitter")
    assert info.value.where == "--submitter"


# the readable part of a long derived id keeps the task (the hash keeps it unique)
GOLDEN = {
    ("x", "prep"): "zt-x-prep-221a43",  # short: unchanged since the first release
    ("training-pipeline", "train"): "zt-training-p-train-b8b9636db8",
    ("customer-churn-training", "evaluate-model"): "zt-custo-evaluate-m-6d02de79db",
    ("customer-churn-training", "(pipeline)"): "zt-custome-pipeline-2f9fc404aa",
}


@pytest.mark.parametrize(("names", "expected"), sorted(GOLDEN.items()))
def test_derived_ids_are_stable(names: tuple[str, str], expected: str) -> None:
    assert derive_account_id(*names) == expected


def test_long_named_pipelines_identities_read_differently() -> None:
    pipeline = "evaluation-automl-tabular-feature-selection-pipeline"
    tasks = ["(pipeline)", "model-evaluation", "model-evaluation-2", "feature-attribution"]
    ids = [derive_account_id(pipeline, t) for t in tasks]
    readable = [i.rsplit("-", 1)[0] for i in ids]
    assert all(len(i) == 30 for i in ids)
    # the pipeline identity and the steps no longer share one truncated prefix
    assert readable[0].endswith("pipeline") and "model-eval" in readable[1]
    assert len({r for r in readable}) >= 3  # model-evaluation and -2 may read alike: hash differs
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("length", [20, 21, 22, 23, 24, 25, 40, 80])
def test_at_the_30_character_limit(length: int) -> None:
    # the rendered name around the 23-character switch between the short and long forms
    task = "t" * max(1, length - len("zt-p-"))
    found = derive_account_id("p", task)
    assert ACCOUNT_ID.match(found) and 6 <= len(found) <= 30
    rendered = len(f"zt-p-{task}")
    assert len(found.rsplit("-", 1)[1]) == (6 if rendered <= 23 else 10)
    if rendered > 23:
        assert len(found) == 30


def test_collisions_between_tasks_cut_to_the_same_readable_part() -> None:
    # 5,000 tasks of a long-named pipeline whose names differ only after the cut
    pipeline = "customer-churn-training-pipeline"
    tasks = [f"evaluate-the-model-on-slice-{i}" for i in range(5_000)]
    ids = {derive_account_id(pipeline, t) for t in tasks}
    assert len(ids) == 5_000
    assert {i.rsplit("-", 1)[0] for i in ids} == {"zt-custo-evaluate-t"}


@settings(max_examples=300, deadline=None)
@given(
    pipeline=st.text(min_size=1, max_size=80),
    task=st.text(min_size=1, max_size=80),
    template=st.sampled_from(
        [DEFAULT_NAME_TEMPLATE, "{task}", "{pipeline}-{task}", "x-{task}-{pipeline}", "a" * 40]
    ),
)
def test_any_name_and_template_gives_a_valid_id(pipeline: str, task: str, template: str) -> None:
    found = derive_account_id(pipeline, task, template=template)
    assert ACCOUNT_ID.match(found)
    assert found == derive_account_id(pipeline, task, template=template)


@pytest.mark.parametrize(
    "template",
    [
        "{task.__init__.__globals__}",
        "{pipeline.__class__}",
        "{task.upper}",
        "{task[0]}",
        "{task!r}",
        "{task:>30}",
        "{other}",
        "{0}",
        "zt-{task",
    ],
)
def test_a_naming_template_takes_only_bare_pipeline_and_task_fields(template: str) -> None:
    # a format string would otherwise reach attributes, indexes and conversions (red team in_24)
    with pytest.raises(IdentityError, match="naming template"):
        derive_account_id("p", "t", template=template)
    assert derive_account_id("p", "t", template="x-{{lit}}-{pipeline}-{task}")
