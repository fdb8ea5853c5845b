"""What GraphDirectory (graph.py) gives the mixins that hold its parts of the Directory port
(graph_consent, graph_credentials, graph_owners, graph_policy): a Graph client per tenant, sending
a request builder's request with Graph's errors mapped (and replication lag waited out), listing a
collection across its pages, OData query options. Declared once here so each mixin type-checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from functions.adapters.graph_pacing import GraphPacer


class GraphWire:
    _lag_timeout: float
    pacer: GraphPacer

    def client(self, tenant_id: str) -> Any:
        raise NotImplementedError

    async def _send(  # noqa: PLR0917  (mirrors GraphDirectory._send)
        self,
        client: Any,
        operation: str,
        what: str,
        key: str,
        request: Any,
        lag: Callable[[Any], bool] | None = None,
    ) -> Any:
        raise NotImplementedError

    async def _list(  # noqa: PLR0917  (mirrors GraphDirectory._list)
        self,
        client: Any,
        what: str,
        key: str,
        builder: Any,
        config: Any = None,
        lag: Callable[[Any], bool] | None = None,
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def _config(*, filter: str | None = None, select: list[str] | None = None) -> Any:
        raise NotImplementedError
