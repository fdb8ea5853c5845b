"""One rotation notifying 100 subscribers, end to end through the local host, against 100 x one.

    .venv/bin/python -m benchmarks.notify_fanout [--subscribers 100] [--receiver-ms 50] [--singles 5] [--fanouts 3]

A private stack (Azurite, tenant without propagation delay, the Functions host on function_app.py,
host.json as deployed) and a local receiver (aiohttp on 127.0.0.1) whose every endpoint takes
`--receiver-ms` to answer. A delivery counts once the receiver has answered it.

Both figures are measured the same way, end to end: from the rotation being recorded (its history
entry) to the last subscriber's delivery answered. POST .../rotate; the rotation job reads its
subscribers' signing secrets from Key Vault while the new credential is verified (before the
clock starts), then announces credential.rotated: one message per subscriber on
webhook-deliveries, sent hidden, each attempted at once by the rotation job's invocation
(core/notification/prompt.py), which then deletes the messages it settled.
- A single delivery: a registration with one subscriber, rotated `--singles` times; the median.
- Fan-out: a registration whose record gets `--subscribers` new webhook subscriptions (signing
  secrets in Key Vault) before each of `--fanouts` rotations, written straight to its Table
  entity because the API allows 10 per registration; the median. New subscriptions each time, so
  none of their secrets is in the host's cache before the rotation starts, as for a real rotation
  (months apart). One more rotation with the last subscriptions shows the cached case. The CPU
  each process of the stack spent is noted.
For reference, the DeliveryWorker in this process over the same adapters (every signing secret
read from Key Vault): one delivery at a time, and one per subscriber all at once.
Target: the fan-out under 10 % of 100 x a single delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.tenant import ca


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def add_subscriptions(host: Any, registration_id: str, urls: list[str]) -> list[str]:
    """Subscriptions past the API's limit, as the API would store them: ref in the record, secret in Key Vault."""
    from functions.adapters.tables import StorageConfig, TableRegistrationStore, table_service
    from functions.core.notification.events import new_signing_secret
    from functions.core.notification.signing_secrets import WEBHOOK_SECRET_CONTENT_TYPE, webhook_secret_name
    from functions.core.record.models import WEBHOOK_EVENTS
    from functions.core.record.registration import WebhookSubscriptionRef
    from functions.resources import REGISTRATIONS_TABLE

    refs = []
    for url in urls:
        subscription_id = f"wh-{uuid.uuid4().hex}"
        name = webhook_secret_name(subscription_id)
        host.secrets.set_secret(
            name,
            new_signing_secret().reveal(),
            content_type=WEBHOOK_SECRET_CONTENT_TYPE,
            tags={"registrationId": registration_id, "subscriptionId": subscription_id},
        )
        refs.append(WebhookSubscriptionRef(subscription_id, url, WEBHOOK_EVENTS, name, datetime.now(UTC)))
    service = table_service(StorageConfig(connection_string=host.endpoints["storageConnectionString"]))
    async with service:
        store = TableRegistrationStore(service, REGISTRATIONS_TABLE)
        record = await store.get(registration_id)
        await store.replace(replace(record, webhooks=tuple(refs)))
    return [ref.id for ref in refs]


async def worker_figures(
    settings_file: Path, registration_id: str, subscription_ids: list[str], receiver: Any, singles: int
) -> tuple[list[float], float]:
    """The DeliveryWorker in this process over the real adapters (Key Vault for the signing secrets,
    Table storage for the delivery log, the webhook sender): `singles` deliveries one at a time,
    then one per subscription all at once. Returns (single times, fan-out time) in seconds."""
    from functions.bootstrap import Services
    from functions.core.notification.delivery import DeliveryWorker
    from functions.core.notification.events import Delivery, WebhookEvent, delivery_id
    from functions.settings import Settings

    values = json.loads(settings_file.read_text(encoding="utf-8"))["Values"]
    svc = await Services(Settings.from_env(values)).ready()
    try:  # a failed delivery still closes every adapter's sessions: no "Unclosed client session"
        worker = DeliveryWorker(  # as svc.delivery_worker(), but every signing secret read from Key Vault
            vault=svc.vault,
            transport=svc.webhook_sender,
            queue=svc.queue,
            deliveries=svc.deliveries,
            clock=svc.clock,
            schedule=svc.webhook_retry_schedule,
        )
        event = WebhookEvent(
            id=f"{registration_id}:bench:credential.rotated",
            type="credential.rotated",
            occurred_at=datetime.now(UTC),
            registration_id=registration_id,
            data={"keyId": str(uuid.uuid4()), "generation": 3},
        )

        def delivery(subscription_id: str, path: str) -> Delivery:
            return Delivery(
                delivery_id=delivery_id(f"{event.id}:{path}", subscription_id),
                subscription_id=subscription_id,
                registration_id=registration_id,
                url=receiver.url(path),
                event_type=event.type,
                body=event.body().decode(),
            )

        await worker.deliver(delivery(subscription_ids[0], "/worker/warm-up"))  # connections, tokens
        times = []
        for i in range(singles):
            started = time.perf_counter()
            status = await worker.deliver(delivery(subscription_ids[0], f"/worker/single/{i}"))
            times.append(time.perf_counter() - started)
            assert status == "delivered", status
        batch = [delivery(s, f"/worker/fan/{i}") for i, s in enumerate(subscription_ids)]
        started = time.perf_counter()
        statuses = await asyncio.gather(*(worker.deliver(d) for d in batch))
        fan_out = time.perf_counter() - started
        assert set(statuses) == {"delivered"}, statuses
        return times, fan_out
    finally:
        await svc.close()


