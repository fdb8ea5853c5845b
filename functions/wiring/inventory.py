"""Wiring of core/inventory: the scanner over Graph's lists and delta queries, and its store."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from functions.wiring.provisioning import ProvisioningWiring

if TYPE_CHECKING:
    from functions.core.inventory.ports import InventoryStore
    from functions.core.inventory.scanner import InventoryScanner
    from functions.core.record.registration import Registration

log = logging.getLogger(__name__)


class InventoryWiring(ProvisioningWiring):
    """core/inventory over provisioning."""

    @cached_property
    def inventory_store(self) -> InventoryStore:
        from functions.adapters.table_inventory import TableInventoryStore

        return TableInventoryStore(self.table_service)

    async def settle(self, record: Registration) -> None:
        """Provisioning's settling, then the inventory told at once what the run's outcome means
        for an adopted app: a takeover that failed, or a release finished by the worker, shows the
        app unmanaged now, not from the next scan. Provisioning sits below inventory, so the hook is
        here, where every run's outcome passes (the worker, give_up, the stuck sweep)."""
        await ProvisioningWiring.settle(self, record)  # named: test doubles reuse this function
        await self.tell_inventory(record)

    async def tell_inventory(self, record: Registration) -> None:
        """An adopted app's summary marked as `record` now holds it (inventory/marking.py). Only a
        view: a failure is logged and the next scan decides anyway."""
        from functions.core.inventory.marking import reflect
        from functions.core.record.errors import RegistrarError

        if record.adoption is None:
            return
        try:
            await reflect(self.inventory_store, record)
        except RegistrarError as err:
            log.warning(
                "inventory not told that registration %s is %s: %s", record.id, record.status.value, err
            )

    def inventory_scanner(self) -> InventoryScanner:
        from functions.adapters.graph import GraphDirectory
        from functions.adapters.graph_inventory import GraphInventory
        from functions.core.inventory.scanner import InventoryScanner

        graph = self.directory
        if not isinstance(graph, GraphDirectory):  # tests may replace the directory with a fake
            raise TypeError("the inventory reads Graph through GraphDirectory")
        return InventoryScanner(
            GraphInventory(graph),
            self.inventory_store,
            graph,
            self.store,
            self.catalogue,
            self.clock,
        )
