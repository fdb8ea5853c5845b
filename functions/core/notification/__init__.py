"""Telling connectors: webhook events, Standard Webhooks signatures, subscriptions and delivery.

Public surface: `events` (WebhookEvent, Delivery, fan_out, sign), `announcer` (Announcer: once
per event), `delivery` (DeliveryWorker: send, retry, dead-letter), `prompt` (PromptDeliveries:
the announcing invocation's own first attempt), `subscriptions` (add or remove a registration's
webhooks) and `signing_secrets` (webhook_secret_name, CachedSecrets).
"""
