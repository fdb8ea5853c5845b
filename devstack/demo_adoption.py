"""The demo's brownfield part (issue 15 §4): the connector apps people made by hand, the inventory
of them, and the adoption of one hand-made CodeTwo app, its pasted secret kept for the overlap and
then retired.

6. The inventory: POST /api/inventory/scan (as a Registrar.Admin), then GET /api/inventory as a
   table (app, connector match, credential, expires in, managed?). A tenant without hand-made
   connector apps first gets a handful, made by the tenant's administrator identity
   (POST /_sim/brownfield), as people make them in the portal.
7. Adopt a hand-made CodeTwo app: POST /api/registrations with "adopt"; it waits in
   pending_ownership with the exact command; the demo, as an administrator would, adds Registrar's
   service principal as an owner (POST owners/$ref with the administrator's identity) and rechecks.
8. The takeover: the registration turns active with Registrar's credential (generation 1) while
   the person's secret is kept for the overlap (`up --demo` runs the host with a 30 s
   REGISTRAR_ROTATION_OVERLAP); after it, the rotation sweep's retirement removes the person's
   secret from the app in Graph. An adoption that does not turn active in time: the demo says what
   it observes (status, last steps, the app's credentials) and fails.

The administrator's secret and the app's secrets are never printed: key ids and hints only.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from devstack.demo import ADMIN_PRINCIPAL, PROFILE, Receiver, _call, _prove_credential, _table, _wait

# A handful of hand-made apps, cycled in this order (POST /_sim/brownfield): two of them made for
# CodeTwo Backup for Exchange Online (a test app and the one in use, as tenants have them).
HANDFUL = (
    PROFILE,
    "cloudelements-office365",
    "cloudiway-onedrive-source",
    PROFILE,
    "m365-usage-connector",
    "codetwo-backup-sharepoint",
)
# The same shapes every time, relative to now: "(4)" is the one in use (an exact match, a secret
# ending within two months), "(1)" a forgotten try (a permission short, its secret expired); some
# "Never" secrets, an expired certificate, a SharePoint app with an old and a new secret.
HANDFUL_SEED = 59
ONE_MORE_SEED = 55  # its first app: an exact match holding one secret that ends in about two years
WAIT_SCAN_S = 120
WAIT_ADOPTED_S = 90  # adopting -> active: the takeover issues, verifies (propagation) and publishes
WAIT_RETIRED_S = 120  # past the overlap, the sweep's retirement job removes the person's secret
SWEEP_EVERY_S = 5.0
WAIT_TOLD_S = 30
OWNER_COMMAND = re.compile(r"az ad app owner add --id \S+ --owner-object-id (?P<owner>[0-9a-fA-F-]{36})")
LIVE_FOR_S = 2 * 86400  # a pasted secret worth keeping for an overlap ends later than this


class AdminGraph:
    """Microsoft Graph as the tenant's administrator (a person in the portal, or `az`): plain REST
    with the administrator identity's token. Registrar never acts with this identity."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        from azure.identity import ClientSecretCredential

        self._graph = endpoints["graphUrl"].rstrip("/")
        self._credential = ClientSecretCredential(
            endpoints["tenantId"],
            endpoints["adminClientId"],
            endpoints["adminClientSecret"],
            authority=endpoints["authority"],
            disable_instance_discovery=True,
        )
        self._tls = ssl.create_default_context(cafile=endpoints["caFile"])

    def call(self, method: str, path: str, body: Any = None) -> Any:
        token = self._credential.get_token("https://graph.microsoft.com/.default").token
        request = urllib.request.Request(  # noqa: S310  (the local tenant, over HTTPS)
            self._graph + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self._tls, timeout=30) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def add_owner(self, object_id: str, owner_id: str) -> None:
        """`az ad app owner add`: POST /applications/{id}/owners/$ref."""
        reference = {"@odata.id": f"{self._graph}/directoryObjects/{owner_id}"}
        self.call("POST", f"/applications/{object_id}/owners/$ref", reference)

    def add_secret(self, object_id: str, name: str) -> str:
        """The portal's "New client secret"; returns its keyId (the value goes nowhere)."""
        added = self.call(
            "POST", f"/applications/{object_id}/addPassword", {"passwordCredential": {"displayName": name}}
        )
        return str(added["keyId"])

    def credentials(self, object_id: str) -> list[dict[str, Any]]:
        """The app's secrets and certificates as Graph holds them (never a value)."""
        app = self.call("GET", f"/applications/{object_id}?$select=passwordCredentials,keyCredentials")
        found = [{**c, "type": "secret"} for c in app.get("passwordCredentials") or []]
        return found + [{**c, "type": "certificate"} for c in app.get("keyCredentials") or []]


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def expires_in(end: str | None, now: datetime) -> str:
    """'expired 12 d ago', 'in 5 h', 'in 40 d', 'in 3 y', 'never (2299)' (the portal's "Never")."""
    moment = _parse(end)
    if moment is None:
        return ""
    if moment.year >= 2299:
        return f"never ({moment.year})"
    seconds = (moment - now).total_seconds()
    days = int(abs(seconds) // 86400)
    if seconds < 0:
        return f"expired {days} d ago" if days else "expired today"
    if days == 0:
        return f"in {max(1, int(seconds // 3600))} h"
    return f"in {days} d" if days < 730 else f"in {days // 365} y"


def match_label(match: dict[str, Any] | None) -> str:
    if not match:
        return "none"
    kind = match.get("kind", "")
    difference = {
        "superset": f" +{len(match.get('extra') or [])}",
        "subset": f" -{len(match.get('missing') or [])}",
    }
    return f"{match.get('profile')} ({kind}{difference.get(kind, '')})"


def credential_label(item: dict[str, Any]) -> str:
    if item.get("type") == "certificate":
        label = f"certificate {(item.get('thumbprint') or '')[:8]}"
    else:
        label = f"secret {item.get('hint') or ''}…"
    return label + (" (on its SP)" if item.get("on") == "servicePrincipal" else "")


def inventory_rows(items: list[dict[str, Any]], now: datetime) -> list[list[str]]:
    return [
        [
            str(item.get("appDisplayName") or item.get("appId"))[:44],
            match_label(item.get("profileMatch")),
            credential_label(item),
            expires_in(item.get("endDateTime"), now),
            f"yes ({item['registrationId']})" if item.get("managed") else "no",
        ]
        for item in items
    ]


def _inventory(api: str, tenant_id: str) -> tuple[datetime | None, list[dict[str, Any]]]:
    """The last scan's time and every credential it found, page after page."""
    items: list[dict[str, Any]] = []
    continuation: str | None = None
    scanned_at = None
    while True:
        query = f"tenantId={tenant_id}&limit=1000" + (
            f"&continuation={urllib.parse.quote(continuation)}" if continuation else ""
        )
        status, page = _call("GET", f"{api}/inventory?{query}")
        if status != 200:
            raise RuntimeError(f"GET /inventory: HTTP {status}: {page}")
        scanned_at = _parse(page.get("scannedAt"))
        items += page.get("items") or []
        continuation = page.get("continuation")
        if not continuation:
            return scanned_at, items


def _scan(api: str, tenant_id: str) -> list[dict[str, Any]]:
    """POST /inventory/scan as a Registrar.Admin, then wait for a scan that started after it."""
    asked = datetime.now(UTC)
    status, answer = _call(
        "POST", f"{api}/inventory/scan", headers={"X-MS-CLIENT-PRINCIPAL": ADMIN_PRINCIPAL}
    )
    if status != 202:
        raise RuntimeError(f"POST /inventory/scan: HTTP {status}: {answer}")

    def scanned() -> list[dict[str, Any]] | None:
        at, items = _inventory(api, tenant_id)
        return items if at is not None and at >= asked else None

    found: list[dict[str, Any]] = _wait("scanning the tenant", WAIT_SCAN_S, scanned)
    return found


def _adoptable(items: list[dict[str, Any]], claimed: set[str]) -> list[dict[str, Any]]:
    """Unmanaged apps whose best match is CodeTwo Backup for Exchange Online (which takes a secret;
    CodeTwo's SharePoint connector takes only certificates) and that no registration claims yet
    (an adoption waiting for its owner is not `managed` in the inventory): apps holding only
    secrets first (a found certificate is never retired, so it would stay beside Registrar's),
    then exact matches."""
    by_app: dict[str, dict[str, Any]] = {}
    certificates = {
        i["appId"] for i in items if i.get("type") == "certificate" and i.get("on") == "application"
    }
    for item in items:
        match = item.get("profileMatch") or {}
        if not item.get("managed") and item["appId"] not in claimed and match.get("profile") == PROFILE:
            by_app.setdefault(item["appId"], item)
    return sorted(
        by_app.values(),
        key=lambda i: (
            i["appId"] in certificates,
            i["profileMatch"].get("kind") != "exact",
            i["appDisplayName"],
        ),
    )


def _claimed(api: str, tenant_id: str) -> set[str]:
    """The appIds that registrations of the tenant adopted and hold (GET /registrations, paged)."""
    claimed: set[str] = set()
    continuation: str | None = None
    while True:
        query = f"tenantId={tenant_id}&limit=100" + (
            f"&continuation={urllib.parse.quote(continuation)}" if continuation else ""
        )
        status, page = _call("GET", f"{api}/registrations?{query}")
        if status != 200:
            raise RuntimeError(f"GET /registrations: HTTP {status}: {page}")
        for registration in page.get("items") or []:
            adoption = registration.get("adoption")
            if adoption and registration.get("status") not in ("failed", "decommissioned"):
                claimed.add(str(adoption["appId"]))
        continuation = page.get("continuation")
        if not continuation:
            return claimed


def adoption_tour(endpoints: dict[str, Any], api: str, receiver: Receiver, managed_here: set[str]) -> int:
    """Steps 6 to 8; `managed_here`: the registrations this demo made (shown as managed)."""
    tenant_id = endpoints["tenantId"]
    print("\n6. The tenant's connector apps made by hand, as the inventory sees them")
    print(f"   POST {api}/inventory/scan  (as a Registrar.Admin), then GET {api}/inventory")
    items = _scan(api, tenant_id)
    claimed = _claimed(api, tenant_id)
    if not _adoptable(items, claimed):
        hand_made = any(i.get("profileMatch") and not i.get("managed") for i in items)
        if hand_made:  # an earlier demo adopted them: one more, rather than another handful
            print(
                "   Every hand-made CodeTwo Backup app is adopted already: the administrator makes one more"
            )
            body: dict[str, Any] = {"count": 1, "connectors": [PROFILE], "seed": ONE_MORE_SEED}
        else:
            print(
                "   No connector apps made by hand yet: the administrator makes a handful, as people do in the portal"
            )
            body = {"count": len(HANDFUL), "connectors": list(HANDFUL), "seed": HANDFUL_SEED}
        print(f"   (POST {endpoints['adminUrl']}/brownfield)")
        _sim(endpoints, "brownfield", body)
        items = _scan(api, tenant_id)
    now = datetime.now(UTC)
    shown = [
        i
        for i in items
        if i.get("profileMatch") and (not i.get("managed") or i.get("registrationId") in managed_here)
    ]
    print(
        _table(inventory_rows(shown, now), ["app", "connector match", "credential", "expires in", "managed?"])
    )
    hidden = len(items) - len(shown)
    if hidden:
        print(
            f"    ({hidden} more not shown: earlier registrations, and apps matching no connector such as Registrar's own)"
        )

    candidates = _adoptable(items, claimed)
    if not candidates:
        print("   The scan found no hand-made CodeTwo app to adopt.")
        return 1
    return _adopt(endpoints, api, receiver, candidates[0], items)


def _sim(endpoints: dict[str, Any], path: str, body: Any) -> Any:
    request = urllib.request.Request(  # noqa: S310  (the local tenant's admin API)
        f"{endpoints['adminUrl']}/{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    context = ssl.create_default_context(cafile=endpoints["caFile"])
    with urllib.request.urlopen(request, context=context, timeout=60) as response:  # noqa: S310
        return json.loads(response.read())


def _adopt(
    endpoints: dict[str, Any], api: str, receiver: Receiver, app: dict[str, Any], items: list[dict[str, Any]]
) -> int:
    admin = AdminGraph(endpoints)
    now = datetime.now(UTC)
    live = [
        i
        for i in items
        if i["appId"] == app["appId"]
        and i.get("type") == "secret"
        and i.get("on") == "application"
        and (end := _parse(i.get("endDateTime"))) is not None
        and (end - now).total_seconds() > LIVE_FOR_S
    ]
    profile = app["profileMatch"]["profile"]
    print(f'\n7. Adopt "{app["appDisplayName"]}" (appId {app["appId"]}, profile {profile})')
    if not live:
        key_id = admin.add_secret(app["objectId"], "pasted into the connector")
        print(f"   It has no live secret: the administrator adds one for the connector (keyId {key_id})")
    request_id = f"DEMO-ADOPT-{int(time.time())}"
    body = {
        "requestId": request_id,
        "profile": profile,
        "adopt": {"appId": app["appId"]},
        "credential": {
            "type": "secret"
        },  # the connector takes a secret (the profile's default is a certificate)
        "options": {"retireExisting": "after-overlap", "reconcile": "report"},
        "webhooks": [{"url": receiver.url, "events": ["credential.rotated", "credential.retired"]}],
    }
    print(
        f"   POST {api}/registrations  (requestId {request_id}, adopt.appId, a secret, retireExisting after-overlap)"
    )
    status, accepted = _call("POST", f"{api}/registrations", body)
    if status != 202:
        print(f"   refused: HTTP {status}: {json.dumps(accepted, indent=2)}")
        return 1
    registration_id = accepted["id"]
    print(f"   202 Accepted: registration {registration_id}, status {accepted['status']}")
    _, waiting = _call("GET", f"{api}/registrations/{registration_id}")
    steps = (waiting or {}).get("manualSteps") or []
    command = next((m for s in steps if (m := OWNER_COMMAND.search(s))), None)
    if accepted["status"] == "pending_ownership":
        if command is None:
            print(f"   no owner command among the manual steps: {steps}")
            return 1
        print(f"   its manual step for an administrator: {command[0]}")
        print("   The demo does it as the tenant's administrator would (POST owners/$ref), then:")
        admin.add_owner(app["objectId"], command["owner"])
        print(f"   POST {api}/registrations/{registration_id}/recheck")
        status, checked = _call("POST", f"{api}/registrations/{registration_id}/recheck")
        if status != 200:
            print(f"   refused: HTTP {status}: {json.dumps(checked, indent=2)}")
            return 1
        print(f"   200: status {checked['status']}")
    signing_secret = accepted["webhooks"][0]["secret"]  # shown once; kept in memory to verify
    return _takeover(endpoints, api, receiver, admin, registration_id, signing_secret=signing_secret)


def _takeover(
    endpoints: dict[str, Any],
    api: str,
    receiver: Receiver,
    admin: AdminGraph,
    registration_id: str,
    *,
    signing_secret: str,
) -> int:
    print("\n8. The takeover: Registrar's own secret, the person's kept for the overlap, then retired")

    def view() -> dict[str, Any]:
        _, found = _call("GET", f"{api}/registrations/{registration_id}")
        return found or {}

    def settled() -> dict[str, Any] | None:
        current = view()
        return current if current.get("status") in ("active", "failed") else None

    try:
        adopted = _wait("waiting for status active", WAIT_ADOPTED_S, settled)
    except TimeoutError:
        current = view()
        print(
            f"   Observed: status {current.get('status')} after {WAIT_ADOPTED_S} s; its last steps and the app's credentials:"
        )
        for event in (current.get("history") or [])[-3:]:
            print(f"     {event.get('step')} {event.get('outcome')} {event.get('detail') or ''}")
        print(_table(_graph_rows(admin, current, {}), ["keyId", "credential", "ends", "whose"]))
        return 1
    if adopted["status"] == "failed":
        print(f"   the adoption failed: {json.dumps(adopted.get('lastError'))}")
        return 1
    found = {c["keyId"] for c in (adopted.get("adoption") or {}).get("credentialsFound") or []}
    retiring = _retire_jobs(api, registration_id)
    print(_table(_graph_rows(admin, adopted, retiring), ["keyId", "credential", "ends", "whose"]))
    roles = _prove_credential(endpoints, adopted)
    print(
        f"   Registrar's secret in Key Vault works: a token for Microsoft Graph carries roles {', '.join(roles)}"
    )
    if not (found & set(retiring)):
        print("   Observed: no retirement scheduled for the person's credentials; they stay.")
        return 0
    due = max(_parse(at) or datetime.now(UTC) for at in retiring.values())
    host = endpoints["hostUrl"].rstrip("/")

    def gone() -> bool:
        if datetime.now(UTC) >= due:
            # The timer's function, run now (the host's admin API): it enqueues the retirement jobs due.
            _call("POST", f"{host}/admin/functions/rotation_sweep", {"input": ""})
            time.sleep(SWEEP_EVERY_S)
        left = {c["keyId"] for c in admin.credentials(adopted["objectId"])}
        return not (left & set(retiring))

    _wait("waiting for the overlap to end and the retirement job to run", WAIT_RETIRED_S, gone)
    print(_table(_graph_rows(admin, view(), {}), ["keyId", "credential", "ends", "whose"]))
    told = _told(receiver, registration_id, signing_secret)
    print(f"   The connector was told (signatures verified): {', '.join(told) or 'nothing yet'}")
    print(f"\n   Registration {registration_id} manages the app; the person's secret is gone from Graph.")
    return 0


def _told(receiver: Receiver, registration_id: str, signing_secret: str) -> list[str]:
    """The registration's webhooks the connector received, verified (Standard Webhooks), once
    credential.retired has come (it follows the removal; at most WAIT_TOLD_S)."""
    from standardwebhooks.webhooks import Webhook

    def verified() -> list[dict[str, Any]]:
        found = []
        for headers, raw in receiver.events():
            event = json.loads(raw)
            if event.get("data", {}).get("registrationId") == registration_id:
                found.append(Webhook(signing_secret).verify(raw, headers))
        return found

    def with_retired() -> list[dict[str, Any]] | None:
        found = verified()
        return found if any(e["type"] == "credential.retired" for e in found) else None

    try:
        events: list[dict[str, Any]] = _wait("waiting for credential.retired", WAIT_TOLD_S, with_retired)
    except TimeoutError:
        events = verified()
    return [e["type"] + (f" ({e['data']['reason']})" if e["data"].get("reason") else "") for e in events]


def _retire_jobs(api: str, registration_id: str) -> dict[str, str]:
    """keyId -> when its retirement is due, from the expiry index (GET /credentials)."""
    _, due = _call("GET", f"{api}/credentials?dueWithin=P3650D")
    return {
        str(item["keyId"]): str(item["dueAt"])
        for item in (due or {}).get("items", [])
        if item.get("registrationId") == registration_id
        and item.get("action") == "retire"
        and item.get("keyId")
    }


def _graph_rows(admin: AdminGraph, registration: dict[str, Any], retiring: dict[str, str]) -> list[list[str]]:
    """The app's credentials as Graph holds them, each with whose it is for Registrar."""
    mine = (registration.get("credential") or {}).get("keyId")
    found = {c["keyId"] for c in (registration.get("adoption") or {}).get("credentialsFound") or []}
    now = datetime.now(UTC)
    rows = []
    for credential in admin.credentials(registration["objectId"]):
        key_id = credential["keyId"]
        if key_id == mine:
            whose = f"Registrar's (generation {registration['credential']['generation']})"
        elif key_id in retiring:
            whose = f"the person's: kept until {retiring[key_id][11:19]} UTC, then retired"
        elif key_id in found:
            whose = "the person's (found at adoption): kept"
        else:
            whose = "unknown to Registrar: never removed"
        label = f'{credential["type"]} "{credential.get("displayName") or ""}"'
        rows.append([key_id, label, expires_in(credential.get("endDateTime"), now), whose])
    return rows
