"""Resume after a crash, end to end through the local host (issue 13, part 4).

A private stack whose tenant refuses a new secret for 20 s after it is made (Entra's propagation
delay), so a registration and a rotation each wait in verification long enough to be killed there
deterministically: the host (and its worker) is SIGKILLed once the new secret exists in Entra, then
started again while Azurite and the tenant stay up. The killed invocation's queue message stays
invisible for the queue's 10 minutes, so only the resume sweep (every 15 s, the default) can bring
the work back: it must complete within 90 s of the kill, with exactly one new secret on the app.
The second test kills the host in the middle of a decommission (slowed by the tenant's latency),
and nobody calls DELETE again: the registration worker finishes it within 90 s of the kill. The
third kills an adoption's takeover while it verifies Registrar's new secret: the sweep brings it
back to `active` with exactly one Registrar secret beside the person's pasted one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
from functions.resources import IN_FLIGHT_TABLE
from tests.e2e.rotation_support import Host, leaks, private_host, start_private_stack, tag, wait_until
from tests.e2e.test_adoption import OWNER_COMMAND, add_owner, hand_made_app, pasted_secret

pytestmark = pytest.mark.slow

RESUME_WITHIN_S = 90.0
PROPAGATION_DELAY_S = 20
SETTINGS = {"REGISTRAR_ROTATION_SCHEDULE": "0 0 0 1 1 *"}  # rotations only when asked for
TENANT_ARGS = ["--propagation-delay", str(PROPAGATION_DELAY_S)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Stack]:
    started = start_private_stack(
        tmp_path_factory.mktemp("resume-stack"), tenant_ca_dir, SETTINGS, TENANT_ARGS
    )
    try:
        yield started
    finally:
        started.stop()


def history(view: dict[str, Any], step: str, outcome: str) -> bool:
    return any(h["step"] == step and h["outcome"] == outcome for h in view["history"])


def crash_and_restart(stack: Stack) -> float:
    """SIGKILL the host mid-work and start it again; returns when it was killed (monotonic)."""
    stack.crash_host()
    killed_at = time.monotonic()
    stack.restart_host()
    return killed_at


def remaining(killed_at: float) -> float:
    return max(1.0, RESUME_WITHIN_S - (time.monotonic() - killed_at))


def in_flight_entities(host: Host) -> list[dict[str, Any]]:
    from azure.data.tables import TableClient

    with TableClient.from_connection_string(
        host.endpoints["storageConnectionString"], IN_FLIGHT_TABLE
    ) as table:
        return list(table.list_entities())


def test_a_registration_and_a_rotation_killed_mid_way_complete_within_90_s_of_the_crash(stack: Stack) -> None:
    host = private_host(stack)
    try:
        # ---- provisioning: killed while it waits for Entra to accept the new secret
        registration_id, _ = host.register(tag(), lifetime="P180D")
        waiting = wait_until(
            "the secret to be issued (the run then waits in verification)",
            lambda: (
                (view := host.registration(registration_id))["status"] == "provisioning"
                and history(view, "credential", "done")
                and view
            ),
            60,
        )
        app_id = waiting["appId"]
        assert in_flight_entities(host), "the run is written ahead in the in-flight index"
        killed_at = crash_and_restart(stack)

        active = host.wait_status(registration_id, "active", timeout_s=remaining(killed_at))
        print(f"provisioning active {time.monotonic() - killed_at:.0f} s after the kill")
        assert len(host.passwords(app_id)) == 1  # the resumed run adopted the dead one's secret
        assert active["credential"]["generation"] == 1

        # ---- rotation: killed once its new secret exists in Entra, while it waits to verify it
        assert host.rotate(registration_id).status_code == 202
        wait_until("the rotation's new secret to be added", lambda: len(host.passwords(app_id)) == 2, 60)
        assert host.registration(registration_id)["status"] == "rotating"
        killed_at = crash_and_restart(stack)

        def rotated() -> dict[str, Any] | None:
            view = host.registration(registration_id)
            return view if view["status"] == "active" and view["credential"]["generation"] == 2 else None

        wait_until("the rotation to complete after the crash", rotated, remaining(killed_at), every_s=0.5)
        print(f"rotation done {time.monotonic() - killed_at:.0f} s after the kill")
        assert len(host.passwords(app_id)) == 2  # the old one (retiring) and exactly one new one
        wait_until("the in-flight index to empty", lambda: not in_flight_entities(host), 30)
        # No secret value in what the crashed and the restarted host wrote (logs, entities, messages).
        assert not leaks(host.all_secret_values(), host.leak_places())
    finally:
        host.close()


def test_a_decommission_killed_mid_way_is_finished_by_the_worker_within_90_s(stack: Stack) -> None:
    """Nobody calls DELETE again: the in-flight entry written ahead brings the registration worker."""
    import threading

    import httpx

    from tests.e2e.rotation_support import ADMIN

    host = private_host(stack)
    try:
        registration_id, _ = host.register(tag(), lifetime="P180D")
        active = host.wait_status(registration_id, "active", timeout_s=120)
        app_id = active["appId"]
        host.admin("PUT", "config", {"latencyMs": 1500})  # each Graph and Key Vault call takes 1.5 s

        def delete() -> None:  # the caller's request dies with the host
            with contextlib.suppress(httpx.HTTPError):
                host.api.delete(f"/api/registrations/{registration_id}", headers=ADMIN)

        caller = threading.Thread(target=delete, daemon=True)
        caller.start()
        wait_until(
            "the decommission to start",
            lambda: host.registration(registration_id)["status"] == "decommissioning",
            60,
            every_s=0.1,
        )
        killed_at = crash_and_restart(stack)
        host.admin("PUT", "config", {"latencyMs": 0})
        caller.join(30)

        host.wait_status(registration_id, "decommissioned", timeout_s=remaining(killed_at))
        print(f"decommissioned {time.monotonic() - killed_at:.0f} s after the kill")
        assert app_gone(host, app_id)
        from azure.core.exceptions import ResourceNotFoundError

        with pytest.raises(ResourceNotFoundError):
            host.secrets.get_secret(registration_id)
        wait_until("the in-flight index to empty", lambda: not in_flight_entities(host), 30)
    finally:
        host.close()


def app_gone(host: Host, app_id: str) -> bool:
    import ssl

    import httpx

    token = host.credential().get_token("https://graph.microsoft.com/.default").token
    tls = ssl.create_default_context(cafile=host.endpoints["caFile"])
    with httpx.Client(verify=tls, timeout=30) as client:
        response = client.get(
            f"{host.endpoints['graphUrl']}/applications(appId='{app_id}')",
            headers={"Authorization": f"Bearer {token}"},
        )
    return response.status_code == 404


def test_a_takeover_killed_while_verifying_registrars_secret_is_active_within_90_s_of_the_crash(
    stack: Stack,
) -> None:
    """A hand-made app with a pasted secret, Registrar made an owner by the tenant's administrator;
    the takeover is killed while Entra still refuses Registrar's new secret, and nobody calls
    anything again: the in-flight entry brings the worker back, and the takeover converges."""
    import asyncio

    from tests.e2e.test_inventory import Api

    host, endpoints = private_host(stack), stack.endpoints
    api = Api(endpoints)
    try:
        run = tag()
        app_id, object_id, _ = asyncio.run(hand_made_app(endpoints, f"CodeTwo by hand {run}"))
        pasted_key, pasted_value = asyncio.run(pasted_secret(endpoints, object_id))
        body = {
            "requestId": f"ADOPT-CRASH-{run}",
            "profile": "codetwo-backup-exchange",
            "credential": {"type": "secret"},
            "adopt": {"appId": app_id},  # retireExisting after-overlap (default), the host's default overlap
        }
        created = api.call("POST", "/registrations", "/registrations", json=body)
        assert created.status_code == 202, created.text
        reg_id = created.json()["id"]
        view = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}").json()
        command = OWNER_COMMAND.search(view["manualSteps"][0])
        assert command is not None, view["manualSteps"]
        asyncio.run(add_owner(endpoints, object_id, command["owner"]))  # as the administrator would
        # No ownership timer on this stack (rotations only when asked): the recheck hands it to the worker.
        owned = api.call("POST", f"/registrations/{reg_id}/recheck", "/registrations/{id}/recheck")
        assert owned.status_code == 200 and owned.json()["status"] == "adopting", owned.text

        waiting = wait_until(
            "Registrar's secret to be issued (the takeover then waits in verification)",
            lambda: (
                (view := host.registration(reg_id))["status"] == "adopting"
                and history(view, "credential", "done")
                and view
            ),
            60,
        )
        assert not history(waiting, "verify", "done")
        assert in_flight_entities(host), "the takeover is written ahead in the in-flight index"
        killed_at = crash_and_restart(stack)

        active = host.wait_status(reg_id, "active", timeout_s=remaining(killed_at))
        print(f"takeover active {time.monotonic() - killed_at:.0f} s after the kill")
        credential = active["credential"]
        assert credential["generation"] == 1 and credential["type"] == "secret"
        # Exactly one Registrar secret (the resumed run verified the dead one's), the pasted one kept.
        assert sorted(p["keyId"] for p in host.passwords(app_id)) == sorted([pasted_key, credential["keyId"]])
        assert host.secrets.get_secret(reg_id).properties.tags["keyId"] == credential["keyId"]
        wait_until("the in-flight index to empty", lambda: not in_flight_entities(host), 30)
        # No secret value (the pasted one, Registrar's, the administrator's) in what either host wrote.
        values = host.all_secret_values() | {pasted_value, endpoints["adminClientSecret"]}
        assert not leaks(values, host.leak_places())
        assert not leaks(values, {f"api answer {i}": text for i, text in enumerate(api.texts)})
    finally:
        api.client.close()
        host.close()
