"""A local Azure Functions host that runs function_app.py's functions from their own binding metadata.

Run it: `python -m devstack.host --app-dir DIR --port 7071`. Use it as a library:
`host = FunctionsHost(app_dir, port=0); await host.start(); ...; await host.stop()`.
"""

from devstack.host.server import FunctionsHost

__all__ = ["FunctionsHost"]
