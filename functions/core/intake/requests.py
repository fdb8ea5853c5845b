"""Registration requests: parse and validate a body (HTTP or queue), reporting every problem at once.

Two stages: parse_registration_request() checks the body against the profile and the policy
without any I/O; validate_request() adds permission resolution through Graph (Directory port)
and the approval decision. Both raise ValidationFailed listing every Problem (field, reason,
suggestion) of both stages together; the HTTP trigger and the queue worker call validate_request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from functions.core.catalogue.permissions import resolve_permissions_detailed
from functions.core.catalogue.policy import Policy, default_lifetime
from functions.core.catalogue.profiles import (
    ManualStep,
    PermissionMapping,
    Profile,
    ProfileCatalogue,
)
from functions.core.intake.parser import (
    MAX_BODY_BYTES,
    MAX_DISPLAY_NAME,
    MAX_PROBLEMS,
    REQUEST_ID,
    TOP_LEVEL_FIELDS,
    RequestParser,
    type_name,
)
from functions.core.ports import RedirectUris
from functions.core.record.errors import ValidationFailed
from functions.core.record.models import (
    RETIRE_AFTER_OVERLAP,
    RETIREMENT_MODES,
    PermissionRef,
    Problem,
    RegistrationRequest,
    ResolvedPermission,
)

if TYPE_CHECKING:
    from functions.core.ports import Directory

__all__ = [
    "MAX_BODY_BYTES",
    "TOP_LEVEL_FIELDS",
    "ValidatedRequest",
    "parse_json_body",
    "parse_registration_request",
    "permission_refs",
    "validate_request",
]


@dataclass(frozen=True)
class ValidatedRequest:
    """A request that passed both stages: everything the provisioning workflow needs to act on."""

    request: RegistrationRequest
    profile: Profile
    permissions: tuple[ResolvedPermission, ...]
    sign_in_audience: str
    redirect_uris: RedirectUris
    credential_lifetime: timedelta  # effective (requested or default); federated: unused
    manual_steps: tuple[ManualStep, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "Azure AD Graph ... mapped to Microsoft Graph ..."
    mappings: tuple[PermissionMapping, ...] = ()  # the profile's recorded seed mappings
    requires_approval_reasons: tuple[str, ...] = ()
    service_principals: Mapping[str, str] = field(default_factory=dict)  # resource appId -> SP id

    @property
    def requires_approval(self) -> bool:
        return bool(self.requires_approval_reasons)


MAX_JSON_DEPTH = 32  # a request nests 4 levels deep; deeper bodies are refused before any parsing of fields


class _KeyRecorder:
    """An object_pairs_hook that builds plain dicts and remembers, by id, which of them the text gave
    a key more than once. It holds those dicts too: one overwritten by its own duplicate key is
    dropped from the document, and its id must not be reused by another while the walk runs."""

    def __init__(self) -> None:
        self.duplicates: dict[int, list[str]] = {}
        self._held: list[dict[str, Any]] = []

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        repeated: list[str] = []
        for key, value in pairs:
            if key in obj and key not in repeated:
                repeated.append(key)
            obj[key] = value
        if repeated:
            self.duplicates[id(obj)] = repeated
            self._held.append(obj)
        return obj


def _shown(key: str) -> str:
    return key if len(key) <= 64 else key[:61] + "..."  # never echo a huge key back


def _structure_problems(document: Any, duplicates: Mapping[int, list[str]]) -> list[Problem]:
    """Duplicate keys (with their paths) and excessive nesting, found without recursion."""
    problems: list[Problem] = []
    deepest = 0
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack and len(problems) < MAX_PROBLEMS:
        value, path, depth = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            deepest = depth
            continue
        if isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in reversed(list(enumerate(value))))
            continue
        for key in duplicates.get(id(value), ()):
            where = f"{path}.{_shown(key)}" if path else _shown(key)
            problems.append(Problem(where, f"key {_shown(key)!r} appears more than once in the same object",
                                    "give each key once"))  # fmt: skip
        for key, item in reversed(list(value.items())):
            stack.append((item, f"{path}.{_shown(key)}" if path else _shown(key), depth + 1))
    if deepest:
        problems.append(Problem("", f"body nests deeper than {MAX_JSON_DEPTH} levels"))
    return problems


def parse_json_body(raw: bytes | str, *, limit: int = MAX_BODY_BYTES) -> Any:
    """Decode a raw body: ValidationFailed 413 when over the limit, 400 when not UTF-8 JSON, when an
    object gives a key twice (requestId is the idempotency key: which one would count?), when it
    nests too deep or holds a number Python will not convert (over 4300 digits)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > limit:
        raise ValidationFailed([Problem("", f"body larger than {limit} bytes")], status=413)
    keys = _KeyRecorder()
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=keys)
    except UnicodeDecodeError:
        raise ValidationFailed([Problem("", "body is not UTF-8")]) from None
    except json.JSONDecodeError as exc:
        raise ValidationFailed([Problem("", f"body is not JSON: {exc.msg} at line {exc.lineno}")]) from None
    except RecursionError:
        raise ValidationFailed([Problem("", f"body nests deeper than {MAX_JSON_DEPTH} levels")]) from None
    except ValueError:  # e.g. an integer over sys.get_int_max_str_digits() digits
        raise ValidationFailed(
            [Problem("", "body holds a number too large to read", "send numbers of at most 4300 digits")]
        ) from None
    problems = _structure_problems(document, keys.duplicates)
    if problems:
        raise ValidationFailed(problems)
    return document


