"""decide(): the tri-state IAM answer with evidence, over small, hand-made worlds."""

from __future__ import annotations

import pytest
from policy_worlds import (
    ALICE,
    DATASET,
    FEATURES,
    FOLDER,
    INGEST_SA,
    NOW,
    ORG,
    OTHER_BUCKET,
    PIPELINE_SA,
    PROJECT,
    RAW,
    TRAIN_SA,
    deny,
    grant,
    node,
    sa_node,
    v2_sa,
    world,
    world_dict,
)

from zt_pipelines.policy.engine import Evaluator, decide
from zt_pipelines.policy.snapshot_file import load_snapshot
from zt_pipelines.resources import ResourceRef, normalize_resource

TRAIN = f"serviceAccount:{TRAIN_SA}"


def test_direct_grant_on_bucket_names_binding_and_node() -> None:
    d = decide(TRAIN, FEATURES, "storage.objects.get", world(), now=NOW)
    assert d.state == "granted" and d.granted
    (ev,) = d.evidence
    assert (ev.kind, ev.node, ev.role, ev.member) == (
        "binding",
        FEATURES,
        "roles/storage.objectViewer",
        TRAIN,
    )


def test_grant_on_one_bucket_does_not_reach_another() -> None:
    assert decide(TRAIN, RAW, "storage.objects.get", world(), now=NOW).state == "not_granted"
    assert decide(TRAIN, OTHER_BUCKET, "storage.objects.get", world(), now=NOW).state == (
        "not_granted"
    )


def test_permission_not_in_role_is_not_granted() -> None:
    d = decide(TRAIN, FEATURES, "storage.objects.delete", world(), now=NOW)
    assert d.state == "not_granted" and d.reasons


def test_member_email_is_case_insensitive() -> None:
    d = decide(TRAIN.replace("train", "TRAIN"), FEATURES, "storage.objects.get", world(), now=NOW)
    assert d.granted


@pytest.mark.parametrize("ancestor", [PROJECT, FOLDER, ORG])
def test_inheritance_from_every_ancestor(ancestor: str) -> None:
    data = grant(world_dict(), ancestor, "roles/bigquery.dataViewer", TRAIN)
    d = decide(TRAIN, DATASET, "bigquery.tables.getData", load_snapshot(data), now=NOW)
    assert d.granted and d.evidence[0].node == ancestor
    # a grant on a descendant never flows up
    assert decide(TRAIN, ORG, "bigquery.tables.getData", world(), now=NOW).state == "not_granted"


def test_grant_on_child_does_not_flow_up() -> None:
    data = grant(world_dict(), DATASET, "roles/bigquery.dataViewer", TRAIN)
    assert decide(
        TRAIN, PROJECT, "bigquery.tables.getData", load_snapshot(data), now=NOW
    ).state == ("not_granted")


@pytest.mark.parametrize(
    "role", ["organizations/100/roles/ztBucketGetter", "roles/storage.legacyBucketReader"]
)
def test_custom_and_predefined_roles_expand(role: str) -> None:
    data = grant(world_dict(), FEATURES, role, TRAIN)
    d = decide(TRAIN, FEATURES, "storage.buckets.get", load_snapshot(data), now=NOW)
    assert d.granted and d.evidence[0].role == role


def test_project_custom_role_expands() -> None:
    data = grant(world_dict(), RAW, "projects/ml-prod/roles/featureReader", TRAIN)
    d = decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.granted and d.evidence[0].role == "projects/ml-prod/roles/featureReader"


def test_unknown_role_is_unverifiable_never_granted() -> None:
    data = grant(world_dict(), RAW, "projects/ml-prod/roles/mystery", TRAIN)
    d = decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable"
    assert "mystery" in d.reasons[0]


def test_deleted_role_grants_nothing() -> None:
    data = grant(world_dict(), RAW, "projects/ml-prod/roles/featureReader", TRAIN)
    data["roles"][-1]["deleted"] = True
    assert decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW).state == (
        "not_granted"
    )


