"""The package's public surface: every advertised name resolves, errors share one base."""

from __future__ import annotations

from pathlib import Path

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


def test_the_examples_ship_inside_the_package(tmp_path: Path) -> None:
    """The notebook and the demo find the example world in an installed package: build the
    wheel, unpack it away from the checkout, and load the examples from there."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parent.parent
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("zt_pipelines-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    assert {"zt_pipelines/examples/world.yaml", "zt_pipelines/examples/pipeline.py"} <= names
    probe = (
        "import zt_pipelines, zt_pipelines.demo as d;"
        f"assert zt_pipelines.__file__.startswith({str(site)!r}), zt_pipelines.__file__;"
        "w = zt_pipelines.load_snapshot(d.EXAMPLES_DIR / 'world.yaml');"
        "print(len(w.nodes), d.load_examples().PIPELINE_SA)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "pipeline-sa@zt-demo" in run.stdout


def test_the_notebook_does_not_look_for_a_checkout() -> None:
    root = Path(__file__).resolve().parent.parent
    text = (root / "notebooks" / "quickstart.ipynb").read_text()
    assert "Path.cwd()" not in text and "EXAMPLES_DIR" in text
