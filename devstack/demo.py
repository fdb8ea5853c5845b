"""`python -m devstack demo`: a guided tour of Registrar's main job against a running stack.

1. Request a registration for a seed connector (CodeTwo Backup for Exchange Online) by HTTP,
   with a webhook pointing at a receiver this demo runs on loopback.
2. Watch it become active (the worker upserts the app, creates its service principal, grants
   admin consent, issues a client secret into Key Vault and verifies it).
3. Show the app, its consented permissions and the Key Vault reference, and prove the credential
   works: read it from Key Vault and acquire a token with it (the roles in that token are the
   consented application permissions).
4. Rotate it (as a Registrar.Admin) and show the webhook the connector received, its Standard
   Webhooks signature verified with the reference `standardwebhooks` package.
5. A credential at risk: a second registration whose secret ends within the at-risk window
   (REGISTRAR_AT_RISK_WINDOW, 14 days); the rotation sweep (run by hand, as the host's admin API
   allows) announces credential.at_risk, signed, and GET /api/health and the local telemetry file
   (.devstack/telemetry.jsonl, Application Insights' stand-in) show it.
6.-8. The brownfield part (devstack/demo_adoption.py): the inventory of the connector apps people
   made by hand, and the adoption of a hand-made CodeTwo app, its pasted secret kept for the
   overlap and then retired.

Secret values are never printed: the demo shows key ids, URIs and hints only.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROFILE = "codetwo-backup-exchange"
DEMO_ADMIN_OID = "00000000-0000-4000-8000-00000000de30"  # Registrar acts only for principals with an oid
ADMIN_PRINCIPAL = base64.b64encode(
    json.dumps(
        {
            "auth_typ": "aad",
            "name_typ": "name",
            "role_typ": "roles",
            "claims": [
                {"typ": "name", "val": "demo-admin"},
                {
                    "typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
                    "val": DEMO_ADMIN_OID,
                },
                {"typ": "roles", "val": "Registrar.Admin"},
            ],
        }
    ).encode()
).decode()
WAIT_ACTIVE_S = 180
WAIT_ROTATED_S = 180
# `up --demo` runs its host with these (for that run only): a 30 s overlap, so that step 8 shows an
# adopted app's old secret kept for the overlap and then retired within a minute.
DEMO_HOST_SETTINGS = {"REGISTRAR_ROTATION_OVERLAP": "PT30S"}


class Receiver:
    """A connector's webhook endpoint: records what arrives (body and headers)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/registrar"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def events(self) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()


def _call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310  (the local host)
    request.add_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def _wait(what: str, seconds: float, check: Callable[[], Any]) -> Any:
    """Poll check() until it returns something; a spinner on a terminal, one line in a file."""
    spinner = "|/-\\"
    terminal = sys.stdout.isatty()
    deadline = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < deadline:
        result = check()
        if result:
            print(f"\r  {what}: done{' ' * 20}" if terminal else f"  {what}: done", flush=True)
            return result
        if terminal:
            left = int(deadline - time.monotonic())
            print(f"\r  {what} {spinner[tick % 4]} ({left} s left)", end="", flush=True)
        tick += 1
        time.sleep(0.5)
    if terminal:
        print()
    raise TimeoutError(f"{what}: not done after {seconds:.0f} s")


