"""The tenant's default app management policy on the local tenant: read and changed through
msgraph-sdk as in Graph, enforced on new passwords and certificates, and read by the registrar's
Graph adapter (cached, with a fallback without Policy.Read.All). Also addPassword is never resent
by the adapter after a 504 that came after Entra committed it, and a policy lowered while the
adapter had the old one cached delays a new credential (TransientError, the policy read again)
instead of failing it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.tenant_app_management_policy import TenantAppManagementPolicy

from functions.bootstrap import SystemClock
from functions.core.credentials.issuer import remove_other_named_passwords
from functions.core.ports import KeyCredentialSpec
from functions.core.provisioning.workflow import WorkflowSettings
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.models import CredentialType, RegistrationStatus
from functions.core.record.registration import Registration
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters, app_spec, record_requests
from tests.integration.tenant_clients import add_password, graph_client, new_app_with_principal
from tests.integration.tenant_graph_support import self_signed
from tests.integration.test_tenant_graph_credentials import key_credential
from tests.unit.provisioning_world import World

POLICY = {
    "isEnabled": True,
    "applicationRestrictions": {
        "passwordCredentials": [{"restrictionType": "passwordLifetime", "maxLifetime": "P30D"}],
        "keyCredentials": [{"restrictionType": "asymmetricKeyLifetime", "maxLifetime": "P60D"}],
    },
}


def fresh_tenant(tenant: TenantProcess, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tenant of its own (a policy must not leak into other tests), with `policy` set by /_sim."""
    created = tenant.create_tenant()
    if policy is not None:
        tenant.admin("PATCH", f"tenants/{created['tenantId']}/appManagementPolicy", policy)
    return created


def as_adapter_source(created: dict[str, Any]) -> Any:
    return SimpleNamespace(
        authority=created["authority"],
        tenant_id=created["tenantId"],
        client_id=created["clientId"],
        client_secret=created["clientSecret"],
        graph_url=created["graphUrl"],
        vault_url=created["vaultUrl"],
    )


def password_body(days: int) -> AddPasswordPostRequestBody:
    start = datetime.now(UTC)
    return AddPasswordPostRequestBody(
        password_credential=PasswordCredential(
            display_name="p", start_date_time=start, end_date_time=start + timedelta(days=days)
        )
    )


def test_the_policy_is_read_and_patched_as_in_graph(tenant: TenantProcess) -> None:
    created = fresh_tenant(tenant)

    async def main() -> None:
        async with graph_client(created) as client:
            policy = await client.policies.default_app_management_policy.get()
            assert policy is not None and policy.is_enabled is False
            assert policy.id == "00000000-0000-0000-0000-000000000000"
            with pytest.raises(ODataError) as denied:  # Policy.Read.All does not write
                await client.policies.default_app_management_policy.patch(
                    TenantAppManagementPolicy(is_enabled=True)
                )
            assert denied.value.response_status_code == 403
            assert denied.value.error is not None and denied.value.error.code == "Authorization_RequestDenied"

            app, _ = await new_app_with_principal(client, "no-policy-role")
            secret = await add_password(client, app)
            no_roles = {**created, "clientId": app.app_id, "clientSecret": secret.secret_text}
            async with graph_client(no_roles) as stranger:
                with pytest.raises(ODataError) as forbidden:
                    await stranger.policies.default_app_management_policy.get()
                assert forbidden.value.response_status_code == 403

        tenant.admin("PATCH", f"tenants/{created['tenantId']}/appManagementPolicy", POLICY)
        async with graph_client(created) as client:
            policy = await client.policies.default_app_management_policy.get()
            assert policy is not None and policy.is_enabled is True
            restrictions = policy.application_restrictions
            assert restrictions is not None and restrictions.password_credentials is not None
            (password_rule,) = restrictions.password_credentials
            assert password_rule.max_lifetime == timedelta(days=30)
            assert restrictions.key_credentials is not None
            assert restrictions.key_credentials[0].max_lifetime == timedelta(days=60)

    asyncio.run(main())
    refused = tenant.admin("GET", f"tenants/{created['tenantId']}/appManagementPolicy")
    assert refused["applicationRestrictions"]["passwordCredentials"][0]["maxLifetime"] == "P30D"


