"""JSON views of profiles and validated requests, as the API reports them (GET /api/profiles,
the registration's permissions, manual steps, notes and approval reasons). Pure functions."""

from __future__ import annotations

from typing import Any

from functions.core.catalogue.permissions import resource_label
from functions.core.catalogue.profiles import (
    COMMON_OPTIONS,
    ManualStep,
    OptionSpec,
    PermissionMapping,
    Profile,
)
from functions.core.intake.requests import ValidatedRequest
from functions.core.record.durations import format_duration
from functions.core.record.models import ResolvedPermission

COMMON_OPTION_DOCS: dict[str, dict[str, Any]] = {
    "redirectUris": {
        "name": "redirectUris",
        "type": "object",
        "description": "Replaces the profile's redirect URIs per platform: {web, spa, publicClient}, "
        "each a list of https URLs (or http://localhost on any port/path).",
    },
}
if set(COMMON_OPTION_DOCS) != set(COMMON_OPTIONS):  # a new common option must be documented here
    raise RuntimeError(
        f"COMMON_OPTION_DOCS does not cover {sorted(set(COMMON_OPTIONS) ^ set(COMMON_OPTION_DOCS))}"
    )


def option_document(option: OptionSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": option.name, "type": option.type, "description": option.description}
    if option.default is not None:
        doc["default"] = option.default
    if option.allowed:
        doc["allowed"] = list(option.allowed)
    if option.grants is not None:
        doc["grants"] = {"resource": option.grants[0], "type": option.grants[1].value}
    if option.seed_spelling:
        doc["seedSpelling"] = dict(option.seed_spelling)
    if option.min_items:
        doc["minItems"] = option.min_items
    return doc


def manual_step_document(step: ManualStep) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": step.id, "title": step.title, "detail": step.detail}
    if step.seed_words:
        doc["seedWords"] = step.seed_words
    if step.when_credential:
        doc["whenCredential"] = [t.value for t in step.when_credential]
    if step.when_option:
        doc["whenOption"] = step.when_option
    return doc


def mapping_document(mapping: PermissionMapping) -> dict[str, Any]:
    return {
        "from": {
            "resource": mapping.from_resource,
            "type": mapping.from_kind.value,
            "name": mapping.from_name,
        },
        "to": {
            "resource": mapping.to_resource,
            "resourceName": resource_label(mapping.to_resource),
            "type": mapping.to_kind.value,
            "name": mapping.to_name,
        },
        "note": mapping.note,
    }


def profile_document(profile: Profile) -> dict[str, Any]:
    """A profile as GET /api/profiles/{id} shows it (camelCase, JSON-ready)."""
    return {
        "id": profile.id,
        "connector": profile.connector,
        "title": profile.title,
        "description": profile.description,
        "seed": profile.seed,
        "seedWords": list(profile.seed_words),
        "custom": profile.custom,
        "signInAudience": profile.sign_in_audience,
        "redirectUris": {
            "web": list(profile.redirect_uris.web),
            "spa": list(profile.redirect_uris.spa),
            "publicClient": list(profile.redirect_uris.public_client),
        },
        "redirectUriDecision": profile.redirect_uri_decision,
        "credentials": [
            {
                "type": rule.type.value,
                "defaultLifetime": format_duration(rule.default_lifetime),
                "maxLifetime": format_duration(rule.max_lifetime) if rule.max_lifetime else None,
                "keySize": rule.key_size,
                "note": rule.note,
            }
            for rule in profile.credentials
        ],
        "permissions": [
            {
                "resource": perm.resource,
                "resourceName": resource_label(perm.resource),
                "type": perm.kind.value,
                "name": perm.name,
                "seedSpelling": perm.seed_spelling,
                "whenOption": perm.when,
            }
            for perm in profile.permissions
        ],
        "options": [option_document(o) for o in profile.options] + list(COMMON_OPTION_DOCS.values()),
        "manualSteps": [manual_step_document(s) for s in profile.manual_steps],
        "mappings": [mapping_document(m) for m in profile.mappings],
        "notes": list(profile.notes),
        "rotationLeadTime": format_duration(profile.rotation_lead_time)
        if profile.rotation_lead_time
        else None,
    }


def permission_document(permission: ResolvedPermission) -> dict[str, Any]:
    return {
        "resourceAppId": permission.resource_app_id,
        "resourceName": resource_label(permission.resource_app_id),
        "type": permission.kind.value,
        "id": permission.id,
        "name": permission.name,
    }


def validated_document(validated: ValidatedRequest) -> dict[str, Any]:
    """What a validated request will get, for the API to report back with the registration."""
    return {
        "profile": validated.profile.id,
        "permissions": [permission_document(p) for p in validated.permissions],
        "signInAudience": validated.sign_in_audience,
        "redirectUris": {
            "web": list(validated.redirect_uris.web),
            "spa": list(validated.redirect_uris.spa),
            "publicClient": list(validated.redirect_uris.public_client),
        },
        "credential": {
            "type": validated.request.credential.type.value,
            "lifetime": format_duration(validated.credential_lifetime),
        },
        "manualSteps": [manual_step_document(s) for s in validated.manual_steps],
        "notes": list(validated.notes) + list(validated.profile.notes),
        "mappings": [mapping_document(m) for m in validated.mappings],
        "requiresApproval": validated.requires_approval,
        "approvalReasons": list(validated.requires_approval_reasons),
    }
