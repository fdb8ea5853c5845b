"""A local Azure Functions host that runs function_app.py's functions from their own binding metadata.

Run it: `python -m devstack.host --app-dir DIR --port 7071`. Use it as a library:
`host = FunctionsHost(app_dir, port=0); await host.start(); ...; await host.stop()` (export the
app's settings with `config.export_app_settings` before aiohttp is first imported, as
`python -m devstack.host` does, so that SSL_CERT_FILE from the settings is trusted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.host.server import FunctionsHost

__all__ = ["FunctionsHost"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not import aiohttp before the settings are exported.
    if name == "FunctionsHost":
        from devstack.host.server import FunctionsHost

        return FunctionsHost
    raise AttributeError(name)
