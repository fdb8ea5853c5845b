"""infra/bicep/modules/alerts.bicep, parsed by pycep-parser: the action group, the scheduled query
rules (their identity and its one role) and the workbook, and how main.bicep and azd feed them.

The queries themselves are held to the telemetry schema in test_telemetry_queries.py.
"""

from __future__ import annotations

import json

from tests.infra.bicep_tree import (
    BICEP_DIR,
    REPO_ROOT,
    accessor,
    body,
    description,
    loop,
    resolve,
    resources,
    tree_of,
)

LOG_ANALYTICS_READER = "73c42c96-874c-492b-b04d-ab87d138a893"


def alerts() -> dict:
    return tree_of("modules/alerts.bicep")


def test_telemetry_lands_in_the_workspace_the_rules_query() -> None:
    """Workspace-based Application Insights: its data are the workspace's App* tables."""
    monitoring = tree_of("modules/monitoring.bicep")
    (insights,) = resources(monitoring, "Microsoft.Insights/components").values()
    assert accessor(body(insights)["properties"]["WorkspaceResourceId"]) == ["logAnalytics", "id"]
    assert body(insights)["properties"]["IngestionMode"] == "LogAnalytics"
    (workspace,) = resources(alerts(), "Microsoft.OperationalInsights/workspaces", existing=True).values()
    assert body(workspace)["name"] == "logAnalyticsName"
    call = body(tree_of("main.bicep")["modules"]["alerts"])["params"]
    assert accessor(call["logAnalyticsName"]) == ["monitoring", "outputs", "logAnalyticsName"]


def test_action_group_mails_the_given_addresses_and_calls_the_optional_webhook() -> None:
    tree = alerts()
    (group,) = resources(tree, "Microsoft.Insights/actionGroups").values()
    config = body(group)
    assert config["location"] == "global"
    properties = config["properties"]
    assert properties["enabled"] is True
    assert len(properties["groupShortName"]) <= 12
    emails = properties["emailReceivers"]
    assert emails["loop_type"]["detail"]["array_name"] == "emailAddresses"
    assert emails["config"]["useCommonAlertSchema"] is True
    assert emails["config"]["emailAddress"]["function"]["type"] == "trim"
    # emailAddresses: nothing for an empty parameter, else the comma-separated list
    chosen = resolve(tree, "emailAddresses")["operator"]
    assert chosen["type"] == "conditional"
    assert chosen["operands"]["true_value"] == []
    assert chosen["operands"]["false_value"]["function"]["type"] == "split"
    webhooks = properties["webhookReceivers"]
    source = webhooks["loop_type"]["detail"]["array_name"]["operator"]
    assert source["operands"]["condition"]["function"] == {
        "type": "empty",
        "parameters": {"item_to_test": "alertWebhookUrl"},
    }
    assert source["operands"]["true_value"] == [] and source["operands"]["false_value"] == ["alertWebhookUrl"]
    assert webhooks["config"]["serviceUri"] == "url"
    assert webhooks["config"]["useCommonAlertSchema"] is True


def test_the_webhook_url_is_a_secure_parameter_all_the_way() -> None:
    """A Teams workflow or ServiceNow URL carries its own signature: never in the deployment history."""
    for tree, name in ((alerts(), "alertWebhookUrl"), (tree_of("main.bicep"), "alertWebhookUrl")):
        decorators = {decorator["type"] for decorator in tree["parameters"][name]["decorators"]}
        assert "secure" in decorators
        assert tree["parameters"][name]["default"] == ""
    call = body(tree_of("main.bicep")["modules"]["alerts"])["params"]
    assert call["alertWebhookUrl"] == "alertWebhookUrl"
    assert call["alertEmailAddresses"] == "alertEmailAddresses"


def test_every_rule_is_a_log_alert_on_the_workspace_with_its_own_identity() -> None:
    tree = alerts()
    (rules,) = resources(tree, "Microsoft.Insights/scheduledQueryRules").values()
    assert rules["api_version"] >= "2023-12-01" and "preview" not in rules["api_version"]
    rule_loop = loop(rules)
    assert rule_loop is not None and rule_loop["detail"]["array_name"] == "alertRules"
    config = body(rules)
    assert config["kind"] == "LogAlert"
    assert config["identity"] == {"type": "SystemAssigned"}
    properties = config["properties"]
    assert [accessor(scope) for scope in properties["scopes"]] == [["logAnalytics", "id"]]
    assert [accessor(group) for group in properties["actions"]["actionGroups"]] == [["actionGroup", "id"]]
    assert properties["enabled"] is True and properties["autoMitigate"] is True
    for field in ("severity", "description", "displayName", "evaluationFrequency", "windowSize"):
        assert accessor(properties[field]) == ["rule", field]
    (criterion,) = properties["criteria"]["allOf"]
    assert accessor(criterion["query"]) == ["rule", "query"]
    assert accessor(criterion["metricMeasureColumn"]) == ["rule", "measure"]
    assert criterion["dimensions"]["config"]["operator"] == "Include"
    assert criterion["failingPeriods"] == {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1}
    windows = {"PT5M", "PT10M", "PT15M", "PT30M", "PT45M", "PT1H", "PT6H", "PT12H", "P1D"}
    for rule in resolve(tree, "alertRules"):
        assert rule["evaluationFrequency"] in windows, rule["name"]
        assert rule["windowSize"] in windows | {"missedSweepWindow"}, rule["name"]


