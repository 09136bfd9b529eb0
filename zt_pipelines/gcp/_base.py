"""What every adapter shares: the client factory and the one retry policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.gcp.retry import RetryPolicy

T = TypeVar("T")


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
