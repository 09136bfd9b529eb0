"""Fetch a pipeline template from where aiplatform takes it: a local file, ``gs://``, Artifact
Registry (``https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/VERSION|TAG``) or an https URL of a
``.yaml``/``.json`` file.

One function, :func:`fetch_template_text`, serves the drop-in ``PipelineJob`` and every CLI
command, with aiplatform's credential rules: the ``credentials`` given, else those of
``aiplatform.init``, else Application Default Credentials. ``ZT_EMULATOR_HOST`` is the one
switch to the emulator: ``gs://`` goes to its Storage API and an Artifact Registry download is
sent to its address with the registry host in the ``Host`` header (no DNS lookup); any other
https URL is refused there, since it would leave the emulator. This module fetches; it decides
nothing.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any
from urllib import error as urllib_error
from urllib import parse as urllib_parse
from urllib import request as urllib_request

from zt_pipelines.errors import (
    ApiError,
    InputError,
    MissingCredentialsError,
    TemplateError,
    ZtError,
)
from zt_pipelines.loaders import LIMITS

# aiplatform's patterns (google.cloud.aiplatform.constants.pipeline), kept here so that the
# CLI can fetch without importing aiplatform
AR_URL = re.compile(r"^https:\/\/([\w-]+)-kfp\.pkg\.dev\/.*", re.IGNORECASE)
HTTPS_URL = re.compile(r"^https:\/\/([\.\/\w-]+)\/.*(json|yaml|yml)$")
MAX_TEMPLATE_BYTES = LIMITS["template"].max_bytes
"""A template larger than this is refused while it is read, before it is parsed (the strict
loader's template limit; a compiled pipeline of thousands of tasks is a few MB)."""
TIMEOUT_S = 60.0
_LOG = logging.getLogger("zt_pipelines.gcp")


TemplateFetchError = TemplateError
"""A template that cannot be read from where it was named (exit code 2)."""


def is_remote(uri: str | Path) -> bool:
    """``True`` for ``gs://``, ``http://`` and ``https://`` template locations."""
    return isinstance(uri, str) and uri.startswith(("gs://", "http://", "https://"))


def is_registry_url(uri: str) -> bool:
    """``True`` for an Artifact Registry KFP URL (aiplatform's test)."""
    return bool(AR_URL.match(uri))


def fetch_template_text(
    uri: str | Path,
    *,
    credentials: Any = None,
    project: str | None = None,
    emulator_host: str | None = None,
) -> str:
    """The template's text from ``uri`` (reads only).

    Args:
        uri: a local path, ``gs://BUCKET/OBJECT``, an Artifact Registry KFP URL or an https
            URL ending in ``.json``/``.yaml``/``.yml``.
        credentials: google-auth credentials for ``gs://`` and Artifact Registry; default:
            ``aiplatform.init``'s, else Application Default Credentials (against the
            emulator: its caller from ``ZT_EMULATOR_CALLER``, else anonymous).
        project: quota project of the Storage client.
        emulator_host: ``HOST:PORT`` of the emulator; default ``$ZT_EMULATOR_HOST``.

    Raises:
        TemplateFetchError: not found, not UTF-8, too large, or not a template location.
        MissingCredentialsError: a remote template and no credentials anywhere.
        ApiError: the service refused or failed.
    """
    from zt_pipelines.gcp.clients import emulator_host_from_env

    if not is_remote(uri):
        return _read_local(Path(uri))
    text_uri = str(uri)
    host = emulator_host_from_env(emulator_host)
    if text_uri.startswith("gs://"):
        return _decode(_fetch_gcs(text_uri, credentials, project, host), text_uri)
    if is_registry_url(text_uri):
        return _decode(_fetch_registry(text_uri, credentials, host), text_uri)
    if not HTTPS_URL.match(text_uri):
        raise TemplateFetchError(
            "not a template location: use a local file, gs://BUCKET/OBJECT, an Artifact "
            "Registry URL (https://REGION-kfp.pkg.dev/...) or an https URL of a .yaml/.json file",
            where=text_uri,
        )
    if host:
        raise TemplateFetchError(
            "an https template outside Artifact Registry would leave the emulator",
            where=text_uri,
            fix="serve it from the emulator (gs:// or Artifact Registry) or unset ZT_EMULATOR_HOST",
        )
    return _decode(_get(text_uri, headers={}), text_uri)  # aiplatform sends no credentials here


def resolve_credentials(credentials: Any = None, *, emulator_host: str | None = None) -> Any:
    """aiplatform's rule: the credentials given, else ``aiplatform.init``'s (when aiplatform is
    loaded), else Application Default Credentials; against the emulator its caller.

    Raises:
        MissingCredentialsError: none of them exist (one line, never google-auth's text).
    """
    if credentials is not None:
        return credentials
    initializer = sys.modules.get("google.cloud.aiplatform.initializer")
    if initializer is not None:
        configured = getattr(initializer.global_config, "_credentials", None)
        if configured is not None:
            return configured
    if emulator_host:
        from zt_pipelines.gcp.clients import emulator_caller_credentials

        return emulator_caller_credentials()
    from zt_pipelines.gcp.clients import default_credentials

    try:
        creds, _project = default_credentials()
    except InputError as exc:
        raise MissingCredentialsError(
            "no Google credentials found",
            where="credentials",
            fix="call aiplatform.init(credentials=...), pass credentials=..., or run "
            "`gcloud auth application-default login`",
        ) from exc
    return creds


def _read_local(path: Path) -> str:
    try:
        if not path.is_file():
            hint = ""
            if str(path).startswith(("gs:/", "https:/", "http:/")):
                hint = " (a URL lost a slash: write gs://BUCKET/OBJECT)"
            raise TemplateFetchError(f"not found{hint}", where=str(path))
        size = path.stat().st_size
        if size > MAX_TEMPLATE_BYTES:
            raise TemplateFetchError(
                f"the template is {size} bytes (limit {MAX_TEMPLATE_BYTES})", where=str(path)
            )
        data = path.read_bytes()
    except OSError as exc:
        raise TemplateFetchError(f"cannot read the template ({exc})", where=str(path)) from exc
    return _decode(data, str(path))


def _decode(data: bytes, where: str) -> str:
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateFetchError(
            f"the template is larger than {MAX_TEMPLATE_BYTES} bytes", where=where
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateFetchError(f"the template is not UTF-8 ({exc.reason})", where=where) from exc


def _fetch_gcs(uri: str, credentials: Any, project: str | None, host: str | None) -> bytes:
    from google.api_core import exceptions as gexc

    from zt_pipelines.gcp.clients import ClientFactory

    bucket, _, name = uri[len("gs://") :].partition("/")
    if not bucket or not name:
        raise TemplateFetchError("not gs://BUCKET/OBJECT", where=uri)
    creds = resolve_credentials(credentials, emulator_host=host)
    factory = ClientFactory(creds, emulator_host=host or "", project=project)  # "": Google
    _LOG.debug("call storage.objects.get %s", uri)
    try:
        blob = factory.storage().bucket(bucket).blob(name)
        # one byte past the limit is enough to know it is too large (_decode refuses it)
        data: bytes = blob.download_as_bytes(start=0, end=MAX_TEMPLATE_BYTES)
    except ZtError:
        raise
    except gexc.NotFound as exc:
        raise TemplateFetchError("not found", where=uri) from exc
    except gexc.GoogleAPICallError as exc:
        raise ApiError(f"cannot read the template ({_first_line(exc)})", where=uri) from exc
    except Exception as exc:  # transport errors
        raise ApiError(
            f"cannot read the template ({type(exc).__name__}: {_first_line(exc)})", where=uri
        ) from exc
    return data


def _fetch_registry(uri: str, credentials: Any, host: str | None) -> bytes:
    creds = resolve_credentials(credentials, emulator_host=host)
    headers: dict[str, str] = {}
    token = _token(creds, uri)
    if token:
        headers["Authorization"] = "Bearer " + token
    if not host:
        return _get(uri, headers=headers)
    parts = urllib_parse.urlsplit(uri)
    headers["Host"] = parts.netloc  # the registry host rides in the header: no DNS lookup
    local = urllib_parse.urlunsplit(("http", host, parts.path, parts.query, ""))
    return _get(local, headers=headers, where=uri)


def _token(credentials: Any, where: str) -> str | None:
    """The bearer token, refreshed first when stale (as aiplatform's loader does)."""
    from google.auth.credentials import AnonymousCredentials

    if isinstance(credentials, AnonymousCredentials):
        return None
    try:
        if not getattr(credentials, "valid", False):
            from google.auth.transport.requests import Request

            credentials.refresh(Request())
    except Exception as exc:  # google-auth raises RefreshError/TransportError
        raise ApiError(
            f"cannot refresh the credentials ({type(exc).__name__}: {_first_line(exc)})",
            where=where,
        ) from exc
    token = getattr(credentials, "token", None)
    return str(token) if token else None


def _get(url: str, *, headers: dict[str, str], where: str | None = None) -> bytes:
    where = where or url
    _LOG.debug("call templates.download %s", where)
    req = urllib_request.Request(url, headers=headers)
    try:
        with urllib_request.urlopen(req, timeout=TIMEOUT_S) as response:
            data: bytes = response.read(MAX_TEMPLATE_BYTES + 1)
    except urllib_error.HTTPError as exc:
        if exc.code == 404:
            raise TemplateFetchError("not found", where=where) from exc
        raise ApiError(
            f"cannot fetch the template (HTTP {exc.code}: {_error_message(exc)})",
            where=where,
            code=str(exc.code),
        ) from exc
    except (urllib_error.URLError, OSError, ValueError) as exc:
        raise ApiError(
            f"cannot fetch the template ({type(exc).__name__}: {_first_line(exc)})", where=where
        ) from exc
    return data


def _error_message(exc: urllib_error.HTTPError) -> str:
    """Google's error message from the JSON envelope, else the HTTP reason."""
    import json

    try:
        body = json.loads(exc.read(64 * 1024) or b"{}")
        message = body["error"]["message"]
    except Exception:  # not Google's envelope: the status line says enough
        return str(exc.reason)
    return str(message).splitlines()[0][:300]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
