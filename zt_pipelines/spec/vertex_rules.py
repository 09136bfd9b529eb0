"""What aiplatform's ``PipelineJob`` refuses in a template, checked up front (pure).

``google.cloud.aiplatform.PipelineJob.__init__`` (the same code in aiplatform 1.x and 2.x:
``pipeline_jobs.py``, ``utils/pipeline_utils.py``, ``constants/pipeline.py``) raises its own
``ValueError`` / ``TypeError`` / ``KeyError`` / ``packaging.version.InvalidVersion`` /
``json_format.ParseError`` for templates whose shape is otherwise fine. ``check`` and
``rewrite`` would call such a template ALLOWED although nobody can submit it, and the drop-in
would raise aiplatform's exception instead of ours. Every rule it applies to the template is
here, once, as a :class:`~zt_pipelines.errors.TemplateError` naming the field and the rule:

- ``schemaVersion``: a string that is a PEP 440 version (``packaging.version.parse`` in the
  runtime-config builder); schema 2.0.0 and older use the legacy typed runtime parameters,
  which only take ``INT``, ``DOUBLE`` and ``STRING`` parameters;
- ``pipelineInfo.name``: without an explicit job id, aiplatform derives
  ``NAME-YYYYmmddHHMMSS`` (lower-cased, every run of characters other than ``a-z0-9-`` made
  ``-``, ``-`` trimmed at both ends), which must match ``[a-z][-a-z0-9]{0,127}``;
- a PipelineJob document's ``runtimeConfig``: a mapping; ``parameterValues`` names only
  parameters the pipeline has (``None`` values are dropped first); the legacy ``parameters``
  hold one ``intValue`` / ``doubleValue`` / ``stringValue`` each, convertible as aiplatform
  converts them (``int()`` / ``float()``); ``failurePolicy`` a ``PipelineFailurePolicy``;
  ``gcsOutputDirectory`` text.

Cheap by construction: a handful of dictionary look-ups and two regular expressions per
template, nothing that walks the DAG.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from zt_pipelines.errors import InputError, TemplateError

__all__ = [
    "FAILURE_POLICIES",
    "JOB_ID",
    "check_job_id",
    "check_parameter_types",
    "check_vertex_rules",
    "derived_job_id_stem",
    "legacy_schema",
]

#: aiplatform's ``_VALID_NAME_PATTERN`` (``constants/pipeline.py``), matched in full
JOB_ID = re.compile(r"[a-z][-a-z0-9]{0,127}", re.IGNORECASE)
_TIMESTAMP = len("-20260101000000")
#: ``PipelineFailurePolicy`` values ``json_format.ParseDict`` takes for ``failurePolicy``
FAILURE_POLICIES = (
    "PIPELINE_FAILURE_POLICY_UNSPECIFIED",
    "PIPELINE_FAILURE_POLICY_FAIL_SLOW",
    "PIPELINE_FAILURE_POLICY_FAIL_FAST",
)
_LEGACY_TYPES = ("INT", "DOUBLE", "STRING")


def derived_job_id_stem(name: str) -> str:
    """The part of aiplatform's generated job id that comes from the pipeline name
    (``PipelineJob.__init__``: the same expression)."""
    return re.sub("[^-0-9a-z]+", "-", name.lower()).lstrip("-").rstrip("-")


def check_job_id(job_id: str, *, where: str) -> None:
    """An explicit job id aiplatform accepts.

    Raises:
        InputError: naming the rule.
    """
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise InputError(
            f"job id {job_id!r} is not a Vertex pipeline job id: it must match "
            "[a-z][-a-z0-9]{0,127} (a letter, then up to 127 letters, digits and '-')",
            where=where,
            fix="pass another job_id (or none: aiplatform derives one from the pipeline name)",
        )


def legacy_schema(version: str) -> bool:
    """True for schema 2.0.0 and older (legacy typed runtime parameters)."""
    from packaging.version import Version

    return Version(version) <= Version("2.0.0")


def _schema_version(spec: Mapping[str, Any], where: str) -> str:
    version = spec.get("schemaVersion")
    if not isinstance(version, str) or not version:
        raise TemplateError(
            "the pipeline has no schemaVersion"
            + ("" if version is None else f" (it is a {type(version).__name__}, not text)"),
            where=f"{where}: schemaVersion",
            fix="pass a pipeline compiled with kfp.compiler.Compiler (it writes schemaVersion)",
        )
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
    except InvalidVersion:
        raise TemplateError(
            f"schemaVersion {version[:60]!r} is not a version number (aiplatform parses it "
            "as a PEP 440 version, e.g. 2.1.0)",
            where=f"{where}: schemaVersion",
            fix="pass a pipeline compiled with kfp.compiler.Compiler (it writes 2.1.0)",
        ) from None
    return version


def _job_name(spec: Mapping[str, Any], where: str) -> None:
    info = spec.get("pipelineInfo")
    name = info.get("name") if isinstance(info, Mapping) else None
    if not isinstance(name, str):
        raise TemplateError(
            "pipelineInfo.name is missing or not text",
            where=f"{where}: pipelineInfo.name",
            fix="pass a pipeline compiled with kfp.compiler.Compiler (KFP v2 IR)",
        )
    stem = derived_job_id_stem(name)
    if JOB_ID.fullmatch(f"{stem}-{'0' * (_TIMESTAMP - 1)}"):
        return
    why = (
        "nothing of it is left"
        if not stem
        else "it does not start with a letter"
        if not stem[0].isalpha()
        else f"its length is {len(stem)}, more than {128 - _TIMESTAMP}"
    )
    raise TemplateError(
        f"pipelineInfo.name {name[:80]!r} gives no valid Vertex job id: aiplatform makes "
        f"{stem[:40]!r}-YYYYmmddHHMMSS of it (lower-cased, other characters than a-z, 0-9 and "
        f"'-' replaced by '-', '-' trimmed), which must match [a-z][-a-z0-9]{{0,127}}, and {why}",
        where=f"{where}: pipelineInfo.name",
        fix="name the pipeline with a letter first and at most 113 characters "
        "(@dsl.pipeline(name=...)), or pass an explicit job_id to the drop-in",
    )


def check_parameter_types(
    spec: Mapping[str, Any], names: Any, *, where: str, version: str | None = None
) -> None:
    """Schema 2.0.0 and older: every parameter that gets a value must be typed ``INT``,
    ``DOUBLE`` or ``STRING`` (aiplatform raises ``TypeError`` for any other).

    Raises:
        TemplateError: naming the parameter and its type.
    """
    version = version if version is not None else spec.get("schemaVersion")
    if not isinstance(version, str) or not legacy_schema(version):
        return
    root = spec.get("root")
    inputs = root.get("inputDefinitions") if isinstance(root, Mapping) else None
    params = inputs.get("parameters") if isinstance(inputs, Mapping) else None
    params = params if isinstance(params, Mapping) else {}
    for name in names:
        definition = params.get(name)
        kind = (
            definition.get("parameterType") or definition.get("type")
            if isinstance(definition, Mapping)
            else None
        )
        if kind not in _LEGACY_TYPES:
            raise TemplateError(
                f"parameter {str(name)[:80]!r} is typed {kind!r}: schemaVersion {version} "
                f"takes values only for {', '.join(_LEGACY_TYPES)} parameters (aiplatform "
                "raises TypeError for it)",
                where=f"{where}: root.inputDefinitions.parameters",
                fix="recompile the pipeline with KFP 2 (schemaVersion 2.1.0)",
            )


def _runtime_config(document: Mapping[str, Any], spec: Mapping[str, Any], where: str) -> None:
    config = document.get("runtimeConfig")
    if not isinstance(config, Mapping):
        raise TemplateError(
            "a PipelineJob template needs a runtimeConfig mapping"
            + ("" if config is None else f", not {type(config).__name__}"),
            where=f"{where}: runtimeConfig",
            fix="write runtimeConfig: {} (or pass the pipelineSpec alone)",
        )
    at = f"{where}: runtimeConfig"
    root = config.get("gcsOutputDirectory")
    if root is not None and not isinstance(root, str):
        raise TemplateError(
            f"runtimeConfig.gcsOutputDirectory is a {type(root).__name__}, not text", where=at
        )
    policy = config.get("failurePolicy")
    if policy is not None and (
        isinstance(policy, bool) or not (policy in FAILURE_POLICIES or isinstance(policy, int))
    ):
        raise TemplateError(
            f"runtimeConfig.failurePolicy {str(policy)[:60]!r} is not one of "
            + ", ".join(FAILURE_POLICIES),
            where=at,
        )
    values = config.get("parameterValues")
    if values is not None and config.get("parameters") is not None:
        # aiplatform reads parameterValues whenever present (even {}) and ignores parameters;
        # another reader may not: one document, two answers — refuse it
        raise TemplateError(
            "runtimeConfig has both parameterValues and the legacy typed parameters; "
            "aiplatform reads only parameterValues, so which values run is not certain",
            where=at,
            fix="keep one of the two fields (parameterValues)",
        )
    if values is not None:  # aiplatform reads parameterValues whenever present
        if not isinstance(values, Mapping):
            raise TemplateError("runtimeConfig.parameterValues is not a mapping", where=at)
        root_def = spec.get("root")
        inputs = root_def.get("inputDefinitions") if isinstance(root_def, Mapping) else None
        params = inputs.get("parameters") if isinstance(inputs, Mapping) else None
        known = params if isinstance(params, Mapping) else {}
        given = [k for k, v in values.items() if v is not None]
        unknown = sorted(str(k) for k in given if k not in known)
        if unknown:
            raise TemplateError(
                f"runtimeConfig.parameterValues names {unknown[0][:80]!r}, which the pipeline "
                "does not have (aiplatform raises ValueError: not in the input definitions)",
                where=at,
                fix="remove it, or give a parameter the pipeline has",
            )
        check_parameter_types(spec, given, where=where)
        return
    typed = config.get("parameters")
    if typed is None:
        return
    if not isinstance(typed, Mapping):
        raise TemplateError("runtimeConfig.parameters is not a mapping", where=at)
    for name, value in typed.items():
        for field, convert in (("intValue", int), ("doubleValue", float)):
            if isinstance(value, Mapping) and field in value:
                try:
                    convert(value[field])
                except (TypeError, ValueError, OverflowError):
                    raise TemplateError(
                        f"runtimeConfig.parameters[{str(name)[:80]!r}].{field} "
                        f"{str(value[field])[:40]!r} is not a number",
                        where=at,
                    ) from None
                break
        else:
            if not (isinstance(value, Mapping) and "stringValue" in value):
                raise TemplateError(
                    f"runtimeConfig.parameters[{str(name)[:80]!r}] holds no intValue, "
                    "doubleValue or stringValue (aiplatform raises TypeError for it)",
                    where=at,
                )
    check_parameter_types(spec, list(typed), where=where)


def check_vertex_rules(
    document: Mapping[str, Any], *, where: str = "template", job_id: str | None = None
) -> None:
    """Refuse a template (PipelineSpec or PipelineJob document) aiplatform's ``PipelineJob``
    constructor would refuse with its own exception (see the module docstring).

    Args:
        document: the first document of the template.
        where: the template's name, for the error.
        job_id: an explicit job id (the drop-in's ``job_id=``): checked instead of the id
            aiplatform would derive from the pipeline name.

    Raises:
        TemplateError: naming the field and the rule.
        InputError: ``job_id`` is not a job id.
    """
    spec = document.get("pipelineSpec", document)
    if not isinstance(spec, Mapping):
        raise TemplateError("pipelineSpec is not a mapping", where=f"{where}: pipelineSpec")
    _schema_version(spec, where)
    if "pipelineSpec" in document:
        _runtime_config(document, spec, where)
    if job_id is None:
        _job_name(spec, where)
    else:
        check_job_id(job_id, where="job_id")
