"""Bad snapshots, policies and manifests: a typed error naming the file and the location."""


# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_worlds import FEATURES, PIPELINE_SA, PROJECT, world_dict

from zt_pipelines.errors import (
    IdentityError,
    InputError,
    ManifestError,
    PolicyFileError,
    SnapshotError,
    ZtError,
)
from zt_pipelines.policy.orgpolicy import UNRELAXABLE, load_policy
from zt_pipelines.policy.report import CODES
from zt_pipelines.policy.snapshot_file import load_snapshot

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _del(path: list[Any]) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _append(key: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        data.setdefault(key, []).append(value)

    return mutate


DENY = {
    "name": "d",
    "attachmentPoint": PROJECT,
    "rules": [
        {
            "deniedPrincipals": ["principalSet://goog/public:all"],
            "deniedPermissions": ["storage.googleapis.com/objects.get"],
        }
    ],
}

# (id, mutation of the clean world, expected JSON path in the error)
SNAPSHOT_CASES: list[tuple[str, Mutation, str]] = [
    ("missing version", _del(["version"]), "$"),
    ("wrong version", _set(["version"], 2), "$.version"),
    ("unknown top-level key", _set(["policies"], []), "$"),
    ("node without kind", _del(["nodes", 0, "kind"]), "$.nodes[0]"),
    ("unknown node kind", _set(["nodes", 0, "kind"], "galaxy"), "$.nodes[0].kind"),
    ("node name not a full name", _set(["nodes", 4, "name"], "gs://bucket"), "$.nodes[4].name"),
    ("duplicate node", _append("nodes", {"name": FEATURES, "kind": "bucket"}), "$.nodes[12].name"),
    ("parent not a full name", _set(["nodes", 2, "parent"], "folders/200"), "$.nodes[2].parent"),
    (
        "node is its own parent",
        _set(["nodes", 1, "parent"], "//cloudresourcemanager.googleapis.com/folders/200"),
        "$.nodes[1].parent",
    ),
    (
        "project number not numeric",
        _set(["nodes", 2, "projectNumber"], "12ab"),
        "$.nodes[2].projectNumber",
    ),
    (
        "binding role malformed",
        _set(["nodes", 2, "policy", "bindings", 0, "role"], "editor"),
        "$.nodes[2].policy.bindings[0].role",
    ),
    (
        "binding member malformed",
        _set(["nodes", 2, "policy", "bindings", 0, "members", 1], "alice@example.com"),
        "$.nodes[2].policy.bindings[0].members[1]",
    ),
    (
        "binding with no members",
        _set(["nodes", 2, "policy", "bindings", 0, "members"], []),
        "$.nodes[2].policy.bindings[0].members",
    ),
    (
        "binding condition not CEL",
        _set(
            ["nodes", 2, "policy", "bindings", 0, "condition"], {"expression": "resource.name =="}
        ),
        "$.nodes[2].policy.bindings[0].condition.expression",
    ),
    (
        "binding condition without expression",
        _set(["nodes", 2, "policy", "bindings", 0, "condition"], {"title": "x"}),
        "$.nodes[2].policy.bindings[0].condition",
    ),
    (
        "policy version invalid",
        _set(["nodes", 2, "policy", "version"], 2),
        "$.nodes[2].policy.version",
    ),
    (
        "role permission malformed",
        _set(["roles", 0, "permissions", 0], "storage objects get"),
        "$.roles[0].permissions[0]",
    ),
    ("role without permissions", _del(["roles", 0, "permissions"]), "$.roles[0]"),
    ("role name malformed", _set(["roles", 0, "name"], "storage.objectViewer"), "$.roles[0].name"),
    (
        "duplicate role",
        _append("roles", {"name": "roles/editor", "permissions": []}),
        "$.roles[10].name",
    ),
    (
        "deny on a bucket",
        _append("denyPolicies", {**DENY, "attachmentPoint": FEATURES}),
        "$.denyPolicies[0].attachmentPoint",
    ),
    (
        "deny principal in v1 form",
        _append(
            "denyPolicies",
            {
                **DENY,
                "rules": [
                    {**DENY["rules"][0], "deniedPrincipals": [f"serviceAccount:{PIPELINE_SA}"]}
                ],
            },
        ),
        "$.denyPolicies[0].rules[0].deniedPrincipals[0]",
    ),
    (
        "deny permission in v1 form",
        _append(
            "denyPolicies",
            {**DENY, "rules": [{**DENY["rules"][0], "deniedPermissions": ["storage.objects.get"]}]},
        ),
        "$.denyPolicies[0].rules[0].deniedPermissions[0]",
    ),
    (
        "deny rule without permissions",
        _append(
            "denyPolicies",
            {**DENY, "rules": [{"deniedPrincipals": ["principalSet://goog/public:all"]}]},
        ),
        "$.denyPolicies[0].rules[0]",
    ),
    (
        "deny condition not CEL",
        _append(
            "denyPolicies",
            {**DENY, "rules": [{**DENY["rules"][0], "denialCondition": {"expression": "(("}}]},
        ),
        "$.denyPolicies[0].rules[0].denialCondition.expression",
    ),
    (
        "service account email malformed",
        _set(["serviceAccounts", 0, "email"], "pipeline sa@ml-prod.iam.gserviceaccount.com"),
        "$.serviceAccounts[0].email",
    ),
    (
        "service account homoglyph",
        _set(["serviceAccounts", 0, "email"], "pipеline-sa@ml-prod.iam.gserviceaccount.com"),
        "$.serviceAccounts[0].email",
    ),
    (
        "duplicate service account",
        _append("serviceAccounts", {"email": PIPELINE_SA, "projectId": "ml-prod"}),
        "$.serviceAccounts[3].email",
    ),
    (
        "service account without project",
        _del(["serviceAccounts", 0, "projectId"]),
        "$.serviceAccounts[0]",
    ),
    (
        "group key with prefix",
        _set(["groups", "group:x@example.com"], []),
        "$.groups['group:x@example.com']",
    ),
    (
        "group member malformed",
        _set(["groups", "ml-team@example.com"], ["bob"]),
        "$.groups['ml-team@example.com'][0]",
    ),
    (
        "unreadable without reason",
        _append("unreadable", {"target": FEATURES, "what": "getIamPolicy"}),
        "$.unreadable[0]",
    ),
    (
        "disabled not boolean",
        _set(["serviceAccounts", 0, "disabled"], "yes"),
        "$.serviceAccounts[0].disabled",
    ),
]


@pytest.mark.parametrize(
    ("mutation", "path"), [c[1:] for c in SNAPSHOT_CASES], ids=[c[0] for c in SNAPSHOT_CASES]
)
def test_bad_snapshot_names_file_and_json_path(
    tmp_path: Path, mutation: Mutation, path: str
) -> None:
    data = world_dict()
    mutation(data)
    file = tmp_path / "snap.json"
    file.write_text(json.dumps(data))
    with pytest.raises(SnapshotError) as info:
        load_snapshot(file)
    err = info.value
    assert err.exit_code == 2
    assert err.where == f"{file}: {path}", err.message
    assert "Traceback" not in err.message


def test_hierarchy_cycle(tmp_path: Path) -> None:
    data = world_dict()
    data["nodes"][0]["parent"] = "//cloudresourcemanager.googleapis.com/folders/200"
    with pytest.raises(SnapshotError, match="cycle"):
        load_snapshot(data)


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("bad.yaml", "version: 1\nnodes: [\n", "bad.yaml: line 3 column 1"),
        ("dup.yaml", "version: 1\nversion: 1\n", "dup.yaml: line 2 column 1"),
        ("bad.json", '{"version": 1,,}', "bad.json: line 1 column 15"),
        ("list.yaml", "- 1\n- 2\n", "list.yaml: $"),
        ("empty.yaml", "", "empty.yaml: $"),
        ("binary.yaml", b"\xff\xfe\x00".decode("latin-1"), "binary.yaml"),
    ],
)
def test_unparseable_snapshot_files(tmp_path: Path, name: str, text: str, where: str) -> None:
    file = tmp_path / name
    if name == "binary.yaml":
        file.write_bytes(b"\xff\xfe\x00")
    else:
        file.write_text(text)
    with pytest.raises(SnapshotError) as info:
        load_snapshot(file)
    assert info.value.where is not None and info.value.where.startswith(str(tmp_path / where))


