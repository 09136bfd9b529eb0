"""Live mode against the emulator: the real Google client libraries, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.errors import ApiError
from zt_pipelines.gcp import ClientFactory, build_adapters, fetch_snapshot, resolve_submitter
from zt_pipelines.gcp.cache import DiskCache
from zt_pipelines.gcp.interface import READ_PERMISSIONS
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Condition,
    DenyPolicy,
    DenyRule,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
)

CRM = "//cloudresourcemanager.googleapis.com/"
ORG = CRM + "organizations/111"
FOLDER = CRM + "folders/222"
PROJECT = CRM + "projects/proj-a1"
PROJECT_B = CRM + "projects/proj-b2"
BUCKET = "//storage.googleapis.com/feat-bucket"
DATASET = "//bigquery.googleapis.com/projects/proj-a1/datasets/features"
TABLE = DATASET + "/tables/rows"
TRAIN = "train-sa@proj-a1.iam.gserviceaccount.com"
PIPE = "pipeline-sa@proj-a1.iam.gserviceaccount.com"
READER = "reader-sa@proj-a1.iam.gserviceaccount.com"
SA_NODE = f"//iam.googleapis.com/projects/proj-a1/serviceAccounts/{TRAIN}"


def sa_member(email: str) -> str:
    """``serviceAccount:EMAIL``."""
    return f"serviceAccount:{email}"


def world(extra_accounts: int = 0) -> Snapshot:
    """A small org → folder → 2 projects world with a bucket, a dataset, a table and SAs."""
    accounts = {
        TRAIN: ServiceAccount(TRAIN, "proj-a1", user_managed_keys=("k1",)),
        PIPE: ServiceAccount(PIPE, "proj-a1"),
        READER: ServiceAccount(READER, "proj-a1"),
    }
    for i in range(extra_accounts):
        email = f"step-{i:03d}-sa@proj-a1.iam.gserviceaccount.com"
        accounts[email] = ServiceAccount(email, "proj-a1")
    cond = Condition("resource.name.startsWith('projects/_/buckets/feat-bucket/objects/x')", "x")
    nodes = {
        ORG: Node(
            ORG,
            "organization",
            policy=AllowPolicy((Binding("roles/zt.reader", (sa_member(READER),)),)),
        ),
        FOLDER: Node(FOLDER, "folder", parent=ORG, policy=AllowPolicy()),
        PROJECT: Node(
            PROJECT,
            "project",
            parent=FOLDER,
            project_number="123456789012",
            policy=AllowPolicy(
                (
                    Binding("roles/editor", (sa_member(TRAIN),)),
                    Binding("projects/proj-a1/roles/custom1", (sa_member(TRAIN),)),
                )
            ),
        ),
        PROJECT_B: Node(
            PROJECT_B,
            "project",
            parent=ORG,
            project_number="222222222222",
            policy=AllowPolicy((Binding("organizations/111/roles/orgrole", (sa_member(TRAIN),)),)),
        ),
        BUCKET: Node(
            BUCKET,
            "bucket",
            parent=PROJECT,
            policy=AllowPolicy(
                (
                    Binding("roles/storage.objectViewer", (sa_member(TRAIN),)),
                    Binding("roles/storage.objectCreator", (sa_member(TRAIN),), cond),
                ),
                version=3,
            ),
        ),
        DATASET: Node(
            DATASET,
            "dataset",
            parent=PROJECT,
            policy=AllowPolicy((Binding("roles/bigquery.dataViewer", (sa_member(TRAIN),)),)),
        ),
        TABLE: Node(
            TABLE,
            "table",
            parent=DATASET,
            policy=AllowPolicy((Binding("roles/bigquery.dataEditor", (sa_member(TRAIN),)),)),
        ),
        SA_NODE: Node(
            SA_NODE,
            "serviceAccount",
            parent=PROJECT,
            policy=AllowPolicy((Binding("roles/iam.serviceAccountUser", (sa_member(PIPE),)),)),
        ),
    }
    roles = {
        "roles/zt.reader": Role("roles/zt.reader", READ_PERMISSIONS),
        "roles/editor": Role("roles/editor", frozenset({"storage.objects.get", "iam.roles.get"})),
        "roles/storage.objectViewer": Role(
            "roles/storage.objectViewer", frozenset({"storage.objects.get", "storage.objects.list"})
        ),
        "roles/storage.objectCreator": Role(
            "roles/storage.objectCreator", frozenset({"storage.objects.create"})
        ),
        "roles/bigquery.dataViewer": Role(
            "roles/bigquery.dataViewer", frozenset({"bigquery.tables.getData"})
        ),
        "roles/bigquery.dataEditor": Role(
            "roles/bigquery.dataEditor", frozenset({"bigquery.tables.updateData"})
        ),
        "roles/iam.serviceAccountUser": Role(
            "roles/iam.serviceAccountUser", frozenset({"iam.serviceAccounts.actAs"})
        ),
        "projects/proj-a1/roles/custom1": Role(
            "projects/proj-a1/roles/custom1", frozenset({"bigquery.jobs.create"})
        ),
        "organizations/111/roles/orgrole": Role(
            "organizations/111/roles/orgrole", frozenset({"aiplatform.customJobs.create"})
        ),
    }
    deny = (
        DenyPolicy(
            "no-delete",
            ORG,
            (
                DenyRule(
                    ("principalSet://goog/public:all",), ("storage.googleapis.com/objects.delete",)
                ),
            ),
        ),
    )
    return Snapshot(nodes=nodes, roles=roles, deny_policies=deny, service_accounts=accounts)


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    """A running emulator over :func:`world`."""
    with Emulator(world()) as emu:
        yield emu


def fetch(emu: Emulator, tmp: Path | None = None, **kwargs: object) -> Snapshot:
    """``fetch_snapshot`` of the standard inputs, as READER, with zero-wait retries."""
    args: dict[str, object] = {
        "resources": [BUCKET, TABLE, PROJECT_B],
        "service_accounts": [TRAIN, PIPE],
        "projects": ["proj-a1"],
        "credentials": emulator_credentials(sa_member(READER)),
        "emulator_host": emu.address,
        "retry": no_wait_policy(),
        "use_cache": tmp is not None,
        "cache_dir": tmp,
    }
    args.update(kwargs)
    return fetch_snapshot(**args)  # type: ignore[arg-type]


def test_fetch_reads_the_whole_hierarchy_through_the_real_clients(emulator: Emulator) -> None:
    snap = fetch(emulator)
    assert snap.unreadable == ()
    assert [n.name for n in snap.ancestors(TABLE)] == [TABLE, DATASET, PROJECT, FOLDER, ORG]
    assert [n.name for n in snap.ancestors(BUCKET)] == [BUCKET, PROJECT, FOLDER, ORG]
    assert snap.nodes[PROJECT].project_number == "123456789012"
    bucket = snap.nodes[BUCKET].policy
    assert bucket is not None and bucket.version == 3
    conditional = [b for b in bucket.bindings if b.condition is not None]
    assert conditional[0].condition is not None
    assert conditional[0].condition.expression.startswith("resource.name.startsWith(")
    dataset = snap.nodes[DATASET].policy
    assert dataset is not None
    assert any(
        b.role == "roles/bigquery.dataViewer" and sa_member(TRAIN) in b.members
        for b in dataset.bindings
    )
    assert snap.nodes[TABLE].policy == world().nodes[TABLE].policy.__class__(
        bindings=snap.nodes[TABLE].policy.bindings,  # type: ignore[union-attr]
        etag=snap.nodes[TABLE].policy.etag,  # type: ignore[union-attr]
        version=snap.nodes[TABLE].policy.version,  # type: ignore[union-attr]
    )
    assert snap.nodes[SA_NODE].policy is not None
    assert snap.nodes[SA_NODE].policy.bindings[0].members == (sa_member(PIPE),)


def test_fetch_expands_predefined_and_custom_roles_and_deny(emulator: Emulator) -> None:
    snap = fetch(emulator)
    for role in (
        "roles/editor",
        "roles/storage.objectViewer",
        "projects/proj-a1/roles/custom1",
        "organizations/111/roles/orgrole",
    ):
        assert snap.roles[role].permissions == world().roles[role].permissions
    assert len(snap.deny_policies) == 1
    deny = snap.deny_policies[0]
    assert deny.attachment_point == ORG
    assert deny.rules[0].denied_permissions == ("storage.googleapis.com/objects.delete",)


def test_fetch_reads_service_accounts_keys_and_principal_search(emulator: Emulator) -> None:
    snap = fetch(emulator)
    assert set(snap.service_accounts) == {TRAIN, PIPE}
    assert snap.service_accounts[TRAIN].user_managed_keys
    assert snap.service_accounts[PIPE].user_managed_keys == ()
    assert snap.complete_bindings_for == {sa_member(TRAIN), sa_member(PIPE)}
    # the search found the grant on a project no resource named
    assert snap.nodes[PROJECT_B].policy is not None


def test_each_distinct_read_happens_once(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zt_pipelines.gcp import fetch as fetch_module

    asked: list[tuple[str, str]] = []
    queries: list[tuple[str, ...]] = []
    search = fetch_module.FetchPlan._principal_search

    def spy(self: Any, root: str, values: tuple[str, ...], splits: int = 0) -> None:
        asked.extend((root, v) for v in values)
        queries.append(values)
        search(self, root, values, splits)

    monkeypatch.setattr(fetch_module.FetchPlan, "_principal_search", spy)
    fetch(emulator)
    counts = emulator.counts()
    assert counts["google.cloud.resourcemanager.v3.Projects/GetProject"] == 2
    assert counts["google.cloud.resourcemanager.v3.Folders/GetFolder"] == 1
    assert counts["google.cloud.resourcemanager.v3.Organizations/GetIamPolicy"] == 1
    assert counts["google.iam.admin.v1.IAM/ListServiceAccounts"] == 1
    # the identities and the principal sets containing them go out in as few policy:(a OR b)
    # queries as the hierarchy's arrival order allows (sets as their chain lands: a race with
    # no latency here) — but never a value asked twice at a root
    assert len(asked) == len(set(asked))
    assert {v for _root, v in asked} >= {TRAIN, PIPE, "allUsers", "allAuthenticatedUsers"}
    assert counts["google.cloud.asset.v1.AssetService/SearchAllIamPolicies"] == len(queries)
    assert all(r.status == "OK" for r in emulator.request_log)
    assert not emulator.writes()


def test_missing_service_account_is_absent_not_unreadable(emulator: Emulator) -> None:
    ghost = "ghost-sa@proj-a1.iam.gserviceaccount.com"
    snap = fetch(emulator, service_accounts=[TRAIN, ghost])
    assert ghost not in snap.service_accounts
    assert not [u for u in snap.unreadable if ghost in u.target and "NOT_FOUND" in u.reason]


def test_caller_without_read_access_fails_closed(emulator: Emulator) -> None:
    snap = fetch(emulator, credentials=emulator_credentials(sa_member(TRAIN)))
    assert snap.unreadable
    assert any("PERMISSION_DENIED" in u.reason for u in snap.unreadable)
    # nothing unreadable became an empty policy
    unreadable_targets = {u.target for u in snap.unreadable}
    for name in unreadable_targets & set(snap.nodes):
        assert snap.nodes[name].policy is None or snap.nodes[name].policy != AllowPolicy()


def test_unsupported_resource_is_unreadable(emulator: Emulator) -> None:
    secret = "//secretmanager.googleapis.com/projects/proj-a1/secrets/token"
    snap = fetch(emulator, resources=[secret])
    assert any(u.target == secret for u in snap.unreadable)
    assert secret not in snap.nodes


def test_pagination_lists_every_service_account() -> None:
    with Emulator(world(extra_accounts=230)) as emu:
        factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emu.address)
        accounts = build_adapters(factory, no_wait_policy()).iam.list_service_accounts("proj-a1")
        assert len(accounts) == 233
        assert emu.counts()["google.iam.admin.v1.IAM/ListServiceAccounts"] == 3


def test_adapters_raise_api_error_with_code(emulator: Emulator) -> None:
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    adapters = build_adapters(factory, no_wait_policy())
    with pytest.raises(ApiError) as err:
        adapters.storage.get_bucket_policy("no-such-bucket")
    assert err.value.code == "NOT_FOUND" and not err.value.transient
    assert err.value.where == "//storage.googleapis.com/no-such-bucket"


def test_troubleshooter_adapter_answers_one_tuple(emulator: Emulator) -> None:
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    troubleshooter = build_adapters(factory, no_wait_policy()).troubleshooter
    assert troubleshooter is not None
    assert troubleshooter.troubleshoot(TRAIN, BUCKET, "storage.objects.list") == "GRANTED"
    assert troubleshooter.troubleshoot(TRAIN, BUCKET, "storage.buckets.delete") == "NOT_GRANTED"


def test_warm_cache_prefetches_and_skips_role_reads(emulator: Emulator, tmp_path: Path) -> None:
    cold = fetch(emulator, tmp_path)
    cold_roles = emulator.counts().get("google.iam.admin.v1.IAM/GetRole", 0)
    assert cold_roles >= 4
    emulator.clear_log()
    warm = fetch(emulator, tmp_path)
    assert emulator.counts().get("google.iam.admin.v1.IAM/GetRole", 0) == 0
    assert emulator.counts().get("google.iam.v2.Policies/GetPolicy", 0) == 0  # etag unchanged
    assert warm.nodes == cold.nodes and warm.roles == cold.roles
    assert warm.deny_policies == cold.deny_policies


def test_a_second_check_reuses_connections_and_rereads_every_policy(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Warm in one process: the clients are the first check's, but no policy, key list or
    account comes from the first check — a read that now fails is unreadable, never stale."""
    from zt_pipelines.gcp.clients import shared_factory

    creds = emulator_credentials(sa_member(READER))
    first = fetch(emulator, tmp_path, credentials=creds)
    cold = emulator.counts()
    factory = shared_factory(creds, emulator_host=emulator.address)
    assert shared_factory(creds, emulator_host=emulator.address) is factory
    assert (
        shared_factory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
        is not factory
    )
    emulator.clear_log()
    second = fetch(emulator, tmp_path, credentials=creds)
    assert second.nodes == first.nodes and not second.unreadable
    for method, n in cold.items():
        if method.endswith(
            ("GetIamPolicy", "getIamPolicy", "ListServiceAccountKeys", "ListPolicies")
        ):
            assert emulator.counts()[method] == n, method
    emulator.add_fault(Fault(method="storage.buckets.getIamPolicy", code="PERMISSION_DENIED"))
    emulator.add_fault(Fault(method="*IAM/GetIamPolicy", code="PERMISSION_DENIED"))
    third = fetch(emulator, tmp_path, credentials=creds)
    assert {u.target for u in third.unreadable} >= {BUCKET, SA_NODE}
    assert BUCKET not in third.nodes or third.nodes[BUCKET].policy is None


