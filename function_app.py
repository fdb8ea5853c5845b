"""Composition only: the FunctionApp and its blueprints. Business logic lives in functions/core."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
