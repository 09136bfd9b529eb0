"""plan never makes an existing privileged account reachable: actAs on it is held back.

A manifest (or a template) chooses the step identities. Naming an existing account that
holds a basic role, an escalation-capable permission, or something nobody can see (a role of
unknown definition, a group of unknown membership) would have the plan grant the pipeline SA
actAs on it — the pipeline SA would then hold all of it. That actAs is held back for review
(exit 3), with the reason; the rest of the plan goes ahead.
"""

import json
from pathlib import Path

import pytest
from kfp import compiler, dsl

from zt_pipelines.cli import main
from zt_pipelines.demo import EXAMPLES_DIR
from zt_pipelines.policy.snapshot import (
    AllowPolicy,
    Binding,
    Node,
    Role,
    ServiceAccount,
    Snapshot,
)
from zt_pipelines.provision import Want, build_plan
from zt_pipelines.provision.model import ACT_AS, REVIEW_EXIT_CODE
from zt_pipelines.resources import ResourceRef

WORLD = EXAMPLES_DIR / "world.yaml"
PROJECT = "zt-proj"
CRM = f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"
PIPE = f"pipeline-runner@{PROJECT}.iam.gserviceaccount.com"
OLD = f"old-account@{PROJECT}.iam.gserviceaccount.com"
OLD_NODE = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{OLD}"


@dsl.component(base_image="python:3.11-slim")
def work(x: str) -> str:
    return x


@dsl.pipeline(name="priv", pipeline_root="gs://zt-demo-pipeline-root/priv")
def priv(x: str = "a") -> None:
    work(x=x)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as ended:
        main(list(argv))
    code = ended.value.code
    return code if isinstance(code, int) else 1, capsys.readouterr().out


def test_cli_plan_holds_back_actas_on_an_existing_editor_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "t.yaml"
    compiler.Compiler().compile(priv, str(template))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "steps:\n  work:\n    service_account: legacy-sa@zt-demo.iam.gserviceaccount.com\n"
        "    needs:\n      gs://zt-demo-raw-data: [storage.objects.get]\n"
    )
    args = ["plan", str(template), "--project", "zt-demo", "--snapshot", str(WORLD)]
    code, out = run_cli(capsys, *args, "--manifest", str(manifest), "--format", "json")
    assert code == REVIEW_EXIT_CODE, out
    plan = json.loads(out)
    legacy = "/serviceAccounts/legacy-sa@zt-demo.iam.gserviceaccount.com"
    assert not [g for g in plan["grants"] if g["resource"].endswith(legacy)]
    [held] = plan["held_back"]
    assert held["permission"] == ACT_AS and held["resource"].endswith(legacy)
    assert "roles/editor" in held["reason"]
    # the step's own need is still planned
    assert any(g["uri"] == "gs://zt-demo-raw-data" for g in plan["grants"])
    code, table = run_cli(capsys, *args, "--manifest", str(manifest))
    assert code == REVIEW_EXIT_CODE and "roles/editor" in table


def world(
    *bindings: tuple[str, Binding],
    roles: dict[str, Role] | None = None,
    groups: dict[str, tuple[str, ...]] | None = None,
) -> Snapshot:
    nodes = {
        CRM: Node(CRM, "project", None, AllowPolicy()),
        OLD_NODE: Node(OLD_NODE, "serviceAccount", CRM, AllowPolicy()),
        "//storage.googleapis.com/b": Node(
            "//storage.googleapis.com/b", "bucket", CRM, AllowPolicy()
        ),
    }
    by_node: dict[str, list[Binding]] = {}
    for name, b in bindings:
        by_node.setdefault(name, []).append(b)
    for name, bs in by_node.items():
        nodes[name] = Node(name, nodes[name].kind, nodes[name].parent, AllowPolicy(tuple(bs)))
    return Snapshot(
        nodes=nodes,
        roles=roles or {},
        service_accounts={OLD: ServiceAccount(OLD, PROJECT), PIPE: ServiceAccount(PIPE, PROJECT)},
        groups=groups or {},
    )


