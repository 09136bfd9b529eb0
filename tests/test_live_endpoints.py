"""Live clients talk to Google whatever the client libraries' own endpoint variables say: the
one emulator switch is ZT_EMULATOR_HOST (a stray STORAGE_EMULATOR_HOST must not send bucket IAM
reads, and the caller's token, to another host while the report says "read live from Google")."""

from __future__ import annotations

import http.server
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import requests
from google.cloud.aiplatform import initializer
from google.oauth2 import credentials as oauth

from zt_pipelines.gcp.clients import ClientFactory
from zt_pipelines.job import use_emulator_if_configured

TOKEN = "ya29.CALLERS-REAL-TOKEN"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        body = b'{"bindings": [], "etag": "CAE=", "version": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen = []
    monkeypatch.delenv("ZT_EMULATOR_HOST", raising=False)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def looked_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail (and record) every name lookup but loopback: no request leaves the machine."""
    hosts: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1"):
            hosts.append(str(host))
            raise OSError(f"no network in this test ({host})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return hosts


def _live() -> ClientFactory:
    return ClientFactory(oauth.Credentials(token=TOKEN), emulator_host="", project="zt-demo")


@pytest.mark.parametrize("variable", ["STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE"])
def test_live_bucket_reads_ignore_the_storage_library_endpoint_variables(
    recorder: str,
    looked_up: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, recorder)
    with caplog.at_level(logging.WARNING, logger="zt_pipelines.gcp"):
        client = _live().storage()
    assert str(client._connection.API_BASE_URL) == "https://storage.googleapis.com"
    assert any(
        variable in r.getMessage() and "ZT_EMULATOR_HOST" in r.getMessage() for r in caplog.records
    )
    with pytest.raises(requests.exceptions.ConnectionError):  # no network here
        client.bucket("zt-demo-models").get_iam_policy(retry=None, timeout=2)
    assert _Recorder.seen == []  # neither the read nor the token reached the other host
    assert "storage.googleapis.com" in looked_up


def test_live_bigquery_reads_ignore_bigquery_emulator_host(
    recorder: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", recorder)
    with caplog.at_level(logging.WARNING, logger="zt_pipelines.gcp"):
        client = _live().bigquery()
    assert str(client._connection.API_BASE_URL) == "https://bigquery.googleapis.com"
    assert any("BIGQUERY_EMULATOR_HOST" in r.getMessage() for r in caplog.records)


def test_without_the_variables_the_library_default_is_kept(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for v in ("STORAGE_EMULATOR_HOST", "API_ENDPOINT_OVERRIDE", "BIGQUERY_EMULATOR_HOST"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.delenv("ZT_EMULATOR_HOST", raising=False)
    with caplog.at_level(logging.WARNING, logger="zt_pipelines.gcp"):
        factory = _live()
        assert str(factory.storage()._connection.API_BASE_URL) == "https://storage.googleapis.com"
        assert str(factory.bigquery()._connection.API_BASE_URL) == "https://bigquery.googleapis.com"
    assert caplog.records == []


def test_the_emulator_switch_still_points_storage_at_the_emulator(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # ignored: the switch wins
    address = recorder.removeprefix("http://")
    client = ClientFactory(oauth.Credentials(token=TOKEN), emulator_host=address).storage()
    assert str(client._connection.API_BASE_URL) == recorder


@pytest.fixture()
def aiplatform_config() -> Iterator[None]:
    config = initializer.global_config
    saved = dict(vars(config))
    try:
        yield
    finally:
        vars(config).clear()
        vars(config).update(saved)


def test_the_drop_in_takes_back_the_storage_variable_it_exported(
    monkeypatch: pytest.MonkeyPatch, aiplatform_config: None
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("ZT_EMULATOR_HOST", "127.0.0.1:8599")
    assert use_emulator_if_configured() == "127.0.0.1:8599"
    assert os.environ["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:8599"
    monkeypatch.delenv("ZT_EMULATOR_HOST")
    assert use_emulator_if_configured() is None
    assert "STORAGE_EMULATOR_HOST" not in os.environ
    # a value the user set is theirs: left alone
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    assert use_emulator_if_configured() is None
    assert os.environ["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:4443"
