// Key Vault holding every connector credential Registrar issues. Access is Azure RBAC only (no
// access policies); soft delete and purge protection keep a deleted credential recoverable.

@description('Azure region for the vault.')
param location string

@description('Tags applied to the vault.')
param tags object

@description('Name of the Key Vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Days a deleted secret, certificate or the vault itself stays recoverable (7-90).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:The Flex Consumption app has no VNet integration in this template, so the vault keeps its public endpoint with defaultAction Allow; access is Entra ID + RBAC only (no access policies, no keys). See docs/deploy.md, "Network isolation".
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: public network access stays enabled until the app is VNet-integrated with a private endpoint.
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // The Flex Consumption app reaches the vault over the public endpoint (no VNet integration in
      // this template); access is by Entra ID + RBAC only. See docs/deploy.md, "Network isolation".
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output keyVaultName string = keyVault.name
output keyVaultId string = keyVault.id
output keyVaultUri string = keyVault.properties.vaultUri
