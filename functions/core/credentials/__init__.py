"""A registration's credential: issued (write-ahead, crash-safe), removed, and proven with a token.

Shared by provisioning (the first credential) and rotation (every later one), so it sits below
both. Public surface: `issuer` (CredentialIssuer, key_credential, kept_in_vault, vault_tags) and
`verification` (until_accepted, VerifyPolicy).
"""
