"""GMO-PG protocol client: codec (cp932, key-aware answers), error table, operations, reconcile."""

from ivrpay.gateway.client import GatewayClient
from ivrpay.gateway.errors import Field, Kind
from ivrpay.gateway.results import Outcome, Reconciliation, StoredCard

__all__ = [
    "Field",
    "GatewayClient",
    "Kind",
    "Outcome",
    "Reconciliation",
    "StoredCard",
]
