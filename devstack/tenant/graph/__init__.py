"""Microsoft Graph v1.0 (the directory subset Registrar uses) over one tenant's directory.

For the rest of the tenant:
- ``new_directory(tenant_id) -> (Directory, bootstrap client id, bootstrap client secret)``
- ``Directory`` (context.DirectoryView; ``to_dict()`` / ``Directory.from_dict()`` for persistence)
- ``routes()``: the aiohttp routes of everything under /v1.0.
"""

from __future__ import annotations

from devstack.tenant.graph.directory import (
    Directory,
    grant_bootstrap_roles,
    new_admin_identity,
    new_directory,
)
from devstack.tenant.graph.routes import routes

__all__ = ["Directory", "grant_bootstrap_roles", "new_admin_identity", "new_directory", "routes"]
