"""Sign-in activity, contract: the local tenant's GET /beta/reports/appCredentialSignInActivities
read through functions/adapters/graph_signins.py. A token acquired with a secret is reported for
that keyId after it (Registrar's own probe included); a credential never used is not; the report
needs AuditLog.Read.All or Directory.Read.All (Registrar's devstack identity holds neither: 403,
ProofUnavailable) and a premium tenant (the licence switched off: 403 as well)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from functions.adapters.graph_signins import GraphSignInActivity
from functions.core.escalation.ports import ProofUnavailable
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.models import SecretValue
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters, app_spec


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
