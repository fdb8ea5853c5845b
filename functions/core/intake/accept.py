"""Accepting a validated request: one registration per (tenant, requestId), whatever the channel.

HTTP intake and the queue worker both call `accept`. The same requestId with the same body gives
back the same registration (created=False); with a different body, Conflict (HTTP 409).

Webhook subscriptions: each gets a Standard Webhooks signing secret, stored in Key Vault
(secret `webhook-<subscription id>`) BEFORE the record is created, and returned once to the
caller. If a concurrent duplicate wins the create, this call's secrets are deleted again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from functions.core.intake.requests import ValidatedRequest
from functions.core.notification.events import display_url, new_signing_secret
from functions.core.notification.signing_secrets import WEBHOOK_SECRET_CONTENT_TYPE, webhook_secret_name
from functions.core.ports import Clock, RegistrationStore, Vault
from functions.core.record.errors import Conflict, NotFound
from functions.core.record.models import (
    CredentialSpec,
    CredentialType,
    Problem,
    RegistrationRequest,
    RegistrationStatus,
    SecretValue,
)
from functions.core.record.registration import (
    Adoption,
    Approval,
    ErrorInfo,
    ProvisioningPlan,
    Registration,
    StepEvent,
    WebhookSubscriptionRef,
)

log = logging.getLogger(__name__)


def plan_from_validated(validated: ValidatedRequest) -> ProvisioningPlan:
    """Everything the worker needs, fixed at intake (so a later catalogue change cannot alter it)."""
    request = validated.request
    credential = request.credential
    if credential.lifetime is None:
        credential = replace(credential, lifetime=validated.credential_lifetime)
    return ProvisioningPlan(
        display_name=request.display_name,
        sign_in_audience=validated.sign_in_audience,
        web_redirect_uris=validated.redirect_uris.web,
        spa_redirect_uris=validated.redirect_uris.spa,
        public_client_redirect_uris=validated.redirect_uris.public_client,
        permissions=validated.permissions,
        credential=credential,
        manual_steps=tuple(f"{step.title}: {step.detail}" for step in validated.manual_steps),
        approval_reasons=validated.requires_approval_reasons,
        notes="; ".join(validated.notes) or request.notes,
        owners=request.owners,
        requested_by=request.requested_by,
    )


@dataclass(frozen=True)
class Accepted:
    registration: Registration
    created: bool
    # subscription id -> signing secret: only when this call created the registration (shown once)
    webhook_secrets: Mapping[str, SecretValue] = field(default_factory=dict)


async def accept(
    request: RegistrationRequest,
    plan: ProvisioningPlan,
    body: Mapping[str, Any],
    *,
    store: RegistrationStore,
    vault: Vault,
    clock: Clock,
    adoption: Adoption | None = None,
) -> Accepted:
    """adoption: the request takes over an existing app (core/adoption): the record starts in
    pending_ownership, where no provisioning worker acts on it, instead of accepted."""
    registration_id = request.registration_id
    fingerprint = request.fingerprint()
    existing = await _existing(store, registration_id)
    if existing is not None:
        return _same_or_conflict(existing, fingerprint)

    now = clock.now()
    subscriptions: list[WebhookSubscriptionRef] = []
    secrets: dict[str, SecretValue] = {}
    try:
        for spec in request.webhooks:
            sub_id = f"wh-{uuid.uuid4().hex}"
            secret = new_signing_secret()
            subscriptions.append(
                WebhookSubscriptionRef(sub_id, spec.url, spec.events, webhook_secret_name(sub_id), now)
            )
            await vault.set_secret(
                webhook_secret_name(sub_id),
                secret,
                content_type=WEBHOOK_SECRET_CONTENT_TYPE,
                tags={
                    "registrationId": registration_id,
                    "subscriptionId": sub_id,
                    "url": display_url(spec.url)[:256],
                },
                expires_on=None,
            )
            secrets[sub_id] = secret
        record = Registration(
            id=registration_id,
            request_id=request.request_id,
            fingerprint=fingerprint,
            profile_id=request.profile_id,
            tenant_id=request.tenant_id,
            status=RegistrationStatus.ACCEPTED if adoption is None else RegistrationStatus.PENDING_OWNERSHIP,
            created_at=now,
            updated_at=now,
            plan=plan,
            request=dict(body),
            approval=Approval(reasons=plan.approval_reasons) if plan.approval_reasons else None,
            webhooks=tuple(subscriptions),
            adoption=adoption,
            history=(StepEvent("accepted", "done", now, _accepted_detail(request, adoption)),),
        )
        stored, created = await store.create(record)
    except BaseException:
        # Nothing half-made: the record was not written, so no one will ever read these secrets
        # (the caller retries with new ones). Best effort; a kill here leaves tagged strays.
        await _delete_quietly(vault, subscriptions)
        raise
    if not created:
        # A concurrent duplicate won: its subscriptions stand, not ours.
        await _delete_quietly(vault, subscriptions)
        return _same_or_conflict(stored, fingerprint)
    log.info("registration %s accepted (profile %s)", stored.id, stored.profile_id)
    return Accepted(stored, True, secrets)


def _accepted_detail(request: RegistrationRequest, adoption: Adoption | None) -> str:
    if adoption is None:
        return f"request {request.request_id}"
    return f"request {request.request_id}: adopt app {adoption.app_id}"


async def record_invalid(
    body: Mapping[str, Any],
    problems: tuple[Problem, ...],
    *,
    tenant_id: str,
    store: RegistrationStore,
    clock: Clock,
) -> Registration:
    """A queued request that failed validation becomes a failed registration listing its problems.

    Its id is the one the request would have had (tenant + requestId) when requestId is usable,
    otherwise a hash of the body, so a re-delivered message finds the same record."""
    request_id = body.get("requestId")
    if isinstance(request_id, str) and request_id.strip():
        registration_id = RegistrationRequest(
            request_id=request_id,
            profile_id="",
            tenant_id=tenant_id,
            display_name="",
            credential=CredentialSpec(CredentialType.SECRET),
        ).registration_id
    else:
        canonical = json.dumps(body, sort_keys=True, default=str).encode()
        registration_id = f"reg-invalid-{hashlib.sha256(canonical).hexdigest()[:20]}"
        request_id = ""
    now = clock.now()
    profile = body.get("profile")
    record = Registration(
        id=registration_id,
        request_id=str(request_id),
        fingerprint="",
        profile_id=profile if isinstance(profile, str) else "",
        tenant_id=tenant_id,
        status=RegistrationStatus.FAILED,
        created_at=now,
        updated_at=now,
        plan=ProvisioningPlan(display_name=""),
        request=dict(body),
        last_error=ErrorInfo(
            step="validation",
            kind="validation",
            message=f"the request is invalid ({len(problems)} problems)",
            at=now,
            problems=problems,
        ),
        history=(StepEvent("validation", "failed", now, f"{len(problems)} problems"),),
    )
    stored, _ = await store.create(record)
    return stored


async def _delete_quietly(vault: Vault, subscriptions: list[WebhookSubscriptionRef]) -> None:
    for sub in subscriptions:
        if sub.secret_name:
            try:
                await vault.delete_secret(sub.secret_name)
            except Exception:  # the original failure matters more; the secret is tagged for a sweep
                log.warning("could not delete the unused webhook secret %s", sub.secret_name, exc_info=True)


async def _existing(store: RegistrationStore, registration_id: str) -> Registration | None:
    try:
        return await store.get(registration_id)
    except NotFound:
        return None


def _same_or_conflict(existing: Registration, fingerprint: str) -> Accepted:
    if existing.fingerprint != fingerprint:
        raise Conflict(
            f"requestId {existing.request_id!r} was already used for a different request "
            f"(registration {existing.id})"
        )
    return Accepted(existing, False)
