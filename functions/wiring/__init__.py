"""The process's wiring, grouped as the core is: adapters.py builds the adapters, and each
capability's module wires its workflows over what is below it (bootstrap.Services is the top).
The `wiring-layers` import contract in pyproject.toml keeps the order."""
