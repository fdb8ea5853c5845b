"""CPU cost of the local tenant's Graph handlers, in process (no TLS, no aiohttp): what graph/
itself adds per request. Prints microseconds of process CPU time per operation; asserts nothing.
The end-to-end figure (tenant process CPU per request over HTTPS) is benchmarks/tenant_throughput.py.

    .venv/bin/python -m benchmarks.tenant_graph_handlers [--apps 2000] [--runs 500]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from multidict import CIMultiDict

from devstack.tenant.context import GRAPH_APP_ID, Principal, SimulationConfig
from devstack.tenant.graph.directory import new_directory
from devstack.tenant.graph.http import Call, Reply, run
from devstack.tenant.graph.routes import router

ROLES = frozenset(
    {
        "Application.ReadWrite.OwnedBy",
        "AppRoleAssignment.ReadWrite.All",
        "Application.Read.All",  # Graph's required companion of AppRoleAssignment.ReadWrite.All
        "DelegatedPermissionGrant.ReadWrite.All",
    }
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--apps", type=int, default=2000, help="applications in the directory before measuring"
    )
    parser.add_argument("--runs", type=int, default=500, help="calls per measured operation")
    args = parser.parse_args()
    runs = max(1, min(args.runs, args.apps))

    directory, client_id, _ = new_directory("bench-tenant")
    caller = directory.service_principal_by_app_id(client_id)
    assert caller is not None
    principal = Principal("bench-tenant", client_id, caller.id, ROLES, "https://graph.microsoft.com")
    sim, routes = SimulationConfig(), router()

    def call(method: str, path: str, body: Any = None, **options: Any) -> Reply:
        raw = json.dumps(body).encode() if body is not None else b""
        request = Call(
            method,
            path,
            options.get("query", {}),
            CIMultiDict(options.get("headers", {})),
            raw,
            principal,
            directory,
            sim,
            "https://127.0.0.1:1",
        )
        return run(routes, request, "bench")

    apps = [
        json.loads(call("POST", "/applications", {"displayName": f"a{i}", "tags": ["bench"]}).body or "{}")
        for i in range(args.apps)
    ]
    graph = directory.service_principal_by_app_id(GRAPH_APP_ID)
    assert graph is not None
    role_ids = [role["id"] for role in graph.props["appRoles"]]
    sps: list[dict[str, Any]] = []

    def measure(name: str, operation: Callable[[int], object], count: int = runs) -> None:
        started = time.process_time()
        for index in range(count):
            operation(index)
        per_call = (time.process_time() - started) / count * 1e6
        print(f"{name:48s} {per_call:9.1f} us CPU")

    print(f"directory: {len(directory.applications)} applications; {runs} calls per operation")
    measure("POST /applications", lambda i: call("POST", "/applications", {"displayName": f"b{i}"}))
    measure("GET /applications/{id}", lambda i: call("GET", f"/applications/{apps[i]['id']}"))
    measure(
        "GET /applications?$filter=appId eq",
        lambda i: call("GET", "/applications", query={"$filter": f"appId eq '{apps[i]['appId']}'"}),
    )
    measure(
        "GET /applications?$filter=tags/any&$top=10",
        lambda i: call("GET", "/applications", query={"$filter": "tags/any(t:t eq 'bench')", "$top": "10"}),
    )
    measure(
        "PATCH /applications/{id}", lambda i: call("PATCH", f"/applications/{apps[i]['id']}", {"notes": "n"})
    )
    measure(
        "PATCH /applications(uniqueName) create-if-missing",
        lambda i: call(
            "PATCH",
            f"/applications(uniqueName='u{i}')",
            {"displayName": "u"},
            headers={"Prefer": "create-if-missing"},
        ),
    )
    measure("POST addPassword", lambda i: call("POST", f"/applications/{apps[i]['id']}/addPassword", {}))
    measure(
        "POST /servicePrincipals",
        lambda i: sps.append(
            json.loads(call("POST", "/servicePrincipals", {"appId": apps[i]["appId"]}).body or "{}")
        ),
    )
    measure(
        "POST appRoleAssignedTo",
        lambda i: call(
            "POST",
            f"/servicePrincipals/{graph.id}/appRoleAssignedTo",
            {"principalId": sps[i]["id"], "resourceId": graph.id, "appRoleId": role_ids[i % len(role_ids)]},
        ),
    )
    measure(
        "GET Graph SP (716 roles, 807 scopes)", lambda i: call("GET", f"/servicePrincipals/{graph.id}"), 200
    )
    measure(
        "GET Graph SP $select=id,appRoles",
        lambda i: call("GET", f"/servicePrincipals/{graph.id}", query={"$select": "id,appRoles"}),
        200,
    )
    measure("token path: client_record", lambda i: directory.client_record(client_id), 2000)
    measure(
        "token path: granted_app_role_values",
        lambda i: directory.granted_app_role_values(caller.id, graph.id),
        2000,
    )


if __name__ == "__main__":
    main()
