"""Resource URIs and permission strings: parse what users write, normalise to full resource names.

Users write ``gs://bucket[/prefix]``, ``bq://project.dataset[.table]``, ``projects/ID`` or any
Cloud Asset full resource name (``//SERVICE.googleapis.com/...``). Everything inside the package
uses the Cloud Asset full resource name (the ``name`` Cloud Asset Inventory returns), so the
policy engine, the adapters and the emulator agree on one key per resource:

=====================  ==========================================================
what                   full resource name
=====================  ==========================================================
organisation           ``//cloudresourcemanager.googleapis.com/organizations/ID``
folder                 ``//cloudresourcemanager.googleapis.com/folders/ID``
project                ``//cloudresourcemanager.googleapis.com/projects/PROJECT_ID``
bucket                 ``//storage.googleapis.com/BUCKET``
BigQuery dataset       ``//bigquery.googleapis.com/projects/P/datasets/D``
BigQuery table         ``//bigquery.googleapis.com/projects/P/datasets/D/tables/T``
service account        ``//iam.googleapis.com/projects/P/serviceAccounts/EMAIL``
=====================  ==========================================================

An object prefix (``gs://bucket/prefix``) is kept apart from the bucket's name: IAM policies
live on the bucket, and the prefix only narrows the need (and becomes an IAM condition when
provisioning).

This module is pure: no IO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zt_pipelines.errors import PermissionFormatError, ResourceError

CRM = "//cloudresourcemanager.googleapis.com/"
STORAGE = "//storage.googleapis.com/"
BIGQUERY = "//bigquery.googleapis.com/"
IAM = "//iam.googleapis.com/"
APIKEYS = "//apikeys.googleapis.com/"
PAM = "//privilegedaccessmanager.googleapis.com/"
BQCONNECTION = "//bigqueryconnection.googleapis.com/"

# GCS bucket names: 3-63 chars (up to 222 with dots), lowercase letters, digits, -, _ and dots.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# Project ids: 6-30 chars; also accept domain-scoped ids (example.com:proj).
_PROJECT_ID = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BQ_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_NUMERIC = re.compile(r"^[0-9]{1,30}$")
_FULL_NAME = re.compile(r"^//([a-z0-9-]+(?:\.[a-z0-9-]+)*\.googleapis\.com)/(\S+)$")
# Permissions are service.resource.verb (verbs and resources are camelCase, may contain digits).
_PERMISSION = re.compile(r"^[a-z][a-z0-9]*(?:\.[a-zA-Z][a-zA-Z0-9_]*){2,}$")


@dataclass(frozen=True)
class ResourceRef:
    """A normalised resource: its full resource name and an optional object prefix.

    Attributes:
        name: the Cloud Asset full resource name (see the module docstring).
        prefix: for ``gs://bucket/prefix``, the object prefix (``"prefix"``), else ``None``.
    """

    name: str
    prefix: str | None = None

    def __lt__(self, other: object) -> bool:
        # Sort by name, then prefix, with "no prefix" first (a dataclass order would compare
        # None with str and raise).
        if not isinstance(other, ResourceRef):
            return NotImplemented
        return (self.name, self.prefix or "") < (other.name, other.prefix or "")

    @property
    def service(self) -> str:
        """The API service that owns the resource, e.g. ``storage.googleapis.com``."""
        return self.name[2:].split("/", 1)[0]

    @property
    def uri(self) -> str:
        """A short, human-friendly form for reports (``gs://b/p``, ``bq://p.d.t``, ...)."""
        return display_uri(self.name, self.prefix)


def normalize_resource(uri: str, *, where: str | None = None) -> ResourceRef:
    """Parse a user-written resource URI and return its normalised :class:`ResourceRef`.

    Raises:
        ResourceError: the URI is not one of the accepted forms, naming ``where``.
    """
    if not isinstance(uri, str) or not uri or uri != uri.strip() or not uri.isascii():
        raise ResourceError(
            f"resource {uri!r} is not a valid resource URI",
            where=where,
            fix="use gs://bucket[/prefix], bq://project.dataset[.table], projects/ID "
            "or a full resource name //SERVICE.googleapis.com/...",
        )
    if uri.startswith("gs://"):
        return _gcs(uri, where)
    if uri.startswith("bq://"):
        return _bigquery(uri, where)
    if uri.startswith("projects/") and uri.count("/") == 1:
        project = uri.split("/", 1)[1]
        _check_project(project, uri, where)
        return ResourceRef(CRM + "projects/" + project)
    if uri.startswith("//"):
        return _full_name(uri, where)
    raise ResourceError(
        f"resource {uri!r} has an unknown scheme",
        where=where,
        fix="use gs://bucket[/prefix], bq://project.dataset[.table], projects/ID "
        "or a full resource name //SERVICE.googleapis.com/...",
    )


def _gcs(uri: str, where: str | None) -> ResourceRef:
    rest = uri[len("gs://") :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ResourceError(f"{uri!r}: {bucket!r} is not a valid bucket name", where=where)
    if "//" in prefix or "\n" in prefix:
        raise ResourceError(f"{uri!r}: the object prefix is malformed", where=where)
    return ResourceRef(STORAGE + bucket, prefix or None)


def _bigquery(uri: str, where: str | None) -> ResourceRef:
    parts = uri[len("bq://") :].split(".")
    if len(parts) == 4 and ":" not in parts[0]:
        # domain-scoped project ids contain a dot: example.com:proj.dataset.table
        parts = [parts[0] + "." + parts[1], *parts[2:]]
    if len(parts) not in (2, 3) or not all(parts):
        raise ResourceError(
            f"{uri!r} is not bq://project.dataset[.table]",
            where=where,
            fix="name the project, the dataset and optionally the table, dot-separated",
        )
    project, dataset, *table = parts
    _check_project(project, uri, where)
    for piece in (dataset, *table):
        if not _BQ_NAME.match(piece):
            raise ResourceError(f"{uri!r}: {piece!r} is not a valid BigQuery name", where=where)
    name = f"{BIGQUERY}projects/{project}/datasets/{dataset}"
    if table:
        name += f"/tables/{table[0]}"
    return ResourceRef(name)


def _full_name(uri: str, where: str | None) -> ResourceRef:
    match = _FULL_NAME.match(uri)
    # an object prefix may end in "/" (gs://bucket/runs/ normalises to .../objects/runs/)
    prefix_slash = (
        match is not None
        and match.group(1) == "storage.googleapis.com"
        and ("/objects/" in match.group(2))
    )
    if not match or (uri.endswith("/") and not prefix_slash) or "//" in match.group(2):
        raise ResourceError(
            f"{uri!r} is not a full resource name",
            where=where,
            fix="write //SERVICE.googleapis.com/PATH, e.g. //storage.googleapis.com/my-bucket",
        )
    service, path = match.groups()
    if service == "cloudresourcemanager.googleapis.com":
        kind, _, ident = path.partition("/")
        if kind not in ("organizations", "folders", "projects") or not ident or "/" in ident:
            raise ResourceError(f"{uri!r} is not an organisation, folder or project", where=where)
        if kind == "projects":
            if not _NUMERIC.match(ident):
                _check_project(ident, uri, where)
        elif not _NUMERIC.match(ident):
            raise ResourceError(f"{uri!r}: {kind} ids are numeric", where=where)
    if service == "storage.googleapis.com":
        # accept the IAM-condition form projects/_/buckets/B as well as the asset form B
        if path.startswith("projects/_/buckets/"):
            path = path[len("projects/_/buckets/") :]
        bucket, _, prefix = path.partition("/objects/")
        if not _BUCKET.match(bucket):
            raise ResourceError(f"{uri!r}: {bucket!r} is not a valid bucket name", where=where)
        return ResourceRef(STORAGE + bucket, prefix or None)
    return ResourceRef(uri)


def _check_project(project: str, uri: str, where: str | None) -> None:
    if not _PROJECT_ID.match(project):
        raise ResourceError(
            f"{uri!r}: {project!r} is not a valid project id",
            where=where,
            fix="project ids are 6-30 lowercase letters, digits and hyphens, "
            "starting with a letter",
        )


def check_permission(permission: str, *, where: str | None = None) -> str:
    """Return ``permission`` if it has the ``service.resource.verb`` form, else raise.

    Raises:
        PermissionFormatError: naming the permission and ``where``.
    """
    if not isinstance(permission, str) or not _PERMISSION.match(permission):
        raise PermissionFormatError(
            f"{permission!r} is not an IAM permission",
            where=where,
            fix="permissions look like storage.objects.get (service.resource.verb); "
            "roles (roles/...) are not accepted in needs",
        )
    return permission


def display_uri(name: str, prefix: str | None = None) -> str:
    """Render a full resource name in the short form users write (best effort)."""
    if name.startswith(STORAGE):
        tail = name[len(STORAGE) :]
        return f"gs://{tail}/{prefix}" if prefix else f"gs://{tail}"
    if name.startswith(BIGQUERY + "projects/"):
        parts = name[len(BIGQUERY) :].split("/")
        pieces = [parts[1]] + [parts[i] for i in range(3, len(parts), 2)]
        return "bq://" + ".".join(pieces)
    if name.startswith(CRM + "projects/"):
        return name[len(CRM) :]
    return name


def project_resource(project_id: str) -> str:
    """The full resource name of a project given its id."""
    return f"{CRM}projects/{project_id}"


def service_account_resource(email: str) -> str:
    """The full resource name of a service account (project taken from the email's domain).

    Service agents and other Google-owned accounts live in Google's projects; we use ``-`` for
    the project as the IAM API does.
    """
    domain = email.split("@", 1)[1] if "@" in email else ""
    user_managed = domain.endswith(".iam.gserviceaccount.com") and not domain.startswith("gcp-sa-")
    project = domain.split(".", 1)[0] if user_managed else "-"
    return f"{IAM}projects/{project}/serviceAccounts/{email}"