def test_stale_hierarchy_cache_never_leaks_into_the_snapshot(
    emulator: Emulator, tmp_path: Path
) -> None:
    cache = DiskCache(tmp_path, namespace=f"emulator-{emulator.address}")
    # pretend the project used to live directly under another organisation
    cache.put_parent(PROJECT, CRM + "organizations/999", "123456789012")
    snap = fetch(emulator, tmp_path)
    assert snap.nodes[PROJECT].parent == FOLDER
    assert [n.name for n in snap.ancestors(BUCKET)][-1] == ORG
    assert snap.complete_bindings_for == {sa_member(TRAIN), sa_member(PIPE)}


def test_resolve_submitter_names_the_caller() -> None:
    assert resolve_submitter(emulator_credentials("user:alice@example.com")) == (
        "user:alice@example.com"
    )


def test_service_account_key_file_credentials_are_flagged() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    from zt_pipelines.gcp import describe_submitter

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    creds = service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "client_email": "ci@proj-a1.iam.gserviceaccount.com",
            "private_key": pem,
            "private_key_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
            "project_id": "proj-a1",
        }
    )
    who = describe_submitter(creds)
    assert who.member == "serviceAccount:ci@proj-a1.iam.gserviceaccount.com"
    assert who.key_file
    # "load a key, impersonate the deployer" still authenticates with the key, however deep
    from google.auth import downscoped, impersonated_credentials

    deployer = "deployer@proj-a1.iam.gserviceaccount.com"
    chains = {
        "impersonated": impersonated_credentials.Credentials(
            source_credentials=creds, target_principal=deployer, target_scopes=["x"]
        ),
        "impersonated twice": impersonated_credentials.Credentials(
            source_credentials=impersonated_credentials.Credentials(
                source_credentials=creds, target_principal=deployer, target_scopes=["x"]
            ),
            target_principal="final@proj-a1.iam.gserviceaccount.com",
            target_scopes=["x"],
        ),
        "id token": impersonated_credentials.IDTokenCredentials(
            impersonated_credentials.Credentials(
                source_credentials=creds, target_principal=deployer, target_scopes=["x"]
            ),
            target_audience="https://example.com",
        ),
        "downscoped": downscoped.Credentials(
            source_credentials=creds,
            credential_access_boundary=downscoped.CredentialAccessBoundary(
                rules=[
                    downscoped.AccessBoundaryRule(
                        available_resource="//storage.googleapis.com/projects/_/buckets/b",
                        available_permissions=["inRole:roles/storage.objectViewer"],
                    )
                ]
            ),
        ),
    }
    for name, chain in chains.items():
        assert _key_flag(chain), name


