"""Application credentials on the local tenant through msgraph-sdk: addPassword/removePassword,
keyCredentials (PATCH replaces), addKey/removeKey with proof of possession, federated credentials."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.applications.item.add_key.add_key_post_request_body import AddKeyPostRequestBody
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.application_item_request_builder import ApplicationItemRequestBuilder
from msgraph.generated.applications.item.remove_key.remove_key_post_request_body import (
    RemoveKeyPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.models.application import Application
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.generated.models.key_credential import KeyCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.service_principal import ServicePrincipal

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_graph_support import (
    GRAPH_SCOPE,
    credential,
    graph_client,
    odata_error,
    proof_token,
    self_signed,
    unique,
)

SECRET_ALPHABET = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~")


@dataclass(frozen=True)
class NewApp:
    id: str
    app_id: str


async def new_app(
    client: GraphServiceClient, *, audience: str = "AzureADMyOrg", service_principal: bool = False
) -> NewApp:
    app = await client.applications.post(Application(display_name=unique("cred"), sign_in_audience=audience))
    assert app is not None and app.id and app.app_id
    if service_principal:
        await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
    return NewApp(app.id, app.app_id)


def key_credential(der: bytes, name: str = "cert") -> KeyCredential:
    return KeyCredential(type="AsymmetricX509Cert", usage="Verify", key=der, display_name=name)


async def test_add_password_returns_the_secret_once_and_it_works_until_removed(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await new_app(client, service_principal=True)
    items = client.applications.by_application_id(app.id)

    added = await items.add_password.post(
        AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="rotation-1"))
    )

    assert added is not None and added.secret_text and added.key_id and added.start_date_time
    assert len(added.secret_text) == 40 and set(added.secret_text) <= SECRET_ALPHABET
    assert added.hint == added.secret_text[:3]
    assert added.end_date_time is not None
    assert added.end_date_time - added.start_date_time == timedelta(days=730)
    listed = await items.get()
    assert listed is not None and listed.password_credentials is not None
    assert [(p.key_id, p.hint, p.secret_text) for p in listed.password_credentials] == [
        (added.key_id, added.hint, None)
    ]
    assert credential(tenant, app.app_id, added.secret_text).get_token(GRAPH_SCOPE).token

    await items.remove_password.post(RemovePasswordPostRequestBody(key_id=added.key_id))

    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential(tenant, app.app_id, added.secret_text).get_token(GRAPH_SCOPE)
    with pytest.raises(ODataError) as caught:
        await items.remove_password.post(RemovePasswordPostRequestBody(key_id=added.key_id))
    assert odata_error(caught)[0] == 404


async def test_add_password_validates_dates_and_personal_account_limit(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await new_app(client, audience="AzureADandPersonalMicrosoftAccount")
    items = client.applications.by_application_id(app.id)
    start = datetime.now(UTC)
    with pytest.raises(ODataError) as caught:
        await items.add_password.post(
            AddPasswordPostRequestBody(
                password_credential=PasswordCredential(
                    start_date_time=start, end_date_time=start - timedelta(days=1)
                )
            )
        )
    assert odata_error(caught)[0] == 400
    chosen_end = start + timedelta(days=90)
    first = await items.add_password.post(
        AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=chosen_end))
    )
    assert first is not None and first.end_date_time is not None
    assert abs(first.end_date_time - chosen_end) < timedelta(seconds=1)
    await items.add_password.post(AddPasswordPostRequestBody(password_credential=PasswordCredential()))

    with pytest.raises(ODataError) as caught:
        await items.add_password.post(AddPasswordPostRequestBody(password_credential=PasswordCredential()))
    assert odata_error(caught)[:2] == (400, "TooManyAppPasswords")


async def test_patch_key_credentials_replaces_the_collection(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await new_app(client)
    items = client.applications.by_application_id(app.id)
    _, first_der = self_signed("first")
    _, second_der = self_signed("second")

    await items.patch(Application(key_credentials=[key_credential(first_der, "first")]))
    await items.patch(Application(key_credentials=[key_credential(second_der, "second")]))

    fetched = await items.get()
    assert fetched is not None and fetched.key_credentials is not None
    assert [k.display_name for k in fetched.key_credentials] == ["second"]
    only = fetched.key_credentials[0]
    assert only.key is None  # the certificate itself only on an explicit $select
    assert only.custom_key_identifier == hashlib.sha1(second_der, usedforsecurity=False).digest()
    config = RequestConfiguration(
        query_parameters=ApplicationItemRequestBuilder.ApplicationItemRequestBuilderGetQueryParameters(
            select=["keyCredentials"]
        )
    )
    selected = await items.get(config)
    assert selected is not None and selected.key_credentials is not None
    assert selected.key_credentials[0].key == second_der

    await items.patch(Application(key_credentials=[]))
    emptied = await items.get()
    assert emptied is not None and emptied.key_credentials == []

    with pytest.raises(ODataError) as caught:
        await items.patch(Application(key_credentials=[key_credential(b"not a certificate")]))
    assert odata_error(caught)[0] == 400


async def test_add_key_and_remove_key_need_a_proof_from_a_valid_certificate(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await new_app(client)
    items = client.applications.by_application_id(app.id)
    first_key, first_der = self_signed("first")
    second_key, second_der = self_signed("second")
    stranger_key, _ = self_signed("stranger")

    with pytest.raises(ODataError) as caught:  # no valid certificate yet: addKey is not possible
        await items.add_key.post(
            AddKeyPostRequestBody(
                key_credential=key_credential(second_der), proof=proof_token(first_key, app.id)
            )
        )
    assert odata_error(caught)[0] == 400
    await items.patch(Application(key_credentials=[key_credential(first_der, "first")]))

    bad_proofs = [
        proof_token(stranger_key, app.id),
        proof_token(first_key, str(uuid.uuid4())),
        proof_token(first_key, app.id, lifetime_s=3600),
        "not-a-jwt",
    ]
    for proof in bad_proofs:
        with pytest.raises(ODataError) as caught:
            await items.add_key.post(
                AddKeyPostRequestBody(key_credential=key_credential(second_der), proof=proof)
            )
        assert odata_error(caught)[0] == 400, proof

    added = await items.add_key.post(
        AddKeyPostRequestBody(
            key_credential=key_credential(second_der, "second"), proof=proof_token(first_key, app.id)
        )
    )
    assert added is not None and added.key_id and added.display_name == "second"
    fetched = await items.get()
    assert fetched is not None and {k.display_name for k in fetched.key_credentials or []} == {
        "first",
        "second",
    }

    first_id = next(k.key_id for k in fetched.key_credentials or [] if k.display_name == "first")
    await items.remove_key.post(
        RemoveKeyPostRequestBody(key_id=first_id, proof=proof_token(second_key, app.id))
    )
    remaining = await items.get()
    assert remaining is not None and [k.key_id for k in remaining.key_credentials or []] == [added.key_id]


async def test_federated_credentials_limit_uniqueness_and_immutable_name(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await new_app(client)
    fics = client.applications.by_application_id(app.id).federated_identity_credentials
    issuer = "https://token.actions.githubusercontent.com"

    def fic(index: int, subject: str | None = None) -> FederatedIdentityCredential:
        return FederatedIdentityCredential(
            name=f"fic-{index}",
            issuer=issuer,
            subject=subject or f"repo:contoso/app:environment:env{index}",
            audiences=["api://AzureADTokenExchange"],
        )

    created = [await fics.post(fic(i)) for i in range(20)]
    assert all(c is not None and c.id for c in created)
    listed = await fics.get()
    assert listed is not None and len(listed.value or []) == 20

    with pytest.raises(ODataError) as caught:
        await fics.post(fic(20))
    assert odata_error(caught)[0] == 400

    first = created[0]
    assert first is not None and first.id
    await fics.by_federated_identity_credential_id(first.id).patch(
        FederatedIdentityCredential(subject="repo:contoso/app:ref:refs/heads/main")
    )
    with pytest.raises(ODataError) as caught:
        await fics.by_federated_identity_credential_id(first.id).patch(
            FederatedIdentityCredential(name="renamed")
        )
    assert odata_error(caught)[0] == 400
    await fics.by_federated_identity_credential_id(first.id).delete()

    with pytest.raises(ODataError) as caught:  # same issuer+subject as fic-1
        await fics.post(fic(99, subject="repo:contoso/app:environment:env1"))
    assert odata_error(caught)[0] == 409
    with pytest.raises(ODataError) as caught:  # same name as fic-1
        await fics.post(fic(1, subject="repo:contoso/app:environment:other"))
    assert odata_error(caught)[0] == 409
    with pytest.raises(ODataError) as caught:
        await fics.post(
            FederatedIdentityCredential(
                name="x" * 121, issuer=issuer, subject="s", audiences=["api://AzureADTokenExchange"]
            )
        )
    assert odata_error(caught)[0] == 400
    replacement = await fics.post(fic(21))
    assert replacement is not None and replacement.name == "fic-21"
