// The one storage account Registrar uses: the Functions host (AzureWebJobsStorage, identity-based),
// the Flex Consumption deployment package container, the work queues, the state tables, and the
// Event Grid dead-letter container. Shared key access is off: every caller uses Entra ID.

@description('Azure region for the storage account.')
param location string

@description('Tags applied to the storage account.')
param tags object

@description('Name of the storage account (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Blob container the Flex Consumption app is deployed from.')
param deploymentContainerName string

@description('Blob container that receives Key Vault events Event Grid could not deliver.')
param deadLetterContainerName string

@description('Storage redundancy (Standard_LRS is enough for queues and state; use ZRS in zone-redundant regions).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

// Exactly the queues and tables of functions/resources.py (tests/infra checks they agree).
var queueNames = [
  'registration-requests'
  'rotation-jobs'
  'webhook-deliveries'
]
// The Functions host moves a message here after maxDequeueCount failed deliveries (host.json).
var poisonQueueNames = [
  'registration-requests-poison'
  'rotation-jobs-poison'
  'webhook-deliveries-poison'
  'inventory-scans'
  'inventory-scans-poison'
]
var tableNames = [
  'Registrations'
  'CredentialExpiry'
  'WebhookSubscriptions'
  'WebhookDeliveries'
  'Leases'
  'InventoryApps'
  'InventoryCredentials'
  'InFlight'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_59:Flex Consumption without VNet integration reaches storage over its public endpoint; shared keys are disabled, so only Entra identities with data roles get in. See docs/deploy.md, "Network isolation".
  // checkov:skip=CKV_AZURE_35:Same reason as CKV_AZURE_59: the default network action stays Allow until the app is VNet-integrated; access is identity-only.
  // checkov:skip=CKV_AZURE_43:The name is computed in main.bicep ('st' + uniqueString: lowercase letters and digits, 15 characters); checkov cannot evaluate a parameter.
  // checkov:skip=CKV_AZURE_206:Replication is a parameter (skuName); LRS is the cost-conscious default for queues and rebuildable state.
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in concat(queueNames, poisonQueueNames): {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

output storageAccountName string = storage.name
output storageAccountId string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
output registrationQueueName string = queueNames[0]
