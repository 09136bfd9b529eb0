"""Artifact Registry KFP repositories (``https://REGION-kfp.pkg.dev/PROJECT/REPO/...``).

A KFP template download is a plain authenticated GET of
``https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/VERSION`` (``sha256:HEX``) or ``.../TAG``,
answered with the template's bytes — what aiplatform's template loader and kfp's
``RegistryClient.download_pipeline`` send. Against the emulator the client connects to the
emulator's address and keeps the Artifact Registry host in the ``Host`` header, so the request
line and headers are those of the real call; no DNS lookup is made.

Templates are added with :meth:`zt_pipelines.emulator.Emulator.add_kfp_template`; the caller
needs ``artifactregistry.repositories.downloadArtifacts`` on the repository (checked on its
project when the world does not hold the repository itself).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field

from zt_pipelines.emulator.world import EmulatorError, World
from zt_pipelines.resources import CRM

HOST = re.compile(r"^(?P<region>[a-z0-9-]+)-kfp\.pkg\.dev(?::\d+)?$", re.IGNORECASE)
PATH = re.compile(r"^/(?P<project>[^/]+)/(?P<repo>[^/]+)/(?P<package>[^/]+)/(?P<ref>[^/]+)/?$")
DOWNLOAD = "artifactregistry.repositories.downloadArtifacts"
ARTIFACT_REGISTRY = "//artifactregistry.googleapis.com/"


@dataclass
class KfpPackage:
    """One package in a KFP repository: its versions (``sha256:HEX`` → bytes) and tags."""

    versions: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class KfpRepositories:
    """Every KFP package the emulator serves, keyed by (region, project, repo, package)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._packages: dict[tuple[str, str, str, str], KfpPackage] = {}

    def add(
        self,
        region: str,
        project: str,
        repo: str,
        package: str,
        data: bytes,
        tags: tuple[str, ...] = ("latest",),
    ) -> str:
        """Store ``data`` as a new version (tags move to it, as an upload does); return
        its version name ``sha256:HEX``."""
        version = "sha256:" + hashlib.sha256(data).hexdigest()
        key = (region.lower(), project, repo, package)
        with self._lock:
            pkg = self._packages.setdefault(key, KfpPackage())
            pkg.versions[version] = data
            for tag in tags:
                pkg.tags[tag] = version
        return version

    def get(self, region: str, project: str, repo: str, package: str, ref: str) -> bytes | None:
        """The bytes of version or tag ``ref``, or ``None``."""
        with self._lock:
            pkg = self._packages.get((region.lower(), project, repo, package))
            if pkg is None:
                return None
            version = ref if ref.startswith("sha256:") else pkg.tags.get(ref, "")
            return pkg.versions.get(version)


def repository_name(region: str, project: str, repo: str) -> str:
    """The repository's full resource name (where download permission is checked)."""
    return f"{ARTIFACT_REGISTRY}projects/{project}/locations/{region.lower()}/repositories/{repo}"


def region_of(host: str | None) -> str | None:
    """The region of an Artifact Registry KFP host (``us-central1-kfp.pkg.dev``), else ``None``."""
    match = HOST.match((host or "").strip())
    return match.group("region").lower() if match else None


def download(
    world: World, repos: KfpRepositories, region: str, path: str, caller: str | None
) -> tuple[bytes, str]:
    """GET of a KFP version/tag: the template bytes, or a Google error.

    Raises:
        EmulatorError: NOT_FOUND (unknown path or package), PERMISSION_DENIED, UNAUTHENTICATED.
    """
    match = PATH.match(path)
    if match is None:
        raise EmulatorError("NOT_FOUND", f"{path} is not a KFP package version or tag")
    project, repo, package, ref = (
        match.group("project"),
        match.group("repo"),
        match.group("package"),
        match.group("ref"),
    )
    world.authorize(
        caller,
        DOWNLOAD,
        repository_name(region, project, repo),
        parent=f"{CRM}projects/{project}",
    )
    data = repos.get(region, project, repo, package, ref)
    if data is None:
        raise EmulatorError(
            "NOT_FOUND", f"package {package!r} has no version or tag {ref!r} in {repo}"
        )
    return data, "application/x-yaml"
