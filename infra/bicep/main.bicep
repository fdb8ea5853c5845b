// Registrar on Azure: `azd up` provisions this, deploys the function app, then the postdeploy hook
// subscribes the keyvault_events function to Key Vault's events (eventgrid-subscription.bicep).
// Nothing here creates or outputs a key: every caller (the app, Event Grid, the deploying user)
// authenticates with Entra ID and holds only the data-plane roles it needs.

targetScope = 'subscription'

@description('azd environment name; names the resource group and seeds the unique resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region for every resource (must offer Flex Consumption).')
@minLength(1)
param location string

@description('Object id of the deploying user or principal (azd sets AZURE_PRINCIPAL_ID); empty to grant it nothing.')
param principalId string = ''

@description('Kind of the deploying principal: User for a person, ServicePrincipal for a CI identity.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Memory of each function app instance in MB (Flex Consumption: 512, 2048 or 4096).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Maximum instances the function app scales out to (40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Grant the function identity its Microsoft Graph app roles here (needs Privileged Role Administrator); false leaves it to an administrator (docs/deploy.md).')
param grantGraphRoles bool = true

@description('Name of the Event Grid-triggered function that receives Key Vault events.')
param eventGridFunctionName string = 'keyvault_events'

@description('Create the Event Grid subscription in this deployment; only once the code is deployed (the postdeploy hook normally does it).')
param createEventSubscription bool = false

@description('Entra tenant Registrar registers apps in (REGISTRAR_HOME_TENANT_ID); defaults to the subscription\'s tenant.')
param homeTenantId string = tenant().tenantId

@description('Entra authority host (REGISTRAR_AUTHORITY_HOST); change for sovereign clouds.')
param authorityHost string = 'https://login.microsoftonline.com'

@description('Microsoft Graph base URL (REGISTRAR_GRAPH_BASE_URL); change for sovereign clouds.')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('Six-field NCRONTAB schedule (UTC) of the rotation timer (REGISTRAR_ROTATION_SCHEDULE).')
param rotationSchedule string = '0 */15 * * * *'

@description('Six-field NCRONTAB schedule (UTC) of the inventory scan (REGISTRAR_INVENTORY_SCHEDULE): daily by default.')
param inventorySchedule string = '0 30 2 * * *'
@description('Six-field NCRONTAB schedule (UTC) of the resume sweep, which re-sends work whose worker died (REGISTRAR_RESUME_SCHEDULE).')
param resumeSchedule string = '*/15 * * * * *'

@description('ISO 8601 duration before expiry when a credential is rotated (REGISTRAR_ROTATION_LEAD_TIME).')
param rotationLeadTime string = 'P30D'

@description('Fraction of a credential\'s lifetime after which it is rotated, whichever comes first with the lead time (REGISTRAR_ROTATION_LIFETIME_FRACTION).')
param rotationLifetimeFraction string = '0.66'

@description('ISO 8601 duration old and new credentials both stay valid after a rotation (REGISTRAR_ROTATION_OVERLAP).')
param rotationOverlap string = 'P1D'

@description('ISO 8601 duration before its end when a credential with no verified successor is at risk (REGISTRAR_AT_RISK_WINDOW).')
param atRiskWindow string = 'P14D'

@description('Rotation failures in a row after which a credential is at risk (REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT).')
param rotationFailuresBeforeAlert string = '3'

@description('Count a sign-in with the new keyId as the connector\'s confirmation (after-confirm retirement). Needs AuditLog.Read.All granted to the app\'s identity and a Microsoft Entra ID P1 or P2 licence; off by default (REGISTRAR_SIGN_IN_PROOF).')
param signInProof bool = false

@description('ISO 8601 lifetime of a new credential unless the profile says otherwise (REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME).')
param defaultCredentialLifetime string = 'P180D'

@description('ISO 8601 upper bound on any credential lifetime (REGISTRAR_MAX_CREDENTIAL_LIFETIME).')
param maxCredentialLifetime string = 'P730D'

@description('Comma-separated permissions that need approval before they are granted (REGISTRAR_TIER0_PERMISSIONS); empty for the built-in list.')
param tier0Permissions string = ''

@description('Whether every registration of the custom profile waits for a Registrar.Approver, tier-0 permissions or not (REGISTRAR_CUSTOM_REQUIRES_APPROVAL: true or false; empty: false).')
param customRequiresApproval string = ''

@description('Grant Registrar Microsoft Graph Application.ReadWrite.All (with Directory.Read.All) so that adopting a hand-made app makes Registrar its owner without a person (REGISTRAR_ADOPTION_TAKES_OWNERSHIP). Off by default: Application.ReadWrite.All lets Registrar change every app registration of the tenant, not only its own (docs/security.md). Takes effect only with grantGraphRoles.')
param adoptionTakesOwnership bool = false