def _parse(
    body: Any, home_tenant_id: str, catalogue: ProfileCatalogue, policy: Policy
) -> tuple[RequestParser, RegistrationRequest | None, Profile | None]:
    p = RequestParser(catalogue, policy)
    if not isinstance(body, dict):
        p.add("", f"the body must be a JSON object, got {type_name(body)}")
        return p, None, None
    p.object_(body, "", TOP_LEVEL_FIELDS)
    request_id = p.string(body.get("requestId"), "requestId", max_len=128, required=True)
    if request_id is not None and not REQUEST_ID.fullmatch(request_id):
        p.add(
            "requestId",
            "use letters, digits and . _ : @ - (1-128 characters, starting with a letter or digit)",
        )
        request_id = None
    profile = p.profile(body.get("profile"))
    display_name = p.string(body.get("displayName"), "displayName", max_len=MAX_DISPLAY_NAME)
    tenant_id = p.tenant(body.get("tenantId"), home_tenant_id)
    options = p.options(body.get("options"), profile)
    credential = p.credential(body.get("credential"), profile)
    owners = p.owners(body.get("owners"))
    requested_by = p.string(body.get("requestedBy"), "requestedBy", max_len=256)
    webhooks = p.webhooks(body.get("webhooks"))
    permissions = p.permissions(body.get("permissions"), profile)
    notes = p.string(body.get("notes"), "notes", max_len=1024)
    retirement = p.string(body.get("retirement"), "retirement", max_len=32) or RETIRE_AFTER_OVERLAP
    if retirement not in RETIREMENT_MODES:
        p.add(
            "retirement",
            f"{retirement!r} is not a retirement mode",
            f"allowed: {', '.join(RETIREMENT_MODES)}",
        )
    if p.problems or request_id is None or profile is None or tenant_id is None or credential is None:
        return p, None, profile
    if display_name is None:
        suffix = f" ({request_id})"
        display_name = profile.title[: MAX_DISPLAY_NAME - len(suffix)].rstrip() + suffix
    request = RegistrationRequest(
        request_id=request_id,
        profile_id=profile.id,
        tenant_id=tenant_id,
        display_name=display_name,
        credential=credential,
        options=options,
        permissions=permissions,
        owners=owners,
        requested_by=requested_by,
        webhooks=webhooks,
        notes=notes,
        retirement=retirement,
    )
    return p, request, profile


