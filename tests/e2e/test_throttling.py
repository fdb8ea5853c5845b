"""Pacing and deferral through the local host (issue 13): with Graph throttled to a tenth of its
budgets and tenant A's write budget spent, a burst of registrations in A and a registration in
tenant B, all submitted through the host's HTTP API, end active; B's is not held behind A's
backlog, and the local tenant's /_sim/stats shows at most 0.2 responses of 429 per registration.

A private stack: tenant B is made through the tenant's admin API (POST /_sim/tenants), then the
stack starts again on the same state (the tenant keeps B) with B's credentials in the host's
settings (REGISTRAR_TENANT_CREDENTIALS), and REGISTRAR_GRAPH_BUDGET_SCALE matching the tenant's
--throttle-scale, as docs/throttling.md says.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.rotation_support import Host
from tests.fixtures.stack import start_stack

pytestmark = pytest.mark.slow

SCALE = 0.1  # 300 writes per 150 s: 2 writes/s per app and tenant
BURST = 10  # registrations in tenant A (about 8 writes each: 40 s of A's budget once it is spent)
PROFILE = "m365-usage-connector"
DEADLINE_S = 600.0


def drain_writes(endpoints: dict[str, Any]) -> None:
    """Spend the registrar's write budget in the home tenant (A): writes Graph charges and refuses
    (404), as the registrar's identity, until the first 429."""
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(
        endpoints["tenantId"],
        endpoints["clientId"],
        endpoints["clientSecret"],
        authority=endpoints["authority"],
        disable_instance_discovery=True,
    )
    token = credential.get_token("https://graph.microsoft.com/.default").token
    verify = ssl.create_default_context(cafile=endpoints["caFile"])
    with httpx.Client(
        base_url=endpoints["graphUrl"],
        headers={"Authorization": f"Bearer {token}"},
        verify=verify,
        timeout=30,
    ) as graph:
        for _ in range(int(3000 * SCALE) + 50):
            if graph.patch(f"/applications/{uuid.uuid4()}", json={"notes": "drain"}).status_code == 429:
                return
    raise AssertionError("the write budget never ran out: is throttling on?")


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[tuple[Host, str]]:
    state = tmp_path_factory.mktemp("throttling-stack")
    tenant_args = ["--throttle-scale", str(SCALE), "--propagation-delay", "0"]
    # Persisting: the second stack's tenant still knows tenant B (library stacks start empty).
    first = start_stack(state, tenant_args=tenant_args, ca_dir=tenant_ca_dir, persist=True)
    try:
        other = Host(first.endpoints).admin("POST", "tenants", {})
    finally:
        first.stop()  # the tenant saves B with its state
    settings = {
        "REGISTRAR_TENANT_CREDENTIALS": json.dumps(
            {other["tenantId"]: {"clientId": other["clientId"], "clientSecret": other["clientSecret"]}}
        ),
        "REGISTRAR_GRAPH_BUDGET_SCALE": str(SCALE),
    }
    stack = start_stack(state, tenant_args=tenant_args, settings=settings, ca_dir=tenant_ca_dir, persist=True)
    host = Host(stack.endpoints, stack.options.host_log)
    try:
        yield host, other["tenantId"]
    finally:
        host.close()
        stack.stop()


def submit(host: Host, tenant_id: str, tag: str) -> str:
    body = {
        "requestId": f"E2E-PACE-{tag}-{uuid.uuid4().hex[:6]}",
        "profile": PROFILE,
        "tenantId": tenant_id,
        "displayName": f"e2e pacing {tag}",
        "requestedBy": "e2e@contoso.com",
    }
    response = host.api.post("/api/registrations", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_a_burst_in_one_tenant_and_a_registration_in_another_both_complete(
    two_tenants: tuple[Host, str],
) -> None:
    host, tenant_b = two_tenants
    tenant_a = host.endpoints["tenantId"]
    drain_writes(host.endpoints)
    before = host.admin("GET", "stats")

    burst = [submit(host, tenant_a, f"A{n}") for n in range(BURST)]
    other = submit(host, tenant_b, "B")

    ended: dict[str, tuple[str, float]] = {}  # id -> (status, when it was first seen ended)
    deadline = time.monotonic() + DEADLINE_S
    while len(ended) < BURST + 1:
        assert time.monotonic() < deadline, (
            f"not all ended in {DEADLINE_S:.0f} s: {len(ended)} of {BURST + 1}"
        )
        for registration_id in [*burst, other]:
            if registration_id in ended:
                continue
            status = host.api.get(f"/api/registrations/{registration_id}").json()["status"]
            if status in {"active", "failed"}:
                ended[registration_id] = (status, time.monotonic())
        time.sleep(0.5)
    after = host.admin("GET", "stats")

    assert {registration_id: status for registration_id, (status, _) in ended.items()} == dict.fromkeys(
        [*burst, other], "active"
    )
    # B's registration did not wait for A's backlog: it ended before A's last one did.
    assert ended[other][1] < max(
        when for registration_id, (_, when) in ended.items() if registration_id != other
    )
    throttled = after["throttled429"] - before["throttled429"]
    assert throttled <= 0.2 * (BURST + 1), f"{throttled} responses of 429 for {BURST + 1} registrations"
