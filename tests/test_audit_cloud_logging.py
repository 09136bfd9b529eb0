"""The Cloud Logging mirror: the real google-cloud-logging client against a local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging as cloud_logging

from zt_pipelines.audit import AuditIdentity, AuditLog, CloudLoggingMirror, Decision


class _Recorder(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.bodies.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def logging_api() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    bodies: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    handler = type("Recorder", (_Recorder,), {"bodies": bodies})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_records_reach_cloud_logging_as_structured_entries(
    tmp_path: Path, logging_api: tuple[str, list[tuple[str, dict[str, Any]]]]
) -> None:
    endpoint, bodies = logging_api
    client = cloud_logging.Client(  # type: ignore[no-untyped-call]
        project="zt-demo",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        _use_grpc=False,
        client_options={"api_endpoint": endpoint},
    )
    log = AuditLog(tmp_path / "a.jsonl", mirror=CloudLoggingMirror("zt-demo", client=client))
    entry = log.append(
        Decision(
            action="submit",
            outcome="refused",
            submitter="user:alice@example.com",
            project="zt-demo",
            location="us-central1",
            pipeline="p",
            identities=(AuditIdentity("pipeline", ""),),
            reason="Bearer ya29.should-not-leak-1234567890",
        )
    )
    entries = [e for path, body in bodies if "entries:write" in path for e in body["entries"]]
    ours = [e for e in entries if e.get("jsonPayload", {}).get("hash")]
    assert len(ours) == 1
    assert ours[0]["logName"] == "projects/zt-demo/logs/zt-pipelines-audit"
    assert ours[0]["severity"] == "WARNING"
    assert ours[0]["jsonPayload"]["hash"] == entry.record["hash"]
    assert ours[0]["labels"] == {"zt_seq": "0", "zt_outcome": "refused"}
    assert "should-not-leak" not in json.dumps(bodies)
