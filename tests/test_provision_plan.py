"""The provisioning plan (pure): grants, custom roles, conditions, refusals, diff and prune."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zt_pipelines as zt
from zt_pipelines.errors import InputError
from zt_pipelines.model import Need, RewriteResult, StepIdentity
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Condition,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
    Unreadable,
)
from zt_pipelines.provision import (
    UnsupportedResourceError,
    Want,
    build_plan,
    plan,
    role_id_for,
)
from zt_pipelines.provision.custom_roles import custom_role_for, is_managed_role
from zt_pipelines.provision.model import ACT_AS
from zt_pipelines.provision.render import render_gcloud, render_json, render_table, render_terraform
from zt_pipelines.resources import ResourceRef, normalize_resource

PROJECT = "zt-demo-proj"
PIPE_SA = f"pipeline-runner@{PROJECT}.iam.gserviceaccount.com"
TRAIN_SA = f"train-sa@{PROJECT}.iam.gserviceaccount.com"
PREP_SA = f"prep-sa@{PROJECT}.iam.gserviceaccount.com"
ROOT = "gs://zt-root/pipeline"


def need(uri: str, *perms: str) -> Need:
    return Need(normalize_resource(uri), tuple(sorted(perms)))


def result(*steps: StepIdentity) -> RewriteResult:
    return RewriteResult(spec={"defaultPipelineRoot": ROOT}, pipeline_name="demo", steps=steps)


def step(task: str, sa: str | None, *needs: Need) -> StepIdentity:
    return StepIdentity(
        task=task,
        component=f"comp-{task}",
        executor=f"exec-{task}",
        service_account=sa,
        source="declared" if sa else "pipeline",
        needs=needs,
    )


PIPELINE = result(
    step("prep", PREP_SA, need("gs://raw-data", "storage.objects.get", "storage.objects.list")),
    step(
        "train",
        TRAIN_SA,
        need("gs://raw-data", "storage.objects.get", "storage.objects.list"),
        need("bq://zt-demo-proj.features", "bigquery.tables.getData"),
        need("gs://models/train", "storage.objects.create", "storage.objects.list"),
    ),
)


def make_plan(template: Any = PIPELINE, **kwargs: Any) -> zt.Plan:
    kwargs.setdefault("project", PROJECT)
    kwargs.setdefault("pipeline_service_account", PIPE_SA)
    return plan(template, **kwargs)


def grants_of(p: zt.Plan, member_email: str) -> dict[tuple[str, str], tuple[str, ...]]:
    return {
        (g.uri + ("?" + g.condition.expression if g.condition else ""), g.role): g.permissions
        for g in p.grants
        if g.member == f"serviceAccount:{member_email}"
    }


def test_public_api_names_resolve() -> None:
    assert zt.plan is plan
    assert zt.Plan.__name__ == "Plan"


def test_every_step_gets_exactly_its_needs_as_custom_roles() -> None:
    p = make_plan()
    assert {a.email: a.state for a in p.accounts} == {
        PIPE_SA: "create",
        PREP_SA: "create",
        TRAIN_SA: "create",
    }
    train = grants_of(p, TRAIN_SA)
    perms_by_resource: dict[str, set[str]] = {}
    for (where, _role), perms in train.items():
        perms_by_resource.setdefault(where, set()).update(perms)
    assert perms_by_resource == {
        "gs://raw-data": {"storage.objects.get", "storage.objects.list"},
        "bq://zt-demo-proj.features": {"bigquery.tables.getData"},
        # list is authorised on the bucket, so it cannot sit under an object-prefix condition
        "gs://models": {"storage.objects.list"},
        'gs://models?resource.name.startsWith("projects/_/buckets/models/objects/train")': {
            "storage.objects.create"
        },
        # implicit: artifacts under the pipeline root
        'gs://zt-root?resource.name.startsWith("projects/_/buckets/zt-root/objects/pipeline/")': {
            "storage.objects.create",
            "storage.objects.get",
        },
    }
    for grant in p.grants:
        assert grant.role.startswith(f"projects/{PROJECT}/roles/zt_") or (
            grant.role == "roles/iam.serviceAccountUser"
        )
        assert not grant.excess


def test_identical_permission_sets_share_one_role_and_replanning_is_stable() -> None:
    p1, p2 = make_plan(), make_plan()
    assert render_json(p1) == render_json(p2)
    raw_roles = {
        g.role for g in p1.grants if g.uri == "gs://raw-data" and g.member.endswith(PREP_SA)
    } | {g.role for g in p1.grants if g.uri == "gs://raw-data" and g.member.endswith(TRAIN_SA)}
    assert len(raw_roles) == 1  # prep and train need the same set: one role
    names = [spec.role.name for spec in p1.custom_roles]
    assert len(names) == len(set(names))
    for spec in p1.custom_roles:
        assert is_managed_role(spec.role.name)
        assert spec.role.role_id == role_id_for(reversed(spec.role.permissions))
        assert 3 <= len(spec.role.role_id) <= 64


def test_pipeline_sa_can_act_as_each_step_sa_bound_on_the_step_sa() -> None:
    p = make_plan()
    # custom mode: a custom role of exactly actAs (no serviceAccountUser get/list to report)
    act_as = [g for g in p.grants if "/serviceAccounts/" in g.resource]
    assert all(g.permissions == ("iam.serviceAccounts.actAs",) and not g.excess for g in act_as)
    assert all(g.role.startswith(f"projects/{PROJECT}/roles/zt_") for g in act_as)
    assert {(g.resource, g.member) for g in act_as} == {
        (
            f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{sa}",
            f"serviceAccount:{PIPE_SA}",
        )
        for sa in (PREP_SA, TRAIN_SA)
    }
    project_grants = [g for g in p.grants if g.resource.endswith(f"projects/{PROJECT}")]
    assert all(g.member == f"serviceAccount:{PIPE_SA}" for g in project_grants)
    assert "aiplatform.customJobs.create" in project_grants[0].permissions


def test_no_grant_on_an_undeclared_resource_and_no_basic_roles() -> None:
    p = make_plan()
    declared = {"gs://raw-data", "bq://zt-demo-proj.features", "gs://models", "gs://zt-root"}
    allowed_targets = declared | {f"projects/{PROJECT}"}
    for g in p.grants:
        if "/serviceAccounts/" in g.resource:
            continue
        assert g.uri in allowed_targets
        assert g.role not in ("roles/owner", "roles/editor", "roles/viewer")


@pytest.mark.parametrize(
    "perm",
    [
        "iam.serviceAccounts.actAs",
        "iam.serviceAccounts.getAccessToken",
        "storage.buckets.setIamPolicy",
        "iam.roles.update",
        "resourcemanager.projects.setIamPolicy",
    ],
)
def test_escalation_capable_needs_are_held_back_and_the_rest_is_planned(perm: str) -> None:
    bad = result(
        step(
            "train",
            TRAIN_SA,
            need("projects/zt-demo-proj", perm),
            need("gs://raw-data", "storage.objects.get"),
        )
    )
    planned = make_plan(bad)
    assert planned.needs_review
    (held,) = planned.held_back
    assert (held.permission, held.step, held.member) == (
        perm,
        "train",
        f"serviceAccount:{TRAIN_SA}",
    )
    assert held.reason and held.uri == "projects/zt-demo-proj"
    # never provisioned, and the rest of the plan goes ahead
    mine = [g for g in planned.grants if g.member == f"serviceAccount:{TRAIN_SA}"]
    assert all(perm not in g.permissions for g in mine)
    assert any("storage.objects.get" in g.permissions and g.uri == "gs://raw-data" for g in mine)
    table = render_table(planned)
    assert "Held back for review" in table and perm in table and "exit code 3" in table
    assert json.loads(render_json(planned))["held_back"][0]["permission"] == perm


def test_unsupported_resource_is_a_typed_error() -> None:
    bad = result(
        step(
            "train",
            TRAIN_SA,
            need("//pubsub.googleapis.com/projects/zt-demo-proj/topics/t", "pubsub.topics.publish"),
        )
    )
    with pytest.raises(UnsupportedResourceError, match="pubsub"):
        make_plan(bad)


@pytest.mark.parametrize(
    "uri",
    [
        "//cloudkms.googleapis.com/projects/zt-demo-proj/locations/us/keyRings/r",
        "//secretmanager.googleapis.com/projects/zt-demo-proj",
        "//secretmanager.googleapis.com/projects/zt-demo-proj/secrets/s/versions/1",
        "//artifactregistry.googleapis.com/projects/zt-demo-proj/locations/us",
        "//iam.googleapis.com/projects/zt-demo-proj",
        "//bigquery.googleapis.com/projects/zt-demo-proj",
        "//cloudresourcemanager.googleapis.com/folders/123",
    ],
)
def test_resource_shapes_that_hold_no_bindable_policy_are_refused(uri: str) -> None:
    # these used to plan, then crash the Terraform/gcloud renderers (or render a wrong resource)
    with pytest.raises(UnsupportedResourceError, match="cannot provision"):
        make_plan(result(step("train", TRAIN_SA, need(uri, "storage.objects.get"))))


@pytest.mark.parametrize(
    "uri",
    [
        "gs://zt-bucket/prefix",
        "bq://zt-demo-proj.features",
        "bq://zt-demo-proj.features.rows",
        "projects/zt-demo-proj",
        f"//iam.googleapis.com/projects/zt-demo-proj/serviceAccounts/{PREP_SA}",
        "//secretmanager.googleapis.com/projects/zt-demo-proj/secrets/s",
        "//artifactregistry.googleapis.com/projects/zt-demo-proj/locations/us/repositories/r",
        "//cloudkms.googleapis.com/projects/zt-demo-proj/locations/us/keyRings/r/cryptoKeys/k",
    ],
)
def test_every_bindable_resource_shape_renders_in_every_format(uri: str) -> None:
    planned = make_plan(result(step("train", TRAIN_SA, need(uri, "storage.objects.get"))))
    resource = normalize_resource(uri).name
    assert any(g.resource == resource for g in planned.additions)
    for text in (
        render_table(planned),
        render_json(planned),
        render_terraform(planned),
        render_gcloud(planned),
    ):
        assert text.strip()
    assert resource.rsplit("/", 1)[-1] in render_gcloud(planned)


@pytest.mark.parametrize(
    ("submitter", "member"),
    [
        ("alice@example.com", "user:alice@example.com"),
        ("user:Bob@Example.com", "user:bob@example.com"),
        (f"ci-runner@{PROJECT}.iam.gserviceaccount.com", "serviceAccount:ci-runner@"),
    ],
)
def test_submitter_is_normalised(submitter: str, member: str) -> None:
    planned = make_plan(submitter=submitter)
    assert any(g.member.startswith(member) and g.step == "(submitter)" for g in planned.grants)


@pytest.mark.parametrize(
    "submitter",
    [
        "bob",
        "allUsers",
        "user:allAuthenticatedUsers",
        "domain:example.com",
        "group:ml-eng@example.com",
        "principalSet://iam.googleapis.com/locations/global/workforcePools/p/*",
        "serviceAccount:123456789-compute@developer.gserviceaccount.com",
        "user:ålice@example.com",
    ],
)
def test_a_submitter_that_is_not_one_principal_is_refused(submitter: str) -> None:
    # the submitter gets actAs on the pipeline SA: never a public or default principal
    with pytest.raises(InputError, match="submitter"):
        make_plan(submitter=submitter)


def test_default_identity_as_pipeline_sa_is_refused() -> None:
    with pytest.raises(InputError, match="default"):
        make_plan(pipeline_service_account="123456789-compute@developer.gserviceaccount.com")


def state_with(
    *nodes: Node, accounts: tuple[str, ...] = (), roles: dict[str, Role] | None = None
) -> Snapshot:
    return Snapshot(
        nodes={n.name: n for n in nodes},
        service_accounts={a: ServiceAccount(a, PROJECT) for a in accounts},
        roles=roles or {},
    )


def test_plan_is_a_diff_and_prune_touches_only_our_identities() -> None:
    full = make_plan()
    raw_role = next(g.role for g in full.grants if g.uri == "gs://raw-data")
    other = "user:alice@example.com"
    raw = Node(
        "//storage.googleapis.com/raw-data",
        "bucket",
        policy=AllowPolicy(
            (
                Binding(raw_role, (f"serviceAccount:{PREP_SA}", f"serviceAccount:{TRAIN_SA}")),
                # an old grant to our step SA that the plan does not need, shared with alice
                Binding("roles/storage.objectAdmin", (f"serviceAccount:{TRAIN_SA}", other)),
                Binding("roles/storage.admin", (other,)),
            ),
            etag="e1",
        ),
    )
    roles = {
        s.role.name: Role(s.role.name, frozenset(s.role.permissions)) for s in full.custom_roles
    }
    snapshot = state_with(raw, accounts=(PIPE_SA, PREP_SA, TRAIN_SA), roles=roles)
    p = make_plan(snapshot=snapshot)
    assert all(a.state == "exists" for a in p.accounts)
    assert all(r.state == "exists" for r in p.custom_roles)
    assert not any(g.uri == "gs://raw-data" for g in p.additions)
    # train-sa's old objectAdmin carries storage.objects.setIamPolicy: acting as it is held
    # back for review (the pipeline SA would gain it) until --prune removes the binding
    assert len(p.additions) == len(full.additions) - 3
    [held] = p.held_back
    assert (held.member, held.permission) == (f"serviceAccount:{PIPE_SA}", ACT_AS)
    assert held.resource.endswith(f"/serviceAccounts/{TRAIN_SA}")
    assert "roles/storage.objectAdmin" in held.reason
    assert [(g.role, g.member) for g in p.extras] == [
        ("roles/storage.objectAdmin", f"serviceAccount:{TRAIN_SA}")
    ]
    assert p.removals == ()  # not pruning: reported only
    pruned = make_plan(snapshot=snapshot, prune=True)
    assert pruned.removals == pruned.extras == p.extras
    assert pruned.held_back == ()  # the risky binding goes, so acting as train-sa is planned
    assert "roles/storage.admin" not in {g.role for g in pruned.removals}


def test_edited_managed_role_is_planned_as_update() -> None:
    full = make_plan()
    spec = full.custom_roles[0]
    drifted = Role(spec.role.name, frozenset({*spec.role.permissions, "storage.objects.delete"}))
    p = make_plan(snapshot=state_with(roles={spec.role.name: drifted}))
    assert {s.role.name: s.state for s in p.custom_roles}[spec.role.name] == "update"


def test_no_changes_when_state_matches() -> None:
    full = make_plan()
    nodes: dict[str, list[Binding]] = {}
    for g in full.grants:
        nodes.setdefault(g.resource, []).append(Binding(g.role, (g.member,), g.condition))
    snapshot = Snapshot(
        nodes={
            name: Node(name, "other", policy=AllowPolicy(tuple(b), etag="x", version=3))
            for name, b in nodes.items()
        },
        service_accounts={a.email: ServiceAccount(a.email, PROJECT) for a in full.accounts},
        roles={
            s.role.name: Role(s.role.name, frozenset(s.role.permissions)) for s in full.custom_roles
        },
    )
    p = make_plan(snapshot=snapshot, prune=True)
    assert p.is_noop and not p.additions and not p.removals
    assert "No changes." in render_table(p)
    assert "nothing to do" in render_gcloud(p)


def test_predefined_roles_mode_uses_a_cover_and_reports_excess() -> None:
    catalogue = {
        "roles/storage.objectViewer": frozenset(
            {"storage.objects.get", "storage.objects.list", "resourcemanager.projects.get"}
        ),
        "roles/storage.objectCreator": frozenset({"storage.objects.create"}),
        "roles/storage.admin": frozenset(
            {"storage.objects.get", "storage.objects.list", "storage.buckets.setIamPolicy"}
        ),
        "roles/editor": frozenset({"storage.objects.get", "bigquery.tables.getData"}),
        "roles/bigquery.dataViewer": frozenset({"bigquery.tables.getData", "bigquery.tables.get"}),
        "roles/storage.bucketViewer": frozenset({"storage.buckets.get"}),
        "roles/aiplatform.user": frozenset(
            {
                "aiplatform.customJobs.cancel",
                "aiplatform.customJobs.create",
                "aiplatform.customJobs.get",
                "aiplatform.metadataStores.get",
                "aiplatform.models.get",
            }
        ),
    }
    p = make_plan(roles="predefined", catalogue=catalogue)
    roles = {g.role for g in p.grants}
    assert "roles/editor" not in roles  # basic: never
    assert "roles/storage.admin" not in roles  # carries setIamPolicy: never
    assert p.roles_mode == "predefined" and not p.custom_roles
    raw = {g.role for g in p.grants if g.uri == "gs://raw-data" and g.member.endswith(TRAIN_SA)}
    assert raw == {"roles/storage.objectViewer"}
    excess = p.excess_by_step()
    # raw-data: projects.get; features: tables.get; models (list on the bucket): objects.get +
    # projects.get; pipeline root (get/create under the prefix): objects.list + projects.get
    assert excess["train"] == 1 + 1 + 2 + 2
    assert all(c.cover.exact for c in p.covers)
    data = json.loads(render_json(p))
    assert data["covers"] and data["roles"] == "predefined"
    assert "train: 6" in render_table(p)


def test_custom_role_ids_are_valid_and_order_independent() -> None:
    a = custom_role_for(
        ["storage.objects.list", "storage.objects.get", "storage.objects.get"],
        parent="projects/zt-demo-proj",
    )
    b = custom_role_for(
        ["storage.objects.get", "storage.objects.list"], parent="projects/zt-demo-proj"
    )
    assert a == b and a.permissions == ("storage.objects.get", "storage.objects.list")
    assert a.name == f"projects/zt-demo-proj/roles/{a.role_id}"
    org = custom_role_for(["storage.objects.get"], parent="organizations/1234")
    assert org.name.startswith("organizations/1234/roles/zt_")
    with pytest.raises(InputError):
        custom_role_for(["a.b.c"], parent="folders/12")
    with pytest.raises(InputError):
        custom_role_for(["roles/editor"], parent="projects/zt-demo-proj")


def test_table_lists_changes_and_marks_extras() -> None:
    text = render_table(make_plan())
    assert "+ " + TRAIN_SA in text
    assert "Plan: 3 accounts to create" in text and "(s)" not in text
    # the excess column is filled in custom mode too: exactly the needs, 0 beyond
    header = next(line for line in text.splitlines() if line.strip().startswith("step"))
    assert header.rstrip().endswith("excess")
    rows = [
        line for line in text.splitlines() if line.startswith("  + ") and "serviceAccount:" in line
    ]
    assert rows and all(line.rstrip().endswith(" 0") for line in rows)
    one = render_table(
        make_plan(result(step("train", TRAIN_SA, need("gs://raw-data", "storage.objects.get"))))
    )
    assert "1 binding to add" in one or "bindings to add" in one


def test_prefix_condition_escapes_quotes() -> None:
    odd = result(step("train", TRAIN_SA, need('gs://models/a"b', "storage.objects.get")))
    g = next(g for g in make_plan(odd).grants if g.condition and "models" in g.resource)
    assert g.condition == Condition(
        'resource.name.startsWith("projects/_/buckets/models/objects/a\\"b")',
        'zt prefix a"b',
        'objects under gs://models/a"b',
    )


def test_custom_roles_cannot_cross_projects_without_an_organisation() -> None:
    other = result(
        step("train", TRAIN_SA, need("bq://other-proj-1.ds.rows", "bigquery.tables.getData"))
    )
    with pytest.raises(InputError, match="other-proj-1") as info:
        make_plan(other)
    assert "--organization" in str(info.value)
    p = make_plan(other, organization="1234567")
    assert all(s.role.parent == "organizations/1234567" for s in p.custom_roles)
    # a bucket whose project the snapshot knows is checked too
    project = Node("//cloudresourcemanager.googleapis.com/projects/other-proj-1", "project")
    bucket = Node("//storage.googleapis.com/raw-data", "bucket", project.name)
    with pytest.raises(InputError, match="gs://raw-data"):
        make_plan(snapshot=state_with(project, bucket))


MEMBERS = [f"serviceAccount:step{i}-sa@zt-demo-proj.iam.gserviceaccount.com" for i in range(3)]
RESOURCES = [
    ResourceRef("//storage.googleapis.com/bkt-a"),
    ResourceRef("//storage.googleapis.com/bkt-a", "p1/"),
    ResourceRef("//storage.googleapis.com/bkt-a", "p2/"),
    ResourceRef("//bigquery.googleapis.com/projects/zt-demo-proj/datasets/d"),
    ResourceRef("//cloudresourcemanager.googleapis.com/projects/zt-demo-proj"),
]
PERMISSIONS = [
    "storage.objects.get",
    "storage.objects.create",
    "storage.objects.list",
    "storage.buckets.get",
    "bigquery.tables.getData",
    "aiplatform.models.get",
]
wants_strategy = st.lists(
    st.builds(
        Want,
        st.sampled_from(MEMBERS),
        st.sampled_from(RESOURCES),
        st.lists(st.sampled_from(PERMISSIONS), min_size=1, max_size=4, unique=True).map(
            lambda p: tuple(sorted(p))
        ),
        st.sampled_from(["a", "b", "c"]),
    ),
    min_size=1,
    max_size=12,
)


def _effective(p: zt.Plan) -> set[tuple[str, str, str, str]]:
    """(member, resource, prefix, permission) the plan's grants give, read back from roles."""
    perms_of = {s.role.name: set(s.role.permissions) for s in p.custom_roles}
    out = set()
    for g in p.grants:
        prefix = ""
        if g.condition is not None:
            prefix = g.condition.expression.split("/objects/", 1)[1].rsplit('")', 1)[0]
        for perm in perms_of.get(g.role, set()):
            out.add((g.member, g.resource, prefix, perm))
    return out


