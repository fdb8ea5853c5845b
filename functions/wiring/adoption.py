"""Wiring of core/adoption: the ownership check, the app claims, the permissions step and the
takeover."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from functions.wiring.inventory import InventoryWiring

if TYPE_CHECKING:
    from functions.core.adoption.claims import AppClaims
    from functions.core.adoption.ownership import OwnershipCheck
    from functions.core.adoption.permissions import PermissionStep
    from functions.core.adoption.takeover import Takeover


class AdoptionWiring(InventoryWiring):
    """core/adoption over inventory."""

    def ownership_check(self) -> OwnershipCheck:
        from functions.core.adoption.ownership import OwnershipCheck, OwnershipSettings

        settings = OwnershipSettings(take_ownership=self.settings.adoption_takes_ownership)
        return OwnershipCheck(
            self.store,
            self.directory,
            self.clock,
            settings,
            owner=self.job_owner(),
            queue=self.queue,  # adopting: the envelope goes to the worker (the takeover)
            in_flight=self.in_flight,
            inventory=self.inventory_store,  # the adopted app shows managed at once
        )

    @cached_property
    def app_claims(self) -> AppClaims:
        from functions.adapters.table_claims import TableAppClaims

        return TableAppClaims(self.table_service)

    def takeover(self) -> Takeover:
        """The credential takeover of an adopting registration (core/adoption/takeover.py)."""
        from functions.core.adoption.takeover import Takeover

        return Takeover(
            self.job_ports,
            index=self.index,
            queue=self.queue,
            claims=self.app_claims,
            rotation=self.rotation_settings,
            owner=self.job_owner(),
            permissions=self.adoption_permissions(),  # drift and reconcile run first
        )

    def adoption_permissions(self) -> PermissionStep:
        """An adoption's permissions step (drift recorded, reconciled as asked, tier-0 additions
        held for approval): the takeover runs it first, holding the registration's lease."""
        from functions.core.adoption.permissions import PermissionStep

        return PermissionStep(self.directory, self.clock, self.policy)
