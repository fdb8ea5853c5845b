"""The app settings in infra/bicep agree with local.settings.sample.json.

Every setting the sample names must reach Azure, except the local-only ones below; every Azure
setting must be one the sample names, except the host's identity-based replacements.
"""

from __future__ import annotations

import json
import re

from tests.infra.bicep_tree import REPO_ROOT, resolve, tree_of

# The one list of local-only settings (the place to add one, with its reason):
LOCAL_ONLY_SETTINGS = {
    # The devstack's client-secret identity; in Azure the managed identity replaces it.
    "REGISTRAR_CLIENT_ID",
    "REGISTRAR_CLIENT_SECRET",
    # A connection string (Azurite's); in Azure, AzureWebJobsStorage__accountName/__credential.
    "AzureWebJobsStorage",
    # Flex Consumption sets the worker runtime from functionAppConfig.runtime and rejects this setting.
    "FUNCTIONS_WORKER_RUNTIME",
}
# Settings only Azure needs: identity-based host storage and Application Insights' Entra auth.
AZURE_ONLY_SETTINGS = {
    "AzureWebJobsStorage__accountName",
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
