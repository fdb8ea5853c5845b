// What reaches a person when something puts a credential at risk: an action group (email, and an
// optional webhook such as a Teams workflow or ServiceNow), one scheduled query alert rule per
// failure Registrar signals, and a workbook over the same telemetry.
//
// Every query reads the Log Analytics workspace behind the workspace-based Application Insights
// (tables AppTraces, AppMetrics, AppExceptions; a log event's fields in Properties), and names only
// what functions/signals.py defines: tests/infra/test_telemetry_queries.py holds them to it.

@description('Azure region of the alert rules and the workbook (the action group is global).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the Log Analytics workspace behind Application Insights, which every query reads.')
param logAnalyticsName string

@description('Name of the action group.')
param actionGroupName string

@description('Comma-separated email addresses the action group notifies (no spaces needed); empty: no email receiver.')
param alertEmailAddresses string = ''

@description('HTTPS URL of a webhook the action group also calls with the common alert schema (a Teams workflow, a ServiceNow inbound endpoint); empty: none. Secure: such URLs carry their own signature.')
@secure()
param alertWebhookUrl string = ''

@description('Rotation failures in a row of one credential that raise the rotation-failing alert (as REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT).')
@minValue(1)
param rotationFailuresBeforeAlert int = 3

@description('ISO 8601 window of two rotation schedule periods: no completed sweep in it raises the missed-sweep alert (the default schedule runs every 15 minutes, so PT30M).')
param missedSweepWindow string = 'PT30M'

@description('Function exceptions in 15 minutes above which the exceptions alert fires.')
@minValue(0)
param exceptionsBeforeAlert int = 0

@description('URL of docs/operations.md where operators read it (your repository\'s copy); each alert description links its section.')
param runbookUrl string = 'docs/operations.md'

@description('Base URL of the Registrar API (https://<function app host>), for the workbook\'s links to registrations.')
param registrarApiUrl string

// Log Analytics Reader: read and query the workspace (Azure built-in role), all an alert rule's
// identity needs to run its query.
var logAnalyticsReaderRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'

var emailAddresses = empty(alertEmailAddresses) ? [] : split(alertEmailAddresses, ',')

