"""local.settings.json as `devstack up` writes it: sample values, then the stack's endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.stack import Stack, stack_settings, write_settings

TENANT = {
    "tenantId": "t-1",
    "authority": "https://127.0.0.1:1234",
    "graphUrl": "https://127.0.0.1:1234/v1.0",
    "vaultUrl": "https://127.0.0.1:1234",
    "clientId": "c-1",
    "clientSecret": "local-secret",
    "caFile": "/state/tenant/ca.pem",
    "identityEndpoint": "https://127.0.0.1:1234/msi/token",
    "identityHeader": "local-identity-header",
}


def test_created_from_the_sample_plus_the_stack_endpoints(tmp_path: Path) -> None:
    sample = tmp_path / "local.settings.sample.json"
    sample.write_text(json.dumps({"IsEncrypted": False, "Values": {"KEEP": "1", "REGISTRAR_CLIENT_ID": ""}}))
    target = tmp_path / "local.settings.json"
    assert write_settings(target, sample, {"EXTRA": "x", **stack_settings("conn-a", TENANT)}) == "created"
    values = json.loads(target.read_text())["Values"]
    assert values["KEEP"] == "1"
    assert values["EXTRA"] == "x"
    assert values["AzureWebJobsStorage"] == "conn-a"
    assert values["REGISTRAR_CLIENT_ID"] == "c-1"
    assert values["REGISTRAR_CREDENTIAL"] == "client_secret"
    assert values["SSL_CERT_FILE"] == values["REQUESTS_CA_BUNDLE"] == "/state/tenant/ca.pem"
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_an_existing_file_keeps_the_developers_values_and_gets_fresh_endpoints(tmp_path: Path) -> None:
    target = tmp_path / "local.settings.json"
    target.write_text(json.dumps({"Values": {"MINE": "edited", "AzureWebJobsStorage": "stale"}}))
    sample = tmp_path / "local.settings.sample.json"
    sample.write_text(json.dumps({"Values": {"MINE": "sample default", "NEW_SETTING": "since added"}}))
    action = write_settings(target, sample, stack_settings("conn-b", None))
    assert action.startswith("updated")
    assert "NEW_SETTING" in action
    assert json.loads(target.read_text())["Values"] == {
        "MINE": "edited",
        "NEW_SETTING": "since added",
        "AzureWebJobsStorage": "conn-b",
    }


def test_with_a_managed_identity_the_settings_hold_no_secret_and_the_host_gets_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = stack_settings("conn-c", TENANT, managed_identity=True)
    assert values["REGISTRAR_CREDENTIAL"] == "managed_identity"
    assert values["REGISTRAR_CLIENT_ID"] == values["REGISTRAR_CLIENT_SECRET"] == ""
    assert "local-secret" not in json.dumps(values)
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://stale.example/msi")  # the caller's own: never passed on
    assert Stack._host_env(TENANT, managed_identity=True)["IDENTITY_ENDPOINT"] == TENANT["identityEndpoint"]
    assert Stack._host_env(TENANT, managed_identity=True)["IDENTITY_HEADER"] == "local-identity-header"
    assert "IDENTITY_ENDPOINT" not in Stack._host_env(TENANT)


def test_identity_based_storage_settings_name_the_service_uris_and_no_key() -> None:
    from devstack.azurite import Azurite
    from devstack.stack import identity_storage_settings

    served = Azurite(process=None, ports={"blob": 1, "queue": 2, "table": 3}, https=True)  # type: ignore[arg-type]
    values = identity_storage_settings(served)
    assert values == {
        "AzureWebJobsStorage": "",
        "AzureWebJobsStorage__blobServiceUri": "https://127.0.0.1:1/devstoreaccount1",
        "AzureWebJobsStorage__queueServiceUri": "https://127.0.0.1:2/devstoreaccount1",
        "AzureWebJobsStorage__tableServiceUri": "https://127.0.0.1:3/devstoreaccount1",
        "AzureWebJobsStorage__credential": "managedidentity",
    }
    assert served.connection_string.startswith("DefaultEndpointsProtocol=https;")
