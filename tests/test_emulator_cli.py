"""``zt-pipelines emulator``: a real process serving a snapshot file to the real clients."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.api_core import exceptions as gexc
from google.cloud import iam_admin_v1
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
from test_emulator_world import ADMIN, PIPELINE_SA, world

from zt_pipelines.emulator import emulator_channel, emulator_credentials
from zt_pipelines.policy.snapshot_file import dump_snapshot, load_snapshot

MAIN = "from zt_pipelines.cli import main; main()"


def _snapshot_file(tmp_path: Path) -> Path:
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(dump_snapshot(world())))
    return path


def test_serves_a_snapshot_file_until_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MAIN,
            "emulator",
            "--snapshot",
            str(_snapshot_file(tmp_path)),
            "--fault",
            "google.iam.admin.v1.IAM/GetServiceAccount=UNAVAILABLE,times=1",
            "--request-log",
            str(tmp_path / "calls.jsonl"),
            "--dump-state",
            str(tmp_path / "after.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("ZT_EMULATOR_HOST=127.0.0.1:")
        address = first.split("=", 1)[1]
        channel = emulator_channel(address, emulator_credentials(ADMIN))
        client = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))
        name = f"projects/-/serviceAccounts/{PIPELINE_SA}"
        with pytest.raises(gexc.ServiceUnavailable):
            client.get_service_account(name=name, retry=None)
        assert client.get_service_account(name=name, retry=None).email == PIPELINE_SA
        client.create_service_account(
            request={"name": "projects/proj-alpha", "account_id": "made-by-cli-test"}
        )
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped after 3 calls" in err
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [(c["status"], c["write"]) for c in calls] == [
        ("UNAVAILABLE", False),
        ("OK", False),
        ("OK", True),
    ]
    after = load_snapshot(tmp_path / "after.json")
    assert "made-by-cli-test@proj-alpha.iam.gserviceaccount.com" in after.service_accounts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--snapshot", "missing.yaml"], "does not exist"),
        (["--snapshot", "{snap}", "--fault", "x=NOPE"], "unknown status code"),
        (["--snapshot", "{snap}", "--project-number", "p=abc"], "PROJECT_ID=NUMBER"),
        # never bound: refused before anything listens
        (["--snapshot", "{snap}", "--host", "0.0.0.0"], "refusing to bind 0.0.0.0"),
        (["--snapshot", "{snap}", "--request-log", "/no-dir/calls.jsonl"], "--request-log"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    snap = _snapshot_file(tmp_path)
    argv = [a.replace("{snap}", str(snap)) for a in args]
    done = subprocess.run(
        [sys.executable, "-c", MAIN, "emulator", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert message in done.stderr
