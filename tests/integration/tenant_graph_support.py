"""Helpers for the local tenant's Graph tests: msgraph-sdk clients, raw HTTPS calls with a real
token (where the SDK has no request builder), identities with chosen Graph app roles, certificates."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from azure.identity import ClientSecretCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from tests.fixtures.tenant import TenantProcess

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
PROOF_AUDIENCE = "00000002-0000-0000-c000-000000000000"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def credential(
    tenant: TenantProcess, client_id: str | None = None, secret: str | None = None
) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant.tenant_id,
        client_id or tenant.client_id,
        secret or tenant.client_secret,
        authority=tenant.authority,
        disable_instance_discovery=True,
    )


def graph_client(
    tenant: TenantProcess, client_id: str | None = None, secret: str | None = None
) -> GraphServiceClient:
    client = GraphServiceClient(credential(tenant, client_id, secret), scopes=[GRAPH_SCOPE])
    client.request_adapter.base_url = tenant.graph_url
    return client


class RawGraph:
    """Plain HTTPS to the tenant's Graph with a real bearer token from azure-identity."""

    def __init__(
        self, tenant: TenantProcess, client_id: str | None = None, secret: str | None = None
    ) -> None:
        self.tenant = tenant
        self.token = credential(tenant, client_id, secret).get_token(GRAPH_SCOPE).token
        self.context = ssl.create_default_context(cafile=tenant.ca_file)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            self.tenant.graph_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                payload, status, response_headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            payload, status, response_headers = error.read(), error.code, dict(error.headers)
        return status, response_headers, json.loads(payload) if payload else None


def odata_error(caught: Any) -> tuple[int, str, str]:
    """(status, code, message) of an ODataError raised by msgraph-sdk."""
    error = caught.value if hasattr(caught, "value") else caught
    assert isinstance(error, ODataError), repr(error)
    main = error.error
    assert main is not None
    return int(error.response_status_code or 0), str(main.code), str(main.message)


def assert_graph_error(
    status: int, body: Any, expected_status: int, code: str | None = None
) -> dict[str, Any]:
    """A Graph-shaped error: {"error": {"code", "message", "innerError": {date, request-id, client-request-id}}}."""
    assert status == expected_status, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def graph_role_ids(raw: RawGraph) -> dict[str, str]:
    status, _, graph = raw.call("GET", f"/servicePrincipals(appId='{GRAPH_APP_ID}')?$select=id,appRoles")
    assert status == 200
    return {"__sp__": graph["id"], **{role["value"]: role["id"] for role in graph["appRoles"]}}


def new_identity(tenant: TenantProcess, roles: list[str]) -> tuple[str, str, str]:
    """An app + SP + secret holding the given Graph app roles, made through Graph by the bootstrap
    identity (Application.ReadWrite.OwnedBy + AppRoleAssignment.ReadWrite.All + Application.Read.All).
    Returns (client id, client secret, service principal id)."""
    admin = RawGraph(tenant)
    status, _, app = admin.call(
        "POST", "/applications", {"displayName": unique("identity"), "signInAudience": "AzureADMyOrg"}
    )
    assert status == 201, app
    status, _, sp = admin.call("POST", "/servicePrincipals", {"appId": app["appId"]})
    assert status == 201, sp
    status, _, password = admin.call(
        "POST", f"/applications/{app['id']}/addPassword", {"passwordCredential": {"displayName": "test"}}
    )
    assert status == 200, password
    ids = graph_role_ids(admin)
    for role in roles:
        body = {"principalId": sp["id"], "resourceId": ids["__sp__"], "appRoleId": ids[role]}
        status, _, assignment = admin.call(
            "POST", f"/servicePrincipals/{ids['__sp__']}/appRoleAssignedTo", body
        )
        assert status == 201, assignment
    return app["appId"], password["secretText"], sp["id"]


def self_signed(common_name: str, *, days: int = 30) -> tuple[rsa.RSAPrivateKey, bytes]:
    """(private key, certificate DER)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(Encoding.DER)


def proof_token(key: rsa.RSAPrivateKey, application_object_id: str, *, lifetime_s: int = 600) -> str:
    """addKey/removeKey proof of possession, as Microsoft's samples build it."""
    now = int(time.time())
    claims = {"aud": PROOF_AUDIENCE, "iss": application_object_id, "nbf": now, "exp": now + lifetime_s}
    return jwt.encode(claims, key, algorithm="RS256")
