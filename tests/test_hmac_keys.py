"""Cloud Storage HMAC keys of the checked identities (ZT111): listed live through the real
storage client (one ``projects.hmacKeys.list`` per identity project), carried by snapshot
files, and a failed listing is unreadable (ZT400), never "no keys"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_live_check import EX, codes, example_world, run_check, templates

from zt_pipelines.emulator import Emulator, Fault, emulator_credentials
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot

__all__ = ["templates"]  # the module fixture, shared with test_live_check

ACCESS_ID = "GOOG1EHMACKEYOFTRAINSA0000000000000000000000000000000000000"


def with_hmac(world: Snapshot, email: str, *keys: str) -> Snapshot:
    """``world`` where ``email`` has these HMAC keys."""
    accounts = dict(world.service_accounts)
    accounts[email] = replace(accounts[email], hmac_keys=keys)
    return replace(world, service_accounts=accounts)


@pytest.fixture()
def keyed() -> Iterator[Emulator]:
    """The demo world where train-sa has an HMAC key, with the demo submitter as caller."""
    world = with_hmac(example_world(), EX.TRAIN_SA, ACCESS_ID)
    with Emulator(world) as emu, pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZT_EMULATOR_HOST", emu.address)
        mp.setenv("ZT_EMULATOR_CALLER", EX.SUBMITTER)
        yield emu


def zt111(report: object) -> list[str]:
    return [f.message for f in report.findings if f.code == "ZT111"]  # type: ignore[attr-defined]


def test_a_step_identitys_hmac_key_is_zt111_live(
    keyed: Emulator, templates: dict[str, str]
) -> None:
    report = run_check(templates["training"])
    messages = zt111(report)
    assert any(EX.TRAIN_SA in m and "HMAC" in m and ACCESS_ID in m for m in messages), messages
    assert not report.allowed
    # one listing per project of the checked identities, not one per identity
    asked = [r for r in keyed.request_log if r.method == "storage.hmacKeys.list"]
    assert len(asked) == 1, asked


def test_no_hmac_key_no_finding_and_the_live_read_equals_the_file(
    templates: dict[str, str], tmp_path: Path
) -> None:
    world = with_hmac(example_world(), EX.TRAIN_SA, ACCESS_ID)
    out = tmp_path / "w.json"
    out.write_text(json.dumps(dump_snapshot(world)))
    loaded = load_snapshot(out)
    assert loaded.service_accounts[EX.TRAIN_SA].hmac_keys == (ACCESS_ID,)
    assert any(EX.TRAIN_SA in m for m in zt111(run_check(templates["training"], loaded)))
    assert not zt111(run_check(templates["training"], example_world()))


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "INTERNAL"])
def test_a_failed_hmac_listing_is_unreadable_never_none(
    keyed: Emulator, templates: dict[str, str], code: str
) -> None:
    keyed.add_fault(Fault(method="storage.hmacKeys.list", code=code))
    report = run_check(templates["training"])
    assert "ZT400" in codes(report)
    assert any(
        f.code == "ZT400" and "hmacKeys" in (f.resource or "") + f.message for f in report.findings
    ), [f.message for f in report.findings if f.code == "ZT400"]
    assert not zt111(report)  # nothing proven either way: unreadable, not "no keys"


def test_the_emulator_enforces_iam_and_filters_like_google() -> None:
    from google.api_core import exceptions
    from google.cloud import storage

    world = with_hmac(example_world(), EX.TRAIN_SA, "GOOG1EA", "GOOG1EB")
    with Emulator(world) as emu:

        def client(caller: str) -> storage.Client:
            return storage.Client(
                project=EX.PROJECT,
                credentials=emulator_credentials(caller),
                client_options={"api_endpoint": f"http://{emu.address}"},
            )

        keys = list(client(EX.SUBMITTER).list_hmac_keys(project_id=EX.PROJECT))
        assert {(k.service_account_email, k.access_id, k.state) for k in keys} == {
            (EX.TRAIN_SA, "GOOG1EA", "ACTIVE"),
            (EX.TRAIN_SA, "GOOG1EB", "ACTIVE"),
        }
        only = client(EX.SUBMITTER).list_hmac_keys(
            project_id=EX.PROJECT, service_account_email=EX.PIPELINE_SA
        )
        assert list(only) == []
        with pytest.raises(exceptions.Forbidden):
            list(client(f"serviceAccount:{EX.TRAIN_SA}").list_hmac_keys(project_id=EX.PROJECT))
