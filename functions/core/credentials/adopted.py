"""Registrar's own credentials on an app it adopted, and removing exactly those.

An adopted app belongs to a person: it holds credentials Registrar never made (the secret pasted
into the connector, a certificate someone uploaded, one added after the adoption). Registrar's own
are exactly (docs/adoption.md, convention 6 of issue 15's split): the record's credential, the
pending one (found on the app by its write-ahead display name, or a certificate's deterministic
keyId), and retiring ones of generation >= 1. Nothing else is ever removed: not a keyId recorded in
`adoption.found_credentials` (those are the person's, retired only by rotation's retire jobs as
`retireExisting` says), and not one the record does not know.

Used by decommission (the release of an adopted registration) and by any cleanup that ends one
(issuer.remove_everything), so no path deletes the person's app or its other credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from functions.core.ports import AppCredential, Directory, KeyCredentialSpec
from functions.core.record.models import CredentialType
from functions.core.record.registration import Registration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnCredential:
    """One of Registrar's credentials as the app holds it now."""

    kind: str  # "password" | "key" | "federated", as AppCredential.kind
    key_id: str


def own_credentials(record: Registration, on_app: list[AppCredential]) -> list[OwnCredential]:
    """Registrar's credentials among `on_app` (the app's credentials as Graph lists them now)."""
    from functions.core.credentials.issuer import certificate_key_id  # below: no import cycle

    found = {c.key_id.lower() for c in record.adoption.found_credentials} if record.adoption else set()
    known = {
        c.key_id.lower()
        for c in (record.credential, *record.retiring_credentials)
        if c is not None and c.generation >= 1
    }
    pending = record.pending_credential
    staged_key = certificate_key_id(record.id, pending.generation).lower() if pending else None
    own: list[OwnCredential] = []
    for c in on_app:
        key = c.key_id.lower()
        if key in found:
            continue  # the person's, whatever its name says
        half_made = (
            pending is not None
            and (
                (
                    pending.type is CredentialType.SECRET
                    and c.kind == "password"
                    and c.display_name == pending.display_name
                )
                or (pending.type is CredentialType.CERTIFICATE and c.kind == "key" and key == staged_key)
                or (  # its name is the write-ahead display name (issuer._federated)
                    pending.type is CredentialType.FEDERATED
                    and c.kind == "federated"
                    and c.display_name == pending.display_name[:120]
                )
            )
        )
        if key in known or half_made:
            own.append(OwnCredential(c.kind, c.key_id))
    return own


def registrar_key_ids(record: Registration) -> frozenset[str]:
    """Every keyId a certificate of Registrar's can have on the record's app: the deterministic
    keyId of each generation up to the next one (a write that died before its record was saved
    included), and the keys the record knows; never one found at adoption (the person's)."""
    from functions.core.credentials.issuer import certificate_key_id  # below: no import cycle

    known = [c for c in (record.credential, *record.retiring_credentials) if c is not None]
    generations = [c.generation for c in known]
    if record.pending_credential is not None:
        generations.append(record.pending_credential.generation)
    top = max(generations, default=0) + 1
    ids = {certificate_key_id(record.id, g) for g in range(1, top + 1)}
    ids |= {c.key_id for c in known if c.type is CredentialType.CERTIFICATE and c.generation >= 1}
    found = {c.key_id.lower() for c in record.adoption.found_credentials} if record.adoption else set()
    return frozenset(k for k in ids if k.lower() not in found)


async def write_own_keys(
    directory: Directory, record: Registration, app_object_id: str, keys: Sequence[KeyCredentialSpec]
) -> None:
    """Registrar's certificates on the app become exactly `keys`. keyCredentials is replaced as a
    whole: on an app Registrar made every key is Registrar's, so `keys` is the collection; on an
    adopted app the person's keys (found at adoption, or added since) are written back beside them
    as Graph holds them (Directory.set_own_key_credentials)."""
    if record.adoption is None:
        await directory.set_key_credentials(record.tenant_id, app_object_id, keys)
        return
    await directory.set_own_key_credentials(record.tenant_id, app_object_id, keys, registrar_key_ids(record))


@dataclass(frozen=True)
class Removal:
    removed: tuple[str, ...]  # keyIds removed by this call (what was already gone is not listed)
    # Registrar's credentials it could not remove safely (none today: each kind has its call).
    left: tuple[str, ...]


async def remove_own_credentials(directory: Directory, record: Registration, app_object_id: str) -> Removal:
    """Remove Registrar's own secrets, certificates and federated credentials from the adopted app.
    Idempotent.

    A certificate goes through remove_key_credential, which keeps every other key as Graph holds
    it (keyCredentials is replaced as a whole); a federated credential of Registrar's (only the
    `custom` profile asks for one) is deleted by its id, the person's left as they are.
    """
    on_app = await directory.list_credentials(record.tenant_id, app_object_id)
    removed: list[str] = []
    for c in own_credentials(record, on_app):
        if c.kind == "password":
            await directory.remove_password(record.tenant_id, app_object_id, c.key_id)
        elif c.kind == "key":
            await directory.remove_key_credential(record.tenant_id, app_object_id, c.key_id)
        else:
            await directory.remove_federated_credential(record.tenant_id, app_object_id, c.key_id)
        removed.append(c.key_id)
    return Removal(tuple(removed), ())