@description('Retry delays of a failed webhook delivery, comma-separated ISO 8601 durations, each under 6 days (empty: the built-in 5 s, 5 min, 30 min, 2 h, 5 h, 10 h); after the last one the delivery is dead-lettered.')
param webhookRetrySchedule string = ''

@description('Other tenants Registrar provisions into (REGISTRAR_TENANT_CREDENTIALS): JSON {"<tenant id>": {"clientId": "<multi-tenant app id>", "federated": true}}, one entry per tenant; empty: the home tenant only. No secret: the app trusts the function identity through a federated credential (docs/deploy.md, "Serving other tenants").')
param tenantCredentials string = ''

@description('The same JSON as tenantCredentials, base64-encoded; wins over tenantCredentials when set. azd passes it (REGISTRAR_TENANT_CREDENTIALS_B64): azd pastes environment values into main.parameters.json unescaped, so JSON there would break the file.')
param tenantCredentialsBase64 string = ''

@description('Application (client) id of the "Registrar API" app registration with the Registrar.Approver and Registrar.Admin app roles; set, App Service Authentication validates its tokens (docs/deploy.md, "App roles for people"); empty: off, and the role routes answer 403.')
param apiClientId string = ''

@description('App settings of your own, {"NAME": "value"}, kept on every deployment (the deployment replaces the whole collection: settings made in the portal are removed). The settings this template sets win on a clash.')
param extraAppSettings object = {}

@description('The same as extraAppSettings, as base64-encoded JSON (azd: REGISTRAR_EXTRA_APP_SETTINGS_B64); merged over extraAppSettings.')
param extraAppSettingsBase64 string = ''

@description('ISO 8601 duration to wait for a new credential to work through Entra\'s propagation delay (REGISTRAR_VERIFY_TIMEOUT).')
param verifyTimeout string = 'PT10M'

@description('How long a registration may stay accepted, provisioning or failing before the timer ends it as failed and removes what was made (REGISTRAR_PROVISIONING_DEADLINE, ISO 8601 duration; empty: PT1H).')
param provisioningDeadline string = ''

@description('Storage redundancy of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Days a deleted Key Vault secret or the vault stays recoverable (7-90); purge protection forbids earlier purges.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

@description('Days Log Analytics keeps Registrar\'s logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Comma-separated email addresses the alert action group notifies (REGISTRAR_ALERT_EMAILS); empty: no email.')
param alertEmailAddresses string = ''

@description('HTTPS webhook the alert action group also calls with the common alert schema, such as a Teams workflow or a ServiceNow inbound endpoint (REGISTRAR_ALERT_WEBHOOK_URL); empty: none.')
@secure()
param alertWebhookUrl string = ''

@description('Rotation failures in a row of one credential that raise the rotation-failing alert.')
@minValue(1)
param alertRotationFailures int = 3

@description('ISO 8601 duration of two rotationSchedule periods: no completed rotation sweep in it raises an alert (PT30M for the default 15-minute schedule).')
param alertMissedSweepWindow string = 'PT30M'

@description('URL of docs/operations.md (the runbooks) that the alert descriptions link to, e.g. your repository\'s copy.')
param alertRunbookUrl string = 'docs/operations.md'

var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var functionAppName = 'func-registrar-${resourceToken}'
var deploymentContainerName = 'deployment-package'
var deadLetterContainerName = 'eventgrid-deadletter'
// azd can only pass JSON through base64 (see tenantCredentialsBase64); the base64 form wins.
var effectiveTenantCredentials = empty(tenantCredentialsBase64) ? tenantCredentials : base64ToString(tenantCredentialsBase64)
var effectiveExtraAppSettings = union(extraAppSettings, empty(extraAppSettingsBase64) ? {} : json(base64ToString(extraAppSettingsBase64)))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: 'st${resourceToken}'
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    skuName: storageSkuName
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    keyVaultName: 'kv-${resourceToken}'
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
  }
}

