"""What a connector needs and what Registrar may grant: profiles, permission names, policy, lifetimes.

Public surface: `profiles` (Profile, ProfileCatalogue), `profile_schema` (profile_from_dict),
`permissions` (resolve names to Graph ids, with suggestions), `policy` (Policy, roles, tier-0),
`lifetimes` (CredentialLifetimes: end dates capped by policy and profile), `app_spec`
(application_spec: a record's desired app) and `webhook_hosts` (where a webhook may point;
here rather than in notification because policy decides it at intake).
"""
