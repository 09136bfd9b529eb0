"""Log Router adapter (Cloud Logging ``ConfigServiceV2``, gRPC): the sinks of an organisation,
folder or project, and a log view's configuration — what ``usage --logs-from`` needs to prove
which projects' audit logs a log view holds. Reads only."""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter
from zt_pipelines.monitor.coverage import SinkInfo


class LogRouterAdapter(Adapter):
    """Reads Log Router sinks and log views."""

    def _config(self) -> Any:
        from google.cloud.logging_v2.services.config_service_v2 import ConfigServiceV2Client

        return self.factory._get(
            "logging-config", lambda: self.factory._gapic(ConfigServiceV2Client)
        )

    def list_sinks(self, parent: str) -> list[SinkInfo]:
        """Every sink of ``parent`` (``organizations/O``, ``folders/F``, ``projects/P``)."""
        client = self._config()

        def run() -> list[SinkInfo]:
            pager = client.list_sinks(request={"parent": parent}, **self.gapic_kwargs())
            return [
                SinkInfo(
                    parent=parent,
                    name=str(sink.name),
                    destination=str(sink.destination),
                    filter=str(sink.filter),
                    include_children=bool(sink.include_children),
                    disabled=bool(sink.disabled),
                    exclusions=tuple(str(e.filter) for e in sink.exclusions if not e.disabled),
                )
                for sink in pager
            ]

        return self.call(run, what="sinks.list", target=f"//logging.googleapis.com/{parent}")

    def view_filter(self, view: str) -> str:
        """The filter of the log view ``view`` (empty: the whole bucket)."""
        client = self._config()
        found = self.call(
            lambda: client.get_view(request={"name": view}, **self.gapic_kwargs()),
            what="views.get",
            target=f"//logging.googleapis.com/{view}",
        )
        return str(found.filter)
