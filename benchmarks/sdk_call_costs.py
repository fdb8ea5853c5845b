"""What one Azure SDK call costs the function app, and what functions.adapters.transport and
table_batches save, measured against a private stack (Azurite and the local tenant).

    .venv/bin/python -m benchmarks.sdk_call_costs [--calls 300] [--burst 100]

- Per call, one after the other (client CPU from process_time, wall time, and the CPU of the
  server process): queue send, table upsert, Key Vault get; with azure-core's default transport
  (trust_env: aiohttp looks up proxies and ~/.netrc on every request, in a thread) and with the
  adapters' (functions.adapters.transport.data_plane_options).
- A burst of `--burst` concurrent Key Vault gets: default pool (up to 100 connections, a TLS
  handshake each) against the adapters' pooled transport (CONNECTIONS_PER_HOST).
- A burst of `--burst` delivery outcomes to one partition: one upsert each against group commit
  (table_batches.PartitionBatcher), with the number of requests sent.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from devstack.tenant import ca


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def repeat(calls: int, call: Callable[..., Awaitable[Any]], *args: Any) -> None:
    for _ in range(calls):
        await call(*args)


async def at_once(calls: int, call: Callable[..., Awaitable[Any]], *args: Any) -> None:
    await asyncio.gather(*(call(*args) for _ in range(calls)))


async def upsert_new_row(table: Any) -> None:
    await table.upsert_entity({"PartitionKey": "p", "RowKey": str(uuid.uuid4())})


async def measure(
    label: str, server_pid: int, calls: int, run: Callable[[], Awaitable[Any]], *, per_call: bool = True
) -> tuple[float, float, float]:
    """(client CPU, wall, server CPU) in ms, per call or for the whole run; printed."""
    server, client, wall = process_cpu_s(server_pid), time.process_time(), time.perf_counter()
    await run()
    divide = calls if per_call else 1
    figures = (
        (time.process_time() - client) * 1000 / divide,
        (time.perf_counter() - wall) * 1000 / divide,
        (process_cpu_s(server_pid) - server) * 1000 / divide,
    )
    unit = "per call" if per_call else "in all"
    print(
        f"  {label:<44} client CPU {figures[0]:6.2f} ms, wall {figures[1]:7.2f} ms,"
        f" server CPU {figures[2]:6.2f} ms {unit}",
        flush=True,
    )
    return figures


def bootstrap_credential(endpoints: dict[str, Any]) -> Any:
    """The tenant's bootstrap identity (it may read the vault), as the adapters build credentials."""
    from azure.identity.aio import ClientSecretCredential

    from functions.adapters.transport import sdk_client_options

    return ClientSecretCredential(
        endpoints["tenantId"],
        endpoints["clientId"],
        endpoints["clientSecret"],
        authority=endpoints["authority"],
        disable_instance_discovery=True,
        **sdk_client_options(),
    )


async def one_after_another(endpoints: dict[str, Any], pids: dict[str, int], calls: int) -> None:
    from azure.data.tables.aio import TableServiceClient
    from azure.keyvault.secrets.aio import SecretClient
    from azure.storage.queue.aio import QueueClient

    from functions.adapters.transport import data_plane_options

    storage = endpoints["storageConnectionString"]
    credential = bootstrap_credential(endpoints)
    print(f"one call after another ({calls} each):")
    for label, options in (("azure-core default", dict), ("adapters' transport", data_plane_options)):
        queue = QueueClient.from_connection_string(storage, "sdk-costs", **options())
        tables = TableServiceClient.from_connection_string(storage, **options())
        vault = SecretClient(endpoints["vaultUrl"], credential, verify_challenge_resource=False, **options())
        async with queue, tables, vault:
            table = tables.get_table_client("SdkCosts")
            await tables.create_table_if_not_exists("SdkCosts")
            if label == "azure-core default":
                await queue.create_queue()
                await vault.set_secret("sdk-costs", "not-a-secret")

            for _ in range(5):  # connections and tokens
                await queue.send_message("warm")
                await table.upsert_entity({"PartitionKey": "p", "RowKey": "warm"})
                await vault.get_secret("sdk-costs")
            await measure(
                f"queue send, {label}",
                pids["Azurite"],
                calls,
                functools.partial(repeat, calls, queue.send_message, "x" * 600),
            )
            await measure(
                f"table upsert, {label}",
                pids["Azurite"],
                calls,
                functools.partial(repeat, calls, upsert_new_row, table),
            )
            await measure(
                f"Key Vault get, {label}",
                pids["tenant"],
                calls,
                functools.partial(repeat, calls, vault.get_secret, "sdk-costs"),
            )
    await credential.close()


async def bursts(endpoints: dict[str, Any], pids: dict[str, int], burst: int) -> None:
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.data.tables.aio import TableServiceClient
    from azure.keyvault.secrets.aio import SecretClient

    from functions.adapters.table_batches import PartitionBatcher
    from functions.adapters.transport import CONNECTIONS_PER_HOST, data_plane_options

    credential = bootstrap_credential(endpoints)
    print(f"a burst of {burst} Key Vault gets at once (after one warm call):")
    for label, transport in (
        (
            "up to 100 connections (azure-core)",
            lambda: {"transport": AioHttpTransport(use_env_settings=False)},
        ),
        (f"{CONNECTIONS_PER_HOST} connections (adapters)", data_plane_options),
    ):
        async with SecretClient(
            endpoints["vaultUrl"], credential, verify_challenge_resource=False, **transport()
        ) as vault:
            await vault.get_secret("sdk-costs")
            await measure(
                label,
                pids["tenant"],
                burst,
                functools.partial(at_once, burst, vault.get_secret, "sdk-costs"),
                per_call=False,
            )
    await credential.close()

    print(f"a burst of {burst} delivery outcomes to one partition:")
    async with TableServiceClient.from_connection_string(
        endpoints["storageConnectionString"], **data_plane_options()
    ) as tables:
        table = tables.get_table_client("SdkCosts")
        await table.upsert_entity({"PartitionKey": "warm", "RowKey": "warm"})
        partition = uuid.uuid4().hex

        def outcome(n: int) -> dict[str, Any]:
            return {"PartitionKey": partition, "RowKey": f"{n}-{uuid.uuid4().hex}", "Status": "delivered"}

        await measure(
            f"{burst} upserts at once",
            pids["Azurite"],
            burst,
            lambda: asyncio.gather(*(table.upsert_entity(outcome(n)) for n in range(burst))),
            per_call=False,
        )
        batcher = PartitionBatcher(table, "benchmark")
        await measure(
            f"group commit ({burst} writers at once)",
            pids["Azurite"],
            burst,
            lambda: asyncio.gather(*(batcher.upsert(outcome(n)) for n in range(burst))),
            per_call=False,
        )
        print(f"  group commit sent {batcher.transactions} request(s) for {burst} outcomes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args()
    from tests.fixtures.stack import start_stack

    with tempfile.TemporaryDirectory(prefix="sdk-costs-") as state:
        material = Path(state) / "ca"
        ca.load_or_create(material)
        os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = str(material / "ca.pem")
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
            os.environ.pop(name, None)  # the figures are for a deployment without a proxy
        stack = start_stack(Path(state) / "stack", tenant_args=["--propagation-delay", "0"], ca_dir=material)
        try:
            assert stack.tenant is not None and stack.azurite is not None
            pids = {"Azurite": stack.azurite.process.pid, "tenant": stack.tenant.pid}
            asyncio.run(one_after_another(stack.endpoints, pids, args.calls))
            asyncio.run(bursts(stack.endpoints, pids, args.burst))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
