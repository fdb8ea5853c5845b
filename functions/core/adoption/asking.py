"""Asking to adopt: a registration request with "adopt": {"appId": ...}, checked before anything is made.

The rest of the body is a registration request as today (intake validates it), except that
`profile` may be left out when the app's requiredResourceAccess matches one profile exactly, and
`options` also takes the adoption's own choices (retireExisting, reconcile). validate_adoption()
only reads (Graph: the app by appId and the profiles' resource catalogues; the registration store)
and raises ValidationFailed listing every problem, with the status of the gravest kind:

- 400: a malformed body: appId not a GUID, `adopt` or an adoption option outside its list, and
  whatever intake refuses in the rest of the body;
- 409: an app Registrar made itself (its uniqueName is registrar-<registration id>), whether that
  registration still manages it or not: adopting it would give one app two registrations;
- 422: an app the tenant does not have, a tenant Registrar has no identity in, or no profile and
  no exact match to stand in for one (the closest profiles are named).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from functions.core.catalogue.permissions import suggest_names
from functions.core.catalogue.policy import Policy
from functions.core.catalogue.profiles import ProfileCatalogue
from functions.core.intake.parser import GUID, type_name
from functions.core.intake.requests import ValidatedRequest, validate_request
from functions.core.inventory.matching import app_keys
from functions.core.inventory.models import ProfileMatch
from functions.core.inventory.scanner import MANAGED_PREFIX, RELEASED, profile_sets
from functions.core.ports import Directory, ExistingApplication, RegistrationStore
from functions.core.record.errors import NotFound, ValidationFailed
from functions.core.record.models import Problem

ADOPT_FIELD = "adopt"
ADOPT_FIELDS = ("appId",)
RETIRE_EXISTING_MODES = ("after-overlap", "never", "now")  # when the credentials found at adoption go
RECONCILE_MODES = ("report", "add-missing", "exact")  # what is done about permission drift
ADOPTION_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "retireExisting": RETIRE_EXISTING_MODES,
    "reconcile": RECONCILE_MODES,
}
CLOSEST_SHOWN = 3  # profiles named when none matches exactly
DIFFERENCES_SHOWN = 3  # permissions named per profile, the rest counted


@dataclass(frozen=True)
class AdoptionOptions:
    retire_existing: str = RETIRE_EXISTING_MODES[0]
    reconcile: str = RECONCILE_MODES[0]


@dataclass(frozen=True)
class ValidatedAdoption:
    """An adoption request that passed: the request as intake validated it (its `adopt` filled in),
    the app as Graph holds it now, and the adoption's options."""

    validated: ValidatedRequest
    app: ExistingApplication
    options: AdoptionOptions
    profile_inferred: bool  # the profile came from the app's exact match, not from the body


def is_adoption(body: Any) -> bool:
    return isinstance(body, dict) and ADOPT_FIELD in body


class _Problems:
    """Every problem, each with the status its kind deserves; the gravest decides the answer."""

    def __init__(self) -> None:
        self.items: list[tuple[int, Problem]] = []

    def add(self, status: int, field: str, reason: str, suggestion: str | None = None) -> None:
        self.items.append((status, Problem(field, reason, suggestion)))

    def extend(self, status: int, problems: Sequence[Problem]) -> None:
        self.items.extend((status, p) for p in problems)

    def failure(self) -> ValidationFailed | None:
        if not self.items:
            return None
        statuses = {status for status, _ in self.items}
        status = next(s for s in (400, 409, 422) if s in statuses)
        return ValidationFailed([p for _, p in self.items], status=status)


def _app_id(value: Any, problems: _Problems) -> str | None:
    if not isinstance(value, dict):
        problems.add(400, ADOPT_FIELD, f"expected an object {{appId}}, got {type_name(value)}")
        return None
    for key in value:
        if key not in ADOPT_FIELDS:
            problems.add(400, f"{ADOPT_FIELD}.{str(key)[:64]}", "unknown field", "allowed: appId")
    app_id = value.get("appId")
    if app_id is None:
        problems.add(400, "adopt.appId", "required: the application (client) id of the app to adopt")
        return None
    if not isinstance(app_id, str) or not GUID.fullmatch(app_id.strip()):
        problems.add(400, "adopt.appId", "expected an application (client) id (GUID)")
        return None
    return app_id.strip().lower()


