"""Settings read from the environment once, and a composition root that loads no SDK at import."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from functions.core.catalogue.policy import policy_from_settings
from functions.settings import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "local.settings.sample.json"
HEAVY_MODULES = (
    "msgraph",
    "azure.identity",
    "azure.keyvault.secrets",
    "azure.data.tables",
    "azure.storage.queue",
)


# What Azure always has (infra/bicep sets them): outside local development they are required.
AZURE = {
    "REGISTRAR_ENVIRONMENT": "azure",
    "REGISTRAR_HOME_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "REGISTRAR_KEY_VAULT_URL": "https://kv-registrar.vault.azure.net/",
}


def test_the_sample_settings_parse_with_their_local_defaults() -> None:
    values = json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"]
    settings = Settings.from_env(values)
    assert settings.is_local
    assert settings.rotation_lead_time == timedelta(days=30)
    assert settings.max_credential_lifetime == timedelta(days=730)
    assert settings.default_credential_lifetime == timedelta(days=180)
    assert settings.verify_timeout == timedelta(minutes=10)
    assert settings.provisioning_deadline == timedelta(hours=1)
    assert settings.webhook_retry_schedule == ()  # the built-in one
    custom = Settings.from_env({**values, "REGISTRAR_WEBHOOK_RETRY_SCHEDULE": "PT1S, PT2S"})
    assert custom.webhook_retry_schedule == (timedelta(seconds=1), timedelta(seconds=2))
    assert settings.webhook_allow_insecure_local is True
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"


def test_the_client_secret_and_connection_string_never_show_in_repr() -> None:
    settings = Settings.from_env(
        {
            **AZURE,
            "REGISTRAR_CLIENT_SECRET": "s3cr3t-value-that-must-not-leak",
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=also-a-secret-key",
        }
    )
    assert settings.client_secret is not None
    assert settings.client_secret.reveal() == "s3cr3t-value-that-must-not-leak"
    text = repr(settings) + str(settings)
    assert "s3cr3t-value" not in text and "also-a-secret-key" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REGISTRAR_ROTATION_OVERLAP", "one day"),
        ("REGISTRAR_ROTATION_LIFETIME_FRACTION", "1.5"),
        ("REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME", "P1000D"),
        ("REGISTRAR_PROVISIONING_DEADLINE", "an hour"),
        ("REGISTRAR_PROVISIONING_DEADLINE", "PT0S"),
        ("REGISTRAR_WEBHOOK_RETRY_SCHEDULE", "PT5S,5 minutes"),
        ("REGISTRAR_WEBHOOK_RETRY_SCHEDULE", "PT5S,PT0S"),
        ("REGISTRAR_WEBHOOK_RETRY_SCHEDULE", "PT5S,P7D"),  # a queued retry lives 7 days at most
    ],
)
def test_a_bad_value_names_its_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**AZURE, name: value})


def test_importing_function_app_loads_no_sdk_and_registers_the_registration_functions() -> None:
    probe = (
        "import json, sys, function_app;"
        "names = sorted(f.get_function_name() for f in function_app.app.get_functions());"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY_MODULES!r} if m in sys.modules], 'names': names}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert {
        "create_registration",
        "get_registration",
        "list_registrations",
        "approve_registration",
        "decommission_registration",
        "list_profiles",
        "get_profile",
        "openapi_document",
        "registration_worker",
    } <= set(result["names"])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL", "enabled"),
        ("REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL", "ture"),
        ("REGISTRAR_CUSTOM_REQUIRES_APPROVAL", "enabled"),
    ],
)
def test_a_boolean_setting_that_is_no_boolean_is_refused_naming_it(name: str, value: str) -> None:
    local = {"REGISTRAR_ENVIRONMENT": "local", name: value}
    with pytest.raises(SettingsError, match=f"{name}: expected true or false"):
        Settings.from_env(local)
    with pytest.raises(ValueError, match=f"{name}: expected true or false"):
        policy_from_settings(local)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("TRUE", True), (" Yes ", True), ("on", True), ("1", True),
     ("false", False), ("False", False), ("no", False), ("OFF", False), ("0", False), ("", False)],
)  # fmt: skip
def test_boolean_settings_accept_the_usual_words_in_any_case(text: str, expected: bool) -> None:
    values = {"REGISTRAR_ENVIRONMENT": "local", "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL": text,
              "REGISTRAR_CUSTOM_REQUIRES_APPROVAL": text}  # fmt: skip
    assert Settings.from_env(values).webhook_allow_insecure_local is expected
    policy = policy_from_settings(values)
    assert policy.allow_insecure_webhooks is expected and policy.custom_requires_approval is expected


def test_insecure_webhooks_are_refused_at_startup_outside_local_development() -> None:
    values = {**AZURE, "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL": "true"}
    with pytest.raises(SettingsError, match="REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL: true is only for local"):
        Settings.from_env(values)
    with pytest.raises(ValueError, match="REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL: true is only for local"):
        policy_from_settings(values)  # the Policy refuses it on its own too
    for environment in ("local", "devstack", "test"):
        local = {**values, "REGISTRAR_ENVIRONMENT": environment}
        assert Settings.from_env(local).webhook_allow_insecure_local is True
        assert policy_from_settings(local).allow_insecure_webhooks is True


@pytest.mark.parametrize(
    ("values", "messages"),
    [
        ({**AZURE, "REGISTRAR_HOME_TENANT_ID": "contoso.onmicrosoft.com"}, ["REGISTRAR_HOME_TENANT_ID: expected"]),
        ({"REGISTRAR_ENVIRONMENT": "local", "REGISTRAR_HOME_TENANT_ID": "not-a-guid"},
         ["REGISTRAR_HOME_TENANT_ID: expected"]),
        ({**AZURE, "REGISTRAR_HOME_TENANT_ID": ""}, ["REGISTRAR_HOME_TENANT_ID: required"]),
        ({**AZURE, "REGISTRAR_KEY_VAULT_URL": ""}, ["REGISTRAR_KEY_VAULT_URL: required"]),
        ({**AZURE, "REGISTRAR_KEY_VAULT_URL": "http://kv.vault.azure.net"}, ["REGISTRAR_KEY_VAULT_URL"]),
        ({**AZURE, "REGISTRAR_KEY_VAULT_URL": "kv-registrar"}, ["REGISTRAR_KEY_VAULT_URL"]),
        ({"REGISTRAR_ENVIRONMENT": "production"},
         ["REGISTRAR_HOME_TENANT_ID: required", "REGISTRAR_KEY_VAULT_URL: required"]),
        ({**AZURE, "REGISTRAR_ROTATION_OVERLAP": "a day", "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL": "yes please"},
         ["REGISTRAR_ROTATION_OVERLAP", "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL"]),
    ],
)  # fmt: skip
def test_settings_azure_needs_are_checked_and_every_problem_is_named(
    values: dict[str, str], messages: list[str]
) -> None:
    with pytest.raises(SettingsError) as failure:
        Settings.from_env(values)
    for message in messages:
        assert message in str(failure.value)


def test_azure_settings_with_a_guid_tenant_and_an_https_vault_parse() -> None:
    settings = Settings.from_env(AZURE)
    assert not settings.is_local and settings.key_vault_url == "https://kv-registrar.vault.azure.net"
    assert not settings.easy_auth_enabled and not settings.client_principal_trusted
    behind_easy_auth = Settings.from_env({**AZURE, "WEBSITE_AUTH_ENABLED": "True"})
    assert behind_easy_auth.easy_auth_enabled and behind_easy_auth.client_principal_trusted
    assert not Settings.from_env({**AZURE, "WEBSITE_AUTH_ENABLED": "False"}).client_principal_trusted
    local = Settings.from_env({"REGISTRAR_ENVIRONMENT": "local"})  # the sample leaves both empty
    assert local.client_principal_trusted and local.home_tenant_id == "" and local.key_vault_url == ""
