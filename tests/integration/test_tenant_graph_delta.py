"""Delta queries and deleted items of the local tenant, through msgraph-sdk (issue 15, section 3).

Each test works in a tenant of its own (POST /_sim/tenants), so no other test's changes show."""

from __future__ import annotations

from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.applications.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.service_principals.delta.delta_request_builder import (
    DeltaRequestBuilder as SpDeltaRequestBuilder,
)

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_graph_support import odata_error, unique
from tests.integration.test_tenant_brownfield import admin_client, registrar_client

pytestmark = pytest.mark.asyncio
DELTA_PAGE = 200  # what the local tenant pages delta at (docs/devstack-graph.md)


async def delta_round(builder: Any, first: Any) -> tuple[list[Any], str, int]:
    """(objects, deltaLink, pages) of one round: nextLinks followed until the deltaLink."""
    page = await first
    pages, found = 1, list(page.value or [])
    while page.odata_next_link:
        assert page.odata_delta_link is None  # a page has one or the other
        assert len(page.value or []) == DELTA_PAGE
        page = await builder.with_url(page.odata_next_link).get()
        pages += 1
        found += page.value or []
    assert page.odata_delta_link
    return found, page.odata_delta_link, pages


def selected(*names: str) -> RequestConfiguration[Any]:
    return RequestConfiguration(
        query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=list(names))
    )


async def test_application_delta_rounds(tenant: TenantProcess) -> None:
    identity = tenant.admin("POST", "tenants", {})
    tenant.admin("POST", "brownfield", {"tenantId": identity["tenantId"], "count": 450})
    registrar, admin = registrar_client(identity), admin_client(identity)
    delta = registrar.applications.delta

    apps, link, pages = await delta_round(delta, delta.get(selected("displayName", "passwordCredentials")))
    assert len(apps) == 452 and pages == 3  # 450 hand-made + Registrar's + the administrator's
    assert len({a.id for a in apps}) == 452
    assert all(a.app_id is None and a.id for a in apps)  # $select holds; id always comes
    assert all(a.display_name for a in apps)

    # Nothing changed: the deltaLink answers no objects and a new deltaLink.
    unchanged, link, pages = await delta_round(delta, delta.with_url(link).get())
    assert unchanged == [] and pages == 1

    made = await admin.applications.post(Application(display_name=unique("made")))
    changed, deleted = apps[10], apps[11]
    await admin.applications.by_application_id(changed.id).patch(Application(notes="edited"))
    await admin.applications.by_application_id(deleted.id).delete()

    changes, link, _ = await delta_round(delta, delta.with_url(link).get())
    by_id = {a.id: a for a in changes}
    assert set(by_id) == {made.id, changed.id, deleted.id}
    assert by_id[made.id].display_name == made.display_name
    assert by_id[changed.id].display_name == changed.display_name  # the $select of the first request
    assert by_id[deleted.id].additional_data["@removed"] == {"reason": "changed"}  # in deleted items
    assert "@removed" not in by_id[made.id].additional_data

    # Purged for good: "deleted".
    await admin.directory.deleted_items.by_directory_object_id(deleted.id).delete()
    changes, link, _ = await delta_round(delta, delta.with_url(link).get())
    assert [(a.id, a.additional_data["@removed"]) for a in changes] == [(deleted.id, {"reason": "deleted"})]


async def test_delta_from_now_and_expired_tokens(tenant_admin: TenantProcess) -> None:
    identity = tenant_admin.admin("POST", "tenants", {})
    tenant_admin.admin("POST", "brownfield", {"tenantId": identity["tenantId"], "count": 5})
    registrar, admin = registrar_client(identity), admin_client(identity)
    delta = registrar.applications.delta

    # $deltatoken=latest: no objects, a deltaLink from now.
    latest = await delta.with_url(f"{identity['graphUrl']}/applications/delta?$deltatoken=latest").get()
    assert latest.value == [] and latest.odata_delta_link and not latest.odata_next_link
    made = await admin.applications.post(Application(display_name=unique("after")))
    changes, link, _ = await delta_round(delta, delta.with_url(latest.odata_delta_link).get())
    assert [a.id for a in changes] == [made.id]

    # A delta token past its lifetime (7 days in Graph; 0 s here) must be synchronised again.
    tenant_admin.configure(extra={"deltaTokenLifetimeS": 0})
    with pytest.raises(ODataError) as caught:
        await delta.with_url(link).get()
    assert odata_error(caught) == (
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    )


async def test_service_principal_delta(tenant: TenantProcess) -> None:
    identity = tenant.admin("POST", "tenants", {})
    tenant.admin(
        "POST", "brownfield", {"tenantId": identity["tenantId"], "count": 30, "servicePrincipals": 20}
    )
    registrar, admin = registrar_client(identity), admin_client(identity)
    delta = registrar.service_principals.delta
    config = RequestConfiguration(
        query_parameters=SpDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=["appId", "passwordCredentials", "keyCredentials"]
        )
    )
    sps, link, _ = await delta_round(delta, delta.get(config))
    assert len(sps) == 20 + 2 + 5  # hand-made, Registrar's and the admin's, Microsoft's five
    assert any(sp.password_credentials for sp in sps)  # service-principal-level passwords
    gone = next(sp for sp in sps if sp.password_credentials)
    await admin.service_principals.by_service_principal_id(gone.id).delete()
    changes, _, _ = await delta_round(delta, delta.with_url(link).get())
    assert [(sp.id, sp.additional_data["@removed"]["reason"]) for sp in changes] == [(gone.id, "changed")]


