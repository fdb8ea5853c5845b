"""Wiring of core/provisioning: the workflow, its settling (handing an active registration to
rotation) and the lifecycle (approve, decommission, release)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from functions.wiring.rotation import RotationWiring

if TYPE_CHECKING:
    from functions.core.provisioning.lifecycle import Lifecycle
    from functions.core.provisioning.workflow import Provisioner
    from functions.core.record.registration import Registration


class ProvisioningWiring(RotationWiring):
    """core/provisioning over rotation."""

    def provisioner(self) -> Provisioner:
        from functions.core.provisioning.workflow import Provisioner, WorkflowSettings

        return Provisioner(
            self.job_ports,
            settings=WorkflowSettings(verify_timeout=min(self.settings.verify_timeout, timedelta(minutes=5))),
            owner=self.job_owner(),  # one per run: duplicate deliveries in one process must not share a lease
        )

    async def settle(self, record: Registration) -> None:
        """After a provisioning run ends (active: schedule its rotation; either way: announce it)."""
        from functions.core.provisioning.outcomes import settle_provisioned

        await settle_provisioned(
            record,
            store=self.store,
            index=self.index,
            queue=self.queue,
            clock=self.clock,
            owner=self.job_owner(),
            settings=self.rotation_settings,
        )

    def lifecycle(self) -> Lifecycle:
        from functions.core.provisioning.lifecycle import Lifecycle

        return Lifecycle(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            clock=self.clock,
            owner=self.job_owner(),
            in_flight=self.in_flight,
        )
