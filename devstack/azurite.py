"""Start Azurite (npm, pinned in package.json) on loopback and hand back its connection string.

Used by `python -m devstack up` (fixed ports 10000-10002 when free; data kept in a folder across
restarts) and by the tests' `azurite` fixture (port 0: Azurite binds free ports and prints them,
which is race-free; data in memory).
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack import processes

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# The well-known development account every Azure SDK and tool accepts (it is public, not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
FLAGS = ("--silent", "--skipApiVersionCheck", "--disableTelemetry")

_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at https?://[^:]+:(\d+)"
)


def connection_string(
    blob_port: int, queue_port: int, table_port: int, host: str = "127.0.0.1", scheme: str = "http"
) -> str:
    """An explicit connection string (UseDevelopmentStorage=true only works on the default ports)."""
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={scheme}://{host}:{blob_port}/{ACCOUNT_NAME};"
        f"QueueEndpoint={scheme}://{host}:{queue_port}/{ACCOUNT_NAME};"
        f"TableEndpoint={scheme}://{host}:{table_port}/{ACCOUNT_NAME};"
    )


@dataclass(frozen=True)
class Https:
    """Serve HTTPS with this certificate and accept Entra bearer tokens (Azurite's --oauth basic:
    it checks a token's issuer, audience and lifetime, not its signature nor any RBAC role)."""

    cert_file: Path
    key_file: Path


def ports_free(ports: list[int], host: str = "127.0.0.1") -> bool:
    """True when nothing listens on any of the ports (checked by binding them briefly).

    The probe binds with SO_REUSEADDR, as the servers themselves do (aiohttp, node, the tenant): on
    Linux that bind fails only where a socket listens, not where connections of a stopped server
    linger in TIME_WAIT (for a minute after a restart), which a server binding with reuse ignores.
    """
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


@dataclass
class Azurite:
    """A running Azurite process; stop() ends its process group."""

    process: subprocess.Popen[str]
    ports: dict[str, int]
    host: str = "127.0.0.1"
    output: list[str] = field(default_factory=list)
    https: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def connection_string(self) -> str:
        return connection_string(
            self.ports["blob"], self.ports["queue"], self.ports["table"], self.host, self.scheme
        )

    def service_uri(self, service: str) -> str:
        """The account URL of one service, as identity-based connections name it (path-style)."""
        return f"{self.scheme}://{self.host}:{self.ports[service]}/{ACCOUNT_NAME}"

    def stop(self) -> None:
        processes.stop(self.process)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start(
    *,
    ports: dict[str, int] | None = None,
    host: str = "127.0.0.1",
    binary: Path = AZURITE_BIN,
    timeout: float = 30.0,
    https: Https | None = None,
    location: Path | None = None,
) -> Azurite:
    """Start Azurite; ports None means free ports chosen by the OS (port 0). Its data lives in memory,
    or with `location` in that folder (Azurite's --location), where the next start finds it again.

    Returns once all three services listen. Raises RuntimeError (with Azurite's output) otherwise.
    """
    if not binary.exists():
        raise RuntimeError(f"{binary} not found: run `npm ci` (or `make setup`) first")
    wanted = ports or {"blob": 0, "queue": 0, "table": 0}
    argv = [str(binary), *FLAGS]
    if location is None:
        argv.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        argv += ["--location", str(location)]
    for service in ("blob", "queue", "table"):
        argv += [f"--{service}Host", host, f"--{service}Port", str(wanted[service])]
    if https is not None:
        argv += ["--cert", str(https.cert_file), "--key", str(https.key_file), "--oauth", "basic"]
    proc = processes.spawn(argv, stderr=subprocess.STDOUT)
    azurite = Azurite(process=proc, ports={}, host=host, https=https is not None)
    ready = threading.Event()

    def read_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            azurite.output.append(line.rstrip())
            match = _LISTENING.search(line)
            if match:
                azurite.ports[match.group(1).lower()] = int(match.group(2))
                if len(azurite.ports) == 3:
                    ready.set()
        ready.set()  # EOF: the process ended; the caller sees the missing ports

    threading.Thread(target=read_output, name="azurite-output", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05) and time.monotonic() < deadline:
        pass
    if len(azurite.ports) != 3:
        azurite.stop()
        raise RuntimeError("Azurite did not start:\n" + "\n".join(azurite.output[-20:]))
    return azurite


def start_preferring_defaults(
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    https: Https | None = None,
    location: Path | None = None,
) -> Azurite:
    """Azurite on 10000-10002 (UseDevelopmentStorage=true works) unless busy, else on free ports."""
    if ports_free(list(DEFAULT_PORTS.values()), host):
        try:
            return start(
                ports=dict(DEFAULT_PORTS), host=host, timeout=timeout, https=https, location=location
            )
        except RuntimeError:
            pass  # lost a race for a default port: fall back to free ports
    return start(ports=None, host=host, timeout=timeout, https=https, location=location)
