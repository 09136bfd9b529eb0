"""Whose rules a decision is taken under: the organisation policy a check applies (IO edge:
the environment and the policy file; see docs/policy-file.md "Making the file binding").

Without a binding the order is the documented one — ``policy=`` / ``--policy``, else the file
``$ZT_POLICY`` names, else the strict defaults — and every decision record names the policy it
was judged under. An organisation makes its file binding with ``ZT_POLICY_BINDING=1`` (the
file ``ZT_POLICY`` names is the policy; an explicit one must decide alike) and may pin the
file's bytes with ``ZT_POLICY_SHA256`` (which implies the binding).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from zt_pipelines.errors import PolicyFileError
from zt_pipelines.policy.orgpolicy import OrgPolicy, load_policy, rules_sha256

POLICY_ENV = "ZT_POLICY"
BINDING_ENV = "ZT_POLICY_BINDING"
PIN_ENV = "ZT_POLICY_SHA256"
_HEX = re.compile(r"^[0-9a-f]{64}$")

PolicyInput = str | Path | dict[str, Any] | OrgPolicy | None


class PolicyBindingError(PolicyFileError):
    """The organisation's policy is binding and the policy given is not it (or the binding
    itself is misconfigured)."""


def binding() -> tuple[bool, str]:
    """Whether the organisation's policy is binding, and the pinned sha256 (empty if none).

    Raises:
        PolicyBindingError: ``ZT_POLICY_BINDING`` or ``ZT_POLICY_SHA256`` is malformed.
    """
    flag = os.environ.get(BINDING_ENV, "").strip().lower()
    if flag not in ("", "0", "1", "true", "false"):
        raise PolicyBindingError(
            f"{BINDING_ENV}={flag!r} is neither 1 nor 0", where=BINDING_ENV, fix="set it to 1"
        )
    pin = os.environ.get(PIN_ENV, "").strip().lower()
    if pin and not _HEX.match(pin):
        raise PolicyBindingError(
            f"{PIN_ENV} is not a sha256 (64 hex digits)",
            where=PIN_ENV,
            fix=f"set it to the output of `sha256sum` of the file {POLICY_ENV} names",
        )
    return flag in ("1", "true") or bool(pin), pin


def resolve_policy(policy: PolicyInput) -> OrgPolicy:
    """The organisation policy a check applies (see the module docstring).

    Raises:
        PolicyFileError: the file is unreadable or invalid (naming it and the JSON path).
        PolicyBindingError: the organisation's policy is binding and ``policy`` decides
            otherwise, the file ``ZT_POLICY`` names is not the pinned one, or no file is named.
    """
    bound, pin = binding()
    org_file = os.environ.get(POLICY_ENV, "")
    if not bound:
        return load_policy(org_file if policy is None and org_file else policy)
    if not org_file:
        raise PolicyBindingError(
            f"the organisation's policy is binding ({BINDING_ENV} / {PIN_ENV}) but "
            f"{POLICY_ENV} names no file",
            where=POLICY_ENV,
            fix=f"set {POLICY_ENV} to the organisation's zt-policy.yaml",
        )
    org = load_policy(org_file)
    if pin and org.sha256 != pin:
        raise PolicyBindingError(
            f"the policy file {org_file} has sha256 {org.sha256}, not the pinned {pin}",
            where=PIN_ENV,
            fix="restore the organisation's file, or have the platform team pin the new one",
        )
    if policy is None:
        return org
    given = load_policy(policy)
    if rules_sha256(given) != rules_sha256(org):
        raise PolicyBindingError(
            f"the policy given ({given.source}) is not the organisation's ({org_file}), "
            "which is binding here",
            where="policy= / --policy",
            fix=f"drop policy= / --policy (the file {POLICY_ENV} names applies); a change of "
            "the rules goes through the platform team's file",
        )
    return org


def expected_policies() -> tuple[str, ...]:
    """The digests an approval must have been judged under when the organisation's policy is
    binding (its file's sha256 and rules digest; empty when it is not binding).

    Raises:
        PolicyBindingError: as :func:`resolve_policy` for a misconfigured binding.
        PolicyFileError: the file is unreadable or invalid.
    """
    bound, _ = binding()
    if not bound:
        return ()
    org = resolve_policy(None)
    return tuple(dict.fromkeys((org.sha256, rules_sha256(org))))


def policy_digests(spec: str | Path) -> tuple[str, ...]:
    """What ``--expect-policy`` names: a sha256 (either of a record's two) or a policy file
    (its bytes' sha256 and its rules digest).

    Raises:
        PolicyFileError: not a sha256 and not a readable, valid policy file.
    """
    text = str(spec).strip().lower()
    if _HEX.match(text) and not Path(spec).exists():
        return (text,)
    loaded = load_policy(spec)
    return tuple(dict.fromkeys((loaded.sha256, rules_sha256(loaded))))
