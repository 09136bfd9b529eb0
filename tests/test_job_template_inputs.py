"""Template files through the drop-in ``zt.PipelineJob``: the second parse of the template text
(the PlatformSpec split) goes through the same strict loader as everything else, so a
tab-indented JSON template works and YAML 1.1 retyping (``on:`` keys, plain dates) cannot make
what aiplatform builds differ from what was checked."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_job import audit, emu, emulator, make_job, templates  # noqa: F401 (its fixtures)

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.emulator import Emulator
from zt_pipelines.errors import TemplateError


def first_document(path: str) -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None)


def test_a_tab_indented_json_template_is_accepted(
    emu: Emulator,  # noqa: F811
    templates: dict[str, str],  # noqa: F811
    audit: AuditLog,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "training.json"
    path.write_text(json.dumps(first_document(templates["training"]), indent="\t"))
    job = make_job(str(path), audit)
    with pytest.raises(zt.ZeroTrustViolation):  # the default-SA refusal: it was read and judged
        job.submit()


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: text + "\nsdkVersion: kfp-2.7.0\n",  # a duplicate key
        lambda text: text.replace("pipelineInfo:", "pipelineInfo: !!binary aGk=\nx:", 1),
        lambda text: text.replace("schemaVersion:", "x: &a [1]\ny: *a\nschemaVersion:", 1),
    ],
)
def test_hostile_template_text_is_a_template_error(
    emu: Emulator,  # noqa: F811
    templates: dict[str, str],  # noqa: F811
    audit: AuditLog,  # noqa: F811
    tmp_path: Path,
    edit: Any,
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(edit(Path(templates["training"]).read_text()))
    with pytest.raises(TemplateError):
        make_job(str(path), audit)
