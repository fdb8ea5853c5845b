"""The one message schema of the `registration-requests` queue.

A message is a JSON object, either
- a registration request: the same body as POST /api/registrations (ticketing systems write
  these directly); it has "requestId" and "profile"; or
- an internal envelope: {"registrationId": "reg-..."} written by HTTP intake and approval, for
  a registration already accepted (its plan is in the record).
A message with "registrationId" and no "requestId" is an envelope; any other object is a request.
What is not a JSON object (or repeats a key, or is larger than a request body may be) cannot be
processed: the worker raises and the host moves the message to `registration-requests-poison`
after its retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class UnreadableMessage(ValueError):  # noqa: N818  (names what the message is)
    """Not a JSON object: nothing to record a failure against, so it goes to the poison queue."""


@dataclass(frozen=True)
class Envelope:
    registration_id: str


def envelope(registration_id: str) -> str:
    return json.dumps({"registrationId": registration_id})


def read_message(text: str) -> Envelope | dict[str, Any]:
    # Read as HTTP reads a body (functions.core.intake.requests, imported on first use for cold start): a
    # key given twice (which requestId would count?), too deep a nesting or an unconvertible number
    # make the message unreadable, not silently one of its readings.
    from functions.core.intake.requests import parse_json_body
    from functions.core.record.errors import ValidationFailed

    try:
        data = parse_json_body(text)
    except ValidationFailed as unreadable:
        reasons = "; ".join(f"{p.field + ': ' if p.field else ''}{p.reason}" for p in unreadable.problems)
        raise UnreadableMessage(f"message is unreadable ({reasons})") from None
    if not isinstance(data, dict):
        raise UnreadableMessage(f"message is JSON {type(data).__name__}, not an object")
    registration_id = data.get("registrationId")
    if "requestId" not in data and isinstance(registration_id, str) and registration_id:
        return Envelope(registration_id)
    return data
