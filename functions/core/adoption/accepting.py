"""Accepting an adoption: one registration per (tenant, requestId), as intake accepts any request.

The record starts in `pending_ownership` (never `accepted`, which the provisioning worker would
build a new app for), holding the adopted app apart from the fields of an app Registrar made
(Registration.adoption). Nothing is changed in Entra or Key Vault here but what intake does for
every request: the webhooks' signing secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from functions.core.adoption.asking import ValidatedAdoption
from functions.core.intake.accept import Accepted, accept, plan_from_validated
from functions.core.ports import Clock, RegistrationStore, Vault
from functions.core.record.registration import Adoption


def adoption_record(adoption: ValidatedAdoption) -> Adoption:
    return Adoption(
        app_id=adoption.app.app_id,
        app_object_id=adoption.app.object_id,
        display_name=adoption.app.display_name,
        retire_existing=adoption.options.retire_existing,
        reconcile=adoption.options.reconcile,
        profile_inferred=adoption.profile_inferred,
    )


async def accept_adoption(
    adoption: ValidatedAdoption,
    body: Mapping[str, Any],
    *,
    store: RegistrationStore,
    vault: Vault,
    clock: Clock,
) -> Accepted:
    """The same requestId and body give the same registration (created=False); another body, or
    another app, Conflict."""
    return await accept(
        adoption.validated.request,
        plan_from_validated(adoption.validated),
        body,
        store=store,
        vault=vault,
        clock=clock,
        adoption=adoption_record(adoption),
    )
