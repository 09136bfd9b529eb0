"""Scripted faults reach the REAL clients as the exceptions Google's APIs would cause."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import iam_admin_v1, storage
from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
from test_emulator_world import ADMIN, PIPELINE_SA, world

from zt_pipelines.emulator import (
    Emulator,
    Fault,
    FaultSpecError,
    emulator_channel,
    emulator_credentials,
)

GET_SA = "google.iam.admin.v1.IAM/GetServiceAccount"
SA_NAME = f"projects/-/serviceAccounts/{PIPELINE_SA}"


@pytest.fixture()
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(world()) as running:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{running.address}")
        yield running


def iam(emu: Emulator) -> iam_admin_v1.IAMClient:
    channel = emulator_channel(emu.address, emulator_credentials(ADMIN))
    return iam_admin_v1.IAMClient(transport=IAMGrpcTransport(channel=channel))


def bucket() -> storage.Bucket:
    client = storage.Client(project="proj-alpha", credentials=emulator_credentials(ADMIN))
    return client.bucket("zt-root-bucket")


# -- gRPC ----------------------------------------------------------------------------------------


def test_grpc_status_for_the_first_n_calls(emu: Emulator) -> None:
    emu.add_fault(Fault(method=GET_SA, code="UNAVAILABLE", times=2))
    client = iam(emu)
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable):
            client.get_service_account(name=SA_NAME, retry=None)
    assert client.get_service_account(name=SA_NAME, retry=None).email == PIPELINE_SA
    assert [r.status for r in emu.request_log] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        ("RESOURCE_EXHAUSTED", gexc.ResourceExhausted),
        ("INTERNAL", gexc.InternalServerError),
        ("PERMISSION_DENIED", gexc.PermissionDenied),
        ("DEADLINE_EXCEEDED", gexc.DeadlineExceeded),
    ],
)
def test_grpc_status_codes(emu: Emulator, code: str, exception: type[Exception]) -> None:
    emu.add_fault(Fault(method=GET_SA, code=code))
    with pytest.raises(exception):
        iam(emu).get_service_account(name=SA_NAME, retry=None)


def test_grpc_malformed_body(emu: Emulator) -> None:
    emu.add_fault(Fault(method=GET_SA, malformed=True, times=1))
    client = iam(emu)
    with pytest.raises(gexc.GoogleAPICallError) as raised:
        client.get_service_account(name=SA_NAME, retry=None)
    assert "deserializ" in str(raised.value).lower()
    assert client.get_service_account(name=SA_NAME, retry=None).email == PIPELINE_SA
    assert emu.request_log[0].status == "MALFORMED"


def test_grpc_connection_reset_then_reconnect(emu: Emulator) -> None:
    emu.add_fault(Fault(method=GET_SA, reset=True, times=1))
    client = iam(emu)
    with pytest.raises(gexc.ServiceUnavailable):
        client.get_service_account(name=SA_NAME, retry=None)
    assert client.get_service_account(name=SA_NAME, retry=None).email == PIPELINE_SA
    assert [r.status for r in emu.request_log] == ["RESET", "OK"]


def test_grpc_delay_hits_the_client_deadline(emu: Emulator) -> None:
    emu.add_fault(Fault(method=GET_SA, delay_ms=5_000, times=1))
    with pytest.raises(gexc.DeadlineExceeded):
        iam(emu).get_service_account(name=SA_NAME, retry=None, timeout=0.2)


def test_stop_ends_calls_stuck_in_a_delay() -> None:
    emu = Emulator(world()).start()
    emu.add_fault(Fault(method=GET_SA, delay_ms=600_000))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            iam(emu).get_service_account(name=SA_NAME, retry=None, timeout=600)
        except BaseException as exc:  # the call must end, one way or another
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while emu.in_flight == 0 and caller.is_alive():
        threading.Event().wait(0.01)
    assert emu.in_flight == 1
    emu.stop()
    caller.join(timeout=30)
    assert not caller.is_alive()
    assert [t for t in threading.enumerate() if t.name.startswith("zt-emulator")] == []


# -- HTTP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exception"),
    [
        ("UNAVAILABLE", gexc.ServiceUnavailable),
        ("RESOURCE_EXHAUSTED", gexc.TooManyRequests),
        ("INTERNAL", gexc.InternalServerError),
        ("PERMISSION_DENIED", gexc.Forbidden),
        ("DEADLINE_EXCEEDED", gexc.GatewayTimeout),
    ],
)
def test_http_status_codes(emu: Emulator, code: str, exception: type[Exception]) -> None:
    emu.add_fault(Fault(method="storage.buckets.getIamPolicy", code=code, times=1))
    with pytest.raises(exception):
        bucket().get_iam_policy(retry=None)
    assert bucket().get_iam_policy(retry=None).etag


def test_http_malformed_body(emu: Emulator) -> None:
    emu.add_fault(Fault(method="storage.buckets.*", malformed=True))
    with pytest.raises(ValueError):
        bucket().reload(retry=None)
    assert emu.request_log[-1].status == "MALFORMED"


def test_http_connection_reset(emu: Emulator) -> None:
    emu.add_fault(Fault(method="storage.buckets.get", reset=True, times=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        bucket().reload(retry=None)
    bucket().reload(retry=None)
    assert [r.status for r in emu.request_log] == ["RESET", "OK"]


def test_http_delay_hits_the_client_timeout(emu: Emulator) -> None:
    emu.add_fault(Fault(method="storage.buckets.get", delay_ms=5_000, times=1))
    with pytest.raises(requests.exceptions.Timeout):
        bucket().reload(retry=None, timeout=0.2)


# -- fault plans ---------------------------------------------------------------------------------


def _pattern(seed: int) -> list[str]:
    with Emulator(world()) as emu:
        emu.add_fault(Fault(method=GET_SA, code="UNAVAILABLE", probability=0.5, seed=seed))
        client = iam(emu)
        for _ in range(20):
            with contextlib.suppress(gexc.ServiceUnavailable):
                client.get_service_account(name=SA_NAME, retry=None)
        return [r.status for r in emu.request_log]


def test_random_faults_are_reproducible_with_a_seed() -> None:
    first = _pattern(7)
    assert first == _pattern(7)
    assert {"OK", "UNAVAILABLE"} == set(first)


def test_fault_specs_parse() -> None:
    assert Fault.parse(f"{GET_SA}=UNAVAILABLE,times=2") == Fault(GET_SA, "UNAVAILABLE", times=2)
    assert Fault.parse("storage.*=reset,p=0.25,seed=3") == Fault(
        "storage.*", reset=True, probability=0.25, seed=3
    )
    assert Fault.parse("*=delay,delay_ms=50") == Fault("*", delay_ms=50)
    assert Fault.parse("x=malformed") == Fault("x", malformed=True)


@pytest.mark.parametrize(
    "spec",
    [
        "nothing",
        "m=NOT_A_CODE",
        "m=UNAVAILABLE,times=0",
        "m=reset,p=2",
        "m=delay",
        "m=UNAVAILABLE,x=1",
    ],
)
def test_bad_fault_specs_are_input_errors(spec: str) -> None:
    with pytest.raises(FaultSpecError) as raised:
        Fault.parse(spec)
    assert raised.value.exit_code == 2


def test_an_emulator_error_answers_internal_instead_of_hanging() -> None:
    def broken(*_args: object) -> bool:
        raise RuntimeError("authorizer exploded")

    with Emulator(world(), authorizer=broken) as emu:
        with pytest.raises(gexc.InternalServerError, match="authorizer exploded"):
            iam(emu).get_service_account(name=SA_NAME, retry=None)
        reply = requests.get(
            f"http://{emu.address}/storage/v1/b/zt-root-bucket",
            headers={"Authorization": "Bearer " + emulator_credentials(ADMIN).token},
            timeout=5,
        )
        assert reply.status_code == 500
        assert [r.status for r in emu.request_log] == ["INTERNAL", "INTERNAL"]


def test_latency_applies_to_every_call(emu: Emulator) -> None:
    emu.latency_ms = 5_000
    with pytest.raises(gexc.DeadlineExceeded):
        iam(emu).get_service_account(name=SA_NAME, retry=None, timeout=0.2)
    with pytest.raises(requests.exceptions.Timeout):
        bucket().reload(retry=None, timeout=0.2)
    emu.latency_ms = 0
    assert iam(emu).get_service_account(name=SA_NAME, retry=None).email == PIPELINE_SA


def test_concurrent_calls_over_both_protocols_are_all_answered(emu: Emulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    emu.latency_ms = 20
    client = iam(emu)

    def one(i: int) -> str:
        if i % 2:
            return str(client.get_service_account(name=SA_NAME, retry=None).email)
        return str(bucket().get_iam_policy(retry=None).etag)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(64)))
    assert answers[1::2] == [PIPELINE_SA] * 32
    assert len(set(answers[0::2])) == 1
    counts = emu.counts()
    assert (counts[GET_SA], counts["storage.buckets.getIamPolicy"]) == (32, 32)
    # storage clients may still be reading bucket metadata in the background: let them finish
    for _ in range(500):
        if emu.in_flight == 0:
            break
        threading.Event().wait(0.01)
    assert emu.in_flight == 0
    assert {r.status for r in emu.request_log} == {"OK"}