def rotated_at(host: Any, registration_id: str, generation: int) -> float:
    """Wall-clock time the rotation to `generation` was recorded (its history entry)."""
    view = host.registration(registration_id)
    detail = f"generation {generation} "
    entry = next(
        h
        for h in view["history"]
        if h["step"] == "rotation" and h["outcome"] == "done" and (h["detail"] or "").startswith(detail)
    )
    return datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()


@dataclass
class Notified:
    """One rotation's notification: seconds from the rotation recorded to the first and the last
    delivery (the receiver's answer included), and the CPU seconds each stack process spent."""

    first_s: float
    last_s: float
    cpu_s: dict[str, float]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rotate_and_time(
    host: Any, receiver: Any, registration_id: str, paths: list[str], generation: int, *, pids: dict[str, int]
) -> Notified:
    """POST rotate; time from the rotation recorded to the last of `paths` being answered."""
    from tests.e2e.rotation_support import wait_until

    before = {p: len(receiver.received(p)) for p in paths}
    cpu_before = {name: process_cpu_s(pid) for name, pid in pids.items()}
    response = host.rotate(registration_id)
    assert response.status_code == 202, response.text

    def all_delivered() -> bool:
        return all(len(receiver.received(p)) > before[p] for p in paths)

    wait_until(f"{len(paths)} deliveries", all_delivered, timeout_s=120, every_s=0.05)
    time.sleep(receiver.delay_s + 0.05)  # the last ones are answered
    cpu = {name: process_cpu_s(pid) - cpu_before[name] for name, pid in pids.items()}
    arrivals = [receiver.received(p)[before[p]].at for p in paths]  # monotonic clock
    recorded = rotated_at(host, registration_id, generation) - time.time() + time.monotonic()
    return Notified(
        first_s=min(arrivals) + receiver.delay_s - recorded,
        last_s=max(arrivals) + receiver.delay_s - recorded,
        cpu_s=cpu,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def run(args: argparse.Namespace, state_dir: Path) -> int:
    material = state_dir / "ca"
    ca.load_or_create(material)
    os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = str(material / "ca.pem")
    from tests.e2e.rotation_support import Receiver, private_host, start_private_stack

    log("starting Azurite, the tenant and the host...")
    stack = start_private_stack(state_dir / "stack", material, {}, ["--propagation-delay", "0"])
    receiver = Receiver(delay_s=args.receiver_ms / 1000).start()
    host = private_host(stack)
    assert stack.host is not None and stack.tenant is not None and stack.azurite is not None
    pids = {
        "host": stack.host.process.pid,
        "Azurite": stack.azurite.process.pid,
        "tenant": stack.tenant.pid,
        "receiver": os.getpid(),  # the receiver's thread, and this process's polling of it
    }
    n = args.subscribers
    try:
        fan_id, _ = host.register(f"fan-{uuid.uuid4().hex[:6]}", lifetime="P1D")
        single_id, _ = host.register(
            f"one-{uuid.uuid4().hex[:6]}",
            lifetime="P1D",
            webhooks=[{"url": receiver.url("/single"), "events": ["credential.rotated"]}],
        )
        host.wait_status(fan_id, "active", timeout_s=120)
        host.wait_status(single_id, "active", timeout_s=120)

        log(f"one subscriber, end to end: {args.singles} rotations one after the other...")
        one_runs = [
            rotate_and_time(host, receiver, single_id, ["/single"], generation, pids=pids)
            for generation in range(2, 2 + args.singles)
        ]
        log(f"{n} new subscribers before each, end to end: {args.fanouts} rotations one after the other...")
        fans = []
        for run_number, generation in enumerate(range(2, 2 + args.fanouts)):
            fan_paths = [f"/fan/{run_number}/{i}" for i in range(n)]
            subscription_ids = asyncio.run(
                add_subscriptions(host, fan_id, [receiver.url(p) for p in fan_paths])
            )
            fans.append(rotate_and_time(host, receiver, fan_id, fan_paths, generation, pids=pids))
        log("the same subscribers once more, their signing secrets cached by the host...")
        warm = rotate_and_time(host, receiver, fan_id, fan_paths, 2 + args.fanouts, pids=pids)
        log("the DeliveryWorker in this process: single deliveries, then all subscribers at once...")
        singles, worker_fan_out = asyncio.run(
            worker_figures(
                Path(host.endpoints["settingsFile"]), fan_id, subscription_ids, receiver, args.singles
            )
        )
    finally:
        host.close()
        receiver.close()
        stack.stop()

    ones = [r.last_s for r in one_runs]
    one, fan = statistics.median(ones), statistics.median(f.last_s for f in fans)
    single = statistics.median(singles)
    target = fan / (n * one)
    cpu_fan = {name: statistics.median(f.cpu_s[name] for f in fans) for name in pids}
    cpu_one = {name: statistics.median(r.cpu_s[name] for r in one_runs) for name in pids}
    marginal = {name: (cpu_fan[name] - cpu_one[name]) / (n - 1) for name in pids}
    print()
    print(f"receivers answer in {args.receiver_ms} ms; a delivery counts once answered")
    print("end to end through the host (rotation recorded -> last delivery answered):")
    print(
        f"  a single delivery (one subscriber): median {ms(one)} ms of {', '.join(ms(s) for s in ones)};"
        f" {n} x that = {n * one:.1f} s"
    )
    print(
        f"  {n} new subscribers: median {ms(fan)} ms of {', '.join(ms(f.last_s) for f in fans)}"
        f" (first answered after {', '.join(ms(f.first_s) for f in fans)} ms)"
    )
    print(f"  = {target:.1%} of {n} x a single delivery (target < 10 %)")
    print(
        f"  the same {n} again, signing secrets cached: {ms(warm.last_s)} ms = {warm.last_s / (n * one):.1%}"
    )
    print("the DeliveryWorker in this process (signing secret read from Key Vault, sign, POST, outcome):")
    print(f"  a single delivery: median {ms(single)} ms of {', '.join(ms(s) for s in singles)}")
    print(f"  {n} at once: {ms(worker_fan_out)} ms = {worker_fan_out / (n * single):.1%} of {n} x that")
    print(f"CPU spent per rotation and its notifications, {os.cpu_count()} cores (median):")
    print(f"  one subscriber:   {', '.join(f'{name} {ms(cpu_one[name])} ms' for name in pids)}")
    print(f"  {n} subscribers: {', '.join(f'{name} {ms(cpu_fan[name])} ms' for name in pids)}")
    print(
        f"  each further subscriber: {', '.join(f'{name} {marginal[name] * 1000:.1f} ms' for name in pids)}"
        f" = {sum(marginal.values()) * 1000:.1f} ms"
    )
    # No schedule can beat the CPU the stack needs: the marginal CPU of all processes spread over
    # every core, and no process faster than its own share on one thread (Azurite's is one thread,
    # the host's functions share one event loop).
    cores = os.cpu_count() or 1
    spread, busiest = sum(marginal.values()) * n / cores, max(marginal.values()) * n
    bound = max(spread, busiest)
    print(
        f"  CPU floor for {n} more subscribers, with perfect overlap and no waiting: {ms(bound)} ms"
        f" = {bound / (n * one):.1%} of the baseline (all processes on {cores} cores {ms(spread)} ms,"
        f" the busiest on its thread {ms(busiest)} ms)"
    )
    return 0 if target < 0.1 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--receiver-ms", type=int, default=50)
    parser.add_argument("--singles", type=int, default=5)
    parser.add_argument("--fanouts", type=int, default=3)
    parser.add_argument(
        "--state-dir", type=Path, help="keep the stack's logs here (default: a temporary dir)"
    )
    args = parser.parse_args()
    if args.state_dir is not None:
        return run(args, args.state_dir)
    with tempfile.TemporaryDirectory(prefix="notify-fanout-") as state:
        return run(args, Path(state))


if __name__ == "__main__":
    sys.exit(main())
