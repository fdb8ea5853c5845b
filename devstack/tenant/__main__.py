"""`python -m devstack.tenant --port PORT [--state-dir DIR] ...`: see docs/devstack.md.

Once ready, prints one JSON line on stdout (authority, tenantId, clientId, clientSecret, graphUrl,
vaultUrl, caFile, adminUrl, ...). SIGTERM or SIGINT stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.tenant", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (loopback only)")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep state here across restarts")
    parser.add_argument(
        "--propagation-delay", type=float, default=0.0, help="seconds before a new credential works"
    )
    parser.add_argument("--replication-delay-ms", type=int, default=0, help="new objects invisible for N ms")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to every call")
    parser.add_argument("--latency-jitter-ms", type=float, default=0.0, help="plus uniform random 0..N ms")
    parser.add_argument("--event-subscriber", default=None, help="URL receiving Key Vault events")
    parser.add_argument("--near-expiry-window-s", type=float, default=30 * 24 * 3600.0)
    parser.add_argument(
        "--no-purge-protection",
        action="store_true",
        help="Key Vault purge allowed (Azure's vault forbids it)",
    )
    parser.add_argument("--purge-delay-s", type=float, default=0.0, help="a purged name is freed after S s")
    parser.add_argument("--no-throttling", action="store_true", help="disable Graph throttling")
    parser.add_argument("--throttle-scale", type=float, default=1.0, help="multiplies every Graph budget")
    parser.add_argument("--tenant-size", choices=["small", "medium", "large"], default="small")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="JSON", help="a fault rule (as POST /_sim/faults)"
    )
    parser.add_argument(
        "--brownfield", type=int, default=0, metavar="N", help="a new tenant gets N hand-made connector apps"
    )
    parser.add_argument(
        "--brownfield-service-principals", type=int, default=None, metavar="M", help="of which M get one"
    )
    parser.add_argument(
        "--brownfield-sp-passwords",
        type=float,
        default=0.1,
        metavar="SHARE",
        help="the share of those service principals holding a password of their own (default 0.1)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def _stop_during_startup(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    # Until the event loop takes over the signals, SIGTERM/SIGINT still mean a clean exit 0 (and
    # override an inherited "ignore SIGINT" of background jobs).
    signal.signal(signal.SIGTERM, _stop_during_startup)
    signal.signal(signal.SIGINT, _stop_during_startup)
    args = parse_args(argv)
    # Imported only now: aiohttp and the Graph catalogues take a moment to load.
    from devstack.tenant.context import SimulationConfig
    from devstack.tenant.server import ServerOptions, TenantServer

    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    sim = SimulationConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        propagation_delay_s=args.propagation_delay,
        replication_delay_ms=args.replication_delay_ms,
        near_expiry_window_s=args.near_expiry_window_s,
        event_subscriber_url=args.event_subscriber,
        purge_protection=not args.no_purge_protection,
        purge_delay_s=args.purge_delay_s,
        throttling_enabled=not args.no_throttling,
        throttle_scale=args.throttle_scale,
        tenant_size=args.tenant_size,
    )
    options = ServerOptions(
        port=args.port,
        state_dir=args.state_dir,
        sim=sim,
        faults=tuple(json.loads(rule) for rule in args.fault),
        brownfield=args.brownfield,
        brownfield_service_principals=args.brownfield_service_principals,
        brownfield_sp_passwords=args.brownfield_sp_passwords,
    )

    async def serve() -> None:
        await TenantServer(options).run()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