def _key_flag(credentials: object) -> bool:
    from zt_pipelines.gcp import describe_submitter
    from zt_pipelines.gcp.submitter import _key_in_chain

    if hasattr(credentials, "_target_principal"):  # names its principal offline
        return describe_submitter(credentials).key_file
    return _key_in_chain(credentials)  # would ask tokeninfo: the chain alone is checked here


def test_a_member_attribute_is_believed_only_on_emulator_credentials() -> None:
    from google.auth.credentials import AnonymousCredentials

    from zt_pipelines.errors import IdentityError
    from zt_pipelines.gcp import describe_submitter

    forged = AnonymousCredentials()  # type: ignore[no-untyped-call]
    forged.member = "serviceAccount:approved-ci@proj-a1.iam.gserviceaccount.com"  # type: ignore[attr-defined]
    with pytest.raises(IdentityError):
        describe_submitter(forged)
    assert describe_submitter(emulator_credentials("user:a@example.com")).member == (
        "user:a@example.com"
    )


def test_hierarchy_adapter_reads_an_organisation(emulator: Emulator) -> None:
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    node = build_adapters(factory, no_wait_policy()).hierarchy.get_organization("111")
    assert node.name == ORG and node.kind == "organization" and node.parent is None


def test_anonymous_credentials_name_no_submitter() -> None:
    from google.auth.credentials import AnonymousCredentials

    from zt_pipelines.errors import IdentityError

    with pytest.raises(IdentityError):
        resolve_submitter(AnonymousCredentials())  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("strategy", ["direct", "inventory"])
