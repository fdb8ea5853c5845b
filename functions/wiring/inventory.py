"""Wiring of core/inventory: the scanner over Graph's lists and delta queries, and its store."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from functions.wiring.provisioning import ProvisioningWiring

if TYPE_CHECKING:
    from functions.core.inventory.ports import InventoryStore
    from functions.core.inventory.scanner import InventoryScanner


class InventoryWiring(ProvisioningWiring):
    """core/inventory over provisioning."""

    @cached_property
    def inventory_store(self) -> InventoryStore:
        from functions.adapters.table_inventory import TableInventoryStore

        return TableInventoryStore(self.table_service)

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
