"""azure.yaml, the postdeploy hooks, main.parameters.json and .funcignore fit together."""

from __future__ import annotations

import json
import os
import re
import subprocess

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
