"""Custom-role support levels (IAM ``customRolesSupportLevel``): the emulator serves
``queryTestablePermissions`` over gRPC and enforces the levels like IAM; the tool reads them
live through the official client; ``plan --roles custom``, custom-role validation and ``apply``
refuse NOT_SUPPORTED (and not-testable) permissions with the reason, warn on TESTING, and say
when a level is unknown offline.

(No ``from __future__ import annotations`` here: KFP reads the component annotations.)
"""

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from google.api_core import exceptions as gexc
from test_provision_apply import (
    ADMIN,
    FULL_NEEDS,
    PROJECT,
    check,
    empty_project,
    make_plan,
    template,  # noqa: F401 - the compiled e2e pipeline fixture
)

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.errors import CustomRoleSupportError
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.iam_admin import IamAdminAdapter
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.role_catalogue import catalogue_info, support_level
from zt_pipelines.provision import custom_role_for
from zt_pipelines.provision.apply import apply_plan
from zt_pipelines.provision.render import render_gcloud, render_json, render_table, render_terraform

CRM = "//cloudresourcemanager.googleapis.com/"
# storage.objects.list is in FULL_NEEDS (prep), bigquery.tables.getData too (train)
BANNED = "storage.objects.list"
TRIAL = "bigquery.tables.getData"


def _factory(emu: Emulator) -> ClientFactory:
    return ClientFactory(emulator_credentials(ADMIN), emulator_host=emu.address, project=PROJECT)