def test_new_credentials_longer_than_the_policy_allows_are_refused(tenant: TenantProcess) -> None:
    created = fresh_tenant(tenant, POLICY)

    async def main() -> None:
        async with graph_client(created) as client:
            app = await client.applications.post(
                Application(display_name="capped", sign_in_audience="AzureADMyOrg")
            )
            assert app is not None and app.id is not None
            item = client.applications.by_application_id(app.id)
            with pytest.raises(ODataError) as refused:
                await item.add_password.post(password_body(90))
            error = refused.value.error
            assert refused.value.response_status_code == 400 and error is not None
            assert error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
            assert error.message is not None and error.message.startswith(
                "Credential lifetime exceeds the max value"
            )
            assert error.details is not None and error.details[0].target == "EndDate"
            assert await item.add_password.post(password_body(30)) is not None

            _, long_der = self_signed("long", days=90)
            with pytest.raises(ODataError) as refused_key:
                await item.patch(Application(key_credentials=[key_credential(long_der)]))
            assert refused_key.value.error is not None
            assert refused_key.value.error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
            _, short_der = self_signed("short", days=50)
            await item.patch(Application(key_credentials=[key_credential(short_der)]))
            kept = await item.get()
            assert kept is not None and kept.key_credentials is not None and len(kept.key_credentials) == 1

    asyncio.run(main())


def test_restrictions_spare_apps_created_before_their_date_and_a_disabled_policy(
    tenant: TenantProcess,
) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    dated = {
        "isEnabled": True,
        "applicationRestrictions": {
            "passwordCredentials": [
                {
                    "restrictionType": "passwordLifetime",
                    "maxLifetime": "P30D",
                    "restrictForAppsCreatedAfterDateTime": later,
                }
            ]
        },
    }
    created = fresh_tenant(tenant, dated)

    async def main() -> None:
        async with graph_client(created) as client:
            app = await client.applications.post(
                Application(display_name="older", sign_in_audience="AzureADMyOrg")
            )
            assert app is not None and app.id is not None
            item = client.applications.by_application_id(app.id)
            assert await item.add_password.post(password_body(90)) is not None  # created before the date
            tenant.admin("PATCH", f"tenants/{created['tenantId']}/appManagementPolicy", POLICY)
            with pytest.raises(ODataError):
                await item.add_password.post(password_body(90))
            tenant.admin("PATCH", f"tenants/{created['tenantId']}/appManagementPolicy", {"isEnabled": False})
            assert await item.add_password.post(password_body(90)) is not None

    asyncio.run(main())


def test_the_adapter_reads_the_limit_once_per_tenant(tenant: TenantProcess) -> None:
    created = fresh_tenant(tenant, POLICY)

    async def main() -> None:
        async with adapters(as_adapter_source(created)) as a:
            sent = record_requests(a.graph, a.tenant_id)
            assert await a.graph.credential_lifetime_limit(a.tenant_id, CredentialType.SECRET) == timedelta(
                days=30
            )
            assert await a.graph.credential_lifetime_limit(
                a.tenant_id, CredentialType.CERTIFICATE
            ) == timedelta(days=60)
            assert await a.graph.credential_lifetime_limit(a.tenant_id, CredentialType.FEDERATED) is None
            assert sent == ["GET /v1.0/policies/defaultAppManagementPolicy"]

    asyncio.run(main())


def test_without_policy_read_all_the_adapter_falls_back_and_warns_once(
    tenant: TenantProcess, caplog: pytest.LogCaptureFixture
) -> None:
    created = fresh_tenant(tenant, POLICY)
    caplog.set_level(logging.WARNING, logger="functions.adapters.graph_policy")

    async def role_less() -> dict[str, Any]:
        async with graph_client(created) as client:
            app, _ = await new_app_with_principal(client, "registrar-without-policy-read")
            secret = await add_password(client, app, end=datetime.now(UTC) + timedelta(days=20))
            return {**created, "clientId": app.app_id, "clientSecret": secret.secret_text}

    async def main(source: dict[str, Any]) -> None:
        async with adapters(as_adapter_source(source)) as a:
            for kind in (CredentialType.SECRET, CredentialType.SECRET, CredentialType.CERTIFICATE):
                assert await a.graph.credential_lifetime_limit(a.tenant_id, kind) is None

    asyncio.run(main(asyncio.run(role_less())))
    warnings = [r for r in caplog.records if "Policy.Read.All" in r.getMessage()]
    assert len(warnings) == 1


def test_add_password_is_not_resent_after_a_504_that_followed_the_commit(tenant_admin: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant_admin) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec())
            tenant_admin.add_fault(
                504,
                path_regex=f"/applications/{app.object_id}/addPassword",
                method="POST",
                count=1,
                afterCommit=True,
            )
            start = datetime.now(UTC).replace(microsecond=0)
            with pytest.raises(TransientError):  # before: the SDK resent it and a second one was made
                await a.graph.add_password(
                    a.tenant_id, app.object_id, "g1", start, start + timedelta(days=10)
                )
            (orphan,) = [
                c for c in await a.graph.list_credentials(a.tenant_id, app.object_id) if c.kind == "password"
            ]
            assert orphan.display_name == "g1"  # Entra committed it: the caller's re-run must clean it

            issued = await a.graph.add_password(
                a.tenant_id, app.object_id, "g1", start, start + timedelta(days=10)
            )
            await remove_other_named_passwords(a.graph, a.tenant_id, app.object_id, "g1", issued.key_id)
            await remove_other_named_passwords(a.graph, a.tenant_id, app.object_id, "g1", issued.key_id)
            left = [c.key_id for c in await a.graph.list_credentials(a.tenant_id, app.object_id)]
            assert left == [issued.key_id]
            await a.graph.delete_application(a.tenant_id, app.object_id)

    asyncio.run(main())


