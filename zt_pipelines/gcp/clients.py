"""Builds the official Google clients, pointed at Google or at the zt-pipelines emulator.

One switch, ``ZT_EMULATOR_HOST=HOST:PORT`` (or ``emulator_host=``), points every client at the
emulator: gRPC clients get a channel to that address that still carries the caller's bearer
token (so the emulator can enforce IAM on its callers), HTTP clients (Cloud Storage, BigQuery,
Vertex AI over REST) get ``http://HOST:PORT`` as their endpoint. Nothing else changes.

It is the only switch: without it, the client libraries' own endpoint variables
(``STORAGE_EMULATOR_HOST``, ``API_ENDPOINT_OVERRIDE``, ``BIGQUERY_EMULATOR_HOST``) would silently
send live reads — and the caller's token, over plain HTTP — elsewhere while the report says they
came from Google; live clients pin Google's endpoints when one is set (a warning names it).

Clients are created lazily and once per factory; they are thread-safe, so one factory serves a
whole concurrent fetch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from zt_pipelines.errors import InputError

EMULATOR_ENV = "ZT_EMULATOR_HOST"
#: Who the emulator should see as the caller when no credentials are passed (an IAM member).
EMULATOR_CALLER_ENV = "ZT_EMULATOR_CALLER"
_CLOUD_PLATFORM = ("https://www.googleapis.com/auth/cloud-platform",)
_log = logging.getLogger("zt_pipelines.gcp")

#: Google's own endpoints, and the variables with which a client library would leave them
GOOGLE_STORAGE_ENDPOINT = "https://storage.googleapis.com"
GOOGLE_BIGQUERY_ENDPOINT = "https://bigquery.googleapis.com"
STORAGE_REDIRECT_ENV = ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE")
BIGQUERY_REDIRECT_ENV = ("BIGQUERY_EMULATOR_HOST",)


def live_endpoint(service: str, variables: tuple[str, ...], google: str) -> str | None:
    """``google`` when one of ``variables`` is set (it would redirect a live client: the library
    reads it itself when no endpoint is passed), else ``None`` (the library's default, which
    keeps its mTLS endpoint choice). Says which variable is ignored, once per call."""
    found = [v for v in variables if os.environ.get(v)]
    if not found:
        return None
    _log.warning(
        "%s is set but ZT_EMULATOR_HOST is not: live %s reads go to %s (the emulator switch "
        "is ZT_EMULATOR_HOST)",
        ", ".join(found),
        service,
        google,
    )
    return google


class EmulatorHostError(InputError):
    """``ZT_EMULATOR_HOST`` / ``emulator_host`` is not ``HOST:PORT``."""


def emulator_host_from_env(explicit: str | None = None) -> str | None:
    """The emulator address to use: ``explicit``, else ``$ZT_EMULATOR_HOST``, else ``None``.

    Raises:
        EmulatorHostError: the value is not ``HOST:PORT``.
    """
    value = explicit if explicit is not None else os.environ.get(EMULATOR_ENV)
    if not value:
        return None
    value = value.strip().removeprefix("http://")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in value:
        raise EmulatorHostError(
            f"emulator address {value!r} is not HOST:PORT",
            where=EMULATOR_ENV,
            fix="set it to the address the emulator printed, e.g. 127.0.0.1:8085",
        )
    return value


def default_credentials() -> tuple[Any, str | None]:
    """Application Default Credentials and their project, via google-auth.

    Raises:
        InputError: no credentials are configured.
    """
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, project = google.auth.default(scopes=_CLOUD_PLATFORM)
    except DefaultCredentialsError as exc:
        raise InputError(
            "no Google credentials found",
            where="Application Default Credentials",
            fix="run `gcloud auth application-default login`, pass credentials=..., "
            "or check against a snapshot file",
        ) from exc
    return creds, project


def emulator_caller_credentials() -> Any:
    """Credentials for the emulator: the member in ``$ZT_EMULATOR_CALLER``, else anonymous.

    The emulator's tokens only name a caller (they are not secrets), so the CLI and the
    drop-in job can play any principal against it without a credentials file.
    """
    member = os.environ.get(EMULATOR_CALLER_ENV, "").strip()
    if member:
        from zt_pipelines.gcp.emulator_tokens import emulator_credentials

        try:
            return emulator_credentials(member)
        except ValueError as exc:
            raise EmulatorHostError(
                str(exc), where=EMULATOR_CALLER_ENV, fix="write serviceAccount:EMAIL or user:EMAIL"
            ) from exc
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


class _TokenInterceptor:
    """Adds ``authorization: Bearer TOKEN`` to every gRPC call (refreshing when needed)."""

    def __init__(self, credentials: Any) -> None:
        from google.auth.credentials import AnonymousCredentials

        self._credentials = credentials
        self._anonymous = isinstance(credentials, AnonymousCredentials)
        self._lock = threading.Lock()
        self._header: tuple[str, str] | None = None

    def authorization(self) -> tuple[str, str] | None:
        """The ``authorization`` header for the next call (``None``: anonymous, no token)."""
        if self._anonymous:
            return None  # anonymous callers send no token (cannot refresh)
        from google.auth.transport.requests import Request

        with self._lock:
            if not getattr(self._credentials, "valid", True) or not getattr(
                self._credentials, "token", None
            ):
                self._credentials.refresh(Request())
            token = self._credentials.token
            header = self._header
            if header is None or header[1] != f"Bearer {token}":
                header = self._header = ("authorization", f"Bearer {token}")
        return header

    def _metadata(self, metadata: Any) -> list[tuple[str, str]]:
        header = self.authorization()
        if header is None:
            return list(metadata or ())
        out = [(k, v) for k, v in (metadata or ()) if k.lower() != "authorization"]
        out.append(header)
        return out


def _interceptor_classes() -> Any:
    import grpc

    class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
        def __init__(self, base: Any, metadata: Any) -> None:
            self.method = base.method
            self.timeout = base.timeout
            self.metadata = metadata
            self.credentials = base.credentials
            self.wait_for_ready = getattr(base, "wait_for_ready", None)
            self.compression = getattr(base, "compression", None)

    class Interceptor(
        _TokenInterceptor,
        grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
        grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    ):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(_Details(details, self._metadata(details.metadata)), request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(_Details(details, self._metadata(details.metadata)), request)

    return Interceptor


def emulator_channel(address: str, credentials: Any) -> Any:
    """A gRPC channel to the emulator at ``address`` that carries ``credentials``' token.

    The emulator listens on loopback without TLS; the token rides as call metadata (plain
    insecure channels would otherwise drop call credentials).
    """
    return _emulator_channels(address, credentials)[0]


def _emulator_channels(address: str, credentials: Any) -> tuple[Any, Any, _TokenInterceptor]:
    """The token-carrying channel, the plain channel under it and the token interceptor."""
    import grpc

    channel = grpc.insecure_channel(
        address,
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    interceptor = _interceptor_classes()(credentials)
    return grpc.intercept_channel(channel, interceptor), channel, interceptor


#: keep-alive connections per host for the HTTP clients: a concurrent fetch runs this many
#: requests at once, and requests' default (10) drops and reopens every connection beyond it
HTTP_POOL_SIZE = 128


def prepare_http_session(session: Any, endpoint: str, size: int = HTTP_POOL_SIZE) -> None:
    """Fit an HTTP client's ``requests`` session for many small concurrent reads of one API.

    * keep ``size`` connections to the host (plain adapters only: an mTLS adapter google-auth
      mounted stays as it is);
    * read the environment's proxy and CA-bundle settings for ``endpoint`` once, here, instead
      of on every request (``requests`` walks the whole environment twice per request: a fifth
      of the client's CPU in a live check). ``~/.netrc`` passwords are not sent to the API
      either (its bearer token is the only credential).
    """
    from requests.adapters import HTTPAdapter  # type: ignore[import-untyped]
    from requests.utils import get_environ_proxies  # type: ignore[import-untyped]

    for prefix, adapter in list(getattr(session, "adapters", {}).items()):
        if type(adapter) is HTTPAdapter:
            session.mount(prefix, HTTPAdapter(pool_maxsize=size, max_retries=adapter.max_retries))
    if not getattr(session, "trust_env", False):
        return
    for scheme, proxy in get_environ_proxies(endpoint).items():
        session.proxies.setdefault(scheme, proxy)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


class ClientFactory:
    """Creates (once) and hands out the official clients, for Google or for the emulator.

    Args:
        credentials: google-auth credentials; ``None`` means Application Default Credentials
            (resolved on first use, so building a factory does no IO).
        emulator_host: ``HOST:PORT`` of a zt-pipelines emulator; defaults to
            ``$ZT_EMULATOR_HOST``.
        project: quota/billing project for HTTP clients that want one (Storage, BigQuery).
    """

    def __init__(
        self,
        credentials: Any = None,
        *,
        emulator_host: str | None = None,
        project: str | None = None,
    ) -> None:
        self.emulator_host = emulator_host_from_env(emulator_host)
        self._credentials = credentials
        self._project = project
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._channel: Any = None
        self._plain: Any = None  # the emulator channel under the token interceptor
        self._token: _TokenInterceptor | None = None
        self._stubs: dict[tuple[int, str], tuple[Any, Stub]] = {}

    # -- credentials ------------------------------------------------------------------------

    @property
    def credentials(self) -> Any:
        """The credentials every client uses (ADC resolved on first access)."""
        with self._lock:
            if self._credentials is None:
                if self.emulator_host:
                    self._credentials = emulator_caller_credentials()
                else:
                    self._credentials, adc_project = default_credentials()
                    self._project = self._project or adc_project
            return self._credentials

    @property
    def http_endpoint(self) -> str | None:
        """``http://HOST:PORT`` of the emulator, or ``None`` for Google."""
        return f"http://{self.emulator_host}" if self.emulator_host else None

    # -- gRPC (gapic) clients ------------------------------------------------------------------

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        client = build()
        with self._lock:
            return self._clients.setdefault(key, client)

    def _gapic(self, client_cls: Any) -> Any:
        creds = self.credentials
        if not self.emulator_host:
            return client_cls(credentials=creds)
        with self._lock:
            if self._channel is None:
                self._channel, self._plain, self._token = _emulator_channels(
                    self.emulator_host, creds
                )
            channel = self._channel
        transport = client_cls.get_transport_class("grpc")(channel=channel)
        return client_cls(transport=transport)

    def iam_admin(self) -> Any:
        """``google.cloud.iam_admin_v1.IAMClient`` (gRPC only)."""
        from google.cloud import iam_admin_v1

        return self._get("iam_admin", lambda: self._gapic(iam_admin_v1.IAMClient))

    def projects(self) -> Any:
        """``google.cloud.resourcemanager_v3.ProjectsClient``."""
        from google.cloud import resourcemanager_v3

        return self._get("projects", lambda: self._gapic(resourcemanager_v3.ProjectsClient))

    def folders(self) -> Any:
        """``google.cloud.resourcemanager_v3.FoldersClient``."""
        from google.cloud import resourcemanager_v3

        return self._get("folders", lambda: self._gapic(resourcemanager_v3.FoldersClient))

    def organizations(self) -> Any:
        """``google.cloud.resourcemanager_v3.OrganizationsClient``."""
        from google.cloud import resourcemanager_v3

        return self._get(
            "organizations", lambda: self._gapic(resourcemanager_v3.OrganizationsClient)
        )

    def deny_policies(self) -> Any:
        """``google.cloud.iam_v2.PoliciesClient`` (IAM deny policies)."""
        from google.cloud import iam_v2

        return self._get("iam_v2", lambda: self._gapic(iam_v2.PoliciesClient))

    def asset(self) -> Any:
        """``google.cloud.asset_v1.AssetServiceClient``."""
        from google.cloud import asset_v1

        return self._get("asset", lambda: self._gapic(asset_v1.AssetServiceClient))

    def troubleshooter(self) -> Any:
        """``google.cloud.policytroubleshooter_v1.IamCheckerClient``."""
        from google.cloud import policytroubleshooter_v1

        return self._get(
            "troubleshooter", lambda: self._gapic(policytroubleshooter_v1.IamCheckerClient)
        )

    def pam(self) -> Any:
        """``google.cloud.privilegedaccessmanager_v1.PrivilegedAccessManagerClient``."""
        from google.cloud import privilegedaccessmanager_v1

        return self._get(
            "pam",
            lambda: self._gapic(privilegedaccessmanager_v1.PrivilegedAccessManagerClient),
        )

    def bigquery_connection(self) -> Any:
        """``google.cloud.bigquery_connection_v1.ConnectionServiceClient`` (gRPC)."""
        from google.cloud import bigquery_connection_v1

        return self._get(
            "bigquery_connection",
            lambda: self._gapic(bigquery_connection_v1.ConnectionServiceClient),
        )

    def stub(self, channel: Any, path: str, response: Any) -> Stub:
        """The gRPC method ``path`` on ``channel`` (one of this factory's clients' channels),
        sending raw protobuf requests and parsing answers as the raw protobuf class
        ``response`` (made once per channel and method).

        On the emulator's channel the stub sits on the plain channel under the token
        interceptor and adds the same ``authorization`` header itself: the interceptor's
        per-call wrapping cost more client CPU than a small read.
        """
        key = (id(channel), path)
        with self._lock:
            found = self._stubs.get(key)
            if found is not None and found[0] is channel:
                return found[1]
            plain, token = (
                (self._plain, self._token) if channel is self._channel else (channel, None)
            )
        made = Stub(
            plain.unary_unary(
                path, request_serializer=_serialize, response_deserializer=response.FromString
            ),
            token.authorization if token is not None else None,
        )
        with self._lock:
            self._stubs[key] = (channel, made)  # the channel is kept: its id stays unique
        return made

    # -- HTTP clients ----------------------------------------------------------------------------

    def storage(self) -> Any:
        """``google.cloud.storage.Client`` (JSON API)."""
        from google.cloud import storage  # type: ignore[attr-defined]

        def build() -> Any:
            creds = self.credentials
            if self.emulator_host:
                client = storage.Client(
                    project=self._project or "zt-emulator",
                    credentials=creds,
                    client_options={"api_endpoint": self.http_endpoint},
                )
            else:
                pinned = live_endpoint(
                    "Cloud Storage", STORAGE_REDIRECT_ENV, GOOGLE_STORAGE_ENDPOINT
                )
                client = storage.Client(
                    project=self._project,
                    credentials=creds,
                    client_options={"api_endpoint": pinned} if pinned else None,
                )
                client._is_emulator_set = False  # never the library's emulator shortcuts live
            # recent clients fetch bucket metadata for telemetry in a background thread on
            # every bucket call: one hidden extra request per bucket, outside our retries
            if getattr(client, "_bucket_metadata_cache", None) is not None:
                client._bucket_metadata_cache = None
            prepare_http_session(client._http, str(client._connection.API_BASE_URL))
            return client

        return self._get("storage", build)

    def bigquery(self) -> Any:
        """``google.cloud.bigquery.Client`` (REST)."""
        from google.cloud import bigquery

        def build() -> Any:
            creds = self.credentials
            if self.emulator_host:
                options: dict[str, str | None] | None = {"api_endpoint": self.http_endpoint}
            else:
                pinned = live_endpoint("BigQuery", BIGQUERY_REDIRECT_ENV, GOOGLE_BIGQUERY_ENDPOINT)
                options = {"api_endpoint": pinned} if pinned else None
            client = bigquery.Client(
                project=self._project or "zt-emulator",
                credentials=creds,
                client_options=options,
            )
            prepare_http_session(client._http, str(client._connection.API_BASE_URL))
            return client

        return self._get("bigquery", build)

    def rest_session(self, service: str) -> tuple[Any, str]:
        """A google-auth ``AuthorizedSession`` with these credentials and the base URL of
        ``service`` (e.g. ``apikeys``): for APIs whose Python client lacks a field we read."""

        def build() -> Any:
            from google.auth.transport.requests import AuthorizedSession

            session = AuthorizedSession(self.credentials)  # type: ignore[no-untyped-call]
            prepare_http_session(session, self._rest_base(service))
            return session

        return self._get("rest:" + service, build), self._rest_base(service)

    def _rest_base(self, service: str) -> str:
        return self.http_endpoint or f"https://{service}.googleapis.com"

    def aiplatform_init_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``aiplatform.init`` that point Vertex AI at this target.

        Against the emulator: its HTTP endpoint over REST, with these credentials. Against
        Google: just the credentials (aiplatform picks its regional endpoints itself).
        """
        kwargs: dict[str, Any] = {"credentials": self.credentials}
        if self.emulator_host:
            kwargs["api_endpoint"] = self.http_endpoint
            kwargs["api_transport"] = "rest"
        return kwargs

    def close(self) -> None:
        """Close the emulator channel, if one was opened."""
        with self._lock:
            channel, self._channel = self._channel, None
            self._plain = self._token = None
            self._stubs.clear()
        if channel is not None:
            channel.close()


class Stub:
    """One raw-protobuf gRPC method of a :class:`ClientFactory` channel (see
    :meth:`ClientFactory.stub`)."""

    __slots__ = ("_authorization", "_call")

    def __init__(self, call: Any, authorization: Callable[[], tuple[str, str] | None] | None):
        self._call = call
        self._authorization = authorization

    def future(self, request: Any, *, timeout: float, metadata: tuple[tuple[str, str], ...]) -> Any:
        """Send ``request`` with ``metadata`` (plus the caller's token where the channel's
        interceptor would add it); the call's future."""
        if self._authorization is not None:
            header = self._authorization()
            if header is not None:
                metadata = (*metadata, header)
        return self._call.future(request, timeout=timeout, metadata=metadata)


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def emulator_aiplatform_init_kwargs(
    credentials: Any = None, *, emulator_host: str | None = None
) -> dict[str, Any]:
    """``aiplatform.init`` keyword arguments for the emulator at ``emulator_host``/env, or ``{}``.

    Returns an empty dict when no emulator is configured, so callers can always splat it.
    """
    factory = ClientFactory(credentials, emulator_host=emulator_host)
    if not factory.emulator_host:
        return {}
    return factory.aiplatform_init_kwargs()


#: factories kept between live checks in one process (most recent last); a check reuses the
#: previous one's channel, HTTP connections and clients instead of building them again
_SHARED: list[tuple[Any, tuple[str | None, ...], ClientFactory]] = []
_IMPLICIT_CALLER_ENV = (EMULATOR_CALLER_ENV, "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG")
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 4


def shared_factory(credentials: Any = None, *, emulator_host: str | None = None) -> ClientFactory:
    """The process's factory for these credentials (the same object) and endpoint.

    Connections and clients are what a second check in the same process need not build again
    (the first check's TLS handshakes, channel and client construction); what they read is
    never kept here. At most a few factories are kept; the oldest is closed when a new one is
    needed.

    Raises:
        EmulatorHostError: the emulator address is not ``HOST:PORT``.
    """
    host = emulator_host_from_env(emulator_host)
    # no credentials: who the caller is comes from the environment, which may have changed
    where = (
        (host, *(os.environ.get(v) for v in _IMPLICIT_CALLER_ENV))
        if credentials is None
        else (host,)
    )
    with _SHARED_LOCK:
        for i, (creds, place, factory) in enumerate(_SHARED):
            if creds is credentials and place == where:
                _SHARED.append(_SHARED.pop(i))
                return factory
        factory = ClientFactory(credentials, emulator_host=host)
        _SHARED.append((credentials, where, factory))
        evicted = _SHARED[:-_SHARED_MAX]
        del _SHARED[:-_SHARED_MAX]
    for _, _, old in evicted:
        old.close()
    return factory