def test_missing_snapshot_file(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="does not exist"):
        load_snapshot(tmp_path / "nope.yaml")


SUP = {
    "code": "ZT210",
    "step": "train",
    "justification": "tracked in TICKET-42",
    "expires": "2027-01-01",
}
POLICY_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown key", {"sevrities": {}}, "$"),
    ("bad severity", {"severities": {"ZT210": "fatal"}}, "$.severities.ZT210"),
    ("unknown code", {"severities": {"ZT999": "error"}}, "$.severities.ZT999"),
    ("malformed code", {"severities": {"zt210": "error"}}, "$.severities"),
    ("negative threshold", {"excessThreshold": -1}, "$.excessThreshold"),
    ("bad network regex", {"network": {"required": "projects/(("}}, "$.network.required"),
    ("bad cmek regex", {"cmek": {"keyPattern": "[z-a]"}}, "$.cmek.keyPattern"),
    ("bad region", {"regions": ["US Central"]}, "$.regions[0]"),
    ("empty registries", {"images": {"allowedRegistries": []}}, "$.images.allowedRegistries"),
    (
        "suppression without justification",
        {"suppressions": [{k: v for k, v in SUP.items() if k != "justification"}]},
        "$.suppressions[0]",
    ),
    (
        "suppression with a token justification",
        {"suppressions": [{**SUP, "justification": "ok"}]},
        "$.suppressions[0].justification",
    ),
    (
        "suppression without expiry",
        {"suppressions": [{k: v for k, v in SUP.items() if k != "expires"}]},
        "$.suppressions[0]",
    ),
    (
        "suppression with an impossible date",
        {"suppressions": [{**SUP, "expires": "2027-02-30"}]},
        "$.suppressions[0].expires",
    ),
    (
        "suppression of everything",
        {"suppressions": [{k: v for k, v in SUP.items() if k != "step"}]},
        "$.suppressions[0]",
    ),
    (
        "suppression of an unknown code",
        {"suppressions": [{**SUP, "code": "ZT999"}]},
        "$.suppressions[0].code",
    ),
    (
        "suppression with a bad resource",
        {"suppressions": [{**SUP, "resource": "s3://x"}]},
        "$.suppressions[0].resource",
    ),
    (
        "submitters not boolean",
        {"submitters": {"refuseKeyFileCredentials": "yes"}},
        "$.submitters.refuseKeyFileCredentials",
    ),
]


