"""functions.bootstrap.Services against Azurite: close() releases every HTTP session it opened."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from functions.bootstrap import Services
from functions.settings import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "local.settings.sample.json"


def sessions_of(root: Any, depth: int = 8) -> list[aiohttp.ClientSession]:
    from tests.unit.test_sdk_transport import transports_of

    return [t.session for t in transports_of(root, depth) if t.session is not None]


def test_close_releases_the_sessions_it_opened_and_the_services_can_be_rebuilt(azurite: str) -> None:
    values = {**json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"], "AzureWebJobsStorage": azurite}

    async def main() -> tuple[list[bool], list[bool], int]:
        svc = await Services(Settings.from_env(values)).ready()
        await svc.queue.send("rotation-jobs", "{}")
        opened = [*sessions_of(svc.table_service), *sessions_of(svc.queue)]
        before = [s.closed for s in opened]
        await svc.close()
        after = [s.closed for s in opened]
        again = await svc.ready()  # rebuilt on next use
        await again.queue.send("rotation-jobs", "{}")
        client = again.queue.client("rotation-jobs")
        count = (await client.get_queue_properties()).approximate_message_count
        await again.close()
        return before, after, count

    before, after, count = asyncio.run(main())
    assert before and not any(before)
    assert all(after)
    assert count == 2


def test_after_close_a_job_works_with_the_rebuilt_adapters_not_the_closed_ones(azurite: str) -> None:
    values = {**json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"], "AzureWebJobsStorage": azurite}

    async def main() -> tuple[Any, Any, Any]:
        svc = await Services(Settings.from_env(values)).ready()
        closed_store = svc.job_ports.store  # the provisioner, rotator and takeover work with it
        await svc.close()
        again = await svc.ready()
        ports, rebuilt_store = again.job_ports, again.store
        await again.close()
        return closed_store, ports.store, rebuilt_store

    closed_store, store_of_the_next_job, rebuilt_store = asyncio.run(main())
    assert store_of_the_next_job is not closed_store
    assert store_of_the_next_job is rebuilt_store