def test_small_pages_give_the_same_snapshot(emulator: Emulator, strategy: str) -> None:
    whole = fetch(emulator, strategy=strategy)
    emulator.clear_log()
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    paged = fetch(
        emulator,
        strategy=strategy,
        adapters=build_adapters(factory, no_wait_policy(), page_size=1),
    )
    assert paged.nodes.keys() == whole.nodes.keys()
    assert {n: v.policy for n, v in paged.nodes.items()} == {
        n: v.policy for n, v in whole.nodes.items()
    }
    assert paged.roles == whole.roles and paged.service_accounts == whole.service_accounts
    counts = emulator.counts()
    assert counts["google.cloud.asset.v1.AssetService/SearchAllIamPolicies"] > 1
    assert counts["google.iam.admin.v1.IAM/ListServiceAccounts"] > 1


def test_get_service_account_adapter(emulator: Emulator) -> None:
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    sa = build_adapters(factory, no_wait_policy()).iam.get_service_account(TRAIN)
    assert sa.email == TRAIN and sa.project_id == "proj-a1" and not sa.disabled


def test_live_deny_policy_denies() -> None:
    from datetime import datetime, timezone

    from zt_pipelines.policy.engine import decide

    base = world()
    rule = DenyRule(
        (f"principal://iam.googleapis.com/projects/-/serviceAccounts/{TRAIN}",),
        ("storage.googleapis.com/objects.list",),
    )
    denied = Snapshot(
        nodes=base.nodes,
        roles=base.roles,
        deny_policies=(*base.deny_policies, DenyPolicy("no-list", FOLDER, (rule,))),
        service_accounts=base.service_accounts,
    )
    with Emulator(denied) as emu:
        snap = fetch(emu)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert decide(sa_member(TRAIN), BUCKET, "storage.objects.list", snap, now=now).state == (
        "denied"
    )
    assert decide(sa_member(TRAIN), BUCKET, "storage.objects.get", snap, now=now).granted


