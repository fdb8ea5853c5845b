"""The credential half of the Directory port: passwords, certificates (keyCredentials), federated credentials.

A mixin of GraphDirectory (graph.py), which provides client(), _call() and _config().
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from functions.adapters.graph_errors import not_found_lag
from functions.core.errors import NotFound, PermanentError
from functions.core.models import SecretValue
from functions.core.ports import AppCredential, FederatedCredentialSpec, IssuedSecret, KeyCredentialSpec
from functions.telemetry import redactor


class GraphCredentials:
    """passwordCredentials, keyCredentials and federatedIdentityCredentials of an application."""

    def client(self, tenant_id: str) -> Any:
        raise NotImplementedError

    async def _call(
        self,
        operation: str,
        what: str,
        key: str,
        attempt: Callable[[], Awaitable[Any]],
        lag: Callable[[Any], bool] | None = None,
    ) -> Any:
        raise NotImplementedError

    @staticmethod
    def _config(*, filter: str | None = None, select: list[str] | None = None) -> Any:
        raise NotImplementedError

    async def _pages(self, builder: Any, first: Any) -> list[Any]:
        raise NotImplementedError

    async def list_credentials(self, tenant_id: str, app_object_id: str) -> list[AppCredential]:
        app_builder = self.client(tenant_id).applications.by_application_id(app_object_id)
        config = self._config(select=["id", "passwordCredentials", "keyCredentials"])
        fic_builder = app_builder.federated_identity_credentials

        async def federated() -> list[Any]:
            return await self._pages(fic_builder, await fic_builder.get())

        app, fics = await asyncio.gather(
            self._call("GET", "application", app_object_id, lambda: app_builder.get(config), not_found_lag),
            self._call("GET", "federatedIdentityCredentials of", app_object_id, federated, not_found_lag),
        )
        creds = [
            AppCredential("password", str(p.key_id), p.display_name, p.start_date_time, p.end_date_time)
            for p in app.password_credentials or []
        ]
        creds += [
            AppCredential(
                "key",
                str(k.key_id),
                k.display_name,
                k.start_date_time,
                k.end_date_time,
                thumbprint=k.custom_key_identifier.hex().upper() if k.custom_key_identifier else None,
            )
            for k in app.key_credentials or []
        ]
        creds += [AppCredential("federated", str(f.id), f.name, None, None) for f in fics]
        return creds

    async def add_password(
        self, tenant_id: str, app_object_id: str, display_name: str, start: datetime, end: datetime
    ) -> IssuedSecret:
        from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
            AddPasswordPostRequestBody,
        )
        from msgraph.generated.models.password_credential import PasswordCredential

        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(
                display_name=display_name, start_date_time=start, end_date_time=end
            )
        )
        builder = self.client(tenant_id).applications.by_application_id(app_object_id).add_password
        issued = await self._call(
            "POST", "addPassword on", app_object_id, lambda: builder.post(body), not_found_lag
        )
        if issued is None or not issued.secret_text:
            raise PermanentError(
                f"Graph returned no secret for addPassword on {app_object_id}", code="NoSecretText"
            )
        redactor.register(issued.secret_text)  # no log record may ever show it
        return IssuedSecret(
            key_id=str(issued.key_id),
            secret=SecretValue(issued.secret_text),
            hint=issued.hint,
            start=issued.start_date_time or start,
            end=issued.end_date_time or end,
        )

    async def remove_password(self, tenant_id: str, app_object_id: str, key_id: str) -> None:
        from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
            RemovePasswordPostRequestBody,
        )

        builder = self.client(tenant_id).applications.by_application_id(app_object_id).remove_password
        body = RemovePasswordPostRequestBody(key_id=uuid.UUID(key_id))
        try:
            await self._call("POST", "removePassword on", app_object_id, lambda: builder.post(body))
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
        from msgraph.generated.models.key_credential import KeyCredential

        body = Application(
            key_credentials=[
                KeyCredential(
                    key_id=uuid.UUID(k.key_id),
                    display_name=k.display_name,
                    type="AsymmetricX509Cert",
                    usage="Verify",
                    key=k.certificate_der,
                    custom_key_identifier=hashlib.sha1(k.certificate_der).digest(),  # noqa: S324  (x5t thumbprint)
                    start_date_time=k.start,
                    end_date_time=k.end,
                )
                for k in keys
            ]
        )
        builder = self.client(tenant_id).applications.by_application_id(app_object_id)
        await self._call(
            "PATCH", "keyCredentials of", app_object_id, lambda: builder.patch(body), not_found_lag
        )

    async def add_federated_credential(
        self, tenant_id: str, app_object_id: str, spec: FederatedCredentialSpec
    ) -> str:
        from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential

        builder = (
            self.client(tenant_id)
            .applications.by_application_id(app_object_id)
            .federated_identity_credentials
        )

        async def existing() -> str | None:
            items = await self._call(
                "GET",
                "federatedIdentityCredentials of",
                app_object_id,
                builder.get,
                not_found_lag,
            )
            return next((str(f.id) for f in (items.value or []) if f.name == spec.name), None)

        found = await existing()
        if found is not None:
            return found
        body = FederatedIdentityCredential(
            name=spec.name, issuer=spec.issuer, subject=spec.subject, audiences=list(spec.audiences)
        )
        try:
            created = await self._call(
                "POST",
                "federatedIdentityCredential on",
                app_object_id,
                lambda: builder.post(body),
                not_found_lag,
            )
            return str(created.id)
        except PermanentError as error:
            if "409" not in str(error):
                raise
            found = await existing()  # created concurrently under the same name
            if found is None:
                raise
            return found
