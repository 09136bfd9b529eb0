"""plan/apply never provision a pipeline identity of another project, and apply is all or
nothing per step.

A manifest (written by the pipeline's author) chooses the step identities. One living in
another project than the pipeline's is administered there: whoever administers that project
can mint its keys and tokens, so a data grant to it is a standing path nobody here reviews.
``plan`` holds such identities back whole (no account, no grant, no actAs on them; exit 3,
naming them) unless an allow-list of projects says otherwise (``--allow-identity-project``,
``ZT_ALLOW_IDENTITY_PROJECT``, ``identities.allowedProjects``); ``apply`` re-checks and
refuses them. When a write fails part-way, every step not finished has the bindings written
for it rolled back.

(No ``from __future__ import annotations`` here: KFP reads the component annotations.)
"""

import dataclasses
import json
from pathlib import Path

import pytest
from test_provision_apply import (
    FULL_NEEDS,
    PIPE_SA,
    PREP_SA,
    PROJECT,
    ROOT,
    TRAIN_SA,
    e2e_pipeline,
    empty_project,
    make_plan,
    members_of,
)

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.cli import main
from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.identity import in_projects
from zt_pipelines.provision import ProvisioningRefused, Want, build_plan, check_plan
from zt_pipelines.provision.apply import ApplyIncomplete, apply_plan
from zt_pipelines.provision.model import ACT_AS, REVIEW_EXIT_CODE, Grant
from zt_pipelines.resources import ResourceRef

FOREIGN = "exfil-robot@attacker-proj.iam.gserviceaccount.com"
FOREIGN_NODE = f"//iam.googleapis.com/projects/attacker-proj/serviceAccounts/{FOREIGN}"
RAW = "//storage.googleapis.com/zt-e2e-raw"
ADMIN = "user:admin@example.com"


def foreign_needs() -> dict:
    needs = json.loads(json.dumps(FULL_NEEDS))
    needs["steps"]["prep"]["service_account"] = FOREIGN
    return needs


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kfp import compiler

    path = tmp_path_factory.mktemp("foreign") / "pipeline.yaml"
    compiler.Compiler().compile(e2e_pipeline, package_path=str(path))
    return path


def names_foreign(grant: Grant) -> bool:
    return FOREIGN in grant.member or grant.resource == FOREIGN_NODE


def test_a_step_identity_of_another_project_is_held_back_whole(template: Path) -> None:
    planned = make_plan(template, foreign_needs(), empty_project())
    assert planned.needs_review
    [held] = planned.foreign_identities
    assert (held.email, held.project, held.steps) == (FOREIGN, "attacker-proj", ("prep",))
    # no account created there, no grant to it, no actAs on it
    assert FOREIGN not in {a.email for a in planned.accounts}
    assert not [g for g in planned.grants if names_foreign(g)]
    withheld = {(h.resource, h.permission) for h in planned.held_back}
    assert (RAW, "storage.objects.list") in withheld and (FOREIGN_NODE, ACT_AS) in withheld
    table = zt.provision.render_table(planned)
    assert "Held back: identities of another project than zt-e2e-proj" in table
    assert "--allow-identity-project attacker-proj" in table
    # the rest of the pipeline is planned as before
    assert {a.email for a in planned.accounts} >= {PIPE_SA, TRAIN_SA}
    assert json.loads(zt.provision.render_json(planned))["foreign_identities"][0]["email"] == (
        FOREIGN
    )


def test_the_allow_list_lets_it_be_planned(template: Path, monkeypatch) -> None:
    allowed = make_plan(
        template,
        foreign_needs(),
        empty_project(),
        identity_projects=["attacker-proj"],
        organization="777",
    )
    assert not allowed.foreign_identities and not allowed.needs_review
    assert any(g.member == f"serviceAccount:{FOREIGN}" for g in allowed.grants)
    assert allowed.identity_projects == ("attacker-proj",)
    check_plan(allowed)
    # the environment variable (comma or space separated) and the policy file say the same
    monkeypatch.setenv("ZT_ALLOW_IDENTITY_PROJECT", "other-proj, attacker-proj")
    assert not make_plan(
        template, foreign_needs(), empty_project(), organization="777"
    ).foreign_identities
    monkeypatch.delenv("ZT_ALLOW_IDENTITY_PROJECT")
    policy = {"version": 1, "identities": {"allowedProjects": ["attacker-proj"]}}
    assert not make_plan(
        template, foreign_needs(), empty_project(), policy=policy, organization="777"
    ).needs_review
    # another project is not on the list
    other = make_plan(template, foreign_needs(), empty_project(), identity_projects=["other-proj"])
    assert [f.email for f in other.foreign_identities] == [FOREIGN]


@pytest.mark.parametrize("bad", ["*", "attacker-*", "", "Attacker-Proj", "a b"])
def test_the_allow_list_takes_project_ids_only(template: Path, bad: str) -> None:
    with pytest.raises(zt.InputError, match="not a project id"):
        make_plan(template, foreign_needs(), empty_project(), identity_projects=[bad])
    with pytest.raises(zt.PolicyFileError):
        make_plan(
            template,
            foreign_needs(),
            empty_project(),
            policy={"version": 1, "identities": {"allowedProjects": [bad]}},
        )


