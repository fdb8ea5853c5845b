"""Provisioning latency in units of L, the latency the local tenant adds to every call.

Starts the local tenant (devstack.tenant), wires the real adapters (msgraph-sdk Graph, Key Vault
aio, Entra token probe) into the workflow, warms the registrar's own tokens with L = 0, then with
L = 100 ms provisions codetwo-migration-target with options.createMailboxes (approved, as policy
holds it for Directory.ReadWrite.All) twice in the same run:

- optimised: the workflow as shipped (credential alongside the service principal, consent in one
  $batch alongside verify);
- naive: every call one after another, one appRoleAssignment per call.

Registration records live in memory here: Table storage is not the tenant, and L is the tenant's.
The optimised workflow runs `--runs` times (5): its median counts. Prints figures, and the floor
beside them (3 L: the app, then addPassword, then a token with the new secret); asserts nothing.
Target: optimised <= 3.3 L (median) and >= 2.5x faster than naive.

    .venv/bin/python -m benchmarks.provision_latency [--latency-ms 100] [--credential secret] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib import request as urlrequest

from devstack import processes

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILE = "codetwo-migration-target"
FLOOR_L = 3  # the dependency chain: the app, then addPassword, then a token with the new secret
TARGET_L = 3.3


class MemoryStore:
    """RegistrationStore in memory, with the same ETag rules as the Tables adapter."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[dict[str, Any], str]] = {}

    def _load(self, key: str) -> Any:
        from functions.core.record.registration import Registration

        doc, etag = self._docs[key]
        return Registration.from_document(doc, etag=etag)

    async def get(self, registration_id: str) -> Any:
        from functions.core.record.errors import NotFound

        if registration_id not in self._docs:
            raise NotFound("registration", registration_id)
        return self._load(registration_id)

    async def create(self, registration: Any) -> tuple[Any, bool]:
        if registration.id in self._docs:
            return self._load(registration.id), False
        self._docs[registration.id] = (registration.to_document(), uuid.uuid4().hex)
        return self._load(registration.id), True

    async def replace(self, registration: Any) -> Any:
        from functions.core.record.errors import ConcurrencyConflict

        if self._docs[registration.id][1] != registration.etag:
            raise ConcurrencyConflict(registration.id)
        self._docs[registration.id] = (registration.to_document(), uuid.uuid4().hex)
        return self._load(registration.id)

    async def list(self, **_: Any) -> Any:
        raise NotImplementedError


def first_line(stream: Any, timeout: float) -> str:
    """The tenant's startup JSON line (devstack.host.launcher has one, but importing it loads aiohttp
    before SSL_CERT_FILE points at the tenant's CA)."""
    chosen = selectors.DefaultSelector()
    chosen.register(stream, selectors.EVENT_READ)
    return stream.readline().strip() if chosen.select(timeout) else ""


def start_tenant(state_dir: Path) -> tuple[Any, dict[str, Any]]:
    argv = [sys.executable, "-m", "devstack.tenant", "--port", "0", "--state-dir", str(state_dir)]
    log = (state_dir.parent / "tenant.log").open("a", encoding="utf-8")
    proc = processes.spawn(argv, cwd=REPO_ROOT, stderr=log)
    assert proc.stdout is not None
    line = first_line(proc.stdout, 60.0)
    if not line:
        processes.stop(proc)
        raise SystemExit(f"the local tenant did not start; see {state_dir.parent / 'tenant.log'}")
    return proc, json.loads(line)


def set_latency(tenant: Mapping[str, Any], latency_ms: float) -> None:
    import ssl

    context = ssl.create_default_context(cafile=tenant["caFile"])
    body = json.dumps({"latencyMs": latency_ms}).encode()
    url = f"{tenant['adminUrl']}/config"  # the tenant's admin API on loopback (https)
    req = urlrequest.Request(url, data=body, method="PUT", headers={"content-type": "application/json"})  # noqa: S310
    with urlrequest.urlopen(req, context=context, timeout=30) as response:  # noqa: S310
        response.read()