def lowered(
    tenant: TenantProcess, created: dict[str, Any], *, password: str = "P10D", key: str = "P20D"
) -> None:
    """The tenant lowers its policy (after the adapter cached the old limits)."""
    policy = {
        "isEnabled": True,
        "applicationRestrictions": {
            "passwordCredentials": [{"restrictionType": "passwordLifetime", "maxLifetime": password}],
            "keyCredentials": [{"restrictionType": "asymmetricKeyLifetime", "maxLifetime": key}],
        },
    }
    tenant.admin("PATCH", f"tenants/{created['tenantId']}/appManagementPolicy", policy)


def test_a_refusal_under_a_policy_lowered_since_it_was_cached_is_transient_and_rereads_it(
    tenant: TenantProcess,
) -> None:
    created = fresh_tenant(tenant, POLICY)

    async def main() -> None:
        async with adapters(as_adapter_source(created)) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec("lowered"))
            secret_limit = await a.graph.credential_lifetime_limit(a.tenant_id, CredentialType.SECRET)
            assert secret_limit == timedelta(days=30)  # cached for an hour
            lowered(tenant, created)
            start = datetime.now(UTC).replace(microsecond=0)
            with pytest.raises(TransientError, match="policy changed"):  # before: PermanentError
                await a.graph.add_password(a.tenant_id, app.object_id, "g1", start, start + secret_limit)
            fresh = await a.graph.credential_lifetime_limit(a.tenant_id, CredentialType.SECRET)
            assert fresh == timedelta(days=10)  # the cache entry was dropped and read again
            issued = await a.graph.add_password(a.tenant_id, app.object_id, "g1", start, start + fresh)
            assert issued.end - issued.start == timedelta(days=10)

            _, der = self_signed("too-long", days=30)  # certificates: keyCredentials PATCH
            key = KeyCredentialSpec(str(uuid.uuid4()), "c1", der, start, start + timedelta(days=30))
            assert await a.graph.credential_lifetime_limit(
                a.tenant_id, CredentialType.CERTIFICATE
            ) == timedelta(days=20)
            lowered(tenant, created, key="P10D")
            with pytest.raises(TransientError, match="policy changed"):
                await a.graph.set_key_credentials(a.tenant_id, app.object_id, [key])
            # A refusal under the limit just read is the tenant's last word: retrying cannot help.
            with pytest.raises(PermanentError) as refused:
                await a.graph.set_key_credentials(a.tenant_id, app.object_id, [key])
            assert refused.value.code == "CredentialInvalidLifetimeAsPerAppPolicy"
            await a.graph.delete_application(a.tenant_id, app.object_id)

    asyncio.run(main())


def test_a_first_provisioning_under_a_policy_lowered_since_it_was_cached_turns_active(
    tenant: TenantProcess,
) -> None:
    """Before: Entra's 400 was a PermanentError, so the registration failed and its app was deleted."""
    created = fresh_tenant(tenant, POLICY)

    async def main() -> tuple[Registration, Registration | None, int]:
        async with adapters(as_adapter_source(created)) as a:
            world = World(clock=SystemClock())
            accepted = await world.accept(
                replace(world.request(), tenant_id=a.tenant_id),
                replace(world.plan(), permissions=()),
            )
            assert await a.graph.credential_lifetime_limit(a.tenant_id, CredentialType.SECRET) == timedelta(
                days=30
            )
            lowered(tenant, created)
            provisioner = world.provisioner(
                directory=a.graph,
                probe=a.probe,
                settings=WorkflowSettings(verify_first_delay=timedelta(milliseconds=100)),
                sleep=asyncio.sleep,
            )
            rid = accepted.registration.id
            paused: Registration | None = None
            try:
                await provisioner.run(rid)  # the end date from the cached 30 days is refused
            except TransientError:
                paused = await world.store.get(rid)
            record = await provisioner.run(rid)  # the queue's retry
            apps = len(world.directory.apps)
            if record.app_object_id:
                await a.graph.delete_application(a.tenant_id, record.app_object_id)
            return record, paused, apps

    record, paused, fake_apps = asyncio.run(main())
    assert paused is not None and paused.status is RegistrationStatus.PROVISIONING
    assert paused.last_error is not None and paused.last_error.step == "credential"
    assert record.status is RegistrationStatus.ACTIVE, record.last_error
    credential = record.credential
    assert credential is not None and credential.verified_at is not None
    assert credential.expires_on is not None and credential.start is not None
    assert credential.expires_on - credential.start <= timedelta(days=10)
    assert fake_apps == 0
