"""Registration records as JSON-able documents (camelCase), for the store: the inverse pair
behind Registration.to_document() / Registration.from_document()."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from functions.core.record.models import (
    CredentialSpec,
    CredentialType,
    PermissionKind,
    Problem,
    RegistrationStatus,
    ResolvedPermission,
)
from functions.core.record.registration import (
    SCHEMA_VERSION,
    Adoption,
    Approval,
    CredentialState,
    Drift,
    DriftedPermission,
    ErrorInfo,
    FoundCredential,
    PendingCredential,
    ProvisioningPlan,
    Registration,
    StepEvent,
    WebhookSubscriptionRef,
)


def to_document(self: Registration) -> dict[str, Any]:
    """Registration.to_document()."""
    return {
        "schema": SCHEMA_VERSION,
        "id": self.id,
        "requestId": self.request_id,
        "fingerprint": self.fingerprint,
        "profileId": self.profile_id,
        "tenantId": self.tenant_id,
        "status": self.status.value,
        "createdAt": _dt(self.created_at),
        "updatedAt": _dt(self.updated_at),
        "plan": _plan_doc(self.plan),
        "request": dict(self.request),
        "uniqueName": self.unique_name,
        "appObjectId": self.app_object_id,
        "appId": self.app_id,
        "servicePrincipalId": self.service_principal_id,
        "consentStarted": self.consent_started,
        "grantedPermissions": [_perm_doc(p) for p in self.granted_permissions],
        "ownersAdded": list(self.owners_added),
        "ownersRefused": self.owners_refused,
        "credential": _cred_doc(self.credential) if self.credential else None,
        "pendingCredential": _pending_doc(self.pending_credential) if self.pending_credential else None,
        "retiringCredentials": [_cred_doc(c) for c in self.retiring_credentials],
        "history": [
            {"step": e.step, "outcome": e.outcome, "at": _dt(e.at), "detail": e.detail} for e in self.history
        ],
        "lastError": _error_doc(self.last_error) if self.last_error else None,
        "approval": _approval_doc(self.approval) if self.approval else None,
        "webhooks": [
            {
                "id": w.id,
                "url": w.url,
                "events": list(w.events),
                "secretName": w.secret_name,
                "createdAt": _dt(w.created_at),
            }
            for w in self.webhooks
        ],
        "adoption": _adoption_doc(self.adoption) if self.adoption else None,
        "leaseOwner": self.lease_owner,
        "leaseUntil": _dt(self.lease_until),
    }


def from_document(doc: Mapping[str, Any], *, etag: str | None = None) -> Registration:
    """Registration.from_document()."""
    cred, pending, error, approval = (
        doc.get("credential"),
        doc.get("pendingCredential"),
        doc.get("lastError"),
        doc.get("approval"),
    )
    return Registration(
        id=doc["id"],
        request_id=doc["requestId"],
        fingerprint=doc["fingerprint"],
        profile_id=doc["profileId"],
        tenant_id=doc["tenantId"],
        status=RegistrationStatus(doc["status"]),
        created_at=_req_dt(doc["createdAt"]),
        updated_at=_req_dt(doc["updatedAt"]),
        plan=_plan_from(doc["plan"]),
        request=dict(doc.get("request") or {}),
        unique_name=doc.get("uniqueName"),
        app_object_id=doc.get("appObjectId"),
        app_id=doc.get("appId"),
        service_principal_id=doc.get("servicePrincipalId"),
        consent_started=bool(doc.get("consentStarted")),
        granted_permissions=tuple(_perm_from(p) for p in doc.get("grantedPermissions") or ()),
        owners_added=tuple(doc.get("ownersAdded") or ()),
        owners_refused=doc.get("ownersRefused"),
        credential=_cred_from(cred) if cred else None,
        pending_credential=_pending_from(pending) if pending else None,
        retiring_credentials=tuple(_cred_from(c) for c in doc.get("retiringCredentials") or ()),
        history=tuple(
            StepEvent(e["step"], e["outcome"], _req_dt(e["at"]), e.get("detail"))
            for e in doc.get("history") or ()
        ),
        last_error=_error_from(error) if error else None,
        approval=_approval_from(approval) if approval else None,
        webhooks=tuple(
            WebhookSubscriptionRef(
                id=w["id"],
                url=w["url"],
                events=tuple(w.get("events") or ()),
                secret_name=w.get("secretName"),
                created_at=_from_dt(w.get("createdAt")),
            )
            for w in doc.get("webhooks") or ()
        ),
        adoption=_adoption_from(doc["adoption"]) if doc.get("adoption") else None,
        lease_owner=doc.get("leaseOwner"),
        lease_until=_from_dt(doc.get("leaseUntil")),
        etag=etag,
    )


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _from_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _req_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _perm_doc(p: ResolvedPermission) -> dict[str, str]:
    return {"resourceAppId": p.resource_app_id, "type": p.kind.value, "id": p.id, "name": p.name}


def _perm_from(d: Mapping[str, str]) -> ResolvedPermission:
    return ResolvedPermission(d["resourceAppId"], PermissionKind(d["type"]), d["id"], d["name"])


def _plan_doc(plan: ProvisioningPlan) -> dict[str, Any]:
    c = plan.credential
    return {
        "displayName": plan.display_name,
        "signInAudience": plan.sign_in_audience,
        "redirectUris": {
            "web": list(plan.web_redirect_uris),
            "spa": list(plan.spa_redirect_uris),
            "publicClient": list(plan.public_client_redirect_uris),
        },
        "permissions": [_perm_doc(p) for p in plan.permissions],
        "credential": {
            "type": c.type.value,
            "lifetimeSeconds": int(c.lifetime.total_seconds()) if c.lifetime else None,
            "issuer": c.issuer,
            "subject": c.subject,
            "audiences": list(c.audiences),
        },
        "manualSteps": list(plan.manual_steps),
        "approvalReasons": list(plan.approval_reasons),
        "notes": plan.notes,
        "owners": list(plan.owners),
        "requestedBy": plan.requested_by,
    }


def _plan_from(d: Mapping[str, Any]) -> ProvisioningPlan:
    c = d["credential"]
    uris = d.get("redirectUris") or {}
    lifetime = c.get("lifetimeSeconds")
    return ProvisioningPlan(
        display_name=d["displayName"],
        sign_in_audience=d.get("signInAudience") or "AzureADMyOrg",
        web_redirect_uris=tuple(uris.get("web") or ()),
        spa_redirect_uris=tuple(uris.get("spa") or ()),
        public_client_redirect_uris=tuple(uris.get("publicClient") or ()),
        permissions=tuple(_perm_from(p) for p in d.get("permissions") or ()),
        credential=CredentialSpec(
            type=CredentialType(c["type"]),
            lifetime=timedelta(seconds=lifetime) if lifetime is not None else None,
            issuer=c.get("issuer"),
            subject=c.get("subject"),
            audiences=tuple(c.get("audiences") or ("api://AzureADTokenExchange",)),
        ),
        manual_steps=tuple(d.get("manualSteps") or ()),
        approval_reasons=tuple(d.get("approvalReasons") or ()),
        notes=d.get("notes"),
        owners=tuple(d.get("owners") or ()),
        requested_by=d.get("requestedBy"),
    )


_CRED_DATES = ("start", "expires_on", "verified_at", "retire_after", "confirmed_at")
_CRED_TEXT = (
    "display_name",
    "key_id",
    "secret_name",
    "secret_uri",
    "secret_version",
    "certificate_name",
    "certificate_uri",
    "certificate_version",
    "thumbprint",
    "issuer",
    "subject",
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _cred_doc(c: CredentialState) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": c.type.value, "generation": c.generation}
    doc.update({_camel(n): getattr(c, n) for n in _CRED_TEXT})
    doc.update({_camel(n): _dt(getattr(c, n)) for n in _CRED_DATES})
    return doc


def _cred_from(d: Mapping[str, Any]) -> CredentialState:
    values: dict[str, Any] = {n: d.get(_camel(n)) for n in _CRED_TEXT}
    values.update({n: _from_dt(d.get(_camel(n))) for n in _CRED_DATES})
    return CredentialState(type=CredentialType(d["type"]), generation=int(d["generation"]), **values)


def _pending_doc(p: PendingCredential) -> dict[str, Any]:
    return {
        "type": p.type.value,
        "generation": p.generation,
        "displayName": p.display_name,
        "startedAt": _dt(p.started_at),
        "certificateVersion": p.certificate_version,
    }


def _pending_from(d: Mapping[str, Any]) -> PendingCredential:
    return PendingCredential(
        type=CredentialType(d["type"]),
        generation=int(d["generation"]),
        display_name=d["displayName"],
        started_at=_req_dt(d["startedAt"]),
        certificate_version=d.get("certificateVersion"),
    )


def _error_doc(e: ErrorInfo) -> dict[str, Any]:
    return {
        "step": e.step,
        "kind": e.kind,
        "message": e.message,
        "at": _dt(e.at),
        "code": e.code,
        "problems": [{"field": p.field, "reason": p.reason, "suggestion": p.suggestion} for p in e.problems],
    }


def _error_from(d: Mapping[str, Any]) -> ErrorInfo:
    return ErrorInfo(
        step=d["step"],
        kind=d["kind"],
        message=d["message"],
        at=_req_dt(d["at"]),
        code=d.get("code"),
        problems=tuple(
            Problem(p["field"], p["reason"], p.get("suggestion")) for p in d.get("problems") or ()
        ),
    )


def _approval_doc(a: Approval) -> dict[str, Any]:
    return {"reasons": list(a.reasons), "approvedBy": a.approved_by, "approvedAt": _dt(a.approved_at)}


def _approval_from(d: Mapping[str, Any]) -> Approval:
    return Approval(
        reasons=tuple(d.get("reasons") or ()),
        approved_by=d.get("approvedBy"),
        approved_at=_from_dt(d.get("approvedAt")),
    )


def _adoption_doc(a: Adoption) -> dict[str, Any]:
    return {
        "appId": a.app_id,
        "appObjectId": a.app_object_id,
        "displayName": a.display_name,
        "retireExisting": a.retire_existing,
        "reconcile": a.reconcile,
        "profileInferred": a.profile_inferred,
        "registrarPrincipalId": a.registrar_principal_id,
        "ownedAt": _dt(a.owned_at),
        "ownerAddedByRegistrar": a.owner_added_by_registrar,
        "foundCredentials": [
            {"keyId": c.key_id, "type": c.type.value, "displayName": c.display_name, "end": _dt(c.end)}
            for c in a.found_credentials
        ],
        "drift": _drift_doc(a.drift) if a.drift else None,
        "deleteApp": a.delete_app,
    }


def _drift_doc(d: Drift) -> dict[str, Any]:
    def permission(p: DriftedPermission) -> dict[str, Any]:
        return {
            "resourceAppId": p.resource_app_id,
            "resource": p.resource,
            "value": p.value,
            "kind": p.kind.value,
            "id": p.id,
            "declared": p.declared,
            "granted": p.granted,
        }

    return {
        "readAt": _dt(d.read_at),
        "missing": [permission(p) for p in d.missing],
        "extra": [permission(p) for p in d.extra],
        "reconcileStartedAt": _dt(d.reconcile_started_at),
        "reconciledAt": _dt(d.reconciled_at),
    }


def _drift_from(d: Mapping[str, Any]) -> Drift:
    def permission(p: Mapping[str, Any]) -> DriftedPermission:
        return DriftedPermission(
            resource_app_id=p["resourceAppId"],
            resource=p.get("resource") or p["resourceAppId"],
            value=p["value"],
            kind=PermissionKind(p["kind"]),
            id=p["id"],
            declared=bool(p.get("declared")),
            granted=bool(p.get("granted")),
        )

    return Drift(
        read_at=_req_dt(d["readAt"]),
        missing=tuple(permission(p) for p in d.get("missing") or ()),
        extra=tuple(permission(p) for p in d.get("extra") or ()),
        reconcile_started_at=_from_dt(d.get("reconcileStartedAt")),
        reconciled_at=_from_dt(d.get("reconciledAt")),
    )


def _adoption_from(d: Mapping[str, Any]) -> Adoption:
    return Adoption(
        app_id=d["appId"],
        app_object_id=d["appObjectId"],
        display_name=d.get("displayName"),
        retire_existing=d.get("retireExisting") or "after-overlap",
        reconcile=d.get("reconcile") or "report",
        profile_inferred=bool(d.get("profileInferred")),
        registrar_principal_id=d.get("registrarPrincipalId"),
        owned_at=_from_dt(d.get("ownedAt")),
        owner_added_by_registrar=bool(d.get("ownerAddedByRegistrar")),
        found_credentials=tuple(
            FoundCredential(
                c["keyId"], CredentialType(c["type"]), c.get("displayName"), _from_dt(c.get("end"))
            )
            for c in d.get("foundCredentials") or ()
        ),
        drift=_drift_from(d["drift"]) if d.get("drift") else None,
        delete_app=bool(d.get("deleteApp")),
    )
