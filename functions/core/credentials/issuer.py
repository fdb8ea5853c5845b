"""Issuing a registration's credential (secret, certificate, federated) and removing everything.

Write-ahead: the credential's displayName (`registrar-<registration id>-g<generation>`) is saved
in the record BEFORE the Graph call that creates it. A retry looks for credentials with that
name on the app: one whose keyId reached Key Vault is adopted, any other is removed, so a crash
anywhere leaves exactly one credential, and it is the one in Key Vault.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from functions.core.catalogue.lifetimes import CredentialLifetimes
from functions.core.credentials.adopted import remove_own_credentials, write_own_keys
from functions.core.ports import (
    Clock,
    Directory,
    FederatedCredentialSpec,
    KeyCredentialSpec,
    Vault,
    VaultCertificate,
    VaultSecretRef,
)
from functions.core.record.errors import NotFound, PermanentError, RecordInconsistent, TransientError
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import CredentialType, SecretValue
from functions.core.record.registration import (
    CredentialState,
    PendingCredential,
    Registration,
    credential_display_name,
    unique_name_for,
    vault_object_name,
)
from functions.core.record.steps import concurrently
from functions.logs import redactor

log = logging.getLogger(__name__)

SECRET_CONTENT_TYPE = "text/plain; registrar=client-secret"  # noqa: S105  (a content type, not a secret)
_KEY_ID_NAMESPACE = uuid.UUID("8d0f6f1e-5c8e-4b8a-9b0e-6a1f2f0c7e11")
# How long after an app step was tried a lookup that misses the app is not trusted: replication
# is observed to take seconds to minutes (no SLA). The stuck sweep retries a `failing` cleanup
# only after REGISTRAR_PROVISIONING_DEADLINE (1 h by default), past this horizon.
APP_REPLICATION_HORIZON = timedelta(minutes=30)


def certificate_key_id(registration_id: str, generation: int) -> str:
    """keyCredentials keyId of a generation: deterministic, so re-PATCHing after a crash is a no-op."""
    return str(uuid.uuid5(_KEY_ID_NAMESPACE, f"{registration_id}/g{generation}"))


async def remove_other_named_passwords(
    directory: Directory, tenant_id: str, app_object_id: str, display_name: str, keep_key_id: str
) -> None:
    """Remove every password named `display_name` except `keep_key_id` (idempotent).

    A write Entra committed but whose answer was lost (a gateway 504) leaves a second password
    with the write-ahead name; this removes it once the one that counts is kept in Key Vault."""
    for c in await directory.list_credentials(tenant_id, app_object_id):
        if c.kind == "password" and c.display_name == display_name and c.key_id != keep_key_id:
            log.info("removing duplicate credential %s named %s", c.key_id, display_name)
            await directory.remove_password(tenant_id, app_object_id, c.key_id)


def vault_tags(record: Registration, key_id: str, generation: int, expires_on: str) -> dict[str, str]:
    return {
        "registrationId": record.id,
        "tenantId": record.tenant_id,
        "appId": record.app_id or "",
        "keyId": key_id,
        "generation": str(generation),
        "expiresOn": expires_on,
        "profileId": record.profile_id,
    }


def kept_in_vault(state: CredentialState, name: str, cert: VaultCertificate) -> CredentialState:
    """`state` where Key Vault keeps it as certificate `name` at `cert`'s version (and its secret)."""
    return replace(
        state,
        secret_name=name,
        secret_uri=cert.secret_uri,
        secret_version=cert.secret_uri.rstrip("/").rsplit("/", 1)[-1],
        certificate_name=name,
        certificate_uri=cert.certificate_uri,
        certificate_version=cert.version,
    )


def key_credential(key_id: str, display_name: str, cert: VaultCertificate) -> KeyCredentialSpec:
    """The app's keyCredentials entry for Key Vault certificate `cert`."""
    return KeyCredentialSpec(key_id, display_name, cert.der, cert.not_before, cert.expires_on)


def certificate_state(pending: PendingCredential, key_id: str, cert: VaultCertificate) -> CredentialState:
    """The certificate credential `pending` becomes once `cert` is on the app under `key_id`."""
    return CredentialState(
        type=CredentialType.CERTIFICATE,
        generation=pending.generation,
        display_name=pending.display_name,
        key_id=key_id,
        start=cert.not_before,
        expires_on=cert.expires_on,
        thumbprint=cert.thumbprint_sha1,
    )