async def measure(
    tenant: Mapping[str, Any], latency_ms: float, credential: str, runs: int
) -> tuple[list[float], float]:
    # Imported only now: aiohttp reads SSL_CERT_FILE (the tenant's CA) when first imported.
    from functions.adapters.graph import GraphDirectory
    from functions.adapters.identity import EntraTokenProbe, IdentityConfig, RegistrarIdentity
    from functions.adapters.keyvault import KeyVaultStore
    from functions.bootstrap import SystemClock
    from functions.core.catalogue.policy import Policy
    from functions.core.credentials.job_ports import RegistrationJobPorts
    from functions.core.intake.accept import accept, plan_from_validated
    from functions.core.intake.requests import validate_request
    from functions.core.provisioning.lifecycle import Lifecycle
    from functions.core.provisioning.workflow import Provisioner, WorkflowSettings
    from functions.core.record.models import SecretValue
    from functions.profiles import load_catalogue

    identity = RegistrarIdentity(
        IdentityConfig(
            authority_host=tenant["authority"],
            home_tenant_id=tenant["tenantId"],
            client_id=tenant["clientId"],
            client_secret=SecretValue(tenant["clientSecret"]),
        )
    )
    directory = GraphDirectory(identity, tenant["graphUrl"])
    vault = KeyVaultStore(identity, tenant["vaultUrl"], certificate_poll_seconds=0.05)
    probe = EntraTokenProbe(tenant["authority"])
    store, clock = MemoryStore(), SystemClock()
    catalogue, policy = load_catalogue(), Policy(allowed_tenants=frozenset({tenant["tenantId"].lower()}))
    lifecycle = Lifecycle(store=store, directory=directory, vault=vault, clock=clock, owner="bench")
    ports = RegistrationJobPorts(store=store, directory=directory, vault=vault, probe=probe, clock=clock)

    async def approved_registration(tag: str) -> str:
        body = {
            "requestId": f"BENCH-{tag}-{uuid.uuid4().hex[:6]}",
            "profile": PROFILE,
            "displayName": f"bench {tag}",
            "options": {"createMailboxes": True},
            "credential": {"type": credential},
        }
        validated = await validate_request(
            body, directory=directory, home_tenant_id=tenant["tenantId"], catalogue=catalogue, policy=policy
        )
        accepted = await accept(
            validated.request, plan_from_validated(validated), body, store=store, vault=vault, clock=clock
        )
        record = accepted.registration
        if record.plan.approval_reasons:
            held = await Provisioner(ports, owner="bench").run(record.id)
            assert held.status.value == "pending_approval", held.status
            await lifecycle.approve(record.id, "benchmark")
        return record.id

    async def provision(registration_id: str, *, concurrent: bool) -> float:
        worker = Provisioner(
            ports, settings=replace(WorkflowSettings(), concurrent=concurrent), owner="bench"
        )
        started = time.perf_counter()
        record = await worker.run(registration_id)
        elapsed = time.perf_counter() - started
        if record.status.value != "active":
            raise SystemExit(f"registration ended {record.status.value}: {record.last_error}")
        return elapsed

    try:
        # Warm-up at L = 0: the registrar's tokens (Graph, Key Vault challenge), catalogues, imports.
        await provision(await approved_registration("warmup"), concurrent=True)
        optimised_ids = [await approved_registration(f"optimised-{i}") for i in range(runs)]
        naive_id = await approved_registration("naive")
        set_latency(tenant, latency_ms)
        optimised = [await provision(registration_id, concurrent=True) for registration_id in optimised_ids]
        naive = await provision(naive_id, concurrent=False)
    finally:
        await directory.close()
        await vault.close()
        await probe.close()
        await identity.close()
    return optimised, naive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--credential", choices=["secret", "certificate"], default="secret")
    parser.add_argument("--runs", type=int, default=5, help="optimised runs; the median counts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="registrar-bench-") as tmp:
        state = Path(tmp) / "tenant"
        state.mkdir()
        proc, tenant = start_tenant(state)
        try:
            os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = tenant["caFile"]
            optimised_s, naive_s = asyncio.run(measure(tenant, args.latency_ms, args.credential, args.runs))
        finally:
            processes.stop(proc)
    unit = args.latency_ms / 1000.0
    runs = [t / unit for t in optimised_s]
    optimised, naive = statistics.median(runs), naive_s / unit
    print(
        f"provision {PROFILE} (createMailboxes, {args.credential}) with L = {args.latency_ms:.0f} ms per call"
    )
    print(f"  runs               : {', '.join(f'{r:.2f}' for r in runs)} L")
    print(
        f"  optimised workflow : {optimised:.2f} L median of {len(runs)}   (target <= {TARGET_L} L;"
        f" floor {FLOOR_L} L: the app, then addPassword, then a token with the new secret)"
    )
    print(f"  naive baseline     : {naive_s:.3f} s = {naive:.2f} L")
    print(f"  speed-up           : {naive / optimised:.2f}x   (target >= 2.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
