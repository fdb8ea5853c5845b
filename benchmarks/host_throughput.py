"""Throughput of the devstack Functions host on its test app: HTTP requests/s and queue messages/s.

Prints figures, asserts nothing. Also prints the host process's own CPU time per invocation (from
its CPU clock in /proc, not wall time), so Registrar's benchmarks can tell host overhead apart.

    .venv/bin/python -m benchmarks.host_throughput [--requests 2000] [--messages 500] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from azure.storage.queue.aio import QueueClient

from devstack import azurite
from devstack.host.launcher import start_host

SAMPLE_APP = Path(__file__).resolve().parents[1] / "tests" / "devstack" / "sample_app"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


async def http_load(url: str, total: int, concurrency: int) -> float:
    item = str(uuid.uuid4())
    remaining = iter(range(total))

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in remaining:
            async with session.get(f"{url}/api/items/{item}") as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return time.perf_counter() - started


async def queue_load(connection: str, queue_name: str, total: int, record_dir: Path) -> float:
    async with QueueClient.from_connection_string(connection, queue_name) as queue:
        remaining = iter(range(total))

        async def sender() -> None:
            for index in remaining:
                await queue.send_message(base64.b64encode(f"ok-{index}".encode()).decode())

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(16)))
        while len(list(record_dir.glob("queue-*.json"))) < total:
            await asyncio.sleep(0.05)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, azurite.start() as storage:
        tmp = Path(tmp_name)
        queue_name = f"bench-{uuid.uuid4().hex[:8]}"
        values = {
            "SampleStorage": storage.connection_string,
            "SAMPLE_QUEUE": queue_name,
            "SAMPLE_SCHEDULE": "0 0 0 1 1 *",
            "SAMPLE_SLOW_SCHEDULE": "0 0 0 1 1 *",
            "SAMPLE_RECORD_DIR": str(tmp / "records"),
            "AzureWebJobs.every_second.Disabled": "true",
            "AzureWebJobs.slow_timer.Disabled": "true",
        }
        settings = tmp / "local.settings.json"
        settings.write_text(json.dumps({"Values": values}))
        with start_host(
            SAMPLE_APP, settings_file=settings, state_dir=tmp / "state", log_path=tmp / "host.log"
        ) as host:
            pid = host.process.pid
            cpu_before = cpu_seconds(pid)
            elapsed = asyncio.run(http_load(host.url, args.requests, args.concurrency))
            http_cpu = cpu_seconds(pid) - cpu_before
            print(f"HTTP trigger: {args.requests} requests, concurrency {args.concurrency}:")
            print(
                f"  {args.requests / elapsed:8.0f} requests/s, host CPU {http_cpu / args.requests * 1000:.2f} ms/request"
            )
            cpu_before = cpu_seconds(pid)
            elapsed = asyncio.run(
                queue_load(storage.connection_string, queue_name, args.messages, tmp / "records")
            )
            queue_cpu = cpu_seconds(pid) - cpu_before
            print(f"Queue trigger: {args.messages} messages (sent by 16 concurrent senders, all processed):")
            print(
                f"  {args.messages / elapsed:8.0f} messages/s end to end, host CPU {queue_cpu / args.messages * 1000:.2f} ms/message"
            )


if __name__ == "__main__":
    main()
