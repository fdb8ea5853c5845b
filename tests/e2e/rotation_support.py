"""Helpers for the rotation and notification e2e tests (and their benchmarks).

- `start_private_stack(state_dir, ca_dir, settings, tenant_args)`: a stack of its own whose
  local.settings.json carries `settings` (written before the stack starts: the stack then only
  refreshes its endpoint keys in it, so a short rotation schedule, retry schedule and overlap hold).
- `Receiver`: a webhook receiver (aiohttp on 127.0.0.1, its own thread and loop) that records every
  request, can answer an error for a while, and can be stopped (connection refused) and restarted
  on the same port.
- `Host`: the stack's HTTP API, plus registration, vault and Graph read-backs as the tenant's
  bootstrap identity (official SDKs, over HTTPS).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from devstack.stack import REPO_ROOT, Stack
from tests.fixtures.stack import start_stack

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
PROFILE = "m365-usage-connector"  # a client secret, application permissions, no approval needed
T = TypeVar("T")


def private_host(stack: Stack) -> Host:
    return Host(stack.endpoints, stack.options.host_log)


def start_private_stack(
    state_dir: Path,
    ca_dir: Path,
    settings: dict[str, str],
    tenant_args: list[str] | None = None,
    *,
    managed_identity: bool = False,
) -> Stack:
    sample = json.loads((REPO_ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    sample.setdefault("Values", {}).update(settings)
    state_dir.mkdir(parents=True, exist_ok=True)
    settings_file = state_dir / "local.settings.json"
    settings_file.write_text(json.dumps(sample, indent=2), encoding="utf-8")
    settings_file.chmod(0o600)
    return start_stack(state_dir, tenant_args=tenant_args, ca_dir=ca_dir, managed_identity=managed_identity)


@contextmanager
def running_host(
    state_dir: Path,
    ca_dir: Path,
    settings: dict[str, str],
    tenant_args: list[str] | None = None,
    *,
    managed_identity: bool = False,
) -> Iterator[Host]:
    """A private stack and its Host client for the length of the block (module fixtures use it)."""
    stack = start_private_stack(state_dir, ca_dir, settings, tenant_args, managed_identity=managed_identity)
    client = private_host(stack)
    try:
        yield client
    finally:
        client.close()
        stack.stop()


def tag() -> str:
    """A short unique suffix for request ids and display names."""
    return uuid.uuid4().hex[:8]


def wait_until(what: str, check: Callable[[], T | None], timeout_s: float, every_s: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


E2E_ADMIN_OID = "0e2e0000-0000-4000-8000-00000000ad01"  # Registrar refuses principals without an oid


def principal(*roles: str) -> str:
    claims = [{"typ": "roles", "val": r} for r in roles] + [
        {"typ": "name", "val": "e2e-admin@contoso.com"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": E2E_ADMIN_OID},
    ]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


ADMIN = {"X-MS-CLIENT-PRINCIPAL": principal("Registrar.Admin")}


# ---------------------------------------------------------------- the webhook receiver


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Records every request; `status` is what it answers; `delay_s` how long it takes."""

    status: int = 204
    delay_s: float = 0.0
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> answer 503 to its first N hits
    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        with self._lock:
            self.hits.append(Hit(request.path, dict(request.headers), body, time.monotonic()))
            seen = sum(1 for h in self.hits if h.path == request.path)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if seen <= self.fail_first.get(request.path, 0):
            return web.Response(status=503)
        return web.Response(status=self.status)

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> Receiver:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop_listening(self) -> None:
        """Close the socket: deliveries now fail with connection refused."""
        assert self._loop is not None
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def close(self) -> None:
        if self._loop is None:
            return
        self.stop_listening()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    def received(self, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if path is None or h.path == path]

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(h.body) for h in self.received(path)]


# ---------------------------------------------------------------- the host and the tenant


