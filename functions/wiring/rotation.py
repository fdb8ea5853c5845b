"""Wiring of core/rotation: the rotator and the Key Vault event reactions."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from functions.wiring.notification import NotificationWiring

if TYPE_CHECKING:
    from functions.core.credentials.job_ports import RegistrationJobPorts
    from functions.core.rotation.keyvault_reactions import KeyVaultReactions
    from functions.core.rotation.rotator import RotationSettings, Rotator


class RotationWiring(NotificationWiring):
    """core/rotation over notification and the adapters."""

    @cached_property
    def rotation_settings(self) -> RotationSettings:
        from functions.core.credentials.verification import VerifyPolicy
        from functions.core.rotation.rotator import RotationSettings

        return RotationSettings(
            lead_time=self.settings.rotation_lead_time,
            lifetime_fraction=self.settings.rotation_lifetime_fraction,
            overlap=self.settings.rotation_overlap,
            default_lifetime=self.settings.default_credential_lifetime,
            verify=VerifyPolicy(timeout=min(self.settings.verify_timeout, timedelta(minutes=5))),
        )

    @cached_property
    def job_ports(self) -> RegistrationJobPorts:
        """What every job over one registration works with (rotation, provisioning, takeover): the
        process's, so built once; each job adds its own lease owner."""
        from functions.core.credentials.job_ports import RegistrationJobPorts

        return RegistrationJobPorts(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            probe=self.probe,
            clock=self.clock,
            lifetimes=self.lifetimes,
            in_flight=self.in_flight,
            jobs=self.tenant_jobs,
        )

    def rotator(self) -> Rotator:
        from functions.core.rotation.rotator import Rotator

        return Rotator(
            self.job_ports,
            index=self.index,
            queue=self.queue,
            settings=self.rotation_settings,
            owner=self.job_owner(),
        )

    def reactions(self) -> KeyVaultReactions:
        from functions.core.rotation.keyvault_reactions import KeyVaultReactions

        return KeyVaultReactions(
            store=self.store,
            queue=self.queue,
            index=self.index,
            clock=self.clock,
            owner=self.job_owner(),
            settings=self.rotation_settings,
        )
