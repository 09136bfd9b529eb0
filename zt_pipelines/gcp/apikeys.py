"""API Keys adapter (v2, REST): which API keys of a project are bound to a service account.

A key bound to a service account (``serviceAccountEmail``) authenticates its requests as that
account (Vertex AI accepts them): a long-lived credential like a user-managed key. The Python
client (``google-cloud-api-keys``) has no field for the binding, so the list is read over the
REST API with google-auth's ``AuthorizedSession`` (the same credentials and endpoint switch as
every other client).
"""

from __future__ import annotations

from zt_pipelines.gcp._base import Adapter, json_body
from zt_pipelines.resources import APIKEYS

#: the API's largest page (``pageSize`` is capped at 300)
_PAGE = 300


class ApiKeysAdapter(Adapter):
    """Implements :class:`~zt_pipelines.gcp.interface.ApiKeysReader`."""

    def list_bound_keys(self, project: str) -> dict[str, tuple[str, ...]]:
        """Service-account email (lower case) → uids of the keys of ``project`` bound to it.

        One listing per project (``projects.locations.keys.list`` at ``global``, every page);
        deleted keys are not listed (``showDeleted`` false). A key without a binding is not a
        credential of any account and is skipped.
        """
        session, base = self.factory.rest_session("apikeys")
        url = f"{base}/v2/projects/{project}/locations/global/keys"

        def run() -> dict[str, tuple[str, ...]]:
            found: dict[str, list[str]] = {}
            token = ""
            for _ in range(10_000):  # a server that never stops paging is an error, not a hang
                params = {"pageSize": str(self.page(_PAGE))}
                if token:
                    params["pageToken"] = token
                body = json_body(session.get(url, params=params, timeout=self.timeout), "API keys")
                for key in body.get("keys", []) or []:
                    if not isinstance(key, dict):
                        raise ValueError("API key entry is not a JSON object")
                    email = key.get("serviceAccountEmail")
                    if not email:
                        continue
                    ident = key.get("uid") or str(key.get("name", "")).rsplit("/", 1)[-1]
                    if not ident:
                        raise ValueError("API key without uid or name")
                    found.setdefault(str(email).lower(), []).append(str(ident))
                token = str(body.get("nextPageToken") or "")
                if not token:
                    return {email: tuple(sorted(ids)) for email, ids in found.items()}
            raise ValueError("API keys listing never ended")

        return self.call(
            run,
            what="apikeys.keys.list",
            target=f"{APIKEYS}projects/{project}/locations/global/keys",
        )
