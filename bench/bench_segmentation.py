"""Segmentation checks: 100 steps over 500 firewall rules and 20 perimeters.

Measures :func:`zt_pipelines.segmentation.segmentation_findings` (every perimeter check and the
static firewall evaluation of every step) against ``evaluate()`` — the IAM verification of the
same pipeline on the same snapshot — in the same run. Goal: ratio <= 0.5.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from datetime import datetime, timezone

from zt_pipelines.model import JobFields, Need, RewriteResult, StepIdentity
from zt_pipelines.policy.engine import evaluate
from zt_pipelines.policy.requirements import CheckContext, derive_requirements
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Node, Role, ServiceAccount, Snapshot
from zt_pipelines.resources import ResourceRef
from zt_pipelines.segmentation import SegmentationPolicy, segmentation_findings
from zt_pipelines.segmentation.snapshot import load_section

STEPS = 100
RULES = 500
PERIMETERS = 20
NETWORKS = 10
PROJECT = "bench-proj"
NUMBER = "100000000001"
LOCATION = "us-central1"
CRM = "//cloudresourcemanager.googleapis.com/"
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)
PIPELINE_SA = f"pipeline@{PROJECT}.iam.gserviceaccount.com"


def _sa(i: int) -> str:
    return f"step-{i:03d}@{PROJECT}.iam.gserviceaccount.com"


def _world() -> tuple[Snapshot, RewriteResult]:
    org = CRM + "organizations/1"
    project = CRM + f"projects/{PROJECT}"
    reader = Role("roles/storage.objectViewer", frozenset({"storage.objects.get"}))
    launcher = Role(
        "roles/aiplatform.customCodeServiceAgent",
        frozenset({"aiplatform.customJobs.create", "aiplatform.customJobs.get"}),
    )
    nodes = {
        org: Node(org, "organization"),
        project: Node(
            project,
            "project",
            parent=org,
            project_number=NUMBER,
            policy=AllowPolicy((Binding(launcher.name, (f"serviceAccount:{PIPELINE_SA}",)),)),
        ),
    }
    sas = {PIPELINE_SA: ServiceAccount(PIPELINE_SA, PROJECT)}
    steps = []
    for i in range(STEPS):
        email = _sa(i)
        sas[email] = ServiceAccount(email, PROJECT)
        bucket = f"//storage.googleapis.com/bench-{i % 40:02d}"
        nodes[bucket] = Node(
            bucket,
            "bucket",
            parent=project,
            policy=AllowPolicy((Binding(reader.name, (f"serviceAccount:{email}",)),)),
        )
        net = i % NETWORKS
        steps.append(
            StepIdentity(
                task=f"step-{i:03d}",
                component=f"comp-step-{i:03d}",
                executor=f"exec-step-{i:03d}",
                service_account=email,
                source="declared",
                needs=(Need(ResourceRef(bucket), ("storage.objects.get",)),),
                job=JobFields(
                    psc_interface_config={
                        "network_attachment": (
                            f"projects/{PROJECT}/regions/{LOCATION}/networkAttachments/att-{net}"
                        )
                    },
                    reach=("storage.googleapis.com", f"10.{100 + net}.0.0/16 tcp:5432"),
                ),
            )
        )
    section = {
        "projectNumbers": {PROJECT: NUMBER},
        "perimeters": [
            {
                "name": f"accessPolicies/9/servicePerimeters/p{k}",
                "status": {
                    "resources": [f"projects/{NUMBER}"] if k == 0 else [f"projects/{k}"],
                    "restrictedServices": ["aiplatform.googleapis.com", "storage.googleapis.com"],
                    "vpcAccessibleServices": {
                        "enableRestriction": True,
                        "allowedServices": ["RESTRICTED-SERVICES"],
                    },
                },
            }
            for k in range(PERIMETERS)
        ],
        "networks": [{"name": f"projects/{PROJECT}/global/networks/n{n}"} for n in range(NETWORKS)],
        "subnetworks": [
            {
                "name": f"projects/{PROJECT}/regions/{LOCATION}/subnetworks/s{n}",
                "network": f"projects/{PROJECT}/global/networks/n{n}",
                "ipCidrRange": f"10.{n}.0.0/24",
            }
            for n in range(NETWORKS)
        ],
        "networkAttachments": [
            {
                "name": f"projects/{PROJECT}/regions/{LOCATION}/networkAttachments/att-{n}",
                "network": f"projects/{PROJECT}/global/networks/n{n}",
                "subnetworks": [f"projects/{PROJECT}/regions/{LOCATION}/subnetworks/s{n}"],
            }
            for n in range(NETWORKS)
        ],
        "firewalls": _rules(),
    }
    snapshot = Snapshot(
        nodes=nodes,
        roles={reader.name: reader, launcher.name: launcher},
        service_accounts=sas,
        segmentation=load_section(section, "bench"),
    )
    return snapshot, RewriteResult(spec={}, pipeline_name="bench", steps=tuple(steps))


def _rules() -> list[dict[str, object]]:
    """500 rules over 10 networks: per network a deny-all egress, allows for the reach (some
    targeting step service accounts), ingress rules and unrelated egress noise."""
    out: list[dict[str, object]] = []
    for k in range(RULES):
        n = k % NETWORKS
        net = f"projects/{PROJECT}/global/networks/n{n}"
        kind = (k // NETWORKS) % 5
        rule: dict[str, object] = {"name": f"r{k}", "network": net, "priority": 1000 + k % 7}
        if k < NETWORKS:
            rule.update(direction="EGRESS", priority=65000, denied=[{"IPProtocol": "all"}])
        elif k < 2 * NETWORKS:
            rule.update(
                direction="EGRESS",
                allowed=[{"IPProtocol": "tcp", "ports": ["5432"]}],
                destinationRanges=[f"10.{100 + n}.0.0/16"],
            )
        elif kind == 0:
            rule.update(
                direction="EGRESS",
                allowed=[{"IPProtocol": "tcp", "ports": ["443"]}],
                destinationRanges=["199.36.153.4/30"],
            )
        elif kind == 1:
            rule.update(
                direction="EGRESS",
                allowed=[{"IPProtocol": "tcp", "ports": ["5432"]}],
                destinationRanges=[f"10.{100 + n}.{k % 250}.0/24"],
                targetServiceAccounts=[_sa((k * 13) % STEPS)],
            )
        elif kind == 2:
            rule.update(
                direction="EGRESS",
                denied=[{"IPProtocol": "udp", "ports": [str(1000 + k)]}],
                destinationRanges=[f"172.16.{k % 250}.0/24"],
            )
        else:
            rule.update(
                direction="INGRESS",
                allowed=[{"IPProtocol": "tcp", "ports": ["22", "8080-8090"]}],
                sourceRanges=[f"35.{k % 250}.0.0/16"],
            )
        out.append(rule)
    return out


def _interleaved(
    first: Callable[[], object], second: Callable[[], object], rounds: int = 15
) -> tuple[float, float]:
    """Best time of each, the two timed alternately so both see the same load (the machine is
    shared)."""
    a_best = b_best = float("inf")
    for _ in range(rounds):
        gc.collect()
        gc.disable()  # as timeit does: one run's garbage is not collected in the other's time
        try:
            start = time.process_time()
            first()
            a = time.process_time() - start
            start = time.process_time()
            second()
            b = time.process_time() - start
        finally:
            gc.enable()
        a_best, b_best = min(a_best, a), min(b_best, b)
    return a_best, b_best


def run() -> list[str]:
    """Time both on the same pipeline and snapshot; report the ratio."""
    snapshot, result = _world()
    ctx = CheckContext(project=PROJECT, location=LOCATION, pipeline_service_account=PIPELINE_SA)
    requirements = derive_requirements(
        result,
        project=PROJECT,
        location=LOCATION,
        pipeline_service_account=PIPELINE_SA,
        pipeline_root=None,
        submitter=None,
    )
    policy = SegmentationPolicy(require_perimeter=True, require_isolation=True)
    findings, _ = segmentation_findings(requirements, result.steps, snapshot, policy, ctx)
    engine, seg = _interleaved(
        lambda: evaluate(requirements, result.steps, snapshot, None, now=NOW, context=ctx),
        lambda: segmentation_findings(requirements, result.steps, snapshot, policy, ctx),
    )
    return [
        f"{STEPS} steps, {RULES} firewall rules, {PERIMETERS} perimeters "
        f"({len(findings)} finding(s))",
        f"evaluate(): {engine * 1000:.1f} ms (best of 15)",
        f"segmentation checks: {seg * 1000:.2f} ms (best of 15, timed alternately)",
        f"ratio segmentation / evaluate(): {seg / engine:.2f} (goal <= 0.5)",
    ]
