"""Local Azure for development and tests: Azurite, a local Entra/Graph/Key Vault tenant, a Functions host.

Never deployed (.funcignore keeps it out of the package).
"""
