"""REGISTRAR_TENANT_CREDENTIALS outside local development: federated entries only, whatever the
environment is called (Settings treats every REGISTRAR_ENVIRONMENT but local/devstack/test as Azure)."""

from __future__ import annotations

import json

import pytest

from functions.adapters.identity import IdentityConfig

WITH_SECRET = json.dumps(
    {
        "t1": {"clientId": "app-1", "federated": True},
        "t2": {"clientId": "app-2", "clientSecret": "sh-9Qx"},
        "t3": {"clientId": "app-3"},
    }
)
FEDERATED = json.dumps({"T1": {"clientId": "app-1", "federated": True}})


@pytest.mark.parametrize("environment", ["azure", "production", "Prod", "staging", " AZURE ", ""])
def test_a_secret_or_an_unfederated_tenant_is_refused_in_any_azure_environment(environment: str) -> None:
    values = {"REGISTRAR_CREDENTIAL": "managed_identity", "REGISTRAR_TENANT_CREDENTIALS": WITH_SECRET}
    if environment:
        values["REGISTRAR_ENVIRONMENT"] = environment
    with pytest.raises(ValueError, match="federated") as refused:
        IdentityConfig.from_env(values)
    message = str(refused.value)
    assert "t2" in message and "t3" in message and "t1" not in message
    assert "sh-9Qx" not in message


def test_production_accepts_federated_tenants() -> None:
    values = {"REGISTRAR_ENVIRONMENT": "production", "REGISTRAR_TENANT_CREDENTIALS": FEDERATED}
    tenant = IdentityConfig.from_env(values).tenants["t1"]
    assert tenant.federated and tenant.client_secret is None


@pytest.mark.parametrize("environment", ["local", "devstack", "test", "LOCAL"])
def test_local_development_may_hold_another_tenants_secret(environment: str) -> None:
    values = {"REGISTRAR_ENVIRONMENT": environment, "REGISTRAR_TENANT_CREDENTIALS": WITH_SECRET}
    assert IdentityConfig.from_env(values).tenants["t2"].client_secret
