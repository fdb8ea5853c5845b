"""The app settings in infra/bicep agree with local.settings.sample.json.

Every setting the sample names must reach Azure, except the local-only ones below; every Azure
setting must be one the sample names, except the host's identity-based replacements.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

import pytest

from tests.infra.bicep_tree import REPO_ROOT, resolve, tree_of

# The one list of local-only settings (the place to add one, with its reason):
LOCAL_ONLY_SETTINGS = {
    # The devstack's client-secret identity; in Azure the managed identity replaces it.
    "REGISTRAR_CLIENT_ID",
    "REGISTRAR_CLIENT_SECRET",
    # A connection string (Azurite's); in Azure, AzureWebJobsStorage__accountName/__credential.
    "AzureWebJobsStorage",
    # Application Insights' local stand-in (functions/telemetry_file.py); Azure Monitor replaces it.
    "REGISTRAR_TELEMETRY_FILE",
    "REGISTRAR_TELEMETRY_INTERVAL",
    # Flex Consumption sets the worker runtime from functionAppConfig.runtime and rejects this setting.
    "FUNCTIONS_WORKER_RUNTIME",
}
# Settings only Azure needs: identity-based host storage (the service URIs the storage account
# reports, so sovereign clouds work; the code and the host prefer them) and Application Insights'
# Entra auth.
AZURE_ONLY_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


def _sample_settings() -> dict[str, str]:
    sample = json.loads((REPO_ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    values: dict[str, str] = sample["Values"]
    return values


def _bicep_settings() -> dict[str, object]:
    host = resolve(tree_of("modules/functionapp.bicep"), "hostSettings")
    registrar = resolve(tree_of("main.bicep"), "registrarSettings")
    overlap = set(host) & set(registrar)
    assert not overlap, f"settings defined twice (union() would silently pick one): {overlap}"
    return {**host, **registrar}


def test_every_sample_setting_reaches_azure() -> None:
    expected = set(_sample_settings()) - LOCAL_ONLY_SETTINGS
    missing = sorted(expected - set(_bicep_settings()))
    assert not missing, (
        f"local.settings.sample.json names settings infra/bicep does not set: {missing}. "
        "Add them to registrarSettings in infra/bicep/main.bicep (with a parameter if they vary), "
        "or, if they only make sense locally, to LOCAL_ONLY_SETTINGS in tests/infra/test_app_settings.py."
    )


def test_azure_sets_nothing_the_sample_does_not_know() -> None:
    unknown = sorted(set(_bicep_settings()) - set(_sample_settings()) - AZURE_ONLY_SETTINGS)
    assert not unknown, f"infra/bicep sets settings missing from local.settings.sample.json: {unknown}"
    leaked = sorted(set(_bicep_settings()) & LOCAL_ONLY_SETTINGS)
    assert not leaked, f"local-only settings must not be deployed: {leaked}"


def test_azure_values_of_the_environment_settings() -> None:
    settings = _bicep_settings()
    assert settings["REGISTRAR_CREDENTIAL"] == "managed_identity"
    assert settings["REGISTRAR_ENVIRONMENT"] == "azure"
    assert settings["REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL"] == "false"


def test_no_setting_carries_a_key_or_secret() -> None:
    for name, value in _bicep_settings().items():
        assert not re.search(r"INSTRUMENTATIONKEY|ACCOUNTKEY|SECRET|PASSWORD|_KEY$", name.upper()), name
        text = json.dumps(value).lower()
        assert "accountkey" not in text and "instrumentationkey" not in text, name
        assert "listkeys" not in text and '"list' not in text, name


def test_sample_defaults_match_bicep_parameter_defaults() -> None:
    """A default changed in one place only is a drift between local runs and Azure."""
    main = tree_of("main.bicep")
    sample = _sample_settings()
    for name, value in resolve(main, "registrarSettings").items():
        if isinstance(value, str) and value in main["parameters"] and name in sample:
            default = main["parameters"][value]["default"]
            if isinstance(default, str) and sample[name]:
                assert default == sample[name], f"{name}: Bicep default {default!r}, sample {sample[name]!r}"


# --- every REGISTRAR_* setting the code reads is one the sample names ------------------------------

# REGISTRAR_* settings the code may read that local.settings.sample.json does not name, each with its
# reason (a local-only or an Azure-only one). Empty: the sample names every one; the local-only
# REGISTRAR_CLIENT_ID/REGISTRAR_CLIENT_SECRET are in the sample (LOCAL_ONLY_SETTINGS keeps them out
# of Azure), and Azure needs no REGISTRAR_* setting the sample lacks.
READ_BUT_NOT_IN_SAMPLE: dict[str, str] = {
    # Graph's budgets are published and fixed: only the local tenant scales them (throttleScale),
    # so only tests and benchmarks against it set this; Azure and local development leave it at 1.
    "REGISTRAR_GRAPH_BUDGET_SCALE": "the local tenant's throttleScale, for tests and benchmarks",
}

# Values under which the readers take each branch they have: the sample's (local development) and
# what infra/bicep sets in Azure (where identity and policy check other things).
AZURE_VALUES = {
    "REGISTRAR_ENVIRONMENT": "azure",
    "REGISTRAR_CREDENTIAL": "managed_identity",
    "REGISTRAR_HOME_TENANT_ID": "6f1c0e7d-2a9b-4c1e-8f3a-5d70b2c4e918",
    "REGISTRAR_KEY_VAULT_URL": "https://kv-registrar.vault.azure.net",
    "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL": "false",
    "REGISTRAR_CLIENT_ID": "",
    "REGISTRAR_CLIENT_SECRET": "",
    "AzureWebJobsStorage": "",
    "AzureWebJobsStorage__blobServiceUri": "https://stregistrar.blob.core.usgovcloudapi.net/",
    "AzureWebJobsStorage__queueServiceUri": "https://stregistrar.queue.core.usgovcloudapi.net/",
    "AzureWebJobsStorage__tableServiceUri": "https://stregistrar.table.core.usgovcloudapi.net/",
}


class RecordingSettings(Mapping[str, str]):
    """App settings that remember every key looked up (present or not)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _settings_read(values: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every key read while the app turns `values` into its configuration, as bootstrap.Services
    does: Settings.from_env, then from settings.values the identity, the policy, the storage
    configuration and the queue-retry limit."""
    import functions.settings
    from functions.adapters.identity import IdentityConfig
    from functions.adapters.tables import StorageConfig
    from functions.core.catalogue.policy import policy_from_settings
    from functions.triggers.queue_retries import max_dequeue_count

    recording = RecordingSettings(values)
    # from_env copies what it is given (dict(env)) and reads the copy: hand it the recording instead.
    with monkeypatch.context() as patch:
        patch.setattr(functions.settings, "dict", lambda env: env, raising=False)
        settings = functions.settings.Settings.from_env(recording)
    assert settings.values is recording, "Settings.from_env no longer reads through dict(env): adapt the test"
    identity = IdentityConfig.from_env(settings.values)
    policy_from_settings(settings.values, allowed_tenants=[settings.home_tenant_id, *identity.tenants])
    StorageConfig.from_env(settings.values)
    max_dequeue_count(settings.values)
    return recording.read


def test_every_registrar_setting_the_code_reads_is_in_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = _sample_settings()
    read = _settings_read(sample, monkeypatch) | _settings_read({**sample, **AZURE_VALUES}, monkeypatch)
    registrar = {name for name in read if name.startswith("REGISTRAR_")}
    assert {"REGISTRAR_VERIFY_TIMEOUT", "REGISTRAR_CUSTOM_REQUIRES_APPROVAL"} <= registrar  # it records
    missing = sorted(registrar - set(sample) - set(READ_BUT_NOT_IN_SAMPLE))
    assert not missing, (
        f"the app reads settings local.settings.sample.json does not name: {missing}. Add them to the "
        "sample (and registrarSettings in infra/bicep/main.bicep, and the docs), or, with the reason, "
        "to READ_BUT_NOT_IN_SAMPLE in tests/infra/test_app_settings.py."
    )
    unread = sorted({name for name in sample if name.startswith("REGISTRAR_")} - registrar)
    assert not unread, f"local.settings.sample.json names settings nothing reads: {unread}"
    stale = sorted(set(READ_BUT_NOT_IN_SAMPLE) - registrar)
    assert not stale, f"READ_BUT_NOT_IN_SAMPLE names settings nothing reads: {stale}"


def test_every_registrar_setting_named_in_the_code_is_in_the_sample() -> None:
    """The same for readers outside the path above (a binding expression, a new module): every
    REGISTRAR_* name in functions/ and function_app.py."""
    sources = [*sorted((REPO_ROOT / "functions").rglob("*.py")), REPO_ROOT / "function_app.py"]
    named = {
        name
        for source in sources
        for name in re.findall(r"\bREGISTRAR_[A-Z0-9_]*[A-Z0-9]\b", source.read_text(encoding="utf-8"))
    }
    assert "REGISTRAR_CUSTOM_REQUIRES_APPROVAL" in named
    missing = sorted(named - set(_sample_settings()) - set(READ_BUT_NOT_IN_SAMPLE))
    assert not missing, f"functions/ names settings local.settings.sample.json does not: {missing}"


def test_storage_endpoints_come_from_the_account_not_the_public_cloud() -> None:
    """The service URIs reach the app's own storage client too, so a sovereign cloud's endpoints are
    used as they are (no core.windows.net built from an account name)."""
    from functions.adapters.tables import StorageConfig

    settings = _bicep_settings()
    assert "AzureWebJobsStorage__accountName" not in settings  # the host would prefer it to the URIs
    config = StorageConfig.from_env({k: v for k, v in AZURE_VALUES.items() if k.startswith("AzureWebJobs")})
    assert config.table_endpoint == AZURE_VALUES["AzureWebJobsStorage__tableServiceUri"]
    assert config.queue_endpoint == AZURE_VALUES["AzureWebJobsStorage__queueServiceUri"]
