"""Settings read from the environment once, and a composition root that loads no SDK at import."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

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


def test_the_sample_settings_parse_with_their_local_defaults() -> None:
    values = json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"]
    settings = Settings.from_env(values)
    assert settings.is_local
    assert settings.rotation_lead_time == timedelta(days=30)
    assert settings.max_credential_lifetime == timedelta(days=730)
    assert settings.default_credential_lifetime == timedelta(days=180)
    assert settings.verify_timeout == timedelta(minutes=10)
    assert settings.webhook_allow_insecure_local is True
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"


def test_the_client_secret_and_connection_string_never_show_in_repr() -> None:
    settings = Settings.from_env(
        {
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
    ],
)
def test_a_bad_value_names_its_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


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
