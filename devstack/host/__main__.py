"""`python -m devstack.host --app-dir DIR [--port 7071] [--settings FILE] [--state-dir DIR]`.

Prints one JSON line on stdout when serving ({"hostUrl": ..., "functions": [...]}); logs go to
stderr. `--list-functions` prints the app's function metadata as JSON and exits.
SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.host import config
from devstack.host.config import ConfigError
from devstack.host.functions import AppLoadError, load

if TYPE_CHECKING:
    from devstack.host.server import FunctionsHost


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.host", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--app-dir", type=Path, default=Path.cwd(), help="folder holding function_app.py and host.json"
    )
    parser.add_argument("--port", type=int, default=7071, help="0 = any free port")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--settings", type=Path, help="local.settings.json (default: in --app-dir)")
    parser.add_argument(
        "--state-dir", type=Path, help="timer schedule status (default: APP_DIR/.devstack/host)"
    )
    parser.add_argument("--script-file", default="function_app.py")
    parser.add_argument(
        "--list-functions", action="store_true", help="print the functions' metadata and exit"
    )
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


async def _serve(host: FunctionsHost) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await host.start()
        print(json.dumps({"hostUrl": host.url, "functions": sorted(host.functions)}), flush=True)
        await stopping.wait()
    finally:
        await host.stop()
        loop.set_exception_handler(_quiet_about_the_apps_sessions)


def _quiet_about_the_apps_sessions(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """At shutdown the app's own HTTP clients are still open: the Functions worker gives an app no
    hook to close them, and in Azure the worker process simply ends. aiohttp reports each as
    "Unclosed client session" when the loop is torn down; that is the expected end here, so it is
    noted once at DEBUG. Anything else still goes to the default handler."""
    message = str(context.get("message", ""))
    if message.startswith(("Unclosed client session", "Unclosed connector")):
        logging.getLogger("devstack.host").debug("at shutdown: %s (left to the process's end)", message)
        return
    loop.default_exception_handler(context)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("azure", "aiohttp.access", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Settings first: the server module imports aiohttp, which reads SSL_CERT_FILE at import.
    config.export_app_settings(args.app_dir.resolve(), args.settings)
    from devstack.host.server import FunctionsHost

    host = FunctionsHost(
        args.app_dir,
        port=args.port,
        bind=args.bind,
        settings_file=args.settings,
        state_dir=args.state_dir,
        script_file=args.script_file,
    )
    try:
        if args.list_functions:
            host.load_settings()
            print(json.dumps([f.describe() for f in load(host.app_dir, args.script_file)]), flush=True)
            return 0
        asyncio.run(_serve(host))
    except (AppLoadError, ConfigError) as exc:
        logging.getLogger("devstack.host").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
