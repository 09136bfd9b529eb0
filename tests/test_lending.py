"""Identities Google services lend their callers (policy/lending.py): one table, read outward
by the reach graph (ZT216 / ZT224), inward by ZT220 (who can make the service act), and by
the live fetch; plus whoever can edit a custom role bound above an identity (ZT220)."""

from __future__ import annotations

from typing import Any

import pytest
from policy_worlds import FOLDER, ORG, PROJECT, RAW, TRAIN_SA, grant, sa_node, world_dict
from test_check_codes import run

from zt_pipelines.policy.catalogue import escalation_reason
from zt_pipelines.policy.lending import (
    LENDERS,
    lender_of,
    lent_accounts,
    lent_permissions,
    lent_reads_only,
)
from zt_pipelines.policy.reach import CODE_RUNNER_EDGES
from zt_pipelines.spec.gcpc import by_name

NUMBER = "123456789012"  # ml-prod's project number in the world
MALLORY = "user:mallory@example.com"
GAPI = f"serviceAccount:{NUMBER}@cloudservices.gserviceaccount.com"
VERTEX_AGENT = f"serviceAccount:service-{NUMBER}@gcp-sa-aiplatform.iam.gserviceaccount.com"
CONNECTION = f"serviceAccount:bqcx-{NUMBER}-k3xq@gcp-sa-bigquery-condel.iam.gserviceaccount.com"
CI = "ci-runner@ml-prod.iam.gserviceaccount.com"
DM_EDITOR = "roles/deploymentmanager.editor"
TRAIN_MEMBER = f"serviceAccount:{TRAIN_SA}"


def _with_account(data: dict[str, Any], email: str) -> dict[str, Any]:
    data["serviceAccounts"].append({"email": email, "projectId": "ml-prod", "uniqueId": "1077"})
    data["nodes"].append(
        {"name": sa_node(email), "kind": "serviceAccount", "parent": PROJECT, "policy": {}}
    )
    return data


# -- the table ---------------------------------------------------------------------------------


def test_every_lent_account_is_recognised_and_look_alikes_are_not() -> None:
    for email, lender in lent_accounts(NUMBER):
        assert lender_of(email) == (NUMBER, lender)
    assert lender_of(CONNECTION.partition(":")[2]) is not None
    for other in (
        f"service-{NUMBER}@gcp-sa-evil.iam.gserviceaccount.com",
        f"{NUMBER}@cloudservices.gserviceaccount.com.evil.com",
        f"bqcx-{NUMBER}-k3xq@gcp-sa-bigquery-condel.iam.gserviceaccount.com.x",
        "train-sa@ml-prod.iam.gserviceaccount.com",
    ):
        assert lender_of(other) is None, other
    # the code-running agents' view is derived from the one table
    assert set(CODE_RUNNER_EDGES) == {
        "gcp-sa-aiplatform-cc",
        "gcp-sa-aiplatform-re",
        "gcp-sa-dataform",
    }
    assert all(lender.source.startswith("https://cloud.google.com/") for lender in LENDERS)


# -- inward: who can make the service act (ZT220) -------------------------------------------


