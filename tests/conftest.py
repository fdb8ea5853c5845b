"""Shared fixtures live in tests/fixtures/ as pytest plugins, one module per part of the devstack.

`make test` runs the suite on pytest-xdist workers with --dist loadfile: a test file runs whole in
one worker process, and every session fixture (the tenant's CA, the shared stack, temporary dirs)
is made per worker, each stack on free ports. A test may rely on fixtures, never on another test
file having run before it in the same process.
"""

pytest_plugins = [
    "tests.fixtures.tenant",
    "tests.fixtures.azurite",
    "tests.fixtures.stack",
]