def test_a_pipeline_identity_of_another_project_is_held_back_too(template: Path) -> None:
    planned = zt.plan(
        template,
        project=PROJECT,
        pipeline_service_account=FOREIGN,
        pipeline_root=ROOT,
        manifest=FULL_NEEDS,
        snapshot=empty_project(),
    )
    assert [(f.email, f.steps) for f in planned.foreign_identities] == [(FOREIGN, ("(pipeline)",))]
    assert not [g for g in planned.grants if names_foreign(g)]
    assert FOREIGN not in {a.email for a in planned.accounts}
    # the steps' own data grants are still planned
    assert any(g.member == f"serviceAccount:{TRAIN_SA}" for g in planned.grants)


def test_launched_and_serving_identities_and_domain_scoped_projects() -> None:
    wants = [
        Want(f"serviceAccount:{TRAIN_SA}", ResourceRef(RAW), ("storage.objects.get",), "train")
    ]
    planned = build_plan(
        wants,
        project=PROJECT,
        pipeline_service_account=PIPE_SA,
        step_accounts={TRAIN_SA: ["train"], FOREIGN: ["train (job)"]},
    )
    assert [(f.email, f.steps) for f in planned.foreign_identities] == [(FOREIGN, ("train (job)",))]
    assert FOREIGN not in {a.email for a in planned.accounts}
    # a domain-scoped project is named example.com:proj; its accounts' emails carry it dotted
    assert in_projects(
        "sa-name@example.com.ml-prod.iam.gserviceaccount.com", ["example.com:ml-prod"]
    )
    assert not in_projects("sa-name@ml-prod.iam.gserviceaccount.com", ["example.com:ml-prod"])
    assert not in_projects("sa-name@ml-prod-x.iam.gserviceaccount.com", ["ml-prod"])
    # a project given by its number: its id comes from the state
    numbered = build_plan(
        wants,
        project="424242424242",
        organization="777",
        pipeline_service_account=PIPE_SA,
        step_accounts={TRAIN_SA: ["train"]},
        snapshot=empty_project(),
    )
    assert not numbered.foreign_identities


def test_apply_refuses_a_plan_that_provisions_a_foreign_identity(template: Path) -> None:
    allowed = make_plan(
        template,
        foreign_needs(),
        empty_project(),
        identity_projects=["attacker-proj"],
        organization="777",
    )
    # the same plan, its allow-list edited away: apply's re-check refuses before any write
    tampered = dataclasses.replace(allowed, identity_projects=())
    with pytest.raises(ProvisioningRefused, match="attacker-proj"):
        check_plan(tampered)
    with Emulator(empty_project()) as emu:
        factory = ClientFactory(
            emulator_credentials(ADMIN), emulator_host=emu.address, project=PROJECT
        )
        with pytest.raises(ProvisioningRefused):
            apply_plan(tampered, factory=factory, retry=no_wait_policy(), audit_log=False)
        assert emu.writes() == []
        factory.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ended:
        main(list(argv))
    captured = capsys.readouterr()
    code = ended.value.code
    return code if isinstance(code, int) else 1, captured.out, captured.err


