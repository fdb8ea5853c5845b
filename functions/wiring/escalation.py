"""Wiring of core/escalation: the at-risk snapshot, alerts' instruments, proof of use."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from functions.wiring.adoption import AdoptionWiring

if TYPE_CHECKING:
    from functions.core.escalation.at_risk import EscalationSettings
    from functions.core.escalation.escalation import Escalation
    from functions.core.escalation.instruments import Instruments
    from functions.core.escalation.proof_of_use import ProofOfUse
    from functions.core.notification.events import Delivery
    from functions.core.ports import (
        DeadLetters,
        QueueLengths,
    )


_lock = threading.Lock()
_instruments: Instruments | None = None


def instruments() -> Instruments:
    """The process's OpenTelemetry instruments: one set, however often the services are rebuilt."""
    global _instruments  # noqa: PLW0603  (an instrument registered twice would report twice)
    if _instruments is None:
        from functions.core.escalation.instruments import Instruments

        with _lock:
            if _instruments is None:
                _instruments = Instruments()
    return _instruments


class EscalationWiring(AdoptionWiring):
    """core/escalation over adoption: the top of the core's layers."""

    def _delivery_observed(self, delivery: Delivery, status: str) -> None:
        self.escalation().delivery_settled(delivery, status)

    @cached_property
    def escalation_settings(self) -> EscalationSettings:
        from functions.core.escalation.at_risk import EscalationSettings

        return EscalationSettings.from_values(self.settings.values)

    @cached_property
    def health_marks(self) -> Any:
        from functions.adapters.table_index import IndexHealthMarks

        return IndexHealthMarks(self.table_service)

    @cached_property
    def watchlist(self) -> Any:
        from functions.adapters.table_index import IndexWatchlist

        return IndexWatchlist(self.table_service)

    def escalation(self) -> Escalation:
        from functions.core.escalation.escalation import Escalation
        from functions.core.escalation.snapshot import SnapshotSources

        return Escalation(
            sources=SnapshotSources(
                store=self.store,
                index=self.index,
                # The same adapters, by their other ports: StorageQueues counts a queue's messages,
                # TableDeliveryLog its dead letters.
                lengths=cast("QueueLengths", self.queue),
                dead_letters=cast("DeadLetters", self.deliveries),
                marks=self.health_marks,
                watchlist=self.watchlist,
                clock=self.clock,
            ),
            queue=self.queue,
            instruments=instruments(),
            settings=self.escalation_settings,
            owner=self.job_owner(),
            proof=self.proof_of_use(),
        )

    def proof_of_use(self) -> ProofOfUse | None:
        """Sign-in activity as the connector's confirmation: only with REGISTRAR_SIGN_IN_PROOF on
        (it needs AuditLog.Read.All and an Entra ID P1/P2 licence), and only through Graph."""
        from functions.adapters.graph import GraphDirectory
        from functions.adapters.graph_signins import GraphSignInActivity
        from functions.core.escalation.confirmation import Confirmations
        from functions.core.escalation.proof_of_use import ProofOfUse

        if not self.escalation_settings.sign_in_proof:
            return None
        graph = self.directory
        if not isinstance(graph, GraphDirectory):  # tests may replace the directory with a fake
            return None
        return ProofOfUse(
            activity=GraphSignInActivity(graph),
            confirmations=Confirmations(
                store=self.store, index=self.index, clock=self.clock, owner=self.job_owner()
            ),
        )
