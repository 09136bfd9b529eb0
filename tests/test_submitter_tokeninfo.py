"""The submitter of end-user credentials is whom Google says their token belongs to (tokeninfo;
the emulator serves it), never the free-text ``account`` of an authorized-user file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.oauth2 import credentials as user_credentials

import zt_pipelines as zt
from zt_pipelines.emulator import Emulator
from zt_pipelines.errors import IdentityError
from zt_pipelines.gcp import describe_submitter
from zt_pipelines.gcp.submitter import submitter_of
from zt_pipelines.policy.snapshot_file import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "examples" / "world.yaml"
MALLORY = "mallory@gmail.com"
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_snapshot(WORLD)) as emu:
        yield emu


@pytest.fixture()
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("ZT_EMULATOR_HOST", emulator.address)
    return emulator


class _Subclass(user_credentials.Credentials):  # type: ignore[misc]
    """A caller's own subclass of end-user credentials."""


def user_creds(token: str, account: str = "", cls: Any = user_credentials.Credentials) -> Any:
    return cls(token=token, account=account)


def test_the_emulator_serves_tokeninfo_as_google_does(emu: Emulator) -> None:
    url = f"http://{emu.address}/tokeninfo"
    ok = requests.get(url, params={"access_token": f"zt-emulator:user:{MALLORY}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["email"] == MALLORY
    bad = requests.get(url, params={"access_token": "ya29.not-ours"}, timeout=10)
    assert bad.status_code == 400 and "invalid_token" in bad.text


@pytest.mark.parametrize("cls", [user_credentials.Credentials, _Subclass])
def test_the_token_decides_not_the_account_field(emu: Emulator, cls: Any) -> None:
    token = f"zt-emulator:user:{MALLORY}"
    assert describe_submitter(user_creds(token, cls=cls)).member == f"user:{MALLORY}"
    assert describe_submitter(user_creds(token, MALLORY.upper(), cls)).member == f"user:{MALLORY}"
    with pytest.raises(IdentityError) as info:
        describe_submitter(user_creds(token, ALICE, cls))
    assert ALICE in str(info.value) and MALLORY in str(info.value)
    # a service account's token in end-user clothing is that account
    sa = "ci@zt-demo.iam.gserviceaccount.com"
    got = describe_submitter(user_creds(f"zt-emulator:serviceAccount:{sa}", cls=cls))
    assert got.member == f"serviceAccount:{sa}"


def test_a_token_google_did_not_issue_names_nobody(emu: Emulator) -> None:
    with pytest.raises(IdentityError):
        describe_submitter(user_creds("ya29.not-ours", ALICE))


def test_the_account_field_is_never_a_recorded_submitter() -> None:
    assert submitter_of(user_creds("t", ALICE)) == "unknown"


def test_the_drop_in_never_judges_or_records_the_claimed_account(
    emu: Emulator, tmp_path: Path
) -> None:
    from test_job import EXAMPLES

    template = EXAMPLES.compile_pipeline("training", str(tmp_path / "training.yaml"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'version: 1\nsubmitters:\n  allowed: ["user:{ALICE}"]\n')
    audit = tmp_path / "audit.jsonl"
    job = zt.PipelineJob(
        display_name="t",
        template_path=template,
        project="zt-demo",
        location="us-central1",
        snapshot=str(WORLD),
        credentials=user_creds(f"zt-emulator:user:{MALLORY}", ALICE),
        policy=str(policy),
        audit_log=str(audit),
    )
    report = job.verify(service_account="pipeline-sa@zt-demo.iam.gserviceaccount.com")
    assert not report.allowed
    recorded = [json.loads(line).get("submitter") for line in audit.read_text().splitlines()]
    assert f"user:{ALICE}" not in recorded


def test_only_google_auths_own_classes_name_their_account(emu: Emulator) -> None:
    """A subclass (or any other object) carrying ``service_account_email`` says so itself: the
    token decides."""

    class Claims(user_credentials.Credentials):  # type: ignore[misc]
        service_account_email = "approved-ci@zt-demo.iam.gserviceaccount.com"
        signer_email = "approved-ci@zt-demo.iam.gserviceaccount.com"

    got = describe_submitter(Claims(token=f"zt-emulator:user:{MALLORY}"))
    assert got.member == f"user:{MALLORY}"
    with pytest.raises(IdentityError):
        describe_submitter(Claims(token="ya29.not-ours"))