def test_refused_principal_search_is_split_in_halves(emulator: Emulator) -> None:
    # a query Google refuses as invalid (e.g. too long) is halved and asked again
    emulator.add_fault(Fault(method="*SearchAllIamPolicies", code="INVALID_ARGUMENT", times=1))
    snap = fetch(emulator)
    assert snap.unreadable == ()
    assert snap.complete_bindings_for == {sa_member(TRAIN), sa_member(PIPE)}
    assert snap.nodes[PROJECT_B].policy is not None
    # a refused query is asked again in halves: more queries than the clean fetch, each answered
    searches = emulator.counts()["google.cloud.asset.v1.AssetService/SearchAllIamPolicies"]
    assert searches >= 3


def test_persistently_refused_principal_search_fails_closed(emulator: Emulator) -> None:
    emulator.add_fault(Fault(method="*SearchAllIamPolicies", code="INVALID_ARGUMENT"))
    snap = fetch(emulator)
    assert snap.complete_bindings_for == frozenset()
    assert {u.what for u in snap.unreadable} == {"searchAllIamPolicies"}
    # each query, then its halves, down to each value alone: at most 2 calls per value asked
    # (2 identities + the 6 principal sets containing them: everyone, every Google account,
    # project id and number, folder, organisation + the identities Google services lend a
    # caller in each project known by then, policy/lending.py), never a pass
    from zt_pipelines.policy.lending import lent_accounts

    numbers = {n.project_number for n in snap.nodes.values() if n.project_number}
    lent = {email for number in numbers for email, _ in lent_accounts(number)}
    calls = emulator.counts()["google.cloud.asset.v1.AssetService/SearchAllIamPolicies"]
    assert calls <= 2 * (8 + len(lent))


