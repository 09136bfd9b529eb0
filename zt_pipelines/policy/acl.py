"""What the ACLs of a bucket without uniform bucket-level access grant (ZT213, ZT403) — pure.

Cloud Storage ACLs grant in parallel with IAM: "only one of the systems needs to grant" a
request. A bucket the pipeline uses with uniform access off stays ZT402 (its access is not
governed by IAM alone); when its ACLs were read (``buckets.get`` with ``projection=full``),
their entries are judged too:

- ``allUsers`` / ``allAuthenticatedUsers`` in the bucket ACL or the default object ACL (what
  every new object — every artifact a step writes — gets): the bucket or its objects are
  public, **ZT213**;
- an entry naming a pipeline identity (``user-EMAIL``, a ``group-`` containing it, or the
  project team ``project-owners|editors|viewers-NUMBER`` it belongs to): access outside IAM,
  **ZT403**. zt matches needs against allow policies only, so what such an entry gives beyond
  the needs cannot be proven absent, and a need it alone would grant is not counted as proven.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from zt_pipelines.policy.members import Match, MemberMatch
from zt_pipelines.policy.orgpolicy import DEFAULT_SEVERITIES
from zt_pipelines.policy.report import Evidence, Finding
from zt_pipelines.policy.snapshot import AclEntry, Node
from zt_pipelines.resources import display_uri

if TYPE_CHECKING:
    from zt_pipelines.policy.engine import Evaluator

_PUBLIC = frozenset({"allUsers", "allAuthenticatedUsers"})
_TEAM = {"owners": "projectOwner", "editors": "projectEditor", "viewers": "projectViewer"}
_WHICH = {"acl": "bucket ACL", "defaultObjectAcl": "default object ACL"}


def _lists(bucket: Node) -> Iterable[tuple[str, AclEntry]]:
    for which, entries in (("acl", bucket.acl), ("defaultObjectAcl", bucket.default_object_acl)):
        for entry in entries or ():
            yield which, entry


def acl_summary(bucket: Node) -> str:
    """``2 entries in the bucket ACL, 1 in the default object ACL: allUsers READER, ...``, or
    ``""`` when neither list was read."""
    if bucket.acl is None and bucket.default_object_acl is None:
        return ""
    listed = [f"{e.entity} {e.role}" for _, e in _lists(bucket)]
    sample = ", ".join(listed[:6]) + (" …" if len(listed) > 6 else "")
    parts = []
    for which, entries in (("acl", bucket.acl), ("defaultObjectAcl", bucket.default_object_acl)):
        parts.append(
            f"{len(entries)} in the {_WHICH[which]}"
            if entries is not None
            else f"the {_WHICH[which]} not read"
        )
    return "; ".join(parts) + (f": {sample}" if sample else "")


def _entity_match(ev: Evaluator, entity: str, principal: str) -> MemberMatch:
    """Does the ACL ``entity`` cover the IAM ``principal`` (``serviceAccount:EMAIL``)?"""
    kind, _, rest = entity.partition("-")
    email = principal.partition(":")[2].lower()
    if kind in ("user", "group") and "@" not in rest:
        # ``user-ID`` / ``group-ID``: a numeric id (a service account's is its unique id)
        record = ev.snapshot.service_accounts.get(email)
        if kind == "user" and record is not None and record.unique_id:
            same = record.unique_id == rest
            return MemberMatch(Match.YES, f"unique id {rest}") if same else MemberMatch(Match.NO)
        return MemberMatch(Match.UNKNOWN, f"{entity} names an id this check cannot place")
    if kind == "user":  # service accounts are ``user-EMAIL`` entities in ACLs
        return MemberMatch(Match.YES, "named") if rest.lower() == email else MemberMatch(Match.NO)
    if kind == "group":
        return ev.members.in_group(principal, rest.lower())
    if kind == "project":
        team, _, number = rest.partition("-")
        member = _TEAM.get(team)
        if member is None or not number:
            return MemberMatch(Match.UNKNOWN, f"ACL entity {entity} is not one we know")
        project = ev.snapshot.project_by_number(number)
        if project is None:
            where = "among the projects read" if ev.snapshot.live else "in the snapshot"
            return MemberMatch(Match.UNKNOWN, f"project number {number} is not {where}")
        return ev.members.matches(f"{member}:{project.name.rsplit('/', 1)[1]}", principal)
    return MemberMatch(Match.NO)  # domain-, allUsers ...: never a service account here


def acl_findings(
    bucket: Node, step: str | None, principals: Iterable[str], ev: Evaluator
) -> list[Finding]:
    """ZT213 for public ACL entries and ZT403 for entries reaching ``principals`` (the
    pipeline's service-account identities) on ``bucket`` (uniform access off, ACLs read)."""
    out: list[Finding] = []
    uri = display_uri(bucket.name)
    identities = sorted(set(principals))
    for which, entry in _lists(bucket):
        where = _WHICH[which]
        evidence = (
            Evidence(
                "policy", node=bucket.name, member=entry.entity, detail=f"{where}: {entry.role}"
            ),
        )
        if entry.entity in _PUBLIC:
            objects = "every new object in " if which == "defaultObjectAcl" else ""
            out.append(
                Finding(
                    "ZT213",
                    DEFAULT_SEVERITIES["ZT213"],
                    f"{objects}{uri} is public through its {where}: {entry.entity} holds "
                    f"{entry.role} (ACLs grant in parallel with IAM)",
                    step=step,
                    principal=entry.entity,
                    resource=bucket.name,
                    evidence=evidence,
                )
            )
            continue
        for principal in identities:
            found = _entity_match(ev, entry.entity, principal)
            if found.match is Match.NO:
                continue
            who = "holds" if found.match is Match.YES else "may hold"
            out.append(
                Finding(
                    "ZT403",
                    DEFAULT_SEVERITIES["ZT403"],
                    f"{principal} {who} {entry.role} on {uri} through its {where} "
                    f"({entry.entity}{'; ' + found.reason if found.reason else ''}): access "
                    "outside IAM — what it gives beyond the identity's needs cannot be verified, "
                    "and a need it alone would grant is not counted as proven",
                    step=step,
                    principal=principal,
                    resource=bucket.name,
                    evidence=evidence,
                )
            )
    return out