def test_emulator_serves_query_testable_permissions_over_the_official_client() -> None:
    levels = {BANNED: "NOT_SUPPORTED", TRIAL: "TESTING"}
    with Emulator(empty_project(), permission_support=levels) as emu:
        # small pages: the adapter must follow every page token
        adapter = IamAdminAdapter(_factory(emu), page_size=700)
        read = adapter.query_testable_permissions(CRM + f"projects/{PROJECT}")
        calls = [r for r in emu.request_log if r.method.endswith("QueryTestablePermissions")]
        org = adapter.query_testable_permissions(CRM + "organizations/777")
    assert read[BANNED] == "NOT_SUPPORTED" and read[TRIAL] == "TESTING"
    assert read["storage.objects.get"] == "SUPPORTED"
    assert read["appengine.memcache.flush"] == "TESTING"  # the catalogue's public level
    assert len(read) > 13_000 and len(calls) == -(-len(read) // 700)
    # organisation-level permissions are testable on the organisation, not on a project
    assert "resourcemanager.organizations.get" in org
    assert "resourcemanager.organizations.get" not in read


def test_emulator_refuses_a_custom_role_iam_would_refuse() -> None:
    with Emulator(empty_project(), permission_support={BANNED: "NOT_SUPPORTED"}) as emu:
        client = _factory(emu).iam_admin()
        for perms in ([BANNED, "storage.objects.get"], ["resourcemanager.organizations.get"]):
            with pytest.raises(gexc.InvalidArgument, match=perms[0]):
                client.create_role(
                    request={
                        "parent": f"projects/{PROJECT}",
                        "role_id": "bad_role",
                        "role": {"title": "t", "included_permissions": perms},
                    }
                )
        assert {r.status for r in emu.writes()} == {"INVALID_ARGUMENT"}
        assert f"projects/{PROJECT}/roles/bad_role" not in emu.state.roles


def test_custom_role_validation_refuses_not_supported_with_the_reason() -> None:
    parent = f"projects/{PROJECT}"
    with pytest.raises(CustomRoleSupportError) as info:
        custom_role_for(
            ["storage.objects.get", BANNED],
            parent=parent,
            support={BANNED: "NOT_SUPPORTED", "storage.objects.get": "SUPPORTED"},
            support_source=f"live: {parent}",
        )
    assert info.value.permissions == (BANNED,)
    assert "NOT_SUPPORTED" in str(info.value) and f"live: {parent}" in str(info.value)
    assert "--roles predefined" in str(info.value)
    # not listed by the live read at all: IAM would refuse it too
    with pytest.raises(CustomRoleSupportError, match="not among its testable permissions"):
        custom_role_for(["storage.objects.get"], parent=parent, support={})
    # TESTING is allowed (a warning in plans), and offline the catalogue decides
    assert custom_role_for([TRIAL], parent=parent, support={TRIAL: "TESTING"})
    assert custom_role_for(["storage.objects.get"], parent=parent).permissions


def test_catalogue_carries_public_levels_and_says_unknown_otherwise() -> None:
    info = catalogue_info()
    assert "custom-roles-permissions-support" in info.support_source
    assert not info.support_complete
    assert support_level("appengine.memcache.addKey") == "TESTING"
    assert support_level("appengine.applications.get") == "SUPPORTED"
    assert support_level("storage.objects.get") == "UNKNOWN"  # no public data here: unknown


def test_offline_plan_discloses_unknown_levels_in_every_format(template: Path) -> None:  # noqa: F811
    planned = make_plan(template, FULL_NEEDS, None)
    assert planned.support_unverified  # never silently "verified"
    assert all(i.level == "UNKNOWN" for i in planned.custom_role_support)
    assert "is not known offline" in render_table(planned)
    assert "apply reads it live" in render_table(planned)
    data = json.loads(render_json(planned))
    assert {e["level"] for e in data["custom_role_support"]} == {"UNKNOWN"}
    for text in (render_terraform(planned), render_gcloud(planned)):
        assert "# Custom-role support of" in text
        assert f"list-testable-permissions {CRM}projects/{PROJECT}" in text


def test_live_plan_refuses_not_supported_and_warns_on_testing(
    template: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(FULL_NEEDS))
    args = [str(template), "--project", PROJECT, "--pipeline-sa", "pipeline-sa@" + PROJECT]
    args[-1] += ".iam.gserviceaccount.com"
    args += ["--pipeline-root", "gs://zt-e2e-root/runs", "--manifest", str(manifest)]
    levels = {BANNED: "NOT_SUPPORTED", TRIAL: "TESTING"}
    with Emulator(empty_project(), enforce_iam=False, permission_support=levels) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
        with pytest.raises(SystemExit) as info:
            main(["plan", *args])
        err = capsys.readouterr().err
        assert info.value.code == 1
        assert BANNED in err and "NOT_SUPPORTED" in err and f"live: projects/{PROJECT}" in err
        emu.clear_log()
        with pytest.raises(SystemExit) as info:
            main(["apply", "--yes", *args])
        assert info.value.code == 1 and emu.writes() == []
        # TESTING alone: planned and applied, with a warning naming the permission
        emu_levels = {TRIAL: "TESTING"}
    with Emulator(empty_project(), enforce_iam=False, permission_support=emu_levels) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        with pytest.raises(SystemExit) as info:
            main(["apply", "--yes", *args])
        out = capsys.readouterr().out
        assert info.value.code == 0
        assert f"Warning: {TRIAL}" in out and "TESTING" in out
        assert "not known offline" not in out  # the live read settled every level


def test_apply_verifies_live_and_refuses_before_any_write(
    template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A plan made offline (levels unknown) meets an IAM that does not support one of its
    permissions: apply refuses before the first write, and the refusal is on the trail."""
    with Emulator(empty_project(), permission_support={BANNED: "NOT_SUPPORTED"}) as emu:
        planned = make_plan(template, FULL_NEEDS, emu.state)
        assert BANNED in planned.support_unverified
        audit = tmp_path / "audit.jsonl"
        emu.clear_log()
        with pytest.raises(CustomRoleSupportError, match=BANNED) as info:
            apply_plan(planned, factory=_factory(emu), retry=no_wait_policy(), audit_log=audit)
        assert info.value.permissions == (BANNED,)
        assert emu.writes() == []
        (record,) = AuditLog(audit).records()
        assert record["outcome"] == "refused" and BANNED in record["reason"]


def test_apply_with_testing_permissions_warns_and_closes(
    template: Path,  # noqa: F811
) -> None:
    with Emulator(empty_project(), permission_support={TRIAL: "TESTING"}) as emu:
        planned = make_plan(template, FULL_NEEDS, emu.state)
        result = apply_plan(planned, factory=_factory(emu), retry=no_wait_policy(), audit_log=False)
        assert any(w.startswith(TRIAL) and "TESTING" in w for w in result.warnings)
        assert f"Warning: {TRIAL}" in str(result)
        assert check(template, FULL_NEEDS, emu.state).allowed
        # the roles exist now: a re-plan has nothing left to verify
        again = make_plan(template, FULL_NEEDS, emu.state)
        assert again.is_noop and not again.support_unverified


@pytest.mark.parametrize(
    "bad",
    [
        "storage.objects.list",
        "storage.objects.list=MAYBE",
        "x=TESTING",
        "storage.objects.lst=TESTING",
    ],
)
def test_emulator_cli_refuses_a_malformed_support_level(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world = Path(__file__).resolve().parent.parent / "examples" / "world.yaml"
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--snapshot", str(world), "--permission-support", bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--permission-support" in err
    if "lst" in bad:  # a misspelt permission names the closest known one
        assert "did you mean storage.objects.list" in err


def test_plan_names_its_pipeline_identity_for_check_and_submit(template: Path) -> None:  # noqa: F811
    planned = zt.plan(
        template, project=PROJECT, pipeline_root="gs://zt-e2e-root/runs", manifest=FULL_NEEDS
    )
    derived = planned.pipeline_service_account
    assert derived.startswith("zt-")  # derived from the pipeline's name
    assert f"check/submit with --pipeline-sa {derived}" in render_table(planned)


def test_build_plan_names_every_refused_permission_with_its_step_at_once() -> None:
    from zt_pipelines.provision import Want, build_plan
    from zt_pipelines.resources import normalize_resource as parse_resource

    sa = "{}@" + PROJECT + ".iam.gserviceaccount.com"
    wants = [
        Want(
            f"serviceAccount:{sa.format('prep-sa')}", parse_resource("gs://raw"), (BANNED,), "prep"
        ),
        Want(
            f"serviceAccount:{sa.format('train-sa')}", parse_resource("gs://raw"), (TRIAL,), "train"
        ),
        Want(
            f"serviceAccount:{sa.format('train-sa')}",
            parse_resource(f"bq://{PROJECT}.features"),
            ("bigquery.tables.list",),
            "train",
        ),
    ]
    levels = {TRIAL: "NOT_SUPPORTED", BANNED: "NOT_SUPPORTED", "bigquery.tables.list": "TESTING"}
    with pytest.raises(CustomRoleSupportError) as info:
        build_plan(
            wants,
            project=PROJECT,
            pipeline_service_account=f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com",
            support_levels=levels,
            support_source=f"live: projects/{PROJECT}",
        )
    text = str(info.value)
    assert set(info.value.permissions) == {BANNED, TRIAL}
    assert "needed by prep on gs://raw" in text and "needed by train on gs://raw" in text
    # once allowed, the TESTING one is a warning of the plan (JSON and table)
    levels.update({TRIAL: "SUPPORTED", BANNED: "SUPPORTED"})
    planned = build_plan(
        wants,
        project=PROJECT,
        pipeline_service_account=f"pipeline-sa@{PROJECT}.iam.gserviceaccount.com",
        support_levels=levels,
        support_source=f"live: projects/{PROJECT}",
    )
    (warning,) = planned.support_warnings
    assert warning.startswith("bigquery.tables.list in projects/")
    assert f"Warning: {warning}" in render_table(planned)
    entry = json.loads(render_json(planned))["custom_role_support"][0]
    assert entry["level"] == "TESTING" and entry["source"] == f"live: projects/{PROJECT}"


def _build_tool() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "tools" / "build_role_catalogue.py"
    spec = importlib.util.spec_from_file_location("zt_build_role_catalogue", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.shared
def test_the_shipped_catalogue_is_rebuilt_byte_for_byte_with_its_support_levels(
    tmp_path: Path,
) -> None:
    from conftest import ROLES_FILE, require_shared

    tool = _build_tool()
    out = tmp_path / "catalogue.json.gz"
    assert tool.main(["build", str(require_shared(ROLES_FILE)), "2026-08-22", str(out)]) == 0
    shipped = Path(__file__).resolve().parent.parent / "zt_pipelines" / "data"
    assert out.read_bytes() == (shipped / "predefined_roles.json.gz").read_bytes()


@pytest.mark.shared
def test_a_gcloud_listing_makes_the_catalogue_levels_complete(tmp_path: Path) -> None:
    from conftest import ROLES_FILE, require_shared

    listing = tmp_path / "testable.json"  # gcloud iam list-testable-permissions --format=json
    listing.write_text(
        json.dumps(
            [
                {"name": "storage.objects.get", "stage": "GA"},
                {"name": BANNED, "stage": "GA", "customRolesSupportLevel": "NOT_SUPPORTED"},
                {"name": TRIAL, "stage": "GA", "customRolesSupportLevel": "TESTING"},
            ]
        )
    )
    doc = _build_tool().build(require_shared(ROLES_FILE), "2026-08-22", listing)
    support = doc["support"]
    assert support["complete"] is True
    assert support["levels"] == {"NOT_SUPPORTED": [BANNED], "TESTING": [TRIAL]}
