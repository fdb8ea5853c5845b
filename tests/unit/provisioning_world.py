"""A small world of fakes plus helpers to accept a request and run the workflow on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar

from functions.core.credentials.job_ports import RegistrationJobPorts
from functions.core.intake.accept import Accepted, accept
from functions.core.provisioning.lifecycle import Lifecycle
from functions.core.provisioning.workflow import Provisioner, WorkflowSettings
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    CredentialSpec,
    CredentialType,
    PermissionKind,
    RegistrationRequest,
    ResolvedPermission,
    WebhookSpec,
)
from functions.core.record.registration import ProvisioningPlan
from tests.unit.fakes import (
    Crash,
    Crashing,
    FakeAppClaims,
    FakeClock,
    FakeDirectory,
    FakeExpiryIndex,
    FakeQueue,
    FakeRegistrationStore,
    FakeTokenProbe,
    FakeVault,
    Faults,
)

TENANT = "11111111-2222-3333-4444-555555555555"
T = TypeVar("T")


async def fast_sleep(seconds: float) -> None:
    await asyncio.sleep(0.001)


@dataclass
class World:
    clock: FakeClock = field(default_factory=FakeClock)
    directory: FakeDirectory = field(default_factory=lambda: FakeDirectory(TENANT))
    vault: FakeVault = field(default_factory=FakeVault)
    store: FakeRegistrationStore = field(default_factory=FakeRegistrationStore)
    probe: FakeTokenProbe | None = None
    sleeps: list[float] = field(default_factory=list)
    index: FakeExpiryIndex = field(default_factory=FakeExpiryIndex)
    queue: FakeQueue = field(default_factory=FakeQueue)
    claims: FakeAppClaims = field(default_factory=FakeAppClaims)

    def __post_init__(self) -> None:
        if self.probe is None:
            self.probe = FakeTokenProbe(self.directory, self.vault)

    @property
    def ports(self) -> RegistrationJobPorts:
        """The world's fakes as a job over a registration works with them (sleeps recorded)."""
        assert self.probe is not None  # __post_init__ made one
        return RegistrationJobPorts(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            probe=self.probe,
            clock=self.clock,
            sleep=self.record_sleep,
        )

    async def record_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    def resolved(self, resource: str, kind: PermissionKind, name: str) -> ResolvedPermission:
        catalog = self.directory.catalogs[resource]
        return ResolvedPermission(resource, kind, catalog.permissions(kind)[name].id, name)

    def plan(
        self,
        *,
        credential: CredentialSpec | None = None,
        approval_reasons: tuple[str, ...] = (),
        delegated: tuple[str, ...] = ("User.Read", "offline_access"),
    ) -> ProvisioningPlan:
        app = PermissionKind.APPLICATION
        permissions = (
            self.resolved(EXCHANGE_ONLINE_APP_ID, app, "full_access_as_app"),
            self.resolved(GRAPH_APP_ID, app, "User.Read.All"),
            self.resolved(GRAPH_APP_ID, app, "Group.Read.All"),
            self.resolved(GRAPH_APP_ID, app, "Sites.Read.All"),
            *(self.resolved(GRAPH_APP_ID, PermissionKind.DELEGATED, n) for n in delegated),
        )
        return ProvisioningPlan(
            display_name="CodeTwo Backup (INC0012345)",
            web_redirect_uris=("https://connector.example.com/callback",),
            permissions=permissions,
            credential=credential or CredentialSpec(CredentialType.SECRET, timedelta(days=180)),
            manual_steps=("Assign the Exchange RBAC role to the app",),
            approval_reasons=approval_reasons,
        )

    def request(
        self, request_id: str = "INC0012345", *, display_name: str = "CodeTwo Backup", **extra: Any
    ) -> RegistrationRequest:
        return RegistrationRequest(
            request_id=request_id,
            profile_id="codetwo-backup-exchange",
            tenant_id=TENANT,
            display_name=display_name,
            credential=extra.pop("credential", CredentialSpec(CredentialType.SECRET)),
            **extra,
        )

    async def accept(
        self,
        request: RegistrationRequest | None = None,
        plan: ProvisioningPlan | None = None,
    ) -> Accepted:
        request = request or self.request()
        body = {"requestId": request.request_id, "profile": request.profile_id}
        return await accept(
            request, plan or self.plan(), body, store=self.store, vault=self.vault, clock=self.clock
        )

    def provisioner(
        self,
        *,
        directory: Any = None,
        vault: Any = None,
        store: Any = None,
        probe: Any = None,
        settings: WorkflowSettings | None = None,
        owner: str | None = None,
        sleep: Any = None,
        in_flight: Any = None,
    ) -> Provisioner:
        ports = replace(
            self.ports,
            store=store or self.store,
            directory=directory or self.directory,
            vault=vault or self.vault,
            probe=probe or self.probe,
            sleep=sleep or self.record_sleep,
            in_flight=in_flight,
        )
        return Provisioner(
            ports, settings=settings or WorkflowSettings(lease_wait=timedelta(seconds=5)), owner=owner
        )

    def crashing_provisioner(
        self, faults: Faults, *, owner: str | None = None, probe: bool = True, in_flight: Any = None
    ) -> Provisioner:
        """A worker whose every call to the directory, the vault, the store (and the probe) counts
        toward `faults`, which raises Crash at the call it is set to (the process died there)."""
        return self.provisioner(
            directory=Crashing(self.directory, faults),
            vault=Crashing(self.vault, faults),
            store=Crashing(self.store, faults),
            probe=Crashing(self.probe, faults) if probe else None,
            owner=owner,
            in_flight=in_flight,
        )

    def lifecycle(
        self, owner: str = "api", *, in_flight: Any = None, faults: Faults | None = None
    ) -> Lifecycle:
        """With `faults`, every call to the directory, the vault and the store counts toward them."""
        return Lifecycle(
            store=Crashing(self.store, faults) if faults else self.store,  # type: ignore[arg-type]
            directory=Crashing(self.directory, faults) if faults else self.directory,  # type: ignore[arg-type]
            vault=Crashing(self.vault, faults) if faults else self.vault,  # type: ignore[arg-type]
            clock=self.clock,
            owner=owner,
            sleep=fast_sleep,
            in_flight=in_flight,
        )


async def crash_after_every_call(
    setup: Callable[[], Awaitable[T]],
    crashing_run: Callable[[T, Faults], Awaitable[object]],
    recover: Callable[[T, int], Awaitable[None]],
) -> int:
    """Kill a run after its 1st outside call, then (in a fresh world) after its 2nd, ... until a run
    makes all its calls without being killed; after each kill, `recover(world, n)` runs the next
    worker and checks the end state. Returns how many kill points there were (every call of a run)."""
    crash_after = 1
    while True:
        world = await setup()
        faults = Faults(crash_after=crash_after)
        try:
            await crashing_run(world, faults)
        except Crash:
            await recover(world, crash_after)
            crash_after += 1
            continue
        return crash_after - 1


__all__ = ["TENANT", "WebhookSpec", "World", "crash_after_every_call", "fast_sleep"]
