"""ZT410: a key or a token anywhere in the pipeline spec or its parameter values is refused by
check, the drop-in job and ``rewrite`` — never written, never shown."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_worlds import PIPELINE_SA, WORLD_FILE
from test_check_cli import NOW, cli, template  # noqa: F401  (the compiled demo pipeline)

import zt_pipelines as zt
from zt_pipelines.audit import AuditLog
from zt_pipelines.credentials import credential_kinds, credential_paths, may_hold_credentials
from zt_pipelines.errors import TemplateError

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
KEY_FILE = json.dumps({"type": "service_account", "private_key": PEM, "client_email": "x@p.iam"})
SECRETS = {
    "a private key": KEY_FILE,
    "an OAuth access token": "ya29.a0AfH6SMBexampletokenvalue",
    "an OAuth refresh token": "1//0gExampleRefreshTokenValue-abcdefgh",
    "a JWT or ID token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl",
    "an API key": "AIza" + "A" * 35,
    "an OAuth client secret": "GOCSPX-" + "a" * 28,
    "a signed-URL signature": "https://storage.googleapis.com/b/o?X-Goog-Signature=abc123",
}


def with_env(compiled: Path, tmp_path: Path, value: str) -> Path:
    docs = list(yaml.safe_load_all(compiled.read_text()))
    executor = docs[0]["deploymentSpec"]["executors"]["exec-train"]["container"]
    executor["env"] = [{"name": "CREDS", "value": value}]
    out = tmp_path / "creds.yaml"
    out.write_text("\n---\n".join(json.dumps(d) for d in docs))
    return out


def check(path: Path, **kw: Any) -> Any:
    return zt.check(
        str(path),
        project="ml-prod",
        location="us-central1",
        pipeline_service_account=PIPELINE_SA,
        pipeline_root="gs://zt-pipeline-root/runs",
        snapshot=str(WORLD_FILE),
        submitter="user:alice@example.com",
        now=NOW,
        **kw,
    )


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_every_credential_shape_is_found_and_only_there(kind: str) -> None:
    assert credential_kinds(f"x {SECRETS[kind]} y") == [kind]
    assert credential_paths({"a": [{"b": SECRETS[kind]}]}) == [("a[0].b", kind)]
    # code that merely talks about tokens is no credential
    assert not credential_kinds('headers = {"Authorization": f"Bearer {token}"}  # ya29 eyJ')


@pytest.mark.parametrize("kind", ["a private key", "an OAuth access token"])
def test_check_refuses_a_credential_in_a_container_and_names_where(
    template: Path,  # noqa: F811
    tmp_path: Path,
    kind: str,
) -> None:
    report = check(with_env(template, tmp_path, SECRETS[kind]))
    [f] = report.by_code("ZT410")
    assert not report.allowed and kind in f.message and f.step == "train"
    assert "env[0].value" in f.message
    assert "PRIVATE KEY" not in report.to_json() and "ya29." not in report.to_json()


def test_a_credential_cannot_be_waived(template: Path, tmp_path: Path) -> None:  # noqa: F811
    policy = {"severities": {"ZT410": "note"}}
    with pytest.raises(zt.PolicyFileError if hasattr(zt, "PolicyFileError") else Exception):
        check(with_env(template, tmp_path, SECRETS["an API key"]), policy=policy)


def test_the_drop_in_refuses_and_records_it(template: Path, tmp_path: Path) -> None:  # noqa: F811
    log = AuditLog(tmp_path / "audit.jsonl")
    job = zt.PipelineJob(
        display_name="creds",
        template_path=str(with_env(template, tmp_path, SECRETS["an OAuth access token"])),
        project="ml-prod",
        location="us-central1",
        pipeline_root="gs://zt-pipeline-root/runs",
        snapshot=str(WORLD_FILE),
        audit_log=log,
    )
    report = job.verify(service_account=PIPELINE_SA)
    assert not report.allowed and report.by_code("ZT410")
    [record] = log.records()
    assert record["outcome"] == "refused" and "ZT410" in json.dumps(record)
    assert "ya29." not in (tmp_path / "audit.jsonl").read_text()


def test_rewrite_does_not_write_a_credential(
    template: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.yaml"
    path = with_env(template, tmp_path, SECRETS["a private key"])
    argv = ["rewrite", str(path), "--project", "ml-prod", "--pipeline-sa", PIPELINE_SA]
    code, _, err = cli([*argv, "-o", str(out)], capsys)
    assert code == 2 and "ZT410" in err and "PRIVATE KEY-----" not in err and not out.exists()


def test_a_parameter_value_holding_a_token_is_refused(template: Path) -> None:  # noqa: F811
    with pytest.raises(TemplateError, match="parameter 'p' holds an OAuth access token"):
        zt.rewrite(str(template), parameter_values={"p": SECRETS["an OAuth access token"]})


# -- encoded forms (red team in_25): the shapes a key file or token travels in --------------


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _encodings(secret: str) -> dict[str, str]:
    import base64
    import gzip
    import textwrap
    import zlib

    raw = secret.encode()
    return {
        "base64": _b64(raw),  # IAM keys.create's privateKeyData, Terraform's private_key
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "base64, wrapped at 76": "\n".join(textwrap.wrap(_b64(raw), 76)),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "gzip+base64": _b64(gzip.compress(raw)),
        "zlib+base64": _b64(zlib.compress(raw)),
        "base64 of base64": _b64(_b64(raw).encode()),
        "after a name": "GOOGLE_CREDENTIALS=" + _b64(raw),
    }


REAL = {  # as incompressible as real ones (SECRETS' repeated letters compress to nothing)
    "a private key": KEY_FILE,
    "an OAuth refresh token": "1//0gK7xQ2mZ9pLwR4vT8nB3cY6hJ1sD5fG0kU",
    "an API key": "AIzaSyB3xQ9kL2mN7pR4tV8wZ1cE5gH0jK6uYbQ",
}


@pytest.mark.parametrize("encoding", sorted(_encodings("x")))
@pytest.mark.parametrize("kind", sorted(REAL))
def test_an_encoded_credential_is_found(kind: str, encoding: str) -> None:
    assert credential_kinds(REAL[kind]) == [kind]
    value = _encodings(REAL[kind])[encoding]
    [found] = credential_kinds(f"--creds {value} --x")
    assert found.startswith(kind) and "encoded" in found
    [(path, _)] = credential_paths({"env": [{"value": value}]})
    assert path == "env[0].value"
    # a JSON dump of the spec (how check scans it first) escapes the line wraps
    assert credential_kinds(json.dumps({"v": value}))


def test_encoded_text_that_holds_no_credential_is_no_finding() -> None:
    import os
    import zlib

    blobs = [
        _b64(os.urandom(3000)),  # an embedded binary (a model, an image)
        _b64(zlib.compress(b"print('hello')\n" * 50)),  # compressed code
        _b64(b'{"type": "authorized_user_template", "note": "no secret here"}'),
        "0123456789abcdef" * 20,  # a digest-like hex run
        "pipelinechannel--encryption_spec_key_name-" * 3,
    ]
    for blob in blobs:
        assert credential_kinds(blob) == [], blob[:40]


def test_more_encoded_text_than_the_bounds_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from zt_pipelines import credentials

    monkeypatch.setattr(credentials, "_MAX_CANDIDATES", 3)
    text = " ".join(_b64(f"harmless text number {i:04d} padded out".encode()) for i in range(5))
    assert credential_kinds(text) == [credentials.TOO_MUCH]


def test_check_refuses_an_encoded_key_file_in_env(template: Path, tmp_path: Path) -> None:  # noqa: F811
    report = check(with_env(template, tmp_path, _encodings(KEY_FILE)["gzip+base64"]))
    [f] = report.by_code("ZT410")
    assert "a private key (gzip, base64-encoded)" in f.message and f.step == "train"


def test_a_parameter_value_holding_an_encoded_key_is_refused(template: Path) -> None:  # noqa: F811
    with pytest.raises(TemplateError, match="parameter 'p' holds a private key"):
        zt.rewrite(str(template), parameter_values={"p": _b64(KEY_FILE.encode())})


def test_a_key_file_with_json_escaped_characters_is_found() -> None:
    # what json.loads (google-auth's reader) turns back into the PEM markers
    escaped = KEY_FILE.replace("-", "\\u002d")
    assert "PRIVATE KEY-----" not in escaped
    assert credential_kinds(escaped) == ["a private key"]
    assert credential_kinds(json.dumps({"v": escaped})) == ["a private key"]  # a spec dump
    [found] = credential_kinds(_b64(escaped.encode()))
    assert found == "a private key (base64-encoded)"
    assert credential_paths({"env": [escaped]}) == [("env[0]", "a private key")]


# -- round 6 in_03: an HMAC key, a token split over a command's elements, binary key files ---

HMAC_ID = "GOOG1EJ4ZQ2X7Q3VYDRWZ5N6H7K2T3L4M5P6Q7R8S9T0U1V2W3X4Y5Z6A7B"


def _binary_keys() -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    der = serialization.Encoding.DER
    none = serialization.NoEncryption()
    return {
        "a private key (a PKCS#12 key file)": pkcs12.serialize_key_and_certificates(
            b"privatekey", rsa_key, None, None, serialization.BestAvailableEncryption(b"notasecret")
        ),
        "a private key (PKCS#8)": ec_key.private_bytes(
            der, serialization.PrivateFormat.PKCS8, none
        ),
        "a private key (PKCS#1)": rsa_key.private_bytes(
            der, serialization.PrivateFormat.TraditionalOpenSSL, none
        ),
    }


def test_a_cloud_storage_hmac_key_is_found() -> None:
    assert credential_kinds(f"AWS_ACCESS_KEY_ID={HMAC_ID}") == ["a Cloud Storage HMAC key"]
    assert credential_kinds("GOOGTS7C7FUP3AIRVJTE2BCD") == ["a Cloud Storage HMAC key"]
    # names that merely start like one are not
    assert credential_kinds("GOOGLE_APPLICATION_CREDENTIALS GOOGLE_CLOUD_PROJECT") == []


def test_a_token_split_over_a_commands_elements_is_found() -> None:
    token = SECRETS["an OAuth access token"]
    args = ["sh", "-c", 'export T="$0$1"; exec train', token[:4], token[4:]]
    assert all(credential_kinds(a) == [] for a in args)
    assert credential_paths({"args": args}) == [("args (elements joined)", "an OAuth access token")]
    assert may_hold_credentials(json.dumps({"args": args}))


@pytest.mark.parametrize("kind", sorted(_binary_keys()))
def test_a_binary_key_file_encoded_is_found(kind: str) -> None:
    import os

    blob = _binary_keys()[kind]
    assert credential_kinds(_b64(blob)) == [f"{kind} (base64-encoded)"]
    assert credential_kinds(blob.hex()) == [f"{kind} (hex-encoded)"]
    assert credential_kinds(_b64(os.urandom(len(blob)))) == []  # random bytes are no key


def test_check_refuses_a_p12_key_file_in_env(template: Path, tmp_path: Path) -> None:  # noqa: F811
    blob = _binary_keys()["a private key (a PKCS#12 key file)"]
    report = check(with_env(template, tmp_path, _b64(blob)))
    [f] = report.by_code("ZT410")
    assert "PKCS#12" in f.message and f.step == "train"


# -- round 7 in_04: the escapes a reader undoes before it uses the text ---------------------


def _escapes(secret: str) -> dict[str, str]:
    from urllib.parse import quote, urlencode

    every = "".join(f"\\u{ord(c):04x}" for c in secret)
    return {
        "JSON \\uXXXX": every,
        "JSON \\/ (PHP's, Java's writers)": secret.replace("/", "\\/"),
        "\\xXX (YAML, Python, $'...')": "".join(f"\\x{ord(c):02x}" for c in secret),
        "%XX (URL)": quote(secret, safe=""),
        "form body": urlencode({"grant_type": "refresh_token", "refresh_token": secret}),
        "%XX twice": quote(quote(secret, safe=""), safe=""),
        "in a JSON dump": json.dumps({"v": secret.replace("/", "\\/")}),
    }


@pytest.mark.parametrize("escape", sorted(_escapes("x")))
@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_an_escaped_credential_is_found(kind: str, escape: str) -> None:
    value = _escapes(SECRETS[kind])[escape]
    assert kind in credential_kinds(f"x {value} y"), value
    assert credential_paths({"env": [{"value": value}]}), value


def test_an_adc_file_written_with_escaped_slashes_is_found_encoded_too() -> None:
    adc = json.dumps(
        {
            "type": "authorized_user",
            "client_id": "c",
            "refresh_token": REAL["an OAuth refresh token"],
        }
    ).replace("/", "\\/")
    assert json.loads(adc)["refresh_token"] == REAL["an OAuth refresh token"]
    assert credential_kinds(adc) == ["an OAuth refresh token"]
    # a base64 key file whose / a JSON writer escaped splits the base64 runs: read back whole
    encoded = _b64(KEY_FILE.encode()).replace("/", "\\/")
    assert credential_kinds(json.dumps({"key": encoded}))


def test_text_with_escapes_but_no_credential_is_no_finding() -> None:
    for text in ("100%25 done", "a\\/b\\u0041\\x41 %2F%2F path", "printf '%s\\n' 50%"):
        assert credential_kinds(text) == [], text


def test_the_audit_log_redacts_an_escaped_or_encoded_credential_whole() -> None:
    from zt_pipelines.audit.chain import REDACTED, redact

    token = REAL["an OAuth refresh token"]
    assert redact(f"token {token}") == f"token {REDACTED}"
    for value in (
        _escapes(token)["form body"],
        _escapes(token)["JSON \\/ (PHP's, Java's writers)"],
    ):
        assert redact({"param": value}) == {"param": REDACTED}
    assert redact({"param": _b64(KEY_FILE.encode())}) == {"param": REDACTED}
    assert redact({"param": "gs://bucket/runs 100%25"}) == {"param": "gs://bucket/runs 100%25"}