async def certificate_in_vault(
    keeper: RecordKeeper,
    pending: PendingCredential,
    name: str,
    key_id: str,
    *,
    vault: Vault,
    lifetimes: CredentialLifetimes,
    clock: Clock,
    note_in_history: bool,
) -> tuple[VaultCertificate, PendingCredential]:
    """Key Vault certificate `name` for `pending`'s generation, and `pending` as it now stands: a
    new version is written ahead in the record before Graph sees it, so a retry takes it again."""
    record = keeper.current
    if pending.certificate_version:
        cert = await vault.get_certificate(name, pending.certificate_version)
        # Entra refused it under a tenant policy lowered since (a retry): make one that fits.
        if cert.expires_on <= await lifetimes.end(record, CredentialType.CERTIFICATE, cert.not_before):
            return cert, pending
    months = await lifetimes.certificate_validity(record, clock.now())
    made = await vault.create_certificate(
        name,
        subject=f"CN={record.id}",
        validity_months=months,
        tags=vault_tags(record, key_id, pending.generation, ""),
    )
    written = replace(pending, certificate_version=made.version)
    if note_in_history:
        await keeper.update(
            lambda r: replace(r, pending_credential=written).with_event(
                "credential", "certificate", clock.now(), f"version {made.version}"
            )
        )
    else:
        await keeper.update(lambda r: replace(r, pending_credential=written))
    return made, written


def staging_name(registration_id: str) -> str:
    """Where a rotation keeps the next credential until it is verified (no consumer reads it)."""
    return f"{vault_object_name(registration_id)}-staging"