class Host:
    def __init__(self, endpoints: dict[str, Any], log_path: Path | None = None) -> None:
        self.endpoints = endpoints
        self.log_path = log_path
        self.seen: set[str] = set()  # every secret value read during the tests, for the leak check
        self.api = httpx.Client(base_url=endpoints["hostUrl"], timeout=60)
        self._secrets: Any = None

    def close(self) -> None:
        self.api.close()
        if self._secrets is not None:
            self._secrets.close()

    # ---- HTTP API
    def register(
        self,
        tag: str,
        *,
        lifetime: str = "PT1M",
        webhooks: list[dict[str, Any]] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """POST /api/registrations; returns (id, {url path: signing secret}) (secrets shown once)."""
        body = {
            "requestId": f"E2E-ROT-{tag}",
            "profile": PROFILE,
            "displayName": f"e2e rotation {tag}",
            "requestedBy": "e2e@contoso.com",
            "credential": {"type": "secret", "lifetime": lifetime},
            "webhooks": webhooks or [],
        }
        response = self.api.post("/api/registrations", json=body)
        assert response.status_code == 202, response.text
        data = response.json()
        secrets = {w["url"]: w["secret"] for w in data["webhooks"]}
        self.seen.update(secrets.values())
        return data["id"], secrets

    def registration(self, registration_id: str) -> dict[str, Any]:
        response = self.api.get(f"/api/registrations/{registration_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_status(self, registration_id: str, status: str, timeout_s: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            view = self.registration(registration_id)
            if view["status"] == "failed" and status != "failed":
                raise AssertionError(f"registration failed: {view}")
            return view if view["status"] == status else None

        return wait_until(f"{registration_id} to be {status}", check, timeout_s, every_s=0.3)

    def rotate(self, registration_id: str) -> httpx.Response:
        return self.api.post(f"/api/registrations/{registration_id}/rotate", headers=ADMIN)

    def run_function(self, name: str) -> httpx.Response:
        return self.api.post(f"/admin/functions/{name}", json={"input": ""})

    def deliveries(self, registration_id: str, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        response = self.api.get(f"/api/registrations/{registration_id}/deliveries", params=params)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.endpoints["caFile"])

    # ---- the tenant's admin API
    def admin(self, method: str, path: str, body: Any = None) -> Any:
        with httpx.Client(verify=self._tls(), timeout=30) as client:
            response = client.request(method, f"{self.endpoints['adminUrl']}/{path}", json=body)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    # ---- Key Vault and Graph as the bootstrap identity
    def credential(self) -> Any:
        from azure.identity import ClientSecretCredential

        e = self.endpoints
        return ClientSecretCredential(
            e["tenantId"],
            e["clientId"],
            e["clientSecret"],
            authority=e["authority"],
            disable_instance_discovery=True,
        )

    @property
    def secrets(self) -> Any:
        from azure.keyvault.secrets import SecretClient

        if self._secrets is None:
            self._secrets = SecretClient(
                self.endpoints["vaultUrl"], self.credential(), verify_challenge_resource=False
            )
        return self._secrets

    def secret_versions(self, name: str) -> list[Any]:
        """Every version of a secret with its value (disabled versions included, without value)."""
        found = []
        for props in self.secrets.list_properties_of_secret_versions(name):
            value = self.secrets.get_secret(name, props.version).value if props.enabled else None
            found.append((props, value))
        return found

    def all_secret_values(self) -> set[str]:
        """Every secret value the vault holds (enabled versions), for the leak check."""
        values: set[str] = set()
        for props in self.secrets.list_properties_of_secrets():
            for version in self.secrets.list_properties_of_secret_versions(props.name):
                if version.enabled:
                    value = self.secrets.get_secret(props.name, version.version).value
                    if value:
                        values.add(value)
        self.seen.update(values)
        return values

    def leak_places(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The host's log, every Table entity and queue message of the stack, and `extra` texts."""
        places = storage_texts(self.endpoints["storageConnectionString"])
        if self.log_path is not None:
            places["host log"] = self.log_path.read_text(encoding="utf-8", errors="replace")
        return places | (extra or {})

    def passwords(self, app_id: str) -> list[dict[str, Any]]:
        """The app's passwordCredentials (keyId, displayName), read through Graph."""
        token = self.credential().get_token(GRAPH_SCOPE).token
        with httpx.Client(verify=self._tls(), timeout=30) as client:
            response = client.get(
                f"{self.endpoints['graphUrl']}/applications(appId='{app_id}')",
                params={"$select": "id,appId,passwordCredentials"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.text
        return response.json()["passwordCredentials"]


# ---------------------------------------------------------------- the leak check


def storage_texts(connection_string: str) -> dict[str, str]:
    """Every Table entity and every queue message (poison queues included) of an Azurite, as text."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    texts: dict[str, str] = {}
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in tables.list_tables():
        table_client = tables.get_table_client(table.name)
        texts[f"table {table.name}"] = "\n".join(repr(dict(e)) for e in table_client.list_entities())
    queues = QueueServiceClient.from_connection_string(connection_string)
    for item in queues.list_queues():
        queue_client = queues.get_queue_client(item.name)
        messages = []
        for message in queue_client.peek_messages(max_messages=32):
            raw = str(message.content)
            try:
                decoded = base64.b64decode(raw, validate=True).decode("utf-8", "replace")
            except ValueError:
                decoded = ""
            messages += [raw, decoded]
        texts[f"queue {item.name}"] = "\n".join(messages)
    return texts


def leaks(values: set[str], places: dict[str, str]) -> list[str]:
    """Where any of `values` appears (the places' names only: a report must not repeat a secret)."""
    return sorted(
        f"secret #{i} in {where}"
        for i, value in enumerate(sorted(values))
        for where, text in places.items()
        if value and value in text
    )