@settings(max_examples=120, deadline=None)
@given(wants_strategy)
def test_custom_plan_grants_exactly_the_needs(wants: list[Want]) -> None:
    p = build_plan(wants, project=PROJECT, pipeline_service_account=PIPE_SA)
    granted = _effective(p)
    needed = set()
    for w in wants:
        for perm in w.permissions:
            object_level = perm.startswith("storage.objects.") and perm != "storage.objects.list"
            prefix = w.resource.prefix if w.resource.prefix and object_level else ""
            needed.add((w.member, w.resource.name, prefix, perm))
    # complete: every need is granted, unconditionally or under its own prefix
    for member, resource, prefix, perm in needed:
        assert (member, resource, prefix, perm) in granted or (
            member,
            resource,
            "",
            perm,
        ) in granted
    # minimal: nothing is granted that no need asked for, on that resource and prefix
    assert granted <= needed
    assert {g.resource for g in p.grants} <= {w.resource.name for w in wants}


def test_an_existing_role_with_exactly_the_needed_permissions_is_reused() -> None:
    reader = f"projects/{PROJECT}/roles/objectReader"
    wider = f"projects/{PROJECT}/roles/objectAdmin"
    raw = Node(
        "//storage.googleapis.com/raw-data",
        "bucket",
        policy=AllowPolicy(
            (
                Binding(reader, (f"serviceAccount:{PREP_SA}",)),
                Binding(wider, (f"serviceAccount:{TRAIN_SA}",)),
            ),
            etag="e",
        ),
    )
    roles = {
        reader: Role(reader, frozenset({"storage.objects.get", "storage.objects.list"})),
        wider: Role(
            wider,
            frozenset({"storage.objects.get", "storage.objects.list", "storage.objects.delete"}),
        ),
    }
    p = make_plan(snapshot=state_with(raw, roles=roles), prune=True)
    prep_raw = [g for g in p.grants if g.member.endswith(PREP_SA) and g.uri == "gs://raw-data"]
    assert [g.role for g in prep_raw] == [reader]  # kept, not replaced
    assert not any(g.role == reader for g in p.additions + p.removals)
    # a wider role is not "equivalent": train gets the exact role and the wide one is pruned
    assert [(g.role, g.member) for g in p.removals] == [(wider, f"serviceAccount:{TRAIN_SA}")]
    train_raw = [g for g in p.additions if g.member.endswith(TRAIN_SA) and g.uri == "gs://raw-data"]
    assert len(train_raw) == 1 and train_raw[0].role.split("/roles/")[1].startswith("zt_")