def test_dataset_project_special_groups_become_basic_role_holders() -> None:
    from google.cloud.bigquery import AccessEntry

    from zt_pipelines.gcp.convert import dataset_access_policy

    entries = [
        AccessEntry("READER", "specialGroup", "projectReaders"),
        AccessEntry("OWNER", "specialGroup", "projectOwners"),
        AccessEntry("READER", "userByEmail", TRAIN),
    ]
    policy = dataset_access_policy(entries, "e1", "proj-a1")
    members = {m for b in policy.bindings for m in b.members}
    assert members == {"projectViewer:proj-a1", "projectOwner:proj-a1", sa_member(TRAIN)}


def test_cache_written_by_someone_else_is_not_trusted(tmp_path: Path) -> None:
    # a cached role or deny policy decides grants: an entry others could write is a miss
    cache = DiskCache(tmp_path, namespace="google")
    role = Role("roles/storage.objectViewer", frozenset({"storage.objects.get"}))
    cache.put_role(role)
    assert cache.get_role(role.name) == role
    (cache.directory / "roles").chmod(0o777)
    assert cache.get_role(role.name) is None
    (cache.directory / "roles").chmod(0o700)
    assert cache.get_role(role.name) == role
    entry = next((cache.directory / "roles").iterdir())
    entry.chmod(0o666)
    assert cache.get_role(role.name) is None


def test_a_reporter_installed_around_a_live_read_hears_every_read(emulator: Emulator) -> None:
    """The CLI's progress bar: ``reporting(cb)`` reaches fetch_snapshot without a parameter."""
    from zt_pipelines.gcp.progress import current, reporting

    heard: list[tuple[int, int]] = []
    with reporting(lambda done, total: heard.append((done, total))):
        fetch(emulator)
    assert current() is None  # scoped to the block
    assert heard and heard[-1][0] == heard[-1][1] == sum(emulator.counts().values())
    assert [done for done, _ in heard] == list(range(1, len(heard) + 1))


def test_http_clients_read_proxy_settings_once_and_keep_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The environment's proxies (with NO_PROXY) and CA bundle are read when the client is
    built, as requests would per request; many keep-alive connections per host."""
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    factory = ClientFactory(emulator_credentials("user:a@example.com"), emulator_host="10.1.2.3:8")
    for client in (factory.storage(), factory.bigquery()):
        session = client._http
        assert session.proxies.get("http") == "http://proxy.example:3128"
        assert session.verify == str(bundle)
        assert session.get_adapter("http://10.1.2.3:8")._pool_maxsize >= 64
    monkeypatch.setenv("NO_PROXY", "10.1.2.3")
    bypass = ClientFactory(emulator_credentials("user:a@example.com"), emulator_host="10.1.2.3:8")
    assert "http" not in bypass.storage()._http.proxies


def test_reads_started_without_a_thread_answer_as_the_blocking_ones(emulator: Emulator) -> None:
    """The installed gapic transports expose the futures the fetch relies on (a library
    upgrade that drops them would silently fall back to a thread per read), and a started
    read answers exactly what the blocking read answers."""
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    adapters = build_adapters(factory, no_wait_policy())
    iam, hierarchy = adapters.iam, adapters.hierarchy
    pairs = [
        (iam.start_service_account_policy(TRAIN), iam.get_service_account_policy(TRAIN)),  # type: ignore[attr-defined]
        (iam.start_list_user_managed_keys(TRAIN), iam.list_user_managed_keys(TRAIN)),  # type: ignore[attr-defined]
        (
            iam.start_get_role("roles/storage.objectViewer"),
            iam.get_role("roles/storage.objectViewer"),
        ),  # type: ignore[attr-defined]
        (hierarchy.start_get_project("proj-a1"), hierarchy.get_project("proj-a1")),  # type: ignore[attr-defined]
        (hierarchy.start_get_folder("222"), hierarchy.get_folder("222")),  # type: ignore[attr-defined]
        (hierarchy.start_get_iam_policy(ORG), hierarchy.get_iam_policy(ORG)),  # type: ignore[attr-defined]
    ]
    for started, blocking in pairs:
        assert started is not None
        assert started.outcome() == blocking
    missing = iam.start_service_account_policy("nobody@proj-a1.iam.gserviceaccount.com")  # type: ignore[attr-defined]
    with pytest.raises(ApiError) as caught:
        missing.outcome()
    assert caught.value.code == "NOT_FOUND" and not caught.value.transient
    factory.close()


def test_bucket_reads_go_in_one_batch_request_and_answer_as_the_blocking_ones(
    emulator: Emulator,
) -> None:
    """Cloud Storage reads are parts of one request to the JSON API's batch endpoint (sent by
    the storage library's own ``Client.batch``); each part answers exactly what the blocking
    read answers, and a refused or missing bucket is that part's failure alone."""
    factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emulator.address)
    storage = build_adapters(factory, no_wait_policy()).storage
    batch = storage.new_batch()  # type: ignore[attr-defined]
    started = [
        batch.start_bucket_policy("feat-bucket"),
        batch.start_bucket_project_number("feat-bucket"),
        batch.start_bucket_policy("no-such-bucket"),
    ]
    emulator.clear_log()
    batch.send()
    assert [r.batched for r in emulator.request_log] == [True, True, True]
    assert started[0].outcome() == storage.get_bucket_policy("feat-bucket")
    assert started[1].outcome() == storage.get_bucket_project_number("feat-bucket")
    assert started[1].outcome() == "123456789012"
    with pytest.raises(ApiError) as caught:
        started[2].outcome()
    assert caught.value.code == "NOT_FOUND" and not caught.value.transient
    batch.send()  # nothing left to send: no request
    factory.close()

    # a whole check: every bucket read travels in the batch, and the answer is unchanged
    emulator.clear_log()
    snap = fetch(emulator)
    storage_calls = [
        r
        for r in emulator.request_log
        if r.api == "storage" and r.method != "storage.hmacKeys.list"  # a paged list, alone
    ]
    assert {r.method for r in storage_calls} == {
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
    }
    assert all(r.batched for r in storage_calls)
    assert snap.nodes[BUCKET].policy.bindings == world().nodes[BUCKET].policy.bindings
    assert snap.nodes[BUCKET].parent == PROJECT


