"""Sign-in activity: the token endpoint records, per app credential, its last sign-in, and Graph's
beta report GET /beta/reports/appCredentialSignInActivities answers it (docs/devstack-graph.md).

Recorded on every token the endpoint issues to a client authenticated by a passwordCredential or
a keyCredential (client credentials with a secret or a certificate assertion; not a federated
assertion, which has no keyId). Read with the permission Graph documents (AuditLog.Read.All, or
the higher Directory.Read.All) in a tenant with an Entra ID P1/P2 licence: without the role 403
Authorization_RequestDenied; without the licence (SimulationConfig.extra["premiumLicence"] set to
false through /_sim/config) the 403 Entra gives a non-premium tenant. In memory: a restart of the
tenant forgets it, as a report's retention would (it only ever grows more recent).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from devstack.tenant.context import AUTHENTICATE, GRAPH_RESOURCE, SIM, ClientRecord, Unauthorized
from devstack.tenant.graph.errors import GraphError, bad_request, forbidden, not_found

REPORT_PATH = "/beta/reports/appCredentialSignInActivities"
READ_ROLES = frozenset({"AuditLog.Read.All", "Directory.Read.All"})
LICENCE_FLAG = "premiumLicence"  # SimulationConfig.extra: False answers as a tenant without P1/P2
_FILTER = re.compile(r"^\s*(keyId|appId)\s+eq\s+'([^']*)'\s*$")


@dataclass
class CredentialSignIn:
    tenant_id: str
    app_id: str
    app_object_id: str
    service_principal_id: str
    key_id: str
    key_type: str  # clientSecret | certificate
    expires: float  # Unix seconds (the credential's endDateTime)
    created: float
    resource_id: str  # the resource service principal the token was for
    last_sign_in: float
    last_request_id: str

    @property
    def id(self) -> str:
        # As Graph's examples show it: base64 of "{keyId}|{credentialOrigin}".
        return base64.b64encode(f"{self.key_id}|application".encode()).decode()

    def to_json(self) -> dict[str, object]:
        return {
            "@odata.type": "#microsoft.graph.appCredentialSignInActivity",
            "id": self.id,
            "appId": self.app_id,
            "appObjectId": self.app_object_id,
            "servicePrincipalObjectId": self.service_principal_id,
            "keyId": self.key_id,
            "keyType": self.key_type,
            "keyUsage": "sign" if self.key_type == "clientSecret" else "verify",
            "credentialOrigin": "application",
            "createdDateTime": _iso(self.created),
            "expirationDateTime": _iso(self.expires),
            "resourceId": self.resource_id,
            "signInActivity": {
                "lastSignInDateTime": _iso(self.last_sign_in),
                "lastSignInRequestId": self.last_request_id,
            },
        }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SignInLog:
    """The last sign-in of each (tenant, keyId)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], CredentialSignIn] = {}

    def record(
        self, tenant_id: str, client: ClientRecord, key_id: str, resource_sp_id: str, at: float
    ) -> None:
        secret = next((s for s in client.secrets if s.key_id == key_id), None)
        certificate = next((c for c in client.certificates if c.key_id == key_id), None)
        credential = secret or certificate
        if credential is None or client.service_principal_id is None:
            return  # a federated assertion: no app credential signed in
        self._entries[(tenant_id, key_id)] = CredentialSignIn(
            tenant_id=tenant_id,
            app_id=client.app_id,
            app_object_id=client.application_id,
            service_principal_id=client.service_principal_id,
            key_id=key_id,
            key_type="clientSecret" if secret is not None else "certificate",
            expires=credential.end,
            created=credential.created,
            resource_id=resource_sp_id,
            last_sign_in=at,
            last_request_id=str(uuid.uuid4()),
        )

    def in_tenant(self, tenant_id: str) -> list[CredentialSignIn]:
        return [e for (t, _), e in sorted(self._entries.items()) if t == tenant_id]


SIGN_INS: web.AppKey[SignInLog] = web.AppKey("sign_ins", SignInLog)


def _error(error: GraphError) -> web.Response:
    request_id = str(uuid.uuid4())
    return web.json_response(
        error.body(request_id, request_id), status=error.status, headers={"request-id": request_id}
    )


def _refusal(request: web.Request, roles: frozenset[str]) -> GraphError | None:
    """Graph's 403s: the permission first, then the tenant's licence."""
    if roles.isdisjoint(READ_ROLES):
        return forbidden()
    if request.app[SIM].extra.get(LICENCE_FLAG, True) is False:
        return GraphError(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
    return None


def _answer(request: web.Request, entries: list[CredentialSignIn]) -> web.Response:
    item_id = request.match_info.get("id")
    if item_id is not None:
        found = next((e for e in entries if e.id == item_id), None)
        if found is None:
            return _error(not_found(item_id))
        return web.json_response(found.to_json())
    raw_filter = request.query.get("$filter")
    if raw_filter is not None:
        match = _FILTER.match(raw_filter)
        if match is None:
            return _error(bad_request(f"Invalid filter clause: {raw_filter[:100]}", "BadRequest"))
        field, value = match.groups()
        entries = [
            e for e in entries if (e.key_id if field == "keyId" else e.app_id).lower() == value.lower()
        ]
    body = {
        "@odata.context": f"{request.url.origin()}/beta/$metadata#reports/appCredentialSignInActivities",
        "value": [e.to_json() for e in entries],
    }
    return web.Response(text=json.dumps(body), content_type="application/json")


async def report(request: web.Request) -> web.Response:
    try:
        principal = await request.app[AUTHENTICATE](request, GRAPH_RESOURCE)
    except Unauthorized as error:
        from devstack.tenant.auth import graph_unauthorized

        return graph_unauthorized(error, request)
    refusal = _refusal(request, principal.roles)
    if refusal is not None:
        return _error(refusal)
    return _answer(request, request.app[SIGN_INS].in_tenant(principal.tenant_id))


def routes() -> list[web.RouteDef]:
    return [web.get(REPORT_PATH, report), web.get(REPORT_PATH + "/{id}", report)]
