"""Wires the adapters into the core, once per process, lazily.

Importing this module imports no Azure SDK: each adapter (and the SDK behind it) is built on
first use, so function_app imports fast (cold start) and an HTTP route that needs only the
profile catalogue never loads msgraph-sdk. Triggers call `services()`.

The wiring is grouped as the core is (docs/architecture.md): functions/wiring/adapters.py builds
the adapters, and each capability's module wires its workflows over what is below it, in the
core's layer order (notification < rotation < provisioning < inventory < adoption < escalation),
each class extending the one below. Services is the top of that stack plus the process's life:
ready() and close().
"""

from __future__ import annotations

import threading

from functions.wiring.adapters import SystemClock
from functions.wiring.escalation import EscalationWiring, instruments

__all__ = ["Services", "SystemClock", "instruments", "reset_services", "services"]


class Services(EscalationWiring):
    """The process's adapters and core services. Built on first use; one per process."""

    # Users before what they use: the store and logs write through the table service, every
    # Azure client authenticates through the identity. job_ports holds adapters and closes
    # nothing itself: dropped so the next job is built over the rebuilt ones.
    _CLOSE_ORDER = ("job_ports", "deliveries", "index", "in_flight", "health_marks", "watchlist",
                    "app_claims", "tenant_subscription_store", "store", "inventory_store", "queue",
                    "table_service", "directory", "vault", "probe", "webhook_sender", "identity")  # fmt: skip

    async def close(self) -> None:
        """Close the adapters built so far (each holds HTTP sessions); benchmarks and tools call
        this before their event loop ends. The Functions host never does: it ends the process."""
        for name in self._CLOSE_ORDER:
            adapter = self.__dict__.pop(name, None)
            close = getattr(adapter, "close", None)
            if close is not None:
                await close()
        self._ready = False

    async def ready(self) -> Services:
        """Create the tables once per process (idempotent; Bicep creates them in Azure too).

        Every trigger awaits this first, in its own task: from here on, whatever it announces also
        reaches the tenant-wide subscribers (core/notification/tenant_wide.py)."""
        from functions.core.notification.tenant_wide import use_tenant_wide

        use_tenant_wide(self.tenant_subscribers)
        if not self._ready:
            async with self._ready_lock:
                if not self._ready:
                    from functions.adapters.tables import ensure_tables

                    await ensure_tables(self.table_service)
                    self._ready = True
        return self


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    global _services  # noqa: PLW0603  (one wiring per process is the point)
    if _services is None:
        from functions.settings import get_settings

        with _lock:
            if _services is None:
                _services = Services(get_settings())
    return _services


def reset_services(replacement: Services | None = None) -> None:
    """Tests: drop the process's wiring (or install one built from other settings)."""
    global _services  # noqa: PLW0603
    with _lock:
        _services = replacement
