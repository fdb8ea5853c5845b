"""FunctionsHost: settings, then the app, then its triggers, served on one aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from devstack.host import config, eventgrid, queues, timers
from devstack.host.functions import (
    EVENT_GRID_TRIGGER,
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    FunctionInfo,
    load,
)
from devstack.host.http_triggers import HttpTriggers
from devstack.host.invoker import InvocationFailed, Invoker

log = logging.getLogger("devstack.host")
_RESTART_DELAY_S = 2.0


def is_disabled(name: str, environ: dict[str, str]) -> bool:
    """The app setting AzureWebJobs.<name>.Disabled switches a function's trigger off (not its admin run)."""
    return environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in {"true", "1"}


class FunctionsHost:
    """Runs one function app in this process. Library use: `await host.start()` ... `await host.stop()`."""

    def __init__(
        self,
        app_dir: Path,
        *,
        port: int = 7071,
        bind: str = "127.0.0.1",
        settings_file: Path | None = None,
        state_dir: Path | None = None,
        script_file: str = "function_app.py",
    ) -> None:
        self.app_dir = app_dir.resolve()
        self.port = port
        self.bind = bind
        self.settings_file = settings_file or self.app_dir / "local.settings.json"
        self.state_dir = state_dir or self.app_dir / ".devstack" / "host"
        self.script_file = script_file
        self.functions: dict[str, FunctionInfo] = {}
        self.options = config.HostOptions()
        self._invoker = Invoker(self.app_dir)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queue_listeners: list[queues.QueueListener] = []
        self._timers: dict[str, timers.TimerListener] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._started = time.monotonic()
        self.http: HttpTriggers | None = None

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}"

    def load_settings(self) -> None:
        """Export the settings (a no-op for keys already exported: the environment wins) and read host.json."""
        values = config.export_app_settings(self.app_dir, self.settings_file)
        # Overrides come from the Values and the environment; the environment wins, as on export.
        self.options = config.load_host_json(self.app_dir / "host.json", {**values, **os.environ})
        self._invoker.function_timeout = self.options.function_timeout

    async def start(self) -> None:
        self.load_settings()
        self.functions = {f.name: f for f in load(self.app_dir, self.script_file)}
        environ = dict(os.environ)
        active = [f for f in self.functions.values() if not is_disabled(f.name, environ)]
        for function in active:
            if function.trigger_type == QUEUE_TRIGGER:
                listener = queues.QueueListener(function, self._invoker, self.options.queues, environ)
                await listener.ensure_queue()  # fail at start, as the host does, if storage is unreachable
                self._queue_listeners.append(listener)
                self._supervise(function.name, listener.run)
            elif function.trigger_type == TIMER_TRIGGER:
                timer = timers.TimerListener(function, self._invoker, self.state_dir)
                self._timers[function.name] = timer
        self.http = HttpTriggers(active, self._invoker, self.options.route_prefix)
        await self._serve({f.name: f for f in active})
        for name, timer in self._timers.items():
            self._supervise(name, timer.run)
        self._log_functions()

    async def _serve(self, active: dict[str, FunctionInfo]) -> None:
        assert self.http is not None
        app = web.Application(client_max_size=100 * 1024 * 1024)
        webhook = eventgrid.EventGridWebhook(active, self._invoker)
        app.router.add_get("/", self._home)
        app.router.add_get("/admin/host/status", self._status)
        app.router.add_get("/admin/functions", self._list)
        app.router.add_post("/admin/functions/{name}", self._admin_invoke)
        app.router.add_post("/runtime/webhooks/eventgrid", webhook.post)
        app.router.add_route("OPTIONS", "/runtime/webhooks/eventgrid", webhook.options)
        # [\s\S]: a path with an encoded newline still reaches the routes (aiohttp would answer text/plain).
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.http.handle)
        # shutdown_timeout: in-flight HTTP requests get a few seconds to finish when the host stops.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]  # the port the OS chose when asked for port 0

    def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Keep a listener alive: the host logs a listener's error and restarts it."""

        async def loop() -> None:
            while True:
                try:
                    await run()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("Listener for '%s' failed; restarting in %.0fs", name, _RESTART_DELAY_S)
                    await asyncio.sleep(_RESTART_DELAY_S)

        self._tasks.append(asyncio.create_task(loop(), name=f"listener-{name}"))

    def _log_functions(self) -> None:
        assert self.http is not None
        lines = [f"Functions ({len(self.functions)}):"]
        lines += [f"  {name}: disabled" for name in self.functions if is_disabled(name, dict(os.environ))]
        lines += [f"  {entry} -> {self.url}" for entry in self.http.describe()]
        for function in self.functions.values():
            if is_disabled(function.name, dict(os.environ)):
                continue
            if function.trigger_type == QUEUE_TRIGGER:
                lines.append(f"  {function.name}: queueTrigger {function.trigger.get('queueName')}")
            elif function.trigger_type == TIMER_TRIGGER:
                lines.append(
                    f"  {function.name}: timerTrigger {self._timers[function.name].schedule.expression}"
                )
            elif function.trigger_type == EVENT_GRID_TRIGGER:
                lines.append(
                    f"  {function.name}: eventGridTrigger {self.url}/runtime/webhooks/eventgrid?functionName={function.name}"
                )
        log.info("\n".join(lines))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Seconds running queue invocations get to finish at shutdown (a devstack knob, not an Azure setting).
        drain_s = float(os.environ.get("DEVSTACK_HOST_DRAIN_SECONDS", "5"))
        for listener in self._queue_listeners:
            await listener.close(drain_s)
        if self._runner is not None:
            await self._runner.cleanup()
        self._invoker.shutdown()

    async def _home(self, _request: web.Request) -> web.Response:
        return web.Response(text="Your Functions app is up and running (devstack host).\n")

    async def _status(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "state": "Running",
                "processUptime": int((time.monotonic() - self._started) * 1000),
                "version": "devstack",
            }
        )

    async def _list(self, _request: web.Request) -> web.Response:
        return web.json_response([function.describe() for function in self.functions.values()])

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        function = self.functions.get(request.match_info["name"])
        if function is None:
            lowered = request.match_info["name"].lower()
            function = next((f for name, f in self.functions.items() if name.lower() == lowered), None)
        if function is None:
            return web.Response(status=404)
        if function.trigger_type == HTTP_TRIGGER:
            return web.Response(status=400, text="HTTP functions are invoked through their route")
        try:
            document = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.Response(status=400, text='body must be JSON: {"input": "..."}')
        raw = document.get("input", "") if isinstance(document, dict) else ""
        text = raw if isinstance(raw, str) else json.dumps(raw)
        task = asyncio.create_task(self._run_by_hand(function, text))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.Response(status=202)

    async def _run_by_hand(self, function: FunctionInfo, text: str) -> None:
        try:
            if function.trigger_type == QUEUE_TRIGGER:
                await queues.invoke_by_hand(function, self._invoker, text)
            elif function.trigger_type == TIMER_TRIGGER:
                await self._invoker.invoke(function, timers.timer_datum(False, None), reason="Admin")
            elif function.trigger_type == EVENT_GRID_TRIGGER:
                event = json.loads(text) if text else {}
                await self._invoker.invoke(function, eventgrid.event_datum(event), reason="Admin")
            else:
                log.error(
                    "Function '%s': %s cannot be run by hand locally", function.name, function.trigger_type
                )
        except InvocationFailed:
            pass  # logged by the invoker
        except ValueError:
            log.error("Function '%s': admin input is not a JSON event", function.name)
