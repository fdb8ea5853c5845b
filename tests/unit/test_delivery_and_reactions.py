"""Webhook delivery worker (backoff, dead-letter, gone) and reactions to Key Vault events, with fakes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from functions.core.notification.delivery import DeliveryWorker
from functions.core.notification.events import (
    SETTLED_STATUSES,
    Delivery,
    DeliveryOutcome,
    WebhookEvent,
    WebhookSubscription,
    fan_out,
)
from functions.core.notification.signing_secrets import webhook_secret_name
from functions.core.ports import DeliveryRecord
from functions.core.record.models import CredentialSpec, CredentialType, SecretValue, WebhookSpec
from functions.core.record.schedule import JobAction, RotationJob
from functions.core.rotation.keyvault_events import KeyVaultEvent, KeyVaultEventKind, ObjectType
from functions.core.rotation.keyvault_reactions import KeyVaultReactions, Reaction, registration_id_of
from functions.resources import ROTATION_JOBS_QUEUE, WEBHOOK_DELIVERIES_QUEUE
from tests.unit.fakes import FakeClock, FakeVault
from tests.unit.provisioning_world import fast_sleep
from tests.unit.test_rotation import FakeQueue, RotationWorld, due_job

SCHEDULE = (timedelta(seconds=1), timedelta(seconds=4))


class FakeTransport:
    def __init__(self, outcomes: list[DeliveryOutcome]) -> None:
        self.outcomes = outcomes
        self.sent: list[tuple[str, dict[str, str], bytes]] = []

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> DeliveryOutcome:
        self.sent.append((url, headers, body))
        return self.outcomes.pop(0)

    async def check(self, url: str) -> None:
        return None


class FakeDeliveryLog:
    def __init__(self) -> None:
        self.entries: dict[str, DeliveryRecord] = {}

    async def record(self, entry: DeliveryRecord) -> None:
        self.entries[entry.delivery_id] = entry

    async def get(self, registration_id: str, delivery_id: str) -> DeliveryRecord | None:
        return self.entries.get(delivery_id)

    async def record_unless_settled(self, entry: DeliveryRecord) -> DeliveryRecord | None:
        current = self.entries.get(entry.delivery_id)
        if current is not None and current.status in SETTLED_STATUSES:
            return current
        self.entries[entry.delivery_id] = entry
        return None

    async def list(self, registration_id: str, *, status: str | None = None) -> list[DeliveryRecord]:
        return [e for e in self.entries.values() if status in (None, e.status)]


async def _setup(
    outcomes: list[DeliveryOutcome],
) -> tuple[DeliveryWorker, Delivery, FakeTransport, FakeQueue, FakeDeliveryLog, str]:
    # Real "now": receivers (and the reference verifier) refuse timestamps 5 minutes off.
    vault, queue, log, clock = FakeVault(), FakeQueue(), FakeDeliveryLog(), FakeClock(datetime.now(UTC))
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    await vault.set_secret(
        webhook_secret_name("s1"), SecretValue(secret), content_type="t", tags={}, expires_on=None
    )
    event = WebhookEvent(id="e1", type="credential.rotated", occurred_at=clock.now(), registration_id="reg-1")
    (delivery,) = fan_out(
        event, [WebhookSubscription(id="s1", registration_id="reg-1", url="https://h.example/x")]
    )
    transport = FakeTransport(outcomes)
    worker = DeliveryWorker(
        vault=vault, transport=transport, queue=queue, deliveries=log, clock=clock, schedule=SCHEDULE
    )
    return worker, delivery, transport, queue, log, secret


async def test_a_delivery_is_signed_so_the_reference_verifies_it() -> None:
    worker, delivery, transport, _, log, secret = await _setup([DeliveryOutcome(status=200)])

    assert await worker.deliver(delivery) == "delivered"

    url, headers, body = transport.sent[0]
    assert url == "https://h.example/x" and body == delivery.body.encode()
    assert Webhook(secret).verify(body, headers)["type"] == "credential.rotated"
    assert headers["webhook-id"] == delivery.delivery_id
    assert log.entries[delivery.delivery_id].status == "delivered"


async def test_failures_back_off_then_dead_letter_with_the_last_error() -> None:
    worker, delivery, _, queue, log, _ = await _setup(
        [
            DeliveryOutcome(status=503),
            DeliveryOutcome(status=None, error="timed out"),
            DeliveryOutcome(status=500),
        ]
    )

    first = await worker.deliver(delivery)
    retried = Delivery.from_message(queue.sent[-1][1])
    second = await worker.deliver(retried)
    again = Delivery.from_message(queue.sent[-1][1])
    third = await worker.deliver(again)

    assert (first, second, third) == ("retrying", "retrying", "dead_lettered")
    assert [q for q, _ in queue.sent] == [WEBHOOK_DELIVERIES_QUEUE, WEBHOOK_DELIVERIES_QUEUE]
    assert (retried.attempt, again.attempt) == (2, 3)
    assert {retried.delivery_id, again.delivery_id} == {delivery.delivery_id}  # same webhook-id every time
    final = log.entries[delivery.delivery_id]
    assert (final.status, final.attempts, final.last_status, final.last_error) == (
        "dead_lettered",
        3,
        500,
        "HTTP 500",
    )


async def test_gone_receivers_and_removed_subscriptions_stop_retries() -> None:
    worker, delivery, _, queue, log, _ = await _setup([DeliveryOutcome(status=410)])
    assert await worker.deliver(delivery) == "gone"
    assert queue.sent == []
    assert log.entries[delivery.delivery_id].last_status == 410
    orphan = replace(delivery, subscription_id="s-removed")
    assert await worker.deliver(orphan) == "gone"


async def test_a_duplicate_chain_never_overwrites_delivered_nor_keeps_retrying() -> None:
    """The announcement re-sent after a crash starts a second chain with the same webhook-id: chain
    A delivers, chain B's receiver answer fails; B must neither record over "delivered" nor retry."""
    worker, delivery, transport, queue, log, _ = await _setup(
        [DeliveryOutcome(status=204), DeliveryOutcome(status=503)]
    )

    assert await worker.deliver(delivery) == "delivered"  # chain A
    assert await worker.deliver(delivery) == "delivered"  # chain B: its attempt failed, A had settled it

    assert queue.sent == []  # no follow-up attempt for B
    assert (log.entries[delivery.delivery_id].status, log.entries[delivery.delivery_id].attempts) == (
        "delivered",
        1,
    )
    assert [headers["webhook-id"] for _, headers, _ in transport.sent] == [delivery.delivery_id] * 2