def plan_for(state: Snapshot, *, prune: bool = False, roles: str = "custom") -> object:
    wants = [
        Want(
            f"serviceAccount:{OLD}",
            ResourceRef("//storage.googleapis.com/b"),
            ("storage.objects.get",),
            "work",
        ),
        Want(
            f"serviceAccount:{PIPE}", ResourceRef(OLD_NODE), (ACT_AS,), "(pipeline)", declared=False
        ),
    ]
    return build_plan(
        wants,
        project=PROJECT,
        pipeline_service_account=PIPE,
        snapshot=state,
        prune=prune,
        roles=roles,
    )  # type: ignore[arg-type]


def actas_granted(p: object) -> bool:
    return any(g.resource == OLD_NODE and ACT_AS in g.permissions for g in p.grants)  # type: ignore[attr-defined]


OLD_M = f"serviceAccount:{OLD}"
CUSTOM = f"projects/{PROJECT}/roles/tokenminter"


@pytest.mark.parametrize(
    ("state", "why"),
    [
        # an escalation-capable permission through a predefined role (shipped catalogue)
        (world((CRM, Binding("roles/iam.serviceAccountTokenCreator", (OLD_M,)))), "getAccessToken"),
        # ... through a custom role the snapshot defines
        (
            world(
                (CRM, Binding(CUSTOM, (OLD_M,))),
                roles={CUSTOM: Role(CUSTOM, frozenset({"iam.serviceAccountKeys.create"}))},
            ),
            "serviceAccountKeys.create",
        ),
        # a role whose definition nobody could read: unknown posture
        (
            world((CRM, Binding(f"projects/{PROJECT}/roles/mystery", (OLD_M,)))),
            "definition is unknown",
        ),
        # a basic role through a group of unknown membership
        (world((CRM, Binding("roles/owner", ("group:admins@example.com",)))), "unknown membership"),
        # a basic role through a group it provably belongs to, on a bucket only
        (
            world(
                ("//storage.googleapis.com/b", Binding("roles/editor", ("group:ops@example.com",))),
                groups={"ops@example.com": (OLD_M,)},
            ),
            "roles/editor",
        ),
    ],
)
def test_actas_on_a_privileged_existing_account_is_held_back(state: Snapshot, why: str) -> None:
    for mode in ("custom", "predefined"):
        p = plan_for(state, roles=mode)
        assert not actas_granted(p), mode
        [held] = p.held_back  # type: ignore[attr-defined]
        assert held.permission == ACT_AS and held.resource == OLD_NODE and why in held.reason
        assert p.needs_review  # type: ignore[attr-defined]


def test_an_unprivileged_or_new_account_gets_actas_and_prune_clears_the_hold() -> None:
    # a plain read role, a group it is provably NOT in holding owner: nothing to hold back
    plain = world(
        ("//storage.googleapis.com/b", Binding("roles/storage.objectViewer", (OLD_M,))),
        (CRM, Binding("roles/owner", ("group:ops@example.com",))),
        groups={"ops@example.com": ("user:x@example.com",)},
    )
    p = plan_for(plain)
    assert actas_granted(p) and not p.held_back  # type: ignore[attr-defined]
    # an account that does not exist yet has no posture: created and granted
    fresh = Snapshot(nodes={CRM: Node(CRM, "project", None, AllowPolicy())})
    assert actas_granted(plan_for(fresh))
    # its editor binding is pruned by this very plan: acting as it is safe afterwards
    editor = world((CRM, Binding("roles/editor", (OLD_M,))))
    assert not actas_granted(plan_for(editor))
    assert actas_granted(plan_for(editor, prune=True))
    # ... but pruning never removes a group's grant: that one still holds it back
    via_group = world((CRM, Binding("roles/editor", (OLD_M, "group:admins@example.com"))))
    assert not actas_granted(plan_for(via_group, prune=True))
