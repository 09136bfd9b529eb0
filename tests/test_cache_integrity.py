"""Issue #10 item 3: caches are not evidence. A cached role (or deny policy) counts only when
it is bound, by an HMAC under a per-user secret kept outside the cache, to what this user
fetched; a cache inside a checkout is never used."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from policy_worlds import world

from zt_pipelines.emulator import Emulator, emulator_credentials
from zt_pipelines.gcp import fetch_snapshot
from zt_pipelines.gcp.cache import DiskCache
from zt_pipelines.gcp.retry import no_wait_policy
from zt_pipelines.policy.engine import decide
from zt_pipelines.policy.snapshot import Condition, DenyPolicy, DenyRule, Role

VIEWER = Role("roles/storage.objectViewer", frozenset({"storage.objects.get"}), "Viewer")
FORGED = ["storage.objects.get", "storage.objects.delete", "storage.buckets.setIamPolicy"]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture()
def cache(tmp_path: Path) -> DiskCache:
    """A cache with its secret beside (not inside) its directory."""
    return DiskCache(tmp_path / "cache", key_path=tmp_path / "config" / "cache.key")


def _entry_path(c: DiskCache, kind: str, key: str) -> Path:
    return c._path(kind, key)  # the on-disk layout is what an attacker writes to


def _write(path: Path, entry: dict[str, object]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps(entry))
    path.chmod(0o600)


def test_a_forged_role_entry_is_not_trusted(cache: DiskCache) -> None:
    # the review's case: someone who can write the cache directory plants a role definition
    entry = {
        "key": VIEWER.name,
        "stored": cache.clock(),
        "value": {"name": VIEWER.name, "permissions": FORGED, "title": "", "stage": "GA"},
    }
    _write(_entry_path(cache, "roles", VIEWER.name), entry)
    assert cache.get_role(VIEWER.name) is None


def test_a_genuine_entry_is_still_used(cache: DiskCache) -> None:
    cache.put_role(VIEWER)
    assert cache.get_role(VIEWER.name) == VIEWER
    assert cache.disabled == ""


def test_an_edited_genuine_entry_is_not_trusted(cache: DiskCache) -> None:
    cache.put_role(VIEWER)
    path = _entry_path(cache, "roles", VIEWER.name)
    entry = json.loads(path.read_text())
    entry["value"]["permissions"] = FORGED
    path.write_text(json.dumps(entry))
    assert cache.get_role(VIEWER.name) is None


def test_a_genuine_entry_moved_to_another_key_is_not_trusted(cache: DiskCache) -> None:
    admin = Role("roles/storage.admin", frozenset(FORGED))
    cache.put_role(admin)
    entry = json.loads(_entry_path(cache, "roles", admin.name).read_text())
    entry["key"] = VIEWER.name
    entry["value"]["name"] = VIEWER.name
    _write(_entry_path(cache, "roles", VIEWER.name), entry)
    assert cache.get_role(VIEWER.name) is None


def test_a_genuine_entry_of_another_namespace_is_not_trusted(tmp_path: Path) -> None:
    key = tmp_path / "config" / "cache.key"
    emulator = DiskCache(tmp_path / "cache", namespace="emulator-x", key_path=key)
    google = DiskCache(tmp_path / "cache", namespace="google", key_path=key)
    emulator.put_role(Role(VIEWER.name, frozenset(FORGED)))
    _write(
        _entry_path(google, "roles", VIEWER.name),
        json.loads(_entry_path(emulator, "roles", VIEWER.name).read_text()),
    )
    assert google.get_role(VIEWER.name) is None


def test_an_entry_from_the_future_is_not_trusted(cache: DiskCache) -> None:
    later = DiskCache(
        cache.directory.parent, key_path=cache.key_path, clock=lambda: cache.clock() + 3600
    )
    later.put_role(VIEWER)
    assert cache.get_role(VIEWER.name) is None


def test_a_forged_deny_policy_is_not_trusted(cache: DiskCache) -> None:
    policy = DenyPolicy(
        "policies/x/denypolicies/d",
        "//cloudresourcemanager.googleapis.com/projects/p",
        (
            DenyRule(
                ("principalSet://goog/public:all",), ("*",), denial_condition=Condition("true")
            ),
        ),
        etag="e1",
    )
    cache.put_deny(policy)
    assert cache.get_deny(policy.name, "e1") == policy
    path = _entry_path(cache, "deny", f"{policy.name}@e1")
    entry = json.loads(path.read_text())
    entry["value"]["rules"] = []  # a deny policy that vanished is a false allow
    path.write_text(json.dumps(entry))
    assert cache.get_deny(policy.name, "e1") is None


def test_a_cache_inside_a_checkout_is_never_used(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    c = DiskCache(repo / ".zt-cache", key_path=tmp_path / "config" / "cache.key")
    c.put_role(VIEWER)
    assert c.get_role(VIEWER.name) is None
    assert "checkout" in c.disabled
    assert not (repo / ".zt-cache").exists()  # nothing written there either


def test_a_key_inside_the_cache_directory_turns_the_cache_off(tmp_path: Path) -> None:
    c = DiskCache(tmp_path / "cache", key_path=tmp_path / "cache" / "google" / "cache.key")
    c.put_role(VIEWER)
    assert c.get_role(VIEWER.name) is None and "inside the cache" in c.disabled


def test_a_key_inside_a_checkout_turns_the_cache_off(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    c = DiskCache(tmp_path / "cache", key_path=tmp_path / "repo" / "cache.key")
    c.put_role(VIEWER)
    assert c.get_role(VIEWER.name) is None and "checkout" in c.disabled


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_others_can_read_turns_the_cache_off(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "config" / "cache.key"
    key.parent.mkdir(mode=0o700)
    key.write_bytes(b"k" * 32)
    key.chmod(mode)
    c = DiskCache(tmp_path / "cache", key_path=key)
    c.put_role(VIEWER)
    assert c.get_role(VIEWER.name) is None and "others" in c.disabled


def test_a_short_key_turns_the_cache_off(tmp_path: Path) -> None:
    key = tmp_path / "config" / "cache.key"
    key.parent.mkdir(mode=0o700)
    key.write_bytes(b"")
    key.chmod(0o600)
    c = DiskCache(tmp_path / "cache", key_path=key)
    assert c.get("roles", "x") is None and "short" in c.disabled


# -- end to end: a planted role never decides a grant ---------------------------------------


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    """The emulator over the standard policy world, IAM not enforced on reads."""
    with Emulator(world(), enforce_iam=False) as emu:
        yield emu


def test_a_planted_role_in_the_cache_never_grants(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    train = "train-sa@ml-prod.iam.gserviceaccount.com"
    features = "//storage.googleapis.com/zt-features"
    namespace = f"emulator-{emulator.address}"
    planted = DiskCache(tmp_path / "cache", namespace=namespace)
    entry = {
        "key": VIEWER.name,
        "stored": planted.clock(),
        "value": {"name": VIEWER.name, "permissions": FORGED},
        "mac": "0" * 64,
    }
    _write(_entry_path(planted, "roles", VIEWER.name), entry)
    snap = fetch_snapshot(
        resources=[features],
        service_accounts=[train],
        credentials=emulator_credentials(f"serviceAccount:{train}"),
        emulator_host=emulator.address,
        retry=no_wait_policy(),
        cache_dir=tmp_path / "cache",
    )
    assert "storage.objects.delete" not in snap.roles[VIEWER.name].permissions
    d = decide(f"serviceAccount:{train}", features, "storage.objects.delete", snap, now=NOW)
    assert not d.granted


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    key = tmp_path / "config" / "cache.key"

    def first_use(i: int) -> bytes | None:
        c = DiskCache(tmp_path / "cache", key_path=key)
        c.put_role(VIEWER)
        return c._key()

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(first_use, range(16)))
    assert keys == {key.read_bytes()}
    assert DiskCache(tmp_path / "cache", key_path=key).get_role(VIEWER.name) == VIEWER
    assert [p.name for p in key.parent.iterdir()] == ["cache.key"]  # no temporary left


def test_a_cache_turned_off_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    c = DiskCache(tmp_path / "repo" / "cache", key_path=tmp_path / "config" / "cache.key")
    with caplog.at_level("WARNING", logger="zt_pipelines.gcp"):
        assert c.get_role(VIEWER.name) is None
        c.put_role(VIEWER)
    warnings = [r.getMessage() for r in caplog.records if "cache off" in r.getMessage()]
    assert len(warnings) == 1 and "git checkout" in warnings[0]