// One entry per rule. `measure` is the column the query returns per dimension; the rule fires
// when it compares to `threshold` with `operator`.
var alertRules = [
  {
    name: 'credential-at-risk'
    displayName: 'Registrar: credential at risk'
    severity: 1
    description: 'A credential is at risk (the alert\'s reason: near_expiry, rotation_failing, expired, unconfirmed or unmanaged). Open the workbook\'s at-risk table, read the registration\'s lastError (GET /api/registrations/{id}), then rotate it (POST /api/registrations/{id}/rotate) or reach the connector\'s owner. Runbook: ${runbookUrl}#credential-at-risk'
    // The snapshot's gauge keeps the alert fired while any credential is at risk and resolves it
    // once none is (a gauge point carries its value in Sum); the daily credential.at_risk events
    // raise it even if no snapshot ran.
    query: '''
union
    (AppMetrics
    | where Name == "registrar.credentials.at_risk"
    | project reason = tostring(Properties.reason), atRisk = Sum),
    (AppTraces
    | where tostring(Properties.signal) == "credential.at_risk"
    | summarize atRisk = todouble(dcount(tostring(Properties.key_id))) by reason = tostring(Properties.reason))
| summarize credentialsAtRisk = max(atRisk) by reason
'''
    measure: 'credentialsAtRisk'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'reason'
    ]
    windowSize: 'PT1H'
    evaluationFrequency: 'PT15M'
  }
  {
    name: 'rotation-failing'
    displayName: 'Registrar: rotation failed ${rotationFailuresBeforeAlert} times in a row'
    severity: 1
    description: 'A credential\'s rotation failed ${rotationFailuresBeforeAlert} or more times in a row; the old credential works until its end. Read the registration\'s lastError (GET /api/registrations/{id}), fix the Graph or Key Vault permission it names, then rotate it (POST /api/registrations/{id}/rotate). Runbook: ${runbookUrl}#rotation-failing'
    query: '''
AppTraces
| where tostring(Properties.signal) == "rotation.failed"
| summarize longestFailureRun = max(toint(Properties.failures_in_a_row)) by profile = tostring(Properties.profile)
'''
    measure: 'longestFailureRun'
    operator: 'GreaterThanOrEqual'
    threshold: rotationFailuresBeforeAlert
    dimensions: [
      'profile'
    ]
    windowSize: 'PT6H'
    evaluationFrequency: 'PT15M'
  }
  {
    name: 'registration-failed'
    displayName: 'Registrar: registration failed'
    severity: 2
    description: 'A registration ended failed and what was made for it was removed; the requester got no app. Read its lastError (GET /api/registrations?status=failed), fix the cause, and resubmit with a new requestId. Runbook: ${runbookUrl}#registration-failed'
    query: '''
AppTraces
| where tostring(Properties.signal) == "registration.failed"
| summarize failedRegistrations = dcount(tostring(Properties.registration_id)) by profile = tostring(Properties.profile)
'''
    measure: 'failedRegistrations'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'profile'
    ]
    windowSize: 'PT30M'
    evaluationFrequency: 'PT15M'
  }
  {
    name: 'delivery-dead-lettered'
    displayName: 'Registrar: webhook delivery dead-lettered'
    severity: 2
    description: 'A signed webhook event was retried to the end of its schedule and dead-lettered: a connector missed a credential change. Tell the connector\'s owner to read the credential from Key Vault, then fix the receiver (GET /api/registrations/{id}/deliveries?status=dead_lettered shows its answers). Runbook: ${runbookUrl}#delivery-dead-lettered'
    query: '''
AppTraces
| where tostring(Properties.signal) == "delivery.dead_lettered"
| summarize deadLetteredDeliveries = count() by eventType = tostring(Properties.event_type)
'''
    measure: 'deadLetteredDeliveries'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'eventType'
    ]
    windowSize: 'PT30M'
    evaluationFrequency: 'PT15M'
  }
  {
    name: 'message-poisoned'
    displayName: 'Registrar: message on a poison queue'
    severity: 2
    description: 'A queue message failed every attempt and sits on a -poison queue: its request, rotation or delivery is not being done. Peek the poison queue, fix the cause, then replay or delete the message. Runbook: ${runbookUrl}#message-poisoned'
    // A new poison message (the event) or one still waiting (the snapshot's gauge).
    query: '''
union
    (AppTraces
    | where tostring(Properties.signal) == "message.poisoned"
    | project queue = tostring(Properties.queue), messages = 1.0),
    (AppMetrics
    | where Name == "registrar.queue.poison_messages"
    | project queue = tostring(Properties.queue), messages = Sum)
| summarize poisonMessages = max(messages) by queue
'''
    measure: 'poisonMessages'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'queue'
    ]
    windowSize: 'PT30M'
    evaluationFrequency: 'PT15M'
  }
  {
    name: 'function-exceptions'
    displayName: 'Registrar: function exceptions'
    severity: 2
    description: 'Registrar\'s functions raised unhandled exceptions. Group them by ExceptionType and ProblemId in AppExceptions; fix a lost role assignment (403), report anything else as a bug. Runbook: ${runbookUrl}#function-exceptions'
    query: '''
AppExceptions
| summarize unhandledExceptions = count() by ExceptionType
'''
    measure: 'unhandledExceptions'
    operator: 'GreaterThan'
    threshold: exceptionsBeforeAlert
    dimensions: [
      'ExceptionType'
    ]
    windowSize: 'PT15M'
    evaluationFrequency: 'PT15M'
  }
  {
    name: 'rotation-sweep-missed'
    displayName: 'Registrar: no rotation sweep completed'
    severity: 1
    description: 'No rotation sweep completed in two schedule periods: nothing is rotated or checked for risk, and the other alerts go quiet. Check that the function app runs and lists its timer, and read its errors. Runbook: ${runbookUrl}#rotation-sweep-missed'
    // summarize without `by` answers one row even when no sweep logged, so silence counts as 0.
    query: '''
AppTraces
| where tostring(Properties.signal) == "rotation.sweep_completed"
| summarize completedSweeps = count()
'''
    measure: 'completedSweeps'
    operator: 'LessThan'
    threshold: 1
    dimensions: []
    windowSize: missedSweepWindow
    evaluationFrequency: 'PT15M'
  }
]

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2022-04-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'registrar'
    enabled: true
    emailReceivers: [
      for (address, i) in emailAddresses: {
        name: 'email-${i}'
        emailAddress: trim(address)
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: [
      for url in (empty(alertWebhookUrl) ? [] : [alertWebhookUrl]): {
        name: 'webhook'
        serviceUri: url
        useCommonAlertSchema: true
      }
    ]
  }
}

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in alertRules: {
    name: 'registrar-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    // The rule queries the workspace as this identity (Log Analytics Reader below), not as
    // whoever deployed it.
    identity: {
      type: 'SystemAssigned'
    }
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        logAnalytics.id
      ]
      evaluationFrequency: rule.evaluationFrequency
      windowSize: rule.windowSize
      autoMitigate: true
      // The identity gets its role only once the rule exists, so the service cannot run the
      // query as it at creation; tests/infra/test_telemetry_queries.py parses and binds every query
      // with Kusto.Language (Log Analytics' own parser) and holds its names to signals.py instead.
      skipQueryValidation: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Maximum'
            metricMeasureColumn: rule.measure
            operator: rule.operator
            threshold: rule.threshold
            dimensions: [
              for dimension in rule.dimensions: {
                name: dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

resource ruleReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (rule, i) in alertRules: {
    name: guid(logAnalytics.id, rules[i].id, logAnalyticsReaderRoleId)
    scope: logAnalytics
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRoleId)
      principalId: rules[i].identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'registrar-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Registrar: credentials, rotations and deliveries'
    category: 'workbook'
    sourceId: logAnalytics.id
    // The API URL goes into the workbook's RegistrarApiUrl parameter, which the at-risk table's
    // links to registrations use; the workspace is the resource its queries run on wherever the
    // workbook is opened from.
    serializedData: replace(replace(loadTextContent('../workbooks/registrar.workbook.json'), '__REGISTRAR_API_URL__', registrarApiUrl), '__LOG_ANALYTICS_WORKSPACE_ID__', logAnalytics.id)
  }
}

output actionGroupId string = actionGroup.id
output alertRuleNames array = [for rule in alertRules: 'registrar-${rule.name}']
output workbookId string = workbook.id
