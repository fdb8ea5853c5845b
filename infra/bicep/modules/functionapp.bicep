// Registrar's Flex Consumption (FC1) function app, Python 3.11, with a system-assigned managed
// identity for everything: the host's storage (AzureWebJobsStorage__*), the deployment package
// container, Key Vault, Application Insights and Microsoft Graph. No key or connection string
// with a key is stored anywhere.

@description('Azure region for the plan and the app.')
param location string

@description('Tags applied to the plan and the app (the app also gets azd-service-name).')
param tags object

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the function app (globally unique: it is the host name).')
param functionAppName string

@description('azd service name from azure.yaml; azd finds the app to deploy by this tag.')
param azdServiceName string = 'api'

@description('Primary blob endpoint of that storage account (https://<account>.blob.<suffix>/).')
param blobEndpoint string

@description('Primary queue endpoint of that storage account (https://<account>.queue.<suffix>/).')
param queueEndpoint string

@description('Primary table endpoint of that storage account (https://<account>.table.<suffix>/).')
param tableEndpoint string

@description('Blob container the app is deployed from.')
param deploymentContainerName string

@description('Memory of each instance in MB (Flex Consumption sizes: 512, 2048 or 4096).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances the app scales out to (40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Application Insights component the app sends telemetry to (local auth disabled).')
param applicationInsightsName string

@description('Registrar settings (REGISTRAR_* and the like) merged into the app settings.')
param registrarSettings object

@description('App settings of your own (name: value) kept on every deployment; the host and Registrar settings of this template win on a clash.')
param extraAppSettings object = {}

@description('Application (client) id of the "Registrar API" app registration that holds the Registrar.Approver and Registrar.Admin app roles; set, App Service Authentication validates its tokens; empty, it stays off and the role routes answer 403.')
param apiClientId string = ''

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Flex Consumption zone redundancy exists only in some regions and bills always-ready instances; Registrar's work is queued and retried, so a zone outage delays it but loses nothing.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// Read here rather than passed as an output: the connection string is not a secret (ingestion also
// needs the app's Entra token), but no output of this template carries one.
resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var hostSettings = {
  // Identity-based host storage, with the endpoints the storage account reports (so sovereign
  // clouds work). No AzureWebJobsStorage__accountName: the host prefers it to the service URIs and
  // builds public-cloud (core.windows.net) URIs from it.
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsFeatureFlags: 'EnableWorkerIndexing'
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  // The resource has local auth disabled: host and worker send telemetry with the managed identity.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:The HTTP intake is called by ticketing systems and Event Grid over the internet; every route needs a function key (or the Event Grid system key) over HTTPS only. Private access needs VNet integration, outside this template.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero by design; queue messages wait for an instance, nothing is lost. alwaysReady instances can be added if cold start matters.
  // checkov:skip=CKV_AZURE_213:Flex Consumption does not support App Service health checks (healthCheckPath); the platform manages instance health.
  // checkov:skip=CKV_AZURE_17:Client certificates are not how ticketing systems or Event Grid authenticate to this API (function keys and Entra ID are).
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// A config resource rather than siteConfig.appSettings: one object, no copy loop over values that
// are only known at deployment time (the vault URI, the Application Insights connection string).
// It REPLACES the app's whole settings collection: a setting added in the portal or with az is gone
// after the next deployment unless it is in extraAppSettings. union() lets later objects win, so
// extraAppSettings comes first: it cannot override what this template sets (REGISTRAR_ENVIRONMENT,
// REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL, the host's storage identity, ...); change those through
// main.bicep's parameters.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'appsettings' (name/value pairs only); App Service Authentication is the separate 'authsettingsV2' resource below (on when apiClientId is set).
  // checkov:skip=CKV_AZURE_63:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'appsettings' (name/value pairs only); HTTP logging is a 'web' config property: requests and failures go to Application Insights.
  // checkov:skip=CKV_AZURE_65:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'appsettings' (name/value pairs only); detailed error pages are a 'web' config property: errors go to Application Insights.
  // checkov:skip=CKV_AZURE_66:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'appsettings' (name/value pairs only); failed request tracing is a 'web' config property: failures go to Application Insights.
  // checkov:skip=CKV_AZURE_80:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'appsettings' (name/value pairs only); the app runs Python 3.11 on Linux (functionAppConfig.runtime), not .NET Framework.
  // checkov:skip=CKV_AZURE_88:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'appsettings' (name/value pairs only); Flex Consumption has no content share on Azure Files: the package comes from blob storage.
  // checkov:skip=CKV_AZURE_222:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'appsettings' (name/value pairs only); public network access is a site property, suppressed with its reason on the site.
  parent: functionApp
  name: 'appsettings'
  properties: union(extraAppSettings, hostSettings, registrarSettings)
}

// App Service Authentication ("Easy Auth"), only when the API's app registration is named. It
// validates a bearer token when one is sent (issuer: the tenant, audience: the API) and sets the
// X-MS-CLIENT-PRINCIPAL header the role routes read; it strips a client-sent one either way.
// Requests without a token still reach the functions (AllowAnonymous): the ticketing systems call
// with a function key only, and the functions' own authorization (keys, app roles) decides. Token
// validation only: no client secret, no login flow, no token store.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(apiClientId)) {
  // checkov:skip=CKV_AZURE_13:This resource IS App Service Authentication (authsettingsV2, platform.enabled: true); checkov's check reads the v1 'authsettings' shape (properties.enabled) and cannot see inside a conditional resource.
  // checkov:skip=CKV_AZURE_63:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'authsettingsV2'; HTTP logging is a 'web' config property: requests and failures go to Application Insights.
  // checkov:skip=CKV_AZURE_65:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'authsettingsV2'; detailed error pages are a 'web' config property: errors go to Application Insights.
  // checkov:skip=CKV_AZURE_66:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'authsettingsV2'; failed request tracing is a 'web' config property: failures go to Application Insights.
  // checkov:skip=CKV_AZURE_80:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'authsettingsV2'; the app runs Python 3.11 on Linux (functionAppConfig.runtime), not .NET Framework.
  // checkov:skip=CKV_AZURE_88:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'authsettingsV2'; Flex Consumption has no content share on Azure Files: the package comes from blob storage.
  // checkov:skip=CKV_AZURE_222:checkov runs its web-config checks on every Microsoft.Web/sites/config resource, but this one is 'authsettingsV2'; public network access is a site property, suppressed with its reason on the site.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${apiClientId}'
            apiClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// Deployments go through azd (Entra ID to the deployment container), never FTP or basic-auth SCM.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
output principalId string = functionApp.identity.principalId
output authenticationEnabled bool = !empty(apiClientId)
