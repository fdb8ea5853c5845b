"""A local Entra ID + Microsoft Graph v1.0 + Key Vault over HTTPS, used unchanged by the official SDKs."""
