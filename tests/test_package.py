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


def test_public_functions_show_their_real_signatures() -> None:
    """``help(zt.rewrite)`` and IDEs see every argument, not ``**kwargs``."""
    import inspect

    import zt_pipelines as zt
    from zt_pipelines.spec.rewrite import rewrite_pipeline

    for name in zt.__all__:
        value = getattr(zt, name)
        if inspect.isfunction(value):
            kinds = {p.kind for p in inspect.signature(value).parameters.values()}
            assert inspect.Parameter.VAR_KEYWORD not in kinds, name
    mirror = inspect.signature(zt.rewrite).parameters
    full = inspect.signature(rewrite_pipeline).parameters
    assert [(p.name, p.default) for p in mirror.values()] == [
        (p.name, p.default) for p in full.values()
    ]


def test_every_lazy_name_is_public() -> None:
    import zt_pipelines as zt

    assert set(zt._LAZY) <= set(zt.__all__)
