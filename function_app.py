"""Composition only: telemetry, the FunctionApp and its blueprints. Business logic lives in functions/core."""

import os

import azure.functions as func

from functions.telemetry import configure_telemetry
from functions.triggers import (
    adoption,
    confirmations,
    health,
    http_registrations,
    inventory,
    notifications,
    queue_registrations,
    resume_work,
    rotation,
    stuck_registrations,
    subscriptions,
)

# Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set (imported lazily), else the
# console; either way every handler carries the secret redactor and the workflow's log context.
configure_telemetry(os.environ)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(http_registrations.bp)
app.register_functions(queue_registrations.bp)
app.register_functions(rotation.bp)
app.register_functions(notifications.bp)
app.register_functions(stuck_registrations.bp)
app.register_functions(inventory.bp)
app.register_functions(resume_work.bp)
app.register_functions(health.bp)
app.register_functions(subscriptions.bp)
app.register_functions(confirmations.bp)
app.register_functions(adoption.bp)
