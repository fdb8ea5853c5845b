"""The local tenant's Key Vault secrets, driven through the official azure-keyvault-secrets client."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline import PipelineResponse
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from tests.fixtures.tenant import TenantProcess


class WireLog:
    """A raw_response_hook: the SDK's hook policy sits after its challenge policy, so it sees every
    request/response as it crossed the wire, the unauthenticated probe included."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[bool, int, dict[str, str]]] = []
        self.bodies: list[str] = []

    def __call__(self, response: PipelineResponse[Any, Any]) -> None:
        sent_token = "Authorization" in response.http_request.headers
        http = response.http_response
        self.exchanges.append((sent_token, http.status_code, dict(http.headers)))
        self.bodies.append(http.text())


def secret_client(tenant: TenantProcess, vault_url: str | None = None, **kwargs: Any) -> SecretClient:
    credential = ClientSecretCredential(
        tenant.tenant_id,
        tenant.client_id,
        tenant.client_secret,
        authority=tenant.authority,
        disable_instance_discovery=True,
    )
    return SecretClient(vault_url or tenant.vault_url, credential, verify_challenge_resource=False, **kwargs)


@pytest.fixture(scope="module")
def client(tenant: TenantProcess) -> SecretClient:
    return secret_client(tenant)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_of(exc: HttpResponseError) -> tuple[int | None, str | None]:
    return exc.status_code, exc.error.code if exc.error else None


def test_first_request_is_challenged_then_succeeds_with_a_token(tenant: TenantProcess) -> None:
    from azure.keyvault.secrets._shared import http_challenge_cache

    wire = WireLog()
    # The SDK caches challenges per origin for the whole process, so whether this is a first
    # contact would depend on which tests ran before: forget them, and use the vault's other name.
    http_challenge_cache.clear()
    vault_url = tenant.vault_url.replace("://127.0.0.1:", "://localhost:")
    client = secret_client(tenant, raw_response_hook=wire, vault_url=vault_url)
    name = unique("challenge")

    secret = client.set_secret(name, "s3cr3t-value")

    assert secret.value == "s3cr3t-value"
    (first_token, first_status, first_headers), (second_token, second_status, _) = wire.exchanges
    assert (first_token, first_status) == (False, 401)
    assert first_headers["WWW-Authenticate"] == (
        f'Bearer authorization="{tenant.authority}/{tenant.tenant_id}", resource="https://vault.azure.net"'
    )
    assert (second_token, second_status) == (True, 200)
    # The token is cached: the next call goes straight through.
    client.get_secret(name)
    assert [status for _, status, _ in wire.exchanges[2:]] == [200]


def test_a_forged_token_is_refused_with_401(tenant: TenantProcess) -> None:
    class ForgedCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            from azure.core.credentials import AccessToken

            return AccessToken("eyJhbGciOiJub25lIn0.eyJhdWQiOiJodHRwczovL3ZhdWx0LmF6dXJlLm5ldCJ9.", 2**31)

    client = SecretClient(tenant.vault_url, ForgedCredential(), verify_challenge_resource=False)  # type: ignore[arg-type]
    with pytest.raises(HttpResponseError) as caught:
        client.get_secret("anything")
    assert error_of(caught.value) == (401, "Unauthorized")


def test_a_token_for_another_audience_is_refused_with_401(tenant: TenantProcess) -> None:
    graph_token = ClientSecretCredential(
        tenant.tenant_id,
        tenant.client_id,
        tenant.client_secret,
        authority=tenant.authority,
        disable_instance_discovery=True,
    ).get_token("https://graph.microsoft.com/.default")

    class GraphTokenCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            return graph_token

    wire = WireLog()
    client = SecretClient(
        tenant.vault_url,
        GraphTokenCredential(),  # type: ignore[arg-type]
        verify_challenge_resource=False,
        raw_response_hook=wire,
    )
    with pytest.raises(HttpResponseError) as caught:
        client.get_secret("anything")
    assert error_of(caught.value) == (401, "Unauthorized")
    # (the first request carries no token unless an earlier test left a challenge in the SDK's cache)
    assert wire.exchanges[-1][:2] == (True, 401)
    assert all(status == 401 and "WWW-Authenticate" in headers for _, status, headers in wire.exchanges)


def test_set_get_latest_and_by_version(client: SecretClient) -> None:
    name = unique("rw")
    expires = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=30)
    first = client.set_secret(
        name, "one", content_type="text/plain", tags={"registrationId": "r1"}, expires_on=expires
    )
    second = client.set_secret(name, "two")

    assert first.properties.version and second.properties.version
    assert len(first.properties.version) == 32 and int(first.properties.version, 16) >= 0
    assert first.properties.version != second.properties.version
    assert client.get_secret(name).value == "two"
    old = client.get_secret(name, first.properties.version)
    assert old.value == "one"
    assert old.properties.content_type == "text/plain"
    assert old.properties.tags == {"registrationId": "r1"}
    assert old.properties.expires_on == expires
    assert old.id == f"{client.vault_url}/secrets/{name}/{first.properties.version}"
    assert old.properties.recovery_level == "Recoverable"  # purge protection, as infra's vault


def test_names_are_case_insensitive(client: SecretClient) -> None:
    name = unique("Mixed-Case")
    created = client.set_secret(name, "one")
    again = client.set_secret(name.upper(), "two")

    assert client.get_secret(name.lower()).value == "two"
    assert again.name == name  # the name keeps the case it was first written with
    versions = {item.version for item in client.list_properties_of_secret_versions(name.lower())}
    assert versions == {created.properties.version, again.properties.version}


