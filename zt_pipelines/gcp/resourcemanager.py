"""Resource Manager v3 adapter: organisations, folders, projects and their allow policies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from zt_pipelines.gcp._base import Adapter, Started, json_body
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
        return self.call(
            lambda: _project_node(
                client.get_project(name=f"projects/{project}", **self.gapic_kwargs())
            ),
            what="projects.get",
            target=crm_name(f"projects/{project}"),
        )

    def start_get_project(self, project: str) -> Started[Node] | None:
        """:meth:`get_project`'s first attempt, without waiting (``None``: use the blocking
        method)."""
        from google.cloud import resourcemanager_v3

        name = f"projects/{project}"
        return self.start(
            self.factory.projects(),
            "/google.cloud.resourcemanager.v3.Projects/GetProject",
            resourcemanager_v3.GetProjectRequest.pb()(name=name),
            resourcemanager_v3.Project.pb(),
            _project_node,
            what="projects.get",
            target=crm_name(name),
            routing=(("name", name),),
        )

    def get_folder(self, folder_id: str) -> Node:
        """The folder with its parent."""
        client = self.factory.folders()
        return self.call(
            lambda: _folder_node(
                folder_id, client.get_folder(name=f"folders/{folder_id}", **self.gapic_kwargs())
            ),
            what="folders.get",
            target=crm_name(f"folders/{folder_id}"),
        )

    def start_get_folder(self, folder_id: str) -> Started[Node] | None:
        """:meth:`get_folder`'s first attempt, without waiting (``None``: use the blocking
        method)."""
        from google.cloud import resourcemanager_v3

        name = f"folders/{folder_id}"
        return self.start(
            self.factory.folders(),
            "/google.cloud.resourcemanager.v3.Folders/GetFolder",
            resourcemanager_v3.GetFolderRequest.pb()(name=name),
            resourcemanager_v3.Folder.pb(),
            lambda proto: _folder_node(folder_id, proto),
            what="folders.get",
            target=crm_name(name),
            routing=(("name", name),),
        )

    def get_ancestry(self, project: str) -> tuple[str, ...]:
        """Full names of the project (its id) and its ancestors, bottom to top: Resource
        Manager v1 ``projects.getAncestry`` (REST; v3 has no such method), which needs only
        ``resourcemanager.projects.get``.

        One attempt, no retries: a live fetch uses the answer only to ask the ancestors' reads
        a round trip earlier than following parents one by one allows (their own fresh reads
        still decide), so it never waits to retry it.
        """
        session, base = self.factory.rest_session("cloudresourcemanager")
        url = f"{base}/v1/projects/{project}:getAncestry"

        def run() -> tuple[str, ...]:
            body = json_body(session.post(url, json={}, timeout=self.timeout), "Resource Manager")
            chain = []
            for entry in body.get("ancestor") or ():
                ident = entry.get("resourceId") if isinstance(entry, dict) else None
                if not isinstance(ident, dict):
                    raise ValueError("ancestor without a resourceId")
                kind = _PLURAL.get(str(ident.get("type", "")))
                if kind is None or not ident.get("id"):
                    raise ValueError(f"ancestor of unknown type or without id: {ident!r}")
                chain.append(crm_name(f"{kind}/{ident['id']}"))
            if not chain or not chain[0].startswith(crm_name("projects/")):
                raise ValueError(f"the ancestry of {project} does not start with a project")
            return tuple(chain)

        once = replace(self.retry, max_attempts=1)
        return once.call(run, what="projects.getAncestry", target=crm_name(f"projects/{project}"))

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
        client = self._client_of(kind)
        request = {"resource": short, "options": {"requested_policy_version": 3}}
        return self.call(
            lambda: policy_from_proto(
                client.get_iam_policy(request=request, **self.gapic_kwargs())
            ),
            what=f"{kind}.getIamPolicy",
            target=name,
        )

    def start_get_iam_policy(self, name: str) -> Started[AllowPolicy] | None:
        """:meth:`get_iam_policy`'s first attempt, without waiting (``None``: use the blocking
        method)."""
        from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2

        short = short_name(name)
        kind = short.split("/", 1)[0]
        request = iam_policy_pb2.GetIamPolicyRequest(
            resource=short, options=options_pb2.GetPolicyOptions(requested_policy_version=3)
        )
        service = {"projects": "Projects", "folders": "Folders", "organizations": "Organizations"}
        return self.start(
            self._client_of(kind),
            f"/google.cloud.resourcemanager.v3.{service[kind]}/GetIamPolicy",
            request,
            policy_pb2.Policy,
            policy_from_proto,
            what=f"{kind}.getIamPolicy",
            target=name,
            routing=(("resource", short),),
        )

    def _client_of(self, kind: str) -> Any:
        return {
            "projects": self.factory.projects,
            "folders": self.factory.folders,
            "organizations": self.factory.organizations,
        }[kind]()


_PLURAL = {"project": "projects", "folder": "folders", "organization": "organizations"}


def _project_node(proto: Any) -> Node:
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


def _folder_node(folder_id: str, proto: Any) -> Node:
    return Node(
        name=crm_name(f"folders/{folder_id}"),
        kind="folder",
        parent=crm_name(proto.parent) if proto.parent else None,
        display_name=str(proto.display_name or ""),
    )