@pytest.mark.parametrize(
    ("member", "state"),
    [
        ("allUsers", "granted"),
        ("allAuthenticatedUsers", "granted"),
        ("domain:example.com", "not_granted"),  # domains hold users, not service accounts
        ("group:ml-team@example.com", "not_granted"),  # known membership, SA not in it
        ("group:unknown@example.com", "unverifiable"),  # membership unknown
        (f"deleted:serviceAccount:{TRAIN_SA}?uid=123", "not_granted"),
        ("principalSet://iam.googleapis.com/locations/global/workforcePools/p/*", "not_granted"),
        ("projectEditor:ml-prod", "not_granted"),
    ],
)
def test_member_kinds_for_a_service_account(member: str, state: str) -> None:
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", member)
    assert decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW).state == state


def test_group_membership_transitive_with_evidence() -> None:
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", "group:ml-team@example.com")
    d = decide("user:bob@example.com", RAW, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.granted
    assert d.evidence[0].member == "group:ml-team@example.com"
    assert "ml-team" in d.evidence[0].detail


def test_group_with_unknown_nested_group_is_unverifiable() -> None:
    data = world_dict()
    data["groups"]["ml-team@example.com"].append("group:outsiders@example.com")
    grant(data, RAW, "roles/storage.objectViewer", "group:ml-team@example.com")
    d = decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable" and "outsiders" in d.reasons[0]


def test_domain_member_covers_users_of_that_domain() -> None:
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", "domain:example.com")
    assert decide(ALICE, RAW, "storage.objects.get", load_snapshot(data), now=NOW).granted


def test_convenience_member_resolves_through_project_basic_role() -> None:
    data = grant(world_dict(), PROJECT, "roles/viewer", TRAIN)
    data["roles"].append({"name": "roles/viewer", "permissions": ["storage.buckets.list"]})
    grant(data, RAW, "roles/storage.objectViewer", "projectViewer:ml-prod")
    d = decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.granted and d.evidence[0].member == "projectViewer:ml-prod"


# -- conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "state"),
    [
        ('request.time < timestamp("2027-01-01T00:00:00Z")', "granted"),
        ('request.time < timestamp("2026-01-01T00:00:00Z")', "not_granted"),  # expired
        ('resource.name.startsWith("projects/_/buckets/zt-raw-data/objects/in/")', "granted"),
        (
            'resource.name.startsWith("projects/_/buckets/zt-raw-data/objects/other/")',
            "not_granted",
        ),
        (
            'resource.name.startsWith("projects/_/buckets/zt-raw-data/objects/in/2024/")',
            "not_granted",
        ),
        ('resource.type == "storage.googleapis.com/Object"', "granted"),
        ('resource.service == "storage.googleapis.com"', "granted"),
        ('resource.name.endsWith(".csv")', "not_granted"),
        ('!resource.name.endsWith(".tmp")', "unverifiable"),  # depends on the object name
        ('resource.matchTag("100/env", "prod")', "unverifiable"),
        ('request.host == "example.com"', "unverifiable"),
        ('request.time.getHours("Europe/Berlin") < 24', "unverifiable"),  # when will it run?
        ('api.getAttribute("iam.googleapis.com/modifiedGrantsByRole", []) == []', "unverifiable"),
    ],
)
def test_conditions_on_an_object_prefix(expression: str, state: str) -> None:
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", TRAIN, condition=expression)
    ref = normalize_resource("gs://zt-raw-data/in/")
    d = decide(TRAIN, ref, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == state, d
    if state == "granted":
        assert d.evidence[0].condition == expression


def test_object_list_is_checked_on_the_bucket_name() -> None:
    # the classic trap: a prefix condition never matches storage.objects.list (bucket-level)
    cond = 'resource.name.startsWith("projects/_/buckets/zt-raw-data/objects/in/")'
    data = grant(world_dict(), RAW, "roles/storage.objectViewer", TRAIN, condition=cond)
    snap = load_snapshot(data)
    ref = normalize_resource("gs://zt-raw-data/in/")
    assert decide(TRAIN, ref, "storage.objects.get", snap, now=NOW).granted
    assert decide(TRAIN, ref, "storage.objects.list", snap, now=NOW).state == "not_granted"
    cond2 = cond + ' || resource.name == "projects/_/buckets/zt-raw-data"'
    data2 = grant(world_dict(), RAW, "roles/storage.objectViewer", TRAIN, condition=cond2)
    assert decide(TRAIN, ref, "storage.objects.list", load_snapshot(data2), now=NOW).granted


def test_exact_object_name_decides_name_dependent_conditions() -> None:
    data = grant(
        world_dict(),
        RAW,
        "roles/storage.objectViewer",
        TRAIN,
        condition='resource.name.endsWith(".csv")',
    )
    snap = load_snapshot(data)
    assert decide(TRAIN, RAW, "storage.objects.get", snap, now=NOW, object_name="a.csv").granted
    assert decide(TRAIN, RAW, "storage.objects.get", snap, now=NOW, object_name="a.bin").state == (
        "not_granted"
    )


def test_unconditional_grant_wins_over_undecidable_condition() -> None:
    data = grant(
        world_dict(),
        FEATURES,
        "roles/storage.objectViewer",
        TRAIN,
        condition='resource.matchTag("1/x", "y")',
    )
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.granted and d.evidence[0].condition == ""


# -- deny ------------------------------------------------------------------------------------


def test_deny_before_allow_with_rule_evidence() -> None:
    data = deny(world_dict(), PROJECT, [v2_sa(TRAIN_SA)], ["storage.googleapis.com/objects.get"])
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "denied"
    (ev,) = d.evidence
    assert ev.kind == "deny" and ev.deny_policy == "deny-0" and ev.node == PROJECT
    assert ev.member == v2_sa(TRAIN_SA)


@pytest.mark.parametrize(
    "perm",
    [
        "storage.googleapis.com/objects.*",
        "storage.googleapis.com/*",
        "*",
        "storage.googleapis.com/*.get",
    ],
)
def test_deny_permission_wildcards(perm: str) -> None:
    data = deny(world_dict(), ORG, ["principalSet://goog/public:all"], [perm])
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).state == (
        "denied"
    )


