"""Key Vault (secrets, certificates) and its Event Grid events, for the local tenant.

Wiring (server.py, done by the core part)::

    from devstack.tenant.keyvault import KeyVault

    vault = KeyVault(
        home_tenant_id, vault_url=base_url, authority=base_url, sim=sim, authenticate=authenticator,
        bootstrap_principal_app_id=bootstrap_client_id, mark_dirty=mark_dirty,
    )
    app.add_routes(vault.routes())   # data plane at the server root + /_sim/vault/* admin routes
    app.on_startup.append(lambda _: vault.start())    # event delivery worker + expiry scanner
    app.on_cleanup.append(lambda _: vault.stop())
    stats["vault"] = vault.stats()                     # /_sim/stats: delivered/failed/... counters
    state["vault"] = vault.snapshot(); vault.restore(state["vault"])   # persistence (JSON-safe)

The vault is served at the server root: vaultUrl = https://127.0.0.1:PORT, paths /secrets,
/certificates, /deletedsecrets, /deletedcertificates. Clients:
``SecretClient(vault_url, credential, verify_challenge_resource=False)`` (same for
CertificateClient). A request without a token gets 401 with
``WWW-Authenticate: Bearer authorization="{authority}/{home tenant}", resource="https://vault.azure.net"``.

Authorization is Azure RBAC on the data plane: the bootstrap identity holds Key Vault Secrets
Officer and Key Vault Certificates Officer; anyone else gets 403 ForbiddenByRbac until granted a
role through the admin API (see admin.py):

    POST /_sim/vault/roleAssignments {"principalId": "<sp object id or appId>",
                                      "role": "Key Vault Secrets User", "scope": "/"}

Events (Event Grid schema, POST with ``aeg-event-type: Notification``) go to
``sim.event_subscriber_url``; ``sim.near_expiry_window_s`` is the NearExpiry lead;
``sim.extra["keyvault_expiry_scan_interval_s"]`` the scanner's longest sleep (default 1 s);
``sim.extra["keyvault_delivery_max_attempts"]`` (default 6) and
``sim.extra["keyvault_delivery_first_backoff_s"]`` (default 0.2, doubling, capped at 5 s) bound
the retries of a delivery (connection error or non-2xx). Counters (emitted, delivered, failed,
retried, dropped, pending) are in ``vault.stats()["events"]``, served under /_sim/stats "vault".
PATCH /_sim/vault/events {"subscriberUrl", "nearExpiryWindowSeconds", "scanIntervalSeconds"}
changes them at run time.

Purge protection (``sim.purge_protection``, on by default as in infra's vault): a purge answers 403
and objects report recoveryLevel "Recoverable". Off, a purged name stays taken (409
ObjectIsBeingDeleted) until ``sim.purge_delay_s`` has passed since the purge (the delay as set at
each request, so lowering it frees names already purged). Both are /_sim/config settings (purgeProtection,
purgeDelayS) and CLI flags (--no-purge-protection, --purge-delay-s).
"""

from .vault import KeyVault

__all__ = ["KeyVault"]
