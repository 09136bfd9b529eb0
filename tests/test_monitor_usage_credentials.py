"""Usage tells a step identity's misuse by who really used it, not only by when: every field
of a Cloud Audit Logs entry that says how the identity authenticated (a user-managed key, a
delegation chain, a federated principal), and every level of ``exemptedMembers`` (project,
folder, organisation; a service or allServices) that keeps an identity out of the logs.
End to end: runs through zt_pipelines.PipelineJob on the emulator, read back with the real
Cloud Logging and Resource Manager clients."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from google.cloud.audit import audit_log_pb2
from monitor_world import AUDITOR, PROJECT
from test_monitor_usage import INGEST_SA, LOGS_ON, TRAIN_SA, run_pipeline
from test_monitor_usage import audit as audit  # fixtures, shared
from test_monitor_usage import emu as emu
from test_monitor_usage import template as template

from zt_pipelines.audit import AuditLog
from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.emulator.audit_logs import build_entry
from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.monitor.service import usage
from zt_pipelines.monitor.usage import UsageVerdict

OBJ = "//storage.googleapis.com/zt-demo-raw-data/rows.csv"
KEY = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{INGEST_SA}/keys/0123abcd"
AGENT = "service-123456789012@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"


def check(audit: AuditLog) -> UsageVerdict:
    return usage(
        PROJECT,
        audit_log=audit,
        factory=ClientFactory(emulator_credentials(AUDITOR)),
        retry=no_wait_policy(2),
    )


def entry(at: datetime.datetime, shape: Any) -> tuple[Any, ...]:
    """One Data Access entry of ingest-sa reading its declared object at ``at``, its
    authenticationInfo shaped by ``shape``."""
    log_name, raw = build_entry(
        project=PROJECT, principal=INGEST_SA, permission="storage.objects.get", resource=OBJ, at=at
    )
    payload = audit_log_pb2.AuditLog()
    raw.proto_payload.Unpack(payload)
    shape(payload.authentication_info)
    payload.request_metadata.caller_ip = "203.0.113.7"
    raw.proto_payload.Pack(payload)
    raw.insert_id = uuid.uuid4().hex[:16]
    return at, INGEST_SA, log_name, raw


def _key(auth: Any) -> None:
    auth.service_account_key_name = KEY


def _user_delegates(auth: Any) -> None:
    hop = auth.service_account_delegation_info.add()
    hop.first_party_principal.principal_email = "mallory@example.com"


def _look_alike_agent_delegates(auth: Any) -> None:  # `service-1` is a legal account id anywhere
    hop = auth.service_account_delegation_info.add()
    hop.first_party_principal.principal_email = "service-1@attacker-proj.iam.gserviceaccount.com"


def _look_alike_agent_domain_delegates(auth: Any) -> None:
    hop = auth.service_account_delegation_info.add()
    hop.first_party_principal.principal_email = "service-1@gcp-sa-evil.iam.gserviceaccount.com"


def _federated(auth: Any) -> None:
    hop = auth.service_account_delegation_info.add()
    hop.third_party_principal.third_party_claims["iss"] = "https://token.example"


def _federated_caller(auth: Any) -> None:
    auth.third_party_principal["iss"] = "https://token.example"


def _agent_delegates(auth: Any) -> None:  # how Vertex runs the attached identity: expected
    hop = auth.service_account_delegation_info.add()
    hop.first_party_principal.principal_email = AGENT


def _inside_ingest(emu: Emulator) -> datetime.datetime:
    [run, *_] = [r for r in emu.step_runs if r.service_account == INGEST_SA]
    return run.start + (run.end - run.start) / 2


@pytest.mark.parametrize(
    ("shape", "named"),
    [
        (_key, f"with the user-managed key {KEY}"),
        (_user_delegates, "delegated by mallory@example.com"),
        (
            _look_alike_agent_delegates,
            "delegated by service-1@attacker-proj.iam.gserviceaccount.com",
        ),
        (
            _look_alike_agent_domain_delegates,
            "delegated by service-1@gcp-sa-evil.iam.gserviceaccount.com",
        ),
        (_federated, "delegated by a third-party (federated) principal"),
        (_federated_caller, "as a third-party (federated) principal"),
    ],
)
def test_a_use_not_made_by_the_jobs_credentials_is_misuse_inside_the_run_window(
    emu: Emulator, template: str, audit: AuditLog, shape: Any, named: str
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    emu.add_log_entries([entry(_inside_ingest(emu), shape)])
    verdict = check(audit)
    assert not verdict.clean
    [misuse] = verdict.report.by_code("ZT632")
    assert named in misuse.message and INGEST_SA in misuse.message
    assert named in misuse.evidence[0].detail
    # the key's use is not the run's: the declared need is still called used by the run
    assert not verdict.report.by_code("ZT630")


def test_the_vertex_service_agent_delegating_the_attached_identity_is_the_runs_own_use(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    emu.add_log_entries([entry(_inside_ingest(emu), _agent_delegates)])
    verdict = check(audit)
    assert verdict.clean, [f.message for f in verdict.report.findings]


def test_many_entries_one_with_a_key_among_them_is_found(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    # a page read column-wise must not hide the one entry that names a key
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    at = _inside_ingest(emu)
    plain = [entry(at, lambda auth: None) for _ in range(40)]
    emu.add_log_entries([*plain[:20], entry(at, _key), *plain[20:]])
    verdict = check(audit)
    assert [f.code for f in verdict.report.errors] == ["ZT632"]


EXEMPT = (
    "DATA_READ",
    "DATA_WRITE",
    f"DATA_READ exempts serviceAccount:{INGEST_SA}",
    f"DATA_WRITE exempts serviceAccount:{INGEST_SA}",
)


@pytest.mark.parametrize(
    ("where", "configs"),
    [
        (PROJECT, {"allServices": EXEMPT}),
        (
            PROJECT,
            {
                **LOGS_ON,
                "storage.googleapis.com": (f"DATA_READ exempts serviceAccount:{INGEST_SA}",),
            },
        ),
        ("organizations/100", {"allServices": EXEMPT}),
    ],
    ids=["project-allServices", "project-service", "organisation"],
)
def test_an_identity_exempted_from_data_access_logs_is_not_verified(
    emu: Emulator, template: str, audit: AuditLog, where: str, configs: dict[str, Any]
) -> None:
    emu.set_audit_configs(PROJECT, LOGS_ON)
    emu.set_audit_configs(where, configs)
    run_pipeline(template, audit)
    # a leaked key used as the exempted identity leaves no entry: nothing can say so
    verdict = check(audit)
    off = verdict.report.by_code("ZT633")
    assert off and all(f.principal == f"serviceAccount:{INGEST_SA}" for f in off), [
        f.message for f in verdict.report.findings
    ]
    assert "exempt" in off[0].message and "DATA_READ exempts" in off[0].message
    # nothing of the exempted step is called unused; the other steps still are verified
    assert not [f for f in verdict.report.by_code("ZT630") if f.step == "ingest"]
    assert verdict.proposal["ingest"]["needs"]
    assert not any(TRAIN_SA in f.message for f in off)


def test_a_group_exemption_may_hold_the_identity(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(
        PROJECT,
        {"allServices": ("DATA_READ", "DATA_WRITE", "DATA_READ exempts group:noisy@example.com")},
    )
    run_pipeline(template, audit)
    verdict = check(audit)
    off = verdict.report.by_code("ZT633")
    assert {f.principal for f in off} >= {
        f"serviceAccount:{INGEST_SA}",
        f"serviceAccount:{TRAIN_SA}",
    }
    assert all("group:noisy@example.com" in f.message for f in off)
    assert not verdict.report.by_code("ZT630")


def test_an_exemption_of_another_identity_changes_nothing(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    emu.set_audit_configs(
        PROJECT,
        {
            "allServices": (
                "DATA_READ",
                "DATA_WRITE",
                "DATA_READ exempts serviceAccount:other@x.iam.gserviceaccount.com",
            )
        },
    )
    run_pipeline(template, audit)
    verdict = check(audit)
    assert verdict.clean and not verdict.report.by_code("ZT633"), [
        f.message for f in verdict.report.findings
    ]


def test_pages_where_every_hop_is_a_service_agent_stay_column_wise(
    emu: Emulator, template: str, audit: AuditLog
) -> None:
    from google.cloud.logging_v2.types import ListLogEntriesResponse

    from zt_pipelines.gcp.audit_logs import read_page
    from zt_pipelines.monitor.usage import AccessBatch, Accesses

    at = datetime.datetime(2026, 11, 29, 12, 0, 0, 500000, tzinfo=datetime.timezone.utc)
    agents = [entry(at, _agent_delegates)[3] for _ in range(30)]
    page = ListLogEntriesResponse.pb()(entries=agents)
    out = Accesses()
    read_page(page.SerializeToString(), out)
    [batch] = out.parts()
    assert isinstance(batch, AccessBatch) and not any(batch.via) and len(batch) == 30
    # one hop by someone else among them: read entry by entry, and named
    mixed = ListLogEntriesResponse.pb()(entries=[*agents, entry(at, _user_delegates)[3]])
    out = Accesses()
    read_page(mixed.SerializeToString(), out)
    assert [a.via for a in out if a.via] == ["delegated by mallory@example.com"]
    # end to end: inside the run, among the agent's own uses
    emu.set_audit_configs(PROJECT, LOGS_ON)
    run_pipeline(template, audit)
    inside = _inside_ingest(emu)
    emu.add_log_entries(
        [*(entry(inside, _agent_delegates) for _ in range(30)), entry(inside, _user_delegates)]
    )
    verdict = check(audit)
    assert [f.code for f in verdict.report.errors] == ["ZT632"]