@pytest.mark.parametrize("where", [PROJECT, FOLDER, ORG])
def test_whoever_can_run_deployment_manager_can_become_the_identities(where: str) -> None:
    # red team #17: the Google APIs Service Agent is editor of the project by default and
    # Deployment Manager creates what a deployment declares (keys for train-sa) as it
    data = grant(world_dict(), PROJECT, "roles/editor", GAPI)
    grant(data, where, "roles/deploymentmanager.editor", MALLORY)
    report = run(data)
    found = [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    assert found and not report.allowed, str(report)
    assert TRAIN_SA in found[0].message and "Deployment Manager" in found[0].message
    assert found[0].evidence[0].role == "roles/deploymentmanager.editor"


def test_deployment_manager_users_are_nobody_when_the_agent_holds_nothing_there() -> None:
    # control: without the agent's grant above the identities there is nothing to lend
    data = grant(world_dict(), PROJECT, "roles/deploymentmanager.editor", MALLORY)
    assert not [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]


def test_deployment_manager_through_another_account_and_through_owners() -> None:
    # a CI account that may deploy is followed upstream: whoever can become it is ZT220;
    # an owner (a basic role) is named among the administrators, not refused for this
    data = _with_account(grant(world_dict(), PROJECT, "roles/editor", GAPI), CI)
    grant(data, PROJECT, "roles/deploymentmanager.editor", f"serviceAccount:{CI}")
    grant(data, sa_node(CI), "roles/iam.serviceAccountTokenCreator", MALLORY)
    grant(data, PROJECT, "roles/owner", "user:olivia@example.com")
    report = run(data)
    [f] = [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    assert CI in f.message and TRAIN_SA in f.message
    assert not [f for f in report.by_code("ZT220") if "olivia" in f.principal]
    assert [n for n in report.notes if "olivia" in n and n.startswith("administrators")]


def test_a_build_runs_as_the_default_accounts_so_its_creators_are_judged() -> None:
    # the Compute Engine default account, editor of the project, runs builds by default
    compute = f"{NUMBER}-compute@developer.gserviceaccount.com"
    data = grant(world_dict(), PROJECT, "roles/editor", f"serviceAccount:{compute}")
    grant(data, PROJECT, "roles/cloudbuild.builds.editor", MALLORY)
    [f] = [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]
    assert "a build without a service account" in f.message


# -- outward: what a step reaches through the lent identity (ZT216, ZT224) ------------------


def test_a_step_that_can_deploy_reaches_the_google_apis_agent() -> None:
    data = grant(world_dict(), PROJECT, "roles/editor", GAPI)
    grant(data, PROJECT, "roles/deploymentmanager.editor", TRAIN_MEMBER)
    report = run(data)
    found = [f for f in report.by_code("ZT216") if f.principal == TRAIN_MEMBER]
    assert found and "a Deployment Manager deployment" in found[0].message, str(report)


def _uploader(data: dict[str, Any]) -> dict[str, Any]:
    data["roles"].append(
        {
            "name": "projects/ml-prod/roles/uploader",
            "permissions": ["aiplatform.models.upload", "aiplatform.models.get"],
        }
    )
    return grant(data, PROJECT, "projects/ml-prod/roles/uploader", TRAIN_MEMBER)


def test_a_model_upload_reads_as_the_vertex_ai_service_agent() -> None:
    # red team #8: GCPC's upload names no service account; the agent's default role reads
    # every object of the project: only its reads are lent (a warning), never its tokens
    assert by_name("UploadModel").identity.kind == "lent"
    data = _uploader(grant(world_dict(), PROJECT, "roles/aiplatform.serviceAgent", VERTEX_AGENT))
    report = run(data)
    [f] = [f for f in report.by_code("ZT224") if f.principal == TRAIN_MEMBER]
    assert "storage.objects.get" in f.message and "a model upload" in f.message
    assert f.severity.value == "warning"
    assert not [f for f in report.by_code("ZT216") if VERTEX_AGENT[15:] in f.message]
    assert lent_permissions(VERTEX_AGENT[15:]) is not None


def test_the_agent_reading_only_what_the_step_reads_is_not_reported() -> None:
    # the agent's read of a bucket the step itself needs is nothing more
    data = grant(
        world_dict(),
        "//storage.googleapis.com/zt-features",
        "roles/storage.objectViewer",
        VERTEX_AGENT,
    )
    _uploader(data)
    assert not [f for f in run(data).by_code("ZT224") if f.principal == TRAIN_MEMBER]


def test_a_bigquery_connection_lends_its_service_account() -> None:
    # red team #18: unneeded connections.use is escalation-capable (ZT212); what the
    # connection's account reads beyond the step's needs is ZT224
    assert escalation_reason("bigquery.connections.use")
    data = grant(world_dict(), PROJECT, "roles/bigquery.connectionUser", TRAIN_MEMBER)
    grant(data, RAW, "roles/storage.objectViewer", CONNECTION)
    report = run(data)
    assert [f for f in report.by_code("ZT212") if f.principal == TRAIN_MEMBER]
    [f] = [f for f in report.by_code("ZT224") if f.principal == TRAIN_MEMBER]
    assert CONNECTION[15:] in f.message and "a BigQuery connection" in f.message
    # another project's connection is not lent by a grant on ml-prod
    other = CONNECTION.replace(NUMBER, "222222222222")
    data = grant(world_dict(), PROJECT, "roles/bigquery.connectionUser", TRAIN_MEMBER)
    grant(data, RAW, "roles/storage.objectViewer", other)
    assert not run(data).by_code("ZT224")


# -- whoever can edit a custom role bound above an identity (ZT220) -------------------------


def _viewerish(data: dict[str, Any], member: str, where: str = PROJECT) -> dict[str, Any]:
    data["roles"].append(
        {"name": "projects/ml-prod/roles/viewerish", "permissions": ["iam.serviceAccounts.get"]}
    )
    return grant(data, where, "projects/ml-prod/roles/viewerish", member)


@pytest.mark.parametrize("editor_at", [PROJECT, FOLDER, ORG])
def test_a_custom_role_editor_bound_to_it_can_become_the_identities(editor_at: str) -> None:
    # red team #22: mallory adds getAccessToken to her own harmless role
    data = grant(_viewerish(world_dict(), MALLORY), editor_at, "roles/iam.roleAdmin", MALLORY)
    report = run(data)
    [f] = [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    assert "projects/ml-prod/roles/viewerish" in f.message and TRAIN_SA in f.message
    assert "train" in (f.step or "") and not report.allowed


def test_a_custom_role_editor_through_a_group_and_one_not_bound() -> None:
    # bound through a nested group (bob is in ml-admins, in ml-team), or a group of unknown
    # membership (may be mallory: fail closed); carol's editor dave is bound to nothing
    data = _viewerish(world_dict(), "group:ml-team@example.com", sa_node(TRAIN_SA))
    grant(data, PROJECT, "roles/iam.roleAdmin", "user:bob@example.com")
    assert [f for f in run(data).by_code("ZT220") if "bob" in f.principal]
    data = _viewerish(world_dict(), "group:strangers@example.com")
    grant(data, PROJECT, "roles/iam.roleAdmin", MALLORY)
    assert [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]
    data = _viewerish(world_dict(), "user:carol@example.com")
    grant(data, PROJECT, "roles/iam.roleAdmin", "user:dave@example.com")
    report = run(data)
    assert not [f for f in report.by_code("ZT220") if "dave" in f.principal]
    assert [n for n in report.notes if "dave@example.com" in n and "viewerish" in n]


def test_custom_roles_held_only_by_the_pipelines_identities_name_nobody() -> None:
    # the world binds custom roles to the pipeline's own identities only
    data = grant(world_dict(), PROJECT, "roles/iam.roleAdmin", "user:bob@example.com")
    grant(data, PROJECT, "projects/ml-prod/roles/featureReader", TRAIN_MEMBER)
    report = run(data)
    assert not [n for n in report.notes if "bob@example.com" in n and "decide" in n]


# -- variants -----------------------------------------------------------------------------------


def test_another_projects_agent_is_driven_from_its_own_project() -> None:
    # other-proj's Google APIs agent is editor of ml-prod: whoever deploys in other-proj
    other = "serviceAccount:222222222222@cloudservices.gserviceaccount.com"
    data = grant(world_dict(), PROJECT, "roles/editor", other)
    grant(data, "//cloudresourcemanager.googleapis.com/projects/other-proj", DM_EDITOR, MALLORY)
    assert [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]


def test_an_agent_of_a_project_outside_the_state_fails_closed() -> None:
    stranger = "serviceAccount:999999999999@cloudservices.gserviceaccount.com"
    report = run(grant(world_dict(), PROJECT, "roles/editor", stranger))
    [f] = [f for f in report.by_code("ZT220") if f.principal == stranger]
    assert "not known" in f.message and "999999999999" in f.message
    # a code-running agent's own token grant is ZT220 already: reported once, not twice
    cc = "serviceAccount:service-999999999999@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    data = grant(world_dict(), sa_node(TRAIN_SA), "roles/iam.serviceAccountTokenCreator", cc)
    assert len([f for f in run(data).by_code("ZT220") if f.principal == cc]) == 1


def test_a_conditional_or_custom_deploy_grant_still_drives_the_agent() -> None:
    data = grant(world_dict(), PROJECT, "roles/editor", GAPI)
    data["roles"].append(
        {
            "name": "projects/ml-prod/roles/dmUpdate",
            "permissions": ["deploymentmanager.deployments.update"],
        }
    )
    grant(data, PROJECT, "projects/ml-prod/roles/dmUpdate", MALLORY)
    grant(
        data,
        PROJECT,
        DM_EDITOR,
        "user:eve@example.com",
        'request.time < timestamp("2027-01-01T00:00:00Z")',
    )
    report = run(data)
    assert [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    [f] = [f for f in report.by_code("ZT220") if "eve" in f.principal]
    assert "its condition holds now" in f.message


def test_an_org_custom_role_bound_on_the_folder_or_the_account() -> None:
    data = world_dict()
    data["roles"].append({"name": "organizations/100/roles/tiny", "permissions": ["iam.roles.get"]})
    grant(data, sa_node(TRAIN_SA), "organizations/100/roles/tiny", MALLORY)
    grant(data, ORG, "roles/iam.organizationRoleAdmin", MALLORY)
    [f] = [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]
    assert "organizations/100/roles/tiny" in f.message and TRAIN_SA in f.message
    # an editor of ml-prod's roles cannot change an organisation's role
    data = world_dict()
    data["roles"].append({"name": "organizations/100/roles/tiny", "permissions": ["iam.roles.get"]})
    grant(data, FOLDER, "organizations/100/roles/tiny", MALLORY)
    grant(data, PROJECT, "roles/iam.roleAdmin", MALLORY)
    assert not [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]


def test_a_part_lent_identity_lends_none_of_its_edges() -> None:
    # the Vertex AI Service Agent mints tokens for every account of the project (its default
    # role) and here holds Token Creator on an editor account: the uploader reaches neither
    editor = "editor-sa@ml-prod.iam.gserviceaccount.com"
    data = _uploader(_with_account(world_dict(), editor))
    grant(data, PROJECT, "roles/aiplatform.serviceAgent", VERTEX_AGENT)
    grant(data, sa_node(editor), "roles/iam.serviceAccountTokenCreator", VERTEX_AGENT)
    grant(data, PROJECT, "roles/editor", f"serviceAccount:{editor}")
    report = run(data)
    assert not [f for f in report.by_code("ZT216") if f.principal == TRAIN_MEMBER], str(report)
    assert [f for f in report.by_code("ZT224") if f.principal == TRAIN_MEMBER]


def test_deputy_agents_that_build_for_their_callers_are_not_drivers() -> None:
    # Cloud Run's and Cloud Functions' agents start builds for callers their service checked;
    # a look-alike of another "project" is judged like anyone
    compute = f"serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com"
    data = grant(world_dict(), PROJECT, "roles/editor", compute)
    for agent in (
        f"serviceAccount:service-{NUMBER}@serverless-robot-prod.iam.gserviceaccount.com",
        f"serviceAccount:service-{NUMBER}@gcf-admin-robot.iam.gserviceaccount.com",
        f"serviceAccount:service-{NUMBER}@gcp-sa-evil.iam.gserviceaccount.com",
    ):
        grant(data, PROJECT, "roles/cloudbuild.builds.editor", agent)
    found = {f.principal for f in run(data).by_code("ZT220")}
    assert f"serviceAccount:service-{NUMBER}@gcp-sa-evil.iam.gserviceaccount.com" in found
    assert not {p for p in found if "robot" in p}, found


@pytest.mark.parametrize("approval", [False, True])
def test_eligibility_for_deploying_drives_the_agent_too(approval: bool) -> None:
    # a PAM entitlement without approval is a grant whenever asked (with one: ZT222)
    data = grant(world_dict(), PROJECT, "roles/editor", GAPI)
    data["entitlements"] = [
        {
            "name": "projects/ml-prod/locations/global/entitlements/deployers",
            "eligible": [MALLORY],
            "roles": [{"role": DM_EDITOR}],
            "approvalRequired": approval,
        }
    ]
    report = run(data)
    found = [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    assert bool(found) is not approval
    if found:
        assert "entitlements/deployers" in found[0].message
    # behind an approval: a warning, as for an entitlement to impersonate (ZT222)
    gated = [f for f in report.by_code("ZT222") if f.principal == MALLORY]
    assert bool(gated) is approval, str(report)
    if gated:
        assert "once an approver grants it" in gated[0].message
        assert "entitlements/deployers" in gated[0].message and TRAIN_SA in gated[0].message


def test_a_lent_account_upstream_of_an_account_that_may_run_as_a_step() -> None:
    # ci-runner may run as train-sa; the Google APIs agent mints ci-runner's tokens; whoever
    # deploys can make it do so
    data = _with_account(world_dict(), CI)
    grant(data, sa_node(TRAIN_SA), "roles/iam.serviceAccountUser", f"serviceAccount:{CI}")
    grant(data, sa_node(CI), "roles/iam.serviceAccountTokenCreator", GAPI)
    grant(data, PROJECT, DM_EDITOR, MALLORY)
    report = run(data)
    [f] = [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    assert CI in f.message and TRAIN_SA in f.message and "cloudservices" in f.message
    # the agent's own allow policy is Google's: who can become it is who can deploy
    assert not [f for f in report.by_code("ZT220") if f.principal == GAPI]


# -- the table against the catalogue (red team round 6 iam_01, iam_03) --------------------------


def _catalogue_permissions() -> set[str]:
    from zt_pipelines.policy.role_catalogue import known_permissions

    return set(known_permissions())


def test_every_lending_permission_exists_and_every_vertex_workload_create_is_reviewed() -> None:
    import re

    from zt_pipelines.policy.lending import LENDING_PERMISSIONS, REVIEWED

    known = _catalogue_permissions()
    assert known >= LENDING_PERMISSIONS, LENDING_PERMISSIONS - known
    assert set(REVIEWED) <= known and not set(REVIEWED) & LENDING_PERMISSIONS
    # a new Vertex AI job, pipeline or workload resource must be looked at: does it run code
    # as an identity of Google's when none is named?
    workloads = {
        p
        for p in known
        if re.fullmatch(
            r"aiplatform\.(\w+Jobs|\w+Pipelines|persistentResources|reasoningEngines)\.create", p
        )
    }
    assert workloads - LENDING_PERMISSIONS - set(REVIEWED) == set()


@pytest.mark.parametrize(
    ("permission", "account"),
    [
        ("aiplatform.nasJobs.create", "service-{n}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"),
        (
            "aiplatform.persistentResources.create",
            "service-{n}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com",
        ),
        ("dataform.repositories.create", "service-{n}@gcp-sa-dataform.iam.gserviceaccount.com"),
        (
            "dataform.workflowInvocations.create",
            "service-{n}@gcp-sa-dataform.iam.gserviceaccount.com",
        ),
        ("cloudbuild.builds.create", "{n}@cloudbuild.gserviceaccount.com"),
    ],
)
def test_another_projects_lent_identity_is_reached(permission: str, account: str) -> None:
    # red team round 6: train-sa holds only the permission on other-proj, whose lent identity
    # may administer a bucket train-sa must not touch
    other = "//cloudresourcemanager.googleapis.com/projects/other-proj"
    agent = account.format(n="222222222222")
    data = world_dict()
    data["roles"].append({"name": "organizations/100/roles/runner", "permissions": [permission]})
    grant(data, other, "organizations/100/roles/runner", TRAIN_MEMBER)
    grant(data, RAW, "roles/storage.admin", f"serviceAccount:{agent}")
    report = run(data)
    assert [f for f in report.by_code("ZT216") if agent in f.message], str(report)
    assert not report.allowed


def test_a_pubsub_subscription_writes_as_the_pubsub_agent() -> None:
    # a BigQuery / Cloud Storage subscription without an account writes as the agent where
    # the caller says: what it can write beyond the step's needs is refused (ZT216), never
    # its other permissions
    agent = f"serviceAccount:service-{NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    data = world_dict()
    data["roles"].append(
        {
            "name": "projects/ml-prod/roles/subscriber",
            "permissions": ["pubsub.subscriptions.create"],
        }
    )
    grant(data, PROJECT, "projects/ml-prod/roles/subscriber", TRAIN_MEMBER)
    grant(data, RAW, "roles/storage.admin", agent)
    report = run(data)
    [f] = [f for f in report.by_code("ZT216") if f.principal == TRAIN_MEMBER]
    assert "storage.objects.create" in f.message and "setIamPolicy" not in f.message
    assert "a BigQuery or Cloud Storage subscription" in f.message and not report.allowed


def test_a_custom_role_editor_above_an_account_that_may_run_as_a_step() -> None:
    # ci-runner may run as train-sa; mallory, bound to a harmless custom role on ci-runner,
    # can edit it into Token Creator: she becomes ci-runner, then train-sa
    data = _with_account(world_dict(), CI)
    grant(data, sa_node(TRAIN_SA), "roles/iam.serviceAccountUser", f"serviceAccount:{CI}")
    _viewerish(data, MALLORY, sa_node(CI))
    grant(data, PROJECT, "roles/iam.roleAdmin", MALLORY)
    [f] = [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]
    assert TRAIN_SA in f.message and "viewerish" in f.message and CI in f.message


# -- function and Cloud Run source deploys build as the default build account ----------------

_COMPUTE = f"serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com"
_LEGACY_BUILD = f"serviceAccount:{NUMBER}@cloudbuild.gserviceaccount.com"


@pytest.mark.parametrize("where", [PROJECT, FOLDER, ORG])
@pytest.mark.parametrize(
    ("role", "label"),
    [
        ("roles/cloudfunctions.developer", "a function deploy"),
        ("roles/run.developer", "a Cloud Run source deploy"),
    ],
)
@pytest.mark.parametrize("build", [_COMPUTE, _LEGACY_BUILD])
def test_function_and_cloud_run_deployers_drive_the_default_build_account(
    where: str, role: str, label: str, build: str
) -> None:
    # red team round 6 iam_06: the service checks actAs on the runtime account only; the
    # build runs the deployer's source as the default build account (editor by default)
    data = grant(world_dict(), PROJECT, "roles/editor", build)
    grant(data, where, role, MALLORY)
    report = run(data)
    [f] = [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    assert label in f.message and TRAIN_SA in f.message, f.message
    assert not report.allowed


@pytest.mark.parametrize(
    "permissions",
    [["cloudfunctions.functions.update"], ["run.services.create"], ["run.services.update"]],
)
def test_one_deploy_permission_in_a_custom_role_drives_it(permissions: list[str]) -> None:
    data = grant(world_dict(), PROJECT, "roles/editor", _COMPUTE)
    data["roles"].append({"name": "organizations/100/roles/deployer", "permissions": permissions})
    grant(data, FOLDER, "organizations/100/roles/deployer", MALLORY)
    assert [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]


def test_uploading_function_source_alone_builds_nothing() -> None:
    # generateUploadUrl (sourceCodeSet) stores source; only a create / update builds it
    data = grant(world_dict(), PROJECT, "roles/editor", _COMPUTE)
    data["roles"].append(
        {
            "name": "organizations/100/roles/uploader",
            "permissions": ["cloudfunctions.functions.sourceCodeSet"],
        }
    )
    grant(data, PROJECT, "organizations/100/roles/uploader", MALLORY)
    assert not [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]


def test_a_step_that_can_deploy_a_function_reaches_the_build_account() -> None:
    data = grant(world_dict(), PROJECT, "roles/editor", _COMPUTE)
    grant(data, PROJECT, "roles/cloudfunctions.developer", TRAIN_MEMBER)
    report = run(data)
    found = [f for f in report.by_code("ZT216") if f.principal == TRAIN_MEMBER]
    assert found and "a function deploy (its build)" in found[0].message, str(report)
    assert _COMPUTE.partition(":")[2] in found[0].message and not report.allowed


# -- a conditional grant of a lending permission (red team round 6 iam_04) -----------------

_OTHER = "//cloudresourcemanager.googleapis.com/projects/other-proj"
_OTHER_NUMBER = "222222222222"
#: one permission of every lender, and the account it lends in other-proj
_LENDS = [
    (sorted(lender.permissions)[0], lender.email(_OTHER_NUMBER) or _CONNECTION_OTHER)
    for lender in LENDERS
    for _CONNECTION_OTHER in (
        f"bqcx-{_OTHER_NUMBER}-k3xq@gcp-sa-bigquery-condel.iam.gserviceaccount.com",
    )
]
_CONDITIONS = {
    "unconditional": None,
    # IAM's temporary-access pattern: true now and for the whole run
    "true": 'request.time < timestamp("2099-01-01T00:00:00Z")',
    # true only from two days after the check: inside the run's (default: 7 days) window
    "true during the run": 'request.time > timestamp("2026-11-27T00:00:00Z")',
    # an unmodelled attribute decides the whole condition: true for SOME request
    "true for some request": 'resource.type == "aiplatform.googleapis.com/CustomJob" || true',
    # a time-of-day accessor: not known before the request
    "unknown": 'request.time.getHours("Europe/Berlin") < 12',
    # expired before the check
    "false": 'request.time < timestamp("2026-01-01T00:00:00Z")',
    # starts after the run's window ends
    "false in the window": 'request.time > timestamp("2027-06-01T00:00:00Z")',
}


def _lending_world(permission: str, condition: str | None, member: str) -> dict[str, Any]:
    data = world_dict()
    data["roles"].append({"name": "organizations/100/roles/lender", "permissions": [permission]})
    return grant(data, _OTHER, "organizations/100/roles/lender", member, condition)


@pytest.mark.parametrize(("permission", "account"), _LENDS)
@pytest.mark.parametrize("case", sorted(_CONDITIONS))
def test_a_conditional_lending_grant_is_judged_outward(
    permission: str, account: str, case: str
) -> None:
    # train-sa may make other-proj's lent identity act; it administers a bucket train-sa must
    # not reach: an edge when the condition holds now or during the run, ZT217 when it may,
    # nothing when it cannot (reads-only lends are ZT224 warnings either way)
    data = _lending_world(permission, _CONDITIONS[case], TRAIN_MEMBER)
    grant(data, RAW, "roles/storage.admin", f"serviceAccount:{account}")
    report = run(data)
    named = [
        f
        for f in report.findings
        if f.principal == TRAIN_MEMBER and account in f.message and f.code.startswith("ZT21")
    ]
    named += [f for f in report.by_code("ZT224") if f.principal == TRAIN_MEMBER]
    reads_only = lent_reads_only(account)
    if case.startswith("false"):
        assert not named, str(report)
        return
    codes = {f.code for f in named}
    if reads_only:
        assert codes == {"ZT224"}, str(report)
    elif case == "unknown":
        assert codes == {"ZT217"} and not report.allowed, str(report)
        assert "a conditional grant" in named[0].message
    else:
        assert codes == {"ZT216"} and not report.allowed, str(report)


def test_an_unknown_lending_condition_to_a_harmless_identity_is_nothing() -> None:
    # the lent identity holds nothing beyond the step's needs: reaching it would not matter
    report = run(
        _lending_world("aiplatform.customJobs.create", _CONDITIONS["unknown"], TRAIN_MEMBER)
    )
    assert not [f for f in report.findings if "aiplatform-cc" in f.message], str(report)


def test_a_lending_grant_through_a_group_of_unknown_membership_may_reach() -> None:
    cc = f"service-{_OTHER_NUMBER}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    data = _lending_world("aiplatform.customJobs.create", None, "group:unlisted@example.com")
    grant(data, RAW, "roles/storage.admin", f"serviceAccount:{cc}")
    report = run(data)
    assert [
        f for f in report.by_code("ZT217") if f.principal == TRAIN_MEMBER and cc in f.message
    ], str(report)


@pytest.mark.parametrize("case", sorted(_CONDITIONS))
@pytest.mark.parametrize(
    ("role", "build"),
    [
        (DM_EDITOR, GAPI),
        (
            "roles/cloudbuild.builds.editor",
            f"serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com",
        ),
        (
            "roles/cloudfunctions.developer",
            f"serviceAccount:{NUMBER}@cloudbuild.gserviceaccount.com",
        ),
        (
            "roles/aiplatform.user",
            f"serviceAccount:service-{NUMBER}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com",
        ),
    ],
)
def test_a_conditional_lending_grant_is_judged_inward(case: str, role: str, build: str) -> None:
    # the lent identity is editor of ml-prod (it can become train-sa): mallory drives it when
    # her grant's condition holds now or during the run (or may), never when it cannot
    data = grant(world_dict(), PROJECT, "roles/editor", build)
    grant(data, FOLDER, role, MALLORY, _CONDITIONS[case])
    report = run(data)
    found = [f for f in report.by_code("ZT220") if f.principal == MALLORY]
    if case.startswith("false"):
        assert not found, str(report)
        return
    assert len(found) == 1 and TRAIN_SA in found[0].message and not report.allowed, str(report)
    if case == "unknown":
        assert "cannot be decided" in found[0].message
    elif case == "true during the run":
        assert "inside the run's window" in found[0].message


@pytest.mark.parametrize("where", [FOLDER, ORG])
@pytest.mark.parametrize("case", ["true", "unknown", "false"])
def test_a_conditional_lending_grant_above_the_project(where: str, case: str) -> None:
    # granted on the folder or organisation: every project below lends (ml-prod's Google
    # APIs agent is editor there)
    data = grant(world_dict(), PROJECT, "roles/editor", GAPI)
    grant(data, where, DM_EDITOR, TRAIN_MEMBER, _CONDITIONS[case])
    report = run(data)
    found = {
        f.code
        for f in report.findings
        if f.principal == TRAIN_MEMBER and GAPI.partition(":")[2] in f.message
    }
    assert found == {"true": {"ZT216"}, "unknown": {"ZT217"}, "false": set()}[case], str(report)


def test_a_project_without_its_number_lends_an_unattributed_account() -> None:
    # other-proj's number is not in the state: its Custom Code agent is not known by name, but
    # an agent of a project the state does not know holds storage.admin on raw data — it may
    # be other-proj's (ZT217); with none such named, nothing is invented
    cc = f"serviceAccount:service-{_OTHER_NUMBER}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    data = _lending_world("aiplatform.customJobs.create", None, TRAIN_MEMBER)
    for n in data["nodes"]:
        if n["name"] == _OTHER:
            n.pop("projectNumber")
    clean = run(data)
    assert not [f for f in clean.findings if "aiplatform-cc" in f.message], str(clean)
    grant(data, RAW, "roles/storage.admin", cc)
    report = run(data)
    [f] = [f for f in report.by_code("ZT217") if cc.partition(":")[2] in f.message]
    assert "the number of other-proj is not in the IAM state" in f.message
    assert f.principal == TRAIN_MEMBER and not report.allowed


@pytest.mark.parametrize(
    ("permission", "account"),
    [
        (sorted(lender.permissions)[0], lender.email(NUMBER))
        for lender in LENDERS
        if lender.lends is None and lender.email(NUMBER)
    ],
)
@pytest.mark.parametrize("case", ["unconditional", "true", "unknown", "false"])
def test_every_full_lender_judges_a_conditional_driver(
    permission: str, account: str, case: str
) -> None:
    # each identity lent in full is editor of ml-prod: mallory, holding one of its lending
    # permissions in a custom role on the folder, drives it — unless her grant cannot hold
    data = grant(world_dict(), PROJECT, "roles/editor", f"serviceAccount:{account}")
    data["roles"].append({"name": "organizations/100/roles/driver", "permissions": [permission]})
    grant(data, FOLDER, "organizations/100/roles/driver", MALLORY, _CONDITIONS[case])
    found = [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]
    assert bool(found) is (case != "false"), found
    if case == "unknown":
        assert "cannot be decided" in found[0].message


# -- a grant on the lending resource itself (red team round 7 iam_02) -----------------------

_RUN_SERVICE = "//run.googleapis.com/projects/ml-prod/locations/us-central1/services/svc"
_FUNCTION = "//cloudfunctions.googleapis.com/projects/ml-prod/locations/us-central1/functions/fn"
_REPOSITORY = "//dataform.googleapis.com/projects/ml-prod/locations/us-central1/repositories/repo"
_CONNECTION = "//bigqueryconnection.googleapis.com/projects/ml-prod/locations/us/connections/c1"
_DATAFORM = f"serviceAccount:service-{NUMBER}@gcp-sa-dataform.iam.gserviceaccount.com"


def _resource(data: dict[str, Any], name: str) -> dict[str, Any]:
    data["nodes"].append({"name": name, "kind": "other", "parent": PROJECT, "policy": {}})
    return data


@pytest.mark.parametrize(
    ("resource", "permission", "account", "code"),
    [
        (_RUN_SERVICE, "run.services.update", _COMPUTE, "ZT216"),
        (_FUNCTION, "cloudfunctions.functions.update", _COMPUTE, "ZT216"),
        (_REPOSITORY, "dataform.workflowInvocations.create", _DATAFORM, "ZT216"),
        (_CONNECTION, "bigquery.connections.use", CONNECTION, "ZT224"),
    ],
)
def test_a_lending_grant_on_the_resource_itself_lends(
    resource: str, permission: str, account: str, code: str
) -> None:
    data = _resource(world_dict(), resource)
    data["roles"].append({"name": "organizations/100/roles/lender", "permissions": [permission]})
    grant(data, resource, "organizations/100/roles/lender", TRAIN_MEMBER)
    grant(data, RAW, "roles/storage.admin", account)
    report = run(data)
    assert [
        f
        for f in report.by_code(code)
        if f.principal == TRAIN_MEMBER and account.partition(":")[2] in f.message
    ], str(report)


def test_only_what_applies_on_a_resource_lends_there() -> None:
    # a role with a build permission granted on a Cloud Run service, or on a bucket, builds
    # nothing (builds are created on the project)
    data = _resource(world_dict(), _RUN_SERVICE)
    grant(data, PROJECT, "roles/editor", _COMPUTE)
    data["roles"].append(
        {"name": "organizations/100/roles/builder", "permissions": ["cloudbuild.builds.create"]}
    )
    grant(data, _RUN_SERVICE, "organizations/100/roles/builder", TRAIN_MEMBER)
    grant(data, RAW, "organizations/100/roles/builder", TRAIN_MEMBER)
    report = run(data)
    assert not [f for f in report.findings if f.code == "ZT216" and "compute" in f.message]


def test_a_deployer_of_one_service_drives_the_build_account() -> None:
    data = _resource(grant(world_dict(), PROJECT, "roles/editor", _COMPUTE), _RUN_SERVICE)
    grant(data, _RUN_SERVICE, "roles/run.developer", MALLORY)
    [f] = [f for f in run(data).by_code("ZT220") if f.principal == MALLORY]
    assert "a Cloud Run source deploy" in f.message and TRAIN_SA in f.message


def test_a_storage_transfer_job_moves_data_as_the_transfer_agent() -> None:
    # red team round 7 iam_01: the agent, not the caller, needs access to both buckets
    agent = (
        f"serviceAccount:project-{_OTHER_NUMBER}@storage-transfer-service.iam.gserviceaccount.com"
    )
    data = _lending_world("storagetransfer.jobs.create", None, TRAIN_MEMBER)
    grant(data, RAW, "roles/storage.admin", agent)
    report = run(data)
    [f] = [f for f in report.by_code("ZT216") if agent.partition(":")[2] in f.message]
    assert "a Storage Transfer job" in f.message and "setIamPolicy" not in f.message
    assert lender_of(agent.partition(":")[2]) is not None and not report.allowed
