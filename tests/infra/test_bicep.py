"""infra/bicep, parsed by pycep-parser: resources, identities, roles, events, no secrets.

No Bicep compiler can run here, so these tests check what the compiler would not (least
privilege, identity-only access) and part of what it would (module parameters, parse errors).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from functions.resources import QUEUES, TABLES
from tests.infra.bicep_tree import (
    BICEP_DIR,
    REPO_ROOT,
    accessor,
    bicep_files,
    body,
    condition,
    description,
    function_calls,
    loop,
    parse,
    resolve,
    resources,
    strings,
    tree_of,
)

# Built-in role definition ids (shared/REFERENCE.md; Azure built-in roles).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
KEY_VAULT_CERTIFICATES_OFFICER = "a4417e6f-fecd-4de8-b567-7b0420556985"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

KEY_VAULT_EVENT_TYPES = {
    f"Microsoft.KeyVault.{kind}{event}"
    for kind in ("Secret", "Certificate")
    for event in ("NewVersionCreated", "NearExpiry", "Expired")
}
GRAPH_APP_ROLES = (
    "Application.ReadWrite.OwnedBy",
    "AppRoleAssignment.ReadWrite.All",
    "Application.Read.All",  # Graph requires it with AppRoleAssignment.ReadWrite.All to grant app roles
    "DelegatedPermissionGrant.ReadWrite.All",
    "Policy.Read.All",
)

ALL_FILES = bicep_files()
FILE_IDS = [str(path.relative_to(BICEP_DIR)) for path in ALL_FILES]


def test_the_expected_bicep_files_exist() -> None:
    names = set(FILE_IDS)
    assert {
        "main.bicep",
        "eventgrid-subscription.bicep",
        "modules/functionapp.bicep",
        "modules/storage.bicep",
        "modules/keyvault.bicep",
        "modules/monitoring.bicep",
        "modules/role-assignments.bicep",
        "modules/eventgrid-topic.bicep",
        "modules/graph-app-roles.bicep",
    } <= names


@pytest.mark.parametrize("path", ALL_FILES, ids=FILE_IDS)
def test_every_parameter_is_described(path: Path) -> None:
    tree = parse(path)
    undescribed = [name for name, param in tree.get("parameters", {}).items() if not description(param)]
    assert not undescribed, f"{path.name}: parameters without @description: {undescribed}"


@pytest.mark.parametrize("path", ALL_FILES, ids=FILE_IDS)
def test_no_key_or_secret_is_read_or_stored(path: Path) -> None:
    tree = parse(path)
    calls = {call["type"] for call in function_calls(tree)}
    list_calls = {call for call in calls if call.startswith("list")}
    assert not list_calls, f"{path.name} reads keys through {list_calls}"
    text = "\n".join(strings(tree)).lower()
    for forbidden in ("accountkey=", "instrumentationkey", "sharedaccesskey", "listkeys", "primarykey"):
        assert forbidden not in text, f"{path.name} mentions {forbidden}"
    for name, output in tree.get("outputs", {}).items():
        words = (name + " " + " ".join(strings(output["value"]))).lower()
        for forbidden in ("secret", "password", "connectionstring", "key()", "keys", "token"):
            assert forbidden not in words, f"{path.name}: output {name} looks like it carries a {forbidden}"


@pytest.mark.parametrize("path", ALL_FILES, ids=FILE_IDS)
def test_module_calls_match_module_parameters(path: Path) -> None:
    """What `bicep build` would reject: unknown parameters, missing required ones, missing files."""
    tree = parse(path)
    for name, module in tree.get("modules", {}).items():
        target = (path.parent / module["detail"]["path"]).resolve()
        assert target.is_file(), f"{path.name}: module {name} points at missing {target}"
        declared = parse(target).get("parameters", {})
        passed = set(body(module)["params"])
        assert passed <= set(declared), f"{name}: unknown parameters {passed - set(declared)}"
        required = {param for param, spec in declared.items() if spec["default"] is None}
        assert required <= passed, f"{name}: required parameters not passed {required - passed}"


def test_main_targets_the_subscription_with_a_tagged_resource_group() -> None:
    main = tree_of("main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    (group,) = resources(main, "Microsoft.Resources/resourceGroups").values()
    assert resolve(main, body(group)["tags"]) == {"'azd-env-name'": "environmentName"}
    for name, module in main["modules"].items():
        assert body(module)["scope"] == "rg", f"module {name} must deploy into the resource group"


def test_outputs_are_upper_snake_case_for_azd() -> None:
    outputs = tree_of("main.bicep")["outputs"]
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs), sorted(outputs)
    assert {
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_KEY_VAULT_URL",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_RESOURCE_GROUP",
        "AZURE_EVENTGRID_SYSTEM_TOPIC_NAME",
        "AZURE_EVENTGRID_DEADLETTER_CONTAINER",
        "AZURE_EVENTGRID_FUNCTION_NAME",
    } <= set(outputs)


def test_storage_account_is_identity_only_and_hardened() -> None:
    storage = tree_of("modules/storage.bicep")
    (account,) = resources(storage, "Microsoft.Storage/storageAccounts").values()
    properties = body(account)["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["allowBlobPublicAccess"] is False
    assert properties["supportsHttpsTrafficOnly"] is True
    for container in resources(storage, "Microsoft.Storage/storageAccounts/blobServices/containers").values():
        assert body(container)["properties"]["publicAccess"] == "None"


def test_queues_and_tables_are_exactly_those_of_resources_py() -> None:
    storage = tree_of("modules/storage.bicep")
    (queues,) = resources(storage, "Microsoft.Storage/storageAccounts/queueServices/queues").values()
    queue_loop = loop(queues)
    assert queue_loop is not None
    source = queue_loop["detail"]["array_name"]["function"]
    assert source["type"] == "concat"
    created = [name for arg in source["parameters"].values() for name in resolve(storage, arg)]
    assert sorted(created) == sorted([*QUEUES, *(f"{queue}-poison" for queue in QUEUES)])

    (tables,) = resources(storage, "Microsoft.Storage/storageAccounts/tableServices/tables").values()
    table_loop = loop(tables)
    assert table_loop is not None
    assert sorted(resolve(storage, table_loop["detail"]["array_name"])) == sorted(TABLES)


def test_function_app_is_flex_consumption_python_with_managed_identity() -> None:
    app_module = tree_of("modules/functionapp.bicep")
    (plan,) = resources(app_module, "Microsoft.Web/serverfarms").values()
    assert body(plan)["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    (site,) = resources(app_module, "Microsoft.Web/sites").values()
    site_body = body(site)
    assert site_body["identity"] == {"type": "SystemAssigned"}
    assert site_body["kind"] == "functionapp,linux"
    properties = site_body["properties"]
    assert properties["httpsOnly"] is True
    flex = properties["functionAppConfig"]
    assert flex["runtime"] == {"name": "python", "version": "3.11"}
    assert flex["scaleAndConcurrency"] == {
        "instanceMemoryMB": "instanceMemoryMB",
        "maximumInstanceCount": "maximumInstanceCount",
    }
    assert {"instanceMemoryMB", "maximumInstanceCount"} <= set(app_module["parameters"])
    deployment = flex["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {"type": "SystemAssignedIdentity"}
    assert "azdServiceName" in json.dumps(site_body["tags"])
    assert app_module["parameters"]["azdServiceName"]["default"] == "api"
    # main passes its own parameters through, so azd users can size the app.
    main_call = body(tree_of("main.bicep")["modules"]["functionApp"])["params"]
    assert main_call["instanceMemoryMB"] == "instanceMemoryMB"
    assert main_call["maximumInstanceCount"] == "maximumInstanceCount"
    policies = resources(app_module, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


def test_host_storage_and_telemetry_use_the_managed_identity() -> None:
    app_module = tree_of("modules/functionapp.bicep")
    configs = resources(app_module, "Microsoft.Web/sites/config").values()
    assert sorted(body(config)["name"] for config in configs) == ["appsettings", "authsettingsV2"]
    (config,) = [config for config in configs if body(config)["name"] == "appsettings"]
    applied = body(config)["properties"]["function"]
    assert applied["type"] == "union"
    assert list(applied["parameters"].values())[-2:] == ["hostSettings", "registrarSettings"]
    assert app_module["parameters"]["registrarSettings"]["type"] == "object"
    main_call = body(tree_of("main.bicep")["modules"]["functionApp"])["params"]
    assert main_call["registrarSettings"] == "registrarSettings"
    host = resolve(app_module, "hostSettings")
    # The endpoints the storage account reports (sovereign clouds), never an account name: the host
    # prefers AzureWebJobsStorage__accountName to the URIs and builds core.windows.net ones from it.
    assert "AzureWebJobsStorage__accountName" not in host
    for service in ("blob", "queue", "table"):
        assert host[f"AzureWebJobsStorage__{service}ServiceUri"] == f"{service}Endpoint"
        assert accessor(main_call[f"{service}Endpoint"]) == ["storage", "outputs", f"{service}Endpoint"]
        assert f"{service}Endpoint" in tree_of("modules/storage.bicep")["outputs"]
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage" not in host
    assert host["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    assert accessor(host["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == [
        "applicationInsights",
        "properties",
        "ConnectionString",
    ]
    registrar = resolve(tree_of("main.bicep"), "registrarSettings")
    assert registrar["REGISTRAR_CREDENTIAL"] == "managed_identity"
    assert accessor(registrar["REGISTRAR_KEY_VAULT_URL"]) == ["keyVault", "outputs", "keyVaultUri"]


def test_key_vault_uses_rbac_with_soft_delete_and_purge_protection() -> None:
    vault_module = tree_of("modules/keyvault.bicep")
    (vault,) = resources(vault_module, "Microsoft.KeyVault/vaults").values()
    properties = body(vault)["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] is True
    assert "accessPolicies" not in properties


def test_monitoring_has_local_auth_disabled() -> None:
    monitoring = tree_of("modules/monitoring.bicep")
    (insights,) = resources(monitoring, "Microsoft.Insights/components").values()
    assert body(insights)["properties"]["DisableLocalAuth"] is True
    (workspace,) = resources(monitoring, "Microsoft.OperationalInsights/workspaces").values()
    assert body(workspace)["properties"]["features"]["disableLocalAuth"] is True


def _role_assignments(tree: dict, file: str) -> dict[str, tuple[str, str, dict]]:
    """role definition id -> (scope symbol, resource symbol, guid() parameters), checked well-formed."""
    found = {}
    for symbol, assignment in resources(tree, "Microsoft.Authorization/roleAssignments").items():
        config = body(assignment)
        definition = config["properties"]["roleDefinitionId"]["function"]
        assert definition["type"] == "subscription_resource_id", f"{file}:{symbol}"
        assert definition["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        role_id = resolve(tree, definition["parameters"]["resource_name_1"])
        name = config["name"]["function"]
        assert name["type"] == "guid", f"{file}:{symbol} must be named by guid()"
        # Deterministic and unique: the scope, the principal and the role all go into the name.
        assert accessor(name["parameters"]["base_string"]) == [config["scope"], "id"], f"{file}:{symbol}"
        assert resolve(tree, list(name["parameters"].values())[-1]) == role_id, f"{file}:{symbol}"
        found[role_id] = (config["scope"], symbol, name["parameters"])
    return found


def test_function_identity_roles_are_scoped_and_named_by_guid() -> None:
    roles_module = tree_of("modules/role-assignments.bicep")
    found = _role_assignments(roles_module, "role-assignments.bicep")
    scopes = {role: scope for role, (scope, _, _) in found.items()}
    assert scopes == {
        STORAGE_BLOB_DATA_OWNER: "storage",
        STORAGE_QUEUE_DATA_CONTRIBUTOR: "storage",
        STORAGE_TABLE_DATA_CONTRIBUTOR: "storage",
        KEY_VAULT_SECRETS_OFFICER: "keyVault",
        KEY_VAULT_CERTIFICATES_OFFICER: "keyVault",
        MONITORING_METRICS_PUBLISHER: "applicationInsights",
    }
    for _, _, guid_parameters in found.values():
        assert "principalId" in guid_parameters.values()
    scoped = {
        symbol: resource["type"]
        for symbol, resource in roles_module["resources"].items()
        if resource["existing"] is True
    }
    assert scoped == {
        "storage": "Microsoft.Storage/storageAccounts",
        "keyVault": "Microsoft.KeyVault/vaults",
        "applicationInsights": "Microsoft.Insights/components",
    }


def test_main_grants_roles_to_the_function_and_to_the_deploying_user() -> None:
    main = tree_of("main.bicep")
    role_calls = {
        name: module
        for name, module in main["modules"].items()
        if module["detail"]["path"] == "modules/role-assignments.bicep"
    }
    assert set(role_calls) == {"functionRoles", "userRoles"}
    function_call = body(role_calls["functionRoles"])["params"]
    assert accessor(function_call["principalId"]) == ["functionApp", "outputs", "principalId"]
    assert function_call["principalType"] == "ServicePrincipal"
    assert "applicationInsightsName" in function_call
    assert condition(role_calls["functionRoles"]) is None
    user_call = body(role_calls["userRoles"])["params"]
    assert user_call["principalId"] == "principalId"
    user_condition = json.dumps(condition(role_calls["userRoles"]))
    assert '"empty"' in user_condition and '"principalId"' in user_condition
    assert main["parameters"]["principalId"]["default"] == ""


def test_event_grid_topic_watches_the_vault_and_may_dead_letter() -> None:
    topic_module = tree_of("modules/eventgrid-topic.bicep")
    (topic,) = resources(topic_module, "Microsoft.EventGrid/systemTopics").values()
    config = body(topic)
    assert accessor(config["properties"]["source"]) == ["keyVault", "id"]
    assert config["properties"]["topicType"] == "Microsoft.KeyVault.vaults"
    assert config["identity"] == {"type": "SystemAssigned"}
    found = _role_assignments(topic_module, "eventgrid-topic.bicep")
    assert set(found) == {STORAGE_BLOB_DATA_CONTRIBUTOR}
    scope, symbol, _ = found[STORAGE_BLOB_DATA_CONTRIBUTOR]
    assert scope == "deadLetterContainer"
    writer = body(topic_module["resources"][symbol])["properties"]
    assert accessor(writer["principalId"]) == ["systemTopic", "identity", "principalId"]


def test_event_subscription_filters_key_vault_events_and_dead_letters() -> None:
    subscription_file = tree_of("eventgrid-subscription.bicep")
    (subscription,) = resources(
        subscription_file, "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    ).values()
    properties = body(subscription)["properties"]
    destination = properties["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"] == "${functionApp.id}/functions/${functionName}"
    assert subscription_file["parameters"]["functionName"]["default"] == "keyvault_events"
    assert set(properties["filter"]["includedEventTypes"]) == KEY_VAULT_EVENT_TYPES
    assert len(properties["filter"]["includedEventTypes"]) == 6
    assert properties["eventDeliverySchema"] == "EventGridSchema"
    retry = properties["retryPolicy"]
    assert {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"} <= set(retry)
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert (
        dead_letter["deadLetterDestination"]["properties"]["blobContainerName"] == "deadLetterContainerName"
    )
    main = tree_of("main.bicep")
    assert main["parameters"]["eventGridFunctionName"]["default"] == "keyvault_events"
    # Created after code deployment: off in the first provision, on only when asked.
    assert main["parameters"]["createEventSubscription"]["default"] is False
    assert condition(main["modules"]["eventGridSubscription"]) == "createEventSubscription"


def test_graph_app_roles_come_from_the_catalogue_and_can_be_left_to_an_admin() -> None:
    config = json.loads((BICEP_DIR / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"] == (
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"
    )
    graph_module = tree_of("modules/graph-app-roles.bicep")
    assert "microsoftGraphV1" in graph_module["extensions"]
    (graph_sp,) = resources(graph_module, "Microsoft.Graph/servicePrincipals", existing=True).values()
    assert resolve(graph_module, body(graph_sp)["appId"]) == "00000003-0000-0000-c000-000000000000"
    assigned = resources(graph_module, "Microsoft.Graph/appRoleAssignedTo")
    assert set(assigned) == {"appRoleAssignments", "auditLogRead", "ownershipRoleAssignments"}
    assignments = assigned["appRoleAssignments"]
    assignment_loop = loop(assignments)
    assert assignment_loop is not None
    roles = resolve(graph_module, assignment_loop["detail"]["array_name"])
    catalogue = json.loads(
        (REPO_ROOT / "functions/profiles/resources/microsoft-graph.json").read_text(encoding="utf-8")
    )
    app_role_ids = {role["value"]: role["id"] for role in catalogue["appRoles"]}
    assert {role["name"]: role["id"] for role in roles} == {
        name: app_role_ids[name] for name in GRAPH_APP_ROLES
    }
    assignment = body(assignments)
    assert accessor(assignment["resourceId"]) == ["microsoftGraph", "id"]
    assert assignment["principalId"] == "principalId"
    # Application.ReadWrite.All (and Directory.Read.All, to resolve the owner) only when a deployment
    # opts in (adoptionTakesOwnership, off by default; docs/security.md).
    ownership = assigned["ownershipRoleAssignments"]
    assert loop(ownership)["detail"]["array_name"] == "ownershipGrants"
    assert {role["name"]: role["id"] for role in resolve(graph_module, "ownershipAppRoles")} == {
        name: app_role_ids[name] for name in ("Application.ReadWrite.All", "Directory.Read.All")
    }
    assert graph_module["parameters"]["grantApplicationReadWriteAll"]["default"] is False
    assert body(ownership) == assignment
    main = tree_of("main.bicep")
    assert main["parameters"]["adoptionTakesOwnership"]["type"] == "bool"
    assert main["parameters"]["adoptionTakesOwnership"]["default"] is False
    assert main["parameters"]["grantGraphRoles"]["type"] == "bool"
    assert condition(main["modules"]["graphAppRoles"]) == "grantGraphRoles"
    call = body(main["modules"]["graphAppRoles"])["params"]
    assert accessor(call["principalId"]) == ["functionApp", "outputs", "principalId"]
    # AuditLog.Read.All (proof of use) only with signInProof, through the same grant.
    audit = assigned["auditLogRead"]
    assert (
        condition(audit) == "grantAuditLogRead"
        and graph_module["parameters"]["grantAuditLogRead"]["default"] is False
    )
    audit_role = resolve(graph_module, "auditLogReadRole")
    assert audit_role == {"name": "AuditLog.Read.All", "id": app_role_ids["AuditLog.Read.All"]}
    assert accessor(body(audit)["resourceId"]) == ["microsoftGraph", "id"]
    assert body(audit)["principalId"] == "principalId"
    assert call["grantAuditLogRead"] == "signInProof"
    assert main["parameters"]["signInProof"]["type"] == "bool"
    assert call["grantApplicationReadWriteAll"] == "adoptionTakesOwnership"
    manual = (REPO_ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    for name in GRAPH_APP_ROLES:
        assert app_role_ids[name] in manual, f"docs/deploy.md lacks the manual grant of {name}"


def test_tenant_credentials_come_base64_encoded_from_azd_and_win_over_the_plain_parameter() -> None:
    main = tree_of("main.bicep")
    for name in ("tenantCredentials", "tenantCredentialsBase64"):
        assert main["parameters"][name]["type"] == "string"
        assert main["parameters"][name]["default"] == ""
    assert resolve(main, "registrarSettings")["REGISTRAR_TENANT_CREDENTIALS"] == "effectiveTenantCredentials"
    chosen = resolve(main, "effectiveTenantCredentials")["operator"]
    assert chosen["type"] == "conditional"
    operands = chosen["operands"]
    assert operands["condition"]["function"] == {
        "type": "empty",
        "parameters": {"item_to_test": "tenantCredentialsBase64"},
    }
    assert operands["true_value"] == "tenantCredentials"
    assert operands["false_value"]["function"] == {
        "type": "base64_to_string",
        "parameters": {"base64_value": "tenantCredentialsBase64"},
    }


def _auth_settings() -> dict:
    app_module = tree_of("modules/functionapp.bicep")
    configs = resources(app_module, "Microsoft.Web/sites/config")
    (auth,) = [resource for resource in configs.values() if body(resource)["name"] == "authsettingsV2"]
    return auth


def test_easy_auth_validates_api_tokens_only_when_an_api_client_id_is_given() -> None:
    app_module = tree_of("modules/functionapp.bicep")
    auth = _auth_settings()
    assert condition(auth) == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": "apiClientId"}}}
            },
        }
    }
    assert app_module["parameters"]["apiClientId"]["default"] == ""
    main = tree_of("main.bicep")
    assert main["parameters"]["apiClientId"]["default"] == ""
    assert body(main["modules"]["functionApp"])["params"]["apiClientId"] == "apiClientId"

    config = body(auth)
    assert config["parent"] == "functionApp"
    properties = config["properties"]
    assert properties["platform"]["enabled"] is True
    # Function keys and the queue keep working: a request without a token still reaches the functions.
    assert properties["globalValidation"] == {
        "requireAuthentication": False,
        "unauthenticatedClientAction": "AllowAnonymous",
    }
    entra = properties["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True
    assert entra["registration"]["clientId"] == "apiClientId"
    assert entra["registration"]["openIdIssuer"] == (
        "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    )
    assert entra["validation"]["allowedAudiences"] == ["api://${apiClientId}", "apiClientId"]
    assert properties["login"]["tokenStore"]["enabled"] is False
    # Token validation only: no client secret, in any of the shapes authsettingsV2 knows.
    keys = {key.lower() for key in _keys(properties)}
    assert not {key for key in keys if "secret" in key or "thumbprint" in key}, keys
    assert "secret" not in json.dumps(properties).lower()


def _keys(node: object) -> list[str]:
    found: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            found.extend(current)
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found


def test_extra_app_settings_are_kept_but_never_override_the_templates_own() -> None:
    app_module = tree_of("modules/functionapp.bicep")
    (app_settings,) = [
        resource
        for resource in resources(app_module, "Microsoft.Web/sites/config").values()
        if body(resource)["name"] == "appsettings"
    ]
    merged = body(app_settings)["properties"]["function"]
    assert merged["type"] == "union"
    order = list(merged["parameters"].values())
    # union() lets a later object win: the extra settings come first, so the template's win.
    assert order == ["extraAppSettings", "hostSettings", "registrarSettings"]
    assert app_module["parameters"]["extraAppSettings"]["type"] == "object"
    assert app_module["parameters"]["extraAppSettings"]["default"] == {}

    # Emulate union() on the settings the template resolves to.
    host = resolve(app_module, "hostSettings")
    registrar = resolve(tree_of("main.bicep"), "registrarSettings")
    extra = {
        "REGISTRAR_ENVIRONMENT": "local",
        "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL": "true",
        "REGISTRAR_CREDENTIAL": "client_secret",
        "AzureWebJobsStorage__credential": "connectionstring",
        "MY_TEAM_SETTING": "kept",
    }
    applied: dict[str, object] = {}
    for name in order:
        applied.update(
            {"extraAppSettings": extra, "hostSettings": host, "registrarSettings": registrar}[name]
        )
    assert applied["REGISTRAR_ENVIRONMENT"] == "azure"
    assert applied["REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL"] == "false"
    assert applied["REGISTRAR_CREDENTIAL"] == "managed_identity"
    assert applied["AzureWebJobsStorage__credential"] == "managedidentity"
    assert applied["MY_TEAM_SETTING"] == "kept"

    # main.bicep: the object parameter (direct deployments) and the base64 one (azd), merged.
    main = tree_of("main.bicep")
    assert main["parameters"]["extraAppSettings"]["default"] == {}
    assert main["parameters"]["extraAppSettingsBase64"]["default"] == ""
    assert body(main["modules"]["functionApp"])["params"]["extraAppSettings"] == "effectiveExtraAppSettings"
    effective = resolve(main, "effectiveExtraAppSettings")["function"]
    assert effective["type"] == "union"
    first, second = effective["parameters"].values()
    assert first == "extraAppSettings"
    decoded = json.dumps(second)
    assert '"base64_to_string"' in decoded and '"extraAppSettingsBase64"' in decoded and '"json"' in decoded
