// Microsoft Graph application permissions (app roles) for the function's managed identity, through
// the Microsoft Graph Bicep extension. Deploying this needs Privileged Role Administrator (or Global
// Administrator); main.bicep's grantGraphRoles=false leaves it to an administrator, with the same
// five role ids (docs/deploy.md, "Granting the Graph app roles by hand"), and AuditLog.Read.All
// when proof of use is on.

extension microsoftGraphV1

@description('Object id of the function app\'s managed identity (its service principal).')
param principalId string

@description('Also grant AuditLog.Read.All, which proof of use reads sign-in activity with (main.bicep signInProof; the tenant needs a Microsoft Entra ID P1 or P2 licence too).')
param grantAuditLogRead bool = false

@description('Also Application.ReadWrite.All and Directory.Read.All: an adoption makes Registrar an owner of the hand-made app itself (main.bicep adoptionTakesOwnership; docs/security.md).')
param grantApplicationReadWriteAll bool = false

// Microsoft Graph's well-known appId, the same in every tenant.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'

// Ids from functions/profiles/resources/microsoft-graph.json (Graph's appRoles).
var graphAppRoles = [
  {
    // Create apps and manage only the apps it owns (every app Registrar creates).
    name: 'Application.ReadWrite.OwnedBy'
    id: '18a4783c-866b-4cc7-a460-3d5e5662c884'
  }
  {
    // Grant the connectors' application permissions (admin consent for app roles).
    name: 'AppRoleAssignment.ReadWrite.All'
    id: '06b708a9-e830-4db3-a914-8e69da51d44f'
  }
  {
    // Read-only. Graph requires it alongside AppRoleAssignment.ReadWrite.All to grant an app role
    // (POST servicePrincipals/{id}/appRoleAssignedTo reads the resource service principal, which
    // Application.ReadWrite.OwnedBy cannot): without it every admin consent is 403.
    name: 'Application.Read.All'
    id: '9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30'
  }
  {
    // Create oauth2PermissionGrants (admin consent for the connectors' delegated scopes).
    name: 'DelegatedPermissionGrant.ReadWrite.All'
    id: '8e8e4742-1d95-4f68-9d56-6ee75648c72a'
  }
  {
    // Read the tenant's app management policy, so new credentials end within its maximum lifetime.
    name: 'Policy.Read.All'
    id: '246dd0d5-5bd0-4def-940b-0421030a5b68'
  }
]

// Only with grantApplicationReadWriteAll: POST /applications/{id}/owners/$ref needs
// Application.ReadWrite.All, and Directory.Read.All to resolve the owner (REFERENCE.md).
var ownershipAppRoles = [
  {
    name: 'Application.ReadWrite.All'
    id: '1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9'
  }
  {
    name: 'Directory.Read.All'
    id: '7ab1d382-f21e-4acd-a863-ba3e13f7da61'
  }
]

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

resource appRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in graphAppRoles: {
    appRoleId: role.id
    principalId: principalId
    resourceId: microsoftGraph.id
  }
]

// Proof of use (REGISTRAR_SIGN_IN_PROOF): read Graph's appCredentialSignInActivities report.
// Read only; only when signInProof is on (docs/security.md).
var auditLogReadRole = {
  name: 'AuditLog.Read.All'
  id: 'b0afded3-3588-46d8-8b3d-9842eff778da'
}

resource auditLogRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantAuditLogRead) {
  appRoleId: auditLogReadRole.id
  principalId: principalId
  resourceId: microsoftGraph.id
}

var grantedRoleNames = [for role in graphAppRoles: role.name]

output grantedAppRoles array = concat(grantedRoleNames, grantAuditLogRead ? [auditLogReadRole.name] : [])

var ownershipGrants = grantApplicationReadWriteAll ? ownershipAppRoles : []

resource ownershipRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in ownershipGrants: {
    appRoleId: role.id
    principalId: principalId
    resourceId: microsoftGraph.id
  }
]

output ownershipAppRoles array = [for role in ownershipGrants: role.name]
