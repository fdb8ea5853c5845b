"""The pure domain, grouped by what a registration goes through. Imports no Azure SDK and does no I/O.

Each capability imports only those below it (import-linter contracts in pyproject.toml;
docs/architecture.md draws the map):

    provisioning | intake      from accepted to active; accepting a request (siblings)
    rotation                   the sweep, rotation and retirement jobs, staging, Key Vault events
    credentials                issuing, removing and verifying a registration's credential
    notification               webhook events, signing, subscriptions, delivery, announcements
    catalogue                  connector profiles, permission names, policy, lifetimes
    record                     the registration record, its vocabulary, errors and keeper

`ports` is the one list of what the core needs from outside, typed in the record's vocabulary.
"""
