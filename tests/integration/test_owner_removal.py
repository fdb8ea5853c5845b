"""Removing an owner (and one certificate) of an application against the local tenant: the Graph adapter's
DELETE owners/{id}/$ref through msgraph-sdk, and the tenant's answers as Graph documents them
(docs/devstack-graph.md): Application.ReadWrite.OwnedBy suffices on an app the caller owns, to
remove another owner or itself, and the last owner may go; once it is not an owner any more, an
OwnedBy caller may no longer change the app."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from functions.core.ports import FederatedCredentialSpec, KeyCredentialSpec
from functions.core.record.errors import PermanentError
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters, app_spec
from tests.integration.tenant_graph_support import RawGraph, new_identity, self_signed
from tests.integration.test_owners import owners_of


@pytest.fixture(scope="module")
def admin(tenant: TenantProcess) -> RawGraph:
    """What a person does in the portal (adding owners needs Application.ReadWrite.All)."""
    client_id, secret, _ = new_identity(tenant, ["Application.ReadWrite.All", "Directory.Read.All"])
    return RawGraph(tenant, client_id, secret)


def add_owner(tenant: TenantProcess, admin: RawGraph, app_object_id: str, owner_id: str) -> None:
    ref = {"@odata.id": f"{tenant.graph_url}/v1.0/directoryObjects/{owner_id}"}
    status, _, body = admin.call("POST", f"/applications/{app_object_id}/owners/$ref", ref)
    assert status == 204, body


def test_owned_by_removes_another_owner_then_itself_and_then_may_not_change_the_app(
    tenant: TenantProcess, admin: RawGraph
) -> None:
    person = new_identity(tenant, [])[2]

    async def main() -> None:
        async with adapters(tenant) as a:  # the registrar: Application.ReadWrite.OwnedBy only
            registrar = await a.graph.registrar_principal_id(a.tenant_id)
            app = await a.graph.upsert_application(a.tenant_id, app_spec("release"))
            add_owner(tenant, admin, app.object_id, person)
            now = datetime.now(UTC)
            issued = await a.graph.add_password(
                a.tenant_id, app.object_id, "registrar-g1", now, now + timedelta(days=1)
            )

            await a.graph.remove_owner(a.tenant_id, app.object_id, person)
            await a.graph.remove_owner(a.tenant_id, app.object_id, person)  # 404: not one any more, done
            assert owners_of(tenant, app.object_id) == [registrar]
            add_owner(tenant, admin, app.object_id, person)

            await a.graph.remove_owner(a.tenant_id, app.object_id, registrar)  # itself
            assert owners_of(tenant, app.object_id) == [person]
            assert await a.graph.application_owner_ids(a.tenant_id, app.object_id) == {person}  # still reads
            with pytest.raises(PermanentError) as denied:  # OwnedBy: no longer its app to change
                await a.graph.remove_password(a.tenant_id, app.object_id, issued.key_id)
            assert denied.value.code == "Authorization_RequestDenied"
            with pytest.raises(PermanentError) as denied:
                await a.graph.remove_owner(a.tenant_id, app.object_id, person)
            assert denied.value.code == "Authorization_RequestDenied"
            assert owners_of(tenant, app.object_id) == [person]
            assert admin.call("DELETE", f"/applications/{app.object_id}")[0] == 204

    asyncio.run(main())


def test_the_last_owner_may_be_removed(tenant: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant) as a:
            registrar = await a.graph.registrar_principal_id(a.tenant_id)
            app = await a.graph.upsert_application(a.tenant_id, app_spec("last-owner"))
            assert owners_of(tenant, app.object_id) == [registrar]
            await a.graph.remove_owner(a.tenant_id, app.object_id, registrar)
            assert owners_of(tenant, app.object_id) == []
            # The app is intact, and readable: only nobody owns it now.
            assert await a.graph.application_by_app_id(a.tenant_id, app.app_id) is not None

    asyncio.run(main())


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        (["Application.Read.All"], 403),
        (["Application.ReadWrite.OwnedBy"], 403),  # on an app the caller does not own
        (["Application.ReadWrite.All"], 204),
        (["Directory.ReadWrite.All"], 204),
    ],
)
def test_removing_an_owner_takes_the_roles_graph_documents(
    tenant: TenantProcess, admin: RawGraph, roles: list[str], status: int
) -> None:
    client_id, secret, _ = new_identity(tenant, roles)
    caller = RawGraph(tenant, client_id, secret)
    person = new_identity(tenant, [])[2]
    made, _, app = admin.call("POST", "/applications", {"displayName": f"owners-{uuid.uuid4().hex[:10]}"})
    assert made == 201, app
    add_owner(tenant, admin, app["id"], person)

    answered, _, body = caller.call("DELETE", f"/applications/{app['id']}/owners/{person}/$ref")
    assert answered == status, body
    if status == 403:
        assert body["error"]["code"] == "Authorization_RequestDenied"
        assert person in owners_of(tenant, app["id"])
    else:
        assert person not in owners_of(tenant, app["id"])
        again, _, body = caller.call("DELETE", f"/applications/{app['id']}/owners/{person}/$ref")
        assert again == 404 and body["error"]["code"] == "Request_ResourceNotFound", body
    assert admin.call("DELETE", f"/applications/{app['id']}")[0] == 204


def test_one_certificate_is_removed_and_a_persons_certificate_is_kept_as_graph_holds_it(
    tenant: TenantProcess, admin: RawGraph
) -> None:
    """keyCredentials is replaced as a whole, and the tenant (as Graph) wants the `key` of each one
    kept: remove_key_credential reads them with their keys and PATCHes the others back."""
    _, registrars_der = self_signed("registrar-g1")
    _, persons_der = self_signed("uploaded by hand")

    async def main() -> None:
        async with adapters(tenant) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec("certificates"))
            now = datetime.now(UTC)
            mine = KeyCredentialSpec(
                str(uuid.uuid4()), "registrar-g1", registrars_der, now, now + timedelta(days=20)
            )
            await a.graph.set_key_credentials(a.tenant_id, app.object_id, [mine])
            theirs = {
                "keyId": str(uuid.uuid4()), "displayName": "uploaded by hand", "type": "AsymmetricX509Cert",
                "usage": "Verify", "key": base64.b64encode(persons_der).decode(),
            }  # fmt: skip
            held = [k for k in await a.graph.list_credentials(a.tenant_id, app.object_id) if k.kind == "key"]
            assert [k.key_id for k in held] == [mine.key_id]
            status, _, body = admin.call(  # the person adds theirs, keeping Registrar's (by its key)
                "PATCH",
                f"/applications/{app.object_id}",
                {"keyCredentials": [*keys_with_bytes(admin, app.object_id), theirs]},
            )
            assert status == 204, body

            await a.graph.remove_key_credential(a.tenant_id, app.object_id, mine.key_id)
            await a.graph.remove_key_credential(a.tenant_id, app.object_id, mine.key_id)  # gone: done

            left = keys_with_bytes(admin, app.object_id)
            assert [(k["keyId"], k["displayName"]) for k in left] == [(theirs["keyId"], "uploaded by hand")]
            assert base64.b64decode(left[0]["key"]) == persons_der
            assert admin.call("DELETE", f"/applications/{app.object_id}")[0] == 204

    asyncio.run(main())


def keys_with_bytes(caller: RawGraph, app_object_id: str) -> list[dict[str, str]]:
    status, _, body = caller.call("GET", f"/applications/{app_object_id}?$select=keyCredentials")
    assert status == 200, body
    return [
        {f: k[f] for f in ("keyId", "displayName", "type", "usage", "key")} for k in body["keyCredentials"]
    ]


def test_registrars_certificates_go_beside_a_persons_which_is_written_back_as_graph_holds_it(
    tenant: TenantProcess, admin: RawGraph
) -> None:
    """An adopted app: set_own_key_credentials writes Registrar's generation 1, then 2 beside it,
    then 2 alone (1 retired), and the person's certificate stays with its bytes; and only the read
    of one application with $select=keyCredentials returns a `key` (a list never does)."""
    _, g1_der = self_signed("registrar-g1")
    _, g2_der = self_signed("registrar-g2")
    _, persons_der = self_signed("uploaded by hand")

    async def main() -> None:
        async with adapters(tenant) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec("adopted certificates"))
            theirs = {
                "keyId": str(uuid.uuid4()), "displayName": "uploaded by hand", "type": "AsymmetricX509Cert",
                "usage": "Verify", "key": base64.b64encode(persons_der).decode(),
            }  # fmt: skip
            status, _, body = admin.call(
                "PATCH", f"/applications/{app.object_id}", {"keyCredentials": [theirs]}
            )
            assert status == 204, body
            now = datetime.now(UTC)
            g1, g2 = (
                KeyCredentialSpec(str(uuid.uuid4()), name, der, now, now + timedelta(days=20))
                for name, der in (("registrar-g1", g1_der), ("registrar-g2", g2_der))
            )
            own = {g1.key_id, g2.key_id}

            await a.graph.set_own_key_credentials(a.tenant_id, app.object_id, [g1], own)
            await a.graph.set_own_key_credentials(a.tenant_id, app.object_id, [g1], own)  # again: no change
            assert {k["keyId"] for k in keys_with_bytes(admin, app.object_id)} == {theirs["keyId"], g1.key_id}
            await a.graph.set_own_key_credentials(a.tenant_id, app.object_id, [g1, g2], own)  # a rotation
            await a.graph.set_own_key_credentials(a.tenant_id, app.object_id, [g2], own)  # 1 retired

            left = {k["keyId"]: k for k in keys_with_bytes(admin, app.object_id)}
            assert set(left) == {theirs["keyId"], g2.key_id}
            assert base64.b64decode(left[theirs["keyId"]]["key"]) == persons_der
            assert base64.b64decode(left[g2.key_id]["key"]) == g2_der

            status, _, listed = admin.call(
                "GET", f"/applications?$filter=id%20eq%20'{app.object_id}'&$select=id,keyCredentials"
            )
            assert status == 200, listed
            (item,) = listed["value"]
            assert len(item["keyCredentials"]) == 2 and all(
                k.get("key") is None for k in item["keyCredentials"]
            )
            status, _, whole = admin.call("GET", f"/applications/{app.object_id}")
            assert status == 200 and all(k.get("key") is None for k in whole["keyCredentials"]), whole
            assert admin.call("DELETE", f"/applications/{app.object_id}")[0] == 204

    asyncio.run(main())


def test_a_federated_credential_is_deleted_by_its_id_and_deleting_it_again_is_success(
    tenant: TenantProcess,
) -> None:
    """DELETE /applications/{id}/federatedIdentityCredentials/{id} through msgraph-sdk, with
    Application.ReadWrite.OwnedBy on an app Registrar owns; the other credential stays."""

    async def main() -> None:
        async with adapters(tenant) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec("federated"))
            made = [
                await a.graph.add_federated_credential(
                    a.tenant_id,
                    app.object_id,
                    FederatedCredentialSpec(
                        name,
                        "https://token.actions.githubusercontent.com",
                        f"repo:o/{name}",
                        ("api://AzureADTokenExchange",),
                    ),
                )
                for name in ("registrars", "the-person-s")
            ]
            await a.graph.remove_federated_credential(a.tenant_id, app.object_id, made[0])
            await a.graph.remove_federated_credential(a.tenant_id, app.object_id, made[0])  # gone: done
            left = [
                c.key_id
                for c in await a.graph.list_credentials(a.tenant_id, app.object_id)
                if c.kind == "federated"
            ]
            assert left == [made[1]]
            await a.graph.delete_application(a.tenant_id, app.object_id)
            await a.graph.remove_federated_credential(
                a.tenant_id, app.object_id, made[1]
            )  # the app gone: done

    asyncio.run(main())
