"""The package's public surface: every advertised name resolves, errors share one base."""

from __future__ import annotations

import zt_pipelines as zt


def test_every_public_name_resolves() -> None:
    missing = [name for name in zt.__all__ if getattr(zt, name, None) is None]
    assert missing == []


def test_every_public_error_is_a_zt_error() -> None:
    errors = [getattr(zt, n) for n in zt.__all__ if n.endswith(("Error", "Violation"))]
    assert errors and all(issubclass(e, zt.ZtError) for e in errors)
    assert issubclass(zt.ZeroTrustViolation, zt.ZtError)


def test_check_and_step_are_callables_not_modules() -> None:
    assert callable(zt.check) and zt.check.__name__ == "check"
    assert callable(zt.step)
