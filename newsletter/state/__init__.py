"""The state database: subscribers, suppressions, the send ledger and the scheduler lease."""

from newsletter.state.addresses import SubscriberError, address_key, check_address
from newsletter.state.db import Database, open_database
from newsletter.state.lease import Lease
from newsletter.state.ledger import (
    DeliveryOutcome,
    EditionRun,
    Ledger,
    LedgerSummary,
    PendingDelivery,
)
from newsletter.state.subscribers import ImportReport

__all__ = [
    "Database",
    "DeliveryOutcome",
    "EditionRun",
    "ImportReport",
    "Lease",
    "Ledger",
    "LedgerSummary",
    "PendingDelivery",
    "SubscriberError",
    "address_key",
    "check_address",
    "open_database",
]
