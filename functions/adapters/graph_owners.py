"""The owners half of the Directory port: GET owners, POST owners/$ref, DELETE owners/{id}/$ref.

A mixin of GraphDirectory (graph.py), which provides client() and _send().
"""

from __future__ import annotations

from functions.adapters.graph_errors import not_found_lag
from functions.adapters.graph_wire import GraphWire
from functions.core.record.errors import NotFound, PermanentError

DIRECTORY_OBJECTS = "https://graph.microsoft.com/v1.0/directoryObjects/"
ALREADY_AN_OWNER = "added object references already exist"


class GraphOwners(GraphWire):
    """Owners of an application (users or service principals)."""

    async def application_owner_ids(self, tenant_id: str, app_object_id: str) -> set[str]:
        """GET /applications/{id}/owners?$select=id, every page (Application.Read.All suffices)."""
        client = self.client(tenant_id)
        builder = client.applications.by_application_id(app_object_id).owners
        items = await self._list(
            client, "owners of application", app_object_id, builder, self._config(select=["id"])
        )
        return {str(item["id"]).lower() for item in items}

    async def add_owner(self, tenant_id: str, app_object_id: str, owner_id: str) -> None:
        """Graph answers 400 "One or more added object references already exist" for an owner that
        is one already: that is success. A 404 names either object; right after the app was made it
        may be the app (replication), so the app is read (waiting out the lag) and the call made
        once more before the owner is called missing."""
        from msgraph.generated.models.reference_create import ReferenceCreate

        client = self.client(tenant_id)
        app = client.applications.by_application_id(app_object_id)
        post = app.owners.ref.to_post_request_information(
            ReferenceCreate(odata_id=DIRECTORY_OBJECTS + owner_id)
        )
        for attempt in (1, 2):
            try:
                await self._send(client, "POST", "owner of application", app_object_id, post)
                return
            except PermanentError as error:
                if ALREADY_AN_OWNER in str(error):
                    return
                raise PermanentError(
                    f"{owner_id} cannot be an owner of application {app_object_id}: {error}", code=error.code
                ) from None
            except NotFound:
                if attempt == 2:
                    raise NotFound("user or service principal", owner_id) from None
            get = app.to_get_request_information(self._config(select=["id"]))
            await self._send(client, "GET", "application", app_object_id, get, not_found_lag)

    async def remove_owner(self, tenant_id: str, app_object_id: str, owner_id: str) -> None:
        """Graph answers 404 when the object is not an owner (or the app is gone): for a release,
        which only wants the owner gone, that is success. Removing the last owner is allowed for an
        application (unlike a group's last owner): docs/devstack-graph.md."""
        client = self.client(tenant_id)
        owner = client.applications.by_application_id(app_object_id).owners.by_directory_object_id(owner_id)
        request = owner.ref.to_delete_request_information()
        try:
            await self._send(client, "DELETE", "owner of application", app_object_id, request)
        except NotFound:
            return