def test_each_call_in_a_storage_batch_is_authorised_on_its_own() -> None:
    """The emulator serves a batch's calls one by one with the caller of the outer request:
    a bucket the caller may not read is refused in its part only."""
    other = "//storage.googleapis.com/other-bucket"
    base = world()
    nodes = dict(base.nodes)
    nodes[other] = Node(other, "bucket", parent=PROJECT, policy=AllowPolicy())
    import dataclasses

    def authorizer(member: str, resource: str, permission: str, *_: object) -> bool:
        return not (resource == other and permission == "storage.buckets.get")

    with Emulator(dataclasses.replace(base, nodes=nodes), authorizer=authorizer) as emu:
        snap = fetch(emu, resources=[BUCKET, other])
        refused = [u for u in snap.unreadable if u.target == other]
        assert [u.what for u in refused] == ["storage.buckets.get"]
        assert "PERMISSION_DENIED" in refused[0].reason
        assert snap.nodes[BUCKET].policy.bindings == base.nodes[BUCKET].policy.bindings
        assert other not in snap.nodes or snap.nodes[other].parent is None  # its meta: refused
        # its getIamPolicy part was answered on its own
        answered = [
            r
            for r in emu.request_log
            if r.method == "storage.buckets.getIamPolicy" and r.target == "other-bucket"
        ]
        assert [r.status for r in answered] == ["OK"]
        # refused for good: asked once, never retried
        asked = [r for r in emu.request_log if r.method == "storage.buckets.get"]
        assert sorted(r.status for r in asked) == ["OK", "PERMISSION_DENIED"]


def test_the_emulator_refuses_a_malformed_or_oversized_storage_batch(emulator: Emulator) -> None:
    """A batch body that is not ``multipart/mixed`` requests, or holds more than Google's 100
    calls, is a 400 for the whole request; a call to another API inside it is a 404 part."""
    import requests  # type: ignore[import-untyped]

    url = f"http://{emulator.address}/batch/storage/v1"
    token = {"Authorization": f"Bearer {emulator_credentials(sa_member(READER)).token}"}

    def part(line: str) -> str:
        return f"--b\r\nContent-Type: application/http\r\n\r\n{line} HTTP/1.1\r\n\r\n\r\n"

    mixed = {"Content-Type": "multipart/mixed; boundary=b", **token}
    assert requests.post(url, data="x", headers=token, timeout=5).status_code == 400
    many = "".join(part("GET /storage/v1/b/feat-bucket") for _ in range(101)) + "--b--\r\n"
    assert requests.post(url, data=many, headers=mixed, timeout=5).status_code == 400
    body = (
        part("GET /storage/v1/b/feat-bucket/iam?optionsRequestedPolicyVersion=3")
        + part("GET /bigquery/v2/projects/proj-a1/datasets/features")
        + "--b--\r\n"
    )
    answer = requests.post(url, data=body, headers=mixed, timeout=5)
    assert answer.status_code == 200
    statuses = [chunk.split("HTTP/1.1 ", 1)[1][:3] for chunk in answer.text.split("--batch_")[1:-1]]
    assert statuses == ["200", "404"]


