"""IAM v2 deny policies: permission names, wildcard matching, and which rules can apply.

Deny rules name permissions in the v2 form ``SERVICE_FQDN/RESOURCE.VERB``
(``storage.googleapis.com/objects.get``) and may use ``*`` for a whole segment
(``storage.googleapis.com/objects.*``, ``storage.googleapis.com/*.delete``, ``*``).
A deny policy attached to an organisation, folder or project applies to that node and every
resource below it. Deny is evaluated before allow; a matching exception principal or exception
permission lifts the denial.

Pure: no IO.
"""

from __future__ import annotations

import re
from functools import lru_cache

# v1 permission service prefix -> v2 service FQDN, where the two differ.
_SERVICE_FQDN = {
    "resourcemanager": "cloudresourcemanager.googleapis.com",
    "cloudkms": "cloudkms.googleapis.com",
}

V2_PERMISSION = re.compile(
    r"^(?:\*|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.googleapis\.com/"
    r"(?:\*|(?:\*|[a-zA-Z][a-zA-Z0-9_]*)(?:\.(?:\*|[a-zA-Z][a-zA-Z0-9_]*))+))$"
)


def to_v2(permission: str) -> str:
    """``storage.objects.get`` → ``storage.googleapis.com/objects.get``.

    A few permissions are named in the v2 form already, in roles too
    (``iam.googleapis.com/workloadIdentityPoolProviders.create``): they stay as they are.
    """
    if "/" in permission:
        return permission
    service, _, rest = permission.partition(".")
    fqdn = _SERVICE_FQDN.get(service, f"{service}.googleapis.com")
    return f"{fqdn}/{rest}"


@lru_cache(maxsize=4096)
def _pattern(v2: str) -> re.Pattern[str]:
    if v2 == "*":
        return re.compile(r"^.*$")
    service, _, rest = v2.partition("/")
    service_re = re.escape(service).replace(r"\*", r"[^/]*")
    if rest == "*":
        return re.compile(f"^{service_re}/.*$")
    parts = [r"[^.]*" if p == "*" else re.escape(p) for p in rest.split(".")]
    return re.compile(f"^{service_re}/" + r"\.".join(parts) + "$")


def permission_matches(v2_pattern: str, permission: str) -> bool:
    """Does the deny-rule permission (v2, wildcards allowed) cover the v1 ``permission``?"""
    return _pattern(v2_pattern).match(to_v2(permission)) is not None


def applies_to(attachment_point: str, chain_names: set[str]) -> bool:
    """Is a deny policy attached at ``attachment_point`` in force on a resource whose ancestry
    (itself first) has the full resource names ``chain_names``?"""
    return attachment_point in chain_names


def normalize_attachment_point(value: str) -> str:
    """Accept ``cloudresourcemanager.googleapis.com%2Fprojects%2FP`` (as the API returns it),
    ``cloudresourcemanager.googleapis.com/projects/P`` or ``//...``; return the full name."""
    decoded = value.replace("%2F", "/").replace("%2f", "/")
    if decoded.startswith("policies/"):
        decoded = decoded[len("policies/") :].rsplit("/denypolicies/", 1)[0]
    return decoded if decoded.startswith("//") else "//" + decoded