def _failed(parser: RequestParser, extra: Sequence[Problem] = ()) -> ValidationFailed:
    problems = [*parser.problems, *extra]
    only_tenant = parser.tenant_refused and all(pr.field == "tenantId" for pr in problems)
    if len(problems) > MAX_PROBLEMS:  # a hostile body must not turn into a huge error response
        hidden = len(problems) - MAX_PROBLEMS + 1
        problems = [*problems[: MAX_PROBLEMS - 1], Problem("", f"{hidden} more problems not shown")]
    return ValidationFailed(problems, status=422 if only_tenant else 400)


def parse_registration_request(
    body: Any, *, home_tenant_id: str, catalogue: ProfileCatalogue, policy: Policy
) -> RegistrationRequest:
    """Validate a decoded body without I/O; raise ValidationFailed listing every problem.

    Status 400, or 422 when the only problem is a tenant Registrar has no identity in.
    """
    parser, request, _ = _parse(body, home_tenant_id, catalogue, policy)
    if request is None:
        raise _failed(parser)
    return request


def permission_refs(request: RegistrationRequest, profile: Profile) -> tuple[list[PermissionRef], list[str]]:
    """The permissions a parsed request asks for, with the request field each one comes from."""
    if profile.custom:
        refs = list(request.permissions)
        return refs, [f"permissions[{i}].name" for i in range(len(refs))]
    refs = list(profile.permission_refs(request.options))
    fields: list[str] = []
    chosen = profile.options_with_defaults(request.options)
    from_options = {
        PermissionRef(opt.grants[0], opt.grants[1], str(v)): f"options.{opt.name}[{i}]"
        for opt in profile.options
        if opt.grants is not None
        for i, v in enumerate(chosen.get(opt.name) or ())
    }
    for ref in refs:
        fields.append(from_options.get(ref, "profile"))
    return refs, fields


async def validate_request(
    body: Any,
    *,
    directory: Directory,
    home_tenant_id: str,
    catalogue: ProfileCatalogue,
    policy: Policy,
) -> ValidatedRequest:
    """Parse, then resolve the permissions in the tenant (each resource fetched once, concurrently),
    then decide on approval. Raises ValidationFailed with the problems of both stages together."""
    parser, request, profile = _parse(body, home_tenant_id, catalogue, policy)
    if request is None or profile is None:
        # Report misspelt custom permissions together with the other problems when the tenant is
        # one Registrar may query.
        custom_refs = parser.custom_refs
        if custom_refs and parser.tenant_id is not None and not parser.tenant_refused:
            paths = [f"permissions[{i}].name" for i in parser.custom_ref_indexes]
            outcome = await resolve_permissions_detailed(
                directory, parser.tenant_id, custom_refs, fields=paths
            )
            raise _failed(parser, outcome.problems)
        raise _failed(parser)
    refs, fields = permission_refs(request, profile)
    outcome = await resolve_permissions_detailed(directory, request.tenant_id, refs, fields=fields)
    if outcome.problems:
        raise _failed(parser, outcome.problems)
    credential_lifetime = request.credential.lifetime or default_lifetime(
        profile, policy, request.credential.type
    )
    return ValidatedRequest(
        request=request,
        profile=profile,
        permissions=outcome.permissions,
        sign_in_audience=profile.sign_in_audience_for(request.options),
        redirect_uris=profile.redirect_uris_for(request.options),
        credential_lifetime=credential_lifetime,
        manual_steps=profile.manual_steps_for(request.options, request.credential.type),
        notes=outcome.notes,
        mappings=profile.mappings,
        requires_approval_reasons=tuple(policy.requires_approval(outcome.permissions, custom=profile.custom)),
        service_principals=dict(outcome.service_principals),
    )
