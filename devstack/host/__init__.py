"""A local Azure Functions host that runs function_app.py's functions from their own binding metadata."""
