"""A failed registration ends `failed` with its reason and nothing left in Entra or Key Vault, even
when its cleanup is interrupted (a 503, a refusal, a dead worker between any two calls), and a
registration the workflow cannot finish is given up on the same way (core/provisioning/failures.py,
Provisioner.give_up)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from functions.core.provisioning.workflow import WorkflowSettings
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.keeper import LeaseHeld
from functions.core.record.models import CredentialSpec, CredentialType, RegistrationStatus, SecretValue
from functions.core.record.registration import Registration, vault_object_name
from tests.unit.fakes import Crash, FakeTokenProbe, Faults
from tests.unit.provisioning_world import World

SECRET = CredentialSpec(CredentialType.SECRET, timedelta(days=90))
CERTIFICATE = CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=90))
BLOCKED = "AADSTS53003"


class ConditionalAccessProbe:
    """Entra refuses every token for good (a Conditional Access policy for workload identities)."""

    def __init__(self) -> None:
        self.calls = 0

    async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue) -> None:
        self.calls += 1
        raise PermanentError(f"{BLOCKED}: blocked by Conditional Access", code=BLOCKED)

    async def try_certificate(self, tenant_id: str, client_id: str, pem_with_key: SecretValue) -> None:
        await self.try_secret(tenant_id, client_id, pem_with_key)


class Refusing:
    """Wraps a fake: the next `times` calls of `method` raise `error` before taking effect."""

    def __init__(self, target: Any, method: str, error: Exception, times: int = 1) -> None:
        self._target, self._method, self._error, self.times = target, method, error, times

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name != self._method:
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.times:
                self.times -= 1
                raise self._error
            return await attribute(*args, **kwargs)

        return call


def assert_failed_and_clean(world: World, record: Registration, code: str | None = BLOCKED) -> None:
    """`failed` with the reason, nothing left in Entra or Key Vault, the lease given up."""
    d, name = world.directory, vault_object_name(record.id)
    assert record.status is RegistrationStatus.FAILED
    assert record.last_error is not None and record.last_error.code == code
    assert (record.app_object_id, record.app_id, record.service_principal_id) == (None, None, None)
    assert record.credential is None and record.pending_credential is None
    assert (d.apps, d.assignments, d.grants) == ({}, set(), {})
    assert set(d.service_principals) == {c.app_id for c in d.catalogs.values()}  # the resources' own
    assert name not in world.vault.secrets and name not in world.vault.certificates
    assert record.lease_owner is None
    assert [(e.step, e.outcome) for e in record.history if e.outcome == "failed"] == [
        (record.last_error.step, "failed")
    ]
    assert (record.history[-1].step, record.history[-1].outcome) == ("cleanup", "done")


async def blocked_world(credential: CredentialSpec = SECRET) -> tuple[World, str]:
    world = World()
    world.probe = ConditionalAccessProbe()  # type: ignore[assignment]
    accepted = await world.accept(plan=world.plan(credential=credential))
    return world, accepted.registration.id


# ---------------------------------------------------------------- an interrupted cleanup


async def test_a_cleanup_interrupted_after_the_app_is_gone_resumes_on_the_next_run_and_ends_failed() -> None:
    world, rid = await blocked_world()
    vault = Refusing(world.vault, "delete_secret", TransientError("Key Vault delete 503"))
    with pytest.raises(TransientError, match="503"):
        await world.provisioner(vault=vault).run(rid)

    failing = await world.store.get(rid)
    assert world.directory.apps == {}  # the app went first
    assert failing.status is RegistrationStatus.FAILING
    assert failing.last_error is not None and failing.last_error.code == BLOCKED  # the reason is kept
    assert failing.lease_owner is None  # given up at once: the redelivery need not wait for it
    assert (failing.history[-1].step, failing.history[-1].outcome) == ("cleanup", "retrying")
    assert world.vault.latest_value(vault_object_name(rid)) is not None

    probe = world.probe
    assert isinstance(probe, ConditionalAccessProbe)
    probed = probe.calls
    upserts = world.directory.count("upsert_application")
    record = await world.provisioner(vault=vault).run(rid)  # the redelivery: no clock advance needed
    assert_failed_and_clean(world, record)
    assert probe.calls == probed  # no step is driven against the gone app
    assert world.directory.count("upsert_application") == upserts

    calls = (len(world.directory.calls), len(world.vault.calls))
    assert (await world.provisioner().run(rid)).status is RegistrationStatus.FAILED
    assert (len(world.directory.calls), len(world.vault.calls)) == calls


async def test_a_cleanup_graph_refuses_leaves_the_registration_failing_with_its_reason_until_it_can() -> None:
    world, rid = await blocked_world()
    refused = PermanentError(
        "Insufficient privileges to complete the operation.", code="Authorization_RequestDenied"
    )
    directory = Refusing(world.directory, "delete_application", refused)
    with pytest.raises(PermanentError, match="Insufficient privileges"):
        await world.provisioner(directory=directory).run(rid)
    failing = await world.store.get(rid)
    assert failing.status is RegistrationStatus.FAILING and failing.lease_owner is None
    assert failing.last_error is not None and failing.last_error.code == BLOCKED
    assert (failing.history[-1].step, failing.history[-1].outcome) == ("cleanup", "refused")
    assert len(world.directory.apps) == 1
    assert_failed_and_clean(world, await world.provisioner(directory=directory).run(rid))


async def count_calls_of_a_failing_run(credential: CredentialSpec) -> int:
    world, rid = await blocked_world(credential)
    faults = Faults()
    record = await world.crashing_provisioner(faults).run(rid)
    assert_failed_and_clean(world, record)
    return faults.count


@pytest.mark.parametrize("credential", [SECRET, CERTIFICATE], ids=["secret", "certificate"])
async def test_a_crash_after_each_call_of_a_failing_run_then_a_rerun_ends_failed_and_clean(
    credential: CredentialSpec,
) -> None:
    total = await count_calls_of_a_failing_run(credential)
    assert total > 10
    for crash_after in range(1, total + 1):
        world, rid = await blocked_world(credential)
        faults = Faults(crash_after=crash_after)
        with pytest.raises(Crash):
            await world.crashing_provisioner(faults, owner="crashed-worker").run(rid)
        world.clock.advance(timedelta(minutes=6))  # the dead worker's lease expires
        written_ahead = (await world.store.get(rid)).status is RegistrationStatus.FAILING
        upserts = world.directory.count("upsert_application")
        record = await world.provisioner(owner="next-worker").run(rid)
        assert_failed_and_clean(world, record)
        if written_ahead:  # the failure was recorded: the rerun only cleans up
            assert world.directory.count("upsert_application") == upserts, crash_after


async def test_a_crash_after_each_call_of_a_resumed_cleanup_then_a_rerun_ends_failed_and_clean() -> None:
    async def interrupted() -> tuple[World, str]:
        world, rid = await blocked_world()
        vault = Refusing(world.vault, "delete_secret", TransientError("Key Vault delete 503"))
        with pytest.raises(TransientError):
            await world.provisioner(vault=vault).run(rid)
        return world, rid

    world, rid = await interrupted()
    faults = Faults()
    resume = world.crashing_provisioner(faults, probe=False)
    assert_failed_and_clean(world, await resume.run(rid))
    total = faults.count
    assert total >= 4  # claim, the vault delete, the failed save, the release
    for crash_after in range(1, total + 1):
        world, rid = await interrupted()
        faults = Faults(crash_after=crash_after)
        with pytest.raises(Crash):
            await world.crashing_provisioner(faults, owner="crashed-worker", probe=False).run(rid)
        world.clock.advance(timedelta(minutes=6))
        assert_failed_and_clean(world, await world.provisioner(owner="next-worker").run(rid))


# ---------------------------------------------------------------- giving up


async def test_give_up_ends_a_paused_registration_as_failed_with_the_reason_and_removes_what_was_made() -> (
    None
):
    world = World()
    world.probe = FakeTokenProbe(world.directory, world.vault, not_accepted_for=10_000)
    rid = (await world.accept()).registration.id
    settings = WorkflowSettings(verify_timeout=timedelta(seconds=10), lease_wait=timedelta(seconds=5))
    with pytest.raises(TransientError):
        await world.provisioner(settings=settings).run(rid)
    assert len(world.directory.apps) == 1

    reason = "gave up after 5 attempts: Entra does not accept the credential yet"
    record = await world.provisioner().give_up(rid, reason)
    assert_failed_and_clean(world, record, code=None)
    assert record.last_error is not None
    assert (record.last_error.kind, record.last_error.step, record.last_error.message) == (
        "gave_up",
        "verify",
        reason,
    )

    again = await world.provisioner().give_up(rid, "another reason")  # idempotent
    assert again.status is RegistrationStatus.FAILED and again.last_error == record.last_error


async def test_give_up_leaves_active_held_and_decommissioned_registrations_as_they_are() -> None:
    world = World()
    active = (await world.accept()).registration.id
    await world.provisioner().run(active)
    held_plan = world.plan(approval_reasons=("tier-0: full_access_as_app",))
    held = (await world.accept(world.request("INC-HELD"), held_plan)).registration.id
    await world.provisioner().run(held)
    for rid, status in ((active, RegistrationStatus.ACTIVE), (held, RegistrationStatus.PENDING_APPROVAL)):
        before = await world.store.get(rid)
        after = await world.provisioner().give_up(rid, "gave up")
        assert after.status is status and after.last_error == before.last_error
    assert len(world.directory.apps) == 1


async def test_give_up_on_a_registration_another_worker_holds_is_transient_and_changes_nothing() -> None:
    world = World()
    rid = (await world.accept()).registration.id
    keeper = await world.provisioner(owner="busy-worker").claim(rid)
    with pytest.raises(LeaseHeld):
        await world.provisioner(owner="giving-up").give_up(rid, "gave up", wait=timedelta(0))
    assert (await world.store.get(rid)).status is RegistrationStatus.ACCEPTED
    await keeper.release()