def _table(rows: list[list[str]], header: list[str]) -> str:
    if not all(name.strip() for name in header):
        raise ValueError(f"every column of a demo table needs a header: {header}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join("    " + row for row in out)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _prove_credential(endpoints: dict[str, Any], registration: dict[str, Any]) -> list[str]:
    """Read the connector's secret from Key Vault and acquire a Graph token with it; return roles."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    registrar = ClientSecretCredential(
        endpoints["tenantId"],
        endpoints["clientId"],
        endpoints["clientSecret"],
        authority=endpoints["authority"],
        disable_instance_discovery=True,
    )
    vault = SecretClient(endpoints["vaultUrl"], registrar, verify_challenge_resource=False)
    name = registration["credential"]["secretUri"].rstrip("/").split("/")[-2]
    secret = vault.get_secret(name)
    connector = ClientSecretCredential(
        registration["tenantId"],
        registration["appId"],
        secret.value or "",
        authority=endpoints["authority"],
        disable_instance_discovery=True,
    )
    token = connector.get_token("https://graph.microsoft.com/.default").token
    return sorted(_claims(token).get("roles", []))


def main(endpoints: dict[str, Any]) -> int:
    import os

    # The demo talks to the local stack only: trust its CA (the machine may name another bundle).
    os.environ["SSL_CERT_FILE"] = endpoints["caFile"]
    os.environ["REQUESTS_CA_BUNDLE"] = endpoints["caFile"]
    api = endpoints["hostUrl"].rstrip("/") + "/api"
    receiver = Receiver()
    try:
        return _tour(endpoints, api, receiver)
    finally:
        receiver.close()


def _tour(endpoints: dict[str, Any], api: str, receiver: Receiver) -> int:
    from standardwebhooks.webhooks import Webhook

    print(
        "\nRegistrar demo: register CodeTwo Backup for Exchange Online and rotate its secret;"
        " then adopt a CodeTwo app someone made by hand.\n"
    )
    request_id = f"DEMO-{int(time.time())}"
    body = {
        "requestId": request_id,
        "profile": PROFILE,
        "displayName": f"CodeTwo Backup (demo {request_id})",
        "credential": {"type": "secret", "lifetime": "P90D"},
        "requestedBy": "demo@contoso.example",
        "webhooks": [{"url": receiver.url, "events": ["registration.active", "credential.rotated"]}],
    }
    print(f"1. POST {api}/registrations  (requestId {request_id}, profile {PROFILE})")
    status, accepted = _call("POST", f"{api}/registrations", body)
    if status != 202:
        print(f"   refused: HTTP {status}: {json.dumps(accepted, indent=2)}")
        return 1
    registration_id = accepted["id"]
    signing_secret = accepted["webhooks"][0]["secret"]  # shown once; kept in memory to verify
    print(f"   202 Accepted: registration {registration_id}, status {accepted['status']}")
    print(
        f"   webhook subscription {accepted['webhooks'][0]['id']} (signing secret shown once, not printed)\n"
    )

    print("2. The worker provisions it (app, service principal, consent, secret in Key Vault, verify):")

    def active() -> dict[str, Any] | None:
        _, view = _call("GET", f"{api}/registrations/{registration_id}")
        if view and view.get("status") == "failed":
            raise RuntimeError(f"registration failed: {json.dumps(view.get('lastError'))}")
        return view if view and view.get("status") == "active" else None

    registration = _wait("waiting for status active", WAIT_ACTIVE_S, active)
    steps = [
        [e.get("step", ""), e.get("outcome", ""), (e.get("at") or "")[11:23], e.get("detail") or ""]
        for e in registration.get("history", [])
    ]
    print(_table(steps[-12:], ["step", "outcome", "at (UTC)", "detail"]))

    _show_app(endpoints, registration)

    print(f"4. POST {api}/registrations/{registration_id}/rotate  (as a Registrar.Admin)")
    status, job = _call(
        "POST",
        f"{api}/registrations/{registration_id}/rotate",
        headers={"X-MS-CLIENT-PRINCIPAL": ADMIN_PRINCIPAL},
    )
    if status != 202:
        print(f"   refused: HTTP {status}: {json.dumps(job, indent=2)}")
        return 1

    def rotated() -> dict[str, Any] | None:
        _, view = _call("GET", f"{api}/registrations/{registration_id}")
        generation = ((view or {}).get("credential") or {}).get("generation", 1)
        return view if generation >= 2 else None

    after = _wait("waiting for generation 2 (staged, verified, published)", WAIT_ROTATED_S, rotated)

    def rotation_hook() -> tuple[dict[str, str], bytes] | None:
        for headers, raw in receiver.events():
            if json.loads(raw).get("type") == "credential.rotated":
                return headers, raw
        return None

    headers, raw = _wait("waiting for the connector's webhook", 60, rotation_hook)
    payload = Webhook(signing_secret).verify(raw, headers)
    new = after["credential"]
    print(
        _table(
            [
                ["new keyId", new["keyId"]],
                ["Key Vault version", new["secretUri"]],
                ["old keyId (kept for the overlap)", payload["data"].get("previousKeyId") or ""],
                ["old credential retired at", payload["data"].get("previousRetiresAt") or ""],
            ],
            ["rotated credential", "value"],
        )
    )
    print("\n   Webhooks the connector received (signatures verified with standardwebhooks):")
    rows = []
    for event_headers, event_raw in receiver.events():
        event = Webhook(signing_secret).verify(event_raw, event_headers)
        rows.append([event["type"], event_headers["webhook-id"], event["timestamp"]])
    print(_table(rows, ["type", "webhook-id", "timestamp"]))
    at_risk_id = _at_risk(endpoints, api, receiver)
    if at_risk_id is None:
        return 1
    from devstack.demo_adoption import adoption_tour

    if adoption_tour(endpoints, api, receiver, {registration_id, at_risk_id}) != 0:
        return 1
    print(f"\nDone. Registration {registration_id} is active on generation {new['generation']}.")
    print("Try: curl -s " + f"{api}/registrations/{registration_id} | python -m json.tool")
    print(
        "     curl -s "
        + f"'{api}/inventory?tenantId={endpoints['tenantId']}&managed=false' | python -m json.tool\n"
    )
    return 0


def _show_app(endpoints: dict[str, Any], registration: dict[str, Any]) -> None:
    """Step 3: the app, its credential in Key Vault, what it may do, and a token proving it."""
    print("\n3. The app registration and what it may do:")
    credential = registration["credential"]
    print(
        _table(
            [
                ["appId (client id)", registration["appId"]],
                ["app object id", registration.get("objectId") or ""],
                ["service principal", registration.get("servicePrincipalId") or ""],
                ["tenant", registration["tenantId"]],
                [
                    "credential",
                    f"{credential['type']} keyId {credential['keyId']}, expires {credential['expiresOn']}",
                ],
                ["Key Vault reference", credential["secretUri"]],
            ],
            ["app registration", "value"],
        )
    )
    print()
    granted = registration.get("permissions") or []
    print(
        _table(
            [[p["resource"], p["type"], p["name"]] for p in granted],
            ["resource", "type", "permission (admin consent granted)"],
        )
    )
    for step in registration.get("manualSteps") or []:
        print(f"    manual step left for a person: {step}")
    roles = _prove_credential(endpoints, registration)
    print(
        f"\n   The secret in Key Vault works: a token for Microsoft Graph carries roles {', '.join(roles)}\n"
    )


def _at_risk(endpoints: dict[str, Any], api: str, receiver: Receiver) -> str | None:
    """Step 5; the at-risk registration's id (None: it was refused)."""
    from standardwebhooks.webhooks import Webhook

    request_id = f"DEMO-RISK-{int(time.time())}"
    print(f"\n5. A credential near its end: {request_id} asks for a 10-day secret (at risk within 14 days)")
    body = {
        "requestId": request_id,
        "profile": PROFILE,
        "displayName": f"CodeTwo Backup (demo {request_id})",
        "credential": {"type": "secret", "lifetime": "P10D"},
        "webhooks": [{"url": receiver.url, "events": ["credential.at_risk"]}],
    }
    status, accepted = _call("POST", f"{api}/registrations", body)
    if status != 202:
        print(f"   refused: HTTP {status}: {json.dumps(accepted, indent=2)}")
        return None
    registration_id, signing_secret = accepted["id"], accepted["webhooks"][0]["secret"]

    def active() -> dict[str, Any] | None:
        _, view = _call("GET", f"{api}/registrations/{registration_id}")
        return view if view and view.get("status") == "active" else None

    _wait("waiting for status active", WAIT_ACTIVE_S, active)
    host = endpoints["hostUrl"].rstrip("/")
    print(f"   POST {host}/admin/functions/rotation_sweep  (the timer's function, run now)")
    _call("POST", f"{host}/admin/functions/rotation_sweep", {"input": ""})

    def at_risk_hook() -> dict[str, Any] | None:
        for headers, raw in receiver.events():
            event = json.loads(raw)
            if (
                event.get("type") == "credential.at_risk"
                and event["data"].get("registrationId") == registration_id
            ):
                verified: dict[str, Any] = Webhook(signing_secret).verify(raw, headers)
                return verified
        return None

    event = _wait("waiting for credential.at_risk", 60, at_risk_hook)["data"]
    print(
        _table(
            [[event["reason"], event["keyId"], event["expiresOn"], str(event["daysToExpiry"])]],
            ["credential.at_risk (signature verified): reason", "keyId", "expires", "days left"],
        )
    )
    _, health = _call("GET", f"{api}/health")
    rows = [
        [i["registrationId"], i["reason"], str(i["daysToExpiry"])]
        for i in (health or {}).get("atRisk", {}).get("items", [])
    ]
    print(
        f"\n   GET {api}/health: {len(rows)} credential(s) at risk, last sweep {(health or {}).get('lastSweepAt')}"
    )
    print(_table(rows, ["registration", "reason", "days left"]))
    telemetry = _telemetry_file(endpoints)
    if telemetry is not None and telemetry.exists():
        lines = [json.loads(line) for line in telemetry.read_text(encoding="utf-8").splitlines() if line]
        mine = [
            e
            for e in lines
            if e.get("signal") == "credential.at_risk" and e.get("registration_id") == registration_id
        ]
        print(f"\n   {telemetry}: {len(mine)} credential.at_risk log event(s) for it, e.g.")
        for entry in mine[:1]:
            print(
                "   "
                + json.dumps(
                    {k: entry[k] for k in ("signal", "reason", "key_id", "days_to_expiry") if k in entry}
                )
            )
    return str(registration_id)


def _telemetry_file(endpoints: dict[str, Any]) -> Any:
    from pathlib import Path

    try:
        settings = json.loads(Path(endpoints["settingsFile"]).read_text(encoding="utf-8"))
    except (KeyError, OSError, ValueError):
        return None
    path = settings.get("Values", {}).get("REGISTRAR_TELEMETRY_FILE")
    return Path(path) if path else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(json.loads(sys.argv[1])))
