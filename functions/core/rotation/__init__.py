"""Keeping a credential alive: the sweep, rotation and retirement jobs, staging, Key Vault events.

Public surface: `rotator` (sweep, enqueue, Rotator), `jobs` (which jobs a record calls for:
jobs_for, rotate_now_job, RotationSettings), `staging` (NextGeneration: staged, verified,
published), `published` (whether a generation already reached Key Vault), `keyvault_events`
(tolerant Event Grid parsing) and `keyvault_reactions` (KeyVaultReactions).
"""
