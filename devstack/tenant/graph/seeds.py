"""Microsoft's own service principals every tenant holds, from the project's permission catalogues."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from devstack.tenant.context import (
    EXCHANGE_APP_ID,
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    KEY_VAULT_APP_ID,
    KEY_VAULT_RESOURCE,
    SHAREPOINT_APP_ID,
    STORAGE_APP_ID,
    STORAGE_RESOURCE,
)

RESOURCES_DIR = Path(__file__).resolve().parents[3] / "functions" / "profiles" / "resources"
MICROSOFT_SERVICES_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"

# catalogue name -> (file or None, appId, displayName, servicePrincipalNames)
SEEDS: dict[str, tuple[str | None, str, str, list[str]]] = {
    "microsoft-graph": (
        "microsoft-graph.json",
        GRAPH_APP_ID,
        "Microsoft Graph",
        [
            GRAPH_APP_ID,
            GRAPH_RESOURCE,
            GRAPH_RESOURCE + "/",
            "00000003-0000-0000-c000-000000000000/ags.windows.net",
        ],
    ),
    "exchange-online": (
        "exchange-online.json",
        EXCHANGE_APP_ID,
        "Office 365 Exchange Online",
        [
            EXCHANGE_APP_ID,
            "https://outlook.office365.com",
            "https://outlook.office.com",
            "https://ps.outlook.com",
        ],
    ),
    "sharepoint-online": (
        "sharepoint-online.json",
        SHAREPOINT_APP_ID,
        "Office 365 SharePoint Online",
        [SHAREPOINT_APP_ID, "https://microsoft.sharepoint-df.com"],
    ),
    "azure-key-vault": (
        None,
        KEY_VAULT_APP_ID,
        "Azure Key Vault",
        [KEY_VAULT_APP_ID, KEY_VAULT_RESOURCE, KEY_VAULT_RESOURCE + "/"],
    ),
    "azure-storage": (
        None,
        STORAGE_APP_ID,
        "Azure Storage",
        [STORAGE_APP_ID, STORAGE_RESOURCE, STORAGE_RESOURCE + "/"],
    ),
}

KEY_VAULT_SCOPES = [
    {
        "id": "f53da476-18e3-4152-8e01-aec403e6edc0",
        "value": "user_impersonation",
        "type": "User",
        "adminConsentDisplayName": "Have full access to the Azure Key Vault service",
        "adminConsentDescription": "Allow the application access to the Azure Key Vault service on behalf of the user.",
        "userConsentDisplayName": "Have full access to the Azure Key Vault service",
        "userConsentDescription": "Allow the application access to the Azure Key Vault service on your behalf.",
        "isEnabled": True,
    }
]


STORAGE_SCOPES = [
    {
        "id": "03e0da56-190b-40ad-a80c-ea378c433f7f",
        "value": "user_impersonation",
        "type": "User",
        "adminConsentDisplayName": "Access Azure Storage",
        "adminConsentDescription": "Delegated access to Azure Storage.",
        "userConsentDisplayName": "Access Azure Storage",
        "userConsentDescription": "Delegated access to Azure Storage on your behalf.",
        "isEnabled": True,
    }
]
# The delegated scopes of the services that publish no catalogue file here (no app roles either:
# applications reach them through Azure RBAC, not through Entra app roles).
_SCOPES_WITHOUT_FILE = {"azure-key-vault": KEY_VAULT_SCOPES, "azure-storage": STORAGE_SCOPES}


@cache
def catalogue(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, str]:
    """(appRoles, scopes, their JSON texts), loaded once per process and shared by every tenant.

    The lists are never mutated: a PATCH replaces a property's value, it does not edit it.
    """
    file_name = SEEDS[name][0]
    if file_name is None:
        roles: list[dict[str, Any]] = []
        scopes: list[dict[str, Any]] = _SCOPES_WITHOUT_FILE[name]
    else:
        data = json.loads((RESOURCES_DIR / file_name).read_text(encoding="utf-8"))
        roles = [{**role, "origin": "Application"} for role in data["appRoles"]]
        scopes = [{**scope, "origin": "Application"} for scope in data["oauth2PermissionScopes"]]
    compact = (",", ":")
    return roles, scopes, json.dumps(roles, separators=compact), json.dumps(scopes, separators=compact)


def seed_props(name: str, object_id: str, tenant_id: str) -> dict[str, Any]:
    _, app_id, display_name, names = SEEDS[name]
    roles, scopes, _, _ = catalogue(name)
    return service_principal_props(
        object_id,
        app_id,
        display_name,
        owner_tenant=MICROSOFT_SERVICES_TENANT,
        names=list(names),
        app_roles=roles,
        scopes=scopes,
        sign_in_audience="AzureADMultipleOrgs",
    )


def service_principal_props(
    object_id: str,
    app_id: str,
    display_name: str,
    *,
    owner_tenant: str,
    names: list[str],
    app_roles: list[dict[str, Any]],
    scopes: list[dict[str, Any]],
    sign_in_audience: str,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": object_id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "alternativeNames": [],
        "appDisplayName": display_name,
        "appDescription": None,
        "appId": app_id,
        "applicationTemplateId": None,
        "appOwnerOrganizationId": owner_tenant,
        "appRoleAssignmentRequired": False,
        "createdDateTime": None,
        "description": None,
        "disabledByMicrosoftStatus": None,
        "displayName": display_name,
        "homepage": None,
        "loginUrl": None,
        "logoutUrl": None,
        "notes": None,
        "notificationEmailAddresses": [],
        "preferredSingleSignOnMode": None,
        "preferredTokenSigningKeyThumbprint": None,
        "replyUrls": [],
        "servicePrincipalNames": names,
        "servicePrincipalType": "Application",
        "signInAudience": sign_in_audience,
        "tags": tags or [],
        "tokenEncryptionKeyId": None,
        "info": None,
        "samlSingleSignOnSettings": None,
        "addIns": [],
        "appRoles": app_roles,
        "keyCredentials": [],
        "oauth2PermissionScopes": scopes,
        "passwordCredentials": [],
        "resourceSpecificApplicationPermissions": [],
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
    }
