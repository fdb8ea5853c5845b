"""The pure domain: models, profiles, policy, workflows, errors and ports. Imports no Azure SDK."""
