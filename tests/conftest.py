"""Shared fixtures live in tests/fixtures/ as pytest plugins, one module per part of the devstack."""

pytest_plugins = [
    "tests.fixtures.tenant",
    "tests.fixtures.azurite",
    "tests.fixtures.stack",
]
