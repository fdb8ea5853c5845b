"""functions/adapters/identity.py: the registrar's credentials per tenant and the TokenProbe, against the local Entra."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from functions.adapters.identity import (
    GRAPH_SCOPE,
    IdentityConfig,
    RegistrarIdentity,
    parse_tenant_credentials,
)
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.models import SecretValue
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters, app_spec, identity_config


def test_one_cached_credential_per_tenant_from_the_settings(tenant_admin: TenantProcess) -> None:
    other = tenant_admin.create_tenant()
    env = {
        "REGISTRAR_ENVIRONMENT": "devstack",  # another tenant's bootstrap secret is allowed only locally
        "REGISTRAR_AUTHORITY_HOST": tenant_admin.authority,
        "REGISTRAR_HOME_TENANT_ID": tenant_admin.tenant_id,
        "REGISTRAR_CREDENTIAL": "client_secret",
        "REGISTRAR_CLIENT_ID": tenant_admin.client_id,
        "REGISTRAR_CLIENT_SECRET": tenant_admin.client_secret,
        "REGISTRAR_TENANT_CREDENTIALS": json.dumps(
            {
                other["tenantId"].upper(): {
                    "clientId": other["clientId"],
                    "clientSecret": other["clientSecret"],
                }
            }
        ),
    }
    config = IdentityConfig.from_env(env)
    assert config.devstack  # loopback authority: instance discovery off
    assert tenant_admin.client_secret not in repr(config)
    assert other["clientSecret"] not in repr(config)

    async def main() -> None:
        identity = RegistrarIdentity(config)
        try:
            home = identity.credential()
            assert identity.credential(tenant_admin.tenant_id.upper()) is home
            assert (await home.get_token(GRAPH_SCOPE)).token
            assert identity.has_tenant(other["tenantId"])
            assert (await identity.credential(other["tenantId"]).get_token(GRAPH_SCOPE)).token
            assert not identity.has_tenant(str(uuid.uuid4()))
            with pytest.raises(PermanentError) as unknown:
                identity.credential(str(uuid.uuid4()))
            assert unknown.value.code == "UnknownTenant"
        finally:
            await identity.close()

    asyncio.run(main())


def test_tenant_credentials_setting_is_validated_without_echoing_secrets() -> None:
    assert parse_tenant_credentials("") == {}
    parsed = parse_tenant_credentials('{"T1": {"clientId": "app", "federated": true}}')
    assert parsed["t1"].federated and parsed["t1"].client_secret is None
    with pytest.raises(ValueError, match="clientId") as missing:
        parse_tenant_credentials('{"t2": {"clientSecret": "do-not-echo-this-value"}}')
    assert "do-not-echo-this-value" not in str(missing.value)
    with pytest.raises(ValueError, match="JSON"):
        parse_tenant_credentials("{not json")


def test_in_azure_other_tenants_must_be_federated_and_secret_free() -> None:
    base = {"REGISTRAR_ENVIRONMENT": "azure", "REGISTRAR_CREDENTIAL": "managed_identity"}
    federated = json.dumps({"T1": {"clientId": "app-1", "federated": True}})
    assert (
        IdentityConfig.from_env({**base, "REGISTRAR_TENANT_CREDENTIALS": federated}).tenants["t1"].federated
    )
    with_secret = json.dumps(
        {
            "t1": {"clientId": "app-1", "federated": True},
            "t2": {"clientId": "app-2", "clientSecret": "sh-9Qx"},
        }
    )
    with pytest.raises(ValueError, match="federated") as refused:
        IdentityConfig.from_env({**base, "REGISTRAR_TENANT_CREDENTIALS": with_secret})
    assert (
        "t2" in str(refused.value) and "t1" not in str(refused.value) and "sh-9Qx" not in str(refused.value)
    )
    # Locally (the devstack), another tenant's bootstrap secret is how a second tenant is reached.
    for local in ("local", "devstack", "test"):
        values = {"REGISTRAR_ENVIRONMENT": local, "REGISTRAR_TENANT_CREDENTIALS": with_secret}
        assert IdentityConfig.from_env(values).tenants["t2"].client_secret


def test_probe_waits_out_propagation_and_never_shows_the_secret(
    tenant_admin: TenantProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []

    async def main() -> None:
        tenant_admin.configure(propagationDelayS=1.5)
        async with adapters(tenant_admin) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec("probe"))
            await a.graph.ensure_service_principal(a.tenant_id, app.app_id)
            start = datetime.now(UTC)
            issued = await a.graph.add_password(
                a.tenant_id, app.object_id, "gen-1", start, start + timedelta(days=1)
            )
            shown.append(issued.secret.reveal())

            with pytest.raises(TransientError) as early:  # Entra does not accept it yet
                await a.probe.try_secret(a.tenant_id, app.app_id, issued.secret)
            assert "AADSTS7000215" in str(early.value)
            assert early.value.__cause__ is None and early.value.__context__ is None
            deadline = asyncio.get_running_loop().time() + 15
            while True:  # what the workflow does: bounded retries through the propagation window
                try:
                    await a.probe.try_secret(a.tenant_id, app.app_id, issued.secret)
                    break
                except TransientError as error:
                    shown.append(str(error))
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.25)

            wrong = SecretValue(f"wrong-{uuid.uuid4().hex}")
            with pytest.raises(TransientError) as refused:
                await a.probe.try_secret(a.tenant_id, app.app_id, wrong)
            shown.append(str(refused.value))
            assert wrong.reveal() not in str(refused.value)
            with pytest.raises(TransientError, match="AADSTS700016"):  # no such app (yet)
                await a.probe.try_secret(a.tenant_id, str(uuid.uuid4()), issued.secret)
            with pytest.raises(PermanentError, match="private key"):
                await a.probe.try_certificate(a.tenant_id, app.app_id, SecretValue("-----BEGIN NOTHING-----"))

    asyncio.run(main())
    secret = shown[0]
    assert all(secret not in message for message in shown[1:])
    assert secret not in caplog.text
    assert tenant_admin.client_secret not in caplog.text


def test_an_expired_secret_is_refused_with_7000222_which_the_probe_waits_out(tenant: TenantProcess) -> None:
    """Entra also answers 7000222 for secrets minutes old, before they propagate, and the probe only
    ever sees credentials just issued: it waits (bounded by its caller), the code in the message."""

    async def main() -> None:
        async with adapters(tenant) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec("expired"))
            await a.graph.ensure_service_principal(a.tenant_id, app.app_id)
            now = datetime.now(UTC)
            issued = await a.graph.add_password(
                a.tenant_id, app.object_id, "old", now - timedelta(days=2), now - timedelta(days=1)
            )
            with pytest.raises(TransientError, match="AADSTS7000222"):
                await a.probe.try_secret(a.tenant_id, app.app_id, issued.secret)

    asyncio.run(main())


def test_identity_config_needs_a_secret_in_client_secret_mode(tenant: TenantProcess) -> None:
    config = identity_config(tenant)
    broken = IdentityConfig(
        config.authority_host, config.home_tenant_id, mode="client_secret", client_id=None
    )
    with pytest.raises(PermanentError) as raised:
        RegistrarIdentity(broken).credential()
    assert raised.value.code == "IdentityNotConfigured"
