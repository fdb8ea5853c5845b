"""The start that the after-confirm e2e tests share (test_escalation's confirm call and
test_sign_in_proof's proof of use): a registration with "retirement": "after-confirm" is rotated
and its overlap ends with nothing confirmed, so the old credential stays and is at risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.e2e.rotation_support import Host, Receiver, tag, wait_until


@dataclass(frozen=True)
class UnconfirmedRotation:
    """An after-confirm registration rotated once, whose old credential outlived the overlap."""

    registration_id: str
    webhook_path: str  # the receiver's path for credential.at_risk and credential.retired
    first: dict[str, Any]  # the registration's view at generation 1
    rotated: dict[str, Any]  # its view once generation 2 is current
    old_key: str
    new_key: str


def rotate_unconfirmed(host: Host, receiver: Receiver, label: str, display_name: str) -> UnconfirmedRotation:
    """Register (request id E2E-<LABEL>-…, webhook /<label>-…), wait until active, ask for a rotation,
    wait for generation 2, then for credential.at_risk (unconfirmed) on the old key once the
    overlap ends. The old key is then still on the app and nothing is confirmed."""
    path = f"/{label}-{tag()}"
    body = {
        "requestId": f"E2E-{label.upper()}-{tag()}",
        "profile": "m365-usage-connector",
        "displayName": display_name,
        "credential": {"type": "secret", "lifetime": "P60D"},
        "retirement": "after-confirm",
        "webhooks": [{"url": receiver.url(path), "events": ["credential.at_risk", "credential.retired"]}],
    }
    response = host.api.post("/api/registrations", json=body)
    assert response.status_code == 202, response.text
    registration_id = response.json()["id"]
    host.seen.update(w["secret"] for w in response.json()["webhooks"])
    first = host.wait_status(registration_id, "active", timeout_s=60)
    assert first["retirement"] == "after-confirm"
    old_key = first["credential"]["keyId"]
    assert host.rotate(registration_id).status_code == 202

    def second_generation() -> dict[str, Any] | None:
        view = host.registration(registration_id)
        return view if view["credential"]["generation"] == 2 else None

    rotated = wait_until("the rotation", second_generation, timeout_s=60)

    # Registrar's own verification signed in with the new credential: that is no confirmation.
    at_risk = wait_until(
        "credential.at_risk (unconfirmed) after the overlap",
        lambda: [e for e in receiver.events(path) if e["type"] == "credential.at_risk"],
        timeout_s=40,
    )
    assert at_risk[0]["data"]["reason"] == "unconfirmed" and at_risk[0]["data"]["keyId"] == old_key
    assert old_key in {p["keyId"] for p in host.passwords(first["appId"])}  # outlived the overlap
    assert host.registration(registration_id)["credential"].get("confirmedOn") is None
    return UnconfirmedRotation(
        registration_id=registration_id,
        webhook_path=path,
        first=first,
        rotated=rotated,
        old_key=old_key,
        new_key=rotated["credential"]["keyId"],
    )
