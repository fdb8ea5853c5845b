"""The whole local stack: Azurite, the local tenant, the Functions host; endpoints.json when ready.

Library use (tests/fixtures/stack.py does this): `stack = Stack(StackOptions(...)); endpoints =
stack.start(); ...; stack.stop()`. The CLI (`python -m devstack up`) adds signal handling.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import azurite, processes
from devstack.host.launcher import HostProcess, first_line, start_host

log = logging.getLogger("devstack")

REPO_ROOT = Path(__file__).resolve().parent.parent
TENANT_TIMEOUT_S = 60.0
# Settings the stack owns: written into local.settings.json, and never inherited by the host from
# the caller's environment (where they would win over local.settings.json and point elsewhere).
IDENTITY_STORAGE_SETTINGS = tuple(
    f"AzureWebJobsStorage__{key}"
    for key in ("blobServiceUri", "queueServiceUri", "tableServiceUri", "credential")
)
STACK_SETTINGS = (
    "AzureWebJobsStorage",
    *IDENTITY_STORAGE_SETTINGS,
    "REGISTRAR_HOME_TENANT_ID",
    "REGISTRAR_AUTHORITY_HOST",
    "REGISTRAR_GRAPH_BASE_URL",
    "REGISTRAR_KEY_VAULT_URL",
    "REGISTRAR_CREDENTIAL",
    "REGISTRAR_CLIENT_ID",
    "REGISTRAR_CLIENT_SECRET",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
)

# Set by the platform, not by app settings: a process has them only when it has a managed identity.
IDENTITY_VARIABLES = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET")


@dataclass
class StackOptions:
    app_dir: Path = REPO_ROOT
    port: int = 7071  # 0: every part on free ports (tests), else Azurite prefers 10000-10002
    state_dir: Path = REPO_ROOT / ".devstack"
    settings_file: Path | None = None  # default: APP_DIR/local.settings.json
    host_log: Path | None = None  # default: STATE_DIR/logs/host.log (the tenant's: logs/tenant.log)
    # True: the host and the tenant log to this process's stderr instead (`devstack up --verbose`).
    console_logs: bool = False
    # True (`devstack up`): Azurite keeps its data in STATE_DIR/azurite as the tenant keeps its own
    # in STATE_DIR/tenant, both across restarts. False (the test fixtures): Azurite in memory, and the
    # tenant's saved state is dropped at start, so both start empty and still agree.
    persist: bool = False
    # True (`devstack up --fresh`): drop what earlier runs kept (Azurite's data, the tenant's state,
    # the host's timer status) before starting. The tenant's CA stays, so what trusts it still does.
    fresh: bool = False
    tenant_args: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # extra app settings (tests: fast schedules...)
    # App settings for this run's host only, given as environment variables (which win over
    # local.settings.json, as App Service's app settings do) and never written to the settings file:
    # `up --demo`'s short rotation overlap must not outlive the demo in the developer's file.
    host_settings: dict[str, str] = field(default_factory=dict)
    run_host: bool = True  # False: only Azurite and the tenant, for `func start` on `port`
    # True: the host signs in as in Azure, with the function app's managed identity (the tenant's
    # identity endpoint, given to the host as the platform does: IDENTITY_ENDPOINT and
    # IDENTITY_HEADER); False: with the tenant's bootstrap identity's client secret.
    managed_identity: bool = False

    @property
    def settings_path(self) -> Path:
        return self.settings_file or self.app_dir / "local.settings.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def host_log_path(self) -> Path | None:
        """Where the host logs (None: this process's stderr)."""
        return None if self.console_logs else self.host_log or self.logs_dir / "host.log"

    @property
    def tenant_log_path(self) -> Path | None:
        return None if self.console_logs else self.logs_dir / "tenant.log"

    @property
    def azurite_dir(self) -> Path | None:
        """Where Azurite keeps its data (None: in memory)."""
        return self.state_dir / "azurite" if self.persist else None


def tenant_available() -> bool:
    """The local tenant lands separately (issue 2); the stack runs without it until it exists."""
    return importlib.util.find_spec("devstack.tenant.__main__") is not None


def running_stack(endpoints_file: Path) -> str | None:
    """The host URL of a live stack that wrote endpoints_file, or None (no file, or nobody answers)."""
    try:
        url = json.loads(endpoints_file.read_text(encoding="utf-8"))["hostUrl"]
        if not str(url).startswith("http://127.0.0.1:"):
            return None
        with urllib.request.urlopen(f"{url}/admin/host/status", timeout=2) as response:  # noqa: S310 (loopback http only)
            return str(url) if response.status == 200 else None
    except (OSError, ValueError, KeyError):
        return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_settings(
    storage: str, tenant: dict[str, Any] | None, *, managed_identity: bool = False
) -> dict[str, str]:
    values = {"AzureWebJobsStorage": storage}
    if tenant:
        values |= {
            "REGISTRAR_HOME_TENANT_ID": tenant["tenantId"],
            "REGISTRAR_AUTHORITY_HOST": tenant["authority"],
            "REGISTRAR_GRAPH_BASE_URL": tenant["graphUrl"],
            "REGISTRAR_KEY_VAULT_URL": tenant["vaultUrl"],
            "SSL_CERT_FILE": tenant["caFile"],
            "REQUESTS_CA_BUNDLE": tenant["caFile"],
        }
        if managed_identity:  # system-assigned: no client id, no secret anywhere in the settings
            values |= {
                "REGISTRAR_CREDENTIAL": "managed_identity",
                "REGISTRAR_CLIENT_ID": "",
                "REGISTRAR_CLIENT_SECRET": "",
            }
        else:
            values |= {
                "REGISTRAR_CREDENTIAL": "client_secret",
                "REGISTRAR_CLIENT_ID": tenant["clientId"],
                "REGISTRAR_CLIENT_SECRET": tenant["clientSecret"],
            }
    return values


def identity_storage_settings(storage: azurite.Azurite) -> dict[str, str]:
    """AzureWebJobsStorage as Bicep sets it in Azure: no connection string, the service URIs and the
    managed identity (Azurite over HTTPS accepts the tenant's tokens for https://storage.azure.com)."""
    return {
        "AzureWebJobsStorage": "",
        "AzureWebJobsStorage__blobServiceUri": storage.service_uri("blob"),
        "AzureWebJobsStorage__queueServiceUri": storage.service_uri("queue"),
        "AzureWebJobsStorage__tableServiceUri": storage.service_uri("table"),
        "AzureWebJobsStorage__credential": "managedidentity",
    }


def write_settings(path: Path, sample: Path, values: dict[str, str]) -> str:
    """Create local.settings.json from the sample plus the stack's endpoints; when it exists, refresh
    those endpoints and add settings the sample gained since, keeping every value the developer set."""
    sample_document = json.loads(sample.read_text(encoding="utf-8")) if sample.exists() else {}
    if path.exists():
        document = json.loads(path.read_text(encoding="utf-8"))
        current = document.setdefault("Values", {})
        added = [key for key in sample_document.get("Values", {}) if key not in current]
        for key in added:
            current[key] = sample_document["Values"][key]
        action = (
            "updated the stack's endpoints" + (f" (and added {', '.join(added)})" if added else "") + " in"
        )
    else:
        document = sample_document
        document.setdefault("IsEncrypted", False)
        action = "created"
    document.setdefault("Values", {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    temporary.chmod(0o600)  # it holds the local client secret
    temporary.replace(path)
    return action


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.azurite: azurite.Azurite | None = None
        self.tenant: subprocess.Popen[str] | None = None
        self.host: HostProcess | None = None
        self.endpoints: dict[str, Any] = {}
        self._indexer: subprocess.Popen[str] | None = None
        self._host_port = 0
        self._host_process_env: dict[str, str] = {}

    @property
    def endpoints_file(self) -> Path:
        return self.options.state_dir / "endpoints.json"

    def start(self) -> dict[str, Any]:
        """Start every part; on any failure stop what started and raise RuntimeError."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, Any]:
        options = self.options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        options.logs_dir.mkdir(exist_ok=True)
        running = running_stack(self.endpoints_file)
        if running:
            raise RuntimeError(
                f"a stack already runs from {options.state_dir} (host {running}); stop it first"
            )
        self.endpoints_file.unlink(missing_ok=True)  # left by a stack that was killed
        if options.fresh or not options.persist:
            self._forget_state()
        elif self._tenant_state.exists() and not (options.state_dir / "azurite").exists():
            # Left by a stack from before Azurite kept its data: its apps' registrations are gone.
            log.info("The tenant's saved state has no Storage data beside it: starting both empty")
            self._forget_state()
        host_port = free_port() if options.port == 0 else options.port
        if options.run_host and options.port != 0 and not azurite.ports_free([host_port]):
            raise RuntimeError(f"port {host_port} is in use (another host or `func start`?): try --port")
        indexing = self._index_app()  # runs while Azurite starts
        https = self._storage_tls() if options.managed_identity else None
        self.azurite = (
            azurite.start(https=https, location=options.azurite_dir)
            if options.port == 0
            else azurite.start_preferring_defaults(https=https, location=options.azurite_dir)
        )
        storage = self.azurite.connection_string
        webhook = self._event_grid_webhook(indexing, host_port)
        tenant_info: dict[str, Any] | None = None
        if tenant_available():
            tenant_info = self._start_tenant(webhook)
        else:
            log.warning("devstack.tenant is not available yet: starting without the local tenant")
        if options.managed_identity and not (tenant_info and tenant_info.get("identityEndpoint")):
            raise RuntimeError("managed identity asked for, but the local tenant has no identity endpoint")
        action = write_settings(
            options.settings_path,
            options.app_dir / "local.settings.sample.json",
            {
                # Application Insights' local stand-in (functions/telemetry_file.py); a caller may move it.
                "REGISTRAR_TELEMETRY_FILE": str(options.state_dir / "telemetry.jsonl"),
                "REGISTRAR_TELEMETRY_INTERVAL": "PT2S",
                **options.settings,
                **stack_settings(storage, tenant_info, managed_identity=options.managed_identity),
                **(identity_storage_settings(self.azurite) if options.managed_identity else {}),
            },
        )
        log.info("%s %s", action.capitalize(), options.settings_path)
        host_url = f"http://127.0.0.1:{host_port}"
        functions: list[str] = []
        if options.run_host:
            self._host_port = host_port
            self._host_process_env = {
                **self._host_env(tenant_info, managed_identity=options.managed_identity),
                **options.host_settings,
            }
            self.host = self._launch_host()
            host_url, functions = self.host.url, self.host.functions
        self.endpoints = {
            **(tenant_info or {}),
            "hostUrl": host_url,
            "storageConnectionString": storage,
            "azurite": self.azurite.ports,
            "functions": functions,
            "settingsFile": str(options.settings_path),
        }
        temporary = self.endpoints_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.endpoints, indent=2) + "\n", encoding="utf-8")
        temporary.chmod(0o600)
        temporary.replace(self.endpoints_file)  # appears whole: readers never see half a file
        return self.endpoints

    @property
    def _tenant_state(self) -> Path:
        from devstack.tenant.persistence import STATE_FILE

        return self.options.state_dir / "tenant" / STATE_FILE

    def _forget_state(self) -> None:
        """Drop what earlier runs kept: Azurite's data, the tenant's state (not its CA and keys), the
        host's timer status (which Azure keeps in Storage too)."""
        state_dir = self.options.state_dir
        for folder in (state_dir / "azurite", state_dir / "host"):
            shutil.rmtree(folder, ignore_errors=True)
        for path in (self._tenant_state, self._tenant_state.with_suffix(".tmp"), self._tenant_port_file):
            path.unlink(missing_ok=True)

    @property
    def _tenant_port_file(self) -> Path:
        return self.options.state_dir / "tenant" / "port"

    def _preferred_tenant_port(self) -> int:
        """The port the tenant served on last time, when the stack persists and it is free, so the
        Key Vault URIs kept in Storage (a registration's secretUri) keep pointing at the vault; else 0."""
        if not self.options.persist or self.options.port == 0:
            return 0
        try:
            port = int(self._tenant_port_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        return port if 0 < port < 65536 and azurite.ports_free([port]) else 0

    def _launch_host(self) -> HostProcess:
        options = self.options
        return start_host(
            options.app_dir,
            port=self._host_port,
            settings_file=options.settings_path,
            state_dir=options.state_dir / "host",
            log_path=options.host_log_path,
            env=self._host_process_env,
        )

    def crash_host(self) -> None:
        """SIGKILL the Functions host (and its workers) while Azurite and the tenant stay up: what a
        crashed instance or a deployment does to work in flight (tests of the resume after a crash)."""
        if self.host is None:
            raise RuntimeError("the stack runs no host")
        self.host.kill()
        self.host = None

    def restart_host(self) -> HostProcess:
        """Start the host again on the same port and settings (after crash_host)."""
        if self.host is not None:
            raise RuntimeError("the host still runs: crash_host() or stop() it first")
        self.host = self._launch_host()
        return self.host

    def _storage_tls(self) -> azurite.Https:
        """Azurite's HTTPS certificate, from the tenant's CA (made here if the tenant has not yet:
        the tenant reuses what it finds in its state dir), so one CA file trusts both."""
        from devstack.tenant import ca

        material = ca.load_or_create(self.options.state_dir / "tenant")
        return azurite.Https(material.server_cert_file, material.server_key_file)

    @staticmethod
    def _host_env(tenant_info: dict[str, Any] | None, *, managed_identity: bool = False) -> dict[str, str]:
        """The caller's environment without the stack's settings, but trusting the tenant's CA from
        the start: the host imports aiohttp (which reads SSL_CERT_FILE once, at import) before it
        exports local.settings.json, so the CA given only there would come too late. With a managed
        identity, the two variables App Service and Functions give a process that has one."""
        env = {k: v for k, v in os.environ.items() if k not in (*STACK_SETTINGS, *IDENTITY_VARIABLES)}
        if tenant_info:
            env["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"] = tenant_info["caFile"]
            if managed_identity:
                env["IDENTITY_ENDPOINT"] = tenant_info["identityEndpoint"]
                env["IDENTITY_HEADER"] = tenant_info["identityHeader"]
        return env

    def _index_app(self) -> subprocess.Popen[str]:
        """List the app's functions (`devstack.host --list-functions`) in a child process."""
        argv = [sys.executable, "-m", "devstack.host", "--list-functions"]
        argv += ["--app-dir", str(self.options.app_dir)]
        if self.options.settings_path.exists():
            argv += ["--settings", str(self.options.settings_path)]
        env = {k: v for k, v in os.environ.items() if k not in STACK_SETTINGS}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self._indexer = processes.spawn(argv, env=env, cwd=self.options.app_dir, stderr=subprocess.PIPE)
        return self._indexer

    def _event_grid_webhook(self, indexing: subprocess.Popen[str], host_port: int) -> str | None:
        """The host URL of the app's Event Grid function, found in the app's own metadata."""
        try:
            out, err = indexing.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            processes.stop(indexing)
            raise RuntimeError(f"indexing {self.options.app_dir} took more than 120 s") from None
        if indexing.returncode != 0:
            raise RuntimeError(f"cannot index {self.options.app_dir}: {err.strip()[-2000:]}")
        names = [f["name"] for f in json.loads(out) if f["triggerType"] == "eventGridTrigger"]
        if not names:
            log.info("The app has no Event Grid function: Key Vault events are not delivered")
            return None
        if len(names) > 1:
            log.warning(
                "Several Event Grid functions (%s): Key Vault events go to %s", ", ".join(names), names[0]
            )
        return f"http://127.0.0.1:{host_port}/runtime/webhooks/eventgrid?functionName={names[0]}"

    def _start_tenant(self, webhook: str | None) -> dict[str, Any]:
        preferred = self._preferred_tenant_port()
        line = self._spawn_tenant(webhook, preferred)
        if not line and preferred and self.tenant is not None:
            processes.stop(self.tenant)  # lost the port since it was checked: any free one will do
            line = self._spawn_tenant(webhook, 0)
        if not line:
            log_path = self.options.tenant_log_path
            raise RuntimeError("the local tenant did not start" + (f"; see {log_path}" if log_path else ""))
        info: dict[str, Any] = json.loads(line)
        if self.options.persist:
            self._tenant_port_file.write_text(f"{info['port']}\n", encoding="utf-8")
        return info

    def _spawn_tenant(self, webhook: str | None, port: int) -> str | None:
        """Start the tenant process; its identity line, or None if it did not start."""
        argv = [sys.executable, "-m", "devstack.tenant", "--port", str(port)]
        argv += ["--state-dir", str(self.options.state_dir / "tenant"), *self.options.tenant_args]
        if webhook:
            argv += ["--event-subscriber", webhook]
        log_path = self.options.tenant_log_path
        with log_path.open("a", encoding="utf-8") if log_path else contextlib.nullcontext() as tenant_log:
            self.tenant = processes.spawn(argv, cwd=REPO_ROOT, stderr=tenant_log)
        assert self.tenant.stdout is not None
        return first_line(self.tenant.stdout, TENANT_TIMEOUT_S)

    def failed_part(self) -> str | None:
        """The name of a part that exited on its own, if any."""
        parts = {
            "azurite": self.azurite.process if self.azurite else None,
            "tenant": self.tenant,
            "host": self.host.process if self.host else None,
        }
        return next(
            (name for name, proc in parts.items() if proc is not None and proc.poll() is not None), None
        )

    def log_hint(self, part: str) -> str:
        """'; see FILE' naming the log of a part ("host", "tenant"), or '' when it logs to the console."""
        path = {"host": self.options.host_log_path, "tenant": self.options.tenant_log_path}.get(part)
        return f"; see {path}" if path else ""

    def stop(self) -> None:
        """Stop the host, the tenant and Azurite (each as a process group); forget endpoints.json."""
        if self.endpoints:  # only the file this stack wrote, never another stack's
            with contextlib.suppress(OSError):
                self.endpoints_file.unlink(missing_ok=True)
            self.endpoints = {}
        if self._indexer is not None and self._indexer.poll() is None:
            processes.stop(self._indexer)
        if self.host is not None:
            self.host.stop()
            self.host = None
        if self.tenant is not None:
            processes.stop(self.tenant)
            self.tenant = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    def _logs_line(self) -> str:
        options = self.options
        logs = [
            path
            for path in (options.host_log_path if options.run_host else None, options.tenant_log_path)
            if path
        ]
        if not logs:
            return "on this console (--verbose)"
        if all(path.parent == options.logs_dir for path in logs):
            where = f"{options.logs_dir}/ ({', '.join(path.name for path in logs)})"
        else:
            where = ", ".join(str(path) for path in logs)
        return where + "  (--verbose: on this console)"

    def _data_line(self) -> str:
        options = self.options
        if not options.persist:
            return "Azurite in memory; the tenant started empty"
        where = f"{options.azurite_dir} and {options.state_dir / 'tenant'}"
        if options.fresh:
            return f"started empty (--fresh), kept in {where} from now on"
        return f"kept in {where} across restarts (--fresh: start empty)"

    def summary(self) -> str:
        e = self.endpoints
        lines = [
            "Registrar's local stack is up.",
            f"  Functions host   {e['hostUrl']}  (HTTP API under {e['hostUrl']}/api/...)"
            + ("" if self.options.run_host else "  <- not started: run `func start` there"),
            f"  Azurite          blob {e['azurite']['blob']}, queue {e['azurite']['queue']}, table {e['azurite']['table']}",
        ]
        if "authority" in e:
            lines += [
                f"  Entra authority  {e['authority']}  (tenant {e['tenantId']})",
                f"  Graph            {e['graphUrl']}",
                f"  Key Vault        {e['vaultUrl']}",
                f"  Tenant CA        {e['caFile']}",
                "  Signs in with    "
                + (
                    f"the function app's managed identity ({e['identityEndpoint']})"
                    if self.options.managed_identity
                    else f"the bootstrap identity's client secret (app {e['clientId']})"
                ),
            ]
        lines += [
            f"  Settings         {e['settingsFile']}"
            + "".join(
                f"\n                   {k}={v} (this run only)" for k, v in self.options.host_settings.items()
            ),
            f"  Endpoints        {self.endpoints_file}",
            f"  Logs             {self._logs_line()}",
            f"  Data             {self._data_line()}",
            f"  Functions        {', '.join(e['functions']) or '(none yet)'}",
            "Press Ctrl+C to stop everything.",
        ]
        return "\n".join(lines)
