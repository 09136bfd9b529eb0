"""Retries and error translation for every Google API call, in one place.

Every adapter call goes through :meth:`RetryPolicy.call`. Only transient failures are retried
(UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED/429, INTERNAL/5xx, connection resets, a
response that could not be decoded); PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT and every
other error are final at once. Attempts and total time are bounded, backoff is exponential with
full jitter, and sleep, clock and randomness are injectable so tests never sleep.

Whatever still fails is raised as :class:`zt_pipelines.errors.ApiError` with a stable ``code``
(``PERMISSION_DENIED``, ``NOT_FOUND``, ``UNAVAILABLE``, ...) and ``transient``; the fetch plan
records it in ``Snapshot.unreadable`` and the engine refuses (fail closed).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity

from zt_pipelines.errors import ApiError

T = TypeVar("T")

#: Codes that a later attempt may cure.
TRANSIENT_CODES = frozenset(
    {
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "INTERNAL",
        "CONNECTION",
        "MALFORMED",
    }
)

_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def classify(exc: BaseException) -> tuple[str, bool]:
    """Return ``(code, transient)`` for any exception a Google client library can raise."""
    if isinstance(exc, ApiError):
        return exc.code or "UNKNOWN", exc.transient
    code = _google_code(exc)
    if code is None:
        code = _transport_code(exc)
    return code, code in TRANSIENT_CODES


def _google_code(exc: BaseException) -> str | None:
    try:
        from google.api_core import exceptions as gexc
    except ImportError:  # pragma: no cover - google-api-core is a dependency
        return None
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return classify(exc.cause)[0]
    if isinstance(exc, gexc.GoogleAPICallError):
        grpc_code = getattr(exc, "grpc_status_code", None)
        if grpc_code is not None:
            name = str(getattr(grpc_code, "name", grpc_code))
            return "INTERNAL" if name in ("UNKNOWN", "DATA_LOSS") else name
        status = getattr(exc, "code", None)
        if isinstance(status, int):
            if status in _HTTP_CODES:
                return _HTTP_CODES[status]
            return "INTERNAL" if status >= 500 else f"HTTP_{status}"
        return "UNKNOWN"
    return None


def _transport_code(exc: BaseException) -> str:
    try:
        import grpc

        if isinstance(exc, grpc.RpcError):
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            return str(getattr(code, "name", "UNKNOWN"))
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests  # type: ignore[import-untyped]

        if isinstance(exc, requests.exceptions.Timeout):
            return "DEADLINE_EXCEEDED"
        if isinstance(
            exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError
        ):
            return "CONNECTION"
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            return "MALFORMED"
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, socket.timeout | TimeoutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(exc, ConnectionError | OSError):
        return "CONNECTION"
    # a body that is not what the API promised (bad JSON, a proto that does not parse, a
    # missing field): the next attempt may get a whole response.
    if isinstance(exc, json.JSONDecodeError | ValueError | KeyError | TypeError):
        return "MALFORMED"
    from google.protobuf import json_format

    if isinstance(exc, json_format.ParseError):  # every gapic REST transport's bad body
        return "MALFORMED"
    return "UNKNOWN"


def to_api_error(exc: BaseException, *, what: str, target: str) -> ApiError:
    """Translate ``exc`` into the package's :class:`ApiError`, naming the read and its target."""
    if isinstance(exc, ApiError):
        return exc
    code, transient = classify(exc)
    detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    fix = {
        "PERMISSION_DENIED": "grant the checking identity read access (e.g. "
        "roles/iam.securityReviewer and roles/cloudasset.viewer) or check with a snapshot file",
        "NOT_FOUND": "check the name; a resource that does not exist cannot prove a grant",
        "UNAUTHENTICATED": "run `gcloud auth application-default login` or pass credentials",
    }.get(code, "retry later; the API did not answer in time" if transient else None)
    return ApiError(
        f"{what} failed with {code}: {detail}",
        where=target,
        fix=fix,
        code=code,
        transient=transient,
    )


_LOG = logging.getLogger("zt_pipelines.gcp")


def _no_sleep_default(seconds: float) -> None:
    time.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: bounded attempts, bounded time, jittered backoff.

    Attributes:
        max_attempts: total attempts per call (first try included).
        max_elapsed: seconds after which no new attempt starts.
        initial_backoff: first backoff ceiling in seconds; doubles each attempt.
        max_backoff: cap of one backoff.
        attempt_timeout: deadline passed to each call (gRPC deadline / HTTP timeout).
        sleep: how to wait (tests pass a recorder that does not sleep).
        clock: monotonic clock used for the total-time bound.
        rng: randomness for the jitter (seeded in tests).
    """

    max_attempts: int = 5
    max_elapsed: float = 30.0
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    attempt_timeout: float = 20.0
    sleep: Callable[[float], None] = field(default=_no_sleep_default, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter backoff before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.max_backoff, self.initial_backoff * (2 ** (attempt - 1)))
        return self.rng.uniform(0, ceiling)

    def retrying(self) -> tenacity.Retrying:
        """The tenacity controller for one call (inspectable; used by :meth:`call`)."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts) | _stop_after_elapsed(self),
            wait=lambda state: self.backoff(state.attempt_number),
            retry=tenacity.retry_if_exception(lambda exc: classify(exc)[1]),
            sleep=self.sleep,
            reraise=True,
        )

    def call(self, fn: Callable[[], T], *, what: str, target: str) -> T:
        """Run ``fn`` with retries; raise :class:`ApiError` naming ``what`` and ``target``."""

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            _LOG.info(
                "%s %s: attempt %d failed (%s), retrying",
                what,
                target,
                state.attempt_number,
                type(exc).__name__ if exc else "?",
            )

        _LOG.debug("call %s %s", what, target)
        try:
            return self.retrying().copy(before_sleep=log_retry)(fn)
        except ApiError:
            raise
        except Exception as exc:
            raise to_api_error(exc, what=what, target=target) from exc


def _stop_after_elapsed(policy: RetryPolicy) -> Any:
    start = policy.clock()

    def stop(state: tenacity.RetryCallState) -> bool:
        return policy.clock() - start >= policy.max_elapsed

    return stop


#: A policy that never sleeps: for tests and the emulator-backed benchmarks.
def no_wait_policy(max_attempts: int = 5) -> RetryPolicy:
    """A :class:`RetryPolicy` with the default bounds but zero-length sleeps."""
    return RetryPolicy(max_attempts=max_attempts, sleep=lambda _s: None, attempt_timeout=5.0)
