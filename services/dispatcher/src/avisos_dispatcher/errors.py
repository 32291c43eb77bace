"""How a provider failure is classified.

Channel senders raise one of these; the delivery base turns them into the Worker outcomes
of :mod:`avisos_common.amqp` after recording the attempt:

* :class:`TransientError` (network, timeouts, 5xx, 429): retried with backoff through the
  delay queues (``retry_after_secs`` from a ``Retry-After`` wins), up to the channel's
  attempt limit, then dead-lettered.
* :class:`PermanentError` (invalid address or number, other 4xx): failed at once and
  dead-lettered with the reason; retrying cannot help.
* :class:`NotSent` (policy: SMS cap reached, user has no push subscription): recorded as
  failed and acked; not an error of the message, so it is neither retried nor dead-lettered.
"""

from __future__ import annotations


class DeliveryError(Exception):
    def __init__(self, reason: str, *, provider: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.provider = provider


class TransientError(DeliveryError):
    def __init__(
        self, reason: str, *, provider: str | None = None, retry_after_secs: float | None = None
    ) -> None:
        super().__init__(reason, provider=provider)
        self.retry_after_secs = retry_after_secs


class PermanentError(DeliveryError):
    """Retrying cannot succeed."""


class NotSent(DeliveryError):
    """Deliberately not sent (policy); recorded as failed, not retried, not dead-lettered."""


def parse_retry_after(value: str | None, default: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; HTTP dates give default)."""
    if not value:
        return default
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        import email.utils
        import time

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        return max(0.0, when.timestamp() - time.time())
