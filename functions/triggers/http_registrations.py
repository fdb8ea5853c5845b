"""HTTP routes of the registrations API (a Blueprint). Declarations only: each route imports its
handler (registration_api.py) on first use, so importing function_app stays fast on cold start.

POST   /api/registrations                 request a registration (202; 200 for the same request)
GET    /api/registrations[?tenantId&profile&status&limit&continuation]
GET    /api/registrations/{id}
POST   /api/registrations/{id}/approve    app role Registrar.Approver
DELETE /api/registrations/{id}            app role Registrar.Admin (decommission)
GET    /api/profiles, /api/profiles/{id}
GET    /api/openapi.json                  anonymous
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.route(route="registrations", methods=["POST"])
async def create_registration(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.create_registration(req)


@bp.route(route="registrations/{id}", methods=["GET"])
async def get_registration(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.get_registration(req)


@bp.route(route="registrations", methods=["GET"])
async def list_registrations(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.list_registrations(req)


@bp.route(route="registrations/{id}/approve", methods=["POST"])
async def approve_registration(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.approve_registration(req)


@bp.route(route="registrations/{id}", methods=["DELETE"])
async def decommission_registration(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.decommission_registration(req)


@bp.route(route="profiles", methods=["GET"])
async def list_profiles(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.list_profiles(req)


@bp.route(route="profiles/{id}", methods=["GET"])
async def get_profile(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.get_profile(req)


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    from functions.triggers import registration_api

    return await registration_api.openapi_document(req)