def test_every_catalogue_permission_is_matched_by_its_deny_forms() -> None:
    """A deny rule names a permission as SERVICE_FQDN/RESOURCE.VERB (exactly, RESOURCE.* or
    *.VERB); some catalogue permissions are named in that form already and must match too."""
    from zt_pipelines.policy.deny import permission_matches, to_v2
    from zt_pipelines.policy.role_catalogue import predefined_roles

    permissions = {p for role in predefined_roles().values() for p in role.permissions}
    assert any("/" in p for p in permissions)  # the v2-named ones this guards
    for permission in permissions:
        v2 = to_v2(permission)
        service, _, rest = v2.partition("/")
        resource, _, verb = rest.rpartition(".")
        for form in (v2, f"{service}/{resource}.*", f"{service}/*.{verb}", f"{service}/*"):
            assert permission_matches(form, permission), (form, permission)


def test_a_deny_on_a_permission_named_in_v2_form_denies_it() -> None:
    perm = "iam.googleapis.com/workloadIdentityPoolProviders.create"
    data = world_dict()
    role = {"name": "projects/ml-prod/roles/wif", "title": "w", "permissions": [perm]}
    data["roles"].append(role)
    grant(data, PROJECT, "projects/ml-prod/roles/wif", TRAIN)
    assert decide(TRAIN, PROJECT, perm, load_snapshot(data), now=NOW).granted
    rule = ["iam.googleapis.com/workloadIdentityPoolProviders.*"]
    deny(data, PROJECT, ["principalSet://goog/public:all"], rule)
    assert decide(TRAIN, PROJECT, perm, load_snapshot(data), now=NOW).state == "denied"
    data["denyPolicies"][0]["rules"][0]["exceptionPermissions"] = [perm]  # lifts it again
    assert decide(TRAIN, PROJECT, perm, load_snapshot(data), now=NOW).granted


def test_deny_on_another_project_does_not_apply() -> None:
    data = deny(
        world_dict(),
        "//cloudresourcemanager.googleapis.com/projects/other-proj",
        [v2_sa(TRAIN_SA)],
        ["storage.googleapis.com/objects.get"],
    )
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).granted


