"""Pure pipeline-spec handling: load templates, rewrite every step into a CustomJob, dump.

Nothing here imports kfp or aiplatform, and nothing does IO except :func:`load_template`
reading the file it is given.
"""

from __future__ import annotations

from zt_pipelines.identity import DEFAULT_NAME_TEMPLATE
from zt_pipelines.spec.rewrite import rewrite, rewrite_pipeline
from zt_pipelines.spec.template import dump_template, load_template, parse_template_text

__all__ = [
    "DEFAULT_NAME_TEMPLATE",
    "dump_template",
    "load_template",
    "parse_template_text",
    "rewrite",
    "rewrite_pipeline",
]
