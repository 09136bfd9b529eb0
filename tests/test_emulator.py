"""The emulator against the REAL Google clients: lifecycle, IAM admin, Resource Manager, deny
policies, Cloud Asset, Policy Troubleshooter, and IAM enforcement on callers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import asset_v1, iam_admin_v1, iam_v2, policytroubleshooter_v1, resourcemanager_v3
from google.cloud.asset_v1.services.asset_service.transports import AssetServiceGrpcTransport
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
from google.cloud.iam_v2.services.policies.transports import PoliciesGrpcTransport
from google.cloud.policytroubleshooter_v1.services.iam_checker.transports import (
    IamCheckerGrpcTransport,
)
from google.cloud.resourcemanager_v3.services.folders.transports import FoldersGrpcTransport
from google.cloud.resourcemanager_v3.services.organizations.transports import (
    OrganizationsGrpcTransport,
)
from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport
from google.iam.v1 import iam_policy_pb2
from test_emulator_world import (
    ADMIN,
    BUCKET,
    DATASET,
    NO_ACT_AS,
    ORG,
    PIPELINE_SA,
    PROJECT,
    PROJECT_NUMBER,
    STEP_SA,
    SUBMITTER,
    world,
)

from zt_pipelines.emulator import Emulator, emulator_channel, emulator_credentials


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    with Emulator(world(extra_sas=25)) as running:
        yield running


def channel(emu: Emulator, member: str | None = ADMIN) -> grpc.Channel:
    creds = emulator_credentials(member) if member else None
    return emulator_channel(emu.address, creds)


def iam(emu: Emulator, member: str | None = ADMIN) -> iam_admin_v1.IAMClient:
    return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel(emu, member)))


def projects(emu: Emulator, member: str | None = ADMIN) -> resourcemanager_v3.ProjectsClient:
    transport = ProjectsGrpcTransport(channel=channel(emu, member))
    return resourcemanager_v3.ProjectsClient(transport=transport)


def _our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("zt-emulator")]


# -- lifecycle ---------------------------------------------------------------------------------


def test_binds_loopback_and_stops_cleanly() -> None:
    emu = Emulator(world()).start()
    host, port = emu.address.rsplit(":", 1)
    assert host == "127.0.0.1"
    client = iam(emu)
    client.get_service_account(name=f"projects/-/serviceAccounts/{PIPELINE_SA}")
    session = requests.Session()  # a kept-alive HTTP/1.1 connection the stop must close
    session.get(f"http://{emu.address}/storage/v1/b/zt-root-bucket", timeout=5)
    assert _our_threads()
    emu.stop()
    session.close()
    assert _our_threads() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    # the port is free again: a new emulator can take it
    with Emulator(world(), port=int(port)) as again:
        assert again.address == emu.address


def test_one_port_serves_grpc_and_http(emu: Emulator) -> None:
    sa = iam(emu).get_service_account(name=f"projects/-/serviceAccounts/{PIPELINE_SA}")
    assert sa.email == PIPELINE_SA
    reply = requests.get(
        f"http://{emu.address}/storage/v1/b/zt-root-bucket",
        headers={"Authorization": "Bearer " + emulator_credentials(ADMIN).token},
        timeout=5,
    )
    assert reply.json()["projectNumber"] == PROJECT_NUMBER
    assert emu.counts() == {
        "google.iam.admin.v1.IAM/GetServiceAccount": 1,
        "storage.buckets.get": 1,
    }


def test_a_request_whose_first_bytes_arrive_one_by_one(emu: Emulator) -> None:
    request = b"PUT /storage/v1/b/zt-root-bucket/iam HTTP/1.1\r\nHost: x\r\n"
    request += b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    host, port = emu.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        for byte in request[:2]:  # "PU" could still become the HTTP/2 preface "PRI"
            raw.sendall(bytes([byte]))
            threading.Event().wait(0.05)
        raw.sendall(request[2:])
        reply = raw.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 401")
    assert emu.request_log[-1].method == "storage.buckets.setIamPolicy"


def test_state_is_a_copy_and_an_empty_world_refuses_everyone() -> None:
    with Emulator() as emu:
        emu.state.nodes.clear()
        assert emu.state.nodes == {}
        with pytest.raises(gexc.PermissionDenied):
            projects(emu).get_project(name="projects/proj-alpha")
    with Emulator(world()) as emu:
        emu.state.nodes.clear()  # must not empty the served world
        assert projects(emu).get_project(name="projects/proj-alpha").project_id == "proj-alpha"


# -- IAM admin -----------------------------------------------------------------------------------


def test_service_accounts_get_list_create(emu: Emulator) -> None:
    client = iam(emu)
    got = client.get_service_account(name=f"projects/proj-alpha/serviceAccounts/{STEP_SA}")
    assert (got.email, got.project_id, got.unique_id) == (STEP_SA, "proj-alpha", "2000")
    with pytest.raises(gexc.NotFound):
        client.get_service_account(
            name="projects/-/serviceAccounts/nope@proj-alpha.iam.gserviceaccount.com"
        )

    pager = client.list_service_accounts(
        request=iam_admin_v1.ListServiceAccountsRequest(name="projects/proj-alpha", page_size=10)
    )
    emails = [a.email for a in pager]
    assert len(emails) == 30 and len(set(emails)) == 30
    assert emu.counts()["google.iam.admin.v1.IAM/ListServiceAccounts"] == 3

    created = client.create_service_account(
        request=iam_admin_v1.CreateServiceAccountRequest(
            name="projects/proj-alpha",
            account_id="step-new",
            service_account=iam_admin_v1.ServiceAccount(display_name="new step"),
        )
    )
    assert created.email == "step-new@proj-alpha.iam.gserviceaccount.com"
    assert "step-new@proj-alpha.iam.gserviceaccount.com" in emu.state.service_accounts
    with pytest.raises(gexc.AlreadyExists):
        client.create_service_account(
            request=iam_admin_v1.CreateServiceAccountRequest(
                name="projects/proj-alpha", account_id="step-new"
            )
        )
    assert [r.method for r in emu.writes()] == [
        "google.iam.admin.v1.IAM/CreateServiceAccount",
        "google.iam.admin.v1.IAM/CreateServiceAccount",
    ]


def test_user_managed_keys(emu: Emulator) -> None:
    keys = iam(emu).list_service_account_keys(
        request=iam_admin_v1.ListServiceAccountKeysRequest(
            name=f"projects/-/serviceAccounts/{STEP_SA}",
            key_types=[iam_admin_v1.ListServiceAccountKeysRequest.KeyType.USER_MANAGED],
        )
    )
    assert [k.name.rsplit("/", 1)[1] for k in keys.keys] == ["k1"]
    none = iam(emu).list_service_account_keys(
        request=iam_admin_v1.ListServiceAccountKeysRequest(
            name=f"projects/-/serviceAccounts/{PIPELINE_SA}"
        )
    )
    assert list(none.keys) == []


def test_roles_get_list_create_update(emu: Emulator) -> None:
    client = iam(emu)
    role = client.get_role(request=iam_admin_v1.GetRoleRequest(name="roles/aiplatform.user"))
    assert "aiplatform.pipelineJobs.create" in role.included_permissions
    with pytest.raises(gexc.NotFound):
        client.get_role(request=iam_admin_v1.GetRoleRequest(name="roles/nope"))

    listed = client.list_roles(
        request=iam_admin_v1.ListRolesRequest(page_size=2, view=iam_admin_v1.RoleView.FULL)
    )
    names = [r.name for r in listed]
    assert names == sorted(n for n in world().roles if n.startswith("roles/"))
    assert emu.counts()["google.iam.admin.v1.IAM/ListRoles"] == 3

    created = client.create_role(
        request=iam_admin_v1.CreateRoleRequest(
            parent="projects/proj-alpha",
            role_id="ztStepTrain",
            role=iam_admin_v1.Role(title="step", included_permissions=["storage.objects.get"]),
        )
    )
    assert created.name == "projects/proj-alpha/roles/ztStepTrain"
    client.update_role(
        request=iam_admin_v1.UpdateRoleRequest(
            name=created.name,
            role=iam_admin_v1.Role(
                included_permissions=["storage.objects.get", "storage.objects.list"]
            ),
            update_mask={"paths": ["included_permissions"]},
        )
    )
    assert emu.state.roles[created.name].permissions == {
        "storage.objects.get",
        "storage.objects.list",
    }
    custom = client.list_roles(request=iam_admin_v1.ListRolesRequest(parent="projects/proj-alpha"))
    assert {r.name for r in custom} == {
        "projects/proj-alpha/roles/customReader",
        "projects/proj-alpha/roles/ztStepTrain",
    }


def test_service_account_policy_etag_conflict(emu: Emulator) -> None:
    client = iam(emu)
    resource = f"projects/-/serviceAccounts/{PIPELINE_SA}"
    policy = client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=resource))
    assert [(b.role, list(b.members)) for b in policy.bindings] == [
        ("roles/iam.serviceAccountUser", [SUBMITTER])
    ]
    policy.bindings.add(role="roles/iam.serviceAccountUser", members=[ADMIN])
    updated = client.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
    )
    assert updated.etag != policy.etag
    # a second writer with the old etag loses
    with pytest.raises(gexc.Aborted):
        client.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
        )
    node = emu.state.nodes[
        f"//iam.googleapis.com/projects/proj-alpha/serviceAccounts/{PIPELINE_SA}"
    ]
    assert node.policy is not None and len(node.policy.bindings) == 2


# -- Resource Manager ----------------------------------------------------------------------------


def test_projects_folders_organizations(emu: Emulator) -> None:
    client = projects(emu)
    by_id = client.get_project(name="projects/proj-alpha")
    by_number = client.get_project(name=f"projects/{PROJECT_NUMBER}")
    assert by_id.name == by_number.name == f"projects/{PROJECT_NUMBER}"
    assert (by_id.project_id, by_id.parent) == ("proj-alpha", "folders/2002")
    folders = resourcemanager_v3.FoldersClient(transport=FoldersGrpcTransport(channel=channel(emu)))
    assert folders.get_folder(name="folders/2002").parent == "organizations/1001"
    orgs = resourcemanager_v3.OrganizationsClient(
        transport=OrganizationsGrpcTransport(channel=channel(emu))
    )
    assert orgs.get_organization(name="organizations/1001").display_name == "example.com"
    org_policy = orgs.get_iam_policy(request={"resource": "organizations/1001"})
    assert [b.role for b in org_policy.bindings] == ["roles/zt.admin"]
    with pytest.raises(gexc.PermissionDenied):
        client.get_project(name="projects/no-such-project")


def test_project_policy_conditions_and_etag(emu: Emulator) -> None:
    client = projects(emu)
    # a version-1 reader sees IAM's "_withcond_" role names and no conditions
    old = client.get_iam_policy(request={"resource": "projects/proj-alpha"})
    assert old.version == 1
    assert not any(b.HasField("condition") for b in old.bindings)
    assert any(b.role.startswith("roles/storage.objectViewer_withcond_") for b in old.bindings)
    policy = client.get_iam_policy(
        request={"resource": "projects/proj-alpha", "options": {"requested_policy_version": 3}}
    )
    assert policy.version == 3
    conditional = [b for b in policy.bindings if b.HasField("condition")]
    assert conditional[0].condition.expression == "resource.name.startsWith('x')"
    with pytest.raises(gexc.InvalidArgument):
        client.get_iam_policy(
            request={"resource": "projects/proj-alpha", "options": {"requested_policy_version": 2}}
        )
    as_v1 = iam_policy_pb2.SetIamPolicyRequest(resource="projects/proj-alpha", policy=policy)
    as_v1.policy.version = 1
    with pytest.raises(gexc.InvalidArgument):  # conditions need version 3
        client.set_iam_policy(request=as_v1)
    stale = iam_policy_pb2.SetIamPolicyRequest(resource="projects/proj-alpha", policy=policy)
    stale.policy.etag = b"not-the-etag"
    with pytest.raises(gexc.Aborted):
        client.set_iam_policy(request=stale)
    fresh = iam_policy_pb2.SetIamPolicyRequest(resource="projects/proj-alpha", policy=policy)
    fresh.policy.bindings.add(role="roles/viewer", members=[ADMIN])
    client.set_iam_policy(request=fresh)
    project = emu.state.nodes["//cloudresourcemanager.googleapis.com/projects/proj-alpha"]
    assert project.policy is not None
    assert "roles/viewer" in {b.role for b in project.policy.bindings}


def test_test_iam_permissions_answers_for_the_caller(emu: Emulator) -> None:
    asked = ["aiplatform.pipelineJobs.create", "resourcemanager.projects.setIamPolicy"]
    reply = projects(emu, SUBMITTER).test_iam_permissions(
        request={"resource": "projects/proj-alpha", "permissions": asked}
    )
    assert list(reply.permissions) == ["aiplatform.pipelineJobs.create"]
    on_sa = iam(emu, NO_ACT_AS).test_iam_permissions(
        request={
            "resource": f"projects/-/serviceAccounts/{PIPELINE_SA}",
            "permissions": ["iam.serviceAccounts.actAs"],
        }
    )
    assert list(on_sa.permissions) == []


# -- IAM enforcement on callers ------------------------------------------------------------------


def test_missing_token_is_unauthenticated(emu: Emulator) -> None:
    with pytest.raises(gexc.Unauthenticated):
        projects(emu, member=None).get_iam_policy(request={"resource": "projects/proj-alpha"})
    assert emu.request_log[-1].status == "UNAUTHENTICATED"


def test_caller_without_permission_is_refused(emu: Emulator) -> None:
    with pytest.raises(gexc.PermissionDenied):
        projects(emu, NO_ACT_AS).get_iam_policy(request={"resource": "projects/proj-alpha"})
    record = emu.request_log[-1]
    assert (record.caller, record.status, record.write) == (NO_ACT_AS, "PERMISSION_DENIED", False)


def test_enforcement_can_be_switched_off() -> None:
    with Emulator(world(), enforce_iam=False) as emu:
        got = projects(emu, member=None).get_project(name="projects/proj-alpha")
        assert got.project_id == "proj-alpha"


# -- deny policies, Cloud Asset, Policy Troubleshooter -------------------------------------------


def test_deny_policies_by_url_encoded_attachment_point(emu: Emulator) -> None:
    client = iam_v2.PoliciesClient(transport=PoliciesGrpcTransport(channel=channel(emu)))
    parent = "policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fproj-alpha/denypolicies"
    found = list(client.list_policies(parent=parent))
    assert [p.name for p in found] == [parent + "/no-delete"]
    rule = found[0].rules[0].deny_rule
    assert list(rule.denied_permissions) == ["iam.googleapis.com/serviceAccounts.delete"]
    assert client.get_policy(name=parent + "/no-delete").kind == "DenyPolicy"
    by_number = parent.replace("proj-alpha", PROJECT_NUMBER)
    assert [p.name for p in client.list_policies(parent=by_number)] == [parent + "/no-delete"]
    empty = "policies/cloudresourcemanager.googleapis.com%2Ffolders%2F2002/denypolicies"
    assert list(client.list_policies(parent=empty)) == []


def test_search_all_iam_policies_paginates(emu: Emulator) -> None:
    client = asset_v1.AssetServiceClient(transport=AssetServiceGrpcTransport(channel=channel(emu)))
    pager = client.search_all_iam_policies(
        request=asset_v1.SearchAllIamPoliciesRequest(
            scope="organizations/1001", query=f"policy:{STEP_SA}", page_size=1
        )
    )
    results = list(pager)
    assert {r.resource for r in results} == {
        "//cloudresourcemanager.googleapis.com/projects/proj-alpha",
        "//bigquery.googleapis.com/projects/proj-alpha/datasets/features",
    }
    assert emu.counts()["google.cloud.asset.v1.AssetService/SearchAllIamPolicies"] == 2
    for result in results:
        assert result.project == f"projects/{PROJECT_NUMBER}"
        assert list(result.folders) == ["folders/2002"]
        assert result.organization == "organizations/1001"
        assert all(f"serviceAccount:{STEP_SA}" in b.members for b in result.policy.bindings)
    with pytest.raises(gexc.InvalidArgument):
        list(
            client.search_all_iam_policies(
                request={"scope": "organizations/1001", "query": "NOT policy:x"}
            )
        )


SA_NODE = f"//iam.googleapis.com/projects/proj-alpha/serviceAccounts/{PIPELINE_SA}"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # one query for many principals: Cloud Asset's OR groups
        (
            f"policy:({STEP_SA} OR {PIPELINE_SA})",
            {
                (PROJECT, "roles/storage.objectViewer"),
                (DATASET, "roles/bigquery.dataViewer"),
                (BUCKET, "roles/storage.objectViewer"),
            },
        ),
        # a word, not a substring: "ci-submit@..." must not match "xci-submit@..."
        ("policy:submit@proj-alpha.iam.gserviceaccount.com", set()),
        (
            "policy:ci-sub*",
            {
                (PROJECT, "roles/aiplatform.user"),
                (PROJECT, "roles/storage.legacyBucketReader"),
                (SA_NODE, "roles/iam.serviceAccountUser"),
            },
        ),
        ("roles:roles/zt.admin", {(ORG, "roles/zt.admin")}),
        (
            "policy.role.permissions:iam.serviceAccounts.actAs resource:serviceAccounts",
            {(SA_NODE, "roles/iam.serviceAccountUser")},
        ),
        (
            "memberTypes:serviceAccount AND resource=//storage.googleapis.com/zt-root-bucket",
            {(BUCKET, "roles/storage.objectViewer")},
        ),
    ],
)
def test_search_query_language(emu: Emulator, query: str, expected: set[tuple[str, str]]) -> None:
    client = asset_v1.AssetServiceClient(transport=AssetServiceGrpcTransport(channel=channel(emu)))
    results = client.search_all_iam_policies(
        request={"scope": "organizations/1001", "query": query}
    )
    found = {(r.resource, b.role) for r in results for b in r.policy.bindings}
    assert found == expected


def test_search_all_resources_lists_user_managed_keys(emu: Emulator) -> None:
    client = asset_v1.AssetServiceClient(transport=AssetServiceGrpcTransport(channel=channel(emu)))
    keys = list(
        client.search_all_resources(
            request={
                "scope": "folders/2002",
                "asset_types": ["iam.googleapis.com/ServiceAccountKey"],
                "page_size": 1,
            }
        )
    )
    assert [k.name.rsplit("/", 1)[1] for k in keys] == ["k1"]
    assert keys[0].parent_full_resource_name == SA_NODE.replace(PIPELINE_SA, STEP_SA)
    with pytest.raises(gexc.MethodNotImplemented):
        list(client.search_all_resources(request={"scope": "folders/2002", "query": "x"}))


def test_troubleshooter_is_answered_by_the_engine(emu: Emulator) -> None:
    client = policytroubleshooter_v1.IamCheckerClient(
        transport=IamCheckerGrpcTransport(channel=channel(emu))
    )

    def access(principal: str, resource: str, permission: str) -> object:
        reply = client.troubleshoot_iam_policy(
            request={
                "access_tuple": {
                    "principal": principal,
                    "full_resource_name": resource,
                    "permission": permission,
                }
            }
        )
        return reply.access

    project = "//cloudresourcemanager.googleapis.com/projects/proj-alpha"
    sa = f"//iam.googleapis.com/projects/proj-alpha/serviceAccounts/{PIPELINE_SA}"
    state = policytroubleshooter_v1.AccessState
    assert (
        access(SUBMITTER.split(":")[1], project, "aiplatform.pipelineJobs.create") == state.GRANTED
    )
    assert (
        access("ci-submit@proj-alpha.iam.gserviceaccount.com", sa, "iam.serviceAccounts.actAs")
        == state.GRANTED
    )
    assert (
        access("intern-dev@proj-alpha.iam.gserviceaccount.com", sa, "iam.serviceAccounts.actAs")
        == state.NOT_GRANTED
    )
