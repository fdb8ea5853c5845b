"""Sign-in activity, contract: the local tenant's GET /beta/reports/appCredentialSignInActivities
read through functions/adapters/graph_signins.py. A token acquired with a secret is reported for
that keyId after it (Registrar's own probe included); a credential never used is not; the report
needs AuditLog.Read.All or Directory.Read.All (Registrar's devstack identity holds neither: 403,
ProofUnavailable) and a premium tenant (the licence switched off: 403 as well). A certificate
assertion is reported too, in Graph's shape ($filter appId, GET by id, 400 for another filter)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.identity import CertificateCredential, ClientSecretCredential
from msgraph.generated.models.application import Application
from msgraph.generated.models.key_credential import KeyCredential

from functions.adapters.graph_signins import GraphSignInActivity
from functions.core.escalation.ports import ProofUnavailable
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.models import SecretValue
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters, app_spec
from tests.integration.tenant_clients import graph_client, new_app_with_principal, self_signed_certificate

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def as_admin(tenant: TenantProcess) -> TenantProcess:
    """The tenant seen through its administrator's identity (Directory.Read.All)."""

    class Admin:
        def __getattr__(self, name: str) -> object:
            return getattr(tenant, name)

    admin = Admin()
    admin.client_id = tenant.info["adminClientId"]  # type: ignore[attr-defined]
    admin.client_secret = tenant.info["adminClientSecret"]  # type: ignore[attr-defined]
    return admin  # type: ignore[return-value]


def test_a_token_with_a_secret_is_reported_for_its_key_id_to_a_reader_only(
    tenant_admin: TenantProcess,
) -> None:
    tenant = tenant_admin

    async def main() -> None:
        async with adapters(tenant) as registrar, adapters(as_admin(tenant)) as admin:
            app = await registrar.graph.upsert_application(registrar.tenant_id, app_spec("signin"))
            await registrar.graph.ensure_service_principal(registrar.tenant_id, app.app_id)
            start = datetime.now(UTC).replace(microsecond=0)
            used = await registrar.graph.add_password(
                registrar.tenant_id, app.object_id, "gen-1", start, start + timedelta(days=30)
            )
            unused = await registrar.graph.add_password(
                registrar.tenant_id, app.object_id, "gen-2", start, start + timedelta(days=30)
            )
            report = GraphSignInActivity(admin.graph)
            assert await report.last_sign_in(admin.tenant_id, app.app_id, used.key_id) is None

            before = datetime.now(UTC).replace(microsecond=0)
            await registrar.probe.try_secret(registrar.tenant_id, app.app_id, used.secret)  # as a connector
            after = datetime.now(UTC) + timedelta(seconds=1)

            last = await report.last_sign_in(admin.tenant_id, app.app_id, used.key_id)
            assert last is not None and before <= last <= after
            assert await report.last_sign_in(admin.tenant_id, app.app_id, unused.key_id) is None
            # Another app's id with this keyId: not this credential's activity.
            assert await report.last_sign_in(admin.tenant_id, app.object_id, used.key_id) is None

            # Registrar's devstack identity has no AuditLog.Read.All: Graph's 403, no proof.
            with pytest.raises(ProofUnavailable):
                await GraphSignInActivity(registrar.graph).last_sign_in(
                    registrar.tenant_id, app.app_id, used.key_id
                )

            # A tenant without an Entra ID P1/P2 licence refuses the report even to a reader.
            tenant.configure(extra={"premiumLicence": False})
            with pytest.raises(ProofUnavailable):
                await report.last_sign_in(admin.tenant_id, app.app_id, used.key_id)

    asyncio.run(main())


def test_a_wrong_secret_is_no_sign_in(tenant: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant) as registrar, adapters(as_admin(tenant)) as admin:
            app = await registrar.graph.upsert_application(registrar.tenant_id, app_spec("signin"))
            await registrar.graph.ensure_service_principal(registrar.tenant_id, app.app_id)
            start = datetime.now(UTC).replace(microsecond=0)
            issued = await registrar.graph.add_password(
                registrar.tenant_id, app.object_id, "gen-1", start, start + timedelta(days=30)
            )
            with pytest.raises((TransientError, PermanentError)):  # Entra's 401 (7000215: read as lag)
                await registrar.probe.try_secret(
                    registrar.tenant_id, app.app_id, SecretValue(issued.secret.reveal() + "x")
                )
            report = GraphSignInActivity(admin.graph)
            assert await report.last_sign_in(admin.tenant_id, app.app_id, issued.key_id) is None

    asyncio.run(main())


def test_a_certificate_assertion_is_reported_in_graphs_shape(tenant: TenantProcess) -> None:
    der, pem = self_signed_certificate()

    async def arrange() -> tuple[str, str]:
        async with graph_client(tenant) as client:
            app, _ = await new_app_with_principal(client, f"signin-certificate-{uuid.uuid4()}")
            assert app.id is not None and app.app_id is not None
            key = KeyCredential(key=der, type="AsymmetricX509Cert", usage="Verify", display_name="test")
            await client.applications.by_application_id(app.id).patch(Application(key_credentials=[key]))
            read = await client.applications.by_application_id(app.id).get()
            assert read is not None and read.key_credentials
            return app.app_id, str(read.key_credentials[0].key_id)

    app_id, key_id = asyncio.run(arrange())
    options: dict[str, Any] = {"authority": tenant.authority, "disable_instance_discovery": True}
    CertificateCredential(tenant.tenant_id, app_id, certificate_data=pem, **options).get_token(GRAPH_SCOPE)

    admin = as_admin(tenant)
    token = ClientSecretCredential(tenant.tenant_id, admin.client_id, admin.client_secret, **options)
    report = tenant.graph_url.removesuffix("/v1.0") + "/beta/reports/appCredentialSignInActivities"
    with httpx.Client(
        verify=ssl.create_default_context(cafile=tenant.ca_file),
        headers={"Authorization": f"Bearer {token.get_token(GRAPH_SCOPE).token}"},
    ) as client:
        listed = client.get(report, params={"$filter": f"appId eq '{app_id}'"})
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["value"]
        assert item["keyId"] == key_id and item["keyType"] == "certificate" and item["appId"] == app_id
        assert set(item) >= {
            "id",
            "appObjectId",
            "servicePrincipalObjectId",
            "credentialOrigin",
            "createdDateTime",
            "expirationDateTime",
            "resourceId",
            "signInActivity",
        }
        assert item["signInActivity"]["lastSignInDateTime"].endswith("Z")
        one = client.get(f"{report}/{item['id']}")
        assert one.status_code == 200 and one.json()["keyId"] == key_id
        assert client.get(f"{report}/{uuid.uuid4()}").status_code == 404
        unsupported = client.get(report, params={"$filter": "startswith(keyId, 'a')"})
        assert unsupported.status_code == 400 and unsupported.json()["error"]["code"] == "BadRequest"