async def test_a_queued_retry_of_a_delivery_settled_meanwhile_is_not_sent() -> None:
    worker, delivery, transport, queue, log, _ = await _setup(
        [DeliveryOutcome(status=503), DeliveryOutcome(status=204)]
    )
    assert await worker.deliver(delivery) == "retrying"  # chain B's first attempt
    retry = Delivery.from_message(queue.sent[-1][1])
    assert await worker.deliver(delivery) == "delivered"  # chain A delivers meanwhile

    assert await worker.deliver(retry) == "delivered"  # B's retry: settled, nothing sent

    assert len(transport.sent) == 2 and log.entries[delivery.delivery_id].status == "delivered"


def test_only_registration_objects_are_acted_on() -> None:
    assert registration_id_of("reg-abc") == "reg-abc"
    assert registration_id_of("reg-abc-staging") is None
    assert registration_id_of("webhook-wh-1") is None


def reactions_of(world: RotationWorld) -> KeyVaultReactions:
    return KeyVaultReactions(
        store=world.store,
        queue=world.queue,
        index=world.index,
        clock=world.clock,
        owner="events",
        sleep=fast_sleep,
    )


def _event(
    kind: KeyVaultEventKind, name: str, version: str | None, expires: datetime | None = None
) -> KeyVaultEvent:
    return KeyVaultEvent("e", kind, ObjectType.SECRET, "vault", name, version, None, None, expires)