def test_cli_plan_exits_3_naming_it_and_apply_writes_nothing_for_it(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(foreign_needs()))
    policy = tmp_path / "zt-policy.yaml"
    policy.write_text("version: 1\nidentities:\n  allowedProjects: [attacker-proj]\n")
    args = [str(template), "--project", PROJECT, "--pipeline-sa", PIPE_SA]
    args += ["--pipeline-root", ROOT, "--manifest", str(manifest)]
    with Emulator(empty_project(), enforce_iam=False) as emu:
        monkeypatch.setenv("ZT_EMULATOR_HOST", emu.address)
        monkeypatch.setenv("ZT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
        code, out, err = run_cli(capsys, "plan", *args)
        assert code == REVIEW_EXIT_CODE
        assert f"held back: 1 identity of another project than {PROJECT}" in err
        assert FOREIGN in err and "--allow-identity-project attacker-proj" in err
        code, out, err = run_cli(capsys, "apply", "--yes", *args)
        assert code == REVIEW_EXIT_CODE and FOREIGN in err
        state = emu.state
        assert not any(FOREIGN in m for _, m, _ in members_of(state, RAW))
        assert FOREIGN not in state.service_accounts
        # the rest of the pipeline was provisioned
        assert any(TRAIN_SA in m for _, m, _ in members_of(state, RAW))
        # each way of allowing it: option, environment variable, policy file
        for extra, env in (
            (["--allow-identity-project", "attacker-proj"], None),
            ([], "attacker-proj"),
            (["--policy", str(policy)], None),
        ):
            if env:
                monkeypatch.setenv("ZT_ALLOW_IDENTITY_PROJECT", env)
            code, out, err = run_cli(
                capsys,
                "plan",
                *args,
                *extra,
                "--empty",
                "--organization",
                "777",
                "--format",
                "json",
            )
            monkeypatch.delenv("ZT_ALLOW_IDENTITY_PROJECT", raising=False)
            assert code == 0, err
            assert any(FOREIGN in g["member"] for g in json.loads(out)["grants"])


# -- all or nothing per step ------------------------------------------------------------------


def test_a_failed_write_rolls_back_every_unfinished_step(template: Path, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    with Emulator(empty_project()) as emu:
        factory = ClientFactory(
            emulator_credentials(ADMIN), emulator_host=emu.address, project=PROJECT
        )
        planned = make_plan(template, FULL_NEEDS, emu.state)
        # BigQuery, the project and the service accounts are written first; the buckets fail
        emu.add_fault(Fault(method="storage.buckets.setIamPolicy", code="PERMISSION_DENIED"))
        with pytest.raises(ApplyIncomplete) as info:
            apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=audit)
        exc = info.value
        assert isinstance(exc, zt.ApiError) and exc.code == "PERMISSION_DENIED"
        assert "apply stopped at gs://zt-e2e-models" in exc.what
        assert "rolled back" in exc.what and PREP_SA in exc.what and TRAIN_SA in exc.what
        assert exc.rolled_back and not exc.not_rolled_back
        # nothing of a step that could not finish stays: not its dataset/table grant, not the
        # pipeline SA's actAs on it
        state = emu.state
        for name in {g.resource for g in exc.rolled_back}:
            present = members_of(state, name)
            for g in exc.rolled_back:
                if g.resource == name:
                    key = (g.role, g.member, g.condition.expression if g.condition else "")
                    assert key not in present, (name, key)
        for email in (PREP_SA, TRAIN_SA):
            node = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{email}"
            assert not [m for _, m, _ in members_of(state, node) if PIPE_SA in m]
        [record] = AuditLog(audit).records()
        assert record["outcome"] == "refused" and "PERMISSION_DENIED" in record["reason"]
        assert {f["change"] for f in record["findings"]} >= {"rolled-back"}
        # the cause gone, a re-run provisions everything
        emu.clear_faults()
        again = apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
        assert {g.key for g in again.added} == {g.key for g in planned.grants}
        factory.close()


def test_steps_finished_before_the_failure_stay(template: Path, tmp_path: Path) -> None:
    """The submitter's unit (actAs on the pipeline SA, pipelineJobs.create on the project) is
    written before the buckets: it is complete and stays; the steps are rolled back."""
    with Emulator(empty_project()) as emu:
        factory = ClientFactory(
            emulator_credentials(ADMIN), emulator_host=emu.address, project=PROJECT
        )
        planned = make_plan(template, FULL_NEEDS, emu.state, submitter="user:alice@example.com")
        emu.add_fault(Fault(method="storage.buckets.setIamPolicy", code="PERMISSION_DENIED"))
        with pytest.raises(ApplyIncomplete) as info:
            apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=False)
        exc = info.value
        assert any("alice@example.com" in s for s in exc.completed_steps), exc.completed_steps
        assert "provisioned completely" in exc.what
        kept = {(g.resource, g.member) for g in exc.result.added}
        assert kept and all("alice@example.com" in m for _, m in kept)
        for resource, member in kept:
            assert any(m == member for _, m, _ in members_of(emu.state, resource))
        factory.close()


def test_a_binding_that_cannot_be_rolled_back_is_named(template: Path, tmp_path: Path) -> None:
    """The rollback itself fails (the service-account policies cannot be written any more):
    the error says which bindings to remove by hand, and the audit record lists them."""
    from zt_pipelines.gcp.progress import reporting

    audit = tmp_path / "audit.jsonl"
    with Emulator(empty_project()) as emu:
        factory = ClientFactory(
            emulator_credentials(ADMIN), emulator_host=emu.address, project=PROJECT
        )
        planned = make_plan(template, FULL_NEEDS, emu.state)
        before_buckets = (
            sum(a.state == "create" for a in planned.accounts)
            + sum(r.state != "exists" for r in planned.custom_roles)
            + len({g.resource for g in planned.grants if not g.resource.startswith("//storage")})
        )

        def tick(done: int, total: int) -> None:
            if done == before_buckets:  # every policy but the buckets' is written: now fail
                emu.add_fault(Fault(method="storage.buckets.setIamPolicy", code="UNAVAILABLE"))
                emu.add_fault(
                    Fault(method="google.iam.admin.v1.IAM/SetIamPolicy", code="PERMISSION_DENIED")
                )

        with reporting(tick), pytest.raises(ApplyIncomplete) as info:
            apply_plan(planned, factory=factory, retry=no_wait_policy(), audit_log=audit)
        exc = info.value
        assert exc.not_rolled_back and all(
            g.resource.startswith("//iam.googleapis.com/") for g in exc.not_rolled_back
        )
        assert "COULD NOT ROLL BACK (remove by hand)" in exc.what
        [record] = AuditLog(audit).records()
        changes = {f["change"] for f in record["findings"]}
        assert {"rolled-back", "rollback-failed"} <= changes
        factory.close()
