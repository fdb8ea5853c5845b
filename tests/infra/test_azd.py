"""azure.yaml, the postdeploy hooks, main.parameters.json and .funcignore fit together."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess

import pytest
import yaml

from tests.infra.bicep_tree import BICEP_DIR, REPO_ROOT, tree_of


def test_azure_yaml_points_azd_at_the_bicep_and_the_function_app() -> None:
    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert config["name"] == "registrar"
    assert config["infra"]["provider"] == "bicep"
    assert config["infra"]["path"] == "infra/bicep"
    assert (REPO_ROOT / config["infra"]["path"] / f"{config['infra'].get('module', 'main')}.bicep").is_file()
    assert config["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    postdeploy = config["hooks"]["postdeploy"]
    assert postdeploy["posix"]["shell"] == "sh"
    assert postdeploy["windows"]["shell"] == "pwsh"
    for hook in (postdeploy["posix"], postdeploy["windows"]):
        assert (REPO_ROOT / hook["run"]).is_file(), hook["run"]
        assert hook.get("continueOnError") is False
    assert os.access(REPO_ROOT / postdeploy["posix"]["run"], os.X_OK)


def test_hooks_deploy_the_subscription_with_main_outputs() -> None:
    outputs = set(tree_of("main.bicep")["outputs"])
    parameters = set(tree_of("eventgrid-subscription.bicep")["parameters"])
    for hook in ("postdeploy.sh", "postdeploy.ps1"):
        script = (REPO_ROOT / "infra/hooks" / hook).read_text(encoding="utf-8")
        assert "eventgrid-subscription.bicep" in script
        used_outputs = set(re.findall(r"\bAZURE_[A-Z_]+\b", script)) - {"AZURE_SUBSCRIPTION_ID"}
        assert used_outputs <= outputs, (
            f"{hook} reads variables main.bicep never outputs: {used_outputs - outputs}"
        )
        passed = set(re.findall(r"\b([a-zA-Z]+)=", script)) & parameters
        required = {
            name
            for name, spec in tree_of("eventgrid-subscription.bicep")["parameters"].items()
            if spec["default"] is None
        }
        assert required <= passed, f"{hook} does not pass {required - passed}"
        assert "functionName" in passed


def test_posix_hook_is_valid_sh() -> None:
    completed = subprocess.run(
        ["sh", "-n", str(REPO_ROOT / "infra/hooks/postdeploy.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def test_parameters_file_feeds_main_from_the_azd_environment() -> None:
    parameters = json.loads((BICEP_DIR / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert set(parameters) <= set(tree_of("main.bicep")["parameters"])


# --- azd pastes environment values into main.parameters.json as plain text ---------------------------
# azd replaces each ${NAME} / ${NAME=default} in the file's text with the value, unescaped, then parses
# the JSON (Azure/azure-dev#5507): a value holding a quote or a backslash breaks the file ("error
# unmarshalling Bicep template parameters"). JSON-valued settings therefore travel base64-encoded.

PARAMETERS_FILE = BICEP_DIR / "main.parameters.json"
AZD_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[=-])([^}]*))?\}")
DEPLOY_DOC = REPO_ROOT / "docs/deploy.md"
OTHER_TENANT = "8a1d52f3-6c2e-4b7a-9e0f-3d4c5b6a7e81"
OTHER_APP = "0b6e4f2a-91c3-4d58-a7e2-c5f1d3b9a604"


def _documented_tenant_credentials() -> str:
    """The JSON docs/deploy.md ("Serving other tenants") tells people to encode, filled in as sh would."""
    (line,) = [
        ln.strip()
        for ln in DEPLOY_DOC.read_text(encoding="utf-8").splitlines()
        if ln.strip().startswith("TENANTS='")
    ]
    text = line.removeprefix("TENANTS='").removesuffix("'")
    return text.replace("""'"$APP_ID"'""", OTHER_APP).replace("<other tenant id>", OTHER_TENANT)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _typical_azd_environment() -> dict[str, str]:
    """A value for every ${...} the file holds, as `azd env set` would store it. A new reference
    must be added here, with a realistic (and, for JSON, base64-encoded) value."""
    return {
        "AZURE_ENV_NAME": "registrar-prod",
        "AZURE_LOCATION": "swedencentral",
        "AZURE_PRINCIPAL_ID": "3f9a2c1e-5b7d-4e8f-a0b1-c2d3e4f5a6b7",
        "AZURE_PRINCIPAL_TYPE": "ServicePrincipal",
        "REGISTRAR_GRANT_GRAPH_ROLES": "false",
        "REGISTRAR_ADOPTION_TAKES_OWNERSHIP": "true",
        "REGISTRAR_INSTANCE_MEMORY_MB": "4096",
        "REGISTRAR_MAXIMUM_INSTANCE_COUNT": "40",
        "REGISTRAR_CREATE_EVENT_SUBSCRIPTION": "true",
        "REGISTRAR_TENANT_CREDENTIALS_B64": _b64(_documented_tenant_credentials()),
        "REGISTRAR_API_CLIENT_ID": "5c2b8e1d-7a4f-4c3e-9b6a-1d0e2f3a4b5c",
        # Values with quotes and backslashes: only safe because they are encoded.
        "REGISTRAR_EXTRA_APP_SETTINGS_B64": _b64(json.dumps({"TEAM_NOTE": 'say "hi" \\ bye', "A_FLAG": "1"})),
        "REGISTRAR_ALERT_EMAILS": "secops@contoso.example,identity-team@contoso.example",
        # A Teams workflow URL as Power Automate gives it: query string with & and %2F, no quote.
        "REGISTRAR_ALERT_WEBHOOK_URL": (
            "https://prod-12.swedencentral.logic.azure.com:443/workflows/4f1c2b7a9d/triggers/manual/paths/"
            "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=q1W2e3R4t5Y6u7I8o9P0"
        ),
        "REGISTRAR_SIGN_IN_PROOF": "true",
    }


def _azd_substitute(text: str, environment: dict[str, str]) -> str:
    unknown = sorted({m.group(1) for m in AZD_REFERENCE.finditer(text)} - set(_typical_azd_environment()))
    assert not unknown, (
        f"main.parameters.json references {unknown}, unknown to tests/infra/test_azd.py: add each to "
        "_typical_azd_environment with a realistic value (base64-encode anything that may hold JSON)"
    )

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        return environment.get(name) or (default or "")

    return AZD_REFERENCE.sub(value, text)


def test_every_azd_reference_in_the_parameters_file_is_known() -> None:
    text = PARAMETERS_FILE.read_text(encoding="utf-8")
    referenced = {m.group(1) for m in AZD_REFERENCE.finditer(text)}
    assert referenced == set(_typical_azd_environment()), (
        "keep _typical_azd_environment to exactly the file's references: "
        f"{sorted(referenced ^ set(_typical_azd_environment()))}"
    )
    # No JSON-valued setting is passed as plain text (the bug of REGISTRAR_TENANT_CREDENTIALS).
    assert "REGISTRAR_TENANT_CREDENTIALS}" not in text and "REGISTRAR_TENANT_CREDENTIALS=" not in text


@pytest.mark.parametrize("which", ["typical values", "everything unset"])
def test_parameters_file_stays_json_after_azd_substitution(which: str) -> None:
    environment = _typical_azd_environment() if which == "typical values" else {}
    parsed = json.loads(_azd_substitute(PARAMETERS_FILE.read_text(encoding="utf-8"), environment))
    parameters = parsed["parameters"]
    assert set(parameters) <= set(tree_of("main.bicep")["parameters"])
    if which == "typical values":
        encoded = parameters["tenantCredentialsBase64"]["value"]
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        assert json.loads(decoded) == {OTHER_TENANT: {"clientId": OTHER_APP, "federated": True}}
        # and the app accepts it in Azure (federated, no secret)
        from functions.adapters.identity import IdentityConfig

        config = IdentityConfig.from_env(
            {"REGISTRAR_ENVIRONMENT": "azure", "REGISTRAR_TENANT_CREDENTIALS": decoded}
        )
        assert config.tenants[OTHER_TENANT].federated
        extra = json.loads(base64.b64decode(parameters["extraAppSettingsBase64"]["value"]))
        assert extra["TEAM_NOTE"] == 'say "hi" \\ bye'
        assert parameters["apiClientId"]["value"] == "5c2b8e1d-7a4f-4c3e-9b6a-1d0e2f3a4b5c"
        assert (
            parameters["alertWebhookUrl"]["value"]
            == _typical_azd_environment()["REGISTRAR_ALERT_WEBHOOK_URL"]
        )
        assert parameters["alertEmailAddresses"]["value"].split(",") == [
            "secops@contoso.example",
            "identity-team@contoso.example",
        ]
    else:
        assert parameters["tenantCredentialsBase64"]["value"] == ""
        assert parameters["apiClientId"]["value"] == ""
        assert parameters["alertWebhookUrl"]["value"] == ""


def test_the_emulation_catches_a_json_value_passed_as_plain_text() -> None:
    """The check above would have caught the original mapping of REGISTRAR_TENANT_CREDENTIALS."""
    broken = '{"parameters": {"tenantCredentials": {"value": "${REGISTRAR_TENANT_CREDENTIALS=}"}}}'
    text = broken.replace("${REGISTRAR_TENANT_CREDENTIALS=}", _documented_tenant_credentials())
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_deploy_doc_encodes_json_settings_for_azd() -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    assert "azd env set REGISTRAR_TENANT_CREDENTIALS_B64" in doc
    assert "printf '%s' \"$TENANTS\" | base64 | tr -d '\\n'" in doc
    assert "[Convert]::ToBase64String" in doc  # the PowerShell equivalent
    assert "azd env set REGISTRAR_TENANT_CREDENTIALS " not in doc
    assert "azd env set REGISTRAR_API_CLIENT_ID" in doc
    assert "REGISTRAR_EXTRA_APP_SETTINGS_B64" in doc
    # first `azd up`: the Graph grant can race Entra replication of the new identity
    assert "Not a valid reference update" in doc and "azd provision" in doc


def test_funcignore_keeps_development_files_out_of_the_package() -> None:
    lines = {
        line.strip()
        for line in (REPO_ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {
        ".venv",
        "node_modules",
        "tests",
        "devstack",
        "benchmarks",
        "docs",
        "infra",
        ".devstack",
        "local.settings*.json",
        ".git*",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
    }
    assert required <= lines, f".funcignore misses {sorted(required - lines)}"
    for kept in ("function_app.py", "host.json", "requirements.txt", "functions"):
        assert kept not in lines
