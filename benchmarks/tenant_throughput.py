"""Throughput of the local tenant and its own CPU time per request.

Starts `python -m devstack.tenant` (throttling off unless --throttling), drives it with concurrent
keep-alive HTTPS clients (threads), one phase per operation and then a mixed phase, and prints
requests/second and the tenant process's CPU milliseconds per request, taken from the
process_time() deltas that GET /_sim/stats reports (not wall time). Target: <= 1 ms per request.

    .venv/bin/python -m benchmarks.tenant_throughput [--clients 8] [--seconds 3]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
API = "api-version=7.5"


class Client:
    """One keep-alive HTTPS connection; send() returns (status, parsed JSON or None)."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        self.token = ""  # Graph
        self.vault_token = ""

    def send(
        self, method: str, path: str, body: Any = None, form: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        token = self.token if path.startswith("/v1.0") else self.vault_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data: bytes | None = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        return response.status, (json.loads(payload) if payload else None)


@dataclass
class Worker:
    """One client thread's own objects: an application, its service principal, a vault secret."""

    client: Client
    info: dict[str, Any]
    graph_sp: dict[str, Any]
    app: dict[str, Any] = field(default_factory=dict)
    sp: dict[str, Any] = field(default_factory=dict)
    roles: itertools.cycle[str] | None = None
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def setup(self, index: int) -> None:
        self.token_request()
        self.token_request("https://vault.azure.net")
        status, self.app = self.client.send(
            "POST", "/v1.0/applications", {"displayName": f"bench-{index}", "signInAudience": "AzureADMyOrg"}
        )
        assert status == 201, (status, self.app)
        status, self.sp = self.client.send("POST", "/v1.0/servicePrincipals", {"appId": self.app["appId"]})
        assert status == 201, (status, self.sp)
        role_ids = [role["id"] for role in self.graph_sp["appRoles"]]
        random.Random(index).shuffle(role_ids)
        self.roles = itertools.cycle(role_ids)
        status, _ = self.client.send("PUT", f"/secrets/bench-{id(self)}?{API}", {"value": "v"})
        assert status == 200, status

    def token_request(self, resource: str = "https://graph.microsoft.com") -> int:
        status, body = self.client.send(
            "POST",
            f"/{self.info['tenantId']}/oauth2/v2.0/token",
            form={
                "grant_type": "client_credentials",
                "client_id": self.info["clientId"],
                "client_secret": self.info["clientSecret"],
                "scope": f"{resource}/.default",
            },
        )
        if resource.startswith("https://graph"):
            self.client.token = body["access_token"]
        else:
            self.client.vault_token = body["access_token"]
        return status

    def get_application(self) -> int:
        return self.client.send("GET", f"/v1.0/applications/{self.app['id']}")[0]

    def patch_application(self) -> int:
        body = {"notes": f"ticket {next(self.counter)}"}
        return self.client.send("PATCH", f"/v1.0/applications/{self.app['id']}", body)[0]

    def add_password(self) -> int:
        path = f"/v1.0/applications/{self.app['id']}"
        status, created = self.client.send("POST", f"{path}/addPassword", {"passwordCredential": {}})
        self.client.send("POST", f"{path}/removePassword", {"keyId": created["keyId"]})
        return status

    def assign_app_role(self) -> int:
        assert self.roles is not None
        body = {
            "principalId": self.sp["id"],
            "resourceId": self.graph_sp["id"],
            "appRoleId": next(self.roles),
        }
        return self.client.send(
            "POST", f"/v1.0/servicePrincipals/{self.graph_sp['id']}/appRoleAssignedTo", body
        )[0]

    def vault_set(self) -> int:
        return self.client.send(
            "PUT", f"/secrets/bench-{id(self)}?{API}", {"value": f"v{next(self.counter)}"}
        )[0]

    def vault_get(self) -> int:
        return self.client.send("GET", f"/secrets/bench-{id(self)}?{API}")[0]


# name -> (operation, HTTP requests it makes)
OPERATIONS: dict[str, tuple[Callable[[Worker], int], int]] = {
    "token": (Worker.token_request, 1),
    "GET application": (Worker.get_application, 1),
    "PATCH application": (Worker.patch_application, 1),
    "addPassword+removePassword": (Worker.add_password, 2),
    "appRoleAssignedTo": (Worker.assign_app_role, 1),
    "vault set": (Worker.vault_set, 1),
    "vault get": (Worker.vault_get, 1),
}
MIX = (
    ["GET application"] * 4
    + ["PATCH application"] * 2
    + ["vault get"] * 2
    + [
        "token",
        "addPassword+removePassword",
        "appRoleAssignedTo",
        "vault set",
    ]
)


def run_phase(
    workers: list[Worker], names: list[str], seconds: float, stats: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    requests = [0]
    failures: dict[int, int] = {}
    lock = threading.Lock()

    def loop(worker: Worker, offset: int) -> None:
        local: list[float] = []
        count = 0
        errors: dict[int, int] = {}
        for name in itertools.islice(itertools.cycle(names), offset, None):
            if time.monotonic() >= stop:
                break
            operation, calls = OPERATIONS[name]
            started = time.perf_counter()
            status = operation(worker)
            local.append(time.perf_counter() - started)
            count += calls
            if status >= 400:
                errors[status] = errors.get(status, 0) + 1
        with lock:
            latencies.extend(local)
            requests[0] += count
            for status, number in errors.items():
                failures[status] = failures.get(status, 0) + number

    before = stats()
    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(w, i)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    after = stats()
    served = after["requests"] - before["requests"] - 1  # minus the stats call itself
    cpu = after["processTimeS"] - before["processTimeS"]
    latencies.sort()
    return {
        "requests": served,
        "rps": served / wall,
        "cpu_ms_per_request": 1000 * cpu / max(served, 1),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "errors": failures,
        "client_counted": requests[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="per phase")
    parser.add_argument("--throttling", action="store_true", help="keep Graph throttling on (real budgets)")
    parser.add_argument("--only-mix", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="run the tenant under cProfile, writing FILE")
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="tenant-bench-"))
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    command = [
        sys.executable,
        *profile,
        "-m",
        "devstack.tenant",
        "--port",
        "0",
        "--state-dir",
        str(state_dir),
    ]
    if not args.throttling:
        command.append("--no-throttling")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        context = ssl.create_default_context(cafile=info["caFile"])
        admin = Client(info["port"], context)

        def stats() -> dict[str, Any]:
            stats_body: dict[str, Any] = admin.send("GET", "/_sim/stats")[1]
            return stats_body

        setup = Client(info["port"], context)
        graph_sp: dict[str, Any] = {}
        workers = [Worker(Client(info["port"], context), info, graph_sp) for _ in range(args.clients)]
        workers[0].token_request()
        setup.token = workers[0].client.token
        status, found = setup.send("GET", f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')")
        assert status == 200, (status, found)
        graph_sp.update(found)
        for index, worker in enumerate(workers):
            worker.setup(index)
        print(f"tenant pid {process.pid}, {args.clients} keep-alive clients, {args.seconds:.0f} s per phase")
        print(
            f"{'phase':28} {'requests':>9} {'req/s':>8} {'CPU ms/req':>11} {'p50 ms':>7} {'p99 ms':>7}  errors"
        )
        phases = [] if args.only_mix else [[name] for name in OPERATIONS]
        for names in [*phases, MIX]:
            result = run_phase(workers, names, args.seconds, stats)
            label = names[0] if len(names) == 1 else "mix"
            print(
                f"{label:28} {result['requests']:9d} {result['rps']:8.0f} {result['cpu_ms_per_request']:11.3f} "
                f"{result['p50_ms']:7.1f} {result['p99_ms']:7.1f}  {result['errors'] or ''}"
            )
    finally:
        process.terminate()
        process.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