// Every setting of local.settings.sample.json except the local-only ones (tests/infra checks this);
// the host's own settings (AzureWebJobsStorage__*, AzureWebJobsFeatureFlags, APPLICATIONINSIGHTS_*)
// are in functionapp.bicep.
var registrarSettings = {
  REGISTRAR_ENVIRONMENT: 'azure'
  REGISTRAR_CREDENTIAL: 'managed_identity'
  REGISTRAR_HOME_TENANT_ID: homeTenantId
  REGISTRAR_AUTHORITY_HOST: authorityHost
  REGISTRAR_GRAPH_BASE_URL: graphBaseUrl
  REGISTRAR_KEY_VAULT_URL: keyVault.outputs.keyVaultUri
  REGISTRAR_ROTATION_SCHEDULE: rotationSchedule
  REGISTRAR_INVENTORY_SCHEDULE: inventorySchedule
  REGISTRAR_RESUME_SCHEDULE: resumeSchedule
  REGISTRAR_ROTATION_LEAD_TIME: rotationLeadTime
  REGISTRAR_ROTATION_LIFETIME_FRACTION: rotationLifetimeFraction
  REGISTRAR_ROTATION_OVERLAP: rotationOverlap
  REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME: defaultCredentialLifetime
  REGISTRAR_MAX_CREDENTIAL_LIFETIME: maxCredentialLifetime
  REGISTRAR_TIER0_PERMISSIONS: tier0Permissions
  REGISTRAR_CUSTOM_REQUIRES_APPROVAL: customRequiresApproval
  REGISTRAR_ADOPTION_TAKES_OWNERSHIP: adoptionTakesOwnership ? 'true' : 'false'
  REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL: 'false'
  REGISTRAR_VERIFY_TIMEOUT: verifyTimeout
  REGISTRAR_PROVISIONING_DEADLINE: provisioningDeadline
  REGISTRAR_WEBHOOK_RETRY_SCHEDULE: webhookRetrySchedule
  REGISTRAR_AT_RISK_WINDOW: atRiskWindow
  REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT: rotationFailuresBeforeAlert
  REGISTRAR_SIGN_IN_PROOF: signInProof ? 'true' : 'false'
  REGISTRAR_TENANT_CREDENTIALS: effectiveTenantCredentials
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    planName: 'plan-${resourceToken}'
    functionAppName: functionAppName
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    registrarSettings: registrarSettings
    extraAppSettings: effectiveExtraAppSettings
    apiClientId: apiClientId
  }
}

// Alerts (action group + scheduled query rules) and the workbook, over the telemetry of
// functions/signals.py in the workspace behind Application Insights (docs/operations.md).
module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    actionGroupName: 'ag-registrar-${resourceToken}'
    alertEmailAddresses: alertEmailAddresses
    alertWebhookUrl: alertWebhookUrl
    rotationFailuresBeforeAlert: alertRotationFailures
    missedSweepWindow: alertMissedSweepWindow
    runbookUrl: alertRunbookUrl
    registrarApiUrl: 'https://${functionApp.outputs.defaultHostName}'
  }
}

module functionRoles 'modules/role-assignments.bicep' = {
  name: 'function-identity-roles'
  scope: rg
  params: {
    principalId: functionApp.outputs.principalId
    principalType: 'ServicePrincipal'
    storageAccountName: storage.outputs.storageAccountName
    keyVaultName: keyVault.outputs.keyVaultName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// The deploying user gets the same data roles (minus telemetry) so `func start` on their machine
// can run against these resources, as azd templates do; nothing when AZURE_PRINCIPAL_ID is empty.
module userRoles 'modules/role-assignments.bicep' = if (!empty(principalId)) {
  name: 'deploying-principal-roles'
  scope: rg
  params: {
    principalId: principalId
    principalType: principalType
    storageAccountName: storage.outputs.storageAccountName
    keyVaultName: keyVault.outputs.keyVaultName
  }
}

module graphAppRoles 'modules/graph-app-roles.bicep' = if (grantGraphRoles) {
  name: 'graph-app-roles'
  scope: rg
  params: {
    principalId: functionApp.outputs.principalId
    grantAuditLogRead: signInProof
    grantApplicationReadWriteAll: adoptionTakesOwnership
  }
}

module eventGridTopic 'modules/eventgrid-topic.bicep' = {
  name: 'eventgrid-topic'
  scope: rg
  params: {
    location: location
    tags: tags
    systemTopicName: 'evgt-kv-${resourceToken}'
    keyVaultName: keyVault.outputs.keyVaultName
    storageAccountName: storage.outputs.storageAccountName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}

module eventGridSubscription 'eventgrid-subscription.bicep' = if (createEventSubscription) {
  name: 'eventgrid-subscription'
  scope: rg
  params: {
    systemTopicName: eventGridTopic.outputs.systemTopicName
    functionAppName: functionApp.outputs.functionAppName
    functionName: eventGridFunctionName
    storageAccountName: storage.outputs.storageAccountName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_FUNCTION_PRINCIPAL_ID string = functionApp.outputs.principalId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.keyVaultName
output AZURE_KEY_VAULT_URL string = keyVault.outputs.keyVaultUri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.storageAccountName
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_REGISTRATION_QUEUE_NAME string = storage.outputs.registrationQueueName
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_NAME string = monitoring.outputs.logAnalyticsName
output AZURE_ALERT_ACTION_GROUP_ID string = alerts.outputs.actionGroupId
output AZURE_WORKBOOK_ID string = alerts.outputs.workbookId
output AZURE_EVENTGRID_SYSTEM_TOPIC_NAME string = eventGridTopic.outputs.systemTopicName
output AZURE_EVENTGRID_DEADLETTER_CONTAINER string = storage.outputs.deadLetterContainerName
output AZURE_EVENTGRID_FUNCTION_NAME string = eventGridFunctionName
output AZURE_GRAPH_ROLES_GRANTED bool = grantGraphRoles
output AZURE_FUNCTION_APP_AUTHENTICATION_ENABLED bool = functionApp.outputs.authenticationEnabled
