"""Every app credential in each tenant, read through Graph (read-only): see docs/inventory.md.

Public surface: `models` (CredentialSummary, AppSummary, ProfileMatch, InventoryQuery), `ports`
(InventorySource: Graph's lists and delta queries, paged; InventoryStore: summaries and delta
links in Table storage), `matching` (ProfileSets: an app's requiredResourceAccess against the
connector profiles) and `scanner` (InventoryScanner: a first scan as lists, then delta rounds).
"""
