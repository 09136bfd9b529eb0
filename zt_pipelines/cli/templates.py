"""The TEMPLATE argument of every command: a local file, ``gs://``, Artifact Registry or https.

Remote templates are fetched once by :func:`zt_pipelines.gcp.templates.fetch_template_text`
(the drop-in ``PipelineJob`` uses the same function) and parsed here, so each command hands
the rewrite the same documents it would read from a file (a PipelineJob template whole, with
its ``runtimeConfig``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zt_pipelines.gcp.templates import fetch_template_text, is_remote


def template_location(value: str) -> str | Path:
    """A remote URI as given (``gs://``, ``https://``), else a local :class:`Path`."""
    return value if is_remote(value) else Path(value)


def template_source(
    value: str | Path, *, credentials: Any = None, project: str | None = None
) -> Any:
    """What the rewrite takes: a local :class:`Path` unchanged, a remote template fetched and
    parsed into ``(first document, platform_docs)`` — the first document whole, so a
    PipelineJob template keeps its ``runtimeConfig`` (Vertex substitutes its values).

    Raises:
        TemplateError: the template cannot be fetched or parsed (naming the URI).
        MissingCredentialsError: a remote template and no credentials.
    """
    if not is_remote(value):
        return Path(value)
    from zt_pipelines.spec.template import parse_template_documents

    text = fetch_template_text(str(value), credentials=credentials, project=project)
    first, rest = parse_template_documents(text, where=str(value))
    return first, tuple(rest)
