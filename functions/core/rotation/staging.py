"""The next generation of a registration's credential: staged, then (once verified) published.

Connectors read the registration's Key Vault object ("latest"), so a rotated credential must
not appear there before it works. It is first kept under a staging name no consumer reads
(`<name>-staging`); verification acquires a token with it; only then is it published as a new
version of the connector's secret (or imported as a new version of its certificate).

Crash safety follows credentials/issuer.py: the write-ahead display name `registrar-<id>-g<N>` is in
the record before any Graph call; a re-run adopts the named credential whose keyId reached the
staging secret and removes any other with that name, so a rotation makes exactly one credential.
Publishing is idempotent too: a version of the connector's secret tagged with the new keyId, or
a certificate version with the new thumbprint, is adopted rather than written again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from functions.core.catalogue.lifetimes import CredentialLifetimes
from functions.core.catalogue.policy import Policy
from functions.core.credentials.adopted import write_own_keys
from functions.core.credentials.issuer import (
    SECRET_CONTENT_TYPE,
    certificate_in_vault,
    certificate_key_id,
    certificate_state,
    kept_in_vault,
    key_credential,
    remove_other_named_passwords,
    staging_name,
    vault_tags,
)
from functions.core.ports import Clock, Directory, KeyCredentialSpec, Vault
from functions.core.record.errors import NotFound, PermanentError, RecordInconsistent
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import CredentialType, SecretValue
from functions.core.record.registration import (
    CredentialState,
    PendingCredential,
    Registration,
    vault_object_name,
)
from functions.logs import redactor

log = logging.getLogger(__name__)


class NextGeneration:
    def __init__(
        self,
        *,
        directory: Directory,
        vault: Vault,
        clock: Clock,
        default_lifetime: timedelta,
        lifetimes: CredentialLifetimes | None = None,
    ) -> None:
        self._directory = directory
        self._vault = vault
        self._clock = clock
        if lifetimes is None:
            base = Policy()
            policy = Policy(
                default_credential_lifetime=default_lifetime,
                max_credential_lifetime=max(base.max_credential_lifetime, default_lifetime),
            )
            lifetimes = CredentialLifetimes(directory=directory, policy=policy)
        self._lifetimes = lifetimes

    # ------------------------------------------------------------ stage

    async def stage(
        self, keeper: RecordKeeper, pending: PendingCredential
    ) -> tuple[CredentialState, SecretValue]:
        """Issue (or adopt after a crash) generation `pending.generation`, kept in staging."""
        if pending.type is CredentialType.CERTIFICATE:
            return await self._stage_certificate(keeper, pending)
        return await self._stage_secret(keeper, pending)

    async def _stage_secret(
        self, keeper: RecordKeeper, pending: PendingCredential
    ) -> tuple[CredentialState, SecretValue]:
        record = keeper.current
        tenant, app = record.tenant_id, record.app_object_id
        if app is None:
            raise RecordInconsistent(record.id, "app_object_id", "rotation")
        staging = staging_name(record.id)
        named = [
            c
            for c in await self._directory.list_credentials(tenant, app)
            if c.kind == "password" and c.display_name == pending.display_name
        ]
        if named:
            staged = {
                v.tags.get("keyId"): v
                for v in await self._vault.secret_versions(staging)
                if v.tags.get("generation") == str(pending.generation)
            }
            adopted = next((c for c in named if c.key_id in staged), None)
            for c in named:
                if c is not adopted:
                    log.info("removing credential %s that never reached staging", c.key_id)
                    await self._directory.remove_password(tenant, app, c.key_id)
            if adopted is not None:
                ref, value = await self._vault.get_secret(staging, staged[adopted.key_id].version)
                return self._secret_state(
                    pending, adopted.key_id, adopted.start, adopted.end or ref.expires_on
                ), value
        start = self._clock.now()
        end = await self._lifetimes.end(record, CredentialType.SECRET, start)
        issued = await self._directory.add_password(tenant, app, pending.display_name, start, end)
        redactor.register(issued.secret.reveal())
        await self._vault.set_secret(
            staging,
            issued.secret,
            content_type=SECRET_CONTENT_TYPE,
            tags=vault_tags(record, issued.key_id, pending.generation, issued.end.isoformat()),
            expires_on=issued.end,
        )
        await remove_other_named_passwords(self._directory, tenant, app, pending.display_name, issued.key_id)
        return self._secret_state(pending, issued.key_id, issued.start, issued.end), issued.secret

    @staticmethod
    def _secret_state(
        pending: PendingCredential, key_id: str, start: datetime | None, end: datetime | None
    ) -> CredentialState:
        return CredentialState(
            type=CredentialType.SECRET,
            generation=pending.generation,
            display_name=pending.display_name,
            key_id=key_id,
            start=start,
            expires_on=end,
        )

    async def _stage_certificate(
        self, keeper: RecordKeeper, pending: PendingCredential
    ) -> tuple[CredentialState, SecretValue]:
        record = keeper.current
        current = record.credential
        if record.app_object_id is None or current is None:
            raise RecordInconsistent(record.id, "app_object_id or credential", "rotation")
        staging = staging_name(record.id)
        key_id = certificate_key_id(record.id, pending.generation)
        cert, pending = await certificate_in_vault(
            keeper,
            pending,
            staging,
            key_id,
            vault=self._vault,
            lifetimes=self._lifetimes,
            clock=self._clock,
            note_in_history=False,
        )
        # keyCredentials is replaced as a whole: the current key and every older one still in its
        # overlap window stay until their retirement.
        now = self._clock.now()
        overlapping = [
            c for c in record.retiring_credentials if c.retire_after is None or c.retire_after > now
        ]
        keep = await self._key_specs([current, *overlapping])
        await write_own_keys(  # an adopted app's other keys are the person's: they stay
            self._directory,
            record,
            record.app_object_id,
            [*keep, key_credential(key_id, pending.display_name, cert)],
        )
        _, pem = await self._vault.get_secret(staging, cert.secret_uri.rstrip("/").rsplit("/", 1)[-1])
        return certificate_state(pending, key_id, cert), pem

    async def _key_specs(self, credentials: Iterable[CredentialState | None]) -> list[KeyCredentialSpec]:
        """keyCredentials entries of the given certificates (others skipped), each keyId once."""
        specs: dict[str, KeyCredentialSpec] = {}
        for credential in credentials:
            if credential is None or credential.type is not CredentialType.CERTIFICATE:
                continue
            if credential.key_id in specs or credential.certificate_name is None:
                continue
            cert = await self._vault.get_certificate(
                credential.certificate_name, credential.certificate_version
            )
            specs[credential.key_id] = key_credential(credential.key_id, credential.display_name, cert)
        return list(specs.values())

    async def _pending_key_spec(self, record: Registration) -> list[KeyCredentialSpec]:
        """The staged certificate of a rotation under way (it is on the app once staged)."""
        pending = record.pending_credential
        if (
            pending is None
            or pending.type is not CredentialType.CERTIFICATE
            or not pending.certificate_version
        ):
            return []
        cert = await self._vault.get_certificate(staging_name(record.id), pending.certificate_version)
        key_id = certificate_key_id(record.id, pending.generation)
        return [key_credential(key_id, pending.display_name, cert)]

    # ------------------------------------------------------------ publish

    async def publish(
        self, keeper: RecordKeeper, state: CredentialState, value: SecretValue
    ) -> CredentialState:
        """Make the verified credential the connector's "latest"; idempotent."""
        record = keeper.current
        name = vault_object_name(record.id)
        expires = state.expires_on.isoformat() if state.expires_on else ""
        tags = vault_tags(record, state.key_id, state.generation, expires)
        if state.type is CredentialType.CERTIFICATE:
            latest = await self._vault.get_certificate(name)
            cert = latest if latest.thumbprint_sha1 == state.thumbprint else None
            if cert is None:
                cert = await self._vault.import_certificate(name, value, tags=tags)
            return kept_in_vault(state, name, cert)
        existing = next(
            (v for v in await self._vault.secret_versions(name) if v.tags.get("keyId") == state.key_id), None
        )
        ref = existing or await self._vault.set_secret(
            name, value, content_type=SECRET_CONTENT_TYPE, tags=tags, expires_on=state.expires_on
        )
        if record.app_object_id is not None:  # the verified one is now the only one with its name
            await remove_other_named_passwords(
                self._directory, record.tenant_id, record.app_object_id, state.display_name, state.key_id
            )
        return replace(state, secret_name=name, secret_uri=ref.uri, secret_version=ref.version)

    async def unstage(self, registration_id: str) -> None:
        """Disable what staging holds: nothing but the published copy stays readable.

        Disabled, not deleted: with purge protection a deleted name could not be reused by the
        next rotation for the retention period.
        """
        staging = staging_name(registration_id)
        for version in await self._vault.secret_versions(staging):
            if not version.enabled:
                continue
            try:
                await self._vault.update_secret_version(staging, version.version, enabled=False)
            except PermanentError:
                # A staged certificate's backing secret is managed by Key Vault (403 on update):
                # the certificate version is disabled instead, and its secret follows.
                await self._vault.update_certificate_version(staging, version.version, enabled=False)

    # ------------------------------------------------------------ retire

    async def retire(self, keeper: RecordKeeper, old: CredentialState) -> None:
        """Remove an old credential from the app and disable its Key Vault version; idempotent."""
        record = keeper.current
        tenant, app = record.tenant_id, record.app_object_id
        if app is None:
            raise RecordInconsistent(record.id, "app_object_id", "rotation")
        if old.type is CredentialType.SECRET:
            await self._directory.remove_password(tenant, app, old.key_id)
            if old.secret_name and old.secret_version:
                await self._vault.update_secret_version(old.secret_name, old.secret_version, enabled=False)
        elif old.type is CredentialType.CERTIFICATE:
            # Everything else stays: the current certificate, others still in their overlap window,
            # and a rotation's staged one.
            others = [c for c in record.retiring_credentials if c.key_id != old.key_id]
            keep = await self._key_specs(
                c for c in (record.credential, *others) if c is None or c.key_id != old.key_id
            )
            pending = [k for k in await self._pending_key_spec(record) if k.key_id != old.key_id]
            await write_own_keys(self._directory, record, app, [*keep, *pending])  # the person's stay
            if old.certificate_name and old.certificate_version:
                with contextlib.suppress(NotFound):  # the certificate is gone already
                    await self._vault.update_certificate_version(
                        old.certificate_name, old.certificate_version, enabled=False
                    )
