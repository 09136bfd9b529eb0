"""Who hears about live reads as they finish: a reporter scoped to a block of code.

The CLI shows a progress bar for every live read (``check``, ``plan``, ``apply``, ``snapshot``)
without threading a callback through the library's call chain: it installs a reporter for the
duration of one command with :func:`reporting`, and :func:`zt_pipelines.gcp.fetch_snapshot`
uses it when no ``progress=`` is passed; :func:`zt_pipelines.provision.apply.apply_plan`
reports its writes (one tick per account, custom role and resource policy) the same way. A
context variable, so concurrent callers (threads, tasks) each see their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Progress = Callable[[int, int], None]
"""Called with ``(done, total)`` after each read (or, for ``apply``, each write unit)."""

_REPORTER: ContextVar[Progress | None] = ContextVar("zt_progress", default=None)


@contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Report live reads made inside the ``with`` block to ``progress``."""
    token = _REPORTER.set(progress)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def current() -> Progress | None:
    """The reporter installed by the innermost :func:`reporting` block, if any."""
    return _REPORTER.get()