def test_each_rule_identity_may_only_read_the_workspace() -> None:
    tree = alerts()
    (readers,) = resources(tree, "Microsoft.Authorization/roleAssignments").values()
    reader_loop = loop(readers)
    assert reader_loop is not None and reader_loop["detail"]["array_name"] == "alertRules"
    index = reader_loop["detail"]["index_name"]
    config = body(readers)
    assert config["scope"] == "logAnalytics"
    properties = config["properties"]
    definition = properties["roleDefinitionId"]["function"]
    assert definition["type"] == "subscription_resource_id"
    assert resolve(tree, definition["parameters"]["resource_name_1"]) == LOG_ANALYTICS_READER
    principal = properties["principalId"]["operator"]["operands"]
    assert principal["operand_1"]["operator"]["operands"] == {"operand_1": "rules", "operand_2": index}
    assert properties["principalType"] == "ServicePrincipal"
    # Deterministic and unique per rule: workspace, rule and role in the name.
    name = config["name"]["function"]
    assert name["type"] == "guid"
    parts = list(name["parameters"].values())
    assert accessor(parts[0]) == ["logAnalytics", "id"]
    assert resolve(tree, parts[-1]) == LOG_ANALYTICS_READER


def test_workbook_is_shared_loaded_from_its_json_and_linked_to_the_api() -> None:
    tree = alerts()
    (workbook,) = resources(tree, "Microsoft.Insights/workbooks").values()
    config = body(workbook)
    assert config["kind"] == "shared"
    assert config["name"]["function"]["type"] == "guid"
    properties = config["properties"]
    assert properties["category"] == "workbook"
    assert accessor(properties["sourceId"]) == ["logAnalytics", "id"]
    outer = properties["serializedData"]["function"]
    assert outer["type"] == "replace"
    assert outer["parameters"]["old_string"] == "__LOG_ANALYTICS_WORKSPACE_ID__"
    assert accessor(outer["parameters"]["new_string"]) == ["logAnalytics", "id"]
    replace = outer["parameters"]["original_string"]["function"]
    assert replace["type"] == "replace"
    load = replace["parameters"]["original_string"]["function"]
    assert load["type"] == "load_text_content"
    path = (BICEP_DIR / "modules" / load["parameters"]["file_path"]).resolve()
    assert path == (BICEP_DIR / "workbooks" / "registrar.workbook.json").resolve()
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["version"] == "Notebook/1.0"
    assert document["fallbackResourceIds"] == ["__LOG_ANALYTICS_WORKSPACE_ID__"]
    assert replace["parameters"]["old_string"] == "__REGISTRAR_API_URL__"
    assert replace["parameters"]["new_string"] == "registrarApiUrl"
    call = body(tree_of("main.bicep")["modules"]["alerts"])["params"]
    assert call["registrarApiUrl"] == "https://${functionApp.outputs.defaultHostName}"


def test_main_exposes_the_alert_settings_and_azd_maps_them() -> None:
    main = tree_of("main.bicep")
    for name in (
        "alertEmailAddresses",
        "alertWebhookUrl",
        "alertRotationFailures",
        "alertMissedSweepWindow",
        "alertRunbookUrl",
    ):
        assert name in main["parameters"], name
        assert description(main["parameters"][name])
    assert main["parameters"]["alertRotationFailures"]["default"] == 3
    assert main["parameters"]["alertMissedSweepWindow"]["default"] == "PT30M"
    call = body(main["modules"]["alerts"])["params"]
    assert call["rotationFailuresBeforeAlert"] == "alertRotationFailures"
    assert call["missedSweepWindow"] == "alertMissedSweepWindow"
    assert call["runbookUrl"] == "alertRunbookUrl"
    parameters = json.loads((BICEP_DIR / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["alertEmailAddresses"]["value"] == "${REGISTRAR_ALERT_EMAILS=}"
    assert parameters["alertWebhookUrl"]["value"] == "${REGISTRAR_ALERT_WEBHOOK_URL=}"
    outputs = main["outputs"]
    assert accessor(outputs["AZURE_ALERT_ACTION_GROUP_ID"]["value"]) == ["alerts", "outputs", "actionGroupId"]
    assert accessor(outputs["AZURE_WORKBOOK_ID"]["value"]) == ["alerts", "outputs", "workbookId"]


def test_deploy_doc_and_readme_point_at_the_alerts() -> None:
    deploy = (REPO_ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    for name in tree_of("main.bicep")["parameters"]:
        if name.startswith("alert"):
            assert f"`{name}`" in deploy, f"docs/deploy.md does not describe {name}"
    assert "azd env set REGISTRAR_ALERT_EMAILS" in deploy
    assert "REGISTRAR_ALERT_WEBHOOK_URL" in deploy
    assert "Log Analytics Reader" in deploy
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "[docs/operations.md](docs/operations.md)" in readme
