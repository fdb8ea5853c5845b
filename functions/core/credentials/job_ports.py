"""What every job that writes one registration's credentials works with: the provisioning run,
the rotation job and the adoption takeover (core/provisioning/workflow.py, core/rotation/rotator.py,
core/adoption/takeover.py).

Here, in credentials, because that is the lowest capability all three stand on that may also name
the catalogue's CredentialLifetimes (core/ports.py speaks only the record's vocabulary). Only what
the process shares goes in: the wiring builds it once (functions/wiring/rotation.py); what belongs
to one job (its lease owner, its settings, rotation's index and queue) stays an argument of each.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from functions.core.catalogue.lifetimes import CredentialLifetimes
from functions.core.ports import Clock, Directory, InFlightIndex, RegistrationStore, TokenProbe, Vault
from functions.core.record.deferral import TenantJobs
from functions.core.record.keeper import Sleep


@dataclass(frozen=True)
class RegistrationJobPorts:
    store: RegistrationStore
    directory: Directory
    vault: Vault
    probe: TokenProbe
    clock: Clock
    sleep: Sleep = asyncio.sleep  # lease waits and verify polls; tests pass one that barely waits
    lifetimes: CredentialLifetimes | None = None  # end dates: configured, profile, tenant maxima
    in_flight: InFlightIndex | None = None  # where a job is written ahead, for the resume sweep
    # The process's running jobs per tenant (record/deferral.py); None: each job admits only its own.
    jobs: TenantJobs | None = None
