"""Owners against the local tenant, through msgraph-sdk: the adapter's POST owners/$ref, and the
workflow's owners step with the Tables store on Azurite.

Graph documents that Application.ReadWrite.OwnedBy is not enough to add another owner: it takes
Application.ReadWrite.All with Directory.Read.All, or Directory.ReadWrite.All. So the tenant refuses
the bootstrap registrar identity, and these tests provision as an identity that holds
Application.ReadWrite.All and Directory.Read.All as well.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.tables import StorageConfig, TableRegistrationStore, ensure_tables, table_service
from functions.core.credentials.job_ports import RegistrationJobPorts
from functions.core.provisioning.owners import add_owners
from functions.core.provisioning.workflow import Provisioner, WorkflowSettings
from functions.core.record.errors import NotFound, PermanentError
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import CredentialSpec, CredentialType, RegistrationStatus
from functions.core.record.registration import ProvisioningPlan, Registration
from functions.triggers.http_common import registration_view
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import Adapters, adapters, app_spec
from tests.integration.tenant_graph_support import RawGraph, new_identity


@dataclass
class Identity:
    """The tenant's endpoints with another client: what adapters() reads from a TenantProcess."""

    tenant: TenantProcess
    client_id: str
    client_secret: str
    service_principal_id: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tenant, name)


@pytest.fixture(scope="module")
def full(tenant: TenantProcess) -> Identity:
    roles = ["Application.ReadWrite.All", "Directory.Read.All", "AppRoleAssignment.ReadWrite.All"]
    return Identity(tenant, *new_identity(tenant, roles))


def owners_of(tenant: TenantProcess, app_object_id: str) -> list[str]:
    status, _, body = RawGraph(tenant).call("GET", f"/applications/{app_object_id}/owners")
    assert status == 200, body
    return [o["id"] for o in body["value"]]


def test_add_owner_is_idempotent_and_names_what_is_wrong(tenant: TenantProcess, full: Identity) -> None:
    other_sp = new_identity(tenant, [])[2]

    async def main() -> None:
        async with adapters(full) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec("owners"))
            await a.graph.add_owner(a.tenant_id, app.object_id, other_sp)
            await a.graph.add_owner(a.tenant_id, app.object_id, other_sp)  # 400 "already exist": done
            assert owners_of(tenant, app.object_id) == [full.service_principal_id, other_sp]

            unknown = str(uuid.uuid4())
            with pytest.raises(NotFound) as missing:
                await a.graph.add_owner(a.tenant_id, app.object_id, unknown)
            assert missing.value.key == unknown
            with pytest.raises(PermanentError) as wrong:
                await a.graph.add_owner(a.tenant_id, app.object_id, app.object_id)
            assert wrong.value.code == "Request_BadRequest" and "Unsupported directory object class" in str(
                wrong.value
            )
            assert owners_of(tenant, app.object_id) == [full.service_principal_id, other_sp]
            await a.graph.delete_application(a.tenant_id, app.object_id)

    asyncio.run(main())


def test_owned_by_alone_may_not_add_an_owner(tenant: TenantProcess) -> None:
    other_sp = new_identity(tenant, [])[2]

    async def main() -> None:
        async with adapters(tenant) as a:  # the bootstrap registrar: Application.ReadWrite.OwnedBy
            app = await a.graph.upsert_application(a.tenant_id, app_spec("owned"))
            with pytest.raises(PermanentError) as denied:
                await a.graph.add_owner(a.tenant_id, app.object_id, other_sp)
            assert denied.value.code == "Authorization_RequestDenied"
            assert other_sp not in owners_of(tenant, app.object_id)
            await a.graph.delete_application(a.tenant_id, app.object_id)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("roles", "allowed"),
    [
        (["Application.ReadWrite.All"], False),  # the directory read is missing
        (["Directory.Read.All"], False),
        (["Application.ReadWrite.OwnedBy", "Directory.Read.All"], False),  # not for another owner
        (["Application.ReadWrite.All", "Directory.Read.All"], True),
        (["Directory.ReadWrite.All"], True),
    ],
)
def test_adding_an_owner_takes_the_roles_graph_documents(
    tenant: TenantProcess, roles: list[str], allowed: bool
) -> None:
    client_id, secret, _ = new_identity(tenant, roles)
    other_sp = new_identity(tenant, [])[2]
    caller = RawGraph(tenant, client_id, secret)
    # A caller that may create apps adds the owner to one of its own (so OwnedBy is refused for the
    # owner it adds, not for the app it touches); the others to one the bootstrap identity made.
    maker = (
        caller
        if {"Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"} & set(roles)
        else RawGraph(tenant)
    )
    status, _, app = maker.call("POST", "/applications", {"displayName": f"owners-{uuid.uuid4().hex[:10]}"})
    assert status == 201, app

    ref = {"@odata.id": f"{tenant.graph_url}/v1.0/directoryObjects/{other_sp}"}
    status, _, body = caller.call("POST", f"/applications/{app['id']}/owners/$ref", ref)
    if allowed:
        assert status == 204, body
        assert other_sp in owners_of(tenant, app["id"])
    else:
        assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied", body
        assert other_sp not in owners_of(tenant, app["id"])
    assert maker.call("DELETE", f"/applications/{app['id']}")[0] == 204


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def new_record(tenant_id: str, owners: tuple[str, ...]) -> Registration:
    reg_id = f"reg-{uuid.uuid4().hex[:24]}"
    now = datetime.now(UTC)
    plan = ProvisioningPlan(
        display_name=f"Owners {reg_id}",
        credential=CredentialSpec(CredentialType.SECRET, timedelta(days=30)),
        owners=owners,
    )
    return Registration(
        id=reg_id,
        request_id=f"INC-{reg_id}",
        fingerprint="f" * 64,
        profile_id="custom",
        tenant_id=tenant_id,
        status=RegistrationStatus.ACCEPTED,
        created_at=now,
        updated_at=now,
        plan=plan,
    )