def test_the_emulator_never_authorises_a_caller_from_a_stale_decision() -> None:
    """The emulator remembers its decisions on its callers only while the world is unchanged
    (and only when no condition makes them depend on the time): a caller who loses a grant is
    refused on the very next call."""
    import dataclasses

    base = world()
    nodes = dict(base.nodes)
    nodes[BUCKET] = Node(BUCKET, "bucket", parent=PROJECT, policy=AllowPolicy())  # no condition
    roles = dict(base.roles)
    roles["roles/zt.reader"] = Role(
        "roles/zt.reader", READ_PERMISSIONS | {"resourcemanager.organizations.setIamPolicy"}
    )
    with Emulator(dataclasses.replace(base, nodes=nodes, roles=roles)) as emu:
        factory = ClientFactory(emulator_credentials(sa_member(READER)), emulator_host=emu.address)
        adapters = build_adapters(factory, no_wait_policy())
        for _ in range(2):  # the second read is answered from the remembered decision
            assert adapters.storage.get_bucket_policy("feat-bucket") == AllowPolicy(
                etag=adapters.storage.get_bucket_policy("feat-bucket").etag
            )
        organizations = factory.organizations()
        current = organizations.get_iam_policy(request={"resource": "organizations/111"})
        del current.bindings[:]  # the reader removes its own (only) grant
        organizations.set_iam_policy(request={"resource": "organizations/111", "policy": current})
        with pytest.raises(ApiError) as caught:
            adapters.storage.get_bucket_policy("feat-bucket")
        assert caught.value.code == "PERMISSION_DENIED"
        factory.close()


SIDE = CRM + "projects/side-proj"
ORG_SAS = "principalSet://cloudresourcemanager.googleapis.com/organizations/111/type/ServiceAccount"
PROJECT_SAS = (
    "principalSet://cloudresourcemanager.googleapis.com/projects/123456789012/type/ServiceAccount"
)


@pytest.mark.parametrize("member", [ORG_SAS, PROJECT_SAS, "allUsers", "allAuthenticatedUsers"])
def test_grants_to_a_principal_set_containing_an_identity_are_found(member: str) -> None:
    """A grant to "every service account of the organisation / of project N" names no email:
    the identity's own search cannot find it, so the sets that contain it are searched too —
    and an identity is complete only when they were."""
    base = world()
    side = Node(
        SIDE,
        "project",
        parent=ORG,
        project_number="333333333333",
        policy=AllowPolicy((Binding("roles/editor", (member,)),)),
    )
    with Emulator(replace(base, nodes={**base.nodes, SIDE: side})) as emu:
        snap = fetch(emu)
    assert sa_member(TRAIN) in snap.complete_bindings_for
    from zt_pipelines.policy.engine import Evaluator
    from zt_pipelines.policy.members import Match

    held = [
        (node.name, binding.role)
        for node, binding, mm, _member in Evaluator(snap).member_bindings(sa_member(TRAIN))
        if mm.match is Match.YES
    ]
    assert (SIDE, "roles/editor") in held  # the excess check sees it (ZT211)


def test_an_identity_whose_sets_cannot_be_placed_is_not_complete(emulator: Emulator) -> None:
    # the folder between proj-a1 and the organisation cannot be read: the sets containing the
    # identities are unknown, so no search for them can be complete (fail closed: said)
    emulator.add_fault(Fault(method="*GetFolder", code="PERMISSION_DENIED"))
    snap = fetch(emulator)
    assert sa_member(TRAIN) not in snap.complete_bindings_for
    assert sa_member(PIPE) not in snap.complete_bindings_for


def test_a_warm_check_asks_for_the_principal_sets_in_its_first_wave(
    emulator: Emulator, tmp_path: Path
) -> None:
    """With the hierarchy in the cache, the principal sets that contain the identities are
    searched with them in one query of the first wave — not in a round after every other
    read — and completeness is still judged on the fresh hierarchy. (A second query of the
    same wave asks for the code-running service agents of the second project, whose number
    the cache gives once that project is planned.)"""
    first = fetch(emulator, tmp_path)
    emulator.clear_log()
    again = fetch(emulator, tmp_path)
    assert emulator.counts()["google.cloud.asset.v1.AssetService/SearchAllIamPolicies"] <= 2
    assert again.complete_bindings_for == first.complete_bindings_for
    assert again.complete_bindings_for == {sa_member(TRAIN), sa_member(PIPE)}
    assert again.nodes == first.nodes
