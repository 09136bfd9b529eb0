"""Resource Manager v3 adapter: organisations, folders, projects and their allow policies."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.gcp.convert import policy_from_proto
from zt_pipelines.policy.snapshot import AllowPolicy, Node
from zt_pipelines.resources import CRM


def crm_name(short: str) -> str:
    """``projects/x`` / ``folders/1`` / ``organizations/2`` → full resource name."""
    return CRM + short


def short_name(full: str) -> str:
    """Full resource name → ``projects/x`` / ``folders/1`` / ``organizations/2``."""
    return full.removeprefix(CRM)


class ResourceManagerAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.HierarchyReader`."""

    def get_project(self, project: str) -> Node:
        """The project (id or number) with parent and number."""
        client = self.factory.projects()
        proto: Any = self.call(
            lambda: client.get_project(name=f"projects/{project}", **self.gapic_kwargs()),
            what="projects.get",
            target=crm_name(f"projects/{project}"),
        )
        if not proto.project_id:
            raise ValueError("project without an id")
        number = str(proto.name).removeprefix("projects/")
        return Node(
            name=crm_name(f"projects/{proto.project_id}"),
            kind="project",
            parent=crm_name(proto.parent) if proto.parent else None,
            project_number=number or None,
            display_name=str(proto.display_name or ""),
        )

    def get_folder(self, folder_id: str) -> Node:
        """The folder with its parent."""
        client = self.factory.folders()
        proto: Any = self.call(
            lambda: client.get_folder(name=f"folders/{folder_id}", **self.gapic_kwargs()),
            what="folders.get",
            target=crm_name(f"folders/{folder_id}"),
        )
        return Node(
            name=crm_name(f"folders/{folder_id}"),
            kind="folder",
            parent=crm_name(proto.parent) if proto.parent else None,
            display_name=str(proto.display_name or ""),
        )

    def get_organization(self, org_id: str) -> Node:
        """The organisation."""
        client = self.factory.organizations()
        proto: Any = self.call(
            lambda: client.get_organization(name=f"organizations/{org_id}", **self.gapic_kwargs()),
            what="organizations.get",
            target=crm_name(f"organizations/{org_id}"),
        )
        return Node(
            name=crm_name(f"organizations/{org_id}"),
            kind="organization",
            display_name=str(proto.display_name or ""),
        )

    def get_iam_policy(self, name: str) -> AllowPolicy:
        """The allow policy (version 3) of an organisation, folder or project."""
        short = short_name(name)
        kind = short.split("/", 1)[0]
        client = {
            "projects": self.factory.projects,
            "folders": self.factory.folders,
            "organizations": self.factory.organizations,
        }[kind]()
        request = {"resource": short, "options": {"requested_policy_version": 3}}
        return self.call(
            lambda: policy_from_proto(
                client.get_iam_policy(request=request, **self.gapic_kwargs())
            ),
            what=f"{kind}.getIamPolicy",
            target=name,
        )