def test_deny_exception_principal_and_permission() -> None:
    data = deny(
        world_dict(),
        PROJECT,
        ["principalSet://goog/public:all"],
        ["storage.googleapis.com/objects.get"],
        exceptionPrincipals=[v2_sa(TRAIN_SA)],
    )
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).granted
    data = deny(
        world_dict(),
        PROJECT,
        ["principalSet://goog/public:all"],
        ["storage.googleapis.com/objects.*"],
        exceptionPermissions=["storage.googleapis.com/objects.get"],
    )
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).granted


def test_deny_via_group_and_unknown_group() -> None:
    data = world_dict()
    data["groups"]["ml-team@example.com"].append(f"serviceAccount:{TRAIN_SA}")
    deny(
        data,
        PROJECT,
        ["principalSet://goog/group/ml-team@example.com"],
        ["storage.googleapis.com/objects.get"],
    )
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).state == (
        "denied"
    )
    data = deny(
        world_dict(),
        PROJECT,
        ["principalSet://goog/group/secret@example.com"],
        ["storage.googleapis.com/objects.get"],
    )
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable" and "secret@example.com" in d.reasons[0]


def test_deny_project_service_account_set() -> None:
    data = deny(
        world_dict(),
        ORG,
        [
            "principalSet://cloudresourcemanager.googleapis.com/projects/123456789012/type/"
            "ServiceAccount"
        ],
        ["storage.googleapis.com/objects.get"],
    )
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).state == (
        "denied"
    )


@pytest.mark.parametrize(
    ("expression", "state"),
    [
        ('resource.type == "storage.googleapis.com/Object"', "denied"),
        ('resource.type == "storage.googleapis.com/Bucket"', "granted"),
        ('resource.matchTag("100/env", "prod")', "unverifiable"),
        # false for the probe names, yet true for some object under the prefix: may apply
        ('resource.name.endsWith(".csv")', "unverifiable"),
    ],
)
def test_deny_conditions(expression: str, state: str) -> None:
    data = deny(
        world_dict(),
        PROJECT,
        [v2_sa(TRAIN_SA)],
        ["storage.googleapis.com/objects.get"],
        denialCondition={"expression": expression},
    )
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).state == (
        state
    )


def test_deny_never_turns_not_granted_into_granted() -> None:
    data = deny(
        world_dict(),
        PROJECT,
        [v2_sa(TRAIN_SA)],
        ["storage.googleapis.com/objects.get"],
        exceptionPrincipals=[v2_sa(TRAIN_SA)],
    )
    assert decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW).state == (
        "not_granted"
    )


# -- what the snapshot does not know ---------------------------------------------------------


def test_unreadable_policy_on_ancestor_makes_missing_grant_unverifiable() -> None:
    data = world_dict()
    data["unreadable"] = [{"target": FOLDER, "what": "getIamPolicy", "reason": "PERMISSION_DENIED"}]
    d = decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable" and "PERMISSION_DENIED" in d.reasons[0]
    # a grant found elsewhere still stands: an unreadable allow policy only adds grants
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).granted


def test_unreadable_deny_policies_make_grants_unverifiable() -> None:
    data = world_dict()
    data["unreadable"] = [{"target": ORG, "what": "listPolicies(deny)", "reason": "timeout"}]
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable"
    assert any(e.kind == "unreadable" for e in d.evidence)


def test_unknown_ancestry_is_unverifiable() -> None:
    data = world_dict()
    del node(data, FOLDER)["parent"]
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable" and "ancestry" in d.reasons[0]


def test_project_outside_any_organisation_is_a_root() -> None:
    data = world_dict()
    node(data, FOLDER)["parent"] = ""
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).granted


def test_resource_missing_from_snapshot_is_unverifiable() -> None:
    d = decide(TRAIN, "//storage.googleapis.com/nope", "storage.objects.get", world(), now=NOW)
    assert d.state == "unverifiable" and d.evidence[0].kind == "missing"


def test_evaluator_answers_repeatedly_and_consistently() -> None:
    ev = Evaluator(world())
    first = ev.decide(
        f"serviceAccount:{PIPELINE_SA}", sa_node(INGEST_SA), "iam.serviceAccounts.actAs", now=NOW
    )
    again = ev.decide(
        f"serviceAccount:{PIPELINE_SA}", sa_node(INGEST_SA), "iam.serviceAccounts.actAs", now=NOW
    )
    assert first == again and first.granted
    assert ev.decide(ALICE, ResourceRef(PROJECT), "aiplatform.pipelineJobs.create", now=NOW).granted


