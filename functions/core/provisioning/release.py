"""Decommissioning an adopted registration: release the person's app (the default), or delete it.

Issue 15 §2, "Releasing". An adopted app is a person's (record.adoption): decommission never
deletes it unless asked with `deleteApp=true` (Adoption.delete_app, saved with `decommissioning`
so the worker finishing a crashed decommission does the same thing).

Release:
1. Read the app's owners (Application.Read.All: a read needs no ownership). Registrar acts with
   Application.ReadWrite.OwnedBy, so it can change the app only while it is among them.
2. While it is: remove Registrar's own credentials (credentials/adopted.py: never a keyId recorded
   at adoption, never one the record does not know).
3. Delete Registrar's Key Vault objects (the credential and a rotation's staging copy; the webhook
   signing secrets go in lifecycle.finish_decommission).
4. Save the record with its credentials cleared and what was removed in the history: from here a
   re-run has nothing to remove, so it never needs the ownership that step 5 gives up.
5. Remove Registrar's ownership, LAST (DELETE owners/{id}/$ref; idempotent). Graph lets an app
   lose its last owner (no documented refusal, unlike a group's last owner), so this always
   succeeds; the history says when the app is left with no owner at all.
The app, its other credentials and its permissions stay as they are.

Delete (deleteApp=true): DELETE the application while Registrar still owns it (its service
principal goes with it, and Entra keeps both in deletedItems for 30 days), then the Key Vault
objects. Registrar no longer an owner (a person removed it) cannot delete: the app is released
instead, and the history says why.

Every Graph call is idempotent (a missing owner, credential or app is success), so a run killed
between any two calls converges when the registration worker finishes the `decommissioning`
registration (tests/unit/test_adoption_release.py kills it after every call).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from functions.core.credentials.adopted import Removal, remove_own_credentials
from functions.core.credentials.issuer import CredentialIssuer
from functions.core.ports import Clock, Directory
from functions.core.record.errors import NotFound, PermanentError
from functions.core.record.keeper import RecordKeeper
from functions.core.record.registration import Adoption, Registration

log = logging.getLogger(__name__)

STEP = "release"
DENIED = "Authorization_RequestDenied"


async def end_adoption(
    keeper: RecordKeeper, issuer: CredentialIssuer, directory: Directory, clock: Clock
) -> str:
    """Release (or delete, as asked) the adopted app of a `decommissioning` registration; returns
    the decommission's summary for the history."""
    record = keeper.current
    adoption = record.adoption
    if adoption is None:
        raise ValueError(f"registration {record.id} did not adopt an app")
    tenant = record.tenant_id
    principal = adoption.registrar_principal_id or await directory.registrar_principal_id(tenant)
    try:
        owners = await directory.application_owner_ids(tenant, adoption.app_object_id)
    except NotFound:  # deleted by a person, or by a run of this one that died before saving
        await issuer.remove_vault_objects(record)
        await _cleared(keeper, clock, f"the app {adoption.app_id} no longer exists")
        asked = " (deleteApp=true asked for it)" if adoption.delete_app else ""
        return f"vault objects deleted; the adopted app {adoption.app_id} is gone{asked}"
    if adoption.delete_app and principal.lower() in owners:
        try:
            await directory.delete_application(tenant, adoption.app_object_id)
        except PermanentError as error:
            if error.code != DENIED:
                raise
            # A person removed Registrar's ownership since the read: it can only release now.
            return await _release(keeper, issuer, directory, clock, owners - {principal.lower()}, principal)
        await issuer.remove_vault_objects(record)
        await _cleared(keeper, clock, f"app {adoption.app_id} deleted (deleteApp=true)")
        log.info("adopted app %s deleted, as its decommission asked", adoption.app_id)
        return (
            f"the adopted app {adoption.app_id} deleted as asked (deleteApp=true; its service principal "
            "with it, both restorable from deleted items for 30 days); vault objects deleted"
        )
    return await _release(keeper, issuer, directory, clock, owners, principal)


async def _release(  # noqa: PLR0917  (the release's collaborators and what step 1 read)
    keeper: RecordKeeper,
    issuer: CredentialIssuer,
    directory: Directory,
    clock: Clock,
    owners: set[str],
    principal: str,
) -> str:
    record = keeper.current
    adoption = record.adoption
    if adoption is None:
        raise ValueError(f"registration {record.id} did not adopt an app")
    owned = principal.lower() in owners
    removal = Removal((), ())
    if owned:
        removal = await remove_own_credentials(directory, record, adoption.app_object_id)
    await issuer.remove_vault_objects(record)
    await _cleared(keeper, clock, _removed(removal, owned, _issued_any(record)))
    if owned:
        await directory.remove_owner(record.tenant_id, adoption.app_object_id, principal)
    log.info("adopted app %s released (Registrar an owner until now: %s)", adoption.app_id, owned)
    parts = [f"the adopted app {adoption.app_id} released: its other credentials and permissions left"]
    if adoption.delete_app:
        parts.append("deleteApp=true, but Registrar was no longer an owner, so it could not delete it")
    parts.append(_ownership(adoption, owned, owners - {principal.lower()}))
    return "; ".join(parts)


async def _cleared(keeper: RecordKeeper, clock: Clock, detail: str) -> None:
    """Saved before the ownership goes: a re-run then has no credential left to remove."""
    now = clock.now()
    await keeper.update(
        lambda r: replace(r, credential=None, pending_credential=None, retiring_credentials=()).with_event(
            STEP, "done", now, detail
        )
    )


def _removed(removal: Removal, owned: bool, had_credential: bool) -> str:
    if not owned:
        mine = "none to remove" if not had_credential else "left on the app: Registrar is no longer an owner"
        return f"Registrar's credentials on the app: {mine}; vault objects deleted"
    said = "no Registrar credential on the app"
    if removal.removed:
        said = f"removed Registrar's credentials {', '.join(removal.removed)}"
    if removal.left:
        said += f"; left (a person removes them): {', '.join(removal.left)}"
    return f"{said}; vault objects deleted"


def _issued_any(record: Registration) -> bool:
    """Whether the record knows a credential Registrar issued (convention: generation >= 1)."""
    issued = [c for c in (record.credential, *record.retiring_credentials) if c is not None]
    return record.pending_credential is not None or any(c.generation >= 1 for c in issued)


def _ownership(adoption: Adoption, owned: bool, others: set[str]) -> str:
    if not owned:
        return "Registrar is not an owner of the app (any more): no ownership to remove"
    who = "Registrar had added itself" if adoption.owner_added_by_registrar else "a person had added it"
    alone = "; the app is left without owners" if not others else ""
    return f"Registrar's ownership removed ({who}){alone}"
