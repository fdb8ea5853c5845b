"""A registration's credential: issued (write-ahead, crash-safe), removed, and proven with a token.

Shared by provisioning (the first credential) and rotation (every later one), so it sits below
both. Public surface: `issuer` (CredentialIssuer, key_credential, kept_in_vault, vault_tags),
`verification` (until_accepted, VerifyPolicy), and `job_ports` (RegistrationJobPorts: what the
provisioning run, the rotation job and the takeover each work with).
"""