def _options(body: dict[str, Any], problems: _Problems) -> tuple[AdoptionOptions, dict[str, Any]]:
    """The adoption's options, and the body without them (intake checks the profile's own)."""
    raw = body.get("options")
    if not isinstance(raw, dict):
        return AdoptionOptions(), body  # absent, or not an object: intake reports the latter
    chosen: dict[str, str] = {}
    for name, allowed in ADOPTION_OPTIONS.items():
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, str) and value in allowed:
            chosen[name] = value
            continue
        shown = repr(value[:64]) if isinstance(value, str) else type_name(value)
        close = suggest_names(value, allowed, limit=1) if isinstance(value, str) else []
        hint = f"did you mean {close[0]}? " if close else ""
        problems.add(
            400, f"options.{name}", f"{shown} is not allowed", f"{hint}allowed: {', '.join(allowed)}"
        )
    rest = {k: v for k, v in raw.items() if k not in ADOPTION_OPTIONS}
    body = {k: v for k, v in body.items() if k != "options"} | ({"options": rest} if rest else {})
    return AdoptionOptions(**_snake(chosen)), body


def _snake(chosen: Mapping[str, str]) -> dict[str, str]:
    names = {"retireExisting": "retire_existing", "reconcile": "reconcile"}
    return {names[k]: v for k, v in chosen.items()}


def _profile_fields_without_profile(rest: Mapping[str, Any], problems: _Problems) -> None:
    """Without a profile, what only a profile defines (its credential types, options, a custom
    permission list) is refused rather than checked against a profile the caller did not choose."""
    hint = "name the profile to choose it"
    for key in ("credential", "permissions"):
        if key in rest:
            problems.add(400, key, "only with a named profile", hint)
    options = rest.get("options")
    if options is not None and not isinstance(options, dict):
        problems.add(400, "options", f"expected an object, got {type_name(options)}")
    for key in options if isinstance(options, dict) else ():
        allowed = ", ".join(ADOPTION_OPTIONS)
        problems.add(
            400, f"options.{str(key)[:64]}", "unknown field", f"without a profile: {allowed}; {hint}"
        )


def _status_of(kept: Sequence[Problem], status: int) -> int:
    """Intake's status once the missing profile is taken out: only a tenant Registrar has no
    identity in left is 422, as intake answers it alone."""
    if kept and all(p.field == "tenantId" and p.reason.startswith("Registrar has no identity") for p in kept):
        return 422
    return status


def _lookup_tenant(body: Mapping[str, Any], home_tenant_id: str, policy: Policy) -> str | None:
    """The tenant to read the app from, when the body names one Registrar may read (else intake's
    problem says why, and nothing is looked up)."""
    value = body.get("tenantId", home_tenant_id)
    if not isinstance(value, str) or not GUID.fullmatch(value.strip()):
        return None
    tenant = value.strip().lower()
    return tenant if policy.tenant_allowed(tenant) else None


def _difference(match: ProfileMatch) -> str:
    def named(label: str, items: Sequence[str]) -> str:
        shown = ", ".join(items[:DIFFERENCES_SHOWN])
        more = f" and {len(items) - DIFFERENCES_SHOWN} more" if len(items) > DIFFERENCES_SHOWN else ""
        return f"{label} {shown}{more}"

    parts = [named("missing", match.missing)] if match.missing else []
    parts += [named("extra", match.extra)] if match.extra else []
    return f"{match.profile} ({'; '.join(parts)})"