async def test_deleted_items_restore_purge_and_unique_name(tenant_admin: TenantProcess) -> None:
    identity = tenant_admin.admin("POST", "tenants", {})
    admin = admin_client(identity)
    name = unique("kept-name")
    app = await admin.applications.post(Application(display_name="to delete", unique_name=name))
    sp_body = {"appId": app.app_id}
    from msgraph.generated.models.service_principal import ServicePrincipal

    sp = await admin.service_principals.post(ServicePrincipal(app_id=sp_body["appId"]))
    await admin.applications.by_application_id(app.id).delete()

    with pytest.raises(ODataError) as caught:
        await admin.applications.by_application_id(app.id).get()
    assert odata_error(caught)[0] == 404
    listed = await admin.directory.deleted_items.graph_application.get()
    assert [a.id for a in listed.value or []] == [app.id]
    assert listed.value[0].deleted_date_time is not None
    deleted_sps = await admin.directory.deleted_items.graph_service_principal.get()
    assert [s.id for s in deleted_sps.value or []] == [sp.id]  # its service principal went along

    # The deleted app keeps its uniqueName taken.
    with pytest.raises(ODataError) as caught:
        await admin.applications.post(Application(display_name="again", unique_name=name))
    assert odata_error(caught)[0] == 409

    restored = await admin.directory.deleted_items.by_directory_object_id(app.id).restore.post()
    assert restored.id == app.id
    again = await admin.applications.by_application_id(app.id).get()
    assert again.unique_name == name and again.deleted_date_time is None
    with pytest.raises(ODataError) as caught:  # restoring an app does not restore its service principal
        await admin.service_principals.by_service_principal_id(sp.id).get()
    assert odata_error(caught)[0] == 404

    # Deleted for good: the name is free again.
    await admin.applications.by_application_id(app.id).delete()
    await admin.directory.deleted_items.by_directory_object_id(app.id).delete()
    with pytest.raises(ODataError) as caught:
        await admin.directory.deleted_items.by_directory_object_id(app.id).get()
    assert odata_error(caught)[0] == 404
    await admin.applications.post(Application(display_name="again", unique_name=name))

    # After the retention (30 days in Entra; 0 s here) deleted items are gone for good, and the
    # names they held are free.
    other = unique("retained-name")
    held = await admin.applications.post(Application(display_name="held", unique_name=other))
    await admin.applications.by_application_id(held.id).delete()
    tenant_admin.configure(extra={"deletedItemsRetentionS": 0})
    await admin.applications.post(Application(display_name="after 30 days", unique_name=other))
    listed = await admin.directory.deleted_items.graph_service_principal.get()
    assert listed.value == []


async def test_registrar_cannot_restore_or_purge_an_app_it_does_not_own(tenant: TenantProcess) -> None:
    identity = tenant.admin("POST", "tenants", {})
    admin, registrar = admin_client(identity), registrar_client(identity)
    app = await admin.applications.post(Application(display_name=unique("not-mine")))
    await admin.applications.by_application_id(app.id).delete()
    for attempt in (
        registrar.directory.deleted_items.by_directory_object_id(app.id).restore.post(),
        registrar.directory.deleted_items.by_directory_object_id(app.id).delete(),
    ):
        with pytest.raises(ODataError) as caught:
            await attempt
        assert odata_error(caught)[:2] == (403, "Authorization_RequestDenied")


async def test_restart_keeps_deleted_items_and_the_administrator_but_not_delta_tokens(
    make_tenant_process: Any, tmp_path: Any
) -> None:
    process = make_tenant_process(state_dir=tmp_path / "state")
    admin = admin_client(process.info)
    app = await admin.applications.post(Application(display_name=unique("kept")))
    await admin.applications.by_application_id(app.id).delete()
    delta = registrar_client(process.info).applications.delta
    _, link, _ = await delta_round(delta, delta.get())
    before = dict(process.info)

    process.restart()

    assert (process["adminClientId"], process["adminClientSecret"]) == (
        before["adminClientId"],
        before["adminClientSecret"],
    )
    admin = admin_client(process.info)  # the same secret still gets a token
    listed = await admin.directory.deleted_items.graph_application.get()
    assert [a.id for a in listed.value or []] == [app.id]
    link = link.replace(before["graphUrl"], process["graphUrl"])  # a new port
    with pytest.raises(ODataError) as caught:
        await registrar_client(process.info).applications.delta.with_url(link).get()
    assert odata_error(caught)[:2] == (400, "syncStateNotFound")