def test_failed_metadata_read_hides_the_ancestry() -> None:
    data = world_dict()
    data["unreadable"] = [{"target": PROJECT, "what": "projects.get", "reason": "UNAVAILABLE"}]
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable" and "projects.get" in d.reasons[0]


def test_unknown_unreadable_what_hides_everything() -> None:
    # a read the engine does not know the meaning of could have hidden a deny or the ancestry
    data = world_dict()
    data["unreadable"] = [{"target": PROJECT, "what": "mystery.read", "reason": "UNAVAILABLE"}]
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == "unverifiable" and any("mystery.read" in r for r in d.reasons)
    # a known read that hides nothing on the chain leaves the grant standing
    data["unreadable"] = [{"target": PROJECT, "what": "roles.list", "reason": "UNAVAILABLE"}]
    assert decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW).granted


def test_disabled_custom_role_grants_nothing() -> None:
    data = grant(world_dict(), RAW, "projects/ml-prod/roles/featureReader", TRAIN)
    data["roles"][-1]["stage"] = "DISABLED"
    assert decide(TRAIN, RAW, "storage.objects.get", load_snapshot(data), now=NOW).state == (
        "not_granted"
    )


@pytest.mark.parametrize(
    ("principal", "state"),
    [
        # train-sa's unique id is 1003 in the test world
        ("principal://iam.googleapis.com/projects/-/serviceAccounts/1003", "denied"),
        ("principal://iam.googleapis.com/projects/-/serviceAccounts/9999", "granted"),
        # an identifier form the engine does not know could name the SA: the deny may apply
        ("principalSet://goog/somethingNew/x", "unverifiable"),
        # federated pools never hold a service account
        (
            "principalSet://iam.googleapis.com/locations/global/workforcePools/p/*",
            "granted",
        ),
        (
            "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s",
            "granted",
        ),
    ],
)
def test_deny_principal_forms_not_understood_are_not_ignored(principal: str, state: str) -> None:
    data = deny(world_dict(), PROJECT, [principal], ["storage.googleapis.com/objects.get"])
    d = decide(TRAIN, FEATURES, "storage.objects.get", load_snapshot(data), now=NOW)
    assert d.state == state, d


def test_a_looping_hierarchy_is_unverifiable() -> None:
    # files with a cycle are refused on load; a live snapshot is built in code and may loop
    from dataclasses import replace

    snap = world()
    nodes = dict(snap.nodes)
    nodes[ORG] = replace(nodes[ORG], parent=FOLDER)
    d = decide(TRAIN, FEATURES, "storage.objects.get", replace(snap, nodes=nodes), now=NOW)
    assert d.state == "unverifiable" and "loops" in d.reasons[0]
    assert decide(TRAIN, FEATURES, "storage.objects.get", snap, now=NOW).granted


@pytest.mark.parametrize(
    ("role", "granted"),
    [
        ("projects/other-proj/roles/reader", False),  # another project's custom role
        ("organizations/999/roles/reader", False),  # another organisation's
        ("projects/ml-prod/roles/reader", True),  # the bucket's own project
        ("organizations/100/roles/reader", True),  # the organisation above it
    ],
)
def test_a_custom_role_grants_only_inside_its_own_project_or_organisation(
    role: str, granted: bool
) -> None:
    """IAM refuses to bind a custom role outside its project / organisation, so a snapshot
    holding such a binding (hand-made or forged) must not prove a grant (red-team rt09)."""
    from policy_worlds import FEATURES, NOW, TRAIN_SA, grant, node, world_dict

    from zt_pipelines.policy.engine import decide
    from zt_pipelines.policy.snapshot_file import load_snapshot

    data = world_dict()
    node(data, FEATURES)["policy"]["bindings"] = []
    data["roles"].append({"name": role, "title": "r", "permissions": ["storage.objects.get"]})
    grant(data, FEATURES, role, f"serviceAccount:{TRAIN_SA}")
    state = decide(
        f"serviceAccount:{TRAIN_SA}", FEATURES, "storage.objects.get", load_snapshot(data), now=NOW
    ).state
    assert (state == "granted") is granted, state
