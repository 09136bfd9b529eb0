"""Reports for people: a terminal rendering (rich) and a notebook rendering (HTML).

Pure: both functions take a :class:`~zt_pipelines.policy.report.Report` and return a string;
the terminal rendering writes into an in-memory rich console, never to a stream. What the CLI
prints on a terminal (colour, its width) and what ``str(report)`` gives (plain text, 100
columns) differ only in the console options.

The layout is what a reviewer reads first: a one-line verdict with counts, then findings
grouped by step (pipeline-level ones first) with the identity concerned, each finding's
evidence and a fix, then the coverage notes (what the check could not look at).
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from zt_pipelines.policy.wording import plural, shown
from zt_pipelines.resources import display_uri

if TYPE_CHECKING:
    from zt_pipelines.policy.report import Finding, Grant, Report

__all__ = ["FIXES", "fix_for", "headline", "plural", "render_html", "render_text", "summary_line"]

#: How to fix each finding code, in one line (docs/findings.md has the long form).
FIXES: dict[str, str] = {
    "ZT100": "give the pipeline and every step a dedicated service account (service_account=, "
    "@zt.step) or let `zt-pipelines plan/apply` create derived ones",
    "ZT101": "declare @zt.step(...) on the component or a manifest entry for the task",
    "ZT102": "bind the value to a constant or a pipeline parameter given in parameter_values; "
    "or, once you have reviewed where it comes from, waive that step (a suppression naming it "
    "and its upstream digest: `check --print-waivers`)",
    "ZT103": "one service account per step and per launched job (or identities.allowShared "
    "in the policy file)",
    "ZT110": "create or enable the service account (`zt-pipelines plan` / `apply`)",
    "ZT111": "delete the user-managed, HMAC and bound API keys; set "
    "iam.disableServiceAccountKeyCreation",
    "ZT120": "use a persistent resource created with custom service accounts enabled, "
    "or drop persistent_resource_id for the step",
    "ZT121": "check the step's persistent_resource_id (an ID in the pipeline's project and "
    "location), or add the resource to the snapshot",
    "ZT122": "declare the job's project as a need of the step, or allow its region "
    "(regions) in the policy file",
    "ZT123": "give the deployed model a serving identity of its own (ModelDeployOp "
    "service_account)",
    "ZT124": "pass the job's worker pools (and their images) as constants or pipeline "
    "parameters, or accept the image source with a justified suppression for the step",
    "ZT200": "grant the permission on the resource: `zt-pipelines plan` prints the binding",
    "ZT201": "make the grant provable: known group membership, a decidable condition, "
    "a readable policy",
    "ZT202": "remove the principal from the deny rule or add an exception for it",
    "ZT210": "replace the role with a narrower one (`zt-pipelines plan --roles custom`)",
    "ZT211": "remove the basic role; grant only what the step needs",
    "ZT212": "remove the escalation-capable permission from the identity",
    "ZT213": "remove allUsers / allAuthenticatedUsers from the resource's policy",
    "ZT214": "grant the role on the narrower scope the finding names (`zt-pipelines plan`), "
    "then remove the broad binding (`plan --prune`)",
    "ZT215": "grant the object permissions with a resource.name.startsWith condition on the "
    "prefix (what `zt-pipelines plan` does)",
    "ZT216": "remove the first hop of the path (the impersonation grant), or strip the reached "
    "identity of what it holds beyond the step's needs",
    "ZT217": "make the edge provable: a readable service-account policy, known group "
    "membership, an unconditional (or removed) impersonation grant",
    "ZT218": "review who the submitter can become; remove impersonation grants it does not need",
    "ZT219": "put the group's membership in the snapshot (or read it live), or remove the "
    "basic role / escalation-capable grant from that group",
    "ZT220": "remove the impersonation grant on the identity (or above it): only the pipeline "
    "identity may act as a step identity, only the submitter as the pipeline identity",
    "ZT221": "remove the identity from the entitlement's eligible principals (or narrow its "
    "roles to the needs); require an approval",
    "ZT222": "remove the identity from the entitlement's eligible principals, or narrow its roles "
    "to the needs",
    "ZT223": "extend the grant's expiry past the run's or schedule's end (or give the "
    "schedule an end time before the grant expires)",
    "ZT224": "remove the permission that makes the service act (a step that needs it: narrow "
    "what the service's identity holds to what the step needs)",
    "ZT225": "remove the dormant binding (a disabled or deleted role's, a deleted principal's): "
    "re-enabling or undeleting the role, or undeleting the principal, revives it unchanged",
    "ZT300": "grant the submitter actAs on the pipeline SA and aiplatform.pipelineJobs.create",
    "ZT301": "grant the pipeline SA aiplatform.customJobs.create and actAs on each step SA",
    "ZT400": "give the checking identity the read role in docs/live-mode.md, then re-run",
    "ZT401": "take the snapshot with zt-pipelines snapshot (it writes the integrity digest)",
    "ZT402": "enable uniform bucket-level access on the bucket (its ACLs then grant nothing)",
    "ZT403": "remove the ACL entry and grant the need in IAM (or enable uniform bucket-level "
    "access)",
    "ZT404": "use a pipeline root in a bucket of the job's project (one the checker can read)",
    "ZT405": "judge at the machine's time: drop clock= / now= / --now (ZT_TEST_CLOCK=1 is for "
    "test suites)",
    "ZT410": "remove the credential from the component; give the step an identity that holds "
    "the access, and read secrets from Secret Manager at run time",
    "ZT419": "pass the pipeline root you submit with (--pipeline-root, pipeline_root=), a "
    "bucket of the job's project, or compile the pipeline with one",
    "ZT500": "change the pipeline to meet the organisation policy, or suppress with a reason",
    "ZT600": "give the verifying identity aiplatform.pipelineJobs.get and customJobs.get/list",
    "ZT601": "submit through zt_pipelines.PipelineJob or `zt-pipelines submit`; find who did not",
    "ZT602": "verify against the audit log the job was submitted with (--audit-log)",
    "ZT603": "treat the run as unverified; re-submit the approved template through zt-pipelines",
    "ZT604": "submit with the approved pipeline service account; find who changed it",
    "ZT605": "investigate: the step's job ran under an identity nobody approved",
    "ZT606": "investigate the run; pin images by digest so a tag cannot move",
    "ZT607": "investigate the run; the approved network is the one the spec states",
    "ZT608": "investigate the run; data written under another key may be readable by others",
    "ZT609": "investigate the run: its job ran outside the approved project or location",
    "ZT610": "investigate the run: the spec that ran is not the approved one",
    "ZT611": "check the task in the console; re-run verify-run once its details are complete",
    "ZT612": "pin images by digest (image@sha256:...); the policy file can require it",
    "ZT613": "verify again when the run has ended (submit(..., verify_after=True) does)",
    "ZT614": "run `zt-pipelines audit verify` to see what changed; restore the log from its mirror",
    "ZT615": "treat the run as unverified; find who started it with other values (audit logs)",
    "ZT620": "remove the grant, or re-approve the pipeline with the need declared",
    "ZT621": "delete the key and find who created it (Admin Activity audit logs)",
    "ZT622": "disable the identity again if that was deliberate, and find who re-enabled it",
    "ZT623": "restore the deny policy; review what the identity could do without it",
    "ZT624": "remove the grant that lets the identity become the other one",
    "ZT625": "fix what the finding names; the next run of the pipeline would be refused",
    "ZT626": "give the checking identity the read role `check` needs, or pass --snapshot",
    "ZT629": "nothing to fix: the posture recorded as the next drift baseline",
    "ZT630": "drop the permission from the step's needs and re-run plan/apply",
    "ZT631": "investigate: the step used more than it declared; declare it or remove the grant",
    "ZT632": "find who obtained credentials for the identity (keys, getAccessToken); rotate",
    "ZT633": "enable Data Access audit logs for the service (auditConfigs), exempt no step",
    "ZT634": "give the reading identity logging.logEntries.list and privateLogEntries.list",
    "ZT635": "find out why the step's code asks for an access it was not granted",
    "ZT640": "find who submitted the job; require zt-pipelines (submit, PipelineJob) for it",
    "ZT641": "pause the schedule and re-create it with PipelineJob.create_schedule",
    "ZT642": "find who judged it under their own policy; re-verify under the organisation's",
    "ZT643": "re-verify the job with this version (its records name their policy)",
    "ZT510": "add the project to an enforced service perimeter (`zt-pipelines plan` emits it)",
    "ZT511": "move the resource's project into the perimeter, or bridge the two projects",
    "ZT512": "enforce the dry-run perimeter configuration once its logs are clean",
    "ZT513": "add the service to the perimeter's restrictedServices",
    "ZT514": "enable vpcAccessibleServices with allowedServices [RESTRICTED-SERVICES]",
    "ZT515": "limit the egress rule to the projects the pipeline needs",
    "ZT516": "limit the ingress rule to the pipeline's identities and sources",
    "ZT520": "run the step on a VPC: psc_interface_config= or network=, with reach=[...]",
    "ZT521": "create the network piece (`zt-pipelines plan` emits it) or fix its name",
    "ZT522": "add a deny-all egress rule and allow only the step's declared reach",
    "ZT523": "deny egress to the endpoint from the step's network, or declare it in reach",
    "ZT524": "remove the reach, or extend segmentation.allowedReach with its owners",
    "ZT525": "allow the declared reach in the firewall (`zt-pipelines plan`), or drop it",
    "ZT530": "give the checker the segmentation read permissions (docs/live-mode.md), re-run",
}

_DOCS = "docs/findings.md"
_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}
_COLOUR = {"error": "#cf222e", "warning": "#9a6700", "note": "#0969da"}


def fix_for(code: str) -> str:
    """The one-line fix for ``code`` (or where to read about it)."""
    return FIXES.get(code) or f"see {_DOCS}#{code.lower()}"


_NOT_FOUND_FIX = "check the name (the resource does not exist), or create it, then re-run"


def _fix(finding: Finding) -> str:
    """The fix shown under ``finding``: its code's, except a read that found nothing (ZT400
    whose resource does not exist: no read role helps)."""
    if finding.code == "ZT400" and " was not found (" in finding.message:
        return _NOT_FOUND_FIX
    return fix_for(finding.code)


def summary_line(report: Report) -> str:
    """The one-line verdict: ``REFUSED: pipe in p/l — 2 errors, 1 warning, 3 suppressed``
    (warnings, notes and suppressed only when there are any)."""
    verdict = "ALLOWED" if report.allowed else "REFUSED"
    counts = {s: 0 for s in ("error", "warning", "note")}
    for f in report.findings:
        counts[f.severity.value] += 1
    parts = [plural(counts["error"], "error")]
    parts += [plural(counts[s], s) for s in ("warning", "note") if counts[s]]
    if report.suppressed:
        parts.append(f"{len(report.suppressed)} suppressed")
    where = f"{report.project}/{report.location}" if report.project else "(no project)"
    line = f"{verdict}: {report.pipeline or 'pipeline'} in {where} — " + ", ".join(parts)
    if report.notes:
        line += f" ({plural(len(report.notes), 'coverage note')} below)"
    return line


_DENIED = ("denied", "403", "forbidden")
_UNAUTHENTICATED = ("unauthenticated", "401 ")


def headline(report: Report) -> str | None:
    """What explains most of a refusal, when one cause does: failed reads (ZT400), a snapshot
    of another project, or identities not created yet (a first check before ``apply``).

    A live check by an identity that cannot read IAM fails dozens of reads; the reader needs
    the one cause and the one fix, not the count.
    """
    failed = [f for f in report.findings if f.code == "ZT400"]
    if not failed:
        return _setup_headline(report)
    anonymous = [f for f in failed if any(w in f.message.lower() for w in _UNAUTHENTICATED)]
    if anonymous:
        emulator = any("from the emulator" in note for note in report.notes)
        return (
            f"the check ran without credentials: {len(anonymous)} of "
            f"{plural(len(failed), 'read')} were refused as unauthenticated — "
            + (
                "against the emulator, set ZT_EMULATOR_CALLER=serviceAccount:EMAIL (or "
                "user:EMAIL) to the identity that checks"
                if emulator
                else "run `gcloud auth application-default login` or pass credentials"
            )
            + " and re-run; findings below may follow from these failed reads"
        )
    missing = [f for f in failed if " was not found (" in f.message]
    if len(missing) == len(failed):
        names = sorted({display_uri(f.resource or "") for f in missing})
        shown = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
        return (
            f"{plural(len(names), 'resource')} the pipeline uses "
            f"{'was' if len(names) == 1 else 'were'} not found ({shown}): check the names in "
            "the template, its declarations and parameters, or create them, and re-run; "
            "findings below follow from it"
        )
    denied = [f for f in failed if any(word in f.message.lower() for word in _DENIED)]
    if denied:
        return (
            f"the checking identity lacks read access: {len(denied)} of "
            f"{plural(len(failed), 'read')} were denied — grant it the read permissions "
            "listed in docs/live-mode.md (zt_pipelines.gcp.interface.READ_PERMISSIONS) "
            "and re-run; findings below may follow from these failed reads"
        )
    return (
        f"verification is incomplete: {plural(len(failed), 'read')} failed (ZT400 below); "
        "findings below may follow from them"
    )


def _setup_headline(report: Report) -> str | None:
    """A snapshot without the pipeline's project, or several identities that do not exist:
    the one setup step that explains the findings below."""
    if report.project:
        absent = f"//cloudresourcemanager.googleapis.com/projects/{report.project} is not in"
        if any(f.code == "ZT201" and absent in f.message for f in report.findings):
            return (
                f"project {report.project} is not in the snapshot: was it taken for another "
                f"project? Take one with `zt-pipelines snapshot --project {report.project}` "
                "(or check live); findings below follow from it"
            )
    missing = {
        f.principal
        for f in report.findings
        if f.code == "ZT110" and f.principal and "does not exist" in f.message
    }
    if len(missing) >= 2:
        return (
            f"{plural(len(missing), 'service account')} this pipeline runs as "
            f"{'does' if len(missing) == 1 else 'do'} not exist yet: `zt-pipelines plan` "
            "lists them with the grants they need, `zt-pipelines apply` creates them; "
            "findings below may follow from that"
        )
    return None


def _by_step(findings: Iterable[Finding]) -> list[tuple[str | None, list[Finding]]]:
    """Findings grouped by step; pipeline-level (``None``) first, then steps in first-seen
    order (the engine sorts errors first)."""
    groups: dict[str | None, list[Finding]] = {}
    for f in findings:
        groups.setdefault(f.step, []).append(f)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))
    return ordered


def _identity(
    step: str | None, findings: list[Finding], granted: Iterable[Grant], report: Report
) -> str:
    own = dict(report.step_identities).get(step or "")
    if own:  # the step's own identity, whoever its findings are about
        return own
    # pipeline-level findings may be about several identities (the pipeline SA, the submitter):
    # name each, not only the first
    principals = list(dict.fromkeys(f.principal for f in findings if f.principal))
    if principals:
        return ", ".join(principals)
    for g in granted:
        if g.step == step and g.principal:
            return g.principal
    return ""


def _subject(f: Finding) -> str:
    parts = [p for p in (f.permission, f.resource) if p]
    return " on ".join(parts)


def render_text(report: Report, *, width: int = 100, color: bool = False) -> str:
    """The report as terminal text, fitted to ``width`` columns, with ANSI colour if asked.

    Long evidence wraps inside its column instead of stretching the line.
    """
    console = Console(
        file=io.StringIO(),
        width=max(width, 40),
        color_system="standard" if color else None,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    verdict_style = "bold green" if report.allowed else "bold red"
    console.print(Text(shown(summary_line(report)), style=verdict_style), overflow="fold")
    cause = headline(report)
    if cause:
        console.print(Text(shown(cause), style="bold"), overflow="fold")
    for step, findings in _by_step(report.findings):
        who = _identity(step, findings, report.granted, report)
        title = f"step {step}" if step is not None else "pipeline"
        console.print()
        console.print(
            Text.assemble((shown(title), "bold"), (shown(f"  {who}") if who else "", "dim")),
            overflow="fold",
        )
        table = Table(
            box=None,
            show_header=False,
            pad_edge=False,
            padding=(0, 1, 0, 0),
            expand=True,
        )
        table.add_column("severity", no_wrap=True, width=7)
        table.add_column("code", no_wrap=True, width=5)
        table.add_column("what", ratio=1, overflow="fold")
        for f in findings:
            lines = [Text(shown(f.message))]
            subject = _subject(f)
            if subject:
                lines.append(Text(shown(subject), style="dim"))
            lines.extend(Text(shown(f"- {e}"), style="dim") for e in f.evidence)
            lines.append(Text(shown(f"fix: {_fix(f)}"), style="italic"))
            table.add_row(
                Text(f.severity.value, style=_STYLE[f.severity.value]), f.code, Group(*lines)
            )
        console.print(table)
    if report.suppressed:
        console.print()
        console.print(Text(f"suppressed ({len(report.suppressed)}):", style="bold"))
        _print_items(
            console,
            (
                f"{s.finding.code} {s.finding.step or '(pipeline)'}: {s.finding.message} "
                f"— {s.justification} (expires {s.expires})"
                for s in report.suppressed
            ),
        )
    if report.notes:
        console.print()
        console.print(Text(f"coverage notes ({len(report.notes)}):", style="bold"))
        _print_items(console, report.notes)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in str(out).rstrip("\n").splitlines())


def _print_items(console: Console, items: Iterable[str]) -> None:
    """A dashed list whose long items wrap under their own text, not under the dash."""
    table = Table.grid(padding=(0, 1, 0, 0), expand=True)
    table.add_column(width=3, no_wrap=True)
    table.add_column(ratio=1, overflow="fold")
    for item in items:
        table.add_row("  -", Text(shown(item)))
    console.print(table)


def render_html(report: Report) -> str:
    """The report as an HTML fragment for notebooks: verdict, one row per step (identity,
    needs granted / not granted, by which binding), findings with fixes, evidence folded."""
    esc = html.escape
    ok = report.allowed
    colour = "#1a7f37" if ok else "#cf222e"
    out = [
        '<div class="zt-report" style="font-family:sans-serif;line-height:1.4">',
        f'<div style="font-size:1.15em;margin-bottom:.4em"><b style="color:{colour}">'
        f"{'ALLOWED' if ok else 'REFUSED'}</b> {esc(summary_line(report).split(': ', 1)[1])}"
        "</div>",
    ]
    cause = headline(report)
    if cause:
        out.append(f"<div><b>{esc(cause)}</b></div>")
    steps = _step_rows(report)
    if steps:
        out.append(
            '<table style="border-collapse:collapse;margin:.3em 0">'
            "<thead><tr>"
            + "".join(
                f'<th style="text-align:left;border-bottom:1px solid #999;padding:2px 8px">{h}</th>'
                for h in ("step", "identity", "granted", "not granted", "findings")
            )
            + "</tr></thead><tbody>"
        )
        for step, who, grants, missing, codes in steps:
            binding = "".join(
                f"<li>{esc(g.permission)} on {esc(g.resource)} ← "
                + esc("; ".join(f"{e.role} on {e.node}" for e in g.evidence))
                + "</li>"
                for g in grants
            )
            granted = (
                f"<details><summary>{len(grants)}</summary><ul>{binding}</ul></details>"
                if grants
                else "0"
            )
            cell = 'style="padding:2px 8px;vertical-align:top"'
            bad = f'<b style="color:#cf222e">{missing}</b>' if missing else "0"
            out.append(
                f"<tr><td {cell}>{esc(step)}</td><td {cell}><code>{esc(who)}</code></td>"
                f"<td {cell}>{granted}</td><td {cell}>{bad}</td>"
                f"<td {cell}>{esc(', '.join(codes))}</td></tr>"
            )
        out.append("</tbody></table>")
    if report.findings:
        out.append("<div><b>Findings</b></div>")
        for f in report.findings:
            sev = f.severity.value
            head = (
                f'<span style="color:{_COLOUR[sev]};font-weight:bold">{sev}</span> '
                f"<code>{esc(f.code)}</code> {esc(f.step or '(pipeline)')}: {esc(f.message)}"
            )
            body = []
            subject = _subject(f)
            if f.principal:
                body.append(f"<div>principal: <code>{esc(f.principal)}</code></div>")
            if subject:
                body.append(f"<div>{esc(subject)}</div>")
            if f.evidence:
                body.append(
                    "<ul>" + "".join(f"<li>{esc(str(e))}</li>" for e in f.evidence) + "</ul>"
                )
            body.append(f"<div><i>fix:</i> {esc(_fix(f))}</div>")
            out.append(
                f'<details style="margin:.2em 0"><summary>{head}</summary>'
                f'<div style="margin-left:1.5em">{"".join(body)}</div></details>'
            )
    if report.suppressed:
        items = "".join(
            f"<li><code>{esc(s.finding.code)}</code> {esc(s.finding.step or '(pipeline)')}: "
            f"{esc(s.finding.message)} — {esc(s.justification)} (expires {esc(s.expires)})</li>"
            for s in report.suppressed
        )
        out.append(
            f"<details><summary>{len(report.suppressed)} suppressed</summary>"
            f"<ul>{items}</ul></details>"
        )
    if report.notes:
        notes = "".join(f"<li>{esc(n)}</li>" for n in report.notes)
        out.append(
            f"<details><summary>{plural(len(report.notes), 'coverage note')}</summary>"
            f"<ul>{notes}</ul></details>"
        )
    out.append("</div>")
    return "".join(out)


_NOT_GRANTED = ("ZT200", "ZT201", "ZT202")


def _step_rows(report: Report) -> list[tuple[str, str, list[Grant], int, list[str]]]:
    """One row per step seen in grants or findings (pipeline-level last)."""
    order: list[str | None] = []
    for step in [g.step for g in report.granted] + [f.step for f in report.findings]:
        if step not in order:
            order.append(step)
    order.sort(key=lambda s: (s is None, s or ""))
    rows = []
    for step in order:
        findings = [f for f in report.findings if f.step == step]
        grants = [g for g in report.granted if g.step == step]
        who = _identity(step, findings, grants, report)
        missing = sum(1 for f in findings if f.code in _NOT_GRANTED)
        codes = sorted({f.code for f in findings})
        rows.append((step or "(pipeline)", who, grants, missing, codes))
    return rows
