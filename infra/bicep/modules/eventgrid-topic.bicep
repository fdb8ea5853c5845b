// Event Grid system topic over the Key Vault. Its subscription to the keyvault_events function is
// created after code deployment (eventgrid-subscription.bicep, from azd's postdeploy hook), because
// an AzureFunction endpoint is validated against a function that must already exist.

@description('Azure region of the Key Vault (a system topic lives in its source resource\'s region).')
param location string

@description('Tags applied to the system topic.')
param tags object

@description('Name of the Event Grid system topic.')
param systemTopicName string

@description('Key Vault whose events the topic publishes.')
param keyVaultName string

@description('Storage account holding the dead-letter container.')
param storageAccountName string

@description('Blob container receiving undeliverable events.')
param deadLetterContainerName string

// Storage Blob Data Contributor: the topic's identity writes dead-lettered events (no SAS, no key).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: keyVault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

// Scoped to the dead-letter container only, not the whole account.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, systemTopic.id, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: systemTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
