"""Who is submitting: the IAM member behind a set of google-auth credentials."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from zt_pipelines.errors import IdentityError
from zt_pipelines.gcp.retry import RetryPolicy


@dataclass(frozen=True)
class Submitter:
    """The submitting principal.

    Attributes:
        member: ``user:EMAIL`` or ``serviceAccount:EMAIL``.
        key_file: the credentials are a downloaded service-account key (a long-lived secret
            the organisation policy may refuse).
        kind: the credentials' class name, for reports.
    """

    member: str
    key_file: bool
    kind: str


def describe_submitter(credentials: Any = None, *, retry: RetryPolicy | None = None) -> Submitter:
    """Resolve the member behind ``credentials`` (Application Default Credentials if ``None``).

    Service-account, impersonated, Compute Engine and emulator credentials name their account
    directly (Google acts as the account they sign or mint for); end-user credentials are
    resolved with Google's tokeninfo endpoint (the emulator's when ``ZT_EMULATOR_HOST`` is set):
    Google acts as the owner of the token, whatever the credentials' ``account`` field (free
    text in an authorized-user file) says — an ``account`` that disagrees is refused.

    Raises:
        IdentityError: the credentials do not reveal who they belong to, or claim another
            account than their token's.
    """
    if credentials is None:
        from zt_pipelines.gcp.clients import default_credentials

        credentials, _ = default_credentials()
    from zt_pipelines.gcp.emulator_tokens import EmulatorCredentials

    kind = type(credentials).__name__
    if isinstance(credentials, EmulatorCredentials):  # only these say who they are by name
        return Submitter(credentials.member, False, kind)
    module = type(credentials).__module__
    key_file = _key_in_chain(credentials)
    # only google-auth's own classes (exactly: a subclass may say anything) name the account
    # Google acts as: the one their key signs for, they mint tokens for, or the metadata
    # server's; any other object's attribute is self-declared
    if (module, kind) in _NAME_THEIR_ACCOUNT:
        for attr in ("service_account_email", "signer_email", "_target_principal"):
            email = getattr(credentials, attr, None)
            if isinstance(email, str) and "@" in email:
                return Submitter(f"serviceAccount:{email.lower()}", key_file, kind)
    if module.startswith("google.auth.compute_engine"):
        email = _refreshed(credentials, "service_account_email", retry)
        if email:
            return Submitter(f"serviceAccount:{email.lower()}", False, kind)
    # a hint at most: whoever wrote the authorized-user file typed it
    account = getattr(credentials, "account", None)
    anonymous = module == "google.auth.credentials" and kind == "AnonymousCredentials"
    if not anonymous:  # anonymous callers have no token
        email = _tokeninfo_email(credentials, retry, os.environ.get("ZT_EMULATOR_HOST"))
        if email:
            if isinstance(account, str) and account.strip() and account.lower() != email.lower():
                raise IdentityError(
                    f"the {kind} credentials name the account {account!r}, but their token "
                    f"belongs to {email}",
                    where="submitter credentials",
                    fix="use the credentials of the account that submits (`gcloud auth "
                    "application-default login` as it), or correct the file's account",
                )
            return Submitter(_member(email), False, kind)
    raise IdentityError(
        f"cannot tell who the {kind} credentials belong to",
        where="submitter credentials",
        fix="use credentials that name their principal (a service account, or "
        "`gcloud auth application-default login` with the email scope)",
    )


_NAME_THEIR_ACCOUNT = {
    ("google.oauth2.service_account", "Credentials"),
    ("google.oauth2.service_account", "IDTokenCredentials"),
    ("google.auth.jwt", "Credentials"),
    ("google.auth.jwt", "OnDemandCredentials"),
    ("google.auth.impersonated_credentials", "Credentials"),
    ("google.auth.impersonated_credentials", "IDTokenCredentials"),
    ("google.auth.compute_engine.credentials", "Credentials"),
    ("google.auth.compute_engine.credentials", "IDTokenCredentials"),
    # external accounts: the account their impersonation URL names (tokens are minted for it)
    ("google.auth.identity_pool", "Credentials"),
    ("google.auth.aws", "Credentials"),
    ("google.auth.pluggable", "Credentials"),
}

# credentials signed with a downloaded private key (a long-lived service-account key)
_KEY_CREDENTIALS = {
    ("google.oauth2.service_account", "Credentials"),
    ("google.oauth2.service_account", "IDTokenCredentials"),
    ("google.auth.jwt", "Credentials"),
    ("google.auth.jwt", "OnDemandCredentials"),
}


def _key_in_chain(credentials: Any) -> bool:
    """Whether a key file signs ``credentials`` or any credentials they are derived from
    (impersonation, downscoping and ID-token wrappers keep their source): "load a key, then
    impersonate the deployer" still authenticates with the key."""
    seen: set[int] = set()
    current = credentials
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        if (type(current).__module__, type(current).__name__) in _KEY_CREDENTIALS:
            return True
        current = getattr(current, "_source_credentials", None) or getattr(
            current, "_target_credentials", None
        )
    return False


def resolve_submitter(credentials: Any = None, *, retry: RetryPolicy | None = None) -> str:
    """The submitter's IAM member (``user:…`` / ``serviceAccount:…``)."""
    return describe_submitter(credentials, retry=retry).member


def _member(email: str) -> str:
    email = email.lower()
    kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
    return f"{kind}:{email}"


def _refreshed(credentials: Any, attr: str, retry: RetryPolicy | None) -> str | None:
    from google.auth.transport.requests import Request

    policy = retry or RetryPolicy()
    policy.call(lambda: credentials.refresh(Request()), what="credentials.refresh", target=attr)
    value = getattr(credentials, attr, None)
    return value if isinstance(value, str) and "@" in value else None


def _tokeninfo_email(
    credentials: Any, retry: RetryPolicy | None, emulator_host: str | None = None
) -> str | None:
    """Who Google says the credentials' access token belongs to (``None``: it does not say)."""
    import requests  # type: ignore[import-untyped]
    from google.auth.transport.requests import Request

    policy = retry or RetryPolicy()
    url = (
        f"http://{emulator_host}/tokeninfo"
        if emulator_host
        else "https://oauth2.googleapis.com/tokeninfo"
    )

    def run() -> str | None:
        if not getattr(credentials, "token", None) or not getattr(credentials, "valid", False):
            credentials.refresh(Request())
        response = requests.get(
            url,
            params={"access_token": credentials.token},
            timeout=policy.attempt_timeout,
        )
        if response.status_code != 200:
            return None
        email = response.json().get("email")
        return email if isinstance(email, str) and "@" in email else None

    result: str | None = policy.call(run, what="tokeninfo", target="submitter credentials")
    return result


def submitter_of(credentials: Any) -> str:
    """The IAM member the credentials act as, without ever touching their secrets (an end-user
    credential's ``account`` field is free text, never taken: ``unknown``)."""
    member = getattr(credentials, "member", None)
    if isinstance(member, str) and member:
        return member
    email = getattr(credentials, "service_account_email", None)
    if isinstance(email, str) and "@" in email:
        return f"serviceAccount:{email}"
    return "unknown"
