"""Headings and labels in the requester's language (``users.locale``: es, en)."""

from __future__ import annotations

from typing import Literal

Lang = Literal["es", "en"]
DEFAULT_LANG: Lang = "es"

_TEXTS: dict[str, tuple[str, str]] = {
    # key: (es, en)
    "summary": ("Resumen", "Summary"),
    "period": ("Periodo", "Period"),
    "generated_at": ("Generado", "Generated"),
    "timezone": ("Zona horaria", "Time zone"),
    "locations": ("Ubicaciones", "Locations"),
    "categories": ("Categorías", "Categories"),
    "all": ("Todas", "All"),
    "requested_by": ("Solicitado por", "Requested by"),
    # report titles
    "notification_activity": ("Actividad de notificaciones", "Notification activity"),
    "delivery_performance": ("Rendimiento de entrega", "Delivery performance"),
    "inventory_alerts": ("Alertas de inventario", "Inventory alerts"),
    "ack_ledger": ("Registro de acuses", "Acknowledgement ledger"),
    # sheets
    "sheet_activity": ("Actividad", "Activity"),
    "sheet_notifications": ("Notificaciones", "Notifications"),
    "sheet_channels": ("Canales", "Channels"),
    "sheet_failures": ("Motivos de fallo", "Failure reasons"),
    "sheet_attempts": ("Intentos", "Attempts"),
    "sheet_alerts": ("Alertas", "Alerts"),
    "sheet_by_store": ("Por tienda y SKU", "By store and SKU"),
    "sheet_ledger": ("Registro", "Ledger"),
    # columns and totals
    "user": ("Usuario", "User"),
    "email": ("Correo", "Email"),
    "category": ("Categoría", "Category"),
    "priority": ("Prioridad", "Priority"),
    "location": ("Ubicación", "Location"),
    "location_name": ("Nombre de ubicación", "Location name"),
    "sent": ("Enviadas", "Sent"),
    "read": ("Leídas", "Read"),
    "read_rate": ("Tasa de lectura", "Read rate"),
    "median_minutes_to_read": ("Mediana min. hasta lectura", "Median minutes to read"),
    "created_at": ("Creada", "Created"),
    "recipient": ("Destinatario", "Recipient"),
    "type": ("Tipo", "Type"),
    "subject": ("Asunto", "Subject"),
    "read_at": ("Leída el", "Read at"),
    "minutes_to_read": ("Minutos hasta lectura", "Minutes to read"),
    "archived": ("Archivada", "Archived"),
    "source_event": ("Evento origen", "Source event"),
    "recipients": ("Destinatarios", "Recipients"),
    "channel": ("Canal", "Channel"),
    "attempts": ("Intentos", "Attempts"),
    "deliveries": ("Entregas", "Deliveries"),
    "accepted": ("Aceptadas", "Accepted"),
    "delivered": ("Entregadas", "Delivered"),
    "failed": ("Fallidas", "Failed"),
    "retries": ("Reintentos", "Retries"),
    "success_rate": ("Tasa de éxito", "Success rate"),
    "latency_p50_ms": ("Latencia p50 (ms)", "Latency p50 (ms)"),
    "latency_p90_ms": ("Latencia p90 (ms)", "Latency p90 (ms)"),
    "latency_p99_ms": ("Latencia p99 (ms)", "Latency p99 (ms)"),
    "provider": ("Proveedor", "Provider"),
    "error": ("Error", "Error"),
    "count": ("Cantidad", "Count"),
    "started_at": ("Inicio", "Started"),
    "finished_at": ("Fin", "Finished"),
    "status": ("Estado", "Status"),
    "attempt": ("Intento", "Attempt"),
    "latency_ms": ("Latencia (ms)", "Latency (ms)"),
    "delivery_id": ("Id de entrega", "Delivery id"),
    "notification_id": ("Id de notificación", "Notification id"),
    "provider_message_id": ("Id del proveedor", "Provider message id"),
    "store": ("Tienda", "Store"),
    "store_name": ("Nombre de tienda", "Store name"),
    "sku": ("SKU", "SKU"),
    "condition": ("Condición", "Condition"),
    "state": ("Estado", "State"),
    "quantity": ("Cantidad", "Quantity"),
    "opened_at": ("Abierta el", "Opened"),
    "resolved_at": ("Resuelta el", "Resolved"),
    "hours_open": ("Horas abierta", "Hours open"),
    "acknowledged_by": ("Confirmada por", "Acknowledged by"),
    "acknowledged_at": ("Confirmada el", "Acknowledged at"),
    "alerts": ("Alertas", "Alerts"),
    "open": ("Abiertas", "Open"),
    "resolved": ("Resueltas", "Resolved"),
    "stock_outs": ("Roturas de stock", "Stock-outs"),
    "low_stock": ("Stock bajo", "Low stock"),
    "median_hours_open": ("Mediana horas abierta", "Median hours open"),
    "alerts_by_store": ("Alertas por tienda", "Alerts by store"),
    "alerts_by_condition": ("Alertas por condición", "Alerts by condition"),
    "sent_read_by_category": ("Enviadas y leídas por categoría", "Sent and read by category"),
    "sent_by_priority": ("Enviadas por prioridad", "Sent by priority"),
    "outcomes_by_channel": ("Resultados por canal", "Outcomes by channel"),
    "latency_by_channel": ("Latencia por canal (ms)", "Latency by channel (ms)"),
    "channels": ("Canales", "Channels"),
    "delivery_status": ("Estado de entrega", "Delivery status"),
    "received_at": ("Recibida el", "Received"),
    "acknowledged": ("Confirmadas", "Acknowledged"),
    "ack_rate": ("Tasa de confirmación", "Acknowledgement rate"),
    "minutes_to_ack": ("Minutos hasta confirmar", "Minutes to acknowledge"),
    "pending": ("Pendientes", "Pending"),
    "ledger_progress": ("Recepción, lectura y confirmación", "Received, read, acknowledged"),
    "received": ("Recibidas", "Received"),
    "state_open": ("abierta", "open"),
    "state_resolved": ("resuelta", "resolved"),
    # notifications about reports
    "ready_subject": ("Informe listo: {title}", "Report ready: {title}"),
    "ready_message": (
        "Tu informe «{title}» está listo ({rows} filas). Disponible hasta {expires}.",
        "Your report “{title}” is ready ({rows} rows). Available until {expires}.",
    ),
    "email_text": (
        "Hola {name},\n\nAdjuntamos el informe «{title}» ({period}).\n\n— Avisos",
        "Hello {name},\n\nAttached is the report “{title}” ({period}).\n\n— Avisos",
    ),
}


def lang_of(locale: str | None) -> Lang:
    """The report language for a ``users.locale`` value (es-ES -> es; unknown -> es)."""
    code = (locale or "").split("-")[0].split("_")[0].lower()
    return "en" if code == "en" else DEFAULT_LANG


def t(lang: Lang, key: str, **fmt: object) -> str:
    es, en = _TEXTS[key]
    text = en if lang == "en" else es
    return text.format(**fmt) if fmt else text
