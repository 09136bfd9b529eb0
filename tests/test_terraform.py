"""Terraform and gcloud rendering: valid HCL (python-hcl2 + ``terraform fmt``), right structure."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from test_provision_plan import PIPE_SA, PREP_SA, PROJECT, TRAIN_SA, make_plan, need, result, step

from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Node,
    ServiceAccount,
    Snapshot,
)
from zt_pipelines.provision.render import render_gcloud, render_terraform


def unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL quoting on strings and labels: decode quoted literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value


def clean(node: Any) -> Any:
    """Unquote every key and string, drop python-hcl2's ``__is_block__`` markers."""
    if isinstance(node, dict):
        return {unquote(k): clean(v) for k, v in node.items() if k != "__is_block__"}
    if isinstance(node, list):
        return [clean(v) for v in node]
    return unquote(node)


def parse(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = clean(hcl2.loads(text))
    return doc


def resources(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in doc.get("resource", []):
        for label, body in block.get(rtype, {}).items():
            found[label] = body
    return found


def test_terraform_parses_and_has_the_planned_structure(tmp_path: Path) -> None:
    plan = make_plan()
    text = render_terraform(plan)
    doc = parse(text)
    accounts = resources(doc, "google_service_account")
    assert sorted(unquote(a["account_id"]) for a in accounts.values()) == sorted(
        e.split("@")[0] for e in (PIPE_SA, PREP_SA, TRAIN_SA)
    )
    roles = resources(doc, "google_project_iam_custom_role")
    assert {unquote(r["role_id"]) for r in roles.values()} == {
        s.role.role_id for s in plan.custom_roles
    }
    for spec in plan.custom_roles:
        body = next(r for r in roles.values() if unquote(r["role_id"]) == spec.role.role_id)
        assert [unquote(p) for p in body["permissions"]] == list(spec.role.permissions)
    buckets = resources(doc, "google_storage_bucket_iam_member")
    sa_members = resources(doc, "google_service_account_iam_member")
    projects = resources(doc, "google_project_iam_member")
    datasets = resources(doc, "google_bigquery_dataset_iam_member")
    total = len(buckets) + len(sa_members) + len(projects) + len(datasets)
    assert total == len(plan.grants)
    conditional = [b for b in buckets.values() if "condition" in b]
    assert len(conditional) == sum(1 for g in plan.grants if g.condition is not None)
    expressions = {c["condition"][0]["expression"] for c in conditional}
    assert 'resource.name.startsWith("projects/_/buckets/models/objects/train")' in expressions
    for body in sa_members.values():
        # a custom role of exactly actAs, referenced so Terraform creates it first
        assert "google_project_iam_custom_role." in body["role"]
        # bound on the step SA itself, referencing the managed account
        assert "google_service_account." in body["service_account_id"]
    for body in buckets.values():
        # roles and members reference managed objects so Terraform orders creation
        assert "google_project_iam_custom_role." in body["role"]
        assert "google_service_account." in body["member"]
    assert {unquote(d["dataset_id"]) for d in datasets.values()} == {"features"}


def test_existing_accounts_get_import_blocks() -> None:
    snapshot = Snapshot(service_accounts={PREP_SA: ServiceAccount(PREP_SA, PROJECT)})
    doc = parse(render_terraform(make_plan(snapshot=snapshot)))
    imports = doc.get("import", [])
    assert len(imports) == 1
    assert unquote(imports[0]["id"]) == f"projects/{PROJECT}/serviceAccounts/{PREP_SA}"


def test_labels_are_unique_and_stable() -> None:
    a, b = render_terraform(make_plan()), render_terraform(make_plan())
    assert a == b
    doc = parse(a)
    labels = [label for block in doc["resource"] for body in block.values() for label in body]
    assert len(labels) == len(set(labels))


def test_hostile_strings_cannot_inject_hcl() -> None:
    odd = result(step("train", TRAIN_SA, need('gs://models/${evil}"%{x}#', "storage.objects.get")))
    text = render_terraform(make_plan(odd))
    doc = parse(text)
    buckets = resources(doc, "google_storage_bucket_iam_member")
    cond = next(
        b["condition"][0]
        for b in buckets.values()
        if "condition" in b and "models" in b["condition"][0]["expression"]
    )
    # escaped: Terraform reads a literal "${evil}", no interpolation, no broken string
    assert '$${evil}\\"%%{x}#' in cond["expression"]


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not installed")
def test_terraform_fmt_accepts_the_output_unchanged(tmp_path: Path) -> None:
    # `terraform validate` needs the google provider from the registry, unreachable here;
    # `terraform fmt -check` parses the HCL and fails on any formatting difference.
    snapshot = Snapshot(service_accounts={PREP_SA: ServiceAccount(PREP_SA, PROJECT)})
    stale = Node(
        "//storage.googleapis.com/raw-data",
        "bucket",
        policy=AllowPolicy((Binding("roles/storage.admin", (f"serviceAccount:{TRAIN_SA}",)),)),
    )
    catalogue = {
        "roles/storage.objectViewer": frozenset({"storage.objects.get", "storage.objects.list"}),
        "roles/storage.objectCreator": frozenset({"storage.objects.create"}),
        "roles/storage.bucketViewer": frozenset({"storage.buckets.get"}),
        "roles/bigquery.dataViewer": frozenset({"bigquery.tables.getData"}),
        "roles/aiplatform.user": frozenset(
            {
                "aiplatform.customJobs.cancel",
                "aiplatform.customJobs.create",
                "aiplatform.customJobs.get",
                "aiplatform.metadataStores.get",
            }
        ),
    }
    for name, plan in {
        "custom": make_plan(snapshot=snapshot),
        "org": make_plan(organization="123456789"),
        "pruned": make_plan(snapshot=Snapshot(nodes={stale.name: stale}), prune=True),
        "predefined": make_plan(roles="predefined", catalogue=catalogue),
    }.items():
        path = tmp_path / f"{name}.tf"
        path.write_text(render_terraform(plan))
        proc = subprocess.run(
            ["terraform", "fmt", "-check", "-diff", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gcloud_script_is_valid_shell_with_one_command_per_change() -> None:
    train_bucket = Node(
        "//storage.googleapis.com/raw-data",
        "bucket",
        policy=AllowPolicy(
            (Binding("roles/storage.objectAdmin", (f"serviceAccount:{TRAIN_SA}",)),), etag="x"
        ),
    )
    plan = make_plan(snapshot=Snapshot(nodes={train_bucket.name: train_bucket}), prune=True)
    script = render_gcloud(plan)
    lines = [ln for ln in script.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "set -euo pipefail"
    commands = [shlex.split(ln) for ln in lines[1:]]
    creates = [
        c for c in commands if c[:3] == ["gcloud", "iam", "service-accounts"] and c[3] == "create"
    ]
    assert len(creates) == 3
    roles = [c for c in commands if c[:4] == ["gcloud", "iam", "roles", "create"]]
    assert len(roles) == len(plan.custom_roles)
    adds = [c for c in commands if any(w.startswith("add-iam-policy-binding") for w in c)]
    assert len(adds) == len(plan.additions)
    removes = [c for c in commands if "remove-iam-policy-binding" in c]
    assert removes == [
        [
            "gcloud",
            "storage",
            "buckets",
            "remove-iam-policy-binding",
            "gs://raw-data",
            f"--member=serviceAccount:{TRAIN_SA}",
            "--role=roles/storage.objectAdmin",
            "--condition=None",
        ]
    ]
    cond = [c for c in commands if any(w.startswith("--condition=expression=") for w in c)]
    assert cond and all("title=zt prefix" in " ".join(c) for c in cond)
    bash = shutil.which("bash")
    if bash:
        subprocess.run([bash, "-n", "-c", script], check=True, timeout=30)


def test_gcloud_condition_flag_splits_into_exactly_its_three_fields() -> None:
    # gcloud splits dict flags on ',' (or on D after '^D^'): a prefix holding ',' and '|' must
    # not cut the expression short
    prefix = "runs,a|b/"
    planned = make_plan(
        result(step("train", TRAIN_SA, need(f"gs://raw-data/{prefix}", "storage.objects.get")))
    )
    (flag,) = [
        w.removeprefix("--condition=")
        for line in render_gcloud(planned).splitlines()
        if "raw-data" in line
        for w in shlex.split(line)
        if w.startswith("--condition=^")
    ]
    delimiter = flag[1]
    fields = dict(f.split("=", 1) for f in flag[3:].split(delimiter))
    assert set(fields) == {"expression", "title", "description"}
    assert fields["expression"].endswith(f'/objects/{prefix}")')
