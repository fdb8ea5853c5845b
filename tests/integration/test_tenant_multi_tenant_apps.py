"""Multi-tenant applications across the local server's tenants, as Entra keeps them: the application
object (and every credential of it, federated ones included) lives in its home tenant; another
tenant holds only a service principal, made by an administrator there (admin consent), which carries
that tenant's role assignments."""

from __future__ import annotations

import types
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import secret_credential
from tests.integration.tenant_graph_support import GRAPH_SCOPE, RawGraph, assert_graph_error, unique


def as_tenant(info: dict[str, Any], ca_file: str) -> Any:
    """A POST /_sim/tenants answer in the shape RawGraph reads."""
    return types.SimpleNamespace(
        tenant_id=info["tenantId"],
        client_id=info["clientId"],
        client_secret=info["clientSecret"],
        authority=info["authority"],
        graph_url=info["graphUrl"],
        ca_file=ca_file,
    )


def grant(raw: RawGraph, principal_id: str, value: str) -> None:
    status, _, graph = raw.call("GET", "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')")
    assert status == 200, graph
    role = next(r["id"] for r in graph["appRoles"] if r["value"] == value)
    status, _, body = raw.call(
        "POST",
        f"/servicePrincipals/{graph['id']}/appRoleAssignedTo",
        {"principalId": principal_id, "resourceId": graph["id"], "appRoleId": role},
    )
    assert status == 201, body


def new_app(raw: RawGraph, audience: str) -> tuple[dict[str, Any], str]:
    """An app of the home tenant with a client secret: (application, secret text)."""
    status, _, app = raw.call(
        "POST", "/applications", {"displayName": unique("multi"), "signInAudience": audience}
    )
    assert status == 201, app
    status, _, password = raw.call(
        "POST", f"/applications/{app['id']}/addPassword", {"passwordCredential": {}}
    )
    assert status == 200, password
    return app, password["secretText"]


def test_another_tenant_provisions_a_multi_tenant_app_and_its_home_credentials_sign_in_there(
    tenant_admin: TenantProcess,
) -> None:
    home = RawGraph(tenant_admin)
    info = tenant_admin.create_tenant()
    other = RawGraph(as_tenant(info, tenant_admin.ca_file))
    app, secret = new_app(home, "AzureADMultipleOrgs")
    elsewhere = secret_credential(info, clientId=app["appId"], clientSecret=secret)

    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):  # not provisioned there yet
        elsewhere.get_token(GRAPH_SCOPE)
    status, _, body = other.call("POST", "/servicePrincipals", {"appId": app["appId"]})
    assert_graph_error(status, body, 403, "Authorization_RequestDenied")  # its owners are not here

    status, _, admin = other.call("GET", f"/servicePrincipals(appId='{info['clientId']}')")
    assert status == 200, admin
    grant(other, admin["id"], "Application.ReadWrite.All")
    other = RawGraph(as_tenant(info, tenant_admin.ca_file))  # a token with the new role
    status, _, sp = other.call("POST", "/servicePrincipals", {"appId": app["appId"]})
    assert status == 201, sp
    assert sp["appOwnerOrganizationId"] == tenant_admin.tenant_id
    grant(other, sp["id"], "Application.Read.All")

    claims = jwt.decode(
        secret_credential(info, clientId=app["appId"], clientSecret=secret).get_token(GRAPH_SCOPE).token,
        options={"verify_signature": False},
    )
    assert (claims["tid"], claims["appid"], claims["roles"]) == (
        info["tenantId"],
        app["appId"],
        ["Application.Read.All"],
    )
    status, _, body = other.call("GET", f"/applications(appId='{app['appId']}')")
    assert_graph_error(status, body, 404)  # the application object stays in its home tenant


def test_a_single_tenant_app_cannot_be_provisioned_elsewhere(tenant_admin: TenantProcess) -> None:
    home = RawGraph(tenant_admin)
    info = tenant_admin.create_tenant()
    other = RawGraph(as_tenant(info, tenant_admin.ca_file))
    status, _, admin = other.call("GET", f"/servicePrincipals(appId='{info['clientId']}')")
    assert status == 200, admin
    grant(other, admin["id"], "Application.ReadWrite.All")
    other = RawGraph(as_tenant(info, tenant_admin.ca_file))
    app, _ = new_app(home, "AzureADMyOrg")
    status, _, body = other.call("POST", "/servicePrincipals", {"appId": app["appId"]})
    error = assert_graph_error(status, body, 400)
    assert "does not reference a valid application object" in error["message"]
