"""One exception hierarchy for the whole package.

Every error a user can see is a :class:`ZtError`. It carries three parts — *what* was wrong,
*where* (a file, a task, a field), and *what to do* — so the CLI can print one clear line and
exit with the right code, and library users can catch one base class.

Exit codes used by the CLI: ``ZeroTrustViolation`` → 1 (refused), every :class:`InputError`
→ 2 (bad input), :class:`ApiError` and anything else that stopped verification → 1 (fail
closed: a check that could not run refuses).
"""

from __future__ import annotations

from typing import Any


class ZtError(Exception):
    """Base of every error raised by zt-pipelines.

    Args:
        what: what was wrong, as one sentence.
        where: where it was found (file path, ``task 'train'``, ``needs['gs://x']`` ...).
        fix: what the user can do about it.
    """

    exit_code: int = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line, user-facing description: ``where: what (fix)``."""
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f" — {self.fix}"
        return text

    def __str__(self) -> str:
        return self.message


class InputError(ZtError):
    """Bad input from the user (template, manifest, snapshot, policy, argument). Exit code 2."""

    exit_code = 2


class TemplateError(InputError):
    """A pipeline template that cannot be read or is not a KFP pipeline."""


class DeclarationError(InputError):
    """A ``@zt.step`` declaration or a manifest entry is malformed or contradictory."""


class ResourceError(DeclarationError):
    """A resource URI in ``needs`` cannot be parsed or normalised."""


class PermissionFormatError(DeclarationError):
    """A permission string is not of the form ``service.resource.verb``."""


class UnknownPermissionError(PermissionFormatError):
    """A well-formed permission no predefined role includes (a typo, most often).

    Attributes:
        suggestions: the closest known permission names, best first.
    """

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        suggestions: tuple[str, ...] = (),
    ) -> None:
        self.suggestions = suggestions
        super().__init__(what, where=where, fix=fix)


class CustomRoleSupportError(ZtError):
    """A custom role would hold a permission IAM does not allow in custom roles
    (``customRolesSupportLevel`` ``NOT_SUPPORTED``, or not testable where the role lives):
    refused before anything is written. Exit code 1.

    Attributes:
        permissions: the refused permissions, sorted.
    """

    exit_code = 1

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        permissions: tuple[str, ...] = (),
    ) -> None:
        self.permissions = permissions
        super().__init__(what, where=where, fix=fix)


class ManifestError(DeclarationError):
    """A manifest file is malformed, or names a task the pipeline does not have."""


class IdentityError(InputError):
    """A service-account identity is malformed or cannot be resolved before submission."""


class UnpinnedIdentityError(IdentityError):
    """An identity not known before submission: it comes from an upstream task's output, a
    loop item or another run-time value, or from a pipeline parameter that has no value."""


class PipelineIdentityReuseError(IdentityError):
    """A step would run as the pipeline's own service account, which can act as every step
    identity: per-step isolation is gone (ZT103)."""


class DefaultIdentityError(IdentityError):
    """A default or Google-managed identity (Compute default SA, a service agent, ...) was used."""


class SnapshotError(InputError):
    """A snapshot file is malformed."""


class PolicyFileError(InputError):
    """An organisation policy file (``zt-policy.yaml``) is malformed."""


class MissingCredentialsError(InputError):
    """A Google API call is needed (a live check, a remote template, a submission) and no
    credentials are configured: neither ``credentials=``, ``aiplatform.init`` nor ADC."""


class StateChangedError(ZtError):
    """What a decision was taken against (endpoint, project, location, credentials, service
    account, network) changed before the action it approved: refused, nothing was sent."""


class PipelineRootOwnerError(ZtError):
    """The pipeline-root bucket belongs to another project than the job's (bucket squatting):
    refused, nothing was sent."""


class ApiError(ZtError):
    """A Google API call failed in a way that stops verification (after retries)."""

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        code: str | None = None,
        transient: bool = False,
    ) -> None:
        self.code = code
        self.transient = transient
        super().__init__(what, where=where, fix=fix)


class ZeroTrustViolation(ZtError):
    """Raised instead of submitting when verification found an error-severity finding.

    ``report`` holds the full :class:`~zt_pipelines.policy.report.Report`; ``str(exc)`` is the
    readable table, and in a notebook the exception renders the report as HTML.
    """

    exit_code = 1

    def __init__(self, report: Any, *, what: str | None = None) -> None:
        self.report = report
        super().__init__(what or "refused: verification found errors", where=None, fix=None)

    def __str__(self) -> str:
        return f"{self.what}\n{self.report}"

    def _repr_html_(self) -> str:
        from html import escape

        html = getattr(self.report, "_repr_html_", None)
        return str(html()) if callable(html) else f"<pre>{escape(str(self))}</pre>"