async def test_near_expiry_enqueues_a_rotation_and_warns_new_version_announces_once() -> None:
    world = RotationWorld()
    record = await world.active()
    reactions = reactions_of(world)
    version = record.credential.secret_version  # type: ignore[union-attr]
    # Key Vault's NearExpiry comes 30 days before expiry: day 60 of this 90-day secret, when it is due.
    world.clock.advance(timedelta(days=60))

    near = await reactions.handle(_event(KeyVaultEventKind.NEAR_EXPIRY, record.id, version))
    stale = await reactions.handle(_event(KeyVaultEventKind.NEAR_EXPIRY, record.id, "old-version"))
    staging = await reactions.handle(_event(KeyVaultEventKind.NEW_VERSION, f"{record.id}-staging", "v"))

    jobs = [RotationJob.from_message(json.loads(m)) for q, m in world.queue.sent if q == ROTATION_JOBS_QUEUE]
    assert (near, stale, staging) == (Reaction.ROTATION_ENQUEUED, Reaction.IGNORED, Reaction.IGNORED)
    assert [(j.action, j.generation) for j in jobs] == [(JobAction.ROTATE, 1)]
    # indexed as due now (moved from its scheduled bucket): a lost message is found by the next sweep
    assert world.index.jobs[jobs[0].job_id] == jobs[0]
    assert world.index.partitions_of(jobs[0].job_id) == [jobs[0].index_partition]
    assert [json.loads(d.body)["type"] for d in world.queue.deliveries()] == ["credential.expiring"]

    await world.rotator().run(due_job(world, JobAction.ROTATE))
    rotated = await world.store.get(record.id)
    new_version = rotated.credential.secret_version  # type: ignore[union-attr]
    assert (
        await reactions.handle(_event(KeyVaultEventKind.NEW_VERSION, record.id, new_version))
        is Reaction.NOTIFIED
    )
    types = [json.loads(d.body)["type"] for d in world.queue.deliveries()]
    assert types == ["credential.expiring", "credential.rotated"]  # the event path did not announce it again


async def test_near_expiry_of_a_credential_not_yet_due_is_left_to_the_timer() -> None:
    """A short-lived secret is "near expiry" for Key Vault the moment it is made: rotating on that
    event would rotate every new version at once, for ever."""
    world = RotationWorld(CredentialSpec(CredentialType.SECRET, timedelta(days=7)))
    record = await world.active()
    reactions = reactions_of(world)

    outcome = await reactions.handle(
        _event(KeyVaultEventKind.NEAR_EXPIRY, record.id, record.credential.secret_version)  # type: ignore[union-attr]
    )

    assert outcome is Reaction.IGNORED
    assert [q for q, _ in world.queue.sent if q == ROTATION_JOBS_QUEUE] == []
    assert world.queue.deliveries() == []
    world.clock.advance(timedelta(days=4))  # past half its life: due, so the event rotates it
    again = await reactions.handle(
        _event(KeyVaultEventKind.NEAR_EXPIRY, record.id, record.credential.secret_version)  # type: ignore[union-attr]
    )
    assert again is Reaction.ROTATION_ENQUEUED


async def test_expiry_of_the_current_credential_alerts() -> None:
    world = RotationWorld()
    record = await world.active()
    reactions = reactions_of(world)

    outcome = await reactions.handle(
        _event(KeyVaultEventKind.EXPIRED, record.id, record.credential.secret_version)  # type: ignore[union-attr]
    )

    assert outcome is Reaction.ALERTED
    assert [json.loads(d.body)["type"] for d in world.queue.deliveries()] == ["credential.expired"]


async def test_settling_a_provisioned_registration_schedules_rotation_and_announces_once() -> None:
    from functions.core.provisioning.outcomes import settle_provisioned
    from tests.unit.test_rotation import SETTINGS

    world = RotationWorld()
    request = world.request(credential=world.credential, webhooks=(WebhookSpec("https://hooks.example/x"),))
    accepted = await world.accept(request, world.plan(credential=world.credential))
    record = await world.provisioner().run(accepted.registration.id)

    for _ in range(2):
        await settle_provisioned(
            await world.store.get(record.id),
            store=world.store,
            index=world.index,
            queue=world.queue,
            clock=world.clock,
            owner="worker",
            settings=SETTINGS,
            sleep=fast_sleep,
        )

    assert [(j.action, j.generation) for j in world.index.jobs.values()] == [(JobAction.ROTATE, 1)]
    (delivery,) = world.queue.deliveries()
    payload = json.loads(delivery.body)
    assert payload["type"] == "registration.active"
    assert payload["data"]["keyId"] == record.credential.key_id  # type: ignore[union-attr]
    assert payload["data"]["secretUri"] == record.credential.secret_uri  # type: ignore[union-attr]