def job_ports(a: Adapters, store: TableRegistrationStore) -> RegistrationJobPorts:
    return RegistrationJobPorts(store=store, directory=a.graph, vault=a.vault, probe=a.probe, clock=Clock())


async def provision(a: Adapters, store: TableRegistrationStore, record: Registration) -> Registration:
    await store.create(record)
    provisioner = Provisioner(
        job_ports(a, store), settings=WorkflowSettings(verify_first_delay=timedelta(milliseconds=100))
    )
    return await provisioner.run(record.id)


def run_with_store(azurite: str, body: Any) -> Any:
    table = "Owners" + uuid.uuid4().hex[:10]

    async def main() -> Any:
        async with table_service(StorageConfig(connection_string=azurite)) as service:
            await ensure_tables(service, (table,))
            return await body(TableRegistrationStore(service, table))

    return asyncio.run(main())


def test_provisioning_adds_the_owners_and_a_rerun_changes_nothing(
    tenant: TenantProcess, full: Identity, azurite: str
) -> None:
    owner = new_identity(tenant, [])[2]

    async def body(store: TableRegistrationStore) -> tuple[Registration, Registration]:
        async with adapters(full) as a, adapters(tenant) as base:
            a.vault = base.vault  # Key Vault access is the bootstrap identity's (RBAC)
            record = await provision(a, store, new_record(a.tenant_id, (owner,)))
            again = await Provisioner(job_ports(a, store)).run(record.id)
            # A re-run of the step itself (a crash before its result was saved): Graph's
            # "already exist" counts as added.
            await store.replace(replace(again, owners_added=()))
            keeper = await RecordKeeper.claim(
                store, Clock(), record.id, owner="t", lease_for=timedelta(minutes=1), wait=timedelta(0)
            )
            await add_owners(keeper, a.graph, Clock())
            return record, await keeper.release()

    record, rerun = run_with_store(azurite, body)
    assert record.status is RegistrationStatus.ACTIVE, record.last_error
    assert record.app_object_id is not None
    assert owners_of(tenant, record.app_object_id) == [full.service_principal_id, owner]
    assert registration_view(record)["owners"] == [{"id": owner, "status": "added"}]
    assert rerun.owners_added == (owner,)
    assert owners_of(tenant, record.app_object_id) == [full.service_principal_id, owner]


def test_an_unknown_owner_fails_the_registration_with_the_reason_and_removes_the_app(
    tenant: TenantProcess, full: Identity, azurite: str
) -> None:
    unknown = str(uuid.uuid4())

    async def body(store: TableRegistrationStore) -> Registration:
        async with adapters(full) as a, adapters(tenant) as base:
            a.vault = base.vault
            return await provision(a, store, new_record(a.tenant_id, (unknown,)))

    record = run_with_store(azurite, body)
    assert record.status is RegistrationStatus.FAILED
    error = record.last_error
    assert error is not None and error.step == "owners"
    assert [(p.field, unknown in p.reason) for p in error.problems] == [("owners[0]", True)]
    assert record.app_object_id is None
    made = next(e for e in record.history if e.step == "app").detail or ""
    status, _, _ = RawGraph(tenant).call("GET", f"/applications(appId='{made.removeprefix('appId ')}')")
    assert status == 404


def test_a_registrar_with_owned_by_only_turns_active_with_owners_as_a_manual_step(
    tenant: TenantProcess, azurite: str
) -> None:
    owner = new_identity(tenant, [])[2]

    async def body(store: TableRegistrationStore) -> Registration:
        async with adapters(tenant) as a:
            return await provision(a, store, new_record(a.tenant_id, (owner,)))

    record = run_with_store(azurite, body)
    assert record.status is RegistrationStatus.ACTIVE, record.last_error
    assert record.app_object_id is not None and owner not in owners_of(tenant, record.app_object_id)
    view = registration_view(record)
    assert view["owners"] == [{"id": owner, "status": "manual"}]
    assert owner in view["manualSteps"][-1] and "Application.ReadWrite.All" in view["manualSteps"][-1]
