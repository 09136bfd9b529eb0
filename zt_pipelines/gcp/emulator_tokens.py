"""Bearer tokens for the zt-pipelines emulator: a token simply names the caller.

The client half of the emulator's protocol lives here, below both ``gcp/`` (which sends these
tokens when ``ZT_EMULATOR_HOST`` is set) and ``emulator/`` (which reads them), so production
code never imports the emulator.

The emulator is a test double, so a token is not a secret: ``zt-emulator:serviceAccount:EMAIL``
says "I am serviceAccount:EMAIL". Tests use :func:`emulator_credentials` to play different
principals (a submitter without ``actAs``, a pipeline SA, ...) through the real clients.
"""

from __future__ import annotations

from typing import Any

from google.auth import credentials as ga_credentials

TOKEN_PREFIX = "zt-emulator:"
_MEMBER_KINDS = ("serviceAccount:", "user:", "group:", "domain:", "principal:", "principalSet:")
_CALLER_KINDS = ("serviceAccount:", "user:", "principal:")


def token_for(member: str) -> str:
    """The bearer token that names ``member`` (e.g. ``serviceAccount:ci@p.iam...``)."""
    if (
        not member.startswith(_MEMBER_KINDS)
        or not member.isascii()
        or any(c.isspace() for c in member)
    ):
        raise ValueError(
            f"{member!r} is not an IAM member; write serviceAccount:EMAIL or user:EMAIL"
        )
    return TOKEN_PREFIX + member


def caller_from_authorization(header: str | None) -> str | None:
    """The member named by an ``Authorization: Bearer ...`` value, or ``None``."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        return None
    member = token[len(TOKEN_PREFIX) :].strip()
    # only an account can hold credentials: a group, domain or set never calls an API itself
    return member if member.startswith(_CALLER_KINDS) else None


class EmulatorCredentials(ga_credentials.Credentials):  # type: ignore[misc]
    """google-auth credentials whose bearer token names one caller to the emulator.

    They never expire and never refresh; ``member`` and (for service accounts)
    ``service_account_email`` say who they are.
    """

    def __init__(self, member: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = token_for(member)
        self.member = member
        kind, _, email = member.partition(":")
        self.service_account_email = email if kind == "serviceAccount" else None
        self._quota_project_id = None

    @property
    def expired(self) -> bool:
        """Never expired."""
        return False

    @property
    def valid(self) -> bool:
        """Always valid."""
        return True

    def refresh(self, request: Any) -> None:
        """Nothing to refresh: the token is fixed."""

    def with_quota_project(self, quota_project_id: str | None) -> EmulatorCredentials:
        """A copy that records a quota project (the emulator ignores it)."""
        copy = EmulatorCredentials(self.member)
        copy._quota_project_id = quota_project_id
        return copy

    @property
    def quota_project_id(self) -> str | None:
        """The quota project, if one was set."""
        return self._quota_project_id


def emulator_credentials(member: str) -> EmulatorCredentials:
    """Credentials for the real Google clients that make the emulator see ``member`` as caller.

    Args:
        member: an IAM member, e.g. ``serviceAccount:ci@p.iam.gserviceaccount.com``.
    """
    return EmulatorCredentials(member)
