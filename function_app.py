"""Composition only: the FunctionApp and its blueprints. Business logic lives in functions/core."""

import azure.functions as func

from functions.triggers import http_registrations, notifications, queue_registrations, rotation

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(http_registrations.bp)
app.register_functions(queue_registrations.bp)
app.register_functions(rotation.bp)
app.register_functions(notifications.bp)
