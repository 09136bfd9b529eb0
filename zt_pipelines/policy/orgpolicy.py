"""The organisation policy: ``zt-policy.yaml`` or ``[tool.zt-pipelines]`` in pyproject.toml.

Defaults are strict (no file = :data:`STRICT`): every finding code is an error except ZT210
(a warning), any excess permission is reported, identities may not be shared, key-file
submitter credentials are refused, web access is refused. A file can relax severities, set
job-field rules (network / PSC, CMEK key pattern, regions, image registries and digests) and
add **suppressions** — each names a code and a step/resource/principal/permission, carries a
justification and an expiry date; an expired suppression no longer applies and is reported
itself (ZT500).

The loader validates against ``zt_pipelines/schemas/policy.schema.json`` and raises
:class:`~zt_pipelines.errors.PolicyFileError` naming the file and the JSON path. Reading files
is the only IO here; expiry is decided later with the ``now`` the caller passes in.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from zt_pipelines.errors import PolicyFileError
from zt_pipelines.policy.report import CODES, WARNING_CODES, Severity

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "policy.schema.json"

#: default severity of every code: strict.
DEFAULT_SEVERITIES: dict[str, Severity] = {
    code: (Severity.WARNING if code in WARNING_CODES else Severity.ERROR) for code in CODES
}
# a hand-written snapshot is legitimate; the report says its completeness is not proven
DEFAULT_SEVERITIES["ZT401"] = Severity.NOTE
DEFAULT_SEVERITIES["ZT629"] = Severity.NOTE  # a drift baseline record, never a verdict

#: codes no policy can relax or suppress: a default identity (ZT100), a verification that
#: could not complete (ZT400, ZT530 for segmentation) and a credential in the spec (ZT410:
#: it leaks to every reader of the job whatever anyone decides) always refuse, and so does a
#: pipeline root in another project's bucket (ZT404: the drop-in's submit refuses it whatever
#: the policy says, and a check must not promise more), and a decision judged at another time
#: than the machine's (ZT405: a what-if is never an approval).
UNRELAXABLE: frozenset[str] = frozenset({"ZT100", "ZT400", "ZT404", "ZT405", "ZT410", "ZT530"})

#: codes no severity can lower, waivable only step by step: ZT102 (a run-time value pasted
#: where it could rewrite a job's payload, down to its identity) stays an error everywhere; a
#: suppression must name the step it waives and the ``upstream`` digest of what feeds the
#: pasted values (justified, expiring, kept in the report).
STEP_WAIVER_ONLY: frozenset[str] = frozenset({"ZT102"})
#: what ``check --print-waivers`` writes where a reviewer must fill in: it never loads
FILL_IN = "FILL IN"
_UPSTREAM = re.compile(r"[0-9a-f]{24}")


def _unrelaxable_fix(code: str) -> str:
    listed = "; ".join(f"{c} ({CODES[c][1]})" for c in sorted(UNRELAXABLE))
    return f"{listed} always refuse; fix the cause of {code} instead"


@dataclass(frozen=True)
class Suppression:
    """A justified, expiring exception for findings of one code.

    A finding matches when its code is ``code`` and every field given here (step, resource,
    principal, permission) equals the finding's; ``step`` may list several steps
    (comma-joined), and then covers a finding only if every step it is about is listed.
    Resources may be written as users write them (``gs://bucket``); they are compared
    normalised. A ZT102 waiver also names
    ``upstream``, the digest of what feeds the step's pasted values, and matches only while
    the finding carries that digest.
    """

    code: str
    justification: str
    expires: date
    step: str | None = None
    resource: str | None = None
    principal: str | None = None
    permission: str | None = None
    upstream: str | None = None

    def expired(self, today: date) -> bool:
        """A suppression is in force up to and including its expiry date."""
        return today > self.expires

    def describe(self) -> str:
        """A short human description (for the expired-suppression finding)."""
        scope = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("step", self.step),
                ("resource", self.resource),
                ("principal", self.principal),
                ("permission", self.permission),
                ("upstream", self.upstream),
            )
            if v
        )
        return f"{self.code} ({scope or 'everywhere'})"


@dataclass(frozen=True)
class OrgPolicy:
    """The rules a check applies beyond IAM. Build with :func:`load_policy`."""

    severities: dict[str, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))
    excess_threshold: int = 0
    required_network: str | None = None
    require_psc: bool = False
    cmek_key_pattern: str | None = None
    allowed_regions: tuple[str, ...] | None = None
    allowed_image_registries: tuple[str, ...] | None = None
    require_image_digest: bool = False
    allow_web_access: bool = False
    allow_shared_identities: bool = False
    allowed_identity_projects: tuple[str, ...] = ()
    refuse_key_file_credentials: bool = True
    allowed_submitters: tuple[str, ...] | None = None
    suppressions: tuple[Suppression, ...] = ()
    source: str = "<strict defaults>"
    require_perimeter: bool = False
    require_isolation: bool = False
    allowed_reach: tuple[str, ...] | None = None
    endpoint_projects: tuple[str, ...] = ()
    sha256: str = ""
    """sha256 of what was loaded: the file's bytes (what ``sha256sum`` prints), or canonical
    JSON of a dict; empty for a policy built in Python (:func:`rules_sha256` still names it)."""

    def severity(self, code: str) -> Severity:
        """The severity configured for ``code`` (error for unknown codes and for
        :data:`UNRELAXABLE` ones, whatever the mapping says: fail closed)."""
        if code in UNRELAXABLE or code in STEP_WAIVER_ONLY:
            return Severity.ERROR
        return self.severities.get(code, Severity.ERROR)


STRICT = OrgPolicy()


def load_policy(path_or_dict: str | Path | dict[str, Any] | OrgPolicy | None) -> OrgPolicy:
    """Load an organisation policy.

    ``None`` gives the strict defaults; a ``pyproject.toml`` path reads
    ``[tool.zt-pipelines]``; any other path is YAML/JSON; a dict is taken as already parsed.

    Raises:
        PolicyFileError: naming the file and the JSON path of the problem.
    """
    if path_or_dict is None:
        return STRICT
    if isinstance(path_or_dict, OrgPolicy):
        return path_or_dict
    if isinstance(path_or_dict, dict):
        built = _build(path_or_dict, "<policy>")
        return replace(built, sha256=_sha256(_canonical(path_or_dict)))
    from zt_pipelines import loaders

    path = Path(path_or_dict)
    source = str(path)
    if path.name.removesuffix(".gz").endswith(".py"):
        loaders.load_file(path, kind="policy", error=PolicyFileError)  # refuses, naming the fix
    # one read: the bytes hashed are the bytes judged (a file swapped between reads is not)
    pyproject = path.name == "pyproject.toml"
    raw = loaders.read_bytes(
        path, kind="pyproject" if pyproject else "policy", error=PolicyFileError
    )
    if pyproject:
        data = _read_pyproject(path, raw)
    else:
        documents = loaders.parse_text(
            loaders.decode(raw, where=source, error=PolicyFileError),
            where=source,
            kind="policy",
            error=PolicyFileError,
            fmt="json" if path.name.removesuffix(".gz").endswith(".json") else "auto",
        )
        if len(documents) > 1:
            raise PolicyFileError(f"expected one document, found {len(documents)}", where=source)
        data = documents[0] if documents else None
        if data is None:
            data = {}
    if not isinstance(data, dict):
        raise PolicyFileError("a policy must be a mapping at the top level", where=f"{source}: $")
    return replace(_build(data, source), sha256=_sha256(raw))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    """Canonical JSON (sorted keys, compact); dates and other scalars as their text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def rules_sha256(policy: OrgPolicy) -> str:
    """sha256 of the rules a policy applies, whatever it was written as: a file, the same
    rules as a dict, or an :class:`OrgPolicy` built in Python hash alike (comments, key order
    and the source do not count). Two policies with the same digest decide alike."""
    rules = {
        f.name: getattr(policy, f.name)
        for f in fields(policy)
        if f.name not in ("source", "sha256")
    }
    rules["severities"] = {k: v.value for k, v in sorted(policy.severities.items())}
    rules["suppressions"] = [asdict(s) for s in policy.suppressions]
    return _sha256(_canonical(rules))


def policy_identity(policy: OrgPolicy) -> dict[str, str]:
    """What names a policy in a decision record: where it came from and its two digests."""
    rules = rules_sha256(policy)
    source = policy.source
    if not policy.sha256 and source == STRICT.source and rules != rules_sha256(STRICT):
        source = "<OrgPolicy built in Python>"  # not the strict defaults its default says
    return {"source": source, "sha256": policy.sha256 or rules, "rules_sha256": rules}


def _dates_as_text(data: dict[str, Any]) -> dict[str, Any]:
    """A suppression's ``expires`` written as a date (YAML ``expires: 2026-12-31`` or TOML
    ``expires = 2026-12-31``) is the date it names; a date *with a time* is refused by the
    schema like any other non-string."""
    suppressions = data.get("suppressions")
    if not isinstance(suppressions, list):
        return data
    fixed = []
    for raw in suppressions:
        value = raw.get("expires") if isinstance(raw, dict) else None
        if isinstance(value, date) and not isinstance(value, datetime):
            raw = {**raw, "expires": value.isoformat()}
        fixed.append(raw)
    return {**data, "suppressions": fixed}


def _read_pyproject(path: Path, raw: bytes) -> Any:
    from zt_pipelines import loaders

    data = loaders.parse_toml(raw, where=str(path), kind="pyproject", error=PolicyFileError)
    tool = data.get("tool")
    if tool is not None and not isinstance(tool, dict):
        raise PolicyFileError(
            f"'tool' is a {type(tool).__name__}, not a table", where=f"{path}: tool"
        )
    section = (tool or {}).get("zt-pipelines")
    if section is None:
        raise PolicyFileError(
            "no [tool.zt-pipelines] table", where=str(path), fix="add one or use zt-policy.yaml"
        )
    return section


def compile_pattern(pattern: str, *, where: str) -> Any:
    """Compile a policy regular expression with RE2 (linear-time matching, no backtracking).

    Patterns RE2 cannot run in linear time (backreferences, lookaround) are refused, so a
    policy can never make a check slow (``(a+)+b`` took 92 s with Python's ``re``).

    Raises:
        PolicyFileError: naming ``where``.
    """
    import re2  # type: ignore[import-not-found, import-untyped]

    if len(pattern) > 1000:
        raise PolicyFileError("the regular expression is longer than 1000 characters", where=where)
    try:
        re.compile(pattern)  # Python's syntax first: the documented dialect
        options = re2.Options()
        options.max_mem = 8 << 20
        options.log_errors = False  # the error is raised, not printed to stderr
        return re2.compile(pattern, options)
    except (re.error, re2.error) as exc:
        raise PolicyFileError(
            f"{pattern!r} is not a regular expression zt-pipelines accepts ({exc})",
            where=where,
            fix="use RE2 syntax (no backreferences or lookaround)",
        ) from None


def policy_fullmatch(pattern: str, text: str) -> bool:
    """Whether ``text`` fully matches a policy ``pattern``, in time linear in ``text`` (RE2).

    ``pattern`` was accepted by :func:`load_policy`; a pattern RE2 refuses never matches.
    """
    try:
        compiled = _compiled(pattern)
    except PolicyFileError:
        return False  # fail closed: an unusable pattern matches nothing
    return compiled.fullmatch(text) is not None


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> Any:
    return compile_pattern(pattern, where="policy")


def _no_placeholders(data: dict[str, Any], source: str) -> None:
    """An entry ``check --print-waivers`` wrote and nobody filled in waives nothing: refused
    with a message that says so (before the schema's generic one)."""
    suppressions = data.get("suppressions")
    for i, raw in enumerate(suppressions if isinstance(suppressions, list) else ()):
        for key in ("justification", "expires"):
            value = raw.get(key) if isinstance(raw, dict) else None
            if isinstance(value, str) and value.startswith(FILL_IN):
                raise PolicyFileError(
                    f"the {key} of this suppression is still the placeholder {value!r}",
                    where=f"{source}: $.suppressions[{i}].{key}",
                    fix="write who reviewed which producers and why their values are safe, "
                    "and an expiry date (YYYY-MM-DD)",
                )


def _build(data: dict[str, Any], source: str) -> OrgPolicy:
    from zt_pipelines.policy.snapshot_file import validate_schema

    data = _dates_as_text(data)
    _no_placeholders(data, source)
    validate_schema(data, SCHEMA_PATH, source, PolicyFileError)
    severities = dict(DEFAULT_SEVERITIES)
    for code, level in data.get("severities", {}).items():
        if code not in CODES:
            raise PolicyFileError(
                f"unknown finding code {code!r}",
                where=f"{source}: $.severities.{code}",
                fix="codes are listed in docs/findings.md",
            )
        if code in UNRELAXABLE and level != Severity.ERROR.value:
            raise PolicyFileError(
                f"{code} cannot be relaxed to {level!r}",
                where=f"{source}: $.severities.{code}",
                fix=_unrelaxable_fix(code),
            )
        if code in STEP_WAIVER_ONLY and level != Severity.ERROR.value:
            raise PolicyFileError(
                f"{code} cannot be relaxed to {level!r}: a run-time value pasted into a job's "
                "payload could rewrite the job down to its identity, in every step this covers",
                where=f"{source}: $.severities.{code}",
                fix="bind the value to a constant or a parameter with a value; or, for a step "
                "whose value you have reviewed, add a suppression naming that step",
            )
        severities[code] = Severity(level)
    for key, pattern in (
        ("network.required", data.get("network", {}).get("required")),
        ("cmek.keyPattern", data.get("cmek", {}).get("keyPattern")),
    ):
        if pattern is not None:
            compile_pattern(pattern, where=f"{source}: $.{key}")
    suppressions = []
    for i, raw in enumerate(data.get("suppressions", [])):
        where = f"{source}: $.suppressions[{i}]"
        if raw["code"] not in CODES:
            raise PolicyFileError(f"unknown finding code {raw['code']!r}", where=where + ".code")
        if raw["code"] in UNRELAXABLE:
            raise PolicyFileError(
                f"{raw['code']} cannot be suppressed",
                where=where + ".code",
                fix=_unrelaxable_fix(raw["code"]),
            )
        step = raw.get("step")
        if isinstance(step, list):  # one waiver for a finding about several steps
            if raw["code"] in STEP_WAIVER_ONLY:
                raise PolicyFileError(
                    f"a suppression of {raw['code']} waives one step",
                    where=where + ".step",
                    fix="write one suppression per step, each with its own upstream",
                )
            step = ",".join(sorted(set(step)))
        elif isinstance(step, str) and "," in step:
            raise PolicyFileError(
                f"step {step!r} is a list written as text",
                where=where + ".step",
                fix="list the steps: `step: [a, b]` (a task name holds no comma)",
            )
        if raw["code"] in STEP_WAIVER_ONLY and not raw.get("step"):
            raise PolicyFileError(
                f"a suppression of {raw['code']} must name the step it waives",
                where=where,
                fix="add `step: TASK` (the task path the finding names); each waived step is "
                "listed on its own",
            )
        if raw["code"] in STEP_WAIVER_ONLY and not _UPSTREAM.fullmatch(raw.get("upstream", "")):
            raise PolicyFileError(
                f"a suppression of {raw['code']} must name the upstream it was reviewed for",
                where=where + ".upstream",
                fix="add `upstream: DIGEST` as the finding shows it (`zt-pipelines check "
                "--print-waivers` prints the entries); the waiver then stops matching when a "
                "producer of the step's pasted values changes",
            )
        if "upstream" in raw and raw["code"] not in STEP_WAIVER_ONLY:
            raise PolicyFileError(
                "upstream names what feeds a ZT102 step; other codes do not carry it",
                where=where + ".upstream",
            )
        if not any(k in raw for k in ("step", "resource", "principal", "permission")):
            raise PolicyFileError(
                "a suppression must name a step, resource, principal or permission",
                where=where,
                fix="suppressing a code everywhere is a severity change: use severities",
            )
        try:
            expires = date.fromisoformat(raw["expires"])
        except ValueError:
            raise PolicyFileError(
                f"{raw['expires']!r} is not a date", where=where + ".expires"
            ) from None
        resource = raw.get("resource")
        if resource is not None:
            from zt_pipelines.errors import ResourceError
            from zt_pipelines.resources import normalize_resource

            try:
                resource = normalize_resource(resource).name
            except ResourceError as exc:
                raise PolicyFileError(exc.what, where=where + ".resource") from None
        permission = raw.get("permission")
        if permission is not None:
            from zt_pipelines.errors import PermissionFormatError
            from zt_pipelines.policy.role_catalogue import validate_permission

            try:
                validate_permission(permission)
            except PermissionFormatError as exc:
                raise PolicyFileError(exc.what, where=where + ".permission", fix=exc.fix) from None
        suppressions.append(
            Suppression(
                code=raw["code"],
                justification=raw["justification"],
                expires=expires,
                step=step,
                resource=resource,
                principal=raw.get("principal"),
                permission=permission,
                upstream=raw.get("upstream"),
            )
        )
    network = data.get("network", {})
    segmentation = data.get("segmentation", {})
    reach = segmentation.get("allowedReach")
    if reach is not None:
        from zt_pipelines.errors import DeclarationError
        from zt_pipelines.segmentation.model import parse_reach

        try:
            reach = tuple(e.text for e in parse_reach(reach, where="allowedReach"))
        except DeclarationError as exc:
            raise PolicyFileError(
                exc.what, where=f"{source}: $.segmentation.allowedReach"
            ) from None
    images = data.get("images", {})
    submitters = data.get("submitters", {})
    regions = data.get("regions")
    registries = images.get("allowedRegistries")
    allowed = submitters.get("allowed")
    return OrgPolicy(
        severities=severities,
        excess_threshold=data.get("excessThreshold", 0),
        required_network=network.get("required"),
        require_psc=network.get("requirePsc", False),
        cmek_key_pattern=data.get("cmek", {}).get("keyPattern"),
        allowed_regions=tuple(regions) if regions is not None else None,
        allowed_image_registries=tuple(registries) if registries is not None else None,
        require_image_digest=images.get("requireDigest", False),
        allow_web_access=data.get("jobs", {}).get("allowWebAccess", False),
        allow_shared_identities=data.get("identities", {}).get("allowShared", False),
        allowed_identity_projects=tuple(data.get("identities", {}).get("allowedProjects", ())),
        refuse_key_file_credentials=submitters.get("refuseKeyFileCredentials", True),
        allowed_submitters=tuple(allowed) if allowed is not None else None,
        suppressions=tuple(suppressions),
        source=source,
        require_perimeter=segmentation.get("requirePerimeter", False),
        require_isolation=segmentation.get("requireIsolation", False),
        allowed_reach=reach,
        endpoint_projects=tuple(segmentation.get("endpointProjects", ())),
    )