def test_list_versions_pages_with_next_link(client: SecretClient) -> None:
    name = unique("paged")
    created = {client.set_secret(name, f"v{i}").properties.version for i in range(7)}

    pages = list(client.list_properties_of_secret_versions(name, max_page_size=3).by_page())
    listed = [item for page in pages for item in page]

    assert len(pages) == 3
    assert {item.version for item in listed} == created
    assert all(item.name == name for item in listed)
    assert name in {item.name for item in client.list_properties_of_secrets()}


def test_list_never_returns_values(tenant: TenantProcess, client: SecretClient) -> None:
    name = unique("novalue")
    client.set_secret(name, "hidden-value")
    wire = WireLog()
    listing = secret_client(tenant, raw_response_hook=wire)
    assert any(item.name == name for item in listing.list_properties_of_secret_versions(name))
    assert any(item.name == name for item in listing.list_properties_of_secrets())
    listed = [body for body in wire.bodies if '"value"' in body]
    assert listed and not any("hidden-value" in body for body in listed)


def test_update_properties_then_disabled_version_is_refused(client: SecretClient) -> None:
    name = unique("disable")
    client.set_secret(name, "v")

    updated = client.update_secret_properties(
        name, content_type="application/json", tags={"generation": "2"}, enabled=False
    )

    assert updated.enabled is False
    assert updated.content_type == "application/json"
    assert updated.tags == {"generation": "2"}
    with pytest.raises(HttpResponseError) as caught:
        client.get_secret(name)
    assert error_of(caught.value) == (403, "Forbidden")
    assert "Operation get is not allowed on a disabled secret." in str(caught.value)
    client.update_secret_properties(name, enabled=True)
    assert client.get_secret(name).value == "v"


def test_expired_version_stays_readable(client: SecretClient) -> None:
    name = unique("expired")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    client.set_secret(name, "old", expires_on=past, not_before=past - datetime.timedelta(days=1))
    assert client.get_secret(name).value == "old"


def test_soft_delete_recover_and_purge(client: SecretClient) -> None:
    name = unique("deleted")
    client.set_secret(name, "keep-me")

    deleted = client.begin_delete_secret(name).result()
    assert deleted.recovery_id == f"{client.vault_url}/deletedsecrets/{name}"
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert deleted.scheduled_purge_date > deleted.deleted_date
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    assert client.get_deleted_secret(name).name == name
    assert name in {item.name for item in client.list_deleted_secrets()}
    with pytest.raises(ResourceExistsError) as caught:
        client.set_secret(name, "reuse")
    assert error_of(caught.value) == (409, "Conflict")

    client.begin_recover_deleted_secret(name).result()
    assert client.get_secret(name).value == "keep-me"

    client.begin_delete_secret(name).result()
    with pytest.raises(HttpResponseError) as refused:
        client.purge_deleted_secret(name)  # purge protection (test_tenant_keyvault_purge.py)
    assert error_of(refused.value) == (403, "Forbidden")
    assert client.get_deleted_secret(name).name == name


def test_missing_secret_and_version_are_secret_not_found(client: SecretClient) -> None:
    name = unique("missing")
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_secret(name)
    assert error_of(caught.value) == (404, "SecretNotFound")
    client.set_secret(name, "v")
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_secret(name, uuid.uuid4().hex)
    assert error_of(caught.value) == (404, "SecretNotFound")


@pytest.mark.parametrize(
    ("name", "value", "kwargs"),
    [
        ("bad_name", "v", {}),
        ("x" * 128, "v", {}),
        (None, "x" * (25 * 1024 + 1), {}),
        (None, "v", {"tags": {f"t{i}": "v" for i in range(16)}}),
        (None, "v", {"tags": {"long": "x" * 513}}),
        (None, "v", {"content_type": "c" * 256}),
        (
            None,
            "v",
            {
                "not_before": datetime.datetime(2033, 5, 18, tzinfo=datetime.UTC),
                "expires_on": datetime.datetime(2030, 3, 17, tzinfo=datetime.UTC),
            },
        ),
    ],
    ids=[
        "underscore",
        "128-chars",
        "oversize-value",
        "16-tags",
        "long-tag",
        "long-content-type",
        "exp-before-nbf",
    ],
)
def test_limits_are_refused_with_bad_parameter(
    client: SecretClient, name: str | None, value: str, kwargs: dict[str, Any]
) -> None:
    target = name or unique("limits")
    with pytest.raises(HttpResponseError) as caught:
        client.set_secret(target, value, **kwargs)
    assert error_of(caught.value) == (400, "BadParameter")
    if name is None:  # the refused PUT left nothing behind: the name is unknown, the vault lists fine
        with pytest.raises(ResourceNotFoundError):
            client.get_secret(target)
        assert target not in {p.name for p in client.list_properties_of_secrets()}


def test_limits_at_the_boundary_are_accepted(client: SecretClient) -> None:
    name = unique("x" * 100)[:127]
    secret = client.set_secret(
        name,
        "x" * (25 * 1024),
        tags={f"t{i}": "v" * 512 for i in range(15)},
        content_type="c" * 255,
    )
    assert len(secret.value or "") == 25 * 1024
    assert len(secret.properties.tags or {}) == 15


def test_unrecognised_api_version_and_unknown_routes_get_key_vault_errors(client: SecretClient) -> None:
    name = unique("raw")
    client.set_secret(name, "v")

    bad_version = client.send_request(
        HttpRequest("GET", f"/secrets/{name}/", params={"api-version": "bogus"})
    )
    unknown = client.send_request(HttpRequest("GET", f"/secrets/{name}/a/b"))
    bad_body = client.send_request(
        HttpRequest(
            "PUT", f"/secrets/{name}", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    )

    assert bad_version.status_code == 400
    assert bad_version.json()["error"]["code"] == "BadParameter"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"
    assert bad_body.status_code == 400 and bad_body.json()["error"]["code"] == "BadParameter"