class CredentialIssuer:
    def __init__(
        self,
        *,
        directory: Directory,
        vault: Vault,
        clock: Clock,
        lifetimes: CredentialLifetimes | None = None,
    ) -> None:
        self._directory = directory
        self._vault = vault
        self._clock = clock
        self._lifetimes = lifetimes or CredentialLifetimes(directory=directory)

    async def issue_first(
        self, keeper: RecordKeeper, on_issued: Callable[[SecretValue], None] | None = None
    ) -> SecretValue | None:
        """Issue generation 1 unless done. Returns the new secret value (in memory, for verify),
        or None when there is none to return (certificate, federated, adopted after a crash).
        on_issued gets a new secret as soon as Graph returns it, while it is still being written
        to Key Vault: the caller may prove it works in the meantime."""
        record = keeper.current
        if record.credential is not None and record.pending_credential is None:
            return None
        kind = record.plan.credential.type
        pending = record.pending_credential
        retry = pending is not None
        if pending is None:
            pending = PendingCredential(
                type=kind,
                generation=1,
                display_name=credential_display_name(record.id, 1),
                started_at=self._clock.now(),
            )
            await keeper.update(
                lambda r: replace(r, pending_credential=pending).with_event(
                    "credential", "started", pending.started_at, pending.display_name
                )
            )
        if kind is CredentialType.SECRET:
            return await self._secret(keeper, pending, retry, on_issued)
        if kind is CredentialType.CERTIFICATE:
            await self._certificate(keeper, pending)
            return None
        await self._federated(keeper, pending)
        return None

    # ------------------------------------------------------------ client secret

    async def _secret(
        self,
        keeper: RecordKeeper,
        pending: PendingCredential,
        retry: bool,
        on_issued: Callable[[SecretValue], None] | None,
    ) -> SecretValue | None:
        record = keeper.current
        tenant, app = record.tenant_id, record.app_object_id
        if app is None:
            raise RecordInconsistent(record.id, "app_object_id", "credential")
        name = vault_object_name(record.id)
        if retry and await self._adopt_or_clean(keeper, pending):
            return None
        start = self._clock.now()
        end = await self._lifetimes.end(record, CredentialType.SECRET, start)
        issued = await self._directory.add_password(tenant, app, pending.display_name, start, end)
        redactor.register(issued.secret.reveal())  # a slip into any log line is masked
        if on_issued is not None:
            on_issued(issued.secret)
        kept: list[VaultSecretRef] = []

        async def keep_in_vault() -> None:
            kept.append(
                await self._vault.set_secret(
                    name,
                    issued.secret,
                    content_type=SECRET_CONTENT_TYPE,
                    tags=vault_tags(record, issued.key_id, pending.generation, issued.end.isoformat()),
                    expires_on=issued.end,
                )
            )

        # A twin with the write-ahead name can come from an earlier attempt whose answer was lost
        # (a re-run: _adopt_or_clean's list may not have shown it yet) or from a resent POST. On a
        # first attempt whose POST went once (sent_once), the name is new and the lease keeps other
        # workers out: nothing to sweep, and a new registration saves the round trip. The sweep
        # keeps the issued keyId, so it runs beside the vault write; a crash between the two is a
        # crash between addPassword and set_secret: the re-run adopts what reached Key Vault.
        if retry or not issued.sent_once:
            await concurrently(
                keep_in_vault(),
                remove_other_named_passwords(
                    self._directory, tenant, app, pending.display_name, issued.key_id
                ),
            )
        else:
            await keep_in_vault()
        ref = kept[0]
        state = CredentialState(
            type=CredentialType.SECRET,
            generation=pending.generation,
            display_name=pending.display_name,
            key_id=issued.key_id,
            start=issued.start,
            expires_on=issued.end,
            secret_name=name,
            secret_uri=ref.uri,
            secret_version=ref.version,
        )
        await self._record(keeper, state)
        return issued.secret

    async def _adopt_or_clean(self, keeper: RecordKeeper, pending: PendingCredential) -> bool:
        """After a crash: adopt the named password whose keyId reached Key Vault, remove the rest."""
        record = keeper.current
        tenant, app = record.tenant_id, record.app_object_id
        if app is None:
            raise RecordInconsistent(record.id, "app_object_id", "credential")
        named = [
            c
            for c in await self._directory.list_credentials(tenant, app)
            if c.kind == "password" and c.display_name == pending.display_name
        ]
        if not named:
            return False
        name = vault_object_name(record.id)
        in_vault = {v.tags.get("keyId"): v for v in await self._vault.secret_versions(name)}
        adopted = next((c for c in named if c.key_id in in_vault), None)
        for c in named:
            if c is not adopted:
                log.info("removing credential %s that never reached Key Vault", c.key_id)
                await self._directory.remove_password(tenant, app, c.key_id)
        if adopted is None:
            return False
        version = in_vault[adopted.key_id]
        await self._record(
            keeper,
            CredentialState(
                type=CredentialType.SECRET,
                generation=pending.generation,
                display_name=pending.display_name,
                key_id=adopted.key_id,
                start=adopted.start,
                expires_on=adopted.end or version.expires_on,
                secret_name=name,
                secret_uri=version.uri,
                secret_version=version.version,
            ),
        )
        return True

    # ------------------------------------------------------------ certificate

    async def _certificate(self, keeper: RecordKeeper, pending: PendingCredential) -> None:
        record = keeper.current
        if record.app_object_id is None:
            raise RecordInconsistent(record.id, "app_object_id", "credential")
        name = vault_object_name(record.id)
        key_id = certificate_key_id(record.id, pending.generation)
        cert, pending = await certificate_in_vault(
            keeper,
            pending,
            name,
            key_id,
            vault=self._vault,
            lifetimes=self._lifetimes,
            clock=self._clock,
            note_in_history=True,
        )
        # keyCredentials is replaced as a whole: of Registrar's keys only this generation's belongs
        # there now; an adopted app's other keys are the person's and stay (write_own_keys).
        await write_own_keys(
            self._directory,
            record,
            record.app_object_id,
            [key_credential(key_id, pending.display_name, cert)],
        )
        await self._record(keeper, kept_in_vault(certificate_state(pending, key_id, cert), name, cert))

    # ------------------------------------------------------------ federated

    async def _federated(self, keeper: RecordKeeper, pending: PendingCredential) -> None:
        record = keeper.current
        spec = record.plan.credential
        if record.app_object_id is None:
            raise RecordInconsistent(record.id, "app_object_id", "credential")
        if not spec.issuer or not spec.subject:
            raise PermanentError("a federated credential needs issuer and subject", code="FederatedSpec")
        fic_id = await self._directory.add_federated_credential(
            record.tenant_id,
            record.app_object_id,
            FederatedCredentialSpec(
                name=pending.display_name[:120],
                issuer=spec.issuer,
                subject=spec.subject,
                audiences=spec.audiences,
            ),
        )
        await self._record(
            keeper,
            CredentialState(
                type=CredentialType.FEDERATED,
                generation=pending.generation,
                display_name=pending.display_name,
                key_id=fic_id,
                start=self._clock.now(),
                issuer=spec.issuer,
                subject=spec.subject,
            ),
        )

    async def _record(self, keeper: RecordKeeper, state: CredentialState) -> None:
        now = self._clock.now()
        await keeper.update(
            lambda r: replace(r, credential=state, pending_credential=None).with_event(
                "credential", "done", now, f"{state.type.value} keyId {state.key_id}"
            )
        )

    # ------------------------------------------------------------ removal

    async def remove_everything(self, record: Registration) -> None:
        """Remove the registration's credentials, app (its service principal goes with it) and
        Key Vault objects. Idempotent; finds an app a crash left unrecorded by its uniqueName.

        An adopted app is a person's: only Registrar's own credentials leave it (credentials/adopted.py),
        never the app, its other credentials or its permissions."""
        tenant = record.tenant_id
        if record.adoption is not None:
            try:
                await remove_own_credentials(self._directory, record, record.adoption.app_object_id)
            except NotFound:
                pass  # the person deleted the app
            except PermanentError as error:
                if error.code != "Authorization_RequestDenied":
                    raise
                # A person removed Registrar's ownership: it may not change the app any more.
                log.warning("Registrar no longer owns the adopted app: its credentials stay there")
            await self.remove_vault_objects(record)
            return
        app_object_id = record.app_object_id or await self._unrecorded_app(record)
        if app_object_id is not None:
            try:
                for c in await self._directory.list_credentials(tenant, app_object_id):
                    if c.kind == "password":
                        await self._directory.remove_password(tenant, app_object_id, c.key_id)
                    elif c.kind == "key":
                        await self._directory.set_key_credentials(tenant, app_object_id, [])
            except NotFound:
                pass  # the app is already gone
            await self._directory.delete_application(tenant, app_object_id)
        await self.remove_vault_objects(record)

    async def remove_vault_objects(self, record: Registration) -> None:
        """Delete the registration's credential from Key Vault, and a rotation's staging copy."""
        kinds = {c.type for c in (record.credential, *record.retiring_credentials) if c is not None}
        if record.pending_credential is not None:
            kinds.add(record.pending_credential.type)
        name = vault_object_name(record.id)
        if CredentialType.CERTIFICATE in kinds:
            await self._vault.delete_certificate(name)
            await self._vault.delete_certificate(staging_name(record.id))  # a rotation under way
        if CredentialType.SECRET in kinds:
            await self._vault.delete_secret(name)
            await self._vault.delete_secret(staging_name(record.id))

    async def _unrecorded_app(self, record: Registration) -> str | None:
        """The object id of an app the record does not hold, found by its uniqueName.

        When the app step was tried, its create may have committed with the answer lost, and a
        lookup right after can miss an app Entra has not replicated yet: the lookup waits out the
        replication window, and a miss within APP_REPLICATION_HORIZON of the attempt is
        TransientError (the cleanup is retried later: the record stays `failing`), never "clean"."""
        unique_name = unique_name_for(record.id)
        attempted = app_attempted_at(record)
        found = await self._directory.find_application(
            record.tenant_id, unique_name, lag=attempted is not None
        )
        if found is not None:
            return found.object_id
        if attempted is not None and self._clock.now() - attempted < APP_REPLICATION_HORIZON:
            raise TransientError(
                f"application {unique_name} not found yet, and its creation at "
                f"{attempted.isoformat()} may not have replicated: the cleanup is retried later",
                retry_after=timedelta(minutes=1),
            )
        return None


def app_attempted_at(record: Registration) -> datetime | None:
    """When the app step was last tried, if after the last completed cleanup (None: never, so no
    app can exist). A paused or failed app step leaves an `app` event or last_error.step "app"."""
    times = [e.at for e in record.history if e.step == "app"]
    if record.last_error is not None and record.last_error.step == "app":
        times.append(record.last_error.at)
    cleaned = [e.at for e in record.history if e.step == "cleanup" and e.outcome == "done"]
    if not times or (cleaned and max(cleaned) >= max(times)):
        return None
    return max(times)
