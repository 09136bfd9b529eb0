"""What every adapter shares: the client factory and the one retry policy."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar

from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import RetryPolicy, to_api_error

T = TypeVar("T")
_LOG = logging.getLogger("zt_pipelines.gcp")


class Started(Generic[T]):
    """One gRPC read in flight (a first attempt, no thread held while it waits).

    A live fetch issues hundreds of small reads; a thread per read waiting on the network costs
    more CPU in the client than the reads themselves. ``Started`` is the gRPC future of the
    gapic transport's own method, with the conversion and error translation of the blocking
    adapter method. Retries are not here: a transient failure is retried by the blocking
    method (see :meth:`Adapter.retried`).
    """

    def __init__(self, future: Any, convert: Callable[[Any], T], *, what: str, target: str):
        self._future = future
        self._convert = convert
        self.what = what
        self.target = target

    def add_done_callback(self, fn: Callable[[Started[T]], None]) -> None:
        """Call ``fn(self)`` once the read finished (at once if it already has)."""
        self._future.add_done_callback(lambda _f: fn(self))

    def outcome(self) -> T:
        """The converted answer.

        Raises:
            ApiError: the read failed (``transient`` says whether another attempt may cure it).
        """
        try:
            response = self._future.result()
            return self._convert(response)
        except Exception as exc:
            raise to_api_error(_google_error(exc), what=self.what, target=self.target) from exc


class Page(Generic[T]):
    """The first page of a listing read with :meth:`Adapter.start`: its items, and the token
    of the next page (``""``: the listing is complete)."""

    __slots__ = ("items", "next_token")

    def __init__(self, items: list[T], next_token: str) -> None:
        self.items = items
        self.next_token = next_token


def _google_error(exc: BaseException) -> BaseException:
    """A gRPC error as the google-api-core exception the gapic method would have raised."""
    import grpc
    from google.api_core import exceptions

    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        converted: BaseException = exceptions.from_grpc_error(exc)  # type: ignore[no-untyped-call]
        return converted
    return exc


@functools.cache
def _client_info_header() -> tuple[str, str]:
    """The ``x-goog-api-client`` header a gapic method sends (computed once)."""
    from google.api_core.gapic_v1.client_info import ClientInfo

    header: tuple[str, str] = ClientInfo().to_grpc_metadata()  # type: ignore[no-untyped-call]
    return header


def _client_info_metadata() -> list[tuple[str, str]]:
    """The metadata of a gapic call without routing headers: the client-info header."""
    return [_client_info_header()]


class Adapter:
    """Base of the adapters: runs each call through :class:`RetryPolicy` with a deadline."""

    def __init__(
        self,
        factory: ClientFactory,
        retry: RetryPolicy | None = None,
        *,
        page_size: int | None = None,
    ) -> None:
        self.factory = factory
        self.retry = retry or RetryPolicy()
        self.page_size = page_size

    def page(self, largest: int) -> int:
        """The page size to ask for: the API's largest unless a smaller one was set (tests)."""
        return min(self.page_size, largest) if self.page_size else largest

    @property
    def timeout(self) -> float:
        """Per-attempt deadline in seconds."""
        return self.retry.attempt_timeout

    def call(self, fn: Callable[[], T], *, what: str, target: str) -> T:
        """Run ``fn`` with retries; failures become :class:`~zt_pipelines.errors.ApiError`."""
        return self.retry.call(fn, what=what, target=target)

    def gapic_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for gapic calls: their own retries off (ours are the only ones)."""
        return {"retry": None, "timeout": self.timeout}

    def retried(self) -> Adapter:
        """This adapter for the attempts left after a :class:`Started` first attempt failed
        transiently: one attempt fewer, after the backoff the first retry would have waited
        (so the retry policy's bounds hold across both)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.retry = replace(self.retry, max_attempts=max(1, self.retry.max_attempts - 1))
        self.retry.sleep(self.retry.backoff(1))
        return clone

    def start(
        self,
        client: Any,
        path: str,
        request: Any,
        response: Any,
        convert: Callable[[Any], T],
        *,
        what: str,
        target: str,
        routing: tuple[tuple[str, str], ...] = (),
    ) -> Started[T] | None:
        """Issue ``request`` (a raw protobuf message) as the gRPC method ``path`` (e.g.
        ``/google.iam.admin.v1.IAM/GetRole``) on ``client``'s own channel, without waiting;
        the answer is parsed as ``response`` (a raw protobuf class) and ``convert``-ed.

        This is what the gapic method sends (the channel's credentials, the client-info and
        routing headers), minus what costs more client CPU than the read itself for small
        reads: proto-plus wrappers around request and answer, and the transport's logging
        interceptor. Returns ``None`` when the client has no gRPC channel (REST transports,
        test doubles): use the blocking method.
        """
        channel = getattr(getattr(client, "transport", None), "grpc_channel", None)
        if channel is None or not hasattr(channel, "unary_unary"):
            return None
        stub = self.factory.stub(channel, path, response)
        metadata = (
            (_client_info_header(), _routing_metadata(routing))
            if routing
            else (_client_info_header(),)
        )
        future = stub.future(request, timeout=self.timeout, metadata=metadata)
        _LOG.debug("call %s %s", what, target)  # as RetryPolicy.call logs a blocking read (-vv)
        return Started(future, convert, what=what, target=target)


@functools.lru_cache(maxsize=4096)
def _routing_metadata(params: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """The ``x-goog-request-params`` header a gapic method sends for these routing params
    (an encoding of names, kept: encoding it again per read cost more than the read)."""
    from google.api_core.gapic_v1 import routing_header

    header: tuple[str, str] = routing_header.to_grpc_metadata(params)  # type: ignore[no-untyped-call]
    return header


def json_body(response: Any, api: str) -> dict[str, Any]:
    """The JSON body of a REST answer; an error status raises as google-api-core's exception
    for it (so it is classified like every other client's)."""
    from google.api_core import exceptions

    if not 200 <= response.status_code < 300:
        raise exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"{api} answer is not a JSON object")
    return body
