"""Schemathesis hooks for tests/e2e/test_api_fuzz.py (loaded with SCHEMATHESIS_HOOKS).

`positive_data_acceptance_beyond_state` is schemathesis' positive_data_acceptance, except for the
refusals no schema can state because they depend on what exists, not on the request's shape (the
way schemathesis itself accepts a 404 for an id that does not exist). A refusal passes only when
every problem it lists is one of these; any other problem still fails the check:

- POST /registrations, 422: a tenant Registrar has no identity in (deployment state); an adoption
  of an app the tenant does not have (and, without a profile, no app to match one against).
- POST /registrations, 400: a custom permission the tenant's resource does not have (Graph's
  catalogue), or two webhooks with the same URL and different events (JSON Schema's uniqueItems
  compares whole items, not one member).
- POST /registrations/{id}/webhooks, 400: a host name that does not resolve or resolves to an
  address that is not public (DNS), or an eleventh webhook (the registration's state).
- POST /subscriptions, 400: a tenant-wide webhook's host name that does not resolve or resolves to
  an address that is not public (DNS), as for a registration's webhooks.
- GET /registrations, 400: a continuation token this list did not issue (opaque, like an id).
- GET /inventory, 400: a tenant Registrar has no identity in (deployment state), or a continuation
  token the list did not issue.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

PERMISSION = r"permissions\[\d+\]\.(name|resource)"
# An adoption of an app the tenant does not have, and so (without a profile) no app to match one.
ADOPTION = (
    (r"adopt\.appId", r"^tenant \S+ has no application with appId "),
    ("profile", r"^required unless the app to adopt matches a profile exactly$"),
)
STATE_REFUSALS: dict[tuple[str, int], tuple[tuple[str, str], ...]] = {
    ("POST /registrations", 422): (("tenantId", r"^Registrar has no identity in tenant "), *ADOPTION),
    ("POST /registrations", 400): (
        (
            PERMISSION,
            r"(: no such (application permission|delegated scope) on |has no service principal "
            r"in the tenant| is disabled on | is an? (application permission|delegated scope) of )",
        ),
        (r"webhooks\[\d+\]\.url", r"^the same URL is subscribed twice$"),
        *ADOPTION,  # beside a 400 of the above, the answer is 400: every problem is listed
    ),
    ("POST /registrations/{id}/webhooks", 400): (
        ("url", r"^webhook host .* (does not resolve|resolves to an address that is not public)$"),
        ("url", r"^at most 10 webhooks per registration$"),
    ),
    # As for a registration's webhook: the host is resolved when a tenant-wide subscription is made.
    ("POST /subscriptions", 400): (
        ("url", r"^webhook host .* (does not resolve|resolves to an address that is not public)$"),
    ),
    ("GET /registrations", 400): (("continuation", r"^not a continuation token of this list$"),),
    ("GET /inventory", 400): (
        ("tenantId", r"^not a tenant Registrar serves$"),
        ("continuation", r"^not a continuation token of this list$"),
    ),
}


def refused_for_state_only(label: str, status: int, body: Any) -> bool:
    """Every problem of the answer is one that depends on state, not on the request's shape."""
    allowed = STATE_REFUSALS.get((label, status), ())
    problems = body.get("problems") if isinstance(body, dict) else None
    if not allowed or not isinstance(problems, list) or not problems:
        return False
    return all(
        isinstance(p, dict)
        and any(
            re.fullmatch(field, str(p.get("field"))) and re.search(reason, str(p.get("reason")))
            for field, reason in allowed
        )
        for p in problems
    )


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@schemathesis.check
def positive_data_acceptance_beyond_state(ctx: Any, response: Any, case: Any) -> bool | None:
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if refused_for_state_only(case.operation.label, response.status_code, _json(response)):
            return None
        raise
