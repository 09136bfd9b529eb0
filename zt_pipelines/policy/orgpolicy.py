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

import re
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from zt_pipelines.errors import PolicyFileError
from zt_pipelines.policy.report import CODES, WARNING_CODES, Severity

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "policy.schema.json"

#: default severity of every code: strict.
DEFAULT_SEVERITIES: dict[str, Severity] = {
    code: (Severity.WARNING if code in WARNING_CODES else Severity.ERROR) for code in CODES
}

#: codes no policy can relax or suppress: a default identity (ZT100) and a verification that
#: could not complete (ZT400, ZT530 for segmentation) always refuse — the check proved nothing
#: it could be waived on.
UNRELAXABLE: frozenset[str] = frozenset({"ZT100", "ZT400", "ZT530"})


@dataclass(frozen=True)
class Suppression:
    """A justified, expiring exception for findings of one code.

    A finding matches when its code is ``code`` and every field given here (step, resource,
    principal, permission) equals the finding's. Resources may be written as users write
    them (``gs://bucket``); they are compared normalised.
    """

    code: str
    justification: str
    expires: date
    step: str | None = None
    resource: str | None = None
    principal: str | None = None
    permission: str | None = None

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
    refuse_key_file_credentials: bool = True
    allowed_submitters: tuple[str, ...] | None = None
    suppressions: tuple[Suppression, ...] = ()
    source: str = "<strict defaults>"
    require_perimeter: bool = False
    require_isolation: bool = False
    allowed_reach: tuple[str, ...] | None = None

    def severity(self, code: str) -> Severity:
        """The severity configured for ``code`` (error for unknown codes and for
        :data:`UNRELAXABLE` ones, whatever the mapping says: fail closed)."""
        if code in UNRELAXABLE:
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
        return _build(path_or_dict, "<policy>")
    path = Path(path_or_dict)
    source = str(path)
    if path.name == "pyproject.toml":
        data = _read_pyproject(path)
    else:
        from zt_pipelines.policy.snapshot_file import read_document

        data = read_document(path, PolicyFileError)
        if data is None:
            data = {}
    if not isinstance(data, dict):
        raise PolicyFileError("a policy must be a mapping at the top level", where=f"{source}: $")
    return _build(data, source)


def _read_pyproject(path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found]
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise PolicyFileError(f"file {str(path)!r} does not exist", where=str(path)) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyFileError(f"not valid TOML: {exc}", where=str(path)) from None
    section = data.get("tool", {}).get("zt-pipelines")
    if section is None:
        raise PolicyFileError(
            "no [tool.zt-pipelines] table", where=str(path), fix="add one or use zt-policy.yaml"
        )
    return section


def _build(data: dict[str, Any], source: str) -> OrgPolicy:
    from zt_pipelines.policy.snapshot_file import validate_schema

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
                fix="ZT100 (default identity) and ZT400 (verification incomplete) always refuse; "
                "fix the cause instead",
            )
        severities[code] = Severity(level)
    for key, pattern in (
        ("network.required", data.get("network", {}).get("required")),
        ("cmek.keyPattern", data.get("cmek", {}).get("keyPattern")),
    ):
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PolicyFileError(
                    f"{pattern!r} is not a valid regular expression ({exc})",
                    where=f"{source}: $.{key}",
                ) from None
    suppressions = []
    for i, raw in enumerate(data.get("suppressions", [])):
        where = f"{source}: $.suppressions[{i}]"
        if raw["code"] not in CODES:
            raise PolicyFileError(f"unknown finding code {raw['code']!r}", where=where + ".code")
        if raw["code"] in UNRELAXABLE:
            raise PolicyFileError(
                f"{raw['code']} cannot be suppressed",
                where=where + ".code",
                fix="ZT100 (default identity) and ZT400 (verification incomplete) always refuse; "
                "fix the cause instead",
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
        suppressions.append(
            Suppression(
                code=raw["code"],
                justification=raw["justification"],
                expires=expires,
                step=raw.get("step"),
                resource=resource,
                principal=raw.get("principal"),
                permission=raw.get("permission"),
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
        refuse_key_file_credentials=submitters.get("refuseKeyFileCredentials", True),
        allowed_submitters=tuple(allowed) if allowed is not None else None,
        suppressions=tuple(suppressions),
        source=source,
        require_perimeter=segmentation.get("requirePerimeter", False),
        require_isolation=segmentation.get("requireIsolation", False),
        allowed_reach=reach,
    )
