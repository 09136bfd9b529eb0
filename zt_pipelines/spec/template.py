"""Read and write pipeline templates (compiled KFP IR) — parsing only, no decisions.

:func:`load_template` accepts a file path, YAML/JSON text already read, or a dict; a
PipelineSpec or a PipelineJob (``{"pipelineSpec": ...}``); multi-document YAML where the
documents after the first are PlatformSpecs. :func:`dump_template` renders a
:class:`~zt_pipelines.model.RewriteResult` as the exact YAML text that is hashed and submitted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from zt_pipelines.errors import TemplateError
from zt_pipelines.model import RewriteResult

try:  # libyaml is 10x faster; fall back to the pure-Python classes
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["dump_template", "load_template", "parse_template_text"]


def load_template(
    template: str | Path | Mapping[str, Any],
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """Return ``(pipeline IR, other documents)`` for a template.

    ``template`` is a path (``str`` or :class:`~pathlib.Path`) or a dict. The other documents
    are the PlatformSpec documents of a multi-document YAML (empty for a single document).

    Raises:
        TemplateError: unreadable file, malformed YAML/JSON, or not a KFP pipeline — naming
            the file.
    """
    if isinstance(template, Mapping):
        return _pipeline_from(dict(template), (), "template")
    path = Path(template)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read the template ({exc})", where=str(path)) from exc
    return parse_template_text(text, where=str(path))


def parse_template_text(
    text: str, *, where: str = "template"
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """Like :func:`load_template` for template text (YAML or JSON) already read."""
    if text.lstrip().startswith("{"):
        # JSON first: PyYAML refuses some valid JSON (tab indentation, "\/" escapes)
        try:
            document = json.loads(text)
        except ValueError:
            pass
        else:
            if not isinstance(document, dict):  # pragma: no cover - starts with "{"
                raise TemplateError("not a KFP pipeline: not a mapping", where=where)
            return _pipeline_from(document, (), where)
    try:
        documents = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as exc:
        raise TemplateError(f"malformed YAML/JSON ({_short(exc)})", where=where) from exc
    if not documents:
        raise TemplateError("the file is empty", where=where)
    first, *rest = documents
    if not isinstance(first, dict):
        raise TemplateError("not a KFP pipeline: the first document is not a mapping", where=where)
    for index, doc in enumerate(rest, start=2):
        if not isinstance(doc, dict):
            raise TemplateError(f"document {index} is not a mapping", where=where)
    return _pipeline_from(first, tuple(rest), where)


def _pipeline_from(
    doc: dict[str, Any], others: tuple[dict[str, Any], ...], where: str
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    if "pipelineSpec" in doc:  # a PipelineJob (REST JSON) wrapping the spec
        spec = doc["pipelineSpec"]
        if not isinstance(spec, dict):
            raise TemplateError("pipelineSpec is not a mapping", where=where)
        doc = spec
    check_pipeline(doc, where=where)
    for index, other in enumerate(others, start=2):
        if set(other) - {"platforms"}:
            raise TemplateError(
                f"document {index} is not a PlatformSpec (keys {sorted(other)})", where=where
            )
    return doc, others


def check_pipeline(spec: Any, *, where: str = "template") -> None:
    """Raise :class:`TemplateError` unless ``spec`` has the shape of a compiled KFP pipeline."""
    if not isinstance(spec, dict):
        raise TemplateError("not a KFP pipeline: not a mapping", where=where)
    info = spec.get("pipelineInfo")
    root = spec.get("root")
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or not info["name"]:
        raise TemplateError(
            "not a KFP pipeline: pipelineInfo.name is missing",
            where=where,
            fix="pass a pipeline compiled with kfp.compiler.Compiler (KFP v2 IR)",
        )
    if not isinstance(root, dict) or not isinstance(root.get("dag"), dict):
        raise TemplateError(
            "not a KFP pipeline: root.dag is missing",
            where=where,
            fix="pass a pipeline compiled with kfp.compiler.Compiler (KFP v2 IR)",
        )
    for key in ("components",):
        if key in spec and not isinstance(spec[key], dict):
            raise TemplateError(f"{key} is not a mapping", where=where)
    deployment = spec.get("deploymentSpec", {})
    if not isinstance(deployment, dict) or not isinstance(deployment.get("executors", {}), dict):
        raise TemplateError("deploymentSpec.executors is not a mapping", where=where)


def dump_template(result: RewriteResult | dict[str, Any]) -> str:
    """The deterministic YAML text of a rewritten pipeline (what is hashed and submitted).

    Keys are sorted; PlatformSpec documents follow the pipeline as extra YAML documents.
    """
    if isinstance(result, RewriteResult):
        documents: list[Any] = [result.spec, *result.platform_docs]
    else:
        documents = [result]
    return yaml.dump_all(
        documents,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def dump_json(spec: dict[str, Any]) -> str:
    """Canonical JSON of a spec (sorted keys, no whitespace) — for hashing and comparison."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