def test_unreadable_state_fails_closed_but_missing_accounts_are_created() -> None:
    denied = Unreadable(
        "//storage.googleapis.com/raw-data", "storage.buckets.getIamPolicy", "PERMISSION_DENIED: no"
    )
    with pytest.raises(zt.ApiError, match="raw-data") as info:
        make_plan(snapshot=Snapshot(unreadable=(denied,)))
    assert info.value.exit_code == 1
    missing = Unreadable(
        f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{TRAIN_SA}",
        "serviceAccounts.get",
        "NOT_FOUND: gone",
    )
    irrelevant = Unreadable(
        "organizations/1 (policy:x)", "searchAllIamPolicies", "PERMISSION_DENIED"
    )
    p = make_plan(snapshot=Snapshot(unreadable=(missing, irrelevant)))
    assert {a.email: a.state for a in p.accounts}[TRAIN_SA] == "create"


def test_parameters_or_manifest_with_an_already_rewritten_pipeline_are_refused() -> None:
    with pytest.raises(InputError, match="already rewritten"):
        make_plan(parameter_values={"sa": TRAIN_SA})
    with pytest.raises(InputError, match="already rewritten"):
        make_plan(manifest={"steps": {}})


def test_a_pipeline_sa_is_derived_per_pipeline_when_none_is_given() -> None:
    first = plan(PIPELINE, project=PROJECT)
    other = plan(
        RewriteResult(spec={"defaultPipelineRoot": ROOT}, pipeline_name="other", steps=()),
        project=PROJECT,
    )
    again = plan(PIPELINE, project=PROJECT)
    assert first.pipeline_service_account == again.pipeline_service_account  # stable
    assert first.pipeline_service_account != other.pipeline_service_account  # never shared
    assert first.pipeline_service_account.endswith(f"@{PROJECT}.iam.gserviceaccount.com")
    account = next(a for a in first.accounts if a.email == first.pipeline_service_account)
    assert account.steps == ("(pipeline)",) and account.state == "create"
    # it is the one launching the steps: actAs on each step SA
    assert any(
        g.member == f"serviceAccount:{first.pipeline_service_account}"
        and g.permissions == ("iam.serviceAccounts.actAs",)
        for g in first.grants
    )
