"""Composition only: the FunctionApp and its blueprints. Business logic lives in functions/core."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

from functions.triggers import http_registrations, queue_registrations  # noqa: E402

app.register_functions(http_registrations.bp)
app.register_functions(queue_registrations.bp)
