"""The emulator reads a storage batch body (``multipart/mixed``, RFC 2046) strictly enough."""

from __future__ import annotations

import pytest

from zt_pipelines.emulator.http_api import parse_batch


def _part(line: str, cid: str = "", eol: str = "\r\n") -> str:
    head = f"Content-Type: application/http{eol}" + (f"Content-ID: <{cid}>{eol}" if cid else "")
    return f"{head}{eol}{line} HTTP/1.1{eol}Accept: application/json{eol}{eol}"


def test_calls_come_in_order_with_their_ids_headers_and_bodies() -> None:
    body = (
        "preamble is ignored\r\n"
        "--b1\r\n" + _part("GET /storage/v1/b/x", "1") + "\r\n"
        "--b1  \r\n"
        + _part("GET /storage/v1/b/x/iam?optionsRequestedPolicyVersion=3", "2")
        + "\r\n--b1--\r\nepilogue is ignored"
    )
    calls = parse_batch('multipart/mixed; boundary="b1"', body.encode())
    assert calls == [
        ("1", ("GET", "/storage/v1/b/x", {"accept": "application/json"}, b"")),
        (
            "2",
            (
                "GET",
                "/storage/v1/b/x/iam?optionsRequestedPolicyVersion=3",
                {"accept": "application/json"},
                b"",
            ),
        ),
    ]


def test_lf_lines_and_an_unquoted_boundary_read_the_same() -> None:
    body = "--b\n" + _part("GET /storage/v1/b/y", "a", "\n") + "\n--b--\n"
    calls = parse_batch("Multipart/Mixed; charset=x; boundary=b", body.encode())
    assert calls == [("a", ("GET", "/storage/v1/b/y", {"accept": "application/json"}, b""))]


def test_a_boundary_inside_a_line_is_text_not_a_delimiter() -> None:
    line = "GET /storage/v1/b/has--b-inside"
    body = "--b\r\n" + _part(line) + "\r\n--b--\r\n"
    calls = parse_batch("multipart/mixed; boundary=b", body.encode())
    assert calls is not None and calls[0][1][1] == "/storage/v1/b/has--b-inside"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", "--b\r\n" + _part("GET /x") + "\r\n--b--"),
        ("multipart/mixed", "--b\r\n" + _part("GET /x") + "\r\n--b--"),  # no boundary
        ("multipart/mixed; boundary=b", "--b\r\n" + _part("GET /x")),  # never closed
        ("multipart/mixed; boundary=b", "--bx\r\n" + _part("GET /x") + "\r\n--b--"),
        ("multipart/mixed; boundary=b", "--b\r\nno blank line\r\n--b--"),
        ("multipart/mixed; boundary=b", "--b\r\n\r\nnot a request line\r\n\r\n\r\n--b--"),
        ("multipart/mixed; boundary=b", "--b\r\nbad header\r\n\r\nGET /x HTTP/1.1\r\n\r\n--b--"),
    ],
    ids=[
        "not-multipart",
        "no-boundary",
        "unclosed",
        "bad-delimiter",
        "no-blank",
        "no-request",
        "bad-header",
    ],
)
def test_what_is_not_a_batch_of_requests_is_refused(content_type: str, body: str) -> None:
    assert parse_batch(content_type, body.encode()) is None
