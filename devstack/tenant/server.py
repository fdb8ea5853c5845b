"""One aiohttp HTTPS server for Entra, Graph v1.0, Key Vault and the /_sim admin API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from devstack.tenant import admin, ca, entra, managed_identity, persistence, sign_in_activity
from devstack.tenant.auth import Authenticator
from devstack.tenant.context import AUTHENTICATE, BASE_URL, MARK_DIRTY, REGISTRY, SIM, SimulationConfig
from devstack.tenant.faults import FAULTS, STATS, FaultRule, FaultRules, Stats, simulation_middleware
from devstack.tenant.keyvault import KeyVault
from devstack.tenant.registry import TenantRegistry
from devstack.tenant.throttling import THROTTLER, Throttler
from devstack.tenant.tokens import SigningKey

log = logging.getLogger("devstack.tenant")
VAULT: web.AppKey[Any] = web.AppKey("vault", object)


@dataclass(frozen=True)
class ServerOptions:
    port: int = 0
    state_dir: Path | None = None
    sim: SimulationConfig = field(default_factory=SimulationConfig)
    faults: tuple[dict[str, Any], ...] = ()
    brownfield: int = 0  # hand-made connector apps for a new home tenant (brownfield.py)
    brownfield_service_principals: int | None = None
    brownfield_sp_passwords: float = 0.1  # the share of them with a password of their own


class TenantServer:
    """Builds the application, binds the port, prints the identity line, saves state on the way out."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._temporary_dir: Path | None = None
        if options.state_dir is None:
            self._temporary_dir = Path(tempfile.mkdtemp(prefix="devstack-tenant-"))
        self.state_dir = options.state_dir or self._temporary_dir
        assert self.state_dir is not None
        self.tls = ca.load_or_create(self.state_dir)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", options.port))
        self.socket.listen(512)
        self.port = self.socket.getsockname()[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.vault_url = self.base_url
        saved = persistence.load(self.state_dir) if options.state_dir is not None else None
        if saved is not None:
            self.registry = TenantRegistry.from_dict(saved["registry"])
        else:
            self.registry = TenantRegistry(str(uuid.uuid4()))
            _, home_entry = self.registry.create(self.registry.home_tenant_id)
            if options.brownfield:  # a tenant restored from its state dir has its apps already
                from devstack.tenant.brownfield import fill

                fill(
                    home_entry.directory,
                    home_entry.admin_client_id,
                    options.brownfield,
                    service_principals=options.brownfield_service_principals,
                    sp_passwords=options.brownfield_sp_passwords,
                )
        self.signing_key = SigningKey(self.tls.signing_key, self.tls.signing_cert)
        self.authenticator = Authenticator(self.signing_key, self.registry)
        self.sim = replace(options.sim, extra=dict(options.sim.extra))
        self.saver = persistence.Saver(options.state_dir, self.snapshot)
        home = self.registry.entries[self.registry.home_tenant_id]
        self.vault = KeyVault(
            self.registry.home_tenant_id,
            vault_url=self.vault_url,
            authority=self.base_url,
            sim=self.sim,
            authenticate=self.authenticator,
            bootstrap_principal_app_id=home.client_id,
            mark_dirty=self.saver.mark_dirty,
        )
        if saved is not None and saved.get("vault") is not None:
            self.vault.restore(saved["vault"])
        self.app = self._build_app()

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": 1,
            "registry": self.registry.to_dict(),
            "vault": self.vault.snapshot(),
        }

    def identity(self, tenant_id: str) -> dict[str, Any]:
        """The JSON of the startup line, for any tenant this server hosts."""
        entry = self.registry.entries[tenant_id]
        return {
            "authority": self.base_url,
            "tenantId": tenant_id,
            "clientId": entry.client_id,
            "clientSecret": entry.client_secret,
            # The tenant administrator: for tests and demos acting as a person would. Never Registrar's.
            "adminClientId": entry.admin_client_id,
            "adminClientSecret": entry.admin_client_secret,
            "graphUrl": f"{self.base_url}/v1.0",
            "vaultUrl": self.vault_url,
            "caFile": str(self.tls.ca_file),
            "adminUrl": f"{self.base_url}/_sim",
            "port": self.port,
            "stateDir": str(self.state_dir),
            # IDENTITY_ENDPOINT / IDENTITY_HEADER of the tenant's "function app": its managed identity
            # is the bootstrap identity above (managed_identity.py).
            "identityEndpoint": managed_identity.endpoint(self.base_url),
            "identityHeader": entry.identity_header,
        }

    def _build_app(self) -> web.Application:
        """One application; every part reads the shared objects through the AppKeys of context.py."""
        app = web.Application(middlewares=[simulation_middleware], client_max_size=4 * 1024 * 1024)
        sim = self.sim
        app[SIM] = sim
        app[admin.INITIAL_SIM] = replace(sim, extra=dict(sim.extra))
        app[REGISTRY] = self.registry
        app[AUTHENTICATE] = self.authenticator
        app[BASE_URL] = self.base_url
        app[MARK_DIRTY] = self.saver.mark_dirty
        app[entra.SIGNING_KEY] = self.signing_key
        app[entra.TOKEN_ISSUER] = entra.TokenIssuer(self.signing_key)
        app[THROTTLER] = Throttler(sim)
        faults = FaultRules()
        faults.rules.extend(FaultRule.from_json(rule) for rule in self.options.faults)
        app[FAULTS] = faults
        app[STATS] = Stats(extra=lambda: {"vault": self.vault.stats()})
        app[admin.IDENTITY] = self.identity
        app[VAULT] = self.vault
        app[sign_in_activity.SIGN_INS] = sign_in_activity.SignInLog()
        app.add_routes(admin.routes())
        app.add_routes(entra.routes())
        app.add_routes(managed_identity.routes())
        app.add_routes(_graph_routes())
        app.add_routes(self.vault.routes())
        app.add_routes(sign_in_activity.routes())  # Graph's beta report, beside /v1.0
        return app

    async def run(self, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.SockSite(runner, self.socket, ssl_context=self.tls.server_ssl_context())
        await site.start()
        await self.vault.start()
        sys.stdout.write(json.dumps(self.identity(self.registry.home_tenant_id)) + "\n")
        sys.stdout.flush()
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            await self.vault.stop()
            await runner.cleanup()
            await self.saver.flush()
            if self._temporary_dir is not None:
                shutil.rmtree(self._temporary_dir, ignore_errors=True)


def _graph_routes() -> list[web.RouteDef]:
    from devstack.tenant.graph import routes

    return routes()
