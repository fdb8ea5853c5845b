"""Names of the storage resources Registrar uses: one list for the code, the host and the Bicep.

tests/infra checks that infra/bicep creates exactly these queues and tables.
"""

from __future__ import annotations

# Queues (the host adds "<name>-poison" after maxDequeueCount failed deliveries).
REGISTRATION_REQUESTS_QUEUE = "registration-requests"
ROTATION_JOBS_QUEUE = "rotation-jobs"
WEBHOOK_DELIVERIES_QUEUE = "webhook-deliveries"
INVENTORY_SCANS_QUEUE = "inventory-scans"  # one message per tenant to scan (timer or POST /inventory/scan)

QUEUES: tuple[str, ...] = (
    REGISTRATION_REQUESTS_QUEUE,
    ROTATION_JOBS_QUEUE,
    WEBHOOK_DELIVERIES_QUEUE,
    INVENTORY_SCANS_QUEUE,
)

# Tables (alphanumeric names only, as Table storage requires).
REGISTRATIONS_TABLE = "Registrations"
CREDENTIAL_EXPIRY_TABLE = "CredentialExpiry"
WEBHOOK_SUBSCRIPTIONS_TABLE = "WebhookSubscriptions"
WEBHOOK_DELIVERIES_TABLE = "WebhookDeliveries"
LEASES_TABLE = "Leases"
INVENTORY_APPS_TABLE = "InventoryApps"
INVENTORY_CREDENTIALS_TABLE = "InventoryCredentials"
IN_FLIGHT_TABLE = "InFlight"  # work a worker started and has not ended (core/record/inflight.py)

TABLES: tuple[str, ...] = (
    REGISTRATIONS_TABLE,
    CREDENTIAL_EXPIRY_TABLE,
    WEBHOOK_SUBSCRIPTIONS_TABLE,
    WEBHOOK_DELIVERIES_TABLE,
    LEASES_TABLE,
    INVENTORY_APPS_TABLE,
    INVENTORY_CREDENTIALS_TABLE,
    IN_FLIGHT_TABLE,
)
