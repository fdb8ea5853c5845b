"""Prompt delivery (core/notification/prompt.py) and the signing-secret cache, against in-memory fakes.

A rotation announces credential.rotated inside prompt_deliveries: the delivery's message goes to
the queue hidden, the attempt is made at once, and the message is deleted once settled. Whatever
the invocation does not settle (an attempt that raised, ran past the deadline, or a crash before
the delete) is left to the queue trigger, which never sends twice what was delivered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from functions.core.notification.delivery import DeliveryWorker
from functions.core.notification.events import Delivery, DeliveryOutcome
from functions.core.notification.prompt import PROMPT_WINDOW, current_prompt, prompt_deliveries
from functions.core.notification.signing_secrets import CachedSecrets, webhook_secret_name
from functions.core.ports import VaultSecretRef
from functions.core.record.errors import NotFound, TransientError
from functions.core.record.models import SecretValue
from functions.core.record.schedule import JobAction
from functions.resources import WEBHOOK_DELIVERIES_QUEUE
from tests.unit import fakes
from tests.unit.fakes import Crash
from tests.unit.test_delivery_and_reactions import FakeDeliveryLog, FakeTransport
from tests.unit.test_rotation import RotationWorld, due_job

OK = DeliveryOutcome(status=200)


class HangingTransport(FakeTransport):
    """A receiver that never answers."""

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> DeliveryOutcome:
        self.sent.append((url, headers, body))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class FailingLog(FakeDeliveryLog):
    """Table storage refusing the outcome write (the attempt raises after the POST)."""

    async def record(self, entry: object) -> None:
        raise TransientError("503 Server Busy (table)")


async def rotated_world() -> RotationWorld:
    world = RotationWorld()
    await world.active()  # one subscriber: https://hooks.example/x
    world.clock.advance(timedelta(days=61))
    return world


def worker_for(world: RotationWorld, transport: FakeTransport, log: FakeDeliveryLog) -> DeliveryWorker:
    return DeliveryWorker(
        vault=world.vault,
        transport=transport,
        queue=world.queue,
        deliveries=log,
        clock=world.clock,
        schedule=(timedelta(seconds=30),),
    )


def queued(world: RotationWorld) -> list[Delivery]:
    """What the queue trigger would still receive on webhook-deliveries."""
    return [Delivery.from_message(m) for m in world.queue.pending(WEBHOOK_DELIVERIES_QUEUE)]


async def rotate(world: RotationWorld, worker: DeliveryWorker, **limits: timedelta) -> dict[str, int]:
    async with prompt_deliveries(worker, world.queue, **limits) as prompt:
        await world.rotator().run(due_job(world, JobAction.ROTATE))
        return await prompt.settle()


async def test_an_announced_delivery_is_attempted_at_once_and_its_hidden_message_deleted() -> None:
    world = await rotated_world()
    transport, log = FakeTransport([OK]), FakeDeliveryLog()

    counts = await rotate(world, worker_for(world, transport, log))

    assert counts == {"delivered": 1}
    (message,) = world.queue.messages(WEBHOOK_DELIVERIES_QUEUE)
    index = world.queue.sent.index((WEBHOOK_DELIVERIES_QUEUE, message))
    assert world.queue.hidden_for[index] == PROMPT_WINDOW  # hidden while the attempt runs
    assert json.loads(message)["prompt"] is True
    assert world.queue.deleted == {index} and queued(world) == []
    (url, headers, body) = transport.sent[0]
    delivery = Delivery.from_message(message)
    assert url == "https://hooks.example/x" and headers["webhook-id"] == delivery.delivery_id
    secret = world.vault.latest_value(webhook_secret_name(delivery.subscription_id))
    assert secret is not None
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)  # the world's clock: days ahead
    expected = Webhook(secret).sign(headers["webhook-id"], sent_at, body.decode())
    assert headers["webhook-signature"] == expected and json.loads(body)["type"] == "credential.rotated"
    assert log.entries[delivery.delivery_id].status == "delivered"


async def test_without_prompt_deliveries_the_message_is_queued_visible_and_nothing_is_sent() -> None:
    world = await rotated_world()

    await world.rotator().run(due_job(world, JobAction.ROTATE))

    (delivery,) = queued(world)
    assert delivery.prompt is False and world.queue.hidden_for[-1] is None
    assert current_prompt() is None


async def test_a_failed_attempt_queues_its_retry_and_deletes_the_first_message() -> None:
    world = await rotated_world()
    transport, log = FakeTransport([DeliveryOutcome(status=503)]), FakeDeliveryLog()

    counts = await rotate(world, worker_for(world, transport, log))

    assert counts == {"retrying": 1}
    # The held message itself became the retry: one message for the delivery, so a crash from
    # here on cannot leave two retry chains.
    (retry,) = queued(world)
    assert len(world.queue.messages(WEBHOOK_DELIVERIES_QUEUE)) == 1 and world.queue.count("reschedule") == 1
    assert retry.attempt == 2 and not retry.prompt and world.queue.hidden_for[-1] == timedelta(seconds=30)
    assert log.entries[retry.delivery_id].status == "retrying"
    assert (
        world.queue.deleted == set() and world.queue.released == set() and world.queue.count("release") == 0
    )


async def test_a_failed_attempt_whose_message_was_taken_over_starts_no_second_chain() -> None:
    world = await rotated_world()

    class TakenMeanwhile(FakeTransport):
        async def send(self, url: str, headers: dict[str, str], body: bytes) -> DeliveryOutcome:
            world.queue.taken.add(len(world.queue.sent) - 1)  # the queue trigger received it meanwhile
            return await super().send(url, headers, body)

    transport, log = TakenMeanwhile([DeliveryOutcome(status=503)]), FakeDeliveryLog()

    counts = await rotate(world, worker_for(world, transport, log))

    assert counts == {"retrying": 1}
    (message,) = world.queue.messages(WEBHOOK_DELIVERIES_QUEUE)  # no retry sent beside it
    assert Delivery.from_message(message).attempt == 1  # the consumer's copy carries it on


async def test_an_attempt_that_raises_is_released_to_the_queue_trigger_which_delivers_it_once() -> None:
    world = await rotated_world()
    transport = FakeTransport([OK, OK])

    counts = await rotate(world, worker_for(world, transport, FailingLog()))

    assert counts == {"released": 1}
    (message,) = queued(world)
    assert len(world.queue.released) == 1 and world.queue.deleted == set()
    # The queue trigger takes it: the log has no outcome, so it is sent (same webhook-id).
    log = FakeDeliveryLog()
    assert await worker_for(world, transport, log).deliver(message) == "delivered"
    assert [h["webhook-id"] for _, h, _ in transport.sent] == [message.delivery_id] * 2


async def test_an_attempt_past_the_deadline_is_cancelled_and_released() -> None:
    world = await rotated_world()
    transport = HangingTransport([])

    limits = {"window": timedelta(seconds=5), "deadline": timedelta(milliseconds=50)}
    async with prompt_deliveries(
        worker_for(world, transport, FakeDeliveryLog()), world.queue, linger=timedelta(seconds=1), **limits
    ) as prompt:
        await world.rotator().run(due_job(world, JobAction.ROTATE))
        await asyncio.sleep(
            0.3
        )  # the invocation's work goes on: the deadline counts from the attempt's start
        assert len(world.queue.released) == 1
        counts = await prompt.settle()

    assert counts == {"released": 1} and len(transport.sent) == 1
    assert len(queued(world)) == 1 and world.queue.hidden_for[-1] == timedelta(seconds=5)


async def test_deletes_wait_for_the_invocations_work_but_not_past_the_linger() -> None:
    world = await rotated_world()
    worker = worker_for(world, FakeTransport([OK]), FakeDeliveryLog())

    async with prompt_deliveries(worker, world.queue, linger=timedelta(seconds=30)):
        await world.rotator().run(due_job(world, JobAction.ROTATE))
        for _ in range(20):
            await asyncio.sleep(0)
        assert world.queue.deleted == set()  # delivered; the delete waits (the POSTs of a fan-out go first)
    assert len(world.queue.deleted) == 1  # the invocation's work is done: deleted on the way out

    world = await rotated_world()
    worker = worker_for(world, FakeTransport([OK]), FakeDeliveryLog())
    async with prompt_deliveries(worker, world.queue, linger=timedelta(milliseconds=20)):
        await world.rotator().run(due_job(world, JobAction.ROTATE))
        # the work goes on past the linger: the delete does not wait for it
        await asyncio.wait_for(until(lambda: len(world.queue.deleted) == 1), 5)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


async def test_a_crash_before_the_delete_leaves_the_message_whose_consumer_does_not_send_it_again() -> None:
    world = await rotated_world()
    transport, log = FakeTransport([OK]), FakeDeliveryLog()

    async def crash(message: object) -> None:
        raise Crash("the worker died before deleting the message")

    world.queue.delete = crash  # type: ignore[method-assign]
    counts = await rotate(world, worker_for(world, transport, log))

    assert counts == {"undeleted": 1}
    (left,) = queued(world)  # visible again after the window
    assert left.prompt is True
    assert await worker_for(world, transport, log).deliver(left) == "delivered"
    assert len(transport.sent) == 1  # the delivery log said delivered: no second POST


async def test_work_that_raises_still_settles_what_it_announced() -> None:
    world = await rotated_world()
    transport, log = FakeTransport([OK]), FakeDeliveryLog()

    with pytest.raises(TransientError):
        async with prompt_deliveries(worker_for(world, transport, log), world.queue):
            await world.rotator().run(due_job(world, JobAction.ROTATE))
            raise TransientError("a later step failed")

    assert len(transport.sent) == 1 and queued(world) == []
    assert current_prompt() is None


async def test_a_cancelled_invocation_hands_its_attempts_to_the_queue_trigger() -> None:
    world = await rotated_world()
    transport = HangingTransport([])
    announced = asyncio.Event()

    async def invocation() -> None:
        async with prompt_deliveries(worker_for(world, transport, FakeDeliveryLog()), world.queue):
            await world.rotator().run(due_job(world, JobAction.ROTATE))
            announced.set()
            await asyncio.Event().wait()  # functionTimeout cancels it here

    task = asyncio.create_task(invocation())
    await asyncio.wait_for(announced.wait(), 5)
    await asyncio.wait_for(until(lambda: bool(transport.sent)), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(queued(world)) == 1 and len(world.queue.released) == 1


async def test_cancelled_while_settling_the_attempts_are_released_and_none_is_left_running() -> None:
    world = await rotated_world()
    transport = HangingTransport([])
    settling = asyncio.Event()

    async def invocation() -> None:
        async with prompt_deliveries(worker_for(world, transport, FakeDeliveryLog()), world.queue):
            await world.rotator().run(due_job(world, JobAction.ROTATE))
            settling.set()
        # leaving the block: settle() waits on the hanging attempt

    task = asyncio.create_task(invocation())
    await asyncio.wait_for(settling.wait(), 5)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(world.queue.released) == 1 and len(queued(world)) == 1
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_attempts_at_once_are_bounded_by_the_processs_slots() -> None:
    from functions.core.notification.prompt import PromptDeliveries

    running, peak = 0, 0

    class SlowWorker:
        async def deliver(self, delivery: Delivery, *, held: object = None) -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return "delivered"

    queue = fakes.FakeQueue()
    prompt = PromptDeliveries(worker=SlowWorker(), queue=queue, slots=asyncio.Semaphore(2))  # type: ignore[arg-type]
    for n in range(5):
        delivery = Delivery(f"d{n}", "s", "reg-1", "https://h.example/", "credential.rotated", "{}")
        prompt.start(delivery, await queue.send(WEBHOOK_DELIVERIES_QUEUE, delivery.to_message()))
    counts = await prompt.settle()

    assert counts == {"delivered": 5} and peak == 2 and len(queue.deleted) == 5


async def test_a_task_that_outlives_the_block_no_longer_sees_its_prompt_deliveries() -> None:
    world = await rotated_world()
    later = asyncio.Event()
    seen: list[object] = []

    async def lingering() -> None:
        await later.wait()
        seen.append(current_prompt())

    async with prompt_deliveries(worker_for(world, FakeTransport([]), FakeDeliveryLog()), world.queue):
        task = asyncio.create_task(lingering())  # inherits the context variable
    later.set()
    await task

    assert seen == [None]


def test_the_deadline_and_the_linger_must_fall_within_the_window() -> None:
    from functions.core.notification.prompt import PromptDeliveries

    with pytest.raises(ValueError, match="deadline"):
        PromptDeliveries(
            worker=None,  # type: ignore[arg-type]
            queue=None,  # type: ignore[arg-type]
            window=timedelta(seconds=10),
            deadline=timedelta(seconds=5),
            linger=timedelta(seconds=5),
        )


# ---------------------------------------------------------------- the signing-secret cache


class CountingSource:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.reads: list[str] = []

    async def get_secret(self, name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        self.reads.append(name)
        if name not in self.values:
            raise NotFound("secret", name)
        ref = VaultSecretRef(name=name, version=version or "v1", uri=f"https://kv/{name}", tags={})
        return ref, SecretValue(self.values[name])


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_signing_secrets_are_read_once_per_ttl_and_forgotten_on_removal() -> None:
    source, ticks = CountingSource(), Ticks()
    source.values["wh-a"] = "whsec_AAAA"
    cache = CachedSecrets(source, ttl=timedelta(minutes=5), monotonic=ticks)

    first = await cache.get_secret("wh-a")
    ticks.now = 299
    second = await cache.get_secret("wh-a")
    assert first[1].reveal() == second[1].reveal() == "whsec_AAAA" and source.reads == ["wh-a"]
    ticks.now = 300
    await cache.get_secret("wh-a")
    assert source.reads == ["wh-a", "wh-a"]  # expired: read again

    del source.values["wh-a"]
    cache.forget("wh-a")
    with pytest.raises(NotFound):
        await cache.get_secret("wh-a")
    with pytest.raises(NotFound):
        await cache.get_secret("wh-a")
    assert source.reads.count("wh-a") == 4  # a miss is not cached
    assert "whsec_" not in repr(cache)


async def test_the_cache_keeps_at_most_its_capacity_least_recently_used_first() -> None:
    source = CountingSource()
    source.values.update({"a": "whsec_a", "b": "whsec_b", "c": "whsec_c"})
    cache = CachedSecrets(source, capacity=2)

    await cache.get_secret("a")
    await cache.get_secret("b")
    await cache.get_secret("a")  # a is now the most recent
    await cache.get_secret("c")  # b goes
    await cache.get_secret("a")
    await cache.get_secret("b")

    assert source.reads == ["a", "b", "c", "b"]


async def test_a_given_version_is_always_read_from_the_source() -> None:
    source = CountingSource()
    source.values["a"] = "whsec_a"
    cache = CachedSecrets(source)

    await cache.get_secret("a", "v1")
    await cache.get_secret("a", "v1")

    assert source.reads == ["a", "a"]


async def test_a_rotation_reads_its_subscribers_signing_secrets_before_it_announces() -> None:
    world = await rotated_world()
    timeline: list[tuple[str, str]] = []
    real_get, real_send = world.vault.get_secret, world.queue.send

    async def get_secret(name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        timeline.append(("read", name))
        return await real_get(name, version)

    async def send(queue_name: str, message: str, *, visibility_timeout: timedelta | None = None) -> object:
        await asyncio.sleep(0.001)  # a real send waits on the network: other tasks run meanwhile
        timeline.append(("send", queue_name))
        return await real_send(queue_name, message, visibility_timeout=visibility_timeout)

    world.vault.get_secret = get_secret  # type: ignore[method-assign]
    world.queue.send = send  # type: ignore[method-assign,assignment]
    transport = FakeTransport([OK])
    worker = DeliveryWorker(
        vault=CachedSecrets(world.vault),
        transport=transport,
        queue=world.queue,
        deliveries=FakeDeliveryLog(),
        clock=world.clock,
    )

    async with prompt_deliveries(worker, world.queue) as prompt:
        await world.rotator().run(due_job(world, JobAction.ROTATE))
        counts = await prompt.settle()

    (delivery,) = world.queue.deliveries()
    signing = ("read", webhook_secret_name(delivery.subscription_id))
    assert counts == {"delivered": 1} and len(transport.sent) == 1
    assert timeline.count(signing) == 1  # read once, ahead; the attempt found it in the cache
    assert timeline.index(signing) < timeline.index(("send", WEBHOOK_DELIVERIES_QUEUE))


async def test_concurrent_misses_share_one_read_and_a_read_under_way_when_forgotten_is_not_kept() -> None:
    source = CountingSource()
    source.values["a"] = "whsec_a"
    gate = asyncio.Event()
    real_get = source.get_secret

    async def slow_get(name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        await gate.wait()
        return await real_get(name, version)

    source.get_secret = slow_get  # type: ignore[method-assign]
    cache = CachedSecrets(source)

    readers = [asyncio.create_task(cache.get_secret("a")) for _ in range(5)]
    await asyncio.sleep(0)
    cache.forget("a")  # the subscription is removed while its secret is being read
    gate.set()
    values = {ref_value[1].reveal() for ref_value in await asyncio.gather(*readers)}

    assert values == {"whsec_a"} and source.reads == ["a"]  # five callers, one read
    await cache.get_secret("a")
    assert source.reads == ["a", "a"]  # what was read under way was not kept


async def test_cancelled_while_prefetches_are_stopped_the_attempts_are_still_released() -> None:
    world = await rotated_world()
    transport = HangingTransport([])
    stopping = asyncio.Event()

    class SlowToStop(DeliveryWorker):
        async def prefetch(self, subscription_ids: Sequence[str]) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                stopping.set()
                await asyncio.sleep(0.2)  # a Key Vault read winding down

    worker = SlowToStop(
        vault=world.vault,
        transport=transport,
        queue=world.queue,
        deliveries=FakeDeliveryLog(),
        clock=world.clock,
    )

    async def invocation() -> None:
        async with prompt_deliveries(worker, world.queue):
            await world.rotator().run(due_job(world, JobAction.ROTATE))  # prefetches, then announces

    task = asyncio.create_task(invocation())
    await asyncio.wait_for(stopping.wait(), 5)  # settle() is stopping the prefetch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(transport.sent) == 1 and len(world.queue.released) == 1
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_message_announced_after_the_block_settled_goes_to_the_queue_trigger() -> None:
    world = await rotated_world()
    worker = worker_for(world, FakeTransport([]), FakeDeliveryLog())
    async with prompt_deliveries(worker, world.queue) as prompt:
        pass
    assert prompt.closed

    delivery = Delivery("d1", "s", "reg-1", "https://h.example/", "credential.rotated", "{}")
    message = await world.queue.send(WEBHOOK_DELIVERIES_QUEUE, delivery.to_message())

    assert prompt.start(delivery, message) is False


async def test_a_name_forgotten_while_being_read_is_read_afresh_by_the_next_caller() -> None:
    source = CountingSource()
    source.values["a"] = "whsec_old"
    gate = asyncio.Event()
    real_get = source.get_secret

    async def slow_get(name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        answer = await real_get(name, version)  # read at the vault...
        await gate.wait()  # ...the answer still on its way
        return answer

    source.get_secret = slow_get  # type: ignore[method-assign]
    cache = CachedSecrets(source)
    under_way = asyncio.create_task(cache.get_secret("a"))
    await asyncio.wait_for(until(lambda: source.reads == ["a"]), 5)

    cache.forget("a")  # removed: its secret is deleted from Key Vault
    del source.values["a"]
    after = asyncio.create_task(cache.get_secret("a"))
    gate.set()

    assert (await under_way)[1].reveal() == "whsec_old"  # read before the removal
    with pytest.raises(NotFound):
        await after  # not handed the read under way
