"""Stopping `python -m devstack up` and starting it again: on the same port at once, with what the
previous run kept (Storage in Azurite and the tenant's state agree), or empty with --fresh."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from devstack.stack import REPO_ROOT, free_port
from tests.devstack.harness import SAMPLE_APP, http, wait_for
from tests.devstack.test_devstack_up import read_endpoints

TIME_WAIT = "06"  # the socket state in /proc/net/tcp


class Up:
    """One `python -m devstack up` on the sample app, its output in a file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.state_dir = tmp / "state"
        argv = [sys.executable, "-m", "devstack", "up", "--state-dir", str(self.state_dir)]
        argv += ["--app-dir", str(SAMPLE_APP), "--settings", str(tmp / "local.settings.json"), *args]
        self.output = tmp / "up.log"
        with self.output.open("a") as log:
            self.process = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def ready(self) -> dict[str, Any]:
        def endpoints() -> dict[str, Any] | None:
            assert self.process.poll() is None, self.output.read_text()[-3000:]
            return read_endpoints(self.state_dir / "endpoints.json")

        return wait_for(endpoints, timeout=120, interval=0.2)

    def stop(self, signum: signal.Signals = signal.SIGINT) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.kill()


def time_wait_connections(port: int) -> int:
    """Connections in TIME_WAIT whose local end is 127.0.0.1:port (what a closing server leaves)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, local_port = fields[1].split(":")
        if int(local_port, 16) == port and address == "0100007F" and fields[3] == TIME_WAIT:
            count += 1
    return count


def _kept_alive_request(port: int) -> socket.socket:
    """A GET answered on a connection the client keeps open (HTTP/1.1 keep-alive)."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(f"GET /api/items/{uuid.uuid4()} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert client.recv(65536).startswith(b"HTTP/1.1 200")
    return client


def test_a_restart_right_after_ctrl_c_comes_up_on_the_same_port(tmp_path: Path, ups: list[Up]) -> None:
    port = free_port()
    first = Up(tmp_path, "--port", str(port))
    ups.append(first)
    before = first.ready()
    url = before["hostUrl"]
    assert url == f"http://127.0.0.1:{port}"
    # Keep-alive connections still open when the host stops: the host closes them first, so their
    # server ends (local port = the host's) go to TIME_WAIT once the clients close theirs too.
    clients = [_kept_alive_request(port) for _ in range(3)]
    assert first.stop() == 0
    for client in clients:
        client.close()

    # A stopped server's connections linger in TIME_WAIT for a minute: they are no listener.
    assert wait_for(lambda: time_wait_connections(port) or None, timeout=10, interval=0.1) > 0
    second = Up(tmp_path, "--port", str(port))
    ups.append(second)
    after = second.ready()
    assert after["hostUrl"] == url
    # The tenant is back on its port too: Key Vault URIs kept in Storage still point at the vault.
    assert after["vaultUrl"] == before["vaultUrl"]
    assert http("GET", f"{url}/api/items/{uuid.uuid4()}")[0] == 200
    assert second.stop() == 0
    assert "in use" not in first.output.read_text()


def test_storage_and_the_tenant_keep_their_data_across_a_restart_and_fresh_empties_both(
    tmp_path: Path, tenant_ca_dir: Path, ups: list[Up]
) -> None:
    # The tenant uses the session's CA (which this process trusts), as the stack fixtures do.
    tenant_dir = tmp_path / "state" / "tenant"
    tenant_dir.mkdir(parents=True)
    for item in tenant_ca_dir.iterdir():
        shutil.copy2(item, tenant_dir / item.name)

    def table(endpoints: dict[str, Any]) -> TableServiceClient:
        return TableServiceClient.from_connection_string(endpoints["storageConnectionString"])

    def vault(endpoints: dict[str, Any]) -> SecretClient:
        credential = ClientSecretCredential(
            endpoints["tenantId"],
            endpoints["clientId"],
            endpoints["clientSecret"],
            authority=endpoints["authority"],
            disable_instance_discovery=True,
        )
        return SecretClient(endpoints["vaultUrl"], credential, verify_challenge_resource=False)

    first = Up(tmp_path, "--port", "0")
    ups.append(first)
    before = first.ready()
    table(before).create_table("kept").upsert_entity({"PartitionKey": "p", "RowKey": "r", "note": "kept"})
    vault(before).set_secret("kept-secret", "value-1")
    assert first.stop(signal.SIGTERM) == 0

    again = Up(tmp_path, "--port", "0")
    ups.append(again)
    after = again.ready()
    assert after["tenantId"] == before["tenantId"]
    assert table(after).get_table_client("kept").get_entity("p", "r")["note"] == "kept"
    assert vault(after).get_secret("kept-secret").value == "value-1"
    assert again.stop() == 0

    fresh = Up(tmp_path, "--port", "0", "--fresh")
    ups.append(fresh)
    empty = fresh.ready()
    assert empty["tenantId"] != before["tenantId"]
    assert [t.name for t in table(empty).list_tables()] == []
    with pytest.raises(ResourceNotFoundError):
        vault(empty).get_secret("kept-secret")
    assert (tenant_dir / "ca.pem").read_bytes() == (tenant_ca_dir / "ca.pem").read_bytes()  # CA kept
    assert fresh.stop() == 0

    # A tenant state with no Storage data beside it (kept by a stack from before Azurite kept its
    # data, or Azurite's folder deleted) names apps whose registrations are gone: both start empty.
    shutil.rmtree(tmp_path / "state" / "azurite")
    assert (tenant_dir / "state.json").exists()
    cleared = Up(tmp_path, "--port", "0")
    ups.append(cleared)
    assert cleared.ready()["tenantId"] != empty["tenantId"]
    assert cleared.stop() == 0
