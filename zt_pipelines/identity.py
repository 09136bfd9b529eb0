"""Service-account identities: strict email validation, default-identity detection, derived ids.

One helper, :func:`classify_identity`, decides what a default identity is; the rewrite, the
verification engine, the drop-in ``PipelineJob`` and provisioning all call it, so the rule
cannot drift. Pure: no IO.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

from zt_pipelines.errors import DefaultIdentityError, IdentityError

# A service-account email: local part 6-30 (user-managed) or longer for Google-managed ones,
# then a domain under gserviceaccount.com. We are deliberately strict: ASCII only (no
# homoglyphs), no whitespace, lowercase, no trailing dot.
_LOCAL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
_USER_MANAGED_DOMAIN = re.compile(
    r"^(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[a-z][a-z0-9.-]*[a-z0-9]\.[a-z][a-z0-9-]{4,28}[a-z0-9])"
    r"\.iam\.gserviceaccount\.com$"
)
_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GOOGLE_DOMAINS = (
    "developer.gserviceaccount.com",
    "appspot.gserviceaccount.com",
    "cloudservices.gserviceaccount.com",
    "cloudbuild.gserviceaccount.com",
)
#: service agents that act as an account only for a caller their service checked (``actAs``
#: on the account it names) and run no code the caller hands them: deputies. An allow-list of
#: Google's own domains (projects nobody else can own), so a look-alike account
#: ``service-N@gcp-sa-evil...`` is never one; an agent not listed here is judged like any other
#: principal.
DEPUTY_AGENT_DOMAINS: frozenset[str] = frozenset(
    {
        "gcp-sa-aiplatform",  # Vertex AI Service Agent: runs pipelines and jobs as the SA named
        "gcp-sa-cloudbuild",
        "gcp-sa-cloudscheduler",
        "gcp-sa-cloudtasks",
        "gcp-sa-eventarc",
        "gcp-sa-pubsub",
        "gcp-sa-workflows",
        "cloudcomposer-accounts",
        "compute-system",
        "container-engine-robot",
        "dataflow-service-producer-prod",
        "dataproc-accounts",
        "gcf-admin-robot",
        "serverless-robot-prod",
    }
)
#: the agents a Vertex job's attached identity is used through when it runs (the Vertex AI
#: Custom Code and Reasoning Engine agents mint its tokens) and the deputies above: a
#: delegation by anyone else is not how a job runs as its identity
JOB_AGENT_DOMAINS: frozenset[str] = DEPUTY_AGENT_DOMAINS | {
    "gcp-sa-aiplatform-cc",
    "gcp-sa-aiplatform-re",
}
_SERVICE_AGENT_DOMAIN = re.compile(r"^gcp-sa-[a-z0-9-]+\.iam\.gserviceaccount\.com$")
# service agents outside gcp-sa-* domains (compute-system, container-engine-robot, ...) are
# service-PROJECT_NUMBER (or service-org-/folder-NUMBER); "service-reader" is a user account.
_SERVICE_AGENT_LOCAL = re.compile(r"^service-(?:org-|folder-)?[0-9]+$")

DEFAULT_KINDS = {
    "compute-default": "the Compute Engine default service account",
    "appengine-default": "the App Engine default service account",
    "custom-code-agent": "the Vertex AI Custom Code Service Agent",
    "vertex-agent": "the Vertex AI Service Agent",
    "service-agent": "a Google-managed service agent",
    "cloudservices": "the Google APIs Service Agent",
    "cloudbuild": "the Cloud Build service account",
    "empty": "an empty service account (Vertex would fall back to a default identity)",
}


@dataclass(frozen=True)
class IdentityClass:
    """What :func:`classify_identity` found.

    Attributes:
        email: the email, lower-cased (valid emails only).
        default_kind: a key of ``DEFAULT_KINDS`` when this is a default/Google-managed identity.
    """

    email: str
    default_kind: str | None = None

    @property
    def is_default(self) -> bool:
        """True for any default or Google-managed identity."""
        return self.default_kind is not None

    @property
    def description(self) -> str:
        """Human description of the default kind (empty for user-managed accounts)."""
        return DEFAULT_KINDS.get(self.default_kind or "", "")


def classify_identity(email: str | None, *, where: str | None = None) -> IdentityClass:
    """Validate ``email`` strictly and say whether it is a default identity.

    Default identities are compared case-insensitively; a malformed email raises.

    Raises:
        IdentityError: whitespace, non-ASCII characters (homoglyphs), wrong domain, trailing
            dots, upper-case letters in the local part that would hide a default identity, ...
    """
    if email is None or email == "":
        return IdentityClass("", "empty")
    lowered, kind = _classified(email, where)
    return IdentityClass(lowered, kind)


def identity_kind(email: str, *, where: str | None = None) -> str | None:
    """:func:`classify_identity`'s ``default_kind`` for a non-empty ``email``, without building
    the record (a check of thousands of step identities asks only this).

    Raises:
        IdentityError: as :func:`classify_identity`.
    """
    if email == "":
        return "empty"
    return _classified(email, where)[1]


class IdentityKinds:
    """:func:`identity_kind` for one batch of emails (a check's thousands of step identities):
    what a domain decides is worked out once per domain, so a user-managed account of a known
    domain costs one match of its account id. The memo lives as long as the object."""

    def __init__(self) -> None:
        # domain -> every account of it with a plain account id is user-managed and valid
        self._plain: dict[str, bool] = {}

    def __call__(self, email: str, *, where: str | None = None) -> str | None:
        """:func:`identity_kind` of ``email`` (the same answer, the same errors).

        Raises:
            IdentityError: as :func:`classify_identity`.
        """
        local, _, domain = email.partition("@")
        plain = self._plain.get(domain)
        if plain is None:
            plain = self._plain[domain] = _plain_domain(domain)
        # a plain account id ([a-z0-9-], not a service agent's service-N) of such a domain
        # passes every test of _classified and is no default identity
        if plain and not local.startswith("service-") and _PLAIN_ID.fullmatch(local):
            return None
        return identity_kind(email, where=where)


_PLAIN_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")


def _plain_domain(domain: str) -> bool:
    """Whether ``domain`` is a valid user-managed service-account domain that makes no account
    a default identity (only its local part can: a service agent's ``service-N``)."""
    return (
        not domain.endswith(".")
        and ".." not in domain
        and domain.endswith(".gserviceaccount.com")
        and _USER_MANAGED_DOMAIN.fullmatch(domain) is not None
        and _default_kind("plain", domain) is None
    )


def _classified(email: str, where: str | None) -> tuple[str, str | None]:
    """(the email lower-cased, its default kind) of a non-empty ``email``, or raise."""
    if not isinstance(email, str):
        raise IdentityError(f"service account {email!r} is not a string", where=where)
    if not email.isascii():
        bad = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in email if not c.isascii())
        raise IdentityError(
            f"service account {email!r} contains non-ASCII characters: {bad}",
            where=where,
            fix="service-account emails are ASCII only; this may be a look-alike character",
        )
    # every whitespace character but the space is unprintable: the same test as a scan of
    # string.whitespace, without a generator per email (thousands of steps)
    if " " in email or not email.isprintable():
        raise IdentityError(
            f"service account {email!r} contains whitespace or control characters", where=where
        )
    lowered = email.lower()
    local, at, domain = lowered.partition("@")
    if not at or "@" in domain:
        raise IdentityError(f"service account {email!r} is not an email address", where=where)
    if domain.endswith(".") or local.endswith(".") or ".." in domain:
        raise IdentityError(f"service account {email!r} has a stray dot", where=where)
    # an account id is a valid account name too: one regex for the common case
    account_id = _ACCOUNT_ID.match(local) is not None
    if not account_id and not _LOCAL.match(local):
        raise IdentityError(
            f"service account {email!r}: {local!r} is not a valid account name", where=where
        )
    kind = _default_kind(local, domain)
    if kind is not None:
        return lowered, kind
    if not domain.endswith(".gserviceaccount.com") or not _USER_MANAGED_DOMAIN.match(domain):
        raise IdentityError(
            f"{email!r} is not a service-account email",
            where=where,
            fix="use NAME@PROJECT_ID.iam.gserviceaccount.com",
        )
    if not account_id:
        raise IdentityError(
            f"service account {email!r}: account ids are 6-30 characters [a-z][a-z0-9-]*[a-z0-9]",
            where=where,
        )
    if email != lowered:
        raise IdentityError(
            f"service account {email!r} has upper-case letters",
            where=where,
            fix=f"write it as {lowered!r}",
        )
    return lowered, None


#: the domains whose every account is one default identity
_DOMAIN_KINDS = {
    "appspot.gserviceaccount.com": "appengine-default",
    "cloudservices.gserviceaccount.com": "cloudservices",
    "cloudbuild.gserviceaccount.com": "cloudbuild",
    "gcp-sa-aiplatform-cc.iam.gserviceaccount.com": "custom-code-agent",
    "gcp-sa-aiplatform.iam.gserviceaccount.com": "vertex-agent",
}


def _default_kind(local: str, domain: str) -> str | None:
    if domain == "developer.gserviceaccount.com" and local.endswith("-compute"):
        return "compute-default"
    kind = _DOMAIN_KINDS.get(domain)
    if kind is not None:
        return kind
    # the prefix tests only skip the regexes where they cannot match (thousands of steps)
    if (domain.startswith("gcp-sa-") and _SERVICE_AGENT_DOMAIN.match(domain)) or (
        local.startswith("service-")
        and _SERVICE_AGENT_LOCAL.match(local)
        and domain.endswith(".gserviceaccount.com")
    ):
        return "service-agent"
    if domain in _GOOGLE_DOMAINS:
        return "service-agent"
    return None


def require_user_managed(email: str | None, *, where: str | None = None) -> str:
    """Return the validated, lower-cased email, or raise if it is a default identity.

    Raises:
        DefaultIdentityError: a default or Google-managed identity (named, with ``where``).
        IdentityError: a malformed email.
    """
    found = classify_identity(email, where=where)
    if found.is_default:
        shown = f"{email!r} is " if email else ""
        raise DefaultIdentityError(
            f"{shown}{found.description}; zero trust refuses default identities",
            where=where,
            fix="declare a dedicated service account with @zt.step(service_account=...) "
            "or leave it unset to get a derived identity",
        )
    return found.email


DEFAULT_NAME_TEMPLATE = "zt-{pipeline}-{task}"


def derive_account_id(pipeline: str, task: str, *, template: str = DEFAULT_NAME_TEMPLATE) -> str:
    """Derive a deterministic, valid service-account id for a task.

    The template may use ``{pipeline}`` and ``{task}``. The result is lower-cased, squeezed to
    ``[a-z][a-z0-9-]*[a-z0-9]`` and always suffixed with a hash of the *full* (pipeline, task,
    template) triple, so distinct tasks never share an id and the same task always gets the
    same id. The hash is unconditional: without it ``("a-b", "c")`` and ``("a", "b-c")`` both
    render ``zt-a-b-c``, and a template without ``{task}`` would give every task of a pipeline
    one identity. A name that fits in 23 characters gets 6 hex digits (``zt-x-prep-221a43``).
    A longer one gets 10 (with 6, a pipeline with a long name and 1,000 tasks would meet a
    shared id ~3% of the time) and 19 readable characters, shortened so that the task still
    shows: the pipeline's name first, down to 5 characters, then the task's, down to 5
    (``zt-custo-evaluate-m-<10 hex>`` for task ``evaluate-model`` of
    ``customer-churn-training``), so the pipeline identity and every step identity of a
    long-named pipeline differ where a person reads them.
    """
    _check_naming_template(template)
    slug = _slug(template.format(pipeline=pipeline, task=task))
    digest = hashlib.sha256(f"{pipeline}\x00{task}\x00{template}".encode()).hexdigest()
    if len(slug) <= 23:
        slug = slug.rstrip("-") + "-" + digest[:6]
    else:  # shortened: the hash carries the difference, the readable part keeps the task
        slug = _shortened(template, pipeline, task, 19) + "-" + digest[:10]
    if not _ACCOUNT_ID.match(slug):  # pragma: no cover - construction above guarantees it
        raise IdentityError(f"derived account id {slug!r} is invalid")
    return slug


def _check_naming_template(template: str) -> None:
    """Only bare ``{pipeline}`` and ``{task}`` fields: a format string would otherwise reach
    attributes (``{task.__class__}``), indexes, conversions and format specs of its values."""
    try:
        fields = [
            (name, conversion, spec)
            for _text, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise IdentityError(
            f"naming template {template!r} is invalid ({exc})",
            fix="use only {pipeline} and {task} placeholders (write {{ and }} for braces)",
        ) from None
    for name, conversion, spec in fields:
        if name not in ("pipeline", "task") or conversion or spec:
            shown = (
                "{"
                + name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            raise IdentityError(
                f"naming template {template!r} has the field {shown}: only {{pipeline}} and "
                "{task} are allowed, with no attribute, index, conversion or format",
                fix="use only {pipeline} and {task} placeholders",
            )


def _slug(raw: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = "zt-" + slug
    return slug


_KEEP = 5  # characters of each part kept before the other part is cut further


def _shortened(template: str, pipeline: str, task: str, budget: int) -> str:
    """The template rendered in ``budget`` characters: the pipeline's part is cut first (down
    to ``_KEEP``), then the task's (down to ``_KEEP``), then both to nothing; a template whose
    own text is longer is cut at the end."""
    parts = [
        re.sub(r"[^a-z0-9]+", "-", pipeline.lower()).strip("-"),
        re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-"),
    ]

    def render() -> str:
        p, t = (part.rstrip("-") for part in parts)
        return _slug(template.format(pipeline=p, task=t))

    excess = len(render()) - budget
    for index, floor in ((0, _KEEP), (1, _KEEP), (0, 0), (1, 0)):  # one pass, then one render
        cut = min(excess, max(0, len(parts[index]) - floor))
        if cut > 0:
            parts[index] = parts[index][: len(parts[index]) - cut]
            excess -= cut
    return render()[:budget].rstrip("-")


def service_account_email(account_id: str, project: str) -> str:
    """``ACCOUNT_ID@PROJECT.iam.gserviceaccount.com`` for a user-managed service account."""
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def home_project(email: str) -> str | None:
    """The project a user-managed service account lives in, as its email names it
    (``None`` for other principals). ``serviceAccount:`` is accepted and dropped."""
    domain = email.removeprefix("serviceAccount:").lower().partition("@")[2]
    if not domain.endswith(".iam.gserviceaccount.com") or domain.startswith("gcp-sa-"):
        return None
    return domain.removesuffix(".iam.gserviceaccount.com")


def in_projects(email: str, projects: Iterable[str]) -> bool:
    """True when the user-managed account ``email`` lives in one of ``projects`` (project
    ids; a domain-scoped ``example.com:proj`` matches the email's ``example.com.proj`` and
    ``proj.example.com`` forms). Other principals are in no project: False."""
    home = home_project(email)
    if home is None:
        return False
    for project in projects:
        domain, colon, name = project.lower().rpartition(":")
        if home == project.lower() or (colon and home in (f"{domain}.{name}", f"{name}.{domain}")):
            return True
    return False


_EMAIL = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+$")


def submitter_member(submitter: str, *, where: str = "submitter") -> str:
    """The IAM member (``user:EMAIL`` / ``serviceAccount:EMAIL``) of a submitting principal.

    Accepts ``user:EMAIL``, ``serviceAccount:EMAIL`` or a bare email (a service account by its
    domain). A submitter is one principal that holds credentials and may be granted actAs on
    the pipeline SA: groups, domains, ``allUsers``/``allAuthenticatedUsers``, principal sets,
    names without ``@`` and default service accounts are refused.

    Raises:
        IdentityError: not one user or service account; DefaultIdentityError: a default SA.
    """
    fix = "write user:EMAIL, serviceAccount:EMAIL or a bare email"
    if not isinstance(submitter, str):
        raise IdentityError(f"submitter {submitter!r} is not a string", where=where, fix=fix)
    kind, sep, email = submitter.partition(":")
    if not sep:
        kind, email = "", kind
    if kind not in ("", "user", "serviceAccount"):
        raise IdentityError(
            f"submitter {submitter!r} is not one user or service account", where=where, fix=fix
        )
    if kind == "serviceAccount" or (not kind and email.lower().endswith(".gserviceaccount.com")):
        return f"serviceAccount:{require_user_managed(email, where=where)}"
    if not email.isascii() or not _EMAIL.match(email.lower()):
        raise IdentityError(
            f"submitter {submitter!r} is not an email address", where=where, fix=fix
        )
    return f"user:{email.lower()}"