async def _already_managed(
    app: ExistingApplication, tenant_id: str, request_id: Any, store: RegistrationStore
) -> str | None:
    """Why this app is not a person's app to adopt (a 409), or None."""
    name = app.unique_name or ""
    if name.lower().startswith(MANAGED_PREFIX):
        registration_id = name[len(MANAGED_PREFIX) :]
        try:
            record = await store.get(registration_id)
        except NotFound:
            return f"Registrar made this app (uniqueName {name}); its registration is gone"
        if record.tenant_id.lower() != tenant_id:
            return f"Registrar made this app (uniqueName {name})"
        return f"Registrar already manages this app as registration {record.id} ({record.status.value})"
    same = request_id.strip() if isinstance(request_id, str) else request_id  # as intake stores it
    continuation: str | None = None
    while True:  # an app adopted before, by another request (the same request is idempotent)
        page = await store.list(tenant_id=tenant_id, app_id=app.app_id, limit=100, continuation=continuation)
        for record in page.items:
            if record.request_id != same and record.status not in RELEASED:
                return (
                    f"Registrar already manages this app as registration {record.id} ({record.status.value})"
                )
        continuation = page.continuation
        if continuation is None:
            return None


async def validate_adoption(
    body: dict[str, Any],
    *,
    directory: Directory,
    store: RegistrationStore,
    home_tenant_id: str,
    catalogue: ProfileCatalogue,
    policy: Policy,
) -> ValidatedAdoption:
    """Check an adoption request (is_adoption(body)); raise ValidationFailed listing every problem."""
    problems = _Problems()
    app_id = _app_id(body.get(ADOPT_FIELD), problems)
    options, rest = _options({k: v for k, v in body.items() if k != ADOPT_FIELD}, problems)
    tenant_id = _lookup_tenant(rest, home_tenant_id, policy)
    if rest.get("profile") is None:
        _profile_fields_without_profile(rest, problems)

    app: ExistingApplication | None = None
    if app_id is not None and tenant_id is not None:
        app = await directory.application_by_app_id(tenant_id, app_id)
        if app is None:
            problems.add(422, "adopt.appId", f"tenant {tenant_id} has no application with appId {app_id}",
                         "copy the Application (client) ID from Entra ID > App registrations")  # fmt: skip
        elif (made := await _already_managed(app, tenant_id, rest.get("requestId"), store)) is not None:
            problems.add(409, "adopt.appId", made, "only an app made by hand can be adopted")

    inferred = False
    if rest.get("profile") is None and app is not None and tenant_id is not None:
        wanted = app_keys(
            [(r.resource_app_id, i, "Role") for r in app.required_resource_access for i in r.app_role_ids]
            + [(r.resource_app_id, i, "Scope") for r in app.required_resource_access for i in r.scope_ids]
        )
        closest = (await profile_sets(directory, catalogue, tenant_id)).closest(wanted, CLOSEST_SHOWN)
        exact = [m.profile for m in closest if m.kind == "exact"]
        if len(exact) == 1:
            rest, inferred = {**rest, "profile": exact[0]}, True
        elif exact:  # profiles with the same permissions: only the caller knows which connector it is
            problems.add(422, "profile", f"required: the app's permissions match {', '.join(exact)} exactly",
                         "name the profile to adopt it as")  # fmt: skip
        else:
            named = "; ".join(_difference(m) for m in closest) or "none"
            problems.add(422, "profile", "required: the app's permissions match no profile exactly",
                         f"name the profile to adopt it as; closest: {named}")  # fmt: skip
    elif rest.get("profile") is None:
        problems.add(422, "profile", "required unless the app to adopt matches a profile exactly")

    try:
        validated = await validate_request(
            rest, directory=directory, home_tenant_id=home_tenant_id, catalogue=catalogue, policy=policy
        )
    except ValidationFailed as err:
        # A missing profile is explained above: for an adoption it is a 422 (no match), not a 400.
        kept = [p for p in err.problems if not (p.field == "profile" and p.reason == "required")]
        problems.extend(_status_of(kept, err.status), kept)
        validated = None
    failure = problems.failure()
    if failure is not None or validated is None or app is None:
        raise failure or ValidationFailed([Problem(ADOPT_FIELD, "the app could not be read")], status=422)
    adopt = {"appId": app.app_id, "retireExisting": options.retire_existing, "reconcile": options.reconcile}
    request = replace(validated.request, adopt=adopt)
    return ValidatedAdoption(replace(validated, request=request), app, options, inferred)
