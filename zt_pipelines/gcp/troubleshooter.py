"""Policy Troubleshooter adapter: Google's answer for one (principal, resource, permission).

Used as a second opinion on a single tuple and as the baseline in ``bench_live`` — never in
the fetch plan, since it costs one call per tuple.
"""

from __future__ import annotations

from typing import Any

from zt_pipelines.gcp._base import Adapter


class TroubleshooterAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.AccessTroubleshooter`."""

    def troubleshoot(self, principal: str, resource: str, permission: str) -> str:
        """``GRANTED``, ``NOT_GRANTED``, ``UNKNOWN_CONDITIONAL`` or ``UNKNOWN_INFO_DENIED``."""
        client = self.factory.troubleshooter()
        email = principal.split(":", 1)[1] if ":" in principal else principal
        request = {
            "access_tuple": {
                "principal": email,
                "full_resource_name": resource,
                "permission": permission,
            }
        }

        def run() -> str:
            response: Any = client.troubleshoot_iam_policy(request=request, **self.gapic_kwargs())
            return str(getattr(response.access, "name", response.access))

        return self.call(run, what="troubleshootIamPolicy", target=f"{resource} {permission}")