@pytest.mark.parametrize(
    ("data", "path"), [c[1:] for c in POLICY_CASES], ids=[c[0] for c in POLICY_CASES]
)
def test_bad_policy_names_file_and_json_path(
    tmp_path: Path, data: dict[str, Any], path: str
) -> None:
    file = tmp_path / "zt-policy.yaml"
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyFileError) as info:
        load_policy(file)
    assert info.value.where == f"{file}: {path}", info.value.message
    assert info.value.exit_code == 2


def test_policy_in_pyproject(tmp_path: Path) -> None:
    file = tmp_path / "pyproject.toml"
    file.write_text('[tool.zt-pipelines]\nexcessThreshold = 3\nregions = ["us-central1"]\n')
    policy = load_policy(file)
    assert policy.excess_threshold == 3 and policy.allowed_regions == ("us-central1",)
    file.write_text('[tool.zt-pipelines]\nexcessThreshold = "3"\n')
    with pytest.raises(PolicyFileError) as info:
        load_policy(file)
    assert info.value.where == f"{file}: $.excessThreshold"
    file.write_text("[project]\nname = 'x'\n")
    with pytest.raises(PolicyFileError, match=r"no \[tool.zt-pipelines\]"):
        load_policy(file)
    file.write_text("[tool.zt-pipelines\n")
    with pytest.raises(PolicyFileError, match="TOML"):
        load_policy(file)


def test_strict_defaults() -> None:
    policy = load_policy(None)
    assert policy.severity("ZT210").value == "warning"
    assert all(policy.severity(c).value == "error" for c in ("ZT100", "ZT211", "ZT212", "ZT400"))
    assert policy.refuse_key_file_credentials and not policy.allow_shared_identities


# -- through check(): manifests and identities are other modules' errors, surfaced typed ---


