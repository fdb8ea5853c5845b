"""`python -m devstack up [--port 7071] [--state-dir .devstack] [--app-dir .] [--settings FILE]
[--verbose] [--fresh]` and `python -m devstack demo [--state-dir .devstack]`.

`up` starts Azurite, the local tenant and the Functions host, writes STATE_DIR/endpoints.json once
all are ready, and stops every process it started on SIGINT/SIGTERM. The host and the tenant log to
STATE_DIR/logs/ (--verbose: to this console); Azurite's data and the tenant's state are kept in
STATE_DIR across restarts (--fresh: both start empty). `demo` runs against it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from devstack.demo import DEMO_HOST_SETTINGS
from devstack.stack import REPO_ROOT, Stack, StackOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start Azurite, the local tenant and the Functions host")
    up.add_argument("--port", type=int, default=7071, help="host port; 0 = every part on free ports")
    up.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".devstack")
    up.add_argument("--app-dir", type=Path, default=REPO_ROOT, help="folder holding function_app.py")
    up.add_argument("--settings", type=Path, help="local.settings.json (default: in --app-dir)")
    up.add_argument("--host-log", type=Path, help="the host's log file (default: STATE_DIR/logs/host.log)")
    up.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream the host's and the tenant's logs to this console instead of STATE_DIR/logs/",
    )
    up.add_argument(
        "--fresh",
        action="store_true",
        help="start with empty Storage (Azurite) and an empty tenant, dropping what earlier runs kept",
    )
    up.add_argument(
        "--no-host",
        action="store_true",
        help="start Azurite and the tenant only; serve the app with `func start` on --port",
    )
    up.add_argument(
        "--managed-identity",
        action="store_true",
        help="the host signs in with the function app's managed identity (the tenant's identity"
        " endpoint), as in Azure, instead of the bootstrap identity's client secret",
    )
    up.add_argument(
        "--demo",
        action="store_true",
        help="once the stack is ready, run the guided demo (`make run` does), then keep serving",
    )
    demo = commands.add_parser("demo", help="walk through Registrar against a running stack")
    demo.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".devstack")
    return parser


def _up(args: argparse.Namespace) -> int:
    options = StackOptions(
        app_dir=args.app_dir.resolve(),
        port=args.port,
        state_dir=args.state_dir.resolve(),
        settings_file=args.settings.resolve() if args.settings else None,
        host_log=args.host_log,
        console_logs=args.verbose,
        run_host=not args.no_host,
        managed_identity=args.managed_identity,
        persist=True,  # Azurite's data and the tenant's state, both kept in STATE_DIR across restarts
        fresh=args.fresh,
        host_settings=dict(DEMO_HOST_SETTINGS) if args.demo else {},
    )
    stack = Stack(options)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Touch no lock here: the handler runs in the main thread between two bytecodes, possibly
        # while that thread holds one (an Event.set() here once deadlocked inside Event.wait()).
        # Raising unwinds whatever the main thread was doing, a start in progress included.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start()
        print(stack.summary(), flush=True)
        if args.demo:
            threading.Thread(target=_run_demo, args=(options.state_dir,), daemon=True).start()
        while True:
            time.sleep(0.5)
            failed = stack.failed_part()
            if failed:
                logging.getLogger("devstack").error(
                    "%s exited on its own; stopping the stack%s", failed, stack.log_hint(failed)
                )
                return 1
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        logging.getLogger("devstack").error("%s", exc)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish stopping before anything else
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
    return 0


def _run_demo(state_dir: Path) -> None:
    from devstack import demo

    try:
        outcome = demo.main(json.loads((state_dir / "endpoints.json").read_text(encoding="utf-8")))
    except Exception:  # the stack keeps serving; the traceback says what went wrong
        logging.getLogger("devstack").exception("the demo failed")
        return
    if outcome == 0:
        print("The stack keeps running: call the API (see README), or stop it with Ctrl+C.", flush=True)


def _demo(args: argparse.Namespace) -> int:
    endpoints_file = args.state_dir / "endpoints.json"
    if not endpoints_file.exists():
        print(f"No running stack ({endpoints_file} missing): start it with `make run`.", file=sys.stderr)
        return 1
    from devstack import demo

    return demo.main(json.loads(endpoints_file.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The Azure SDKs log every request's headers at INFO: too much for a person watching the demo.
    for noisy in ("azure", "msal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    return _up(args) if args.command == "up" else _demo(args)


if __name__ == "__main__":
    sys.exit(main())
