"""The credential half of the Directory port: passwords, certificates (keyCredentials), federated credentials.

A mixin of GraphDirectory (graph.py), which provides client(), _call() and _config().
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from functions.adapters.graph_errors import not_found_lag
from functions.adapters.graph_policy import GraphPolicy
from functions.core.ports import AppCredential, FederatedCredentialSpec, IssuedSecret, KeyCredentialSpec
from functions.core.record.errors import NotFound, PermanentError
from functions.core.record.models import CredentialType, SecretValue
from functions.telemetry import redactor


def _no_sdk_retry() -> Any:
    from kiota_http.middleware.options import RetryHandlerOption

    return RetryHandlerOption(should_retry=False)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _key_credential(spec: KeyCredentialSpec) -> Any:
    """The SDK's keyCredential for one of Registrar's certificates (its public part only)."""
    from msgraph.generated.models.key_credential import KeyCredential

    return KeyCredential(
        key_id=uuid.UUID(spec.key_id),
        display_name=spec.display_name,
        type="AsymmetricX509Cert",
        usage="Verify",
        key=spec.certificate_der,
        custom_key_identifier=hashlib.sha1(
            spec.certificate_der, usedforsecurity=False
        ).digest(),  # x5t: Entra requires SHA-1
        start_date_time=spec.start,
        end_date_time=spec.end,
    )


class GraphCredentials(GraphPolicy):
    """passwordCredentials, keyCredentials and federatedIdentityCredentials of an application.
    A new one refused under a tenant policy lowered since it was read is TransientError
    (GraphPolicy.lifetime_refused)."""

    async def list_credentials(self, tenant_id: str, app_object_id: str) -> list[AppCredential]:
        client = self.client(tenant_id)
        app_builder = client.applications.by_application_id(app_object_id)
        get_app = app_builder.to_get_request_information(
            self._config(select=["id", "passwordCredentials", "keyCredentials"])
        )
        app, fics = await asyncio.gather(
            self._send(client, "GET", "application", app_object_id, get_app, not_found_lag),
            self._list(
                client,
                "federatedIdentityCredentials of",
                app_object_id,
                app_builder.federated_identity_credentials,
                None,
                not_found_lag,
            ),
        )
        creds = [
            AppCredential(
                "password",
                str(p["keyId"]),
                p.get("displayName"),
                _when(p.get("startDateTime")),
                _when(p.get("endDateTime")),
            )
            for p in app.get("passwordCredentials") or []
        ]
        for k in app.get("keyCredentials") or []:
            custom = k.get("customKeyIdentifier")
            creds.append(
                AppCredential(
                    "key",
                    str(k["keyId"]),
                    k.get("displayName"),
                    _when(k.get("startDateTime")),
                    _when(k.get("endDateTime")),
                    thumbprint=base64.b64decode(custom).hex().upper() if custom else None,
                )
            )
        creds += [AppCredential("federated", str(f["id"]), f.get("name"), None, None) for f in fics]
        return creds

    async def add_password(
        self, tenant_id: str, app_object_id: str, display_name: str, start: datetime, end: datetime
    ) -> IssuedSecret:
        from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
            AddPasswordPostRequestBody,
        )
        from msgraph.generated.models.password_credential import PasswordCredential

        client = self.client(tenant_id)
        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(
                display_name=display_name, start_date_time=start, end_date_time=end
            )
        )
        request = client.applications.by_application_id(
            app_object_id
        ).add_password.to_post_request_information(body)
        # Never resent by the SDK: a 503/504 may come after Entra committed the password, and a resend
        # would make a second one. The caller's write-ahead name covers the retry: it adopts or
        # removes whatever a lost answer left behind.
        request.add_request_options([_no_sdk_retry()])
        try:
            issued = await self._send(client, "POST", "addPassword on", app_object_id, request, not_found_lag)
        except PermanentError as error:
            raise await self.lifetime_refused(tenant_id, CredentialType.SECRET, error) from None
        secret_text = (issued or {}).get("secretText")
        if not secret_text:
            raise PermanentError(
                f"Graph returned no secret for addPassword on {app_object_id}", code="NoSecretText"
            )
        redactor.register(secret_text)  # no log record may ever show it
        return IssuedSecret(
            key_id=str(issued["keyId"]),
            secret=SecretValue(secret_text),
            hint=issued.get("hint"),
            start=_when(issued.get("startDateTime")) or start,
            end=_when(issued.get("endDateTime")) or end,
            sent_once=True,  # no SDK resend (above); `call` retries only a 404, which committed nothing
        )

    async def remove_password(self, tenant_id: str, app_object_id: str, key_id: str) -> None:
        from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
            RemovePasswordPostRequestBody,
        )

        client = self.client(tenant_id)
        builder = client.applications.by_application_id(app_object_id).remove_password
        request = builder.to_post_request_information(RemovePasswordPostRequestBody(key_id=uuid.UUID(key_id)))
        try:
            await self._send(client, "POST", "removePassword on", app_object_id, request)
        except NotFound:
            return  # the app (or the key) is gone: nothing left to remove
        except PermanentError:
            # Graph answers 400 for a keyId it does not hold: success if it is indeed not there.
            current = await self.list_credentials(tenant_id, app_object_id)
            if any(c.kind == "password" and c.key_id.lower() == key_id.lower() for c in current):
                raise

    async def set_key_credentials(
        self, tenant_id: str, app_object_id: str, keys: Sequence[KeyCredentialSpec]
    ) -> None:
        from msgraph.generated.models.application import Application

        body = Application(key_credentials=[_key_credential(k) for k in keys])
        client = self.client(tenant_id)
        request = client.applications.by_application_id(app_object_id).to_patch_request_information(body)
        try:
            await self._send(client, "PATCH", "keyCredentials of", app_object_id, request, not_found_lag)
        except PermanentError as error:
            raise await self.lifetime_refused(tenant_id, CredentialType.CERTIFICATE, error) from None

    async def remove_key_credential(self, tenant_id: str, app_object_id: str, key_id: str) -> None:
        """Every key but `key_id` written back as Graph holds it (set_own_key_credentials)."""
        await self.set_own_key_credentials(tenant_id, app_object_id, [], {key_id})

    async def set_own_key_credentials(
        self,
        tenant_id: str,
        app_object_id: str,
        keys: Sequence[KeyCredentialSpec],
        own_key_ids: Collection[str],
    ) -> None:
        """GET the app's keyCredentials with their keys ($select of one application: the only read
        that returns `key`), PATCH back the others beside `keys`. Graph has no ETag for an
        application, so a certificate a person adds between the two calls would be dropped: the
        window is one round trip. No PATCH when the app already holds exactly that."""
        from msgraph.generated.models.application import Application
        from msgraph.generated.models.key_credential import KeyCredential

        client = self.client(tenant_id)
        builder = client.applications.by_application_id(app_object_id)
        get = builder.to_get_request_information(self._config(select=["id", "keyCredentials"]))
        try:
            app = await self._send(client, "GET", "application", app_object_id, get, not_found_lag)
        except NotFound:
            if keys:
                raise
            return  # the app is gone, and its keys with it
        held = app.get("keyCredentials") or []
        mine = {k.key_id.lower() for k in keys}
        replaced = mine | {k.lower() for k in own_key_ids}
        others = [k for k in held if str(k["keyId"]).lower() not in replaced]
        held_ids = {str(k["keyId"]).lower() for k in held}
        if held_ids == mine | {str(k["keyId"]).lower() for k in others}:
            return  # already so: Registrar's keys exactly `keys`, the others untouched

        def decoded(value: str | None) -> bytes | None:
            return base64.b64decode(value) if value else None

        body = Application(
            key_credentials=[
                *(
                    KeyCredential(
                        key_id=uuid.UUID(str(k["keyId"])),
                        display_name=k.get("displayName"),
                        type=k.get("type"),
                        usage=k.get("usage"),
                        key=decoded(k.get("key")),
                        custom_key_identifier=decoded(k.get("customKeyIdentifier")),
                        start_date_time=_when(k.get("startDateTime")),
                        end_date_time=_when(k.get("endDateTime")),
                    )
                    for k in others
                ),
                *(_key_credential(k) for k in keys),
            ]
        )
        request = builder.to_patch_request_information(body)
        try:
            await self._send(client, "PATCH", "keyCredentials of", app_object_id, request, not_found_lag)
        except PermanentError as error:
            raise await self.lifetime_refused(tenant_id, CredentialType.CERTIFICATE, error) from None

    async def add_federated_credential(
        self, tenant_id: str, app_object_id: str, spec: FederatedCredentialSpec
    ) -> str:
        from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential

        client = self.client(tenant_id)
        builder = client.applications.by_application_id(app_object_id).federated_identity_credentials

        async def existing() -> str | None:
            items = await self._list(
                client, "federatedIdentityCredentials of", app_object_id, builder, None, not_found_lag
            )
            return next((str(f["id"]) for f in items if f.get("name") == spec.name), None)

        found = await existing()
        if found is not None:
            return found
        body = FederatedIdentityCredential(
            name=spec.name, issuer=spec.issuer, subject=spec.subject, audiences=list(spec.audiences)
        )
        request = builder.to_post_request_information(body)
        try:
            created = await self._send(
                client, "POST", "federatedIdentityCredential on", app_object_id, request, not_found_lag
            )
            return str(created["id"])
        except PermanentError as error:
            if "409" not in str(error):
                raise
            found = await existing()  # created concurrently under the same name
            if found is None:
                raise
            return found

    async def remove_federated_credential(
        self, tenant_id: str, app_object_id: str, credential_id: str
    ) -> None:
        client = self.client(tenant_id)
        request = (
            client.applications.by_application_id(app_object_id)
            .federated_identity_credentials.by_federated_identity_credential_id(credential_id)
            .to_delete_request_information()
        )
        try:
            await self._send(client, "DELETE", "federatedIdentityCredential on", app_object_id, request)
        except NotFound:
            return  # the credential (or the app) is gone: nothing left to remove