def _compile(tmp_path: Path) -> Path:
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def ingest() -> str:
        return "x"

    @dsl.pipeline(name="bad-inputs")
    def pipe() -> None:
        ingest()

    out = tmp_path / "pipe.yaml"
    compiler.Compiler().compile(pipe, str(out))
    return out


@pytest.mark.parametrize(
    ("manifest", "error"),
    [
        (
            "steps: {nosuchtask: {service_account: a-sa-1@ml-prod.iam.gserviceaccount.com}}\n",
            ManifestError,
        ),
        ("steps: [1, 2]\n", ManifestError),
        ("steps: {ingest: {needs: {'s3://x': ['storage.objects.get']}}}\n", InputError),
        ("steps: {ingest: {needs: {'gs://zt-raw-data': ['roles/storage.admin']}}}\n", InputError),
        ("steps: {ingest: {service_account: 'bad email'}}\n", IdentityError),
        ("steps: {ingest: {bogus: 1}}\n", ManifestError),
    ],
)
def test_bad_manifest_through_check(tmp_path: Path, manifest: str, error: type[ZtError]) -> None:
    from zt_pipelines.verification import check

    template = _compile(tmp_path)
    file = tmp_path / "manifest.yaml"
    file.write_text(manifest)
    with pytest.raises(error) as info:
        check(
            template,
            project="ml-prod",
            location="us-central1",
            pipeline_service_account=PIPELINE_SA,
            manifest=file,
            snapshot=world_dict(),
        )
    assert info.value.exit_code == 2
    assert info.value.where


def test_malformed_pipeline_sa_is_bad_input(tmp_path: Path) -> None:
    from zt_pipelines.verification import check

    with pytest.raises(IdentityError) as info:
        check(
            _compile(tmp_path),
            project="ml-prod",
            location="us-central1",
            pipeline_service_account="pipeline-sa@ml-prod.iam.gserviceaccount.com.",
            snapshot=world_dict(),
        )
    assert info.value.where == "pipeline service account"


def test_step_as_pipeline_identity_is_a_zt103_refusal_not_bad_input(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from zt_pipelines.verification import check

    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"steps: {{ingest: {{service_account: {PIPELINE_SA}}}}}\n")
    report = check(
        _compile(tmp_path),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        manifest=manifest,
        snapshot=world_dict(),
        now=datetime(2026, 11, 25, tzinfo=timezone.utc),
    )
    (f,) = report.findings
    assert f.code == "ZT103" and f.step == "ingest" and not report.allowed


def test_role_catalogue_holds_predefined_roles_only(tmp_path: Path) -> None:
    from zt_pipelines.policy.snapshot_file import load_catalogue_file

    file = tmp_path / "roles.json"
    file.write_text(json.dumps({"roles": {"roles/viewer": {"includedPermissions": ["a.b.get"]}}}))
    assert set(load_catalogue_file(file)) == {"roles/viewer"}
    # a custom role from a catalogue file would stand in for the tenant's real definition
    custom = "projects/ml-prod/roles/featureReader"
    file.write_text(json.dumps({"roles": {custom: {"includedPermissions": ["a.b.get"]}}}))
    with pytest.raises(SnapshotError) as info:
        load_catalogue_file(file)
    assert info.value.where == f"{file}: $.roles[{custom!r}]"


@pytest.mark.parametrize("code", sorted(UNRELAXABLE))
@pytest.mark.parametrize("how", ["severity", "suppression"])
def test_an_unrelaxable_code_is_refused_naming_itself_and_why(
    tmp_path: Path, code: str, how: str
) -> None:
    file = tmp_path / "zt-policy.yaml"
    data: dict[str, Any] = (
        {"severities": {code: "warning"}}
        if how == "severity"
        else {
            "suppressions": [
                {
                    "code": code,
                    "justification": "reviewed by the platform team",
                    "expires": "2099-01-01",
                }
            ]
        }
    )
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyFileError) as info:
        load_policy(file)
    assert code in info.value.message
    # the fix names every always-refusing code with what it means, this one included
    for other in UNRELAXABLE:
        assert f"{other} ({CODES[other][1]})" in (info.value.fix or "")
    assert f"the cause of {code}" in (info.value.fix or "")
