"""Inventory events: their schemas, the ingest service (both doors), the AMQP worker,
and the background loops (scheduled deliveries, escalation)."""
